/* fuzz_gguf.c — libFuzzer target for host/gguf.c (and host/quant.c on what it
 * accepts). The input is the whole file. A rejected file must fail with a
 * status and a message and return no handle; an accepted one must keep every
 * promise of gguf.h: unique keys and names, typed getters agree with the
 * stored type, each tensor's byte count equals its shape's (computed here
 * with overflow checks), its data is aligned and lies inside the file. Then
 * every value, array element and tensor byte is read (ASan sees any stray
 * read) and supported tensors are dequantised. */
#include "fuzz_util.h"

#include "host/gguf.h"
#include "host/quant.h"

static void check_kv(const gguf_file *f, const gguf_kv *kv, const uint8_t *base, size_t size) {
    FUZZ_CHECK(gguf_find_kv(f, kv->key) == kv, "key '%s' not found by name", kv->key);
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
        bool b;
        gguf_str s;
        gguf_array a;
    } v;
    qilin_status s = QILIN_OK;
    switch (kv->type) {
    case GGUF_TYPE_UINT8:
        s = gguf_get_u8(f, kv->key, &v.u8);
        break;
    case GGUF_TYPE_INT8:
        s = gguf_get_i8(f, kv->key, &v.i8);
        break;
    case GGUF_TYPE_UINT16:
        s = gguf_get_u16(f, kv->key, &v.u16);
        break;
    case GGUF_TYPE_INT16:
        s = gguf_get_i16(f, kv->key, &v.i16);
        break;
    case GGUF_TYPE_UINT32:
        s = gguf_get_u32(f, kv->key, &v.u32);
        break;
    case GGUF_TYPE_INT32:
        s = gguf_get_i32(f, kv->key, &v.i32);
        break;
    case GGUF_TYPE_UINT64:
        s = gguf_get_u64(f, kv->key, &v.u64);
        break;
    case GGUF_TYPE_INT64:
        s = gguf_get_i64(f, kv->key, &v.i64);
        break;
    case GGUF_TYPE_FLOAT32:
        s = gguf_get_f32(f, kv->key, &v.f32);
        break;
    case GGUF_TYPE_FLOAT64:
        s = gguf_get_f64(f, kv->key, &v.f64);
        break;
    case GGUF_TYPE_BOOL:
        s = gguf_get_bool(f, kv->key, &v.b);
        break;
    case GGUF_TYPE_STRING:
        s = gguf_get_str(f, kv->key, &v.s);
        if (s == QILIN_OK && base && v.s.len)
            FUZZ_CHECK((const uint8_t *)v.s.data >= base && v.s.len <= size &&
                           (const uint8_t *)v.s.data - base <= (ptrdiff_t)(size - v.s.len),
                       "string '%s' outside the file", kv->key);
        break;
    case GGUF_TYPE_ARRAY: {
        s = gguf_get_array(f, kv->key, kv->v.arr.type, &v.a);
        volatile double sink = 0;
        uint64_t n = v.a.count;
        for (uint64_t i = 0; s == QILIN_OK && i < n; i++) {
            if (v.a.type == GGUF_TYPE_STRING) {
                const gguf_str *e = &v.a.strs[i];
                FUZZ_CHECK(e->len <= size, "array '%s' string %llu too long", kv->key, (unsigned long long)i);
                if (e->len) sink += (unsigned char)e->data[0] + (unsigned char)e->data[e->len - 1];
            } else if (i < 64 || i + 1 == n) {
                sink += gguf_array_float(&v.a, i) + (double)gguf_array_int(&v.a, i);
            }
        }
        (void)sink;
        break;
    }
    }
    FUZZ_CHECK(s == QILIN_OK, "getter for '%s' (%s) failed: %s", kv->key, gguf_type_name(kv->type),
               qilin_last_error());
}

/* Bytes of a tensor computed independently; 0 and *ok = 0 on overflow. */
static uint64_t expected_bytes(const gguf_tensor *t, int *ok) {
    size_t bb;
    int blck = gguf_dtype_block(t->type, &bb);
    *ok = blck > 0 && t->ne[0] % blck == 0;
    uint64_t n = *ok ? (uint64_t)(t->ne[0] / blck) : 0, r;
    if (__builtin_mul_overflow(n, (uint64_t)bb, &r)) *ok = 0;
    for (int d = 1; d < GGUF_MAX_DIMS && *ok; d++)
        if (__builtin_mul_overflow(r, (uint64_t)t->ne[d], &r)) *ok = 0;
    /* A zero dimension anywhere makes the tensor empty, overflow or not. */
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        if (t->ne[d] == 0) {
            *ok = 1;
            r = 0;
        }
    return *ok ? r : 0;
}

static void check_tensor(const gguf_file *f, const gguf_tensor *t, size_t size) {
    FUZZ_CHECK(gguf_find_tensor(f, t->name) == t, "tensor '%s' not found by name", t->name);
    FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= GGUF_MAX_DIMS, "n_dims %d", t->n_dims);
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        FUZZ_CHECK(t->ne[d] >= 0 && (d < t->n_dims || t->ne[d] == 1), "tensor '%s' ne[%d] = %lld", t->name, d,
                   (long long)t->ne[d]);
    int ok;
    uint64_t want = expected_bytes(t, &ok);
    FUZZ_CHECK(ok && want == t->nbytes, "tensor '%s' (%s) has %zu bytes, its shape needs %llu%s", t->name,
               gguf_dtype_name(t->type), t->nbytes, (unsigned long long)want, ok ? "" : " (overflow)");
    FUZZ_CHECK(t->offset % gguf_alignment(f) == 0, "tensor '%s' offset %llu unaligned", t->name,
               (unsigned long long)t->offset);
    uint64_t start = gguf_data_offset(f) + t->offset;
    FUZZ_CHECK(start >= gguf_data_offset(f) && start <= size && t->nbytes <= size - start,
               "tensor '%s' [%llu, +%zu) outside the %zu-byte file", t->name, (unsigned long long)start,
               t->nbytes, size);
    if (t->nbytes) {
        volatile uint8_t sink = ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        (void)sink;
    }

    quant_weight w;
    qilin_status s = quant_weight_from_gguf(t, &w);
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        return;
    }
    if (w.cols > (1 << 16)) return;
    float *row = malloc((size_t)w.cols * sizeof *row);
    if (!row) return;
    s = quant_dequantize(&w, w.rows - 1, 1, QILIN_F32, row);
    FUZZ_CHECK(s == QILIN_OK, "dequantising '%s': %s", t->name, qilin_last_error());
    free(row);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = (gguf_file *)1;
    qilin_clear_error();
    qilin_status s = gguf_open(fuzz_input_path(data, size), &f);
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(f == NULL, "handle returned with %s", qilin_status_name(s));
        return 0;
    }
    uint32_t a = gguf_alignment(f);
    FUZZ_CHECK(gguf_version(f) == 2 || gguf_version(f) == 3, "version %u", gguf_version(f));
    FUZZ_CHECK(a != 0 && (a & (a - 1)) == 0, "alignment %u", a);
    FUZZ_CHECK(gguf_data_offset(f) % a == 0, "data offset %llu", (unsigned long long)gguf_data_offset(f));
    /* The mapping's base, from any tensor: strings must lie inside it too. */
    const uint8_t *base = NULL;
    if (gguf_tensor_count(f) > 0) {
        const gguf_tensor *t0 = gguf_tensor_at(f, 0);
        base = (const uint8_t *)t0->data - gguf_data_offset(f) - t0->offset;
    }
    for (int64_t i = 0; i < gguf_kv_count(f); i++) check_kv(f, gguf_kv_at(f, i), base, size);
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) check_tensor(f, gguf_tensor_at(f, i), size);
    FUZZ_CHECK(gguf_kv_at(f, gguf_kv_count(f)) == NULL && gguf_tensor_at(f, -1) == NULL,
               "index past the end");
    gguf_close(f);
    return 0;
}
