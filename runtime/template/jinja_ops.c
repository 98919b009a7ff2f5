/* jinja_ops.c — Python's operators on template values: arithmetic (int
 * overflow is an error, Python's ints being unbounded), ordering, `in`, and
 * slices of strings (by code point) and lists. */
#define _GNU_SOURCE /* memmem */
#include "runtime/template/jinja_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_num(jv v) { return v.kind == JK_INT || v.kind == JK_FLOAT || v.kind == JK_BOOL; }
static int64_t as_int(jv v) { return v.kind == JK_BOOL ? v.u.b : v.u.i; }
static double as_f(jv v) { return v.kind == JK_FLOAT ? v.u.f : (double)as_int(v); }

static qilin_status type_error(jctx *c, int line, const char *op, jv a, jv b) {
    return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                jv_type_name(a), jv_type_name(b));
}

/* Steps for an operation that copies n bytes (a step per 64: memcpy is cheap). */
static uint64_t byte_steps(size_t n) { return 1 + n / 64; }

static qilin_status too_large(jctx *c, int line, const char *what) {
    return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "%s larger than the limit of %zu bytes", what,
                c->out->max ? c->out->max : ((size_t)64 << 20));
}

/* seq * times. The size is checked before anything is built, and an empty
 * sequence or a count <= 0 returns at once (no loop of `times` empty copies). */
static qilin_status repeat(jctx *c, int line, jv seq, int64_t times, jv *out) {
    size_t max = c->out->max ? c->out->max : ((size_t)64 << 20);
    size_t n = seq.kind == JK_STR ? seq.u.s->len : seq.u.l->n;
    if (times <= 0 || n == 0) return seq.kind == JK_STR ? jv_str("", 0, out) : jv_list_new(0, out);
    if ((uint64_t)times > max / n)
        return too_large(c, line, seq.kind == JK_STR ? "string repetition" : "list repetition");
    size_t total = n * (size_t)times;
    if (seq.kind == JK_STR) {
        QILIN_TRY(jsteps(c, line, byte_steps(total)));
        jbuf b = {.max = max};
        qilin_status st = jbuf_reserve(&b, total);
        if (st == QILIN_OK) st = jbuf_put(&b, seq.u.s->data, n);
        while (st == QILIN_OK && b.n < total) { /* doubling in place: O(total) bytes copied */
            size_t more = b.n <= total - b.n ? b.n : total - b.n;
            memcpy(b.p + b.n, b.p, more);
            b.n += more;
            b.p[b.n] = 0;
        }
        if (st != QILIN_OK) {
            jbuf_free(&b);
            return st;
        }
        return jv_str_take(&b, out);
    }
    QILIN_TRY(jsteps(c, line, total));
    QILIN_TRY(jv_list_new(total, out));
    for (int64_t k = 0; k < times; k++)
        for (size_t i = 0; i < n; i++) QILIN_TRY(jv_list_push(*out, jv_ref(seq.u.l->items[i])));
    return QILIN_OK;
}

static qilin_status int_overflow(jctx *c, int line, const char *op, int64_t x, int64_t y) {
    return jerr(c, line, QILIN_ERR_UNSUPPORTED,
                "integer overflow: %lld %s %lld is beyond 64 bits (Python's ints are unbounded)",
                (long long)x, op, (long long)y);
}

/* x ** y for y >= 0 by repeated squaring: at most 64 multiplications whatever y. */
static bool int_pow(int64_t x, int64_t y, int64_t *r) {
    *r = 1;
    if (x == 0 || x == 1) { /* 0 ** 0 == 1, as Python */
        *r = y == 0 ? 1 : x;
        return true;
    }
    if (x == -1) {
        *r = (y & 1) ? -1 : 1;
        return true;
    }
    int64_t base = x;
    while (y > 0) {
        if ((y & 1) && __builtin_mul_overflow(*r, base, r)) return false;
        y >>= 1;
        if (y && __builtin_mul_overflow(base, base, &base)) return false;
    }
    return true;
}

qilin_status jarith_int(jctx *c, int line, char op, int64_t x, int64_t y, jv *out) {
    int64_t r = 0;
    bool overflow = false;
    switch (op) {
    case '+':
        overflow = __builtin_add_overflow(x, y, &r);
        break;
    case '-':
        overflow = __builtin_sub_overflow(x, y, &r);
        break;
    case '*':
        overflow = __builtin_mul_overflow(x, y, &r);
        break;
    case 'f': /* floor division */
    case '%':
        if (y == 0) return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) {
            overflow = op == 'f'; /* INT64_MIN % -1 is 0 */
            r = 0;
            break;
        }
        r = op == 'f' ? x / y : x % y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) r = op == 'f' ? r - 1 : r + y;
        break;
    case 'p': /* ** */
        if (y < 0) {
            if (x == 0)
                return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "0.0 cannot be raised to a negative power");
            *out = jv_float(pow((double)x, (double)y));
            return QILIN_OK;
        }
        overflow = !int_pow(x, y, &r);
        break;
    }
    if (overflow) {
        const char *name = op == 'f' ? "//" : op == 'p' ? "**" : (char[]){op, 0};
        return int_overflow(c, line, name, x, y);
    }
    *out = jv_int(r);
    return QILIN_OK;
}

/* Python's float ** float: errors where Python raises instead of giving inf or a complex number. */
static qilin_status float_pow(jctx *c, int line, double x, double y, double *r) {
    if (x == 0 && y < 0)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "0.0 cannot be raised to a negative power");
    if (x < 0 && isfinite(y) && y != floor(y))
        return jerr(c, line, QILIN_ERR_UNSUPPORTED,
                    "a negative number raised to a fractional power (complex result)");
    *r = pow(x, y);
    if (isinf(*r) && isfinite(x) && isfinite(y))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "(34, 'Numerical result out of range')");
    return QILIN_OK;
}

qilin_status jarith(jctx *c, int line, const char *op, jv a, jv b, jv *out) {
    if (a.kind == JK_UNDEF) return jerr_undefined(c, line, a);
    if (b.kind == JK_UNDEF) return jerr_undefined(c, line, b);
    char o = !strcmp(op, "//") ? 'f' : !strcmp(op, "**") ? 'p' : op[0];
    if (is_num(a) && is_num(b)) {
        if (a.kind != JK_FLOAT && b.kind != JK_FLOAT && o != '/')
            return jarith_int(c, line, o, as_int(a), as_int(b), out);
        double x = as_f(a), y = as_f(b), r = 0;
        if ((o == '/' || o == 'f' || o == '%') && y == 0)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "float division by zero");
        switch (o) {
        case '+':
            r = x + y;
            break;
        case '-':
            r = x - y;
            break;
        case '*':
            r = x * y;
            break;
        case '/':
            r = x / y;
            break;
        case 'f':
            r = floor(x / y);
            break;
        case '%':
            r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            break;
        case 'p':
            QILIN_TRY(float_pow(c, line, x, y, &r));
            break;
        }
        *out = jv_float(r);
        return QILIN_OK;
    }
    if (o == '+' && a.kind == b.kind && a.kind == JK_STR) {
        QILIN_TRY(jsteps(c, line, byte_steps(a.u.s->len + b.u.s->len)));
        jbuf s = {.max = c->out->max};
        qilin_status st = jbuf_put(&s, a.u.s->data, a.u.s->len);
        if (st == QILIN_OK) st = jbuf_put(&s, b.u.s->data, b.u.s->len);
        if (st != QILIN_OK) {
            jbuf_free(&s);
            return st;
        }
        return jv_str_take(&s, out);
    }
    if (o == '+' && a.kind == b.kind && a.kind == JK_LIST) {
        QILIN_TRY(jsteps(c, line, a.u.l->n + b.u.l->n));
        QILIN_TRY(jv_list_new(a.u.l->n + b.u.l->n, out));
        for (size_t i = 0; i < a.u.l->n; i++) QILIN_TRY(jv_list_push(*out, jv_ref(a.u.l->items[i])));
        for (size_t i = 0; i < b.u.l->n; i++) QILIN_TRY(jv_list_push(*out, jv_ref(b.u.l->items[i])));
        return QILIN_OK;
    }
    if (o == '*' && (a.kind == JK_STR || a.kind == JK_LIST) && (b.kind == JK_INT || b.kind == JK_BOOL))
        return repeat(c, line, a, as_int(b), out);
    if (o == '*' && (b.kind == JK_STR || b.kind == JK_LIST) && (a.kind == JK_INT || a.kind == JK_BOOL))
        return repeat(c, line, b, as_int(a), out);
    if (o == '%' && a.kind == JK_STR)
        return jerr(c, line, QILIN_ERR_UNSUPPORTED, "printf-style string formatting ('...' %% x)");
    if (o == '+' && (a.kind == JK_STR || a.kind == JK_LIST))
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "can only concatenate %s (not \"%s\") to %s",
                    jv_type_name(a), jv_type_name(b), jv_type_name(a));
    return type_error(c, line, op, a, b);
}

static int cmp_str(jv a, jv b) {
    size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
    int r = memcmp(a.u.s->data, b.u.s->data, n);
    return r ? r : (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
}

/* Python's ordering for <, <=, >, >=: numbers, strings, lists. */
static qilin_status order(jctx *c, int line, const char *op, jv a, jv b, int *res) {
    if (is_num(a) && is_num(b)) {
        double x = as_f(a), y = as_f(b);
        if (a.kind != JK_FLOAT && b.kind != JK_FLOAT)
            *res = (as_int(a) > as_int(b)) - (as_int(a) < as_int(b));
        else
            *res = (x > y) - (x < y);
        return QILIN_OK;
    }
    if (a.kind == JK_STR && b.kind == JK_STR) {
        *res = cmp_str(a, b);
        return QILIN_OK;
    }
    if (a.kind == JK_LIST && b.kind == JK_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_equal(a.u.l->items[i], b.u.l->items[i])) continue;
            return order(c, line, op, a.u.l->items[i], b.u.l->items[i], res);
        }
        *res = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return QILIN_OK;
    }
    if (a.kind == JK_UNDEF) return jerr_undefined(c, line, a);
    if (b.kind == JK_UNDEF) return jerr_undefined(c, line, b);
    return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "'%s' not supported between instances of '%s' and '%s'",
                op, jv_type_name(a), jv_type_name(b));
}

static qilin_status contains(jctx *c, int line, jv item, jv container, bool *res) {
    *res = false;
    switch (container.kind) {
    case JK_STR:
        if (item.kind != JK_STR)
            return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT,
                        "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item.u.s->len == 0)
            *res = true;
        else if (item.u.s->len <= container.u.s->len)
            *res = memmem(container.u.s->data, container.u.s->len, item.u.s->data, item.u.s->len) != NULL;
        return QILIN_OK;
    case JK_LIST:
        for (size_t i = 0; i < container.u.l->n && !*res; i++) *res = jv_equal(item, container.u.l->items[i]);
        return QILIN_OK;
    case JK_DICT:
    case JK_NS:
        if (item.kind == JK_STR) jv_dict_get(container, item.u.s->data, item.u.s->len, res);
        return QILIN_OK;
    case JK_UNDEF:
        return QILIN_OK; /* iterating Undefined yields nothing */
    default:
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "argument of type '%s' is not iterable",
                    jv_type_name(container));
    }
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

qilin_status jcompare(jctx *c, const jnode *n, jv a, jv b, jv *out) {
    const char *op = n->op;
    bool r;
    /* a walk over both values visits at most the lighter one's items (all of b's for `in`) */
    bool in = !strcmp(op, "in") || !strcmp(op, "ni");
    bool same = jv_heap(a) && a.kind == b.kind && a.u.l == b.u.l; /* the union's pointer */
    QILIN_TRY(jsteps(c, n->line,
                     same               ? 1
                     : !in              ? min_u64(jv_weight(a), jv_weight(b))
                     : b.kind == JK_STR ? byte_steps(b.u.s->len)
                                        : jv_weight(b)));
    if (!strcmp(op, "==") || !strcmp(op, "!=")) {
        r = jv_equal(a, b) == (op[0] == '=');
    } else if (!strcmp(op, "in") || !strcmp(op, "ni")) {
        QILIN_TRY(contains(c, n->line, a, b, &r));
        if (op[0] == 'n') r = !r;
    } else {
        int k;
        QILIN_TRY(order(c, n->line, op, a, b, &k));
        r = op[0] == '<' ? (op[1] ? k <= 0 : k < 0) : (op[1] ? k >= 0 : k > 0);
    }
    *out = jv_bool(r);
    return QILIN_OK;
}

/* Byte offset of the code point after the one at byte `off` (or before it, back). */
static size_t cp_next(const jstr *s, size_t off) {
    off++;
    while (off < s->len && ((unsigned char)s->data[off] & 0xc0) == 0x80) off++;
    return off;
}
static size_t cp_prev(const jstr *s, size_t off) {
    while (off > 0 && ((unsigned char)s->data[--off] & 0xc0) == 0x80) {
    }
    return off;
}

/* s[start:stop:step] by code point in one pass over the bytes (start and stop
 * already clipped as Python clips them). */
static qilin_status slice_str(jctx *c, int line, const jstr *s, int64_t start, int64_t stop, int64_t step,
                              jv *out) {
    int64_t span = step > 0 ? stop - start : start - stop; /* code points walked */
    QILIN_TRY(jsteps(c, line, byte_steps(s->cps != s->len ? s->len : span > 0 ? (size_t)span : 0)));
    jbuf b = {.max = c->out->max};
    qilin_status st = QILIN_OK;
    int64_t i = start;
    size_t off = start >= 0 ? jstr_offset(s, (size_t)start) : 0;
    while (st == QILIN_OK && (step > 0 ? i < stop : i > stop)) {
        size_t end = cp_next(s, off);
        st = jbuf_put(&b, s->data + off, end - off);
        /* move |step| code points; stop at either end of the string */
        for (int64_t k = 0; k < (step > 0 ? step : -step) && st == QILIN_OK; k++) {
            if (step > 0 ? off >= s->len : off == 0) {
                i = stop;
                break;
            }
            off = step > 0 ? cp_next(s, off) : cp_prev(s, off);
            i += step > 0 ? 1 : -1;
        }
    }
    if (st != QILIN_OK) {
        jbuf_free(&b);
        return st;
    }
    return jv_str_take(&b, out);
}

/* Python slice of a str (by code point) or list. */
qilin_status jslice(jctx *c, const jnode *n, jv obj, jv *out) {
    jv parts[3] = {jv_none(), jv_none(), jv_none()};
    const jnode *pn[3] = {n->b, n->c, n->args.n ? n->args.v[0] : NULL};
    qilin_status st = QILIN_OK;
    for (int k = 0; k < 3 && st == QILIN_OK; k++)
        if (pn[k]) st = jeval(c, pn[k], &parts[k]);
    int64_t idx[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3 && st == QILIN_OK; k++) {
        if (parts[k].kind == JK_NONE) continue;
        if (parts[k].kind != JK_INT && parts[k].kind != JK_BOOL)
            st = jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "slice indices must be integers or None");
        else
            idx[k] = as_int(parts[k]), given[k] = true;
    }
    for (int k = 0; k < 3; k++) jv_unref(parts[k]);
    QILIN_TRY(st);
    if (obj.kind == JK_UNDEF) return jerr_undefined(c, n->line, obj);
    if (obj.kind != JK_STR && obj.kind != JK_LIST)
        return jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "'%s' object is not subscriptable",
                    jv_type_name(obj));
    if (idx[2] == 0) return jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "slice step cannot be zero");
    int64_t len = obj.kind == JK_STR ? (int64_t)obj.u.s->cps : (int64_t)obj.u.l->n;
    int64_t step = idx[2], lo = step < 0 ? -1 : 0, hi = step < 0 ? len - 1 : len;
    int64_t start = given[0] ? idx[0] : (step < 0 ? hi : lo), stop = given[1] ? idx[1] : (step < 0 ? lo : hi);
    if (given[0]) start = start < 0 ? (start + len < lo ? lo : start + len) : (start > hi ? hi : start);
    if (given[1]) stop = stop < 0 ? (stop + len < lo ? lo : stop + len) : (stop > hi ? hi : stop);
    if (obj.kind == JK_LIST) {
        int64_t span = step > 0 ? stop - start : start - stop; /* items taken: span / |step| */
        QILIN_TRY(
            jsteps(c, n->line,
                   1 + (span > 0 ? (uint64_t)span / (step > 0 ? (uint64_t)step : 0 - (uint64_t)step) : 0)));
        QILIN_TRY(jv_list_new(0, out));
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            QILIN_TRY(jv_list_push(*out, jv_ref(obj.u.l->items[i])));
            if (step > 0 ? i > INT64_MAX - step : i < INT64_MIN - step) break;
        }
        return QILIN_OK;
    }
    return slice_str(c, n->line, obj.u.s, start, stop, step, out);
}
