#!/usr/bin/env python3
"""Writes the hand-made inputs of tests/fixtures/hostile/ (issue #19): tiny files that claim huge sizes.
Standard library only. Run from the repository root: python3 tests/fuzz/gen_hostile.py"""
import struct
import zlib

OUT = "tests/fixtures/hostile/"


def npy(shape, descr="<f4", data=b""):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d," % s for s in shape))
    total = 10 + len(header) + 1
    header += " " * ((total + 63) // 64 * 64 - total) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def jpeg_hollow(width, height, scan):
    """Baseline grayscale JPEG whose header claims width×height but whose scan holds only `scan`
    bytes (every block costs two bits: DC category 0 and an immediate end-of-block)."""
    seg = lambda marker, body: b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body
    dqt = seg(0xDB, b"\x00" + bytes([1] * 64))
    sof = seg(0xC0, b"\x08" + struct.pack(">HH", height, width) + b"\x01" + b"\x01\x11\x00")
    one_code = bytes([1] + [0] * 15)  # a single 1-bit code
    dht = seg(0xC4, b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\x00")
    sos = seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x00" * scan + b"\xff\xd9"


def png(width, height, color_type, bit_depth, raw, level=9):
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b"")


def write(name, data):
    with open(OUT + name, "wb") as f:
        f.write(data)


# .npy: 128 bytes whose shape asks for 1.1e9 float32 (4.4 GB).
write("npy_shape_4gb.npy", npy([1100000000]))
# .npy: shape product overflows size_t.
write("npy_shape_overflow.npy", npy([1 << 40, 1 << 40]))
# JPEG: a 14336x14336 header (205,520,896 pixels, exactly the default pixel limit) with 16 bytes of scan.
write("jpeg_hollow_14336.jpg", jpeg_hollow(14336, 14336, 16))
# PNG zlib bomb: 14336x14336 RGB of zeros (616 MB of filtered rows) compressed to ~600 KB.
row = 1 + 14336 * 3
write("png_bomb_14336.png", png(14336, 14336, 2, 8, b"\x00" * (row * 14336)))
# PNG whose IDAT ends long before the rows do: 14336x14336 claimed, one row of data.
write("png_hollow_14336.png", png(14336, 14336, 2, 8, b"\x00" * row))
