#!/usr/bin/env bash
# `abc bench` on the tiny synthetic model (built in memory: no fixture, no file): the JSON record parses
# and holds every field (README, "abc bench"), the Markdown table has its rows, --compare merges
# records (speed-ups, baseline ratios), --svg writes a well-formed chart, ABC_KERNEL_PATH is honoured
# and recorded, and bad invocations fail with a clear message. Times are not checked (only that they are
# positive and consistent). The JSON and SVG parse checks need python3 (a counted skip without it).
set -u
cd "$(dirname "$0")/.."
ABC=${ABC_CLI:-build/abc-san}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/cli_checks.sh"
skipped=0
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import json, xml.etree.ElementTree' 2>/dev/null; then PY=$p; break; fi
done

if [ ! -x "$ABC" ]; then bad "prerequisite $ABC is missing (run 'make test')"; echo "RESULT $passed $failed"; exit 1; fi

# ---- records: q8 image+text at 1 and 2 threads; f16 vlm2vec text-only at 1 thread ----
if run_cli 0 "bench q8 json" bench --synth tiny --dtype q8 --threads 1,2 --runs 2 --image 112x84 --tokens 20 \
    --label "test machine" --json -o "$TMP/a.json"; then
    if [ -s "$TMP/out" ]; then bad "bench -o: also wrote to stdout"; else ok "bench q8 record written to -o only"; fi
fi
run_cli 0 "bench f16 text-only json" bench --synth tiny --dtype f16 --preset vlm2vec --threads 1 --runs 1 \
    --text-only --json && cp "$TMP/out" "$TMP/b.json" && ok "bench f16 text-only record"
for dt in f32 bf16; do
    run_cli 0 "bench $dt" bench --synth tiny --dtype "$dt" --threads 1 --runs 1 --image 56x56 && ok "bench $dt runs"
done

if [ -n "$PY" ]; then
    version=$("$ABC" --version | head -n 1 | awk '{print $2}')
    check "record a has every field" "$PY" - "$TMP/a.json" "$version" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
m, b, run, res = r["machine"], r["build"], r["run"], r["results"]
assert r["abc_bench"] == 1
assert m["label"] == "test machine" and m["cpu"] and m["cores"] >= 1 and m["simd"]
assert m["kernel_path"] in ("avx512", "avx2", "neon", "neon32", "scalar"), m["kernel_path"]
assert "l2" in m and "l3" in m and m["system_info"].startswith("abc ")
assert b["compiler"] and b["flags"] and b["abc_version"] == sys.argv[2] and b["git_commit"]
assert run["model"] == "tiny synthetic" and run["synthetic"] is True
assert run["dtype"] == "q8" and run["preset"] == "abc"
assert (run["image_width"], run["image_height"]) == (112, 84)
# 112x84 resized within the abc preset's pixel bounds: a whole number of 28x28 tokens, 4 patches each
assert run["image_patches"] == 4 * run["image_tokens"] > 0, run
assert run["text_tokens"] >= 20 and run["sequence_tokens"] > run["image_tokens"] + run["text_tokens"]
assert run["runs"] == 2 and r["setup"]["model_bytes"] > 0
assert [x["threads"] for x in res] == [1, 2]
for x in res:
    assert 0 < x["vision_s"] and 0 < x["prefill_s"] and x["vision_s"] + x["prefill_s"] <= x["embed_s"], x
    assert x["embed_s"] <= x["embed_median_s"] and x["vision_s"] <= x["vision_median_s"], x
    assert x["first_embed_s"] > 0 and x["text_per_s"] > 0 and x["vision_gflops"] > 0 and x["prefill_gflops"] > 0
    assert x["peak_rss_mib"] > 0
assert res[0]["speedup"] == 1.0
assert abs(res[1]["speedup"] - res[0]["embed_s"] / res[1]["embed_s"]) < 0.01 * res[1]["speedup"] + 0.002
EOF
    check "record b: text only, f16, vlm2vec" "$PY" - "$TMP/b.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
run, x = r["run"], r["results"][0]
assert (run["dtype"], run["preset"], run["image"], run["image_tokens"]) == ("f16", "vlm2vec", "none", 0), run
assert x["vision_s"] == 0 and x["prefill_s"] > 0 and x["embed_s"] > 0 and x["text_per_s"] > 0, x
EOF
else
    echo "SKIP bench record checks: python3 not installed"; skipped=$((skipped + 1))
fi

# ---- phi3_v (--synth tiny-phi3v): the HD crops, CLIP + projection timed as the vision side ----
# 500x300 under 4 crops is a 2x2 grid: 5 views of 336x336 (576 patches each) and 2·12·(2·12+1) + 12·13 + 1
# = 757 image tokens; one crop: 1x1, 2 views, 12·13 + 1 + 12·13 = 313 (hd_image_token_count)
for crops in 4 1; do
    if run_cli 0 "bench phi3v num_crops $crops" bench --synth tiny-phi3v --dtype q8 --threads 1 --runs 1 \
        --image 500x300 --tokens 8 --num-crops "$crops" --json; then
        cp "$TMP/out" "$TMP/phi3v-$crops.json"
        if [ -n "$PY" ]; then
            check "phi3v record, num_crops $crops" "$PY" - "$TMP/phi3v-$crops.json" "$crops" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); crops = int(sys.argv[2])
run, x = r["run"], r["results"][0]
views, tokens = {4: (5, 757), 1: (2, 313)}[crops]
assert (run["model"], run["preset"], run["dtype"]) == ("tiny-phi3v synthetic", "vlm2vec-phi3v", "q8"), run
assert (run["num_crops"], run["image_views"], run["image_patches"], run["image_tokens"]) == (crops, views, views * 576, tokens), run
# <s> + the image tokens + <s> + the instruction's tokens (prompt "<|image_1|> {text}")
assert run["sequence_tokens"] == tokens + 2 + run["text_tokens"], run
assert 0 < x["vision_s"] and 0 < x["prefill_s"] and x["vision_s"] + x["prefill_s"] <= x["embed_s"], x
assert x["vision_gflops"] > 0 and x["prefill_gflops"] > 0 and x["text_per_s"] > 0, x
EOF
        fi
    fi
done
for dt in f32 bf16; do
    run_cli 0 "bench phi3v $dt" bench --synth tiny-phi3v --dtype "$dt" --threads 2 --runs 1 --image 56x56 --num-crops 1 &&
        ok "bench phi3v $dt runs"
done
PHI3=${ABC_TINY_PHI3_MODEL:-build/tiny-phi3v.abc}
if [ ! -s "$PHI3" ]; then bad "prerequisite $PHI3 is missing (run 'make test')"
elif run_cli 0 "bench -m phi3v" bench -m "$PHI3" --threads 1 --runs 1 --image 56x56 --num-crops 1 --json; then
    check "bench -m phi3v: the file's preset, its crops, GFLOP/s counted" sh -c \
        "grep -q '\"preset\": \"vlm2vec-phi3v\"' '$TMP/out' && grep -q '\"num_crops\": 1, \"image_views\": 2' '$TMP/out' &&
         ! grep -q '\"vision_gflops\": 0.00' '$TMP/out'"
fi

# ---- a converted file (-m): its dtype and preset come from the file, FLOPs from its sizes ----
TINY=${ABC_TINY_MODEL:-build/tiny-abc.abc}
if [ ! -s "$TINY" ]; then bad "prerequisite $TINY is missing (run 'make test')"
elif run_cli 0 "bench -m" bench -m "$TINY" --threads 1 --runs 1 --image 56x56 --json; then
    check "bench -m: the file's name, dtype and preset; GFLOP/s counted" sh -c \
        "grep -q '\"model\": \"$(basename "$TINY")\", \"synthetic\": false, \"dtype\": \"f32\", \"preset\": \"abc\"' '$TMP/out' &&
         ! grep -q '\"vision_gflops\": 0.00' '$TMP/out'"
fi
expect_error 2 "-m with --dtype" "go with --synth" bench -m "$TINY" --dtype f32

# ---- Markdown ----
if run_cli 0 "bench md" bench --synth tiny --threads 1,2 --runs 1 --image 56x56 --tokens 4; then
    check "md: header and one row per thread count" \
        sh -c "grep -q '^| model | dtype | threads | vision s' '$TMP/out' && [ \$(grep -c '^| tiny synthetic | q8 | [12] |' '$TMP/out') -eq 2 ]"
fi

# ---- kernel path forced through the environment, and recorded ----
if ABC_KERNEL_PATH=scalar run_cli 0 "bench scalar" bench --synth tiny --threads 1 --runs 1 --image 56x56 --json; then
    check "ABC_KERNEL_PATH=scalar is recorded" grep -q '"kernel_path": "scalar"' "$TMP/out"
    cp "$TMP/out" "$TMP/c.json"
fi

# ---- --compare and --svg ----
if run_cli 0 "compare" bench --compare "$TMP/a.json" "$TMP/b.json" "$TMP/c.json" --baseline 1 --svg "$TMP/chart.svg"; then
    check "compare: one row per record and thread count" \
        sh -c "[ \$(grep -c '^| ' '$TMP/out') -eq 5 ] && [ \$(grep -c '^| test machine | tiny synthetic | q8 ' '$TMP/out') -eq 2 ]"
    # record a's own 1-thread row: speed-up 1.00x and 1.00x the baseline (itself)
    check "compare: baseline row is 1.00x" grep -q '^| test machine | tiny synthetic | q8 | abc 112x84 | 1 | .* | 1.00x | 1.00x | [0-9.]*-[0-9.]* |$' "$TMP/out"
    # record b times other work (text only, vlm2vec): no ratio to the baseline
    check "compare: no ratio across different work" grep -q '^| .* | tiny synthetic | f16 | vlm2vec text only | 1 | .* | 1.00x | – | [0-9.]*-[0-9.]* |$' "$TMP/out"
    if [ -n "$PY" ]; then
        check "svg is well-formed with one bar per row" "$PY" - "$TMP/chart.svg" "$TMP/a.json" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg"
rects = root.findall(ns + "rect")
assert len(rects) == 1 + 2 + 4, len(rects)  # the background, the legend (q8, f16) and four bars
texts = " ".join("".join(t.itertext()) for t in root.findall(ns + "text"))
assert "test machine" in texts and " s" in texts and "(load " in texts
# bars share a scale within the same work only: a's two rows, then b and c alone (each its own longest)
bars = [float(r.get("width")) for r in rects[3:]]
import json
a = [x["embed_s"] for x in json.load(open(sys.argv[2]))["results"]]
assert max(bars[:2]) == 520 and bars[2] == 520 and bars[3] == 520, bars
assert abs(min(bars[:2]) / 520 - min(a) / max(a)) < 0.01, (bars, a)
EOF
    else
        echo "SKIP bench svg check: python3 not installed"; skipped=$((skipped + 1))
    fi
fi

# ---- errors ----
echo '{"not": "a record"}' > "$TMP/bad.json"
expect_error 2 "unknown synth size" "qwen2vl-2b, qwen2vl-7b, phi35v, tiny or tiny-phi3v" bench --synth qwen9
expect_error 2 "phi3v preset" "has preset vlm2vec-phi3v" bench --synth tiny-phi3v --preset abc
expect_error 2 "num-crops on qwen2vl" "--num-crops goes with phi3_v" bench --synth tiny --num-crops 4
expect_error 2 "num-crops on a qwen2vl file" "--num-crops goes with phi3_v" bench -m "$TINY" --num-crops 4
expect_error 2 "bad num-crops" "--num-crops must be" bench --synth tiny-phi3v --num-crops 0
expect_error 2 "bad dtype" "--dtype must be" bench --synth tiny --dtype q4
expect_error 2 "bad preset" "preset abc or vlm2vec" bench --synth tiny --preset phi
expect_error 2 "no model" "one of --synth" bench --threads 1
expect_error 2 "bad threads" "--threads must be" bench --synth tiny --threads 1,,2
expect_error 2 "threads trailing comma" "--threads must be" bench --synth tiny --threads 1,
expect_error 2 "threads repeated" "--threads must be" bench --synth tiny --threads 2,2
expect_error 2 "threads zero" "--threads must be" bench --synth tiny --threads 0
expect_error 2 "bad image" "--image must be" bench --synth tiny --image 10y10
expect_error 2 "svg without compare" "--svg goes with --compare" bench --synth tiny --svg "$TMP/x.svg"
expect_error 2 "baseline out of range" "only 1 records" bench --compare "$TMP/b.json" --baseline 2
expect_error 2 "baseline not a record" "is not one of the records" bench --compare "$TMP/b.json" --baseline "$TMP/a.json"
if run_cli 0 "compare, baseline by file" bench --compare "$TMP/a.json" "$TMP/c.json" --baseline "$TMP/c.json"; then
    check "compare: --baseline FILE is that record" grep -q '^| .* | speed vs .*(scalar) | load |$' "$TMP/out"
fi
# the same work stands together: a, c, a is shown a, a, c (c, the scalar record, last)
if run_cli 0 "compare, grouped by work" bench --compare "$TMP/a.json" "$TMP/c.json" "$TMP/a.json"; then
    check "compare: rows of the same work together" sh -c "tail -n 1 '$TMP/out' | grep -q '(scalar) | tiny synthetic | q8 | abc 56x56 | 1 |'"
fi
expect_error 1 "compare a non-record" "not an abc bench record" bench --compare "$TMP/bad.json"
expect_error 1 "compare a missing file" "" bench --compare "$TMP/missing.json"
expect_error 1 "output into a missing folder" "" bench --synth tiny --threads 1 --runs 1 --image 56x56 -o "$TMP/no/dir/r.json"
check "nothing left behind by the failed -o" sh -c "[ ! -e '$TMP/no' ]"

echo "RESULT $passed $failed $skipped"
[ "$failed" -eq 0 ]
