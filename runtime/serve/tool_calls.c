/* tool_calls.c — generated text into OpenAI tool calls (tool_calls.h): one
 * parser per family, sharing a few scanning helpers. Every parser reads the
 * text as untrusted: bounds come from the length, never from a NUL, and any
 * surprise makes the whole text content (parse_failed). */
#define _GNU_SOURCE /* memmem */
#include "tool_calls.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- scanning helpers ---- */

typedef struct span {
    const char *p;
    size_t n;
} span;

static size_t find(const char *t, size_t n, size_t from, const char *marker) {
    if (from > n) return SIZE_MAX;
    const char *hit = memmem(t + from, n - from, marker, strlen(marker));
    return hit ? (size_t)(hit - t) : SIZE_MAX;
}

static bool starts_with(const char *t, size_t n, size_t at, const char *marker) {
    size_t len = strlen(marker);
    return at <= n && n - at >= len && !memcmp(t + at, marker, len);
}

static size_t skip_space(const char *t, size_t n, size_t at) {
    while (at < n && isspace((unsigned char)t[at])) at++;
    return at;
}

static span trim(const char *p, size_t n) {
    while (n && isspace((unsigned char)*p)) p++, n--;
    while (n && isspace((unsigned char)p[n - 1])) n--;
    return (span){p, n};
}

/* The length of the longest suffix of t[0, n) that is a proper prefix of marker. */
static size_t partial_marker(const char *t, size_t n, const char *marker) {
    size_t len = strlen(marker);
    for (size_t k = len - 1; k > 0; k--)
        if (n >= k && !memcmp(t + n - k, marker, k)) return k;
    return 0;
}

/* ---- building the result ---- */

static char *dup_span(span s) {
    char *d = malloc(s.n + 1);
    if (d) memcpy(d, s.p, s.n), d[s.n] = '\0';
    return d;
}

void serve_tool_calls_free(serve_tool_calls *c) {
    for (int i = 0; i < c->n; i++) free(c->calls[i].id), free(c->calls[i].name), free(c->calls[i].arguments);
    free(c->calls);
    c->calls = NULL, c->n = 0;
}

typedef enum parse_result { PARSED, MALFORMED, NO_MEMORY } parse_result;

/* A name is printable, has no quotes or whitespace, and is at most 256 bytes
 * (OpenAI's function names are [a-zA-Z0-9_.-]{1,64}; models add dots). */
static bool good_name(span s) {
    if (s.n == 0 || s.n > 256) return false;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= ' ' || c == '"' || c == '\\' || c == 0x7f) return false;
    }
    return true;
}

/* Appends one call; args is a JSON value that must be an object (borrowed). */
static parse_result add_call(serve_tool_calls *c, span id, span name, const json_t *args) {
    if (!good_name(name) || !json_is_object(args)) return MALFORMED;
    serve_tool_call *bigger = realloc(c->calls, (size_t)(c->n + 1) * sizeof *bigger);
    if (!bigger) return NO_MEMORY;
    c->calls = bigger;
    serve_tool_call *call = &c->calls[c->n];
    *call = (serve_tool_call){id.n ? dup_span(id) : NULL, dup_span(name), json_dumps(args, JSON_COMPACT)};
    c->n++;
    if (!call->name || !call->arguments || (id.n && !call->id)) return NO_MEMORY;
    return PARSED;
}

/* Arguments given as JSON text: exactly one object, whitespace around. */
static parse_result add_call_text(serve_tool_calls *c, span id, span name, span args_text) {
    json_t *args = json_loadb(args_text.p, args_text.n, JSON_REJECT_DUPLICATES, NULL);
    parse_result r = args ? add_call(c, id, name, args) : MALFORMED;
    json_decref(args);
    return r;
}

/* {"name": N, "arguments" (or args_key): {..}, "id": optional string}; a
 * missing arguments field reads as {} (a function without parameters). */
static parse_result add_call_object(serve_tool_calls *c, const json_t *o, const char *args_key) {
    const json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
    if (!args && args_key) args = json_object_get(o, args_key);
    if (!json_is_object(o) || !json_is_string(name)) return MALFORMED;
    json_t *empty = args ? NULL : json_object();
    const json_t *id = json_object_get(o, "id");
    span id_span = json_is_string(id) && good_name((span){json_string_value(id), json_string_length(id)})
                       ? (span){json_string_value(id), json_string_length(id)}
                       : (span){NULL, 0};
    parse_result r =
        add_call(c, id_span, (span){json_string_value(name), json_string_length(name)}, args ? args : empty);
    json_decref(empty);
    return r;
}

static parse_result add_call_object_text(serve_tool_calls *c, span text, const char *args_key) {
    json_t *o = json_loadb(text.p, text.n, JSON_REJECT_DUPLICATES, NULL);
    parse_result r = o ? add_call_object(c, o, args_key) : MALFORMED;
    json_decref(o);
    return r;
}

/* ---- hermes: <tool_call>{json}</tool_call> ... ---- */

static const char HERMES_OPEN[] = "<tool_call>", HERMES_CLOSE[] = "</tool_call>";

static parse_result parse_hermes(const char *t, size_t n, serve_tool_calls *c) {
    size_t at = find(t, n, 0, HERMES_OPEN);
    if (at == SIZE_MAX) return MALFORMED; /* no calls */
    c->content_end = at;
    while (at < n) {
        if (!starts_with(t, n, at, HERMES_OPEN)) return MALFORMED;
        size_t body = at + strlen(HERMES_OPEN), end = find(t, n, body, HERMES_CLOSE);
        if (end == SIZE_MAX) return MALFORMED; /* truncated */
        parse_result r = add_call_object_text(c, (span){t + body, end - body}, NULL);
        if (r != PARSED) return r;
        at = skip_space(t, n, end + strlen(HERMES_CLOSE));
    }
    return PARSED;
}

/* ---- deepseek V3 and V3.1 ---- */

static const char DS_BEGIN[] = "<｜tool▁calls▁begin｜>", DS_END[] = "<｜tool▁calls▁end｜>",
                  DS_CALL[] = "<｜tool▁call▁begin｜>", DS_CALL_END[] = "<｜tool▁call▁end｜>",
                  DS_SEP[] = "<｜tool▁sep｜>";

/* V3's tail after the separator: NAME\n```json\n{..}\n``` */
static parse_result deepseek_v3_call(serve_tool_calls *c, span tail) {
    const char *nl = memchr(tail.p, '\n', tail.n);
    if (!nl) return MALFORMED;
    span name = trim(tail.p, (size_t)(nl - tail.p));
    span rest = trim(nl + 1, tail.n - (size_t)(nl + 1 - tail.p));
    static const char fence_open[] = "```json", fence_close[] = "```";
    size_t lo = strlen(fence_open), hi = strlen(fence_close);
    if (rest.n < lo + hi || memcmp(rest.p, fence_open, lo) || memcmp(rest.p + rest.n - hi, fence_close, hi))
        return MALFORMED;
    return add_call_text(c, (span){NULL, 0}, name, (span){rest.p + lo, rest.n - lo - hi});
}

static parse_result parse_deepseek(const char *t, size_t n, serve_tool_calls *c) {
    size_t at = find(t, n, 0, DS_BEGIN);
    if (at == SIZE_MAX) return MALFORMED;
    c->content_end = at;
    at = skip_space(t, n, at + strlen(DS_BEGIN));
    while (starts_with(t, n, at, DS_CALL)) {
        size_t head = at + strlen(DS_CALL), sep = find(t, n, head, DS_SEP);
        size_t end = sep == SIZE_MAX ? SIZE_MAX : find(t, n, sep + strlen(DS_SEP), DS_CALL_END);
        if (end == SIZE_MAX || find(t, sep, head, DS_CALL_END) != SIZE_MAX) return MALFORMED;
        span kind = trim(t + head, sep - head), tail = {t + sep + strlen(DS_SEP), end - sep - strlen(DS_SEP)};
        parse_result r = kind.n == 8 && !memcmp(kind.p, "function", 8)
                             ? deepseek_v3_call(c, tail)
                             : add_call_text(c, (span){NULL, 0}, kind, tail); /* V3.1: the name comes first */
        if (r != PARSED) return r;
        at = skip_space(t, n, end + strlen(DS_CALL_END));
    }
    if (starts_with(t, n, at, DS_END)) at = skip_space(t, n, at + strlen(DS_END));
    return c->n > 0 && at == n ? PARSED : MALFORMED;
}

/* ---- kimi k2 ---- */

static const char KIMI_BEGIN[] = "<|tool_calls_section_begin|>", KIMI_END[] = "<|tool_calls_section_end|>",
                  KIMI_CALL[] = "<|tool_call_begin|>", KIMI_ARGS[] = "<|tool_call_argument_begin|>",
                  KIMI_CALL_END[] = "<|tool_call_end|>";

/* "functions.NAME:INDEX" (the whole is the call's id) -> NAME. */
static span kimi_name(span id) {
    span name = id;
    if (name.n > 10 && !memcmp(name.p, "functions.", 10)) name.p += 10, name.n -= 10;
    size_t colon = name.n;
    while (colon > 0 && isdigit((unsigned char)name.p[colon - 1])) colon--;
    if (colon > 0 && colon < name.n && name.p[colon - 1] == ':') name.n = colon - 1;
    return name;
}

static parse_result parse_kimi(const char *t, size_t n, serve_tool_calls *c) {
    size_t at = find(t, n, 0, KIMI_BEGIN);
    if (at == SIZE_MAX) return MALFORMED;
    c->content_end = at;
    at = skip_space(t, n, at + strlen(KIMI_BEGIN));
    while (starts_with(t, n, at, KIMI_CALL)) {
        size_t head = at + strlen(KIMI_CALL), args = find(t, n, head, KIMI_ARGS);
        size_t end = args == SIZE_MAX ? SIZE_MAX : find(t, n, args + strlen(KIMI_ARGS), KIMI_CALL_END);
        if (end == SIZE_MAX || find(t, args, head, KIMI_CALL_END) != SIZE_MAX) return MALFORMED;
        span id = trim(t + head, args - head);
        if (!good_name(id)) return MALFORMED;
        size_t body = args + strlen(KIMI_ARGS);
        parse_result r = add_call_text(c, id, kimi_name(id), (span){t + body, end - body});
        if (r != PARSED) return r;
        at = skip_space(t, n, end + strlen(KIMI_CALL_END));
    }
    if (starts_with(t, n, at, KIMI_END)) at = skip_space(t, n, at + strlen(KIMI_END));
    return c->n > 0 && at == n ? PARSED : MALFORMED;
}

/* ---- llama 3 JSON: the whole message is the call(s) ---- */

static const char PYTHON_TAG[] = "<|python_tag|>";

static parse_result parse_llama3(const char *t, size_t n, serve_tool_calls *c) {
    size_t at = skip_space(t, n, 0);
    c->content_end = at;
    if (starts_with(t, n, at, PYTHON_TAG)) at = skip_space(t, n, at + strlen(PYTHON_TAG));
    if (at == n || t[at] != '{') return MALFORMED;
    while (at < n) {
        json_error_t je;
        json_t *o = json_loadb(t + at, n - at, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &je);
        if (!o) return MALFORMED;
        parse_result r = json_object_get(o, "parameters") || json_object_get(o, "arguments")
                             ? add_call_object(c, o, "parameters")
                             : MALFORMED; /* a bare JSON answer is not a call */
        json_decref(o);
        if (r != PARSED) return r;
        at = skip_space(t, n, at + (size_t)je.position);
        if (at < n && t[at] == ';') at = skip_space(t, n, at + 1);
    }
    return PARSED;
}

/* ---- mistral ---- */

static const char MISTRAL_CALLS[] = "[TOOL_CALLS]", MISTRAL_ARGS[] = "[ARGS]";

/* [{"name": .., "arguments": {..}, "id": ..}, ...] up to the end. */
static parse_result mistral_list(const char *t, size_t n, size_t at, serve_tool_calls *c) {
    json_t *list = json_loadb(t + at, n - at, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_array(list) || json_array_size(list) == 0) return json_decref(list), MALFORMED;
    size_t i;
    json_t *o;
    parse_result r = PARSED;
    json_array_foreach(list, i, o) if (r == PARSED) r = add_call_object(c, o, NULL);
    json_decref(list);
    return r;
}

static parse_result parse_mistral(const char *t, size_t n, serve_tool_calls *c) {
    size_t at = find(t, n, 0, MISTRAL_CALLS);
    if (at == SIZE_MAX) return MALFORMED;
    c->content_end = at;
    size_t body = skip_space(t, n, at + strlen(MISTRAL_CALLS));
    if (body < n && t[body] == '[') return mistral_list(t, n, body, c);
    while (at < n) { /* v11: [TOOL_CALLS]NAME[ARGS]{..} repeated */
        if (!starts_with(t, n, at, MISTRAL_CALLS)) return MALFORMED;
        size_t name = at + strlen(MISTRAL_CALLS), args = find(t, n, name, MISTRAL_ARGS);
        if (args == SIZE_MAX) return MALFORMED;
        size_t args_at = args + strlen(MISTRAL_ARGS), next = find(t, n, args_at, MISTRAL_CALLS);
        if (next == SIZE_MAX) next = n;
        parse_result r = add_call_text(c, (span){NULL, 0}, trim(t + name, args - name),
                                       (span){t + args_at, next - args_at});
        if (r != PARSED) return r;
        at = next;
    }
    return PARSED;
}

/* ---- the family table ---- */

typedef struct family {
    serve_tool_format format;
    const char *name;
    const char *marker; /* the detecting token, and where calls start (llama3: see below) */
    parse_result (*parse)(const char *t, size_t n, serve_tool_calls *c);
} family;

static const family families[] = {
    {SERVE_TOOLS_HERMES, "hermes", HERMES_OPEN, parse_hermes},
    {SERVE_TOOLS_DEEPSEEK, "deepseek", DS_BEGIN, parse_deepseek},
    {SERVE_TOOLS_KIMI_K2, "kimi_k2", KIMI_BEGIN, parse_kimi},
    {SERVE_TOOLS_LLAMA3, "llama3", PYTHON_TAG, parse_llama3},
    {SERVE_TOOLS_MISTRAL, "mistral", MISTRAL_CALLS, parse_mistral},
};
enum { N_FAMILIES = sizeof families / sizeof *families };

static const family *family_of(serve_tool_format f) {
    for (int i = 0; i < N_FAMILIES; i++)
        if (families[i].format == f) return &families[i];
    return NULL;
}

const char *serve_tool_format_name(serve_tool_format f) {
    const family *fam = family_of(f);
    return fam ? fam->name : "none";
}

bool serve_tool_format_from_name(const char *name, serve_tool_format *out) {
    for (int i = 0; name && i < N_FAMILIES; i++)
        if (!strcmp(name, families[i].name)) return *out = families[i].format, true;
    if (name && !strcmp(name, "none")) return *out = SERVE_TOOLS_NONE, true;
    return false;
}

serve_tool_format serve_tool_format_detect(const qilin_tokenizer *t) {
    /* Most specific first: Qwen-style vocabularies of other families may also hold <tool_call>. */
    static const serve_tool_format order[] = {SERVE_TOOLS_DEEPSEEK, SERVE_TOOLS_KIMI_K2, SERVE_TOOLS_MISTRAL,
                                              SERVE_TOOLS_LLAMA3, SERVE_TOOLS_HERMES};
    for (size_t i = 0; t && i < sizeof order / sizeof *order; i++)
        if (qilin_tokenizer_token_id(t, family_of(order[i])->marker) >= 0) return order[i];
    return SERVE_TOOLS_NONE;
}

bool serve_tool_calls_parse(serve_tool_format f, const char *text, size_t len, serve_tool_calls *out) {
    *out = (serve_tool_calls){len, 0, NULL};
    const family *fam = family_of(f);
    if (!fam || !text) return true;
    parse_result r = fam->parse(text, len, out);
    if (r == PARSED && out->n > 0) return true;
    serve_tool_calls_free(out);
    out->content_end = len; /* malformed or none: all of it is content */
    return r != NO_MEMORY;
}

size_t serve_tool_calls_content_prefix(serve_tool_format f, const char *text, size_t len) {
    const family *fam = family_of(f);
    if (!fam || !text) return len;
    if (f == SERVE_TOOLS_LLAMA3) { /* calls are the whole message: hold one that starts like one */
        size_t at = skip_space(text, len, 0), rest = len - at;
        bool may_be_call =
            rest == 0 || text[at] == '{' ||
            !memcmp(text + at, PYTHON_TAG, rest < strlen(PYTHON_TAG) ? rest : strlen(PYTHON_TAG));
        return may_be_call ? at : len;
    }
    size_t at = find(text, len, 0, fam->marker);
    return at != SIZE_MAX ? at : len - partial_marker(text, len, fam->marker);
}
