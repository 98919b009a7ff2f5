/* fuzz_safetensors.c — libFuzzer target for host/safetensors.c (and the
 * host/quant.c views of what it accepts).
 *
 * An input starting with '{' is a sharded checkpoint's index: it is written
 * as model.safetensors.index.json into a private directory that also holds a
 * valid shard, shard-ok.safetensors (tensor "a"), and opened with
 * st_checkpoint_open. Anything else is one .safetensors file for st_open.
 * Rejected inputs must fail with a status and a message and return no
 * handle. For accepted files the invariants of safetensors.h are checked:
 * tensors in data order tile the data buffer exactly, each tensor's byte
 * count equals its shape's (recomputed here with overflow checks), names are
 * unique and found, metadata round-trips; every tensor's first and last byte
 * is read, and F32/F16/BF16, FP8 (+ "_scale_inv") and INT4 pack-quantized
 * ("_packed" + "_scale" + "_shape") tensors are dequantised. */
#include "fuzz_util.h"

#include <sys/stat.h>

#include "host/quant.h"
#include "host/safetensors.h"

static char index_dir[64];

static void remove_index_dir(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", index_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/shard-ok.safetensors", index_dir);
    unlink(p);
    rmdir(index_dir);
}

static void write_file(const char *path, const void *data, size_t size) {
    unlink(path);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) abort();
}

static const char *index_path(const uint8_t *data, size_t size) {
    static char path[128];
    if (!index_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(index_dir, sizeof index_dir, "%s/qilin_fuzz_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(index_dir)) abort();
        atexit(remove_index_dir);
        static const char shard[] = "\x37\0\0\0\0\0\0\0"
                                    "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}"
                                    "\x80\x3f\x00\x40";
        char p[128];
        snprintf(p, sizeof p, "%s/shard-ok.safetensors", index_dir);
        write_file(p, shard, sizeof shard - 1);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", index_dir);
    }
    write_file(path, data, size);
    return path;
}

static void dequant_first_row(const quant_weight *w) {
    if (w->cols > (1 << 16)) return;
    float *row = malloc((size_t)w->cols * sizeof *row);
    if (!row) return;
    qilin_status s = quant_dequantize(w, 0, 1, QILIN_F32, row);
    FUZZ_CHECK(s == QILIN_OK, "dequantising '%s': %s", w->name, qilin_last_error());
    free(row);
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The tensor named `name` with `from` replaced by `to` at its end, or NULL. */
static const st_tensor *sibling(const st_file *f, const char *name, const char *from, const char *to) {
    char buf[512];
    size_t a = strlen(name), b = strlen(from);
    if (a - b + strlen(to) >= sizeof buf) return NULL;
    snprintf(buf, sizeof buf, "%.*s%s", (int)(a - b), name, to);
    return st_find(f, buf);
}

static void try_quant_views(const st_file *f, const st_tensor *t) {
    quant_weight w;
    qilin_status s = QILIN_ERR_UNSUPPORTED;
    const st_tensor *a, *b;
    if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
        s = quant_weight_from_st(t, &w);
    } else if (t->dtype == ST_F8_E4M3 && (a = sibling(f, t->name, "", "_scale_inv"))) {
        s = quant_weight_fp8(t, a, &w);
    } else if (has_suffix(t->name, "_packed") && (a = sibling(f, t->name, "_packed", "_scale"))) {
        b = sibling(f, t->name, "_packed", "_shape");
        int64_t groups = a->ndim == 2 ? a->shape[1] : 0;
        int64_t in = t->ndim == 2 ? 8 * t->shape[1] : 0;
        if (b && b->dtype == ST_I64 && b->ndim == 1 && b->shape[0] == 2)
            memcpy(&in, (const char *)b->data + 8, 8);
        else if (b && b->dtype == ST_I32 && b->ndim == 1 && b->shape[0] == 2) {
            int32_t v;
            memcpy(&v, (const char *)b->data + 4, 4);
            in = v;
        }
        s = quant_weight_int4(t, a, b, groups > 0 && in > 0 && in % groups == 0 ? in / groups : 32, &w);
    } else {
        return;
    }
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        return;
    }
    if (w.rows > 0) dequant_first_row(&w);
}

static void check_file(const st_file *f, const uint8_t *data, size_t size) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    FUZZ_CHECK(hlen <= size - 8, "header length %llu", (unsigned long long)hlen);
    uint64_t total = 0;
    const uint8_t *prev_end = NULL;
    for (int i = 0; i < st_tensor_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        FUZZ_CHECK(st_find(f, t->name) == t, "tensor '%s' not found by name", t->name);
        uint64_t n = st_dtype_size(t->dtype);
        FUZZ_CHECK(n != 0 && t->ndim >= 0 && t->ndim <= ST_MAX_DIMS, "tensor '%s' dtype/ndim", t->name);
        int zero = 0, overflow = 0;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "tensor '%s' shape[%d] < 0", t->name, d);
            zero |= t->shape[d] == 0;
            overflow |= __builtin_mul_overflow(n, (uint64_t)t->shape[d], &n);
        }
        FUZZ_CHECK(zero ? t->nbytes == 0 : !overflow && n == t->nbytes,
                   "tensor '%s' has %zu bytes, shape needs %llu", t->name, t->nbytes, (unsigned long long)n);
        FUZZ_CHECK(!prev_end || (const uint8_t *)t->data == prev_end,
                   "tensor '%s' does not follow the previous one", t->name);
        prev_end = (const uint8_t *)t->data + t->nbytes;
        total += t->nbytes;
        if (t->nbytes) {
            volatile uint8_t sink = ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
            (void)sink;
        }
    }
    FUZZ_CHECK(total == size - 8 - hlen, "tensors cover %llu of %llu data bytes", (unsigned long long)total,
               (unsigned long long)(size - 8 - hlen));
    for (int i = 0; i < st_metadata_count(f); i++) {
        const char *k, *v;
        st_metadata_at(f, i, &k, &v);
        FUZZ_CHECK(k && v && st_metadata_get(f, k) == v, "metadata entry %d", i);
    }
    for (int i = 0; i < st_tensor_count(f); i++) try_quant_views(f, st_tensor_at(f, i));
}

static void check_checkpoint(const st_checkpoint *c) {
    for (int i = 0; i < st_checkpoint_tensor_count(c); i++) {
        const st_tensor *t = st_checkpoint_tensor_at(c, i);
        FUZZ_CHECK(st_checkpoint_find(c, t->name) == t, "tensor '%s' not found by name", t->name);
        FUZZ_CHECK(i == 0 || strcmp(st_checkpoint_tensor_at(c, i - 1)->name, t->name) < 0,
                   "names not sorted");
    }
    FUZZ_CHECK(st_checkpoint_file_count(c) >= 0 && st_checkpoint_file_count(c) <= 1, "one shard exists");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qilin_clear_error();
    qilin_status s;
    if (size > 0 && data[0] == '{') {
        st_checkpoint *c = (st_checkpoint *)1;
        s = st_checkpoint_open(index_path(data, size), &c);
        if (s == QILIN_OK) {
            check_checkpoint(c);
            st_checkpoint_close(c);
        } else {
            FUZZ_CHECK(c == NULL, "handle returned with %s", qilin_status_name(s));
        }
    } else {
        st_file *f = (st_file *)1;
        s = st_open(fuzz_input_path(data, size), &f);
        if (s == QILIN_OK) {
            check_file(f, data, size);
            st_close(f);
        } else {
            FUZZ_CHECK(f == NULL, "handle returned with %s", qilin_status_name(s));
        }
    }
    if (s != QILIN_OK) fuzz_check_failure(s);
    return 0;
}
