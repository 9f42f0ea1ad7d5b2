#!/usr/bin/env bash
# `abc serve` end to end (issue #23, README "Serving"), on 127.0.0.1 with ports the kernel picks.
#
#  1. the curl examples of README "Serving" (cut out of README.md and run as written, port replaced):
#     image + instruction, a list of texts, base64; every vector equal to `abc embed`'s, bit for bit
#  2. the official `openai` Python package (in a virtualenv: $ABC_TEST_VENV if it has openai, else one
#     made here with pip; skipped with the reason when that fails)
#  3. load: 1000 requests over 16 keep-alive connections (build/tool_http_load) against the release
#     ./abc: all answered 200 with identical bodies, latency percentiles, requests/s, RSS before/after
#  4. hostile input against the sanitizer build, each with its status, the server serving afterwards
#  5. SIGTERM while a request is in flight: that request is answered, exit status 0
# (1. also: return_multivector on colqwen2 and jina-v4 against abc embed --multi-vector, /v1/models)
# Every server started is killed on exit (trap). Ends with "RESULT passed failed skipped".
set -u

ABC=${ABC_CLI:-build/abc-san}   # the binary under test for correctness and hostile input
# The load test runs the release build (sanitizers would distort RSS) on an image + instruction query;
# with ABC_CLI set (tests/cross/run_cross.sh: another target, maybe emulated) it runs that build on a
# text-only request instead, which an emulator gets through in seconds rather than many minutes.
REL=${ABC_REL:-${ABC_CLI:-./abc}}
LOAD_TEXT_ONLY=0
[ -n "${ABC_CLI:-}" ] && LOAD_TEXT_ONLY=1
LOAD=build/tool_http_load
MODEL=build/tiny-abc.abc
MODEL_VLM=build/tiny-vlm2vec.abc
IMG=tests/fixtures/images
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

REPO=$(pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_serve.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

passed=0; failed=0; skipped=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1"; }

for f in "$ABC" "$REL" "$LOAD" "$MODEL" "$MODEL_VLM"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; echo "RESULT $passed $failed $skipped"; exit 1; fi
done
if ! command -v curl >/dev/null; then
    # every check here talks HTTP through curl (the README's examples are curl commands): one counted skip
    echo "SKIP abc serve: curl is not installed (Debian: curl)"; echo "RESULT $passed $failed $((skipped + 1))"; exit 0
fi

# start_server NAME BINARY ARGS...: starts BINARY serve ARGS --port 0, waits for its "listening" line;
# sets SPID and SPORT. The log is $TMP/NAME.log.
start_server() {
    local name=$1 bin=$2; shift 2
    "$bin" serve "$@" --port 0 2>"$TMP/$name.log" &
    SPID=$!
    PIDS+=("$SPID")
    SPORT=
    local i
    for i in $(seq 1 300); do
        SPORT=$(grep -o '"event":"listening","host":"[^"]*","port":[0-9]*' "$TMP/$name.log" 2>/dev/null | grep -o '[0-9]*$')
        [ -n "$SPORT" ] && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    bad "$name: server did not start"; sed 's/^/    /' "$TMP/$name.log" | head -20
    return 1
}

# stop_server NAME PID: SIGTERM, exit status 0, no sanitizer report in the log.
stop_server() {
    local name=$1 pid=$2 rc
    kill -TERM "$pid"
    wait "$pid"; rc=$?
    if [ "$rc" -eq 0 ]; then ok "$name: SIGTERM → exit 0"; else bad "$name: exit $rc after SIGTERM"; fi
    if grep -q -e 'Sanitizer' -e 'runtime error:' "$TMP/$name.log"; then
        bad "$name: sanitizer report"; grep -A30 -e 'Sanitizer' -e 'runtime error:' "$TMP/$name.log" | head -40
    else
        ok "$name: no sanitizer report"
    fi
}

# The embedding vector(s) of a response as `abc embed` prints them: one line per vector.
vectors() { grep -o '"embedding":\[[^]]*\]' | sed -e 's/"embedding":\[//' -e 's/\]$//' -e 's/,/ /g'; }
status_of() { head -n 1 | awk '{print $2}'; }

# post PORT JSON_FILE [curl args...]: prints "STATUS" on the first line then the body
post() {
    local port=$1 file=$2; shift 2
    curl -s -o "$TMP/body" -w '%{http_code}\n' "http://127.0.0.1:$port/v1/embeddings" \
        -H 'Content-Type: application/json' --data-binary @"$file" "$@"
    cat "$TMP/body"; echo
}

expect_status() { # expect_status LABEL WANT GOT [BODY_PATTERN BODY]
    local label=$1 want=$2 got=$3
    if [ "$got" != "$want" ]; then bad "$label: status $got, expected $want"; return 1; fi
    if [ $# -ge 5 ] && ! printf '%s' "$5" | grep -Eq -- "$4"; then
        bad "$label: body does not match /$4/: $(printf '%s' "$5" | head -c 300)"; return 1
    fi
    ok "$label ($got)"
}

# expect_post LABEL PORT WANT PATTERN JSON: POST JSON, expect status WANT and PATTERN in the body
expect_post() {
    printf '%s' "$5" >"$TMP/req.json"
    local out
    out=$(post "$2" "$TMP/req.json")
    expect_status "$1" "$3" "$(printf '%s\n' "$out" | head -n1)" "$4" "$out"
}

# ================= 0. the command line =================
cli() { # cli LABEL WANT_RC PATTERN ARGS...
    local label=$1 want=$2 pattern=$3; shift 3
    "$ABC" serve "$@" >"$TMP/cli.out" 2>"$TMP/cli.err"
    local rc=$?
    if [ "$rc" = "$want" ] && grep -Eq -- "$pattern" "$TMP/cli.out" "$TMP/cli.err"; then ok "$label (exit $rc)"
    else bad "$label: exit $rc, expected $want, output: $(head -c 300 "$TMP/cli.err")"; fi
}
cli "serve --help" 0 'usage: abc serve' --help
cli "serve without -m" 2 'usage error: serve: -m MODEL is required' --port 0
cli "serve --port 70000" 2 'usage error: --port must be an integer from 0 to 65535' -m "$MODEL" --port 70000
cli "serve --workers 0" 2 'usage error: --workers' -m "$MODEL" --workers 0
cli "serve --bogus" 2 "unknown option '--bogus'" -m "$MODEL" --bogus
cli "serve --max-multivector-floats 0" 2 'usage error: --max-multivector-floats must be an integer from 1 to 268435456' \
    -m "$MODEL" --max-multivector-floats 0
cli "serve with a missing model file" 1 '^abc: error: input/output error' -m "$TMP/missing.abc" --port 0
cli "serve --allow-local-files on a missing directory" 1 '^abc: error: --allow-local-files' -m "$MODEL" --allow-local-files "$TMP/nodir"

# ================= 1. the README examples =================
start_server main "$ABC" -m "$MODEL" --workers 2 --threads 1 || { echo "RESULT $passed $failed $skipped"; exit 1; }
MAIN_PID=$SPID; PORT=$SPORT

cli "serve on a port in use" 1 '^abc: error: cannot listen' -m "$MODEL" --port "$PORT" --host 127.0.0.1
health=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$PORT/health")
expect_status "GET /health" 200 "${health##* }" '"status":"ok"' "$health"
models=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$PORT/v1/models")
expect_status "GET /v1/models" 200 "${models##* }" \
    '"id":"tiny-abc".*"embedding_dim":32.*"tasks":\[\],"default_task":null,"matryoshka_dims":\[\],"multi_vector":false,"multi_vector_dim":0' "$models"
expect_post "return_multivector on a single-vector model" "$PORT" 400 \
    'preset abc\) has no multi-vector output.*"param":"return_multivector"' '{"input":"x","return_multivector":true}'

# readme_example NAME: the ```sh block after "<!-- serve-example: NAME -->" in README.md
readme_example() {
    awk -v tag="<!-- serve-example: $1 -->" '
        $0 == tag { found = 1; next }
        found && /^```/ { if (inblock) exit; inblock = 1; next }
        inblock { print }' README.md
}
mkdir -p "$TMP/ex"
ln -s "$REPO/tests" "$TMP/ex/tests"
run_example() { # run_example NAME: runs the block in $TMP/ex with the port replaced; output in $TMP/ex/NAME.out
    local script
    script=$(readme_example "$1")
    if [ -z "$script" ]; then bad "README example '$1' not found"; return 1; fi
    script=${script//127.0.0.1:8080/127.0.0.1:$PORT}
    (cd "$TMP/ex" && bash -e -c "$script") >"$TMP/ex/$1.out" 2>"$TMP/ex/$1.err"
    local rc=$?
    if [ "$rc" -ne 0 ]; then bad "README example '$1': exit $rc"; sed 's/^/    /' "$TMP/ex/$1.err" | head; return 1; fi
}

if run_example query; then
    "$ABC" embed -m "$MODEL" --image "$IMG/astronaut_rst.jpg" --text "What is the person holding?" --threads 1 >"$TMP/ref_query" 2>&1
    if [ "$(vectors <"$TMP/ex/query.out")" = "$(cat "$TMP/ref_query")" ] && [ -s "$TMP/ref_query" ]; then
        ok "README query example (data: URL JPEG + instruction): vector equal to abc embed's ($(wc -w <"$TMP/ref_query") values)"
    else
        bad "README query example differs from abc embed"; head -c 400 "$TMP/ex/query.out"; echo; head -c 400 "$TMP/ref_query"
    fi
    grep -q '"object":"list","data":\[{"object":"embedding","index":0,"embedding":\[' "$TMP/ex/query.out" &&
        grep -q '"model":"tiny-abc","usage":{"prompt_tokens":[1-9][0-9]*,"total_tokens":[1-9]' "$TMP/ex/query.out" &&
        ok "query response has OpenAI's shape and non-zero usage" || bad "query response shape: $(head -c 300 "$TMP/ex/query.out")"
fi
if run_example texts; then
    "$ABC" embed -m "$MODEL" --text "a photo of an astronaut" --threads 1 >"$TMP/ref_t0" 2>&1
    "$ABC" embed -m "$MODEL" --text "a cup of coffee" --threads 1 >"$TMP/ref_t1" 2>&1
    if [ "$(vectors <"$TMP/ex/texts.out")" = "$(cat "$TMP/ref_t0" "$TMP/ref_t1")" ]; then
        ok "README text-list example: both vectors equal to abc embed's"
    else
        bad "README text-list example differs from abc embed"
    fi
fi
if run_example base64; then
    "$ABC" embed -m "$MODEL" --text "a cup of coffee" --threads 1 -o "$TMP/ref_b64.npy" 2>/dev/null
    grep -o '"embedding":"[^"]*"' "$TMP/ex/base64.out" | sed -e 's/"embedding":"//' -e 's/"$//' | base64 -d >"$TMP/b64.bin"
    if [ "$(stat -c %s "$TMP/b64.bin")" -eq 128 ] && tail -c 128 "$TMP/ref_b64.npy" | cmp -s - "$TMP/b64.bin"; then
        ok "README base64 example: 128 bytes, identical to the float32 data of abc embed -o"
    else
        bad "README base64 example: bytes differ from abc embed -o"
    fi
fi

# The other request shapes and fields, against abc embed as well.
printf '{"model":"tiny-abc","messages":[{"role":"user","content":"a cup of coffee"}],"encoding_format":"float"}' >"$TMP/chat_text.json"
out=$(post "$PORT" "$TMP/chat_text.json")
[ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_t1")" ] && ok "messages with plain-string content = abc embed --text" ||
    bad "messages with plain-string content differs"
printf '{"input":"a cup of coffee","abc_role":"query"}' >"$TMP/role.json"
"$ABC" embed -m "$MODEL" --text "a cup of coffee" --role query --threads 1 >"$TMP/ref_role" 2>&1
out=$(post "$PORT" "$TMP/role.json")
[ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_role")" ] && ! cmp -s "$TMP/ref_role" "$TMP/ref_t1" &&
    ok "abc_role \"query\" = abc embed --role query (and differs from the candidate)" || bad "abc_role query"
printf '{"input":"a cup of coffee","dimensions":8}' >"$TMP/dims.json"
out=$(post "$PORT" "$TMP/dims.json")
n=$(printf '%s\n' "$out" | sed 1d | vectors | wc -w)
norm=$(printf '%s\n' "$out" | sed 1d | vectors | awk '{s = 0; for (i = 1; i <= NF; i++) s += $i * $i; printf "%.5f", s}')
[ "$n" = 8 ] && [ "$norm" = "1.00000" ] && ok "dimensions 8: 8 values, unit norm" || bad "dimensions 8: $n values, norm² $norm"
printf '{"input":"x","task":"code"}' >"$TMP/task_none.json"
out=$(post "$PORT" "$TMP/task_none.json")
expect_status "task on a model without task adapters" 400 "$(printf '%s\n' "$out" | head -n1)" 'no task adapters.*"param":"task"' "$out"
printf '{"model":"tiny-vlm2vec","input":"x"}' >"$TMP/wrong_model.json"
out=$(post "$PORT" "$TMP/wrong_model.json")
expect_status "unknown model" 404 "$(printf '%s\n' "$out" | head -n1)" '"code":"model_not_found"' "$out"
out=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$PORT/v1/embeddings")
expect_status "GET /v1/embeddings" 405 "$(printf '%s\n' "$out" | tail -n1)" '"error":' "$out"
out=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$PORT/nope")
expect_status "unknown path" 404 "$(printf '%s\n' "$out" | tail -n1)" '"error":' "$out"

# The other presets through the chat shape, each on a server of its own: VLM2Vec (Qwen2-VL) and VLM2Vec
# on Phi-3.5-V (build/tiny-phi3v.abc, when built: tests/test_phi3v.sh needs it too)
chat_img=$(base64 -w0 "$IMG/astronaut_rst.jpg")
printf '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,%s"}},{"type":"text","text":"Represent the given image."}]}]}' "$chat_img" >"$TMP/vlm.json"
for m in "$MODEL_VLM" build/tiny-phi3v.abc; do
    name=$(basename "$m" .abc)
    if [ ! -e "$m" ]; then bad "$m is missing (run 'make test')"; continue; fi
    start_server "$name" "$ABC" -m "$m" --threads 1 || continue
    out=$(post "$SPORT" "$TMP/vlm.json")
    "$ABC" embed -m "$m" --image "$IMG/astronaut_rst.jpg" --text "Represent the given image." --threads 1 >"$TMP/ref_$name" 2>&1
    [ "$(printf '%s\n' "$out" | head -n1)" = 200 ] && [ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_$name")" ] &&
        grep -q "\"model\":\"$name\"" "$TMP/body" &&
        ok "$name: chat image + text equal to abc embed's" || bad "$name chat request: $(printf '%s' "$out" | head -c 300)"
    stop_server "$name" "$SPID"
done

# jina-v4 (task adapters, Matryoshka dims 8 16 32): "task" and "dimensions" reach abc_input, as abc embed's
# --task and --dim (bit for bit); a task or dims the file does not list is a 400 naming the allowed ones
JINA=build/tiny-jina.abc
P="Paris is the capital and largest city of France."
if [ ! -e "$JINA" ]; then bad "$JINA is missing (run 'make test')"
elif start_server jina "$ABC" -m "$JINA" --threads 1; then
    printf '{"input":"%s","abc_role":"candidate","task":"code"}' "$P" >"$TMP/jina_task.json"
    "$ABC" embed -m "$JINA" --text "$P" --role candidate --task code --threads 1 >"$TMP/ref_jina_code" 2>&1
    "$ABC" embed -m "$JINA" --text "$P" --role candidate --threads 1 >"$TMP/ref_jina_default" 2>&1
    out=$(post "$SPORT" "$TMP/jina_task.json")
    [ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_jina_code")" ] &&
        ! cmp -s "$TMP/ref_jina_code" "$TMP/ref_jina_default" &&
        ok "jina: task \"code\" = abc embed --task code (and differs from the default task)" ||
        bad "jina task code: $(printf '%s' "$out" | head -c 300)"
    printf '{"input":"%s","abc_role":"candidate","task":"code","dimensions":8}' "$P" >"$TMP/jina_dim.json"
    "$ABC" embed -m "$JINA" --text "$P" --role candidate --task code --dim 8 --threads 1 >"$TMP/ref_jina_d8" 2>&1
    out=$(post "$SPORT" "$TMP/jina_dim.json")
    [ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_jina_d8")" ] &&
        [ "$(wc -w <"$TMP/ref_jina_d8")" = 8 ] && ok "jina: dimensions 8 = abc embed --dim 8 (the library's Matryoshka cut)" ||
        bad "jina dimensions 8: $(printf '%s' "$out" | head -c 300)"
    expect_post "jina: dimensions 12 (not a Matryoshka dim)" "$SPORT" 400 \
        'Matryoshka dims: 8, 16, 32.*"param":"dimensions"' '{"input":"x","dimensions":12}'
    expect_post "jina: unknown task" "$SPORT" 400 'tasks: retrieval, text-matching, code' \
        '{"input":"x","task":"classification"}'
    expect_post "jina: task not a string" "$SPORT" 400 '"param":"task"' '{"input":"x","task":7}'
    stop_server jina "$SPID"
fi

# Multi-vector output ("return_multivector": true): every input's [T, D] token vectors equal to abc embed
# --multi-vector's, as printed rows (%.9g, which reads back to the same float32) and as base64 of the
# .npy's little-endian float32 bytes; /v1/models lists what a client may ask; the limit of
# --max-multivector-floats (set here to 1.5 inputs' worth: one input passes, two are refused).
# mv_rows N < BODY: input N's token vectors of a float response, one row per line as abc embed prints them
mv_rows() { grep -o '"embeddings":\[\[[^}]*' | sed -n "$(($1 + 1))p" |
    sed -e 's/^"embeddings":\[\[//' -e 's/\]\]$//' -e 's/\],\[/\n/g' -e 's/,/ /g'; }
# mv_b64 N < BODY: input N's base64 string, decoded
mv_b64() { grep -o '"embeddings":"[^"]*"' | sed -n "$(($1 + 1))p" | cut -d'"' -f4 | base64 -d; }
COLQ=build/tiny-colqwen2.abc
CQ="What is in the cup?"; CD="A cup of coffee on a table."
if [ ! -e "$COLQ" ] || [ ! -e "$JINA" ]; then bad "$COLQ or $JINA is missing (run 'make test')"
else
    "$ABC" embed -m "$COLQ" --text "$CQ" --multi-vector --threads 1 >"$TMP/ref_mv0" 2>&1
    "$ABC" embed -m "$COLQ" --text "$CD" --role candidate --multi-vector --threads 1 -o "$TMP/ref_mv1.npy" 2>/dev/null
    "$ABC" embed -m "$COLQ" --text "$CD" --role candidate --multi-vector --threads 1 >"$TMP/ref_mv1" 2>&1
    T0=$(wc -l <"$TMP/ref_mv0"); T1=$(wc -l <"$TMP/ref_mv1")
    if start_server colqwen2 "$ABC" -m "$COLQ" --threads 1 --max-multivector-floats $((T0 * 128 * 3 / 2)); then
        models=$(curl -s "http://127.0.0.1:$SPORT/v1/models")
        printf '%s' "$models" | grep -q '"embedding_dim":0,"preset":"colqwen2","tasks":\[\],"default_task":null,"matryoshka_dims":\[\],"multi_vector":true,"multi_vector_dim":128' &&
            ok "colqwen2: /v1/models lists the multi-vector output" || bad "colqwen2 /v1/models: $models"
        printf '{"input":"%s","return_multivector":true}' "$CQ" >"$TMP/mv0.json"
        out=$(post "$SPORT" "$TMP/mv0.json")
        [ "$(printf '%s\n' "$out" | head -n1)" = 200 ] && [ "$T0" -gt 1 ] &&
            grep -q "\"index\":0,\"n_vectors\":$T0,\"dim\":128," "$TMP/body" &&
            [ "$(mv_rows 0 <"$TMP/body")" = "$(cat "$TMP/ref_mv0")" ] &&
            ok "colqwen2: return_multivector = abc embed --multi-vector ($T0 rows, every value)" ||
            bad "colqwen2 return_multivector: $(printf '%s' "$out" | head -c 300)"
        printf '{"input":"%s","abc_role":"candidate","return_multivector":true,"encoding_format":"base64"}' "$CD" >"$TMP/mv1.json"
        out=$(post "$SPORT" "$TMP/mv1.json")
        tail -c $((T1 * 128 * 4)) "$TMP/ref_mv1.npy" >"$TMP/ref_mv1.raw"
        [ "$(printf '%s\n' "$out" | head -n1)" = 200 ] && grep -q "\"n_vectors\":$T1,\"dim\":128," "$TMP/body" &&
            mv_b64 0 <"$TMP/body" | cmp -s - "$TMP/ref_mv1.raw" &&
            ok "colqwen2: base64 = the bytes of abc embed --multi-vector -o's .npy ($T1 x 128 float32)" ||
            bad "colqwen2 base64: $(printf '%s' "$out" | head -c 300)"
        expect_post "colqwen2: two inputs past --max-multivector-floats" "$SPORT" 400 \
            'max-multivector-floats.*"code":"output_too_large"' "$(printf '{"input":["%s","%s"],"return_multivector":true}' "$CQ" "$CQ")"
        expect_post "colqwen2: a single-vector request says what to send" "$SPORT" 400 \
            'one vector per token.*send \\"return_multivector\\": true' "$(printf '{"input":"%s"}' "$CQ")"
        expect_post "colqwen2: dimensions with return_multivector" "$SPORT" 400 '"param":"dimensions"' \
            '{"input":"x","return_multivector":true,"dimensions":8}'
        expect_post "colqwen2: return_multivector not a boolean" "$SPORT" 400 'must be true or false' \
            '{"input":"x","return_multivector":"yes"}'
        stop_server colqwen2 "$SPID"
    fi
    # jina-v4: both outputs; the token vectors under the request's task
    "$ABC" embed -m "$JINA" --text "$P" --role candidate --task code --multi-vector --threads 1 >"$TMP/ref_jmv" 2>&1
    if start_server jina_mv "$ABC" -m "$JINA" --threads 1; then
        models=$(curl -s "http://127.0.0.1:$SPORT/v1/models")
        printf '%s' "$models" | grep -q '"embedding_dim":32,"preset":"jina-v4","tasks":\["retrieval","text-matching","code"\],"default_task":"retrieval","matryoshka_dims":\[8,16,32\],"multi_vector":true,"multi_vector_dim":16' &&
            ok "jina: /v1/models lists tasks, default, Matryoshka dims, multi-vector" || bad "jina /v1/models: $models"
        printf '{"input":["%s","%s"],"abc_role":"candidate","task":"code","return_multivector":true}' "$P" "$P" >"$TMP/jmv.json"
        out=$(post "$SPORT" "$TMP/jmv.json")
        [ "$(printf '%s\n' "$out" | head -n1)" = 200 ] && [ "$(mv_rows 1 <"$TMP/body")" = "$(cat "$TMP/ref_jmv")" ] &&
            [ "$(mv_rows 0 <"$TMP/body")" = "$(cat "$TMP/ref_jmv")" ] &&
            ok "jina: return_multivector with task code = abc embed --multi-vector --task code (both inputs)" ||
            bad "jina return_multivector: $(printf '%s' "$out" | head -c 300)"
        stop_server jina_mv "$SPID"
    fi
fi

# ================= 2. the openai package =================
PY=
if [ -n "${ABC_TEST_VENV:-}" ] && "$ABC_TEST_VENV/bin/python" -c 'import openai' 2>/dev/null; then
    PY=$ABC_TEST_VENV/bin/python
elif command -v python3 >/dev/null && python3 -m venv "$TMP/venv" >"$TMP/venv.log" 2>&1 &&
    timeout 300 "$TMP/venv/bin/pip" install -q openai >>"$TMP/venv.log" 2>&1; then
    PY=$TMP/venv/bin/python
fi
if [ -z "$PY" ]; then
    skip "openai client: cannot make a virtualenv with the openai package (python3-venv, python3-pip and access to PyPI are needed): $(tail -n 1 "$TMP/venv.log" 2>/dev/null)"
else
    "$PY" tests/serve_openai_client.py "$PORT" tiny-abc "$IMG/palette_color.png" "a photo of an astronaut" "a cup of coffee" \
        >"$TMP/py.out" 2>"$TMP/py.err"
    rc=$?
    "$ABC" embed -m "$MODEL" --image "$IMG/palette_color.png" --text "a photo of an astronaut" --threads 1 >"$TMP/ref_chat" 2>&1
    if [ "$rc" -ne 0 ]; then
        bad "openai client: exit $rc"; sed 's/^/    /' "$TMP/py.err" | tail -20
    else
        [ "$(grep '^text 0 ' "$TMP/py.out" | cut -d' ' -f3-)" = "$(cat "$TMP/ref_t0")" ] &&
            [ "$(grep '^text 1 ' "$TMP/py.out" | cut -d' ' -f3-)" = "$(cat "$TMP/ref_t1")" ] &&
            ok "openai client.embeddings.create (default base64 encoding): equal to abc embed" || bad "openai embeddings.create (base64)"
        [ "$(grep '^float 0 ' "$TMP/py.out" | cut -d' ' -f3-)" = "$(cat "$TMP/ref_t0")" ] &&
            [ "$(grep '^float 1 ' "$TMP/py.out" | cut -d' ' -f3-)" = "$(cat "$TMP/ref_t1")" ] &&
            ok "openai client.embeddings.create(encoding_format=float): equal to abc embed" || bad "openai embeddings.create (float)"
        "$ABC" embed -m "$MODEL" --text "a photo of an astronaut" --role query --threads 1 >"$TMP/ref_q0" 2>&1
        [ "$(grep '^query ' "$TMP/py.out" | cut -d' ' -f2-)" = "$(cat "$TMP/ref_q0")" ] &&
            ok "openai extra_body={\"abc_role\":\"query\"}: equal to abc embed --role query" || bad "openai extra_body abc_role"
        [ "$(grep '^chat ' "$TMP/py.out" | cut -d' ' -f2-)" = "$(cat "$TMP/ref_chat")" ] &&
            ok "openai client.post vLLM multimodal messages: equal to abc embed --image --text" || bad "openai multimodal messages"
        [ "$(grep '^chat_extra_body ' "$TMP/py.out" | cut -d' ' -f2-)" = "$(cat "$TMP/ref_chat")" ] &&
            ok "openai embeddings.create(input=\"\", extra_body={\"messages\": ...}): equal to abc embed --image --text" ||
            bad "openai extra_body messages"
    fi
fi

# ================= 3. load =================
# Where the build under load is a sanitizer build (the cross runs' scalar target), ASan's quarantine of
# freed blocks would read as growth: it is turned off for this server only.
saved_asan=${ASAN_OPTIONS-}
export ASAN_OPTIONS=${saved_asan:+$saved_asan:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0
start_server load "$REL" -m "$MODEL" --workers 2 --threads 1 --quiet
if [ -n "$saved_asan" ]; then export ASAN_OPTIONS=$saved_asan; else unset ASAN_OPTIONS; fi
LPID=$SPID; LPORT=$SPORT
LIMG=$(base64 -w0 "$IMG/palette_color.png")
printf '{"model":"tiny-abc","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}},{"type":"text","text":"What is shown?"}]}]}' "$LIMG" >"$TMP/load.json"
LOAD_REF=(--image "$IMG/palette_color.png" --text "What is shown?")
if [ "$LOAD_TEXT_ONLY" = 1 ]; then
    printf '{"model":"tiny-abc","input":"What is shown?"}' >"$TMP/load.json"
    LOAD_REF=(--text "What is shown?")
fi
rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
"$LOAD" load "$LPORT" "$TMP/load.json" 200 16 120 >"$TMP/warm.out" 2>&1
rss0=$(rss "$LPID" VmRSS)
"$LOAD" load "$LPORT" "$TMP/load.json" 1000 16 300 >"$TMP/load1.out" 2>"$TMP/load1.err"; rc1=$?
rss1=$(rss "$LPID" VmRSS); hwm1=$(rss "$LPID" VmHWM)
"$LOAD" load "$LPORT" "$TMP/load.json" 1000 16 300 >"$TMP/load2.out" 2>"$TMP/load2.err"; rc2=$?
rss2=$(rss "$LPID" VmRSS); hwm2=$(rss "$LPID" VmHWM)
echo "     load run 1: $(cat "$TMP/load1.out")"
echo "     load run 2: $(cat "$TMP/load2.out")"
echo "     server RSS: after warm-up ${rss0} kB, after run 1 ${rss1} kB (peak ${hwm1} kB), after run 2 ${rss2} kB (peak ${hwm2} kB)"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && grep -q '^requests 1000 ok 1000 errors 0 ' "$TMP/load1.out" &&
    grep -q '^requests 1000 ok 1000 errors 0 ' "$TMP/load2.out" &&
    ok "load: 2×1000 requests over 16 keep-alive connections, all 200 with identical bodies" ||
    { bad "load: errors"; head -5 "$TMP/load1.err" "$TMP/load2.err"; }
# steady: the second 1000 requests raise neither the peak nor the resident set by more than 1 MB
[ -n "$hwm2" ] && [ $((hwm2 - hwm1)) -le 1024 ] && [ $((rss2 - rss1)) -le 1024 ] &&
    ok "load: peak RSS steady across the runs (+$((hwm2 - hwm1)) kB peak, +$((rss2 - rss1)) kB resident)" ||
    bad "load: RSS grew (peak $hwm1 → $hwm2 kB, resident $rss1 → $rss2 kB)"
curl -s "http://127.0.0.1:$LPORT/v1/embeddings" --data-binary @"$TMP/load.json" | vectors >"$TMP/load_vec"
"$REL" embed -m "$MODEL" "${LOAD_REF[@]}" --threads 1 >"$TMP/ref_load"
cmp -s "$TMP/load_vec" "$TMP/ref_load" && ok "load request's vector equal to abc embed's" || bad "load vector differs"
stop_server load "$LPID"

# ================= 4. hostile input =================
ALLOW=$TMP/allowed
mkdir -p "$ALLOW" "$TMP/outside"
cp "$IMG/palette_color.png" "$ALLOW/ok.png"
cp "$IMG/palette_color.png" "$TMP/outside/secret.png"
ln -s "$TMP/outside/secret.png" "$ALLOW/link.png"
KEY=s3cret-key-123
start_server hostile "$ABC" -m "$MODEL" --workers 1 --threads 1 --api-key "$KEY" --max-body 1048576 --timeout 3 \
    --allow-local-files "$ALLOW" --queue 1 --max-connections 4 || { echo "RESULT $passed $failed $skipped"; exit 1; }
HPID=$SPID; HPORT=$SPORT
AUTH=(-H "Authorization: Bearer $KEY")

# raw LABEL WANT_STATUS PATTERN [tool args...] < request bytes
raw() {
    local label=$1 want=$2 pattern=$3; shift 3
    "$LOAD" raw "$HPORT" "$@" >"$TMP/raw.out" 2>"$TMP/raw.err"
    local got
    got=$(status_of <"$TMP/raw.out")
    expect_status "$label" "$want" "$got" "$pattern" "$(cat "$TMP/raw.out")"
}
H="Host: x\r\nAuthorization: Bearer $KEY\r\n"

out=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$HPORT/health")
expect_status "no API key" 401 "$(printf '%s\n' "$out" | tail -n1)" '"type":"authentication_error"' "$out"
out=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer wrong-key-123" "http://127.0.0.1:$HPORT/health")
expect_status "wrong API key" 401 "$(printf '%s\n' "$out" | tail -n1)" '"type":"authentication_error"' "$out"
out=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer ${KEY}x" "http://127.0.0.1:$HPORT/health")
expect_status "API key with an extra character" 401 "$(printf '%s\n' "$out" | tail -n1)"
out=$(curl -s -w '\n%{http_code}' "${AUTH[@]}" "http://127.0.0.1:$HPORT/health")
expect_status "right API key" 200 "$(printf '%s\n' "$out" | tail -n1)"

printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n{\"input\":" |
    raw "truncated body (client half-closes)" 400 'truncated' --half-close
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n{\"input\":" |
    raw "Content-Length larger than the body (client waits)" 408 'timeout' --wait 8
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 2000000\r\n\r\n" |
    raw "oversized body (Content-Length over --max-body)" 413 'too large'
head -c 1100000 /dev/zero | tr '\0' 'a' >"$TMP/big.txt"
out=$(curl -s -w '\n%{http_code}' "${AUTH[@]}" "http://127.0.0.1:$HPORT/v1/embeddings" --data-binary @"$TMP/big.txt")
expect_status "oversized body sent by curl" 413 "$(printf '%s\n' "$out" | tail -n1)"
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\n{\"input\":\"hello\"}" |
    raw "Content-Length smaller than the body" 400 'invalid JSON'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello" |
    raw "two different Content-Lengths" 400 'conflicting'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello" | raw "Content-Length '+5'" 400 'Content-Length'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" |
    raw "Content-Length with Transfer-Encoding" 400 'both'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" | raw "chunk size not hex" 400 'chunk size'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n" | raw "negative chunk size" 400 'chunk size'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n" | raw "chunk size overflow" 413 'chunk too large'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n" | raw "chunk longer than its size" 400 'CRLF'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n100001\r\n" | raw "chunk over --max-body (1 MiB + 1)" 413 'too large'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n" | raw "unsupported Transfer-Encoding" 501 'chunked'
body='{"input":"a cup of coffee"}'
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n${body:0:5}\r\n%x;ext=1\r\n${body:5}\r\n0\r\nX-Trailer: 1\r\n\r\n" "$((${#body} - 5))" |
    raw "valid chunked body with an extension and a trailer" 200 '"embedding":\['
{ printf "GET /health HTTP/1.1\r\n${H}"; for i in $(seq 1 100); do printf "X-Flood-$i: y\r\n"; done; printf "\r\n"; } |
    raw "header flood (100 fields)" 431 'too many header'
{ printf "GET /health HTTP/1.1\r\n${H}X-Big: "; head -c 20000 /dev/zero | tr '\0' 'a'; printf "\r\n\r\n"; } |
    raw "20 kB header" 431 'too large'
printf "GET /health HTTP/1.1\r\nHost: x\r\n Authorization: Bearer $KEY\r\n\r\n" | raw "obsolete line folding" 400 'folding'
printf "GET /health HTTP/1.1\nHost: x\n\n" | raw "bare LF line ends" 400 'CRLF'
printf "GET /health HTTP/2.0\r\n${H}\r\n" | raw "HTTP/2.0 request line" 505 'HTTP/1'
{ printf "GET /"; head -c 3000 /dev/zero | tr '\0' 'a'; printf " HTTP/1.1\r\n${H}\r\n"; } | raw "3 kB request target" 414 'too long'
printf "GET /health HTTP/1.1\r\n${H}\r\nGET /v1/models HTTP/1.1\r\n${H}Connection: close\r\n\r\n" |
    raw "two pipelined requests on one connection" 200 '"status":"ok"'
[ "$(grep -o 'HTTP/1.1 200 OK' "$TMP/raw.out" | wc -l)" = 2 ] && grep -q '"object":"model"' "$TMP/raw.out" &&
    ok "pipelined: both answered in order" || bad "pipelined: $(head -c 300 "$TMP/raw.out")"
curl -sv -o "$TMP/cont.out" -w '%{http_code}' "${AUTH[@]}" -H 'Expect: 100-continue' "http://127.0.0.1:$HPORT/v1/embeddings" \
    -d '{"input":"a cup of coffee"}' >"$TMP/cont.code" 2>"$TMP/cont.err"
[ "$(cat "$TMP/cont.code")" = 200 ] && grep -q '100 Continue' "$TMP/cont.err" &&
    ok "Expect: 100-continue answered with 100 Continue, then 200" || bad "Expect: 100-continue: $(cat "$TMP/cont.code")"

post_label() { # post_label LABEL WANT PATTERN FILE
    local out
    out=$(post "$HPORT" "$4" "${AUTH[@]}")
    expect_status "$1" "$2" "$(printf '%s\n' "$out" | head -n1)" "$3" "$out"
}
printf '{"input": ["a", }' >"$TMP/bad.json"; post_label "invalid JSON" 400 'invalid JSON' "$TMP/bad.json"
printf '{"input": "caf\xc3\x28"}' >"$TMP/bad.json"; post_label "invalid UTF-8 in a JSON string" 400 'UTF-8' "$TMP/bad.json"
printf '{"input": "\\ud800"}' >"$TMP/bad.json"; post_label "lone surrogate escape" 400 'surrogate' "$TMP/bad.json"
printf '{"input": "a", "input": "b"}' >"$TMP/bad.json"; post_label "duplicate key" 400 'duplicate' "$TMP/bad.json"
printf '{"input": [1, 2, 3]}' >"$TMP/bad.json"; post_label "token-id input" 400 'token' "$TMP/bad.json"
printf '{"input": "x", "messages": [{"role":"user","content":"y"}]}' >"$TMP/bad.json"; post_label "both input and messages" 400 'not both' "$TMP/bad.json"
printf '{"input": "x", "encoding_format": "int8"}' >"$TMP/bad.json"; post_label "bad encoding_format" 400 'encoding_format' "$TMP/bad.json"
{ printf '{"input":'; for i in $(seq 1 100); do printf '['; done; } >"$TMP/bad.json"; post_label "deep nesting" 413 'nesting deeper than' "$TMP/bad.json"
chat() { # chat URL TEXT > file: a vLLM chat request with one image URL
    printf '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"%s"}},{"type":"text","text":"%s"}]}]}' "$1" "$2"
}
chat 'data:image/png;base64,iVBORw0KGgo!!!!' "x" >"$TMP/bad.json"; post_label "invalid base64" 400 'base64' "$TMP/bad.json"
chat 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUg' "x" >"$TMP/bad.json"; post_label "truncated PNG" 400 'image' "$TMP/bad.json"
chat 'https://example.com/cat.jpg' "x" >"$TMP/bad.json"; post_label "https:// image URL" 400 'not fetched' "$TMP/bad.json"
"$LOAD" bomb-png "$TMP/bomb.png" 7000 7000
chat "data:image/png;base64,$(base64 -w0 "$TMP/bomb.png")" "x" >"$TMP/bomb.json"
post_label "decompression-bomb PNG ($(stat -c %s "$TMP/bomb.png") bytes, 7000x7000)" 400 'pixels' "$TMP/bomb.json"
{ printf '{"input":['; for i in $(seq 1 9999); do printf '"a",'; done; printf '"a"]}'; } >"$TMP/many.json"
post_label "10000 tiny inputs in one request" 400 'more than the limit' "$TMP/many.json"
{ printf '{"input":['; for i in $(seq 1 63); do printf '"a%d",' "$i"; done; printf '"a64"]}'; } >"$TMP/64.json"
out=$(post "$HPORT" "$TMP/64.json" "${AUTH[@]}")
n=$(printf '%s\n' "$out" | sed 1d | vectors | wc -l)
[ "$n" = 64 ] && ok "64 inputs in one request: 64 vectors" || bad "64 inputs: $n vectors"

# file:// under --allow-local-files
chat "file://$ALLOW/ok.png" "What is shown?" >"$TMP/f.json"
out=$(post "$HPORT" "$TMP/f.json" "${AUTH[@]}")
"$ABC" embed -m "$MODEL" --image "$IMG/palette_color.png" --text "What is shown?" --threads 1 >"$TMP/ref_file" 2>&1
[ "$(printf '%s\n' "$out" | head -n1)" = 200 ] && [ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_file")" ] &&
    ok "file:// inside --allow-local-files: equal to abc embed" || bad "file:// inside the directory: $(printf '%s' "$out" | head -c 300)"
chat "file://$ALLOW/../outside/secret.png" "x" >"$TMP/f.json"; post_label "file:// with .." 403 'path_not_allowed' "$TMP/f.json"
chat "file://$ALLOW/%2e%2e/outside/secret.png" "x" >"$TMP/f.json"; post_label "file:// with %2e%2e" 403 'path_not_allowed' "$TMP/f.json"
chat "file://$ALLOW/link.png" "x" >"$TMP/f.json"; post_label "file:// symlink escaping the directory" 403 'outside the directory' "$TMP/f.json"
chat "file://$TMP/outside/secret.png" "x" >"$TMP/f.json"; post_label "file:// outside the directory" 403 'outside the directory' "$TMP/f.json"

# slowloris: one byte every 300 ms; --timeout 3 drops it with 408 while other clients are served
printf "POST /v1/embeddings HTTP/1.1\r\n${H}Content-Length: 20\r\n\r\n{\"input\":\"slowloris\"}" >"$TMP/slow.req"
"$LOAD" raw "$HPORT" --slow-ms 300 --wait 10 <"$TMP/slow.req" >"$TMP/slow.out" 2>"$TMP/slow.err" &
SLOW=$!
PIDS+=("$SLOW")
sleep 1
t0=$(date +%s%N)
out=$(curl -s -w '\n%{http_code}' "${AUTH[@]}" "http://127.0.0.1:$HPORT/health")
ms=$((($(date +%s%N) - t0) / 1000000))
expect_status "another client served during the slowloris (${ms} ms)" 200 "$(printf '%s\n' "$out" | tail -n1)"
wait "$SLOW"
expect_status "slowloris dropped after --timeout 3 ($(cat "$TMP/slow.err"))" 408 "$(status_of <"$TMP/slow.out")" 'timeout' "$(cat "$TMP/slow.out")"

# queue full: 4 requests of 2000 inputs at once (the --max-connections) to one worker with --queue 1: one
# runs, one waits, those arriving meanwhile are refused with 503; every answer is complete or that 503
{ printf '{"input":['; for i in $(seq 1 1999); do printf '"text %d",' "$i"; done; printf '"text 2000"]}'; } >"$TMP/2000.json"
QS=()
for i in 1 2 3 4; do
    curl -s -o "$TMP/q$i.out" -w '%{http_code}' "${AUTH[@]}" "http://127.0.0.1:$HPORT/v1/embeddings" \
        --data-binary @"$TMP/2000.json" >"$TMP/q$i.code" &
    QS+=($!)
done
wait "${QS[@]}"
n200=0; n503=0; nother=0
for i in 1 2 3 4; do
    code=$(cat "$TMP/q$i.code")
    if [ "$code" = 200 ] && [ "$(vectors <"$TMP/q$i.out" | wc -l)" = 2000 ]; then n200=$((n200 + 1))
    elif [ "$code" = 503 ] && grep -q '"code":"queue_full"' "$TMP/q$i.out"; then n503=$((n503 + 1))
    else nother=$((nother + 1)); fi
done
[ "$n200" -ge 2 ] && [ "$n503" -ge 1 ] && [ "$nother" = 0 ] &&
    ok "queue full (--queue 1, 4 requests at once): $n200 answered with 2000 vectors, $n503 refused with 503 queue_full" ||
    bad "queue full: $n200 complete, $n503 queue_full, $nother other answers"

# connection limit: four idle connections hold every slot (--max-connections 4), a fifth gets 503
CONNS=()
for i in 1 2 3 4; do "$LOAD" raw "$HPORT" --wait 2 </dev/null >/dev/null 2>&1 & CONNS+=($!); PIDS+=($!); done
sleep 0.7
out=$(curl -s -w '\n%{http_code}' "${AUTH[@]}" "http://127.0.0.1:$HPORT/health")
expect_status "connection limit (--max-connections 4, 4 idle connections open)" 503 "$(printf '%s\n' "$out" | tail -n1)" 'too_many_connections' "$out"
wait "${CONNS[@]}"
sleep 0.5 # the server notices the closed connections within its 200 ms poll

# still serving, and the answer is still right
printf '{"input":"a cup of coffee"}' >"$TMP/after.json"
out=$(post "$HPORT" "$TMP/after.json" "${AUTH[@]}")
[ "$(printf '%s\n' "$out" | head -n1)" = 200 ] && [ "$(printf '%s\n' "$out" | sed 1d | vectors)" = "$(cat "$TMP/ref_t1")" ] &&
    ok "after all hostile input: still serving, vector equal to abc embed's" ||
    bad "server not serving correctly after hostile input: $(printf '%s' "$out" | head -c 300)"
grep -q '"method":"POST","path":"/v1/embeddings","status":400,"ms":[0-9.]*,"inputs":0}' "$TMP/hostile.log" &&
    ok "access log: one JSON line per request with method, path, status, ms, inputs" || bad "access log lines missing"
stop_server hostile "$HPID"

# ================= 5. SIGTERM with a request in flight =================
{ printf '{"input":['; for i in $(seq 1 199); do printf '"text %d",' "$i"; done; printf '"text 200"]}'; } >"$TMP/200.json"
curl -s -o "$TMP/inflight.out" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/embeddings" --data-binary @"$TMP/200.json" >"$TMP/inflight.code" &
CURL=$!
sleep 0.3
kill -TERM "$MAIN_PID"
wait "$CURL"
n=$(vectors <"$TMP/inflight.out" | wc -l)
[ "$(cat "$TMP/inflight.code")" = 200 ] && [ "$n" = 200 ] && ok "SIGTERM: the request in flight was answered (200, 200 vectors)" ||
    bad "SIGTERM: in-flight request got $(cat "$TMP/inflight.code") with $n vectors"
wait "$MAIN_PID"; rc=$?
[ "$rc" -eq 0 ] && ok "SIGTERM: exit 0 after finishing" || bad "SIGTERM: exit $rc"
grep -q '"event":"stopped","signal":15' "$TMP/main.log" && ok "SIGTERM: stop logged" || bad "SIGTERM: no stop line"
if grep -q -e 'Sanitizer' -e 'runtime error:' "$TMP/main.log"; then bad "main server: sanitizer report"; grep -A30 Sanitizer "$TMP/main.log" | head -40; else ok "main server: no sanitizer report"; fi

echo "RESULT $passed $failed $skipped"
[ "$failed" -eq 0 ]
