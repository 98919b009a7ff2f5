/* random_weights.c — a checkpoint of seeded random weights in the release's
 * format, from a descriptor (see random_weights.h). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "host/random_weights.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/quant.h"

/* kChunkBytes: the unit of fill work and of a generator's stream (a
 * multiple of 8, so a chunk never splits an element or a nibble word). */
enum { kAlign = 64, kMaxTensorsPerSpec = 3, kMaxFillThreads = 64 };
static const size_t kChunkBytes = (size_t)4 << 20;

/* What backs the tensors: their names and one mapping for all the data. */
typedef struct arena {
    char *names;
    size_t names_used, names_cap;
    unsigned char *data;
    size_t data_bytes;
} arena;

static void arena_release(void *p) {
    arena *a = p;
    if (!a) return;
    if (a->data) munmap(a->data, a->data_bytes);
    free(a->names);
    free(a);
}

typedef enum fill_kind { FILL_NORMAL, FILL_ONES, FILL_ZEROS, FILL_FP8, FILL_NIBBLES, FILL_SCALE, FILL_SHAPE } fill_kind;

/* One tensor to make: its record plus how to fill it. */
typedef struct plan_entry {
    qilin_ckpt_tensor t;
    size_t offset;
    fill_kind fill;
    float scale;     /* std of FILL_NORMAL, value of FILL_SCALE */
    int64_t dims[2]; /* FILL_SHAPE: the weight's [out, in] */
} plan_entry;

static bool is_linear(const qilin_tensor_spec *s) {
    if (s->n_dims != 2) return false;
    switch (s->slot) {
    case QILIN_W_EMBED:
    case QILIN_W_LM_HEAD:
    case QILIN_W_ROUTER:
    case QILIN_W_SHARED_EXPERT_GATE:
        return false;
    default:
        return true;
    }
}

static bool is_expert(qilin_slot s) { return s == QILIN_W_EXP_GATE || s == QILIN_W_EXP_UP || s == QILIN_W_EXP_DOWN; }

static bool is_norm(qilin_slot s) {
    return s == QILIN_W_FINAL_NORM || s == QILIN_W_ATTN_NORM || s == QILIN_W_FFN_NORM || s == QILIN_W_Q_NORM ||
           s == QILIN_W_K_NORM || s == QILIN_W_Q_A_NORM || s == QILIN_W_KV_A_NORM;
}

static const char *add_name(arena *a, const char *base, const char *suffix) {
    size_t n = strlen(base) + strlen(suffix) + 1;
    const char *out = a->names + a->names_used;
    snprintf(a->names + a->names_used, n, "%s%s", base, suffix);
    a->names_used += n;
    return out;
}

static size_t tensor_bytes(qilin_wdtype t, int n_dims, const int64_t *shape) {
    size_t block_bytes = 0, n = 1;
    qilin_wdtype_block(t, &block_bytes);
    for (int i = 0; i < n_dims; i++) n *= (size_t)shape[i];
    return n * block_bytes;
}

static plan_entry *add_entry(plan_entry *e, size_t *at, const char *name, qilin_wdtype dt, int n_dims, int64_t d0,
                             int64_t d1, fill_kind fill, float scale) {
    e->t = (qilin_ckpt_tensor){.name = name, .file = "random weights", .dtype = dt, .n_dims = n_dims};
    e->t.shape[0] = d0;
    if (n_dims > 1) e->t.shape[1] = d1;
    e->t.nbytes = tensor_bytes(dt, n_dims, e->t.shape);
    e->offset = *at;
    *at += (e->t.nbytes + kAlign - 1) / kAlign * kAlign;
    e->fill = fill;
    e->scale = scale;
    return e + 1;
}

/* The tensors of one spec in the release's format; returns the next free entry. */
static qilin_status plan_spec(const qilin_model_desc *d, const qilin_tensor_spec *s, arena *a, plan_entry *e,
                              size_t *at, plan_entry **next) {
    bool fp8 = !strcmp(d->quant_method, "fp8"), int4 = d->weight_group > 0;
    int64_t out = s->shape[0], in = s->n_dims > 1 ? s->shape[1] : 1;
    float std = (float)(1.0 / sqrt((double)in));
    if (s->n_dims == 3)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: random weights: 3-D tensor '%s' (GGUF layout) is not made",
                           d->source, s->name);
    if (fp8 && is_linear(s)) {
        int bo = d->weight_block[0] ? d->weight_block[0] : 128, bi = d->weight_block[1] ? d->weight_block[1] : 128;
        e = add_entry(e, at, add_name(a, s->name, ""), QILIN_WDT_F8_E4M3, 2, out, in, FILL_FP8, 1.0f);
        e = add_entry(e, at, add_name(a, s->name, "_scale_inv"), QILIN_WDT_F32, 2, (out + bo - 1) / bo,
                      (in + bi - 1) / bi, FILL_SCALE, std);
    } else if (int4 && is_expert(s->slot)) {
        if (in % d->weight_group != 0)
            return qilin_error(QILIN_ERR_UNSUPPORTED,
                               "%s: random weights: '%s' has %lld inputs, not a multiple of the INT4 group %d",
                               d->source, s->name, (long long)in, d->weight_group);
        char base[sizeof s->name];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(s->name) - strlen("weight")), s->name);
        e = add_entry(e, at, add_name(a, base, "weight_packed"), QILIN_WDT_I32, 2, out, (in + 7) / 8, FILL_NIBBLES,
                      1.0f);
        e = add_entry(e, at, add_name(a, base, "weight_scale"), QILIN_WDT_BF16, 2, out, in / d->weight_group,
                      FILL_SCALE, std / 4.6f);
        e = add_entry(e, at, add_name(a, base, "weight_shape"), QILIN_WDT_I32, 1, 2, 0, FILL_SHAPE, 0.0f);
        e[-1].dims[0] = out, e[-1].dims[1] = in;
    } else if (s->n_dims == 2) {
        e = add_entry(e, at, add_name(a, s->name, ""), QILIN_WDT_BF16, 2, out, in, FILL_NORMAL, std);
    } else {
        qilin_wdtype dt = s->slot == QILIN_W_ROUTER_BIAS ? QILIN_WDT_F32 : QILIN_WDT_BF16;
        e = add_entry(e, at, add_name(a, s->name, ""), dt, 1, out, 0, is_norm(s->slot) ? FILL_ONES : FILL_ZEROS,
                      0.0f);
    }
    *next = e;
    return QILIN_OK;
}

/* ---- values --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s) { /* FNV-1a */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* ~N(0, 1) by the sum of four uniforms (Irwin-Hall), cheap and bounded (±3.5). */
static float normal(uint64_t *rng) {
    uint64_t r = splitmix64(rng);
    float sum = 0.0f;
    for (int k = 0; k < 4; k++) sum += (float)((r >> (16 * k)) & 0xffff) / 65536.0f;
    return (sum - 2.0f) * 1.7320508f; /* variance 4/12 -> 1 */
}

/* Fills bytes [lo, hi) of entry e (lo and hi multiples of kChunkBytes, or
 * hi = the end). Every chunk of kChunkBytes has a generator of its own,
 * seeded from (seed, tensor name, chunk index), so the values do not depend
 * on how the chunks are spread over threads. */
static void fill_range(const plan_entry *e, unsigned char *p, uint64_t seed, size_t lo, size_t hi) {
    uint64_t rng = seed ^ name_hash(e->t.name) ^ (lo / kChunkBytes) * 0xD1B54A32D192ED03ull;
    switch (e->fill) {
    case FILL_NORMAL:
        for (size_t i = lo / 2; i < hi / 2; i++) ((uint16_t *)p)[i] = quant_f32_to_bf16(normal(&rng) * e->scale);
        break;
    case FILL_ONES:
    case FILL_ZEROS:
    case FILL_SCALE: {
        float v = e->fill == FILL_ONES ? 1.0f : e->fill == FILL_ZEROS ? 0.0f : e->scale;
        if (e->t.dtype == QILIN_WDT_F32)
            for (size_t i = lo / 4; i < hi / 4; i++) ((float *)p)[i] = v;
        else
            for (size_t i = lo / 2; i < hi / 2; i++) ((uint16_t *)p)[i] = quant_f32_to_bf16(v);
        break;
    }
    case FILL_FP8:
        for (size_t i = lo; i < hi; i++) p[i] = quant_f32_to_fp8_e4m3(normal(&rng));
        break;
    case FILL_NIBBLES:
        for (size_t i = lo; i < hi; i += 8) {
            uint64_t r = splitmix64(&rng);
            memcpy(p + i, &r, hi - i < 8 ? hi - i : 8);
        }
        break;
    case FILL_SHAPE:
        break;
    }
}

/* The fill work: every (entry, chunk) pair, taken by threads in order
 * through one atomic counter. A real-size model has billions of weights
 * (Qwen3-30B-A3B: 30.5 B, about 16 ns each on one core), so one thread
 * would take minutes. */
typedef struct fill_job {
    const plan_entry *plan;
    int64_t n_entries;
    const size_t *first_chunk; /* [n_entries + 1]: prefix sums of each entry's chunk count */
    unsigned char *data;
    uint64_t seed;
    atomic_size_t next;
} fill_job;

static void *fill_worker(void *arg) {
    fill_job *j = arg;
    size_t total = j->first_chunk[j->n_entries];
    int64_t e = 0;
    for (size_t c; (c = atomic_fetch_add(&j->next, 1)) < total;) {
        while (j->first_chunk[e + 1] <= c) e++; /* chunks are taken in increasing order per thread */
        const plan_entry *pe = &j->plan[e];
        size_t lo = (c - j->first_chunk[e]) * kChunkBytes;
        size_t hi = lo + kChunkBytes < pe->t.nbytes ? lo + kChunkBytes : pe->t.nbytes;
        fill_range(pe, j->data + pe->offset, j->seed, lo, hi);
    }
    return NULL;
}

/* Fills every entry but FILL_SHAPE ones on up to kMaxFillThreads threads
 * (the online CPUs); falls back to this thread alone if threads cannot
 * start. */
static qilin_status fill_all(const plan_entry *plan, int64_t n, unsigned char *data, uint64_t seed,
                             const char *where) {
    size_t *first = malloc((size_t)(n + 1) * sizeof *first);
    if (!first) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: fill work list", where);
    first[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t chunks = plan[i].fill == FILL_SHAPE ? 0 : (plan[i].t.nbytes + kChunkBytes - 1) / kChunkBytes;
        first[i + 1] = first[i] + chunks;
    }
    fill_job job = {.plan = plan, .n_entries = n, .first_chunk = first, .data = data, .seed = seed};
    atomic_init(&job.next, 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = cpus < 1 ? 1 : cpus > kMaxFillThreads ? kMaxFillThreads : (int)cpus;
    if ((size_t)n_threads > first[n]) n_threads = first[n] > 0 ? (int)first[n] : 1;
    pthread_t threads[kMaxFillThreads];
    int started = 0;
    for (; started < n_threads - 1; started++)
        if (pthread_create(&threads[started], NULL, fill_worker, &job) != 0) break;
    fill_worker(&job); /* this thread too; it finishes whatever the others leave */
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
    free(first);
    return QILIN_OK;
}

/* ---- the checkpoint --------------------------------------------------------- */

qilin_status qilin_checkpoint_random(const qilin_model_desc *d, uint64_t seed, bool fill, qilin_checkpoint **out) {
    *out = NULL;
    char where[600];
    snprintf(where, sizeof where, "random weights for %s (seed %llu)", d->source, (unsigned long long)seed);
    size_t cap = (size_t)d->n_tensors * kMaxTensorsPerSpec;
    arena *a = calloc(1, sizeof *a);
    plan_entry *plan = calloc(cap ? cap : 1, sizeof *plan);
    qilin_ckpt_tensor *tensors = calloc(cap ? cap : 1, sizeof *tensors);
    if (a) a->names_cap = (size_t)d->n_tensors * kMaxTensorsPerSpec * (sizeof d->tensors[0].name + 16);
    if (a) a->names = malloc(a->names_cap ? a->names_cap : 1);
    qilin_status st = QILIN_OK;
    if (!a || !plan || !tensors || !a->names) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tensor records", where);
    plan_entry *e = plan;
    size_t bytes = 0;
    for (int i = 0; st == QILIN_OK && i < d->n_tensors; i++)
        if (!d->tensors[i].optional) st = plan_spec(d, &d->tensors[i], a, e, &bytes, &e);
    if (st == QILIN_OK && bytes > 0) {
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: cannot map %zu bytes of host memory", where, bytes);
        else
            a->data = m, a->data_bytes = bytes;
    }
    int64_t n = e - plan;
    for (int64_t i = 0; st == QILIN_OK && i < n; i++) {
        unsigned char *p = a->data + plan[i].offset;
        if (plan[i].fill == FILL_SHAPE) {
            int32_t dims[2] = {(int32_t)plan[i].dims[0], (int32_t)plan[i].dims[1]};
            memcpy(p, dims, sizeof dims); /* the binder reads it, dry-run or not */
        }
        tensors[i] = plan[i].t;
        tensors[i].data = p;
    }
    if (st == QILIN_OK && fill) st = fill_all(plan, n, a->data, seed, where);
    free(plan);
    if (st != QILIN_OK) {
        free(tensors);
        arena_release(a);
        return st;
    }
    return qilin_checkpoint_adopt(where, tensors, n, a, arena_release, out);
}
