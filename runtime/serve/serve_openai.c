/* serve_openai.c — OpenAI request bodies into validated jobs, finished or
 * growing jobs into OpenAI response bodies, and vLLM's /tokenize and
 * /detokenize shapes.
 *
 * Validation rule: every field the server reads is type- and range-checked
 * and a failure names it (param); a field the sampler cannot honour
 * (best_of, logit_bias, ...) is refused with 400 rather
 * than ignored. Unknown fields are ignored, as vLLM does. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve_internal.h"

bool serve_fail(serve_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 413 ? "request_too_large"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

/* Bytes as a JSON string, invalid UTF-8 replaced by U+FFFD (a byte-level
 * model may generate bytes that never complete a character). */
static json_t *text_json(const char *p, size_t n) {
    json_t *v = json_stringn(p, n);
    if (v) return v;
    char *clean = malloc(n * 3 + 1);
    size_t k = 0;
    if (!clean) return json_string("");
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && c != 0;
        for (size_t t = 1; ok && t < len; t++) ok = ((unsigned char)p[i + t] >> 6) == 2;
        if (ok && len > 1)
            ok = json_stringn(p + i, len) != NULL; /* overlong, surrogates (leaks nothing: NULL) */
        if (ok)
            memcpy(clean + k, p + i, len), k += len, i += len;
        else
            memcpy(clean + k, "\xEF\xBF\xBD", 3), k += 3, i++;
    }
    v = json_stringn(clean, k);
    free(clean);
    return v ? v : json_string("");
}

json_t *serve_error_json(const serve_error *e) {
    return json_pack("{s:{s:o, s:s, s:o, s:i}}", "error", "message",
                     text_json(e->message, strlen(e->message)), "type", e->type, "param",
                     e->param[0] ? json_string(e->param) : json_null(), "code", e->status);
}

static bool parse_body(const char *body, size_t n, json_t **root, serve_error *e) {
    json_error_t je;
    *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
    if (!*root)
        return serve_fail(e, 400, NULL, "malformed JSON at line %d column %d: %s", je.line, je.column,
                          je.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        return serve_fail(e, 400, NULL, "the body must be a JSON object");
    }
    return true;
}

/* ---- typed fields: absent or null keeps the default ---- */

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static bool get_number(json_t *o, const char *key, double lo, double hi, double *out, serve_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v))
        return serve_fail(e, 400, key, "%s: expected a number, got %s", key, json_kind(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return serve_fail(e, 400, key, "%s: %g is out of range [%g, %g]", key, x, lo, hi);
    *out = x;
    return true;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, serve_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v))
        return serve_fail(e, 400, key, "%s: expected an integer, got %s", key, json_kind(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return serve_fail(e, 400, key, "%s: %lld is out of range [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return true;
}

static bool get_bool(json_t *o, const char *key, bool *out, serve_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v))
        return serve_fail(e, 400, key, "%s: expected a boolean, got %s", key, json_kind(v));
    *out = json_is_true(v);
    return true;
}

/* ---- fields qilin cannot honour yet: refused, never ignored ---- */

static bool refuse_unsupported(json_t *o, serve_error *e) {
    json_t *v = json_object_get(o, "functions"); /* OpenAI's deprecated form of tools */
    if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
        return serve_fail(e, 400, "functions", "functions: deprecated; send tools instead");
    v = json_object_get(o, "logit_bias");
    if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0))
        return serve_fail(e, 400, "logit_bias", "logit_bias: not supported");
    v = json_object_get(o, "response_format");
    if (v && !json_is_null(v) &&
        !(json_is_object(v) && json_is_string(json_object_get(v, "type")) &&
          !strcmp(json_string_value(json_object_get(v, "type")), "text")))
        return serve_fail(e, 400, "response_format",
                          "response_format: only {\"type\": \"text\"} is supported");
    bool echo = false;
    if (!get_bool(o, "echo", &echo, e)) return false;
    if (echo) return serve_fail(e, 400, "echo", "echo: not supported");
    v = json_object_get(o, "suffix");
    if (v && !json_is_null(v)) return serve_fail(e, 400, "suffix", "suffix: not supported");
    long long best_of = 1;
    if (!get_int(o, "best_of", 1, 128, &best_of, e)) return false;
    if (best_of != 1) return serve_fail(e, 400, "best_of", "best_of: only 1 is supported");
    return true;
}

/* ---- sampling ---- */

/* A request without a seed gets its own: the clock and a per-server counter. */
static uint64_t default_seed(qilin_server *s) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    pthread_mutex_lock(&s->mu);
    uint64_t salt = ++s->seed_counter;
    pthread_mutex_unlock(&s->mu);
    return ((uint64_t)t.tv_nsec ^ salt << 32 ^ (uint64_t)t.tv_sec) * 0x9E3779B97F4A7C15ull;
}

static bool parse_sampling(qilin_server *s, json_t *o, qilin_sampling_params *sp, serve_error *e) {
    const qilin_sampling_params *d = &s->default_sp;
    double temperature = d->temperature, top_p = d->top_p, min_p = d->min_p, rp = d->repetition_penalty;
    double presence = 0, frequency = 0; /* OpenAI's: over the generated tokens, in [-2, 2] */
    long long top_k = d->top_k, seed = 0;
    bool has_seed = json_is_integer(json_object_get(o, "seed"));
    if (!get_number(o, "temperature", 0, 1e6, &temperature, e) || !get_number(o, "top_p", 0, 1, &top_p, e) ||
        !get_number(o, "min_p", 0, 1, &min_p, e) || !get_number(o, "repetition_penalty", 1e-6, 1e6, &rp, e) ||
        !get_int(o, "top_k", -1, INT_MAX, &top_k, e) || !get_int(o, "seed", LLONG_MIN, LLONG_MAX, &seed, e) ||
        !get_number(o, "presence_penalty", -2, 2, &presence, e) ||
        !get_number(o, "frequency_penalty", -2, 2, &frequency, e))
        return false;
    if (top_p <= 0) return serve_fail(e, 400, "top_p", "top_p: must be in (0, 1], got %g", top_p);
    *sp = (qilin_sampling_params){.temperature = (float)temperature,
                                  .top_k = top_k < 0 ? 0 : (int)top_k,
                                  .top_p = (float)top_p,
                                  .min_p = (float)min_p,
                                  .repetition_penalty = (float)rp,
                                  .seed = has_seed ? (uint64_t)seed : default_seed(s),
                                  .step = 0,
                                  .presence_penalty = (float)presence,
                                  .frequency_penalty = (float)frequency};
    char why[QILIN_SAMPLING_WHY_BYTES];
    if (qilin_sampling_params_check(sp, why) != QILIN_OK)
        return serve_fail(e, 400, NULL, "sampling: %s", why);
    return true;
}

/* chat: logprobs (boolean) and top_logprobs (0 .. 20, needs logprobs);
 * completions: logprobs (an integer 0 .. 20: the alternatives per token). */
static bool parse_logprobs(json_t *o, serve_kind kind, serve_job *j, serve_error *e) {
    long long top = -1;
    if (kind == SERVE_COMPLETION) {
        if (!get_int(o, "logprobs", 0, QILIN_MAX_TOP_LOGPROBS, &top, e)) return false;
        j->logprobs = top >= 0, j->top_logprobs = top > 0 ? (int)top : 0;
        return true;
    }
    bool want = false;
    if (!get_bool(o, "logprobs", &want, e) || !get_int(o, "top_logprobs", 0, QILIN_MAX_TOP_LOGPROBS, &top, e))
        return false;
    if (top > 0 && !want)
        return serve_fail(e, 400, "top_logprobs", "top_logprobs: %lld alternatives need \"logprobs\": true",
                          top);
    j->logprobs = want, j->top_logprobs = top > 0 ? (int)top : 0;
    return true;
}

static bool parse_stops(json_t *o, serve_job *j, serve_error *e) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return true;
        if (!(j->stops[j->n_stops] = strdup(json_string_value(v))))
            return serve_fail(e, 500, NULL, "out of memory");
        j->n_stops++;
        return true;
    }
    if (!json_is_array(v))
        return serve_fail(e, 400, "stop", "stop: expected a string or a list of strings, got %s",
                          json_kind(v));
    if (json_array_size(v) > SERVE_MAX_STOPS)
        return serve_fail(e, 400, "stop", "stop: %zu strings; at most %d", json_array_size(v),
                          SERVE_MAX_STOPS);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_string(x))
            return serve_fail(e, 400, "stop", "stop[%zu]: expected a string, got %s", i, json_kind(x));
        if (json_string_length(x) == 0) continue;
        if (!(j->stops[j->n_stops] = strdup(json_string_value(x))))
            return serve_fail(e, 500, NULL, "out of memory");
        j->n_stops++;
    }
    return true;
}

/* EOS (the tokenizer's and the config's) and, for chat, the end-of-turn
 * tokens of the template families this vocabulary has. */
static void stop_ids(qilin_server *s, bool chat, serve_job *j) {
    const qilin_model_desc *d = qilin_model_get_desc(s->model);
    int32_t cand[SERVE_MAX_STOP_IDS];
    int k = 0;
    cand[k++] = qilin_tokenizer_eos_id(s->tok);
    for (int i = 0; i < d->n_eos && k < 16; i++) cand[k++] = (int32_t)d->eos_ids[i];
    static const char *const end_of_turn[] = {
        "<|im_end|>", "<|eot_id|>", "<|eom_id|>",   "<|end_of_text|>", "<｜end▁of▁sentence｜>",
        "[EOS]",      "</s>",       "<|endoftext|>"};
    for (size_t i = 0; chat && i < sizeof end_of_turn / sizeof *end_of_turn; i++)
        cand[k++] = qilin_tokenizer_token_id(s->tok, end_of_turn[i]);
    for (int i = 0; i < k; i++) {
        bool seen = cand[i] < 0 || cand[i] >= s->vocab;
        for (int t = 0; t < j->n_stop_ids && !seen; t++) seen = j->stop_ids[t] == cand[i];
        if (!seen) j->stop_ids[j->n_stop_ids++] = cand[i];
    }
}

/* ---- tools ---- */

/* tools[i]: {"type": "function", "function": {"name": N, "description"?: S, "parameters"?: {..}}}. */
static bool check_tool(json_t *tool, size_t i, serve_error *e) {
    char param[64];
    json_t *type = json_object_get(tool, "type"), *fn = json_object_get(tool, "function");
    snprintf(param, sizeof param, "tools[%zu]", i);
    if (!json_is_object(tool) || !json_is_string(type) || strcmp(json_string_value(type), "function") ||
        !json_is_object(fn))
        return serve_fail(e, 400, param, "%s: expected {\"type\": \"function\", \"function\": {...}}", param);
    json_t *name = json_object_get(fn, "name"), *desc = json_object_get(fn, "description"),
           *params = json_object_get(fn, "parameters");
    snprintf(param, sizeof param, "tools[%zu].function.name", i);
    if (!json_is_string(name) || json_string_length(name) == 0 || json_string_length(name) > 64)
        return serve_fail(e, 400, param, "%s: expected a string of 1 to 64 characters", param);
    for (const char *c = json_string_value(name); *c; c++)
        if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') || *c == '_' ||
              *c == '-' || *c == '.'))
            return serve_fail(e, 400, param, "%s: only a-z, A-Z, 0-9, _, - and . are allowed", param);
    snprintf(param, sizeof param, "tools[%zu].function.description", i);
    if (desc && !json_is_null(desc) && !json_is_string(desc))
        return serve_fail(e, 400, param, "%s: expected a string, got %s", param, json_kind(desc));
    snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
    if (params && !json_is_null(params) && !json_is_object(params))
        return serve_fail(e, 400, param, "%s: expected a JSON Schema object, got %s", param,
                          json_kind(params));
    return true;
}

/* tools and tool_choice: *tools (borrowed, NULL when none or tool_choice
 * is "none") goes to the template; c->tools says how to read the output.
 * "required" and a named function would need constrained decoding, which
 * qilin does not have: refused rather than silently treated as "auto". */
static bool parse_tools(qilin_server *s, json_t *o, serve_kind kind, serve_call *c, json_t **tools,
                        serve_error *e) {
    json_t *list = json_object_get(o, "tools"), *choice = json_object_get(o, "tool_choice");
    *tools = NULL;
    bool has_tools = list && !json_is_null(list) && !(json_is_array(list) && json_array_size(list) == 0);
    if (list && !json_is_null(list) && !json_is_array(list))
        return serve_fail(e, 400, "tools", "tools: expected a list of tools, got %s", json_kind(list));
    if (list && json_array_size(list) > 128)
        return serve_fail(e, 400, "tools", "tools: %zu tools; at most 128", json_array_size(list));
    size_t i;
    json_t *tool;
    json_array_foreach(list, i, tool) if (!check_tool(tool, i, e)) return false;
    const char *mode = has_tools ? "auto" : "none";
    if (choice && !json_is_null(choice)) {
        if (json_is_object(choice))
            return serve_fail(
                e, 400, "tool_choice",
                "tool_choice: a named function needs constrained decoding, not supported; use \"auto\"");
        if (!json_is_string(choice) ||
            (strcmp(json_string_value(choice), "none") && strcmp(json_string_value(choice), "auto") &&
             strcmp(json_string_value(choice), "required")))
            return serve_fail(e, 400, "tool_choice",
                              "tool_choice: expected \"none\", \"auto\" or \"required\"");
        mode = json_string_value(choice);
        if (!strcmp(mode, "required"))
            return serve_fail(
                e, 400, "tool_choice",
                "tool_choice: \"required\" needs constrained decoding, not supported; use \"auto\"");
        if (!has_tools && strcmp(mode, "none"))
            return serve_fail(e, 400, "tool_choice", "tool_choice: \"%s\" without tools", mode);
    }
    if (!has_tools || !strcmp(mode, "none")) return true;
    if (kind != SERVE_CHAT) return serve_fail(e, 400, "tools", "tools: only for /v1/chat/completions");
    if (s->tool_format == SERVE_TOOLS_NONE)
        return serve_fail(e, 400, "tools",
                          "tools: this model's tool-call format is not known (start the server with "
                          "--tool-call-parser hermes|deepseek|kimi_k2|llama3|mistral)");
    *tools = list;
    c->tools = s->tool_format;
    return true;
}

/* ---- prompts ---- */

/* messages: checked and normalised (content parts joined) for the template. */
static bool normalise_messages(json_t *messages, json_t **out, serve_error *e) {
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return serve_fail(e, 400, "messages", "messages: expected a non-empty list of messages");
    *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role)) {
            json_decref(*out);
            return serve_fail(e, 400, "messages", "messages[%zu]: expected an object with a string \"role\"",
                              i);
        }
        json_t *copy = json_copy(m);
        if (json_is_array(content)) { /* [{"type": "text", "text": "..."}, ...] */
            char *joined = NULL;
            size_t n = 0, k;
            json_t *part;
            json_array_foreach(content, k, part) {
                json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
                if (!json_is_string(type) || strcmp(json_string_value(type), "text") ||
                    !json_is_string(text)) {
                    free(joined), json_decref(copy), json_decref(*out);
                    return serve_fail(e, 400, "messages",
                                      "messages[%zu].content[%zu]: only {\"type\": \"text\", "
                                      "\"text\": ...} parts are supported",
                                      i, k);
                }
                size_t len = json_string_length(text);
                char *bigger = realloc(joined, n + len + 1);
                if (!bigger) break;
                joined = bigger, memcpy(joined + n, json_string_value(text), len), n += len, joined[n] = '\0';
            }
            json_object_set_new(copy, "content", json_stringn(joined ? joined : "", n));
            free(joined);
        } else if (content && !json_is_string(content) && !json_is_null(content)) {
            json_decref(copy), json_decref(*out);
            return serve_fail(e, 400, "messages",
                              "messages[%zu].content: expected a string, a list of parts or "
                              "null, got %s",
                              i, json_kind(content));
        }
        json_array_append_new(*out, copy);
    }
    return true;
}

/* Renders messages through the template and tokenizes the result. */
static bool chat_prompt(qilin_server *s, json_t *o, json_t *tools, bool add_generation_prompt, qilin_ids *ids,
                        bool *opens_think, serve_error *e) {
    if (!s->tpl)
        return serve_fail(e, 400, "messages",
                          "this model has no chat template (start the server with --chat-template)");
    json_t *kwargs = json_object_get(o, "chat_template_kwargs");
    if (kwargs && !json_is_null(kwargs) && !json_is_object(kwargs))
        return serve_fail(e, 400, "chat_template_kwargs", "chat_template_kwargs: expected an object");
    json_t *messages = NULL;
    if (!normalise_messages(json_object_get(o, "messages"), &messages, e)) return false;
    char *msgs = json_dumps(messages, JSON_COMPACT);
    json_t *all_kwargs = kwargs && json_is_object(kwargs) ? json_copy(kwargs) : json_object();
    if (all_kwargs && tools) json_object_set(all_kwargs, "tools", tools); /* apply_chat_template(tools=...) */
    char *kw = all_kwargs && json_object_size(all_kwargs) ? json_dumps(all_kwargs, JSON_COMPACT) : NULL;
    json_decref(all_kwargs);
    json_decref(messages);
    qilin_chat_options co = {
        .add_generation_prompt = add_generation_prompt, .kwargs_json = kw, .max_output = 16u << 20};
    if (!qilin_chat_template_bos(s->tpl) && *qilin_tokenizer_bos_text(s->tok))
        co.bos_token = qilin_tokenizer_bos_text(s->tok);
    if (!qilin_chat_template_eos(s->tpl) && *qilin_tokenizer_eos_text(s->tok))
        co.eos_token = qilin_tokenizer_eos_text(s->tok);
    char *prompt = NULL;
    qilin_status st = msgs ? qilin_chat_render(s->tpl, msgs, &co, &prompt) : QILIN_ERR_OUT_OF_MEMORY;
    free(msgs), free(kw);
    if (st != QILIN_OK)
        return free(prompt), serve_fail(e, 400, "messages", "chat template: %s", qilin_last_error());
    if (opens_think) *opens_think = qilin_chat_prompt_opens_think(prompt);
    st = qilin_tokenizer_encode(s->tok, prompt, strlen(prompt), QILIN_ENCODE_PARSE_SPECIAL, ids);
    free(prompt);
    if (st != QILIN_OK) return serve_fail(e, 400, "messages", "tokenizing: %s", qilin_last_error());
    return true;
}

static bool ids_prompt(qilin_server *s, json_t *list, const char *param, qilin_ids *ids, serve_error *e) {
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
        long long id = json_is_integer(x) ? json_integer_value(x) : -1;
        if (id < 0 || id >= s->vocab)
            return serve_fail(e, 400, param, "%s[%zu]: expected a token id in [0, %d)", param, i, s->vocab);
        if (qilin_ids_push(ids, (int32_t)id) != QILIN_OK) return serve_fail(e, 500, NULL, "out of memory");
    }
    return true;
}

/* prompt: a string, a list of token ids, or a list of one of those. */
static bool completion_prompt(qilin_server *s, json_t *o, qilin_ids *ids, serve_error *e) {
    json_t *p = json_object_get(o, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        if (qilin_tokenizer_encode(s->tok, json_string_value(p), json_string_length(p),
                                   QILIN_ENCODE_ADD_SPECIAL | QILIN_ENCODE_PARSE_SPECIAL, ids) != QILIN_OK)
            return serve_fail(e, 400, "prompt", "tokenizing: %s", qilin_last_error());
        return true;
    }
    if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0)))
        return ids_prompt(s, p, "prompt", ids, e);
    if (json_is_array(p) && json_array_size(p) > 1)
        return serve_fail(e, 400, "prompt", "prompt: a batch of %zu prompts; send one per request",
                          json_array_size(p));
    return serve_fail(e, 400, "prompt", "prompt: expected a string or a list of token ids, got %s",
                      p ? json_kind(p) : "nothing");
}

/* ---- the generation request ---- */

static bool check_model(qilin_server *s, json_t *o, serve_error *e) {
    json_t *m = json_object_get(o, "model");
    if (!m || json_is_null(m)) return true;
    if (!json_is_string(m))
        return serve_fail(e, 400, "model", "model: expected a string, got %s", json_kind(m));
    if (strcmp(json_string_value(m), s->model_name))
        return serve_fail(e, 404, "model", "The model `%.200s` does not exist; this server serves `%s`",
                          json_string_value(m), s->model_name);
    return true;
}

static bool parse_limits(qilin_server *s, json_t *o, serve_kind kind, serve_job *j, serve_error *e) {
    long long max_tokens = -1;
    const char *which = "max_tokens";
    if (!get_int(o, "max_tokens", 1, INT_MAX, &max_tokens, e)) return false;
    if (kind == SERVE_CHAT && json_is_integer(json_object_get(o, "max_completion_tokens"))) {
        which = "max_completion_tokens";
        if (!get_int(o, which, 1, INT_MAX, &max_tokens, e)) return false;
    } else if (!get_int(o, "max_completion_tokens", 1, INT_MAX, &max_tokens, e)) {
        return false;
    }
    const char *prompt_field = kind == SERVE_CHAT ? "messages" : "prompt";
    if (j->prompt_len == 0)
        return serve_fail(e, 400, prompt_field, "%s: the prompt has no tokens", prompt_field);
    if (j->prompt_len >= s->max_ctx)
        return serve_fail(e, 400, prompt_field,
                          "This model's maximum context length is %d tokens; the prompt has %d "
                          "tokens, leaving no room for a completion",
                          s->max_ctx, j->prompt_len);
    if (max_tokens > (long long)s->max_ctx - j->prompt_len)
        return serve_fail(e, 400, which,
                          "This model's maximum context length is %d tokens. However, you requested "
                          "%lld tokens (%d in the prompt, %lld in %s)",
                          s->max_ctx, j->prompt_len + max_tokens, j->prompt_len, max_tokens, which);
    j->max_new = max_tokens > 0 ? (int)max_tokens : s->max_ctx - j->prompt_len;
    return true;
}

static bool parse_stream(json_t *o, serve_call *c, serve_error *e) {
    if (!get_bool(o, "stream", &c->stream, e)) return false;
    json_t *so = json_object_get(o, "stream_options");
    if (!so || json_is_null(so)) return true;
    if (!json_is_object(so))
        return serve_fail(e, 400, "stream_options", "stream_options: expected an object, got %s",
                          json_kind(so));
    if (!c->stream)
        return serve_fail(e, 400, "stream_options", "stream_options: only allowed with stream: true");
    json_t *iu = json_object_get(so, "include_usage");
    if (iu && !json_is_boolean(iu) && !json_is_null(iu))
        return serve_fail(e, 400, "stream_options.include_usage",
                          "stream_options.include_usage: expected a boolean");
    c->include_usage = json_is_true(iu);
    return true;
}

/* Choice i of n: the same prompt and parameters; a sampled request's seed
 * moves by i so the choices differ (and stay reproducible with a seed). */
static serve_job *clone_job(const serve_job *j, int i) {
    serve_job *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->prompt = malloc((size_t)j->prompt_len * sizeof *k->prompt);
    bool ok = k->prompt != NULL;
    if (ok) memcpy(k->prompt, j->prompt, (size_t)j->prompt_len * sizeof *k->prompt);
    k->prompt_len = j->prompt_len, k->sp = j->sp, k->max_new = j->max_new;
    k->sp.seed = j->sp.seed + (uint64_t)i;
    for (int t = 0; t < j->n_stops && ok; t++) ok = (k->stops[k->n_stops++] = strdup(j->stops[t])) != NULL;
    memcpy(k->stop_ids, j->stop_ids, sizeof k->stop_ids), k->n_stop_ids = j->n_stop_ids;
    k->t_arrival = j->t_arrival, k->keep_special = j->keep_special;
    k->logprobs = j->logprobs, k->top_logprobs = j->top_logprobs, k->refs = 1;
    if (!ok) serve_job_free(k), k = NULL;
    return k;
}

serve_call serve_choice(const serve_call *c, int i) {
    serve_call v = *c;
    v.job = c->choices[i], v.index = i;
    return v;
}

bool serve_parse_generation(qilin_server *s, serve_kind kind, const char *body, size_t n, serve_call *c,
                            serve_error *e) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    json_t *o = NULL;
    if (!parse_body(body, n, &o, e)) return false;
    serve_job *j = calloc(1, sizeof *j);
    qilin_ids ids = {0};
    bool ignore_eos = false, add_generation_prompt = true;
    json_t *tools = NULL;
    long long n_choices = 1;
    bool ok = j && check_model(s, o, e) && refuse_unsupported(o, e) && parse_stream(o, c, e) &&
              get_int(o, "n", 1, SERVE_MAX_CHOICES, &n_choices, e) && parse_tools(s, o, kind, c, &tools, e) &&
              parse_sampling(s, o, &j->sp, e) && parse_stops(o, j, e) && parse_logprobs(o, kind, j, e) &&
              get_bool(o, "ignore_eos", &ignore_eos, e) &&
              get_bool(o, "add_generation_prompt", &add_generation_prompt, e);
    if (ok && kind == SERVE_CHAT)
        ok = chat_prompt(s, o, tools, add_generation_prompt, &ids, &c->opens_think, e);
    if (ok && kind == SERVE_COMPLETION) ok = completion_prompt(s, o, &ids, e);
    if (ok) {
        j->prompt = ids.ids, j->prompt_len = (int)ids.n, ids.ids = NULL; /* ids.n < max_ctx checked next */
        ok = parse_limits(s, o, kind, j, e);
    }
    json_decref(o);
    qilin_ids_free(&ids);
    if (!ok) return serve_job_free(j), false;
    if (!ignore_eos) stop_ids(s, kind == SERVE_CHAT, j);
    j->refs = 1, j->t_arrival = serve_now();
    j->keep_special = c->tools != SERVE_TOOLS_NONE;
    c->job = c->choices[0] = j, c->n_choices = 1;
    for (int i = 1; i < n_choices; i++) {
        if (!(c->choices[i] = clone_job(j, i))) {
            for (int k = 0; k < i; k++) serve_job_free(c->choices[k]);
            return serve_fail(e, 500, NULL, "out of memory");
        }
        c->n_choices++;
    }
    c->reasoning = kind == SERVE_CHAT && qilin_tokenizer_token_id(s->tok, "</think>") >= 0;
    pthread_mutex_lock(&s->mu);
    unsigned long long id = ++s->next_response_id;
    pthread_mutex_unlock(&s->mu);
    snprintf(c->id, sizeof c->id, "%s-%016llx", kind == SERVE_CHAT ? "chatcmpl" : "cmpl", id);
    c->created = (long long)time(NULL);
    return true;
}

/* ---- responses ---- */

static bool is_space(char ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'; }

/* The prompt once, the completions of every choice. */
static json_t *usage_json(const serve_call *c) {
    int completion = 0;
    for (int i = 0; i < c->n_choices; i++) completion += c->choices[i]->n_tokens;
    int prompt = c->choices[0]->prompt_len;
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", prompt, "completion_tokens", completion,
                     "total_tokens", prompt + completion);
}

static json_t *envelope(qilin_server *s, const serve_call *c, const char *object, json_t *choices) {
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", c->id, "object", object, "created",
                     (json_int_t)c->created, "model", s->model_name, "choices", choices);
}

/* ---- logprobs ---- */

/* The bytes token id stands for alone (a leading space kept; a piece of a
 * UTF-8 character as its raw bytes). *n = 0 when it cannot be decoded. */
static char *token_bytes(qilin_server *s, int id, size_t *n) {
    size_t cap = 64 + qilin_tokenizer_max_token_bytes(s->tok);
    char *buf = malloc(cap);
    *n = 0;
    if (!buf) return NULL;
    qilin_detokenizer d;
    qilin_detokenizer_init(&d, s->tok, 0);
    qilin_detokenizer_set_model_vocab(&d, s->vocab);
    d.started = true; /* not the first token: SentencePiece keeps its space */
    if (qilin_detokenizer_push(&d, id, buf, cap, n) != QILIN_OK)
        *n = 0;
    else
        *n += qilin_detokenizer_flush(&d, buf + *n, cap - *n);
    return buf;
}

/* JSON has no -inf: OpenAI reports an impossible token as -9999. */
static json_t *logprob_json(float lp) { return json_real(lp > -9999.0f ? lp : -9999.0); }

/* Chat: {"token", "logprob", "bytes"}; top_logprobs added by the caller. */
static json_t *chat_token_json(qilin_server *s, int id, float lp, size_t *len) {
    size_t n = 0;
    char *b = token_bytes(s, id, &n);
    json_t *bytes = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)b[i]));
    json_t *t = json_pack("{s:o, s:o, s:o}", "token", text_json(b ? b : "", n), "logprob", logprob_json(lp),
                          "bytes", bytes);
    free(b);
    if (len) *len = n;
    return t;
}

static bool is_stop_id(const serve_job *j, int token) {
    for (int i = 0; i < j->n_stop_ids; i++)
        if (j->stop_ids[i] == token) return true;
    return false;
}

/* Under mu: the logprobs object for entries [from, to) of the job (stop ids,
 * which give no text, left out), as the endpoint spells it; *offset: the
 * text offset of the first entry, advanced (completions' text_offset). */
static json_t *logprobs_json(qilin_server *s, const serve_call *c, int from, int to, size_t *offset) {
    const serve_job *j = c->job;
    bool chat = c->kind == SERVE_CHAT;
    json_t *content = json_array(), *tokens = json_array(), *token_lps = json_array(), *tops = json_array(),
           *offsets = json_array();
    for (int i = from; i < to; i++) {
        const serve_logprob *e = &j->lps[i];
        if (is_stop_id(j, e->token)) continue;
        size_t len = 0;
        json_t *entry = chat_token_json(s, e->token, e->logprob, &len);
        json_t *top = chat ? json_array() : json_object();
        for (int k = 0; k < e->n_top; k++) {
            json_t *alt = chat_token_json(s, e->top_ids[k], e->top_logprobs[k], NULL);
            if (chat)
                json_array_append_new(top, alt);
            else
                json_object_set(top, json_string_value(json_object_get(alt, "token")),
                                json_object_get(alt, "logprob")),
                    json_decref(alt);
        }
        if (chat) {
            json_object_set_new(entry, "top_logprobs", top);
            json_array_append_new(content, entry);
        } else {
            json_array_append(tokens, json_object_get(entry, "token"));
            json_array_append(token_lps, json_object_get(entry, "logprob"));
            json_array_append_new(tops, top);
            json_array_append_new(offsets, json_integer((json_int_t)*offset));
            json_decref(entry);
        }
        *offset += len;
    }
    if (chat) {
        json_decref(tokens), json_decref(token_lps), json_decref(tops), json_decref(offsets);
        return json_pack("{s:o}", "content", content);
    }
    json_decref(content);
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", token_lps, "top_logprobs",
                     tops, "text_offset", offsets);
}

/* OpenAI's tool_calls list; streamed deltas also carry each call's index.
 * Ids: the model's own when it writes them (Kimi K2, Mistral), else
 * call_<response id>_<index>, unique per response. */
static json_t *tool_calls_json(const serve_call *c, const serve_tool_calls *calls, bool with_index) {
    json_t *list = json_array();
    const char *suffix = strchr(c->id, '-') ? strchr(c->id, '-') + 1 : c->id;
    for (int i = 0; i < calls->n; i++) {
        char id[96];
        snprintf(id, sizeof id, "call_%s_%d_%d", suffix, c->index, i);
        const serve_tool_call *t = &calls->calls[i];
        json_t *call = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", t->id ? t->id : id, "type", "function",
                                 "function", "name", t->name, "arguments", t->arguments);
        if (call && with_index) json_object_set_new(call, "index", json_integer(i));
        json_array_append_new(list, call);
    }
    return list;
}

json_t *serve_tool_calls_chunk_json(qilin_server *s, const serve_call *c, const serve_tool_calls *calls) {
    json_t *choice = json_pack("{s:i, s:n, s:n, s:{s:o}}", "index", c->index, "logprobs", "finish_reason",
                               "delta", "tool_calls", tool_calls_json(c, calls, true));
    json_t *r = envelope(s, c, "chat.completion.chunk", json_pack("[o]", choice));
    if (c->include_usage) json_object_set_new(r, "usage", json_null());
    return r;
}

/* Under mu (the job's text and counts are read): the choice c renders. */
static json_t *choice_json(qilin_server *s, const serve_call *c) {
    const serve_job *j = c->job;
    const char *all = j->text ? j->text : "";
    size_t rb = 0, re = 0, cb = 0, ce = j->n_text;
    if (c->reasoning) serve_split_reasoning(all, j->n_text, c->opens_think, true, &rb, &re, &cb, &ce);
    serve_tool_calls calls = {0};
    if (c->tools != SERVE_TOOLS_NONE && !serve_tool_calls_parse(c->tools, all + cb, ce - cb, &calls))
        return json_null(); /* out of memory */
    const char *finish = j->finish_reason;
    if (calls.n > 0) { /* the content is what came before the calls; only whitespace: none */
        ce = cb + calls.content_end;
        while (ce > cb && is_space(all[ce - 1])) ce--;
        if (!strcmp(finish, "stop")) finish = "tool_calls";
    }
    json_t *text = calls.n > 0 && ce == cb ? json_null() : text_json(all + cb, ce - cb), *choice;
    if (c->kind == SERVE_CHAT) {
        choice = json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", c->index, "message", "role", "assistant",
                           "content", text, "logprobs", "finish_reason", finish);
        if (calls.n > 0)
            json_object_set_new(json_object_get(choice, "message"), "tool_calls",
                                tool_calls_json(c, &calls, false));
        serve_tool_calls_free(&calls);
        if (c->reasoning)
            json_object_set_new(json_object_get(choice, "message"), "reasoning_content",
                                re > rb || c->opens_think ? text_json(all + rb, re - rb) : json_null());
    } else
        choice = json_pack("{s:i, s:o, s:n, s:s}", "index", c->index, "text", text, "logprobs",
                           "finish_reason", j->finish_reason);
    size_t offset = 0;
    if (j->logprobs) json_object_set_new(choice, "logprobs", logprobs_json(s, c, 0, j->n_lps, &offset));
    return choice;
}

/* Under mu. */
json_t *serve_response_json(qilin_server *s, const serve_call *c) {
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        serve_call v = serve_choice(c, i);
        json_array_append_new(choices, choice_json(s, &v));
    }
    json_t *r = envelope(s, c, c->kind == SERVE_CHAT ? "chat.completion" : "text_completion", choices);
    json_object_set_new(r, "usage", usage_json(c));
    return r;
}

json_t *serve_chunk_json(qilin_server *s, const serve_call *c, const char *delta, size_t n, bool role,
                         const char *finish) {
    json_t *choice = json_pack("{s:i, s:n, s:o}", "index", c->index, "logprobs", "finish_reason",
                               finish ? json_string(finish) : json_null());
    if (c->kind == SERVE_CHAT) {
        json_t *d = json_object();
        if (role) json_object_set_new(d, "role", json_string("assistant"));
        if (delta || role) json_object_set_new(d, "content", text_json(delta ? delta : "", delta ? n : 0));
        json_object_set_new(choice, "delta", d);
    } else {
        json_object_set_new(choice, "text", text_json(delta ? delta : "", delta ? n : 0));
    }
    json_t *r = envelope(s, c, c->kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion",
                         json_pack("[o]", choice));
    if (c->include_usage) json_object_set_new(r, "usage", json_null());
    return r;
}

json_t *serve_reasoning_chunk_json(qilin_server *s, const serve_call *c, const char *text, size_t n) {
    json_t *choice = json_pack("{s:i, s:n, s:n, s:{s:o}}", "index", c->index, "logprobs", "finish_reason",
                               "delta", "reasoning_content", text_json(text, n));
    json_t *r = envelope(s, c, "chat.completion.chunk", json_pack("[o]", choice));
    if (c->include_usage) json_object_set_new(r, "usage", json_null());
    return r;
}

/* ---- streamed deltas ---- */

const char *serve_stream_events(qilin_server *s, const serve_call *c, serve_stream_pos *pos, bool final,
                                json_t *events) {
    const serve_job *j = c->job;
    const char *t = j->text ? j->text : "";
    size_t rb = 0, re = 0, cb = 0, ce = j->n_text;
    if (c->reasoning) serve_split_reasoning(t, j->n_text, c->opens_think, final, &rb, &re, &cb, &ce);
    size_t from = pos->reasoning_sent > rb ? pos->reasoning_sent : rb;
    if (re > from) json_array_append_new(events, serve_reasoning_chunk_json(s, c, t + from, re - from));
    if (re > from) pos->reasoning_sent = re;
    serve_tool_calls calls = {0};
    if (c->tools != SERVE_TOOLS_NONE && !final)
        ce = cb + serve_tool_calls_content_prefix(c->tools, t + cb, ce - cb);
    else if (c->tools != SERVE_TOOLS_NONE && serve_tool_calls_parse(c->tools, t + cb, ce - cb, &calls))
        ce = cb + calls.content_end;
    from = pos->content_sent > cb ? pos->content_sent : cb;
    json_t *chunk = ce > from ? serve_chunk_json(s, c, t + from, ce - from, false, NULL) : NULL;
    if (ce > from) pos->content_sent = ce;
    /* logprobs ride on the next content chunk (an empty one at the end if none comes) */
    if (j->logprobs && j->n_lps > pos->lps_sent && (chunk || final)) {
        if (!chunk) chunk = serve_chunk_json(s, c, "", 0, false, NULL);
        json_object_set_new(json_array_get(json_object_get(chunk, "choices"), 0), "logprobs",
                            logprobs_json(s, c, pos->lps_sent, j->n_lps, &pos->lps_offset));
        pos->lps_sent = j->n_lps;
    }
    if (chunk) json_array_append_new(events, chunk);
    const char *finish = j->finish_reason;
    if (calls.n > 0) {
        json_array_append_new(events, serve_tool_calls_chunk_json(s, c, &calls));
        if (finish && !strcmp(finish, "stop")) finish = "tool_calls";
    }
    serve_tool_calls_free(&calls);
    return finish;
}

/* ---- <think> ... </think> ---- */

/* The length of the longest suffix of t[from, n) that is a proper prefix of tag. */
static size_t partial_tag(const char *t, size_t from, size_t n, const char *tag) {
    size_t len = strlen(tag);
    for (size_t k = len - 1; k > 0; k--)
        if (n >= from + k && !memcmp(t + n - k, tag, k)) return k;
    return 0;
}

void serve_split_reasoning(const char *t, size_t n, bool opens_think, bool final, size_t *r_begin,
                           size_t *r_end, size_t *c_begin, size_t *c_end) {
    static const char open_tag[] = "<think>", close_tag[] = "</think>";
    size_t pos = 0;
    *r_begin = *r_end = *c_begin = *c_end = 0;
    if (!opens_think) {
        size_t ws = 0;
        while (ws < n && is_space(t[ws])) ws++;
        size_t rest = n - ws;
        if (rest >= sizeof open_tag - 1 && !memcmp(t + ws, open_tag, sizeof open_tag - 1)) {
            pos = ws + sizeof open_tag - 1;
        } else if (!final && rest < sizeof open_tag - 1 && !memcmp(t + ws, open_tag, rest)) {
            return; /* may still open a block: hold everything */
        } else {
            *c_end = n; /* no reasoning block */
            return;
        }
    }
    *r_begin = pos;
    const char *close = NULL;
    for (size_t i = pos; i + sizeof close_tag - 1 <= n && !close; i++)
        if (!memcmp(t + i, close_tag, sizeof close_tag - 1)) close = t + i;
    if (!close) {
        *r_end = final ? n : n - partial_tag(t, pos, n, close_tag);
        *c_begin = *c_end = *r_end;
        return;
    }
    *r_end = (size_t)(close - t);
    size_t c = *r_end + sizeof close_tag - 1;
    while (c < n && is_space(t[c])) c++;
    *c_begin = c, *c_end = n;
    if (c == n && !final) *c_begin = *c_end = n; /* the whitespace so far may be all of it */
}

json_t *serve_usage_chunk_json(qilin_server *s, const serve_call *c) {
    json_t *r =
        envelope(s, c, c->kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion", json_array());
    json_object_set_new(r, "usage", usage_json(c));
    return r;
}

/* ---- /tokenize, /detokenize, /v1/models (vLLM's shapes) ---- */

bool serve_tokenize(qilin_server *s, const char *body, size_t n, json_t **out, serve_error *e) {
    json_t *o = NULL;
    if (!parse_body(body, n, &o, e)) return false;
    qilin_ids ids = {0};
    bool has_messages = json_object_get(o, "messages") != NULL;
    bool add_special = !has_messages, add_generation_prompt = true;
    bool ok = check_model(s, o, e) && get_bool(o, "add_special_tokens", &add_special, e) &&
              get_bool(o, "add_generation_prompt", &add_generation_prompt, e);
    json_t *p = json_object_get(o, "prompt");
    if (ok && has_messages)
        ok = chat_prompt(s, o, NULL, add_generation_prompt, &ids, NULL, e);
    else if (ok && !json_is_string(p))
        ok = serve_fail(e, 400, "prompt", "prompt: expected a string, got %s", p ? json_kind(p) : "nothing");
    else if (ok &&
             qilin_tokenizer_encode(s->tok, json_string_value(p), json_string_length(p),
                                    (add_special ? QILIN_ENCODE_ADD_SPECIAL : 0) | QILIN_ENCODE_PARSE_SPECIAL,
                                    &ids) != QILIN_OK)
        ok = serve_fail(e, 400, "prompt", "tokenizing: %s", qilin_last_error());
    if (ok) {
        json_t *tokens = json_array();
        for (size_t i = 0; i < ids.n; i++) json_array_append_new(tokens, json_integer(ids.ids[i]));
        *out = json_pack("{s:i, s:i, s:o, s:n}", "count", (int)ids.n, "max_model_len", s->max_ctx, "tokens",
                         tokens, "token_strs");
    }
    qilin_ids_free(&ids);
    json_decref(o);
    return ok;
}

bool serve_detokenize(qilin_server *s, const char *body, size_t n, json_t **out, serve_error *e) {
    json_t *o = NULL;
    if (!parse_body(body, n, &o, e)) return false;
    json_t *t = json_object_get(o, "tokens");
    qilin_ids ids = {0};
    bool ok = check_model(s, o, e);
    if (ok && !json_is_array(t))
        ok = serve_fail(e, 400, "tokens", "tokens: expected a list of token ids, got %s",
                        t ? json_kind(t) : "nothing");
    if (ok) ok = ids_prompt(s, t, "tokens", &ids, e);
    char *text = NULL;
    size_t len = 0;
    if (ok && qilin_tokenizer_decode(s->tok, ids.ids, ids.n, 0, &text, &len) != QILIN_OK)
        ok = serve_fail(e, 400, "tokens", "decoding: %s", qilin_last_error());
    if (ok) *out = json_pack("{s:o}", "prompt", text_json(text, len));
    free(text);
    qilin_ids_free(&ids);
    json_decref(o);
    return ok;
}

json_t *serve_models_json(qilin_server *s) {
    json_t *model =
        json_pack("{s:s, s:s, s:I, s:s, s:s, s:n, s:i}", "id", s->model_name, "object", "model", "created",
                  (json_int_t)time(NULL), "owned_by", "qilin", "root",
                  s->model_path ? s->model_path : s->model_name, "parent", "max_model_len", s->max_ctx);
    return json_pack("{s:s, s:[o]}", "object", "list", "data", model);
}
