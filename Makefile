# abc — build, test, benchmark.  See README.md.
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# -ffp-contract=off: preprocessing must be bit-exact with the Python reference (no fused multiply-add
# unless a kernel asks for it explicitly with intrinsics).
BASEFLAGS = -std=c11 -Wall -Wextra -ffp-contract=off -I.
LDLIBS  = -lm -lpthread

all: abc abc-convert

abc.o: abc.c abc.h
	$(CC) $(BASEFLAGS) $(CFLAGS) -c abc.c -o $@

abc: abc.o $(wildcard cli/*.c) abc.h
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $(wildcard cli/*.c) abc.o $(LDLIBS)

CONVERT_SRC = $(wildcard model_convert/*.c)
abc-convert: $(CONVERT_SRC) $(wildcard model_convert/*.h)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $(CONVERT_SRC) $(LDLIBS)

clean:
	rm -f abc abc-convert abc.o
	rm -rf build

.PHONY: all clean test test-full bench

# ---- tests: tests/test_*.c include abc.c (to reach internals) and run under ASan/UBSan ----
SAN       ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TEST_SRCS  = $(wildcard tests/test_*.c)
TEST_BINS  = $(patsubst tests/%.c,build/%,$(TEST_SRCS))
TEST_SH    = $(wildcard tests/test_*.sh)

build/test_%: tests/test_%.c abc.c abc.h $(wildcard tests/*.h) $(wildcard model_convert/*.c model_convert/*.h)
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -DABC_FAULT_INJECTION -o $@ $< $(LDLIBS)

test: all $(TEST_BINS)
	@tests/run_tests.sh $(TEST_BINS) $(TEST_SH)

# ---- end-to-end CLI tests and the bundled example (tests/test_cli.sh, README "Quick start") ----
TINY      = tests/fixtures/qwen2vl-tiny
CLI_SRCS  = $(wildcard cli/*.c)

build/tiny-abc.abc: abc-convert $(wildcard $(TINY)/base/* $(TINY)/abc_pretrain_adapter/* $(TINY)/abc_instruct_adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset abc --merge-adapter $(TINY)/abc_pretrain_adapter --query-adapter $(TINY)/abc_instruct_adapter

build/tiny-vlm2vec.abc: abc-convert $(wildcard $(TINY)/base/* $(TINY)/vlm2vec_dora_adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset vlm2vec --merge-adapter $(TINY)/vlm2vec_dora_adapter

# ./abc built with the sanitizers: test_cli.sh runs it so the end-to-end runs also catch memory errors and leaks.
build/abc-san: $(CLI_SRCS) $(wildcard cli/*.h) abc.c abc.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -o $@ $(CLI_SRCS) abc.c $(LDLIBS)

build/tool_npycmp: tests/tool_npycmp.c cli/npy.c cli/npy.h tests/sha256.h abc.o
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ tests/tool_npycmp.c cli/npy.c abc.o $(LDLIBS)

test: build/tiny-abc.abc build/tiny-vlm2vec.abc build/abc-san build/tool_npycmp

# The bundled example: the tiny random-weight ABC model embeds an image with an instruction.
example: all build/tiny-abc.abc
	./abc embed -m build/tiny-abc.abc --image tests/fixtures/images/astronaut.png --text "What is the person holding?"

.PHONY: example

# ---- converter tests ----
# tests/test_convert.sh runs the converter built with the sanitizers on good and malformed inputs,
# and these two helpers: tool_relayout (builds the transformers>=4.52 layout and broken
# safetensors files) and tool_abccheck (an independent .abc reader and comparator).
CONVERT_HDRS = $(wildcard model_convert/*.h)

build/abc-convert-asan: $(CONVERT_SRC) $(CONVERT_HDRS)
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -o $@ $(CONVERT_SRC) $(LDLIBS)

build/tool_relayout: tests/tool_relayout.c model_convert/json.c model_convert/json.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -o $@ tests/tool_relayout.c model_convert/json.c $(LDLIBS)

build/tool_abccheck: tests/tool_abccheck.c model_convert/json.c model_convert/json.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -o $@ tests/tool_abccheck.c model_convert/json.c $(LDLIBS)

# tests/test_convert_parsers.c includes the converter's json.c, writer.c, util.c, safetensors.c and dtype.c
build/test_convert_parsers: model_convert/json.c model_convert/writer.c model_convert/util.c model_convert/safetensors.c model_convert/dtype.c $(CONVERT_HDRS)

test: build/abc-convert-asan build/tool_relayout build/tool_abccheck

# ---- phi3_v (Phi-3.5-vision, VLM2Vec-Full): the tiny fixture converted (issue #6) ----
PHI3_TINY = tests/fixtures/phi35v-tiny

build/tiny-phi3v.abc: abc-convert $(PHI3_TINY)/config.json $(PHI3_TINY)/preprocessor_config.json $(PHI3_TINY)/model.safetensors $(PHI3_TINY)/tokenizer.json
	@mkdir -p build
	./abc-convert $(PHI3_TINY) -o $@ --preset vlm2vec-phi3v

test: build/tiny-phi3v.abc

# ---- synthetic checkpoints / test-full ----
# build/abc-synth writes the synthetic Qwen2-VL checkpoints of SPEC 10 (bit-identical to
# shared/tools/synth_weights.py); test-full runs the full-size 2B parity cases (slow, several GB of
# disk in build/synth-2b; not part of `make test`); bench-model times one embedding at full size.
build/abc-synth: tools/synth.c model_convert/json.c model_convert/json.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ tools/synth.c model_convert/json.c $(LDLIBS)

test: build/abc-synth

test-full: all build/abc-synth build/tool_npycmp
	@tests/run_tests.sh tests/full/test_full_2b.sh

build/bench_model: bench/bench_model.c abc.c abc.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ bench/bench_model.c $(LDLIBS)

# BENCH_THREADS: comma-separated thread counts; BENCH_ARGS: e.g. "--json --runs 3"
BENCH_THREADS ?= 1,2
BENCH_ARGS    ?=
bench-model: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh 2b abc f32) && build/bench_model -m "$$model" --threads $(BENCH_THREADS) $(BENCH_ARGS)

# 7B: bf16 storage (f32 would need 33 GB of disk); the synthetic values are bf16, so nothing is lost.
bench-model-7b: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh 7b abc bf16) && build/bench_model -m "$$model" --threads $(BENCH_THREADS) $(BENCH_ARGS)

bench: bench-model

.PHONY: bench-model bench-model-7b

# ---- bench ----
# build/bench_kernels times the kernels (section 7) on the Qwen2-VL-2B shapes per thread count (BENCH_THREADS);
# with OPENBLAS=1 it also times OpenBLAS cblas_sgemm on the same data (Debian libopenblas-dev; for the
# benchmark only, never linked into abc). Plain -O3 without -march: the SIMD path is chosen at run time, as
# in the library. KERNEL_BENCH_ARGS: e.g. "--json", "--path avx2", "--quick".
KERNEL_BENCH_DEFS =
KERNEL_BENCH_LIBS =
ifeq ($(OPENBLAS),1)
KERNEL_BENCH_DEFS = -DBENCH_OPENBLAS
KERNEL_BENCH_LIBS = -lopenblas
endif
KERNEL_BENCH_ARGS ?=

# Rebuilt on every run so that OPENBLAS=1 and plain builds never mix.
build/bench_kernels: abc.c abc.h bench/bench_kernels.c FORCE
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O3 -g $(KERNEL_BENCH_DEFS) -o $@ bench/bench_kernels.c $(LDLIBS) $(KERNEL_BENCH_LIBS)

bench-kernels: build/bench_kernels
	build/bench_kernels --threads $(BENCH_THREADS) $(KERNEL_BENCH_ARGS)

bench: bench-kernels

FORCE:
.PHONY: bench-kernels FORCE

# ---- bench-model-phi3v and bench-model-q8 (bench/bench_model.c; README "Benchmarks") ----
# bench-model-phi3v: one full-size Phi-3.5-V embedding (architecture phi3_v, preset vlm2vec-phi3v) on the
# synthetic checkpoint of `build/abc-synth phi35v`, stored in PHI3V_DTYPE (bf16 8.3 GB; f32 would be 16.6 GB).
# bench-model-q8: the 2B ABC model of bench-model with q8 weights. Any other file: build/bench_model -m FILE.
PHI3V_DTYPE ?= bf16
bench-model-phi3v: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh phi35v vlm2vec-phi3v $(PHI3V_DTYPE)) && build/bench_model -m "$$model" --threads $(BENCH_THREADS) $(BENCH_ARGS)

bench-model-q8: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh 2b abc q8) && build/bench_model -m "$$model" --threads $(BENCH_THREADS) $(BENCH_ARGS)

# tests/test_bench_model.sh runs build/bench_model on the tiny models
test: build/bench_model

.PHONY: bench-model-phi3v bench-model-q8

# ---- the whole suite on other targets (tests/cross/run_cross.sh; CI runs `make test-cross`) ----
# aarch64 with and without the dot-product extension and armv7 (armhf) under qemu-user, and the
# scalar-only build (NO_SIMD) natively. Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross,
# gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross and qemu-user (.ci/run installs them).
# NO_SIMD=1 (`make NO_SIMD=1 ...`): the scalar-only build, no AVX2/AVX-512/NEON kernels compiled in (every
# kernel path but the scalar reference is reported unsupported). Appended here, it still applies to every
# rule above: make expands BASEFLAGS when a recipe runs.
ifeq ($(NO_SIMD),1)
BASEFLAGS += -DABC_NO_SIMD
endif

CROSS_TARGETS = aarch64-dotprod aarch64-nodot armv7 scalar

test-cross: all
	@status=0; for t in $(CROSS_TARGETS); do tests/cross/run_cross.sh $$t || status=1; done; exit $$status

test-scalar: all
	tests/cross/run_cross.sh scalar

.PHONY: test-cross test-scalar

# ---- mutation check (issue #26): tests/mutate/run.sh applies each mutant of tests/mutate/mutants.txt to a
# scratch copy of the tree (build/mutate/tree) and runs the tests that should kill it; prints killed/survived
# per mutant and area and the score. Not part of `make test`. MUTANTS="ID or AREA ...": only those.
MUTANTS ?=
mutate:
	tests/mutate/run.sh $(MUTANTS)

.PHONY: mutate
