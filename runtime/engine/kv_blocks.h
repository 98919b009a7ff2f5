/* kv_blocks.h — the engine's KV block manager (pure host C, no device).
 *
 * A pool of num_blocks blocks of block_size token positions each. A
 * sequence owns a block table: the blocks holding its positions 0..n-1 in
 * order. Blocks are refcounted: a block shared by several sequences (a
 * common prefix) is counted once in the pool.
 *
 * Prefix caching: once a block is full of computed positions it is keyed by
 * key = hash(previous block's key, its block_size token ids) and entered in
 * a table. A sequence being admitted looks its prompt's full blocks up key
 * by key and shares every block found (a hit) instead of taking a new one.
 * When the last sequence using a keyed block lets it go the block stays
 * cached (ref 0, "evictable"); it is reused only when the pool has no plain
 * free block left, least recently released first. A sequence releases its
 * blocks tail first, so its prefix outlives its tail. A lookup compares the
 * block's tokens and the previous key too, so only a 64-bit collision of
 * the previous key could give a wrong hit.
 *
 * Block indices are those of the model's KV pool (host/forward.h): the
 * engine passes each sequence's table to qilin_forward, whose kernels read
 * and write the sequence's KV through it (engine.h).
 *
 * Not thread safe: one pool per engine, used by the engine's thread. */
#ifndef QILIN_RUNTIME_ENGINE_KV_BLOCKS_H
#define QILIN_RUNTIME_ENGINE_KV_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_kv_pool qilin_kv_pool;

/* One sequence's blocks. Zero-initialise; qilin_kv_table_release empties it. */
typedef struct qilin_kv_table {
    int *blocks;    /* [n_blocks] pool indices, position p in blocks[p / block_size] */
    int n_blocks, cap;
    int n_keyed;    /* blocks[0 .. n_keyed) are entered in the prefix table (or were found there) */
    uint64_t last_key; /* key of blocks[n_keyed - 1] (0 when n_keyed is 0) */
    int match_lookups, match_hits; /* what the last qilin_kv_table_match counted in the stats */
} qilin_kv_table;

typedef struct qilin_kv_stats {
    int num_blocks, block_size;
    int free_blocks;      /* ref 0: plain free + evictable cached */
    int cached_blocks;    /* keyed blocks, in use or evictable */
    uint64_t lookups;     /* full prompt blocks looked up at admission */
    uint64_t hits;        /* ... found in the prefix table */
    uint64_t evictions;   /* cached blocks reused for something else */
} qilin_kv_stats;

/* num_blocks >= 1, block_size >= 1; prefix_caching false keys nothing. */
qilin_status qilin_kv_pool_create(int num_blocks, int block_size, bool prefix_caching, qilin_kv_pool **out);
void qilin_kv_pool_free(qilin_kv_pool *p); /* NULL does nothing; tables still holding blocks are the caller's bug */
int qilin_kv_pool_block_size(const qilin_kv_pool *p);
void qilin_kv_pool_stats(const qilin_kv_pool *p, qilin_kv_stats *out);
int qilin_kv_block_ref(const qilin_kv_pool *p, int block); /* a block's refcount (tests) */

/* Blocks needed to hold n positions. */
int qilin_kv_blocks_for(const qilin_kv_pool *p, int64_t n);

/* For an empty table: shares the cached blocks holding the longest keyed
 * prefix of tokens[0 .. n) (full blocks only, at most (n - 1) / block_size
 * of them so that one token is always left to compute); *matched receives
 * the positions covered (a multiple of block_size). */
qilin_status qilin_kv_table_match(qilin_kv_pool *p, qilin_kv_table *t, const int *tokens, int n, int *matched);

/* Makes t hold at least n positions, taking free blocks (evicting cached
 * ones LRU when no plain free block is left). All or nothing: *grown false,
 * with t unchanged, when the pool has too few blocks. */
qilin_status qilin_kv_table_grow(qilin_kv_pool *p, qilin_kv_table *t, int n, bool *grown);

/* Keys the full blocks of t that tokens[0 .. n_computed) now fill (their
 * positions are computed), so later sequences can share them. A block whose
 * key is already cached elsewhere stays private. */
void qilin_kv_table_commit(qilin_kv_pool *p, qilin_kv_table *t, const int *tokens, int n_computed);

/* Drops t's references, tail first; frees t's array. */
void qilin_kv_table_release(qilin_kv_pool *p, qilin_kv_table *t);

/* Undoes an admission that matched and then could not grow: releases t
 * like qilin_kv_table_release and takes its match's lookups and hits back
 * out of the stats, so a request retried at a later step counts once. */
void qilin_kv_table_unmatch(qilin_kv_pool *p, qilin_kv_table *t);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_RUNTIME_ENGINE_KV_BLOCKS_H */
