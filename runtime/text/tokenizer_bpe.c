/* tokenizer_bpe.c — the merge engines and the tables they look things up in.
 *
 * One loop serves all three models. A piece starts as a list of symbols
 * (bytes for byte-level and tiktoken, UTF-8 characters otherwise); every
 * adjacent pair that could merge goes into a min-heap keyed by (rank, start);
 * the cheapest pair is merged, its neighbours' new pairs are pushed, and stale
 * heap entries are recognised and skipped when popped. This is the same order
 * as "merge the leftmost lowest-rank pair until none is left" — what HF
 * tokenizers, tiktoken and llama.cpp's SentencePiece code do — in O(n log n),
 * so a 100 KB run without a split point does not go quadratic.
 *
 * The models differ only in what a pair costs:
 *   MERGES  rank of the (left id, right id) merge in tokenizer.json / merges.txt
 *   RANKS   tiktoken: rank of the concatenated bytes, if they are a token
 *   SCORES  SentencePiece: order of the concatenated piece's score, highest first */
#include <stdlib.h>
#include <string.h>

#include "runtime/text/tokenizer_impl.h"

/* ---- arena -------------------------------------------------------------------------------- */

struct tok_block {
    struct tok_block *next;
    size_t used, cap;
    char data[];
};

char *tok_arena_copy(tok_arena *a, const char *p, size_t n) {
    struct tok_block *b = a->head;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *dst = b->data + b->used;
    if (n) memcpy(dst, p, n);
    dst[n] = 0;
    b->used += n + 1;
    return dst;
}

void tok_arena_free(tok_arena *a) {
    for (struct tok_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

/* ---- maps --------------------------------------------------------------------------------- */

uint32_t tok_hash(const char *p, size_t n) { /* FNV-1a, then a final mix */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

static qilin_status strmap_grow(tok_strmap *m) {
    size_t cap = m->slots ? (m->mask + 1) * 2 : 1024;
    tok_strslot *s = calloc(cap, sizeof *s);
    if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: map of %zu slots", cap);
    if (m->slots) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (!m->slots[i].key) continue;
            size_t j = m->slots[i].hash & (cap - 1);
            while (s[j].key) j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
    }
    m->slots = s;
    m->mask = cap - 1;
    return QILIN_OK;
}

qilin_status tok_strmap_reserve(tok_strmap *m, size_t n) {
    while (!m->slots || n * 2 > m->mask + 1) QILIN_TRY(strmap_grow(m));
    return QILIN_OK;
}

qilin_status tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, int32_t *old) {
    if (!m->slots || (m->count + 1) * 2 > m->mask + 1) QILIN_TRY(strmap_grow(m));
    uint32_t h = tok_hash(key, len);
    size_t j = h & m->mask;
    for (; m->slots[j].key; j = (j + 1) & m->mask) {
        tok_strslot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            if (old) *old = s->val;
            s->val = val;
            return QILIN_OK;
        }
    }
    m->slots[j] = (tok_strslot){key, (uint32_t)len, h, val};
    m->count++;
    if (old) *old = -1;
    return QILIN_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    uint32_t h = tok_hash(key, len);
    for (size_t j = h & m->mask; m->slots[j].key; j = (j + 1) & m->mask) {
        const tok_strslot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
    return -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    *m = (tok_strmap){0};
}

static size_t pair_slot(uint64_t key, size_t mask) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

static qilin_status pairmap_grow(tok_pairmap *m) {
    size_t cap = m->slots ? (m->mask + 1) * 2 : 1024;
    tok_pairslot *s = malloc(cap * sizeof *s);
    if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: merge map of %zu slots", cap);
    for (size_t i = 0; i < cap; i++) s[i].key = UINT64_MAX;
    if (m->slots) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->slots[i].key == UINT64_MAX) continue;
            size_t j = pair_slot(m->slots[i].key, cap - 1);
            while (s[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
    }
    m->slots = s;
    m->mask = cap - 1;
    return QILIN_OK;
}

qilin_status tok_pairmap_reserve(tok_pairmap *m, size_t n) {
    while (!m->slots || n * 2 > m->mask + 1) QILIN_TRY(pairmap_grow(m));
    return QILIN_OK;
}

/* A later duplicate overwrites an earlier one, as HF's merge HashMap does. */
qilin_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    if (!m->slots || (m->count + 1) * 2 > m->mask + 1) QILIN_TRY(pairmap_grow(m));
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = pair_slot(key, m->mask);
    while (m->slots[j].key != UINT64_MAX && m->slots[j].key != key) j = (j + 1) & m->mask;
    if (m->slots[j].key == UINT64_MAX) m->count++;
    m->slots[j] = (tok_pairslot){key, rank, id};
    return QILIN_OK;
}

bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    if (!m->slots) return false;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t j = pair_slot(key, m->mask); m->slots[j].key != UINT64_MAX; j = (j + 1) & m->mask) {
        if (m->slots[j].key == key) {
            *rank = m->slots[j].rank;
            *id = m->slots[j].id;
            return true;
        }
    }
    return false;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->slots);
    *m = (tok_pairmap){0};
}

/* ---- bytes, code points, UTF-8 ----------------------------------------------------------------- */

/* GPT-2's table: printable bytes (33-126, 161-172, 174-255) stand for
 * themselves; the other 68 get 256, 257, ... in byte order. */
static bool byte_printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

/* The 68 others, in order: 0-32, 127-160, 173. */
uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173 */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 127);
    return cp == 256 + 67 ? 173 : -1;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

size_t tok_bytes_to_text(const char *p, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_put(tok_byte_to_cp((uint8_t)p[i]), out + k);
    return k;
}

size_t tok_utf8_next(const char *p, size_t n, int32_t *cp) {
    const uint8_t *s = (const uint8_t *)p;
    uint8_t c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else goto invalid;
    if (len > n) goto invalid;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto invalid;
    *cp = (int32_t)v;
    return len;
invalid:
    *cp = -1;
    return 1;
}

qilin_status qilin_ids_push(qilin_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: %zu ids", cap);
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return QILIN_OK;
}

void qilin_ids_free(qilin_ids *v) {
    if (!v) return;
    free(v->ids);
    *v = (qilin_ids){0};
}

/* ---- the merge loop ------------------------------------------------------------------------ */

struct tok_sym {
    int32_t id; /* -1: not (yet) a token (SCORES: falls back to bytes at the end) */
    uint32_t start, end;
    int32_t prev, next; /* -1 at the ends; a merged-away symbol has end == 0 */
};

struct tok_cand {
    uint32_t rank, start, end; /* start of left, end of right when pushed */
    int32_t left, right, id;
};

static bool cand_less(const struct tok_cand *a, const struct tok_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->start < b->start);
}

static void heap_push(struct tok_cand *h, size_t *n, struct tok_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_less(&c, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = c;
}

static struct tok_cand heap_pop(struct tok_cand *h, size_t *n) {
    struct tok_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* What merging a and b would cost and give; false when they cannot merge. */
static bool pair_cost(const qilin_tokenizer *t, const char *p, const struct tok_sym *a, const struct tok_sym *b,
                      uint32_t *rank, int32_t *id) {
    switch (t->model) {
    case TOK_MODEL_MERGES:
        return a->id >= 0 && b->id >= 0 && tok_pairmap_get(&t->merges, a->id, b->id, rank, id);
    case TOK_MODEL_RANKS:
        *id = tok_strmap_get(&t->vocab_bytes, p + a->start, b->end - a->start);
        *rank = (uint32_t)*id;
        return *id >= 0;
    case TOK_MODEL_SCORES:
        *id = tok_strmap_get(&t->vocab, p + a->start, b->end - a->start);
        if (*id < 0) return false;
        *rank = t->score_rank[*id];
        return true;
    }
    return false;
}

static void push_pair(const qilin_tokenizer *t, const char *p, struct tok_sym *sym, int32_t l, struct tok_cand *h,
                      size_t *nh) {
    int32_t r = sym[l].next;
    uint32_t rank;
    int32_t id;
    if (r < 0 || !pair_cost(t, p, &sym[l], &sym[r], &rank, &id)) return;
    heap_push(h, nh, (struct tok_cand){rank, sym[l].start, sym[r].end, l, r, id});
}

/* Initial symbols of a HF BPE piece that is not byte-level: one per UTF-8
 * character (an invalid byte counts as one), byte fallback or <unk> where the
 * character is not in the vocabulary. */
static size_t init_chars(const qilin_tokenizer *t, const char *p, size_t n, struct tok_sym *sym) {
    size_t ns = 0;
    bool unk_open = false;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t len = tok_utf8_next(p + i, n - i, &cp);
        int32_t id = tok_strmap_get(&t->vocab, p + i, len);
        if (id < 0 && t->model == TOK_MODEL_MERGES && t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < len; k++) all = all && t->byte_token[(uint8_t)p[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < len; k++)
                    sym[ns++] = (struct tok_sym){t->byte_token[(uint8_t)p[i + k]], (uint32_t)(i + k),
                                                 (uint32_t)(i + k + 1), 0, 0};
                unk_open = false;
                i += len;
                continue;
            }
        }
        if (id < 0 && t->model == TOK_MODEL_MERGES) {
            if (t->unk_id >= 0) {
                if (unk_open && t->fuse_unk) sym[ns - 1].end = (uint32_t)(i + len);
                else sym[ns++] = (struct tok_sym){t->unk_id, (uint32_t)i, (uint32_t)(i + len), 0, 0};
                unk_open = true;
            } /* no unk token: HF drops the character */
            i += len;
            continue;
        }
        sym[ns++] = (struct tok_sym){id, (uint32_t)i, (uint32_t)(i + len), 0, 0};
        unk_open = false;
        i += len;
    }
    return ns;
}

static qilin_status scratch_reserve(tok_bpe_scratch *s, size_t n) {
    if (n > s->cap_sym) {
        size_t cap = n < 64 ? 64 : n * 2;
        struct tok_sym *sym = realloc(s->sym, cap * sizeof *sym);
        struct tok_cand *heap = sym ? realloc(s->heap, cap * 2 * sizeof *heap) : NULL;
        if (sym) s->sym = sym;
        if (heap) s->heap = heap;
        if (!sym || !heap) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: piece of %zu bytes", n);
        s->cap_sym = cap;
        s->cap_heap = cap * 2;
    }
    return QILIN_OK;
}

/* Emits a finished symbol; a SentencePiece symbol that is not a token becomes its bytes. */
static qilin_status emit_sym(const qilin_tokenizer *t, const char *p, const struct tok_sym *s, qilin_ids *out) {
    if (s->id >= 0) return qilin_ids_push(out, s->id);
    for (uint32_t i = s->start; i < s->end; i++) {
        int32_t b = t->byte_token[(uint8_t)p[i]];
        if (b < 0) b = t->unk_id;
        if (b >= 0) QILIN_TRY(qilin_ids_push(out, b));
    }
    return QILIN_OK;
}

qilin_status tok_bpe_piece(const qilin_tokenizer *t, tok_bpe_scratch *s, const char *p, size_t n, qilin_ids *out) {
    if (n == 0) return QILIN_OK;
    if (t->ignore_merges || t->model == TOK_MODEL_RANKS) { /* a whole-piece token wins outright */
        const tok_strmap *m = t->byte_level || t->model == TOK_MODEL_RANKS ? &t->vocab_bytes : &t->vocab;
        int32_t id = tok_strmap_get(m, p, n);
        if (id >= 0) return qilin_ids_push(out, id);
    }
    QILIN_TRY(scratch_reserve(s, n));
    struct tok_sym *sym = s->sym;
    size_t ns = 0;
    if (t->byte_level || t->model == TOK_MODEL_RANKS) {
        for (size_t i = 0; i < n; i++) { /* byte_char_id: the one-byte token (tiktoken) or the byte's char */
            int32_t id = t->byte_char_id[(uint8_t)p[i]];
            if (id < 0) continue; /* a byte the vocabulary lacks: HF drops it */
            sym[ns++] = (struct tok_sym){id, (uint32_t)i, (uint32_t)i + 1, 0, 0};
        }
    } else {
        ns = init_chars(t, p, n, sym);
    }
    for (size_t i = 0; i < ns; i++) {
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) push_pair(t, p, sym, (int32_t)i, s->heap, &nh);
    while (nh) {
        struct tok_cand c = heap_pop(s->heap, &nh);
        struct tok_sym *l = &sym[c.left], *r = &sym[c.right];
        if (l->end == 0 || r->end != c.end || l->next != c.right || l->start != c.start) continue; /* stale */
        l->id = c.id;
        l->end = r->end;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.left;
        r->end = 0;
        if (l->prev >= 0) push_pair(t, p, sym, l->prev, s->heap, &nh);
        push_pair(t, p, sym, c.left, s->heap, &nh);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sym[i].next) QILIN_TRY(emit_sym(t, p, &sym[i], out));
    return QILIN_OK;
}

void tok_bpe_scratch_free(tok_bpe_scratch *s) {
    free(s->sym);
    free(s->heap);
    *s = (tok_bpe_scratch){0};
}
