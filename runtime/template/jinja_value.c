/* jinja_value.c — the Jinja subset's values: refcounted strings, lists and
 * insertion-ordered dicts, with Python's str()/repr()/==/truthiness and
 * json.dumps as transformers' tojson filter calls it. */
#define _GNU_SOURCE /* memmem, strdup, localtime_r */
#include "runtime/template/jinja_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------- memory budget */

static _Thread_local jmem *tl_mem;

void jmem_begin(jmem *m) { tl_mem = m; }
void jmem_end(void) { tl_mem = NULL; }

/* Grows *charged to `want` bytes against this thread's budget (no budget: nothing). */
static qilin_status mem_charge(size_t *charged, size_t want) {
    jmem *m = tl_mem;
    if (!m || want <= *charged) return QILIN_OK;
    size_t more = want - *charged;
    if (more > m->max || m->live > m->max - more)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "template '%s': strings, lists and dicts would take more than the memory limit of "
                           "%zu bytes",
                           m->name, m->max);
    m->live += more;
    *charged = want;
    return QILIN_OK;
}

static void mem_release(size_t charged) {
    if (tl_mem && charged <= tl_mem->live) tl_mem->live -= charged;
}

/* ---------------------------------------------------------------- refcounts */

jv jv_ref(jv v) {
    switch (v.kind) {
    case JK_STR:
        v.u.s->rc++;
        break;
    case JK_LIST:
        v.u.l->rc++;
        break;
    case JK_DICT:
    case JK_NS:
        v.u.d->rc++;
        break;
    case JK_FUNC:
        v.u.fn->rc++;
        break;
    default:
        break;
    }
    return v;
}

static void str_free(jstr *s) {
    mem_release(s->charged);
    free(s);
}

/* Recursion here is bounded by JV_MAX_DEPTH (checked when items are added). */
static void list_free(jlist *l) {
    for (size_t i = 0; i < l->n; i++) jv_unref(l->items[i]);
    mem_release(l->charged);
    free(l->items);
    free(l);
}

static void dict_free(jdict *d) {
    for (size_t i = 0; i < d->n; i++) {
        if (--d->keys[i]->rc == 0) str_free(d->keys[i]);
        jv_unref(d->vals[i]);
    }
    mem_release(d->charged);
    free(d->keys);
    free(d->vals);
    free(d->slots);
    free(d);
}

uint32_t jv_depth(jv v) {
    return v.kind == JK_LIST   ? v.u.l->depth
           : v.kind == JK_DICT ? v.u.d->depth
           : v.kind == JK_FUNC ? v.u.fn->depth /* a bound method holds its receiver */
                               : 0;
}

uint64_t jv_weight(jv v) { return v.kind == JK_LIST ? v.u.l->weight : v.kind == JK_DICT ? v.u.d->weight : 1; }

/* Adding `item` to a container of *depth / *weight: refuses nesting past JV_MAX_DEPTH. */
static qilin_status add_item_shape(uint32_t *depth, uint64_t *weight, jv item) {
    uint32_t d = jv_depth(item) + 1;
    if (d > JV_MAX_DEPTH)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "template '%s': lists and dicts nested deeper than %d",
                           tl_mem ? tl_mem->name : "?", JV_MAX_DEPTH);
    if (d > *depth) *depth = d;
    uint64_t w = jv_weight(item);
    *weight = *weight > UINT64_MAX / 2 - w ? UINT64_MAX / 2 : *weight + w;
    return QILIN_OK;
}

void jv_unref(jv v) {
    switch (v.kind) {
    case JK_STR:
        if (--v.u.s->rc == 0) str_free(v.u.s);
        break;
    case JK_LIST:
        if (--v.u.l->rc == 0) list_free(v.u.l);
        break;
    case JK_DICT:
    case JK_NS:
        if (--v.u.d->rc == 0) dict_free(v.u.d);
        break;
    case JK_FUNC:
        if (--v.u.fn->rc == 0) {
            jv_unref(v.u.fn->self);
            free(v.u.fn);
        }
        break;
    default:
        break;
    }
}

void jv_unrefp(jv *v) {
    jv_unref(*v);
    *v = jv_undef(NULL);
}

/* ---------------------------------------------------------------- buffers */

qilin_status jbuf_reserve(jbuf *b, size_t n) {
    size_t max = b->max ? b->max : ((size_t)64 << 20);
    if (n > max || b->n > max - n)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "jinja: output or string larger than the limit of %zu bytes", max);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1; /* never past what the limit lets it hold */
        QILIN_TRY(mem_charge(&b->charged, cap));
        char *p = realloc(b->p, cap);
        if (!p) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
    }
    return QILIN_OK;
}

qilin_status jbuf_put(jbuf *b, const char *s, size_t n) {
    QILIN_TRY(jbuf_reserve(b, n));
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return QILIN_OK;
}

qilin_status jbuf_puts(jbuf *b, const char *s) { return jbuf_put(b, s, strlen(s)); }
qilin_status jbuf_putc(jbuf *b, char c) { return jbuf_put(b, &c, 1); }
void jbuf_free(jbuf *b) {
    mem_release(b->charged);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = b->charged = 0;
}

/* ---------------------------------------------------------------- constructors */

qilin_status jv_str(const char *s, size_t n, jv *out) {
    size_t charged = 0;
    if (n > SIZE_MAX / 2) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: string of %zu bytes", n);
    QILIN_TRY(mem_charge(&charged, sizeof(jstr) + n + 1));
    jstr *p = malloc(sizeof *p + n + 1);
    if (!p) {
        mem_release(charged);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (string of %zu bytes)", n);
    }
    p->rc = 1;
    p->charged = charged;
    p->len = n;
    if (n) memcpy(p->data, s, n);
    p->cps = utf8_count(p->data, n);
    p->data[n] = 0;
    out->kind = JK_STR;
    out->u.s = p;
    return QILIN_OK;
}

qilin_status jv_str_take(jbuf *b, jv *out) {
    qilin_status st = jv_str(b->p ? b->p : "", b->n, out);
    jbuf_free(b);
    return st;
}

qilin_status jv_list_new(size_t cap, jv *out) {
    size_t charged = 0;
    if (cap > SIZE_MAX / 2 / sizeof(jv))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: list of %zu", cap);
    QILIN_TRY(mem_charge(&charged, sizeof(jlist) + cap * sizeof(jv)));
    jlist *l = calloc(1, sizeof *l);
    if (!l) {
        mem_release(charged);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (list)");
    }
    l->rc = 1;
    l->weight = 1;
    l->charged = charged;
    if (cap) {
        l->items = malloc(cap * sizeof *l->items);
        if (!l->items) {
            mem_release(charged);
            free(l);
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (list of %zu)", cap);
        }
        l->cap = cap;
    }
    out->kind = JK_LIST;
    out->u.l = l;
    return QILIN_OK;
}

qilin_status jv_list_push(jv list, jv item) {
    jlist *l = list.u.l;
    qilin_status st = add_item_shape(&l->depth, &l->weight, item);
    if (st != QILIN_OK) {
        jv_unref(item);
        return st;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        if ((st = mem_charge(&l->charged, sizeof(jlist) + cap * sizeof(jv))) != QILIN_OK) {
            jv_unref(item);
            return st;
        }
        jv *p = realloc(l->items, cap * sizeof *p);
        if (!p) {
            jv_unref(item);
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (list of %zu)", cap);
        }
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = item;
    return QILIN_OK;
}

qilin_status jv_dict_new(jkind kind, jv *out) {
    size_t charged = 0;
    QILIN_TRY(mem_charge(&charged, sizeof(jdict)));
    jdict *d = calloc(1, sizeof *d);
    if (!d) {
        mem_release(charged);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (dict)");
    }
    d->rc = 1;
    d->weight = 1;
    d->charged = charged;
    out->kind = kind;
    out->u.d = d;
    return QILIN_OK;
}

static uint64_t key_hash(const char *key, size_t klen) { /* FNV-1a */
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < klen; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211u;
    return h;
}

static bool key_is(const jstr *k, const char *key, size_t klen) {
    return k->len == klen && memcmp(k->data, key, klen) == 0;
}

/* Small dicts are searched in order; past DICT_INDEXED keys a hash index
 * (open addressing, slot = position + 1) keeps lookups O(1), so a dict of
 * 100k keys from a request's JSON is built in linear time. */
#define DICT_INDEXED 8

static long dict_find(const jdict *d, const char *key, size_t klen) {
    if (!d->slots) {
        for (size_t i = 0; i < d->n; i++)
            if (key_is(d->keys[i], key, klen)) return (long)i;
        return -1;
    }
    size_t mask = d->nslots - 1;
    for (size_t s = key_hash(key, klen) & mask;; s = (s + 1) & mask) {
        uint32_t at = d->slots[s];
        if (at == 0) return -1;
        if (at <= d->n && key_is(d->keys[at - 1], key, klen)) return (long)at - 1;
    }
}

static void index_add(jdict *d, size_t i) {
    size_t mask = d->nslots - 1, s = key_hash(d->keys[i]->data, d->keys[i]->len) & mask;
    while (d->slots[s]) s = (s + 1) & mask;
    d->slots[s] = (uint32_t)i + 1;
}

/* Bytes a dict of capacity cap holds (its index at twice the capacity). */
static size_t dict_bytes(size_t cap) {
    return sizeof(jdict) + cap * (sizeof(jstr *) + sizeof(jv)) +
           (cap > DICT_INDEXED ? 2 * cap * sizeof(uint32_t) : 0);
}

/* Grows keys/vals (and the index) to cap entries. */
static qilin_status dict_grow(jdict *d, size_t cap) {
    if (cap > UINT32_MAX / 2) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: dict of %zu keys", cap);
    QILIN_TRY(mem_charge(&d->charged, dict_bytes(cap)));
    jstr **k = realloc(d->keys, cap * sizeof *k);
    if (k) d->keys = k;
    jv *v = k ? realloc(d->vals, cap * sizeof *v) : NULL;
    if (v) d->vals = v;
    uint32_t *slots = v && cap > DICT_INDEXED ? calloc(2 * cap, sizeof *slots) : NULL;
    if (!v || (cap > DICT_INDEXED && !slots))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (dict of %zu)", cap);
    d->cap = cap;
    if (slots) {
        free(d->slots);
        d->slots = slots;
        d->nslots = 2 * cap;
        for (size_t i = 0; i < d->n; i++) index_add(d, i);
    }
    return QILIN_OK;
}

qilin_status jv_dict_set(jv dict, const char *key, size_t klen, jv val) {
    jdict *d = dict.u.d;
    /* A namespace is mutable, so its shape is not tracked (walks do not enter
     * one; the render frees them flat). A dict's shape only grows: replacing a
     * value keeps the old value's share, an over-estimate. */
    qilin_status st = dict.kind == JK_DICT ? add_item_shape(&d->depth, &d->weight, val) : QILIN_OK;
    if (st != QILIN_OK) {
        jv_unref(val);
        return st;
    }
    long i = dict_find(d, key, klen);
    if (i >= 0) { /* Python keeps the key's first position */
        jv_unref(d->vals[i]);
        d->vals[i] = val;
        return QILIN_OK;
    }
    if (d->n == d->cap && (st = dict_grow(d, d->cap ? d->cap * 2 : 4)) != QILIN_OK) {
        jv_unref(val);
        return st;
    }
    jv k = jv_none();
    st = jv_str(key, klen, &k);
    if (st != QILIN_OK) {
        jv_unref(val);
        return st;
    }
    d->keys[d->n] = k.u.s;
    d->vals[d->n] = val;
    if (d->slots) index_add(d, d->n);
    d->n++;
    return QILIN_OK;
}

jv jv_dict_get(jv dict, const char *key, size_t klen, bool *found) {
    long i = dict_find(dict.u.d, key, klen);
    *found = i >= 0;
    return i >= 0 ? dict.u.d->vals[i] : jv_undef(NULL);
}

/* ---------------------------------------------------------------- Python semantics */

bool jv_truthy(jv v) {
    switch (v.kind) {
    case JK_UNDEF:
    case JK_NONE:
        return false;
    case JK_BOOL:
        return v.u.b;
    case JK_INT:
        return v.u.i != 0;
    case JK_FLOAT:
        return v.u.f != 0.0;
    case JK_STR:
        return v.u.s->len != 0;
    case JK_LIST:
        return v.u.l->n != 0;
    case JK_DICT:
        return v.u.d->n != 0;
    default:
        return true;
    }
}

static bool is_num(jv v) { return v.kind == JK_INT || v.kind == JK_FLOAT || v.kind == JK_BOOL; }
static double num(jv v) {
    return v.kind == JK_FLOAT ? v.u.f : v.kind == JK_BOOL ? (double)v.u.b : (double)v.u.i;
}

/* Recursion is bounded by JV_MAX_DEPTH; callers charge the walk to the step budget. */
bool jv_equal(jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.kind != JK_FLOAT && b.kind != JK_FLOAT)
            return (a.kind == JK_BOOL ? a.u.b : a.u.i) == (b.kind == JK_BOOL ? b.u.b : b.u.i);
        return num(a) == num(b);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JK_UNDEF:
    case JK_NONE:
        return true;
    case JK_STR:
        return a.u.s->len == b.u.s->len && memcmp(a.u.s->data, b.u.s->data, a.u.s->len) == 0;
    case JK_LIST: /* Python compares items by identity first: a list equals itself */
        if (a.u.l == b.u.l) return true;
        if (a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->items[i], b.u.l->items[i])) return false;
        return true;
    case JK_DICT:
        if (a.u.d == b.u.d) return true;
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            bool found;
            jv bv = jv_dict_get(b, a.u.d->keys[i]->data, a.u.d->keys[i]->len, &found);
            if (!found || !jv_equal(a.u.d->vals[i], bv)) return false;
        }
        return true;
    case JK_NS:
        return a.u.d == b.u.d;
    case JK_FUNC:
        return a.u.fn == b.u.fn;
    default:
        return false;
    }
}

const char *jv_type_name(jv v) {
    static const char *names[] = {"Undefined", "NoneType", "bool", "int",       "float",
                                  "str",       "list",     "dict", "Namespace", "function"};
    return names[v.kind];
}

void jv_format_float(double f, char out[32]) {
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    char digits[40];
    int prec = 1;
    for (; prec <= 17; prec++) { /* shortest %e that reads back exactly, as Python's repr */
        snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
        if (strtod(digits, NULL) == f) break;
    }
    /* digits is "[-]d.ddde[+-]XX": take mantissa digits and exponent */
    const char *p = digits;
    bool neg = *p == '-';
    if (neg) p++;
    char mant[24];
    int nm = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    mant[nm] = 0;
    int exp = atoi(p + 1);
    while (nm > 1 && mant[nm - 1] == '0') mant[--nm] = 0;
    char *o = out;
    if (neg) *o++ = '-';
    if (exp < -4 || exp >= 16) { /* Python's repr switches to scientific at 1e16 and below 1e-4 */
        *o++ = mant[0];
        if (nm > 1) {
            *o++ = '.';
            memcpy(o, mant + 1, (size_t)nm - 1);
            o += nm - 1;
        }
        sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return;
    }
    if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -exp - 1; i++) *o++ = '0';
        memcpy(o, mant, (size_t)nm);
        o += nm;
    } else {
        for (int i = 0; i <= exp; i++) *o++ = i < nm ? mant[i] : '0';
        *o++ = '.';
        if (nm > exp + 1) {
            memcpy(o, mant + exp + 1, (size_t)(nm - exp - 1));
            o += nm - exp - 1;
        } else {
            *o++ = '0';
        }
    }
    *o = 0;
}

/* Python's repr of a str: single quotes unless the text has ' and no ". */
static qilin_status repr_str(const jstr *s, jbuf *b) {
    char q = (memchr(s->data, '\'', s->len) && !memchr(s->data, '"', s->len)) ? '"' : '\'';
    QILIN_TRY(jbuf_putc(b, q));
    for (size_t i = 0; i < s->len;) {
        unsigned char ch = (unsigned char)s->data[i];
        char esc[16] = {0};
        if (ch == '\\' || ch == (unsigned char)q) {
            esc[0] = '\\';
            esc[1] = (char)ch;
        } else if (ch == '\n')
            strcpy(esc, "\\n");
        else if (ch == '\r')
            strcpy(esc, "\\r");
        else if (ch == '\t')
            strcpy(esc, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            snprintf(esc, sizeof esc, "\\x%02x", ch);
        if (esc[0]) {
            QILIN_TRY(jbuf_puts(b, esc));
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t adv =
            utf8proc_iterate((const utf8proc_uint8_t *)s->data + i, (utf8proc_ssize_t)(s->len - i), &cp);
        if (adv <= 0) adv = 1, cp = ch;
        utf8proc_category_t cat = cp >= 0x80 ? utf8proc_category(cp) : UTF8PROC_CATEGORY_LU;
        bool printable =
            !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
              cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
              cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
        if (!printable) {
            snprintf(esc, sizeof esc,
                     cp <= 0xff     ? "\\x%02x"
                     : cp <= 0xffff ? "\\u%04x"
                                    : "\\U%08x",
                     (unsigned)cp);
            QILIN_TRY(jbuf_puts(b, esc));
        } else {
            QILIN_TRY(jbuf_put(b, s->data + i, (size_t)adv));
        }
        i += (size_t)adv;
    }
    return jbuf_putc(b, q);
}

qilin_status jv_repr(jv v, jbuf *b) {
    switch (v.kind) {
    case JK_STR:
        return repr_str(v.u.s, b);
    case JK_LIST:
        QILIN_TRY(jbuf_putc(b, v.u.l->tuple ? '(' : '['));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) QILIN_TRY(jbuf_puts(b, ", "));
            QILIN_TRY(jv_repr(v.u.l->items[i], b));
        }
        if (v.u.l->tuple && v.u.l->n == 1) QILIN_TRY(jbuf_putc(b, ','));
        return jbuf_putc(b, v.u.l->tuple ? ')' : ']');
    case JK_UNDEF:
        return jbuf_puts(b, "Undefined");
    case JK_DICT:
        QILIN_TRY(jbuf_putc(b, '{'));
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) QILIN_TRY(jbuf_puts(b, ", "));
            QILIN_TRY(repr_str(v.u.d->keys[i], b));
            QILIN_TRY(jbuf_puts(b, ": "));
            QILIN_TRY(jv_repr(v.u.d->vals[i], b));
        }
        return jbuf_putc(b, '}');
    default:
        return jv_to_str(v, b);
    }
}

qilin_status jv_to_str(jv v, jbuf *b) {
    char tmp[40];
    switch (v.kind) {
    case JK_UNDEF:
        return QILIN_OK;
    case JK_NONE:
        return jbuf_puts(b, "None");
    case JK_BOOL:
        return jbuf_puts(b, v.u.b ? "True" : "False");
    case JK_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        return jbuf_puts(b, tmp);
    case JK_FLOAT:
        jv_format_float(v.u.f, tmp);
        return jbuf_puts(b, tmp);
    case JK_STR:
        return jbuf_put(b, v.u.s->data, v.u.s->len);
    case JK_LIST:
    case JK_DICT:
        return jv_repr(v, b);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "jinja: printing a %s value (Python would print its repr)",
                           jv_type_name(v));
    }
}

/* ---------------------------------------------------------------- json.dumps */

static qilin_status json_str(const char *s, size_t n, bool ascii, jbuf *b) {
    QILIN_TRY(jbuf_putc(b, '"'));
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[16] = {0};
        switch (ch) {
        case '"':
            strcpy(esc, "\\\"");
            break;
        case '\\':
            strcpy(esc, "\\\\");
            break;
        case '\n':
            strcpy(esc, "\\n");
            break;
        case '\r':
            strcpy(esc, "\\r");
            break;
        case '\t':
            strcpy(esc, "\\t");
            break;
        case '\b':
            strcpy(esc, "\\b");
            break;
        case '\f':
            strcpy(esc, "\\f");
            break;
        default:
            if (ch < 0x20 || (ascii && ch == 0x7f)) snprintf(esc, sizeof esc, "\\u%04x", ch);
        }
        if (esc[0]) {
            QILIN_TRY(jbuf_puts(b, esc));
            i++;
            continue;
        }
        if (ch < 0x80 || !ascii) {
            QILIN_TRY(jbuf_putc(b, (char)ch));
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t adv =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (adv <= 0) adv = 1, cp = 0xfffd;
        if (cp >= 0x10000) {
            unsigned v = (unsigned)cp - 0x10000;
            snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
        }
        QILIN_TRY(jbuf_puts(b, esc));
        i += (size_t)adv;
    }
    return jbuf_putc(b, '"');
}

static qilin_status json_newline(const jjson_opts *o, jbuf *b, int depth) {
    QILIN_TRY(jbuf_putc(b, '\n'));
    for (int d = 0; d < depth; d++) {
        if (o->indent_str)
            QILIN_TRY(jbuf_puts(b, o->indent_str));
        else
            for (int i = 0; i < o->indent; i++) QILIN_TRY(jbuf_putc(b, ' '));
    }
    return QILIN_OK;
}

static int key_cmp(const void *a, const void *b) {
    const jstr *x = *(const jstr *const *)a, *y = *(const jstr *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->data, y->data, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static qilin_status json_dict(jv v, const jjson_opts *o, jbuf *b, int depth) {
    bool pretty = o->indent >= 0 || o->indent_str;
    const char *isep = o->item_sep ? o->item_sep : pretty ? "," : ", ";
    const char *ksep = o->key_sep ? o->key_sep : ": ";
    jdict *d = v.u.d;
    if (d->n == 0) return jbuf_puts(b, "{}");
    jstr **order = malloc(d->n * sizeof *order);
    if (!order) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (tojson)");
    memcpy(order, d->keys, d->n * sizeof *order);
    if (o->sort_keys) qsort(order, d->n, sizeof *order, key_cmp);
    qilin_status st = jbuf_putc(b, '{');
    for (size_t i = 0; i < d->n && st == QILIN_OK; i++) {
        if (i) st = jbuf_puts(b, isep);
        if (st == QILIN_OK && pretty) st = json_newline(o, b, depth + 1);
        if (st == QILIN_OK) st = json_str(order[i]->data, order[i]->len, o->ensure_ascii, b);
        if (st == QILIN_OK) st = jbuf_puts(b, ksep);
        bool found;
        if (st == QILIN_OK)
            st = jv_tojson(jv_dict_get(v, order[i]->data, order[i]->len, &found), o, b, depth + 1);
    }
    free(order);
    QILIN_TRY(st);
    if (pretty) QILIN_TRY(json_newline(o, b, depth));
    return jbuf_putc(b, '}');
}

qilin_status jv_tojson(jv v, const jjson_opts *o, jbuf *b, int depth) {
    char tmp[40];
    if (depth > 512) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "jinja: tojson: value nested too deeply");
    bool pretty = o->indent >= 0 || o->indent_str;
    switch (v.kind) {
    case JK_NONE:
        return jbuf_puts(b, "null");
    case JK_BOOL:
        return jbuf_puts(b, v.u.b ? "true" : "false");
    case JK_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        return jbuf_puts(b, tmp);
    case JK_FLOAT:
        if (isnan(v.u.f)) return jbuf_puts(b, "NaN");
        if (isinf(v.u.f)) return jbuf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        jv_format_float(v.u.f, tmp);
        return jbuf_puts(b, tmp);
    case JK_STR:
        return json_str(v.u.s->data, v.u.s->len, o->ensure_ascii, b);
    case JK_LIST: {
        const char *isep = o->item_sep ? o->item_sep : pretty ? "," : ", ";
        if (v.u.l->n == 0) return jbuf_puts(b, "[]");
        QILIN_TRY(jbuf_putc(b, '['));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) QILIN_TRY(jbuf_puts(b, isep));
            if (pretty) QILIN_TRY(json_newline(o, b, depth + 1));
            QILIN_TRY(jv_tojson(v.u.l->items[i], o, b, depth + 1));
        }
        if (pretty) QILIN_TRY(json_newline(o, b, depth));
        return jbuf_putc(b, ']');
    }
    case JK_DICT:
        return json_dict(v, o, b, depth);
    default:
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "jinja: tojson: Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

/* ---------------------------------------------------------------- from jansson */

qilin_status jv_from_json(const json_t *j, jv *out, int depth) {
    if (depth > 256)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "jinja: JSON input nested deeper than 256");
    switch (json_typeof(j)) {
    case JSON_NULL:
        *out = jv_none();
        return QILIN_OK;
    case JSON_TRUE:
        *out = jv_bool(true);
        return QILIN_OK;
    case JSON_FALSE:
        *out = jv_bool(false);
        return QILIN_OK;
    case JSON_INTEGER:
        *out = jv_int((int64_t)json_integer_value(j));
        return QILIN_OK;
    case JSON_REAL:
        *out = jv_float(json_real_value(j));
        return QILIN_OK;
    case JSON_STRING:
        return jv_str(json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        QILIN_TRY(jv_list_new(json_array_size(j), out));
        for (size_t i = 0; i < json_array_size(j); i++) {
            jv item;
            qilin_status st = jv_from_json(json_array_get(j, i), &item, depth + 1);
            if (st == QILIN_OK) st = jv_list_push(*out, item);
            if (st != QILIN_OK) {
                jv_unrefp(out);
                return st;
            }
        }
        return QILIN_OK;
    }
    case JSON_OBJECT: {
        QILIN_TRY(jv_dict_new(JK_DICT, out));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            jv item;
            qilin_status st = jv_from_json(val, &item, depth + 1);
            if (st == QILIN_OK) st = jv_dict_set(*out, key, strlen(key), item);
            if (st != QILIN_OK) {
                jv_unrefp(out);
                return st;
            }
        }
        return QILIN_OK;
    }
    }
    return qilin_error(QILIN_ERR_INTERNAL, "jinja: unknown JSON type");
}

/* ---------------------------------------------------------------- UTF-8 */

size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

size_t jstr_offset(const jstr *s, size_t cp_index) {
    if (s->cps == s->len) return cp_index < s->len ? cp_index : s->len;
    return utf8_offset(s->data, s->len, cp_index);
}

size_t utf8_offset(const char *s, size_t n, size_t cp_index) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (c == cp_index) return i;
            c++;
        }
    }
    return n;
}

bool py_isspace_at(const char *s, size_t n, size_t *adv) {
    unsigned char ch = (unsigned char)s[0];
    *adv = 1;
    if (ch < 0x80) return (ch >= 0x09 && ch <= 0x0d) || (ch >= 0x1c && ch <= 0x20);
    utf8proc_int32_t cp;
    utf8proc_ssize_t a = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    if (a <= 0) return false;
    *adv = (size_t)a;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}
