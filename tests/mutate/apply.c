/* Applies one mutant to a file of the scratch tree: the exact text of FIND_FILE must occur exactly once in
 * TARGET and is replaced by the text of REPLACE_FILE (written to a temporary file, then renamed over
 * TARGET). Exit status: 0 applied, 3 snippet not found (the mutant is stale: the code changed), 4 snippet
 * found more than once (ambiguous: the mutant needs more context), 1 any other error.
 *     build/mutate_apply TARGET FIND_FILE REPLACE_FILE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* First occurrence of needle (nlen bytes) in hay (hlen bytes) at or after `from`, or NULL. */
static const char *find(const char *hay, size_t hlen, size_t from, const char *needle, size_t nlen) {
    for (size_t i = from; nlen && i + nlen <= hlen; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, nlen)) return hay + i;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s TARGET FIND_FILE REPLACE_FILE\n", argv[0]);
        return 1;
    }
    size_t tlen, flen, rlen;
    char *text = slurp(argv[1], &tlen), *from = slurp(argv[2], &flen), *to = slurp(argv[3], &rlen);
    if (!text || !from || !to || flen == 0) {
        fprintf(stderr, "mutate_apply: cannot read %s, %s or %s (or the snippet is empty)\n", argv[1], argv[2], argv[3]);
        return 1;
    }
    const char *hit = find(text, tlen, 0, from, flen);
    if (!hit) return 3;
    if (find(text, tlen, (size_t)(hit - text) + 1, from, flen)) return 4;
    size_t tmp_len = strlen(argv[1]) + 16;
    char *tmp = malloc(tmp_len);
    snprintf(tmp, tmp_len, "%s.mutant.tmp", argv[1]);
    FILE *out = fopen(tmp, "wb");
    size_t head = (size_t)(hit - text), tail = tlen - head - flen;
    int ok = out && fwrite(text, 1, head, out) == head && fwrite(to, 1, rlen, out) == rlen &&
             fwrite(hit + flen, 1, tail, out) == tail;
    if (out && fclose(out) != 0) ok = 0;
    if (!ok || rename(tmp, argv[1]) != 0) {
        fprintf(stderr, "mutate_apply: cannot write %s\n", argv[1]);
        remove(tmp);
        return 1;
    }
    free(tmp);
    free(text), free(from), free(to);
    return 0;
}
