#!/usr/bin/env bash
# abc.c (what users vendor) must be exactly the concatenation of its sections in src/.
set -u
if cat $(ls src/*.c | sort) | cmp -s - abc.c; then
    echo "ok   abc.c is up to date with src/*.c"; echo "RESULT 1 0"
else
    echo "FAIL abc.c differs from src/*.c: run 'make abc.c' and commit it"; echo "RESULT 0 1"; exit 1
fi
