/* jinja_lex.c — template text to tokens, as jinja2's lexer does under
 * transformers' settings (trim_blocks=True, lstrip_blocks=True,
 * keep_trailing_newline=False):
 *
 *   - line endings \r\n and \r become \n; one trailing newline is dropped;
 *   - "{%-" / "{{-" / "{#-" strip all whitespace before the tag, "-%}" /
 *     "-}}" / "-#}" all whitespace after it;
 *   - trim_blocks drops the first newline after a block or comment tag
 *     (not after "}}"), unless the tag ends "+%}";
 *   - lstrip_blocks drops spaces and tabs between the start of a line and a
 *     block or comment tag, unless it starts "{%+".
 *
 * Inside tags the tokens are names, strings (Python escapes), integers,
 * floats and operators; brackets are balanced so "}}" inside a dict literal
 * does not end the tag. {% raw %}...{% endraw %} becomes one text token. */
#define _GNU_SOURCE /* memmem, strdup, localtime_r */
#include "runtime/template/jinja_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct lexer {
    const char *s; /* normalised source */
    size_t n, pos;
    int line;
    bool line_starting; /* the previous match ended with a newline */
    const char *name;
    jtoks *out;
} lexer;

static qilin_status lex_error(const lexer *L, const char *what) {
    return qilin_error(QILIN_ERR_FORMAT, "template '%s' line %d: syntax error: %s", L->name, L->line, what);
}

static qilin_status emit(lexer *L, jtok_kind kind, const char *text, size_t len, int line) {
    jtoks *t = L->out;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        jtok *v = realloc(t->v, cap * sizeof *v);
        if (!v) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "template '%s': out of memory (tokens)", L->name);
        t->v = v;
        t->cap = cap;
    }
    jtok *k = &t->v[t->n];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->line = line;
    if (text) {
        k->text = malloc(len + 1);
        if (!k->text)
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "template '%s': out of memory (tokens)", L->name);
        memcpy(k->text, text, len);
        k->text[len] = 0;
        k->len = len;
    }
    t->n++;
    return QILIN_OK;
}

static int count_newlines(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

/* Length of s[0..n) without its trailing (Python) whitespace. */
static size_t rstrip_len(const char *s, size_t n) {
    size_t keep = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        bool ws = py_isspace_at(s + i, n - i, &adv);
        i += adv;
        if (!ws) keep = i;
    }
    return keep;
}

static size_t skip_ws(const char *s, size_t n, size_t pos) {
    while (pos < n) {
        size_t adv;
        if (!py_isspace_at(s + pos, n - pos, &adv)) break;
        pos += adv;
    }
    return pos;
}

/* Emits text s[0..n) that precedes a tag opened with strip sign `sign`
 * ('-', '+' or 0); `lstrip` says whether lstrip_blocks applies to the tag. */
static qilin_status emit_text(lexer *L, const char *s, size_t n, char sign, bool lstrip) {
    int line = L->line;
    size_t keep = n;
    if (sign == '-') {
        keep = rstrip_len(s, n);
    } else if (sign != '+' && lstrip) {
        size_t l_pos = n;
        while (l_pos > 0 && s[l_pos - 1] != '\n') l_pos--;
        if ((l_pos > 0 || L->line_starting) && l_pos < n && skip_ws(s, n, l_pos) == n) keep = l_pos;
    }
    L->line += count_newlines(s, n);
    return keep ? emit(L, JT_DATA, s, keep, line) : QILIN_OK;
}

static bool starts(const lexer *L, size_t pos, const char *p) {
    size_t k = strlen(p);
    return pos + k <= L->n && memcmp(L->s + pos, p, k) == 0;
}

/* After a block or comment tag's closing: "+X}" keeps, "-X}" eats all
 * whitespace, "X}" eats one newline (trim_blocks). Returns the new position. */
static size_t close_block(lexer *L, size_t pos, char mark) {
    size_t at = pos;
    if (L->s[at] == '+' || L->s[at] == '-') at++;
    at += 2; /* "%}" or "#}" */
    (void)mark;
    size_t end = at;
    if (L->s[pos] == '-')
        end = skip_ws(L->s, L->n, at);
    else if (L->s[pos] != '+' && end < L->n && L->s[end] == '\n')
        end++;
    L->line += count_newlines(L->s + pos, end - pos);
    L->line_starting = end > pos && L->s[end - 1] == '\n';
    return end;
}

static qilin_status lex_comment(lexer *L, size_t pos) {
    for (size_t i = pos; i + 1 < L->n; i++) {
        if (L->s[i] == '#' && L->s[i + 1] == '}') {
            size_t close = (i > pos && (L->s[i - 1] == '-' || L->s[i - 1] == '+')) ? i - 1 : i;
            L->line += count_newlines(L->s + pos, close - pos);
            L->pos = close_block(L, close, '#');
            return QILIN_OK;
        }
    }
    return lex_error(L, "missing end of comment tag");
}

/* "{% raw %}" at pos (after its sign)? Sets *body to the first byte after the tag. */
static bool raw_begin(const lexer *L, size_t pos, size_t *body) {
    size_t p = skip_ws(L->s, L->n, pos);
    if (!starts(L, p, "raw")) return false;
    p = skip_ws(L->s, L->n, p + 3);
    if (starts(L, p, "-%}")) {
        *body = skip_ws(L->s, L->n, p + 3);
        return true;
    }
    if (starts(L, p, "%}")) {
        *body = p + 2;
        return true;
    }
    return false;
}

static qilin_status lex_raw(lexer *L, size_t body) {
    L->line += count_newlines(L->s + L->pos, body - L->pos);
    L->line_starting = body > 0 && L->s[body - 1] == '\n';
    for (size_t i = body; i + 1 < L->n; i++) {
        if (L->s[i] != '{' || L->s[i + 1] != '%') continue;
        size_t p = i + 2;
        char sign = (p < L->n && (L->s[p] == '-' || L->s[p] == '+')) ? L->s[p++] : 0;
        p = skip_ws(L->s, L->n, p);
        if (!starts(L, p, "endraw")) continue;
        p = skip_ws(L->s, L->n, p + 6);
        if (!starts(L, p, "%}") && !starts(L, p, "-%}") && !starts(L, p, "+%}")) continue;
        QILIN_TRY(emit_text(L, L->s + body, i - body, sign, true));
        L->line += count_newlines(L->s + i, p - i);
        L->pos = close_block(L, p, '%');
        return QILIN_OK;
    }
    return lex_error(L, "missing end of raw directive");
}

/* Python string literal escapes (jinja2 decodes with "unicode-escape"). */
static qilin_status lex_string(lexer *L, size_t *pos) {
    char q = L->s[*pos];
    size_t i = *pos + 1;
    jbuf b = {0};
    qilin_status st = QILIN_OK;
    for (; i < L->n && L->s[i] != q && st == QILIN_OK; i++) {
        char c = L->s[i];
        if (c != '\\') {
            st = jbuf_putc(&b, c);
            continue;
        }
        if (++i >= L->n) break;
        c = L->s[i];
        const char *simple = strchr("\\'\"abfnrtv", c);
        static const char map[] = "\\'\"\a\b\f\n\r\t\v";
        if (simple && c) {
            st = jbuf_putc(&b, map[simple - "\\'\"abfnrtv"]);
        } else if (c == '\n') {
            /* line continuation: nothing */
        } else if (c >= '0' && c <= '7') {
            unsigned v = 0;
            for (int k = 0; k < 3 && i < L->n && L->s[i] >= '0' && L->s[i] <= '7'; k++, i++)
                v = v * 8 + (unsigned)(L->s[i] - '0');
            i--;
            utf8proc_uint8_t enc[4];
            st = jbuf_put(&b, (const char *)enc, (size_t)utf8proc_encode_char((utf8proc_int32_t)v, enc));
        } else if (c == 'x' || c == 'u' || c == 'U') {
            int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            unsigned long v = 0;
            for (int k = 0; k < digits; k++) {
                if (i + 1 >= L->n || !isxdigit((unsigned char)L->s[i + 1])) {
                    jbuf_free(&b);
                    return lex_error(L, "truncated \\x, \\u or \\U escape in a string literal");
                }
                char h = L->s[++i];
                v = v * 16 + (unsigned long)(isdigit((unsigned char)h)
                                                 ? h - '0'
                                                 : (tolower((unsigned char)h) - 'a' + 10));
            }
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
                jbuf_free(&b);
                return lex_error(L, "escape in a string literal is not a Unicode scalar value");
            }
            utf8proc_uint8_t enc[4];
            st = jbuf_put(&b, (const char *)enc, (size_t)utf8proc_encode_char((utf8proc_int32_t)v, enc));
        } else if (c == 'N') {
            jbuf_free(&b);
            return qilin_error(QILIN_ERR_UNSUPPORTED,
                               "template '%s' line %d: \\N{...} escapes in string literals", L->name,
                               L->line);
        } else {
            st = jbuf_putc(&b, '\\');
            if (st == QILIN_OK) st = jbuf_putc(&b, c);
        }
    }
    if (st == QILIN_OK && i >= L->n) st = lex_error(L, "unterminated string literal");
    if (st == QILIN_OK) {
        st = emit(L, JT_STRING, b.p ? b.p : "", b.n, L->line);
        L->line += count_newlines(L->s + *pos, i - *pos);
    }
    jbuf_free(&b);
    *pos = i + 1;
    return st;
}

static size_t digits_run(const lexer *L, size_t p) { /* (\d+_)*\d+ */
    size_t start = p;
    while (p < L->n && (isdigit((unsigned char)L->s[p]) ||
                        (L->s[p] == '_' && p > start && p + 1 < L->n && isdigit((unsigned char)L->s[p + 1]))))
        p++;
    return p;
}

static qilin_status lex_number(lexer *L, size_t *pos) {
    size_t p = *pos;
    if (L->s[p] == '0' && p + 1 < L->n && strchr("xXoObB", L->s[p + 1]) && L->s[p + 1])
        return qilin_error(QILIN_ERR_UNSUPPORTED, "template '%s' line %d: 0x/0o/0b integer literals", L->name,
                           L->line);
    size_t int_end = digits_run(L, p), end = int_end;
    bool is_float = false;
    bool after_dot = p > 0 && L->s[p - 1] == '.'; /* jinja2's (?<!\.) */
    if (!after_dot && end < L->n && L->s[end] == '.' && end + 1 < L->n &&
        isdigit((unsigned char)L->s[end + 1])) {
        end = digits_run(L, end + 1);
        is_float = true;
    }
    if (!after_dot && end < L->n && (L->s[end] == 'e' || L->s[end] == 'E')) {
        size_t e = end + 1;
        if (e < L->n && (L->s[e] == '+' || L->s[e] == '-')) e++;
        if (e < L->n && isdigit((unsigned char)L->s[e])) {
            end = digits_run(L, e);
            is_float = true;
        }
    }
    char buf[128];
    size_t k = 0;
    for (size_t i = p; i < end && k + 1 < sizeof buf; i++)
        if (L->s[i] != '_') buf[k++] = L->s[i];
    buf[k] = 0;
    if (end - p >= sizeof buf - 1) return lex_error(L, "numeric literal too long");
    QILIN_TRY(emit(L, is_float ? JT_FLOAT : JT_INT, NULL, 0, L->line));
    jtok *t = &L->out->v[L->out->n - 1];
    if (is_float) {
        t->fval = strtod(buf, NULL);
    } else {
        if (k > 1 && buf[0] == '0') return lex_error(L, "leading zeros in a decimal integer literal");
        errno = 0;
        t->ival = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return qilin_error(QILIN_ERR_UNSUPPORTED, "template '%s' line %d: integer literal beyond 64 bits",
                               L->name, L->line);
    }
    *pos = end;
    return QILIN_OK;
}

static qilin_status lex_tag(lexer *L, bool block) {
    char stack[256];
    int depth = 0;
    size_t p = L->pos;
    for (;;) {
        if (p >= L->n)
            return lex_error(L, block ? "missing end of block tag '%}'" : "missing end of print tag '}}'");
        if (depth == 0) {
            if (block && (starts(L, p, "%}") || starts(L, p, "-%}") || starts(L, p, "+%}"))) {
                QILIN_TRY(emit(L, JT_BLOCK_END, NULL, 0, L->line));
                L->pos = close_block(L, p, '%');
                return QILIN_OK;
            }
            if (!block && (starts(L, p, "}}") || starts(L, p, "-}}"))) {
                QILIN_TRY(emit(L, JT_VAR_END, NULL, 0, L->line));
                size_t end = L->s[p] == '-' ? skip_ws(L->s, L->n, p + 3) : p + 2;
                L->line += count_newlines(L->s + p, end - p);
                L->line_starting = L->s[end - 1] == '\n';
                L->pos = end;
                return QILIN_OK;
            }
        }
        size_t adv;
        char c = L->s[p];
        if (py_isspace_at(L->s + p, L->n - p, &adv)) {
            L->line += c == '\n';
            p += adv;
        } else if (isdigit((unsigned char)c)) {
            QILIN_TRY(lex_number(L, &p));
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t e = p;
            while (e < L->n && (isalnum((unsigned char)L->s[e]) || L->s[e] == '_')) e++;
            QILIN_TRY(emit(L, JT_NAME, L->s + p, e - p, L->line));
            p = e;
        } else if (c == '\'' || c == '"') {
            QILIN_TRY(lex_string(L, &p));
        } else {
            static const char *two[] = {"//", "**", "==", "!=", ">=", "<="};
            size_t len = 0;
            for (size_t k = 0; k < 6 && !len; k++)
                if (starts(L, p, two[k])) len = 2;
            if (!len && strchr("+-/*%~[](){}<>=.:|,;", c) && c) len = 1;
            if (!len) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected char '%c'", c);
                return lex_error(L, msg);
            }
            if (len == 1 && strchr("([{", c)) {
                if (depth == (int)sizeof stack) return lex_error(L, "brackets nested too deeply");
                stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
            } else if (len == 1 && strchr(")]}", c)) {
                if (depth == 0 || stack[depth - 1] != c) {
                    char msg[64];
                    snprintf(msg, sizeof msg, "unexpected '%c'", c);
                    return lex_error(L, msg);
                }
                depth--;
            }
            QILIN_TRY(emit(L, JT_OP, L->s + p, len, L->line));
            p += len;
        }
    }
}

static qilin_status lex_all(lexer *L) {
    while (L->pos < L->n) {
        /* earliest tag opening */
        size_t t = L->pos;
        while (t + 1 < L->n &&
               !(L->s[t] == '{' && (L->s[t + 1] == '{' || L->s[t + 1] == '%' || L->s[t + 1] == '#')))
            t++;
        if (t + 1 >= L->n) {
            L->line_starting = false;
            return emit_text(L, L->s + L->pos, L->n - L->pos, 0, false);
        }
        char kind = L->s[t + 1];
        size_t after = t + 2;
        char sign = (after < L->n && (L->s[after] == '-' || L->s[after] == '+')) ? L->s[after] : 0;
        if (sign) after++;
        QILIN_TRY(emit_text(L, L->s + L->pos, t - L->pos, sign, kind != '{'));
        L->line_starting = false;
        size_t body;
        if (kind == '#') {
            QILIN_TRY(lex_comment(L, after));
        } else if (kind == '%' && raw_begin(L, after, &body)) {
            L->pos = t;
            QILIN_TRY(lex_raw(L, body));
        } else {
            QILIN_TRY(emit(L, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, NULL, 0, L->line));
            L->pos = after;
            QILIN_TRY(lex_tag(L, kind == '%'));
        }
    }
    return QILIN_OK;
}

qilin_status jinja_lex(const char *src, size_t len, const char *name, jtoks *out) {
    memset(out, 0, sizeof *out);
    char *s = malloc(len + 1);
    if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "template '%s': out of memory", name);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) { /* \r\n and \r -> \n */
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--; /* keep_trailing_newline=False */
    s[n] = 0;
    if (memchr(s, 0, n)) {
        free(s);
        return qilin_error(QILIN_ERR_FORMAT, "template '%s': contains a NUL byte", name);
    }
    lexer L = {.s = s, .n = n, .line = 1, .line_starting = true, .name = name, .out = out};
    qilin_status st = lex_all(&L);
    if (st == QILIN_OK) st = emit(&L, JT_EOF, NULL, 0, L.line);
    free(s);
    if (st != QILIN_OK) jinja_toks_free(out);
    return st;
}

void jinja_toks_free(jtoks *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].text);
    free(t->v);
    memset(t, 0, sizeof *t);
}
