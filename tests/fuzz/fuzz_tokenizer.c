/* Fuzz target: both tokenizers (Qwen2 byte-level BPE with NFC, from build/tiny-abc.abc; Llama/Phi-3
 * SentencePiece BPE, from tests/fixtures/phi35v-tiny/tokenizer.abc). Input byte 0 picks the tokenizer
 * (bit 0) and a token limit (bits 1..7; 0: none); the rest is the text. Checked: every id is in the
 * vocabulary; Qwen2 on NFC text without added tokens gives back the text's bytes; the limited encoding
 * agrees with the unlimited one (same ids when it fits, ABC_ERR_TOO_LARGE exactly when it does not). */
#include "abc.c"
#include "tests/fuzz/fuzz_util.h"

static weight_file wf[2];
static tokenizer *tok[2];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *qwen = getenv("ABC_FUZZ_QWEN_MODEL");
    const char *paths[2] = {qwen ? qwen : "build/tiny-abc.abc", "tests/fixtures/phi35v-tiny/tokenizer.abc"};
    for (int i = 0; i < 2; i++) {
        abc_error err;
        if (weight_file_open(paths[i], &wf[i], &err) != ABC_OK || tokenizer_load(&wf[i], &tok[i], &err) != ABC_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s: %s (run from the repository root after `make build/tiny-abc.abc`)\n",
                    paths[i], err.message);
            exit(2);
        }
    }
    return 0;
}

static bool has_added_text(const tokenizer *t, const uint8_t *s, size_t n) {
    const added_token *a;
    return find_added_token(t, s, n, 0, &a) < n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const tokenizer *t = tok[data[0] & 1];
    const size_t limit = data[0] >> 1;
    const char *text = (const char *)data + 1;
    const size_t n = size - 1;
    int_vec all = {0}, lim = {0};
    abc_error err;
    abc_status st = tokenizer_encode(t, text, n, &all, &err);
    if (st == ABC_OK) {
        for (size_t i = 0; i < all.len; i++)
            FUZZ_ASSERT(all.data[i] >= 0 && all.data[i] < t->n_vocab, "id %d out of range", all.data[i]);
        if (t->kind == TOK_BYTE_LEVEL && nfc_quick_check((const uint8_t *)text, n) &&
            !has_added_text(t, (const uint8_t *)text, n)) {
            size_t at = 0;
            for (size_t i = 0; i < all.len; i++) {
                size_t len;
                const char *b = tokenizer_token_bytes(t, all.data[i], &len);
                FUZZ_ASSERT(b && at + len <= n && !memcmp(text + at, b, len), "token %zu does not give back the text", i);
                at += len;
            }
            FUZZ_ASSERT(at == n, "the tokens cover %zu of %zu bytes", at, n);
        }
    } else {
        FUZZ_ASSERT(st == ABC_ERR_UTF8 || st == ABC_ERR_TOO_LARGE, "status %d: %s", (int)st, err.message);
    }
    if (limit) {
        abc_status st2 = tokenizer_encode_max(t, text, n, limit, &lim, &err);
        if (st != ABC_OK) {
            FUZZ_ASSERT(st2 == st, "limited status %d, unlimited %d", (int)st2, (int)st);
        } else if (all.len <= limit) {
            FUZZ_ASSERT(st2 == ABC_OK && lim.len == all.len && (!all.len || !memcmp(lim.data, all.data, all.len * sizeof *all.data)),
                        "%zu ids fit the limit %zu but the limited encoding differs (status %d)", all.len, limit, (int)st2);
        } else {
            FUZZ_ASSERT(st2 == ABC_ERR_TOO_LARGE && lim.len == 0, "%zu ids over the limit %zu gave status %d", all.len,
                        limit, (int)st2);
        }
    }
    int_vec_free(&all);
    int_vec_free(&lim);
    return 0;
}
