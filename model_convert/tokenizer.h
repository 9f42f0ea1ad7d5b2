/* Tokenizer conversion: tokenizer.json (Qwen2 byte-level BPE or Llama/Phi-3 SentencePiece BPE,
 * detected from the file) → the tokenizer tensors and
 * `tokenizer.*` metadata of a .abc file (FORMAT.md, "Tokenizer tensors"). */
#ifndef ABC_CONVERT_TOKENIZER_H
#define ABC_CONVERT_TOKENIZER_H
#include <stddef.h>

#include "writer.h"

/* Returns 0, or -1 with a message in err naming the unsupported or malformed part. */
int tokenizer_convert(const char *tokenizer_json_path, abc_writer *w, char *err, size_t errsize);

#endif
