/* gguf.c — strict GGUF v2/v3 reader (see gguf.h for the layout and contract).
 *
 * Parsing goes through a bounds-checked cursor: every read first checks that
 * its bytes lie inside the mapping, and every count is compared with the bytes
 * left before it sizes an allocation, so a corrupt or hostile file costs at
 * most O(file size) memory and never reads outside the mapping. */
#define _POSIX_C_SOURCE 200809L
#include "host/gguf.h"

#include "host/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct gguf_file {
    char *path;
    const uint8_t *map;
    size_t size;
    uint32_t version, alignment;
    uint64_t data_offset;
    gguf_kv *kvs;
    int64_t n_kvs;
    const gguf_kv **kv_by_key;
    gguf_tensor *tensors;
    int64_t n_tensors;
    const gguf_tensor **tensor_by_name;
};

/* Smallest encodings, used to bound counts before allocating. */
enum { MIN_KV_BYTES = 8 + 4 + 1, MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8, STRING_HEADER_BYTES = 8 };

typedef struct cursor {
    const gguf_file *f;
    size_t pos;
    char what[160]; /* the item being read, for messages: "metadata key 3 ('general.name')" */
} cursor;

const char *gguf_type_name(gguf_type t) {
    switch (t) {
#define GGUF_TNAME_(name, id, text, ctype)                                                                   \
    case name:                                                                                               \
        return text;
        GGUF_TYPE_TABLE(GGUF_TNAME_)
#undef GGUF_TNAME_
    }
    return "?";
}

int gguf_dtype_block(gguf_dtype t, size_t *block_bytes) {
    switch (t) {
#define GGUF_DBLOCK_(name, id, text, blck, bytes)                                                            \
    case name:                                                                                               \
        *block_bytes = bytes;                                                                                \
        return blck;
        GGUF_DTYPE_TABLE(GGUF_DBLOCK_)
#undef GGUF_DBLOCK_
    }
    *block_bytes = 0;
    return 0;
}

const char *gguf_dtype_name(gguf_dtype t) {
    switch (t) {
#define GGUF_DNAME_(name, id, text, blck, bytes)                                                             \
    case name:                                                                                               \
        return text;
        GGUF_DTYPE_TABLE(GGUF_DNAME_)
#undef GGUF_DNAME_
    }
    return "?";
}

/* Bytes of a scalar value of type t; 0 for STRING, ARRAY and unknown types. */
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static int known_type(uint32_t t) { return t <= GGUF_TYPE_FLOAT64; }

/* ---- bounds-checked reads ---- */

static qilin_status need(cursor *c, uint64_t n, const char *item) {
    if (n > c->f->size - c->pos)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: %s runs past end of file at byte %zu", c->f->path,
                           c->what, item, c->pos);
    return QILIN_OK;
}

static uint64_t load_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

static qilin_status read_uint(cursor *c, size_t n, const char *item, uint64_t *v) {
    QILIN_TRY(need(c, n, item));
    *v = load_le(c->f->map + c->pos, n);
    c->pos += n;
    return QILIN_OK;
}

static qilin_status read_u32(cursor *c, const char *item, uint32_t *v) {
    uint64_t x;
    QILIN_TRY(read_uint(c, 4, item, &x));
    *v = (uint32_t)x;
    return QILIN_OK;
}

static qilin_status read_str(cursor *c, const char *item, gguf_str *s) {
    char what[96];
    QILIN_TRY(read_uint(c, 8, item, &s->len));
    snprintf(what, sizeof what, "%s (%llu bytes)", item, (unsigned long long)s->len);
    QILIN_TRY(need(c, s->len, what));
    s->data = (const char *)c->f->map + c->pos;
    c->pos += (size_t)s->len;
    return QILIN_OK;
}

/* A NUL-terminated copy of a string already bounded by the file. */
static qilin_status copy_name(cursor *c, gguf_str s, char **out) {
    if (memchr(s.data, '\0', (size_t)s.len))
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: name contains a NUL byte", c->f->path, c->what);
    *out = malloc((size_t)s.len + 1);
    if (!*out) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: %s: name", c->f->path, c->what);
    memcpy(*out, s.data, (size_t)s.len);
    (*out)[s.len] = '\0';
    return QILIN_OK;
}

/* ---- metadata values ---- */

static qilin_status decode_scalar(cursor *c, uint32_t type, gguf_kv *kv) {
    size_t n = scalar_size(type);
    uint64_t raw;
    QILIN_TRY(read_uint(c, n, gguf_type_name((gguf_type)type), &raw));
    switch (type) {
    case GGUF_TYPE_INT8:
        kv->v.i = (int8_t)raw;
        break;
    case GGUF_TYPE_INT16:
        kv->v.i = (int16_t)raw;
        break;
    case GGUF_TYPE_INT32:
        kv->v.i = (int32_t)raw;
        break;
    case GGUF_TYPE_INT64:
        kv->v.i = (int64_t)raw;
        break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t b = (uint32_t)raw;
        float x;
        memcpy(&x, &b, 4);
        kv->v.f = x;
        break;
    }
    case GGUF_TYPE_FLOAT64:
        memcpy(&kv->v.f, &raw, 8);
        break;
    case GGUF_TYPE_BOOL:
        if (raw > 1)
            return qilin_error(QILIN_ERR_FORMAT, "%s: %s: bool value %llu is neither 0 nor 1", c->f->path,
                               c->what, (unsigned long long)raw);
        kv->v.b = raw != 0;
        break;
    default:
        kv->v.u = raw;
        break;
    }
    return QILIN_OK;
}

static qilin_status read_string_array(cursor *c, gguf_array *a) {
    char item[96];
    snprintf(item, sizeof item, "array of %llu strings", (unsigned long long)a->count);
    /* Each string takes at least its 8-byte length: bound before allocating. */
    if (a->count > (c->f->size - c->pos) / STRING_HEADER_BYTES) return need(c, UINT64_MAX, item);
    gguf_str *s = calloc((size_t)a->count + 1, sizeof *s);
    if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: %s: %s", c->f->path, c->what, item);
    a->strs = s;
    for (uint64_t i = 0; i < a->count; i++) {
        snprintf(item, sizeof item, "string %llu of an array of %llu", (unsigned long long)i,
                 (unsigned long long)a->count);
        QILIN_TRY(read_str(c, item, &s[i]));
    }
    return QILIN_OK;
}

static qilin_status read_array(cursor *c, gguf_array *a) {
    uint32_t et;
    QILIN_TRY(read_u32(c, "array element type", &et));
    if (et == GGUF_TYPE_ARRAY || !known_type(et))
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: array element type %u (%s) not supported", c->f->path,
                           c->what, et, et == GGUF_TYPE_ARRAY ? "nested array" : "unknown");
    a->type = (gguf_type)et;
    QILIN_TRY(read_uint(c, 8, "array length", &a->count));
    if (et == GGUF_TYPE_STRING) return read_string_array(c, a);
    size_t es = scalar_size(et);
    char item[96];
    snprintf(item, sizeof item, "array of %llu %s", (unsigned long long)a->count, gguf_type_name(a->type));
    if (a->count > (c->f->size - c->pos) / es) return need(c, UINT64_MAX, item);
    if (et == GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < a->count; i++)
            if (c->f->map[c->pos + i] > 1)
                return qilin_error(QILIN_ERR_FORMAT, "%s: %s: bool element %llu is neither 0 nor 1",
                                   c->f->path, c->what, (unsigned long long)i);
    a->data = c->f->map + c->pos;
    c->pos += (size_t)(a->count * es);
    return QILIN_OK;
}

static qilin_status read_kv(cursor *c, int64_t index, gguf_kv *kv) {
    gguf_str key;
    snprintf(c->what, sizeof c->what, "metadata key %lld", (long long)index);
    QILIN_TRY(read_str(c, "key", &key));
    QILIN_TRY(copy_name(c, key, (char **)&kv->key));
    snprintf(c->what, sizeof c->what, "metadata key %lld ('%.100s')", (long long)index, kv->key);
    uint32_t type;
    QILIN_TRY(read_u32(c, "value type", &type));
    if (!known_type(type))
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: unknown value type %u", c->f->path, c->what, type);
    kv->type = (gguf_type)type;
    if (type == GGUF_TYPE_STRING) return read_str(c, "string value", &kv->v.str);
    if (type == GGUF_TYPE_ARRAY) return read_array(c, &kv->v.arr);
    return decode_scalar(c, type, kv);
}

/* ---- lookup tables ---- */

static int cmp_kv(const void *a, const void *b) {
    return strcmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}
static int cmp_tensor(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static qilin_status index_kvs(gguf_file *f) {
    f->kv_by_key = malloc(((size_t)f->n_kvs + 1) * sizeof *f->kv_by_key);
    if (!f->kv_by_key) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: key index", f->path);
    for (int64_t i = 0; i < f->n_kvs; i++) f->kv_by_key[i] = &f->kvs[i];
    qsort(f->kv_by_key, (size_t)f->n_kvs, sizeof *f->kv_by_key, cmp_kv);
    for (int64_t i = 1; i < f->n_kvs; i++)
        if (strcmp(f->kv_by_key[i - 1]->key, f->kv_by_key[i]->key) == 0)
            return qilin_error(QILIN_ERR_FORMAT, "%s: duplicate metadata key '%s'", f->path,
                               f->kv_by_key[i]->key);
    return QILIN_OK;
}

static qilin_status read_kvs(gguf_file *f, cursor *c, uint64_t n) {
    snprintf(c->what, sizeof c->what, "header");
    if (n > (f->size - c->pos) / MIN_KV_BYTES) {
        char item[96];
        snprintf(item, sizeof item, "%llu metadata entries", (unsigned long long)n);
        return need(c, UINT64_MAX, item);
    }
    f->kvs = calloc((size_t)n + 1, sizeof *f->kvs);
    if (!f->kvs) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: metadata table", f->path);
    for (f->n_kvs = 0; f->n_kvs < (int64_t)n; f->n_kvs++) QILIN_TRY(read_kv(c, f->n_kvs, &f->kvs[f->n_kvs]));
    return index_kvs(f);
}

static qilin_status read_alignment(gguf_file *f) {
    f->alignment = 32;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return QILIN_OK;
    if (kv->type != GGUF_TYPE_UINT32)
        return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key 'general.alignment' is %s, not uint32",
                           f->path, gguf_type_name(kv->type));
    uint64_t a = kv->v.u;
    if (a == 0 || (a & (a - 1)) != 0)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: metadata key 'general.alignment' is %llu, not a power of two", f->path,
                           (unsigned long long)a);
    f->alignment = (uint32_t)a;
    return QILIN_OK;
}

/* ---- tensor infos ---- */

/* Bytes of a tensor; validates the dims and block divisibility. */
static qilin_status tensor_size(cursor *c, gguf_tensor *t) {
    size_t bb;
    int blck = gguf_dtype_block(t->type, &bb);
    if (blck == 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: ggml type %u unknown or unsupported", c->f->path,
                           c->what, (unsigned)t->type);
    if (t->ne[0] % blck != 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: ne[0] = %lld is not a multiple of the %s block size %d",
                           c->f->path, c->what, (long long)t->ne[0], gguf_dtype_name(t->type), blck);
    /* Saturating product: anything above the file size fails the range check.
     * The first factor saturates too: ne[0] = 2^62 F32 would wrap to 0 bytes. */
    uint64_t blocks = (uint64_t)(t->ne[0] / blck);
    uint64_t bytes = blocks != 0 && bb > UINT64_MAX / blocks ? UINT64_MAX : blocks * bb;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        uint64_t n = (uint64_t)t->ne[d];
        bytes = n != 0 && bytes > UINT64_MAX / n ? UINT64_MAX : bytes * n;
    }
    if (bytes > c->f->size)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: %llu bytes of data exceed the %zu-byte file",
                           c->f->path, c->what, (unsigned long long)bytes, c->f->size);
    t->nbytes = (size_t)bytes;
    return QILIN_OK;
}

static qilin_status read_tensor_info(gguf_file *f, cursor *c, int64_t index, gguf_tensor *t) {
    gguf_str name;
    snprintf(c->what, sizeof c->what, "tensor info %lld", (long long)index);
    QILIN_TRY(read_str(c, "name", &name));
    QILIN_TRY(copy_name(c, name, (char **)&t->name));
    snprintf(c->what, sizeof c->what, "tensor %lld ('%.100s')", (long long)index, t->name);
    uint32_t nd, type;
    QILIN_TRY(read_u32(c, "n_dims", &nd));
    if (nd > GGUF_MAX_DIMS)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: n_dims %u exceeds %d", f->path, c->what, nd,
                           GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims) QILIN_TRY(read_uint(c, 8, "dimension", &ne));
        if (ne > (uint64_t)INT64_MAX)
            return qilin_error(QILIN_ERR_FORMAT, "%s: %s: ne[%d] = %llu is out of range", f->path, c->what, d,
                               (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    QILIN_TRY(read_u32(c, "ggml type", &type));
    t->type = (gguf_dtype)type;
    QILIN_TRY(tensor_size(c, t));
    QILIN_TRY(read_uint(c, 8, "data offset", &t->offset));
    if (t->offset % f->alignment != 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: data offset %llu is not a multiple of the alignment %u",
                           f->path, c->what, (unsigned long long)t->offset, f->alignment);
    return QILIN_OK;
}

/* Every tensor inside the file; sorted by offset, no two overlap. */
static qilin_status place_tensors(gguf_file *f) {
    const gguf_tensor **by_off = malloc(((size_t)f->n_tensors + 1) * sizeof *by_off);
    if (!by_off) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tensor index", f->path);
    uint64_t room = f->data_offset <= f->size ? f->size - f->data_offset : 0;
    qilin_status s = QILIN_OK;
    for (int64_t i = 0; i < f->n_tensors && s == QILIN_OK; i++) {
        gguf_tensor *t = &f->tensors[i];
        by_off[i] = t;
        if (f->data_offset > f->size || t->offset > room || t->nbytes > room - t->offset)
            s = qilin_error(QILIN_ERR_FORMAT,
                            "%s: tensor '%s': data [%llu, +%zu) relative to the data section at "
                            "byte %llu runs past end of file (%zu bytes)",
                            f->path, t->name, (unsigned long long)t->offset, t->nbytes,
                            (unsigned long long)f->data_offset, f->size);
        else
            t->data = f->map + f->data_offset + t->offset;
    }
    if (s == QILIN_OK) {
        qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, cmp_tensor_offset);
        for (int64_t i = 1; i < f->n_tensors && s == QILIN_OK; i++)
            if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
                s = qilin_error(QILIN_ERR_FORMAT,
                                "%s: tensor '%s' at data offset %llu overlaps tensor '%s' "
                                "[%llu, +%zu)",
                                f->path, by_off[i]->name, (unsigned long long)by_off[i]->offset,
                                by_off[i - 1]->name, (unsigned long long)by_off[i - 1]->offset,
                                by_off[i - 1]->nbytes);
    }
    free(by_off);
    return s;
}

static qilin_status read_tensors(gguf_file *f, cursor *c, uint64_t n) {
    snprintf(c->what, sizeof c->what, "tensor infos");
    if (n > (f->size - c->pos) / MIN_TENSOR_INFO_BYTES) {
        char item[96];
        snprintf(item, sizeof item, "%llu tensor infos", (unsigned long long)n);
        return need(c, UINT64_MAX, item);
    }
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    f->tensor_by_name = malloc(((size_t)n + 1) * sizeof *f->tensor_by_name);
    if (!f->tensors || !f->tensor_by_name)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tensor table", f->path);
    for (f->n_tensors = 0; f->n_tensors < (int64_t)n; f->n_tensors++)
        QILIN_TRY(read_tensor_info(f, c, f->n_tensors, &f->tensors[f->n_tensors]));
    for (int64_t i = 0; i < f->n_tensors; i++) f->tensor_by_name[i] = &f->tensors[i];
    qsort(f->tensor_by_name, (size_t)n, sizeof *f->tensor_by_name, cmp_tensor);
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensor_by_name[i - 1]->name, f->tensor_by_name[i]->name) == 0)
            return qilin_error(QILIN_ERR_FORMAT, "%s: duplicate tensor name '%s'", f->path,
                               f->tensor_by_name[i]->name);
    /* The data section starts at the next multiple of the alignment. */
    f->data_offset = (c->pos + f->alignment - 1) / f->alignment * f->alignment;
    return place_tensors(f);
}

/* ---- open / close ---- */

static qilin_status read_header(gguf_file *f) {
    cursor c = {.f = f, .pos = 0};
    snprintf(c.what, sizeof c.what, "header");
    QILIN_TRY(need(&c, 4, "magic"));
    if (memcmp(f->map, "GGUF", 4) != 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: not a GGUF file (magic %02x %02x %02x %02x)", f->path,
                           f->map[0], f->map[1], f->map[2], f->map[3]);
    c.pos = 4;
    uint64_t n_tensors, n_kvs;
    QILIN_TRY(read_u32(&c, "version", &f->version));
    if (f->version != 2 && f->version != 3)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: GGUF version %u not supported (2 and 3 are; a huge value "
                           "means a big-endian file)",
                           f->path, f->version);
    QILIN_TRY(read_uint(&c, 8, "tensor count", &n_tensors));
    QILIN_TRY(read_uint(&c, 8, "metadata count", &n_kvs));
    QILIN_TRY(read_kvs(f, &c, n_kvs));
    QILIN_TRY(read_alignment(f));
    return read_tensors(f, &c, n_tensors);
}

static qilin_status map_file(gguf_file *f) {
    int fd;
    QILIN_TRY(qilin_file_open(f->path, &fd, &f->size));
    /* mmap rejects length 0; an empty file then fails the first bounds check. */
    void *m = f->size ? mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (m == MAP_FAILED) return qilin_error(QILIN_ERR_IO, "%s: mmap failed: %s", f->path, strerror(errno));
    f->map = m;
    return QILIN_OK;
}

qilin_status gguf_open(const char *path, gguf_file **out) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (f) f->path = malloc(strlen(path) + 1);
    if (!f || !f->path) {
        free(f);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: file handle", path);
    }
    memcpy(f->path, path, strlen(path) + 1);
    qilin_status s = map_file(f);
    if (s == QILIN_OK) s = read_header(f);
    if (s != QILIN_OK) {
        gguf_close(f);
        return s;
    }
    *out = f;
    return QILIN_OK;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    /* Partially read entries are zeroed (calloc), so freeing them is safe. */
    if (f->kvs)
        for (int64_t i = 0; i <= f->n_kvs; i++) {
            free((char *)f->kvs[i].key);
            if (f->kvs[i].type == GGUF_TYPE_ARRAY) free((gguf_str *)f->kvs[i].v.arr.strs);
        }
    if (f->tensors)
        for (int64_t i = 0; i <= f->n_tensors; i++) free((char *)f->tensors[i].name);
    if (f->map) munmap((void *)f->map, f->size);
    free(f->kvs);
    free(f->kv_by_key);
    free(f->tensors);
    free(f->tensor_by_name);
    free(f->path);
    free(f);
}

const char *gguf_path(const gguf_file *f) { return f->path; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
int64_t gguf_kv_count(const gguf_file *f) { return f->n_kvs; }
int64_t gguf_tensor_count(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_kvs ? &f->kvs[i] : NULL;
}
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    gguf_kv k = {.key = key};
    const gguf_kv *kp = &k;
    const gguf_kv **hit = bsearch(&kp, f->kv_by_key, (size_t)f->n_kvs, sizeof *f->kv_by_key, cmp_kv);
    return hit ? *hit : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    gguf_tensor k = {.name = name};
    const gguf_tensor *kp = &k;
    const gguf_tensor **hit =
        bsearch(&kp, f->tensor_by_name, (size_t)f->n_tensors, sizeof *f->tensor_by_name, cmp_tensor);
    return hit ? *hit : NULL;
}

qilin_status gguf_get_tensor(const gguf_file *f, const char *name, const gguf_tensor **out) {
    *out = gguf_find_tensor(f, name);
    if (!*out) return qilin_error(QILIN_ERR_FORMAT, "%s: no tensor '%s'", f->path, name);
    return QILIN_OK;
}

/* ---- typed getters ---- */

static qilin_status find_typed(const gguf_file *f, const char *key, gguf_type want, const gguf_kv **out) {
    *out = gguf_find_kv(f, key);
    if (!*out) return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' not found", f->path, key);
    if ((*out)->type != want) {
        const char *arr = (*out)->type == GGUF_TYPE_ARRAY ? " of " : "";
        const char *elem = (*out)->type == GGUF_TYPE_ARRAY ? gguf_type_name((*out)->v.arr.type) : "";
        return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' is %s%s%s, not %s", f->path, key,
                           gguf_type_name((*out)->type), arr, elem, gguf_type_name(want));
    }
    return QILIN_OK;
}

#define GGUF_GETTER_(fn, ctype, type, field)                                                                 \
    qilin_status fn(const gguf_file *f, const char *key, ctype *v) {                                         \
        const gguf_kv *kv;                                                                                   \
        QILIN_TRY(find_typed(f, key, type, &kv));                                                            \
        *v = (ctype)kv->v.field;                                                                             \
        return QILIN_OK;                                                                                     \
    }
GGUF_GETTER_(gguf_get_u8, uint8_t, GGUF_TYPE_UINT8, u)
GGUF_GETTER_(gguf_get_i8, int8_t, GGUF_TYPE_INT8, i)
GGUF_GETTER_(gguf_get_u16, uint16_t, GGUF_TYPE_UINT16, u)
GGUF_GETTER_(gguf_get_i16, int16_t, GGUF_TYPE_INT16, i)
GGUF_GETTER_(gguf_get_u32, uint32_t, GGUF_TYPE_UINT32, u)
GGUF_GETTER_(gguf_get_i32, int32_t, GGUF_TYPE_INT32, i)
GGUF_GETTER_(gguf_get_u64, uint64_t, GGUF_TYPE_UINT64, u)
GGUF_GETTER_(gguf_get_i64, int64_t, GGUF_TYPE_INT64, i)
GGUF_GETTER_(gguf_get_f32, float, GGUF_TYPE_FLOAT32, f)
GGUF_GETTER_(gguf_get_f64, double, GGUF_TYPE_FLOAT64, f)
GGUF_GETTER_(gguf_get_bool, bool, GGUF_TYPE_BOOL, b)
GGUF_GETTER_(gguf_get_str, gguf_str, GGUF_TYPE_STRING, str)
#undef GGUF_GETTER_

qilin_status gguf_get_array(const gguf_file *f, const char *key, gguf_type elem, gguf_array *v) {
    const gguf_kv *kv;
    QILIN_TRY(find_typed(f, key, GGUF_TYPE_ARRAY, &kv));
    if (kv->v.arr.type != elem)
        return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' is array of %s, not array of %s", f->path,
                           key, gguf_type_name(kv->v.arr.type), gguf_type_name(elem));
    *v = kv->v.arr;
    return QILIN_OK;
}

int64_t gguf_array_int(const gguf_array *a, uint64_t i) {
    size_t es = scalar_size(a->type);
    uint64_t raw = load_le((const uint8_t *)a->data + i * es, es);
    switch (a->type) {
    case GGUF_TYPE_INT8:
        return (int8_t)raw;
    case GGUF_TYPE_INT16:
        return (int16_t)raw;
    case GGUF_TYPE_INT32:
        return (int32_t)raw;
    default:
        return (int64_t)raw;
    }
}

double gguf_array_float(const gguf_array *a, uint64_t i) {
    size_t es = scalar_size(a->type);
    uint64_t raw = load_le((const uint8_t *)a->data + i * es, es);
    if (a->type == GGUF_TYPE_FLOAT32) {
        uint32_t b = (uint32_t)raw;
        float x;
        memcpy(&x, &b, 4);
        return x;
    }
    if (a->type == GGUF_TYPE_FLOAT64) {
        double x;
        memcpy(&x, &raw, 8);
        return x;
    }
    return (double)gguf_array_int(a, i);
}
