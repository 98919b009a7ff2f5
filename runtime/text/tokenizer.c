/* tokenizer.c — the encode pipeline, decoding, the streaming detokenizer, the
 * vocabulary accessors and the choice of loader for a path.
 *
 * Encoding follows HF tokenizers' order exactly:
 *   1. added tokens that are not "normalized" are cut out of the raw text
 *      (leftmost-longest, lstrip/rstrip/single_word honoured);
 *   2. each remaining segment is normalized, and "normalized" added tokens are
 *      cut out of the normalized text;
 *   3. each remaining segment is pre-tokenized into pieces;
 *   4. each piece goes through the merge engine, via a per-call cache of
 *      piece -> ids (the text of a 1 MB file repeats most of its words).
 * Everything a call needs lives in a context on its stack, so one tokenizer
 * can serve many threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "host/fileio.h"
#include "host/gguf.h"
#include "runtime/text/tokenizer_impl.h"

/* ---- building ------------------------------------------------------------------------------- */

qilin_status tok_new(const char *source, qilin_tokenizer **out) {
    qilin_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer for %s", source);
    t->source = malloc(strlen(source) + 1);
    if (t->source) memcpy(t->source, source, strlen(source) + 1);
    if (!t->source) {
        free(t);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer for %s", source);
    }
    t->bos = t->eos = t->unk_id = -1;
    t->bos_text = t->eos_text = "";
    for (int i = 0; i < 256; i++) t->byte_char_id[i] = t->byte_token[i] = t->trie_root[i] = -1;
    *out = t;
    return QILIN_OK;
}

/* Grows the per-id arrays to hold ids below n (n_vocab, the largest id + 1, is set by tok_set_vocab). */
qilin_status tok_reserve_vocab(qilin_tokenizer *t, int32_t n) {
    if (n <= t->cap_vocab) return QILIN_OK;
    if (n < t->cap_vocab * 2) n = t->cap_vocab * 2;
    if (n > t->id_limit) n = (int32_t)t->id_limit; /* never more than the files can fill */
    if (n <= t->cap_vocab) return QILIN_OK;
    const char **text = realloc(t->text, (size_t)n * sizeof *text);
    if (text) t->text = text;
    uint32_t *text_len = realloc(t->text_len, (size_t)n * sizeof *text_len);
    if (text_len) t->text_len = text_len;
    const char **bytes = realloc(t->bytes, (size_t)n * sizeof *bytes);
    if (bytes) t->bytes = bytes;
    uint32_t *bytes_len = realloc(t->bytes_len, (size_t)n * sizeof *bytes_len);
    if (bytes_len) t->bytes_len = bytes_len;
    uint8_t *attr = realloc(t->attr, (size_t)n);
    if (attr) t->attr = attr;
    if (!text || !text_len || !bytes || !bytes_len || !attr)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: vocabulary of %d tokens", t->source, (int)n);
    for (int32_t i = t->cap_vocab; i < n; i++) {
        t->text[i] = t->bytes[i] = NULL;
        t->text_len[i] = t->bytes_len[i] = 0;
        t->attr[i] = 0;
    }
    t->cap_vocab = n;
    return QILIN_OK;
}

void tok_allow_ids(qilin_tokenizer *t, uint64_t n) {
    t->id_limit = n > (uint64_t)(TOK_MAX_VOCAB - t->id_limit) ? TOK_MAX_VOCAB : t->id_limit + (int64_t)n;
}

qilin_status tok_set_vocab(qilin_tokenizer *t, int32_t id, const char *text, size_t len, bool model) {
    if (id < 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: token \"%.*s\" has id %d", t->source, (int)len, text,
                           (int)id);
    /* Checked before the per-id arrays grow: a huge id would otherwise cost gigabytes. */
    if (id >= t->id_limit)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: token \"%.*s\" has id %d, but the tokenizer files list only %lld "
                           "tokens (ids must run 0 .. %lld without gaps)",
                           t->source, (int)len, text, (int)id, (long long)t->id_limit,
                           (long long)t->id_limit - 1);
    QILIN_TRY(tok_reserve_vocab(t, id + 1));
    if (id >= t->n_vocab) t->n_vocab = id + 1;
    if (t->text[id] && model)
        return qilin_error(QILIN_ERR_FORMAT, "%s: id %d is given to both \"%s\" and \"%.*s\"", t->source, (int)id,
                           t->text[id], (int)len, text);
    const char *copy = tok_arena_copy(&t->arena, text, len);
    if (!copy) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: token text", t->source);
    if (model) {
        int32_t old = -1;
        QILIN_TRY(tok_strmap_put(&t->vocab, copy, len, id, &old));
        if (old >= 0)
            return qilin_error(QILIN_ERR_FORMAT, "%s: token \"%.*s\" appears twice (ids %d and %d)", t->source,
                               (int)len, text, (int)old, (int)id);
        t->attr[id] |= TOK_ATTR_MODEL;
    }
    if (!t->text[id]) {
        t->text[id] = copy;
        t->text_len[id] = (uint32_t)len;
    }
    return QILIN_OK;
}

static qilin_status trie_node(qilin_tokenizer *t, uint8_t byte, int32_t *idx) {
    if (t->n_trie == t->cap_trie) {
        int cap = t->cap_trie ? t->cap_trie * 2 : 256;
        tok_trie_node *n = realloc(t->trie, (size_t)cap * sizeof *n);
        if (!n) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: added-token trie", t->source);
        t->trie = n;
        t->cap_trie = cap;
    }
    t->trie[t->n_trie] = (tok_trie_node){-1, -1, -1, byte};
    *idx = t->n_trie++;
    return QILIN_OK;
}

static qilin_status trie_insert(qilin_tokenizer *t, int added) {
    const tok_added *a = &t->added[added];
    if (a->len == 0) return qilin_error(QILIN_ERR_FORMAT, "%s: added token %d is empty", t->source, (int)a->id);
    uint8_t b0 = (uint8_t)a->text[0];
    if (t->trie_root[b0] < 0) QILIN_TRY(trie_node(t, b0, &t->trie_root[b0]));
    int32_t node = t->trie_root[b0];
    for (uint32_t i = 1; i < a->len; i++) {
        uint8_t b = (uint8_t)a->text[i];
        int32_t c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].next_sibling;
        if (c < 0) {
            QILIN_TRY(trie_node(t, b, &c));
            t->trie[c].next_sibling = t->trie[node].first_child;
            t->trie[node].first_child = c;
        }
        node = c;
    }
    if (t->trie[node].added < 0) t->trie[node].added = added; /* the first of equal texts wins */
    return QILIN_OK;
}

int32_t tok_added_lookup(const qilin_tokenizer *t, const char *text, size_t len) {
    if (len == 0 || t->trie_root[(uint8_t)text[0]] < 0) return -1;
    int32_t node = t->trie_root[(uint8_t)text[0]];
    for (size_t i = 1; i < len && node >= 0; i++) {
        int32_t c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != (uint8_t)text[i]) c = t->trie[c].next_sibling;
        node = c;
    }
    return node >= 0 && t->trie[node].added >= 0 ? t->added[t->trie[node].added].id : -1;
}

qilin_status tok_add_added(qilin_tokenizer *t, const tok_added *a) {
    if (t->n_added == t->cap_added) {
        int cap = t->cap_added ? t->cap_added * 2 : 64;
        tok_added *p = realloc(t->added, (size_t)cap * sizeof *p);
        if (!p) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: added tokens", t->source);
        t->added = p;
        t->cap_added = cap;
    }
    QILIN_TRY(tok_set_vocab(t, a->id, a->text, a->len, false));
    tok_added *dst = &t->added[t->n_added++];
    *dst = *a;
    dst->text = t->text[a->id];
    if (dst->len != t->text_len[a->id] || memcmp(dst->text, a->text, a->len) != 0)
        dst->text = tok_arena_copy(&t->arena, a->text, a->len);
    if (!dst->text) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: added token", t->source);
    t->attr[a->id] |= TOK_ATTR_ADDED | (a->special ? TOK_ATTR_SPECIAL : 0);
    return trie_insert(t, t->n_added - 1);
}

/* What the decoder makes of one token's spelling. */
static int hex_digit(char c, bool lower_too) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (lower_too && c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte a byte-fallback token "<0xAB>" of n bytes stands for, or -1.
 * s need not be NUL-terminated (no sscanf: it would read past n). */
static int byte_fallback_value(const char *s, size_t n, bool lower_too) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3], lower_too), lo = hex_digit(s[4], lower_too);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

static qilin_status decoded_bytes(qilin_tokenizer *t, int32_t id) {
    const char *s = t->text[id];
    size_t n = t->text_len[id];
    /* Room for the decoder's Replace, whose content may be longer than its pattern, at every position. */
    size_t nf = t->dec_from ? strlen(t->dec_from) : 0, nt = t->dec_to ? strlen(t->dec_to) : 0;
    size_t need = n * 3 + 1 + (nf ? n / nf * nt : 0);
    char small[256], *out = need <= sizeof small ? small : malloc(need), *o = out;
    if (!out) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: decoding token %d", t->source, (int)id);
    bool raw = !t->dec_bytelevel;
    for (size_t i = 0; i < n && !raw;) { /* byte-level: every char must map back to a byte */
        int32_t cp;
        i += tok_utf8_next(s + i, n - i, &cp);
        int b = cp < 0 ? -1 : tok_cp_to_byte((uint32_t)cp);
        if (b < 0) raw = true;
        else *o++ = (char)b;
    }
    if (raw) {
        o = out;
        for (size_t i = 0; i < n;) {
            if (nf && n - i >= nf && memcmp(s + i, t->dec_from, nf) == 0) {
                memcpy(o, t->dec_to, nt);
                o += nt;
                i += nf;
            } else {
                *o++ = s[i++];
            }
        }
        int byte = t->dec_bytefallback ? byte_fallback_value(out, (size_t)(o - out), true) : -1;
        if (byte >= 0) {
            out[0] = (char)byte;
            o = out + 1;
        }
    }
    t->bytes[id] = tok_arena_copy(&t->arena, out, (size_t)(o - out));
    t->bytes_len[id] = (uint32_t)(o - out);
    if (out != small) free(out);
    if (!t->bytes[id]) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: decoding token %d", t->source, (int)id);
    return QILIN_OK;
}

qilin_status tok_finish(qilin_tokenizer *t) {
    for (int i = 0; i < t->n_post_prefix + t->n_post_suffix; i++) { /* ids the post-processor adds */
        int32_t id = i < t->n_post_prefix ? t->post_prefix[i] : t->post_suffix[i - t->n_post_prefix];
        if (id < 0 || id >= t->n_vocab)
            return qilin_error(QILIN_ERR_FORMAT, "%s: post_processor adds id %d, outside the %d tokens",
                               t->source, (int)id, (int)t->n_vocab);
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->text[id])
            return qilin_error(QILIN_ERR_FORMAT, "%s: no token has id %d (ids run to %d with a gap)", t->source,
                               (int)id, (int)t->n_vocab - 1);
        if (!t->bytes[id]) QILIN_TRY(decoded_bytes(t, id));
        if (t->bytes_len[id] > t->max_token_bytes) t->max_token_bytes = t->bytes_len[id];
        if (t->byte_level && (t->attr[id] & TOK_ATTR_MODEL) && t->model != TOK_MODEL_RANKS) {
            /* raw bytes -> id, for ignore_merges; only tokens made entirely of mapped chars */
            bool mapped = true;
            for (size_t i = 0; i < t->text_len[id] && mapped;) {
                int32_t cp;
                i += tok_utf8_next(t->text[id] + i, t->text_len[id] - i, &cp);
                mapped = cp >= 0 && tok_cp_to_byte((uint32_t)cp) >= 0;
            }
            if (mapped) QILIN_TRY(tok_strmap_put(&t->vocab_bytes, t->bytes[id], t->bytes_len[id], id, NULL));
        }
        int byte = byte_fallback_value(t->text[id], t->text_len[id], false);
        if (byte >= 0 && (t->attr[id] & TOK_ATTR_MODEL)) t->byte_token[byte] = id;
    }
    if (t->byte_level) {
        for (int b = 0; b < 256; b++) {
            char ch[4];
            size_t k = tok_bytes_to_text((const char *)&(uint8_t){(uint8_t)b}, 1, ch);
            t->byte_char_id[b] = tok_strmap_get(&t->vocab, ch, k);
        }
    }
    return QILIN_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct cache_slot {
    uint32_t hash, key_off, key_len, ids_off, n_ids;
} cache_slot;

typedef struct enc_ctx {
    const qilin_tokenizer *t;
    unsigned flags;
    tok_split_ctx split;
    tok_bpe_scratch bpe;
    cache_slot *cache; /* key_len 0: empty */
    size_t cache_mask, cache_count;
    tok_buf cache_keys;
    qilin_ids cache_ids;
} enc_ctx;

enum { CACHE_MAX_PIECE = 128, CACHE_MAX_ENTRIES = 1 << 16 };

static qilin_status cache_grow(enc_ctx *c) {
    size_t cap = c->cache ? (c->cache_mask + 1) * 2 : 256;
    cache_slot *s = calloc(cap, sizeof *s);
    if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: piece cache");
    for (size_t i = 0; c->cache && i <= c->cache_mask; i++) {
        if (!c->cache[i].key_len) continue;
        size_t j = c->cache[i].hash & (cap - 1);
        while (s[j].key_len) j = (j + 1) & (cap - 1);
        s[j] = c->cache[i];
    }
    free(c->cache);
    c->cache = s;
    c->cache_mask = cap - 1;
    return QILIN_OK;
}

/* Ids of one piece, from the cache or the merge engine. */
static qilin_status encode_piece(enc_ctx *c, const char *p, size_t n, qilin_ids *out) {
    if (n > CACHE_MAX_PIECE) return tok_bpe_piece(c->t, &c->bpe, p, n, out);
    if (!c->cache) QILIN_TRY(cache_grow(c));
    uint32_t h = tok_hash(p, n);
    size_t j = h & c->cache_mask;
    for (; c->cache[j].key_len; j = (j + 1) & c->cache_mask) {
        cache_slot *s = &c->cache[j];
        if (s->hash == h && s->key_len == n && memcmp(c->cache_keys.p + s->key_off, p, n) == 0) {
            for (uint32_t k = 0; k < s->n_ids; k++) QILIN_TRY(qilin_ids_push(out, c->cache_ids.ids[s->ids_off + k]));
            return QILIN_OK;
        }
    }
    size_t before = out->n;
    QILIN_TRY(tok_bpe_piece(c->t, &c->bpe, p, n, out));
    if (c->cache_count >= CACHE_MAX_ENTRIES) return QILIN_OK;
    cache_slot s = {h, (uint32_t)c->cache_keys.n, (uint32_t)n, (uint32_t)c->cache_ids.n, (uint32_t)(out->n - before)};
    QILIN_TRY(tok_buf_put(&c->cache_keys, p, n));
    for (size_t k = before; k < out->n; k++) QILIN_TRY(qilin_ids_push(&c->cache_ids, out->ids[k]));
    c->cache[j] = s;
    if (++c->cache_count * 2 > c->cache_mask + 1) QILIN_TRY(cache_grow(c));
    return QILIN_OK;
}

static qilin_status encode_text(enc_ctx *c, const char *p, size_t n, bool at_origin, qilin_ids *out) {
    if (n == 0) return QILIN_OK;
    QILIN_TRY(tok_pretokenize(c->t, &c->split, p, n, at_origin));
    const tok_split_ctx *s = &c->split;
    for (size_t i = 0; i < s->n_pc[s->cur]; i++) {
        tok_piece pc = s->pc[s->cur][i];
        QILIN_TRY(encode_piece(c, s->text + pc.off, pc.len, out));
    }
    return QILIN_OK;
}

/* Letters, digits and '_' (HF's test for single_word), for the character at p. */
static bool is_word_char(const char *p, size_t n) {
    int32_t cp;
    tok_utf8_next(p, n, &cp);
    if (cp < 0) return false;
    if (cp == '_') return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

/* The character that ends at p[end] (exclusive), for looking left. */
static const char *char_before(const char *p, size_t start, size_t end) {
    size_t k = end - 1;
    while (k > start && end - k < 4 && ((uint8_t)p[k] & 0xC0) == 0x80) k--;
    return p + k;
}

static bool is_space_at(const char *p, size_t n, size_t *len) {
    int32_t cp;
    *len = tok_utf8_next(p, n, &cp);
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Longest added token (of this pass) starting at p[i]; its index or -1. */
static int longest_added(const qilin_tokenizer *t, const char *p, size_t n, size_t i, bool normalized,
                         unsigned flags, size_t *len) {
    int best = -1;
    int32_t node = t->trie_root[(uint8_t)p[i]];
    for (size_t k = i; node >= 0;) {
        int a = t->trie[node].added;
        if (a >= 0 && t->added[a].normalized == normalized &&
            (!t->added[a].special || (flags & QILIN_ENCODE_PARSE_SPECIAL))) {
            best = a;
            *len = k + 1 - i;
        }
        if (++k >= n) break;
        int32_t ch = t->trie[node].first_child;
        while (ch >= 0 && t->trie[ch].byte != (uint8_t)p[k]) ch = t->trie[ch].next_sibling;
        node = ch;
    }
    return best;
}

typedef qilin_status (*segment_fn)(enc_ctx *c, const char *p, size_t n, bool at_origin, qilin_ids *out);

/* Cuts the added tokens of one pass out of p[0..n) and hands the text between them to fn. */
static qilin_status split_added(enc_ctx *c, const char *p, size_t n, bool normalized, bool at_origin, segment_fn fn,
                                qilin_ids *out) {
    const qilin_tokenizer *t = c->t;
    size_t seg = 0;
    for (size_t i = 0; i < n && t->n_added;) {
        size_t len = 0;
        int a = t->trie_root[(uint8_t)p[i]] < 0 ? -1 : longest_added(t, p, n, i, normalized, c->flags, &len);
        if (a < 0) {
            i++;
            continue;
        }
        const tok_added *tok = &t->added[a];
        size_t ms = i, me = i + len, l;
        if (tok->single_word && ((ms > 0 && is_word_char(char_before(p, 0, ms), (size_t)(p + ms - char_before(p, 0, ms)))) ||
                                 (me < n && is_word_char(p + me, n - me)))) {
            i++;
            continue;
        }
        if (tok->lstrip) {
            while (ms > seg) {
                size_t k = ms - 1;
                while (k > seg && ((uint8_t)p[k] & 0xC0) == 0x80) k--;
                if (!is_space_at(p + k, ms - k, &l) || l != ms - k) break;
                ms = k;
            }
        }
        while (tok->rstrip && me < n && is_space_at(p + me, n - me, &l)) me += l;
        QILIN_TRY(fn(c, p + seg, ms - seg, at_origin && seg == 0, out));
        QILIN_TRY(qilin_ids_push(out, tok->id));
        seg = i = me;
    }
    return fn(c, p + seg, n - seg, at_origin && seg == 0, out);
}

static qilin_status normalized_segment(enc_ctx *c, const char *p, size_t n, bool at_origin, qilin_ids *out) {
    if (n == 0) return QILIN_OK;
    const char *q = p;
    size_t m = n;
    if (c->t->n_norm) {
        QILIN_TRY(tok_normalize(c->t, &c->split, p, n, &q, &m));
        /* the normalizer's buffer is reused by the next segment: keep a copy while splitting */
        tok_buf copy = {0};
        QILIN_TRY(tok_buf_put(&copy, q, m));
        qilin_status st = split_added(c, copy.p, m, true, at_origin, encode_text, out);
        free(copy.p);
        return st;
    }
    return split_added(c, q, m, true, at_origin, encode_text, out);
}

qilin_status qilin_tokenizer_encode(const qilin_tokenizer *t, const char *text, size_t len, unsigned flags,
                                    qilin_ids *out) {
    if (!t || !out || (!text && len))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_tokenizer_encode: NULL tokenizer, text or output");
    enc_ctx c = {.t = t, .flags = flags};
    qilin_status st = QILIN_OK;
    if (flags & QILIN_ENCODE_ADD_SPECIAL)
        for (int i = 0; i < t->n_post_prefix && st == QILIN_OK; i++) st = qilin_ids_push(out, t->post_prefix[i]);
    if (st == QILIN_OK) st = split_added(&c, text, len, false, true, normalized_segment, out);
    if (flags & QILIN_ENCODE_ADD_SPECIAL)
        for (int i = 0; i < t->n_post_suffix && st == QILIN_OK; i++) st = qilin_ids_push(out, t->post_suffix[i]);
    tok_split_ctx_free(&c.split);
    tok_bpe_scratch_free(&c.bpe);
    free(c.cache);
    free(c.cache_keys.p);
    qilin_ids_free(&c.cache_ids);
    return st;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static bool skipped(const qilin_tokenizer *t, int32_t id, unsigned flags) {
    return (flags & QILIN_DECODE_SKIP_SPECIAL) && (t->attr[id] & TOK_ATTR_SPECIAL);
}

qilin_status qilin_tokenizer_decode(const qilin_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                                    char **text, size_t *len) {
    if (!t || !text || (!ids && n))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_tokenizer_decode: NULL tokenizer, ids or output");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_tokenizer_decode: id %d at position %zu is outside "
                               "the vocabulary (%d tokens) of %s", (int)ids[i], i, (int)t->n_vocab, t->source);
        if (!skipped(t, ids[i], flags)) total += t->bytes_len[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_tokenizer_decode: %zu bytes", total + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skipped(t, ids[i], flags)) continue;
        memcpy(out + k, t->bytes[ids[i]], t->bytes_len[ids[i]]);
        k += t->bytes_len[ids[i]];
    }
    size_t skip = t->strip_first_space && k > 0 && out[0] == ' ' ? 1 : 0;
    memmove(out, out + skip, k - skip);
    out[k - skip] = 0;
    *text = out;
    if (len) *len = k - skip;
    return QILIN_OK;
}

void qilin_detokenizer_init(qilin_detokenizer *d, const qilin_tokenizer *t, unsigned flags) {
    *d = (qilin_detokenizer){.t = t, .flags = flags};
}

void qilin_detokenizer_set_model_vocab(qilin_detokenizer *d, int32_t model_vocab) {
    d->model_vocab = model_vocab;
}

/* Bytes at the end of p[0..n) that begin a UTF-8 character still missing bytes. */
static size_t incomplete_tail(const char *p, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = (uint8_t)p[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

qilin_status qilin_detokenizer_push(qilin_detokenizer *d, int32_t id, char *out, size_t cap, size_t *n) {
    const qilin_tokenizer *t = d->t;
    *n = 0;
    if (id >= t->n_vocab && id < d->model_vocab) return QILIN_OK; /* a padding row of the model: no text */
    if (id < 0 || id >= t->n_vocab)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_detokenizer_push: id %d is outside the vocabulary (%d "
                           "tokens) of %s%s",
                           (int)id, (int)t->n_vocab, t->source,
                           d->model_vocab > t->n_vocab ? " and the model's padded vocabulary" : "");
    if (skipped(t, id, d->flags)) return QILIN_OK;
    const char *b = t->bytes[id];
    size_t nb = t->bytes_len[id];
    /* Only the whole text's first byte may be stripped: tokens with no bytes before it do not count. */
    bool first = !d->started && nb > 0;
    if (nb > 0) d->started = true;
    if (first && t->strip_first_space && b[0] == ' ') b++, nb--;
    size_t total = d->n_pending + nb;
    if (total > cap)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_detokenizer_push: token %d needs %zu bytes of output, "
                           "cap is %zu", (int)id, total, cap);
    memcpy(out, d->pending, d->n_pending);
    memcpy(out + d->n_pending, b, nb);
    size_t hold = incomplete_tail(out, total);
    memcpy(d->pending, out + total - hold, hold);
    d->n_pending = hold;
    *n = total - hold;
    return QILIN_OK;
}

size_t qilin_detokenizer_flush(qilin_detokenizer *d, char *out, size_t cap) {
    size_t n = d->n_pending < cap ? d->n_pending : cap;
    memcpy(out, d->pending, n);
    d->n_pending = 0;
    return n;
}

/* ---- accessors ----------------------------------------------------------------------------- */

int qilin_tokenizer_vocab_size(const qilin_tokenizer *t) { return t->n_vocab; }
size_t qilin_tokenizer_max_token_bytes(const qilin_tokenizer *t) { return t->max_token_bytes; }

int32_t qilin_tokenizer_token_id(const qilin_tokenizer *t, const char *text) {
    size_t n = strlen(text);
    int32_t id = tok_added_lookup(t, text, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, text, n);
}

const char *qilin_tokenizer_token_text(const qilin_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

bool qilin_tokenizer_is_special(const qilin_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & TOK_ATTR_SPECIAL);
}

int32_t qilin_tokenizer_bos_id(const qilin_tokenizer *t) { return t->bos; }
int32_t qilin_tokenizer_eos_id(const qilin_tokenizer *t) { return t->eos; }
const char *qilin_tokenizer_bos_text(const qilin_tokenizer *t) { return t->bos_text; }
const char *qilin_tokenizer_eos_text(const qilin_tokenizer *t) { return t->eos_text; }
const char *qilin_tokenizer_chat_template(const qilin_tokenizer *t) { return t->chat_template; }
const char *qilin_tokenizer_describe(const qilin_tokenizer *t) { return t->describe; }

void qilin_tokenizer_free(qilin_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_norm; i++) pcre2_code_free(t->norm[i].re);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    tok_strmap_free(&t->vocab);
    tok_strmap_free(&t->vocab_bytes);
    tok_pairmap_free(&t->merges);
    free(t->score_rank);
    free(t->text);
    free(t->text_len);
    free(t->bytes);
    free(t->bytes_len);
    free(t->attr);
    free(t->added);
    free(t->trie);
    free(t->source);
    tok_arena_free(&t->arena);
    free(t);
}

/* ---- choosing a loader --------------------------------------------------------------------- */

/* Present at all: a FIFO or directory under a tokenizer file's name is then
 * refused by the reader (host/fileio.h), naming it, rather than skipped. */
bool tok_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A tiktoken file starts with "<base64> <rank>\n"; a SentencePiece model is protobuf. */
static qilin_status looks_like_tiktoken(const char *path, bool *yes) {
    *yes = false;
    FILE *f;
    QILIN_TRY(qilin_file_fopen(path, &f));
    char line[512];
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *sp = ok ? strchr(line, ' ') : NULL;
    if (!sp || sp == line) return QILIN_OK;
    for (char *q = line; q < sp; q++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", *q)) return QILIN_OK;
    *yes = sp[1] >= '0' && sp[1] <= '9';
    return QILIN_OK;
}

static qilin_status load_gguf_path(const char *path, qilin_tokenizer **out) {
    gguf_file *g = NULL;
    QILIN_TRY(gguf_open(path, &g));
    qilin_status st = qilin_tokenizer_load_gguf(g, out);
    gguf_close(g);
    return st;
}

static qilin_status load_tiktoken_file(const char *path, const char *dir, qilin_tokenizer **out) {
    char config[4096];
    snprintf(config, sizeof config, "%s/tokenizer_config.json", dir);
    bool tiktoken;
    QILIN_TRY(looks_like_tiktoken(path, &tiktoken));
    if (!tiktoken)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: not a tiktoken rank file (a SentencePiece .model? qilin reads "
                           "the tokenizer.json converted from it)", path);
    return tok_load_tiktoken(path, config, out);
}

qilin_status qilin_tokenizer_load(const char *path, qilin_tokenizer **out) {
    if (!path || !out) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_tokenizer_load: NULL path or output");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return qilin_error(QILIN_ERR_IO, "tokenizer: %s does not exist", path);
    char dir[4096], f[4200];
    if (!S_ISDIR(st.st_mode)) { /* a file; its reader refuses a FIFO or a device, naming it */
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        if (ends_with(path, ".gguf")) return load_gguf_path(path, out);
        if (ends_with(path, ".json")) return tok_load_hf_json(path, out);
        return load_tiktoken_file(path, dir, out);
    }
    snprintf(f, sizeof f, "%s/tokenizer.json", path);
    if (tok_file_exists(f)) return tok_load_hf_json(f, out);
    snprintf(f, sizeof f, "%s/vocab.json", path);
    char m[4200];
    snprintf(m, sizeof m, "%s/merges.txt", path);
    if (tok_file_exists(f) && tok_file_exists(m)) return tok_load_vocab_merges(path, out);
    snprintf(f, sizeof f, "%s/tiktoken.model", path);
    if (tok_file_exists(f)) return load_tiktoken_file(f, path, out);
    snprintf(f, sizeof f, "%s/tokenizer.model", path);
    if (tok_file_exists(f)) return load_tiktoken_file(f, path, out);
    /* A directory holding only a GGUF: its tokenizer.ggml.* keys (and chat template), as the model loader
     * does. */
    if (qilin_file_find_single(path, ".gguf", f, sizeof f)) return load_gguf_path(f, out);
    return qilin_error(QILIN_ERR_IO,
                       "tokenizer: %s has none of tokenizer.json, vocab.json + merges.txt, "
                       "tiktoken.model, tokenizer.model or a single .gguf file",
                       path);
}
