/* kv_blocks.c — the block pool, block tables and the prefix table
 * (kv_blocks.h has the rules).
 *
 * Every block is in exactly one of three states:
 *   in use     ref > 0 (held by one or more tables);
 *   free       ref 0, not keyed: on the free stack;
 *   evictable  ref 0, keyed: on the LRU list (head = least recently released).
 * Keyed blocks (in use or evictable) are also in the hash chains. */
#include "runtime/engine/kv_blocks.h"

#include <stdlib.h>
#include <string.h>

struct qilin_kv_pool {
    int n_blocks, block_size;
    bool caching;
    int *ref;
    bool *keyed;
    uint64_t *key, *parent; /* a keyed block's key and its previous block's key */
    int *tokens;            /* [n_blocks, block_size]: a keyed block's token ids */
    int *free_stack, n_free;
    int *lru_prev, *lru_next, lru_head, lru_tail, n_evictable;
    int *bucket, *chain_next, bucket_mask;
    int n_cached;
    uint64_t lookups, hits, evictions;
};

/* ---- keys and the hash chains ------------------------------------------- */

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t block_key(uint64_t parent, const int *tokens, int n) {
    uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < n; i++) h = mix64(h ^ (uint32_t)tokens[i]);
    return h;
}

static int find_keyed(const qilin_kv_pool *p, uint64_t key, uint64_t parent, const int *tokens) {
    size_t bytes = (size_t)p->block_size * sizeof(int);
    for (int b = p->bucket[key & (uint64_t)p->bucket_mask]; b >= 0; b = p->chain_next[b])
        if (p->key[b] == key && p->parent[b] == parent &&
            memcmp(p->tokens + (size_t)b * (size_t)p->block_size, tokens, bytes) == 0)
            return b;
    return -1;
}

static void enter_key(qilin_kv_pool *p, int b, uint64_t key, uint64_t parent, const int *tokens) {
    p->keyed[b] = true, p->key[b] = key, p->parent[b] = parent;
    memcpy(p->tokens + (size_t)b * (size_t)p->block_size, tokens, (size_t)p->block_size * sizeof(int));
    int *head = &p->bucket[key & (uint64_t)p->bucket_mask];
    p->chain_next[b] = *head, *head = b;
    p->n_cached++;
}

static void drop_key(qilin_kv_pool *p, int b) {
    int *at = &p->bucket[p->key[b] & (uint64_t)p->bucket_mask];
    while (*at != b) at = &p->chain_next[*at];
    *at = p->chain_next[b];
    p->keyed[b] = false;
    p->n_cached--;
}

/* ---- the LRU list of evictable blocks ----------------------------------- */

static void lru_push_tail(qilin_kv_pool *p, int b) {
    p->lru_prev[b] = p->lru_tail, p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_evictable++;
}

static void lru_unlink(qilin_kv_pool *p, int b) {
    if (p->lru_prev[b] >= 0) p->lru_next[p->lru_prev[b]] = p->lru_next[b];
    else p->lru_head = p->lru_next[b];
    if (p->lru_next[b] >= 0) p->lru_prev[p->lru_next[b]] = p->lru_prev[b];
    else p->lru_tail = p->lru_prev[b];
    p->n_evictable--;
}

/* ---- the pool ----------------------------------------------------------- */

qilin_status qilin_kv_pool_create(int num_blocks, int block_size, bool prefix_caching, qilin_kv_pool **out) {
    *out = NULL;
    if (num_blocks < 1 || block_size < 1 || (int64_t)num_blocks * block_size > INT32_MAX)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_kv_pool_create: %d blocks of %d tokens: both must be >= 1 and their product "
                           "fit in 32 bits",
                           num_blocks, block_size);
    qilin_kv_pool *p = calloc(1, sizeof *p);
    int buckets = 1;
    while (buckets < 2 * num_blocks) buckets *= 2;
    size_t n = (size_t)num_blocks;
    if (p) {
        p->ref = calloc(n, sizeof(int)), p->keyed = calloc(n, sizeof(bool));
        p->key = calloc(n, sizeof(uint64_t)), p->parent = calloc(n, sizeof(uint64_t));
        p->tokens = prefix_caching ? malloc(n * (size_t)block_size * sizeof(int)) : NULL;
        p->free_stack = malloc(n * sizeof(int));
        p->lru_prev = malloc(n * sizeof(int)), p->lru_next = malloc(n * sizeof(int));
        p->bucket = malloc((size_t)buckets * sizeof(int)), p->chain_next = malloc(n * sizeof(int));
    }
    if (!p || !p->ref || !p->keyed || !p->key || !p->parent || (prefix_caching && !p->tokens) ||
        !p->free_stack || !p->lru_prev || !p->lru_next || !p->bucket || !p->chain_next) {
        qilin_kv_pool_free(p);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_kv_pool_create: %d blocks", num_blocks);
    }
    p->n_blocks = num_blocks, p->block_size = block_size, p->caching = prefix_caching;
    /* popped from the top: block 0 is handed out first */
    for (int i = 0; i < num_blocks; i++) p->free_stack[i] = num_blocks - 1 - i;
    p->n_free = num_blocks;
    p->lru_head = p->lru_tail = -1;
    for (int i = 0; i < buckets; i++) p->bucket[i] = -1;
    p->bucket_mask = buckets - 1;
    *out = p;
    return QILIN_OK;
}

void qilin_kv_pool_free(qilin_kv_pool *p) {
    if (!p) return;
    free(p->ref), free(p->keyed), free(p->key), free(p->parent), free(p->tokens), free(p->free_stack);
    free(p->lru_prev), free(p->lru_next), free(p->bucket), free(p->chain_next);
    free(p);
}

int qilin_kv_pool_block_size(const qilin_kv_pool *p) { return p->block_size; }

int qilin_kv_block_ref(const qilin_kv_pool *p, int block) {
    return block >= 0 && block < p->n_blocks ? p->ref[block] : -1;
}

void qilin_kv_pool_stats(const qilin_kv_pool *p, qilin_kv_stats *out) {
    *out = (qilin_kv_stats){.num_blocks = p->n_blocks,
                            .block_size = p->block_size,
                            .free_blocks = p->n_free + p->n_evictable,
                            .cached_blocks = p->n_cached,
                            .lookups = p->lookups,
                            .hits = p->hits,
                            .evictions = p->evictions};
}

int qilin_kv_blocks_for(const qilin_kv_pool *p, int64_t n) {
    return n <= 0 ? 0 : (int)((n + p->block_size - 1) / p->block_size);
}

/* A plain free block if there is one, else the least recently released
 * cached one (forgetting its key); the caller checked that one exists. */
static int take_block(qilin_kv_pool *p) {
    int b;
    if (p->n_free > 0) {
        b = p->free_stack[--p->n_free];
    } else {
        b = p->lru_head;
        lru_unlink(p, b);
        drop_key(p, b);
        p->evictions++;
    }
    p->ref[b] = 1;
    return b;
}

/* ---- tables ------------------------------------------------------------- */

static qilin_status reserve(qilin_kv_table *t, int n_blocks) {
    if (n_blocks <= t->cap) return QILIN_OK;
    int cap = t->cap ? t->cap : 4;
    while (cap < n_blocks) cap *= 2;
    int *grown = realloc(t->blocks, (size_t)cap * sizeof(int));
    if (!grown) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_kv_table: %d block entries", cap);
    t->blocks = grown, t->cap = cap;
    return QILIN_OK;
}

qilin_status qilin_kv_table_match(qilin_kv_pool *p, qilin_kv_table *t, const int *tokens, int n, int *matched) {
    *matched = 0;
    if (t->n_blocks != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_kv_table_match: the table already holds %d blocks; match before growing",
                           t->n_blocks);
    t->match_lookups = t->match_hits = 0;
    if (!p->caching || n < 2) return QILIN_OK;
    int bs = p->block_size, eligible = (n - 1) / bs;
    QILIN_TRY(reserve(t, eligible));
    p->lookups += (uint64_t)eligible;
    uint64_t parent = 0;
    for (int i = 0; i < eligible; i++) {
        const int *block_tokens = tokens + (size_t)i * (size_t)bs;
        uint64_t key = block_key(parent, block_tokens, bs);
        int b = find_keyed(p, key, parent, block_tokens);
        if (b < 0) break;
        if (p->ref[b] == 0) lru_unlink(p, b);
        p->ref[b]++;
        t->blocks[t->n_blocks++] = b;
        t->n_keyed = t->n_blocks, t->last_key = key;
        parent = key;
        p->hits++;
    }
    t->match_lookups = eligible, t->match_hits = t->n_blocks;
    *matched = t->n_blocks * bs;
    return QILIN_OK;
}

qilin_status qilin_kv_table_grow(qilin_kv_pool *p, qilin_kv_table *t, int n, bool *grown) {
    int need = qilin_kv_blocks_for(p, n) - t->n_blocks;
    *grown = true;
    if (need <= 0) return QILIN_OK;
    if (need > p->n_free + p->n_evictable) {
        *grown = false;
        return QILIN_OK;
    }
    QILIN_TRY(reserve(t, t->n_blocks + need));
    for (int i = 0; i < need; i++) t->blocks[t->n_blocks++] = take_block(p);
    return QILIN_OK;
}

void qilin_kv_table_commit(qilin_kv_pool *p, qilin_kv_table *t, const int *tokens, int n_computed) {
    if (!p->caching) return;
    int bs = p->block_size, full = n_computed / bs;
    if (full > t->n_blocks) full = t->n_blocks;
    for (int i = t->n_keyed; i < full; i++) {
        const int *block_tokens = tokens + (size_t)i * (size_t)bs;
        uint64_t key = block_key(t->last_key, block_tokens, bs);
        int b = t->blocks[i];
        if (!p->keyed[b] && find_keyed(p, key, t->last_key, block_tokens) < 0)
            enter_key(p, b, key, t->last_key, block_tokens);
        t->n_keyed = i + 1, t->last_key = key;
    }
}

void qilin_kv_table_release(qilin_kv_pool *p, qilin_kv_table *t) {
    for (int i = t->n_blocks - 1; i >= 0; i--) {
        int b = t->blocks[i];
        if (--p->ref[b] > 0) continue;
        if (p->keyed[b]) lru_push_tail(p, b);
        else p->free_stack[p->n_free++] = b;
    }
    free(t->blocks);
    memset(t, 0, sizeof *t);
}

void qilin_kv_table_unmatch(qilin_kv_pool *p, qilin_kv_table *t) {
    p->lookups -= (uint64_t)t->match_lookups, p->hits -= (uint64_t)t->match_hits;
    t->match_lookups = t->match_hits = 0;
    qilin_kv_table_release(p, t);
}
