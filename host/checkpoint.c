/* checkpoint.c — one view over safetensors and GGUF tensors, and the binding
 * of a descriptor's specs to them (see checkpoint.h). */
#include "host/checkpoint.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "host/gguf.h"
#include "host/safetensors.h"

struct qilin_checkpoint {
    char path[1024];
    st_checkpoint *st;
    gguf_file *gg;
    qilin_ckpt_tensor *tensors; /* sorted by name */
    int64_t n;
    void *owner; /* qilin_checkpoint_adopt's: released at close */
    void (*release)(void *owner);
};

static const struct {
    const char *name;
    int block;
    size_t bytes;
} wdtypes[] = {
#define QILIN_WDTYPE_ROW_(e, name, blck, bytes) {name, blck, bytes},
    QILIN_WDTYPE_TABLE(QILIN_WDTYPE_ROW_)
#undef QILIN_WDTYPE_ROW_
};

const char *qilin_wdtype_name(qilin_wdtype t) {
    return (unsigned)t < QILIN_WDTYPE_COUNT ? wdtypes[t].name : "?";
}

int qilin_wdtype_block(qilin_wdtype t, size_t *block_bytes) {
    bool ok = (unsigned)t < QILIN_WDTYPE_COUNT;
    if (block_bytes) *block_bytes = ok ? wdtypes[t].bytes : 0;
    return ok ? wdtypes[t].block : 0;
}

static qilin_wdtype from_st(st_dtype t) {
    switch (t) {
    case ST_F64:
        return QILIN_WDT_F64;
    case ST_F32:
        return QILIN_WDT_F32;
    case ST_F16:
        return QILIN_WDT_F16;
    case ST_BF16:
        return QILIN_WDT_BF16;
    case ST_F8_E4M3:
        return QILIN_WDT_F8_E4M3;
    case ST_I64:
        return QILIN_WDT_I64;
    case ST_I32:
        return QILIN_WDT_I32;
    case ST_I16:
        return QILIN_WDT_I16;
    case ST_I8:
        return QILIN_WDT_I8;
    case ST_U8:
        return QILIN_WDT_U8;
    default:
        return QILIN_WDT_BOOL;
    }
}

static qilin_wdtype from_gguf(gguf_dtype t) {
    switch (t) {
    case GGUF_DT_F32:
        return QILIN_WDT_F32;
    case GGUF_DT_F16:
        return QILIN_WDT_F16;
    case GGUF_DT_Q4_0:
        return QILIN_WDT_Q4_0;
    case GGUF_DT_Q4_1:
        return QILIN_WDT_Q4_1;
    case GGUF_DT_Q5_0:
        return QILIN_WDT_Q5_0;
    case GGUF_DT_Q5_1:
        return QILIN_WDT_Q5_1;
    case GGUF_DT_Q8_0:
        return QILIN_WDT_Q8_0;
    case GGUF_DT_Q8_1:
        return QILIN_WDT_Q8_1;
    case GGUF_DT_Q2_K:
        return QILIN_WDT_Q2_K;
    case GGUF_DT_Q3_K:
        return QILIN_WDT_Q3_K;
    case GGUF_DT_Q4_K:
        return QILIN_WDT_Q4_K;
    case GGUF_DT_Q5_K:
        return QILIN_WDT_Q5_K;
    case GGUF_DT_Q6_K:
        return QILIN_WDT_Q6_K;
    case GGUF_DT_Q8_K:
        return QILIN_WDT_Q8_K;
    case GGUF_DT_I8:
        return QILIN_WDT_I8;
    case GGUF_DT_I16:
        return QILIN_WDT_I16;
    case GGUF_DT_I32:
        return QILIN_WDT_I32;
    case GGUF_DT_I64:
        return QILIN_WDT_I64;
    case GGUF_DT_F64:
        return QILIN_WDT_F64;
    default:
        return QILIN_WDT_BF16; /* GGUF_DT_BF16: the reader admits no other type */
    }
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const qilin_ckpt_tensor *)a)->name, ((const qilin_ckpt_tensor *)b)->name);
}

static qilin_status fill_st(qilin_checkpoint *c) {
    c->n = st_checkpoint_tensor_count(c->st);
    c->tensors = calloc(c->n ? (size_t)c->n : 1, sizeof *c->tensors);
    if (!c->tensors)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: %lld tensor records", c->path, (long long)c->n);
    for (int64_t i = 0; i < c->n; i++) { /* already sorted by name */
        const st_tensor *t = st_checkpoint_tensor_at(c->st, (int)i);
        qilin_ckpt_tensor *o = &c->tensors[i];
        if (t->ndim > QILIN_CKPT_MAX_DIMS)
            return qilin_error(QILIN_ERR_UNSUPPORTED,
                               "%s: tensor '%s' has %d dimensions; at most %d are supported", t->file,
                               t->name, t->ndim, QILIN_CKPT_MAX_DIMS);
        *o = (qilin_ckpt_tensor){t->name, t->file, from_st(t->dtype), t->ndim, {0}, t->data, t->nbytes};
        for (int d = 0; d < t->ndim; d++) o->shape[d] = t->shape[d];
    }
    return QILIN_OK;
}

static qilin_status fill_gguf(qilin_checkpoint *c) {
    c->n = gguf_tensor_count(c->gg);
    c->tensors = calloc(c->n ? (size_t)c->n : 1, sizeof *c->tensors);
    if (!c->tensors)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: %lld tensor records", c->path, (long long)c->n);
    for (int64_t i = 0; i < c->n; i++) {
        const gguf_tensor *t = gguf_tensor_at(c->gg, i);
        qilin_ckpt_tensor *o = &c->tensors[i];
        *o = (qilin_ckpt_tensor){t->name, c->path, from_gguf(t->type), t->n_dims, {0}, t->data, t->nbytes};
        for (int d = 0; d < t->n_dims; d++) o->shape[d] = t->ne[t->n_dims - 1 - d];
    }
    qsort(c->tensors, (size_t)c->n, sizeof *c->tensors, by_name);
    return QILIN_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool exists(const char *dir, const char *file) {
    char p[1100];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return stat(p, &st) == 0;
}

static qilin_status open_path(qilin_checkpoint *c, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return qilin_error(QILIN_ERR_IO, "%s: no such file or directory", path);
    if (S_ISDIR(st.st_mode)) {
        if (exists(path, "model.safetensors.index.json") || exists(path, "model.safetensors"))
            return st_checkpoint_open(path, &c->st);
        if (qilin_model_find_gguf(path, c->path, sizeof c->path)) return gguf_open(c->path, &c->gg);
        return qilin_error(QILIN_ERR_IO,
                           "%s: no model.safetensors, model.safetensors.index.json or single .gguf file",
                           path);
    }
    if (ends_with(path, ".gguf")) return gguf_open(path, &c->gg);
    if (ends_with(path, ".json") && !ends_with(path, ".index.json")) { /* a config: its directory */
        const char *slash = strrchr(path, '/');
        char dir[1024];
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        return open_path(c, dir);
    }
    return st_checkpoint_open(path, &c->st);
}

qilin_status qilin_checkpoint_open(const char *path, qilin_checkpoint **out) {
    *out = NULL;
    qilin_checkpoint *c = calloc(1, sizeof *c);
    if (!c) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: checkpoint handle", path);
    snprintf(c->path, sizeof c->path, "%s", path);
    qilin_status s = open_path(c, path);
    if (s == QILIN_OK) s = c->gg ? fill_gguf(c) : fill_st(c);
    if (s != QILIN_OK) {
        qilin_checkpoint_close(c);
        return s;
    }
    *out = c;
    return QILIN_OK;
}

qilin_status qilin_checkpoint_adopt(const char *path, qilin_ckpt_tensor *tensors, int64_t n, void *owner,
                                    void (*release)(void *), qilin_checkpoint **out) {
    *out = NULL;
    qilin_checkpoint *c = calloc(1, sizeof *c);
    if (!c) {
        free(tensors);
        if (release) release(owner);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: checkpoint handle", path);
    }
    snprintf(c->path, sizeof c->path, "%s", path);
    qsort(tensors, (size_t)n, sizeof *tensors, by_name);
    c->tensors = tensors, c->n = n, c->owner = owner, c->release = release;
    *out = c;
    return QILIN_OK;
}

void qilin_checkpoint_close(qilin_checkpoint *c) {
    if (!c) return;
    if (c->release) c->release(c->owner);
    free(c->tensors);
    st_checkpoint_close(c->st);
    gguf_close(c->gg);
    free(c);
}

const char *qilin_checkpoint_path(const qilin_checkpoint *c) { return c->path; }
bool qilin_checkpoint_is_gguf(const qilin_checkpoint *c) { return c->gg != NULL; }
int64_t qilin_checkpoint_tensor_count(const qilin_checkpoint *c) { return c->n; }

const qilin_ckpt_tensor *qilin_checkpoint_tensor_at(const qilin_checkpoint *c, int64_t i) {
    return i >= 0 && i < c->n ? &c->tensors[i] : NULL;
}

static int64_t find_index(const qilin_checkpoint *c, const char *name) {
    int64_t lo = 0, hi = c->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->tensors[mid].name, name);
        if (r == 0) return mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const qilin_ckpt_tensor *qilin_checkpoint_find(const qilin_checkpoint *c, const char *name) {
    int64_t i = find_index(c, name);
    return i < 0 ? NULL : &c->tensors[i];
}

/* ---- binding -------------------------------------------------------------- */

typedef struct binder {
    const qilin_model_desc *d;
    const qilin_checkpoint *c;
    unsigned char *used; /* per checkpoint tensor */
    qilin_bound_model *b;
} binder;

static char *shape_str(char *buf, size_t cap, int n, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Equal shapes; GGUF writers drop or keep size-1 dims freely, so there they are squeezed. */
static bool same_shape(bool squeeze, int na, const int64_t *a, int nb, const int64_t *b) {
    int i = 0, j = 0;
    for (;;) {
        while (squeeze && i < na && a[i] == 1) i++;
        while (squeeze && j < nb && b[j] == 1) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return false;
    }
}

static bool is_float(qilin_wdtype t) {
    return t == QILIN_WDT_F64 || t == QILIN_WDT_F32 || t == QILIN_WDT_F16 || t == QILIN_WDT_BF16;
}

static int64_t lookup(binder *x, const char *base, const char *suffix, const qilin_ckpt_tensor **t) {
    char name[160];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    int64_t i = find_index(x->c, name);
    *t = i < 0 ? NULL : &x->c->tensors[i];
    return i;
}

static qilin_status shape_error(binder *x, const qilin_ckpt_tensor *t, int n, const int64_t *want,
                                const char *what) {
    char a[96], b[96];
    return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s' has shape %s; the %s %s expects %s", t->file,
                       t->name, shape_str(a, sizeof a, t->n_dims, t->shape), qilin_arch_hf_name(x->d->arch),
                       what, shape_str(b, sizeof b, n, want));
}

/* W.weight_scale_inv for an F8_E4M3 weight. */
static qilin_status bind_fp8_scale(binder *x, const qilin_tensor_spec *s, qilin_bound_tensor *bt) {
    char base[sizeof s->name];
    snprintf(base, sizeof base, "%s", s->name);
    const qilin_ckpt_tensor *t;
    int64_t i = lookup(x, base, "_scale_inv", &t);
    if (i < 0 || s->n_dims != 2)
        return qilin_error(QILIN_ERR_FORMAT, "%s: FP8 tensor '%s' has no %s_scale_inv block scales", bt->file,
                           s->name, s->name);
    int bo = x->d->weight_block[0] ? x->d->weight_block[0] : 128,
        bi = x->d->weight_block[1] ? x->d->weight_block[1] : 128;
    int64_t want[2] = {(s->shape[0] + bo - 1) / bo, (s->shape[1] + bi - 1) / bi};
    if (!is_float(t->dtype))
        return qilin_error(QILIN_ERR_FORMAT, "%s: scale '%s' is %s; expected a float type", t->file, t->name,
                           qilin_wdtype_name(t->dtype));
    if (!same_shape(false, t->n_dims, t->shape, 2, want))
        return shape_error(x, t, 2, want, "FP8 block scale");
    x->used[i] = 1;
    x->b->n_companions++;
    bt->quant = QILIN_WQ_FP8_BLOCK;
    bt->scale = t->data, bt->scale_nbytes = t->nbytes, bt->scale_dtype = t->dtype, bt->scale_n_dims = 2;
    memcpy(bt->scale_shape, t->shape, sizeof t->shape);
    bt->block[0] = bo, bt->block[1] = bi;
    return QILIN_OK;
}

/* W.weight_packed / weight_scale / weight_shape standing for the spec's W.weight. */
static qilin_status bind_int4(binder *x, const qilin_tensor_spec *s, int64_t ip, qilin_bound_tensor *bt) {
    const qilin_ckpt_tensor *p = &x->c->tensors[ip], *sc, *sh;
    char base[sizeof s->name];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(s->name) - strlen("weight")), s->name);
    int64_t is = lookup(x, base, "weight_scale", &sc), ih = lookup(x, base, "weight_shape", &sh);
    if (s->n_dims != 2 || is < 0 || ih < 0)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: packed INT4 tensor '%s' needs %sweight_scale and %sweight_shape", p->file,
                           p->name, base, base);
    int64_t out = s->shape[0], in = s->shape[1];
    int64_t packed[2] = {out, (in + 7) / 8};
    if (p->dtype != QILIN_WDT_I32)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s' is %s; packed INT4 weights are I32", p->file,
                           p->name, qilin_wdtype_name(p->dtype));
    if (!same_shape(false, p->n_dims, p->shape, 2, packed))
        return shape_error(x, p, 2, packed, "packed INT4 weight");
    int64_t cols = sc->n_dims == 2 ? sc->shape[1] : 0, group = cols > 0 && in % cols == 0 ? in / cols : 0;
    if (x->d->weight_group && group != x->d->weight_group) group = 0;
    int64_t want_scale[2] = {out, x->d->weight_group ? in / x->d->weight_group : cols};
    if (!is_float(sc->dtype) || group == 0 || !same_shape(false, sc->n_dims, sc->shape, 2, want_scale))
        return shape_error(x, sc, 2, want_scale, "INT4 group scale");
    int64_t dims[2] = {0, 0};
    bool int_shape = sh->dtype == QILIN_WDT_I32 || sh->dtype == QILIN_WDT_I64;
    size_t es = sh->dtype == QILIN_WDT_I64 ? 8 : 4;
    if (int_shape && sh->n_dims == 1 && sh->shape[0] == 2) {
        for (int k = 0; k < 2; k++) {
            int32_t v32;
            if (es == 8)
                memcpy(&dims[k], (const char *)sh->data + 8 * k, 8);
            else
                memcpy(&v32, (const char *)sh->data + 4 * k, 4), dims[k] = v32;
        }
    }
    if (dims[0] != out || dims[1] != in) {
        char a[64], b[64];
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s' (%s %s) must hold the weight's shape %s",
                           sh->file, sh->name, qilin_wdtype_name(sh->dtype), shape_str(a, sizeof a, 2, dims),
                           shape_str(b, sizeof b, 2, s->shape));
    }
    x->used[ip] = x->used[is] = x->used[ih] = 1;
    x->b->n_companions += 2;
    *bt = (qilin_bound_tensor){.spec = bt->spec,
                               .name = p->name,
                               .file = p->file,
                               .data = p->data,
                               .nbytes = p->nbytes,
                               .dtype = p->dtype,
                               .n_dims = 2,
                               .quant = QILIN_WQ_INT4_GROUP,
                               .scale = sc->data,
                               .scale_nbytes = sc->nbytes,
                               .scale_dtype = sc->dtype,
                               .scale_n_dims = 2,
                               .block = {1, (int)group}};
    memcpy(bt->shape, p->shape, sizeof p->shape);
    memcpy(bt->scale_shape, sc->shape, sizeof sc->shape);
    return QILIN_OK;
}

static int count_missing(binder *x, int from) {
    int n = 0;
    for (int i = from; i < x->d->n_tensors; i++) {
        const qilin_tensor_spec *s = &x->d->tensors[i];
        const qilin_ckpt_tensor *t;
        char base[sizeof s->name];
        snprintf(base, sizeof base, "%s", s->name);
        n += !s->optional && find_index(x->c, s->name) < 0 && lookup(x, base, "_packed", &t) < 0;
    }
    return n;
}

static qilin_status bind_spec(binder *x, int i) {
    const qilin_tensor_spec *s = &x->d->tensors[i];
    qilin_bound_tensor *bt = &x->b->tensors[i];
    bt->spec = i;
    int64_t k = find_index(x->c, s->name);
    if (k < 0) {
        const qilin_ckpt_tensor *p;
        int64_t ip = ends_with(s->name, ".weight") ? lookup(x, s->name, "_packed", &p) : -1;
        if (ip >= 0) return bind_int4(x, s, ip, bt);
        if (s->optional) return QILIN_OK;
        char want[96];
        int more = count_missing(x, i + 1);
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s' (%s %s) is missing%s%.0d%s", x->c->path,
                           s->name, qilin_slot_name(s->slot),
                           shape_str(want, sizeof want, s->n_dims, s->shape), more ? "; " : "", more,
                           more ? " more required tensors are missing too" : "");
    }
    const qilin_ckpt_tensor *t = &x->c->tensors[k];
    x->used[k] = 1;
    if (!same_shape(qilin_checkpoint_is_gguf(x->c), t->n_dims, t->shape, s->n_dims, s->shape))
        return shape_error(x, t, s->n_dims, s->shape, "descriptor");
    bool quant_block = qilin_wdtype_block(t->dtype, NULL) > 1;
    if (!is_float(t->dtype) && t->dtype != QILIN_WDT_F8_E4M3 && !quant_block)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s' is %s, which cannot hold weights", t->file,
                           t->name, qilin_wdtype_name(t->dtype));
    *bt = (qilin_bound_tensor){.spec = i,
                               .name = t->name,
                               .file = t->file,
                               .data = t->data,
                               .nbytes = t->nbytes,
                               .dtype = t->dtype,
                               .n_dims = t->n_dims};
    memcpy(bt->shape, t->shape, sizeof t->shape);
    if (t->dtype == QILIN_WDT_F8_E4M3) QILIN_TRY(bind_fp8_scale(x, s, bt));
    return QILIN_OK;
}

/* Tensors a checkpoint may carry beyond the descriptor (models.md §7.3, §8.1, §9). */
static bool ignorable(const qilin_model_desc *d, const char *name) {
    static const char *const buffers[] = {".rotary_emb.inv_freq", ".attention.bias", ".attention.masked_bias",
                                          ".attn.bias", ".attn.masked_bias"};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        if (ends_with(name, buffers[i])) return true;
    if (d->n_mtp_layers > 0 && !strncmp(name, "model.layers.", 13)) {
        char *end;
        long l = strtol(name + 13, &end, 10);
        if (*end == '.' && l >= d->n_layers && l < (long)d->n_layers + d->n_mtp_layers) return true;
    }
    if (d->tied_embeddings && (!strcmp(name, "lm_head.weight") || !strcmp(name, "embed_out.weight") ||
                               !strcmp(name, "output.weight")))
        return true; /* a stored copy of the tied embedding */
    return d->from_gguf && !strcmp(name, "rope_freqs.weight");
}

static qilin_status check_leftovers(binder *x) {
    int64_t first = -1, n = 0;
    for (int64_t i = 0; i < x->c->n; i++) {
        if (x->used[i]) continue;
        if (ignorable(x->d, x->c->tensors[i].name)) {
            x->b->n_ignored++;
            continue;
        }
        if (first < 0) first = i;
        n++;
    }
    if (first < 0) return QILIN_OK;
    const qilin_ckpt_tensor *t = &x->c->tensors[first];
    return qilin_error(QILIN_ERR_FORMAT,
                       "%s: unexpected tensor '%s' (not part of the %s model described by %s)%s%.0lld%s",
                       t->file, t->name, qilin_arch_hf_name(x->d->arch), x->d->source, n > 1 ? "; " : "",
                       n > 1 ? (long long)(n - 1) : 0LL, n > 1 ? " more unexpected tensors" : "");
}

qilin_status qilin_model_bind(const qilin_model_desc *d, const qilin_checkpoint *c, qilin_bound_model **out) {
    *out = NULL;
    binder x = {d, c, calloc(c->n ? (size_t)c->n : 1, 1), calloc(1, sizeof(qilin_bound_model))};
    qilin_status s = QILIN_OK;
    if (x.b) x.b->tensors = calloc(d->n_tensors ? (size_t)d->n_tensors : 1, sizeof *x.b->tensors);
    if (!x.used || !x.b || !x.b->tensors)
        s = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: binding tables", c->path);
    if (s == QILIN_OK) {
        x.b->desc = d, x.b->ckpt = c, x.b->n_tensors = d->n_tensors;
        for (int i = 0; i < d->n_tensors && s == QILIN_OK; i++) s = bind_spec(&x, i);
    }
    if (s == QILIN_OK) s = check_leftovers(&x);
    free(x.used);
    if (s != QILIN_OK) {
        qilin_bound_model_free(x.b);
        return s;
    }
    *out = x.b;
    return QILIN_OK;
}

void qilin_bound_model_free(qilin_bound_model *b) {
    if (!b) return;
    free(b->tensors);
    free(b);
}

const qilin_bound_tensor *qilin_bound_get(const qilin_bound_model *b, qilin_slot slot, int layer,
                                          int expert) {
    int i = qilin_model_find_spec(b->desc, slot, layer, expert);
    return i < 0 || !b->tensors[i].data ? NULL : &b->tensors[i];
}

void qilin_checkpoint_print_summary(const qilin_checkpoint *c, const qilin_bound_model *b, void *file) {
    FILE *f = file;
    int64_t count[QILIN_WDTYPE_COUNT] = {0}, total = 0;
    size_t bytes[QILIN_WDTYPE_COUNT] = {0}, all = 0;
    for (int64_t i = 0; i < c->n; i++) {
        const qilin_ckpt_tensor *t = &c->tensors[i];
        count[t->dtype]++, bytes[t->dtype] += t->nbytes;
        total++, all += t->nbytes;
    }
    fprintf(f, "weights: %s (%s)\n", c->path, c->gg ? "GGUF" : "safetensors");
    for (int t = 0; t < QILIN_WDTYPE_COUNT; t++)
        if (count[t])
            fprintf(f, "  %-22s %lld tensors, %.3f GiB\n", qilin_wdtype_name((qilin_wdtype)t),
                    (long long)count[t], (double)bytes[t] / (1 << 30));
    fprintf(f, "  %-22s %lld tensors, %.3f GiB (%zu bytes)\n", "all", (long long)total,
            (double)all / (1 << 30), all);
    if (b) {
        int present = 0;
        for (int i = 0; i < b->n_tensors; i++) present += b->tensors[i].data != NULL;
        fprintf(f, "  %-22s %d of %d specs bound, %lld scale/shape companions, %lld ignored\n", "binding",
                present, b->n_tensors, (long long)b->n_companions, (long long)b->n_ignored);
    }
}
