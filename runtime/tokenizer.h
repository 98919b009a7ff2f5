/* tokenizer.h — text to token ids and back, for every model family qilin runs.
 *
 * One pipeline, filled in by whichever file a model ships:
 *
 *   text ─▶ added/special tokens matched first (never split)
 *        ─▶ normalizer (NFC, SentencePiece's "▁" for spaces, ...)
 *        ─▶ pre-tokenizer (the model's split regexes, PCRE2; ByteLevel, Metaspace, Digits)
 *        ─▶ BPE inside each piece (HF merge ranks, tiktoken byte ranks, or byte fallback)
 *        ─▶ ids, with BOS/EOS added by the post-processor rules when asked.
 *
 * Sources, tried in this order by qilin_tokenizer_load(dir):
 *   tokenizer.json                     Hugging Face `tokenizers` (Qwen, DeepSeek, Llama 3,
 *                                      GPT-NeoX, Mistral/Llama 2 sentencepiece-style BPE)
 *   vocab.json + merges.txt            GPT-2/Qwen2 byte-level BPE without tokenizer.json
 *   tiktoken.model / tokenizer.model   tiktoken ranks (Kimi K2, Llama 3 original/)
 *   a single *.gguf                    its tokenizer.ggml.* keys and tokenizer.chat_template
 * plus tokenizer_config.json next to them for added tokens, BOS/EOS and
 * add_bos_token. qilin_tokenizer_load_gguf reads tokenizer.ggml.* metadata.
 *
 * Ids are identical to Hugging Face `tokenizers` (tokenizer.json, vocab+merges)
 * and to the `tiktoken` package (tiktoken files); tests/test_tokenizer*.cpp
 * check that on the real files. Decoding is byte-exact: decode(encode(x)) == x
 * for any input the model's normalizer leaves unchanged, including invalid
 * UTF-8 on byte-level models (HF would print U+FFFD there).
 *
 * A loaded tokenizer is immutable: encode/decode may run concurrently on one
 * instance. Errors: QILIN_ERR_IO (file; a FIFO, directory or device in a
 * file's place is refused at once, see host/fileio.h), QILIN_ERR_FORMAT
 * (malformed, message names the file and the JSON key or line),
 * QILIN_ERR_UNSUPPORTED (a normalizer/pre-tokenizer/model type qilin does not
 * implement, named).
 *
 * Bounds (what a hostile file can cost): no token id may reach the number of
 * entries the loaded files list (a vocabulary has no gaps), checked before the
 * per-id arrays grow; the normalizers may grow a text to at most 32x its
 * length + 4096 bytes (chained Replace steps), else encoding fails naming the
 * step. */
#ifndef QILIN_RUNTIME_TOKENIZER_H
#define QILIN_RUNTIME_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_tokenizer qilin_tokenizer;
struct gguf_file;

/* path: a model directory, a tokenizer.json / tiktoken file, or a .gguf file. */
qilin_status qilin_tokenizer_load(const char *path, qilin_tokenizer **out);
/* From an open GGUF's tokenizer.ggml.* keys (host/gguf.h); messages name its path. */
qilin_status qilin_tokenizer_load_gguf(const struct gguf_file *g, qilin_tokenizer **out);
void qilin_tokenizer_free(qilin_tokenizer *t); /* NULL does nothing */

/* Flags for qilin_tokenizer_encode. */
enum {
    /* Add what the model adds around a single text: BOS (tokenizer.json
     * post_processor, or add_bos_token/add_eos_token in tokenizer_config.json). */
    QILIN_ENCODE_ADD_SPECIAL = 1u << 0,
    /* Match added/special tokens in the text ("<|im_start|>" -> one id), as HF
     * does by default. Without it they are plain text (tiktoken's disallowed
     * specials, llama.cpp's parse_special=false). */
    QILIN_ENCODE_PARSE_SPECIAL = 1u << 1,
};

/* Growable id buffer, owned by the caller: {0} to start, qilin_ids_free when done. */
typedef struct qilin_ids {
    int32_t *ids;
    size_t n, cap;
} qilin_ids;
void qilin_ids_free(qilin_ids *v);
qilin_status qilin_ids_push(qilin_ids *v, int32_t id); /* appends one id (QILIN_ERR_OUT_OF_MEMORY) */

/* Appends the ids of text[0..len) to *out (text need not be NUL-terminated
 * and may be invalid UTF-8). */
qilin_status qilin_tokenizer_encode(const qilin_tokenizer *t, const char *text, size_t len, unsigned flags,
                                    qilin_ids *out);

/* Flags for decoding. */
enum {
    QILIN_DECODE_SKIP_SPECIAL = 1u << 0, /* drop special tokens (BOS, <|im_end|>, ...) */
};

/* Bytes of ids[0..n) as the model's decoder joins them (byte-level map
 * reversed, "▁" -> " ", <0xNN> byte pieces, the leading space SentencePiece
 * strips). *text is malloc'd and NUL-terminated; *len excludes the NUL. */
qilin_status qilin_tokenizer_decode(const qilin_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                                    char **text, size_t *len);

/* Streaming decode for generation: push one id at a time, get back the text
 * that is now complete. A token that ends inside a multi-byte UTF-8 character
 * is held back until the character completes (or becomes impossible, then the
 * bytes are released as they are).
 *
 * Padded vocabularies: most releases (Qwen2.5, DeepSeek-V3, ...) pad the
 * embedding and lm_head past the tokenizer's last id, so a model can sample an
 * id the tokenizer does not have. As transformers does, such ids decode to
 * empty text: after qilin_detokenizer_set_model_vocab(d, V), ids in
 * [qilin_tokenizer_vocab_size(t), V) give no bytes; ids >= V (or < 0) remain an
 * error. The padding ids are NOT masked from sampling (transformers does not
 * mask them either); a trained model gives them negligible probability. */
typedef struct qilin_detokenizer {
    const qilin_tokenizer *t;
    unsigned flags;
    int32_t model_vocab;  /* the model's vocabulary (embedding rows); 0 = the tokenizer's */
    bool started;         /* a token has been emitted (SentencePiece strips the first space) */
    size_t n_pending;     /* bytes held back */
    char pending[8];
} qilin_detokenizer;
void qilin_detokenizer_init(qilin_detokenizer *d, const qilin_tokenizer *t, unsigned flags);
/* The model's vocabulary size (config vocab_size); ids past the tokenizer and below it decode to "". */
void qilin_detokenizer_set_model_vocab(qilin_detokenizer *d, int32_t model_vocab);
/* Writes the newly completed bytes to out (at most cap; cap >= 64 +
 * qilin_tokenizer_max_token_bytes(t) always suffices) and their count to *n. */
qilin_status qilin_detokenizer_push(qilin_detokenizer *d, int32_t id, char *out, size_t cap, size_t *n);
/* Releases whatever is held back (end of generation). */
size_t qilin_detokenizer_flush(qilin_detokenizer *d, char *out, size_t cap);

/* Vocabulary. */
int qilin_tokenizer_vocab_size(const qilin_tokenizer *t);      /* largest id + 1 */
size_t qilin_tokenizer_max_token_bytes(const qilin_tokenizer *t);
/* Id of the token whose text is exactly `text` (vocab or added token,
 * e.g. "<|im_end|>"); -1 when there is none. */
int32_t qilin_tokenizer_token_id(const qilin_tokenizer *t, const char *text);
/* The token's text as the vocabulary spells it ("Ġthe", "▁the", "<|eot_id|>");
 * NULL for an id outside the vocabulary. */
const char *qilin_tokenizer_token_text(const qilin_tokenizer *t, int32_t id);
bool qilin_tokenizer_is_special(const qilin_tokenizer *t, int32_t id);

/* Special ids; -1 where the model has none. eos is the tokenizer's EOS
 * (tokenizer_config eos_token or GGUF eos_token_id). */
int32_t qilin_tokenizer_bos_id(const qilin_tokenizer *t);
int32_t qilin_tokenizer_eos_id(const qilin_tokenizer *t);
/* tokenizer_config.json's bos_token / eos_token strings ("" when absent), for chat templates. */
const char *qilin_tokenizer_bos_text(const qilin_tokenizer *t);
const char *qilin_tokenizer_eos_text(const qilin_tokenizer *t);
/* tokenizer_config.json's chat_template (or tokenizer.chat_template in GGUF,
 * or chat_template.jinja beside tokenizer.json); NULL when none. */
const char *qilin_tokenizer_chat_template(const qilin_tokenizer *t);
/* One line describing the tokenizer: "byte-level BPE (tokenizer.json), 151665 tokens, qwen2 split". */
const char *qilin_tokenizer_describe(const qilin_tokenizer *t);

#ifdef __cplusplus
}
#endif

#endif /* QILIN_RUNTIME_TOKENIZER_H */
