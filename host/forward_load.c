/* forward_load.c — one GPU's part of a model: its weight slices, KV cache
 * and per-step buffers (forward_impl.h).
 *
 * Every weight goes through the host. FP8 block-scaled projections that the
 * forward multiplies through linear_slot (stays_fp8) are uploaded as they
 * are: this GPU's rows or columns of the e4m3 bytes and the block scales
 * covering them (upload_fp8); GGUF block-quantized projections, token_embd
 * and output likewise keep their blocks (upload_gguf). Everything else is
 * dequantised to the activation dtype, the plan's slice of it (rows,
 * columns or whole experts) is packed, and the packed block is copied to the
 * device (GGUF expert stacks: upload_stacked_experts).
 * Gate and up projections of each gated MLP are stacked into one [2F, H]
 * matrix per GPU (its F rows of each), and the routed experts of a layer into
 * [E, 2Fe, H] and [E, H, Fe] for qilin_moe_experts. Vocab slices are padded
 * to Vp rows with zeros, so padded logits are exactly 0 and dropped when
 * the logits are assembled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/moe.h"
#include "host/forward_impl.h"
#include "host/quant.h"

qilin_status shard_alloc(shard *g, void **p, size_t bytes, const char *what) {
    QILIN_TRY(qilin_malloc(p, bytes ? bytes : 1, what));
    g->bytes += bytes ? bytes : 1;
    return QILIN_OK;
}

static int64_t numel(const qilin_tensor_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->n_dims; i++) n *= s->shape[i];
    return n;
}

/* Elements of this GPU's slice of s, padding included. */
static int64_t slice_numel(const qilin_tensor_spec *s, const qilin_shard_slice *sl) {
    int64_t n = 1;
    for (int i = 0; i < s->n_dims; i++) n *= i == sl->dim ? sl->alloc_count : s->shape[i];
    return n;
}

/* A zeroed allocation of `elems` elements of `es` bytes, when *p is unset. */
static qilin_status alloc_once(shard *g, void **p, int64_t elems, size_t es, const char *what) {
    if (*p) return QILIN_OK;
    QILIN_TRY(shard_alloc(g, p, (size_t)elems * es, what));
    return qilin_memset(*p, 0, (size_t)elems * es, g->stream);
}

/* Where spec s's slice lands: *dst (allocating the whole destination on
 * first use) and the dtype stored there. */
static qilin_status destination(shard *g, const qilin_tensor_spec *s, const qilin_shard_slice *sl, void **dst,
                                qilin_dtype *dtype) {
    const qilin_model_desc *d = g->desc;
    size_t es = g->es, H = (size_t)d->hidden;
    const char *what = s->name;
    *dtype = g->opt->dtype;
    if (s->layer < 0) {
        QILIN_TRY(alloc_once(g, &g->global[s->slot], slice_numel(s, sl), es, what));
        *dst = g->global[s->slot];
        return QILIN_OK;
    }
    layer *L = &g->layers[s->layer];
    switch (s->slot) {
    case QILIN_W_GATE:
    case QILIN_W_UP:
        if (d->layer_ffn[s->layer] != QILIN_FFN_GATED) break; /* plain MLP: up = fc_in, own buffer */
        QILIN_TRY(alloc_once(g, &L->gate_up, 2 * (int64_t)g->F * (int64_t)H, es, what));
        *dst = (char *)L->gate_up + (s->slot == QILIN_W_UP ? (size_t)g->F * H * es : 0);
        return QILIN_OK;
    case QILIN_W_SHARED_GATE:
    case QILIN_W_SHARED_UP:
        QILIN_TRY(alloc_once(g, &L->shared_gate_up, 2 * (int64_t)g->Fs * (int64_t)H, es, what));
        *dst = (char *)L->shared_gate_up + (s->slot == QILIN_W_SHARED_UP ? (size_t)g->Fs * H * es : 0);
        return QILIN_OK;
    case QILIN_W_EXP_GATE:
    case QILIN_W_EXP_UP:
    case QILIN_W_EXP_DOWN: {
        if (s->expert < 0) /* stacked (GGUF) experts go through upload_stacked_experts */
            return qilin_error(QILIN_ERR_INTERNAL, "%s: tensor %s: stacked experts reached destination()",
                               d->source, s->name);
        size_t F = (size_t)g->Fe, E = (size_t)g->E, e = (size_t)(s->expert - g->e0);
        QILIN_TRY(alloc_once(g, &L->exp_gate_up, (int64_t)(E * 2 * F * H), es, what));
        QILIN_TRY(alloc_once(g, &L->exp_down, (int64_t)(E * H * F), es, what));
        if (s->slot == QILIN_W_EXP_DOWN)
            *dst = (char *)L->exp_down + e * H * F * es;
        else
            *dst = (char *)L->exp_gate_up + (e * 2 * F + (s->slot == QILIN_W_EXP_UP ? F : 0)) * H * es;
        return QILIN_OK;
    }
    case QILIN_W_ROUTER_BIAS:
        *dtype = QILIN_F32;
        QILIN_TRY(alloc_once(g, (void **)&L->router_bias, numel(s), 4, what));
        *dst = L->router_bias;
        return QILIN_OK;
    default:
        break;
    }
    QILIN_TRY(alloc_once(g, &L->w[s->slot], slice_numel(s, sl), es, what));
    *dst = L->w[s->slot];
    return QILIN_OK;
}

/* The GGUF block formats the device multiplies from as stored
 * (cuda/gemm_gguf.h) and host/quant.c dequantizes: true and both formats
 * (either pointer may be NULL) for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K. */
static bool gguf_format_of(qilin_wdtype t, qilin_gguf_format *dev, qilin_wformat *host) {
    static const struct {
        qilin_wdtype wdt;
        qilin_gguf_format dev;
        qilin_wformat host;
    } map[] = {{QILIN_WDT_Q8_0, QILIN_GGUF_Q8_0, QILIN_WF_Q8_0},
               {QILIN_WDT_Q4_0, QILIN_GGUF_Q4_0, QILIN_WF_Q4_0},
               {QILIN_WDT_Q4_K, QILIN_GGUF_Q4_K, QILIN_WF_Q4_K},
               {QILIN_WDT_Q5_K, QILIN_GGUF_Q5_K, QILIN_WF_Q5_K},
               {QILIN_WDT_Q6_K, QILIN_GGUF_Q6_K, QILIN_WF_Q6_K}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].wdt == t) {
            if (dev) *dev = map[i].dev;
            if (host) *host = map[i].host;
            return true;
        }
    return false;
}

/* The bound tensor b as a quant_weight: F32/F16/BF16, FP8 with the 128x128
 * block scales binding found beside it, or compressed-tensors INT4 groups
 * (weight_packed + weight_scale, logical shape from the spec). FP8
 * projections in a qilin_slot_stays_fp8 slot are uploaded as they are;
 * everything else, INT4 included (no INT4 GEMM in the forward yet), is
 * dequantised on the host to the activation dtype. */
static qilin_status weight_of(const qilin_model_desc *d, const qilin_bound_tensor *b, quant_weight *w) {
    const qilin_tensor_spec *s = &d->tensors[b->spec];
    int64_t cols = b->n_dims ? b->shape[b->n_dims - 1] : 1, n = 1;
    for (int i = 0; i < b->n_dims; i++) n *= b->shape[i];
    *w = (quant_weight){
        .rows = cols ? n / cols : 0, .cols = cols, .data = b->data, .data_bytes = b->nbytes, .name = b->name};
    if (b->quant == QILIN_WQ_FP8_BLOCK) {
        w->format = QILIN_WF_FP8_BLOCK, w->scales = b->scale, w->scale_bytes = b->scale_nbytes;
    } else if (b->quant == QILIN_WQ_INT4_GROUP) { /* bound with its logical [out, in] shape */
        qilin_dtype sd = b->scale_dtype == QILIN_WDT_F32   ? QILIN_F32
                         : b->scale_dtype == QILIN_WDT_F16 ? QILIN_F16
                         : b->scale_dtype == QILIN_WDT_BF16 ? QILIN_BF16
                                                             : QILIN_I32;
        if (sd == QILIN_I32)
            return qilin_error(QILIN_ERR_FORMAT, "%s: tensor %s: INT4 group scales are %s (F32, F16 or BF16)",
                               b->file, b->name, qilin_wdtype_name(b->scale_dtype));
        w->format = QILIN_WF_INT4_GROUP, w->scales = b->scale, w->scale_bytes = b->scale_nbytes;
        w->scale_dtype = sd, w->group_size = b->block[1];
        w->cols = s->shape[s->n_dims - 1], w->rows = numel(s) / (w->cols ? w->cols : 1), n = numel(s);
    } else if (b->quant == QILIN_WQ_NONE && gguf_format_of(b->dtype, NULL, &w->format)) {
        /* GGUF blocks: shape is the logical [.., cols] in weights, nbytes the blocks' */
    } else if (b->quant == QILIN_WQ_NONE && b->dtype == QILIN_WDT_F32) {
        w->format = QILIN_WF_F32;
    } else if (b->quant == QILIN_WQ_NONE && b->dtype == QILIN_WDT_F16) {
        w->format = QILIN_WF_F16;
    } else if (b->quant == QILIN_WQ_NONE && b->dtype == QILIN_WDT_BF16) {
        w->format = QILIN_WF_BF16;
    } else {
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: tensor %s is %s; the forward pass loads F32, F16, BF16, FP8 block-scaled, "
                           "INT4 group and GGUF "
                           "Q8_0/Q4_0/Q4_K/Q5_K/Q6_K weights",
                           b->file, b->name, qilin_wdtype_name(b->dtype));
    }
    if (n != numel(s))
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor %s has %lld elements, the %s descriptor expects %lld", b->file,
                           b->name, (long long)n, qilin_arch_hf_name(d->arch), (long long)numel(s));
    return QILIN_OK;
}

/* Packs slice sl of the dequantised tensor `full` (shape of s): for every
 * index before the split dim, the [start, start + count) block of it. */
static void pack_slice(void *out, const void *full, const qilin_tensor_spec *s, const qilin_shard_slice *sl,
                       size_t es) {
    int64_t outer = 1, inner = 1, ext = s->shape[sl->dim];
    for (int i = 0; i < sl->dim; i++) outer *= s->shape[i];
    for (int i = sl->dim + 1; i < s->n_dims; i++) inner *= s->shape[i];
    size_t run = (size_t)(sl->count * inner) * es;
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)out + (size_t)o * run,
               (const char *)full + (size_t)((o * ext + sl->start) * inner) * es, run);
}

/* Dequantises this GPU's slice of w into dtype on the host and copies it to
 * dst. A row split of a matrix converts only its rows; any other split
 * converts the whole tensor and packs the slice. */
static qilin_status upload_slice(shard *g, const quant_weight *w, const qilin_tensor_spec *s,
                                 const qilin_shard_slice *sl, qilin_dtype dtype, void *dst) {
    if (qilin_device_dry_run()) return QILIN_OK; /* no values on the device to convert for (device.h) */
    size_t es = qilin_dtype_size(dtype), full_bytes = (size_t)(w->rows * w->cols) * es;
    bool whole = sl->dim < 0, rows_only = sl->dim == 0 && s->n_dims == 2;
    size_t bytes = whole ? full_bytes : (size_t)numel(s) / (size_t)s->shape[sl->dim] * (size_t)sl->count * es;
    void *tmp = malloc(full_bytes ? full_bytes : 1),
         *packed = whole || rows_only ? NULL : malloc(bytes ? bytes : 1);
    qilin_status st = QILIN_OK;
    if (!tmp || (!whole && !rows_only && !packed))
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "no host memory to convert %s", w->name);
    if (st == QILIN_OK && rows_only)
        st = quant_dequantize(w, sl->start, sl->count, dtype, tmp);
    else if (st == QILIN_OK)
        st = quant_dequantize(w, 0, w->rows, dtype, tmp);
    if (st == QILIN_OK && packed) pack_slice(packed, tmp, s, sl, es);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(dst, packed ? packed : tmp, bytes, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(tmp), free(packed);
    return st;
}

/* The FP8 tensors that stay FP8 on the device: the 2-D projections
 * forward_layers.c runs through linear_slot (plan.h's qilin_slot_stays_fp8,
 * which the plan counts by too). */
static bool stays_fp8(const qilin_bound_tensor *b, const qilin_tensor_spec *s) {
    return b->quant == QILIN_WQ_FP8_BLOCK && s->layer >= 0 && s->n_dims == 2 && qilin_slot_stays_fp8(s->slot);
}

/* Uploads this GPU's slice of FP8 matrix w ([R, C] e4m3, scales [ceil(R/128),
 * ceil(C/128)] f32): rows [r0, r0 + nr) x columns [c0, c0 + nc) packed
 * [nr, nc], and the block rows / columns that cover them. The slice may
 * start mid-block: row_off / col_off tell the kernels where. */
static qilin_status upload_fp8(shard *g, const quant_weight *w, const qilin_tensor_spec *s,
                               const qilin_shard_slice *sl) {
    enum { B = QILIN_FP8_BLOCK };
    QILIN_TRY(quant_check(w));
    if (sl->dim > 1 || (sl->dim >= 0 && sl->alloc_count != sl->count))
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: FP8 tensor %s: split along dim %d (%lld of %lld allocated)", g->desc->source,
                           w->name, sl->dim, (long long)sl->count, (long long)sl->alloc_count);
    const int64_t R = w->rows, C = w->cols, kb = (C + B - 1) / B;
    const int64_t r0 = sl->dim == 0 ? sl->start : 0, nr = sl->dim == 0 ? sl->count : R;
    const int64_t c0 = sl->dim == 1 ? sl->start : 0, nc = sl->dim == 1 ? sl->count : C;
    const int64_t br0 = r0 / B, br1 = nr ? (r0 + nr - 1) / B + 1 : br0;
    const int64_t bc0 = c0 / B, bc1 = nc ? (c0 + nc - 1) / B + 1 : bc0, sc = bc1 - bc0;
    layer *L = &g->layers[s->layer];
    fp8_slot *f = &L->fp8[s->slot];
    if (L->w[s->slot])
        return qilin_error(QILIN_ERR_FORMAT, "%s: FP8 tensor %s is bound twice", g->desc->source, w->name);
    size_t wbytes = (size_t)(nr * nc), sbytes = (size_t)((br1 - br0) * sc) * sizeof(float);
    QILIN_TRY(shard_alloc(g, &L->w[s->slot], wbytes, w->name));
    QILIN_TRY(shard_alloc(g, (void **)&f->scale, sbytes, w->name));
    *f = (fp8_slot){.scale = f->scale, .row_off = (int)(r0 % B), .col_off = (int)(c0 % B), .ld_scale = sc};
    if (qilin_device_dry_run()) return QILIN_OK; /* nothing filled to copy (device.h) */
    uint8_t *wh = malloc(wbytes ? wbytes : 1), *sh = malloc(sbytes ? sbytes : 1);
    qilin_status st = QILIN_OK;
    if (!wh || !sh) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "no host memory to slice %s", w->name);
    for (int64_t r = 0; st == QILIN_OK && r < nr; r++)
        memcpy(wh + r * nc, (const uint8_t *)w->data + (r0 + r) * C + c0, (size_t)nc);
    for (int64_t br = br0; st == QILIN_OK && br < br1; br++)
        memcpy(sh + (br - br0) * sc * 4, (const uint8_t *)w->scales + (br * kb + bc0) * 4, (size_t)sc * 4);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(L->w[s->slot], wh, wbytes, g->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(f->scale, sh, sbytes, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(wh), free(sh);
    return st;
}

/* ---- routed experts kept FP8 / INT4 (cuda/moe.h qilin_moe_wq) -------------
 * The plan (qilin_upload_formats_fe) says which: every per-expert tensor of
 * the layer then arrives in that format and is copied as it is, this GPU's
 * ffn rows (gate, up) or columns (down) of the checkpoint bytes plus the
 * scale blocks / groups covering them, into [E, 2Fe, ..] and [E, H, ..]
 * (FP8 bytes, or INT4 int32 words of 8 nibbles along k — the checkpoint's
 * layout, not repacked: the kernel dequantizes a k-slab in shared memory,
 * where any interleave would buy nothing). */

static int wq_of_format(qilin_wfmt f) {
    return f == QILIN_WFMT_FP8_BLOCK ? QILIN_MOE_W_FP8_BLOCK : f == QILIN_WFMT_INT4_GROUP ? QILIN_MOE_W_INT4_GROUP : 0;
}

/* Copies `rows` rows of `n` bytes from src (row stride ld) to dst (packed), on the host first. */
static qilin_status copy_rows(shard *g, void *dst, const void *src, int64_t rows, size_t n, size_t ld,
                              const char *name) {
    if (qilin_device_dry_run() || rows * (int64_t)n == 0) return QILIN_OK;
    size_t bytes = (size_t)rows * n;
    unsigned char *h = malloc(bytes);
    if (!h) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "no host memory to slice %s", name);
    for (int64_t r = 0; r < rows; r++) memcpy(h + (size_t)r * n, (const unsigned char *)src + (size_t)r * ld, n);
    qilin_status st = qilin_memcpy_h2d(dst, h, bytes, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(h);
    return st;
}

/* The GGUF-quantized tensors that stay in their blocks on the device: the
 * same 2-D projections as stays_fp8 (and gguf_vocab_table's embedding and
 * lm_head). GPT-NeoX's fused qkv, MLA's kv_a and the stacked experts are
 * dequantized at load (upload_slice, upload_stacked_experts). */
static bool stays_gguf(const qilin_bound_tensor *b, const qilin_tensor_spec *s) {
    return b->quant == QILIN_WQ_NONE && gguf_format_of(b->dtype, NULL, NULL) && s->layer >= 0 &&
           s->n_dims == 2 && qilin_slot_stays_fp8(s->slot);
}

/* A GGUF-quantized token_embd or output matrix stays in its blocks too:
 * the lookup decodes the rows it needs (qilin_embedding_gguf) and the
 * lm_head multiplies from the blocks. Its vocab rows are split by the plan,
 * never its columns. */
static bool gguf_vocab_table(const qilin_bound_tensor *b, const qilin_tensor_spec *s) {
    return b->quant == QILIN_WQ_NONE && gguf_format_of(b->dtype, NULL, NULL) && s->layer < 0 &&
           s->n_dims == 2 && (s->slot == QILIN_W_EMBED || s->slot == QILIN_W_LM_HEAD);
}

/* Every block's fp16 scale (d, and dmin for Q4_K / Q5_K) must be finite: a
 * NaN or infinite scale is corrupt data, not a weight, and is refused
 * naming the tensor, row and block. */
static qilin_status check_gguf_scales(const quant_weight *w, const char *where) {
    size_t bb = 0;
    const int64_t be = qilin_wformat_block(w->format, &bb), nb = w->rows * (w->cols / be);
    const int at = w->format == QILIN_WF_Q6_K ? 208 : 0;
    const int n = w->format == QILIN_WF_Q4_K || w->format == QILIN_WF_Q5_K ? 2 : 1;
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < n; j++) {
            const uint8_t *p = (const uint8_t *)w->data + (size_t)i * bb + at + 2 * j;
            if (((p[0] | p[1] << 8) & 0x7c00) == 0x7c00)
                return qilin_error(
                    QILIN_ERR_FORMAT,
                    "%s: tensor %s (%s): row %lld block %lld has a non-finite %s (fp16 bits 0x%04x): "
                    "corrupt block data",
                    where, w->name, qilin_wformat_name(w->format), (long long)(i / (w->cols / be)),
                    (long long)(i % (w->cols / be)), j ? "dmin" : "scale d", p[0] | p[1] << 8);
        }
    return QILIN_OK;
}

/* Uploads this GPU's slice of GGUF matrix w ([R, C] weights, C / B blocks a
 * row) as stored into *dst (allocated here, alloc_rows rows: a vocab slice's
 * padding rows are zero bytes, which decode to 0): rows [r0, r0 + nr) x the
 * block columns covering [c0, c0 + nc). A column slice must start and end
 * on the block grid: a block's 32 or 256 weights share scales and cannot be
 * split between GPUs. */
static qilin_status upload_gguf(shard *g, const quant_weight *w, const qilin_bound_tensor *b,
                                const qilin_shard_slice *sl, void **dst, gguf_slot *q) {
    const char *src = g->desc->source;
    QILIN_TRY(quant_check(w));
    QILIN_TRY(check_gguf_scales(w, src));
    size_t bb = 0;
    const int64_t B = qilin_wformat_block(w->format, &bb), R = w->rows, C = w->cols,
                  row_bytes = C / B * (int64_t)bb;
    const bool vocab = sl->dim == 0 && sl->split == QILIN_SPLIT_VOCAB;
    if (sl->dim > 1 || (sl->dim >= 0 && !vocab && sl->alloc_count != sl->count))
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: GGUF tensor %s: split along dim %d (%lld of %lld allocated)", src, w->name,
                           sl->dim, (long long)sl->count, (long long)sl->alloc_count);
    const int64_t r0 = sl->dim == 0 ? sl->start : 0, nr = sl->dim == 0 ? sl->count : R;
    const int64_t c0 = sl->dim == 1 ? sl->start : 0, nc = sl->dim == 1 ? sl->count : C;
    const int64_t alloc_rows = vocab ? sl->alloc_count : nr;
    if (c0 % B || nc % B)
        return qilin_error(
            QILIN_ERR_UNSUPPORTED,
            "%s: GGUF tensor %s (%s, %lld-weight blocks): GPU %d's columns [%lld, %lld) of %lld split "
            "a block; use a --tp whose column slices are whole blocks",
            src, w->name, qilin_wdtype_name(b->dtype), (long long)B, g->rank, (long long)c0,
            (long long)(c0 + nc), (long long)C);
    if (*dst) return qilin_error(QILIN_ERR_FORMAT, "%s: GGUF tensor %s is bound twice", src, w->name);
    const int64_t ldw = nc / B * (int64_t)bb, off = c0 / B * (int64_t)bb;
    const size_t bytes = (size_t)(alloc_rows * ldw);
    QILIN_TRY(shard_alloc(g, dst, bytes, w->name));
    *q = (gguf_slot){.on = true, .ldw = ldw};
    gguf_format_of(b->dtype, &q->format, NULL);
    if (qilin_device_dry_run()) return QILIN_OK; /* nothing filled to copy (device.h) */
    uint8_t *h = calloc(bytes ? bytes : 1, 1);
    if (!h) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "no host memory to slice %s", w->name);
    for (int64_t r = 0; r < nr; r++)
        memcpy(h + r * ldw, (const uint8_t *)w->data + (r0 + r) * row_bytes + off, (size_t)ldw);
    qilin_status st = qilin_memcpy_h2d(*dst, h, bytes, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(h);
    return st;
}

/* The layer's quantized expert buffers (allocated with the first expert tensor) and their geometry. */
static qilin_status alloc_quant_experts(shard *g, layer *L, int wq, int group, int row_off, int col_off,
                                        const char *name) {
    const int64_t E = g->E, F = g->Fe, H = g->desc->hidden, B = QUANT_FP8_BLOCK;
    if (L->exp_gate_up) {
        if (L->exp_wq != wq || L->exp_row_off != row_off || L->exp_col_off != col_off || L->exp_group != group)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: tensor %s: its format or scale grid differs from the layer's other experts",
                               g->desc->source, name);
        return QILIN_OK;
    }
    L->exp_wq = wq, L->exp_row_off = row_off, L->exp_col_off = col_off, L->exp_group = group;
    bool fp8 = wq == QILIN_MOE_W_FP8_BLOCK;
    int64_t gu_bytes = fp8 ? E * 2 * F * H : E * 2 * F * (H / 2), dn_bytes = fp8 ? E * H * F : E * H * (F / 2);
    int64_t gu_scales = fp8 ? E * 2 * ((row_off + F + B - 1) / B) * ((H + B - 1) / B)
                            : E * 2 * F * ((H + group - 1) / group);
    int64_t dn_scales = fp8 ? E * ((H + B - 1) / B) * ((col_off + F + B - 1) / B)
                            : E * H * ((col_off + F + group - 1) / group);
    size_t ss = fp8 ? 4 : 2;
    QILIN_TRY(alloc_once(g, &L->exp_gate_up, gu_bytes, 1, name));
    QILIN_TRY(alloc_once(g, &L->exp_down, dn_bytes, 1, name));
    QILIN_TRY(alloc_once(g, &L->exp_gate_up_scale, gu_scales, ss, name));
    return alloc_once(g, &L->exp_down_scale, dn_scales, ss, name);
}

static qilin_status upload_quant_expert(shard *g, const quant_weight *w, const qilin_tensor_spec *s,
                                        const qilin_shard_slice *sl) {
    const qilin_model_desc *d = g->desc;
    const int wq = wq_of_format(sl->format), B = QUANT_FP8_BLOCK;
    const bool fp8 = wq == QILIN_MOE_W_FP8_BLOCK, down = s->slot == QILIN_W_EXP_DOWN;
    if ((fp8 && w->format != QILIN_WF_FP8_BLOCK) || (!fp8 && w->format != QILIN_WF_INT4_GROUP))
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor %s is %s; the plan keeps this model's routed experts %s",
                           d->source, w->name, qilin_wformat_name(w->format), fp8 ? "FP8" : "INT4");
    QILIN_TRY(quant_check(w));
    if (!fp8 && w->scale_dtype != QILIN_BF16)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: tensor %s: INT4 group scales are %s; experts kept INT4 take bf16 scales", d->source,
                           w->name, qilin_dtype_name(w->scale_dtype));
    const int64_t R = w->rows, C = w->cols, F = g->Fe, H = d->hidden, group = fp8 ? 0 : w->group_size;
    const int64_t r0 = sl->dim == 0 ? sl->start : 0, c0 = sl->dim == 1 ? sl->start : 0;
    bool shape_ok = down ? R == H && (sl->dim == 1 ? sl->count : C) == F : C == H && (sl->dim == 0 ? sl->count : R) == F;
    if (!shape_ok || sl->dim > 1 || (sl->dim >= 0 && sl->alloc_count != sl->count) || (!fp8 && group % 8))
        return qilin_error(QILIN_ERR_FORMAT, "%s: expert tensor %s [%lld, %lld] does not slice to [%s] of %lld",
                           d->source, w->name, (long long)R, (long long)C, down ? "hidden, ffn" : "ffn, hidden",
                           (long long)F);
    layer *L = &g->layers[s->layer];
    /* this GPU's ffn slice starts at the same index in gate/up rows and down columns */
    const int64_t ffn0 = down ? c0 : r0;
    const int row_off = fp8 ? (int)(ffn0 % B) : 0, col_off = (int)(ffn0 % (fp8 ? B : group));
    QILIN_TRY(alloc_quant_experts(g, L, wq, (int)group, row_off, col_off, w->name));
    const size_t e = (size_t)(s->expert - g->e0), part = s->slot == QILIN_W_EXP_UP;
    const unsigned char *data = w->data, *sc = w->scales;
    if (fp8) {
        const int64_t kb_src = (C + B - 1) / B;
        if (!down) { /* rows r0 .. r0 + F of [R, H]: contiguous; scale block rows covering them, all columns */
            int64_t rb = (row_off + F + B - 1) / B, kb = (H + B - 1) / B;
            QILIN_TRY(copy_rows(g, (char *)L->exp_gate_up + (e * 2 + part) * (size_t)(F * H), data + r0 * C, 1,
                                (size_t)(F * H), 0, w->name));
            return copy_rows(g, (float *)L->exp_gate_up_scale + (e * 2 + part) * (size_t)(rb * kb),
                             sc + (r0 / B) * kb_src * 4, rb, (size_t)kb * 4, (size_t)kb_src * 4, w->name);
        }
        int64_t rb = (H + B - 1) / B, cb = (col_off + F + B - 1) / B;
        QILIN_TRY(copy_rows(g, (char *)L->exp_down + e * (size_t)(H * F), data + c0, H, (size_t)F, (size_t)C, w->name));
        return copy_rows(g, (float *)L->exp_down_scale + e * (size_t)(rb * cb), sc + (c0 / B) * 4, rb, (size_t)cb * 4,
                         (size_t)kb_src * 4, w->name);
    }
    const int64_t words_src = (C + 7) / 8, groups_src = C / group;
    if (!down) {
        int64_t kb = (H + group - 1) / group;
        size_t row0 = e * 2 * (size_t)F + part * (size_t)F;
        QILIN_TRY(copy_rows(g, (char *)L->exp_gate_up + row0 * (size_t)(H / 2), data + r0 * words_src * 4, 1,
                            (size_t)(F * words_src * 4), 0, w->name));
        return copy_rows(g, (uint16_t *)L->exp_gate_up_scale + row0 * (size_t)kb, sc + r0 * groups_src * 2, 1,
                         (size_t)(F * kb * 2), 0, w->name);
    }
    if (c0 % 8)
        return qilin_error(QILIN_ERR_FORMAT, "%s: INT4 tensor %s: slice starts at column %lld, inside a packed word",
                           d->source, w->name, (long long)c0);
    int64_t gd = (col_off + F + group - 1) / group;
    QILIN_TRY(copy_rows(g, (char *)L->exp_down + e * (size_t)(H * (F / 2)), data + c0 / 2, H, (size_t)(F / 2),
                        (size_t)words_src * 4, w->name));
    return copy_rows(g, (uint16_t *)L->exp_down_scale + e * (size_t)(H * gd), sc + (c0 / group) * 2, H,
                     (size_t)gd * 2, (size_t)groups_src * 2, w->name);
}

/* A GGUF stacked expert tensor (ffn_gate_exps / ffn_up_exps [E, Fe, H],
 * ffn_down_exps [E, H, Fe]): dequantized on the host to the activation
 * dtype — there are no grouped GGUF expert kernels yet, so routed experts of
 * a quantized GGUF take bf16 (or the activation dtype's) memory — then this
 * GPU's slice (its experts with ep, its Fe rows / columns of every expert
 * with tp) is packed and scattered into the per-layer expert buffers the MoE
 * kernels read ([E, 2Fe, H] gate-then-up per expert, [E, H, Fe]). */
static qilin_status upload_stacked_experts(shard *g, const quant_weight *w, const qilin_tensor_spec *s,
                                           const qilin_shard_slice *sl) {
    const qilin_model_desc *d = g->desc;
    const size_t es = g->es, F = (size_t)g->Fe, E = (size_t)g->E, H = (size_t)d->hidden;
    if (s->n_dims != 3 || (sl->dim >= 0 && sl->alloc_count != sl->count))
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: stacked expert tensor %s: %d-D, split %lld of %lld",
                           d->source, s->name, s->n_dims, (long long)sl->count, (long long)sl->alloc_count);
    layer *L = &g->layers[s->layer];
    QILIN_TRY(alloc_once(g, &L->exp_gate_up, (int64_t)(E * 2 * F * H), es, s->name));
    QILIN_TRY(alloc_once(g, &L->exp_down, (int64_t)(E * H * F), es, s->name));
    if (qilin_device_dry_run()) return QILIN_OK;
    const size_t per = F * H * es, full = (size_t)(w->rows * w->cols) * es;
    void *tmp = malloc(full ? full : 1), *packed = malloc(E * per + 1);
    qilin_status st = QILIN_OK;
    if (!tmp || !packed) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "no host memory to convert %s", w->name);
    if (st == QILIN_OK) st = quant_dequantize(w, 0, w->rows, g->opt->dtype, tmp);
    if (st == QILIN_OK) {
        if (sl->dim < 0)
            memcpy(packed, tmp, E * per);
        else
            pack_slice(packed, tmp, s, sl, es);
    }
    for (size_t e = 0; st == QILIN_OK && e < E; e++) {
        char *dst = s->slot == QILIN_W_EXP_DOWN
                        ? (char *)L->exp_down + e * per
                        : (char *)L->exp_gate_up + (2 * e + (s->slot == QILIN_W_EXP_UP)) * per;
        st = qilin_memcpy_h2d(dst, (char *)packed + e * per, per, g->stream);
    }
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(tmp), free(packed);
    return st;
}

static bool is_stacked_expert(const qilin_tensor_spec *s) {
    return s->expert < 0 &&
           (s->slot == QILIN_W_EXP_GATE || s->slot == QILIN_W_EXP_UP || s->slot == QILIN_W_EXP_DOWN);
}

static qilin_status upload_tensor(shard *g, const qilin_bound_tensor *b, const qilin_shard_slice *sl) {
    const qilin_tensor_spec *s = &g->desc->tensors[b->spec];
    quant_weight w;
    QILIN_TRY(weight_of(g->desc, b, &w));
    if (stays_fp8(b, s)) return upload_fp8(g, &w, s, sl);
    if (s->expert >= 0 && wq_of_format(sl->format)) return upload_quant_expert(g, &w, s, sl);
    if (stays_gguf(b, s)) {
        layer *L = &g->layers[s->layer];
        return upload_gguf(g, &w, b, sl, &L->w[s->slot], &L->gguf[s->slot]);
    }
    if (gguf_vocab_table(b, s))
        return upload_gguf(g, &w, b, sl, &g->global[s->slot], &g->gguf_global[s->slot]);
    if (b->quant == QILIN_WQ_NONE && gguf_format_of(b->dtype, NULL, NULL))
        QILIN_TRY(check_gguf_scales(&w, g->desc->source)); /* dequantized below */
    if (is_stacked_expert(s)) return upload_stacked_experts(g, &w, s, sl);
    void *dst = NULL;
    qilin_dtype dtype;
    QILIN_TRY(destination(g, s, sl, &dst, &dtype));
    QILIN_TRY(upload_slice(g, &w, s, sl, dtype, dst));
    if (s->slot != QILIN_W_LM_HEAD_BIAS) return QILIN_OK;
    /* GPT-J's lm_head bias again in fp32, for the GEMM path's fp32 logits
     * (a copy, not a checkpoint tensor: not in weight_bytes) */
    QILIN_TRY(alloc_once(g, (void **)&g->lm_head_bias_f32, slice_numel(s, sl), sizeof(float),
                         "lm_head bias (fp32)"));
    g->copy_bytes += (uint64_t)slice_numel(s, sl) * sizeof(float);
    return upload_slice(g, &w, s, sl, QILIN_F32, g->lm_head_bias_f32);
}

/* Uploads this GPU's slices of the bound tensors (rank 0 shows progress). */
static qilin_status load_weights(shard *g, const qilin_plan *plan, const qilin_bound_model *bound,
                                 const char *where) {
    const qilin_model_desc *d = g->desc;
    bool progress = g->opt->progress && g->rank == 0;
    int64_t done = 0, total = 0;
    for (int i = 0; i < d->n_tensors; i++) total += numel(&d->tensors[i]);
    for (int i = 0; i < bound->n_tensors; i++) {
        const qilin_bound_tensor *b = &bound->tensors[i];
        const qilin_shard_slice *sl = qilin_plan_find_slice(plan, g->rank, b->spec);
        if (b->data && sl) QILIN_TRY(upload_tensor(g, b, sl)); /* no data: an absent optional tensor */
        done += numel(&d->tensors[b->spec]);
        if (progress)
            fprintf(stderr, "\rloading %s: %5.1f%%", where,
                    total ? 100.0 * (double)done / (double)total : 100.0);
    }
    if (progress) fprintf(stderr, "\n");
    if (d->tied_embeddings) {
        g->global[QILIN_W_LM_HEAD] = g->global[QILIN_W_EMBED];
        g->gguf_global[QILIN_W_LM_HEAD] = g->gguf_global[QILIN_W_EMBED];
    }
    if (!g->global[QILIN_W_EMBED] || !g->global[QILIN_W_LM_HEAD])
        return qilin_error(QILIN_ERR_FORMAT, "%s: no embedding or lm_head weights", where);
    return QILIN_OK;
}

/* ---- buffers: sizes from qilin_plan_workspace ---------------------------- */

/* Each layer's KV pool: kv_blocks blocks of kv_block_size positions
 * (forward.h), this GPU's KV heads of every block (MLA: the whole latent,
 * shared by all heads, on every GPU). With the default sizes, slot s's
 * identity table is the old contiguous slot s. */
static qilin_status alloc_cache(shard *g) {
    const qilin_model_desc *d = g->desc;
    size_t blocks = (size_t)g->kv_blocks, bs = (size_t)g->kv_block_size, es = g->es;
    if (d->attn == QILIN_ATTN_MLA) {
        size_t r = (size_t)d->kv_lora_rank, dr = (size_t)d->qk_rope_dim;
        g->latent_layout = (qilin_kv_layout){(int64_t)(bs * r), (int64_t)r, 0};
        g->pe_layout = (qilin_kv_layout){(int64_t)(bs * dr), (int64_t)dr, 0};
        for (int l = 0; l < d->n_layers; l++) {
            QILIN_TRY(shard_alloc(g, &g->layers[l].k_cache, blocks * bs * r * es, "MLA latent cache"));
            QILIN_TRY(shard_alloc(g, &g->layers[l].v_cache, blocks * bs * dr * es, "MLA rope-key cache"));
        }
        return QILIN_OK;
    }
    size_t nkv = (size_t)g->nkv, hd = (size_t)d->head_dim, hdv = (size_t)d->head_dim_v;
    g->k_layout = (qilin_kv_layout){(int64_t)(bs * nkv * hd), (int64_t)(nkv * hd), (int64_t)hd};
    g->v_layout = (qilin_kv_layout){(int64_t)(bs * nkv * hdv), (int64_t)(nkv * hdv), (int64_t)hdv};
    for (int l = 0; l < d->n_layers; l++) {
        QILIN_TRY(shard_alloc(g, &g->layers[l].k_cache, blocks * bs * nkv * hd * es, "K cache"));
        QILIN_TRY(shard_alloc(g, &g->layers[l].v_cache, blocks * bs * nkv * hdv * es, "V cache"));
    }
    return QILIN_OK;
}

/* The all-to-all dispatch buffers (plan_workspace.c sizes them: chunk rows
 * per rank), and the experts' constant weights of 1. */
static qilin_status alloc_all_to_all(shard *g, int T) {
    const qilin_model_desc *d = g->desc;
    size_t n = (size_t)g->n_ranks, C = (size_t)g->ws.ep_chunk, S = (size_t)(T + g->n_ranks - 1) / n;
    size_t rows = n * C * (size_t)d->hidden * g->es;
    QILIN_TRY(shard_alloc(g, &g->a2a_send, rows, "all-to-all send rows"));
    QILIN_TRY(shard_alloc(g, &g->a2a_recv, rows, "all-to-all received rows"));
    QILIN_TRY(shard_alloc(g, (void **)&g->a2a_send_ids, n * C * 4, "all-to-all send ids"));
    QILIN_TRY(shard_alloc(g, (void **)&g->a2a_recv_ids, n * C * 4, "all-to-all received ids"));
    QILIN_TRY(shard_alloc(g, (void **)&g->a2a_ones, n * C * 4, "all-to-all expert weights"));
    QILIN_TRY(shard_alloc(g, (void **)&g->a2a_pos, S * (size_t)d->top_k * 4, "all-to-all positions"));
    QILIN_TRY(shard_alloc(g, (void **)&g->a2a_counts, n * 4, "all-to-all counts"));
    QILIN_TRY(shard_alloc(g, (void **)&g->a2a_matrix, n * n * 4, "all-to-all count matrix"));
    g->a2a_matrix_host = malloc(n * n * sizeof(int));
    float *ones = malloc(n * C * sizeof(float));
    qilin_status st = QILIN_OK;
    if (!g->a2a_matrix_host || !ones) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "all-to-all: host memory");
    for (size_t i = 0; st == QILIN_OK && i < n * C; i++) ones[i] = 1.0f;
    if (st == QILIN_OK) st = qilin_memcpy_h2d(g->a2a_ones, ones, n * C * 4, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream); /* ones is freed next */
    free(ones);
    return st;
}

static qilin_status alloc_moe(shard *g, int T) {
    const qilin_model_desc *d = g->desc;
    if (d->n_experts <= 0) return QILIN_OK;
    QILIN_TRY(shard_alloc(g, (void **)&g->router_logits, (size_t)T * d->n_experts * 4, "router logits"));
    QILIN_TRY(shard_alloc(g, (void **)&g->topk_w, (size_t)T * d->top_k * 4, "top-k weights"));
    QILIN_TRY(shard_alloc(g, (void **)&g->topk_ids, (size_t)T * d->top_k * 4, "top-k ids"));
    if (g->opt->ep && g->ws.ep_chunk == 0)
        QILIN_TRY(shard_alloc(g, (void **)&g->topk_local, (size_t)T * d->top_k * 4, "local top-k ids"));
    QILIN_TRY(alloc_once(g, (void **)&g->expert_counts, (int64_t)d->n_layers * g->E, 4, "expert counts"));
    g->moe_ws_bytes = g->ws.moe_ws;
    QILIN_TRY(shard_alloc(g, &g->moe_ws, g->moe_ws_bytes, "MoE workspace"));
    return g->ws.ep_chunk > 0 ? alloc_all_to_all(g, T) : QILIN_OK;
}

/* Full-vocabulary logits and sampling live on rank 0; every rank has its
 * vocab columns and the all-gathered block. */
static qilin_status alloc_logits(shard *g, int T, int S) {
    const qilin_model_desc *d = g->desc;
    if (g->rank == 0) {
        QILIN_TRY(shard_alloc(g, (void **)&g->logits, (size_t)T * d->vocab * 4, "logits"));
        QILIN_TRY(shard_alloc(g, (void **)&g->d_sample_ids, (size_t)S * 4, "sampled ids"));
        QILIN_TRY(shard_alloc(g, (void **)&g->d_params, (size_t)S * sizeof(qilin_sampling_params),
                              "sampling params"));
        size_t history = (size_t)S * (size_t)g->opt->max_ctx * 4;
        QILIN_TRY(shard_alloc(g, (void **)&g->d_history, history, "repetition-penalty history"));
        /* [S + 1] history offsets, then [S] where each row's generated ids begin */
        QILIN_TRY(shard_alloc(g, (void **)&g->d_history_start, (size_t)(2 * S + 1) * 4, "history offsets"));
        g->sample_ws_bytes = g->ws.sample_ws;
        QILIN_TRY(shard_alloc(g, &g->sample_ws, g->sample_ws_bytes, "sampling workspace"));
    }
    if (g->n_ranks == 1) return QILIN_OK;
    QILIN_TRY(shard_alloc(g, (void **)&g->logits_local, (size_t)T * g->Vp * 4, "logits (this GPU's vocab)"));
    QILIN_TRY(
        shard_alloc(g, (void **)&g->logits_all, (size_t)g->n_ranks * T * g->Vp * 4, "logits (all GPUs)"));
    if (g->rank != 0) return QILIN_OK;
    int *iota = malloc((size_t)T * sizeof *iota);
    if (!iota) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "logit rows: host memory");
    for (int i = 0; i < T; i++) iota[i] = i;
    qilin_status st = shard_alloc(g, (void **)&g->d_iota, (size_t)T * 4, "logit row ids");
    if (st == QILIN_OK) st = qilin_memcpy_h2d(g->d_iota, iota, (size_t)T * 4, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(iota);
    return st;
}

static qilin_status alloc_attention(shard *g) {
    g->attn_ws_bytes = g->ws.attn_ws;
    if (g->desc->attn == QILIN_ATTN_MLA) {
        QILIN_TRY(shard_alloc(g, &g->mla_kvb, g->ws.mla_kvb, "MLA up-projected K/V"));
        QILIN_TRY(shard_alloc(g, &g->mla_k, g->ws.mla_k, "MLA per-head keys"));
    }
    return shard_alloc(g, &g->attn_ws, g->attn_ws_bytes, "attention workspace");
}

static qilin_status alloc_buffers(shard *g) {
    const qilin_model_desc *d = g->desc;
    int T = g->opt->max_batch_tokens, S = g->opt->max_seqs;
    /* the pool's shape first: the step buffers hold block tables */
    g->kv_block_size = g->opt->kv_block_size;
    g->table_stride = (g->opt->max_ctx + g->kv_block_size - 1) / g->kv_block_size;
    g->kv_blocks = g->opt->kv_cache_tokens / g->kv_block_size;
    g->width = g->ws.width;
    size_t es = g->es, row = (size_t)g->width * es;
    QILIN_TRY(shard_alloc(g, &g->R, (size_t)T * d->hidden * es, "residual stream"));
    QILIN_TRY(shard_alloc(g, &g->X, (size_t)T * d->hidden * es, "sub-layer output"));
    QILIN_TRY(shard_alloc(g, &g->N, (size_t)T * d->hidden * es, "normed input"));
    QILIN_TRY(shard_alloc(g, &g->B1, (size_t)T * row, "scratch 1"));
    QILIN_TRY(shard_alloc(g, &g->B2, (size_t)T * row, "scratch 2"));
    QILIN_TRY(shard_alloc(g, &g->B3, (size_t)T * row, "scratch 3"));
    QILIN_TRY(shard_alloc(g, &g->B4, (size_t)T * row, "scratch 4"));
    QILIN_TRY(alloc_moe(g, T));
    QILIN_TRY(alloc_logits(g, T, S));
    QILIN_TRY(step_buffers_alloc(g)); /* token ids, positions, ... (forward_layers.c) */
    QILIN_TRY(alloc_attention(g));
    return alloc_cache(g);
}

static qilin_status init_rope(shard *g) {
    const qilin_model_desc *d = g->desc;
    int half = d->rope.rot_dim / 2;
    if (half <= 0) return QILIN_OK;
    float *inv = malloc((size_t)half * sizeof *inv);
    if (!inv) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "rope frequencies");
    qilin_status st = qilin_rope_inv_freq(&d->rope, inv, &g->cos_sin_scale);
    if (st == QILIN_OK) st = shard_alloc(g, (void **)&g->inv_freq, (size_t)half * 4, "rope inv_freq");
    if (st == QILIN_OK) st = qilin_memcpy_h2d(g->inv_freq, inv, (size_t)half * 4, g->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(g->stream);
    free(inv);
    return st;
}

/* This GPU's sizes from the plan. */
static void local_sizes(shard *g) {
    const qilin_model_desc *d = g->desc;
    const qilin_gpu_plan *gp = g->gp;
    int n = g->n_ranks;
    g->nh = gp->n_q_heads;
    g->nkv = d->attn == QILIN_ATTN_MLA ? 0 : gp->n_kv_heads;
    g->F = d->ffn_dim / n, g->Fs = d->shared_ffn_dim / n;
    g->Fe = g->opt->ep ? d->moe_ffn_dim : d->moe_ffn_dim / n;
    g->E = gp->n_experts, g->e0 = gp->expert_first;
    g->v0 = gp->vocab_first, g->nv = gp->n_vocab, g->Vp = (d->vocab + n - 1) / n;
}

qilin_status shard_load(shard *g, const qilin_plan *plan, const qilin_bound_model *bound, const char *where) {
    const qilin_model_desc *d = g->desc;
    g->gp = &plan->gpus[g->rank];
    g->es = qilin_dtype_size(g->opt->dtype);
    local_sizes(g);
    const qilin_model_options *o = g->opt;
    qilin_plan_workspace(plan, g->rank, o->max_batch_tokens, o->max_seqs, o->max_ctx, (int)g->es, &g->ws);
    qilin_device_props props;
    QILIN_TRY(qilin_device_set(g->device));
    QILIN_TRY(qilin_device_get_props(g->device, &props));
    g->n_sms = props.sm_count;
    QILIN_TRY(qilin_stream_create(&g->stream));
    QILIN_TRY(qilin_blas_create(&g->blas));
    if (!(g->layers = calloc((size_t)d->n_layers, sizeof *g->layers)))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_model_load: host memory");
    QILIN_TRY(load_weights(g, plan, bound, where));
    g->weight_bytes = g->bytes - g->copy_bytes;
    QILIN_TRY(alloc_buffers(g));
    return init_rope(g);
}

void shard_free(shard *g) {
    if (g->stream) qilin_stream_synchronize(g->stream); /* the last step may still be running */
    if (g->desc && g->layers) {
        for (int l = 0; l < g->desc->n_layers; l++) {
            layer *L = &g->layers[l];
            for (int s = 0; s < QILIN_SLOT_COUNT; s++) qilin_free(L->w[s]), qilin_free(L->fp8[s].scale);
            void *per_layer[] = {L->gate_up,     L->shared_gate_up, L->exp_gate_up,       L->exp_down,
                                 L->exp_gate_up_scale, L->exp_down_scale, L->router_bias, L->k_cache,
                                 L->v_cache};
            for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) qilin_free(per_layer[i]);
        }
    }
    if (g->desc && g->desc->tied_embeddings) g->global[QILIN_W_LM_HEAD] = NULL;
    for (int s = 0; s < QILIN_W_LAYER_FIRST; s++) qilin_free(g->global[s]);
    void *bufs[] = {g->lm_head_bias_f32,
                    g->inv_freq,
                    g->R,
                    g->X,
                    g->N,
                    g->B1,
                    g->B2,
                    g->B3,
                    g->B4,
                    g->router_logits,
                    g->topk_w,
                    g->logits,
                    g->logits_local,
                    g->logits_all,
                    g->topk_ids,
                    g->topk_local,
                    g->expert_counts,
                    g->d_iota,
                    g->attn_ws,
                    g->moe_ws,
                    g->mla_kvb,
                    g->mla_k,
                    g->d_sample_ids,
                    g->d_params,
                    g->d_history,
                    g->d_history_start,
                    g->sample_ws,
                    g->a2a_send,
                    g->a2a_recv,
                    g->a2a_send_ids,
                    g->a2a_recv_ids,
                    g->a2a_ones,
                    g->a2a_pos,
                    g->a2a_counts,
                    g->a2a_matrix};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qilin_free(bufs[i]);
    step_buffers_free(g);
    free(g->a2a_matrix_host);
    qilin_blas_destroy(g->blas);
    qilin_stream_destroy(g->stream);
    qilin_comm_destroy(g->comm);
    free(g->layers);
    memset(g, 0, sizeof *g);
}
