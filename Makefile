# abc — build, install, test, benchmark.  See README.md ("Build, install, integrate").
#
#   make                       ./abc and ./abc-convert (intermediates in build/)
#   make lib                   build/libabc.a and build/libabc.so (soname libabc.so.$(ABI_VERSION))
#   make install               PREFIX (/usr/local) and DESTDIR honoured: bin/, include/, lib/, lib/pkgconfig/,
#                              lib/cmake/abc/
#   make BUILD=build-arm64 CC=aarch64-linux-gnu-gcc all lib
#                              an out-of-tree build: every output under BUILD, nothing shared with the host's
#   make test / test-cross     the test suites (the default build only)
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# -ffp-contract=off: preprocessing must be bit-exact with the Python reference (no fused multiply-add
# unless a kernel asks for it explicitly with intrinsics).
BASEFLAGS = -std=c11 -Wall -Wextra -ffp-contract=off -I.
LDLIBS  = -lm -lpthread

# BUILD holds intermediates (and, for any BUILD but the default, the programs too: BIN).
BUILD   ?= build
ifeq ($(BUILD),build)
BIN     ?= .
else
BIN     ?= $(BUILD)
endif

VERSION     = $(shell sed -n 's/^\#define ABC_VERSION_STRING "\(.*\)"/\1/p' abc.h)
ABI_VERSION = 0
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR      = $(PREFIX)/bin
INCLUDEDIR  = $(PREFIX)/include
LIBDIR      = $(PREFIX)/lib

all: $(BIN)/abc $(BIN)/abc-convert

# The compiler and flags that built BUILD: when they change (a cross build in the same tree, other
# flags), every object below is rebuilt rather than mixed with the old ones.
TOOLCHAIN_ID = $(CC) $(shell $(CC) -dumpmachine 2>/dev/null) $(BASEFLAGS) $(CFLAGS)
$(BUILD)/.toolchain: FORCE
	@mkdir -p $(BUILD)
	@echo '$(TOOLCHAIN_ID)' | cmp -s - $@ || echo '$(TOOLCHAIN_ID)' > $@

$(BUILD)/abc.o: abc.c abc.h $(BUILD)/.toolchain
	$(CC) $(BASEFLAGS) $(CFLAGS) -c abc.c -o $@

# The CLI reads JSON lines (embed --batch, eval) with the converter's strict JSON parser.
CLI_SRCS = $(wildcard cli/*.c)
CLI_JSON = model_convert/json.c model_convert/json.h
# `abc bench` records name the build: the flags and, in a git checkout, the commit ("-dirty" with
# uncommitted changes); .buildinfo relinks ./abc when either changes.
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
BUILD_INFO  = -DABC_BUILD_FLAGS='"$(BASEFLAGS) $(CFLAGS)"' -DABC_GIT_COMMIT='"$(if $(filter-out -dirty,$(GIT_COMMIT)),$(GIT_COMMIT),unknown)"'
$(BUILD)/.buildinfo: FORCE
	@mkdir -p $(BUILD)
	@echo '$(subst ','',$(BUILD_INFO))' | cmp -s - $@ || echo '$(subst ','',$(BUILD_INFO))' > $@
$(BIN)/abc: $(BUILD)/abc.o $(CLI_SRCS) $(wildcard cli/*.h) abc.h $(CLI_JSON) $(BUILD)/.toolchain $(BUILD)/.buildinfo
	$(CC) $(BASEFLAGS) $(CFLAGS) $(BUILD_INFO) -o $@ $(CLI_SRCS) model_convert/json.c $(BUILD)/abc.o $(LDLIBS)

CONVERT_SRC = $(wildcard model_convert/*.c)
$(BIN)/abc-convert: $(CONVERT_SRC) $(wildcard model_convert/*.h) $(BUILD)/.toolchain
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $(CONVERT_SRC) $(LDLIBS)

# ---- the library: static, and shared with only the abc_* functions exported ----
$(BUILD)/libabc.a: $(BUILD)/abc.o
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/pic/abc.o: abc.c abc.h $(BUILD)/.toolchain
	@mkdir -p $(BUILD)/pic
	$(CC) $(BASEFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -DABC_BUILD_SHARED -c abc.c -o $@

$(BUILD)/libabc.so.$(VERSION): $(BUILD)/pic/abc.o
	$(CC) -shared -Wl,-soname,libabc.so.$(ABI_VERSION) -o $@ $^ $(LDLIBS)
	ln -sf libabc.so.$(VERSION) $(BUILD)/libabc.so.$(ABI_VERSION)
	ln -sf libabc.so.$(VERSION) $(BUILD)/libabc.so

lib: $(BUILD)/libabc.a $(BUILD)/libabc.so.$(VERSION)

# ---- install (pkg-config and CMake package files written for PREFIX) ----
install: all lib
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/abc
	install -m 755 $(BIN)/abc $(BIN)/abc-convert $(DESTDIR)$(BINDIR)/
	install -m 644 abc.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/libabc.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libabc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libabc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libabc.so.$(ABI_VERSION)
	ln -sf libabc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libabc.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' platforms/abc.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/abc.pc
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    platforms/abcConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/abc/abcConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' platforms/abcConfigVersion.cmake.in \
	    > $(DESTDIR)$(LIBDIR)/cmake/abc/abcConfigVersion.cmake

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/abc $(DESTDIR)$(BINDIR)/abc-convert $(DESTDIR)$(INCLUDEDIR)/abc.h
	rm -f $(DESTDIR)$(LIBDIR)/libabc.a $(DESTDIR)$(LIBDIR)/libabc.so*
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/abc.pc
	rm -rf $(DESTDIR)$(LIBDIR)/cmake/abc

# ---- the examples (examples/*.c, built against the library like a user's program) ----
EXAMPLES = $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
$(BUILD)/examples/%: examples/%.c abc.h $(BUILD)/libabc.a
	@mkdir -p $(BUILD)/examples
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libabc.a $(LDLIBS)

examples: $(EXAMPLES)

clean:
	rm -f $(BIN)/abc $(BIN)/abc-convert abc.o
	rm -rf $(BUILD)

.PHONY: all lib install uninstall examples clean test test-data test-full bench FORCE

# ---- tests: tests/test_*.c include abc.c (to reach internals) and run under ASan/UBSan ----
SAN       ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TEST_SRCS  = $(wildcard tests/test_*.c)
TEST_BINS  = $(patsubst tests/%.c,build/%,$(TEST_SRCS))
TEST_SH    = $(wildcard tests/test_*.sh)

build/test_%: tests/test_%.c abc.c abc.h $(wildcard tests/*.h) cli/npy.c cli/npy.h $(wildcard model_convert/*.c model_convert/*.h)
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -DABC_FAULT_INJECTION -o $@ $< $(LDLIBS)

# test-data: every model file and tool the tests read (the rules below add to it; tests/cross uses it too)
test: all lib examples $(TEST_BINS) test-data
	@tests/run_tests.sh $(TEST_BINS) $(TEST_SH)

# ---- end-to-end CLI tests and the bundled example (tests/test_cli.sh, README "Quick start") ----
TINY      = tests/fixtures/qwen2vl-tiny

build/tiny-abc.abc: abc-convert $(wildcard $(TINY)/base/* $(TINY)/abc_pretrain_adapter/* $(TINY)/abc_instruct_adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset abc --merge-adapter $(TINY)/abc_pretrain_adapter --query-adapter $(TINY)/abc_instruct_adapter

build/tiny-vlm2vec.abc: abc-convert $(wildcard $(TINY)/base/* $(TINY)/vlm2vec_dora_adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset vlm2vec --merge-adapter $(TINY)/vlm2vec_dora_adapter

# ./abc built with the sanitizers: test_cli.sh runs it so the end-to-end runs also catch memory errors and leaks.
build/abc-san: $(CLI_SRCS) $(wildcard cli/*.h) abc.c abc.h $(CLI_JSON)
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -o $@ $(CLI_SRCS) model_convert/json.c abc.c $(LDLIBS)

build/tool_npycmp: tests/tool_npycmp.c cli/npy.c cli/npy.h tests/sha256.h $(BUILD)/abc.o
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ tests/tool_npycmp.c cli/npy.c $(BUILD)/abc.o $(LDLIBS)

test-data: build/tiny-abc.abc build/tiny-vlm2vec.abc build/abc-san build/tool_npycmp

# preset gme (GME-Qwen2-VL) on the same tiny checkpoint (tests/test_gme.sh, tests/fixtures/gme-tiny)
build/tiny-gme.abc: abc-convert $(wildcard $(TINY)/base/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset gme

build/tiny-gme-q8.abc: abc-convert $(wildcard $(TINY)/base/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset gme --dtype q8


# video input (tests/test_video.sh, tests/fixtures/qwen2vl-tiny-video): the vlm2vec file in q8 too
build/tiny-vlm2vec-q8.abc: abc-convert $(wildcard $(TINY)/base/* $(TINY)/vlm2vec_dora_adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset vlm2vec --merge-adapter $(TINY)/vlm2vec_dora_adapter --dtype q8

test-data: build/tiny-gme.abc build/tiny-gme-q8.abc build/tiny-vlm2vec-q8.abc

# qwen2_5_vl, preset nomic (tests/test_qwen25vl.sh): the fixture's ViT shard and config with the tiny
# Qwen2-VL's decoder shard and tokenizer, linked together (tests/gen_qwen25vl_fixtures.py)
Q25_TINY = tests/fixtures/qwen25vl-tiny
Q25_FILES = config.json preprocessor_config.json model-00002-of-00002.safetensors model.safetensors.index.json
Q25_SHARED = tokenizer.json tokenizer_config.json model-00001-of-00002.safetensors

build/qwen25vl-tiny/.linked: $(addprefix $(Q25_TINY)/,$(Q25_FILES)) $(addprefix $(TINY)/base/,$(Q25_SHARED))
	@mkdir -p build/qwen25vl-tiny
	for f in $(Q25_FILES); do ln -sf ../../$(Q25_TINY)/$$f build/qwen25vl-tiny/$$f; done
	for f in $(Q25_SHARED); do ln -sf ../../$(TINY)/base/$$f build/qwen25vl-tiny/$$f; done
	@touch $@

build/tiny-nomic.abc: abc-convert build/qwen25vl-tiny/.linked $(wildcard $(Q25_TINY)/nomic_adapter/*)
	./abc-convert build/qwen25vl-tiny -o $@ --preset nomic --merge-adapter $(Q25_TINY)/nomic_adapter

build/tiny-nomic-q8.abc: abc-convert build/qwen25vl-tiny/.linked $(wildcard $(Q25_TINY)/nomic_adapter/*)
	./abc-convert build/qwen25vl-tiny -o $@ --preset nomic --merge-adapter $(Q25_TINY)/nomic_adapter --dtype q8

test-data: build/tiny-nomic.abc build/tiny-nomic-q8.abc

# preset jina-v4 (tests/test_jina.sh, tests/fixtures/jina-tiny): the tiny Qwen2.5-VL's shards (above) with
# jina's config.json keys, its multi-vector projector shard and three random task adapters, linked together
JINA = tests/fixtures/jina-tiny
JINA_TASKS = --task-adapter retrieval=$(JINA)/adapters/retrieval --task-adapter text-matching=$(JINA)/adapters/text-matching \
             --task-adapter code=$(JINA)/adapters/code
JINA_FILES = config.json model.safetensors.index.json multi_vector_projector.safetensors
build/jina-base/config.json: $(addprefix $(JINA)/,$(JINA_FILES)) $(Q25_TINY)/preprocessor_config.json \
                             $(Q25_TINY)/model-00002-of-00002.safetensors $(addprefix $(TINY)/base/,$(Q25_SHARED))
	@rm -rf build/jina-base && mkdir -p build/jina-base
	for f in preprocessor_config.json model-00002-of-00002.safetensors; do ln -sf ../../$(Q25_TINY)/$$f build/jina-base/$$f; done
	for f in $(Q25_SHARED); do ln -sf ../../$(TINY)/base/$$f build/jina-base/$$f; done
	for f in $(JINA_FILES); do ln -sf ../../$(JINA)/$$f build/jina-base/$$f; done

build/tiny-jina.abc: abc-convert build/jina-base/config.json $(wildcard $(JINA)/adapters/*/*)
	./abc-convert build/jina-base -o $@ --preset jina-v4 $(JINA_TASKS) --quiet

build/tiny-jina-q8.abc: abc-convert build/jina-base/config.json $(wildcard $(JINA)/adapters/*/*)
	./abc-convert build/jina-base -o $@ --preset jina-v4 $(JINA_TASKS) --dtype q8 --quiet

test-data: build/tiny-jina.abc build/tiny-jina-q8.abc

# preset colqwen2.5 (multi-vector on qwen2_5_vl, tests/test_colqwen25.sh, tests/fixtures/colqwen25-tiny): the
# tiny Qwen2.5-VL (above) with the fixture's LoRA adapter and its 128-d projection
COLQ25 = tests/fixtures/colqwen25-tiny
build/tiny-colqwen25.abc: abc-convert build/qwen25vl-tiny/.linked $(wildcard $(COLQ25)/adapter/*)
	./abc-convert build/qwen25vl-tiny -o $@ --preset colqwen2.5 --merge-adapter $(COLQ25)/adapter --quiet

build/tiny-colqwen25-q8.abc: abc-convert build/qwen25vl-tiny/.linked $(wildcard $(COLQ25)/adapter/*)
	./abc-convert build/qwen25vl-tiny -o $@ --preset colqwen2.5 --merge-adapter $(COLQ25)/adapter --dtype q8 --quiet

test-data: build/tiny-colqwen25.abc build/tiny-colqwen25-q8.abc

# preset colqwen2 (multi-vector, tests/test_colqwen2.c and .sh, tests/fixtures/colqwen2-tiny): the tiny base
# with the fixture's LoRA adapter and its 128-d projection
COLQWEN = tests/fixtures/colqwen2-tiny
build/tiny-colqwen2.abc: abc-convert $(wildcard $(TINY)/base/* $(COLQWEN)/adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset colqwen2 --merge-adapter $(COLQWEN)/adapter --quiet

build/tiny-colqwen2-q8.abc: abc-convert $(wildcard $(TINY)/base/* $(COLQWEN)/adapter/*)
	@mkdir -p build
	./abc-convert $(TINY)/base -o $@ --preset colqwen2 --merge-adapter $(COLQWEN)/adapter --dtype q8 --quiet

test-data: build/tiny-colqwen2.abc build/tiny-colqwen2-q8.abc

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

test-data: build/abc-convert-asan build/tool_relayout build/tool_abccheck

# ---- phi3_v (Phi-3.5-vision, VLM2Vec-Full): the tiny fixture converted (issue #6) ----
PHI3_TINY = tests/fixtures/phi35v-tiny

build/tiny-phi3v.abc: abc-convert $(PHI3_TINY)/config.json $(PHI3_TINY)/preprocessor_config.json $(PHI3_TINY)/model.safetensors $(PHI3_TINY)/tokenizer.json
	@mkdir -p build
	./abc-convert $(PHI3_TINY) -o $@ --preset vlm2vec-phi3v

test-data: build/tiny-phi3v.abc

# ---- synthetic checkpoints / test-full ----
# build/abc-synth writes the synthetic Qwen2-VL checkpoints of docs/testing.md#synthetic-full-size-checkpoints
# (bit-identical to the reference Python writer); test-full runs the full-size 2B parity cases (slow, several GB of
# disk in build/synth-2b; not part of `make test`); bench-model times one embedding at full size.
build/abc-synth: tools/synth.c model_convert/json.c model_convert/json.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ tools/synth.c model_convert/json.c $(LDLIBS)

test-data: build/abc-synth

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
.PHONY: bench-kernels

# ---- bench-model-phi3v and bench-model-q8 (bench/bench_model.c; README "Benchmarks") ----
# bench-model-phi3v: one full-size Phi-3.5-V embedding (architecture phi3_v, preset vlm2vec-phi3v) on the
# synthetic checkpoint of `build/abc-synth phi35v`, stored in PHI3V_DTYPE (bf16 8.3 GB; f32 would be 16.6 GB).
# bench-model-q8: the 2B ABC model of bench-model with q8 weights. Any other file: build/bench_model -m FILE.
PHI3V_DTYPE ?= bf16
bench-model-phi3v: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh phi35v vlm2vec-phi3v $(PHI3V_DTYPE)) && build/bench_model -m "$$model" --threads $(BENCH_THREADS) $(BENCH_ARGS)

bench-model-q8: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh 2b abc q8) && build/bench_model -m "$$model" --threads $(BENCH_THREADS) $(BENCH_ARGS)

# Packed text batches (abc_embed_batch): 256 short texts one at a time vs batched, on the 2B synthetic model.
TEXTS_DTYPE ?= f32
bench-texts: all build/abc-synth build/bench_model
	model=$$(tools/synth_abc.sh 2b vlm2vec $(TEXTS_DTYPE)) && build/bench_model -m "$$model" --texts 256 --threads $(BENCH_THREADS) $(BENCH_ARGS)

# tests/test_bench_model.sh runs build/bench_model on the tiny models
test-data: build/bench_model

.PHONY: bench-model-phi3v bench-model-q8 bench-texts

# ---- abc serve (issue #23): tests/test_serve.sh drives ./abc serve and build/abc-san serve with
# build/tool_http_load (load generator, raw-bytes client, decompression-bomb PNG writer) ----
build/tool_http_load: tests/tool_http_load.c
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ tests/tool_http_load.c $(LDLIBS)

test-data: build/tool_http_load

# tests/fuzz/fuzz_http_request.c (HTTP parser + JSON body + /v1/embeddings decoding): standalone mutation
# driver under ASan/UBSan; tests/test_fuzz_http.sh runs it briefly and, where clang has libFuzzer, a libFuzzer
# build too. `make fuzz-http FUZZ_HTTP_SECONDS=300` runs the longer campaign of bench/RESULTS.md.
SERVE_PARSE_SRC = cli/serve_http.c model_convert/json.c cli/serve_api.c cli/serve_http.h model_convert/json.h cli/serve_api.h
build/fuzz_http_request: tests/fuzz/fuzz_http_request.c $(SERVE_PARSE_SRC) abc.h
	@mkdir -p build
	$(CC) $(BASEFLAGS) -O1 -g $(SAN) -DFUZZ_HTTP_STANDALONE_MAIN -o $@ tests/fuzz/fuzz_http_request.c $(LDLIBS)

test-data: build/fuzz_http_request

# tests/test_serve_parse.c includes the three files
build/test_serve_parse: $(SERVE_PARSE_SRC)

FUZZ_HTTP_SECONDS ?= 300
fuzz-http: build/fuzz_http_request
	ABC_FUZZ_SECONDS=$(FUZZ_HTTP_SECONDS) tests/test_fuzz_http.sh

.PHONY: fuzz-http

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

# ---- collections: embed --batch, search, eval, the Python module (issue #20; README "Collections") ----
# tool_retrieval: independent stacking/ranking helpers for tests/test_batch.sh, test_search.sh, test_eval.sh.
build/tool_retrieval: tests/tool_retrieval.c cli/npy.c cli/npy.h $(CLI_JSON)
	@mkdir -p build
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ tests/tool_retrieval.c cli/npy.c model_convert/json.c $(LDLIBS)

test-data: build/tool_retrieval

# ---- bare metal (tests/test_baremetal.sh, platforms/README.md): the library built -DABC_BARE_METAL for
# an ARMv7-A core without an OS (newlib, semihosting), the tiny model + a PNG linked into a firmware-style
# program, run under qemu-system-arm. Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm.
BM_CC     ?= arm-none-eabi-gcc
BM        = build/baremetal
BM_ARCH   = -mcpu=cortex-a15 -mfpu=neon-vfpv4 -mfloat-abi=hard
# -Wno-format: newlib's uint32_t is a long, so the library's %u formats (right for every hosted target) warn
# -DABC_NO_SIMD: the scalar kernels, as in $(BM)/arena_size, which sizes the static arena on this host (the
# host cannot run the neon32 path, whose buffers differ: the arena it measures would be too small there)
BM_CFLAGS = -std=c11 -Wall -Wextra -Wno-format -ffp-contract=off -I. $(BM_ARCH) -O2 -g -DABC_BARE_METAL -DABC_NO_SIMD \
            '-DABC_MALLOC(size)=abc_fw_malloc(size)' '-DABC_FREE(p)=abc_fw_free(p)' -include platforms/baremetal/fw_alloc.h
BM_CASE   = tests/fixtures/qwen2vl-tiny/cases/abc_query_astronaut
BM_IMAGE  = tests/fixtures/images/astronaut.png
BM_TEXT   = What is the person holding?

$(BM)/abc.o: abc.c abc.h platforms/baremetal/fw_alloc.h
	@mkdir -p $(BM)
	$(BM_CC) $(BM_CFLAGS) -c abc.c -o $@

# the arena the firmware's input needs, asked on this host of a build with the firmware's options (and
# ABC_NO_MMAP: its model is read with fopen/fread)
$(BM)/arena_size: platforms/baremetal/arena_size.c abc.c abc.h
	@mkdir -p $(BM)
	$(CC) $(BASEFLAGS) -O2 -DABC_NO_THREADS -DABC_NO_SIMD -DABC_NO_MMAP -o $@ platforms/baremetal/arena_size.c abc.c -lm

$(BM)/arena_bytes: $(BM)/arena_size build/tiny-abc.abc $(BM_IMAGE)
	$(BM)/arena_size build/tiny-abc.abc $(BM_IMAGE) '$(BM_TEXT)' > $@.tmp && mv $@.tmp $@

$(BM)/firmware.elf: $(BM)/abc.o $(BM)/arena_bytes platforms/baremetal/firmware.c platforms/baremetal/startup.S \
                    platforms/baremetal/assets.S build/tiny-abc.abc $(BM_IMAGE) $(BM_CASE)/embedding.npy
	$(BM_CC) $(BM_CFLAGS) -DABC_FW_ARENA_BYTES=$$(cat $(BM)/arena_bytes) '-DABC_FW_TEXT="$(BM_TEXT)"' \
	    -c platforms/baremetal/firmware.c -o $(BM)/firmware.o
	$(BM_CC) $(BM_ARCH) -c platforms/baremetal/startup.S -o $(BM)/startup.o
	$(BM_CC) $(BM_ARCH) '-DABC_FW_MODEL="build/tiny-abc.abc"' '-DABC_FW_IMAGE="$(BM_IMAGE)"' \
	    '-DABC_FW_REFERENCE="$(BM_CASE)/embedding.npy"' -c platforms/baremetal/assets.S -o $(BM)/assets.o
	$(BM_CC) $(BM_ARCH) --specs=rdimon.specs -Wl,-Ttext-segment=0x40010000 -Wl,-e,abc_fw_reset -o $@ \
	    $(BM)/startup.o $(BM)/firmware.o $(BM)/abc.o $(BM)/assets.o -lm

test-baremetal:
	@tests/run_tests.sh tests/test_baremetal.sh

.PHONY: test-baremetal

# ---- fuzzing (tests/fuzz/, issue #19) ----
# Each tests/fuzz/fuzz_NAME.c is a libFuzzer target (LLVMFuzzerTestOneInput) with its seed corpus in
# tests/fuzz/corpus/NAME/ and optionally a dictionary tests/fuzz/dict/NAME.dict; a new target needs nothing
# else. tests/fuzz/build.sh links each with clang's libFuzzer (FUZZ_CC, default clang) or, where that is
# missing, with tests/fuzz/driver.c, always under ASan/UBSan. `make fuzz` runs every target FUZZ_TIME
# seconds, one after another (FUZZ_TARGETS to pick some), and fails on any finding; CI uses FUZZ_TIME=30.
FUZZ_TIME    ?= 120
FUZZ_TARGETS ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_DEPS     = tests/fuzz/driver.c tests/fuzz/fuzz_util.h tests/fuzz/build.sh abc.c abc.h cli/npy.c cli/npy.h \
                $(CONVERT_SRC) $(CONVERT_HDRS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DEPS)
	tests/fuzz/build.sh $< $@

# the tokenizer target reads the Qwen2 tokenizer from build/tiny-abc.abc
fuzz: $(addprefix build/fuzz/,$(FUZZ_TARGETS)) build/tiny-abc.abc
	tests/fuzz/run_fuzz.sh $(FUZZ_TIME) $(FUZZ_TARGETS)

.PHONY: fuzz

# tests/test_hostile.c includes cli/npy.c (the .npy reader's hostile cases)
build/test_hostile: cli/npy.c cli/npy.h

# ---- mutation check (issue #26): tests/mutate/run.sh applies each mutant of tests/mutate/mutants.txt to a
# scratch copy of the tree (build/mutate/tree) and runs the tests that should kill it; prints killed/survived
# per mutant and area and the score. Not part of `make test`. MUTANTS="ID or AREA ...": only those.
MUTANTS ?=
mutate:
	tests/mutate/run.sh $(MUTANTS)

.PHONY: mutate
