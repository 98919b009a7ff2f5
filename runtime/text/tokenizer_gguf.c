/* tokenizer_gguf.c — tokenizers from GGUF metadata (tokenizer.ggml.*).
 *
 *   model "gpt2":  byte-level BPE; tokens + merges ("a b"), split pattern by
 *                  tokenizer.ggml.pre through tokenizer_split.c's table;
 *   model "llama": SentencePiece BPE; tokens + scores, merges by highest
 *                  score, "▁" for spaces and one in front of each text
 *                  segment (add_space_prefix), <0xXX> byte fallback.
 * token_type 2 (unknown) and 3 (control) tokens are special added tokens, 4
 * (user-defined) plain added tokens — all matched in the text before anything
 * else, as llama.cpp and HF do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/gguf.h"
#include "runtime/text/tokenizer_impl.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static qilin_status opt_bool(const gguf_file *g, const char *key, bool *v) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return QILIN_OK;
    return gguf_get_bool(g, key, v);
}

static qilin_status opt_id(const gguf_file *g, const char *key, int32_t *v) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return QILIN_OK;
    if (kv->type == GGUF_TYPE_UINT32 || kv->type == GGUF_TYPE_INT32 || kv->type == GGUF_TYPE_UINT64 ||
        kv->type == GGUF_TYPE_INT64) {
        bool is_signed = kv->type == GGUF_TYPE_INT32 || kv->type == GGUF_TYPE_INT64;
        if (is_signed ? kv->v.i < -1 || kv->v.i >= TOK_MAX_VOCAB
                      : kv->v.u >= TOK_MAX_VOCAB) /* checked before the cast */
            return qilin_error(QILIN_ERR_FORMAT, "%s: %s is not a token id (0 .. %d)", gguf_path(g), key,
                               TOK_MAX_VOCAB - 1);
        *v = is_signed ? (int32_t)kv->v.i : (int32_t)kv->v.u;
        return QILIN_OK;
    }
    return qilin_error(QILIN_ERR_FORMAT, "%s: %s has type %s, not an integer id", gguf_path(g), key,
                       gguf_type_name(kv->type));
}

static qilin_status read_tokens(qilin_tokenizer *t, const gguf_file *g, const gguf_array *tokens,
                                const gguf_array *types) {
    if (tokens->count > TOK_MAX_VOCAB)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tokenizer.ggml.tokens has %llu entries; at most %d supported", gguf_path(g),
                           (unsigned long long)tokens->count, TOK_MAX_VOCAB);
    tok_allow_ids(t, tokens->count);
    QILIN_TRY(tok_reserve_vocab(t, (int32_t)tokens->count));
    for (uint64_t i = 0; i < tokens->count; i++) {
        const gguf_str *s = &tokens->strs[i];
        int type = types ? (int)gguf_array_int(types, i) : TT_NORMAL;
        if (type == TT_CONTROL || type == TT_USER || type == TT_UNKNOWN) {
            tok_added a = {.id = (int32_t)i, .text = s->data, .len = (uint32_t)s->len, .special = type != TT_USER};
            if (type == TT_UNKNOWN) t->unk_id = (int32_t)i;
            if (s->len == 0) { /* llama.cpp writes empty control tokens for padding; keep the id, never match it */
                QILIN_TRY(tok_set_vocab(t, (int32_t)i, "", 0, false));
                t->attr[i] |= TOK_ATTR_SPECIAL;
                continue;
            }
            QILIN_TRY(tok_add_added(t, &a));
        } else {
            qilin_status st = tok_set_vocab(t, (int32_t)i, s->data, (size_t)s->len, true);
            if (st != QILIN_OK) return qilin_error_context(st, "%s: tokenizer.ggml.tokens: ", gguf_path(g));
        }
    }
    return QILIN_OK;
}

static qilin_status read_merges(qilin_tokenizer *t, const gguf_file *g) {
    gguf_array merges;
    QILIN_TRY(gguf_get_array(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges));
    for (uint64_t i = 0; i < merges.count; i++) {
        const gguf_str *m = &merges.strs[i];
        const char *sp = memchr(m->data, ' ', m->len);
        if (!sp)
            return qilin_error(QILIN_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is not two tokens", gguf_path(g),
                               (unsigned long long)i);
        size_t na = (size_t)(sp - m->data), nb = m->len - na - 1;
        int32_t a = tok_strmap_get(&t->vocab, m->data, na), b = tok_strmap_get(&t->vocab, sp + 1, nb);
        char small[256], *joined = na + nb <= sizeof small ? small : malloc(na + nb);
        if (!joined) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: merges", gguf_path(g));
        memcpy(joined, m->data, na);
        memcpy(joined + na, sp + 1, nb);
        int32_t id = tok_strmap_get(&t->vocab, joined, na + nb);
        if (joined != small) free(joined);
        if (a < 0 || b < 0 || id < 0)
            return qilin_error(QILIN_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\" uses a token not in the "
                               "vocabulary", gguf_path(g), (unsigned long long)i, (int)m->len, m->data);
        QILIN_TRY(tok_pairmap_put(&t->merges, a, b, (uint32_t)i, id));
    }
    return QILIN_OK;
}

/* Score order: rank 0 for the highest score, equal scores sharing a rank (so
 * ties go to the leftmost pair, as in llama.cpp). */
typedef struct scored {
    float score;
    int32_t id;
} scored;
static int by_score_desc(const void *a, const void *b) {
    float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x > y ? -1 : x < y ? 1 : 0;
}

static qilin_status score_ranks(qilin_tokenizer *t, const gguf_file *g) {
    gguf_array scores;
    QILIN_TRY(gguf_get_array(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores));
    if (scores.count != (uint64_t)t->n_vocab)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries for %d tokens", gguf_path(g),
                           (unsigned long long)scores.count, (int)t->n_vocab);
    scored *order = malloc((size_t)t->n_vocab * sizeof *order);
    t->score_rank = malloc((size_t)t->n_vocab * sizeof *t->score_rank);
    if (!order || !t->score_rank) {
        free(order);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: scores", gguf_path(g));
    }
    for (int32_t i = 0; i < t->n_vocab; i++) order[i] = (scored){(float)gguf_array_float(&scores, (uint64_t)i), i};
    qsort(order, (size_t)t->n_vocab, sizeof *order, by_score_desc);
    uint32_t rank = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (i > 0 && order[i].score != order[i - 1].score) rank++;
        t->score_rank[order[i].id] = rank;
    }
    free(order);
    return QILIN_OK;
}

static qilin_status setup_llama(qilin_tokenizer *t, const gguf_file *g) {
    bool prefix = true;
    QILIN_TRY(opt_bool(g, "tokenizer.ggml.add_space_prefix", &prefix));
    t->model = TOK_MODEL_SCORES;
    QILIN_TRY(score_ranks(t, g));
    /* HF's Metaspace(prepend_scheme "always", split false), which the
     * tokenizer.json converted from the same SentencePiece model uses. It
     * differs from llama.cpp only for a segment that starts with a space
     * (llama.cpp then writes two "▁"); HF is the reference here. */
    tok_pre m = {.kind = TOK_PRE_METASPACE, .prepend = prefix ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER, .nrepl = 3};
    memcpy(m.repl, "\xe2\x96\x81", 3);
    t->pre[t->n_pre++] = m;
    t->dec_from = "\xe2\x96\x81";
    t->dec_to = " ";
    t->dec_bytefallback = true;
    t->strip_first_space = prefix;
    return QILIN_OK;
}

static qilin_status setup_gpt2(qilin_tokenizer *t, const gguf_file *g) {
    gguf_str pre = {"default", 7};
    if (gguf_find_kv(g, "tokenizer.ggml.pre")) QILIN_TRY(gguf_get_str(g, "tokenizer.ggml.pre", &pre));
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(pre.len < 63 ? pre.len : 63), pre.data);
    char what[4200];
    snprintf(what, sizeof what, "%s: tokenizer.ggml.pre", gguf_path(g));
    if (strcmp(name, "qwen2") == 0) t->norm[t->n_norm++] = (tok_norm){.kind = TOK_NORM_NFC};
    QILIN_TRY(tok_add_named_split(t, name, what));
    t->model = TOK_MODEL_MERGES;
    t->byte_level = t->dec_bytelevel = true;
    t->ignore_merges = strcmp(name, "llama3") == 0 || strcmp(name, "llama-bpe") == 0;
    QILIN_TRY(read_merges(t, g));
    snprintf(t->describe, sizeof t->describe, "byte-level BPE (GGUF), %d tokens, %s split", (int)t->n_vocab, name);
    return QILIN_OK;
}

static qilin_status load(qilin_tokenizer *t, const gguf_file *g) {
    gguf_str model;
    QILIN_TRY(gguf_get_str(g, "tokenizer.ggml.model", &model));
    bool llama = model.len == 5 && memcmp(model.data, "llama", 5) == 0;
    bool gpt2 = model.len == 4 && memcmp(model.data, "gpt2", 4) == 0;
    if (!llama && !gpt2)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (gpt2, llama)",
                           gguf_path(g), (int)model.len, model.data);
    gguf_array tokens, types;
    QILIN_TRY(gguf_get_array(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens));
    bool have_types = gguf_find_kv(g, "tokenizer.ggml.token_type") != NULL;
    if (have_types) QILIN_TRY(gguf_get_array(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types));
    if (have_types && types.count != tokens.count)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens",
                           gguf_path(g), (unsigned long long)types.count, (unsigned long long)tokens.count);
    QILIN_TRY(read_tokens(t, g, &tokens, have_types ? &types : NULL));
    if (llama) {
        QILIN_TRY(setup_llama(t, g));
        snprintf(t->describe, sizeof t->describe, "SentencePiece BPE (GGUF), %d tokens", (int)t->n_vocab);
    } else {
        QILIN_TRY(setup_gpt2(t, g));
    }
    QILIN_TRY(tok_finish(t));
    QILIN_TRY(opt_id(g, "tokenizer.ggml.bos_token_id", &t->bos));
    QILIN_TRY(opt_id(g, "tokenizer.ggml.eos_token_id", &t->eos));
    QILIN_TRY(opt_id(g, "tokenizer.ggml.unknown_token_id", &t->unk_id));
    if (t->bos >= t->n_vocab || t->eos >= t->n_vocab || t->unk_id >= t->n_vocab)
        return qilin_error(QILIN_ERR_FORMAT, "%s: bos/eos/unknown token id outside the %d tokens", gguf_path(g),
                           (int)t->n_vocab);
    if (t->bos >= 0) t->bos_text = t->text[t->bos];
    if (t->eos >= 0) t->eos_text = t->text[t->eos];
    bool add_bos = llama, add_eos = false;
    QILIN_TRY(opt_bool(g, "tokenizer.ggml.add_bos_token", &add_bos));
    QILIN_TRY(opt_bool(g, "tokenizer.ggml.add_eos_token", &add_eos));
    if (add_bos && t->bos >= 0) t->post_prefix[t->n_post_prefix++] = t->bos;
    if (add_eos && t->eos >= 0) t->post_suffix[t->n_post_suffix++] = t->eos;
    if (gguf_find_kv(g, "tokenizer.chat_template")) {
        gguf_str tmpl;
        QILIN_TRY(gguf_get_str(g, "tokenizer.chat_template", &tmpl));
        if (!(t->chat_template = tok_arena_copy(&t->arena, tmpl.data, tmpl.len)))
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: chat template", gguf_path(g));
    }
    return QILIN_OK;
}

qilin_status qilin_tokenizer_load_gguf(const struct gguf_file *g, qilin_tokenizer **out) {
    if (!g || !out) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_tokenizer_load_gguf: NULL file or output");
    qilin_tokenizer *t = NULL;
    QILIN_TRY(tok_new(gguf_path(g), &t));
    qilin_status st = load(t, g);
    if (st != QILIN_OK) {
        qilin_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}
