/* config.c — typed access to Hugging Face config.json and
 * generation_config.json kept as a jansson tree (see config.h). */
#include "host/config.h"

#include "host/fileio.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Config files are a few KB; a bound keeps a wrong path from eating memory. */
#define HF_CONFIG_MAX_BYTES ((size_t)16 << 20)

struct hf_config {
    json_t *root; /* owned reference; views hold their own */
    json_t *obj;  /* the object this handle reads (root, or nested for a view) */
    char *name;
};

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static qilin_status wrap(json_t *root, json_t *obj, const char *name, hf_config **out) {
    hf_config *c = calloc(1, sizeof *c);
    if (!c || !(c->name = dup_string(name))) {
        free(c);
        json_decref(root);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: config handle", name);
    }
    c->root = root;
    c->obj = obj;
    *out = c;
    return QILIN_OK;
}

static qilin_status finish_load(json_t *root, const json_error_t *je, const char *name, hf_config **out) {
    if (!root)
        return qilin_error(QILIN_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, je->line,
                           je->column, je->text);
    if (!json_is_object(root)) {
        json_decref(root);
        return qilin_error(QILIN_ERR_FORMAT, "%s: top level is not a JSON object", name);
    }
    return wrap(root, root, name, out);
}

qilin_status hf_config_parse(const char *text, size_t len, const char *name, hf_config **out) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    return finish_load(root, &je, name, out);
}

qilin_status hf_config_open(const char *path, hf_config **out) {
    *out = NULL;
    char *buf;
    size_t n;
    QILIN_TRY(qilin_file_read(path, HF_CONFIG_MAX_BYTES, &buf, &n));
    qilin_status s = hf_config_parse(buf, n, path, out);
    free(buf);
    return s;
}

void hf_config_close(hf_config *c) {
    if (!c) return;
    json_decref(c->root);
    free(c->name);
    free(c);
}

const char *hf_config_name(const hf_config *c) { return c->name; }
void *hf_config_json(const hf_config *c) { return c->obj; }

/* The value at a key, trying the literal key first, then a dotted path.
 * NULL when any step is missing or not an object. */
static json_t *lookup(const hf_config *c, const char *key) {
    json_t *v = json_object_get(c->obj, key);
    if (v || !strchr(key, '.')) return v;
    json_t *cur = c->obj;
    const char *seg = key;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!json_is_object(cur)) return NULL;
        cur = json_object_getn(cur, seg, n);
        if (!cur || !dot) return cur;
        seg = dot + 1;
    }
}

/* *v = the value, NULL when missing or null (an error only if required). */
static qilin_status get(const hf_config *c, const char *key, int required, json_t **v) {
    *v = lookup(c, key);
    if (json_is_null(*v)) *v = NULL;
    if (!*v && required)
        return qilin_error(QILIN_ERR_FORMAT, "%s: required key '%s' is missing", c->name, key);
    return QILIN_OK;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static qilin_status wrong(const hf_config *c, const char *key, const json_t *v, const char *want) {
    return qilin_error(QILIN_ERR_FORMAT, "%s: key '%s' is %s, expected %s", c->name, key, json_kind(v), want);
}

static qilin_status as_int(const hf_config *c, const char *key, const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return QILIN_OK;
    }
    double d = json_is_real(v) ? json_real_value(v) : NAN;
    /* Some exporters write 1.0 for integer fields; accept only exact integers. */
    if (json_is_real(v) && d == floor(d) && fabs(d) < 9.0e15) {
        *out = (int64_t)d;
        return QILIN_OK;
    }
    return wrong(c, key, v, "an integer");
}

qilin_status hf_config_int_or(const hf_config *c, const char *key, int64_t def, int64_t *out) {
    json_t *v;
    QILIN_TRY(get(c, key, 0, &v));
    if (!v) {
        *out = def;
        return QILIN_OK;
    }
    return as_int(c, key, v, out);
}

qilin_status hf_config_int(const hf_config *c, const char *key, int64_t *out) {
    json_t *v;
    QILIN_TRY(get(c, key, 1, &v));
    return as_int(c, key, v, out);
}

static qilin_status as_float(const hf_config *c, const char *key, const json_t *v, double *out) {
    if (!json_is_number(v)) return wrong(c, key, v, "a number");
    *out = json_number_value(v);
    return QILIN_OK;
}

qilin_status hf_config_float(const hf_config *c, const char *key, double *out) {
    json_t *v;
    QILIN_TRY(get(c, key, 1, &v));
    return as_float(c, key, v, out);
}

qilin_status hf_config_float_or(const hf_config *c, const char *key, double def, double *out) {
    json_t *v;
    QILIN_TRY(get(c, key, 0, &v));
    if (!v) {
        *out = def;
        return QILIN_OK;
    }
    return as_float(c, key, v, out);
}

static qilin_status as_bool(const hf_config *c, const char *key, const json_t *v, bool *out) {
    if (!json_is_boolean(v)) return wrong(c, key, v, "a boolean");
    *out = json_is_true(v);
    return QILIN_OK;
}

qilin_status hf_config_bool(const hf_config *c, const char *key, bool *out) {
    json_t *v;
    QILIN_TRY(get(c, key, 1, &v));
    return as_bool(c, key, v, out);
}

qilin_status hf_config_bool_or(const hf_config *c, const char *key, bool def, bool *out) {
    json_t *v;
    QILIN_TRY(get(c, key, 0, &v));
    if (!v) {
        *out = def;
        return QILIN_OK;
    }
    return as_bool(c, key, v, out);
}

qilin_status hf_config_string(const hf_config *c, const char *key, const char **out) {
    json_t *v;
    QILIN_TRY(get(c, key, 1, &v));
    if (!json_is_string(v)) return wrong(c, key, v, "a string");
    *out = json_string_value(v);
    return QILIN_OK;
}

qilin_status hf_config_string_or(const hf_config *c, const char *key, const char *def, const char **out) {
    json_t *v;
    QILIN_TRY(get(c, key, 0, &v));
    if (!v) {
        *out = def;
        return QILIN_OK;
    }
    if (!json_is_string(v)) return wrong(c, key, v, "a string");
    *out = json_string_value(v);
    return QILIN_OK;
}

qilin_status hf_config_alias(hf_config *c, const char *key, const char *alias) {
    json_t *a = json_object_get(c->obj, alias), *k = json_object_get(c->obj, key);
    if (json_is_null(a)) a = NULL;
    if (json_is_null(k)) k = NULL;
    if (!a) return QILIN_OK;
    if (k) {
        if (json_equal(a, k)) return QILIN_OK;
        char *ka = json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT),
             *kk = json_dumps(k, JSON_ENCODE_ANY | JSON_COMPACT);
        qilin_status s = qilin_error(
            QILIN_ERR_FORMAT, "%s: key '%s' (%.40s) and its alias '%s' (%.40s) are both set and differ",
            c->name, key, kk ? kk : "?", alias, ka ? ka : "?");
        free(ka);
        free(kk);
        return s;
    }
    if (json_object_set(c->obj, key, a) != 0)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: alias '%s' for '%s'", c->name, alias, key);
    return QILIN_OK;
}

bool hf_config_has(const hf_config *c, const char *key) {
    json_t *v = lookup(c, key);
    return v && !json_is_null(v);
}

qilin_status hf_config_int_list(const hf_config *c, const char *key, int64_t *out, size_t cap, size_t *n) {
    json_t *v;
    *n = 0;
    QILIN_TRY(get(c, key, 0, &v));
    if (!v) return QILIN_OK;
    if (!json_is_array(v)) {
        if (cap < 1)
            return qilin_error(QILIN_ERR_FORMAT, "%s: key '%s': no room for one value", c->name, key);
        QILIN_TRY(as_int(c, key, v, &out[0]));
        *n = 1;
        return QILIN_OK;
    }
    if (json_array_size(v) > cap)
        return qilin_error(QILIN_ERR_FORMAT, "%s: key '%s' has %zu values, at most %zu supported", c->name,
                           key, json_array_size(v), cap);
    for (size_t i = 0; i < json_array_size(v); i++) QILIN_TRY(as_int(c, key, json_array_get(v, i), &out[i]));
    *n = json_array_size(v);
    return QILIN_OK;
}

qilin_status hf_config_sub(const hf_config *c, const char *key, hf_config **out) {
    *out = NULL;
    json_t *v;
    QILIN_TRY(get(c, key, 1, &v));
    if (!json_is_object(v)) return wrong(c, key, v, "an object");
    size_t n = strlen(c->name) + strlen(key) + 2;
    char *name = malloc(n);
    if (!name) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: view name", c->name);
    snprintf(name, n, "%s:%s", c->name, key);
    qilin_status s = wrap(json_incref(c->root), v, name, out);
    free(name);
    return s;
}

qilin_status hf_generation_config_read(const hf_config *c, hf_generation_config *g) {
    QILIN_TRY(hf_config_bool_or(c, "do_sample", false, &g->do_sample));
    QILIN_TRY(hf_config_float_or(c, "temperature", 1.0, &g->temperature));
    QILIN_TRY(hf_config_float_or(c, "top_p", 1.0, &g->top_p));
    QILIN_TRY(hf_config_int_or(c, "top_k", 50, &g->top_k));
    QILIN_TRY(hf_config_float_or(c, "min_p", 0.0, &g->min_p));
    QILIN_TRY(hf_config_float_or(c, "repetition_penalty", 1.0, &g->repetition_penalty));
    QILIN_TRY(hf_config_int_or(c, "max_new_tokens", -1, &g->max_new_tokens));
    QILIN_TRY(hf_config_int_or(c, "bos_token_id", -1, &g->bos_token_id));
    QILIN_TRY(hf_config_int_or(c, "pad_token_id", -1, &g->pad_token_id));
    return hf_config_int_list(c, "eos_token_id", g->eos_token_ids, HF_MAX_EOS, &g->n_eos);
}

qilin_status hf_generation_config_load(const char *path, hf_generation_config *out) {
    hf_config *c;
    QILIN_TRY(hf_config_open(path, &c));
    qilin_status s = hf_generation_config_read(c, out);
    hf_config_close(c);
    return s;
}
