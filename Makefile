# abc — build, test, benchmark.  See README.md.
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# -ffp-contract=off: preprocessing must be bit-exact with the Python reference (no fused multiply-add
# unless a kernel asks for it explicitly with intrinsics).
BASEFLAGS = -std=c11 -Wall -Wextra -ffp-contract=off -I.
LDLIBS  = -lm -lpthread

ABC_PARTS = $(sort $(wildcard src/*.c))

all: abc abc-convert

# abc.c is one amalgamated file assembled from its sections in src/ (data-flow order).
abc.c: $(ABC_PARTS)
	cat $(ABC_PARTS) > $@

abc.o: abc.c abc.h
	$(CC) $(BASEFLAGS) $(CFLAGS) -c abc.c -o $@

abc: abc.o $(wildcard cli/*.c) abc.h
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $(wildcard cli/*.c) abc.o $(LDLIBS)

CONVERT_SRC = $(wildcard model_convert/*.c)
abc-convert: $(CONVERT_SRC) $(wildcard model_convert/*.h)
	$(CC) $(BASEFLAGS) $(CFLAGS) -o $@ $(CONVERT_SRC) $(LDLIBS)

clean:
	rm -f abc abc-convert abc.o abc.c
	rm -rf build

.PHONY: all clean test test-full bench
