/* safetensors.c — strict, zero-copy .safetensors reader and sharded-checkpoint
 * index resolver (see safetensors.h for the contract).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON, then the data
 * buffer; each tensor's data_offsets are relative to the buffer. Like the
 * reference implementation, the spans must tile the buffer exactly (sorted by
 * begin: no overlap, no hole, no trailing bytes). */
#define _POSIX_C_SOURCE 200809L
#include "host/safetensors.h"

#include "host/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header is a few MB even for 100k tensors; anything larger is corrupt. */
#define ST_HEADER_MAX ((uint64_t)100 * 1000 * 1000)
#define ST_INDEX_MAX ((off_t)100 * 1000 * 1000)

struct st_file {
    char *path;
    const uint8_t *map;
    size_t map_size;
    json_t *header;     /* kept: tensor names and metadata strings point into it */
    json_t *metadata;   /* borrowed from header; NULL when absent */
    st_tensor *tensors; /* data order */
    int n_tensors;
    const st_tensor **by_name; /* into tensors, sorted by name */
};

struct st_checkpoint {
    st_file **files;
    int n_files;
    st_tensor *tensors; /* sorted by name */
    int n_tensors;
};

size_t st_dtype_size(st_dtype t) {
    switch (t) {
#define ST_SIZE_(name, bytes, text)                                                                          \
    case name:                                                                                               \
        return bytes;
        ST_DTYPE_TABLE(ST_SIZE_)
#undef ST_SIZE_
    default:
        return 0;
    }
}

const char *st_dtype_name(st_dtype t) {
    switch (t) {
#define ST_NAME_(name, bytes, text)                                                                          \
    case name:                                                                                               \
        return text;
        ST_DTYPE_TABLE(ST_NAME_)
#undef ST_NAME_
    default:
        return "?";
    }
}

static int dtype_from_string(const char *s) {
    for (int t = 0; t < ST_DTYPE_COUNT; t++)
        if (strcmp(s, st_dtype_name((st_dtype)t)) == 0) return t;
    return -1;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Maps the whole file read-only. ENOENT is reported through *missing so the
 * index resolver can name a missing shard precisely. */
static qilin_status map_file(const char *path, const uint8_t **map, size_t *size, int *missing) {
    *missing = 0;
    struct stat sb;
    *missing = stat(path, &sb) != 0 && errno == ENOENT;
    int fd;
    QILIN_TRY(qilin_file_open(path, &fd, size));
    if (*size < 8) {
        close(fd);
        return qilin_error(QILIN_ERR_FORMAT, "%s: file is %zu bytes, shorter than the 8-byte header length",
                           path, *size);
    }
    void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file alive */
    if (m == MAP_FAILED) return qilin_error(QILIN_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    *map = m;
    return QILIN_OK;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Reads a JSON integer >= 0 (reals and negatives are format errors). */
static int json_nonneg(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static qilin_status parse_shape(const st_file *f, const char *name, const json_t *shape, st_tensor *t,
                                uint64_t *numel) {
    if (!json_is_array(shape))
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': shape is not an array", f->path, name);
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': %zu dims, at most %d supported", f->path, name,
                           nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    *numel = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t dim;
        if (!json_nonneg(json_array_get(shape, d), &dim))
            return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                               f->path, name, d);
        t->shape[d] = (int64_t)dim;
        /* Saturate instead of overflowing; the span check then fails cleanly. */
        if (dim != 0 && *numel > UINT64_MAX / dim)
            *numel = UINT64_MAX;
        else if (*numel != UINT64_MAX || dim == 0)
            *numel *= dim;
    }
    return QILIN_OK;
}

static qilin_status parse_offsets(const st_file *f, const char *name, const json_t *offs, uint64_t data_size,
                                  uint64_t *begin, uint64_t *end) {
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_nonneg(json_array_get(offs, 0), begin) ||
        !json_nonneg(json_array_get(offs, 1), end))
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets is not [begin, end] of non-negative "
                           "integers",
                           f->path, name);
    if (*end < *begin)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu < begin %llu", f->path,
                           name, (unsigned long long)*end, (unsigned long long)*begin);
    if (*end > data_size)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu) past the %llu-byte "
                           "data buffer",
                           f->path, name, (unsigned long long)*begin, (unsigned long long)*end,
                           (unsigned long long)data_size);
    return QILIN_OK;
}

/* Validates one header entry and fills *t (data pointer relative to `data`). */
static qilin_status parse_entry(const st_file *f, const char *name, const json_t *v, const uint8_t *data,
                                uint64_t data_size, st_tensor *t) {
    if (!json_is_object(v))
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': entry is not an object", f->path, name);
    const char *ds = json_string_value(json_object_get(v, "dtype"));
    if (!ds)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': dtype missing or not a string", f->path, name);
    int dt = dtype_from_string(ds);
    if (dt < 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", f->path, name, ds);
    memset(t, 0, sizeof *t);
    t->name = name;
    t->file = f->path;
    t->dtype = (st_dtype)dt;
    uint64_t numel = 0, begin = 0, end = 0;
    QILIN_TRY(parse_shape(f, name, json_object_get(v, "shape"), t, &numel));
    QILIN_TRY(parse_offsets(f, name, json_object_get(v, "data_offsets"), data_size, &begin, &end));
    uint64_t es = st_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es || numel * es != end - begin)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s': shape needs %llu elements × %llu bytes but "
                           "data_offsets span %llu bytes",
                           f->path, name, (unsigned long long)numel, (unsigned long long)es,
                           (unsigned long long)(end - begin));
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    return QILIN_OK;
}

static qilin_status parse_metadata(st_file *f, json_t *meta) {
    if (!json_is_object(meta))
        return qilin_error(QILIN_ERR_FORMAT, "%s: __metadata__ is not an object", f->path);
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val))
            return qilin_error(QILIN_ERR_FORMAT, "%s: __metadata__ key '%s' is not a string", f->path, key);
    }
    f->metadata = meta;
    return QILIN_OK;
}

static int cmp_span(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->data != y->data) return (const uint8_t *)x->data < (const uint8_t *)y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Sorted by begin, each span must start where the previous one ended. */
static qilin_status check_spans(st_file *f, const uint8_t *data, uint64_t data_size) {
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_span);
    const uint8_t *at = data;
    const char *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        const uint8_t *p = t->data;
        if (p < at)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: tensor '%s' at data offset %zu overlaps tensor '%s' "
                               "(which ends at %zu)",
                               f->path, t->name, (size_t)(p - data), prev, (size_t)(at - data));
        if (p > at)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: tensor '%s' starts at data offset %zu, leaving a "
                               "%zu-byte hole before it",
                               f->path, t->name, (size_t)(p - data), (size_t)(p - at));
        at = p + t->nbytes;
        prev = t->name;
    }
    if ((uint64_t)(at - data) != data_size)
        return qilin_error(QILIN_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor%s%s%s", f->path,
                           (unsigned long long)(data_size - (uint64_t)(at - data)), prev ? " '" : "",
                           prev ? prev : "", prev ? "'" : "");
    return QILIN_OK;
}

static int cmp_ptr_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static qilin_status parse_header(st_file *f) {
    uint64_t n = read_le64(f->map);
    if (n > ST_HEADER_MAX)
        return qilin_error(QILIN_ERR_FORMAT, "%s: header length %llu exceeds the %llu-byte limit", f->path,
                           (unsigned long long)n, (unsigned long long)ST_HEADER_MAX);
    if (n > f->map_size - 8)
        return qilin_error(QILIN_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file",
                           f->path, (unsigned long long)n, f->map_size);
    json_error_t je;
    f->header = json_loadb((const char *)f->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!f->header)
        return qilin_error(QILIN_ERR_FORMAT, "%s: header JSON invalid at byte %d: %s", f->path,
                           8 + je.position, je.text);
    if (!json_is_object(f->header))
        return qilin_error(QILIN_ERR_FORMAT, "%s: header JSON is not an object", f->path);
    const uint8_t *data = f->map + 8 + n;
    uint64_t data_size = f->map_size - 8 - n;
    f->tensors = calloc(json_object_size(f->header) + 1, sizeof *f->tensors);
    if (!f->tensors) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tensor table", f->path);
    const char *key;
    json_t *val;
    json_object_foreach(f->header, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            QILIN_TRY(parse_metadata(f, val));
            continue;
        }
        QILIN_TRY(parse_entry(f, key, val, data, data_size, &f->tensors[f->n_tensors]));
        f->n_tensors++;
    }
    QILIN_TRY(check_spans(f, data, data_size));
    f->by_name = malloc(((size_t)f->n_tensors + 1) * sizeof *f->by_name);
    if (!f->by_name) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: name index", f->path);
    for (int i = 0; i < f->n_tensors; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_ptr_name);
    return QILIN_OK;
}

static qilin_status open_file(const char *path, st_file **out, int *missing) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = dup_string(path))) {
        free(f);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: file handle", path);
    }
    qilin_status s = map_file(path, &f->map, &f->map_size, missing);
    if (s == QILIN_OK) s = parse_header(f);
    if (s != QILIN_OK) {
        st_close(f);
        return s;
    }
    *out = f;
    return QILIN_OK;
}

qilin_status st_open(const char *path, st_file **out) {
    int missing;
    return open_file(path, out, &missing);
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->map_size);
    json_decref(f->header);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }
int st_tensor_count(const st_file *f) { return f->n_tensors; }
const st_tensor *st_tensor_at(const st_file *f, int i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

qilin_status st_get(const st_file *f, const char *name, const st_tensor **out) {
    *out = st_find(f, name);
    if (!*out) return qilin_error(QILIN_ERR_FORMAT, "%s: no tensor '%s'", f->path, name);
    return QILIN_OK;
}

int st_metadata_count(const st_file *f) { return f->metadata ? (int)json_object_size(f->metadata) : 0; }

void st_metadata_at(const st_file *f, int i, const char **key, const char **value) {
    *key = *value = NULL;
    void *it = f->metadata ? json_object_iter(f->metadata) : NULL;
    for (; it && i > 0; i--) it = json_object_iter_next(f->metadata, it);
    if (!it) return;
    *key = json_object_iter_key(it);
    *value = json_string_value(json_object_iter_value(it));
}

const char *st_metadata_get(const st_file *f, const char *key) {
    return f->metadata ? json_string_value(json_object_get(f->metadata, key)) : NULL;
}

/* ------------------------------------------------------------------ */
/* Checkpoints                                                         */
/* ------------------------------------------------------------------ */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dup_string(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static qilin_status load_index(const char *path, json_t **root) {
    int fd;
    size_t size;
    QILIN_TRY(qilin_file_open(path, &fd, &size));
    if (size > (size_t)ST_INDEX_MAX) {
        close(fd);
        return qilin_error(QILIN_ERR_FORMAT, "%s: unreadable or larger than %lld bytes", path,
                           (long long)ST_INDEX_MAX);
    }
    json_error_t je;
    *root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
    close(fd);
    if (!*root)
        return qilin_error(QILIN_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    return QILIN_OK;
}

/* A shard name must be a plain file name in the index's directory. */
static int plain_name(const char *s) {
    return s[0] != '\0' && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Opens shard `shard` (once; `files` is searched by path) for tensor `tname`. */
static qilin_status open_shard(st_checkpoint *c, const char *index, const char *dir, const char *shard,
                               const char *tname, st_file **out) {
    char *path = join_path(dir, shard);
    if (!path) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: shard path", index);
    for (int i = 0; i < c->n_files; i++)
        if (strcmp(c->files[i]->path, path) == 0) {
            *out = c->files[i];
            free(path);
            return QILIN_OK;
        }
    int missing = 0;
    qilin_status s = open_file(path, out, &missing);
    if (s == QILIN_OK)
        c->files[c->n_files++] = *out;
    else if (missing)
        s = qilin_error(QILIN_ERR_FORMAT, "%s: shard '%s' (holding tensor '%s') is missing: %s", index, shard,
                        tname, path);
    else
        s = qilin_error_context(s, "%s: shard '%s' (holding tensor '%s'): ", index, shard, tname);
    free(path);
    return s;
}

static qilin_status resolve_index(st_checkpoint *c, const char *index, json_t *root) {
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) return qilin_error(QILIN_ERR_FORMAT, "%s: no weight_map object", index);
    size_t n = json_object_size(wm);
    char *dir = dir_of(index);
    c->files = calloc(n + 1, sizeof *c->files);
    c->tensors = calloc(n + 1, sizeof *c->tensors);
    if (!dir || !c->files || !c->tensors) {
        free(dir);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tables", index);
    }
    qilin_status s = QILIN_OK;
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        const char *shard = json_string_value(v);
        st_file *f = NULL;
        const st_tensor *t;
        if (!shard || !plain_name(shard))
            s = qilin_error(QILIN_ERR_FORMAT, "%s: weight_map['%s'] is not a plain shard file name", index,
                            name);
        else if ((s = open_shard(c, index, dir, shard, name, &f)) != QILIN_OK) {
        } else if (!(t = st_find(f, name)))
            s = qilin_error(QILIN_ERR_FORMAT,
                            "%s: weight_map puts tensor '%s' in shard '%s', which does not "
                            "contain it",
                            index, name, shard);
        else
            c->tensors[c->n_tensors++] = *t;
        if (s != QILIN_OK) break;
    }
    free(dir);
    return s;
}

static qilin_status open_checkpoint_file(st_checkpoint *c, const char *path) {
    c->files = calloc(1, sizeof *c->files);
    if (!c->files) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tables", path);
    QILIN_TRY(st_open(path, &c->files[0]));
    c->n_files = 1;
    st_file *f = c->files[0];
    c->tensors = malloc(((size_t)f->n_tensors + 1) * sizeof *c->tensors);
    if (!c->tensors) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tables", path);
    memcpy(c->tensors, f->tensors, (size_t)f->n_tensors * sizeof *c->tensors);
    c->n_tensors = f->n_tensors;
    return QILIN_OK;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static qilin_status open_checkpoint_path(st_checkpoint *c, const char *path) {
    if (has_suffix(path, ".json")) {
        json_t *root;
        QILIN_TRY(load_index(path, &root));
        qilin_status s = resolve_index(c, path, root);
        json_decref(root);
        return s;
    }
    return open_checkpoint_file(c, path);
}

/* For a directory: the index if present, else the single model.safetensors. */
static qilin_status open_checkpoint_dir(st_checkpoint *c, const char *dir) {
    char *index = join_path(dir, "model.safetensors.index.json");
    char *single = join_path(dir, "model.safetensors");
    qilin_status s;
    struct stat sb;
    if (!index || !single)
        s = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: paths", dir);
    else if (stat(index, &sb) == 0)
        s = open_checkpoint_path(c, index);
    else if (stat(single, &sb) == 0)
        s = open_checkpoint_path(c, single);
    else
        s = qilin_error(QILIN_ERR_IO, "%s: neither model.safetensors.index.json nor model.safetensors found",
                        dir);
    free(index);
    free(single);
    return s;
}

qilin_status st_checkpoint_open(const char *path, st_checkpoint **out) {
    *out = NULL;
    st_checkpoint *c = calloc(1, sizeof *c);
    if (!c) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: checkpoint handle", path);
    struct stat sb;
    qilin_status s;
    if (stat(path, &sb) != 0)
        s = qilin_error(QILIN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        s = open_checkpoint_dir(c, path);
    else
        s = open_checkpoint_path(c, path);
    if (s != QILIN_OK) {
        st_checkpoint_close(c);
        return s;
    }
    qsort(c->tensors, (size_t)c->n_tensors, sizeof *c->tensors, cmp_tensor_name);
    *out = c;
    return QILIN_OK;
}

void st_checkpoint_close(st_checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->n_files; i++) st_close(c->files[i]);
    free(c->files);
    free(c->tensors);
    free(c);
}

int st_checkpoint_tensor_count(const st_checkpoint *c) { return c->n_tensors; }
const st_tensor *st_checkpoint_tensor_at(const st_checkpoint *c, int i) {
    return i >= 0 && i < c->n_tensors ? &c->tensors[i] : NULL;
}

const st_tensor *st_checkpoint_find(const st_checkpoint *c, const char *name) {
    st_tensor key;
    key.name = name;
    return bsearch(&key, c->tensors, (size_t)c->n_tensors, sizeof *c->tensors, cmp_tensor_name);
}

qilin_status st_checkpoint_get(const st_checkpoint *c, const char *name, const st_tensor **out) {
    *out = st_checkpoint_find(c, name);
    if (!*out) {
        const char *where = c->n_files > 0 ? c->files[0]->path : "checkpoint";
        return qilin_error(QILIN_ERR_FORMAT, "%s: checkpoint has no tensor '%s'", where, name);
    }
    return QILIN_OK;
}

int st_checkpoint_file_count(const st_checkpoint *c) { return c->n_files; }
const st_file *st_checkpoint_file_at(const st_checkpoint *c, int i) {
    return i >= 0 && i < c->n_files ? c->files[i] : NULL;
}
