/* jinja_filters.c — jinja2's filters and tests as chat templates use them,
 * with transformers' tojson (json.dumps, ensure_ascii=False, no HTML
 * escaping, indent / separators / sort_keys arguments).
 *
 * Each filter binds its arguments by jinja2's parameter names, so
 * `default('x', true)` and `default('x', boolean=true)` mean the same. */
#define _GNU_SOURCE /* memmem, strdup, localtime_r */
#include "runtime/template/jinja_internal.h"

#include <utf8proc.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_int(jv v) { return v.kind == JK_INT || v.kind == JK_BOOL; }
static int64_t int_of(jv v) { return v.kind == JK_BOOL ? v.u.b : v.u.i; }
static bool is_num(jv v) { return is_int(v) || v.kind == JK_FLOAT; }
static double num_of(jv v) { return v.kind == JK_FLOAT ? v.u.f : (double)int_of(v); }
static bool given(jv v) { return !(v.kind == JK_UNDEF && v.u.hint == NULL); }

/* jinja2 filters qilin does not implement: QILIN_ERR_UNSUPPORTED when used. */
static const char *const KNOWN_UNSUPPORTED[] = {
    "attr",   "batch",     "center", "dictsort",  "filesizeformat", "format",  "groupby",     "indent",
    "max",    "min",       "pprint", "random",    "slice",          "sort",    "striptags",   "truncate",
    "unique", "urlencode", "urlize", "wordcount", "wordwrap",       "xmlattr", "forceescape", NULL};
static const char *const FILTERS[] = {
    "abs",        "capitalize", "count",      "d",       "default", "e",      "escape", "first",
    "float",      "int",        "items",      "join",    "last",    "length", "list",   "lower",
    "map",        "reject",     "rejectattr", "replace", "reverse", "round",  "safe",   "select",
    "selectattr", "string",     "sum",        "title",   "tojson",  "trim",   "upper",  NULL};
static const char *const TESTS[] = {
    "boolean",  "callable", "defined",  "divisibleby", "eq",    "equalto",     "==",    "escaped",
    "even",     "false",    "float",    "ge",          ">=",    "greaterthan", "gt",    ">",
    "in",       "integer",  "iterable", "le",          "<=",    "lessthan",    "lower", "lt",
    "<",        "mapping",  "ne",       "!=",          "none",  "number",      "odd",   "sameas",
    "sequence", "string",   "true",     "undefined",   "upper", "filter",      "test",  NULL};

static bool listed(const char *const *l, const char *n) {
    for (size_t i = 0; l[i]; i++)
        if (!strcmp(l[i], n)) return true;
    return false;
}

bool jfilter_known(const char *name) { return listed(FILTERS, name) || listed(KNOWN_UNSUPPORTED, name); }
bool jtest_known(const char *name) { return listed(TESTS, name); }

/* Positional and keyword arguments onto params (after the filtered value);
 * slots not given stay undefined with a NULL hint (see given()). */
static qilin_status bind(jctx *c, int line, const char *what, const char *const *params, jv *a, size_t na,
                         char **kw, jv *kv, size_t nkw, jv *slots) {
    size_t np = 0;
    while (params[np]) slots[np] = jv_undef(NULL), np++;
    if (na > np)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "%s takes at most %zu argument(s), got %zu", what,
                    np, na);
    for (size_t i = 0; i < na; i++) slots[i] = a[i];
    for (size_t i = 0; i < nkw; i++) {
        size_t k = 0;
        while (k < np && strcmp(params[k], kw[i])) k++;
        if (k == np)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "%s got an unexpected keyword argument '%s'",
                        what, kw[i]);
        slots[k] = kv[i];
    }
    return QILIN_OK;
}

static qilin_status to_str_value(jctx *c, jv v, jv *out) {
    if (v.kind == JK_STR) {
        *out = jv_ref(v);
        return QILIN_OK;
    }
    jbuf b = {.max = c->out->max};
    qilin_status st = jv_to_str(v, &b);
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return st;
    }
    return jv_str_take(&b, out);
}

static qilin_status length_of(jctx *c, int line, jv v, int64_t *n) {
    switch (v.kind) {
    case JK_UNDEF:
        *n = 0;
        return QILIN_OK;
    case JK_STR:
        *n = (int64_t)v.u.s->cps;
        return QILIN_OK;
    case JK_LIST:
        *n = (int64_t)v.u.l->n;
        return QILIN_OK;
    case JK_DICT:
        *n = (int64_t)v.u.d->n;
        return QILIN_OK;
    default:
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "object of type '%s' has no len()", jv_type_name(v));
    }
}

static qilin_status f_tojson(jctx *c, int line, jv v, jv *s, jv *out) {
    /* transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
    jjson_opts o = {.indent = -1,
                    .ensure_ascii = given(s[0]) && jv_truthy(s[0]),
                    .sort_keys = given(s[3]) && jv_truthy(s[3])};
    if (given(s[1]) && s[1].kind != JK_NONE) {
        if (is_int(s[1]))
            o.indent = int_of(s[1]) < 0 ? 0 : (int)int_of(s[1]);
        else if (s[1].kind == JK_STR)
            o.indent_str = s[1].u.s->data;
        else
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "tojson: indent must be an int or a string");
    }
    if (given(s[2]) && s[2].kind != JK_NONE) {
        if (s[2].kind != JK_LIST || s[2].u.l->n != 2 || s[2].u.l->items[0].kind != JK_STR ||
            s[2].u.l->items[1].kind != JK_STR)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "tojson: separators must be a pair of strings");
        o.item_sep = s[2].u.l->items[0].u.s->data;
        o.key_sep = s[2].u.l->items[1].u.s->data;
    }
    jbuf b = {.max = c->out->max};
    qilin_status st = jv_tojson(v, &o, &b, 0);
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return jerr(c, line, st, "%s", qilin_last_error());
    }
    return jv_str_take(&b, out);
}

/* The ASCII digit of a Unicode decimal digit (category Nd, which comes in
 * runs of ten from 0 to 9), or -1. */
static int unicode_digit(utf8proc_int32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9' ? cp - '0' : -1;
    if (utf8proc_category(cp) != UTF8PROC_CATEGORY_ND) return -1;
    utf8proc_int32_t start = cp;
    while (start > 0 && utf8proc_category(start - 1) == UTF8PROC_CATEGORY_ND) start--;
    return (int)((cp - start) % 10);
}

/* The text of a number as Python's int()/float() read it: surrounding
 * whitespace stripped, Unicode decimal digits as ASCII, underscores between
 * digits removed; false where an underscore is misplaced, the text holds a
 * hex prefix (strtod would read "0x1p3", Python's float() does not) or
 * anything non-ASCII but digits. */
static bool py_number_text(const jstr *s, char *buf, size_t cap) {
    size_t a = 0, e = s->len, adv;
    while (a < e && py_isspace_at(s->data + a, e - a, &adv)) a += adv;
    while (e > a) { /* strip from the end: find the last code point's start */
        size_t k = e - 1;
        while (k > a && ((unsigned char)s->data[k] & 0xc0) == 0x80) k--;
        if (!py_isspace_at(s->data + k, e - k, &adv)) break;
        e = k;
    }
    size_t n = 0;
    bool prev_digit = false;
    for (size_t i = a; i < e;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len =
            utf8proc_iterate((const utf8proc_uint8_t *)s->data + i, (utf8proc_ssize_t)(e - i), &cp);
        if (len <= 0 || n + 1 >= cap) return false;
        i += (size_t)len;
        int d = unicode_digit(cp);
        if (cp == '_') { /* only between two digits */
            utf8proc_int32_t next = -1;
            if (i < e)
                utf8proc_iterate((const utf8proc_uint8_t *)s->data + i, (utf8proc_ssize_t)(e - i), &next);
            if (!prev_digit || unicode_digit(next) < 0) return false;
            prev_digit = false;
            continue;
        }
        if (d < 0 && (cp >= 0x80 || cp == 'x' || cp == 'X' || cp == 0)) return false;
        buf[n++] = d >= 0 ? (char)('0' + d) : (char)cp;
        prev_digit = d >= 0;
    }
    buf[n] = 0;
    return n > 0;
}

/* Python's int(text) in base 10. *fits is false for a valid integer beyond 64 bits. */
static bool py_parse_int(const char *t, int64_t *v, bool *fits) {
    const char *p = t + (*t == '+' || *t == '-');
    if (!*p) return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return false;
    errno = 0;
    *v = strtoll(t, NULL, 10);
    *fits = errno != ERANGE;
    return true;
}

/* Python's float(text), inf and nan included. */
static bool py_parse_float(const char *t, double *f) {
    const char *p = t + (*t == '+' || *t == '-');
    if (!strncasecmp(p, "nan", 3) && p[3] != 0) return false; /* strtod reads nan(chars) */
    char *end;
    *f = strtod(t, &end);
    return end != t && *end == 0;
}

static qilin_status int_too_large(jctx *c, int line, const char *what) {
    return jerr(c, line, QILIN_ERR_UNSUPPORTED,
                "int filter: %s is beyond 64 bits (Python's ints are unbounded)", what);
}

/* The int of a finite double, or an error where Python's would not fit 64 bits. */
static qilin_status int_of_double(jctx *c, int line, double f, jv *out) {
    if (!(f > -9223372036854775809.0 && f < 9223372036854775808.0)) {
        char t[40];
        jv_format_float(f, t);
        return int_too_large(c, line, t);
    }
    *out = jv_int((int64_t)f);
    return QILIN_OK;
}

/* jinja2's int filter: int(value); on TypeError/ValueError int(float(value));
 * on TypeError/ValueError/OverflowError the default. So 'inf'|int is the
 * default but a float infinity is an error (int(inf) raises OverflowError). */
static qilin_status f_int(jctx *c, int line, jv v, jv def, jv *out) {
    jv fallback = given(def) ? def : jv_int(0);
    if (is_int(v)) {
        *out = jv_int(int_of(v));
        return QILIN_OK;
    }
    if (v.kind == JK_FLOAT) {
        if (isinf(v.u.f))
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                        "int filter: cannot convert float infinity to integer");
        if (isnan(v.u.f)) {
            *out = jv_ref(fallback);
            return QILIN_OK;
        }
        return int_of_double(c, line, v.u.f, out);
    }
    if (v.kind == JK_UNDEF && v.u.hint) return jerr_undefined(c, line, v);
    char t[512];
    int64_t i;
    bool fits;
    double f;
    if (v.kind != JK_STR || !py_number_text(v.u.s, t, sizeof t)) {
        *out = jv_ref(fallback);
        return QILIN_OK;
    }
    if (py_parse_int(t, &i, &fits)) {
        if (!fits) return int_too_large(c, line, t);
        *out = jv_int(i);
        return QILIN_OK;
    }
    if (!py_parse_float(t, &f) || !isfinite(f)) {
        *out = jv_ref(fallback);
        return QILIN_OK;
    }
    return int_of_double(c, line, f, out);
}

/* jinja2's float filter: float(value), else the default. */
static qilin_status f_float(jctx *c, int line, jv v, jv def, jv *out) {
    jv fallback = given(def) ? def : jv_float(0.0);
    char t[512];
    double f;
    if (is_num(v))
        *out = jv_float(num_of(v));
    else if (v.kind == JK_STR && py_number_text(v.u.s, t, sizeof t) && py_parse_float(t, &f))
        *out = jv_float(f);
    else if (v.kind == JK_UNDEF && v.u.hint)
        return jerr_undefined(c, line, v);
    else
        *out = jv_ref(fallback);
    return QILIN_OK;
}

/* Python's round(x, n) for a float: the double's exact decimal value rounded
 * half-to-even at n digits (printf rounds the exact binary value, so
 * 2.675 -> 2.67 as in Python, where x * 100 would give 267.5 -> 268). */
static double py_round(double x, int64_t n) {
    if (!isfinite(x) || x == 0 || n > 330) return x;
    char buf[800];
    if (n >= 0) {
        snprintf(buf, sizeof buf, "%.*f", (int)n, x);
        return strtod(buf, NULL);
    }
    if (n < -330) return copysign(0.0, x);
    /* round to 10^-n: as %e with the digits left of that place */
    snprintf(buf, sizeof buf, "%.16e", fabs(x));
    int exp10 = atoi(strchr(buf, 'e') + 1);
    int64_t sig = exp10 + 1 + n; /* significant digits kept */
    if (sig >= 1) {
        snprintf(buf, sizeof buf, "%.*e", (int)sig - 1, x);
        return strtod(buf, NULL);
    }
    if (sig < 0) return copysign(0.0, x);
    /* sig == 0: 10^e <= |x| < 10^-n, so the result is 10^-n past the half
     * (5 * 10^e) and 0 below it or at an exact tie (0 is even). 25 digits
     * tell a double from 5 * 10^e exactly. */
    snprintf(buf, sizeof buf, "%.25e", fabs(x));
    bool past_half = buf[0] > '5';
    for (const char *q = buf + 2; buf[0] == '5' && *q && *q != 'e'; q++) past_half |= *q != '0';
    return copysign(past_half ? pow(10.0, (double)-n) : 0.0, x);
}

/* round(int, n) for n < 0: half to even at 10^-n, in 128 bits. */
static bool py_round_int(int64_t x, int64_t n, int64_t *r) {
    if (n >= 0) {
        *r = x;
        return true;
    }
    if (n < -19) {
        *r = 0;
        return true;
    }
    __int128 unit = 1;
    for (int64_t k = 0; k < -n; k++) unit *= 10;
    __int128 q = x / unit, rem = x % unit;
    if (rem < 0) rem += unit, q -= 1; /* floor */
    if (2 * rem > unit || (2 * rem == unit && (q & 1))) q += 1;
    __int128 v = q * unit;
    if (v > INT64_MAX || v < INT64_MIN) return false;
    *r = (int64_t)v;
    return true;
}

static qilin_status f_round(jctx *c, int line, jv v, jv prec, jv method, jv *out) {
    if (!is_num(v))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "round: '%s' is not a number", jv_type_name(v));
    if (given(prec) && !is_int(prec))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "round: precision must be an integer, not '%s'",
                    jv_type_name(prec));
    int64_t p = given(prec) ? int_of(prec) : 0;
    const char *m = given(method) && method.kind == JK_STR ? method.u.s->data : "common";
    bool common = !strcmp(m, "common");
    if (!common && strcmp(m, "ceil") && strcmp(m, "floor"))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "method must be common, ceil or floor");
    if (is_int(v) && common) { /* Python: round(int, n) stays an int */
        int64_t r;
        if (!py_round_int(int_of(v), p, &r))
            return jerr(c, line, QILIN_ERR_UNSUPPORTED, "round: the result is beyond 64 bits");
        *out = jv_int(r);
        return QILIN_OK;
    }
    if (common) {
        *out = jv_float(py_round(num_of(v), p));
        return QILIN_OK;
    }
    /* jinja2: math.ceil/floor(value * 10**precision) / 10**precision */
    double scale = pow(10.0, (double)p), x = num_of(v) * scale;
    if (!isfinite(x))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "round: cannot convert float %s to integer",
                    isnan(x) ? "NaN" : "infinity");
    *out = jv_float((m[0] == 'c' ? ceil(x) : floor(x)) / scale);
    return QILIN_OK;
}

static qilin_status escape_html(jctx *c, jv v, jv *out) {
    jv s;
    QILIN_TRY(to_str_value(c, v, &s));
    jbuf b = {.max = c->out->max};
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < s.u.s->len && st == QILIN_OK; i++) {
        char ch = s.u.s->data[i];
        const char *e = ch == '&'    ? "&amp;"
                        : ch == '<'  ? "&lt;"
                        : ch == '>'  ? "&gt;"
                        : ch == '"'  ? "&#34;"
                        : ch == '\'' ? "&#39;"
                                     : NULL;
        st = e ? jbuf_puts(&b, e) : jbuf_putc(&b, ch);
    }
    jv_unref(s);
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return st;
    }
    return jv_str_take(&b, out);
}

/* select/reject/selectattr/rejectattr: keep items whose test (or truthiness) is `want`. */
static qilin_status f_select(jctx *c, int line, jv v, bool attr, bool want, jv *a, size_t na, jv *out) {
    size_t k = 0;
    if (attr && (na < 1 || a[0].kind != JK_STR))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "selectattr/rejectattr need an attribute name");
    const char *aname = attr ? a[k++].u.s->data : NULL;
    const char *test = NULL;
    if (k < na) {
        if (a[k].kind != JK_STR)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "test name must be a string");
        test = a[k++].u.s->data;
        if (!jtest_known(test)) return jerr(c, line, QILIN_ERR_UNSUPPORTED, "test '%s'", test);
    }
    jv list;
    QILIN_TRY(jiterate(c, line, v, &list));
    qilin_status st = jv_list_new(0, out);
    for (size_t i = 0; i < list.u.l->n && st == QILIN_OK; i++) {
        jv item = list.u.l->items[i], x = jv_undef(NULL);
        if (aname) st = jgetattr(c, line, item, aname, &x);
        bool r = false;
        if (st == QILIN_OK) {
            if (test)
                st = jtest_apply(c, line, test, aname ? x : item, a + k, na - k, &r);
            else
                r = jv_truthy(aname ? x : item);
        }
        jv_unref(x);
        if (st == QILIN_OK && r == want) st = jv_list_push(*out, jv_ref(item));
    }
    jv_unref(list);
    return st;
}

static qilin_status f_map(jctx *c, int line, jv v, jv *a, size_t na, char **kw, jv *kv, size_t nkw, jv *out) {
    const char *attr = NULL;
    jv def = jv_undef(NULL);
    for (size_t i = 0; i < nkw; i++) {
        if (!strcmp(kw[i], "attribute") && kv[i].kind == JK_STR)
            attr = kv[i].u.s->data;
        else if (!strcmp(kw[i], "default"))
            def = kv[i];
        else
            return jerr(c, line, QILIN_ERR_UNSUPPORTED, "map() keyword argument '%s'", kw[i]);
    }
    if (!attr && (na < 1 || a[0].kind != JK_STR))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "map needs a filter name or attribute=");
    jv list;
    QILIN_TRY(jiterate(c, line, v, &list));
    qilin_status st = jv_list_new(0, out);
    for (size_t i = 0; i < list.u.l->n && st == QILIN_OK; i++) {
        jv r;
        if (attr) {
            st = jgetattr(c, line, list.u.l->items[i], attr, &r);
            if (st == QILIN_OK && r.kind == JK_UNDEF) /* the name may not outlive this call: drop it */
                r = given(def) ? jv_ref(def) : jv_undef_attr(list.u.l->items[i].kind, NULL);
        } else {
            st = jfilter_apply(c, line, a[0].u.s->data, list.u.l->items[i], a + 1, na - 1, NULL, NULL, 0, &r);
        }
        if (st == QILIN_OK) st = jv_list_push(*out, r);
    }
    jv_unref(list);
    return st;
}

static qilin_status f_first_last(jctx *c, int line, jv v, bool last, jv *out) {
    jv list;
    QILIN_TRY(jiterate(c, line, v, &list));
    size_t n = list.u.l->n;
    *out = n ? jv_ref(list.u.l->items[last ? n - 1 : 0]) : jv_undef(NULL);
    jv_unref(list);
    return QILIN_OK;
}

static qilin_status f_sum(jctx *c, int line, jv v, jv attr, jv start, jv *out) {
    jv list;
    QILIN_TRY(jiterate(c, line, v, &list));
    bool is_f = given(start) && start.kind == JK_FLOAT;
    int64_t si = given(start) && is_int(start) ? int_of(start) : 0;
    double sf = given(start) ? num_of(start) : 0;
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < list.u.l->n && st == QILIN_OK; i++) {
        jv x = jv_ref(list.u.l->items[i]);
        if (given(attr) && attr.kind == JK_STR) {
            jv y;
            st = jgetattr(c, line, x, attr.u.s->data, &y);
            jv_unref(x);
            x = st == QILIN_OK ? y : jv_undef(NULL);
        }
        if (st == QILIN_OK && !is_num(x))
            st = jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "sum: '%s' is not a number", jv_type_name(x));
        if (st == QILIN_OK) {
            is_f |= x.kind == JK_FLOAT;
            sf += num_of(x);
            if (is_int(x) && __builtin_add_overflow(si, int_of(x), &si))
                st = jerr(c, line, QILIN_ERR_UNSUPPORTED, "sum overflows 64 bits");
        }
        jv_unref(x);
    }
    jv_unref(list);
    *out = is_f ? jv_float(sf) : jv_int(si);
    return st;
}

static qilin_status f_reverse(jctx *c, int line, jv v, jv *out) {
    if (v.kind == JK_STR) {
        jbuf b = {.max = c->out->max};
        for (size_t e = v.u.s->len; e > 0;) {
            size_t s = e - 1;
            while (s > 0 && ((unsigned char)v.u.s->data[s] & 0xc0) == 0x80) s--;
            qilin_status st = jbuf_put(&b, v.u.s->data + s, e - s);
            if (st != QILIN_OK) {
                jbuf_free(&b);
                return st;
            }
            e = s;
        }
        return jv_str_take(&b, out);
    }
    jv list;
    QILIN_TRY(jiterate(c, line, v, &list));
    qilin_status st = jv_list_new(list.u.l->n, out);
    for (size_t i = list.u.l->n; i > 0 && st == QILIN_OK; i--)
        st = jv_list_push(*out, jv_ref(list.u.l->items[i - 1]));
    jv_unref(list);
    return st;
}

static qilin_status filter(jctx *c, int line, const char *f, jv v, jv *a, size_t na, char **kw, jv *kv,
                           size_t nkw, jv *out) {
    jv s[4];
#define BIND(...)                                                                                            \
    do {                                                                                                     \
        static const char *const params_[] = {__VA_ARGS__, NULL};                                            \
        QILIN_TRY(bind(c, line, f, params_, a, na, kw, kv, nkw, s));                                         \
    } while (0)
    if (!strcmp(f, "tojson")) {
        BIND("ensure_ascii", "indent", "separators", "sort_keys");
        return f_tojson(c, line, v, s, out);
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        BIND("default_value", "boolean");
        bool use = v.kind == JK_UNDEF || (given(s[1]) && jv_truthy(s[1]) && !jv_truthy(v));
        if (!use || given(s[0])) {
            *out = jv_ref(use ? s[0] : v);
            return QILIN_OK;
        }
        return jv_str("", 0, out);
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        BIND("_");
        int64_t n = 0;
        QILIN_TRY(length_of(c, line, v, &n));
        *out = jv_int(n);
        return QILIN_OK;
    }
    if (!strcmp(f, "trim")) {
        BIND("chars");
        jv str;
        QILIN_TRY(to_str_value(c, v, &str));
        qilin_status st = py_strip(str, given(s[0]) ? s[0] : jv_none(), true, true, out);
        jv_unref(str);
        return st;
    }
    if (!strcmp(f, "string") || !strcmp(f, "safe")) {
        BIND("_");
        return to_str_value(c, v, out);
    }
    if (!strcmp(f, "lower") || !strcmp(f, "upper") || !strcmp(f, "title") || !strcmp(f, "capitalize")) {
        BIND("_");
        jv str;
        QILIN_TRY(to_str_value(c, v, &str));
        int mode = f[0] == 'l'   ? CASE_LOWER
                   : f[0] == 'u' ? CASE_UPPER
                   : f[0] == 't' ? CASE_JINJA_TITLE
                                 : CASE_CAPITALIZE;
        qilin_status st = py_case(c, line, str, mode, out);
        jv_unref(str);
        return st;
    }
    if (!strcmp(f, "replace")) {
        BIND("old", "new", "count");
        jv str, args[3] = {s[0], s[1], s[2]};
        QILIN_TRY(to_str_value(c, v, &str));
        qilin_status st = jmethod_call(c, line, str, "replace", args,
                                       given(s[2]) && s[2].kind != JK_NONE ? 3 : 2, NULL, NULL, 0, out);
        jv_unref(str);
        return st;
    }
    if (!strcmp(f, "join")) {
        BIND("d", "attribute");
        jv sep;
        if (given(s[0]))
            QILIN_TRY(to_str_value(c, s[0], &sep));
        else
            QILIN_TRY(jv_str("", 0, &sep));
        const char *attr = given(s[1]) && s[1].kind == JK_STR ? s[1].u.s->data : NULL;
        qilin_status st = jjoin(c, line, v, sep, attr, false, out);
        jv_unref(sep);
        return st;
    }
    if (!strcmp(f, "items")) {
        BIND("_");
        if (v.kind == JK_UNDEF) return jv_list_new(0, out);
        if (v.kind != JK_DICT)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "Can only get item pairs from a mapping.");
        return jmethod_call(c, line, v, "items", NULL, 0, NULL, NULL, 0, out);
    }
    if (!strcmp(f, "list")) {
        BIND("_");
        QILIN_TRY(jiterate(c, line, v, out));
        if (out->u.l->tuple) { /* list(tuple) is a list */
            jv copy;
            QILIN_TRY(jv_list_new(out->u.l->n, &copy));
            for (size_t i = 0; i < out->u.l->n; i++)
                QILIN_TRY(jv_list_push(copy, jv_ref(out->u.l->items[i])));
            jv_unref(*out);
            *out = copy;
        }
        return QILIN_OK;
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        BIND("_");
        return f_first_last(c, line, v, f[0] == 'l', out);
    }
    if (!strcmp(f, "int")) {
        BIND("default", "base");
        if (given(s[1])) return jerr(c, line, QILIN_ERR_UNSUPPORTED, "int(base=...)");
        return f_int(c, line, v, s[0], out);
    }
    if (!strcmp(f, "float")) {
        BIND("default");
        return f_float(c, line, v, s[0], out);
    }
    if (!strcmp(f, "round")) {
        BIND("precision", "method");
        return f_round(c, line, v, s[0], s[1], out);
    }
    if (!strcmp(f, "abs")) {
        BIND("_");
        if (!is_num(v))
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "bad operand type for abs(): '%s'",
                        jv_type_name(v));
        if (is_int(v) && int_of(v) == INT64_MIN)
            return jerr(c, line, QILIN_ERR_UNSUPPORTED,
                        "abs(%lld) is beyond 64 bits (Python's ints are unbounded)", (long long)INT64_MIN);
        *out = v.kind == JK_FLOAT ? jv_float(fabs(v.u.f)) : jv_int(int_of(v) < 0 ? -int_of(v) : int_of(v));
        return QILIN_OK;
    }
    if (!strcmp(f, "sum")) {
        BIND("attribute", "start");
        return f_sum(c, line, v, s[0], s[1], out);
    }
    if (!strcmp(f, "reverse")) {
        BIND("_");
        return f_reverse(c, line, v, out);
    }
    if (!strcmp(f, "escape") || !strcmp(f, "e")) {
        BIND("_");
        return escape_html(c, v, out);
    }
    if (!strcmp(f, "map")) return f_map(c, line, v, a, na, kw, kv, nkw, out);
    bool sel = !strcmp(f, "select"), rej = !strcmp(f, "reject"), sela = !strcmp(f, "selectattr"),
         reja = !strcmp(f, "rejectattr");
    if (sel || rej || sela || reja) {
        if (nkw) return jerr(c, line, QILIN_ERR_UNSUPPORTED, "keyword arguments to %s", f);
        return f_select(c, line, v, sela || reja, sel || sela, a, na, out);
    }
#undef BIND
    if (listed(KNOWN_UNSUPPORTED, f)) return jerr(c, line, QILIN_ERR_UNSUPPORTED, "filter '%s'", f);
    return jerr(c, line, QILIN_ERR_FORMAT, "no filter named '%s'", f);
}

/* Steps a filter's walk over its value costs: bytes of a string, items of a
 * list (every value reached, for the filters that print or serialise it). */
static uint64_t filter_steps(const char *f, jv v) {
    if (v.kind == JK_STR) return 1 + v.u.s->len / 64;
    if (v.kind != JK_LIST && v.kind != JK_DICT) return 1;
    if (!strcmp(f, "tojson") || !strcmp(f, "string") || !strcmp(f, "safe") || !strcmp(f, "join") ||
        !strcmp(f, "e") || !strcmp(f, "escape") || !strcmp(f, "trim") || !strcmp(f, "lower") ||
        !strcmp(f, "upper") || !strcmp(f, "title") || !strcmp(f, "capitalize") || !strcmp(f, "replace"))
        return jv_weight(v);
    if (!strcmp(f, "length") || !strcmp(f, "count") || !strcmp(f, "first") || !strcmp(f, "last") ||
        !strcmp(f, "default") || !strcmp(f, "d"))
        return 1;
    return 1 + (v.kind == JK_LIST ? v.u.l->n : v.u.d->n);
}

qilin_status jfilter_apply(jctx *c, int line, const char *name, jv v, jv *args, size_t nargs, char **kwnames,
                           jv *kwargs, size_t nkw, jv *out) {
    *out = jv_undef(NULL);
    QILIN_TRY(jsteps(c, line, filter_steps(name, v)));
    qilin_status st = filter(c, line, name, v, args, nargs, kwnames, kwargs, nkw, out);
    if (st != QILIN_OK) jv_unrefp(out);
    return st;
}

/* ---------------------------------------------------------------- tests */

static bool identical(jv a, jv b) {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JK_NONE:
    case JK_UNDEF:
        return true;
    case JK_BOOL:
        return a.u.b == b.u.b;
    case JK_INT:
        return a.u.i == b.u.i; /* CPython caches small ints; close enough */
    case JK_FLOAT:
        return false;
    default:
        return a.u.s == b.u.s;
    }
}

qilin_status jtest_apply(jctx *c, int line, const char *t, jv v, jv *a, size_t na, bool *out) {
    jv none = jv_none(), a0 = na ? a[0] : none;
    if (!strcmp(t, "defined"))
        *out = v.kind != JK_UNDEF;
    else if (!strcmp(t, "undefined"))
        *out = v.kind == JK_UNDEF;
    else if (!strcmp(t, "none"))
        *out = v.kind == JK_NONE;
    else if (!strcmp(t, "boolean"))
        *out = v.kind == JK_BOOL;
    else if (!strcmp(t, "false"))
        *out = v.kind == JK_BOOL && !v.u.b;
    else if (!strcmp(t, "true"))
        *out = v.kind == JK_BOOL && v.u.b;
    else if (!strcmp(t, "integer"))
        *out = v.kind == JK_INT;
    else if (!strcmp(t, "float"))
        *out = v.kind == JK_FLOAT;
    else if (!strcmp(t, "number"))
        *out = is_num(v);
    else if (!strcmp(t, "string"))
        *out = v.kind == JK_STR;
    else if (!strcmp(t, "mapping"))
        *out = v.kind == JK_DICT;
    else if (!strcmp(t, "iterable") || !strcmp(t, "sequence"))
        *out = v.kind == JK_STR || v.kind == JK_LIST || v.kind == JK_DICT || v.kind == JK_UNDEF;
    else if (!strcmp(t, "callable"))
        *out = v.kind == JK_FUNC;
    else if (!strcmp(t, "escaped"))
        *out = false;
    else if (!strcmp(t, "sameas"))
        *out = identical(v, a0);
    else if (!strcmp(t, "odd") || !strcmp(t, "even") || !strcmp(t, "divisibleby")) {
        int64_t d = t[0] == 'd' ? (is_int(a0) ? int_of(a0) : 0) : 2;
        if (!is_int(v) || d == 0)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "test '%s' needs integers", t);
        int64_t r = int_of(v) % d;
        *out = t[0] == 'o' ? r != 0 : r == 0;
    } else if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "=="))
        *out = jv_equal(v, a0);
    else if (!strcmp(t, "ne") || !strcmp(t, "!="))
        *out = !jv_equal(v, a0);
    else if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        jv s, r;
        QILIN_TRY(to_str_value(c, v, &s));
        qilin_status st =
            jmethod_call(c, line, s, t[0] == 'l' ? "islower" : "isupper", NULL, 0, NULL, NULL, 0, &r);
        jv_unref(s);
        QILIN_TRY(st);
        *out = r.u.b;
    } else if (!strcmp(t, "in")) {
        jv dummy;
        *out = false;
        if (a0.kind == JK_LIST)
            for (size_t i = 0; i < a0.u.l->n && !*out; i++) *out = jv_equal(v, a0.u.l->items[i]);
        else if (a0.kind == JK_STR && v.kind == JK_STR)
            *out = memmem(a0.u.s->data, a0.u.s->len, v.u.s->data, v.u.s->len) != NULL || v.u.s->len == 0;
        else if (a0.kind == JK_DICT && v.kind == JK_STR)
            dummy = jv_dict_get(a0, v.u.s->data, v.u.s->len, out), (void)dummy;
        else
            return jerr(c, line, QILIN_ERR_UNSUPPORTED, "test 'in' with %s in %s", jv_type_name(v),
                        jv_type_name(a0));
    } else if (!strcmp(t, "filter") || !strcmp(t, "test")) {
        *out = v.kind == JK_STR && (t[0] == 'f' ? listed(FILTERS, v.u.s->data) : listed(TESTS, v.u.s->data));
    } else {
        /* ordering tests */
        static const struct {
            const char *name;
            int lo, hi; /* accepted comparison results */
        } ord[] = {{"lt", -1, -1}, {"<", -1, -1}, {"lessthan", -1, -1},  {"le", -1, 0}, {"<=", -1, 0},
                   {"gt", 1, 1},   {">", 1, 1},   {"greaterthan", 1, 1}, {"ge", 0, 1},  {">=", 0, 1}};
        for (size_t k = 0; k < sizeof ord / sizeof ord[0]; k++) {
            if (strcmp(t, ord[k].name)) continue;
            int r;
            if (is_num(v) && is_num(a0))
                r = (num_of(v) > num_of(a0)) - (num_of(v) < num_of(a0));
            else if (v.kind == JK_STR && a0.kind == JK_STR) {
                int m = strcmp(v.u.s->data, a0.u.s->data);
                r = (m > 0) - (m < 0);
            } else
                return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "'%s' not supported between '%s' and '%s'",
                            t, jv_type_name(v), jv_type_name(a0));
            *out = r >= ord[k].lo && r <= ord[k].hi;
            return QILIN_OK;
        }
        return jerr(c, line, QILIN_ERR_UNSUPPORTED, "test '%s'", t);
    }
    return QILIN_OK;
}
