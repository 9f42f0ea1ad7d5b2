/* serve_api.c — POST /v1/embeddings request bodies → abc inputs (see serve_api.h). */
#define _XOPEN_SOURCE 700
#include "serve_api.h"
#include "serve_http.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void api_set_error(api_error *e, int status, const char *type, const char *param, const char *code,
                   const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

#define BAD(e, param, ...) (api_set_error((e), 400, "invalid_request_error", (param), NULL, __VA_ARGS__), false)

void api_request_free(api_request *req) {
    for (size_t i = 0; i < req->n_items; i++) free(req->items[i].image);
    free(req->items);
    for (size_t i = 0; i < req->n_owned; i++) free(req->owned_texts[i]);
    free(req->owned_texts);
    json_free(req->doc);
    memset(req, 0, sizeof *req);
}

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* "data:[<mediatype>][;params];base64,<data>" */
static bool decode_data_url(const char *url, size_t len, api_item *it, api_error *e) {
    const char *meta = url + 5, *end = url + len;
    const char *comma = memchr(meta, ',', (size_t)(end - meta));
    if (!comma) return BAD(e, "messages", "malformed data: URL (no ',')");
    size_t mlen = (size_t)(comma - meta);
    if (mlen < 7 || memcmp(comma - 7, ";base64", 7) != 0)
        return BAD(e, "messages", "data: URL images must be base64-encoded (';base64,')");
    size_t type_len = mlen - 7;
    const char *semi = memchr(meta, ';', type_len);
    if (semi) type_len = (size_t)(semi - meta);
    if (type_len > 0 && !(type_len > 6 && memcmp(meta, "image/", 6) == 0) &&
        !(type_len == 24 && memcmp(meta, "application/octet-stream", 24) == 0))
        return BAD(e, "messages", "data: URL media type must be image/* (PNG, JPEG or PPM)");
    const char *b64 = comma + 1;
    size_t n = (size_t)(end - b64);
    if (n == 0) return BAD(e, "messages", "empty data: URL");
    uint8_t *buf = malloc(base64_decoded_max(n));
    if (!buf) {
        api_set_error(e, 503, "server_error", NULL, "out_of_memory", "out of memory decoding the image");
        return false;
    }
    size_t got = base64_decode(b64, n, buf);
    if (got == (size_t)-1 || got == 0) {
        free(buf);
        return BAD(e, "messages", "invalid base64 in data: URL");
    }
    it->image = buf;
    it->image_size = got;
    return true;
}

static int pct_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* file:///path or file://localhost/path, confined to cfg->allow_dir: the percent-decoded path may not
 * contain a ".." segment, and its realpath (symlinks resolved) must lie inside the directory. */
static bool read_file_url(const char *url, const api_config *cfg, api_item *it, api_error *e) {
    if (!cfg->allow_dir)
        return BAD(e, "messages", "file:// URLs are disabled (the server was started without --allow-local-files)");
    const char *p = url + 7;
    if (has_prefix(p, "localhost/")) p += 9;
    if (*p != '/') return BAD(e, "messages", "file:// URL must name an absolute path");
    size_t n = strlen(p);
    if (n >= PATH_MAX) return BAD(e, "messages", "file:// path too long");
    char path[PATH_MAX], real[PATH_MAX];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%') {
            int hi = i + 2 < n ? pct_hexval(p[i + 1]) : -1, lo = i + 2 < n ? pct_hexval(p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return BAD(e, "messages", "bad percent-escape in file:// URL");
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '?' || c == '#') {
            return BAD(e, "messages", "file:// URL may not have a query or fragment");
        }
        path[o++] = c;
    }
    path[o] = 0;
    for (const char *s = path; (s = strstr(s, "..")) != NULL; s += 2)
        if (s[-1] == '/' && (s[2] == '/' || s[2] == 0)) {
            api_set_error(e, 403, "permission_error", "messages", "path_not_allowed",
                          "file:// path may not contain '..'");
            return false;
        }
    if (!realpath(path, real)) {
        if (errno == ENOENT || errno == ENOTDIR) return BAD(e, "messages", "file:// image not found");
        return BAD(e, "messages", "file:// image cannot be resolved: %s", strerror(errno));
    }
    size_t dl = strlen(cfg->allow_dir);
    if (strncmp(real, cfg->allow_dir, dl) != 0 || (real[dl] != '/' && !(dl == 1 && cfg->allow_dir[0] == '/'))) {
        api_set_error(e, 403, "permission_error", "messages", "path_not_allowed",
                      "file:// path is outside the directory given to --allow-local-files");
        return false;
    }
    /* O_NOFOLLOW: the resolved path has no symlink left; one swapped in since is refused */
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0) return BAD(e, "messages", "file:// image cannot be opened: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return BAD(e, "messages", "file:// URL does not name a regular file");
    }
    if ((uint64_t)st.st_size > cfg->max_file_bytes || st.st_size == 0) {
        close(fd);
        if (st.st_size == 0) return BAD(e, "messages", "file:// image is empty");
        api_set_error(e, 413, "invalid_request_error", "messages", NULL, "file:// image larger than %zu bytes",
                      cfg->max_file_bytes);
        return false;
    }
    size_t size = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(size);
    if (!buf) {
        close(fd);
        api_set_error(e, 503, "server_error", NULL, "out_of_memory", "out of memory reading the image");
        return false;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        free(buf);
        return BAD(e, "messages", "file:// image could not be read completely");
    }
    it->image = buf;
    it->image_size = size;
    return true;
}

/* Request bodies are small, shallow documents: bounded so that a few MB cannot become GB of values. */
static json_limits serve_json_limits(void) {
    json_limits l = {32, 262144, 256};
    return l;
}

static bool load_image_url(const json_value *url, const api_config *cfg, api_item *it, api_error *e) {
    if (!url || url->type != JSON_STRING) return BAD(e, "messages", "image_url.url must be a string");
    if (it->image) return BAD(e, "messages", "one image per request is supported");
    if (strlen(url->string) != url->string_len) return BAD(e, "messages", "NUL character in image URL");
    if (has_prefix(url->string, "data:")) return decode_data_url(url->string, url->string_len, it, e);
    if (has_prefix(url->string, "file://")) return read_file_url(url->string, cfg, it, e);
    if (has_prefix(url->string, "http://") || has_prefix(url->string, "https://"))
        return BAD(e, "messages", "remote image URLs are not fetched: send the image inline as a data: URL");
    return BAD(e, "messages", "unsupported image URL scheme (use a data: URL)");
}

/* Appends `s` to the growing message text (parts are joined with a newline). */
static bool append_text(char **acc, size_t *acc_len, const json_value *s, api_error *e) {
    if (strlen(s->string) != s->string_len) return BAD(e, "messages", "NUL character in text");
    size_t extra = s->string_len + (*acc ? 1 : 0);
    char *grown = realloc(*acc, *acc_len + extra + 1);
    if (!grown) {
        api_set_error(e, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return false;
    }
    if (*acc) grown[(*acc_len)++] = '\n';
    memcpy(grown + *acc_len, s->string, s->string_len);
    *acc_len += s->string_len;
    grown[*acc_len] = 0;
    *acc = grown;
    return true;
}

/* vLLM's chat form: one conversation → one input (its image and its texts joined by newlines). */
static bool parse_messages(const json_value *msgs, const api_config *cfg, api_request *req, api_error *e) {
    if (msgs->type != JSON_ARRAY || msgs->n_items == 0) return BAD(e, "messages", "'messages' must be a non-empty array");
    api_item it = {0};
    char *text = NULL;
    size_t text_len = 0;
    bool ok = true;
    for (size_t m = 0; ok && m < msgs->n_items; m++) {
        const json_value *msg = &msgs->items[m];
        const json_value *role = json_get(msg, "role"), *content = json_get(msg, "content");
        if (msg->type != JSON_OBJECT || !role || role->type != JSON_STRING) {
            ok = BAD(e, "messages", "each message must be an object with a string 'role'");
            break;
        }
        if (strcmp(role->string, "user") != 0 && strcmp(role->string, "system") != 0 && strcmp(role->string, "assistant") != 0) {
            ok = BAD(e, "messages", "message role must be user, system or assistant");
            break;
        }
        if (!content || content->type == JSON_NULL) continue;
        if (content->type == JSON_STRING) {
            if (content->string_len) ok = append_text(&text, &text_len, content, e);
            continue;
        }
        if (content->type != JSON_ARRAY) {
            ok = BAD(e, "messages", "message content must be a string or an array of parts");
            break;
        }
        for (size_t k = 0; ok && k < content->n_items; k++) {
            const json_value *part = &content->items[k], *type = json_get(part, "type");
            if (!type || type->type != JSON_STRING) {
                ok = BAD(e, "messages", "each content part needs a string 'type'");
            } else if (strcmp(type->string, "text") == 0) {
                const json_value *t = json_get(part, "text");
                if (!t || t->type != JSON_STRING) ok = BAD(e, "messages", "text part needs a string 'text'");
                else if (t->string_len) ok = append_text(&text, &text_len, t, e);
            } else if (strcmp(type->string, "image_url") == 0) {
                const json_value *iu = json_get(part, "image_url");
                ok = load_image_url(iu && iu->type == JSON_OBJECT ? json_get(iu, "url") : iu, cfg, &it, e);
            } else {
                ok = BAD(e, "messages", "content part type must be 'text' or 'image_url'");
            }
        }
    }
    if (ok && !text && !it.image) ok = BAD(e, "messages", "the messages hold neither text nor an image");
    if (ok) {
        req->items = malloc(sizeof *req->items);
        req->owned_texts = malloc(sizeof *req->owned_texts);
        if (!req->items || !req->owned_texts) {
            api_set_error(e, 503, "server_error", NULL, "out_of_memory", "out of memory");
            ok = false;
        }
    }
    if (!ok) {
        free(it.image);
        free(text);
        return false;
    }
    it.text = text;
    if (text) req->owned_texts[req->n_owned++] = text;
    req->items[0] = it;
    req->n_items = 1;
    return true;
}

static bool parse_input(const json_value *input, const api_config *cfg, api_request *req, api_error *e) {
    size_t n = input->type == JSON_ARRAY ? input->n_items : 1;
    if (input->type != JSON_STRING && input->type != JSON_ARRAY)
        return BAD(e, "input", "'input' must be a string or an array of strings");
    if (n == 0) return BAD(e, "input", "'input' must not be an empty array");
    if (n > cfg->max_inputs) return BAD(e, "input", "%zu inputs in one request, more than the limit of %zu", n, cfg->max_inputs);
    req->items = calloc(n, sizeof *req->items);
    if (!req->items) {
        api_set_error(e, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const json_value *s = input->type == JSON_ARRAY ? &input->items[i] : input;
        if (s->type == JSON_NUMBER || s->type == JSON_ARRAY)
            return BAD(e, "input", "token-id inputs are not supported: send text");
        if (s->type != JSON_STRING) return BAD(e, "input", "input %zu is not a string", i);
        if (s->string_len == 0) return BAD(e, "input", "input %zu is an empty string", i);
        if (strlen(s->string) != s->string_len) return BAD(e, "input", "input %zu contains a NUL character", i);
        req->items[i].text = s->string;
        req->n_items = i + 1;
    }
    return true;
}

bool api_parse_embeddings(const char *body, size_t len, const api_config *cfg, api_request *req, api_error *e) {
    memset(req, 0, sizeof *req);
    memset(e, 0, sizeof *e);
    req->role = ABC_ROLE_AUTO;
    char msg[200];
    int too_many = 0;
    if (len == 0) return BAD(e, NULL, "empty request body: a JSON object is expected");
    json_limits lim = serve_json_limits();
    /* enough values for max_inputs strings plus the surrounding object */
    if (cfg->max_inputs + 64 > lim.max_values) lim.max_values = cfg->max_inputs + 64;
    req->doc = json_parse_limited(body, len, &lim, msg, sizeof msg, &too_many);
    if (!req->doc) {
        if (too_many) api_set_error(e, 413, "invalid_request_error", NULL, "json_too_large", "%s", msg);
        else (void)BAD(e, NULL, "invalid %s", msg); /* "invalid JSON: <what> at line L column C (byte B)" */
        return false;
    }
    const json_value *d = req->doc;
    bool ok = true;
    if (d->type != JSON_OBJECT) {
        ok = BAD(e, NULL, "the request body must be a JSON object");
        goto out;
    }
    const json_value *model = json_get(d, "model"), *input = json_get(d, "input"), *msgs = json_get(d, "messages");
    const json_value *fmt = json_get(d, "encoding_format"), *dims = json_get(d, "dimensions"), *role = json_get(d, "abc_role");
    const json_value *task = json_get(d, "task"), *multi = json_get(d, "return_multivector");
    if (model && model->type != JSON_NULL) {
        if (model->type != JSON_STRING) {
            ok = BAD(e, "model", "'model' must be a string");
            goto out;
        }
        if (cfg->model_name && strcmp(model->string, cfg->model_name) != 0) {
            api_set_error(e, 404, "invalid_request_error", "model", "model_not_found",
                          "the model '%.100s' does not exist (this server has '%.100s')", model->string, cfg->model_name);
            ok = false;
            goto out;
        }
    }
    if (fmt && fmt->type != JSON_NULL) {
        if (fmt->type == JSON_STRING && strcmp(fmt->string, "base64") == 0) req->base64 = true;
        else if (!(fmt->type == JSON_STRING && strcmp(fmt->string, "float") == 0)) {
            ok = BAD(e, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
            goto out;
        }
    }
    if (multi && multi->type != JSON_NULL) {
        if (multi->type != JSON_BOOL) {
            ok = BAD(e, "return_multivector", "'return_multivector' must be true or false");
            goto out;
        }
        req->multi_vector = multi->boolean;
    }
    if (req->multi_vector && cfg->multi_vector_dim == 0) {
        ok = BAD(e, "return_multivector", "this model (preset %s) has no multi-vector output: leave out "
                 "'return_multivector' for its single embedding", cfg->preset ? cfg->preset : "?");
        goto out;
    }
    if (!req->multi_vector && cfg->embedding_dim == 0) {
        ok = BAD(e, "return_multivector", "this model (preset %s) gives one vector per token and no single "
                 "embedding: send \"return_multivector\": true for its [T, %d] token vectors",
                 cfg->preset ? cfg->preset : "?", cfg->multi_vector_dim);
        goto out;
    }
    if (req->multi_vector && dims && dims->type != JSON_NULL) {
        ok = BAD(e, "dimensions", "'dimensions' applies to the single embedding, not to 'return_multivector'");
        goto out;
    }
    if (dims && dims->type != JSON_NULL) {
        /* range first: converting an out-of-range double to an integer is undefined */
        if (dims->type != JSON_NUMBER || !(dims->number >= 1 && dims->number <= cfg->embedding_dim) ||
            dims->number != (double)(int)dims->number) {
            ok = BAD(e, "dimensions", "'dimensions' must be an integer from 1 to %d", cfg->embedding_dim);
            goto out;
        }
        req->dimensions = (int)dims->number;
        bool listed = cfg->n_matryoshka == 0 || req->dimensions == cfg->embedding_dim;
        for (int k = 0; k < cfg->n_matryoshka && !listed; k++) listed = cfg->matryoshka[k] == req->dimensions;
        if (!listed) {
            char list[160] = "";
            for (int k = 0, at = 0; k < cfg->n_matryoshka && at < (int)sizeof list - 12; k++)
                at += snprintf(list + at, sizeof list - (size_t)at, "%d, ", cfg->matryoshka[k]);
            ok = BAD(e, "dimensions", "'dimensions' must be one of this model's Matryoshka dims: %s%d",
                     list, cfg->embedding_dim);
            goto out;
        }
    }
    if (task && task->type != JSON_NULL) {
        bool known = false;
        for (size_t k = 0; task->type == JSON_STRING && cfg->tasks && cfg->tasks[k] && !known; k++)
            known = strcmp(cfg->tasks[k], task->string) == 0;
        if (!known) {
            char list[160] = "";
            for (size_t k = 0, at = 0; cfg->tasks && cfg->tasks[k] && at < sizeof list - 1; k++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", k ? ", " : "", cfg->tasks[k]);
            ok = list[0] ? BAD(e, "task", "'task' must be one of this model's tasks: %s", list)
                         : BAD(e, "task", "this model has no task adapters: 'task' is not accepted");
            goto out;
        }
        req->task = task->string;
    }
    if (role && role->type != JSON_NULL) {
        if (role->type == JSON_STRING && strcmp(role->string, "query") == 0) req->role = ABC_ROLE_QUERY;
        else if (role->type == JSON_STRING && strcmp(role->string, "candidate") == 0) req->role = ABC_ROLE_CANDIDATE;
        else if (!(role->type == JSON_STRING && strcmp(role->string, "auto") == 0)) {
            ok = BAD(e, "abc_role", "'abc_role' must be \"query\", \"candidate\" or \"auto\"");
            goto out;
        }
    }
    /* the openai client's embeddings.create() always sends "input": with the chat shape in extra_body it
     * is left empty ("" or []), which stands for "none" */
    if (input && msgs && ((input->type == JSON_STRING ? input->string_len : input->type == JSON_ARRAY ? input->n_items : 1) == 0)) input = NULL;
    if (input && msgs) {
        ok = BAD(e, NULL, "give either 'input' or 'messages', not both");
    } else if (input) {
        ok = parse_input(input, cfg, req, e);
    } else if (msgs) {
        req->chat = true;
        ok = parse_messages(msgs, cfg, req, e);
    } else {
        ok = BAD(e, "input", "'input' (or 'messages') is required");
    }
out:
    if (!ok) api_request_free(req);
    return ok;
}
