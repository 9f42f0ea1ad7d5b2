/* bench_tokenizer — tokenizer throughput (MB/s) on 1 MB of English and 1 MB of Chinese text.
 *
 *   make build/bench_tokenizer && build/bench_tokenizer [-m MODEL.abc] [--file PATH]...
 *
 * MODEL defaults to build/tiny-vlm2vec.abc (any .abc file: they all carry the Qwen2 tokenizer).
 * The built-in texts are generated deterministically (pseudo-English from common words with
 * punctuation and numbers; Chinese sentences from common characters with full-width punctuation),
 * so runs are comparable; --file adds a real text file. Also times one 100 kB single-word pre-token.
 * Reports the best of 5 runs (one thread).
 */
#include "../abc.c"

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t rng_state = 20241122u;
static uint32_t rng(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static const char *const ENGLISH[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as", "I",
    "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "word", "but", "what", "some", "we",
    "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how", "said", "an", "each", "she",
    "which", "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would", "like",
    "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could", "go",
    "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water", "than", "call", "first",
    "who", "may", "down", "side", "been", "now", "find", "photograph", "embedding", "retrieval", "instruction",
    "astronaut", "holding", "wouldn't", "it's", "they're", "I'll", "we've", "Mr.", "Hugging", "Face", "tokenizer",
    "international", "representation", "understanding", "multimodal", "benchmark", "quickly", "beautiful"};
static const char *const PUNCT[] = {" ", " ", " ", " ", " ", " ", " ", " ", ", ", ". ", "; ", ": ", "? ", "! ", " (", ") ",
                                    " \"", "\" ", " - ", ".\n", ".\n\n"};

static const char CHINESE_CHARS[] =
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没"
    "日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点"
    "月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内"
    "加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放"
    "做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元"
    "社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空";
static const char *const CHINESE_PUNCT[] = {"，", "，", "，", "。", "。", "！", "？", "、", "；", "：", "“", "”", "（", "）", "\n"};

static char *make_english(size_t size, size_t *len) {
    char *t = malloc(size + 64);
    size_t n = 0;
    bool capital = true;
    while (n < size) {
        const char *w;
        char num[16];
        if (rng() % 40 == 0) {
            snprintf(num, sizeof num, "%u", rng() % 100000);
            w = num;
        } else {
            w = ENGLISH[rng() % (sizeof ENGLISH / sizeof ENGLISH[0])];
        }
        size_t wl = strlen(w);
        memcpy(t + n, w, wl);
        if (capital && t[n] >= 'a' && t[n] <= 'z') t[n] -= 32;
        n += wl;
        const char *p = PUNCT[rng() % (sizeof PUNCT / sizeof PUNCT[0])];
        capital = strchr(p, '.') || strchr(p, '?') || strchr(p, '!');
        memcpy(t + n, p, strlen(p));
        n += strlen(p);
    }
    *len = n;
    return t;
}

static char *make_chinese(size_t size, size_t *len) {
    char *t = malloc(size + 64);
    size_t n = 0, n_chars = (sizeof CHINESE_CHARS - 1) / 3;
    while (n < size) {
        for (uint32_t k = 2 + rng() % 14; k > 0; k--) {
            memcpy(t + n, CHINESE_CHARS + 3 * (rng() % n_chars), 3);
            n += 3;
        }
        if (rng() % 25 == 0) n += (size_t)sprintf(t + n, "%u", rng() % 3000);
        const char *p = CHINESE_PUNCT[rng() % (sizeof CHINESE_PUNCT / sizeof CHINESE_PUNCT[0])];
        memcpy(t + n, p, strlen(p));
        n += strlen(p);
    }
    *len = n;
    return t;
}

static char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int bench(const tokenizer *tok, const char *name, const char *text, size_t len) {
    int_vec ids = {0};
    abc_error err;
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        ids.len = 0;
        double t = now_s();
        if (tokenizer_encode(tok, text, len, &ids, &err) != ABC_OK) {
            fprintf(stderr, "%s: %s\n", name, err.message);
            int_vec_free(&ids);
            return 1;
        }
        t = now_s() - t;
        if (t < best) best = t;
    }
    printf("%-10s %8.2f MB  %8zu tokens  %7.2f ms  %7.2f MB/s  %6.2f Mtokens/s\n", name, len / 1e6, ids.len,
           best * 1e3, len / 1e6 / best, ids.len / 1e6 / best);
    int_vec_free(&ids);
    return 0;
}

int main(int argc, char **argv) {
    const char *model = "build/tiny-vlm2vec.abc";
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "-m")) model = argv[++i];
    weight_file wf;
    tokenizer *tok;
    abc_error err;
    if (weight_file_open(model, &wf, &err) != ABC_OK || tokenizer_load(&wf, &tok, &err) != ABC_OK) {
        fprintf(stderr, "%s: %s\n", model, err.message);
        return 1;
    }
    double t = now_s();
    tokenizer *tok2;
    if (tokenizer_load(&wf, &tok2, &err) == ABC_OK) tokenizer_free(tok2);
    printf("tokenizer load: %.2f ms\n", (now_s() - t) * 1e3);
    int rc = 0;
    size_t len;
    char *text = make_english(1000000, &len);
    rc |= bench(tok, "english", text, len);
    free(text);
    text = make_chinese(1000000, &len);
    rc |= bench(tok, "chinese", text, len);
    free(text);
    /* One 100 kB "word" (a single pre-token): BPE must stay O(n log n). */
    text = malloc(100000);
    for (size_t i = 0; i < 100000; i++) text[i] = (char)('a' + rng() % 26);
    rc |= bench(tok, "100kB-word", text, 100000);
    free(text);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--file")) {
            text = read_whole(argv[++i], &len);
            if (!text) {
                fprintf(stderr, "cannot read %s\n", argv[i]);
                rc = 1;
                continue;
            }
            rc |= bench(tok, argv[i], text, len);
            free(text);
        }
    tokenizer_free(tok);
    weight_file_close(&wf);
    return rc;
}
