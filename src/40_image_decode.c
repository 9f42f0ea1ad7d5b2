
/* ================================================================================================
 * 5. Image decode: PNG, JPEG, PPM/PGM → 8-bit RGB, byte for byte as Pillow's Image.open(f).convert("RGB")
 *
 *   5.1 helpers   5.2 inflate (RFC 1950/1951)   5.3 PNG   5.4 JPEG (markers, Huffman, sequential and
 *   progressive scans, islow IDCT, fancy upsampling, colour)   5.5 PPM/PGM   5.6 dispatch and API
 *
 * The JPEG path reproduces libjpeg-turbo's default decode as Pillow drives it (islow IDCT, fancy
 * upsampling, its fixed-point YCbCr tables), including what it does with damaged entropy data: a bad
 * Huffman code decodes as 0, data cut by a marker reads as zero bits and the rest of the restart
 * interval stays zero. A file that simply ends early is an error, as it is for Pillow ("image file is
 * truncated"). PNG checks chunk CRCs and the Adler-32 (stricter than Pillow) and never inflates more
 * than the header implies.
 * ================================================================================================ */

static uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static unsigned load_be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* ---- 5.1 helpers ---- */

/* Refuses empty images and images over the pixel limit; called before anything is allocated. */
static abc_status image_check_size(uint64_t width, uint64_t height, size_t max_pixels, const char *format,
                                   abc_error *err) {
    if (width == 0 || height == 0)
        return fail(err, ABC_ERR_IMAGE, "%s image has zero width or height (%llux%llu)", format,
                    (unsigned long long)width, (unsigned long long)height);
    if (width > INT_MAX || height > INT_MAX || width * height > (uint64_t)max_pixels)
        return fail(err, ABC_ERR_TOO_LARGE, "%s image is %llux%llu pixels, more than the limit of %zu pixels",
                    format, (unsigned long long)width, (unsigned long long)height, max_pixels);
    return ABC_OK;
}

static abc_status image_alloc(abc_image *img, uint64_t width, uint64_t height, abc_error *err) {
    size_t n;
    if (!mul_size((size_t)width, (size_t)height, &n) || !mul_size(n, 3, &n))
        return fail(err, ABC_ERR_TOO_LARGE, "image of %llux%llu pixels does not fit in memory",
                    (unsigned long long)width, (unsigned long long)height);
    img->rgb = xmalloc(n);
    if (!img->rgb) return fail(err, ABC_ERR_NOMEM, "out of memory for a %llux%llu image",
                                (unsigned long long)width, (unsigned long long)height);
    img->width = (int)width;
    img->height = (int)height;
    return ABC_OK;
}

/* ---- 5.2 inflate (zlib stream, RFC 1950 / RFC 1951) ---- */

/* LSB-first bit reader. Past the end it supplies zero bytes and counts them, so callers can detect a
 * truncated stream with one comparison instead of a check per bit. */
typedef struct {
    const uint8_t *p, *end;
    uint64_t bits;
    int nbits;
    int64_t pad_bytes;
} lsb_reader;

static void lsb_refill(lsb_reader *b) {
    while (b->nbits <= 56) {
        uint64_t byte = 0;
        if (b->p < b->end) byte = *b->p++;
        else b->pad_bytes++;
        b->bits |= byte << b->nbits;
        b->nbits += 8;
    }
}

static inline uint32_t lsb_get(lsb_reader *b, int n) {
    if (b->nbits < n) lsb_refill(b);
    uint32_t v = (uint32_t)(b->bits & ((UINT64_C(1) << n) - 1));
    b->bits >>= n;
    b->nbits -= n;
    return v;
}

/* True once the decoder has consumed bits that are not in the input. */
static inline bool lsb_overrun(const lsb_reader *b) { return b->pad_bytes * 8 > b->nbits; }

#define INFL_FAST_BITS 10

/* Canonical Huffman code: a lookup table for codes up to INFL_FAST_BITS bits, then bit by bit. */
typedef struct {
    uint16_t fast[1 << INFL_FAST_BITS]; /* (length << 9) | symbol; 0 = longer code or none */
    uint16_t count[16];                 /* number of codes of each length */
    uint16_t symbol[288];               /* symbols in canonical order */
} infl_huff;

/* Builds the code from code lengths. Like zlib: an over-subscribed code is an error, an incomplete one
 * too unless it is a single code of length 1 (allowed for literal/length and distance codes), and a code
 * without any symbol is accepted but fails when used. */
static bool infl_build(infl_huff *h, const uint8_t *lengths, int n, bool is_code_length_code) {
    memset(h->count, 0, sizeof h->count);
    for (int i = 0; i < n; i++) h->count[lengths[i]]++;
    h->count[0] = 0;
    int left = 1, max_len = 0;
    for (int len = 1; len <= 15; len++) {
        left = (left << 1) - h->count[len];
        if (left < 0) return false;
        if (h->count[len]) max_len = len;
    }
    if (max_len > 0 && left > 0 && (is_code_length_code || max_len != 1)) return false;
    uint16_t offs[16];
    offs[1] = 0;
    for (int len = 1; len < 15; len++) offs[len + 1] = (uint16_t)(offs[len] + h->count[len]);
    for (int i = 0; i < n; i++)
        if (lengths[i]) h->symbol[offs[lengths[i]]++] = (uint16_t)i;
    memset(h->fast, 0, sizeof h->fast);
    int code = 0, k = 0;
    for (int len = 1; len <= INFL_FAST_BITS; len++, code <<= 1) {
        for (int i = 0; i < h->count[len]; i++, k++, code++) {
            int rev = 0;
            for (int j = 0; j < len; j++) rev |= ((code >> j) & 1) << (len - 1 - j);
            for (int j = rev; j < (1 << INFL_FAST_BITS); j += 1 << len)
                h->fast[j] = (uint16_t)(len << 9 | h->symbol[k]);
        }
    }
    return true;
}

/* Returns the next symbol, or -1 for a bit pattern that is no code. */
static inline int infl_decode(lsb_reader *b, const infl_huff *h) {
    if (b->nbits < 15) lsb_refill(b);
    unsigned e = h->fast[b->bits & ((1u << INFL_FAST_BITS) - 1)];
    if (e) {
        b->bits >>= e >> 9;
        b->nbits -= (int)(e >> 9);
        return (int)(e & 511);
    }
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= 15; len++) {
        code |= (int)(b->bits & 1);
        b->bits >>= 1;
        b->nbits--;
        int count = h->count[len];
        if (code - first < count) return h->symbol[index + code - first];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}

static uint32_t adler32(const uint8_t *p, size_t n) {
    uint32_t a = 1, b = 0;
    while (n) {
        size_t chunk = n < 5552 ? n : 5552; /* largest run before b can overflow 32 bits */
        n -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return b << 16 | a;
}

typedef struct {
    lsb_reader in;
    uint8_t *out;
    size_t out_size, pos;
    infl_huff lit, dist;
} inflater;

static const uint16_t infl_len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                           31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t infl_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                           2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t infl_dist_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                            33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                            1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t infl_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                            6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static abc_status infl_truncated(abc_error *err) {
    return fail(err, ABC_ERR_IMAGE, "PNG image data is truncated (the zlib stream ends early)");
}
static abc_status infl_too_long(abc_error *err) {
    return fail(err, ABC_ERR_IMAGE, "PNG image data inflates to more bytes than the header implies");
}

static abc_status infl_stored(inflater *z, abc_error *err) {
    lsb_reader *b = &z->in;
    int drop = b->nbits & 7; /* to the byte boundary */
    b->bits >>= drop;
    b->nbits -= drop;
    int64_t unread = b->nbits / 8 - b->pad_bytes; /* whole input bytes still in the bit buffer */
    if (unread < 0) return infl_truncated(err);
    b->p -= unread;
    b->bits = 0;
    b->nbits = 0;
    b->pad_bytes = 0;
    if (b->end - b->p < 4) return infl_truncated(err);
    unsigned len = b->p[0] | b->p[1] << 8, nlen = b->p[2] | b->p[3] << 8;
    b->p += 4;
    if (len != (~nlen & 0xffff)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (stored block length)");
    if ((size_t)(b->end - b->p) < len) return infl_truncated(err);
    if (len > z->out_size - z->pos) return infl_too_long(err);
    memcpy(z->out + z->pos, b->p, len);
    b->p += len;
    z->pos += len;
    return ABC_OK;
}

static abc_status infl_codes(inflater *z, abc_error *err) {
    lsb_reader *b = &z->in;
    uint8_t *out = z->out;
    size_t pos = z->pos, size = z->out_size;
    for (;;) {
        int sym = infl_decode(b, &z->lit);
        if (lsb_overrun(b)) return infl_truncated(err);
        if (sym < 256) {
            if (sym < 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid literal/length code)");
            if (pos >= size) return infl_too_long(err);
            out[pos++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) break;
        sym -= 257;
        if (sym >= 29) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid length symbol)");
        size_t len = infl_len_base[sym] + lsb_get(b, infl_len_extra[sym]);
        int dsym = infl_decode(b, &z->dist);
        if (dsym < 0 || dsym >= 30) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid distance code)");
        size_t dist = infl_dist_base[dsym] + lsb_get(b, infl_dist_extra[dsym]);
        if (lsb_overrun(b)) return infl_truncated(err);
        if (dist > pos) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (distance too far back)");
        if (len > size - pos) return infl_too_long(err);
        const uint8_t *from = out + pos - dist;
        uint8_t *to = out + pos;
        for (size_t i = 0; i < len; i++) to[i] = from[i]; /* may overlap: byte by byte on purpose */
        pos += len;
    }
    z->pos = pos;
    return ABC_OK;
}

static void infl_fixed_tables(inflater *z) {
    uint8_t lengths[288];
    for (int i = 0; i < 288; i++) lengths[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    infl_build(&z->lit, lengths, 288, false);
    for (int i = 0; i < 32; i++) lengths[i] = 5; /* 30 and 31 complete the code; decoding rejects them */
    infl_build(&z->dist, lengths, 32, false);
}

static abc_status infl_dynamic_tables(inflater *z, abc_error *err) {
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    lsb_reader *b = &z->in;
    int nlit = (int)lsb_get(b, 5) + 257, ndist = (int)lsb_get(b, 5) + 1, ncode = (int)lsb_get(b, 4) + 4;
    if (nlit > 286 || ndist > 30) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (too many length or distance symbols)");
    uint8_t lengths[286 + 30] = {0};
    for (int i = 0; i < ncode; i++) lengths[order[i]] = (uint8_t)lsb_get(b, 3);
    infl_huff *codes = &z->lit; /* the literal table is built afterwards: borrow its storage */
    if (!infl_build(codes, lengths, 19, true)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (bad code lengths code)");
    memset(lengths, 0, 19);
    int n = 0;
    while (n < nlit + ndist) {
        int sym = infl_decode(b, codes);
        if (lsb_overrun(b)) return infl_truncated(err);
        if (sym < 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid code length code)");
        if (sym < 16) {
            lengths[n++] = (uint8_t)sym;
            continue;
        }
        int repeat, value = 0;
        if (sym == 16) {
            if (n == 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (repeat with no previous length)");
            value = lengths[n - 1];
            repeat = 3 + (int)lsb_get(b, 2);
        } else if (sym == 17) {
            repeat = 3 + (int)lsb_get(b, 3);
        } else {
            repeat = 11 + (int)lsb_get(b, 7);
        }
        if (n + repeat > nlit + ndist) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (too many code lengths)");
        while (repeat--) lengths[n++] = (uint8_t)value;
    }
    if (lengths[256] == 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (no end-of-block code)");
    if (!infl_build(&z->lit, lengths, nlit, false)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (bad literal/length code)");
    if (!infl_build(&z->dist, lengths + nlit, ndist, false)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (bad distance code)");
    return ABC_OK;
}

/* Inflates a zlib stream into exactly out_size bytes: more output is an error (a zip bomb cannot make
 * us write past what the header announced), less is a truncated stream; the Adler-32 must match. */
static abc_status zlib_inflate(const uint8_t *src, size_t n, uint8_t *out, size_t out_size, abc_error *err) {
    if (n < 2) return infl_truncated(err);
    unsigned cmf = src[0], flg = src[1];
    if ((cmf & 15) != 8 || (cmf >> 4) > 7 || (cmf * 256 + flg) % 31 != 0)
        return fail(err, ABC_ERR_IMAGE, "PNG image data is not a valid zlib stream (bad header)");
    if (flg & 32) return fail(err, ABC_ERR_IMAGE, "PNG image data needs a preset zlib dictionary");
    inflater *z = xmalloc(sizeof *z);
    if (!z) return fail(err, ABC_ERR_NOMEM, "out of memory for the inflater");
    z->in = (lsb_reader){src + 2, src + n, 0, 0, 0};
    z->out = out;
    z->out_size = out_size;
    z->pos = 0;
    abc_status st = ABC_OK;
    bool last = false;
    while (!last && st == ABC_OK) {
        last = lsb_get(&z->in, 1);
        unsigned type = lsb_get(&z->in, 2);
        if (lsb_overrun(&z->in)) st = infl_truncated(err);
        else if (type == 0) st = infl_stored(z, err);
        else if (type == 1) {
            infl_fixed_tables(z);
            st = infl_codes(z, err);
        } else if (type == 2) {
            st = infl_dynamic_tables(z, err);
            if (st == ABC_OK) st = infl_codes(z, err);
        } else {
            st = fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid deflate block type)");
        }
    }
    if (st == ABC_OK && z->pos != out_size) st = infl_truncated(err);
    if (st == ABC_OK) {
        lsb_reader *b = &z->in;
        int drop = b->nbits & 7;
        b->bits >>= drop;
        b->nbits -= drop;
        uint32_t want = 0;
        for (int i = 0; i < 4; i++) want = want << 8 | lsb_get(b, 8);
        if (lsb_overrun(b)) st = fail(err, ABC_ERR_IMAGE, "PNG image data is truncated (no Adler-32 checksum)");
        else if (want != adler32(out, out_size))
            st = fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (Adler-32 checksum mismatch)");
    }
    free(z);
    return st;
}

/* ---- 5.3 PNG ---- */

typedef struct {
    uint32_t width, height;
    int depth, color_type, interlace, channels;
    uint8_t palette[256 * 3];
    int palette_len;
    bool have_palette;
} png_header;

static void crc32_table_init(uint32_t table[256]) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc32_compute(const uint32_t table[256], const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = table[(c ^ *p++) & 255] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static abc_status png_parse_ihdr(const uint8_t *d, uint32_t len, png_header *h, abc_error *err) {
    if (len != 13) return fail(err, ABC_ERR_IMAGE, "PNG IHDR chunk has length %u, not 13", len);
    h->width = load_be32(d);
    h->height = load_be32(d + 4);
    h->depth = d[8];
    h->color_type = d[9];
    h->interlace = d[12];
    if (h->width > 0x7FFFFFFFu || h->height > 0x7FFFFFFFu)
        return fail(err, ABC_ERR_IMAGE, "PNG dimensions %ux%u exceed 2^31-1", h->width, h->height);
    static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
    int ct = h->color_type, dp = h->depth;
    bool ok = ct <= 6 && channels[ct] != 0;
    if (ok) {
        if (ct == 0) ok = dp == 1 || dp == 2 || dp == 4 || dp == 8 || dp == 16;
        else if (ct == 3) ok = dp == 1 || dp == 2 || dp == 4 || dp == 8;
        else ok = dp == 8 || dp == 16;
    }
    if (!ok) return fail(err, ABC_ERR_IMAGE, "PNG has an invalid colour type %d / bit depth %d", ct, dp);
    h->channels = channels[ct];
    if (d[10] != 0 || d[11] != 0)
        return fail(err, ABC_ERR_IMAGE, "PNG uses an unknown compression (%d) or filter method (%d)", d[10], d[11]);
    if (h->interlace > 1) return fail(err, ABC_ERR_IMAGE, "PNG uses an unknown interlace method %d", h->interlace);
    return ABC_OK;
}

typedef struct {
    int x0, y0, dx, dy;
} png_pass;

static const png_pass png_adam7[7] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                      {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

static size_t png_pass_dim(uint32_t size, int start, int step) {
    return size > (uint32_t)start ? (size - (uint32_t)start + (uint32_t)step - 1) / (uint32_t)step : 0;
}

/* Bytes of one filtered row (without its filter byte). Sizes are bounded by the pixel limit. */
static size_t png_row_bytes(const png_header *h, size_t width) {
    return (width * (size_t)h->channels * (size_t)h->depth + 7) / 8;
}

static inline uint8_t png_paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Undoes the filter of one row in place; prev is the previous reconstructed row (zeros for the first). */
static bool png_unfilter_row(int filter, uint8_t *row, const uint8_t *prev, size_t n, size_t bpp) {
    switch (filter) {
    case 0: break;
    case 1:
        for (size_t i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        break;
    case 2:
        for (size_t i = 0; i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        break;
    case 3:
        for (size_t i = 0; i < bpp && i < n; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
        for (size_t i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        break;
    case 4:
        for (size_t i = 0; i < bpp && i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        for (size_t i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + png_paeth(row[i - bpp], prev[i], prev[i - bpp]));
        break;
    default: return false;
    }
    return true;
}

static inline unsigned png_sample(const uint8_t *row, size_t i, int depth) {
    if (depth == 8) return row[i];
    if (depth == 16) return (unsigned)row[2 * i] << 8 | row[2 * i + 1];
    size_t bit = i * (size_t)depth;
    return (row[bit >> 3] >> (8 - depth - (int)(bit & 7))) & ((1u << depth) - 1);
}

/* One unfiltered row → RGB pixels at x0, x0+dx, ... of output row `out_row`. Pillow's conversions:
 * low-bit grey is scaled (1 bit → 0/255, 2 bits ×85, 4 bits ×17), 16-bit grey is mode "I" and clips to
 * 255, other 16-bit samples keep their high byte, alpha is dropped, palette indices past the PLTE read
 * Pillow's default grey ramp (i, i, i). */
static void png_row_to_rgb(const png_header *h, const uint8_t *row, size_t width, uint8_t *out_row, int x0, int dx) {
    uint8_t *o = out_row + (size_t)x0 * 3;
    size_t step = (size_t)dx * 3;
    int ct = h->color_type, depth = h->depth;
    for (size_t x = 0; x < width; x++, o += step) {
        unsigned r, g, b;
        if (ct == 0) {
            unsigned v = png_sample(row, x, depth);
            if (depth == 1) v = v ? 255 : 0;
            else if (depth == 2) v *= 85;
            else if (depth == 4) v *= 17;
            else if (depth == 16) v = v > 255 ? 255 : v;
            r = g = b = v;
        } else if (ct == 3) {
            unsigned v = png_sample(row, x, depth);
            if ((int)v < h->palette_len) {
                r = h->palette[3 * v];
                g = h->palette[3 * v + 1];
                b = h->palette[3 * v + 2];
            } else {
                r = g = b = v;
            }
        } else {
            size_t i = x * (size_t)h->channels;
            size_t bytes = (size_t)depth / 8; /* 1 or 2: the high byte comes first */
            r = row[i * bytes];
            if (ct == 4) g = b = r;
            else {
                g = row[(i + 1) * bytes];
                b = row[(i + 2) * bytes];
            }
        }
        o[0] = (uint8_t)r;
        o[1] = (uint8_t)g;
        o[2] = (uint8_t)b;
    }
}

static abc_status png_reconstruct(const png_header *h, uint8_t *raw, abc_image *img, abc_error *err) {
    size_t bpp = ((size_t)h->channels * (size_t)h->depth + 7) / 8;
    size_t max_row = png_row_bytes(h, h->width);
    uint8_t *zero = xcalloc(max_row + 1, 1);
    if (!zero) return fail(err, ABC_ERR_NOMEM, "out of memory for a PNG row");
    int npass = h->interlace ? 7 : 1;
    static const png_pass whole = {0, 0, 1, 1};
    uint8_t *p = raw;
    for (int pi = 0; pi < npass; pi++) {
        const png_pass *ps = h->interlace ? &png_adam7[pi] : &whole;
        size_t pw = png_pass_dim(h->width, ps->x0, ps->dx), ph = png_pass_dim(h->height, ps->y0, ps->dy);
        if (pw == 0 || ph == 0) continue;
        size_t rb = png_row_bytes(h, pw);
        const uint8_t *prev = zero;
        for (size_t y = 0; y < ph; y++) {
            int filter = p[0];
            uint8_t *row = p + 1;
            if (!png_unfilter_row(filter, row, prev, rb, bpp)) {
                free(zero);
                return fail(err, ABC_ERR_IMAGE, "PNG row uses an unknown filter type %d", filter);
            }
            size_t oy = (size_t)ps->y0 + y * (size_t)ps->dy;
            png_row_to_rgb(h, row, pw, img->rgb + oy * (size_t)img->width * 3, ps->x0, ps->dx);
            prev = row;
            p += rb + 1;
        }
    }
    free(zero);
    return ABC_OK;
}

/* Size of the inflated data: every (non-empty) pass row has a filter byte and its packed samples. */
static bool png_raw_size(const png_header *h, size_t *out) {
    size_t total = 0;
    int npass = h->interlace ? 7 : 1;
    for (int pi = 0; pi < npass; pi++) {
        size_t pw = h->interlace ? png_pass_dim(h->width, png_adam7[pi].x0, png_adam7[pi].dx) : h->width;
        size_t ph = h->interlace ? png_pass_dim(h->height, png_adam7[pi].y0, png_adam7[pi].dy) : h->height;
        if (pw == 0 || ph == 0) continue;
        size_t rows;
        if (!mul_size(ph, png_row_bytes(h, pw) + 1, &rows) || total > SIZE_MAX - rows) return false;
        total += rows;
    }
    *out = total;
    return true;
}

static abc_status png_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    uint32_t crc_table[256];
    crc32_table_init(crc_table);
    png_header h;
    memset(&h, 0, sizeof h);
    bool have_header = false;
    size_t pos = 8, idat_start = 0, idat_total = 0;
    int idat_chunks = 0;
    /* Pass 1: validate chunks up to the end of the (first) run of IDAT chunks; later chunks are ignored,
     * as Pillow does. */
    for (;;) {
        if (size - pos < 12) {
            if (idat_chunks) break;
            return fail(err, ABC_ERR_IMAGE, "PNG file is truncated (chunk header at byte %zu)", pos);
        }
        uint32_t len = load_be32(data + pos);
        const uint8_t *type = data + pos + 4, *body = data + pos + 8;
        if (len > 0x7FFFFFFFu) return fail(err, ABC_ERR_IMAGE, "PNG chunk length %u is invalid", len);
        bool is_idat = memcmp(type, "IDAT", 4) == 0;
        if (idat_chunks && !is_idat) break;
        if (len > size - pos - 12) {
            return fail(err, ABC_ERR_IMAGE, "PNG file is truncated (chunk %.4s of %u bytes at byte %zu)",
                        (const char *)type, len, pos);
        }
        if (crc32_compute(crc_table, type, (size_t)len + 4) != load_be32(body + len))
            return fail(err, ABC_ERR_IMAGE, "PNG chunk %.4s has a bad CRC", (const char *)type);
        if (!have_header) {
            if (memcmp(type, "IHDR", 4) != 0) return fail(err, ABC_ERR_IMAGE, "PNG does not start with an IHDR chunk");
            abc_status st = png_parse_ihdr(body, len, &h, err);
            if (st == ABC_OK) st = image_check_size(h.width, h.height, max_pixels, "PNG", err);
            if (st != ABC_OK) return st;
            have_header = true;
        } else if (is_idat) {
            if (idat_chunks++ == 0) idat_start = pos;
            idat_total += len;
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (h.color_type == 3) {
                if (len % 3 != 0 || len == 0 || len > 768)
                    return fail(err, ABC_ERR_IMAGE, "PNG palette has an invalid length %u", len);
                memcpy(h.palette, body, len);
                h.palette_len = (int)(len / 3);
            }
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        pos += (size_t)len + 12;
    }
    if (!idat_chunks) return fail(err, ABC_ERR_IMAGE, "PNG has no image data (no IDAT chunk)");
    size_t raw_size;
    if (!png_raw_size(&h, &raw_size)) return fail(err, ABC_ERR_TOO_LARGE, "PNG image data is too large");
    uint8_t *idat = xmalloc(idat_total);
    uint8_t *raw = xmalloc(raw_size);
    abc_status st = ABC_OK;
    if (!idat || !raw) st = fail(err, ABC_ERR_NOMEM, "out of memory for PNG image data");
    if (st == ABC_OK) {
        size_t at = 0;
        for (pos = idat_start; at < idat_total;) { /* pass 2: gather the IDAT payloads */
            uint32_t len = load_be32(data + pos);
            memcpy(idat + at, data + pos + 8, len);
            at += len;
            pos += (size_t)len + 12;
        }
        st = zlib_inflate(idat, idat_total, raw, raw_size, err);
    }
    free(idat);
    if (st == ABC_OK) st = image_alloc(out, h.width, h.height, err);
    if (st == ABC_OK) {
        st = png_reconstruct(&h, raw, out, err);
        if (st != ABC_OK) {
            free(out->rgb);
            out->rgb = NULL;
        }
    }
    free(raw);
    return st;
}

/* ---- 5.4 JPEG ---- */

/* Zigzag position → natural (row-major) index; 16 extra entries absorb run lengths that overshoot on
 * corrupt data, exactly as libjpeg's table does. */
static const uint8_t jpeg_natural_order[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,
    6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

#define JPEG_FAST_BITS 9
#define JPEG_MAX_BLOCKS_IN_MCU 10 /* libjpeg's D_MAX_BLOCKS_IN_MCU */

typedef struct {
    int32_t maxcode[18];    /* largest code of each length, -1 if none; [17] is a sentinel */
    int32_t valoffset[18];  /* code + valoffset[len] = index into huffval */
    uint8_t huffval[256];
    uint16_t fast[1 << JPEG_FAST_BITS]; /* (length << 8) | symbol for codes of ≤ JPEG_FAST_BITS bits */
    uint8_t max_symbol;
    bool defined, valid;
} jpeg_huff;

/* Builds the decoding tables from the DHT counts (bits[1..16]) and symbols, with libjpeg's checks. */
static void jpeg_huff_build(jpeg_huff *t, const uint8_t bits[17], const uint8_t *vals, int nvals) {
    memset(t, 0, sizeof *t);
    t->defined = true;
    memcpy(t->huffval, vals, (size_t)nvals);
    uint8_t size[257];
    uint16_t codes[256];
    int p = 0;
    for (int l = 1; l <= 16; l++)
        for (int i = 0; i < bits[l]; i++) size[p++] = (uint8_t)l;
    size[p] = 0;
    int code = 0, si = size[0];
    p = 0;
    while (size[p]) {
        while (size[p] == si) codes[p++] = (uint16_t)code++;
        if (code >= (1 << si)) return; /* over-subscribed: invalid */
        code <<= 1;
        si++;
    }
    p = 0;
    for (int l = 1; l <= 16; l++) {
        if (bits[l]) {
            t->valoffset[l] = p - codes[p];
            p += bits[l];
            t->maxcode[l] = codes[p - 1];
        } else {
            t->maxcode[l] = -1;
        }
    }
    t->maxcode[17] = 0xFFFFF;
    for (int i = 0, k = 0; i < nvals; i++) {
        if (vals[i] > t->max_symbol) t->max_symbol = vals[i];
        int l = size[i];
        if (l <= JPEG_FAST_BITS) {
            int first = codes[i] << (JPEG_FAST_BITS - l), n = 1 << (JPEG_FAST_BITS - l);
            for (k = 0; k < n; k++) t->fast[first + k] = (uint16_t)(l << 8 | vals[i]);
        }
    }
    t->valid = true;
}

/* The default tables of JPEG Annex K.3, which libjpeg-turbo installs for tables a file leaves undefined
 * (Motion-JPEG frames have none). */
static void jpeg_std_huff_tables(jpeg_huff dc[4], jpeg_huff ac[4]) {
    static const uint8_t dc_lum_bits[17] = {0, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t dc_chr_bits[17] = {0, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    static const uint8_t dc_vals[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const uint8_t ac_lum_bits[17] = {0, 0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d};
    static const uint8_t ac_lum_vals[162] = {
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
        0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33,
        0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34,
        0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55,
        0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76,
        0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96,
        0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5,
        0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4,
        0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1,
        0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};
    static const uint8_t ac_chr_bits[17] = {0, 0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77};
    static const uint8_t ac_chr_vals[162] = {
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13,
        0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62,
        0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29,
        0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54,
        0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75,
        0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3,
        0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2,
        0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea,
        0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};
    jpeg_huff_build(&dc[0], dc_lum_bits, dc_vals, 12);
    jpeg_huff_build(&dc[1], dc_chr_bits, dc_vals, 12);
    jpeg_huff_build(&ac[0], ac_lum_bits, ac_lum_vals, 162);
    jpeg_huff_build(&ac[1], ac_chr_bits, ac_chr_vals, 162);
}

/* MSB-first entropy-data reader: removes stuffed zero bytes and stops at markers. Bits needed past a
 * marker read as zeros and set `insufficient` (libjpeg's insufficient_data); running off the end of the
 * file sets `hit_eof` (the file is truncated). */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
    uint64_t buf; /* valid bits are left-aligned */
    int nbits;
    int marker;   /* marker code met in the data (0 if none yet); pos is past it */
    bool insufficient, hit_eof;
} jpeg_bits;

static void jpeg_bits_fill(jpeg_bits *b) {
    while (b->nbits <= 56 && !b->marker) {
        if (b->pos >= b->size) {
            b->hit_eof = true;
            break;
        }
        unsigned c = b->data[b->pos];
        if (c == 0xFF) {
            size_t q = b->pos + 1;
            while (q < b->size && b->data[q] == 0xFF) q++; /* fill bytes */
            if (q >= b->size) {
                b->pos = b->size;
                b->hit_eof = true;
                break;
            }
            if (b->data[q] != 0) {
                b->marker = b->data[q];
                b->pos = q + 1;
                break;
            }
            b->pos = q + 1; /* FF 00: a data byte 0xFF */
        } else {
            b->pos++;
        }
        b->buf |= (uint64_t)c << (56 - b->nbits);
        b->nbits += 8;
    }
}

/* Makes at least n bits available, padding with zeros past the end of the data as libjpeg does. */
static inline void jpeg_bits_need(jpeg_bits *b, int n) {
    if (b->nbits >= n) return;
    jpeg_bits_fill(b);
    if (b->nbits < n) {
        b->insufficient = true;
        b->nbits = 64; /* the buffer's low bits are already zero */
    }
}

static inline unsigned jpeg_get_bits(jpeg_bits *b, int n) {
    if (n == 0) return 0;
    jpeg_bits_need(b, n);
    unsigned v = (unsigned)(b->buf >> (64 - n));
    b->buf <<= n;
    b->nbits -= n;
    return v;
}

static inline int jpeg_extend(unsigned v, int s) {
    return v < (1u << (s - 1)) ? (int)v - (1 << s) + 1 : (int)v;
}

/* A bit pattern that is no code (17 bits without a match) decodes as symbol 0, as in libjpeg. */
static int jpeg_huff_decode_slow(jpeg_bits *b, const jpeg_huff *t) {
    int32_t code = 0;
    for (int l = 1; l <= 17; l++) {
        code = code << 1 | (int32_t)jpeg_get_bits(b, 1);
        if (code <= t->maxcode[l]) return l == 17 ? 0 : t->huffval[(code + t->valoffset[l]) & 0xFF];
    }
    return 0;
}

static inline int jpeg_huff_decode(jpeg_bits *b, const jpeg_huff *t) {
    if (b->nbits < JPEG_FAST_BITS) jpeg_bits_fill(b);
    unsigned e = t->fast[b->buf >> (64 - JPEG_FAST_BITS)];
    int len = (int)(e >> 8);
    if (e && len <= b->nbits) {
        b->buf <<= len;
        b->nbits -= len;
        return (int)(e & 0xFF);
    }
    return jpeg_huff_decode_slow(b, t);
}

typedef struct {
    int id, h, v, tq;
    int dc_tbl, ac_tbl;             /* of the current scan */
    int bw, bh;                     /* coefficient blocks allocated (whole MCUs) */
    int wb, hb;                     /* blocks that hold samples: ceil(dw/8) × ceil(dh/8) */
    int dw, dh;                     /* downsampled size in samples */
    int16_t *coef;                  /* bw·bh blocks of 64 coefficients, natural order */
    uint16_t quant[64];             /* latched at the component's first scan (natural order) */
    bool quant_latched;
    int coef_bits[64];              /* progressive: current successive-approximation bit, -1 = none yet */
    int last_dc;
    uint8_t *plane;                 /* samples after the IDCT: (bw·8) × (bh·8) */
} jpeg_component;

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    jpeg_huff dc[4], ac[4];
    uint16_t qt[4][64];
    bool qt_defined[4];
    unsigned restart_interval;
    bool saw_jfif, saw_adobe, progressive, have_frame;
    int adobe_transform;
    int width, height, ncomp, hmax, vmax, mcux, mcuy;
    jpeg_component comp[4];
    int scans;
    /* current scan */
    int scan_ncomp, scan_comp[4], ss, se, ah, al;
    jpeg_bits bits;
    int eobrun;
    unsigned restarts_to_go;
    int next_restart;
    bool dc_overflow;
    uint8_t idct_range[1024]; /* libjpeg's post-IDCT range limit, indexed by (value & 1023) */
} jpeg_decoder;

static abc_status jpeg_truncated(abc_error *err) {
    return fail(err, ABC_ERR_IMAGE, "JPEG file is truncated");
}

/* Reads the next marker from d->pos like libjpeg's next_marker: skips garbage and fill bytes. */
static bool jpeg_next_marker(jpeg_decoder *d, int *marker) {
    for (;;) {
        while (d->pos < d->size && d->data[d->pos] != 0xFF) d->pos++;
        while (d->pos < d->size && d->data[d->pos] == 0xFF) d->pos++;
        if (d->pos >= d->size) return false;
        int c = d->data[d->pos++];
        if (c != 0) {
            *marker = c;
            return true;
        }
    }
}

static abc_status jpeg_parse_dqt(jpeg_decoder *d, const uint8_t *p, size_t len, abc_error *err) {
    while (len > 0) {
        int pq = p[0] >> 4, tq = p[0] & 15;
        if (tq > 3) return fail(err, ABC_ERR_IMAGE, "JPEG quantization table index %d is out of range", tq);
        if (pq > 1) return fail(err, ABC_ERR_IMAGE, "JPEG quantization table precision %d is invalid", pq);
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (len < need) return fail(err, ABC_ERR_IMAGE, "JPEG DQT segment is too short");
        for (int i = 0; i < 64; i++)
            d->qt[tq][jpeg_natural_order[i]] = (uint16_t)(pq ? load_be16(p + 1 + 2 * i) : p[1 + i]);
        d->qt_defined[tq] = true;
        p += need;
        len -= need;
    }
    return ABC_OK;
}

static abc_status jpeg_parse_dht(jpeg_decoder *d, const uint8_t *p, size_t len, abc_error *err) {
    while (len > 16) {
        int index = p[0];
        uint8_t bits[17] = {0};
        int count = 0;
        for (int i = 1; i <= 16; i++) count += bits[i] = p[i];
        p += 17;
        len -= 17;
        if (count > 256 || (size_t)count > len) return fail(err, ABC_ERR_IMAGE, "JPEG Huffman table is invalid (%d codes)", count);
        int slot = index & 0x0F, cls = index >> 4;
        if (cls > 1 || slot > 3) return fail(err, ABC_ERR_IMAGE, "JPEG Huffman table index 0x%02x is out of range", index);
        jpeg_huff_build(cls ? &d->ac[slot] : &d->dc[slot], bits, p, count);
        p += count;
        len -= (size_t)count;
    }
    if (len != 0) return fail(err, ABC_ERR_IMAGE, "JPEG DHT segment has a bad length");
    return ABC_OK;
}

static abc_status jpeg_parse_sof(jpeg_decoder *d, int marker, const uint8_t *p, size_t len, size_t max_pixels,
                                 abc_error *err) {
    if (d->have_frame) return fail(err, ABC_ERR_IMAGE, "JPEG has more than one frame header (SOF)");
    if (len < 6) return fail(err, ABC_ERR_IMAGE, "JPEG SOF segment is too short");
    int precision = p[0], nc = p[5];
    d->height = (int)load_be16(p + 1);
    d->width = (int)load_be16(p + 3);
    if (precision != 8)
        return fail(err, ABC_ERR_UNSUPPORTED, "%d-bit JPEG is not supported (only 8-bit samples)", precision);
    if (len != 6 + 3 * (size_t)nc) return fail(err, ABC_ERR_IMAGE, "JPEG SOF segment has a bad length");
    if (nc != 1 && nc != 3 && nc != 4)
        return fail(err, nc == 0 ? ABC_ERR_IMAGE : ABC_ERR_UNSUPPORTED, "JPEG with %d components is not supported", nc);
    if (d->height == 0)
        return fail(err, ABC_ERR_UNSUPPORTED, "JPEG with the height in a DNL marker (height 0) is not supported");
    abc_status st = image_check_size((uint64_t)d->width, (uint64_t)d->height, max_pixels, "JPEG", err);
    if (st != ABC_OK) return st;
    d->progressive = marker == 0xC2;
    d->ncomp = nc;
    d->hmax = d->vmax = 1;
    for (int i = 0; i < nc; i++) {
        jpeg_component *c = &d->comp[i];
        const uint8_t *q = p + 6 + 3 * i;
        c->id = q[0];
        c->h = q[1] >> 4;
        c->v = q[1] & 15;
        c->tq = q[2];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4)
            return fail(err, ABC_ERR_IMAGE, "JPEG component %d has invalid sampling factors %dx%d", i, c->h, c->v);
        if (c->tq > 3) return fail(err, ABC_ERR_IMAGE, "JPEG component %d uses quantization table %d", i, c->tq);
        for (int j = 0; j < i; j++)
            if (d->comp[j].id == c->id) return fail(err, ABC_ERR_IMAGE, "JPEG has two components with id %d", c->id);
        d->hmax = MAX(d->hmax, c->h);
        d->vmax = MAX(d->vmax, c->v);
    }
    d->mcux = (d->width + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->height + 8 * d->vmax - 1) / (8 * d->vmax);
    for (int i = 0; i < nc; i++) {
        jpeg_component *c = &d->comp[i];
        if (d->hmax % c->h || d->vmax % c->v)
            return fail(err, ABC_ERR_UNSUPPORTED, "JPEG sampling factors with a fractional ratio are not supported");
        c->dw = (int)(((int64_t)d->width * c->h + d->hmax - 1) / d->hmax);
        c->dh = (int)(((int64_t)d->height * c->v + d->vmax - 1) / d->vmax);
        c->wb = (c->dw + 7) / 8;
        c->hb = (c->dh + 7) / 8;
        c->bw = d->mcux * c->h;
        c->bh = d->mcuy * c->v;
        for (int k = 0; k < 64; k++) c->coef_bits[k] = -1;
        size_t n;
        if (!mul_size((size_t)c->bw * (size_t)c->bh, 64, &n))
            return fail(err, ABC_ERR_TOO_LARGE, "JPEG is too large");
        c->coef = xcalloc(n, sizeof(int16_t));
        if (!c->coef) return fail(err, ABC_ERR_NOMEM, "out of memory for JPEG coefficients");
    }
    d->have_frame = true;
    return ABC_OK;
}

static abc_status jpeg_parse_sos(jpeg_decoder *d, const uint8_t *p, size_t len, abc_error *err) {
    if (!d->have_frame) return fail(err, ABC_ERR_IMAGE, "JPEG scan (SOS) before the frame header (SOF)");
    if (len < 1) return fail(err, ABC_ERR_IMAGE, "JPEG SOS segment is too short");
    int ns = p[0];
    if (ns < 1 || ns > 4 || len != 4 + 2 * (size_t)ns) return fail(err, ABC_ERR_IMAGE, "JPEG SOS segment is invalid");
    bool used[4] = {false};
    int blocks = 0;
    for (int i = 0; i < ns; i++) {
        int id = p[1 + 2 * i], tables = p[2 + 2 * i], ci;
        for (ci = 0; ci < d->ncomp; ci++)
            if (d->comp[ci].id == id && !used[ci]) break;
        if (ci == d->ncomp) return fail(err, ABC_ERR_IMAGE, "JPEG scan names an unknown component %d", id);
        used[ci] = true;
        d->scan_comp[i] = ci;
        d->comp[ci].dc_tbl = tables >> 4;
        d->comp[ci].ac_tbl = tables & 15;
        blocks += d->comp[ci].h * d->comp[ci].v;
    }
    d->scan_ncomp = ns;
    if (ns > 1 && blocks > JPEG_MAX_BLOCKS_IN_MCU)
        return fail(err, ABC_ERR_IMAGE, "JPEG scan has %d blocks per MCU (at most %d)", blocks, JPEG_MAX_BLOCKS_IN_MCU);
    const uint8_t *q = p + 1 + 2 * ns;
    d->ss = q[0];
    d->se = q[1];
    d->ah = q[2] >> 4;
    d->al = q[2] & 15;
    bool need_dc = true, need_ac = true;
    if (d->progressive) {
        bool dc_band = d->ss == 0, bad = false;
        if (dc_band) bad = d->se != 0;
        else bad = d->ss > d->se || d->se > 63 || ns != 1;
        if (d->ah != 0 && d->al != d->ah - 1) bad = true;
        if (d->al > 13) bad = true;
        if (bad) return fail(err, ABC_ERR_IMAGE, "JPEG progressive scan parameters are invalid (Ss=%d Se=%d Ah=%d Al=%d)",
                             d->ss, d->se, d->ah, d->al);
        need_dc = dc_band && d->ah == 0;
        need_ac = !dc_band;
        for (int i = 0; i < ns; i++) {
            jpeg_component *c = &d->comp[d->scan_comp[i]];
            for (int k = d->ss; k <= d->se; k++) c->coef_bits[k] = d->al;
        }
    }
    for (int i = 0; i < ns; i++) {
        jpeg_component *c = &d->comp[d->scan_comp[i]];
        if (need_dc) {
            if (c->dc_tbl > 3 || !d->dc[c->dc_tbl].defined)
                return fail(err, ABC_ERR_IMAGE, "JPEG scan uses an undefined DC Huffman table %d", c->dc_tbl);
            const jpeg_huff *t = &d->dc[c->dc_tbl];
            if (!t->valid || t->max_symbol > 15)
                return fail(err, ABC_ERR_IMAGE, "JPEG DC Huffman table %d is invalid", c->dc_tbl);
        }
        if (need_ac) {
            if (c->ac_tbl > 3 || !d->ac[c->ac_tbl].defined)
                return fail(err, ABC_ERR_IMAGE, "JPEG scan uses an undefined AC Huffman table %d", c->ac_tbl);
            if (!d->ac[c->ac_tbl].valid) return fail(err, ABC_ERR_IMAGE, "JPEG AC Huffman table %d is invalid", c->ac_tbl);
        }
        if (!c->quant_latched) {
            if (!d->qt_defined[c->tq])
                return fail(err, ABC_ERR_IMAGE, "JPEG component uses an undefined quantization table %d", c->tq);
            memcpy(c->quant, d->qt[c->tq], sizeof c->quant);
            c->quant_latched = true;
        }
        c->last_dc = 0;
    }
    return ABC_OK;
}

/* libjpeg's process_restart + read_restart_marker + resync_to_restart. */
static abc_status jpeg_process_restart(jpeg_decoder *d, abc_error *err) {
    jpeg_bits *b = &d->bits;
    b->buf = 0;
    b->nbits = 0;
    int marker = b->marker;
    d->pos = b->pos;
    if (!marker && !jpeg_next_marker(d, &marker)) return jpeg_truncated(err);
    int want = 0xD0 + d->next_restart;
    for (;;) {
        if (marker == want) {
            marker = 0; /* consumed */
            break;
        }
        int action;
        if (marker < 0xC0) action = 2;
        else if (marker < 0xD0 || marker > 0xD7) action = 3;
        else if (marker == 0xD0 + ((d->next_restart + 1) & 7) || marker == 0xD0 + ((d->next_restart + 2) & 7)) action = 3;
        else if (marker == 0xD0 + ((d->next_restart - 1) & 7) || marker == 0xD0 + ((d->next_restart - 2) & 7)) action = 2;
        else action = 1;
        if (action == 1) {
            marker = 0;
            break;
        }
        if (action == 3) break; /* leave it: the next segment reads as empty */
        if (!jpeg_next_marker(d, &marker)) return jpeg_truncated(err);
    }
    b->marker = marker;
    b->pos = d->pos;
    d->next_restart = (d->next_restart + 1) & 7;
    for (int i = 0; i < d->ncomp; i++) d->comp[i].last_dc = 0;
    d->eobrun = 0;
    d->restarts_to_go = d->restart_interval;
    if (!marker) b->insufficient = false;
    return ABC_OK;
}

static inline void jpeg_add_dc(jpeg_decoder *d, jpeg_component *c, int diff) {
    int64_t v = (int64_t)c->last_dc + diff;
    if (v > INT_MAX || v < INT_MIN) d->dc_overflow = true;
    else c->last_dc = (int)v;
}

static void jpeg_block_sequential(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    const jpeg_huff *dc = &d->dc[c->dc_tbl], *ac = &d->ac[c->ac_tbl];
    int s = jpeg_huff_decode(b, dc);
    jpeg_add_dc(d, c, s ? jpeg_extend(jpeg_get_bits(b, s), s) : 0);
    blk[0] = (int16_t)c->last_dc;
    for (int k = 1; k < 64; k++) {
        int rs = jpeg_huff_decode(b, ac), r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            blk[jpeg_natural_order[k]] = (int16_t)jpeg_extend(jpeg_get_bits(b, s), s);
        } else {
            if (r != 15) break;
            k += 15;
        }
    }
}

static void jpeg_block_dc_first(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    int s = jpeg_huff_decode(b, &d->dc[c->dc_tbl]);
    jpeg_add_dc(d, c, s ? jpeg_extend(jpeg_get_bits(b, s), s) : 0);
    blk[0] = (int16_t)((unsigned)c->last_dc << d->al);
}

static void jpeg_block_dc_refine(jpeg_decoder *d, int16_t *blk) {
    if (jpeg_get_bits(&d->bits, 1)) blk[0] = (int16_t)(blk[0] | (1 << d->al));
}

static void jpeg_block_ac_first(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    if (d->eobrun > 0) {
        d->eobrun--;
        return;
    }
    const jpeg_huff *ac = &d->ac[c->ac_tbl];
    for (int k = d->ss; k <= d->se; k++) {
        int rs = jpeg_huff_decode(b, ac), r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            blk[jpeg_natural_order[k]] = (int16_t)((unsigned)jpeg_extend(jpeg_get_bits(b, s), s) << d->al);
        } else if (r == 15) {
            k += 15;
        } else {
            d->eobrun = 1 << r;
            if (r) d->eobrun += (int)jpeg_get_bits(b, r);
            d->eobrun--;
            break;
        }
    }
}

/* Adds a correction bit to an already-nonzero coefficient (sign-preserving), as jdphuff.c. */
static inline void jpeg_refine_coef(jpeg_bits *b, int16_t *coef, int p1) {
    if (jpeg_get_bits(b, 1) && (*coef & p1) == 0) *coef = (int16_t)(*coef >= 0 ? *coef + p1 : *coef - p1);
}

static void jpeg_block_ac_refine(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    int p1 = 1 << d->al, k = d->ss, se = d->se;
    if (d->eobrun == 0) {
        const jpeg_huff *ac = &d->ac[c->ac_tbl];
        for (; k <= se; k++) {
            int rs = jpeg_huff_decode(b, ac), r = rs >> 4, s = rs & 15, value = 0;
            if (s) {
                value = jpeg_get_bits(b, 1) ? p1 : -p1; /* s != 1 is bad data; libjpeg goes on */
            } else if (r != 15) {
                d->eobrun = 1 << r;
                if (r) d->eobrun += (int)jpeg_get_bits(b, r);
                break;
            }
            do { /* skip r zero coefficients, refining the nonzero ones on the way */
                int16_t *coef = blk + jpeg_natural_order[k];
                if (*coef != 0) jpeg_refine_coef(b, coef, p1);
                else if (--r < 0) break;
                k++;
            } while (k <= se);
            if (value) blk[jpeg_natural_order[k]] = (int16_t)value;
        }
    }
    if (d->eobrun > 0) {
        for (; k <= se; k++) {
            int16_t *coef = blk + jpeg_natural_order[k];
            if (*coef != 0) jpeg_refine_coef(b, coef, p1);
        }
        d->eobrun--;
    }
}

static void jpeg_decode_block(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    if (!d->progressive) jpeg_block_sequential(d, c, blk);
    else if (d->ss == 0 && d->ah == 0) jpeg_block_dc_first(d, c, blk);
    else if (d->ss == 0) jpeg_block_dc_refine(d, blk);
    else if (d->ah == 0) jpeg_block_ac_first(d, c, blk);
    else jpeg_block_ac_refine(d, c, blk);
}

/* Decodes the entropy-coded data of the current scan into the coefficient arrays. */
static abc_status jpeg_decode_scan(jpeg_decoder *d, abc_error *err) {
    jpeg_bits *b = &d->bits;
    *b = (jpeg_bits){d->data, d->size, d->pos, 0, 0, 0, false, false};
    d->eobrun = 0;
    d->restarts_to_go = d->restart_interval;
    d->next_restart = 0;
    bool single = d->scan_ncomp == 1;
    jpeg_component *c0 = &d->comp[d->scan_comp[0]];
    int rows = single ? c0->hb : d->mcuy, cols = single ? c0->wb : d->mcux;
    for (int my = 0; my < rows; my++) {
        for (int mx = 0; mx < cols; mx++) {
            if (d->restart_interval && d->restarts_to_go == 0) {
                abc_status st = jpeg_process_restart(d, err);
                if (st != ABC_OK) return st;
            }
            /* As libjpeg: once data ran out (a marker cut the segment), the MCUs up to the next restart
             * are left as they are; the MCU that ran out completes with zero bits. */
            if (!b->insufficient) {
                if (single) {
                    jpeg_decode_block(d, c0, c0->coef + ((size_t)my * c0->bw + mx) * 64);
                } else {
                    for (int i = 0; i < d->scan_ncomp; i++) {
                        jpeg_component *c = &d->comp[d->scan_comp[i]];
                        for (int by = 0; by < c->v; by++)
                            for (int bx = 0; bx < c->h; bx++)
                                jpeg_decode_block(d, c, c->coef + ((size_t)(my * c->v + by) * c->bw +
                                                                   (size_t)(mx * c->h + bx)) * 64);
                    }
                }
            }
            if (d->restart_interval) d->restarts_to_go--;
            if (b->hit_eof && b->insufficient) return jpeg_truncated(err);
            if (d->dc_overflow) return fail(err, ABC_ERR_IMAGE, "JPEG DC coefficient overflows (corrupt data)");
        }
    }
    if (b->hit_eof) return jpeg_truncated(err);
    d->pos = b->pos;
    return ABC_OK;
}

/* ---- JPEG: accurate integer inverse DCT (libjpeg's jidctint.c "islow", 13-bit constants) ---- */

#define IDCT_CONST_BITS 13
#define IDCT_PASS1_BITS 2
#define IDCT_DESCALE(x, n) (((x) + ((int64_t)1 << ((n)-1))) >> (n))

static void jpeg_idct_islow(const int16_t *coef, const uint16_t *quant, uint8_t *out, size_t stride,
                            const uint8_t *range) {
    int ws[64];
    for (int col = 0; col < 8; col++) {
        const int16_t *in = coef + col;
        const uint16_t *q = quant + col;
        int *w = ws + col;
        if (!(in[8] | in[16] | in[24] | in[32] | in[40] | in[48] | in[56])) {
            int dc = (int)(((int64_t)in[0] * q[0]) * (1 << IDCT_PASS1_BITS));
            for (int r = 0; r < 8; r++) w[8 * r] = dc;
            continue;
        }
        int64_t z2 = (int64_t)in[16] * q[16], z3 = (int64_t)in[48] * q[48];
        int64_t z1 = (z2 + z3) * 4433;
        int64_t tmp2 = z1 + z3 * -15137, tmp3 = z1 + z2 * 6270;
        z2 = (int64_t)in[0] * q[0];
        z3 = (int64_t)in[32] * q[32];
        int64_t tmp0 = (z2 + z3) * (1 << IDCT_CONST_BITS), tmp1 = (z2 - z3) * (1 << IDCT_CONST_BITS);
        int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        tmp0 = (int64_t)in[56] * q[56];
        tmp1 = (int64_t)in[40] * q[40];
        tmp2 = (int64_t)in[24] * q[24];
        tmp3 = (int64_t)in[8] * q[8];
        z1 = tmp0 + tmp3;
        z2 = tmp1 + tmp2;
        z3 = tmp0 + tmp2;
        int64_t z4 = tmp1 + tmp3, z5 = (z3 + z4) * 9633;
        tmp0 *= 2446;
        tmp1 *= 16819;
        tmp2 *= 25172;
        tmp3 *= 12299;
        z1 *= -7373;
        z2 *= -20995;
        z3 = z3 * -16069 + z5;
        z4 = z4 * -3196 + z5;
        tmp0 += z1 + z3;
        tmp1 += z2 + z4;
        tmp2 += z2 + z3;
        tmp3 += z1 + z4;
        const int sh = IDCT_CONST_BITS - IDCT_PASS1_BITS;
        w[0] = (int)IDCT_DESCALE(tmp10 + tmp3, sh);
        w[56] = (int)IDCT_DESCALE(tmp10 - tmp3, sh);
        w[8] = (int)IDCT_DESCALE(tmp11 + tmp2, sh);
        w[48] = (int)IDCT_DESCALE(tmp11 - tmp2, sh);
        w[16] = (int)IDCT_DESCALE(tmp12 + tmp1, sh);
        w[40] = (int)IDCT_DESCALE(tmp12 - tmp1, sh);
        w[24] = (int)IDCT_DESCALE(tmp13 + tmp0, sh);
        w[32] = (int)IDCT_DESCALE(tmp13 - tmp0, sh);
    }
    for (int row = 0; row < 8; row++) {
        const int *w = ws + 8 * row;
        uint8_t *o = out + (size_t)row * stride;
        if (!(w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])) {
            uint8_t v = range[IDCT_DESCALE((int64_t)w[0], IDCT_PASS1_BITS + 3) & 1023];
            memset(o, v, 8);
            continue;
        }
        int64_t z2 = w[2], z3 = w[6];
        int64_t z1 = (z2 + z3) * 4433;
        int64_t tmp2 = z1 + z3 * -15137, tmp3 = z1 + z2 * 6270;
        int64_t tmp0 = ((int64_t)w[0] + w[4]) * (1 << IDCT_CONST_BITS);
        int64_t tmp1 = ((int64_t)w[0] - w[4]) * (1 << IDCT_CONST_BITS);
        int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        tmp0 = w[7];
        tmp1 = w[5];
        tmp2 = w[3];
        tmp3 = w[1];
        z1 = tmp0 + tmp3;
        z2 = tmp1 + tmp2;
        z3 = tmp0 + tmp2;
        int64_t z4 = tmp1 + tmp3, z5 = (z3 + z4) * 9633;
        tmp0 *= 2446;
        tmp1 *= 16819;
        tmp2 *= 25172;
        tmp3 *= 12299;
        z1 *= -7373;
        z2 *= -20995;
        z3 = z3 * -16069 + z5;
        z4 = z4 * -3196 + z5;
        tmp0 += z1 + z3;
        tmp1 += z2 + z4;
        tmp2 += z2 + z3;
        tmp3 += z1 + z4;
        const int sh = IDCT_CONST_BITS + IDCT_PASS1_BITS + 3;
        o[0] = range[IDCT_DESCALE(tmp10 + tmp3, sh) & 1023];
        o[7] = range[IDCT_DESCALE(tmp10 - tmp3, sh) & 1023];
        o[1] = range[IDCT_DESCALE(tmp11 + tmp2, sh) & 1023];
        o[6] = range[IDCT_DESCALE(tmp11 - tmp2, sh) & 1023];
        o[2] = range[IDCT_DESCALE(tmp12 + tmp1, sh) & 1023];
        o[5] = range[IDCT_DESCALE(tmp12 - tmp1, sh) & 1023];
        o[3] = range[IDCT_DESCALE(tmp13 + tmp0, sh) & 1023];
        o[4] = range[IDCT_DESCALE(tmp13 - tmp0, sh) & 1023];
    }
}

/* libjpeg's table: x + 128 clamped to [0, 255] for |x| < 512, wrapping beyond (only corrupt data). */
static void jpeg_init_idct_range(uint8_t range[1024]) {
    for (int m = 0; m < 1024; m++) range[m] = (uint8_t)(m < 128 ? m + 128 : m < 512 ? 255 : m < 896 ? 0 : m - 896);
}

/* ---- JPEG: upsampling (libjpeg-turbo jdsample.c with do_fancy_upsampling) ---- */

enum { UP_FULL, UP_H2V1_FANCY, UP_H1V2_FANCY, UP_H2V2_FANCY, UP_REPLICATE };

typedef struct {
    int mode, rh, rv;
} jpeg_upsampler;

static jpeg_upsampler jpeg_choose_upsampler(const jpeg_decoder *d, const jpeg_component *c) {
    jpeg_upsampler u = {UP_REPLICATE, d->hmax / c->h, d->vmax / c->v};
    if (u.rh == 1 && u.rv == 1) u.mode = UP_FULL;
    else if (u.rh == 2 && u.rv == 1 && c->dw > 2) u.mode = UP_H2V1_FANCY;
    else if (u.rh == 1 && u.rv == 2) u.mode = UP_H1V2_FANCY;
    else if (u.rh == 2 && u.rv == 2 && c->dw > 2) u.mode = UP_H2V2_FANCY;
    return u;
}

/* Triangle filter 3/4·nearest + 1/4·next along a row, with libjpeg's alternating rounding. */
static void jpeg_h2v1_fancy(const uint8_t *in, int n, uint8_t *out) {
    out[0] = in[0];
    out[1] = (uint8_t)((in[0] * 3 + in[1] + 2) >> 2);
    for (int x = 1; x < n - 1; x++) {
        int v = in[x] * 3;
        out[2 * x] = (uint8_t)((v + in[x - 1] + 1) >> 2);
        out[2 * x + 1] = (uint8_t)((v + in[x + 1] + 2) >> 2);
    }
    out[2 * n - 2] = (uint8_t)((in[n - 1] * 3 + in[n - 2] + 1) >> 2);
    out[2 * n - 1] = in[n - 1];
}

static void jpeg_h2v2_fancy(const uint8_t *near, const uint8_t *far, int n, uint8_t *out) {
    int this_sum = near[0] * 3 + far[0], next_sum = near[1] * 3 + far[1], last_sum;
    out[0] = (uint8_t)((this_sum * 4 + 8) >> 4);
    out[1] = (uint8_t)((this_sum * 3 + next_sum + 7) >> 4);
    last_sum = this_sum;
    this_sum = next_sum;
    for (int x = 1; x < n - 1; x++) {
        next_sum = near[x + 1] * 3 + far[x + 1];
        out[2 * x] = (uint8_t)((this_sum * 3 + last_sum + 8) >> 4);
        out[2 * x + 1] = (uint8_t)((this_sum * 3 + next_sum + 7) >> 4);
        last_sum = this_sum;
        this_sum = next_sum;
    }
    out[2 * n - 2] = (uint8_t)((this_sum * 3 + last_sum + 8) >> 4);
    out[2 * n - 1] = (uint8_t)((this_sum * 4 + 7) >> 4);
}

/* Returns output row y of component c at full resolution (≥ image width samples). The rows above the
 * first and below the last are the edge rows, as libjpeg's context rows are. */
static const uint8_t *jpeg_upsample_row(const jpeg_component *c, jpeg_upsampler u, int y, int width, uint8_t *buf) {
    size_t stride = (size_t)c->bw * 8;
    const uint8_t *plane = c->plane;
    switch (u.mode) {
    case UP_FULL: return plane + (size_t)y * stride;
    case UP_H2V1_FANCY: jpeg_h2v1_fancy(plane + (size_t)y * stride, c->dw, buf); return buf;
    case UP_H1V2_FANCY:
    case UP_H2V2_FANCY: {
        int iy = y >> 1, far_y = (y & 1) ? MIN(iy + 1, c->dh - 1) : MAX(iy - 1, 0);
        const uint8_t *near = plane + (size_t)iy * stride, *far = plane + (size_t)far_y * stride;
        if (u.mode == UP_H2V2_FANCY) {
            jpeg_h2v2_fancy(near, far, c->dw, buf);
        } else {
            int bias = (y & 1) ? 2 : 1;
            for (int x = 0; x < c->dw; x++) buf[x] = (uint8_t)((near[x] * 3 + far[x] + bias) >> 2);
        }
        return buf;
    }
    default: {
        const uint8_t *in = plane + (size_t)(y / u.rv) * stride;
        if (u.rh == 1) return in;
        for (int x = 0; x < width; x++) buf[x] = in[x / u.rh];
        return buf;
    }
    }
}

/* ---- JPEG: colour conversion (libjpeg jdcolor.c tables, then Pillow's CMYK handling) ---- */

typedef struct {
    int cr_r[256], cb_b[256];
    int32_t cr_g[256], cb_g[256];
} jpeg_ycc_tables;

static void jpeg_build_ycc_tables(jpeg_ycc_tables *t) {
    const int32_t one_half = 1 << 15;
    for (int i = 0; i < 256; i++) {
        int32_t x = i - 128;
        t->cr_r[i] = (int)((91881 * x + one_half) >> 16);  /* FIX(1.40200) */
        t->cb_b[i] = (int)((116130 * x + one_half) >> 16); /* FIX(1.77200) */
        t->cr_g[i] = -46802 * x;                           /* -FIX(0.71414) */
        t->cb_g[i] = -22554 * x + one_half;                /* -FIX(0.34414) */
    }
}

static inline uint8_t clamp_u8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* Pillow's cmyk2rgb after its "CMYK;I" (Adobe, inverted) unpacking of libjpeg's CMYK output. */
static inline uint8_t pillow_cmyk_channel(int ink_lib, int k_lib) {
    int ink = 255 - ink_lib, nk = k_lib; /* Pillow's values: ink = 255 - lib, nk = 255 - (255 - k_lib) */
    int tmp = ink * nk + 128;
    return clamp_u8(nk - (((tmp >> 8) + tmp) >> 8));
}

typedef enum { JCS_GREY, JCS_YCC, JCS_RGB, JCS_CMYK, JCS_YCCK } jpeg_colorspace;

/* libjpeg's default_decompress_parms: JFIF beats Adobe, then component ids decide. */
static jpeg_colorspace jpeg_guess_colorspace(const jpeg_decoder *d) {
    if (d->ncomp == 1) return JCS_GREY;
    if (d->ncomp == 3) {
        if (d->saw_jfif) return JCS_YCC;
        if (d->saw_adobe) return d->adobe_transform == 0 ? JCS_RGB : JCS_YCC;
        if (d->comp[0].id == 82 && d->comp[1].id == 71 && d->comp[2].id == 66) return JCS_RGB;
        return JCS_YCC;
    }
    if (d->saw_adobe) return d->adobe_transform == 0 ? JCS_CMYK : JCS_YCCK;
    return JCS_CMYK;
}

/* libjpeg-turbo smooths blocks of progressive images whose low AC coefficients are not fully refined
 * (jdcoefct.c smoothing_ok); we do not implement that filter, so such files are refused. */
static bool jpeg_needs_block_smoothing(const jpeg_decoder *d) {
    static const int positions[10] = {0, 1, 8, 16, 9, 2, 3, 10, 17, 24}; /* first 10 in zigzag order */
    if (!d->progressive) return false;
    bool useful = false;
    for (int i = 0; i < d->ncomp; i++) {
        const jpeg_component *c = &d->comp[i];
        if (!c->quant_latched) return false;
        for (int k = 0; k < 10; k++)
            if (c->quant[positions[k]] == 0) return false;
        if (c->coef_bits[0] < 0) return false;
        for (int k = 1; k < 10; k++)
            if (c->coef_bits[k] != 0) useful = true;
    }
    return useful;
}

static abc_status jpeg_output(jpeg_decoder *d, abc_image *out, abc_error *err) {
    if (jpeg_needs_block_smoothing(d))
        return fail(err, ABC_ERR_UNSUPPORTED, "progressive JPEG with incomplete refinement scans needs libjpeg's "
                                              "block smoothing, which is not supported");
    /* IDCT every block that holds samples into per-component planes. */
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8, n;
        if (!mul_size(stride, (size_t)c->bh * 8, &n)) return fail(err, ABC_ERR_TOO_LARGE, "JPEG is too large");
        c->plane = xmalloc(n);
        if (!c->plane) return fail(err, ABC_ERR_NOMEM, "out of memory for JPEG samples");
        for (int by = 0; by < c->hb; by++)
            for (int bx = 0; bx < c->wb; bx++)
                jpeg_idct_islow(c->coef + ((size_t)by * c->bw + bx) * 64, c->quant,
                                c->plane + (size_t)by * 8 * stride + (size_t)bx * 8, stride, d->idct_range);
        free(c->coef);
        c->coef = NULL;
    }
    abc_status st = image_alloc(out, (uint64_t)d->width, (uint64_t)d->height, err);
    if (st != ABC_OK) return st;
    int width = d->width;
    /* wide enough for any upsampled row: whole MCUs at full resolution */
    size_t buf_len = (size_t)d->mcux * 8 * (size_t)d->hmax + 16;
    uint8_t *bufs = xmalloc(buf_len * 4);
    jpeg_ycc_tables *t = xmalloc(sizeof *t);
    if (!bufs || !t) {
        free(bufs);
        free(t);
        free(out->rgb);
        out->rgb = NULL;
        return fail(err, ABC_ERR_NOMEM, "out of memory for JPEG rows");
    }
    jpeg_build_ycc_tables(t);
    jpeg_upsampler up[4];
    for (int i = 0; i < d->ncomp; i++) up[i] = jpeg_choose_upsampler(d, &d->comp[i]);
    jpeg_colorspace cs = jpeg_guess_colorspace(d);
    for (int y = 0; y < d->height; y++) {
        const uint8_t *row[4];
        for (int i = 0; i < d->ncomp; i++) row[i] = jpeg_upsample_row(&d->comp[i], up[i], y, width, bufs + (size_t)i * buf_len);
        uint8_t *o = out->rgb + (size_t)y * (size_t)width * 3;
        switch (cs) {
        case JCS_GREY:
            for (int x = 0; x < width; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = row[0][x];
            break;
        case JCS_RGB:
            for (int x = 0; x < width; x++) {
                o[3 * x] = row[0][x];
                o[3 * x + 1] = row[1][x];
                o[3 * x + 2] = row[2][x];
            }
            break;
        case JCS_YCC:
            for (int x = 0; x < width; x++) {
                int yy = row[0][x], cb = row[1][x], cr = row[2][x];
                o[3 * x] = clamp_u8(yy + t->cr_r[cr]);
                o[3 * x + 1] = clamp_u8(yy + (int)((t->cb_g[cb] + t->cr_g[cr]) >> 16));
                o[3 * x + 2] = clamp_u8(yy + t->cb_b[cb]);
            }
            break;
        case JCS_CMYK:
        case JCS_YCCK:
            for (int x = 0; x < width; x++) {
                int c0 = row[0][x], c1 = row[1][x], c2 = row[2][x], k = row[3][x];
                if (cs == JCS_YCCK) { /* jdcolor.c ycck_cmyk_convert */
                    int yy = c0, cb = c1, cr = c2;
                    c0 = clamp_u8(255 - (yy + t->cr_r[cr]));
                    c1 = clamp_u8(255 - (yy + (int)((t->cb_g[cb] + t->cr_g[cr]) >> 16)));
                    c2 = clamp_u8(255 - (yy + t->cb_b[cb]));
                }
                o[3 * x] = pillow_cmyk_channel(c0, k);
                o[3 * x + 1] = pillow_cmyk_channel(c1, k);
                o[3 * x + 2] = pillow_cmyk_channel(c2, k);
            }
            break;
        }
    }
    free(bufs);
    free(t);
    return ABC_OK;
}

static void jpeg_parse_app(jpeg_decoder *d, int marker, const uint8_t *p, size_t len) {
    if (marker == 0xE0 && len >= 14 && memcmp(p, "JFIF\0", 5) == 0) d->saw_jfif = true;
    if (marker == 0xEE && len >= 12 && memcmp(p, "Adobe", 5) == 0) {
        d->saw_adobe = true;
        d->adobe_transform = p[11];
    }
}

static const char *jpeg_sof_name(int marker) {
    switch (marker) {
    case 0xC3: return "lossless JPEG";
    case 0xC5: case 0xC6: case 0xC7: case 0xCD: case 0xCE: case 0xCF: case 0xDE: return "hierarchical JPEG";
    case 0xC9: case 0xCA: case 0xCB: return "arithmetic-coded JPEG";
    default: return NULL;
    }
}

static void jpeg_decoder_free(jpeg_decoder *d) {
    for (int i = 0; i < 4; i++) {
        free(d->comp[i].coef);
        free(d->comp[i].plane);
    }
    free(d);
}

static abc_status jpeg_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    jpeg_decoder *d = xcalloc(1, sizeof *d);
    if (!d) return fail(err, ABC_ERR_NOMEM, "out of memory for the JPEG decoder");
    d->data = data;
    d->size = size;
    d->pos = 2; /* after SOI */
    jpeg_std_huff_tables(d->dc, d->ac);
    jpeg_init_idct_range(d->idct_range);
    abc_status st = ABC_OK;
    /* complete: a sequential first scan with every component is the whole image, and libjpeg outputs it
     * right away (single-pass mode). Pillow then reads on to EOI: running out of file there is fine,
     * but a bad marker or another scan is an error, as it is for Pillow. */
    bool done = false, complete = false;
    int pending = 0; /* a marker the entropy decoder already read */
    while (st == ABC_OK && !done) {
        int m = pending;
        pending = 0;
        if (!m && !jpeg_next_marker(d, &m)) {
            if (!complete)
                st = d->scans ? jpeg_truncated(err) : fail(err, ABC_ERR_IMAGE, "JPEG file is truncated (no image data)");
            break;
        }
        if (m == 0xD9) { /* EOI */
            if (!d->scans) st = fail(err, ABC_ERR_IMAGE, "JPEG has no image data (EOI before any scan)");
            done = true;
            break;
        }
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue; /* stray RSTn or TEM: no segment */
        if (m == 0xD8) {
            st = fail(err, ABC_ERR_IMAGE, "JPEG has a second SOI marker");
            break;
        }
        const char *unsupported = jpeg_sof_name(m);
        if (unsupported) {
            st = fail(err, ABC_ERR_UNSUPPORTED, "%s is not supported (only baseline and progressive Huffman)", unsupported);
            break;
        }
        if (m == 0xC8 || m == 0xDF || (m >= 0xF0 && m <= 0xFD) || m < 0xC0) {
            st = fail(err, ABC_ERR_IMAGE, "JPEG has an unknown marker 0x%02X", m);
            break;
        }
        if (size - d->pos < 2) {
            if (!complete) st = jpeg_truncated(err);
            break;
        }
        size_t len = load_be16(data + d->pos);
        if (len < 2) {
            st = fail(err, ABC_ERR_IMAGE, "JPEG marker 0x%02X has an invalid length", m);
            break;
        }
        if (len > size - d->pos) {
            if (!complete) st = jpeg_truncated(err);
            break;
        }
        const uint8_t *p = data + d->pos + 2;
        len -= 2;
        d->pos += len + 2;
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            st = jpeg_parse_sof(d, m, p, len, max_pixels, err);
        } else if (m == 0xC4) {
            st = jpeg_parse_dht(d, p, len, err);
        } else if (m == 0xDB) {
            st = jpeg_parse_dqt(d, p, len, err);
        } else if (m == 0xDD) {
            if (len != 2) st = fail(err, ABC_ERR_IMAGE, "JPEG DRI segment has a bad length");
            else d->restart_interval = load_be16(p);
        } else if (m == 0xDA) {
            if (complete) {
                st = fail(err, ABC_ERR_IMAGE, "JPEG has an unexpected scan after the complete image");
                break;
            }
            st = jpeg_parse_sos(d, p, len, err);
            if (st == ABC_OK) st = jpeg_decode_scan(d, err);
            if (st == ABC_OK) {
                pending = d->bits.marker;
                if (d->scans++ == 0 && !d->progressive && d->scan_ncomp == d->ncomp) complete = true;
            }
        } else if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE || m == 0xCC || m == 0xDC) {
            jpeg_parse_app(d, m, p, len); /* APPn, COM, DAC, DNL: nothing else needed */
        }
    }
    if (st == ABC_OK) st = jpeg_output(d, out, err);
    jpeg_decoder_free(d);
    return st;
}

/* ---- 5.5 PPM / PGM (binary P5 and P6, as Pillow's PpmImagePlugin) ---- */

/* Pillow's header tokens: whitespace-separated, '#' comments to the end of the line, at most 10
 * characters; the single whitespace byte after the last token is consumed. */
static bool ppm_token(const uint8_t *data, size_t size, size_t *pos, uint32_t *value) {
    char token[12];
    int n = 0;
    while (*pos < size) {
        uint8_t c = data[(*pos)++];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') {
            if (n) break;
            continue;
        }
        if (c == '#') {
            while (*pos < size && data[*pos] != '\r' && data[*pos] != '\n') (*pos)++;
            if (*pos < size) (*pos)++;
            continue;
        }
        if (n > 10) return false;
        token[n++] = (char)c;
    }
    if (n == 0 || n > 10) return false;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (token[i] < '0' || token[i] > '9') return false;
        v = v * 10 + (uint64_t)(token[i] - '0');
    }
    if (v > UINT32_MAX) return false;
    *value = (uint32_t)v;
    return true;
}

static abc_status ppm_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    int channels = data[1] == '6' ? 3 : 1;
    size_t pos = 3;
    uint32_t width, height, maxval;
    if (!ppm_token(data, size, &pos, &width) || !ppm_token(data, size, &pos, &height) ||
        !ppm_token(data, size, &pos, &maxval))
        return fail(err, ABC_ERR_IMAGE, "PPM/PGM header is invalid");
    if (maxval == 0 || maxval > 65535) return fail(err, ABC_ERR_IMAGE, "PPM/PGM maxval %u is not in 1..65535", maxval);
    abc_status st = image_check_size(width, height, max_pixels, "PPM/PGM", err);
    if (st != ABC_OK) return st;
    size_t sample_bytes = maxval > 255 ? 2 : 1, need;
    if (!mul_size((size_t)width * height, (size_t)channels * sample_bytes, &need) || need > size - pos)
        return fail(err, ABC_ERR_IMAGE, "PPM/PGM file is truncated");
    st = image_alloc(out, width, height, err);
    if (st != ABC_OK) return st;
    /* Pillow: maxval 255 is raw; other maxvals scale with round(v / maxval · out_max) (half to even);
     * 16-bit PGM becomes mode "I" (out_max 65535, raw for maxval 65535), which convert("RGB") clips. */
    bool grey_i = channels == 1 && maxval > 255;
    double out_max = grey_i ? 65535.0 : 255.0;
    const uint8_t *p = data + pos;
    size_t n = (size_t)width * height;
    uint8_t lut[256];
    if (sample_bytes == 1)
        for (unsigned v = 0; v < 256; v++) lut[v] = (uint8_t)(maxval == 255 ? v : MIN(255.0, nearbyint((double)v / maxval * 255.0)));
    for (size_t i = 0; i < n; i++) {
        uint8_t *o = out->rgb + 3 * i;
        for (int ch = 0; ch < channels; ch++) {
            unsigned v;
            if (sample_bytes == 1) {
                v = lut[*p++];
            } else {
                unsigned raw = load_be16(p);
                p += 2;
                double scaled = maxval == 65535 && grey_i ? raw : MIN(out_max, nearbyint((double)raw / maxval * out_max));
                v = scaled > 255.0 ? 255 : (unsigned)scaled;
            }
            if (channels == 1) o[0] = o[1] = o[2] = (uint8_t)v;
            else o[ch] = (uint8_t)v;
        }
    }
    return ABC_OK;
}

/* ---- 5.6 dispatch and public API ---- */

static abc_status image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    if (!data || !out) return fail(err, ABC_ERR_INVALID_ARG, "image_decode: NULL data or output");
    out->width = out->height = 0;
    out->rgb = NULL;
    if (max_pixels == 0) max_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return png_decode(data, size, max_pixels, out, err);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return jpeg_decode(data, size, max_pixels, out, err);
    if (size >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6') &&
        (data[2] == ' ' || data[2] == '\t' || data[2] == '\n' || data[2] == '\v' || data[2] == '\f' || data[2] == '\r'))
        return ppm_decode(data, size, max_pixels, out, err);
    if (size >= 2 && data[0] == 'P' && data[1] >= '0' && data[1] <= '6')
        return fail(err, ABC_ERR_UNSUPPORTED, "only binary PGM (P5) and PPM (P6) are supported, not P%c", data[1]);
    return fail(err, ABC_ERR_IMAGE, "unknown image format (not PNG, JPEG, PPM or PGM)");
}

abc_status abc_image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    clear_error(err);
    if (!data || !out) return fail(err, ABC_ERR_INVALID_ARG, "abc_image_decode: NULL data or output image");
    return image_decode(data, size, max_pixels, out, err);
}

abc_status abc_image_load(const char *path, size_t max_pixels, abc_image *out, abc_error *err) {
    clear_error(err);
    if (!path || !out) return fail(err, ABC_ERR_INVALID_ARG, "abc_image_load: NULL path or output image");
    out->width = out->height = 0;
    out->rgb = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, ABC_ERR_IO, "cannot open image %s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    abc_status st = ABC_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = ncap > cap ? xrealloc(buf, ncap) : NULL;
            if (!nb) {
                st = fail(err, ABC_ERR_NOMEM, "out of memory reading image %s", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) st = fail(err, ABC_ERR_IO, "cannot read image %s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st == ABC_OK) st = image_decode(buf, len, max_pixels, out, err);
    free(buf);
    return st;
}

void abc_image_free(abc_image *image) {
    if (!image) return;
    free(image->rgb);
    image->rgb = NULL;
    image->width = image->height = 0;
}
