/* tokenizer_impl.h — the tokenizer's internal representation, shared by the
 * tokenizer*.c files and by nothing else.
 *
 * Every loader (tokenizer.json, vocab.json + merges.txt, tiktoken, GGUF) fills
 * the same struct: a vocabulary indexed by id, one of three merge engines, the
 * added tokens, a list of normalizer steps and a list of pre-tokenizer steps.
 * tokenizer.c runs that pipeline; nothing in it knows which file it came from.
 *
 * Maps are open-addressing tables over strings that live in the tokenizer's
 * arena, so lookups never allocate. */
#ifndef QILIN_RUNTIME_TOKENIZER_IMPL_H
#define QILIN_RUNTIME_TOKENIZER_IMPL_H

#include <pcre2.h>

#include "runtime/tokenizer.h"

/* ---- storage ---------------------------------------------------------------------------- */

/* Bump allocator for token strings: nothing is freed before the tokenizer is. */
typedef struct tok_arena {
    struct tok_block *head;
} tok_arena;
char *tok_arena_copy(tok_arena *a, const char *p, size_t n); /* NUL-terminated copy; NULL when out of memory */
void tok_arena_free(tok_arena *a);

/* bytes -> int32; the keys are not copied and must outlive the map. */
typedef struct tok_strslot {
    const char *key;
    uint32_t len, hash;
    int32_t val;
} tok_strslot;
typedef struct tok_strmap {
    tok_strslot *slots; /* NULL key: empty */
    size_t mask, count;
} tok_strmap;
uint32_t tok_hash(const char *p, size_t n);
/* Inserts or overwrites; *old (optional) receives the previous value or -1. */
qilin_status tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, int32_t *old);
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len); /* -1 when absent */
qilin_status tok_strmap_reserve(tok_strmap *m, size_t n); /* room for n keys without growing */
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) -> (merge rank, merged id), for HF merges. */
typedef struct tok_pairslot {
    uint64_t key; /* UINT64_MAX: empty */
    uint32_t rank;
    int32_t id;
} tok_pairslot;
typedef struct tok_pairmap {
    tok_pairslot *slots;
    size_t mask, count;
} tok_pairmap;
qilin_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
qilin_status tok_pairmap_reserve(tok_pairmap *m, size_t n);
bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);
void tok_pairmap_free(tok_pairmap *m);

/* ---- the tokenizer ---------------------------------------------------------------------- */

typedef enum tok_model {
    TOK_MODEL_MERGES, /* HF BPE: merge ranks over symbol id pairs */
    TOK_MODEL_RANKS,  /* tiktoken: rank of the concatenated bytes, rank == id */
    TOK_MODEL_SCORES, /* SentencePiece BPE (GGUF "llama"): highest piece score first */
} tok_model;

enum { TOK_ATTR_SPECIAL = 1, TOK_ATTR_ADDED = 2, TOK_ATTR_MODEL = 4 };

typedef struct tok_added {
    int32_t id;
    const char *text; /* arena */
    uint32_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* Byte trie over the added tokens' texts, for leftmost-longest matching. */
typedef struct tok_trie_node {
    int32_t first_child, next_sibling;
    int32_t added; /* index into added[], -1 when no token ends here */
    uint8_t byte;
} tok_trie_node;

typedef enum tok_norm_kind {
    TOK_NORM_NFC,
    TOK_NORM_NFD,
    TOK_NORM_NFKC,
    TOK_NORM_NFKD,
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE,
    TOK_NORM_LOWERCASE,
    TOK_NORM_STRIP,
} tok_norm_kind;
typedef struct tok_norm {
    tok_norm_kind kind;
    const char *a;    /* PREPEND: text; REPLACE: literal pattern (NULL when re) */
    const char *b;    /* REPLACE: content */
    size_t na, nb;
    pcre2_code *re;   /* REPLACE with a regex pattern */
    bool left, right; /* STRIP */
} tok_norm;

/* How a split keeps what the pattern matched (HF SplitDelimiterBehavior). */
typedef enum tok_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_WITH_PREVIOUS,
    TOK_SPLIT_MERGED_WITH_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_behavior;

typedef enum tok_pre_kind { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE } tok_pre_kind;
enum { TOK_PREPEND_NEVER, TOK_PREPEND_FIRST, TOK_PREPEND_ALWAYS };
/* One pre-tokenizer step: an optional rewrite of each piece (ByteLevel's
 * prefix space, Metaspace's "▁"), then an optional split of it. */
typedef struct tok_pre {
    tok_pre_kind kind;
    pcre2_code *re; /* NULL: no split */
    tok_behavior behavior;
    bool invert;
    bool prefix_space; /* BYTELEVEL add_prefix_space */
    int prepend;       /* METASPACE TOK_PREPEND_* */
    char repl[8];      /* METASPACE replacement, UTF-8 */
    uint8_t nrepl;
} tok_pre;

enum { TOK_MAX_NORM = 16, TOK_MAX_PRE = 16, TOK_MAX_POST = 8 };
/* Bounds on what a file can make us allocate. Ids: a vocabulary has no gaps,
 * so no id reaches the number of entries the loaded files list (id_limit);
 * ids are also below TOK_MAX_VOCAB. Files: TOK_MAX_FILE_BYTES. Normalizers:
 * the normalized text of an n-byte input stays within TOK_NORM_GROWTH * n +
 * TOK_NORM_SLACK bytes (NFKD's worst code point gives 11x; a Replace of " "
 * by "\u2581" 3x), so chained Replace steps cannot grow it without bound. */
#define TOK_MAX_VOCAB (1 << 30)
#define TOK_MAX_FILE_BYTES ((size_t)1 << 30)
enum { TOK_NORM_GROWTH = 32, TOK_NORM_SLACK = 4096 };

struct qilin_tokenizer {
    tok_arena arena;
    char *source; /* file the tokenizer came from, for messages */

    /* Vocabulary, by id (gaps have text NULL). */
    int32_t n_vocab, cap_vocab;
    int64_t id_limit;    /* while loading: entries listed by the files read so far (see TOK_MAX_VOCAB) */
    const char **text;   /* spelling in the vocabulary ("Ġthe", "▁the", "<|eot_id|>") */
    uint32_t *text_len;
    const char **bytes;  /* what the decoder turns the token into */
    uint32_t *bytes_len;
    uint8_t *attr;       /* TOK_ATTR_* */
    size_t max_token_bytes;

    /* Model. */
    tok_model model;
    tok_strmap vocab;       /* model vocabulary: spelling -> id */
    tok_strmap vocab_bytes; /* model vocabulary: raw bytes -> id (byte-level and tiktoken) */
    tok_pairmap merges;     /* TOK_MODEL_MERGES */
    uint32_t *score_rank;   /* TOK_MODEL_SCORES: per id, 0 = highest score */
    bool byte_level;        /* pieces are bytes mapped through the GPT-2 table */
    int32_t byte_char_id[256]; /* byte-level: id of the one-char token for each byte, -1 none */
    int32_t byte_token[256];   /* "<0xXX>" ids for byte fallback, -1 none */
    bool byte_fallback, ignore_merges, fuse_unk;
    int32_t unk_id;

    /* Added tokens, matched before anything else. */
    tok_added *added;
    int n_added, cap_added;
    tok_trie_node *trie;
    int n_trie, cap_trie;
    int32_t trie_root[256]; /* first-byte shortcut: node index or -1 */

    tok_norm norm[TOK_MAX_NORM];
    int n_norm;
    tok_pre pre[TOK_MAX_PRE];
    int n_pre;

    /* Post-processor: ids put around a text with QILIN_ENCODE_ADD_SPECIAL. */
    int32_t post_prefix[TOK_MAX_POST], post_suffix[TOK_MAX_POST];
    int n_post_prefix, n_post_suffix;

    bool has_post; /* the post-processor came from the file (add_bos_token does not override it) */

    /* Decoder, folded into bytes[] per id at load, plus whether the first output space goes. */
    bool dec_bytelevel, dec_bytefallback;
    const char *dec_from, *dec_to; /* Replace: NULL when none */
    bool strip_first_space;

    int32_t bos, eos;
    const char *bos_text, *eos_text, *chat_template;
    char describe[256];
};

/* ---- building a tokenizer (tokenizer.c) ---------------------------------------------------- */

qilin_status tok_new(const char *source, qilin_tokenizer **out);
/* Sets id's vocabulary spelling (copied); duplicates and out-of-range ids are errors naming source. */
qilin_status tok_set_vocab(qilin_tokenizer *t, int32_t id, const char *text, size_t len, bool model);
qilin_status tok_reserve_vocab(qilin_tokenizer *t, int32_t n);
/* A file lists n more entries (vocabulary, added tokens): ids up to the new total become possible. */
void tok_allow_ids(qilin_tokenizer *t, uint64_t n);
/* Registers an added token (text copied; the id's spelling is set if still empty). */
qilin_status tok_add_added(qilin_tokenizer *t, const tok_added *a);
/* After all ids are known: checks for gaps, builds the byte maps, decoded bytes, trie. */
qilin_status tok_finish(qilin_tokenizer *t);
int32_t tok_added_lookup(const qilin_tokenizer *t, const char *text, size_t len);

/* ---- merge engines (tokenizer_bpe.c) ------------------------------------------------------- */

typedef struct tok_bpe_scratch {
    struct tok_sym *sym;
    struct tok_cand *heap;
    size_t cap_sym, cap_heap;
} tok_bpe_scratch;
/* Appends the ids of one pre-tokenized piece. */
qilin_status tok_bpe_piece(const qilin_tokenizer *t, tok_bpe_scratch *s, const char *p, size_t n, qilin_ids *out);
void tok_bpe_scratch_free(tok_bpe_scratch *s);

/* The GPT-2 byte <-> unicode table. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 for a code point outside the table */
/* Byte-level spelling of raw bytes (each byte -> its code point, UTF-8); out needs 2*n bytes. */
size_t tok_bytes_to_text(const char *p, size_t n, char *out);
/* UTF-8 decoding: length of the character at p (1 for an invalid byte), its code point in *cp (-1 invalid). */
size_t tok_utf8_next(const char *p, size_t n, int32_t *cp);

/* ---- normalizers and pre-tokenizers (tokenizer_split.c) --------------------------------------- */

/* Compiles a regex written for Oniguruma / Rust regex (tokenizer.json, tiktoken
 * patterns) into PCRE2 (UTF, UCP, invalid UTF allowed, JIT when available). */
qilin_status tok_regex_compile(const char *pattern, size_t len, bool literal, const char *what, pcre2_code **out);
/* Adds the Split steps and NFC of a named pattern ("gpt2", "llama3", "qwen2",
 * "deepseek-v3", "kimi-k2" and llama.cpp's aliases); UNSUPPORTED for another name. */
qilin_status tok_add_named_split(qilin_tokenizer *t, const char *name, const char *what);
qilin_status tok_add_split(qilin_tokenizer *t, pcre2_code *re, tok_behavior b, bool invert);

/* A piece of a pre-tokenized segment: [off, off + len) of the working buffer. */
typedef struct tok_piece {
    uint32_t off, len;
} tok_piece;
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;
qilin_status tok_buf_put(tok_buf *b, const char *p, size_t n);

typedef struct tok_span {
    uint32_t off, len;
    bool match;
} tok_span;
typedef struct tok_split_ctx {
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* with a large JIT stack; made when the default 32 KB one runs out */
    pcre2_jit_stack *jit_stack;
    tok_buf buf[2];      /* text rewritten by pre-tokenizer steps, alternately */
    tok_buf norm[2];     /* normalizer output and scratch */
    tok_piece *pc[2];
    size_t n_pc[2], cap_pc[2];
    int cur;             /* pc[cur] holds the current pieces, of text */
    const char *text;
    tok_span *spans;     /* one piece's split, before the behaviour is applied */
    size_t cap_spans;
} tok_split_ctx;
/* Normalizes p[0..n); out and nout receive the result (p itself when nothing changed). */
qilin_status tok_normalize(const qilin_tokenizer *t, tok_split_ctx *c, const char *p, size_t n, const char **out,
                           size_t *nout);
/* Pre-tokenizes p[0..n): afterwards c->text holds the text and c->pc[c->cur] the pieces.
 * at_origin: the text starts at offset 0 of the original input (Metaspace "first"). */
qilin_status tok_pretokenize(const qilin_tokenizer *t, tok_split_ctx *c, const char *p, size_t n, bool at_origin);
void tok_split_ctx_free(tok_split_ctx *c);

/* ---- loaders ------------------------------------------------------------------------------ */

qilin_status tok_load_hf_json(const char *path, qilin_tokenizer **out);
qilin_status tok_load_vocab_merges(const char *dir, qilin_tokenizer **out);
qilin_status tok_load_tiktoken(const char *path, const char *config, qilin_tokenizer **out);
/* Reads bos/eos/add_bos_token/chat_template/added_tokens_decoder from a
 * tokenizer_config.json (path may not exist: then nothing happens). add_bos
 * and add_eos receive -1 when the key is absent. */
qilin_status tok_read_config(qilin_tokenizer *t, const char *path, bool take_added, int *add_bos, int *add_eos);
/* chat_template.jinja in dir, if there, replaces the template. */
qilin_status tok_read_template_file(qilin_tokenizer *t, const char *dir);
/* Applies add_bos/add_eos (-1: leave the post-processor as it is). */
void tok_apply_add_flags(qilin_tokenizer *t, int add_bos, int add_eos);
bool tok_file_exists(const char *path);

#endif /* QILIN_RUNTIME_TOKENIZER_IMPL_H */
