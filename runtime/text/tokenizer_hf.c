/* tokenizer_hf.c — Hugging Face formats: tokenizer.json, vocab.json +
 * merges.txt, and tokenizer_config.json (added tokens, BOS/EOS, chat template).
 *
 * tokenizer.json's sections map onto the pipeline one to one: "normalizer"
 * and "pre_tokenizer" become step lists, "model" (BPE only) the vocabulary and
 * merges, "post_processor" the ids put around a text, "decoder" is folded into
 * each token's decoded bytes. Anything else is QILIN_ERR_UNSUPPORTED naming
 * the type, never ignored. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "host/fileio.h"

#include "runtime/text/tokenizer_impl.h"

/* flags: JSON_DECODE_INT_AS_REAL for tokenizer_config.json, whose model_max_length
 * (1e30) overflows an integer and whose ids are object keys anyway. */
static json_t *load_json(const char *path, size_t flags, qilin_status *st) {
    char *text;
    size_t len;
    if ((*st = qilin_file_read(path, TOK_MAX_FILE_BYTES, &text, &len)) != QILIN_OK) return NULL;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL | flags, &err);
    free(text);
    if (!root) *st = qilin_error(QILIN_ERR_FORMAT, "%s:%d: malformed JSON: %s", path, err.line, err.text);
    return root;
}

static bool jbool(const json_t *o, const char *key, bool dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *jstr(const json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static const char *jtype(const json_t *o) {
    const char *s = jstr(o, "type");
    return s ? s : "(no type)";
}

/* {"String": s} or {"Regex": r}: a compiled regex (literal for String). */
static qilin_status parse_pattern(qilin_tokenizer *t, const json_t *pat, const char *what, pcre2_code **re,
                                  const char **literal) {
    const json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
    if (json_is_string(s)) {
        if (literal) *literal = json_string_value(s);
        return tok_regex_compile(json_string_value(s), json_string_length(s), true, what, re);
    }
    if (json_is_string(r)) return tok_regex_compile(json_string_value(r), json_string_length(r), false, what, re);
    return qilin_error(QILIN_ERR_FORMAT, "%s: %s: \"pattern\" is neither {\"String\": ...} nor {\"Regex\": ...}",
                       t->source, what);
}

/* ---- normalizer --------------------------------------------------------------------------- */

static qilin_status push_norm(qilin_tokenizer *t, tok_norm n) {
    if (t->n_norm == TOK_MAX_NORM) {
        pcre2_code_free(n.re);
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: more than %d normalizer steps", t->source, TOK_MAX_NORM);
    }
    t->norm[t->n_norm++] = n;
    return QILIN_OK;
}

static qilin_status parse_normalizer(qilin_tokenizer *t, const json_t *n) {
    if (!n || json_is_null(n)) return QILIN_OK;
    const char *type = jtype(n);
    static const struct {
        const char *name;
        tok_norm_kind kind;
    } unicode[] = {{"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC}, {"NFKD", TOK_NORM_NFKD},
                   {"Lowercase", TOK_NORM_LOWERCASE}};
    for (size_t i = 0; i < sizeof unicode / sizeof unicode[0]; i++)
        if (strcmp(type, unicode[i].name) == 0) return push_norm(t, (tok_norm){.kind = unicode[i].kind});
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(n, "normalizers"), i, v) QILIN_TRY(parse_normalizer(t, v));
        return QILIN_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const json_t *p = json_object_get(n, "prepend");
        if (!json_is_string(p)) return qilin_error(QILIN_ERR_FORMAT, "%s: normalizer Prepend needs \"prepend\"", t->source);
        return push_norm(t, (tok_norm){.kind = TOK_NORM_PREPEND, .a = json_string_value(p), .na = json_string_length(p)});
    }
    if (strcmp(type, "Replace") == 0) {
        const json_t *c = json_object_get(n, "content");
        if (!json_is_string(c)) return qilin_error(QILIN_ERR_FORMAT, "%s: normalizer Replace needs \"content\"", t->source);
        tok_norm r = {.kind = TOK_NORM_REPLACE, .b = json_string_value(c), .nb = json_string_length(c)};
        const json_t *s = json_object_get(json_object_get(n, "pattern"), "String");
        if (json_is_string(s)) {
            r.a = json_string_value(s);
            r.na = json_string_length(s);
        } else {
            QILIN_TRY(parse_pattern(t, json_object_get(n, "pattern"), "normalizer Replace", &r.re, NULL));
        }
        return push_norm(t, r);
    }
    if (strcmp(type, "Strip") == 0)
        return push_norm(t, (tok_norm){.kind = TOK_NORM_STRIP, .left = jbool(n, "strip_left", true),
                                       .right = jbool(n, "strip_right", true)});
    return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", t->source, type);
}

/* The normalizer strings above point into the JSON document; copy them before it goes. */
static qilin_status own_norm_strings(qilin_tokenizer *t) {
    for (int i = 0; i < t->n_norm; i++) {
        tok_norm *n = &t->norm[i];
        if (n->a && !(n->a = tok_arena_copy(&t->arena, n->a, n->na))) goto oom;
        if (n->b && !(n->b = tok_arena_copy(&t->arena, n->b, n->nb))) goto oom;
    }
    return QILIN_OK;
oom:
    return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: normalizer", t->source);
}

/* ---- pre-tokenizer ------------------------------------------------------------------------ */

static qilin_status push_pre(qilin_tokenizer *t, tok_pre p) {
    if (t->n_pre == TOK_MAX_PRE) {
        pcre2_code_free(p.re);
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", t->source, TOK_MAX_PRE);
    }
    t->pre[t->n_pre++] = p;
    return QILIN_OK;
}

static qilin_status parse_behavior(qilin_tokenizer *t, const json_t *o, tok_behavior *b) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s = jstr(o, "behavior");
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *b = (tok_behavior)i;
            return QILIN_OK;
        }
    return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: Split behavior \"%s\" is not supported", t->source, s ? s : "(none)");
}

static qilin_status add_regex_step(qilin_tokenizer *t, const char *re_src, tok_behavior b, bool invert) {
    pcre2_code *re = NULL;
    QILIN_TRY(tok_regex_compile(re_src, strlen(re_src), false, t->source, &re));
    return tok_add_split(t, re, b, invert);
}

static qilin_status parse_metaspace(qilin_tokenizer *t, const json_t *p) {
    tok_pre m = {.kind = TOK_PRE_METASPACE, .prepend = TOK_PREPEND_ALWAYS};
    const char *rep = jstr(p, "replacement");
    if (!rep || strlen(rep) == 0 || strlen(rep) >= sizeof m.repl)
        return qilin_error(QILIN_ERR_FORMAT, "%s: Metaspace needs a one-character \"replacement\"", t->source);
    memcpy(m.repl, rep, strlen(rep));
    m.nrepl = (uint8_t)strlen(rep);
    const char *scheme = jstr(p, "prepend_scheme");
    if (scheme) {
        if (strcmp(scheme, "first") == 0) m.prepend = TOK_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) m.prepend = TOK_PREPEND_NEVER;
        else if (strcmp(scheme, "always") != 0)
            return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: Metaspace prepend_scheme \"%s\"", t->source, scheme);
    } else if (!jbool(p, "add_prefix_space", true)) {
        m.prepend = TOK_PREPEND_NEVER;
    }
    if (jbool(p, "split", true)) QILIN_TRY(tok_regex_compile(rep, strlen(rep), true, t->source, &m.re));
    m.behavior = TOK_SPLIT_MERGED_WITH_NEXT;
    return push_pre(t, m);
}

static qilin_status parse_pre(qilin_tokenizer *t, const json_t *p) {
    if (!p || json_is_null(p)) return QILIN_OK;
    const char *type = jtype(p);
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, v) QILIN_TRY(parse_pre(t, v));
        return QILIN_OK;
    }
    if (strcmp(type, "Split") == 0) {
        tok_behavior b = TOK_SPLIT_ISOLATED;
        QILIN_TRY(parse_behavior(t, p, &b));
        pcre2_code *re = NULL;
        QILIN_TRY(parse_pattern(t, json_object_get(p, "pattern"), "pre-tokenizer Split", &re, NULL));
        return tok_add_split(t, re, b, jbool(p, "invert", false));
    }
    if (strcmp(type, "ByteLevel") == 0) {
        tok_pre s = {.kind = TOK_PRE_BYTELEVEL, .behavior = TOK_SPLIT_ISOLATED,
                     .prefix_space = jbool(p, "add_prefix_space", true)};
        t->byte_level = true;
        if (jbool(p, "use_regex", true)) {
            QILIN_TRY(tok_add_named_split(t, "gpt2", t->source)); /* compile via the table, then move it here */
            s.re = t->pre[--t->n_pre].re;
        }
        return push_pre(t, s);
    }
    if (strcmp(type, "Metaspace") == 0) return parse_metaspace(t, p);
    if (strcmp(type, "Digits") == 0)
        return add_regex_step(t, jbool(p, "individual_digits", false) ? "\\p{N}" : "\\p{N}+", TOK_SPLIT_ISOLATED, false);
    if (strcmp(type, "Whitespace") == 0) return add_regex_step(t, "\\w+|[^\\w\\s]+", TOK_SPLIT_REMOVED, true);
    if (strcmp(type, "WhitespaceSplit") == 0) return add_regex_step(t, "\\s+", TOK_SPLIT_REMOVED, false);
    if (strcmp(type, "Punctuation") == 0 || strcmp(type, "BertPreTokenizer") == 0) {
        tok_behavior b = TOK_SPLIT_ISOLATED;
        if (strcmp(type, "BertPreTokenizer") == 0) QILIN_TRY(add_regex_step(t, "\\s+", TOK_SPLIT_REMOVED, false));
        else if (json_object_get(p, "behavior")) QILIN_TRY(parse_behavior(t, p, &b));
        return add_regex_step(t, "[\\p{P}!-/:-@\\[-`{-~]", b, false);
    }
    return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported", t->source, type);
}

/* ---- post-processor and decoder ----------------------------------------------------------- */

static qilin_status template_ids(qilin_tokenizer *t, const json_t *specials, const char *name, bool after) {
    const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
    if (!json_is_array(ids))
        return qilin_error(QILIN_ERR_FORMAT, "%s: post_processor names special token \"%s\" without its ids",
                           t->source, name);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        int *n = after ? &t->n_post_suffix : &t->n_post_prefix;
        if (*n == TOK_MAX_POST) return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: post_processor adds too many ids", t->source);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: post_processor special token \"%s\" has an id that is not in "
                               "0 .. %d",
                               t->source, name, TOK_MAX_VOCAB - 1);
        (after ? t->post_suffix : t->post_prefix)[(*n)++] = (int32_t)json_integer_value(v);
    }
    return QILIN_OK;
}

static qilin_status parse_post(qilin_tokenizer *t, const json_t *p) {
    if (!p || json_is_null(p)) return QILIN_OK;
    const char *type = jtype(p);
    if (strcmp(type, "ByteLevel") == 0) return QILIN_OK; /* offsets only */
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(p, "processors"), i, v) QILIN_TRY(parse_post(t, v));
        return QILIN_OK;
    }
    t->has_post = true;
    if (strcmp(type, "TemplateProcessing") == 0) {
        bool after = false;
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(p, "single"), i, item) {
            const json_t *sp = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) after = true;
            else if (sp) QILIN_TRY(template_ids(t, json_object_get(p, "special_tokens"), jstr(sp, "id") ? jstr(sp, "id") : "", after));
        }
        return QILIN_OK;
    }
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        const json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
        if (t->n_post_prefix == TOK_MAX_POST || t->n_post_suffix == TOK_MAX_POST)
            return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: post_processor adds too many ids", t->source);
        t->post_prefix[t->n_post_prefix++] = (int32_t)json_integer_value(json_array_get(cls, 1));
        t->post_suffix[t->n_post_suffix++] = (int32_t)json_integer_value(json_array_get(sep, 1));
        return QILIN_OK;
    }
    return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: post_processor type \"%s\" is not supported", t->source, type);
}

static qilin_status parse_decoder(qilin_tokenizer *t, const json_t *d) {
    if (!d || json_is_null(d)) return QILIN_OK;
    const char *type = jtype(d);
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(d, "decoders"), i, v) QILIN_TRY(parse_decoder(t, v));
        return QILIN_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) t->dec_bytelevel = true;
    else if (strcmp(type, "ByteFallback") == 0) t->dec_bytefallback = true;
    else if (strcmp(type, "Fuse") == 0) return QILIN_OK;
    else if (strcmp(type, "Replace") == 0 || strcmp(type, "Metaspace") == 0) {
        bool meta = strcmp(type, "Metaspace") == 0;
        const char *from = meta ? jstr(d, "replacement") : jstr(json_object_get(d, "pattern"), "String");
        const char *to = meta ? " " : jstr(d, "content");
        if (!from || !to || t->dec_from)
            return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: decoder %s other than one string replacement", t->source, type);
        t->dec_from = tok_arena_copy(&t->arena, from, strlen(from));
        t->dec_to = tok_arena_copy(&t->arena, to, strlen(to));
        if (!t->dec_from || !t->dec_to) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: decoder", t->source);
        const char *scheme = jstr(d, "prepend_scheme");
        if (meta) t->strip_first_space = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", true);
    } else if (strcmp(type, "Strip") == 0) {
        const char *c = jstr(d, "content");
        json_int_t start = json_integer_value(json_object_get(d, "start")), stop = json_integer_value(json_object_get(d, "stop"));
        if (!c || strcmp(c, " ") != 0 || start > 1 || stop != 0)
            return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: decoder Strip other than one leading space", t->source);
        t->strip_first_space = start == 1;
    } else {
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: decoder type \"%s\" is not supported", t->source, type);
    }
    return QILIN_OK;
}

/* ---- model -------------------------------------------------------------------------------- */

static qilin_status parse_vocab(qilin_tokenizer *t, const json_t *vocab, const char *what) {
    if (!json_is_object(vocab)) return qilin_error(QILIN_ERR_FORMAT, "%s: %s is not an object", t->source, what);
    tok_allow_ids(t, json_object_size(vocab));
    QILIN_TRY(tok_reserve_vocab(t, (int32_t)json_object_size(vocab)));
    QILIN_TRY(tok_strmap_reserve(&t->vocab, json_object_size(vocab)));
    QILIN_TRY(tok_strmap_reserve(&t->vocab_bytes, json_object_size(vocab)));
    QILIN_TRY(tok_pairmap_reserve(&t->merges, json_object_size(vocab)));
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_MAX_VOCAB)
            return qilin_error(QILIN_ERR_FORMAT, "%s: %s[\"%s\"] is not an id in 0 .. %d", t->source, what,
                               key, TOK_MAX_VOCAB - 1);
        QILIN_TRY(tok_set_vocab(t, (int32_t)json_integer_value(v), key, strlen(key), true));
    }
    return QILIN_OK;
}

/* where: the file; line > 0 for merges.txt, else the merge is model.merges[rank] of tokenizer.json. */
static qilin_status add_merge(qilin_tokenizer *t, const char *a, size_t na, const char *b, size_t nb, uint32_t rank,
                              const char *where, int line) {
    int32_t ia = tok_strmap_get(&t->vocab, a, na), ib = tok_strmap_get(&t->vocab, b, nb);
    char small[256], *joined = na + nb <= sizeof small ? small : malloc(na + nb);
    if (!joined) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: merges", where);
    memcpy(joined, a, na);
    memcpy(joined + na, b, nb);
    int32_t id = tok_strmap_get(&t->vocab, joined, na + nb);
    if (joined != small) free(joined);
    if ((ia < 0 || ib < 0 || id < 0) && line > 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s:%d: merge \"%.*s %.*s\" uses a token not in the vocabulary", where,
                           line, (int)na, a, (int)nb, b);
    if (ia < 0 || ib < 0 || id < 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: model.merges[%u] \"%.*s %.*s\" uses a token not in the vocabulary",
                           where, rank, (int)na, a, (int)nb, b);
    return tok_pairmap_put(&t->merges, ia, ib, rank, id);
}

static qilin_status parse_merges(qilin_tokenizer *t, const json_t *merges) {
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return qilin_error(QILIN_ERR_FORMAT, "%s: model.merges[%zu] \"%s\" is not two tokens", t->source, i, s);
            QILIN_TRY(add_merge(t, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), (uint32_t)i, t->source, 0));
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            const json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            QILIN_TRY(add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                                json_string_length(b), (uint32_t)i, t->source, 0));
        } else {
            return qilin_error(QILIN_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]", t->source, i);
        }
    }
    return QILIN_OK;
}

static qilin_status parse_model(qilin_tokenizer *t, const json_t *m) {
    const char *type = jstr(m, "type");
    if (!type && json_object_get(m, "merges")) type = "BPE"; /* older files omit it */
    if (!type || strcmp(type, "BPE") != 0)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE)", t->source,
                           type ? type : "(none)");
    const json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout))
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: model.dropout must be null (BPE dropout is for training)", t->source);
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *v = jstr(m, keys[i]);
        if (v && *v) return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: model.%s \"%s\"", t->source, keys[i], v);
    }
    t->model = TOK_MODEL_MERGES;
    t->byte_fallback = jbool(m, "byte_fallback", false);
    t->ignore_merges = jbool(m, "ignore_merges", false);
    t->fuse_unk = jbool(m, "fuse_unk", false);
    QILIN_TRY(parse_vocab(t, json_object_get(m, "vocab"), "model.vocab"));
    const char *unk = jstr(m, "unk_token");
    if (unk && (t->unk_id = tok_strmap_get(&t->vocab, unk, strlen(unk))) < 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in the vocabulary", t->source, unk);
    const json_t *merges = json_object_get(m, "merges");
    if (!json_is_array(merges)) return qilin_error(QILIN_ERR_FORMAT, "%s: model.merges is not an array", t->source);
    return parse_merges(t, merges);
}

static qilin_status parse_added_token(qilin_tokenizer *t, const json_t *o, int32_t id, const char *where) {
    const json_t *c = json_object_get(o, "content");
    if (!json_is_string(c)) return qilin_error(QILIN_ERR_FORMAT, "%s: %s has no \"content\"", t->source, where);
    bool special = jbool(o, "special", false);
    tok_added a = {.id = id, .text = json_string_value(c), .len = (uint32_t)json_string_length(c), .special = special,
                   .lstrip = jbool(o, "lstrip", false), .rstrip = jbool(o, "rstrip", false),
                   .single_word = jbool(o, "single_word", false), .normalized = jbool(o, "normalized", !special)};
    return tok_add_added(t, &a);
}

static qilin_status parse_added(qilin_tokenizer *t, const json_t *added) {
    size_t i;
    json_t *o;
    json_array_foreach(added, i, o) {
        const json_t *id = json_object_get(o, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_VOCAB)
            return qilin_error(QILIN_ERR_FORMAT, "%s: added_tokens[%zu] has no id in 0 .. %d", t->source, i,
                               TOK_MAX_VOCAB - 1);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        QILIN_TRY(parse_added_token(t, o, (int32_t)json_integer_value(id), where));
    }
    return QILIN_OK;
}

/* ---- tokenizer_config.json ---------------------------------------------------------------- */

static const char *token_string(const json_t *v) { /* "text" or {"content": "text"} */
    return json_is_string(v) ? json_string_value(v) : jstr(v, "content");
}

qilin_status tok_read_config(qilin_tokenizer *t, const char *path, bool take_added, int *add_bos, int *add_eos) {
    *add_bos = *add_eos = -1;
    if (!tok_file_exists(path)) return QILIN_OK;
    qilin_status st = QILIN_OK;
    json_t *root = load_json(path, JSON_DECODE_INT_AS_REAL, &st);
    if (!root) return st;
    const char *key;
    json_t *v;
    if (take_added) {
        tok_allow_ids(t, json_object_size(json_object_get(root, "added_tokens_decoder")));
        json_object_foreach(json_object_get(root, "added_tokens_decoder"), key, v) {
            char *end = NULL;
            long id = strtol(key, &end, 10);
            if (!end || end == key || *end || id < 0 || id >= TOK_MAX_VOCAB) {
                st = qilin_error(QILIN_ERR_FORMAT, "%s: added_tokens_decoder key \"%s\" is not an id", path, key);
                break;
            }
            if (id < t->n_vocab && t->text[id]) continue; /* tokenizer.json already has it */
            char where[96];
            snprintf(where, sizeof where, "added_tokens_decoder[\"%s\"] in %s", key, path);
            if ((st = parse_added_token(t, v, (int32_t)id, where)) != QILIN_OK) {
                st = qilin_error_context(st, "%s: ", where);
                break;
            }
        }
    }
    const char *bos = token_string(json_object_get(root, "bos_token"));
    const char *eos = token_string(json_object_get(root, "eos_token"));
    if (bos && !(t->bos_text = tok_arena_copy(&t->arena, bos, strlen(bos)))) st = QILIN_ERR_OUT_OF_MEMORY;
    if (eos && !(t->eos_text = tok_arena_copy(&t->arena, eos, strlen(eos)))) st = QILIN_ERR_OUT_OF_MEMORY;
    const json_t *b = json_object_get(root, "add_bos_token"), *e = json_object_get(root, "add_eos_token");
    if (json_is_boolean(b)) *add_bos = json_is_true(b);
    if (json_is_boolean(e)) *add_eos = json_is_true(e);
    const json_t *tmpl = json_object_get(root, "chat_template");
    const char *text = json_string_value(tmpl);
    size_t i;
    json_array_foreach(tmpl, i, v) { /* [{"name": "default", "template": ...}, ...] */
        const char *name = jstr(v, "name");
        if (name && strcmp(name, "default") == 0) text = jstr(v, "template");
    }
    if (json_is_array(tmpl) && !text)
        st = qilin_error(QILIN_ERR_FORMAT, "%s: chat_template is a list without a \"default\" entry", path);
    if (text && st == QILIN_OK && !(t->chat_template = tok_arena_copy(&t->arena, text, strlen(text))))
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: chat_template", path);
    json_decref(root);
    return st == QILIN_ERR_OUT_OF_MEMORY ? qilin_error(st, "%s: strings", path) : st;
}

qilin_status tok_read_template_file(qilin_tokenizer *t, const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return QILIN_OK; /* no template file; anything else there must be a regular file */
    char *buf;
    size_t got;
    QILIN_TRY(qilin_file_read(path, TOK_MAX_FILE_BYTES, &buf, &got));
    t->chat_template = tok_arena_copy(&t->arena, buf, got);
    free(buf);
    return t->chat_template ? QILIN_OK : qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s", path);
}

void tok_apply_add_flags(qilin_tokenizer *t, int add_bos, int add_eos) {
    if (t->has_post) return; /* the file's post-processor decides */
    t->bos = t->bos_text[0] ? qilin_tokenizer_token_id(t, t->bos_text) : t->bos;
    t->eos = t->eos_text[0] ? qilin_tokenizer_token_id(t, t->eos_text) : t->eos;
    if (add_bos == 1 && t->bos >= 0) t->post_prefix[0] = t->bos, t->n_post_prefix = 1;
    if (add_bos == 0) t->n_post_prefix = 0;
    if (add_eos == 1 && t->eos >= 0) t->post_suffix[0] = t->eos, t->n_post_suffix = 1;
    if (add_eos == 0) t->n_post_suffix = 0;
}

/* Resolves BOS/EOS ids from their texts, then the template beside the file. */
static qilin_status finish_common(qilin_tokenizer *t, const char *dir, int add_bos, int add_eos) {
    QILIN_TRY(tok_finish(t));
    if (t->bos_text[0]) t->bos = qilin_tokenizer_token_id(t, t->bos_text);
    if (t->eos_text[0]) t->eos = qilin_tokenizer_token_id(t, t->eos_text);
    tok_apply_add_flags(t, add_bos, add_eos);
    return tok_read_template_file(t, dir);
}

static void dir_of(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, cap, ".");
}

static qilin_status load_hf_json(qilin_tokenizer *t, json_t *root, const char *path) {
    char dir[4096], config[4200];
    dir_of(path, dir, sizeof dir);
    snprintf(config, sizeof config, "%s/tokenizer_config.json", dir);
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return qilin_error(QILIN_ERR_FORMAT, "%s: no \"model\" object", path);
    tok_allow_ids(t, json_array_size(json_object_get(root, "added_tokens"))); /* they may fill vocab gaps */
    QILIN_TRY(parse_model(t, model));
    QILIN_TRY(parse_added(t, json_object_get(root, "added_tokens")));
    QILIN_TRY(parse_normalizer(t, json_object_get(root, "normalizer")));
    QILIN_TRY(own_norm_strings(t));
    QILIN_TRY(parse_pre(t, json_object_get(root, "pre_tokenizer")));
    QILIN_TRY(parse_post(t, json_object_get(root, "post_processor")));
    QILIN_TRY(parse_decoder(t, json_object_get(root, "decoder")));
    int add_bos = -1, add_eos = -1;
    QILIN_TRY(tok_read_config(t, config, true, &add_bos, &add_eos));
    QILIN_TRY(finish_common(t, dir, add_bos, add_eos));
    snprintf(t->describe, sizeof t->describe, "%s BPE (tokenizer.json), %d tokens, %d added, %d merges",
             t->byte_level ? "byte-level" : t->byte_fallback ? "byte-fallback" : "character", (int)t->n_vocab,
             t->n_added, (int)t->merges.count);
    return QILIN_OK;
}

qilin_status tok_load_hf_json(const char *path, qilin_tokenizer **out) {
    qilin_status st = QILIN_OK;
    json_t *root = load_json(path, 0, &st);
    if (!root) return st;
    qilin_tokenizer *t = NULL;
    st = tok_new(path, &t);
    if (st == QILIN_OK) st = load_hf_json(t, root, path);
    json_decref(root);
    if (st != QILIN_OK) {
        qilin_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}

/* ---- vocab.json + merges.txt -------------------------------------------------------------- */

static qilin_status read_merges_txt(qilin_tokenizer *t, const char *path) {
    FILE *f;
    QILIN_TRY(qilin_file_fopen(path, &f));
    char line[2048];
    uint32_t rank = 0;
    qilin_status st = QILIN_OK;
    for (int lineno = 1; st == QILIN_OK && fgets(line, sizeof line, f); lineno++) {
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        if (n == 0 || strncmp(line, "#version", 8) == 0) continue;
        char *sp = strchr(line, ' ');
        if (!sp || strchr(sp + 1, ' ')) {
            st = qilin_error(QILIN_ERR_FORMAT, "%s:%d: \"%s\" is not two tokens", path, lineno, line);
            break;
        }
        st = add_merge(t, line, (size_t)(sp - line), sp + 1, strlen(sp + 1), rank++, path, lineno);
    }
    fclose(f);
    return st;
}

static qilin_status load_vocab_merges(qilin_tokenizer *t, const char *dir) {
    char path[4200], config[4200];
    snprintf(config, sizeof config, "%s/tokenizer_config.json", dir);
    qilin_status st = QILIN_OK;
    json_t *cfg = tok_file_exists(config) ? load_json(config, JSON_DECODE_INT_AS_REAL, &st) : NULL;
    if (st != QILIN_OK) return st;
    const char *cls = cfg ? jstr(cfg, "tokenizer_class") : NULL;
    bool qwen = cls && strncmp(cls, "Qwen2Tokenizer", 14) == 0, gpt2 = cls && strncmp(cls, "GPT2Tokenizer", 13) == 0;
    if (!qwen && !gpt2) {
        st = qilin_error(QILIN_ERR_UNSUPPORTED, "%s: vocab.json + merges.txt with tokenizer_class \"%s\" in %s (qilin "
                         "knows Qwen2Tokenizer and GPT2Tokenizer)", dir, cls ? cls : "(none)", config);
        json_decref(cfg);
        return st;
    }
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    json_t *vocab = load_json(path, 0, &st);
    if (!vocab) return st;
    st = parse_vocab(t, vocab, "vocab.json");
    json_decref(vocab);
    QILIN_TRY(st);
    t->model = TOK_MODEL_MERGES;
    t->byte_level = t->dec_bytelevel = true;
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    QILIN_TRY(read_merges_txt(t, path));
    if (qwen) { /* what transformers' Qwen2 converter writes into tokenizer.json */
        QILIN_TRY(push_norm(t, (tok_norm){.kind = TOK_NORM_NFC}));
        QILIN_TRY(tok_add_named_split(t, "qwen2", config));
        QILIN_TRY(push_pre(t, (tok_pre){.kind = TOK_PRE_BYTELEVEL}));
    } else {
        QILIN_TRY(tok_add_named_split(t, "gpt2", config));
    }
    int add_bos = -1, add_eos = -1;
    QILIN_TRY(tok_read_config(t, config, true, &add_bos, &add_eos));
    QILIN_TRY(finish_common(t, dir, add_bos, add_eos));
    snprintf(t->describe, sizeof t->describe, "byte-level BPE (vocab.json + merges.txt), %d tokens, %s split",
             (int)t->n_vocab, qwen ? "qwen2" : "gpt2");
    return QILIN_OK;
}

qilin_status tok_load_vocab_merges(const char *dir, qilin_tokenizer **out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    qilin_tokenizer *t = NULL;
    QILIN_TRY(tok_new(path, &t));
    qilin_status st = load_vocab_merges(t, dir);
    if (st != QILIN_OK) {
        qilin_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}
