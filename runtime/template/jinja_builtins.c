/* jinja_builtins.c — what templates call: jinja2's filters and tests, the
 * Python str/dict/list methods the sandbox allows, attribute and subscript
 * lookup (getattr first, then item, as jinja2's environment does), and the
 * globals transformers provides (raise_exception, strftime_now, namespace)
 * plus jinja2's range and dict.
 *
 * Names jinja2 knows but qilin does not implement are QILIN_ERR_UNSUPPORTED
 * when a render reaches them, so a template that only uses them on a branch
 * it never takes still renders. */
#define _GNU_SOURCE /* memmem, strdup, localtime_r */
#include "runtime/template/jinja_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_RANGE 100000 /* jinja2.sandbox.MAX_RANGE */

static const char *const STR_METHODS[] = {
    "capitalize", "casefold",     "center",       "count",   "encode",     "endswith",    "expandtabs",
    "find",       "format",       "format_map",   "index",   "isalnum",    "isalpha",     "isascii",
    "isdecimal",  "isdigit",      "isidentifier", "islower", "isnumeric",  "isprintable", "isspace",
    "istitle",    "isupper",      "join",         "ljust",   "lower",      "lstrip",      "maketrans",
    "partition",  "removeprefix", "removesuffix", "replace", "rfind",      "rindex",      "rjust",
    "rpartition", "rsplit",       "rstrip",       "split",   "splitlines", "startswith",  "strip",
    "swapcase",   "title",        "translate",    "upper",   "zfill",      NULL};
static const char *const DICT_METHODS[] = {"clear", "copy",    "fromkeys",   "get",    "items",  "keys",
                                           "pop",   "popitem", "setdefault", "update", "values", NULL};
static const char *const LIST_METHODS[] = {"append", "clear", "copy",   "count",   "extend", "index",
                                           "insert", "pop",   "remove", "reverse", "sort",   NULL};
static const char *const MUTATING[] = {"append", "clear",   "extend",     "insert", "pop",    "popitem",
                                       "remove", "reverse", "setdefault", "sort",   "update", NULL};

static const char *find_name(const char *const *list, const char *name) {
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(list[i], name)) return list[i];
    return NULL;
}

static bool is_int(jv v) { return v.kind == JK_INT || v.kind == JK_BOOL; }
static int64_t int_of(jv v) { return v.kind == JK_BOOL ? v.u.b : v.u.i; }

static qilin_status bound(jctx *c, int line, const char *method, jv self, jv *out) {
    if (jv_depth(self) + 1 > JV_MAX_DEPTH) /* freeing the method frees self: keep that shallow too */
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "lists and dicts nested deeper than %d",
                    JV_MAX_DEPTH);
    jfunc *f = calloc(1, sizeof *f);
    if (!f) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
    f->rc = 1;
    f->builtin = JF_METHOD;
    f->method = method;
    f->self = jv_ref(self);
    f->depth = jv_depth(self) + 1;
    out->kind = JK_FUNC;
    out->u.fn = f;
    return QILIN_OK;
}

static const char *const *methods_of(jv obj) {
    return obj.kind == JK_STR    ? STR_METHODS
           : obj.kind == JK_DICT ? DICT_METHODS
           : obj.kind == JK_LIST ? LIST_METHODS
                                 : NULL;
}

qilin_status jgetattr(jctx *c, int line, jv obj, const char *name, jv *out) {
    const char *const *methods = methods_of(obj);
    const char *m = methods ? find_name(methods, name) : NULL;
    if (m) return bound(c, line, m, obj, out);
    if (obj.kind == JK_DICT || obj.kind == JK_NS) {
        bool found;
        jv v = jv_dict_get(obj, name, strlen(name), &found);
        *out = found ? jv_ref(v) : jv_undef_attr(obj.kind, name);
        return QILIN_OK;
    }
    *out = jv_undef_attr(obj.kind, name);
    return QILIN_OK;
}

qilin_status jgetitem(jctx *c, int line, jv obj, jv key, jv *out) {
    *out = jv_undef(NULL);
    if ((obj.kind == JK_DICT || obj.kind == JK_NS) && key.kind == JK_STR) {
        bool found;
        jv v = jv_dict_get(obj, key.u.s->data, key.u.s->len, &found);
        if (found) {
            *out = jv_ref(v);
            return QILIN_OK;
        }
    } else if ((obj.kind == JK_LIST || obj.kind == JK_STR) && is_int(key)) {
        int64_t n = obj.kind == JK_LIST ? (int64_t)obj.u.l->n : (int64_t)obj.u.s->cps;
        int64_t i = int_of(key);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return QILIN_OK;
        if (obj.kind == JK_LIST) {
            *out = jv_ref(obj.u.l->items[i]);
            return QILIN_OK;
        }
        if (obj.u.s->cps != obj.u.s->len)
            QILIN_TRY(jsteps(c, line, 1 + obj.u.s->len / 64)); /* the walks below */
        size_t a = jstr_offset(obj.u.s, (size_t)i);
        size_t b = jstr_offset(obj.u.s, (size_t)i + 1);
        return jv_str(obj.u.s->data + a, b - a, out);
    }
    if (key.kind == JK_STR && obj.kind != JK_NS) return jgetattr(c, line, obj, key.u.s->data, out);
    return QILIN_OK;
}

/* ---------------------------------------------------------------- Python str helpers */

static bool in_chars(jv chars, const char *s, size_t len) {
    if (chars.kind != JK_STR) {
        size_t adv;
        return py_isspace_at(s, len, &adv);
    }
    const char *p = chars.u.s->data, *end = p + chars.u.s->len;
    while (p < end) {
        size_t n = 1;
        while (p + n < end && ((unsigned char)p[n] & 0xc0) == 0x80) n++;
        if (n == len && !memcmp(p, s, n)) return true;
        p += n;
    }
    return false;
}

static size_t char_len(const char *s, size_t avail) {
    size_t n = 1;
    while (n < avail && ((unsigned char)s[n] & 0xc0) == 0x80) n++;
    return n;
}

qilin_status py_strip(jv s, jv chars, bool left, bool right, jv *out) {
    const char *p = s.u.s->data;
    size_t a = 0, b = s.u.s->len;
    while (left && a < b) {
        size_t n = char_len(p + a, b - a);
        if (!in_chars(chars, p + a, n)) break;
        a += n;
    }
    while (right && b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
        if (!in_chars(chars, p + st, b - st)) break;
        b = st;
    }
    return jv_str(p + a, b - a, out);
}

static qilin_status push_str(jv list, const char *s, size_t n) {
    jv v;
    QILIN_TRY(jv_str(s, n, &v));
    return jv_list_push(list, v);
}

static qilin_status reverse_list(jv *list) {
    jlist *l = list->u.l;
    for (size_t i = 0; i < l->n / 2; i++) {
        jv t = l->items[i];
        l->items[i] = l->items[l->n - 1 - i];
        l->items[l->n - 1 - i] = t;
    }
    return QILIN_OK;
}

static qilin_status split_ws(jv s, int64_t maxsplit, bool from_right, jv *out) {
    QILIN_TRY(jv_list_new(0, out));
    const char *p = s.u.s->data;
    size_t n = s.u.s->len;
    if (!from_right) {
        size_t i = 0;
        while (i < n) {
            size_t adv;
            while (i < n && py_isspace_at(p + i, n - i, &adv)) i += adv;
            if (i >= n) break;
            if (maxsplit >= 0 && (int64_t)out->u.l->n == maxsplit) return push_str(*out, p + i, n - i);
            size_t j = i;
            while (j < n && !py_isspace_at(p + j, n - j, &adv)) j += adv;
            QILIN_TRY(push_str(*out, p + i, j - i));
            i = j;
        }
        return QILIN_OK;
    }
    size_t e = n;
    while (e > 0) { /* walk code points backwards */
        size_t st = e - 1;
        while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
        size_t adv;
        if (py_isspace_at(p + st, e - st, &adv)) {
            e = st;
            continue;
        }
        if (maxsplit >= 0 && (int64_t)out->u.l->n == maxsplit) {
            QILIN_TRY(push_str(*out, p, e));
            break;
        }
        size_t b = st;
        while (b > 0) {
            size_t q = b - 1;
            while (q > 0 && ((unsigned char)p[q] & 0xc0) == 0x80) q--;
            if (py_isspace_at(p + q, b - q, &adv)) break;
            b = q;
        }
        QILIN_TRY(push_str(*out, p + b, e - b));
        e = b;
    }
    return reverse_list(out);
}

qilin_status py_split(jctx *c, int line, jv s, jv sep, int64_t maxsplit, bool from_right, jv *out) {
    if (sep.kind == JK_NONE || sep.kind == JK_UNDEF) return split_ws(s, maxsplit, from_right, out);
    if (sep.kind != JK_STR)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "must be str or None, not %s", jv_type_name(sep));
    if (sep.u.s->len == 0) return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "empty separator");
    QILIN_TRY(jv_list_new(0, out));
    const char *p = s.u.s->data, *q = sep.u.s->data;
    size_t n = s.u.s->len, k = sep.u.s->len;
    if (!from_right) {
        size_t i = 0;
        for (;;) {
            const char *hit =
                (maxsplit < 0 || (int64_t)out->u.l->n < maxsplit) ? memmem(p + i, n - i, q, k) : NULL;
            if (!hit) return push_str(*out, p + i, n - i);
            QILIN_TRY(push_str(*out, p + i, (size_t)(hit - p) - i));
            i = (size_t)(hit - p) + k;
        }
    }
    /* rsplit finds the rightmost match first: memmem over the reversed bytes
     * (linear, where trying every position from the right would be n * k) */
    char *rp = malloc(n + 1), *rq = malloc(k + 1);
    qilin_status st =
        rp && rq ? QILIN_OK : qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (rsplit)");
    for (size_t i = 0; st == QILIN_OK && i < n; i++) rp[i] = p[n - 1 - i];
    for (size_t i = 0; st == QILIN_OK && i < k; i++) rq[i] = q[k - 1 - i];
    size_t e = n; /* the part left of e is still unsplit */
    while (st == QILIN_OK) {
        const char *rhit =
            (maxsplit < 0 || (int64_t)out->u.l->n < maxsplit) ? memmem(rp + (n - e), e, rq, k) : NULL;
        if (!rhit) {
            st = push_str(*out, p, e);
            break;
        }
        size_t hit = n - (size_t)(rhit - rp) - k; /* where the match starts in p */
        st = push_str(*out, p + hit + k, e - hit - k);
        e = hit;
    }
    free(rp);
    free(rq);
    return st == QILIN_OK ? reverse_list(out) : st;
}

/* ---------------------------------------------------------------- case mapping */

static const jcase_special *case_special(utf8proc_int32_t cp) {
    size_t lo = 0, hi = JCASE_SPECIAL_N;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (JCASE_SPECIAL[mid].cp == (uint32_t)cp) return &JCASE_SPECIAL[mid];
        if (JCASE_SPECIAL[mid].cp < (uint32_t)cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool cp_cased(utf8proc_int32_t cp) {
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp;
}

/* Unicode's Case_Ignorable: marks, format characters, modifiers, and the
 * apostrophes and dots that may sit inside a word. */
static bool cp_case_ignorable(utf8proc_int32_t cp) {
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK || cp == '\'' || cp == '.' || cp == ':' ||
           cp == 0xb7 || cp == 0x387 || cp == 0x55f || cp == 0x5f4 || cp == 0x2018 || cp == 0x2019 ||
           cp == 0x2024 || cp == 0x2027 || cp == 0xfe13 || cp == 0xfe52 || cp == 0xfe55 || cp == 0xff07 ||
           cp == 0xff0e || cp == 0xff1a;
}

static utf8proc_int32_t cp_at(const utf8proc_uint8_t *p, utf8proc_ssize_t n, utf8proc_ssize_t *adv) {
    utf8proc_int32_t cp;
    *adv = utf8proc_iterate(p, n, &cp);
    if (*adv <= 0) *adv = 1, cp = p[0];
    return cp;
}

/* Python lowers a capital sigma at the end of a word to final sigma: a cased
 * letter before it and none after it (case-ignorable characters skipped). */
static bool final_sigma(const utf8proc_uint8_t *p, utf8proc_ssize_t n, utf8proc_ssize_t at,
                        utf8proc_ssize_t len) {
    bool before = false;
    for (utf8proc_ssize_t j = at; j > 0;) {
        utf8proc_ssize_t k = j - 1, adv;
        while (k > 0 && (p[k] & 0xc0) == 0x80) k--;
        utf8proc_int32_t cp = cp_at(p + k, n - k, &adv);
        j = k;
        if (cp_case_ignorable(cp)) continue;
        before = cp_cased(cp);
        break;
    }
    if (!before) return false;
    for (utf8proc_ssize_t j = at + len; j < n;) {
        utf8proc_ssize_t adv;
        utf8proc_int32_t cp = cp_at(p + j, n - j, &adv);
        j += adv;
        if (cp_case_ignorable(cp)) continue;
        return !cp_cased(cp);
    }
    return true;
}

static qilin_status put_cps(jbuf *b, const uint32_t *cps, int n) {
    for (int k = 0; k < n && cps[k]; k++) {
        utf8proc_uint8_t enc[4];
        QILIN_TRY(
            jbuf_put(b, (const char *)enc, (size_t)utf8proc_encode_char((utf8proc_int32_t)cps[k], enc)));
    }
    return QILIN_OK;
}

static bool jinja_word_sep(utf8proc_int32_t cp) {
    size_t adv;
    utf8proc_uint8_t enc[4];
    utf8proc_ssize_t len = utf8proc_encode_char(cp, enc);
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' ||
           (len > 0 && py_isspace_at((const char *)enc, (size_t)len, &adv));
}

qilin_status py_case(jctx *c, int line, jv s, int mode, jv *out) {
    QILIN_TRY(jsteps(c, line, 1 + s.u.s->len / 16));
    jbuf b = {.max = c->out->max};
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s.u.s->data;
    utf8proc_ssize_t n = (utf8proc_ssize_t)s.u.s->len, i = 0;
    bool first = true, prev_cased = false, prev_sep = false;
    qilin_status st = QILIN_OK;
    while (i < n && st == QILIN_OK) {
        utf8proc_ssize_t adv;
        utf8proc_int32_t cp = cp_at(p + i, n - i, &adv);
        int how = 1; /* 0 upper, 1 lower, 2 title */
        if (mode == CASE_UPPER)
            how = 0;
        else if (mode == CASE_CAPITALIZE)
            how = first ? 2 : 1;
        else if (mode == CASE_TITLE)
            how = prev_cased ? 1 : 2;
        else if (mode == CASE_JINJA_TITLE)
            how = first || prev_sep ? 0 : 1;
        const jcase_special *sp = how != 1 ? case_special(cp) : NULL;
        uint32_t one[3] = {0, 0, 0};
        if (sp)
            st = put_cps(&b, how == 0 ? sp->upper : sp->title, 3);
        else {
            if (how == 0)
                one[0] = (uint32_t)utf8proc_toupper(cp);
            else if (how == 2)
                one[0] = (uint32_t)utf8proc_totitle(cp);
            else if (cp == 0x130) /* İ lowers to i + combining dot */
                one[0] = 'i', one[1] = 0x307;
            else if (cp == 0x3a3 && final_sigma(p, n, i, adv))
                one[0] = 0x3c2;
            else
                one[0] = (uint32_t)utf8proc_tolower(cp);
            if (one[0] == 0) { /* U+0000 itself */
                st = jbuf_putc(&b, 0);
            } else {
                st = put_cps(&b, one, 3);
            }
        }
        prev_cased = cp_cased(cp);
        prev_sep = jinja_word_sep(cp);
        first = false;
        i += adv;
    }
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return st;
    }
    return jv_str_take(&b, out);
}

static qilin_status str_replace(jctx *c, jv s, jv old, jv new_, int64_t count, jv *out) {
    jbuf b = {.max = c->out->max};
    const char *p = s.u.s->data;
    size_t n = s.u.s->len, k = old.u.s->len, i = 0;
    qilin_status st = QILIN_OK;
    for (int64_t done = 0; st == QILIN_OK && (count < 0 || done < count); done++) {
        if (k == 0) { /* Python inserts `new` before every code point and at the end */
            st = jbuf_put(&b, new_.u.s->data, new_.u.s->len);
            if (i >= n) {
                i = n + 1;
                break;
            }
            size_t cl = char_len(p + i, n - i);
            if (st == QILIN_OK) st = jbuf_put(&b, p + i, cl);
            i += cl;
            continue;
        }
        const char *hit = i <= n ? memmem(p + i, n - i, old.u.s->data, k) : NULL;
        if (!hit) break;
        st = jbuf_put(&b, p + i, (size_t)(hit - p) - i);
        if (st == QILIN_OK) st = jbuf_put(&b, new_.u.s->data, new_.u.s->len);
        i = (size_t)(hit - p) + k;
    }
    if (st == QILIN_OK && i < n) st = jbuf_put(&b, p + i, n - i);
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return st;
    }
    return jv_str_take(&b, out);
}

static bool affix_match(jv s, jv affix, bool prefix) {
    size_t n = s.u.s->len, k = affix.u.s->len;
    return k <= n && !memcmp(s.u.s->data + (prefix ? 0 : n - k), affix.u.s->data, k);
}

static qilin_status starts_ends(jctx *c, int line, jv s, jv arg, bool prefix, jv *out) {
    bool r = false;
    if (arg.kind == JK_STR)
        r = affix_match(s, arg, prefix);
    else if (arg.kind == JK_LIST)
        for (size_t i = 0; i < arg.u.l->n && !r; i++) {
            if (arg.u.l->items[i].kind != JK_STR)
                return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "tuple for %swith must only contain str",
                            prefix ? "starts" : "ends");
            r = affix_match(s, arg.u.l->items[i], prefix);
        }
    else
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                    "%swith first arg must be str or a tuple of str, not %s", prefix ? "starts" : "ends",
                    jv_type_name(arg));
    *out = jv_bool(r);
    return QILIN_OK;
}

qilin_status jjoin(jctx *c, int line, jv items, jv sep, const char *attr, bool strict, jv *out) {
    jv list;
    QILIN_TRY(jiterate(c, line, items, &list));
    qilin_status st0 = jsteps(c, line, list.u.l->n);
    if (st0 != QILIN_OK) {
        jv_unref(list);
        return st0;
    }
    jbuf b = {.max = c->out->max};
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < list.u.l->n && st == QILIN_OK; i++) {
        jv v = list.u.l->items[i], a = jv_undef(NULL);
        if (attr) {
            st = jgetattr(c, line, v, attr, &a);
            v = a;
        }
        if (i && st == QILIN_OK) st = jbuf_put(&b, sep.u.s->data, sep.u.s->len);
        if (st == QILIN_OK && strict && v.kind != JK_STR)
            st = jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                      "sequence item %zu: expected str instance, %s found", i, jv_type_name(v));
        if (st == QILIN_OK) st = jv_to_str(v, &b);
        jv_unref(a);
    }
    jv_unref(list);
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return st;
    }
    return jv_str_take(&b, out);
}

static qilin_status find_sub(jv s, jv sub, bool count, int64_t *res) {
    const char *p = s.u.s->data;
    size_t n = s.u.s->len, k = sub.u.s->len;
    if (count) {
        int64_t c = 0;
        if (k == 0)
            c = (int64_t)s.u.s->cps + 1;
        else
            for (const char *h = p; (h = memmem(h, n - (size_t)(h - p), sub.u.s->data, k)); h += k) c++;
        *res = c;
        return QILIN_OK;
    }
    const char *h = memmem(p, n, sub.u.s->data, k);
    *res = h ? (int64_t)utf8_count(p, (size_t)(h - p)) : -1;
    return QILIN_OK;
}

/* ---------------------------------------------------------------- methods */

static qilin_status str_method(jctx *c, int line, jv s, const char *m, jv *a, size_t na, jv *out) {
    jv none = jv_none();
    jv a0 = na > 0 ? a[0] : none, a1 = na > 1 ? a[1] : none;
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        if (a0.kind != JK_NONE && a0.kind != JK_STR)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "%s arg must be None or str", m);
        return py_strip(s, a0, m[0] != 'r', m[0] != 'l', out);
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        if (na > 1 && !is_int(a1))
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "maxsplit must be an integer");
        return py_split(c, line, s, a0, na > 1 ? int_of(a1) : -1, m[0] == 'r', out);
    }
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (na != 1) return jerr(c, line, QILIN_ERR_UNSUPPORTED, "%s with start/end arguments", m);
        return starts_ends(c, line, s, a0, m[0] == 's', out);
    }
    if (!strcmp(m, "upper")) return py_case(c, line, s, CASE_UPPER, out);
    if (!strcmp(m, "lower")) return py_case(c, line, s, CASE_LOWER, out);
    if (!strcmp(m, "capitalize")) return py_case(c, line, s, CASE_CAPITALIZE, out);
    if (!strcmp(m, "title")) return py_case(c, line, s, CASE_TITLE, out);
    if (!strcmp(m, "replace")) {
        if (na < 2 || a0.kind != JK_STR || a1.kind != JK_STR || (na > 2 && !is_int(a[2])))
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "replace(old, new[, count]) takes strings");
        return str_replace(c, s, a0, a1, na > 2 ? int_of(a[2]) : -1, out);
    }
    if (!strcmp(m, "find") || !strcmp(m, "count")) {
        if (na != 1 || a0.kind != JK_STR)
            return jerr(c, line, QILIN_ERR_UNSUPPORTED, "%s other than %s(str)", m, m);
        int64_t r;
        QILIN_TRY(find_sub(s, a0, m[0] == 'c', &r));
        *out = jv_int(r);
        return QILIN_OK;
    }
    if (!strcmp(m, "join")) {
        if (na != 1) return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "join() takes exactly one argument");
        return jjoin(c, line, a0, s, NULL, true, out);
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (na != 1 || a0.kind != JK_STR)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "%s takes one str", m);
        bool pre = m[6] == 'p', hit = affix_match(s, a0, pre);
        size_t k = hit ? a0.u.s->len : 0;
        return jv_str(s.u.s->data + (pre ? k : 0), s.u.s->len - k, out);
    }
    if (!strncmp(m, "is", 2) && (!strcmp(m, "isdigit") || !strcmp(m, "isspace") || !strcmp(m, "isalpha") ||
                                 !strcmp(m, "isalnum") || !strcmp(m, "islower") || !strcmp(m, "isupper"))) {
        bool r = s.u.s->len > 0, any_cased = false;
        for (size_t i = 0; i < s.u.s->len && r; i++) {
            unsigned char ch = (unsigned char)s.u.s->data[i];
            if (ch >= 0x80) return jerr(c, line, QILIN_ERR_UNSUPPORTED, "str.%s on non-ASCII text", m);
            if (m[2] == 'd')
                r = isdigit(ch);
            else if (m[2] == 's')
                r = isspace(ch) || (ch >= 0x1c && ch <= 0x1f);
            else if (!strcmp(m, "isalpha"))
                r = isalpha(ch);
            else if (!strcmp(m, "isalnum"))
                r = isalnum(ch);
            else if (m[2] == 'l')
                r = !isupper(ch), any_cased |= islower(ch) != 0;
            else
                r = !islower(ch), any_cased |= isupper(ch) != 0;
        }
        if (m[2] == 'l' || m[2] == 'u') r = r && any_cased;
        *out = jv_bool(r);
        return QILIN_OK;
    }
    return jerr(c, line, QILIN_ERR_UNSUPPORTED, "str method '%s'", m);
}

static qilin_status items_list(jv d, jv *out) {
    QILIN_TRY(jv_list_new(d.u.d->n, out));
    for (size_t i = 0; i < d.u.d->n; i++) {
        jv pair;
        QILIN_TRY(jv_list_new(2, &pair));
        pair.u.l->tuple = true;
        qilin_status st = jv_list_push(pair, jv_ref((jv){JK_STR, 0, {.s = d.u.d->keys[i]}}));
        if (st == QILIN_OK) st = jv_list_push(pair, jv_ref(d.u.d->vals[i]));
        if (st != QILIN_OK) {
            jv_unref(pair);
            return st;
        }
        QILIN_TRY(jv_list_push(*out, pair));
    }
    return QILIN_OK;
}

qilin_status jmethod_call(jctx *c, int line, jv self, const char *m, jv *a, size_t na, char **kwnames,
                          jv *kwargs, size_t nkw, jv *out) {
    (void)kwnames, (void)kwargs;
    if (find_name(MUTATING, m) && !(self.kind == JK_STR))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "access to attribute '%s' of '%s' object is unsafe.",
                    m, jv_type_name(self));
    if (nkw)
        return jerr(c, line, QILIN_ERR_UNSUPPORTED, "keyword arguments to the %s method '%s'",
                    jv_type_name(self), m);
    if (self.kind == JK_STR) {
        QILIN_TRY(
            jsteps(c, line, 1 + self.u.s->len / 64 + (na && a[0].kind == JK_STR ? a[0].u.s->len / 64 : 0)));
        return str_method(c, line, self, m, a, na, out);
    }
    QILIN_TRY(jsteps(c, line, jv_weight(self))); /* count/index compare with every item */
    if (self.kind == JK_DICT) {
        if (!strcmp(m, "items") && na == 0) return items_list(self, out);
        if ((!strcmp(m, "keys") || !strcmp(m, "values")) && na == 0) {
            QILIN_TRY(jv_list_new(self.u.d->n, out));
            for (size_t i = 0; i < self.u.d->n; i++)
                QILIN_TRY(jv_list_push(*out, m[0] == 'k' ? jv_ref((jv){JK_STR, 0, {.s = self.u.d->keys[i]}})
                                                         : jv_ref(self.u.d->vals[i])));
            return QILIN_OK;
        }
        if (!strcmp(m, "get") && (na == 1 || na == 2)) {
            bool found = false;
            jv v = a[0].kind == JK_STR ? jv_dict_get(self, a[0].u.s->data, a[0].u.s->len, &found)
                                       : jv_undef(NULL);
            *out = found ? jv_ref(v) : na == 2 ? jv_ref(a[1]) : jv_none();
            return QILIN_OK;
        }
        if (!strcmp(m, "copy") && na == 0) {
            *out = jv_ref(self); /* values are immutable: sharing is a copy */
            return QILIN_OK;
        }
    }
    if (self.kind == JK_LIST) {
        if (!strcmp(m, "count") && na == 1) {
            int64_t k = 0;
            for (size_t i = 0; i < self.u.l->n; i++) k += jv_equal(self.u.l->items[i], a[0]);
            *out = jv_int(k);
            return QILIN_OK;
        }
        if (!strcmp(m, "index") && na == 1) {
            for (size_t i = 0; i < self.u.l->n; i++)
                if (jv_equal(self.u.l->items[i], a[0])) {
                    *out = jv_int((int64_t)i);
                    return QILIN_OK;
                }
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "list.index(x): x not in list");
        }
        if (!strcmp(m, "copy") && na == 0) {
            *out = jv_ref(self);
            return QILIN_OK;
        }
    }
    return jerr(c, line, QILIN_ERR_UNSUPPORTED, "%s method '%s' with %zu argument(s)", jv_type_name(self), m,
                na);
}

/* ---------------------------------------------------------------- globals */

static qilin_status add_global(jv dict, const char *name, int id) {
    jfunc *f = calloc(1, sizeof *f);
    if (!f) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
    f->rc = 1;
    f->builtin = id;
    f->method = name;
    f->self = jv_undef(NULL);
    return jv_dict_set(dict, name, strlen(name), (jv){JK_FUNC, 0, {.fn = f}});
}

qilin_status jglobals_install(jctx *c, jv dict) {
    (void)c;
    static const struct {
        const char *name;
        int id;
    } g[] = {{"raise_exception", JF_RAISE},
             {"strftime_now", JF_STRFTIME},
             {"namespace", JF_NAMESPACE},
             {"range", JF_RANGE},
             {"dict", JF_DICT},
             {"cycler", JF_UNSUPPORTED},
             {"joiner", JF_UNSUPPORTED},
             {"lipsum", JF_UNSUPPORTED}};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) QILIN_TRY(add_global(dict, g[i].name, g[i].id));
    return QILIN_OK;
}

static qilin_status ns_set(jctx *c, int line, jv ns, const char *key, size_t klen, jv v) {
    if (klen && key[0] == '_') {
        jv_unref(v);
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                    "Chat templates cannot store underscore-prefixed attributes on a namespace, but got "
                    "'%s'. Please rename the attribute.",
                    key);
    }
    return jv_dict_set(ns, key, klen, v);
}

static qilin_status make_dict(jctx *c, int line, int id, jv *a, size_t na, char **kw, jv *kv, size_t nkw,
                              jv *out) {
    if (na > 1 || (na == 1 && a[0].kind != JK_DICT && a[0].kind != JK_NS))
        return jerr(c, line, QILIN_ERR_UNSUPPORTED, "%s() with positional arguments other than one dict",
                    id == JF_NAMESPACE ? "namespace" : "dict");
    QILIN_TRY(jv_dict_new(id == JF_NAMESPACE ? JK_NS : JK_DICT, out));
    if (id == JF_NAMESPACE) QILIN_TRY(jv_list_push(c->namespaces, jv_ref(*out)));
    for (size_t i = 0; na && i < a[0].u.d->n; i++) {
        jstr *k = a[0].u.d->keys[i];
        jv v = jv_ref(a[0].u.d->vals[i]);
        QILIN_TRY(id == JF_NAMESPACE ? ns_set(c, line, *out, k->data, k->len, v)
                                     : jv_dict_set(*out, k->data, k->len, v));
    }
    for (size_t i = 0; i < nkw; i++) {
        jv v = jv_ref(kv[i]);
        QILIN_TRY(id == JF_NAMESPACE ? ns_set(c, line, *out, kw[i], strlen(kw[i]), v)
                                     : jv_dict_set(*out, kw[i], strlen(kw[i]), v));
    }
    return QILIN_OK;
}

static qilin_status range_(jctx *c, int line, jv *a, size_t na, jv *out) {
    int64_t r[3] = {0, 0, 1};
    if (na < 1 || na > 3)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "range expected 1 to 3 arguments, got %zu", na);
    for (size_t i = 0; i < na; i++)
        if (!is_int(a[i]))
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                        "'%s' object cannot be interpreted as an integer", jv_type_name(a[i]));
    if (na == 1)
        r[1] = int_of(a[0]);
    else
        for (size_t i = 0; i < na; i++) r[i] = int_of(a[i]);
    if (r[2] == 0) return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "range() arg 3 must not be zero");
    /* the count in 128 bits: start, stop and step may be anywhere in int64 */
    __int128 span = r[2] > 0 ? (__int128)r[1] - r[0] : (__int128)r[0] - r[1];
    __int128 stride = r[2] > 0 ? (__int128)r[2] : -(__int128)r[2];
    __int128 count = span <= 0 ? 0 : (span + stride - 1) / stride;
    if (count > MAX_RANGE)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                    "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MAX_RANGE);
    QILIN_TRY(jsteps(c, line, (uint64_t)count));
    QILIN_TRY(jv_list_new((size_t)count, out));
    for (int64_t k = 0; k < (int64_t)count; k++) /* start + k*step lies between start and stop */
        QILIN_TRY(jv_list_push(*out, jv_int((int64_t)((__int128)r[0] + (__int128)k * r[2]))));
    return QILIN_OK;
}

qilin_status jglobal_call(jctx *c, int line, int id, jv *a, size_t na, char **kw, jv *kv, size_t nkw,
                          jv *out) {
    switch (id) {
    case JF_RAISE: {
        jbuf b = {0};
        qilin_status st = na ? jv_to_str(a[0], &b) : QILIN_OK;
        st = jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "raise_exception: %s",
                  st == QILIN_OK && b.p ? b.p : "");
        jbuf_free(&b);
        return st;
    }
    case JF_STRFTIME: {
        if (na != 1 || a[0].kind != JK_STR)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "strftime_now(format) takes one string");
        char buf[1024];
        size_t n = a[0].u.s->len ? strftime(buf, sizeof buf, a[0].u.s->data, &c->now) : 0;
        if (a[0].u.s->len && n == 0)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "strftime_now: empty or too long result");
        return jv_str(buf, n, out);
    }
    case JF_NAMESPACE:
    case JF_DICT:
        return make_dict(c, line, id, a, na, kw, kv, nkw, out);
    case JF_RANGE:
        if (nkw) return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "range() takes no keyword arguments");
        return range_(c, line, a, na, out);
    default:
        return jerr(c, line, QILIN_ERR_UNSUPPORTED, "the global function called here (cycler/joiner/lipsum)");
    }
}
