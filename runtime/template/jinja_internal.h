/* jinja_internal.h — shared between the Jinja subset's files (not public).
 *
 *   jinja_lex.c       template text -> tokens (whitespace control, trim/lstrip_blocks)
 *   jinja_parse.c     tokens -> AST (statements and expressions)
 *   jinja_value.c     values: refcounted strings/lists/dicts, Python str(), tojson
 *   jinja_eval.c      AST -> output (scopes, loops, macros, calls, limits)
 *   jinja_ops.c       Python's operators: arithmetic, ordering, `in`, slices
 *   jinja_builtins.c  attribute/item lookup, str/dict/list methods, globals
 *   jinja_filters.c   filters and tests
 *
 * Values follow Python/Jinja semantics closely enough that the real chat
 * templates render byte-identically to jinja2 under transformers' settings.
 * Lists and dicts are immutable once built (the templates run in Jinja's
 * ImmutableSandboxedEnvironment), so they are shared by refcount; namespaces
 * are the one mutable kind and are owned by the render context too, which
 * clears them at the end so that a namespace stored in itself cannot leak. */
#ifndef QILIN_RUNTIME_JINJA_INTERNAL_H
#define QILIN_RUNTIME_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cuda/status.h"
#include "runtime/jinja.h"

#include <jansson.h>

/* ---------------------------------------------------------------- values */

typedef enum jkind {
    JK_UNDEF, /* Jinja's default Undefined: falsy, renders "", errors on attribute access */
    JK_NONE,
    JK_BOOL,
    JK_INT,
    JK_FLOAT,
    JK_STR,
    JK_LIST,
    JK_DICT,
    JK_NS,   /* namespace(): a dict whose attributes can be set */
    JK_FUNC, /* builtin global, bound method, macro */
} jkind;

typedef struct jstr {
    int rc;
    size_t charged; /* bytes charged to the render's memory budget (0: made outside a render) */
    size_t len;
    size_t cps;  /* code points (== len for ASCII text: indexing needs no walk) */
    char data[]; /* NUL-terminated UTF-8 */
} jstr;

typedef struct jv {
    jkind kind;
    uint8_t undef_of; /* JK_UNDEF: 0 for a missing variable, else 1 + the jkind whose attribute was missing */
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        struct jlist *l;
        struct jdict *d; /* JK_DICT and JK_NS */
        struct jfunc *fn;
        const char *hint; /* JK_UNDEF: the name that was undefined (static or AST-owned), may be NULL */
    } u;
} jv;

/* Every list and dict knows how deeply it nests and how many values a walk
 * over it visits (shared items counted each time they are reached, saturating),
 * both kept up to date by the constructors: nesting past JV_MAX_DEPTH is refused
 * when it is built, so the recursive walks (free, ==, <, in, repr, tojson) stay
 * shallow, and operations that walk a value charge its weight to the step budget
 * first, so a small value shared with itself ([x, x] doubled 60 times) cannot
 * make one comparison run for ever. */
#define JV_MAX_DEPTH 256

typedef struct jlist {
    int rc;
    bool tuple;      /* printed as (a, b): tuple literals, items() pairs */
    uint32_t depth;  /* 1 + the deepest item's depth (scalars have 0) */
    uint64_t weight; /* 1 + the items' weights (scalars weigh 1) */
    size_t charged;
    size_t n, cap;
    jv *items;
} jlist;

typedef struct jdict {
    int rc;
    uint32_t depth;
    uint64_t weight;
    size_t charged;
    size_t n, cap;
    jstr **keys; /* insertion order, as Python dicts */
    jv *vals;
    uint32_t *slots; /* hash index of keys (position + 1), past a few keys; NULL before */
    size_t nslots;
} jdict;

struct jnode;
typedef struct jfunc {
    int rc;
    int builtin;              /* JF_* id, or JF_MACRO */
    const char *method;       /* bound method name (static string), NULL otherwise */
    jv self;                  /* bound method receiver */
    uint32_t depth;           /* 1 + self's depth: a list holding a method of a list holding ... nests too */
    const struct jnode *node; /* JF_MACRO: the macro statement */
} jfunc;

enum { JF_MACRO = 1, JF_METHOD, JF_RAISE, JF_STRFTIME, JF_NAMESPACE, JF_RANGE, JF_DICT, JF_UNSUPPORTED };

static inline jv jv_undef(const char *hint) {
    jv v = {JK_UNDEF, 0, {.hint = hint}};
    return v;
}
/* obj.name missing: Jinja reports "'dict object' has no attribute 'name'" when it is used. */
static inline jv jv_undef_attr(jkind owner, const char *name) {
    jv v = {JK_UNDEF, (uint8_t)(owner + 1), {.hint = name}};
    return v;
}
static inline jv jv_none(void) {
    jv v = {JK_NONE, 0, {.i = 0}};
    return v;
}
static inline jv jv_bool(bool b) {
    jv v = {JK_BOOL, 0, {.b = b}};
    return v;
}
static inline jv jv_int(int64_t i) {
    jv v = {JK_INT, 0, {.i = i}};
    return v;
}
static inline jv jv_float(double f) {
    jv v = {JK_FLOAT, 0, {.f = f}};
    return v;
}
static inline bool jv_heap(jv v) { return v.kind >= JK_STR; }

jv jv_ref(jv v);          /* returns v with one more reference */
void jv_unref(jv v);      /* drops one reference; frees at zero */
void jv_unrefp(jv *v);    /* unref and set to undefined */
uint32_t jv_depth(jv v);  /* nesting depth of a list/dict (0 for other values) */
uint64_t jv_weight(jv v); /* values a walk over v visits (1 for scalars) */

/* The render's memory budget: every string, list, dict and buffer made while
 * a render runs charges its bytes here and gives them back when freed, so
 * the values alive at once can never exceed qilin_jinja_options.max_memory.
 * The constructors take no context, so the budget is the calling thread's
 * (renders of one template on different threads have separate budgets);
 * values made outside a render (the parser's constants) are not charged. */
typedef struct jmem {
    const char *name; /* the template, for the error message */
    size_t live, max;
} jmem;
void jmem_begin(jmem *m); /* this thread's allocations charge m until jmem_end */
void jmem_end(void);

/* Growable byte buffer with a hard size limit (the render's output limit). */
typedef struct jbuf {
    char *p;
    size_t n, cap, max;
    size_t charged; /* bytes of cap charged to the memory budget */
} jbuf;
qilin_status jbuf_reserve(jbuf *b, size_t n);            /* room for n more bytes (and the NUL) */
qilin_status jbuf_put(jbuf *b, const char *s, size_t n); /* s must not point into b */
qilin_status jbuf_puts(jbuf *b, const char *s);
qilin_status jbuf_putc(jbuf *b, char c);
void jbuf_free(jbuf *b);

/* Constructors: on failure they set the error and return its status. */
qilin_status jv_str(const char *s, size_t n, jv *out);
qilin_status jv_str_take(jbuf *b, jv *out); /* moves b's bytes into a string value, frees b */
qilin_status jv_list_new(size_t cap, jv *out);
qilin_status jv_list_push(jv list, jv item); /* takes ownership of item (also on failure) */
qilin_status jv_dict_new(jkind kind, jv *out);
qilin_status jv_dict_set(jv dict, const char *key, size_t klen, jv val); /* takes val */
jv jv_dict_get(jv dict, const char *key, size_t klen, bool *found);      /* borrowed */

/* Python semantics. */
bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
const char *jv_type_name(jv v); /* Python's type names: 'str', 'int', 'dict', 'NoneType', ... */
/* str(v) appended to b (what {{ v }} prints); lists/dicts print their repr. */
qilin_status jv_to_str(jv v, jbuf *b);
qilin_status jv_repr(jv v, jbuf *b);
/* Float formatted as Python's repr (shortest round trip, "1.0", "1e+20"). */
void jv_format_float(double f, char out[32]);

/* json.dumps with transformers' defaults: ensure_ascii=False, separators
 * (", ", ": ") without indent and (",", ": ") with it. indent < 0: none;
 * indent_str non-NULL overrides the indent unit. */
typedef struct jjson_opts {
    int indent;
    const char *indent_str;
    bool ensure_ascii;
    bool sort_keys;
    const char *item_sep, *key_sep; /* NULL: the defaults above */
} jjson_opts;
qilin_status jv_tojson(jv v, const jjson_opts *o, jbuf *b, int depth);

/* From a jansson tree (objects keep key order); depth-limited. */
qilin_status jv_from_json(const json_t *j, jv *out, int depth);

/* UTF-8 helpers: code point count and byte offset of the i-th code point. */
size_t utf8_count(const char *s, size_t n);
size_t utf8_offset(const char *s, size_t n, size_t cp_index);
size_t jstr_offset(const jstr *s, size_t cp_index); /* utf8_offset, at once for ASCII text */
/* Python's str.isspace() for one code point (decoded at s, length *adv). */
bool py_isspace_at(const char *s, size_t n, size_t *adv);

/* ---------------------------------------------------------------- tokens */

typedef enum jtok_kind {
    JT_DATA,        /* template text, whitespace control applied */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING, /* unescaped value in text */
    JT_INT,
    JT_FLOAT,
    JT_OP, /* text holds the operator */
    JT_EOF,
} jtok_kind;

typedef struct jtok {
    jtok_kind kind;
    int line;
    char *text; /* owned, NUL-terminated (DATA, NAME, STRING, OP) */
    size_t len;
    int64_t ival;
    double fval;
} jtok;

typedef struct jtoks {
    jtok *v;
    size_t n, cap;
} jtoks;

qilin_status jinja_lex(const char *src, size_t len, const char *name, jtoks *out);
void jinja_toks_free(jtoks *t);

/* ---------------------------------------------------------------- AST */

typedef enum jnode_kind {
    /* statements */
    JN_TEXT,     /* str */
    JN_OUTPUT,   /* a: expression */
    JN_IF,       /* a: cond, body, orelse */
    JN_FOR,      /* names[0..1], a: iterable, b: filter condition or NULL, body, orelse */
    JN_SET,      /* names[0..n): targets (tuple unpack when n > 1), a: value */
    JN_SET_ATTR, /* names[0].names[1] = a (namespace attribute) */
    JN_SET_BLOCK,
    JN_MACRO, /* str: name, names: parameters, args: defaults (NULL entries: none), body */
    JN_BREAK,
    JN_CONTINUE,
    JN_BLOCK, /* body only: {% generation %} */
    /* expressions */
    JN_CONST,   /* value */
    JN_NAME,    /* str */
    JN_GETATTR, /* a.str */
    JN_GETITEM, /* a[b] */
    JN_SLICE,   /* a[args0:args1:args2], NULL entries absent */
    JN_CALL,    /* a(args..., kwnames=kwargs) */
    JN_FILTER,  /* a | str(args, kwargs) ; a NULL in a filter block */
    JN_TEST,    /* a is [not] str(args) */
    JN_NEG,
    JN_POS,
    JN_NOT,
    JN_AND,
    JN_OR,
    JN_BINOP,   /* op: + - * / // % ** ~ */
    JN_COMPARE, /* a op b, op: == != < <= > >= in notin */
    JN_COND,    /* b if a else c */
    JN_LIST,    /* args */
    JN_DICT,    /* keys: args (expressions), values: kwargs */
} jnode_kind;

typedef struct jnodes {
    struct jnode **v;
    size_t n, cap;
} jnodes;

typedef struct jnode {
    jnode_kind kind;
    int line;
    char op[4];
    bool negated; /* JN_TEST: is not */
    char *str;
    jv value;
    struct jnode *a, *b, *c;
    jnodes body, orelse, args, kwargs;
    char **names; /* JN_FOR/JN_SET/JN_MACRO targets; JN_CALL/JN_FILTER keyword names (parallel to kwargs) */
    size_t n_names;
} jnode;

void jnode_free(jnode *n); /* the node's own allocations, not its children */

/* ---------------------------------------------------------------- template and render */

struct qilin_jinja_template {
    char *name;
    jnode *root; /* JN_BLOCK */
    jnodes all;  /* every AST node (the parser's arena) */
};

typedef struct jscope {
    jv vars;               /* JK_DICT, owned */
    struct jscope *parent; /* lookups fall back here */
    struct jscope *prev;   /* the innermost scope before this one was entered */
} jscope;

typedef struct jctx {
    const qilin_jinja_template *tpl;
    const qilin_jinja_options *opt;
    jscope *globals; /* the top-level scope (render context + top-level sets) */
    jscope *scope;   /* innermost scope */
    jbuf *out;
    int depth;      /* expression/statement recursion */
    int call_depth; /* macro recursion */
    uint64_t steps; /* evaluation budget: one per node evaluated, statement run, loop
                       iteration, and per item or byte-chunk walked by an operation */
    int control;    /* 0, or CTL_BREAK / CTL_CONTINUE */
    jv namespaces;  /* JK_LIST of every namespace created, cleared at the end */
    struct tm now;
} jctx;

enum { CTL_BREAK = 1, CTL_CONTINUE = 2 };

/* Charges n steps (a loop over n items) to the evaluation budget. */
qilin_status jsteps(jctx *c, int line, uint64_t n);

/* Error helpers: prefix "template 'name' line N: ". */
qilin_status jerr(const jctx *c, int line, qilin_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Jinja's UndefinedError message ("'x' is undefined"). */
qilin_status jerr_undefined(const jctx *c, int line, jv u);

qilin_status jeval(jctx *c, const jnode *n, jv *out);
qilin_status jexec_body(jctx *c, const jnodes *body);
qilin_status jcall_value(jctx *c, int line, jv fn, jv *args, size_t nargs, char **kwnames, jv *kwargs,
                         size_t nkw, jv *out);
qilin_status jiterate(jctx *c, int line, jv v, jv *list_out); /* any iterable -> JK_LIST */

/* Operators (jinja_ops.c). op: "+", "-", "*", "/", "//", "%", "**"; int ops: + - * f(loor) % p(ow). */
qilin_status jarith(jctx *c, int line, const char *op, jv a, jv b, jv *out);
qilin_status jarith_int(jctx *c, int line, char op, int64_t x, int64_t y, jv *out);
qilin_status jcompare(jctx *c, const jnode *n, jv a, jv b, jv *out); /* n->op: == != < <= > >= in ni */
qilin_status jslice(jctx *c, const jnode *n, jv obj, jv *out); /* n->b, n->c, n->args[0]: start, stop, step */

/* Builtins (jinja_builtins.c). Arguments are borrowed. */
bool jfilter_known(const char *name);
bool jtest_known(const char *name);
qilin_status jfilter_apply(jctx *c, int line, const char *name, jv v, jv *args, size_t nargs, char **kwnames,
                           jv *kwargs, size_t nkw, jv *out);
qilin_status jtest_apply(jctx *c, int line, const char *name, jv v, jv *args, size_t nargs, bool *out);
/* Attribute lookup on a value (str/list/dict methods, dict keys); *out owned. */
qilin_status jgetattr(jctx *c, int line, jv obj, const char *name, jv *out);
qilin_status jgetitem(jctx *c, int line, jv obj, jv key, jv *out);
qilin_status jmethod_call(jctx *c, int line, jv self, const char *method, jv *args, size_t nargs,
                          char **kwnames, jv *kwargs, size_t nkw, jv *out);
qilin_status jglobal_call(jctx *c, int line, int builtin, jv *args, size_t nargs, char **kwnames, jv *kwargs,
                          size_t nkw, jv *out);
qilin_status jglobals_install(jctx *c, jv dict);

/* Python str helpers shared by filters and methods. */
/* Code points whose upper/title case is several code points (jinja_case.c, generated). */
typedef struct jcase_special {
    uint32_t cp, upper[3], title[3]; /* 0-terminated unless all three are used */
} jcase_special;
extern const jcase_special JCASE_SPECIAL[];
extern const size_t JCASE_SPECIAL_N;
/* Python's str.upper/lower/capitalize/title with full case mappings, and
 * jinja2's title filter (words start after - whitespace ( { [ <; the first
 * letter upper()ed, the rest lower()ed, so "they're" stays "They're"). */
enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE, CASE_JINJA_TITLE };
qilin_status py_case(jctx *c, int line, jv s, int mode, jv *out);
qilin_status py_strip(jv s, jv chars, bool left, bool right, jv *out);
/* sep.join(items), items str() unless strict (str.join), or their attribute `attr`. */
qilin_status jjoin(jctx *c, int line, jv items, jv sep, const char *attr, bool strict, jv *out);
qilin_status py_split(jctx *c, int line, jv s, jv sep, int64_t maxsplit, bool from_right, jv *out);

#endif /* QILIN_RUNTIME_JINJA_INTERNAL_H */
