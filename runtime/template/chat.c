/* chat.c — finds a model's chat template, renders conversations with it the
 * way transformers' apply_chat_template does (see chat.h for the rules it
 * reproduces), and filters <think> blocks out of streamed output. */
#define _GNU_SOURCE /* memmem, strdup */
#include "runtime/chat.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "host/fileio.h"
#include "runtime/jinja.h"

#define CHAT_FILE_MAX ((size_t)16 << 20) /* tokenizer_config.json / .jinja files are KBs */
#define CHAT_MAX_TEMPLATES 16

typedef struct named_template {
    char *name;
    qilin_jinja_template *tpl;
} named_template;

struct qilin_chat_template {
    named_template v[CHAT_MAX_TEMPLATES];
    size_t n;
    char *bos, *eos;
};

/* ---------------------------------------------------------------- loading */

static qilin_status read_file(const char *path, char **out, size_t *len) {
    FILE *f;
    qilin_status opened = qilin_file_fopen(path, &f); /* a FIFO or directory is refused, not waited on */
    if (opened != QILIN_OK) return qilin_error_context(opened, "chat template: ");
    {
        char *buf = NULL;
        size_t n = 0, cap = 0;
        for (;;) {
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                char *p = cap <= CHAT_FILE_MAX + 1 ? realloc(buf, cap + 1) : NULL;
                if (!p) {
                    free(buf);
                    fclose(f);
                    return qilin_error(cap > CHAT_FILE_MAX ? QILIN_ERR_FORMAT : QILIN_ERR_OUT_OF_MEMORY,
                                       "chat template: '%s' is larger than %zu bytes or memory ran out", path,
                                       CHAT_FILE_MAX);
                }
                buf = p;
            }
            size_t got = fread(buf + n, 1, cap - n, f);
            n += got;
            if (got == 0) break;
        }
        bool err = ferror(f);
        fclose(f);
        if (err) {
            free(buf);
            return qilin_error(QILIN_ERR_IO, "chat template: error reading '%s'", path);
        }
        buf[n] = 0;
        *out = buf;
        if (len) *len = n;
    }
    return QILIN_OK;
}

static bool is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}
static bool is_file(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

static char *join_path(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static qilin_status add_template(qilin_chat_template *t, const char *name, const char *src, size_t len,
                                 const char *origin) {
    if (t->n == CHAT_MAX_TEMPLATES)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "chat template: more than %d named templates in %s",
                           CHAT_MAX_TEMPLATES, origin);
    char label[512];
    snprintf(label, sizeof label, "%s%s%s", origin, strcmp(name, "default") ? ":" : "",
             strcmp(name, "default") ? name : "");
    named_template *e = &t->v[t->n];
    if (!(e->name = strdup(name)))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    qilin_status st = qilin_jinja_parse(src, len, label, &e->tpl);
    if (st != QILIN_OK) {
        free(e->name);
        return st;
    }
    t->n++;
    return QILIN_OK;
}

/* "<s>" or {"__type": "AddedToken", "content": "<s>", ...}; NULL for null/absent. */
static qilin_status token_string(const json_t *cfg, const char *key, const char *file, char **out) {
    const json_t *v = json_object_get(cfg, key);
    *out = NULL;
    if (!v || json_is_null(v)) return QILIN_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return qilin_error(QILIN_ERR_FORMAT, "chat template: %s: \"%s\" is not a string or AddedToken", file,
                           key);
    if (!(*out = strdup(json_string_value(v))))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    return QILIN_OK;
}

/* Reads tokenizer_config.json: BOS/EOS always, the template(s) when want_template. */
static qilin_status load_config(qilin_chat_template *t, const char *file, bool want_template) {
    json_error_t je;
    char *text;
    size_t len;
    qilin_status read = read_file(file, &text, &len);
    if (read != QILIN_OK) return read;
    json_t *cfg = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &je); /* Kimi's model_max_length is 1e30 */
    free(text);
    if (!cfg)
        return qilin_error(QILIN_ERR_FORMAT, "chat template: %s: invalid JSON at line %d: %s", file, je.line,
                           je.text);
    qilin_status st = QILIN_OK;
    if (!json_is_object(cfg))
        st = qilin_error(QILIN_ERR_FORMAT, "chat template: %s is not a JSON object", file);
    if (st == QILIN_OK && !t->bos) st = token_string(cfg, "bos_token", file, &t->bos);
    if (st == QILIN_OK && !t->eos) st = token_string(cfg, "eos_token", file, &t->eos);
    const json_t *ct = json_object_get(cfg, "chat_template");
    if (st == QILIN_OK && want_template) {
        if (json_is_string(ct)) {
            st = add_template(t, "default", json_string_value(ct), json_string_length(ct), file);
        } else if (json_is_array(ct)) { /* [{"name": ..., "template": ...}, ...] */
            for (size_t i = 0; i < json_array_size(ct) && st == QILIN_OK; i++) {
                const json_t *e = json_array_get(ct, i), *n = json_object_get(e, "name"),
                             *s = json_object_get(e, "template");
                if (!json_is_string(n) || !json_is_string(s))
                    st = qilin_error(
                        QILIN_ERR_FORMAT,
                        "chat template: %s: chat_template[%zu] needs string \"name\" and \"template\"", file,
                        i);
                else
                    st = add_template(t, json_string_value(n), json_string_value(s), json_string_length(s),
                                      file);
            }
        } else {
            st = qilin_error(
                QILIN_ERR_FORMAT,
                "chat template: %s has no \"chat_template\" (string or list of {name, template})", file);
        }
    }
    json_decref(cfg);
    return st;
}

static qilin_status load_jinja_file(qilin_chat_template *t, const char *file) {
    char *src = NULL;
    size_t len = 0;
    QILIN_TRY(read_file(file, &src, &len));
    qilin_status st = add_template(t, "default", src, len, file);
    free(src);
    return st;
}

static qilin_status load_into(qilin_chat_template *t, const char *path, const char *template_file) {
    char *cfg = NULL, *jinja = NULL;
    qilin_status st = QILIN_OK;
    if (path && is_dir(path)) {
        cfg = join_path(path, "tokenizer_config.json");
        jinja = join_path(path, "chat_template.jinja");
        if (!cfg || !jinja) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    } else if (path) {
        if (!is_file(path))
            st = qilin_error(QILIN_ERR_IO, "chat template: '%s' is neither a directory nor a file", path);
        else if (ends_with(path, ".json"))
            cfg = strdup(path);
        else if (!template_file)
            template_file = path; /* a bare template file */
    }
    bool have_cfg = st == QILIN_OK && cfg && is_file(cfg);
    if (st == QILIN_OK && template_file) {
        if (!is_file(template_file))
            st = qilin_error(QILIN_ERR_IO, "chat template: cannot open '%s'", template_file);
        else if (ends_with(template_file, ".json"))
            st = load_config(t, template_file, true);
        else
            st = load_jinja_file(t, template_file);
        if (st == QILIN_OK && have_cfg) st = load_config(t, cfg, false);
    } else if (st == QILIN_OK) {
        /* transformers: chat_template.jinja beside the config wins over the config's entry */
        if (jinja && is_file(jinja)) {
            st = load_jinja_file(t, jinja);
            if (st == QILIN_OK && have_cfg) st = load_config(t, cfg, false);
        } else if (have_cfg) {
            st = load_config(t, cfg, true);
        } else {
            st = qilin_error(QILIN_ERR_IO,
                             "chat template: no chat_template.jinja or tokenizer_config.json in '%s'",
                             path ? path : "");
        }
    }
    free(cfg);
    free(jinja);
    return st;
}

qilin_status qilin_chat_template_load(const char *path, const char *template_file,
                                      qilin_chat_template **out) {
    *out = NULL;
    if (!path && !template_file)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_chat_template_load: no path");
    qilin_chat_template *t = calloc(1, sizeof *t);
    if (!t) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    qilin_status st = load_into(t, path, template_file);
    if (st != QILIN_OK) {
        qilin_chat_template_free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}

qilin_status qilin_chat_template_parse(const char *source, const char *name, qilin_chat_template **out) {
    *out = NULL;
    if (!source) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_chat_template_parse: NULL source");
    qilin_chat_template *t = calloc(1, sizeof *t);
    if (!t) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    qilin_status st = add_template(t, "default", source, strlen(source), name ? name : "chat_template");
    if (st != QILIN_OK) {
        free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}

void qilin_chat_template_free(qilin_chat_template *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        qilin_jinja_free(t->v[i].tpl);
    }
    free(t->bos);
    free(t->eos);
    free(t);
}

const char *qilin_chat_template_bos(const qilin_chat_template *t) { return t ? t->bos : NULL; }
const char *qilin_chat_template_eos(const qilin_chat_template *t) { return t ? t->eos : NULL; }

/* ---------------------------------------------------------------- rendering */

static const named_template *pick(const qilin_chat_template *t, const char *name, bool have_tools) {
    const char *want = name ? name : (have_tools ? "tool_use" : "default");
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < t->n; i++)
            if (!strcmp(t->v[i].name, want)) return &t->v[i];
        if (name || pass) break;
        want = "default";
    }
    return NULL;
}

/* A message as transformers hands it to the template: null values dropped,
 * reasoning aliased under "thinking" and "reasoning_content". */
static qilin_status prepare_message(const json_t *m, size_t index, json_t **out) {
    if (!json_is_object(m))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "chat: message %zu is not a JSON object", index);
    const json_t *reasoning = NULL;
    static const char *const fields[] = {"reasoning_content", "thinking", "reasoning"};
    for (size_t k = 0; k < 3 && !reasoning; k++) {
        const json_t *r = json_object_get(m, fields[k]);
        if (r && !json_is_null(r)) reasoning = r;
    }
    json_t *o = json_object();
    if (!o) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat: out of memory");
    int rc = reasoning ? json_object_set(o, "thinking", (json_t *)reasoning) : 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)m, key, val) {
        if (!json_is_null(val)) rc |= json_object_set(o, key, val);
    }
    if (reasoning) rc |= json_object_set(o, "reasoning_content", (json_t *)reasoning);
    if (rc) {
        json_decref(o);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat: out of memory");
    }
    *out = o;
    return QILIN_OK;
}

static qilin_status build_context(const qilin_chat_template *t, const char *messages_json,
                                  const qilin_chat_options *o, json_t *ctx) {
    json_error_t je;
    json_t *msgs = json_loads(messages_json, JSON_DECODE_ANY, &je), *list = json_array(), *kw = NULL;
    qilin_status st = QILIN_OK;
    if (!msgs)
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "chat: messages are not valid JSON (line %d: %s)",
                         je.line, je.text);
    else if (!json_is_array(msgs))
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "chat: messages must be a JSON array");
    else if (json_array_size(msgs) == 0)
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                         "chat: cannot apply a chat template to an empty conversation");
    for (size_t i = 0; st == QILIN_OK && i < json_array_size(msgs); i++) {
        json_t *m = NULL;
        st = prepare_message(json_array_get(msgs, i), i, &m);
        if (st == QILIN_OK && json_array_append_new(list, m))
            st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat: out of memory");
    }
    if (st == QILIN_OK && o->kwargs_json) {
        kw = json_loads(o->kwargs_json, JSON_DECODE_ANY, &je);
        if (!json_is_object(kw))
            st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "chat: kwargs must be a JSON object (%s)",
                             kw ? "not an object" : je.text);
    }
    /* template_kwargs = {**special_tokens_map, **kwargs}; then messages/tools/documents/add_generation_prompt
     */
    const char *bos = o->bos_token ? o->bos_token : t->bos, *eos = o->eos_token ? o->eos_token : t->eos;
    int rc = 0;
    if (st == QILIN_OK) {
        if (bos) rc |= json_object_set_new(ctx, "bos_token", json_string(bos));
        if (eos) rc |= json_object_set_new(ctx, "eos_token", json_string(eos));
        if (kw) rc |= json_object_update(ctx, kw);
        json_t *tools = kw ? json_object_get(kw, "tools") : NULL,
               *docs = kw ? json_object_get(kw, "documents") : NULL;
        rc |= json_object_set(ctx, "tools", tools ? tools : json_null());
        rc |= json_object_set(ctx, "documents", docs ? docs : json_null());
        rc |= json_object_set(ctx, "messages", list);
        rc |= json_object_set_new(ctx, "add_generation_prompt", json_boolean(o->add_generation_prompt));
        if (rc) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat: out of memory");
    }
    json_decref(msgs);
    json_decref(list);
    json_decref(kw);
    return st;
}

qilin_status qilin_chat_render(const qilin_chat_template *t, const char *messages_json,
                               const qilin_chat_options *opt, char **out) {
    *out = NULL;
    if (!t || !messages_json)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_chat_render: NULL template or messages");
    qilin_chat_options defaults = {0};
    const qilin_chat_options *o = opt ? opt : &defaults;
    json_t *ctx = json_object();
    if (!ctx) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat: out of memory");
    qilin_status st = build_context(t, messages_json, o, ctx);
    const json_t *tools = json_object_get(ctx, "tools");
    const named_template *nt =
        st == QILIN_OK ? pick(t, o->template_name, tools && !json_is_null(tools)) : NULL;
    if (st == QILIN_OK && !nt)
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "chat: no template named '%s' (and no \"default\")",
                         o->template_name ? o->template_name : "default");
    if (st == QILIN_OK) {
        qilin_jinja_options jo = {.max_output = o->max_output, .max_steps = o->max_steps, .now = o->now};
        st = qilin_jinja_render_json(nt->tpl, ctx, &jo, out, NULL);
    }
    json_decref(ctx);
    return st;
}

/* ---------------------------------------------------------------- <think> filter */

static const char THINK_OPEN[] = "<think>", THINK_CLOSE[] = "</think>";

bool qilin_chat_prompt_opens_think(const char *prompt) {
    size_t n = strlen(prompt);
    while (n > 0 &&
           (prompt[n - 1] == '\n' || prompt[n - 1] == ' ' || prompt[n - 1] == '\r' || prompt[n - 1] == '\t'))
        n--;
    size_t k = sizeof THINK_OPEN - 1;
    return n >= k && !memcmp(prompt + n - k, THINK_OPEN, k);
}

struct qilin_think_filter {
    bool show, in_think, skip_ws;
    char *pending, *visible; /* held-back bytes; the last returned text */
    size_t npending, cap, nvisible, vcap;
};

qilin_status qilin_think_filter_create(bool show_reasoning, bool starts_in_reasoning,
                                       qilin_think_filter **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "think filter: out of memory");
    (*out)->show = show_reasoning;
    (*out)->in_think = starts_in_reasoning;
    return QILIN_OK;
}

void qilin_think_filter_free(qilin_think_filter *f) {
    if (!f) return;
    free(f->pending);
    free(f->visible);
    free(f);
}

bool qilin_think_filter_in_reasoning(const qilin_think_filter *f) { return f->in_think; }

static bool grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Longest suffix of s[0..n) that is a proper prefix of tag: it may be a tag split across pieces. */
static size_t partial_tag(const char *s, size_t n, const char *tag) {
    size_t k = strlen(tag) - 1;
    for (size_t len = n < k ? n : k; len > 0; len--)
        if (!memcmp(s + n - len, tag, len)) return len;
    return 0;
}

static bool emit(qilin_think_filter *f, const char *s, size_t n) {
    if (!grow(&f->visible, &f->vcap, f->nvisible + n + 1)) return false;
    memcpy(f->visible + f->nvisible, s, n);
    f->nvisible += n;
    f->visible[f->nvisible] = 0;
    return true;
}

/* Consumes as much of the pending bytes as can be decided now. Hidden
 * reasoning is dropped; shown reasoning passes through with its tags. */
static bool drain(qilin_think_filter *f) {
    size_t i = 0, n = f->npending;
    const char *p = f->pending;
    for (;;) {
        bool in = f->in_think;
        const char *tag = in ? THINK_CLOSE : THINK_OPEN;
        size_t k = strlen(tag);
        if (!in && f->skip_ws) {
            while (i < n && (p[i] == '\n' || p[i] == ' ' || p[i] == '\r' || p[i] == '\t')) i++;
            if (i == n) break;
            f->skip_ws = false;
        }
        const char *hit = memmem(p + i, n - i, tag, k);
        size_t end = hit ? (size_t)(hit - p) + k : n - partial_tag(p + i, n - i, tag);
        size_t shown = (!in && hit) ? end - k : end; /* text before <think> is always visible */
        if ((f->show || !in) && !emit(f, p + i, (f->show ? end : shown) - i)) return false;
        i = end;
        if (!hit) break;
        f->in_think = !in;
        f->skip_ws = in && !f->show; /* R1 puts "\n\n" after </think> */
    }
    memmove(f->pending, f->pending + i, n - i);
    f->npending = n - i;
    return true;
}

qilin_status qilin_think_filter_push(qilin_think_filter *f, const char *text, size_t len,
                                     const char **visible, size_t *visible_len) {
    f->nvisible = 0;
    bool ok = grow(&f->pending, &f->cap, f->npending + len + 1);
    if (ok) {
        memcpy(f->pending + f->npending, text, len);
        f->npending += len;
        ok = drain(f);
    }
    if (!ok) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "think filter: out of memory");
    *visible = f->visible ? f->visible : "";
    *visible_len = f->nvisible;
    return QILIN_OK;
}

qilin_status qilin_think_filter_finish(qilin_think_filter *f, const char **visible, size_t *visible_len) {
    f->nvisible = 0;
    if ((f->show || !f->in_think) && f->npending && !emit(f, f->pending, f->npending))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "think filter: out of memory");
    f->npending = 0;
    *visible = f->visible ? f->visible : "";
    *visible_len = f->nvisible;
    return QILIN_OK;
}
