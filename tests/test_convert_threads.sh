#!/usr/bin/env bash
# abc-convert's threads (issue 27): the output does not depend on --threads; q8 files are byte for byte
# those of the converter before the vectorised, threaded quantizer (SHA-256 below, recorded with that
# converter at commit 821866a); a bad value gives the same error at 1 and 8 threads (the first one in
# file order); --threads is validated; the progress line appears on a terminal only. The runs use the
# converter built with ASan/UBSan (leaks included), which also runs the worker threads.
set -u
cd "$(dirname "$0")/.."
make -s abc-convert build/abc-convert-asan >/dev/null || { echo "RESULT 0 1"; exit 1; }

FX=tests/fixtures/qwen2vl-tiny
PX=tests/fixtures/phi35v-tiny
OUT=build/test_convert_threads
ASAN=${ABC_CONVERT_UNDER_TEST:-build/abc-convert-asan}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
rm -rf "$OUT"
mkdir -p "$OUT"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
ko() { failed=$((failed + 1)); echo "FAIL $1"; }

# name | arguments (the dtype is appended)
CASES=(
    "abc|$FX/base --preset abc --merge-adapter $FX/abc_pretrain_adapter --query-adapter $FX/abc_instruct_adapter"
    "vlm2vec-dora|$FX/base --preset vlm2vec --merge-adapter $FX/vlm2vec_dora_adapter"
    "phi3v|$PX --preset vlm2vec-phi3v"
    "phi3v-lora|$PX --preset vlm2vec-phi3v --merge-adapter $PX/lora_adapter"
)
# q8 SHA-256 of the converter before issue 27 (same order as CASES); vlm2vec's since its video metadata
# (issue 24: the tensor bytes are the same, only metadata entries changed)
Q8_SHA=(
    dfe0e4fbe3fd4d630788b67e4fe1cb794e26822631ef929d0f059b9bf645c494
    50b1cc21e2781a36a4c2923bbc0a2f2483ca167f3a6f3115a0c50f21f3b1fff0
    f5d42bce73ed0ed039a27b0bec0c082110432fe68d1fd96c0a28a693aa155e5f
    1035775a2d9ee68b0de4fb25ce346bf4cb5b3dfdf62f194b850009135ce95344
)

for i in "${!CASES[@]}"; do
    name=${CASES[$i]%%|*}
    read -r -a args <<<"${CASES[$i]#*|}"
    for dt in q8 bf16 f32; do
        good=1
        for t in 1 2 8; do
            if ! "$ASAN" "${args[@]}" -o "$OUT/$name-$dt-t$t.abc" --dtype $dt --threads $t --quiet >"$OUT/log" 2>&1; then
                good=0
                sed 's/^/    /' "$OUT/log" | head -n 20
            fi
        done
        if [ $good = 1 ] && cmp -s "$OUT/$name-$dt-t1.abc" "$OUT/$name-$dt-t2.abc" && cmp -s "$OUT/$name-$dt-t1.abc" "$OUT/$name-$dt-t8.abc"; then
            ok "$name $dt: identical bytes at --threads 1, 2 and 8"
        else
            ko "$name $dt: outputs differ between thread counts (or a run failed)"
        fi
        if [ $dt = q8 ]; then
            got=$(sha256sum "$OUT/$name-$dt-t1.abc" | cut -c1-64)
            if [ "$got" = "${Q8_SHA[$i]}" ]; then ok "$name q8: SHA-256 of the original converter"; else ko "$name q8: SHA-256 $got, want ${Q8_SHA[$i]}"; fi
        fi
        rm -f "$OUT/$name-$dt"-t*.abc
    done
done

# Two NaNs in the token embedding (bf16 [151936, 32], data at byte 8 + 3168 of the first shard), at
# rows 100000 and 140000: different pieces, so with 8 threads both may fail; the first must be named.
mkdir -p "$OUT/nan"
cp -r $FX/base "$OUT/nan/base"
shard="$OUT/nan/base/model-00001-of-00002.safetensors"
for el in $((100000 * 32 + 3)) $((140000 * 32)); do
    printf '\xc0\x7f' | dd of="$shard" bs=1 seek=$((3176 + 2 * el)) conv=notrunc status=none
done
for dt in f32 q8; do
    msgs=""
    for t in 1 8; do
        "$ASAN" "$OUT/nan/base" -o "$OUT/nan.abc" --preset vlm2vec --dtype $dt --threads $t --quiet >"$OUT/log" 2>&1
        rc=$?
        grep -qE "Sanitizer|runtime error" "$OUT/log" && rc=99
        msgs="$msgs$rc $(grep -m1 error "$OUT/log")
"
    done
    want="1 abc-convert: error: tensor model.embed_tokens.weight: non-finite value at element 3200003"
    if [ "$msgs" = "$want
$want
" ] && [ ! -e "$OUT/nan.abc" ]; then
        ok "$dt: the first bad value is reported at 1 and 8 threads, no output file"
    else
        ko "$dt: bad-value errors: $msgs"
    fi
done

# --threads validation
for bad in 0 -3 x 1025 ""; do
    "$ASAN" $FX/base -o "$OUT/x.abc" --preset vlm2vec --threads "$bad" >"$OUT/log" 2>&1
    rc=$?
    if [ $rc = 2 ] && grep -q -- "--threads needs an integer" "$OUT/log"; then ok "--threads '$bad' refused"; else ko "--threads '$bad': exit $rc"; cat "$OUT/log"; fi
done

# progress: none when stderr is not a terminal; on a terminal (script(1) provides one) a line with
# tensor i/n, GB, MB/s and ETA
./abc-convert $FX/base -o "$OUT/p.abc" --preset vlm2vec --dtype q8 2>"$OUT/log" >/dev/null
if [ "$(cat "$OUT/log")" = "abc-convert: wrote $OUT/p.abc" ]; then ok "no progress line off a terminal"; else ko "stderr off a terminal: $(head -c 300 "$OUT/log")"; fi
if command -v script >/dev/null 2>&1; then
    script -qec "./abc-convert $FX/base -o $OUT/p.abc --preset vlm2vec --dtype q8" /dev/null >"$OUT/tty.log" 2>&1
    if grep -qE 'tensor [0-9]+/[0-9]+ +[0-9.]+/[0-9.]+ GB +[0-9]+ MB/s +ETA [0-9]+:[0-9]{2}' "$OUT/tty.log"; then ok "progress line on a terminal"; else ko "no progress line on a terminal: $(head -c 300 "$OUT/tty.log")"; fi
    script -qec "./abc-convert $FX/base -o $OUT/p.abc --preset vlm2vec --dtype q8 --quiet" /dev/null >"$OUT/tty.log" 2>&1
    if [ ! -s "$OUT/tty.log" ]; then ok "--quiet: nothing on a terminal"; else ko "--quiet printed: $(head -c 300 "$OUT/tty.log")"; fi
else
    echo "SKIP progress line on a terminal: script(1) not found (Debian package bsdutils)"
    skipped=1
fi

echo "RESULT $passed $failed ${skipped:-0}"
[ $failed -eq 0 ]
