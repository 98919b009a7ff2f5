/* jinja_parse.c — tokens to an AST, with jinja2's grammar and precedence:
 *
 *   expr     := or ['if' or ['else' expr]]          (conditional expression)
 *   or       := and ('or' and)*        and := not ('and' not)*
 *   not      := 'not' not | compare
 *   compare  := math1 (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not' 'in') math1)*
 *   math1    := concat (('+'|'-') concat)*   concat := math2 ('~' math2)*
 *   math2    := pow (('*'|'/'|'//'|'%') pow)* pow := unary ('**' unary)*
 *   unary    := ('-'|'+') unary | primary postfix* ('|' filter | 'is' test | call)*
 *
 * Statements: if/elif/else, for/else, set (name, tuple, ns.attr, block),
 * macro, break, continue, generation. Everything else Jinja has
 * (include, extends, call, filter blocks, with, ...) is QILIN_ERR_UNSUPPORTED
 * naming the tag and its line. Nesting is bounded so that a hostile template
 * cannot exhaust the C stack. */
#define _GNU_SOURCE /* memmem, strdup, localtime_r */
#include "runtime/template/jinja_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARSE_MAX_DEPTH 200

typedef struct parser {
    jtoks *t;
    size_t i;
    const char *name;
    int depth;
    jnodes *all; /* every node, owned by the template: no ownership juggling on error paths */
} parser;

static qilin_status expr(parser *P, bool condexpr, jnode **out);
static qilin_status body_until(parser *P, const char *const *ends, jnodes *body, const char **which);

static jtok *cur(parser *P) { return &P->t->v[P->i]; }
static jtok *peek(parser *P, size_t k) {
    size_t j = P->i + k < P->t->n ? P->i + k : P->t->n - 1;
    return &P->t->v[j];
}
static bool is_op(const jtok *t, const char *op) { return t->kind == JT_OP && strcmp(t->text, op) == 0; }
static bool is_name(const jtok *t, const char *n) { return t->kind == JT_NAME && strcmp(t->text, n) == 0; }

static qilin_status fail(parser *P, qilin_status st, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qilin_error(st, "template '%s' line %d: %s%s", P->name, cur(P)->line,
                       st == QILIN_ERR_FORMAT ? "syntax error: " : "", msg);
}

static const char *describe(const jtok *t) {
    switch (t->kind) {
    case JT_DATA:
        return "template data";
    case JT_VAR_BEGIN:
        return "begin of print statement";
    case JT_VAR_END:
        return "end of print statement";
    case JT_BLOCK_BEGIN:
        return "begin of statement block";
    case JT_BLOCK_END:
        return "end of statement block";
    case JT_EOF:
        return "end of template";
    case JT_INT:
        return "integer";
    case JT_FLOAT:
        return "float";
    case JT_STRING:
        return "string";
    default:
        return t->text;
    }
}

static qilin_status expect_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) return fail(P, QILIN_ERR_FORMAT, "expected '%s', got '%s'", op, describe(cur(P)));
    P->i++;
    return QILIN_OK;
}

static qilin_status expect_kind(parser *P, jtok_kind k, const char *what) {
    if (cur(P)->kind != k) return fail(P, QILIN_ERR_FORMAT, "expected %s, got '%s'", what, describe(cur(P)));
    P->i++;
    return QILIN_OK;
}

static qilin_status push(jnodes *v, jnode *n) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **p = realloc(v->v, cap * sizeof *p);
        if (!p) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (AST)");
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = n;
    return QILIN_OK;
}

static qilin_status node_new(parser *P, jnode_kind kind, int line, jnode **out) {
    jnode *n = calloc(1, sizeof *n);
    if (!n) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "template '%s': out of memory (AST)", P->name);
    n->kind = kind;
    n->line = line;
    n->value = jv_undef(NULL);
    qilin_status st = push(P->all, n);
    if (st != QILIN_OK) {
        free(n);
        return st;
    }
    *out = n;
    return QILIN_OK;
}

static qilin_status add_name(jnode *n, const char *s) {
    char **p = realloc(n->names, (n->n_names + 1) * sizeof *p);
    if (!p) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (AST)");
    n->names = p;
    n->names[n->n_names] = strdup(s ? s : "");
    if (!n->names[n->n_names]) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory (AST)");
    n->n_names++;
    return QILIN_OK;
}

/* Frees the node's own allocations; children are freed through the arena. */
void jnode_free(jnode *n) {
    if (!n) return;
    free(n->str);
    jv_unref(n->value);
    free(n->body.v);
    free(n->orelse.v);
    free(n->args.v);
    free(n->kwargs.v);
    for (size_t i = 0; i < n->n_names; i++) free(n->names[i]);
    free(n->names);
    free(n);
}

static qilin_status binary(parser *P, jnode_kind kind, const char *op, int line, jnode *l, jnode *r,
                           jnode **out) {
    QILIN_TRY(node_new(P, kind, line, out));
    (*out)->a = l;
    (*out)->b = r;
    if (op) snprintf((*out)->op, sizeof(*out)->op, "%s", op);
    return QILIN_OK;
}

/* ---------------------------------------------------------------- expressions */

/* "(" args, name=kwargs ")" into n->args / n->kwargs + n->names. */
static qilin_status call_args(parser *P, jnode *n) {
    QILIN_TRY(expect_op(P, "("));
    while (!is_op(cur(P), ")")) {
        if (n->args.n + n->kwargs.n) QILIN_TRY(expect_op(P, ","));
        if (is_op(cur(P), ")")) break;
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            return fail(P, QILIN_ERR_UNSUPPORTED, "*args / **kwargs in a call");
        jnode *e;
        if (cur(P)->kind == JT_NAME && is_op(peek(P, 1), "=")) {
            QILIN_TRY(add_name(n, cur(P)->text));
            P->i += 2;
            QILIN_TRY(expr(P, true, &e));
            QILIN_TRY(push(&n->kwargs, e));
        } else {
            if (n->kwargs.n) return fail(P, QILIN_ERR_FORMAT, "positional argument after keyword argument");
            QILIN_TRY(expr(P, true, &e));
            QILIN_TRY(push(&n->args, e));
        }
    }
    P->i++;
    return QILIN_OK;
}

static bool tuple_end(parser *P, const char *extra_end) {
    jtok *t = cur(P);
    return t->kind == JT_VAR_END || t->kind == JT_BLOCK_END || t->kind == JT_EOF || is_op(t, ")") ||
           (extra_end && is_name(t, extra_end));
}

/* Comma-separated expressions; one without a comma is returned as is. */
static qilin_status tuple(parser *P, bool condexpr, const char *extra_end, bool parens, jnode **out) {
    int line = cur(P)->line;
    jnode *list;
    QILIN_TRY(node_new(P, JN_LIST, line, &list));
    bool is_tuple = false;
    qilin_status st = QILIN_OK;
    for (;;) {
        if (list->args.n && (st = expect_op(P, ",")) != QILIN_OK) break;
        if (tuple_end(P, extra_end)) break;
        jnode *e;
        if ((st = expr(P, condexpr, &e)) != QILIN_OK || (st = push(&list->args, e)) != QILIN_OK) break;
        if (!is_op(cur(P), ",")) break;
        is_tuple = true;
    }
    if (st == QILIN_OK && !is_tuple && list->args.n == 0 && !parens)
        st = fail(P, QILIN_ERR_FORMAT, "expected an expression, got '%s'", describe(cur(P)));
    QILIN_TRY(st);
    list->op[0] = 't'; /* a tuple: printed with parentheses */
    *out = (is_tuple || list->args.n == 0) ? list : list->args.v[0];
    return QILIN_OK;
}

static qilin_status const_node(parser *P, int line, jv v, jnode **out) {
    qilin_status st = node_new(P, JN_CONST, line, out);
    if (st != QILIN_OK) {
        jv_unref(v);
        return st;
    }
    (*out)->value = v;
    return QILIN_OK;
}

static qilin_status list_or_dict(parser *P, bool dict, jnode **out) {
    QILIN_TRY(node_new(P, dict ? JN_DICT : JN_LIST, cur(P)->line, out));
    jnode *n = *out;
    P->i++;
    const char *close = dict ? "}" : "]";
    qilin_status st = QILIN_OK;
    while (st == QILIN_OK && !is_op(cur(P), close)) {
        if (n->args.n && (st = expect_op(P, ",")) != QILIN_OK) break;
        if (is_op(cur(P), close)) break;
        jnode *k, *v;
        if ((st = expr(P, true, &k)) != QILIN_OK || (st = push(&n->args, k)) != QILIN_OK) break;
        if (!dict) continue;
        if ((st = expect_op(P, ":")) != QILIN_OK) break;
        if ((st = expr(P, true, &v)) != QILIN_OK || (st = push(&n->kwargs, v)) != QILIN_OK) break;
    }
    if (st == QILIN_OK) P->i++;
    return st;
}

static qilin_status primary(parser *P, jnode **out) {
    jtok *t = cur(P);
    int line = t->line;
    if (t->kind == JT_NAME) {
        P->i++;
        if (!strcmp(t->text, "true") || !strcmp(t->text, "True"))
            return const_node(P, line, jv_bool(true), out);
        if (!strcmp(t->text, "false") || !strcmp(t->text, "False"))
            return const_node(P, line, jv_bool(false), out);
        if (!strcmp(t->text, "none") || !strcmp(t->text, "None")) return const_node(P, line, jv_none(), out);
        QILIN_TRY(node_new(P, JN_NAME, line, out));
        if (!((*out)->str = strdup(t->text)))
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
        return QILIN_OK;
    }
    if (t->kind == JT_STRING) { /* adjacent literals concatenate */
        jbuf b = {0};
        for (; cur(P)->kind == JT_STRING; P->i++) {
            qilin_status st = jbuf_put(&b, cur(P)->text, cur(P)->len);
            if (st != QILIN_OK) {
                jbuf_free(&b);
                return st;
            }
        }
        jv v;
        QILIN_TRY(jv_str_take(&b, &v));
        return const_node(P, line, v, out);
    }
    if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        P->i++;
        return const_node(P, line, t->kind == JT_INT ? jv_int(t->ival) : jv_float(t->fval), out);
    }
    if (is_op(t, "(")) {
        P->i++;
        QILIN_TRY(tuple(P, true, NULL, true, out));
        return expect_op(P, ")");
    }
    if (is_op(t, "[")) return list_or_dict(P, false, out);
    if (is_op(t, "{")) return list_or_dict(P, true, out);
    return fail(P, QILIN_ERR_FORMAT, "unexpected '%s'", describe(t));
}

/* obj[...] : an index or a slice a:b:c */
static qilin_status subscript(parser *P, jnode *obj, jnode **out) {
    int line = cur(P)->line;
    P->i++;
    jnode *parts[3] = {NULL, NULL, NULL};
    int nparts = 0;
    bool slice = false;
    qilin_status st = QILIN_OK;
    while (st == QILIN_OK && nparts < 3) {
        if (!is_op(cur(P), ":") && !is_op(cur(P), "]")) st = expr(P, true, &parts[nparts]);
        nparts++;
        if (st == QILIN_OK && is_op(cur(P), ":")) {
            slice = true;
            P->i++;
            continue;
        }
        break;
    }
    if (st == QILIN_OK) st = expect_op(P, "]");
    if (st == QILIN_OK && !slice && !parts[0]) st = fail(P, QILIN_ERR_FORMAT, "expected an index");
    if (st == QILIN_OK) st = node_new(P, slice ? JN_SLICE : JN_GETITEM, line, out);
    QILIN_TRY(st);
    (*out)->a = obj;
    if (!slice) {
        (*out)->b = parts[0];
        return QILIN_OK;
    }
    (*out)->b = parts[0];
    (*out)->c = parts[1];
    (*out)->value = jv_undef(NULL);
    if (parts[2]) { /* step kept in args[0] */
        st = push(&(*out)->args, parts[2]);
        if (st != QILIN_OK) return st;
    }
    return QILIN_OK;
}

static qilin_status postfix(parser *P, jnode **node) {
    for (;;) {
        jtok *t = cur(P);
        if (is_op(t, ".")) {
            jtok *a = peek(P, 1);
            jnode *n;
            if (a->kind == JT_NAME) {
                QILIN_TRY(node_new(P, JN_GETATTR, t->line, &n));
                n->a = *node;
                *node = n;
                if (!(n->str = strdup(a->text)))
                    return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
            } else if (a->kind == JT_INT) { /* foo.0 is foo[0] */
                QILIN_TRY(node_new(P, JN_GETITEM, t->line, &n));
                n->a = *node;
                *node = n;
                QILIN_TRY(const_node(P, t->line, jv_int(a->ival), &n->b));
            } else {
                return fail(P, QILIN_ERR_FORMAT, "expected a name after '.'");
            }
            P->i += 2;
        } else if (is_op(t, "[")) {
            QILIN_TRY(subscript(P, *node, node));
        } else if (is_op(t, "(")) {
            jnode *n;
            QILIN_TRY(node_new(P, JN_CALL, t->line, &n));
            n->a = *node;
            *node = n;
            QILIN_TRY(call_args(P, n));
        } else {
            return QILIN_OK;
        }
    }
}

static qilin_status filter_or_test(parser *P, jnode **node) {
    for (;;) {
        jtok *t = cur(P);
        bool filt = is_op(t, "|"), test = is_name(t, "is");
        if (!filt && !test) {
            if (is_op(t, "(")) {
                QILIN_TRY(postfix(P, node));
                continue;
            }
            return QILIN_OK;
        }
        jnode *n;
        QILIN_TRY(node_new(P, filt ? JN_FILTER : JN_TEST, t->line, &n));
        n->a = *node;
        *node = n;
        P->i++;
        if (test && is_name(cur(P), "not")) {
            n->negated = true;
            P->i++;
        }
        if (cur(P)->kind != JT_NAME)
            return fail(P, QILIN_ERR_FORMAT, "expected a %s name", filt ? "filter" : "test");
        if (!(n->str = strdup(cur(P)->text)))
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
        P->i++;
        if (is_op(cur(P), ".")) return fail(P, QILIN_ERR_UNSUPPORTED, "dotted filter or test names");
        if (is_op(cur(P), "(")) {
            QILIN_TRY(call_args(P, n));
        } else if (test) { /* one bare argument: `is divisibleby 3`, `is sameas none` */
            jtok *a = cur(P);
            bool starts_arg =
                (a->kind == JT_NAME && !is_name(a, "else") && !is_name(a, "or") && !is_name(a, "and") &&
                 !is_name(a, "is") && !is_name(a, "if") && !is_name(a, "in") && !is_name(a, "not")) ||
                a->kind == JT_STRING || a->kind == JT_INT || a->kind == JT_FLOAT || is_op(a, "[") ||
                is_op(a, "{");
            if (starts_arg) {
                jnode *arg;
                QILIN_TRY(primary(P, &arg));
                QILIN_TRY(postfix(P, &arg));
                QILIN_TRY(push(&n->args, arg));
            }
        }
        if (test && !jtest_known(n->str)) return fail(P, QILIN_ERR_UNSUPPORTED, "test '%s'", n->str);
    }
}

static qilin_status unary(parser *P, bool with_filter, jnode **out) {
    if (++P->depth > PARSE_MAX_DEPTH)
        return fail(P, QILIN_ERR_INVALID_ARGUMENT, "expression nested too deeply");
    jtok *t = cur(P);
    qilin_status st;
    if (is_op(t, "-") || is_op(t, "+")) {
        P->i++;
        jnode *inner;
        QILIN_TRY(unary(P, false, &inner));
        st = binary(P, t->text[0] == '-' ? JN_NEG : JN_POS, NULL, t->line, inner, NULL, out);
    } else {
        st = primary(P, out);
    }
    if (st == QILIN_OK) st = postfix(P, out);
    if (st == QILIN_OK && with_filter) st = filter_or_test(P, out);
    P->depth--;
    return st;
}

/* Left-associative binary levels, table-driven. */
typedef qilin_status (*level_fn)(parser *, jnode **);
static qilin_status level(parser *P, jnode **out, level_fn next, const char *const *ops, jnode_kind kind) {
    QILIN_TRY(next(P, out));
    for (;;) {
        const char *op = NULL;
        for (size_t k = 0; ops[k]; k++)
            if (is_op(cur(P), ops[k])) op = ops[k];
        if (!op) return QILIN_OK;
        int line = cur(P)->line;
        P->i++;
        jnode *r;
        QILIN_TRY(next(P, &r));
        QILIN_TRY(binary(P, kind, op, line, *out, r, out));
    }
}

static qilin_status unary_f(parser *P, jnode **o) { return unary(P, true, o); }
static qilin_status pow_(parser *P, jnode **o) {
    static const char *ops[] = {"**", NULL};
    return level(P, o, unary_f, ops, JN_BINOP);
}
static qilin_status math2(parser *P, jnode **o) {
    static const char *ops[] = {"*", "/", "//", "%", NULL};
    return level(P, o, pow_, ops, JN_BINOP);
}
static qilin_status concat(parser *P, jnode **o) {
    static const char *ops[] = {"~", NULL};
    return level(P, o, math2, ops, JN_BINOP);
}
static qilin_status math1(parser *P, jnode **o) {
    static const char *ops[] = {"+", "-", NULL};
    return level(P, o, concat, ops, JN_BINOP);
}

/* a < b < c (Python's chained comparison) is rare in templates: unsupported. */
static qilin_status compare(parser *P, jnode **out) {
    QILIN_TRY(math1(P, out));
    bool chained = false;
    for (;;) {
        jtok *t = cur(P);
        const char *op = NULL;
        static const char *ops[] = {"==", "!=", "<", "<=", ">", ">=", NULL};
        for (size_t k = 0; ops[k]; k++)
            if (is_op(t, ops[k])) op = ops[k];
        if (!op && is_name(t, "in")) op = "in";
        if (!op && is_name(t, "not") && is_name(peek(P, 1), "in")) op = "ni";
        if (!op) return QILIN_OK;
        if (chained) return fail(P, QILIN_ERR_UNSUPPORTED, "chained comparisons (a < b < c)");
        int line = t->line;
        P->i += op[0] == 'n' ? 2 : 1;
        jnode *r;
        QILIN_TRY(math1(P, &r));
        QILIN_TRY(binary(P, JN_COMPARE, op, line, *out, r, out));
        chained = true;
    }
}

static qilin_status not_(parser *P, jnode **out) {
    if (is_name(cur(P), "not")) {
        int line = cur(P)->line;
        P->i++;
        if (++P->depth > PARSE_MAX_DEPTH)
            return fail(P, QILIN_ERR_INVALID_ARGUMENT, "expression nested too deeply");
        jnode *inner;
        qilin_status st = not_(P, &inner);
        P->depth--;
        QILIN_TRY(st);
        return binary(P, JN_NOT, NULL, line, inner, NULL, out);
    }
    return compare(P, out);
}

static qilin_status and_or(parser *P, jnode **out, bool is_or) {
    QILIN_TRY(is_or ? and_or(P, out, false) : not_(P, out));
    while (is_name(cur(P), is_or ? "or" : "and")) {
        int line = cur(P)->line;
        P->i++;
        jnode *r;
        QILIN_TRY(is_or ? and_or(P, &r, false) : not_(P, &r));
        QILIN_TRY(binary(P, is_or ? JN_OR : JN_AND, NULL, line, *out, r, out));
    }
    return QILIN_OK;
}

static qilin_status expr(parser *P, bool condexpr, jnode **out) {
    if (++P->depth > PARSE_MAX_DEPTH)
        return fail(P, QILIN_ERR_INVALID_ARGUMENT, "expression nested too deeply");
    qilin_status st = and_or(P, out, true);
    while (st == QILIN_OK && condexpr && is_name(cur(P), "if")) {
        int line = cur(P)->line;
        P->i++;
        jnode *cond, *other = NULL, *n;
        if ((st = and_or(P, &cond, true)) != QILIN_OK) break;
        if (is_name(cur(P), "else")) {
            P->i++;
            if ((st = expr(P, true, &other)) != QILIN_OK) break;
        }
        if ((st = binary(P, JN_COND, NULL, line, cond, *out, &n)) != QILIN_OK) break;
        n->c = other;
        *out = n;
    }
    P->depth--;
    return st;
}

/* ---------------------------------------------------------------- statements */

/* Assignment / loop targets: name, name.attr (namespaces, set only), or names separated by commas. */
static qilin_status targets(parser *P, jnode *n, bool allow_attr, const char *end) {
    bool parens = is_op(cur(P), "(");
    if (parens) P->i++;
    for (;;) {
        if (cur(P)->kind != JT_NAME) return fail(P, QILIN_ERR_FORMAT, "expected a name to assign to");
        if (allow_attr && !parens && is_op(peek(P, 1), ".") && n->n_names == 0) {
            if (peek(P, 2)->kind != JT_NAME) return fail(P, QILIN_ERR_FORMAT, "expected an attribute name");
            QILIN_TRY(add_name(n, cur(P)->text));
            QILIN_TRY(add_name(n, peek(P, 2)->text));
            n->kind = JN_SET_ATTR;
            P->i += 3;
            return QILIN_OK;
        }
        QILIN_TRY(add_name(n, cur(P)->text));
        P->i++;
        if (!is_op(cur(P), ",")) break;
        P->i++;
        if ((parens && is_op(cur(P), ")")) || (end && is_name(cur(P), end)) || is_op(cur(P), "=")) break;
    }
    if (parens) QILIN_TRY(expect_op(P, ")"));
    return QILIN_OK;
}

static qilin_status stmt_if(parser *P, jnode *n) {
    QILIN_TRY(tuple(P, false, NULL, false, &n->a));
    QILIN_TRY(expect_kind(P, JT_BLOCK_END, "'%}'"));
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *which;
    QILIN_TRY(body_until(P, ends, &n->body, &which));
    if (!strcmp(which, "elif")) {
        jnode *e = NULL;
        QILIN_TRY(node_new(P, JN_IF, cur(P)->line, &e));
        QILIN_TRY(push(&n->orelse, e));
        return stmt_if(P, e);
    }
    if (!strcmp(which, "else")) {
        QILIN_TRY(expect_kind(P, JT_BLOCK_END, "'%}'"));
        static const char *const endif[] = {"endif", NULL};
        QILIN_TRY(body_until(P, endif, &n->orelse, &which));
    }
    return expect_kind(P, JT_BLOCK_END, "'%}'");
}

static qilin_status stmt_for(parser *P, jnode *n) {
    QILIN_TRY(targets(P, n, false, "in"));
    if (!is_name(cur(P), "in")) return fail(P, QILIN_ERR_FORMAT, "expected 'in' in a for loop");
    P->i++;
    QILIN_TRY(tuple(P, false, "recursive", false, &n->a));
    if (is_name(cur(P), "if")) {
        P->i++;
        QILIN_TRY(expr(P, true, &n->b));
    }
    if (is_name(cur(P), "recursive")) return fail(P, QILIN_ERR_UNSUPPORTED, "recursive for loops");
    QILIN_TRY(expect_kind(P, JT_BLOCK_END, "'%}'"));
    static const char *const ends[] = {"endfor", "else", NULL};
    const char *which;
    QILIN_TRY(body_until(P, ends, &n->body, &which));
    if (!strcmp(which, "else")) {
        QILIN_TRY(expect_kind(P, JT_BLOCK_END, "'%}'"));
        static const char *const endfor[] = {"endfor", NULL};
        QILIN_TRY(body_until(P, endfor, &n->orelse, &which));
    }
    return expect_kind(P, JT_BLOCK_END, "'%}'");
}

static qilin_status stmt_set(parser *P, jnode *n) {
    QILIN_TRY(targets(P, n, true, NULL));
    if (is_op(cur(P), "=")) {
        P->i++;
        QILIN_TRY(tuple(P, true, NULL, false, &n->a));
        return expect_kind(P, JT_BLOCK_END, "'%}'");
    }
    if (n->kind != JN_SET || n->n_names != 1) return fail(P, QILIN_ERR_FORMAT, "expected '='");
    if (is_op(cur(P), "|")) return fail(P, QILIN_ERR_UNSUPPORTED, "filtered block set");
    n->kind = JN_SET_BLOCK;
    QILIN_TRY(expect_kind(P, JT_BLOCK_END, "'%}'"));
    static const char *const ends[] = {"endset", NULL};
    const char *which;
    QILIN_TRY(body_until(P, ends, &n->body, &which));
    return expect_kind(P, JT_BLOCK_END, "'%}'");
}

static qilin_status stmt_macro(parser *P, jnode *n) {
    if (cur(P)->kind != JT_NAME) return fail(P, QILIN_ERR_FORMAT, "expected a macro name");
    if (!(n->str = strdup(cur(P)->text))) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
    P->i++;
    QILIN_TRY(expect_op(P, "("));
    while (!is_op(cur(P), ")")) {
        if (n->n_names) QILIN_TRY(expect_op(P, ","));
        if (cur(P)->kind != JT_NAME) return fail(P, QILIN_ERR_FORMAT, "expected a parameter name");
        QILIN_TRY(add_name(n, cur(P)->text));
        P->i++;
        jnode *def = NULL;
        if (is_op(cur(P), "=")) {
            P->i++;
            QILIN_TRY(expr(P, true, &def));
        } else {
            QILIN_TRY(node_new(P, JN_CONST, cur(P)->line, &def)); /* no default: undefined */
        }
        QILIN_TRY(push(&n->args, def));
    }
    P->i++;
    QILIN_TRY(expect_kind(P, JT_BLOCK_END, "'%}'"));
    static const char *const ends[] = {"endmacro", NULL};
    const char *which;
    QILIN_TRY(body_until(P, ends, &n->body, &which));
    if (cur(P)->kind == JT_NAME) P->i++; /* {% endmacro name %} */
    return expect_kind(P, JT_BLOCK_END, "'%}'");
}

static qilin_status statement(parser *P, jnodes *body) {
    jtok *t = cur(P);
    if (t->kind != JT_NAME)
        return fail(P, QILIN_ERR_FORMAT, "expected a statement name, got '%s'", describe(t));
    static const char *const unsupported[] = {"include", "import",    "from", "extends",    "block",
                                              "call",    "filter",    "with", "autoescape", "do",
                                              "trans",   "pluralize", NULL};
    for (size_t k = 0; unsupported[k]; k++)
        if (!strcmp(t->text, unsupported[k]))
            return fail(P, QILIN_ERR_UNSUPPORTED, "the {%% %s %%} statement", t->text);
    static const struct {
        const char *name;
        jnode_kind kind;
    } kinds[] = {{"if", JN_IF},       {"for", JN_FOR},           {"set", JN_SET},         {"macro", JN_MACRO},
                 {"break", JN_BREAK}, {"continue", JN_CONTINUE}, {"generation", JN_BLOCK}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strcmp(t->text, kinds[k].name)) continue;
        jnode *n;
        QILIN_TRY(node_new(P, kinds[k].kind, t->line, &n));
        QILIN_TRY(push(body, n));
        P->i++;
        if (++P->depth > PARSE_MAX_DEPTH)
            return fail(P, QILIN_ERR_INVALID_ARGUMENT, "statements nested too deeply");
        qilin_status st;
        switch (n->kind) {
        case JN_IF:
            st = stmt_if(P, n);
            break;
        case JN_FOR:
            st = stmt_for(P, n);
            break;
        case JN_SET:
            st = stmt_set(P, n);
            break;
        case JN_MACRO:
            st = stmt_macro(P, n);
            break;
        case JN_BLOCK: {
            static const char *const ends[] = {"endgeneration", NULL};
            const char *which;
            st = expect_kind(P, JT_BLOCK_END, "'%}'");
            if (st == QILIN_OK) st = body_until(P, ends, &n->body, &which);
            if (st == QILIN_OK) st = expect_kind(P, JT_BLOCK_END, "'%}'");
            break;
        }
        default:
            st = expect_kind(P, JT_BLOCK_END, "'%}'");
            break;
        }
        P->depth--;
        return st;
    }
    return fail(P, QILIN_ERR_FORMAT, "encountered unknown tag '%s'", t->text);
}

/* Parses until a block tag named in `ends` (NULL-terminated; NULL ends: to EOF).
 * Leaves the parser on the end tag's name's successor token; *which names it. */
static qilin_status body_until(parser *P, const char *const *ends, jnodes *body, const char **which) {
    for (;;) {
        jtok *t = cur(P);
        jnode *n;
        switch (t->kind) {
        case JT_EOF:
            if (!ends) return QILIN_OK;
            return fail(P, QILIN_ERR_FORMAT, "unexpected end of template, expected '%s'", ends[0]);
        case JT_DATA:
            QILIN_TRY(node_new(P, JN_TEXT, t->line, &n));
            QILIN_TRY(push(body, n));
            if (!(n->str = malloc(t->len + 1)))
                return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
            memcpy(n->str, t->text, t->len + 1);
            n->value = jv_int((int64_t)t->len); /* byte length of the text */
            P->i++;
            break;
        case JT_VAR_BEGIN:
            P->i++;
            QILIN_TRY(node_new(P, JN_OUTPUT, t->line, &n));
            QILIN_TRY(push(body, n));
            QILIN_TRY(tuple(P, true, NULL, false, &n->a));
            QILIN_TRY(expect_kind(P, JT_VAR_END, "'}}'"));
            break;
        case JT_BLOCK_BEGIN: {
            jtok *name = peek(P, 1);
            for (size_t k = 0; ends && ends[k]; k++) {
                if (is_name(name, ends[k])) {
                    *which = ends[k];
                    P->i += 2;
                    return QILIN_OK;
                }
            }
            P->i++;
            QILIN_TRY(statement(P, body));
            break;
        }
        default:
            return fail(P, QILIN_ERR_FORMAT, "unexpected '%s'", describe(t));
        }
    }
}

qilin_status qilin_jinja_parse(const char *source, size_t len, const char *name, qilin_jinja_template **out) {
    *out = NULL;
    if (!source || !name)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_jinja_parse: NULL source or name");
    jtoks toks;
    QILIN_TRY(jinja_lex(source, len, name, &toks));
    qilin_jinja_template *t = calloc(1, sizeof *t);
    if (!t) {
        jinja_toks_free(&toks);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
    }
    qilin_status st =
        (t->name = strdup(name)) ? QILIN_OK : qilin_error(QILIN_ERR_OUT_OF_MEMORY, "jinja: out of memory");
    parser P = {.t = &toks, .name = name, .all = &t->all};
    if (st == QILIN_OK) st = node_new(&P, JN_BLOCK, 1, &t->root);
    if (st == QILIN_OK) st = body_until(&P, NULL, &t->root->body, NULL);
    jinja_toks_free(&toks);
    if (st != QILIN_OK) {
        qilin_jinja_free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}

void qilin_jinja_free(qilin_jinja_template *t) {
    if (!t) return;
    for (size_t i = 0; i < t->all.n; i++) jnode_free(t->all.v[i]);
    free(t->all.v);
    free(t->name);
    free(t);
}
