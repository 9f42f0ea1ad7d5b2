/* common.h — helpers shared by the collection commands of the `abc` command line (batch embedding,
 * search, eval): error reporting in main.c's format, option parsing, JSON output, whole-file input,
 * and the parallel embedding scheduler. */
#ifndef ABC_CLI_COMMON_H
#define ABC_CLI_COMMON_H

#include "abc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILED = 1, CLI_EXIT_USAGE = 2 };

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* "abc: usage error: ..." on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* "abc: error: <status string>: <message>" on stderr; returns CLI_EXIT_FAILED. */
int cli_report(abc_status status, const char *fmt, ...) CLI_PRINTF(2, 3);

typedef struct {
    int argc;
    char **argv;
    int i;     /* the argument being looked at */
    bool bad;  /* a usage error was reported */
} cli_args;

/* Option `name` (or `alias`) with a value, as "--name VALUE" or "--name=VALUE". */
bool cli_take(cli_args *c, const char *name, const char *alias, const char **value);
bool cli_parse_long(const char *s, long lo, long hi, long *out);
/* "query", "candidate" or "auto". */
bool cli_parse_role(const char *s, abc_role *role);

/* Reads a whole file ("-": standard input) into a NUL-terminated buffer. */
int cli_read_file(const char *path, char **data, size_t *size, char *err, size_t errlen);
/* Splits `data` into lines (LF or CRLF; a final line without newline counts, the empty tail after the
 * last newline does not). The lines point into `data`, whose newlines are overwritten with NULs. */
int cli_split_lines(char *data, size_t size, char ***lines, size_t **lens, size_t *n);

/* Writes `s` (n bytes, valid UTF-8 expected) as a JSON string with quotes. */
void cli_json_string(FILE *f, const char *s, size_t n);
/* Writes a float so that it reads back to the same float32 (%.9g), NaN/inf as null. */
void cli_json_float(FILE *f, float v);

/* Joins a relative `path` to the folder `dir` (NULL or "": path itself). malloc'ed, NULL on OOM. */
char *cli_resolve_path(const char *dir, const char *path);
/* The folder part of `path` ("" when none). malloc'ed. */
char *cli_dirname(const char *path);

/* Writes `size` bytes to `path` via a temporary file and rename(), so `path` is complete or absent. */
int cli_write_file_atomic(const char *path, const void *data, size_t size, char *err, size_t errlen);

double cli_now(void); /* monotonic seconds */

/* ---- embedding many inputs with all cores ----
 * Inputs with an image are embedded one at a time with all `threads` inside each embedding (the vision
 * tower and long sequences parallelise well); text-only inputs, which are short, go to `threads`
 * workers of one thread each, CLI_TEXT_CHUNK at a time through abc_embed_batch (which packs them into
 * shared decoder passes). Results do not depend on the thread count or the chunks, so the split
 * changes only the speed. `done` is called from worker threads, serialised under a lock, once
 * per finished input (status and the library's message); returning false stops the run (inputs
 * not yet started are left alone). */
typedef bool (*cli_done_fn)(void *user, size_t index, abc_status st, const char *message);
#define CLI_TEXT_CHUNK 64
typedef void (*cli_start_fn)(void *user, size_t index);

typedef struct {
    const abc_model *model;
    int threads;                 /* 1..1024 (0: online CPUs) */
    const abc_input *inputs;     /* all inputs */
    const size_t *todo;          /* the indices to embed */
    size_t n_todo;
    float *out;                  /* row i at out + i·dim, or NULL: rows go only to `store` */
    bool (*store)(void *user, size_t index, const float *row, char *err, size_t errlen); /* optional */
    cli_start_fn start;          /* optional, serialised */
    cli_done_fn done;            /* optional, serialised */
    void *user;
} cli_embed_job;

/* Returns CLI_EXIT_OK, or reports (context creation, storage failures) and returns CLI_EXIT_FAILED. */
int cli_embed_many(const cli_embed_job *job);

/* The embed subcommands living outside main.c. */
int cmd_embed_batch(int argc, char **argv);
int cmd_search(int argc, char **argv);
/* Multi-vector indexes (search.c): the offsets file of OUT.npy, and MaxSim of a query's token vectors. */
int cli_read_offsets(const char *path, size_t n_rows, int64_t **offsets, size_t *n_docs);
float cli_maxsim(const float *query, size_t nq, const float *rows, size_t n, size_t dim);
int cmd_eval(int argc, char **argv);

/* OUT.npy -> OUT<suffix> (OUT.meta.json, OUT.ids, ...): a new string, NULL when out of memory. */
char *cli_companion_path(const char *npy_path, const char *suffix);

/* --dim N of search and eval: a Matryoshka width the model allows (reported as a usage error if not). */
int cli_check_dim(const abc_model *model, const char *model_path, long dim);
/* OUT.meta.json next to an index OUT.npy (abc embed --batch): the preset, whether the rows are token
 * vectors, and the width ("dim") and task the rows were embedded with ("mixed" where rows differ; task
 * null for a file without task adapters). Written atomically; returns 0 or fills err. */
int cli_write_index_meta(const char *index_path, const abc_model *model, const abc_input *inputs, size_t n,
                         bool multi, char *err, size_t errlen);
/* Before a query embedded with `task` (NULL: the default) and `dim` (0: full) is compared with the index:
 * refuses (reported, CLI_EXIT_FAILED) an index whose OUT.meta.json records another dim, task or preset.
 * An index without one (made otherwise) passes, with *recorded false. */
int cli_check_index_meta(const char *index_path, const abc_model *model, const char *task, int dim, bool multi,
                         bool *recorded);

#endif
