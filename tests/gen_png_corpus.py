#!/usr/bin/env python3
"""Generates tests/fixtures/png_corpus.bin: small PNGs across every colour type x bit depth x interlace x
filter type, with palettes, tRNS, ancillary chunks, split IDAT chunks and several deflate strategies
(stored, fixed Huffman, dynamic), each with the RGB bytes Pillow's Image.open(f).convert("RGB") gives.

The encoder and the expected pixels are computed here with the standard library only (zlib, struct).
The expected conversion follows Pillow: low-bit grey scaled (1 bit -> 0/255, 2 bits x85, 4 bits x17),
16-bit grey is mode "I" and clips to 255, other 16-bit samples keep their high byte, alpha and tRNS are
dropped, palette indices past the PLTE read (i, i, i). When Pillow is importable the expectations are
checked against it once (python3-pil; run with /usr/bin/python3 on Debian).

Packed format (little endian): magic b"ABCPNG1\\n", u32 count, then per case: u16 name length, name,
u32 PNG length, PNG bytes, u32 width, u32 height, width*height*3 RGB bytes.

Usage: python3 tests/gen_png_corpus.py [OUT]   (default tests/fixtures/png_corpus.bin)
"""
import random
import struct
import sys
import zlib

COMBOS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
          (4, 8), (4, 16), (6, 8), (6, 16)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
SIZES = [(13, 11), (1, 1), (3, 1), (1, 5), (9, 9), (17, 3), (8, 8), (2, 7), (33, 6), (5, 13), (7, 7), (16, 2)]
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(ctype, data):
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def pack_row(samples, depth):
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(ftype, row, prev, bpp):
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][ftype]
        out[i] = (x - pred) & 255
    return bytes([ftype]) + bytes(out)


def passes(width, height, interlace):
    if not interlace:
        yield 0, 0, 1, 1, width, height
        return
    for x0, y0, dx, dy in ADAM7:
        pw = (width - x0 + dx - 1) // dx if width > x0 else 0
        ph = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pw and ph:
            yield x0, y0, dx, dy, pw, ph


def to_rgb(ct, depth, px, palette):
    """One pixel's samples -> Pillow's RGB."""
    if ct == 0:
        v = px[0]
        v = {1: 255 * v, 2: 85 * v, 4: 17 * v, 8: v, 16: min(v, 255)}[depth]
        return (v, v, v)
    if ct == 3:
        i = px[0]
        return tuple(palette[3 * i:3 * i + 3]) if 3 * i + 3 <= len(palette) else (i, i, i)
    hi = [s >> 8 if depth == 16 else s for s in px]
    return (hi[0], hi[0], hi[0]) if ct == 4 else tuple(hi[:3])


def make_case(rng, ct, depth, interlace, ftype, size, variant):
    width, height = size
    nch = CHANNELS[ct]
    maxv = (1 << depth) - 1
    palette = b""
    if ct == 3:
        n = rng.randint(1, 1 << depth) if variant != "short_palette" else max(1, (1 << depth) // 3)
        palette = bytes(rng.randrange(256) for _ in range(3 * n))
    pixels = []
    for _ in range(height):
        row = []
        for _ in range(width):
            if ct == 3:
                limit = (1 << depth) - 1 if variant == "short_palette" else len(palette) // 3 - 1
                row.append((rng.randint(0, limit),))
            elif depth == 16 and rng.random() < 0.5:
                row.append(tuple(rng.randrange(256) for _ in range(nch)))  # small values: clipping edge
            else:
                row.append(tuple(rng.randint(0, maxv) for _ in range(nch)))
        pixels.append(row)
    bpp = max(1, nch * depth // 8)
    raw = bytearray()
    for x0, y0, dx, dy, pw, ph in passes(width, height, interlace):
        prev = bytes(len(pack_row([0] * (pw * nch), depth)))
        for j in range(ph):
            samples = [s for i in range(pw) for s in pixels[y0 + j * dy][x0 + i * dx]]
            row = pack_row(samples, depth)
            f = ftype if ftype >= 0 else (j + x0) % 5  # -1: a different filter on each row
            raw += filter_row(f, row, prev, bpp)
            prev = row
    strategies = [(zlib.Z_DEFAULT_STRATEGY, 6), (zlib.Z_FIXED, 9), (zlib.Z_HUFFMAN_ONLY, 6), (zlib.Z_RLE, 6),
                  (zlib.Z_DEFAULT_STRATEGY, 0), (zlib.Z_DEFAULT_STRATEGY, 1)]
    strategy, level = strategies[rng.randrange(len(strategies))]
    comp = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    zdata = comp.compress(bytes(raw)) + comp.flush()
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, ct, 0, 0, interlace))
    if variant == "ancillary":
        png += chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"tEXt", b"Comment\0abc png corpus")
    if ct == 3:
        png += chunk(b"PLTE", palette)
    if variant == "trns":
        if ct == 0:
            png += chunk(b"tRNS", struct.pack(">H", rng.randint(0, maxv)))
        elif ct == 2:
            png += chunk(b"tRNS", struct.pack(">HHH", *(rng.randint(0, maxv) for _ in range(3))))
        elif ct == 3:
            png += chunk(b"tRNS", bytes(rng.randrange(256) for _ in range(len(palette) // 3)))
    # Split the zlib stream over several IDAT chunks at arbitrary points.
    pos = 0
    while pos < len(zdata):
        step = len(zdata) if rng.random() < 0.5 else rng.randint(1, max(1, len(zdata) // 2))
        png += chunk(b"IDAT", zdata[pos:pos + step])
        pos += step
    png += chunk(b"IEND", b"")
    rgb = bytes(c for row in pixels for px in row for c in to_rgb(ct, depth, px, palette))
    return png, width, height, rgb


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/png_corpus.bin"
    rng = random.Random(20240601)
    cases = []
    k = 0
    for ct, depth in COMBOS:
        for interlace in (0, 1):
            for ftype in (0, 1, 2, 3, 4, -1):
                variant = ["plain", "trns", "ancillary", "short_palette" if ct == 3 else "trns", "plain", "plain"][k % 6]
                size = SIZES[k % len(SIZES)]
                k += 1
                name = "ct%d_d%d_i%d_f%s_%dx%d_%s" % (ct, depth, interlace, "mix" if ftype < 0 else ftype,
                                                      size[0], size[1], variant)
                cases.append((name,) + make_case(rng, ct, depth, interlace, ftype, size, variant))
    try:
        import io
        from PIL import Image
        for name, png, w, h, rgb in cases:
            im = Image.open(io.BytesIO(png))
            got = im.convert("RGB").tobytes()
            if im.size != (w, h) or got != rgb:
                sys.exit("expectation differs from Pillow for %s" % name)
        print("checked %d cases against Pillow %s" % (len(cases), Image.__version__))
    except ImportError:
        print("Pillow not available: expectations not cross-checked")
    blob = bytearray(b"ABCPNG1\n" + struct.pack("<I", len(cases)))
    for name, png, w, h, rgb in cases:
        nb = name.encode()
        blob += struct.pack("<H", len(nb)) + nb + struct.pack("<I", len(png)) + png + struct.pack("<II", w, h) + rgb
    with open(out, "wb") as f:
        f.write(blob)
    print("wrote %s: %d cases, %d bytes" % (out, len(cases), len(blob)))


if __name__ == "__main__":
    main()
