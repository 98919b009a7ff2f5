/* checkpoint.h — a model's weights on disk, whatever the container, and
 * their binding to a descriptor's tensor list (host/model.h).
 *
 * qilin_checkpoint_open maps a safetensors checkpoint (one file, or a
 * directory / index of shards) or a GGUF file and presents every tensor the
 * same way: name, on-disk dtype, logical row-major shape (GGUF's ne[]
 * reversed), data pointer into the read-only mapping (zero-copy) and byte
 * size. qilin_model_bind then matches the descriptor's specs to those
 * tensors: every required spec must be present with its shape, quantised
 * weights bring their scale companions along, and every tensor left over
 * must be ignorable (MTP layers, rotary/causal-mask buffers, a tied
 * lm_head copy) — anything else is an error naming it.
 *
 * Quantised HF weights (models.md §10):
 *   FP8 block (DeepSeek-V3, Kimi K2): W is F8_E4M3 [out, in] with
 *     W.weight_scale_inv F32 [ceil(out/bo), ceil(in/bi)], block [bo, bi] from
 *     quantization_config.weight_block_size (128 x 128 when absent).
 *   INT4 groups (compressed-tensors pack-quantized, Kimi K2-Thinking): the
 *     spec's W.weight is stored as W.weight_packed I32 [out, ceil(in/8)],
 *     W.weight_scale [out, in/group] and W.weight_shape [2] = {out, in}.
 * GGUF block formats (Q8_0, Q4_K, ...) are plain dtypes here; their blocks
 * run along the last (fastest) dimension.
 *
 * Thread safety: open/close/bind/free are not concurrent with other calls on
 * the same handles; read-only queries may run concurrently. */
#ifndef QILIN_HOST_CHECKPOINT_H
#define QILIN_HOST_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"
#include "host/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
/* On-disk dtypes of both containers.
 *      enum               name       elements/block  bytes/block */
#define QILIN_WDTYPE_TABLE(X)                     \
    X(QILIN_WDT_F64,      "F64",      1,   8)     \
    X(QILIN_WDT_F32,      "F32",      1,   4)     \
    X(QILIN_WDT_F16,      "F16",      1,   2)     \
    X(QILIN_WDT_BF16,     "BF16",     1,   2)     \
    X(QILIN_WDT_F8_E4M3,  "F8_E4M3",  1,   1)     \
    X(QILIN_WDT_I64,      "I64",      1,   8)     \
    X(QILIN_WDT_I32,      "I32",      1,   4)     \
    X(QILIN_WDT_I16,      "I16",      1,   2)     \
    X(QILIN_WDT_I8,       "I8",       1,   1)     \
    X(QILIN_WDT_U8,       "U8",       1,   1)     \
    X(QILIN_WDT_BOOL,     "BOOL",     1,   1)     \
    X(QILIN_WDT_Q4_0,     "Q4_0",    32,  18)     \
    X(QILIN_WDT_Q4_1,     "Q4_1",    32,  20)     \
    X(QILIN_WDT_Q5_0,     "Q5_0",    32,  22)     \
    X(QILIN_WDT_Q5_1,     "Q5_1",    32,  24)     \
    X(QILIN_WDT_Q8_0,     "Q8_0",    32,  34)     \
    X(QILIN_WDT_Q8_1,     "Q8_1",    32,  36)     \
    X(QILIN_WDT_Q2_K,     "Q2_K",   256,  84)     \
    X(QILIN_WDT_Q3_K,     "Q3_K",   256, 110)     \
    X(QILIN_WDT_Q4_K,     "Q4_K",   256, 144)     \
    X(QILIN_WDT_Q5_K,     "Q5_K",   256, 176)     \
    X(QILIN_WDT_Q6_K,     "Q6_K",   256, 210)     \
    X(QILIN_WDT_Q8_K,     "Q8_K",   256, 292)
/* clang-format on */

typedef enum qilin_wdtype {
#define QILIN_WDTYPE_ENUM_(e, name, blck, bytes) e,
    QILIN_WDTYPE_TABLE(QILIN_WDTYPE_ENUM_)
#undef QILIN_WDTYPE_ENUM_
        QILIN_WDTYPE_COUNT
} qilin_wdtype;

/* "BF16", "Q4_K"; "?" outside the table. */
const char *qilin_wdtype_name(qilin_wdtype t);
/* Elements per block (1 for plain types) and bytes per block; 0 outside the table. */
int qilin_wdtype_block(qilin_wdtype t, size_t *block_bytes);

enum { QILIN_CKPT_MAX_DIMS = 4 };

typedef struct qilin_ckpt_tensor {
    const char *name;
    const char *file; /* the file holding the data */
    qilin_wdtype dtype;
    int n_dims;
    int64_t shape[QILIN_CKPT_MAX_DIMS]; /* logical, row-major (GGUF: ne reversed) */
    const void *data;                   /* into the read-only mapping */
    size_t nbytes;
} qilin_ckpt_tensor;

typedef struct qilin_checkpoint qilin_checkpoint;

/* `path`: a directory (model.safetensors.index.json, model.safetensors, or a
 * single *.gguf), a .safetensors file, an index (*.index.json), another
 * .json (a config: its directory), or a .gguf file. Everything is validated
 * by the container
 * readers at open. */
qilin_status qilin_checkpoint_open(const char *path, qilin_checkpoint **out);
void qilin_checkpoint_close(qilin_checkpoint *c); /* NULL does nothing */

/* A checkpoint over tensors made in memory (random_weights.h): takes
 * `tensors` (malloc'd, n of them; sorted here) and `owner`, which
 * release(owner) frees at close (or now, on failure). Names and data must live
 * until then. `path` names it in messages. */
qilin_status qilin_checkpoint_adopt(const char *path, qilin_ckpt_tensor *tensors, int64_t n, void *owner,
                                    void (*release)(void *), qilin_checkpoint **out);

const char *qilin_checkpoint_path(const qilin_checkpoint *c);
bool qilin_checkpoint_is_gguf(const qilin_checkpoint *c);
int64_t qilin_checkpoint_tensor_count(const qilin_checkpoint *c);
/* Sorted by name; valid until close. */
const qilin_ckpt_tensor *qilin_checkpoint_tensor_at(const qilin_checkpoint *c, int64_t i);
const qilin_ckpt_tensor *qilin_checkpoint_find(const qilin_checkpoint *c, const char *name);

typedef enum qilin_wquant {
    QILIN_WQ_NONE = 0,   /* plain or GGUF block dtype */
    QILIN_WQ_FP8_BLOCK,  /* F8_E4M3 + weight_scale_inv block scales */
    QILIN_WQ_INT4_GROUP, /* weight_packed (I32, 8 nibbles each) + weight_scale per group */
} qilin_wquant;

typedef struct qilin_bound_tensor {
    int spec;         /* index into desc->tensors */
    const char *name; /* the checkpoint tensor (INT4: the weight_packed one) */
    const char *file;
    const void *data; /* NULL only for an absent optional spec */
    size_t nbytes;
    qilin_wdtype dtype;
    int n_dims;
    int64_t shape[QILIN_CKPT_MAX_DIMS]; /* as stored (INT4: the packed [out, ceil(in/8)]) */
    qilin_wquant quant;
    const void *scale; /* FP8: weight_scale_inv; INT4: weight_scale; else NULL */
    size_t scale_nbytes;
    qilin_wdtype scale_dtype;
    int scale_n_dims;
    int64_t scale_shape[QILIN_CKPT_MAX_DIMS];
    int block[2]; /* FP8: [rows, cols] per scale; INT4: [1, group] */
} qilin_bound_tensor;

typedef struct qilin_bound_model {
    const qilin_model_desc *desc; /* borrowed: outlives the binding */
    const qilin_checkpoint *ckpt; /* borrowed: outlives the binding */
    qilin_bound_tensor *tensors;  /* [n_tensors], one per spec in desc->tensors order */
    int n_tensors;
    int64_t n_ignored;    /* checkpoint tensors skipped as ignorable */
    int64_t n_companions; /* scale / shape companions consumed */
} qilin_bound_model;

/* Binds every spec of `d` to a tensor of `c`. Errors (QILIN_ERR_FORMAT, the
 * message naming the checkpoint and the tensor): a required spec missing; a
 * shape differing from the spec (expected and found shapes); a dtype that
 * cannot hold weights (integers, bool) outside a packed INT4 group; an FP8
 * weight without its scale or a companion of the wrong shape; a tensor that
 * is neither bound, a companion of a bound one, nor ignorable. */
qilin_status qilin_model_bind(const qilin_model_desc *d, const qilin_checkpoint *c, qilin_bound_model **out);
void qilin_bound_model_free(qilin_bound_model *b); /* NULL does nothing */

/* The bound tensor for (slot, layer, expert), or NULL (absent or no such spec). */
const qilin_bound_tensor *qilin_bound_get(const qilin_bound_model *b, qilin_slot slot, int layer, int expert);

/* Prints the checkpoint's tensors by dtype (count, bytes) and, when `b` is
 * given, the binding's counts (qilin inspect). `file` is a FILE *. */
void qilin_checkpoint_print_summary(const qilin_checkpoint *c, const qilin_bound_model *b, void *file);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_CHECKPOINT_H */
