/* ================================================================================================
 * 4b. Tokenizer: BPE identical to Hugging Face tokenizers on tokenizer.json, two flavours.
 *
 * Both: the text is first split on added tokens (matched in the raw text, leftmost-longest; a token
 * with rstrip/lstrip also swallows the whitespace after/before it); each piece between them is then
 * encoded on its own, and merges apply by rank.
 * - bpe_byte_level (Qwen2): NFC, split by the Qwen2 pre-tokenizer regex (a hand-written scanner
 *   below), then BPE on each pre-token's raw bytes (every byte is an initial symbol).
 * - bpe_sentencepiece (Llama-2 / Phi-3): the normalizer Prepend("▁") + Replace(" " → "▁") runs on
 *   EACH non-empty piece (HF normalizes every split separately, so text right after an added token
 *   gets its own "▁" too: the "legacy" Llama behaviour); no pre-tokenizer, so the whole piece is one
 *   BPE word; its initial symbols are its characters, a character missing from the vocabulary falls
 *   back to its UTF-8 bytes as <0xNN> tokens.
 * The tables live in the weight file (model_convert/FORMAT.md, "Tokenizer tensors").
 * ================================================================================================ */

/* Provided by the public API section: the tokenizer of a loaded model. */
static const tokenizer *model_tokenizer(const abc_model *m);

#define TOK_NO_MERGE UINT32_MAX

/* (left, right) → (rank, merged) in an open-addressing table; rank TOK_NO_MERGE marks an empty slot. */
typedef struct {
    uint64_t key;    /* left << 32 | right */
    uint32_t rank;
    int32_t merged;
} merge_slot;

enum { ADDED_LSTRIP = 1, ADDED_RSTRIP = 2 };

typedef struct {
    const uint8_t *text;
    uint32_t len;
    int32_t id;
    int32_t strip; /* ADDED_LSTRIP | ADDED_RSTRIP */
} added_token;

enum { TOK_BYTE_LEVEL, TOK_SENTENCEPIECE };

#define SP_SPACE 0x2581u /* ▁, SentencePiece's visible space */

struct tokenizer {
    const uint8_t *vocab_bytes;   /* inside the weight file mapping */
    const int32_t *vocab_offsets; /* [n_vocab + 1] */
    int32_t n_vocab;
    int32_t byte_id[256];         /* the token of each single byte: BPE's initial symbols */
    merge_slot *merges;
    int merge_bits;               /* the table has 1 << merge_bits slots */
    size_t n_merges;
    added_token *added;           /* sorted by first byte, then longest first */
    size_t n_added;
    uint32_t added_first[257];    /* added[added_first[b] .. added_first[b+1]) start with byte b */
    bool nfc;
    int kind;                     /* TOK_BYTE_LEVEL or TOK_SENTENCEPIECE */
    int32_t bos_id;               /* added before every text by the post-processor, or -1 */
    /* SentencePiece: the single-character vocabulary tokens (BPE's initial symbols). */
    const int32_t *sp_chars;      /* [n_sp_chars][2] = (code point, id), sorted by code point */
    size_t n_sp_chars;
    int32_t sp_ascii[128];        /* the same for ASCII, -1 when absent */
    int32_t sp_space_id;          /* the token of "▁", or -1 */
};

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if it is invalid: overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences and stray continuation bytes. */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;                 /* continuation byte, or overlong 2-byte lead */
    if (b < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (b < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (b == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (b == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (b > 0xF4) return 0;
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (b == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (b == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return 4;
}

/* Returns true if s[0..n) is valid UTF-8; otherwise *bad is the offset of the first bad byte. */
static bool utf8_validate(const uint8_t *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_valid_len(s + i, n - i);
        if (!k) { *bad = i; return false; }
        i += k;
    }
    return true;
}

/* Decodes one code point of already validated UTF-8. */
static inline uint32_t utf8_decode(const uint8_t *s, size_t *n) {
    uint8_t b = s[0];
    if (b < 0x80) { *n = 1; return b; }
    if (b < 0xE0) { *n = 2; return (uint32_t)(b & 0x1F) << 6 | (s[1] & 0x3F); }
    if (b < 0xF0) {
        *n = 3;
        return (uint32_t)(b & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *n = 4;
    return (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
           (s[3] & 0x3F);
}

static size_t utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- per-call scratch memory (the tokenizer itself is shared read-only) ---- */

typedef struct {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
} bpe_candidate;

typedef struct {
    uint32_t *cps;      /* NFC: code points */
    size_t cps_len, cps_cap;
    uint32_t *sort_tmp; /* NFC: canonical ordering of long runs */
    size_t sort_cap;
    uint8_t *nfc;       /* NFC: the normalized UTF-8 */
    size_t nfc_cap;
    int32_t *sym, *prev, *next; /* BPE: symbols as a doubly linked list */
    size_t sym_cap;
    bpe_candidate *heap;
    size_t heap_len, heap_cap;
} encode_scratch;

static void encode_scratch_free(encode_scratch *s) {
    free(s->cps);
    free(s->sort_tmp);
    free(s->nfc);
    free(s->sym);
    free(s->prev);
    free(s->next);
    free(s->heap);
}

/* Grows *buf to hold at least `need` elements of `elem` bytes. */
static bool grow_buffer(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap : 256, bytes;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2) return false;
        cap2 *= 2;
    }
    if (!mul_size(cap2, elem, &bytes)) return false;
    void *p = xrealloc(*buf, bytes);
    if (!p) return false;
    *buf = p;
    *cap = cap2;
    return true;
}

/* ---- NFC (Unicode Standard Annex #15) ---- */

enum {
    HANGUL_S_BASE = 0xAC00, HANGUL_L_BASE = 0x1100, HANGUL_V_BASE = 0x1161, HANGUL_T_BASE = 0x11A7,
    HANGUL_L_COUNT = 19, HANGUL_V_COUNT = 21, HANGUL_T_COUNT = 28,
    HANGUL_N_COUNT = HANGUL_V_COUNT * HANGUL_T_COUNT, HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N_COUNT
};

/* True when s[0..n) is certainly in NFC already (the NFC_Quick_Check algorithm, Maybe → false). */
static bool nfc_quick_check(const uint8_t *s, size_t n) {
    unsigned last_ccc = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            last_ccc = 0;
            i++;
            continue;
        }
        size_t k;
        uint32_t cp = utf8_decode(s + i, &k);
        i += k;
        if (uc_flags(cp) & UC_NFC_CHECK) return false;
        unsigned ccc = uc_ccc(cp);
        if (ccc && last_ccc > ccc) return false;
        last_ccc = ccc;
    }
    return true;
}

static bool cps_push(encode_scratch *s, uint32_t cp) {
    if (s->cps_len == s->cps_cap && !grow_buffer((void **)&s->cps, &s->cps_cap, s->cps_len + 1, sizeof *s->cps))
        return false;
    s->cps[s->cps_len++] = cp;
    return true;
}

/* Appends the full canonical decomposition of cp. */
static bool decompose_push(encode_scratch *s, uint32_t cp) {
    if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
        uint32_t i = cp - HANGUL_S_BASE, t = i % HANGUL_T_COUNT;
        if (!cps_push(s, HANGUL_L_BASE + i / HANGUL_N_COUNT)) return false;
        if (!cps_push(s, HANGUL_V_BASE + i % HANGUL_N_COUNT / HANGUL_T_COUNT)) return false;
        return t == 0 || cps_push(s, HANGUL_T_BASE + t);
    }
    size_t lo = 0, hi = UC_DECOMP_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uc_decomp_cp[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < UC_DECOMP_COUNT && uc_decomp_cp[lo] == cp) {
        for (unsigned j = uc_decomp_start[lo]; j < uc_decomp_start[lo + 1]; j++)
            if (!cps_push(s, uc_decomp_seq[j])) return false;
        return true;
    }
    return cps_push(s, cp);
}

/* Stable sort of a run of non-starters by combining class. Short runs (the norm) use insertion
 * sort; long ones a counting sort, so a megabyte of stacked marks stays linear. */
static bool canonical_order_run(encode_scratch *s, uint32_t *run, size_t n) {
    if (n < 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t cp = run[i];
            unsigned ccc = uc_ccc(cp);
            size_t j = i;
            while (j > 0 && uc_ccc(run[j - 1]) > ccc) {
                run[j] = run[j - 1];
                j--;
            }
            run[j] = cp;
        }
        return true;
    }
    if (!grow_buffer((void **)&s->sort_tmp, &s->sort_cap, n, sizeof *s->sort_tmp)) return false;
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[uc_ccc(run[i]) + 1]++;
    for (int c = 0; c < 256; c++) start[c + 1] += start[c];
    for (size_t i = 0; i < n; i++) s->sort_tmp[start[uc_ccc(run[i])]++] = run[i];
    memcpy(run, s->sort_tmp, n * sizeof *run);
    return true;
}

/* The primary composite of (a, b), or 0 if there is none. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE &&
        b < HANGUL_V_BASE + HANGUL_V_COUNT)
        return HANGUL_S_BASE + ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT && (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 &&
        b > HANGUL_T_BASE && b < HANGUL_T_BASE + HANGUL_T_COUNT)
        return a + (b - HANGUL_T_BASE);
    uint64_t key = (uint64_t)a << 21 | b;
    size_t lo = 0, hi = UC_COMP_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uc_comp_pair[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < UC_COMP_COUNT && uc_comp_pair[lo] == key ? uc_comp_result[lo] : 0;
}

/* Canonical composition of s->cps in place. */
static void compose_in_place(encode_scratch *s) {
    uint32_t *c = s->cps;
    size_t out = 0, starter = SIZE_MAX;
    unsigned last_ccc = 0;
    for (size_t i = 0; i < s->cps_len; i++) {
        uint32_t cp = c[i];
        unsigned ccc = uc_ccc(cp);
        /* cp may join the last starter unless a character of the same or higher class sits between. */
        if (starter != SIZE_MAX && (last_ccc < ccc || last_ccc == 0)) {
            uint32_t composite = compose_pair(c[starter], cp);
            if (composite) {
                c[starter] = composite;
                continue;
            }
        }
        if (ccc == 0) starter = out;
        last_ccc = ccc;
        c[out++] = cp;
    }
    s->cps_len = out;
}

/* NFC of text[0..n) (valid UTF-8) into s->nfc; *out_len is its length. */
static bool nfc_normalize(encode_scratch *s, const uint8_t *text, size_t n, size_t *out_len) {
    s->cps_len = 0;
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = utf8_decode(text + i, &k);
        i += k;
        if (!decompose_push(s, cp)) return false;
    }
    for (size_t i = 0; i < s->cps_len;) {
        if (uc_ccc(s->cps[i]) == 0) { i++; continue; }
        size_t j = i;
        while (j < s->cps_len && uc_ccc(s->cps[j]) != 0) j++;
        if (!canonical_order_run(s, s->cps + i, j - i)) return false;
        i = j;
    }
    compose_in_place(s);
    size_t need;
    if (!mul_size(s->cps_len, 4, &need) || !grow_buffer((void **)&s->nfc, &s->nfc_cap, need, 1)) return false;
    size_t len = 0;
    for (size_t i = 0; i < s->cps_len; i++) len += utf8_encode(s->cps[i], s->nfc + len);
    *out_len = len;
    return true;
}

/* ---- pre-tokenizer: the Qwen2 split regex, by hand ----
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Every character starts some alternative, so the matches tile the text; at each position the first
 * alternative that matches (with backtracking) wins, as in Oniguruma, the engine of HF tokenizers. */

enum { CH_OTHER, CH_LETTER, CH_NUMBER, CH_SPACE, CH_NEWLINE };

static inline int char_class(const uint8_t *s, size_t *n) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *n = 1;
        if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') return CH_LETTER;
        if (b >= '0' && b <= '9') return CH_NUMBER;
        if (b == '\n' || b == '\r') return CH_NEWLINE;
        if (b == ' ' || (b >= '\t' && b <= '\f')) return CH_SPACE;
        return CH_OTHER;
    }
    unsigned f = uc_flags(utf8_decode(s, n));
    if (f & UC_LETTER) return CH_LETTER;
    if (f & UC_NUMBER) return CH_NUMBER;
    if (f & UC_SPACE) return CH_SPACE;
    return CH_OTHER;
}

static inline bool ascii_ci(uint8_t b, char lower) { return (b | 0x20) == lower; }

/* Length of the contraction after an apostrophe at s[0..n): 's 't 're 've 'm 'll 'd, any case.
 * (?i) uses Unicode case folding, so 's also matches U+017F LATIN SMALL LETTER LONG S. */
static size_t contraction_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    uint8_t b = s[0];
    if (ascii_ci(b, 's') || ascii_ci(b, 't') || ascii_ci(b, 'm') || ascii_ci(b, 'd')) return 1;
    if (n >= 2 && ascii_ci(b, 'r') && ascii_ci(s[1], 'e')) return 2;
    if (n >= 2 && ascii_ci(b, 'v') && ascii_ci(s[1], 'e')) return 2;
    if (n >= 2 && ascii_ci(b, 'l') && ascii_ci(s[1], 'l')) return 2;
    if (n >= 2 && b == 0xC5 && s[1] == 0xBF) return 2; /* U+017F ſ */
    return 0;
}

static size_t run_of_class(const uint8_t *s, size_t pos, size_t end, int cls) {
    while (pos < end) {
        size_t k;
        if (char_class(s + pos, &k) != cls) break;
        pos += k;
    }
    return pos;
}

/* End of the pre-token that starts at pos (< end). */
static size_t pretoken_end(const uint8_t *s, size_t pos, size_t end) {
    size_t n0, k;
    int c0 = char_class(s + pos, &n0);
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (s[pos] == '\'') {
        size_t m = contraction_len(s + pos + 1, end - pos - 1);
        if (m) return pos + 1 + m;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0 == CH_LETTER) return run_of_class(s, pos, end, CH_LETTER);
    if (c0 != CH_NEWLINE && c0 != CH_NUMBER && pos + n0 < end && char_class(s + pos + n0, &k) == CH_LETTER)
        return run_of_class(s, pos + n0, end, CH_LETTER);
    /* \p{N} */
    if (c0 == CH_NUMBER) return pos + n0;
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t p = pos + (s[pos] == ' ');
    if (p < end && char_class(s + p, &k) == CH_OTHER) {
        p = run_of_class(s, p, end, CH_OTHER);
        while (p < end && (s[p] == '\r' || s[p] == '\n')) p++;
        return p;
    }
    /* Only whitespace is left. \s*[\r\n]+ ends after the run's last line break; \s+(?!\S) takes the
     * run up to the end of the text, or all but its last character; \s+ takes a single character. */
    size_t last_break_end = 0, last_start = pos;
    p = pos;
    while (p < end) {
        int c = char_class(s + p, &k);
        if (c != CH_SPACE && c != CH_NEWLINE) break;
        if (c == CH_NEWLINE) last_break_end = p + k;
        last_start = p;
        p += k;
    }
    if (last_break_end) return last_break_end;
    if (p == end || last_start == pos) return p;
    return last_start;
}

/* ---- BPE ---- */

static inline size_t merge_hash(uint64_t key, int bits) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static const merge_slot *merge_find(const tokenizer *tok, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = ((size_t)1 << tok->merge_bits) - 1;
    for (size_t h = merge_hash(key, tok->merge_bits);; h = (h + 1) & mask) {
        const merge_slot *slot = &tok->merges[h];
        if (slot->rank == TOK_NO_MERGE) return NULL;
        if (slot->key == key) return slot;
    }
}

static inline bool candidate_before(const bpe_candidate *a, const bpe_candidate *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(encode_scratch *s, bpe_candidate c) {
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!candidate_before(&c, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = c;
}

static bpe_candidate heap_pop(encode_scratch *s) {
    bpe_candidate top = s->heap[0], last = s->heap[--s->heap_len];
    size_t i = 0, n = s->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && candidate_before(&s->heap[child + 1], &s->heap[child])) child++;
        if (!candidate_before(&s->heap[child], &last)) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    s->heap[i] = last;
    return top;
}

/* Queues the merge of the symbol at `pos` with its successor, if the pair has one. */
static void queue_pair(const tokenizer *tok, encode_scratch *s, int32_t pos) {
    int32_t nx = s->next[pos];
    if (nx < 0) return;
    const merge_slot *m = merge_find(tok, s->sym[pos], s->sym[nx]);
    if (m) heap_push(s, (bpe_candidate){m->rank, (uint32_t)pos, m->merged});
}

/* Room for a word of n initial symbols: the symbol list and the heap (n - 1 initial pairs plus at
 * most two new pairs per merge stay below 3n). */
static abc_status bpe_reserve(encode_scratch *s, size_t n, abc_error *err) {
    if (n > INT32_MAX / 3) return fail(err, ABC_ERR_TOO_LARGE, "a single word of %zu bytes is too long to tokenize", n);
    if (!grow_buffer((void **)&s->heap, &s->heap_cap, 3 * n, sizeof *s->heap)) goto nomem;
    if (n > s->sym_cap) {
        size_t cap = n + n / 2;
        int32_t *sym = xrealloc(s->sym, cap * sizeof *sym);
        if (sym) s->sym = sym;
        int32_t *prev = sym ? xrealloc(s->prev, cap * sizeof *prev) : NULL;
        if (prev) s->prev = prev;
        int32_t *next = prev ? xrealloc(s->next, cap * sizeof *next) : NULL;
        if (!next) goto nomem;
        s->next = next;
        s->sym_cap = cap;
    }
    return ABC_OK;
nomem:
    return fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
}

/* BPE of one word whose n >= 1 initial symbols are in s->sym, as HF tokenizers' Word::merge_all:
 * repeatedly apply the lowest-ranked merge (leftmost among equals) using a heap of candidate pairs,
 * so long words cost O(n log n). Appends the resulting ids. */
static abc_status bpe_merge_symbols(const tokenizer *tok, encode_scratch *s, size_t n, int_vec *ids, abc_error *err) {
    for (size_t i = 0; i < n; i++) {
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    s->heap_len = 0;
    for (size_t i = 0; i + 1 < n; i++) queue_pair(tok, s, (int32_t)i);
    while (s->heap_len) {
        bpe_candidate top = heap_pop(s);
        int32_t pos = (int32_t)top.pos, nx = s->next[pos];
        if (s->sym[pos] < 0 || nx < 0) continue;
        /* Skip stale candidates: the pair at pos changed since it was queued. */
        const merge_slot *m = merge_find(tok, s->sym[pos], s->sym[nx]);
        if (!m || m->merged != top.merged) continue;
        s->sym[pos] = top.merged;
        s->sym[nx] = -1;
        s->next[pos] = s->next[nx];
        if (s->next[nx] >= 0) s->prev[s->next[nx]] = pos;
        if (s->prev[pos] >= 0) queue_pair(tok, s, s->prev[pos]);
        queue_pair(tok, s, pos);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i])
        if (!int_vec_push(ids, s->sym[i])) return fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
    return ABC_OK;
}

/* Byte-level BPE of one pre-token: every byte is an initial symbol. */
static abc_status bpe_encode(const tokenizer *tok, encode_scratch *s, const uint8_t *bytes, size_t n,
                             int_vec *ids, abc_error *err) {
    if (n == 1) {
        if (!int_vec_push(ids, tok->byte_id[bytes[0]])) return fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
        return ABC_OK;
    }
    abc_status st = bpe_reserve(s, n, err);
    if (st != ABC_OK) return st;
    for (size_t i = 0; i < n; i++) s->sym[i] = tok->byte_id[bytes[i]];
    return bpe_merge_symbols(tok, s, n, ids, err);
}

/* ---- SentencePiece BPE ---- */

/* The single-character token of code point cp, or -1. */
static int32_t sp_char_id(const tokenizer *tok, uint32_t cp) {
    if (cp < 128) return tok->sp_ascii[cp];
    if (cp == SP_SPACE) return tok->sp_space_id;
    size_t lo = 0, hi = tok->n_sp_chars;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)tok->sp_chars[2 * mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < tok->n_sp_chars && (uint32_t)tok->sp_chars[2 * lo] == cp ? tok->sp_chars[2 * lo + 1] : -1;
}

/* Appends the initial symbol(s) of character cp: its token, or its UTF-8 bytes' <0xNN> tokens. */
static size_t sp_push_char(const tokenizer *tok, encode_scratch *s, size_t n, uint32_t cp) {
    int32_t id = sp_char_id(tok, cp);
    if (id >= 0) {
        s->sym[n] = id;
        return n + 1;
    }
    uint8_t buf[4];
    size_t k = utf8_encode(cp, buf);
    for (size_t i = 0; i < k; i++) s->sym[n++] = tok->byte_id[buf[i]];
    return n;
}

/* Encodes one piece of valid UTF-8 text between added tokens: "▁" + the text with every space
 * replaced by "▁" (nothing for an empty piece), as one BPE word. */
static abc_status sp_encode_piece(const tokenizer *tok, encode_scratch *s, const uint8_t *text, size_t n,
                                  int_vec *ids, abc_error *err) {
    if (n == 0) return ABC_OK;
    if (n > SIZE_MAX - 4) return fail(err, ABC_ERR_TOO_LARGE, "text too long");
    /* A character yields at most as many symbols as it has bytes; the leading "▁" at most 3. */
    abc_status st = bpe_reserve(s, n + 3, err);
    if (st != ABC_OK) return st;
    size_t n_sym = sp_push_char(tok, s, 0, SP_SPACE);
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = utf8_decode(text + i, &k);
        i += k;
        n_sym = sp_push_char(tok, s, n_sym, cp == ' ' ? SP_SPACE : cp);
    }
    return bpe_merge_symbols(tok, s, n_sym, ids, err);
}

/* Pre-tokenizes and encodes a piece of normalized text that holds no added token. */
static abc_status encode_piece(const tokenizer *tok, encode_scratch *s, const uint8_t *text, size_t n,
                               int_vec *ids, abc_error *err) {
    for (size_t pos = 0; pos < n;) {
        size_t end = pretoken_end(text, pos, n);
        abc_status st = bpe_encode(tok, s, text + pos, end - pos, ids, err);
        if (st != ABC_OK) return st;
        pos = end;
    }
    return ABC_OK;
}

static abc_status encode_segment(const tokenizer *tok, encode_scratch *s, const uint8_t *text, size_t n,
                                 int_vec *ids, abc_error *err) {
    if (n == 0) return ABC_OK;
    if (tok->kind == TOK_SENTENCEPIECE) return sp_encode_piece(tok, s, text, n, ids, err);
    if (tok->nfc && !nfc_quick_check(text, n)) {
        size_t len;
        if (!nfc_normalize(s, text, n, &len)) return fail(err, ABC_ERR_NOMEM, "out of memory normalizing text");
        return encode_piece(tok, s, s->nfc, len, ids, err);
    }
    return encode_piece(tok, s, text, n, ids, err);
}

/* Rust's char::is_whitespace (the White_Space property), which HF uses to strip around added tokens. */
static bool is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* End of the whitespace run starting at pos (rstrip). */
static size_t white_space_end(const uint8_t *text, size_t pos, size_t end) {
    while (pos < end) {
        size_t k;
        if (!is_white_space(utf8_decode(text + pos, &k))) break;
        pos += k;
    }
    return pos;
}

/* Start of the whitespace run that ends at `end`, not before `from` (lstrip). */
static size_t white_space_start(const uint8_t *text, size_t from, size_t end) {
    size_t start = from;
    for (size_t pos = from; pos < end;) {
        size_t k;
        bool white = is_white_space(utf8_decode(text + pos, &k));
        pos += k;
        if (!white) start = pos;
    }
    return start;
}

/* The leftmost-longest added token at or after `pos`: returns its start (n when there is none). */
static size_t find_added_token(const tokenizer *tok, const uint8_t *text, size_t n, size_t pos,
                               const added_token **found) {
    for (; pos < n; pos++) {
        uint8_t b = text[pos];
        for (uint32_t i = tok->added_first[b]; i < tok->added_first[b + 1]; i++) {
            const added_token *a = &tok->added[i];
            if (a->len <= n - pos && !memcmp(text + pos, a->text, a->len)) {
                *found = a;
                return pos;
            }
        }
    }
    *found = NULL;
    return n;
}

static abc_status tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int_vec *ids,
                                   abc_error *err) {
    if (!tok || !ids || (!text && len)) return fail(err, ABC_ERR_INVALID_ARG, "tokenize: NULL argument");
    const uint8_t *s = (const uint8_t *)text;
    size_t bad;
    if (!utf8_validate(s, len, &bad))
        return fail(err, ABC_ERR_UTF8, "text is not valid UTF-8 (byte 0x%02X at offset %zu)", s[bad], bad);
    size_t start_len = ids->len;
    encode_scratch scratch = {0};
    abc_status st = ABC_OK;
    /* As HF's AddedVocabulary::find_matches: `piece` is where the text not yet consumed starts. */
    for (size_t piece = 0; st == ABC_OK;) {
        const added_token *a;
        size_t at = find_added_token(tok, s, len, piece, &a);
        if (!a) {
            if (piece < len) st = encode_segment(tok, &scratch, s + piece, len - piece, ids, err);
            break;
        }
        size_t start = a->strip & ADDED_LSTRIP ? white_space_start(s, piece, at) : at;
        size_t stop = at + a->len;
        if (a->strip & ADDED_RSTRIP) stop = white_space_end(s, stop, len);
        st = encode_segment(tok, &scratch, s + piece, start - piece, ids, err);
        if (st == ABC_OK && !int_vec_push(ids, a->id)) st = fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
        piece = stop;
    }
    encode_scratch_free(&scratch);
    if (st != ABC_OK) ids->len = start_len;
    return st;
}

static const char *tokenizer_token_bytes(const tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_vocab) return NULL;
    int32_t a = tok->vocab_offsets[id], b = tok->vocab_offsets[id + 1];
    if (a == b) return NULL;
    if (len) *len = (size_t)(b - a);
    return (const char *)tok->vocab_bytes + a;
}

/* ---- loading ---- */

static void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    free(tok->merges);
    free(tok->added);
    free(tok);
}

/* The tensor `name`, which must have the given dtype and rank. */
static abc_status tok_tensor(const weight_file *wf, const char *name, uint32_t dtype, int ndim, const tensor **out,
                             abc_error *err) {
    const tensor *t = wf_tensor(wf, name);
    if (!t) return fail(err, ABC_ERR_FORMAT, "weight file has no tensor '%s'", name);
    if (t->dtype != dtype || t->ndim != ndim)
        return fail(err, ABC_ERR_FORMAT, "tensor '%s' must be %s with %d dimension(s), not %s with %d", name,
                    dtype_name(dtype), ndim, dtype_name(t->dtype), t->ndim);
    if (dtype == DT_I32 && (uintptr_t)t->data % sizeof(int32_t))
        return fail(err, ABC_ERR_FORMAT, "tensor '%s' is misaligned", name);
    *out = t;
    return ABC_OK;
}

/* *index = position of the string metadata `key` among `choices` (an error if missing or another value). */
static abc_status tok_meta_choice(const weight_file *wf, const char *key, const char *const *choices, int n_choices,
                              int *index, abc_error *err) {
    const char *s;
    size_t len;
    if (!wf_str(wf, key, &s, &len, err)) return ABC_ERR_FORMAT;
    for (int i = 0; i < n_choices; i++)
        if (len == strlen(choices[i]) && !memcmp(s, choices[i], len)) {
            *index = i;
            return ABC_OK;
        }
    return fail(err, ABC_ERR_UNSUPPORTED, "unsupported %s '%.*s'", key, (int)MIN(len, 64), s);
}

static abc_status load_vocab(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *bytes, *offs;
    abc_status st = tok_tensor(wf, "tokenizer.vocab.bytes", DT_U8, 1, &bytes, err);
    if (st == ABC_OK) st = tok_tensor(wf, "tokenizer.vocab.offsets", DT_I32, 1, &offs, err);
    if (st != ABC_OK) return st;
    if (offs->shape[0] < 2 || offs->shape[0] - 1 > INT32_MAX / 4)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.offsets: bad length %lld", (long long)offs->shape[0]);
    if ((uint64_t)bytes->shape[0] > INT32_MAX)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.bytes: %lld bytes is too large", (long long)bytes->shape[0]);
    tok->n_vocab = (int32_t)(offs->shape[0] - 1);
    tok->vocab_offsets = offs->data;
    tok->vocab_bytes = bytes->data;
    const int32_t *o = tok->vocab_offsets;
    if (o[0] != 0 || o[tok->n_vocab] != (int32_t)bytes->shape[0])
        return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.offsets must run from 0 to %lld", (long long)bytes->shape[0]);
    for (int32_t i = 0; i < tok->n_vocab; i++)
        if (o[i + 1] < o[i]) return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.offsets decreases at token %d", i);
    return ABC_OK;
}

/* BPE's initial symbols: the token of each single byte (the first such token if several). */
static abc_status find_byte_tokens(tokenizer *tok, abc_error *err) {
    for (int b = 0; b < 256; b++) tok->byte_id[b] = -1;
    for (int32_t i = tok->n_vocab - 1; i >= 0; i--)
        if (tok->vocab_offsets[i + 1] - tok->vocab_offsets[i] == 1)
            tok->byte_id[tok->vocab_bytes[tok->vocab_offsets[i]]] = i;
    for (int b = 0; b < 256; b++)
        if (tok->byte_id[b] < 0) return fail(err, ABC_ERR_FORMAT, "tokenizer vocabulary has no token for byte 0x%02X", b);
    return ABC_OK;
}

static abc_status load_merges(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *t;
    abc_status st = tok_tensor(wf, "tokenizer.merges", DT_I32, 2, &t, err);
    if (st != ABC_OK) return st;
    if (t->shape[1] != 3 || t->shape[0] < 0 || t->shape[0] >= INT32_MAX / 4)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.merges must be [n, 3], not [%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
    size_t n = (size_t)t->shape[0];
    tok->n_merges = n;
    int bits = 4;
    while (((size_t)1 << bits) < 2 * n) bits++;
    tok->merge_bits = bits;
    tok->merges = xmalloc(((size_t)1 << bits) * sizeof *tok->merges);
    if (!tok->merges) return fail(err, ABC_ERR_NOMEM, "out of memory loading the tokenizer merges");
    for (size_t i = 0; i < ((size_t)1 << bits); i++) tok->merges[i].rank = TOK_NO_MERGE;
    const int32_t *m = t->data;
    const int32_t *o = tok->vocab_offsets;
    size_t mask = ((size_t)1 << bits) - 1;
    for (size_t r = 0; r < n; r++) {
        int32_t left = m[3 * r], right = m[3 * r + 1], merged = m[3 * r + 2];
        if (left < 0 || left >= tok->n_vocab || right < 0 || right >= tok->n_vocab || merged < 0 || merged >= tok->n_vocab)
            return fail(err, ABC_ERR_FORMAT, "tokenizer.merges row %zu: id out of range", r);
        int32_t ll = o[left + 1] - o[left], rl = o[right + 1] - o[right];
        if (!ll || !rl || o[merged + 1] - o[merged] != ll + rl ||
            memcmp(tok->vocab_bytes + o[merged], tok->vocab_bytes + o[left], (size_t)ll) ||
            memcmp(tok->vocab_bytes + o[merged] + ll, tok->vocab_bytes + o[right], (size_t)rl))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.merges row %zu: token %d is not token %d + token %d", r, merged, left, right);
        /* A pair listed twice keeps its last rank, as HF tokenizers' merge map does. */
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        size_t h = merge_hash(key, bits);
        while (tok->merges[h].rank != TOK_NO_MERGE && tok->merges[h].key != key) h = (h + 1) & mask;
        tok->merges[h] = (merge_slot){key, (uint32_t)r, merged};
    }
    return ABC_OK;
}

static int compare_added(const void *pa, const void *pb) {
    const added_token *a = pa, *b = pb;
    if (a->text[0] != b->text[0]) return a->text[0] < b->text[0] ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static abc_status load_added(tokenizer *tok, const weight_file *wf, abc_error *err) {
    /* A tokenizer without added tokens has no tokenizer.added.* tensors (shapes cannot be 0). */
    if (!wf_tensor(wf, "tokenizer.added.ids") && !wf_tensor(wf, "tokenizer.added.special")) {
        for (int b = 0; b < 257; b++) tok->added_first[b] = 0;
        return ABC_OK;
    }
    const tensor *ids, *special;
    abc_status st = tok_tensor(wf, "tokenizer.added.ids", DT_I32, 1, &ids, err);
    if (st == ABC_OK) st = tok_tensor(wf, "tokenizer.added.special", DT_I32, 1, &special, err);
    if (st != ABC_OK) return st;
    if (special->shape[0] != ids->shape[0] || ids->shape[0] > tok->n_vocab)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.added.ids and tokenizer.added.special disagree in length");
    size_t n = (size_t)ids->shape[0];
    tok->added = xcalloc(n, sizeof *tok->added);
    if (!tok->added) return fail(err, ABC_ERR_NOMEM, "out of memory loading the added tokens");
    /* Optional: absent when no added token strips whitespace. */
    const int32_t *strip = NULL;
    if (wf_tensor(wf, "tokenizer.added.strip")) {
        const tensor *t;
        st = tok_tensor(wf, "tokenizer.added.strip", DT_I32, 1, &t, err);
        if (st != ABC_OK) return st;
        if (t->shape[0] != ids->shape[0])
            return fail(err, ABC_ERR_FORMAT, "tokenizer.added.strip and tokenizer.added.ids disagree in length");
        strip = t->data;
    }
    const int32_t *id = ids->data, *sp = special->data;
    for (size_t i = 0; i < n; i++) {
        if (id[i] < 0 || id[i] >= tok->n_vocab || (sp[i] != 0 && sp[i] != 1))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.added entry %zu: bad id %d or flag %d", i, id[i], sp[i]);
        if (strip && (strip[i] & ~(ADDED_LSTRIP | ADDED_RSTRIP)))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.added.strip entry %zu: bad flags %d", i, strip[i]);
        int32_t a = tok->vocab_offsets[id[i]], b = tok->vocab_offsets[id[i] + 1];
        if (a == b) return fail(err, ABC_ERR_FORMAT, "added token %d has no text", id[i]);
        /* Valid UTF-8 text can only match at character boundaries of (valid) input text. */
        size_t bad;
        if (!utf8_validate(tok->vocab_bytes + a, (size_t)(b - a), &bad))
            return fail(err, ABC_ERR_FORMAT, "added token %d is not valid UTF-8", id[i]);
        tok->added[i] = (added_token){tok->vocab_bytes + a, (uint32_t)(b - a), id[i], strip ? strip[i] : 0};
    }
    tok->n_added = n;
    if (n) qsort(tok->added, n, sizeof *tok->added, compare_added);
    size_t i = 0;
    for (int b = 0; b < 256; b++) {
        tok->added_first[b] = (uint32_t)i;
        while (i < n && tok->added[i].text[0] == b) i++;
    }
    tok->added_first[256] = (uint32_t)n;
    return ABC_OK;
}

/* SentencePiece: the <0xNN> token of every byte (its stored bytes are that byte). */
static abc_status load_byte_fallback(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *t;
    abc_status st = tok_tensor(wf, "tokenizer.byte_fallback", DT_I32, 1, &t, err);
    if (st != ABC_OK) return st;
    if (t->shape[0] != 256) return fail(err, ABC_ERR_FORMAT, "tokenizer.byte_fallback must have 256 entries");
    const int32_t *id = t->data, *o = tok->vocab_offsets;
    for (int b = 0; b < 256; b++) {
        if (id[b] < 0 || id[b] >= tok->n_vocab || o[id[b] + 1] - o[id[b]] != 1 || tok->vocab_bytes[o[id[b]]] != b)
            return fail(err, ABC_ERR_FORMAT, "tokenizer.byte_fallback: entry %d (id %d) is not the token of byte 0x%02X", b, id[b], b);
        tok->byte_id[b] = id[b];
    }
    return ABC_OK;
}

/* SentencePiece: the single-character tokens, (code point, id) sorted by code point. Their stored
 * bytes are the character's UTF-8, except "▁" which is stored as a space. */
static abc_status load_sp_chars(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *t;
    abc_status st = tok_tensor(wf, "tokenizer.sp.chars", DT_I32, 2, &t, err);
    if (st != ABC_OK) return st;
    if (t->shape[1] != 2 || t->shape[0] < 1 || t->shape[0] > tok->n_vocab)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars must be [n, 2] with n <= the vocabulary size");
    const int32_t *c = t->data, *o = tok->vocab_offsets;
    size_t n = (size_t)t->shape[0];
    for (int i = 0; i < 128; i++) tok->sp_ascii[i] = -1;
    tok->sp_space_id = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t cp = c[2 * i], id = c[2 * i + 1];
        if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || (i && cp <= c[2 * i - 2]))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars row %zu: code point %d out of range or order", i, cp);
        if (id < 0 || id >= tok->n_vocab) return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars row %zu: bad id %d", i, id);
        uint8_t buf[4];
        size_t k = utf8_encode((uint32_t)cp == SP_SPACE ? ' ' : (uint32_t)cp, buf);
        if ((size_t)(o[id + 1] - o[id]) != k || memcmp(tok->vocab_bytes + o[id], buf, k))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars row %zu: token %d is not U+%04X", i, id, (unsigned)cp);
        if (cp < 128) tok->sp_ascii[cp] = id;
        if ((uint32_t)cp == SP_SPACE) tok->sp_space_id = id;
    }
    tok->sp_chars = c;
    tok->n_sp_chars = n;
    return ABC_OK;
}

/* The id the post-processor puts first (metadata tokenizer.bos_id; -1: none). */
static abc_status load_bos(tokenizer *tok, const weight_file *wf, abc_error *err) {
    int64_t bos;
    if (!wf_int(wf, "tokenizer.bos_id", &bos, err)) return ABC_ERR_FORMAT;
    if (bos < -1 || bos >= tok->n_vocab) return fail(err, ABC_ERR_FORMAT, "tokenizer.bos_id %lld is out of range", (long long)bos);
    tok->bos_id = (int32_t)bos;
    return ABC_OK;
}

static abc_status tokenizer_load(const weight_file *wf, tokenizer **out, abc_error *err) {
    if (!wf || !out) return fail(err, ABC_ERR_INVALID_ARG, "tokenizer_load: NULL argument");
    *out = NULL;
    /* Indexed alike: model i goes with pre-tokenizer i and the normalizers of row i. */
    static const char *const models[] = {"bpe_byte_level", "bpe_sentencepiece"};
    static const char *const pretokenizers[] = {"qwen2", "none"};
    static const char *const normalizers[] = {"nfc", "none", "prepend_replace"};
    int model = 0, pretokenizer = 0, normalizer = 0; /* set by tok_meta_choice when it succeeds */
    abc_status st = tok_meta_choice(wf, "tokenizer.model", models, 2, &model, err);
    if (st == ABC_OK) st = tok_meta_choice(wf, "tokenizer.pretokenizer", pretokenizers, 2, &pretokenizer, err);
    if (st == ABC_OK) st = tok_meta_choice(wf, "tokenizer.normalizer", normalizers, 3, &normalizer, err);
    if (st != ABC_OK) return st;
    bool sp = model == 1;
    if (pretokenizer != model || (normalizer == 2) != sp)
        return fail(err, ABC_ERR_UNSUPPORTED, "tokenizer.model %s does not go with tokenizer.pretokenizer %s and normalizer %s",
                    models[model], pretokenizers[pretokenizer], normalizers[normalizer]);
    tokenizer *tok = xcalloc(1, sizeof *tok);
    if (!tok) return fail(err, ABC_ERR_NOMEM, "out of memory loading the tokenizer");
    tok->nfc = normalizer == 0;
    tok->kind = sp ? TOK_SENTENCEPIECE : TOK_BYTE_LEVEL;
    tok->bos_id = -1;
    st = load_vocab(tok, wf, err);
    if (st == ABC_OK) st = sp ? load_byte_fallback(tok, wf, err) : find_byte_tokens(tok, err);
    if (st == ABC_OK && sp) st = load_sp_chars(tok, wf, err);
    if (st == ABC_OK && sp) st = load_bos(tok, wf, err);
    if (st == ABC_OK) st = load_merges(tok, wf, err);
    if (st == ABC_OK) st = load_added(tok, wf, err);
    if (st != ABC_OK) {
        tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return ABC_OK;
}

/* ---- public API (abc.h) ---- */

abc_status abc_tokenize(const abc_model *model, const char *text, size_t len, int32_t *ids, size_t cap,
                        size_t *n_ids, abc_error *err) {
    clear_error(err);
    if (!model || (!text && len) || (!ids && cap) || !n_ids)
        return fail(err, ABC_ERR_INVALID_ARG, "abc_tokenize: NULL argument");
    *n_ids = 0;
    int_vec v = {0};
    abc_status st = tokenizer_encode(model_tokenizer(model), text, len, &v, err);
    if (st != ABC_OK) return st;
    *n_ids = v.len;
    if (cap && v.len) memcpy(ids, v.data, MIN(v.len, cap) * sizeof *ids);
    int_vec_free(&v);
    if (*n_ids > cap)
        return fail(err, ABC_ERR_INVALID_ARG, "abc_tokenize: %zu ids do not fit in a buffer of %zu", *n_ids, cap);
    return ABC_OK;
}

const char *abc_token_bytes(const abc_model *model, int32_t id, size_t *len) {
    if (!model) return NULL;
    return tokenizer_token_bytes(model_tokenizer(model), id, len);
}

static int32_t tokenizer_bos_id(const tokenizer *tok) { return tok ? tok->bos_id : -1; }
