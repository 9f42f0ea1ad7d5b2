/* serve_http.c — HTTP/1.1 request parsing (RFC 9112) for `abc serve`, strict on everything that could
 * desynchronise a keep-alive connection (request smuggling): bare LF, obs-fold, a Content-Length that
 * is not plain digits or is repeated with another value, Transfer-Encoding other than chunked, or both
 * together are refused. The parser resumes where it stopped, so a body arriving in many reads is
 * scanned once. */
#include "serve_http.h"

#include <string.h>

void http_parser_init(http_request *r, const http_limits *lim) {
    memset(r, 0, sizeof *r);
    r->lim = *lim;
}

static int http_error(http_request *r, int status, const char *msg) {
    r->status = status;
    r->error = msg;
    return HTTP_ERROR;
}

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool ieq(const char *a, size_t n, const char *lit) {
    size_t m = strlen(lit);
    if (n != m) return false;
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lit[i]) return false;
    return true;
}

/* The next line of buf[p..end): returns its length without CRLF and sets *next; -1 for a bare LF. */
static long line_at(const char *buf, size_t p, size_t end, size_t *next) {
    const char *nl = memchr(buf + p, '\n', end - p);
    if (!nl) return -2;
    size_t e = (size_t)(nl - buf);
    if (e == p || buf[e - 1] != '\r') return -1;
    *next = e + 1;
    return (long)(e - 1 - p);
}

/* Connection: a comma-separated list of tokens. */
static void parse_connection(http_request *r, const char *v, size_t n, bool *close, bool *keep) {
    size_t i = 0;
    (void)r;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') i++;
        if (ieq(v + s, i - s, "close")) *close = true;
        if (ieq(v + s, i - s, "keep-alive")) *keep = true;
    }
}

static int parse_head(http_request *r, const char *buf, size_t head_len) {
    size_t p = 0, next = 0;
    long n = line_at(buf, p, head_len, &next);
    if (n < 0) return http_error(r, 400, "request line must end with CRLF");
    const char *line = buf, *end = buf + n;
    const char *sp = memchr(line, ' ', (size_t)n);
    if (!sp || sp == line) return http_error(r, 400, "malformed request line");
    if ((size_t)(sp - line) >= sizeof r->method) return http_error(r, 501, "method not implemented");
    for (const char *c = line; c < sp; c++)
        if (!is_tchar((unsigned char)*c)) return http_error(r, 400, "malformed method");
    memcpy(r->method, line, (size_t)(sp - line));
    r->method[sp - line] = 0;
    const char *target = sp + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (!sp2) return http_error(r, 400, "malformed request line");
    size_t tlen = (size_t)(sp2 - target);
    if (tlen == 0 || target[0] != '/') return http_error(r, 400, "request target must be an absolute path");
    if (tlen >= sizeof r->path) return http_error(r, 414, "request target too long");
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c >= 0x7f) return http_error(r, 400, "invalid character in request target");
    }
    memcpy(r->path, target, tlen);
    r->path[tlen] = 0;
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(end - ver);
    if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[6] != '.' || ver[5] < '0' || ver[5] > '9' ||
        ver[7] < '0' || ver[7] > '9')
        return http_error(r, 400, "malformed HTTP version");
    if (ver[5] != '1') return http_error(r, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->minor = ver[7] - '0';

    bool close = false, keep = false, have_te = false;
    size_t count = 0;
    for (p = next; p < head_len;) {
        n = line_at(buf, p, head_len, &next);
        if (n < 0) return http_error(r, 400, "header line must end with CRLF");
        if (n == 0) break; /* the blank line */
        if (++count > r->lim.max_headers) return http_error(r, 431, "too many header fields");
        const char *h = buf + p, *he = h + n;
        if (*h == ' ' || *h == '\t') return http_error(r, 400, "obsolete header line folding");
        const char *colon = h;
        while (colon < he && is_tchar((unsigned char)*colon)) colon++;
        if (colon == h || colon == he || *colon != ':') return http_error(r, 400, "malformed header field");
        size_t name_len = (size_t)(colon - h);
        const char *v = colon + 1;
        while (v < he && (*v == ' ' || *v == '\t')) v++;
        const char *ve = he;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *c = v; c < ve; c++) {
            unsigned char u = (unsigned char)*c;
            if ((u < 0x20 && u != '\t') || u == 0x7f) return http_error(r, 400, "control character in header value");
        }
        size_t vn = (size_t)(ve - v);
        if (ieq(h, name_len, "content-length")) {
            if (vn == 0 || vn > 18) return http_error(r, 400, "invalid Content-Length");
            uint64_t cl = 0;
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9') return http_error(r, 400, "invalid Content-Length");
                cl = cl * 10 + (uint64_t)(v[i] - '0');
            }
            if (r->has_length && cl != r->content_length) return http_error(r, 400, "conflicting Content-Length");
            r->has_length = true;
            r->content_length = cl;
        } else if (ieq(h, name_len, "transfer-encoding")) {
            if (have_te) return http_error(r, 400, "repeated Transfer-Encoding");
            have_te = true;
            if (!ieq(v, vn, "chunked")) return http_error(r, 501, "only the chunked transfer encoding is supported");
            r->chunked = true;
        } else if (ieq(h, name_len, "connection")) {
            parse_connection(r, v, vn, &close, &keep);
        } else if (ieq(h, name_len, "authorization")) {
            if (r->auth_present) return http_error(r, 400, "repeated Authorization");
            r->auth_present = true;
            if (vn >= sizeof r->authorization) {
                r->auth_too_long = true;
            } else {
                memcpy(r->authorization, v, vn);
                r->authorization[vn] = 0;
            }
        } else if (ieq(h, name_len, "expect")) {
            if (!ieq(v, vn, "100-continue")) return http_error(r, 417, "unsupported Expect");
            r->expect_continue = true;
        }
        p = next;
    }
    if (r->chunked && r->has_length) return http_error(r, 400, "both Content-Length and Transfer-Encoding");
    r->keep_alive = r->minor >= 1 ? !close : (keep && !close);
    if (r->has_length && r->content_length > r->lim.max_body) return http_error(r, 413, "request body too large");
    return 0;
}

static int chunk_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

enum { MAX_CHUNK_LINE = 1024 };

static int parse_chunked(http_request *r, char *buf, size_t len) {
    for (;;) {
        size_t next;
        long n;
        switch (r->cstate) {
        case 0: { /* chunk-size [; ext] CRLF */
            n = line_at(buf, r->pos, len, &next);
            if (n == -2) {
                if (len - r->pos > MAX_CHUNK_LINE) return http_error(r, 400, "chunk size line too long");
                return HTTP_NEED_MORE;
            }
            if (n < 0) return http_error(r, 400, "chunk size line must end with CRLF");
            if (n > MAX_CHUNK_LINE) return http_error(r, 400, "chunk size line too long");
            const char *s = buf + r->pos, *e = s + n;
            uint64_t size = 0;
            int digits = 0;
            while (s < e && chunk_hexval(*s) >= 0) {
                if (++digits > 15) return http_error(r, 413, "chunk too large");
                size = size << 4 | (uint64_t)chunk_hexval(*s++);
            }
            if (digits == 0) return http_error(r, 400, "invalid chunk size");
            while (s < e && (*s == ' ' || *s == '\t')) s++;
            if (s < e && *s != ';') return http_error(r, 400, "invalid chunk size");
            for (; s < e; s++) {
                unsigned char u = (unsigned char)*s;
                if ((u < 0x20 && u != '\t') || u == 0x7f) return http_error(r, 400, "control character in chunk extension");
            }
            if (size > r->lim.max_body - r->body_len) return http_error(r, 413, "request body too large");
            r->pos = next;
            if (size == 0) {
                r->cstate = 3;
            } else {
                r->chunk_left = (size_t)size;
                r->cstate = 1;
            }
            break;
        }
        case 1: { /* data, moved down to follow the data decoded so far (never past pos) */
            size_t take = len - r->pos < r->chunk_left ? len - r->pos : r->chunk_left;
            memmove(buf + r->body_off + r->body_len, buf + r->pos, take);
            r->body_len += take;
            r->pos += take;
            r->chunk_left -= take;
            if (r->chunk_left) return HTTP_NEED_MORE;
            r->cstate = 2;
            break;
        }
        case 2:
            if (len - r->pos < 2) return HTTP_NEED_MORE;
            if (buf[r->pos] != '\r' || buf[r->pos + 1] != '\n') return http_error(r, 400, "chunk data not followed by CRLF");
            r->pos += 2;
            r->cstate = 0;
            break;
        default: { /* trailer fields, ignored, up to the blank line */
            /* the size limit is checked before the syntax, on the bytes up to the first LF, so that the
             * outcome does not depend on how the bytes arrive */
            const char *nl = memchr(buf + r->pos, '\n', len - r->pos);
            size_t have = nl ? (size_t)(nl - (buf + r->pos)) + 1 : len - r->pos;
            if (r->trailer_bytes + have > r->lim.max_header_bytes) return http_error(r, 431, "trailers too large");
            if (!nl) return HTTP_NEED_MORE;
            n = line_at(buf, r->pos, len, &next);
            if (n < 0) return http_error(r, 400, "trailer line must end with CRLF");
            r->pos = next;
            if (n == 0) {
                r->consumed = r->pos;
                r->stage = 3;
                return HTTP_DONE;
            }
            r->trailer_bytes += have;
            break;
        }
        }
    }
}

int http_parse(http_request *r, char *buf, size_t len) {
    if (r->stage == 3) return HTTP_DONE;
    if (r->stage == 0) {
        /* the head ends at the first empty line: "\n\r\n" (or "\n\n", refused below as a bare LF) */
        size_t i = r->scan, end = 0;
        for (; i < len; i++) {
            if (buf[i] != '\n') continue;
            if (i + 1 < len && buf[i + 1] == '\n') { end = i + 2; break; }
            if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') { end = i + 3; break; }
        }
        if (!end) {
            if (len > r->lim.max_header_bytes) return http_error(r, 431, "request head too large");
            r->scan = len > 2 ? len - 2 : 0;
            return HTTP_NEED_MORE;
        }
        if (end > r->lim.max_header_bytes) return http_error(r, 431, "request head too large");
        r->head_len = end;
        if (parse_head(r, buf, end) < 0) return HTTP_ERROR;
        r->body_off = end;
        r->pos = end;
        r->stage = r->chunked ? 2 : 1;
    }
    if (r->stage == 1) {
        uint64_t need = r->head_len + r->content_length;
        if (len < need) return HTTP_NEED_MORE;
        r->body_len = (size_t)r->content_length;
        r->consumed = (size_t)need;
        r->stage = 3;
        return HTTP_DONE;
    }
    return parse_chunked(r, buf, len);
}

/* ---- base64 ---- */

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

size_t base64_decode(const char *in, size_t n, uint8_t *out) {
    const size_t bad = (size_t)-1;
    size_t pad = 0;
    while (pad < 2 && n > 0 && in[n - 1] == '=') n--, pad++;
    if (pad && (n + pad) % 4 != 0) return bad; /* padding only completes a quantum */
    if (n % 4 == 1) return bad;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0) return bad;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return bad; /* non-zero leftover bits: not a canonical encoding */
    return o;
}

size_t base64_encode(const uint8_t *in, size_t n, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

bool ct_equal(const char *a, size_t na, const char *b, size_t nb) {
    /* walks the longer length and folds the length difference in, so the loop exits at the same
     * point for every candidate of a given length */
    size_t n = na > nb ? na : nb;
    unsigned diff = (unsigned)(na != nb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < na ? (unsigned char)a[i] : 0;
        unsigned char y = i < nb ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}
