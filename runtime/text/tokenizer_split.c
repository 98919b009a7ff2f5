/* tokenizer_split.c — normalizers and pre-tokenizers: the text-to-pieces half
 * of encoding.
 *
 * Split patterns are written for Oniguruma (HF tokenizers) or Rust's regex
 * (tiktoken); PCRE2 has the same backtracking, leftmost-first semantics and
 * Unicode classes. Three differences are translated away when compiling:
 *   - their \s is Unicode White_Space, which includes U+0085; PCRE2's UCP \s
 *     does not, so \s becomes [\s\x{85}];
 *   - their \p{Han} is the Script property, PCRE2's Script_Extensions, so
 *     script names become \p{sc:Han};
 *   - Rust's class intersection [A&&[^B]] (Kimi K2) becomes (?:(?![B])[A]).
 * Every pattern is compiled with PCRE2_MATCH_INVALID_UTF, so invalid UTF-8 is
 * never matched and ends up in the gaps between matches, as whole pieces the
 * byte-level models can still encode. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "runtime/text/tokenizer_impl.h"

/* ---- named patterns ------------------------------------------------------------------------- */

#define PAT_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define PAT_LLAMA3                                                                                      \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_QWEN2                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_DEEPSEEK3                                                                                    \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|" \
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_KIMI_UPPER "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]"
#define PAT_KIMI_LOWER "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]"
#define PAT_KIMI                                                                                          \
    "[\\p{Han}]+|[^\\r\\n\\p{L}\\p{N}]?" PAT_KIMI_UPPER "*" PAT_KIMI_LOWER "+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|" \
    "[^\\r\\n\\p{L}\\p{N}]?" PAT_KIMI_UPPER "+" PAT_KIMI_LOWER "*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"             \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* llama.cpp's tokenizer.ggml.pre names, and ours. */
static const struct {
    const char *name;
    const char *stages[3];
} k_patterns[] = {
    {"gpt2", {PAT_GPT2}},
    /* GGUFs converted before tokenizer.ggml.pre existed (llama.cpp's own test
     * vocabularies among them) say "default"; they are GPT-2-style files.
     * llama.cpp's "default" regex set is its own and not what HF does. */
    {"default", {PAT_GPT2}},
    {"gpt-2", {PAT_GPT2}},
    {"llama3", {PAT_LLAMA3}},
    {"llama-bpe", {PAT_LLAMA3}},
    {"qwen2", {PAT_QWEN2}},
    {"deepseek-v3", {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", PAT_DEEPSEEK3}},
    {"kimi-k2", {PAT_KIMI}},
};

/* ---- regex translation ----------------------------------------------------------------------- */

static qilin_status put_str(tok_buf *b, const char *s) { return tok_buf_put(b, s, strlen(s)); }

/* End of the class starting at p[i] == '[' (index of its ']'), or n. */
static size_t class_end(const char *p, size_t n, size_t i) {
    int depth = 0;
    for (size_t k = i; k < n; k++) {
        if (p[k] == '\\') {
            k++;
        } else if (p[k] == '[') {
            depth++;
            if (k + 1 < n && p[k + 1] == '^') k++;
            if (k + 1 < n && p[k + 1] == ']') k++; /* a leading ']' is literal */
        } else if (p[k] == ']' && --depth == 0) {
            return k;
        }
    }
    return n;
}

/* \p{Name} / \P{Name} at p: a script name (Han, Latin, ...) becomes \p{sc:Name}.
 * PCRE2 reads a bare script name as Script_Extensions, which puts "。" (U+3002,
 * script Common) into Han; Rust's regex and Oniguruma use the Script property. */
static qilin_status put_property(tok_buf *b, const char *p, size_t n, size_t *used) {
    const char *close = memchr(p, '}', n);
    if (n < 4 || p[2] != '{' || !close) {
        *used = 2;
        return tok_buf_put(b, p, 2);
    }
    size_t len = (size_t)(close - p) - 3;
    const char *name = p + 3;
    bool script = len > 2 && name[0] >= 'A' && name[0] <= 'Z' && name[1] >= 'a' && name[1] <= 'z' &&
                  !memchr(name, ':', len) && !memchr(name, '=', len) && !(len == 3 && memcmp(name, "Any", 3) == 0);
    QILIN_TRY(tok_buf_put(b, p, 3));
    if (script) QILIN_TRY(put_str(b, "sc:"));
    *used = len + 4;
    return tok_buf_put(b, name, len + 1);
}

/* Copies a class body, widening \s with U+0085. */
static qilin_status put_class_body(tok_buf *b, const char *p, size_t n) {
    for (size_t k = 0; k < n; k++) {
        size_t used = 0;
        if (p[k] == '\\' && k + 1 < n && p[k + 1] == 's') {
            QILIN_TRY(put_str(b, "\\s\\x{85}"));
            k++;
        } else if (p[k] == '\\' && k + 1 < n && (p[k + 1] == 'p' || p[k + 1] == 'P')) {
            QILIN_TRY(put_property(b, p + k, n - k, &used));
            k += used - 1;
        } else if (p[k] == '\\' && k + 1 < n) {
            QILIN_TRY(tok_buf_put(b, p + k, 2));
            k++;
        } else {
            QILIN_TRY(tok_buf_put(b, p + k, 1));
        }
    }
    return QILIN_OK;
}

/* [A&&[^B]] -> (?:(?![B])[A]); [A&&[B]] -> (?:(?=[B])[A]); other classes copied. */
static qilin_status put_class(tok_buf *b, const char *p, size_t n) {
    const char *amp = NULL;
    int depth = 0;
    for (size_t k = 1; k + 1 < n; k++) {
        if (p[k] == '\\') k++;
        else if (p[k] == '[') depth++;
        else if (p[k] == ']') depth--;
        else if (depth == 0 && p[k] == '&' && p[k + 1] == '&') {
            amp = p + k;
            break;
        }
    }
    if (!amp) {
        QILIN_TRY(put_str(b, "["));
        QILIN_TRY(put_class_body(b, p + 1, n - 2));
        return put_str(b, "]");
    }
    const char *rhs = amp + 2, *end = p + n - 1; /* rhs .. end: "[^B]" */
    bool neg = rhs + 1 < end && rhs[0] == '[' && rhs[1] == '^';
    QILIN_TRY(put_str(b, neg ? "(?:(?![" : "(?:(?=["));
    QILIN_TRY(put_class_body(b, rhs + (neg ? 2 : 1), (size_t)(end - rhs) - (neg ? 3 : 2)));
    QILIN_TRY(put_str(b, "])["));
    QILIN_TRY(put_class_body(b, p + 1, (size_t)(amp - p) - 1));
    return put_str(b, "])");
}

static qilin_status translate(const char *p, size_t n, tok_buf *b) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n) {
            size_t used = 2;
            if (p[i + 1] == 's') QILIN_TRY(put_str(b, "[\\s\\x{85}]"));
            else if (p[i + 1] == 'S') QILIN_TRY(put_str(b, "[^\\s\\x{85}]"));
            else if (p[i + 1] == 'p' || p[i + 1] == 'P') QILIN_TRY(put_property(b, p + i, n - i, &used));
            else QILIN_TRY(tok_buf_put(b, p + i, 2));
            i += used - 1;
        } else if (p[i] == '[') {
            size_t e = class_end(p, n, i);
            if (e == n) return tok_buf_put(b, p + i, n - i); /* let PCRE2 report it */
            QILIN_TRY(put_class(b, p + i, e - i + 1));
            i = e;
        } else {
            QILIN_TRY(tok_buf_put(b, p + i, 1));
        }
    }
    return QILIN_OK;
}

qilin_status tok_regex_compile(const char *pattern, size_t len, bool literal, const char *what, pcre2_code **out) {
    tok_buf b = {0};
    qilin_status st = literal ? tok_buf_put(&b, pattern, len) : translate(pattern, len, &b);
    if (st != QILIN_OK) {
        free(b.p);
        return st;
    }
    int err = 0;
    PCRE2_SIZE at = 0;
    uint32_t opt = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n, opt, &err, &at, NULL);
    free(b.p);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: regex \"%.*s\" does not compile with PCRE2 at offset %zu: %s",
                           what, (int)len, pattern, (size_t)at, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter serves where JIT is unavailable */
    *out = re;
    return QILIN_OK;
}

qilin_status tok_add_split(qilin_tokenizer *t, pcre2_code *re, tok_behavior b, bool invert) {
    if (t->n_pre == TOK_MAX_PRE) {
        pcre2_code_free(re);
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", t->source, TOK_MAX_PRE);
    }
    t->pre[t->n_pre++] = (tok_pre){.kind = TOK_PRE_SPLIT, .re = re, .behavior = b, .invert = invert};
    return QILIN_OK;
}

qilin_status tok_add_named_split(qilin_tokenizer *t, const char *name, const char *what) {
    for (size_t i = 0; i < sizeof k_patterns / sizeof k_patterns[0]; i++) {
        if (strcmp(k_patterns[i].name, name) != 0) continue;
        for (int s = 0; s < 3 && k_patterns[i].stages[s]; s++) {
            pcre2_code *re = NULL;
            QILIN_TRY(tok_regex_compile(k_patterns[i].stages[s], strlen(k_patterns[i].stages[s]), false, what, &re));
            QILIN_TRY(tok_add_split(t, re, TOK_SPLIT_ISOLATED, false));
        }
        return QILIN_OK;
    }
    return qilin_error(QILIN_ERR_UNSUPPORTED,
                       "%s: pre-tokenizer \"%s\" is not one qilin knows (gpt2/gpt-2/default, llama3/llama-bpe, qwen2, deepseek-v3, "
                       "kimi-k2)",
                       what, name);
}

/* ---- buffers ---------------------------------------------------------------------------------- */

qilin_status tok_buf_put(tok_buf *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: text buffer of %zu bytes", cap);
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return QILIN_OK;
}

static qilin_status piece_push(tok_split_ctx *c, int which, uint32_t off, uint32_t len) {
    if (len == 0) return QILIN_OK;
    if (c->n_pc[which] == c->cap_pc[which]) {
        size_t cap = c->cap_pc[which] ? c->cap_pc[which] * 2 : 256;
        tok_piece *p = realloc(c->pc[which], cap * sizeof *p);
        if (!p) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: %zu pieces", cap);
        c->pc[which] = p;
        c->cap_pc[which] = cap;
    }
    c->pc[which][c->n_pc[which]++] = (tok_piece){off, len};
    return QILIN_OK;
}

void tok_split_ctx_free(tok_split_ctx *c) {
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jit_stack);
    for (int i = 0; i < 2; i++) {
        free(c->buf[i].p);
        free(c->norm[i].p);
        free(c->pc[i]);
    }
    free(c->spans);
    *c = (tok_split_ctx){0};
}

/* pcre2_match, retried with a 512 MB JIT stack when the default one is too
 * small (Kimi's repeated look-ahead groups over a long run of letters).
 * Returns the PCRE2 code: >= 0 match, PCRE2_ERROR_NOMATCH, or a failure. */
static int match_at(tok_split_ctx *c, const pcre2_code *re, const char *p, size_t n, size_t from) {
    int rc = pcre2_match(re, (PCRE2_SPTR)p, n, from, 0, c->md, c->mctx);
    if ((rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) && !c->jit_stack) {
        c->mctx = pcre2_match_context_create(NULL);
        c->jit_stack = pcre2_jit_stack_create(32 * 1024, 512 * 1024 * 1024, NULL);
        if (!c->mctx || !c->jit_stack) return PCRE2_ERROR_NOMEMORY;
        pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack);
        pcre2_set_heap_limit(c->mctx, 512 * 1024); /* KiB, for the interpreter */
        rc = pcre2_match(re, (PCRE2_SPTR)p, n, from, 0, c->md, c->mctx);
    }
    return rc;
}

static qilin_status match_failed(int rc, size_t n) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return qilin_error(QILIN_ERR_INTERNAL, "tokenizer: splitting a %zu-byte piece: PCRE2: %s", n, (const char *)msg);
}

/* ---- normalizers ------------------------------------------------------------------------------ */

/* Unicode-normalizes the valid UTF-8 in p[0..n) into b; invalid bytes pass
 * through. Only stretches that can change are handed to utf8proc: a stretch
 * starts at the ASCII character before a byte >= lead (ASCII never composes
 * with what precedes it) and ends before the next ASCII byte. */
static qilin_status unicode_normalize(tok_buf *b, const char *p, size_t n, utf8proc_option_t opt, uint8_t lead) {
    size_t done = 0, last_ascii = 0, i = 0;
    while (i < n) {
        uint8_t c = (uint8_t)p[i];
        if (c < 0x80) last_ascii = i;
        if (c < lead) {
            i++;
            continue;
        }
        size_t s = last_ascii > done ? last_ascii : done, e = i;
        while (e < n && (uint8_t)p[e] >= 0x80) e++;
        QILIN_TRY(tok_buf_put(b, p + done, s - done));
        for (size_t k = s; k < e;) { /* valid runs through utf8proc, invalid bytes as they are */
            size_t v = k;
            for (int32_t cp = 0; v < e;) {
                size_t l = tok_utf8_next(p + v, e - v, &cp);
                if (cp < 0) break;
                v += l;
            }
            if (v == k) {
                QILIN_TRY(tok_buf_put(b, p + k, 1));
                k++;
                continue;
            }
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)p + k, (utf8proc_ssize_t)(v - k), &dst, opt);
            if (m < 0) return qilin_error(QILIN_ERR_INTERNAL, "tokenizer: utf8proc: %s", utf8proc_errmsg(m));
            qilin_status st = tok_buf_put(b, (const char *)dst, (size_t)m);
            free(dst);
            QILIN_TRY(st);
            k = v;
        }
        done = i = e;
    }
    return tok_buf_put(b, p + done, n - done);
}

static const char *find_bytes(const char *p, size_t n, const char *needle, size_t k) {
    if (k == 0 || n < k) return NULL;
    for (const char *q = p, *end = p + n - k + 1; (q = memchr(q, needle[0], (size_t)(end - q))); q++)
        if (memcmp(q, needle, k) == 0) return q;
    return NULL;
}

/* Replace output past `limit` bytes stops the step (tok_normalize names it). */
static qilin_status grown(size_t n, size_t limit) { return n > limit ? QILIN_ERR_FORMAT : QILIN_OK; }

static qilin_status replace_literal(tok_buf *b, const char *p, size_t n, const tok_norm *s, size_t limit) {
    size_t i = 0;
    while (i < n) {
        const char *hit = find_bytes(p + i, n - i, s->a, s->na);
        if (!hit) break;
        QILIN_TRY(tok_buf_put(b, p + i, (size_t)(hit - (p + i))));
        QILIN_TRY(tok_buf_put(b, s->b, s->nb));
        QILIN_TRY(grown(b->n, limit));
        i = (size_t)(hit - p) + s->na;
    }
    return tok_buf_put(b, p + i, n - i);
}

static qilin_status replace_regex(tok_split_ctx *c, tok_buf *b, const char *p, size_t n, const tok_norm *s,
                                  size_t limit) {
    size_t i = 0, from = 0;
    while (from <= n) {
        int rc = match_at(c, s->re, p, n, from);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return match_failed(rc, n);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        if (ov[1] == ov[0]) { /* empty match: replace nothing, step over a character */
            int32_t cp;
            from = ov[0] + (ov[0] < n ? tok_utf8_next(p + ov[0], n - ov[0], &cp) : 1);
            continue;
        }
        QILIN_TRY(tok_buf_put(b, p + i, ov[0] - i));
        QILIN_TRY(tok_buf_put(b, s->b, s->nb));
        QILIN_TRY(grown(b->n, limit));
        i = from = ov[1];
    }
    return tok_buf_put(b, p + i, n - i);
}

static bool is_white(int32_t cp) {
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static qilin_status strip(tok_buf *b, const char *p, size_t n, const tok_norm *s) {
    size_t i = 0, e = n;
    int32_t cp;
    while (s->left && i < n) {
        size_t l = tok_utf8_next(p + i, n - i, &cp);
        if (!is_white(cp)) break;
        i += l;
    }
    while (s->right && e > i) {
        size_t k = e - 1;
        while (k > i && ((uint8_t)p[k] & 0xC0) == 0x80) k--;
        if (tok_utf8_next(p + k, e - k, &cp) != e - k || !is_white(cp)) break;
        e = k;
    }
    return tok_buf_put(b, p + i, e - i);
}

static qilin_status lowercase(tok_buf *b, const char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t l = tok_utf8_next(p + i, n - i, &cp);
        if (cp < 0) {
            QILIN_TRY(tok_buf_put(b, p + i, l));
        } else {
            utf8proc_uint8_t u[4];
            utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower(cp), u);
            QILIN_TRY(tok_buf_put(b, (const char *)u, (size_t)k));
        }
        i += l;
    }
    return QILIN_OK;
}

static qilin_status norm_step(tok_split_ctx *c, const tok_norm *s, const char *p, size_t n, tok_buf *b,
                              size_t limit) {
    const utf8proc_option_t base = UTF8PROC_STABLE;
    switch (s->kind) {
    case TOK_NORM_NFC: return unicode_normalize(b, p, n, base | UTF8PROC_COMPOSE, 0xCC);
    case TOK_NORM_NFD: return unicode_normalize(b, p, n, base | UTF8PROC_DECOMPOSE, 0x80);
    case TOK_NORM_NFKC: return unicode_normalize(b, p, n, base | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, 0x80);
    case TOK_NORM_NFKD: return unicode_normalize(b, p, n, base | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, 0x80);
    case TOK_NORM_PREPEND:
        if (n) QILIN_TRY(tok_buf_put(b, s->a, s->na));
        return tok_buf_put(b, p, n);
    case TOK_NORM_REPLACE:
        return s->re ? replace_regex(c, b, p, n, s, limit) : replace_literal(b, p, n, s, limit);
    case TOK_NORM_LOWERCASE: return lowercase(b, p, n);
    case TOK_NORM_STRIP: return strip(b, p, n, s);
    }
    return qilin_error(QILIN_ERR_INTERNAL, "tokenizer: normalizer kind %d", (int)s->kind);
}

static const char *norm_name(tok_norm_kind k) {
    static const char *const names[] = {"NFC",     "NFD",     "NFKC",      "NFKD",
                                        "Prepend", "Replace", "Lowercase", "Strip"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

qilin_status tok_normalize(const qilin_tokenizer *t, tok_split_ctx *c, const char *p, size_t n, const char **out,
                           size_t *nout) {
    if (!c->md && !(c->md = pcre2_match_data_create(1, NULL)))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: PCRE2 match data");
    size_t n_in = n, limit = n > (SIZE_MAX - TOK_NORM_SLACK) / TOK_NORM_GROWTH
                                 ? SIZE_MAX
                                 : n * TOK_NORM_GROWTH + TOK_NORM_SLACK;
    int w = 0;
    for (int i = 0; i < t->n_norm; i++) {
        c->norm[w].n = 0;
        QILIN_TRY(tok_buf_put(&c->norm[w], "", 0));
        qilin_status st = norm_step(c, &t->norm[i], p, n, &c->norm[w], limit);
        if (c->norm[w].n > limit)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: normalizer step %d (%s) grows %zu bytes of input past "
                               "%zu bytes (the limit is %dx the input + %d)",
                               t->source, i, norm_name(t->norm[i].kind), n_in, limit, TOK_NORM_GROWTH,
                               TOK_NORM_SLACK);
        QILIN_TRY(st);
        p = c->norm[w].p;
        n = c->norm[w].n;
        w ^= 1;
    }
    *out = p;
    *nout = n;
    return QILIN_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------------------------- */

static qilin_status span_push(tok_split_ctx *c, size_t *ns, size_t off, size_t len, bool match) {
    if (len == 0) return QILIN_OK;
    if (*ns == c->cap_spans) {
        size_t cap = c->cap_spans ? c->cap_spans * 2 : 256;
        tok_span *s = realloc(c->spans, cap * sizeof *s);
        if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: %zu spans", cap);
        c->spans = s;
        c->cap_spans = cap;
    }
    c->spans[(*ns)++] = (tok_span){(uint32_t)off, (uint32_t)len, match};
    return QILIN_OK;
}

/* Cuts p[0..n) into alternating gap / match spans. */
static qilin_status find_spans(tok_split_ctx *c, const pcre2_code *re, bool invert, const char *p, size_t n,
                               size_t *ns) {
    size_t pos = 0, from = 0;
    *ns = 0;
    while (from < n) {
        int rc = match_at(c, re, p, n, from);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return match_failed(rc, n);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        if (ov[1] == ov[0]) {
            int32_t cp;
            from = ov[0] + tok_utf8_next(p + ov[0], n - ov[0], &cp);
            continue;
        }
        QILIN_TRY(span_push(c, ns, pos, ov[0] - pos, invert));
        QILIN_TRY(span_push(c, ns, ov[0], ov[1] - ov[0], !invert));
        pos = from = ov[1];
    }
    return span_push(c, ns, pos, n - pos, invert);
}

/* Applies HF's SplitDelimiterBehavior to the spans of one piece at base. */
static qilin_status emit_spans(tok_split_ctx *c, int w, uint32_t base, size_t ns, tok_behavior b) {
    size_t first = c->n_pc[w]; /* pieces from this split start here */
    for (size_t i = 0; i < ns; i++) {
        tok_span s = c->spans[i];
        uint32_t off = base + s.off;
        bool prev_match = i > 0 && c->spans[i - 1].match;
        bool next_match = i + 1 < ns && c->spans[i + 1].match;
        switch (b) {
        case TOK_SPLIT_REMOVED:
            if (!s.match) QILIN_TRY(piece_push(c, w, off, s.len));
            break;
        case TOK_SPLIT_ISOLATED: QILIN_TRY(piece_push(c, w, off, s.len)); break;
        case TOK_SPLIT_MERGED_WITH_PREVIOUS:
            if (s.match && !prev_match && c->n_pc[w] > first) c->pc[w][c->n_pc[w] - 1].len += s.len;
            else QILIN_TRY(piece_push(c, w, off, s.len));
            break;
        case TOK_SPLIT_MERGED_WITH_NEXT:
            if (s.match && i + 1 < ns && !next_match) { /* the next span takes this one in */
                c->spans[i + 1].off = s.off;
                c->spans[i + 1].len += s.len;
            } else {
                QILIN_TRY(piece_push(c, w, off, s.len));
            }
            break;
        case TOK_SPLIT_CONTIGUOUS:
            if (i > 0 && s.match == prev_match && c->n_pc[w] > first) c->pc[w][c->n_pc[w] - 1].len += s.len;
            else QILIN_TRY(piece_push(c, w, off, s.len));
            break;
        }
    }
    return QILIN_OK;
}

/* Rewrites every piece (ByteLevel's prefix space, Metaspace's replacement and
 * prefix) into a fresh buffer, keeping the piece boundaries. */
static qilin_status rewrite(tok_split_ctx *c, const tok_pre *s, bool at_origin) {
    int w = c->cur ^ 1;
    tok_buf *b = &c->buf[c->text == c->buf[0].p ? 1 : 0];
    b->n = 0;
    c->n_pc[w] = 0;
    for (size_t i = 0; i < c->n_pc[c->cur]; i++) {
        tok_piece pc = c->pc[c->cur][i];
        const char *p = c->text + pc.off;
        size_t start = b->n;
        if (s->kind == TOK_PRE_BYTELEVEL) {
            if (s->prefix_space && p[0] != ' ') QILIN_TRY(tok_buf_put(b, " ", 1));
            QILIN_TRY(tok_buf_put(b, p, pc.len));
        } else {
            bool starts = pc.len > 0 && (p[0] == ' ' || (pc.len >= s->nrepl && memcmp(p, s->repl, s->nrepl) == 0));
            bool origin = at_origin && i == 0 && pc.off == 0;
            if (!starts && (s->prepend == TOK_PREPEND_ALWAYS || (s->prepend == TOK_PREPEND_FIRST && origin)))
                QILIN_TRY(tok_buf_put(b, s->repl, s->nrepl));
            for (size_t k = 0; k < pc.len; k++)
                QILIN_TRY(p[k] == ' ' ? tok_buf_put(b, s->repl, s->nrepl) : tok_buf_put(b, p + k, 1));
        }
        QILIN_TRY(piece_push(c, w, (uint32_t)start, (uint32_t)(b->n - start)));
    }
    QILIN_TRY(tok_buf_put(b, "", 0));
    c->text = b->p;
    c->cur = w;
    return QILIN_OK;
}

qilin_status tok_pretokenize(const qilin_tokenizer *t, tok_split_ctx *c, const char *p, size_t n, bool at_origin) {
    if (!c->md && !(c->md = pcre2_match_data_create(1, NULL)))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "tokenizer: PCRE2 match data");
    c->cur = 0;
    c->n_pc[0] = 0;
    c->text = p;
    QILIN_TRY(piece_push(c, 0, 0, (uint32_t)n));
    for (int i = 0; i < t->n_pre; i++) {
        const tok_pre *s = &t->pre[i];
        if (s->kind == TOK_PRE_METASPACE || (s->kind == TOK_PRE_BYTELEVEL && s->prefix_space))
            QILIN_TRY(rewrite(c, s, at_origin));
        if (!s->re) continue;
        int w = c->cur ^ 1;
        c->n_pc[w] = 0;
        for (size_t k = 0; k < c->n_pc[c->cur]; k++) {
            tok_piece pc = c->pc[c->cur][k];
            size_t ns = 0;
            QILIN_TRY(find_spans(c, s->re, s->invert, c->text + pc.off, pc.len, &ns));
            QILIN_TRY(emit_spans(c, w, pc.off, ns, s->behavior));
        }
        c->cur = w;
    }
    return QILIN_OK;
}
