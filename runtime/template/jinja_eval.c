/* jinja_eval.c — runs a parsed template: scopes, statements, operators,
 * calls, and the limits that keep hostile templates from hanging or
 * crashing the process.
 *
 * Scoping follows jinja2: the render context is the top-level scope (where a
 * top-level {% set %} writes), builtins sit beneath it, every for-loop
 * iteration and macro call gets a fresh scope (a {% set %} inside a loop body
 * is gone in the next iteration — hence namespace()), and {% if %} opens
 * none. Operators follow Python: 7 // 2 == 3, -7 % 3 == 2, 1 == 1.0 == true,
 * str + str, list + list, str * int; `~` concatenates str() of both sides. */
#define _GNU_SOURCE /* memmem, strdup, localtime_r */
#include "runtime/template/jinja_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_MAX_DEPTH 500
#define MACRO_MAX_DEPTH 64
/* A loop iteration builds a scope and the `loop` object (a dozen dict entries,
 * each a key string): it costs as much time as ~50 expression nodes, so it is
 * charged so, and the step budget bounds time (50M steps: seconds, where one
 * step per iteration let two nested empty loops run for minutes). */
#define LOOP_ITERATION_STEPS 48
#define SCOPE_STEPS 16 /* a macro call's or an inline loop filter's fresh scope */

qilin_status jerr(const jctx *c, int line, qilin_status st, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qilin_error(st, "template '%s' line %d: %s", c->tpl->name, line, msg);
}

qilin_status jerr_undefined(const jctx *c, int line, jv u) {
    if (u.undef_of && u.u.hint) {
        jv owner = {(jkind)(u.undef_of - 1), 0, {.i = 0}};
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "'%s object' has no attribute '%s'",
                    jv_type_name(owner), u.u.hint);
    }
    if (u.undef_of) {
        jv owner = {(jkind)(u.undef_of - 1), 0, {.i = 0}};
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "%s object has no such element",
                    jv_type_name(owner));
    }
    if (u.u.hint) return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "'%s' is undefined", u.u.hint);
    return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "an undefined value was used");
}

/* ---------------------------------------------------------------- scopes */

static jv lookup(const jctx *c, const jscope *s, const char *name) {
    for (; s; s = s->parent) {
        bool found;
        jv v = jv_dict_get(s->vars, name, strlen(name), &found);
        if (found) return v;
    }
    (void)c;
    return jv_undef(name);
}

static jscope *scope_top(jctx *c) { return c->scope; }

/* Opens a scope whose lookups fall back to `parent` (the enclosing scope, or
 * the top-level one for macros); leave() restores the previous innermost. */
static qilin_status enter(jctx *c, jscope *s, jscope *parent, int line) {
    (void)line;
    s->parent = parent;
    s->prev = c->scope;
    QILIN_TRY(jv_dict_new(JK_DICT, &s->vars));
    c->scope = s;
    return QILIN_OK;
}

static void leave(jctx *c, jscope *s) {
    c->scope = s->prev;
    jv_unref(s->vars);
}

static qilin_status assign(jctx *c, const char *name, jv v) {
    return jv_dict_set(scope_top(c)->vars, name, strlen(name), v);
}

/* ---------------------------------------------------------------- helpers */

qilin_status jsteps(jctx *c, int line, uint64_t n) {
    uint64_t max = c->opt && c->opt->max_steps ? c->opt->max_steps : 50000000u;
    if (n > max || c->steps > max - n)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "evaluation exceeded %llu steps",
                    (unsigned long long)max);
    c->steps += n;
    return QILIN_OK;
}

static qilin_status step(jctx *c, int line) { return jsteps(c, line, 1); }

static bool is_num(jv v) { return v.kind == JK_INT || v.kind == JK_FLOAT || v.kind == JK_BOOL; }

/* ---------------------------------------------------------------- expressions */

static void free_args(jv *args, size_t n) {
    for (size_t i = 0; i < n; i++) jv_unref(args[i]);
    free(args);
}

/* Evaluates n->args and n->kwargs into fresh arrays. */
static qilin_status eval_args(jctx *c, const jnode *n, jv **args, jv **kwargs) {
    *args = calloc(n->args.n + 1, sizeof **args);
    *kwargs = calloc(n->kwargs.n + 1, sizeof **kwargs);
    if (!*args || !*kwargs) {
        free(*args);
        free(*kwargs);
        *args = *kwargs = NULL;
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
    }
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < n->args.n && st == QILIN_OK; i++) st = jeval(c, n->args.v[i], &(*args)[i]);
    for (size_t i = 0; i < n->kwargs.n && st == QILIN_OK; i++) st = jeval(c, n->kwargs.v[i], &(*kwargs)[i]);
    if (st != QILIN_OK) {
        free_args(*args, n->args.n);
        free_args(*kwargs, n->kwargs.n);
        *args = *kwargs = NULL;
    }
    return st;
}

static qilin_status eval_call_like(jctx *c, const jnode *n, jv target, jv *out) {
    jv *args, *kwargs;
    QILIN_TRY(eval_args(c, n, &args, &kwargs));
    qilin_status st;
    if (n->kind == JN_FILTER)
        st = jfilter_apply(c, n->line, n->str, target, args, n->args.n, n->names, kwargs, n->kwargs.n, out);
    else if (n->kind == JN_TEST) {
        bool r = false;
        st = n->kwargs.n ? jerr(c, n->line, QILIN_ERR_UNSUPPORTED, "keyword arguments to a test")
                         : jtest_apply(c, n->line, n->str, target, args, n->args.n, &r);
        *out = jv_bool(r != n->negated);
    } else
        st = jcall_value(c, n->line, target, args, n->args.n, n->names, kwargs, n->kwargs.n, out);
    free_args(args, n->args.n);
    free_args(kwargs, n->kwargs.n);
    return st;
}

static qilin_status eval_collection(jctx *c, const jnode *n, jv *out) {
    if (n->kind == JN_LIST) {
        QILIN_TRY(jv_list_new(n->args.n, out));
        out->u.l->tuple = n->op[0] == 't';
        for (size_t i = 0; i < n->args.n; i++) {
            jv v;
            QILIN_TRY(jeval(c, n->args.v[i], &v));
            QILIN_TRY(jv_list_push(*out, v));
        }
        return QILIN_OK;
    }
    QILIN_TRY(jv_dict_new(JK_DICT, out));
    for (size_t i = 0; i < n->args.n; i++) {
        jv k, v;
        QILIN_TRY(jeval(c, n->args.v[i], &k));
        if (k.kind != JK_STR) {
            jv_unref(k);
            return jerr(c, n->line, QILIN_ERR_UNSUPPORTED, "dict literal keys other than strings");
        }
        qilin_status st = jeval(c, n->kwargs.v[i], &v);
        if (st == QILIN_OK) st = jv_dict_set(*out, k.u.s->data, k.u.s->len, v);
        jv_unref(k);
        QILIN_TRY(st);
    }
    return QILIN_OK;
}

static qilin_status eval_node(jctx *c, const jnode *n, jv *out) {
    jv a = jv_undef(NULL), b = jv_undef(NULL);
    qilin_status st = QILIN_OK;
    switch (n->kind) {
    case JN_CONST:
        *out = jv_ref(n->value);
        return QILIN_OK;
    case JN_NAME:
        *out = jv_ref(lookup(c, scope_top(c), n->str));
        return QILIN_OK;
    case JN_LIST:
    case JN_DICT:
        st = eval_collection(c, n, out);
        if (st != QILIN_OK) jv_unrefp(out);
        return st;
    case JN_AND:
    case JN_OR:
        QILIN_TRY(jeval(c, n->a, &a));
        if (jv_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return QILIN_OK;
        }
        jv_unref(a);
        return jeval(c, n->b, out);
    case JN_NOT:
        QILIN_TRY(jeval(c, n->a, &a));
        *out = jv_bool(!jv_truthy(a));
        jv_unref(a);
        return QILIN_OK;
    case JN_COND:
        QILIN_TRY(jeval(c, n->a, &a));
        st = jv_truthy(a) ? jeval(c, n->b, out)
             : n->c       ? jeval(c, n->c, out)
                          : (*out = jv_undef(NULL), QILIN_OK);
        jv_unref(a);
        return st;
    default:
        break;
    }
    QILIN_TRY(jeval(c, n->a, &a));
    switch (n->kind) {
    case JN_GETATTR:
        st = a.kind == JK_UNDEF ? jerr_undefined(c, n->line, a) : jgetattr(c, n->line, a, n->str, out);
        break;
    case JN_GETITEM:
        if ((st = jeval(c, n->b, &b)) == QILIN_OK)
            st = a.kind == JK_UNDEF ? jerr_undefined(c, n->line, a) : jgetitem(c, n->line, a, b, out);
        if (st == QILIN_OK && out->kind == JK_UNDEF) { /* name it for the error message, if it is used */
            bool str_key = n->b->kind == JN_CONST && n->b->value.kind == JK_STR;
            *out = str_key ? jv_undef_attr(a.kind, n->b->value.u.s->data) : jv_undef_attr(a.kind, NULL);
        }
        break;
    case JN_SLICE:
        st = jslice(c, n, a, out);
        break;
    case JN_CALL:
    case JN_FILTER:
    case JN_TEST:
        st = eval_call_like(c, n, a, out);
        break;
    case JN_NEG:
    case JN_POS:
        if (!is_num(a))
            st = jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "bad operand type for unary %c: '%s'",
                      n->kind == JN_NEG ? '-' : '+', jv_type_name(a));
        else if (n->kind == JN_POS)
            *out = a.kind == JK_BOOL ? jv_int(a.u.b) : a;
        else if (a.kind == JK_FLOAT)
            *out = jv_float(-a.u.f);
        else
            st = jarith_int(c, n->line, '-', 0, a.kind == JK_BOOL ? a.u.b : a.u.i, out);
        break;
    case JN_BINOP:
    case JN_COMPARE:
        if ((st = jeval(c, n->b, &b)) != QILIN_OK) break;
        if (n->kind == JN_COMPARE) {
            st = jcompare(c, n, a, b, out);
        } else if (n->op[0] == '~') {
            jbuf s = {.max = c->out->max};
            st = jv_to_str(a, &s);
            if (st == QILIN_OK) st = jv_to_str(b, &s);
            st = st == QILIN_OK ? jv_str_take(&s, out) : (jbuf_free(&s), st);
        } else {
            st = jarith(c, n->line, n->op, a, b, out);
        }
        break;
    default:
        st = jerr(c, n->line, QILIN_ERR_INTERNAL, "node kind %d is not an expression", (int)n->kind);
    }
    jv_unref(a);
    jv_unref(b);
    return st;
}

qilin_status jeval(jctx *c, const jnode *n, jv *out) {
    *out = jv_undef(NULL);
    QILIN_TRY(step(c, n->line));
    if (++c->depth > EVAL_MAX_DEPTH) {
        c->depth--;
        return jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "evaluation nested deeper than %d",
                    EVAL_MAX_DEPTH);
    }
    qilin_status st = eval_node(c, n, out);
    c->depth--;
    if (st != QILIN_OK)
        jv_unrefp(out);
    else if (out->kind == JK_STR && c->out->max && out->u.s->len > c->out->max) {
        jv_unrefp(out);
        st = jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "string value larger than the limit of %zu bytes",
                  c->out->max);
    }
    return st;
}

/* ---------------------------------------------------------------- calls */

static qilin_status call_macro(jctx *c, int line, const jnode *m, jv *args, size_t nargs, char **kwnames,
                               jv *kwargs, size_t nkw, jv *out) {
    if (nargs > m->n_names)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "macro '%s' takes not more than %zu argument(s)",
                    m->str, m->n_names);
    if (c->call_depth >= MACRO_MAX_DEPTH)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "macro calls nested deeper than %d",
                    MACRO_MAX_DEPTH);
    QILIN_TRY(jsteps(c, line, SCOPE_STEPS));
    jscope s;
    QILIN_TRY(enter(c, &s, c->globals, line));
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < nkw && st == QILIN_OK; i++) {
        size_t k = 0;
        while (k < m->n_names && strcmp(m->names[k], kwnames[i])) k++;
        if (k == m->n_names)
            st = jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "macro '%s' has no argument '%s'", m->str,
                      kwnames[i]);
        else if (k < nargs)
            st = jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "macro '%s' got multiple values for '%s'", m->str,
                      kwnames[i]);
        else
            st = assign(c, m->names[k], jv_ref(kwargs[i]));
    }
    for (size_t k = 0; k < m->n_names && st == QILIN_OK; k++) {
        bool found;
        jv_dict_get(s.vars, m->names[k], strlen(m->names[k]), &found);
        if (k < nargs)
            st = assign(c, m->names[k], jv_ref(args[k]));
        else if (!found) {
            jv d;
            st = jeval(c, m->args.v[k], &d);
            if (st == QILIN_OK && d.kind == JK_UNDEF) d.u.hint = m->names[k];
            if (st == QILIN_OK) st = assign(c, m->names[k], d);
        }
    }
    jbuf body = {.max = c->out->max}, *saved = c->out;
    if (st == QILIN_OK) {
        c->out = &body;
        c->call_depth++;
        st = jexec_body(c, &m->body);
        c->call_depth--;
        c->out = saved;
    }
    leave(c, &s);
    if (st != QILIN_OK) {
        jbuf_free(&body);
        return st;
    }
    return jv_str_take(&body, out);
}

qilin_status jcall_value(jctx *c, int line, jv fn, jv *args, size_t nargs, char **kwnames, jv *kwargs,
                         size_t nkw, jv *out) {
    if (fn.kind == JK_UNDEF) return jerr_undefined(c, line, fn);
    if (fn.kind != JK_FUNC)
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "'%s' object is not callable", jv_type_name(fn));
    const jfunc *f = fn.u.fn;
    if (f->builtin == JF_MACRO) return call_macro(c, line, f->node, args, nargs, kwnames, kwargs, nkw, out);
    if (f->builtin == JF_METHOD)
        return jmethod_call(c, line, f->self, f->method, args, nargs, kwnames, kwargs, nkw, out);
    if (f->builtin == JF_UNSUPPORTED)
        return jerr(c, line, QILIN_ERR_UNSUPPORTED, "the global function '%s'", f->method);
    return jglobal_call(c, line, f->builtin, args, nargs, kwnames, kwargs, nkw, out);
}

qilin_status jiterate(jctx *c, int line, jv v, jv *out) {
    switch (v.kind) {
    case JK_LIST:
        *out = jv_ref(v);
        return QILIN_OK;
    case JK_UNDEF:
        return jv_list_new(0, out);
    case JK_DICT:
        QILIN_TRY(jsteps(c, line, v.u.d->n));
        QILIN_TRY(jv_list_new(v.u.d->n, out));
        for (size_t i = 0; i < v.u.d->n; i++)
            QILIN_TRY(jv_list_push(*out, jv_ref((jv){JK_STR, 0, {.s = v.u.d->keys[i]}})));
        return QILIN_OK;
    case JK_STR:
        QILIN_TRY(jsteps(c, line, v.u.s->len));
        QILIN_TRY(jv_list_new(0, out));
        for (size_t i = 0; i < v.u.s->len;) {
            size_t e = i + 1;
            while (e < v.u.s->len && ((unsigned char)v.u.s->data[e] & 0xc0) == 0x80) e++;
            jv ch;
            QILIN_TRY(jv_str(v.u.s->data + i, e - i, &ch));
            QILIN_TRY(jv_list_push(*out, ch));
            i = e;
        }
        return QILIN_OK;
    default:
        return jerr(c, line, QILIN_ERR_INVALID_ARGUMENT, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---------------------------------------------------------------- statements */

static qilin_status bind_targets(jctx *c, const jnode *n, jv v) {
    if (n->n_names == 1) return assign(c, n->names[0], jv_ref(v));
    jv items;
    QILIN_TRY(jiterate(c, n->line, v, &items));
    qilin_status st = QILIN_OK;
    if (items.u.l->n != n->n_names)
        st = jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT, "cannot unpack %zu values into %zu names",
                  items.u.l->n, n->n_names);
    for (size_t i = 0; i < n->n_names && st == QILIN_OK; i++)
        st = assign(c, n->names[i], jv_ref(items.u.l->items[i]));
    jv_unref(items);
    return st;
}

static qilin_status loop_vars(jctx *c, jv items, size_t i) {
    jv loop;
    QILIN_TRY(jv_dict_new(JK_DICT, &loop));
    size_t n = items.u.l->n;
    struct {
        const char *k;
        jv v;
    } kv[] = {{"index", jv_int((int64_t)i + 1)},
              {"index0", jv_int((int64_t)i)},
              {"revindex", jv_int((int64_t)(n - i))},
              {"revindex0", jv_int((int64_t)(n - i - 1))},
              {"first", jv_bool(i == 0)},
              {"last", jv_bool(i + 1 == n)},
              {"length", jv_int((int64_t)n)},
              {"depth", jv_int(1)},
              {"depth0", jv_int(0)}};
    qilin_status st = QILIN_OK;
    for (size_t k = 0; k < sizeof kv / sizeof kv[0] && st == QILIN_OK; k++)
        st = jv_dict_set(loop, kv[k].k, strlen(kv[k].k), kv[k].v);
    if (st == QILIN_OK && i > 0) st = jv_dict_set(loop, "previtem", 8, jv_ref(items.u.l->items[i - 1]));
    if (st == QILIN_OK && i + 1 < n) st = jv_dict_set(loop, "nextitem", 8, jv_ref(items.u.l->items[i + 1]));
    if (st != QILIN_OK) {
        jv_unref(loop);
        return st;
    }
    return assign(c, "loop", loop);
}

/* The iterable, with the inline `if` condition applied. */
static qilin_status loop_items(jctx *c, const jnode *n, jv *items) {
    jv it;
    QILIN_TRY(jeval(c, n->a, &it));
    qilin_status st = jiterate(c, n->line, it, items);
    jv_unref(it);
    if (st != QILIN_OK || !n->b) return st;
    jv kept;
    QILIN_TRY(jv_list_new(0, &kept));
    for (size_t i = 0; i < items->u.l->n && st == QILIN_OK; i++) {
        jscope s;
        if ((st = jsteps(c, n->line, SCOPE_STEPS)) != QILIN_OK) break;
        if ((st = enter(c, &s, scope_top(c), n->line)) != QILIN_OK) break;
        jv cond = jv_undef(NULL);
        st = bind_targets(c, n, items->u.l->items[i]);
        if (st == QILIN_OK) st = jeval(c, n->b, &cond);
        leave(c, &s);
        if (st == QILIN_OK && jv_truthy(cond)) st = jv_list_push(kept, jv_ref(items->u.l->items[i]));
        jv_unref(cond);
    }
    jv_unref(*items);
    *items = kept;
    if (st != QILIN_OK) jv_unrefp(items);
    return st;
}

static qilin_status exec_for(jctx *c, const jnode *n) {
    jv items;
    QILIN_TRY(loop_items(c, n, &items));
    qilin_status st = QILIN_OK;
    size_t count = items.u.l->n;
    for (size_t i = 0; i < count && st == QILIN_OK; i++) {
        jscope s;
        if ((st = jsteps(c, n->line, LOOP_ITERATION_STEPS)) != QILIN_OK)
            break; /* an empty body still costs */
        if ((st = enter(c, &s, scope_top(c), n->line)) != QILIN_OK) break;
        st = bind_targets(c, n, items.u.l->items[i]);
        if (st == QILIN_OK) st = loop_vars(c, items, i);
        if (st == QILIN_OK) st = jexec_body(c, &n->body);
        leave(c, &s);
        int ctl = c->control;
        c->control = 0;
        if (ctl == CTL_BREAK) break;
    }
    jv_unref(items);
    if (st == QILIN_OK && count == 0) st = jexec_body(c, &n->orelse);
    return st;
}

static qilin_status exec_set_attr(jctx *c, const jnode *n) {
    jv ns = lookup(c, scope_top(c), n->names[0]);
    if (ns.kind != JK_NS)
        return jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT,
                    "cannot assign attribute on non-namespace object '%s'", n->names[0]);
    if (n->names[1][0] == '_')
        return jerr(c, n->line, QILIN_ERR_INVALID_ARGUMENT,
                    "Chat templates cannot store underscore-prefixed attributes on a namespace, but got "
                    "'%s'. Please rename the attribute.",
                    n->names[1]);
    jv v;
    QILIN_TRY(jeval(c, n->a, &v));
    return jv_dict_set(ns, n->names[1], strlen(n->names[1]), v);
}

static qilin_status exec_stmt(jctx *c, const jnode *n) {
    QILIN_TRY(step(c, n->line));
    jv v;
    switch (n->kind) {
    case JN_TEXT:
        return jbuf_put(c->out, n->str, (size_t)n->value.u.i);
    case JN_OUTPUT: {
        QILIN_TRY(jeval(c, n->a, &v));
        qilin_status st = jv_to_str(v, c->out);
        jv_unref(v);
        if (st == QILIN_ERR_UNSUPPORTED) return jerr(c, n->line, st, "%s", qilin_last_error());
        return st;
    }
    case JN_IF: {
        QILIN_TRY(jeval(c, n->a, &v));
        bool t = jv_truthy(v);
        jv_unref(v);
        return jexec_body(c, t ? &n->body : &n->orelse);
    }
    case JN_FOR:
        return exec_for(c, n);
    case JN_SET: {
        QILIN_TRY(jeval(c, n->a, &v));
        qilin_status st = bind_targets(c, n, v);
        jv_unref(v);
        return st;
    }
    case JN_SET_ATTR:
        return exec_set_attr(c, n);
    case JN_SET_BLOCK: {
        jbuf b = {.max = c->out->max}, *saved = c->out;
        c->out = &b;
        qilin_status st = jexec_body(c, &n->body);
        c->out = saved;
        if (st == QILIN_OK)
            st = jv_str_take(&b, &v);
        else
            jbuf_free(&b);
        return st == QILIN_OK ? assign(c, n->names[0], v) : st;
    }
    case JN_MACRO: {
        jfunc *f = calloc(1, sizeof *f);
        if (!f) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
        f->rc = 1;
        f->builtin = JF_MACRO;
        f->node = n;
        f->self = jv_undef(NULL);
        return assign(c, n->str, (jv){JK_FUNC, 0, {.fn = f}});
    }
    case JN_BREAK:
        c->control = CTL_BREAK;
        return QILIN_OK;
    case JN_CONTINUE:
        c->control = CTL_CONTINUE;
        return QILIN_OK;
    case JN_BLOCK:
        return jexec_body(c, &n->body);
    default:
        return jerr(c, n->line, QILIN_ERR_INTERNAL, "node kind %d is not a statement", (int)n->kind);
    }
}

qilin_status jexec_body(jctx *c, const jnodes *body) {
    if (++c->depth > EVAL_MAX_DEPTH) {
        c->depth--;
        return jerr(c, body->n ? body->v[0]->line : 0, QILIN_ERR_INVALID_ARGUMENT,
                    "statements nested too deeply");
    }
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < body->n && st == QILIN_OK && !c->control; i++) st = exec_stmt(c, body->v[i]);
    c->depth--;
    return st;
}

/* ---------------------------------------------------------------- render */

static qilin_status render(jctx *c, const json_t *context) {
    jscope builtins, top;
    QILIN_TRY(enter(c, &builtins, NULL, 0));
    qilin_status st = jglobals_install(c, builtins.vars);
    if (st == QILIN_OK) st = enter(c, &top, &builtins, 0);
    if (st != QILIN_OK) {
        leave(c, &builtins);
        return st;
    }
    if (context && !json_is_object(context))
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "template '%s': the render context is not a JSON object",
                         c->tpl->name);
    const char *key;
    json_t *val;
    if (st == QILIN_OK && context) {
        json_object_foreach((json_t *)context, key, val) {
            jv v;
            if ((st = jv_from_json(val, &v, 0)) != QILIN_OK) break;
            if ((st = jv_dict_set(top.vars, key, strlen(key), v)) != QILIN_OK) break;
        }
    }
    c->globals = &top;
    if (st == QILIN_OK) st = jexec_body(c, &c->tpl->root->body);
    leave(c, &top);
    leave(c, &builtins);
    return st;
}

qilin_status qilin_jinja_render(const qilin_jinja_template *t, const char *context_json,
                                const qilin_jinja_options *opt, char **out, size_t *out_len) {
    json_t *j = NULL;
    if (context_json) {
        json_error_t je;
        j = json_loads(context_json, JSON_DECODE_ANY, &je);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            return qilin_error(QILIN_ERR_FORMAT, "template '%s': context is not a JSON object (%s, line %d)",
                               t ? t->name : "?", j ? "not an object" : je.text, je.line);
        }
    }
    qilin_status st = qilin_jinja_render_json(t, j, opt, out, out_len);
    json_decref(j);
    return st;
}

qilin_status qilin_jinja_render_json(const qilin_jinja_template *t, const json_t *context,
                                     const qilin_jinja_options *opt, char **out, size_t *out_len) {
    if (!t || !out)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_jinja_render: NULL template or output");
    *out = NULL;
    jbuf result = {.max = opt && opt->max_output ? opt->max_output : ((size_t)64 << 20)};
    /* room for the output, the values it is made from, and copies in flight */
    size_t max_memory = opt && opt->max_memory       ? opt->max_memory
                        : result.max <= SIZE_MAX / 4 ? 4 * result.max
                                                     : SIZE_MAX;
    jmem mem = {.name = t->name, .max = max_memory};
    jmem_begin(&mem);
    jctx c = {.tpl = t, .opt = opt, .out = &result};
    if (opt && opt->now)
        c.now = *opt->now;
    else {
        time_t now = time(NULL);
        localtime_r(&now, &c.now);
    }
    qilin_status st = jv_list_new(0, &c.namespaces);
    if (st == QILIN_OK) st = render(&c, context);
    if (st == QILIN_OK) st = jbuf_put(&result, "", 0); /* a NUL-terminated buffer even when empty */
    if (c.namespaces.kind == JK_LIST) {                /* break reference cycles through namespaces */
        for (size_t i = 0; i < c.namespaces.u.l->n; i++) {
            jdict *d = c.namespaces.u.l->items[i].u.d;
            jdict snapshot = *d;
            d->n = 0;
            for (size_t k = 0; k < snapshot.n; k++) {
                jv_unref((jv){JK_STR, 0, {.s = snapshot.keys[k]}});
                jv_unref(snapshot.vals[k]);
            }
        }
        jv_unref(c.namespaces);
    }
    if (st != QILIN_OK) jbuf_free(&result);
    jmem_end(); /* the output now belongs to the caller, outside any budget */
    if (st != QILIN_OK) return st;
    *out = result.p;
    if (out_len) *out_len = result.n;
    return QILIN_OK;
}
