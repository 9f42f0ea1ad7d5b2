#!/usr/bin/env bash
# End-to-end tests of `abc search` (README "Collections"): top-k against an independent computation
# (build/tool_retrieval: double sums, one product at a time) on a batch of fixture embeddings and on a
# random 20000-row index, the query from a model or a .npy, several queries, --json, ids, NaN rows, errors.
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
TOOL=build/tool_retrieval
IMG=tests/fixtures/images
MODEL_ABC=build/tiny-abc.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_search.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$TOOL" "$MODEL_ABC"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

# same_ranking LABEL GOT WANT: the same ranks and ids line by line, scores within 1e-6
same_ranking() {
    local label=$1 got=$2 want=$3
    if [ "$(wc -l <"$got")" -ne "$(wc -l <"$want")" ] || [ ! -s "$want" ]; then
        bad "$label: $(wc -l <"$got") lines, expected $(wc -l <"$want")"; return
    fi
    local diff
    diff=$(paste "$got" "$want" | awk -F'\t' '{
        n = NF / 2; for (i = 1; i <= n; i++) if (i != n - 1 && $i != $(i + n)) { print "line " NR ": " $0; exit }
        d = $(n - 1) - $(2 * n - 1); if (d < 0) d = -d; if (d > 1e-6) { print "score line " NR ": " $0; exit }
        if (d > m) m = d } END { if (NR) printf "max score difference %.3g\n", m }')
    case $diff in
        max*) ok "$label ($(wc -l <"$want") rows; $diff)" ;;
        *) bad "$label: $diff" ;;
    esac
}

echo "-- an index of fixture embeddings (abc embed --batch), queries embedded by the model"
ROOT=$(pwd)
cat >"$TMP/idx.jsonl" <<EOF
{"id":"astronaut","image":"$ROOT/$IMG/astronaut.png","role":"candidate"}
{"id":"coffee-img","image":"$ROOT/$IMG/coffee.png"}
{"id":"rocket","image":"$ROOT/$IMG/rocket.jpg"}
{"id":"camera","image":"$ROOT/$IMG/camera.png"}
{"id":"coffee-text","text":"a cup of coffee on a wooden table"}
{"id":"suit","text":"A person in a space suit"}
{"id":"bad","image":"$ROOT/$IMG/missing.png"}
{"id":"sky","text":"a blue sky"}
EOF
if run_cli 0 "batch index" embed -m "$MODEL_ABC" --batch "$TMP/idx.jsonl" -o "$TMP/idx.npy" --keep-going; then
    run_cli 0 "query embedding" embed -m "$MODEL_ABC" --image "$IMG/astronaut.png" --text "What is the person holding?" -o "$TMP/q.npy"
    "$TOOL" topk "$TMP/idx.npy" "$TMP/q.npy" 5 "$TMP/idx.ids" >"$TMP/want5.txt"
    if run_cli 0 "search -m --image --text -k 5" search --index "$TMP/idx.npy" -m "$MODEL_ABC" --image "$IMG/astronaut.png" \
        --text "What is the person holding?" -k 5; then
        cp "$TMP/out" "$TMP/got5.txt"
        sed 's/^/     /' "$TMP/got5.txt"
        same_ranking "search (query embedded by the model) equals the independent top 5" "$TMP/got5.txt" "$TMP/want5.txt"
    fi
    if run_cli 0 "search --query --json" search --index "$TMP/idx.npy" --query "$TMP/q.npy" -k 3 --json; then
        echo "     $(cat "$TMP/out")"
        check "--json: [{\"rank\":1,\"id\":\"...\",\"score\":...}, ...] with the same ids" test \
            "$(grep -o '"rank":[0-9]*,"id":"[^"]*"' "$TMP/out" | tr '\n' ' ')" = \
            "$(head -n 3 "$TMP/want5.txt" | awk -F'\t' '{printf "\"rank\":%s,\"id\":\"%s\" ", $1, $3}')"
        check "--json: one line, a JSON list" grep -Eq '^\[\{"rank":1,"id":"[^"]+","score":-?[0-9.e-]+\}(,\{[^}]*\}){2}\]$' "$TMP/out"
    fi
    if run_cli 0 "search -k larger than the index" search --index "$TMP/idx.npy" --query "$TMP/q.npy" -k 100; then
        check "-k 100 over 8 rows, one NaN (failed) row: 7 rows, never 'bad'" test "$(wc -l <"$TMP/out")" = 7 -a \
            "$(grep -c 'bad' "$TMP/out")" = 0
    fi
    if run_cli 0 "search --ids none: row numbers" search --index "$TMP/idx.npy" --ids "$TMP/idx.ids" --query "$TMP/q.npy" -k 2; then
        check "--ids given explicitly: same as the default OUT.ids" test "$(cut -f3 "$TMP/out" | tr '\n' ' ')" = \
            "$(head -n 2 "$TMP/want5.txt" | cut -f3 | tr '\n' ' ')"
    fi
fi

echo "-- a random 20000 x 96 index, 3 queries, against the independent computation"
"$TOOL" random "$TMP/big.npy" 20000 96 7
"$TOOL" random "$TMP/qs.npy" 3 96 8
"$TOOL" topk "$TMP/big.npy" "$TMP/qs.npy" 20 >"$TMP/want_big.txt"
for t in 1 3; do
    if run_cli 0 "search 3 queries --threads $t" search --index "$TMP/big.npy" --query "$TMP/qs.npy" -k 20 --threads $t; then
        same_ranking "3 queries x 20000 rows, top 20, --threads $t: ranks, row ids, scores" "$TMP/out" "$TMP/want_big.txt"
    fi
done
# 5 queries: four share each row load, the fifth runs alone; a query's scores must not depend on that
"$TOOL" random "$TMP/q5.npy" 5 96 9
"$TOOL" random "$TMP/q5_first.npy" 1 96 9
"$TOOL" topk "$TMP/big.npy" "$TMP/q5.npy" 10 >"$TMP/want_q5.txt"
if run_cli 0 "search 5 queries" search --index "$TMP/big.npy" --query "$TMP/q5.npy" -k 10 --threads 2; then
    cp "$TMP/out" "$TMP/got_q5.txt"
    same_ranking "5 queries x 20000 rows, top 10 (queries grouped by four, then one)" "$TMP/got_q5.txt" "$TMP/want_q5.txt"
    if run_cli 0 "search query 0 alone" search --index "$TMP/big.npy" --query "$TMP/q5_first.npy" -k 10; then
        check "query 0 alone gives the same ids and the same score bits as inside the group of 4" \
            test "$(awk -F'\t' '$1 == 0 { print $2 "\t" $3 "\t" $4 }' "$TMP/got_q5.txt")" = "$(cat "$TMP/out")"
    fi
fi
# a dimension that is not a multiple of the vector width, and duplicate rows (ties go to the lower row)
"$TOOL" random "$TMP/odd_a.npy" 500 37 3
"$TOOL" concat "$TMP/odd.npy" "$TMP/odd_a.npy" "$TMP/odd_a.npy"
"$TOOL" random "$TMP/odd_q.npy" 1 37 4
"$TOOL" topk "$TMP/odd.npy" "$TMP/odd_q.npy" 10 >"$TMP/want_odd.txt"
if run_cli 0 "search D=37 with duplicate rows" search --index "$TMP/odd.npy" --query "$TMP/odd_q.npy" -k 10 --threads 2; then
    same_ranking "D=37, every row twice: ties in row order" "$TMP/out" "$TMP/want_odd.txt"
fi

echo "-- errors"
expect_error 2 "search without a query" "either -m" search --index "$TMP/big.npy"
expect_error 2 "search -m and --query" "either -m" search --index "$TMP/big.npy" --query "$TMP/qs.npy" -m "$MODEL_ABC"
expect_error 1 "search: query of another dimension" "dimension" search --index "$TMP/big.npy" --query "$TMP/odd_q.npy"
expect_error 1 "search: model of another dimension" "32 values" search --index "$TMP/big.npy" -m "$MODEL_ABC" --text hi
printf 'not an npy file at all' >"$TMP/junk.npy"
expect_error 1 "search: not a .npy index" "not a .npy" search --index "$TMP/junk.npy" --query "$TMP/qs.npy"
expect_error 1 "search: missing index" "cannot open" search --index "$TMP/none.npy" --query "$TMP/qs.npy"
head -c 1000 "$TMP/big.npy" >"$TMP/trunc.npy"
expect_error 1 "search: truncated index" "truncated" search --index "$TMP/trunc.npy" --query "$TMP/qs.npy"
printf 'a\nb\n' >"$TMP/few.ids"
expect_error 1 "search: ids file of the wrong length" "2 ids for 20000 rows" search --index "$TMP/big.npy" --ids "$TMP/few.ids" --query "$TMP/qs.npy"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
