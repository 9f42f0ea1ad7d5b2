/* Small helpers shared by the converter's parts: errors, files, JSON numbers, tensor names. */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cv_fail(char *err, size_t errsize, const char *fmt, ...) {
    if (err && errsize) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsize, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *cv_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *cv_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n > 0 && p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

int cv_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Config and header files are small; this limit keeps a wrong path (say, a model shard) from
 * being read whole into memory. */
#define MAX_TEXT_FILE (512u << 20)

char *cv_read_file(const char *path, size_t *len, char *err, size_t errsize) {
    FILE *f = fopen(path, "rb");
    if (!f) { cv_fail(err, errsize, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        cv_fail(err, errsize, "%s is not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > MAX_TEXT_FILE) {
        fclose(f);
        cv_fail(err, errsize, "%s is too large (%lld bytes) for a JSON file", path, (long long)st.st_size);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) { fclose(f); cv_fail(err, errsize, "out of memory reading %s", path); return NULL; }
    if (fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        cv_fail(err, errsize, "cannot read %s", path);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

json_value *cv_read_json(const char *path, char *err, size_t errsize) {
    size_t len;
    char *text = cv_read_file(path, &len, err, errsize);
    if (!text) return NULL;
    char jerr[256];
    json_value *v = json_parse(text, len, jerr, sizeof jerr);
    free(text);
    if (!v) cv_fail(err, errsize, "%s: %s", path, jerr);
    return v;
}

char *cv_normalize_name(const char *name) {
    static const char lm[] = "model.language_model.", vis[] = "model.visual.";
    const char *rest = name, *prefix = "";
    if (strncmp(name, lm, sizeof lm - 1) == 0) { rest = name + sizeof lm - 1; prefix = "model."; }
    else if (strncmp(name, vis, sizeof vis - 1) == 0) { rest = name + sizeof vis - 1; prefix = "visual."; }
    size_t a = strlen(prefix), b = strlen(rest);
    char *out = malloc(a + b + 1);
    if (!out) return NULL;
    memcpy(out, prefix, a);
    memcpy(out + a, rest, b + 1);
    return out;
}

int cv_json_int(const json_value *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!v || v->type != JSON_NUMBER) return -1;
    double d = v->number;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

int cv_online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}
