#!/bin/sh
# JPEG corpus: encodes the fixture photos with cjpeg across qualities (10-100), sampling factors, baseline /
# optimized / progressive (default and custom scan scripts), restart intervals, RGB and greyscale JPEGs
# and odd sizes (1x1, 7x13, 4001x3, ...), then checks that abc decodes each one byte for byte like djpeg
# with its defaults (islow IDCT, fancy upsampling: the settings Pillow uses). Also checks that
# arithmetic-coded JPEGs are refused as unsupported. Needs cjpeg/djpeg (Debian: libjpeg-turbo-progs).
set -u
cd "$(dirname "$0")/.."
if ! command -v cjpeg >/dev/null 2>&1 || ! command -v djpeg >/dev/null 2>&1; then
    echo "SKIP JPEG corpus: cjpeg/djpeg not found (Debian: apt-get install libjpeg-turbo-progs)"
    echo "RESULT 0 0 1"
    exit 0
fi
mkdir -p build
WORK=$(mktemp -d build/jpeg_corpus.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM
# ABC_DECODE_TOOL: a ready tools/tool_decode build to test instead (cross runs pass a qemu wrapper).
TOOL=${ABC_DECODE_TOOL:-build/tool_decode_san}
if [ -z "${ABC_DECODE_TOOL:-}" ]; then
    # Sanitizers on: the corpus doubles as a memory-safety run over many encoder settings.
    cc -O1 -g -std=c11 -I. -fsanitize=address,undefined -fno-sanitize-recover=undefined -o "$TOOL" \
        tests/tool_decode.c abc.c -lm -lpthread 2>/dev/null || { echo "cannot build $TOOL"; echo "RESULT 0 1"; exit 1; }
fi

IMG=tests/fixtures/images
pass=0
failn=0
ok() { pass=$((pass + 1)); }
bad() { failn=$((failn + 1)); echo "FAIL $*"; }

# Source pictures as PPM/PGM (decoded by abc itself; the comparison below is JPEG decoding only).
$TOOL $IMG/astronaut.png "$WORK/astronaut.ppm" || exit 1
$TOOL $IMG/coffee.png "$WORK/coffee.ppm" || exit 1
$TOOL $IMG/camera.png "$WORK/camera.pgm" --grey || exit 1
$TOOL $IMG/coffee.png "$WORK/tiny_1x1.ppm" --crop 300 200 1 1
$TOOL $IMG/coffee.png "$WORK/odd_7x13.ppm" --crop 100 50 7 13
$TOOL $IMG/astronaut.png "$WORK/wide_4001x3.ppm" --crop 0 200 4001 3
$TOOL $IMG/astronaut.png "$WORK/tall_3x1001.ppm" --crop 250 0 3 1001
$TOOL $IMG/coffee.png "$WORK/odd_17x9.ppm" --crop 210 130 17 9
$TOOL $IMG/astronaut.png "$WORK/odd_33x31.ppm" --crop 200 100 33 31
$TOOL $IMG/coffee.png "$WORK/odd_101x75.ppm" --crop 250 150 101 75
$TOOL $IMG/astronaut.png "$WORK/odd_2x2.ppm" --crop 240 240 2 2
$TOOL $IMG/coffee.png "$WORK/odd_3x5.ppm" --crop 240 240 3 5
$TOOL $IMG/camera.png "$WORK/grey_19x23.pgm" --crop 200 200 19 23 --grey

# A progressive script with spectral selection and successive approximation that refines fully.
cat > "$WORK/scans_sa.txt" <<'SCANS'
0,1,2: 0-0, 0, 2;
0: 1-5, 0, 2;
2: 1-63, 0, 1;
1: 1-63, 0, 1;
0: 6-63, 0, 2;
0: 1-63, 2, 1;
0,1,2: 0-0, 2, 1;
0,1,2: 0-0, 1, 0;
2: 1-63, 1, 0;
1: 1-63, 1, 0;
0: 1-63, 1, 0;
SCANS
# Non-interleaved sequential scans (one component per scan).
cat > "$WORK/scans_seq.txt" <<'SCANS'
0: 0-63, 0, 0;
1: 0-63, 0, 0;
2: 0-63, 0, 0;
SCANS

n=0
check() { # check NAME SOURCE CJPEG-OPTIONS...
    name=$1
    src=$2
    shift 2
    n=$((n + 1))
    jpg="$WORK/$name.jpg"
    if ! cjpeg "$@" -outfile "$jpg" "$src" 2>"$WORK/err"; then
        bad "$name: cjpeg $* failed: $(cat "$WORK/err")"
        return
    fi
    djpeg -rgb -outfile "$WORK/ref.ppm" "$jpg" 2>"$WORK/err" || { bad "$name: djpeg failed: $(cat "$WORK/err")"; return; }
    if ! $TOOL "$jpg" "$WORK/ours.ppm" 2>"$WORK/err"; then
        bad "$name: abc failed ($*): $(cat "$WORK/err")"
        return
    fi
    if cmp -s "$WORK/ref.ppm" "$WORK/ours.ppm"; then ok; else bad "$name: differs from djpeg (cjpeg $*)"; fi
}

for q in 10 25 50 75 90 95 100; do
    for s in 1x1 2x1 2x2 1x2 4x1 1x4 4x2 2x4 3x1 3x2 1x3 "2x2,2x1,1x1" "1x1,2x2,1x1" "2x1,1x2,1x1" "4x1,2x1,2x1"; do
        tag=$(echo "$s" | tr ',' '_')
        check "a_q${q}_s${tag}" "$WORK/astronaut.ppm" -quality $q -sample "$s"
    done
done
for q in 15 50 85 100; do
    for s in 1x1 2x1 2x2 1x2 4x1; do
        check "c_q${q}_s${s}_prog" "$WORK/coffee.ppm" -quality $q -sample $s -progressive
        check "c_q${q}_s${s}_opt" "$WORK/coffee.ppm" -quality $q -sample $s -optimize
        check "c_q${q}_s${s}_rst" "$WORK/coffee.ppm" -quality $q -sample $s -restart 1
        check "c_q${q}_s${s}_rstB" "$WORK/coffee.ppm" -quality $q -sample $s -restart 3B -progressive
    done
    check "g_q${q}" "$WORK/camera.pgm" -quality $q
    check "g_q${q}_prog" "$WORK/camera.pgm" -quality $q -progressive
    check "g_q${q}_rst" "$WORK/camera.pgm" -quality $q -restart 2B
    check "gs_q${q}" "$WORK/coffee.ppm" -quality $q -grayscale
    check "rgb_q${q}" "$WORK/coffee.ppm" -quality $q -rgb
    check "rgbp_q${q}" "$WORK/astronaut.ppm" -quality $q -rgb -progressive
    check "sa_q${q}" "$WORK/astronaut.ppm" -quality $q -scans "$WORK/scans_sa.txt"
    check "seqscans_q${q}" "$WORK/astronaut.ppm" -quality $q -sample 2x2 -scans "$WORK/scans_seq.txt"
    check "float_q${q}" "$WORK/coffee.ppm" -quality $q -dct float
    check "base_q${q}" "$WORK/coffee.ppm" -quality $q -baseline -sample 2x1
done
for f in tiny_1x1 odd_7x13 wide_4001x3 tall_3x1001 odd_17x9 odd_33x31 odd_101x75 odd_2x2 odd_3x5; do
    for s in 1x1 2x1 2x2 1x2 4x1 1x4 3x2; do
        check "${f}_s$s" "$WORK/$f.ppm" -quality 80 -sample $s
        check "${f}_s${s}_p" "$WORK/$f.ppm" -quality 60 -sample $s -progressive -restart 1B
    done
done
check grey_odd "$WORK/grey_19x23.pgm" -quality 70
check grey_odd_p "$WORK/grey_19x23.pgm" -quality 70 -progressive -restart 1B

# Arithmetic coding is refused with ABC_ERR_UNSUPPORTED (7).
for opt in "" "-progressive"; do
    n=$((n + 1))
    cjpeg -arithmetic $opt -outfile "$WORK/arith.jpg" "$WORK/odd_33x31.ppm" 2>/dev/null
    if $TOOL "$WORK/arith.jpg" "$WORK/ours.ppm" 2>"$WORK/err"; then
        bad "arithmetic $opt: decoded, should be unsupported"
    elif grep -q "error 7: arithmetic-coded JPEG is not supported" "$WORK/err"; then ok; else
        bad "arithmetic $opt: wrong error: $(cat "$WORK/err")"
    fi
done

echo "jpeg corpus: $n files"
echo "RESULT $pass $failn"
[ "$failn" -eq 0 ]
