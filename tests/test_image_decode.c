/* Image decoders (section 5): PNG, JPEG and PPM/PGM against Pillow's Image.open(f).convert("RGB").
 *
 * - the fixture images decode to the bytes of their Pillow references (tests/fixtures/images/NAME.png)
 * - the generated PNG corpus (tests/gen_png_corpus.py: all colour types, depths, filters, interlace)
 * - small JPEGs (sampling factors, restart, progressive, RGB, CMYK, corrupt entropy data) against djpeg
 *   (libjpeg-turbo's C path) and Pillow, stored next to them as PPM
 * - hostile inputs: truncation at every cut, a mutation fuzz loop, zip bomb, bad CRC/Huffman tables,
 *   oversized headers (refused before allocating), unsupported JPEG flavours, NULL arguments, OOM. */
#include "../abc.c"
#include "test.h"

#define IMG_DIR "tests/fixtures/images/"

static uint8_t *read_all(const char *path, size_t *size) { return (uint8_t *)test_read_file(path, size); }

static abc_status decode_buf(const uint8_t *data, size_t size, abc_image *img, abc_error *err) {
    return abc_image_decode(data, size, 0, img, err);
}

/* Decodes `path` and `ref_path` (any format we read) and checks they give the same RGB bytes. */
static void check_same_pixels(const char *path, const char *ref_path) {
    abc_image a = {0}, b = {0};
    abc_error err;
    abc_status st = abc_image_load(path, 0, &a, &err);
    CHECK(st == ABC_OK, "%s: %s", path, err.message);
    st = abc_image_load(ref_path, 0, &b, &err);
    CHECK(st == ABC_OK, "%s: %s", ref_path, err.message);
    if (a.rgb && b.rgb) {
        CHECK(a.width == b.width && a.height == b.height, "%s: %dx%d vs %dx%d", path, a.width, a.height, b.width,
              b.height);
        if (a.width == b.width && a.height == b.height) {
            size_t n = (size_t)a.width * a.height * 3, diff = 0, first = 0;
            for (size_t i = 0; i < n; i++)
                if (a.rgb[i] != b.rgb[i] && diff++ == 0) first = i;
            CHECK(diff == 0, "%s: %zu bytes differ from %s (first at %zu: %d vs %d)", path, diff, ref_path, first,
                  a.rgb[first], b.rgb[first]);
        }
    }
    abc_image_free(&a);
    abc_image_free(&b);
}

static const char *fixture_names[] = {"astronaut.png",     "coffee.png",      "camera.png",        "rocket.jpg",
                                      "coffee_420_prog.jpg", "camera_gray.jpg", "astronaut_rst.jpg", "palette_color.png"};

static void test_fixture_images_match_pillow(void) {
    for (size_t i = 0; i < sizeof fixture_names / sizeof *fixture_names; i++) {
        char path[256], ref[256];
        snprintf(path, sizeof path, IMG_DIR "%s", fixture_names[i]);
        snprintf(ref, sizeof ref, IMG_DIR "%s.png", fixture_names[i]);
        check_same_pixels(path, ref);
    }
    /* sizes from image_cases.json */
    abc_image img;
    abc_error err;
    CHECK(abc_image_load(IMG_DIR "rocket.jpg", 0, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.width == 640 && img.height == 427, "rocket is %dx%d", img.width, img.height);
    abc_image_free(&img);
    CHECK(abc_image_load(IMG_DIR "coffee.png", 0, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.width == 600 && img.height == 400, "coffee is %dx%d", img.width, img.height);
    abc_image_free(&img);
}

static const char *small_jpegs[] = {"s420", "s422_rst", "s440", "s411", "s444_opt", "s32", "grey", "prog_rst", "rgb",
                                    "cmyk", "corrupt_bits", "corrupt_wrong_rst", "corrupt_eoi_mid_scan"};

static void test_small_jpegs_match_libjpeg(void) {
    for (size_t i = 0; i < sizeof small_jpegs / sizeof *small_jpegs; i++) {
        char path[256], ref[256];
        snprintf(path, sizeof path, IMG_DIR "jpeg_small/%s.jpg", small_jpegs[i]);
        snprintf(ref, sizeof ref, IMG_DIR "jpeg_small/%s.ppm", small_jpegs[i]);
        check_same_pixels(path, ref);
    }
}

static uint32_t rd32le(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void test_png_corpus(void) {
    size_t size;
    uint8_t *blob = read_all("tests/fixtures/png_corpus.bin", &size);
    CHECK(blob != NULL, "cannot read tests/fixtures/png_corpus.bin");
    if (!blob) return;
    CHECK(size > 12 && memcmp(blob, "ABCPNG1\n", 8) == 0, "bad corpus header");
    uint32_t count = rd32le(blob + 8), ok = 0;
    size_t pos = 12;
    for (uint32_t i = 0; i < count && pos + 2 <= size; i++) {
        unsigned name_len = blob[pos] | blob[pos + 1] << 8;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)MIN(name_len, 100u), (const char *)blob + pos + 2);
        pos += 2 + name_len;
        uint32_t png_len = rd32le(blob + pos);
        const uint8_t *png = blob + pos + 4;
        pos += 4 + png_len;
        uint32_t w = rd32le(blob + pos), h = rd32le(blob + pos + 4);
        const uint8_t *rgb = blob + pos + 8;
        pos += 8 + (size_t)w * h * 3;
        CHECK(pos <= size, "corpus overrun at %s", name);
        if (pos > size) break;
        abc_image img;
        abc_error err;
        abc_status st = decode_buf(png, png_len, &img, &err);
        CHECK(st == ABC_OK, "%s: %s", name, err.message);
        if (st != ABC_OK) continue;
        bool same = img.width == (int)w && img.height == (int)h && memcmp(img.rgb, rgb, (size_t)w * h * 3) == 0;
        CHECK(same, "%s: pixels differ from the expected conversion", name);
        ok += same;
        abc_image_free(&img);
    }
    CHECK(count == 180 && ok == count, "%u of %u corpus PNGs match", ok, count);
    free(blob);
}

/* ---- building small hostile inputs ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes_buf;

static void put(bytes_buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_be32(bytes_buf *b, uint32_t v) {
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, q, 4);
}
static void put_chunk(bytes_buf *b, const char *type, const uint8_t *data, size_t n) {
    uint32_t table[256];
    crc32_table_init(table);
    put_be32(b, (uint32_t)n);
    size_t start = b->len;
    put(b, type, 4);
    if (n) put(b, data, n);
    put_be32(b, crc32_compute(table, b->p + start, n + 4));
}
static void put_ihdr(bytes_buf *b, uint32_t w, uint32_t h, int depth, int ct, int interlace) {
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        (uint8_t)depth,     (uint8_t)ct,        0,                 0,
                        (uint8_t)interlace};
    put(b, "\x89PNG\r\n\x1a\n", 8);
    put_chunk(b, "IHDR", ihdr, 13);
}
/* zlib stream of stored blocks for `raw`. */
static void zlib_stored(bytes_buf *z, const uint8_t *raw, size_t n) {
    put(z, "\x78\x01", 2);
    size_t pos = 0;
    do {
        size_t k = MIN(n - pos, (size_t)65535);
        uint8_t hdr[5] = {(uint8_t)(pos + k == n), (uint8_t)k, (uint8_t)(k >> 8), (uint8_t)~k, (uint8_t)(~k >> 8)};
        put(z, hdr, 5);
        if (k) put(z, raw + pos, k);
        pos += k;
    } while (pos < n);
    put_be32(z, adler32(raw, n));
}
static bytes_buf make_png(uint32_t w, uint32_t h, int depth, int ct, const uint8_t *raw, size_t n) {
    bytes_buf b = {0}, z = {0};
    put_ihdr(&b, w, h, depth, ct, 0);
    zlib_stored(&z, raw, n);
    put_chunk(&b, "IDAT", z.p, z.len);
    put_chunk(&b, "IEND", NULL, 0);
    free(z.p);
    return b;
}

static void expect_status(const uint8_t *data, size_t size, size_t max_pixels, abc_status want, const char *needle,
                          const char *what) {
    abc_image img;
    abc_error err = {0};
    abc_status st = abc_image_decode(data, size, max_pixels, &img, &err);
    CHECK(st == want, "%s: status %d, want %d (%s)", what, (int)st, (int)want, err.message);
    if (needle) CHECK(strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.message, needle);
    if (st == ABC_OK) abc_image_free(&img);
    else CHECK(img.rgb == NULL, "%s: image set on error", what);
}

static void test_png_small_cases(void) {
    /* 2x2 grey 8-bit, filter 0 */
    uint8_t raw[] = {0, 10, 250, 0, 7, 128};
    bytes_buf b = make_png(2, 2, 8, 0, raw, sizeof raw);
    abc_image img;
    abc_error err;
    CHECK(decode_buf(b.p, b.len, &img, &err) == ABC_OK, "%s", err.message);
    const uint8_t want[] = {10, 10, 10, 250, 250, 250, 7, 7, 7, 128, 128, 128};
    CHECK(img.width == 2 && img.height == 2 && memcmp(img.rgb, want, 12) == 0, "grey 2x2 pixels");
    abc_image_free(&img);
    /* bad filter type */
    raw[0] = 5;
    bytes_buf c = make_png(2, 2, 8, 0, raw, sizeof raw);
    expect_status(c.p, c.len, 0, ABC_ERR_IMAGE, "filter", "filter type 5");
    free(c.p);
    /* bad CRC in IHDR and in IDAT */
    b.p[8 + 8 + 13 + 2] ^= 0x40;
    expect_status(b.p, b.len, 0, ABC_ERR_IMAGE, "CRC", "IHDR CRC");
    b.p[8 + 8 + 13 + 2] ^= 0x40;
    b.p[b.len - 12 - 3] ^= 1; /* last byte of the IDAT CRC */
    expect_status(b.p, b.len, 0, ABC_ERR_IMAGE, "CRC", "IDAT CRC");
    b.p[b.len - 12 - 3] ^= 1;
    /* Adler-32 mismatch (recomputed CRC so only the zlib checksum is wrong) */
    {
        bytes_buf z = {0}, d = {0};
        zlib_stored(&z, raw, sizeof raw);
        z.p[z.len - 1] ^= 1;
        raw[0] = 0;
        put_ihdr(&d, 2, 2, 8, 0, 0);
        put_chunk(&d, "IDAT", z.p, z.len);
        put_chunk(&d, "IEND", NULL, 0);
        expect_status(d.p, d.len, 0, ABC_ERR_IMAGE, "Adler-32", "Adler-32");
        free(z.p);
        free(d.p);
    }
    /* zero width, bad depth, missing IDAT, chunk length past the end */
    bytes_buf e = {0};
    put_ihdr(&e, 0, 5, 8, 0, 0);
    put_chunk(&e, "IEND", NULL, 0);
    expect_status(e.p, e.len, 0, ABC_ERR_IMAGE, "zero width", "zero width PNG");
    e.len = 0;
    put_ihdr(&e, 4, 4, 3, 0, 0);
    expect_status(e.p, e.len, 0, ABC_ERR_IMAGE, "bit depth", "depth 3");
    e.len = 0;
    put_ihdr(&e, 4, 4, 8, 0, 0);
    put_chunk(&e, "IEND", NULL, 0);
    expect_status(e.p, e.len, 0, ABC_ERR_IMAGE, "no image data", "no IDAT");
    e.len = 0;
    put_ihdr(&e, 4, 4, 8, 0, 0);
    put_be32(&e, 1000);
    put(&e, "IDAT\x78\x01", 6);
    expect_status(e.p, e.len, 0, ABC_ERR_IMAGE, "truncated", "chunk past the end");
    free(e.p);
    free(b.p);
}

/* 65535x65535 (and 2^31-1 wide) headers: ABC_ERR_TOO_LARGE quickly, with no allocation at all (every
 * allocation is made to fail, so allocating first would report ABC_ERR_NOMEM). */
static void test_huge_headers_refused_before_allocating(void) {
    bytes_buf b = {0};
    put_ihdr(&b, 65535, 65535, 8, 2, 0);
    put_chunk(&b, "IEND", NULL, 0);
    atomic_store(&abc_test_fail_after, 0);
    expect_status(b.p, b.len, 0, ABC_ERR_TOO_LARGE, "limit", "PNG 65535x65535");
    atomic_store(&abc_test_fail_after, -1);
    expect_status(b.p, b.len, 1000, ABC_ERR_TOO_LARGE, "1000", "PNG over a small limit");
    b.len = 0;
    put_ihdr(&b, 0x7FFFFFFF, 0x7FFFFFFF, 16, 6, 1);
    atomic_store(&abc_test_fail_after, 0);
    expect_status(b.p, b.len, 0, ABC_ERR_TOO_LARGE, NULL, "PNG 2^31-1 square");
    atomic_store(&abc_test_fail_after, -1);
    free(b.p);
    /* JPEG: SOI, SOF0 65535x65535x3; only the small decoder state may be allocated */
    static const uint8_t sof[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0x01,
                                  0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9};
    atomic_store(&abc_test_fail_after, 1);
    expect_status(sof, sizeof sof, 0, ABC_ERR_TOO_LARGE, "limit", "JPEG 65535x65535");
    atomic_store(&abc_test_fail_after, -1);
    static const char ppm[] = "P6\n65535 65535\n255\n";
    atomic_store(&abc_test_fail_after, 0);
    expect_status((const uint8_t *)ppm, sizeof ppm - 1, 0, ABC_ERR_TOO_LARGE, NULL, "PPM 65535x65535");
    atomic_store(&abc_test_fail_after, -1);
}

/* Writes `nbits` of `code` MSB-first (Huffman codes) or LSB-first (extra bits) into a deflate stream. */
typedef struct {
    bytes_buf out;
    uint32_t acc;
    int n;
} bit_writer;
static void bw_put(bit_writer *w, uint32_t v, int nbits) {
    for (int i = 0; i < nbits; i++) {
        w->acc |= ((v >> i) & 1u) << w->n;
        if (++w->n == 8) {
            uint8_t c = (uint8_t)w->acc;
            put(&w->out, &c, 1);
            w->acc = 0;
            w->n = 0;
        }
    }
}
static void bw_huff(bit_writer *w, uint32_t code, int len) {
    for (int i = len - 1; i >= 0; i--) bw_put(w, (code >> i) & 1, 1);
}

static void test_png_zip_bomb(void) {
    /* A 16x16 grey image needs 272 bytes; this ~6 KB stream inflates to ~12 MB of zeros. */
    bit_writer w = {0};
    put(&w.out, "\x78\x01", 2);
    bw_put(&w, 1, 1);          /* final */
    bw_put(&w, 1, 2);          /* fixed Huffman */
    bw_huff(&w, 0x30, 8);      /* literal 0 */
    for (int i = 0; i < 48000; i++) {
        bw_huff(&w, 0xC5, 8);  /* length symbol 285: 258 bytes */
        bw_huff(&w, 0, 5);     /* distance 1 */
    }
    bw_huff(&w, 0, 7); /* end of block */
    bw_put(&w, 0, 7);
    put_be32(&w.out, 0);
    bytes_buf b = {0};
    put_ihdr(&b, 16, 16, 8, 0, 0);
    put_chunk(&b, "IDAT", w.out.p, w.out.len);
    put_chunk(&b, "IEND", NULL, 0);
    expect_status(b.p, b.len, 0, ABC_ERR_IMAGE, "more bytes than the header", "zip bomb");
    free(b.p);
    free(w.out.p);
}

/* Stored (uncompressed) deflate blocks that each fit the raw size but together exceed it (issue #26, R1):
 * a 1x1 RGB image is 4 raw bytes (filter byte + 3); two 4-byte stored blocks must be refused, not copied
 * past the end of the output (a check against the whole output size instead of the room left would write
 * 4 bytes out of bounds, which ASan reports). One 4-byte block alone decodes. */
static void test_png_stored_blocks_overflow(void) {
    const uint8_t raw[4] = {0, 11, 22, 33};
    for (int blocks = 1; blocks <= 3; blocks++) {
        bytes_buf z = {0}, b = {0};
        put(&z, "\x78\x01", 2);
        for (int i = 0; i < blocks; i++) {
            uint8_t hdr[5] = {(uint8_t)(i == blocks - 1), 4, 0, 0xFB, 0xFF};
            put(&z, hdr, 5);
            put(&z, raw, 4);
        }
        put_be32(&z, adler32(raw, 4)); /* right for one block; never reached with more */
        put_ihdr(&b, 1, 1, 8, 2, 0);
        put_chunk(&b, "IDAT", z.p, z.len);
        put_chunk(&b, "IEND", NULL, 0);
        if (blocks == 1) {
            abc_image img;
            abc_error err;
            CHECK(decode_buf(b.p, b.len, &img, &err) == ABC_OK, "one stored block: %s", err.message);
            CHECK(img.width == 1 && img.height == 1 && memcmp(img.rgb, raw + 1, 3) == 0, "one stored block: pixels");
            abc_image_free(&img);
        } else {
            expect_status(b.p, b.len, 0, ABC_ERR_IMAGE, "more bytes than the header", "stored blocks past the raw size");
        }
        free(z.p);
        free(b.p);
    }
}

static void test_ppm(void) {
    abc_image img;
    abc_error err;
    static const char p6[] = "P6 # comment\n2 1\n255\n\x01\x02\x03\xfa\xfb\xfc";
    CHECK(decode_buf((const uint8_t *)p6, sizeof p6 - 1, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.width == 2 && img.height == 1 && memcmp(img.rgb, "\x01\x02\x03\xfa\xfb\xfc", 6) == 0, "P6 pixels");
    abc_image_free(&img);
    /* Pillow 9.4 results: maxval 15 scales with round-half-even, 16-bit PGM clips at 255 */
    static const char p5_15[] = "P5\n4 1\n15\n\x00\x07\x08\x0f";
    CHECK(decode_buf((const uint8_t *)p5_15, sizeof p5_15 - 1, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.rgb[0] == 0 && img.rgb[3] == 119 && img.rgb[6] == 136 && img.rgb[9] == 255 && img.rgb[10] == 255,
          "P5 maxval 15: %d %d %d %d", img.rgb[0], img.rgb[3], img.rgb[6], img.rgb[9]);
    abc_image_free(&img);
    /* maxvals whose scaled values are not integers (Pillow 13.0: round, not truncate): 1/100·255 = 2.55 → 3,
     * 99 → 252.45 → 252, 50 → 127.5 → 128; P6 maxval 200: 3 → 3.825 → 4, 199 → 253.725 → 254 */
    static const char p5_100[] = "P5\n5 1\n100\n\x00\x01\x32\x63\x64";
    CHECK(decode_buf((const uint8_t *)p5_100, sizeof p5_100 - 1, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.rgb[0] == 0 && img.rgb[3] == 3 && img.rgb[6] == 128 && img.rgb[9] == 252 && img.rgb[12] == 255,
          "P5 maxval 100: %d %d %d %d %d", img.rgb[0], img.rgb[3], img.rgb[6], img.rgb[9], img.rgb[12]);
    abc_image_free(&img);
    static const char p6_200[] = "P6\n2 1\n200\n\x01\x03\x05\xc7\x64\x65";
    CHECK(decode_buf((const uint8_t *)p6_200, sizeof p6_200 - 1, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.rgb && !memcmp(img.rgb, "\x01\x04\x06\xfe\x80\x81", 6), "P6 maxval 200: %d %d %d %d %d %d", img.rgb[0],
          img.rgb[1], img.rgb[2], img.rgb[3], img.rgb[4], img.rgb[5]);
    abc_image_free(&img);
    static const uint8_t p5_16[] = {'P', '5', '\n', '4', ' ', '1', '\n', '6', '5', '5', '3', '5', '\n',
                                    0,   0,   0,    200, 1,  0,   0xFF, 0xFF};
    CHECK(decode_buf(p5_16, sizeof p5_16, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.rgb[0] == 0 && img.rgb[3] == 200 && img.rgb[6] == 255 && img.rgb[9] == 255, "P5 16-bit");
    abc_image_free(&img);
    static const uint8_t p5_1000[] = {'P', '5', '\n', '4', ' ', '1', '\n', '1', '0', '0', '0', '\n',
                                      0,   0,   0,    3,   0,   4,   3,    0xE8};
    CHECK(decode_buf(p5_1000, sizeof p5_1000, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.rgb[0] == 0 && img.rgb[3] == 197 && img.rgb[6] == 255 && img.rgb[9] == 255, "P5 maxval 1000: %d",
          img.rgb[3]);
    abc_image_free(&img);
    static const uint8_t p6_16[] = {'P', '6', ' ', '1', ' ', '1', ' ', '1', '0', '2', '3', '\n', 0, 0, 2, 0, 3, 0xFF};
    CHECK(decode_buf(p6_16, sizeof p6_16, &img, &err) == ABC_OK, "%s", err.message);
    CHECK(img.rgb[0] == 0 && img.rgb[1] == 128 && img.rgb[2] == 255, "P6 maxval 1023: %d %d %d", img.rgb[0],
          img.rgb[1], img.rgb[2]);
    abc_image_free(&img);
    static const char trunc[] = "P6\n2 2\n255\n\x01\x02\x03";
    expect_status((const uint8_t *)trunc, sizeof trunc - 1, 0, ABC_ERR_IMAGE, "truncated", "P6 truncated");
    static const char zero[] = "P5\n0 5\n255\n";
    expect_status((const uint8_t *)zero, sizeof zero - 1, 0, ABC_ERR_IMAGE, "zero", "P5 0x5");
    static const char badmax[] = "P5\n1 1\n70000\n\x01";
    expect_status((const uint8_t *)badmax, sizeof badmax - 1, 0, ABC_ERR_IMAGE, "maxval", "maxval 70000");
    static const char plain[] = "P3\n1 1\n255\n1 2 3\n";
    expect_status((const uint8_t *)plain, sizeof plain - 1, 0, ABC_ERR_UNSUPPORTED, "P3", "P3");
}

static void test_bad_arguments_and_formats(void) {
    abc_image img;
    abc_error err;
    uint8_t byte = 0;
    CHECK(abc_image_decode(NULL, 10, 0, &img, &err) == ABC_ERR_INVALID_ARG, "NULL data");
    CHECK(abc_image_decode(&byte, 1, 0, NULL, &err) == ABC_ERR_INVALID_ARG, "NULL out");
    CHECK(abc_image_decode(NULL, 0, 0, NULL, NULL) == ABC_ERR_INVALID_ARG, "NULL everything");
    CHECK(abc_image_load(NULL, 0, &img, &err) == ABC_ERR_INVALID_ARG, "NULL path");
    CHECK(abc_image_load(IMG_DIR "rocket.jpg", 0, NULL, &err) == ABC_ERR_INVALID_ARG, "NULL image");
    CHECK(abc_image_load("tests/fixtures/images/does-not-exist.jpg", 0, &img, &err) == ABC_ERR_IO, "missing file");
    CHECK(strstr(err.message, "does-not-exist") != NULL, "message names the file: %s", err.message);
    CHECK(abc_image_load("tests/fixtures/images", 0, &img, &err) != ABC_OK, "a directory");
    abc_image_free(NULL);
    expect_status(&byte, 0, 0, ABC_ERR_IMAGE, "unknown image format", "empty input");
    static const char gif[] = "GIF89a\x01\x00\x01\x00";
    expect_status((const uint8_t *)gif, sizeof gif - 1, 0, ABC_ERR_IMAGE, "unknown image format", "GIF");
}

/* ---- JPEG hostile cases, made by editing a small baseline JPEG ---- */

static size_t find_marker(const uint8_t *d, size_t n, int marker) {
    for (size_t i = 0; i + 1 < n; i++)
        if (d[i] == 0xFF && d[i + 1] == marker) return i;
    return SIZE_MAX;
}

static void test_jpeg_unsupported_and_bad_tables(void) {
    size_t n;
    uint8_t *orig = read_all(IMG_DIR "jpeg_small/s420.jpg", &n);
    CHECK(orig != NULL, "cannot read s420.jpg");
    if (!orig) return;
    uint8_t *d = malloc(n);
    size_t sof = find_marker(orig, n, 0xC0), dht = find_marker(orig, n, 0xC4);
    CHECK(sof != SIZE_MAX && dht != SIZE_MAX, "s420.jpg has SOF0 and DHT");
    /* 12-bit precision, arithmetic coding, lossless, hierarchical */
    memcpy(d, orig, n);
    d[sof + 4] = 12;
    expect_status(d, n, 0, ABC_ERR_UNSUPPORTED, "12-bit", "12-bit JPEG");
    memcpy(d, orig, n);
    d[sof + 1] = 0xC9;
    expect_status(d, n, 0, ABC_ERR_UNSUPPORTED, "arithmetic", "arithmetic JPEG");
    d[sof + 1] = 0xCA;
    expect_status(d, n, 0, ABC_ERR_UNSUPPORTED, "arithmetic", "progressive arithmetic JPEG");
    d[sof + 1] = 0xC3;
    expect_status(d, n, 0, ABC_ERR_UNSUPPORTED, "lossless", "lossless JPEG");
    d[sof + 1] = 0xC5;
    expect_status(d, n, 0, ABC_ERR_UNSUPPORTED, "hierarchical", "hierarchical JPEG");
    /* zero width; two components */
    memcpy(d, orig, n);
    d[sof + 7] = d[sof + 8] = 0;
    expect_status(d, n, 0, ABC_ERR_IMAGE, "zero width", "JPEG width 0");
    /* over-subscribed Huffman table: move 3 codes to length 1 (total unchanged) */
    memcpy(d, orig, n);
    uint8_t *counts = d + dht + 5; /* after FF C4 len(2) class/index(1): bits[1..16] */
    int moved = 0;
    for (int l = 16; l >= 2 && moved < 3; l--)
        while (counts[l - 1] > 0 && moved < 3) {
            counts[l - 1]--;
            moved++;
        }
    counts[0] = (uint8_t)(counts[0] + moved);
    expect_status(d, n, 0, ABC_ERR_IMAGE, "Huffman table", "over-subscribed Huffman table");
    /* DC table with a symbol above 15 */
    memcpy(d, orig, n);
    CHECK((d[dht + 4] >> 4) == 0, "first DHT is a DC table");
    int total = 0;
    for (int l = 0; l < 16; l++) total += d[dht + 5 + l];
    d[dht + 5 + 16 + total - 1] = 200;
    expect_status(d, n, 0, ABC_ERR_IMAGE, "DC Huffman table", "DC symbol 200");
    /* table count larger than the segment */
    memcpy(d, orig, n);
    d[dht + 5 + 15] = 250;
    expect_status(d, n, 0, ABC_ERR_IMAGE, "Huffman", "DHT count past its segment");
    /* progressive file cut short and closed with EOI: libjpeg would smooth blocks, we refuse */
    abc_image img;
    abc_error err;
    CHECK(abc_image_load(IMG_DIR "jpeg_small/prog_incomplete.jpg", 0, &img, &err) == ABC_ERR_UNSUPPORTED,
          "incomplete progressive: %s", err.message);
    /* no DHT at all: libjpeg-turbo's default tables decode standard-table files (Motion JPEG) */
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        if (i + 4 <= n && orig[i] == 0xFF && orig[i + 1] == 0xC4) {
            i += 2 + ((size_t)orig[i + 2] << 8 | orig[i + 3]);
            continue;
        }
        d[m++] = orig[i++];
    }
    abc_image a, b;
    CHECK(decode_buf(orig, n, &a, &err) == ABC_OK, "%s", err.message);
    CHECK(decode_buf(d, m, &b, &err) == ABC_OK, "without DHT: %s", err.message);
    if (a.rgb && b.rgb) CHECK(memcmp(a.rgb, b.rgb, (size_t)a.width * a.height * 3) == 0, "std tables differ");
    abc_image_free(&a);
    abc_image_free(&b);
    free(d);
    free(orig);
}

/* Every prefix of each file: never crashes; PNG cut inside its image data and JPEG cut anywhere before
 * the end are ABC_ERR_IMAGE (Pillow: "image file is truncated"). */
static void check_truncations(const char *path, bool is_png) {
    size_t n;
    uint8_t *d = read_all(path, &n);
    CHECK(d != NULL, "cannot read %s", path);
    if (!d) return;
    size_t data_end = n; /* PNG: end of the last IDAT chunk */
    if (is_png) {
        for (size_t pos = 8; pos + 12 <= n;) {
            uint32_t len = load_be32(d + pos);
            if (memcmp(d + pos + 4, "IDAT", 4) == 0) data_end = pos + 12 + len;
            pos += 12 + (size_t)len;
        }
    }
    size_t step = n > 4000 ? n / 1500 : 1, wrong = 0;
    for (size_t cut = 0; cut < n; cut += (cut < 64 || n - cut < 64) ? 1 : step) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, d, cut);
        abc_image img;
        abc_error err;
        abc_status st = decode_buf(p, cut, &img, &err);
        abc_status want = is_png && cut >= data_end ? ABC_OK : ABC_ERR_IMAGE;
        /* A sequential JPEG missing only its EOI decodes when its last bits did not need the missing
         * bytes; libjpeg's outcome there depends on its read-ahead, so either answer is accepted. */
        if (!is_png && cut >= n - 2 && st == ABC_OK) want = ABC_OK;
        if (st != want && wrong++ < 3) CHECK(st == want, "%s cut at %zu of %zu: status %d (%s)", path, cut, n, st, err.message);
        if (st == ABC_OK) abc_image_free(&img);
        free(p);
    }
    CHECK(wrong == 0, "%s: %zu cuts gave an unexpected status", path, wrong);
    free(d);
}

static void test_truncated_files(void) {
    check_truncations(IMG_DIR "jpeg_small/s420.jpg", false);
    check_truncations(IMG_DIR "jpeg_small/prog_rst.jpg", false);
    check_truncations(IMG_DIR "jpeg_small/s422_rst.jpg", false);
    check_truncations(IMG_DIR "jpeg_small/grey.jpg", false);
    check_truncations(IMG_DIR "camera_gray.jpg", false);
    check_truncations(IMG_DIR "coffee_420_prog.jpg", false);
    check_truncations(IMG_DIR "palette_color.png", true);
    check_truncations(IMG_DIR "camera.png", true);
}

/* Deterministic mutation fuzzing: bit flips, random bytes, 0xFF/0x00 runs, inserted markers, deleted and
 * duplicated ranges. Every result must be ABC_OK with a sane image or an error, never a crash (ASan/UBSan). */
static uint64_t fuzz_state = 0x9E3779B97F4A7C15ull;
static uint32_t fuzz_rand(void) {
    fuzz_state = fuzz_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(fuzz_state >> 33);
}

static void fuzz_file(const uint8_t *orig, size_t n, int iterations, size_t *ok, size_t *errors) {
    uint8_t *d = malloc(n * 2 + 64);
    for (int it = 0; it < iterations; it++) {
        memcpy(d, orig, n);
        size_t len = n;
        int edits = 1 + (int)(fuzz_rand() % 4);
        for (int e = 0; e < edits && len > 4; e++) {
            /* favour the headers: half of the edits land in the first 1 KB */
            size_t span = (fuzz_rand() & 1) ? MIN(len, (size_t)1024) : len;
            size_t at = fuzz_rand() % span;
            switch (fuzz_rand() % 7) {
            case 0: d[at] ^= (uint8_t)(1u << (fuzz_rand() % 8)); break;
            case 1: d[at] = (uint8_t)fuzz_rand(); break;
            case 2: d[at] = 0xFF; break;
            case 3: d[at] = 0x00; break;
            case 4: /* insert a marker */
                if (len + 2 <= n * 2 + 64 && at + 2 <= len) {
                    static const uint8_t markers[] = {0xD0, 0xD3, 0xD9, 0xC4, 0xDB, 0xDA, 0xC2, 0xDD, 0xFF, 0x00};
                    memmove(d + at + 2, d + at, len - at);
                    d[at] = 0xFF;
                    d[at + 1] = markers[fuzz_rand() % sizeof markers];
                    len += 2;
                }
                break;
            case 5: { /* delete a range */
                size_t want = 1 + fuzz_rand() % 64, k = MIN(len - at, want);
                memmove(d + at, d + at + k, len - at - k);
                len -= k;
                break;
            }
            default: { /* duplicate a range */
                size_t want = 1 + fuzz_rand() % 32, k = MIN(len - at, want);
                if (len + k <= n * 2 + 64) {
                    memmove(d + at + k, d + at, len - at);
                    len += k;
                }
                break;
            }
            }
        }
        abc_image img;
        abc_error err;
        abc_status st = abc_image_decode(d, len, 1 << 22, &img, &err);
        if (st == ABC_OK) {
            CHECK(img.width > 0 && img.height > 0 && img.rgb != NULL, "fuzz: bad image on success");
            (*ok)++;
            abc_image_free(&img);
        } else {
            CHECK(st == ABC_ERR_IMAGE || st == ABC_ERR_UNSUPPORTED || st == ABC_ERR_TOO_LARGE,
                  "fuzz: unexpected status %d: %s", (int)st, err.message);
            CHECK(err.message[0] != 0, "fuzz: error without a message");
            (*errors)++;
        }
    }
    free(d);
}

static void test_mutation_fuzz(void) {
    static const char *seeds[] = {"jpeg_small/s420.jpg",     "jpeg_small/s422_rst.jpg", "jpeg_small/prog_rst.jpg",
                                  "jpeg_small/s411.jpg",     "jpeg_small/s440.jpg",     "jpeg_small/grey.jpg",
                                  "jpeg_small/rgb.jpg",      "jpeg_small/cmyk.jpg",     "jpeg_small/s32.jpg",
                                  "palette_color.png",       "camera_gray.jpg",         "coffee_420_prog.jpg"};
    size_t ok = 0, errors = 0;
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        char path[256];
        snprintf(path, sizeof path, IMG_DIR "%s", seeds[i]);
        size_t n;
        uint8_t *d = read_all(path, &n);
        CHECK(d != NULL, "cannot read %s", path);
        if (!d) continue;
        fuzz_file(d, n, n > 20000 ? 150 : 1500, &ok, &errors);
        free(d);
    }
    /* PNG seeds: a few corpus files of different colour types and interlace */
    size_t size;
    uint8_t *blob = read_all("tests/fixtures/png_corpus.bin", &size);
    if (blob) {
        size_t pos = 12;
        for (uint32_t i = 0; i < rd32le(blob + 8) && pos < size; i++) {
            unsigned name_len = blob[pos] | blob[pos + 1] << 8;
            pos += 2 + name_len;
            uint32_t png_len = rd32le(blob + pos);
            if (i % 9 == 0) fuzz_file(blob + pos + 4, png_len, 400, &ok, &errors);
            pos += 4 + png_len;
            uint32_t w = rd32le(blob + pos), h = rd32le(blob + pos + 4);
            pos += 8 + (size_t)w * h * 3;
        }
        free(blob);
    }
    printf("     fuzz: %zu decoded, %zu refused\n", ok, errors);
    CHECK(ok > 1000 && errors > 1000, "fuzz exercised both outcomes (%zu ok, %zu errors)", ok, errors);
}

/* Out of memory at every allocation: NOMEM, no leak, no crash. */
static void test_allocation_failures(void) {
    static const char *files[] = {IMG_DIR "jpeg_small/prog_rst.jpg", IMG_DIR "jpeg_small/s420.jpg",
                                  IMG_DIR "palette_color.png"};
    for (size_t f = 0; f < 3; f++) {
        size_t n;
        uint8_t *d = read_all(files[f], &n);
        if (!d) continue;
        bool succeeded = false;
        for (long k = 0; k < 40 && !succeeded; k++) {
            abc_image img;
            abc_error err;
            atomic_store(&abc_test_fail_after, k);
            abc_status st = decode_buf(d, n, &img, &err);
            atomic_store(&abc_test_fail_after, -1);
            if (st == ABC_OK) {
                succeeded = true;
                abc_image_free(&img);
            } else {
                CHECK(st == ABC_ERR_NOMEM, "%s with %ld allocations: status %d (%s)", files[f], k, st, err.message);
            }
        }
        CHECK(succeeded, "%s never decoded", files[f]);
        free(d);
    }
}

/* Informational: time to decode the biggest fixture (the 12-megapixel figure is in the report). */
static void test_decode_speed_sanity(void) {
    size_t n;
    uint8_t *d = read_all(IMG_DIR "rocket.jpg", &n);
    if (!d) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    abc_image img;
    abc_error err;
    for (int i = 0; i < 5; i++) {
        CHECK(decode_buf(d, n, &img, &err) == ABC_OK, "%s", err.message);
        abc_image_free(&img);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / 5;
    printf("     rocket.jpg (640x427) decodes in %.2f ms (sanitizer build)\n", ms);
    free(d);
}

int main(void) {
    RUN_TEST(test_fixture_images_match_pillow);
    RUN_TEST(test_small_jpegs_match_libjpeg);
    RUN_TEST(test_png_corpus);
    RUN_TEST(test_png_small_cases);
    RUN_TEST(test_huge_headers_refused_before_allocating);
    RUN_TEST(test_png_zip_bomb);
    RUN_TEST(test_png_stored_blocks_overflow);
    RUN_TEST(test_ppm);
    RUN_TEST(test_bad_arguments_and_formats);
    RUN_TEST(test_jpeg_unsupported_and_bad_tables);
    RUN_TEST(test_truncated_files);
    RUN_TEST(test_mutation_fuzz);
    RUN_TEST(test_allocation_failures);
    RUN_TEST(test_decode_speed_sanity);
    return test_summary();
}
