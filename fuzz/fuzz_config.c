/* fuzz_config.c — libFuzzer target for host/config.c through its in-memory
 * entry point, hf_config_parse. A rejected input must fail with a status and
 * a message and return no handle. On an accepted one every getter is called
 * on a fixed set of real config keys and on every key actually present (top
 * level and one object down, so dotted paths are reached), plus
 * hf_config_sub and hf_generation_config_read: each must succeed or fail
 * with QILIN_ERR_FORMAT and a message, and the *_or getters must return the
 * default for an absent key. */
#include "fuzz_util.h"

#include <jansson.h>

#include "host/config.h"

static const char *const kKeys[] = {
    "hidden_size",
    "num_attention_heads",
    "rope_theta",
    "rope_scaling.factor",
    "rope_scaling.type",
    "eos_token_id",
    "tie_word_embeddings",
    "architectures",
    "text_config.hidden_size",
    "model_type",
    "quantization_config.weight_block_size",
    "a.b.c.d",
    ".",
    "",
    "..x",
};

static void check(qilin_status s, const char *what, const char *key) {
    FUZZ_CHECK(s == QILIN_OK || s == QILIN_ERR_FORMAT, "%s('%s') returned %s", what, key,
               qilin_status_name(s));
    if (s != QILIN_OK)
        FUZZ_CHECK(qilin_last_error()[0] != '\0', "%s('%s') failed without a message", what, key);
}

static void probe_key(const hf_config *c, const char *key) {
    int64_t i, list[4];
    double d;
    bool b;
    const char *str;
    size_t n;
    qilin_clear_error();
    bool has = hf_config_has(c, key);
    check(hf_config_int(c, key, &i), "int", key);
    check(hf_config_float(c, key, &d), "float", key);
    check(hf_config_bool(c, key, &b), "bool", key);
    check(hf_config_string(c, key, &str), "string", key);
    qilin_status s = hf_config_int_or(c, key, -7, &i);
    check(s, "int_or", key);
    if (!has) FUZZ_CHECK(s == QILIN_OK && i == -7, "int_or('%s') ignored the default", key);
    check(hf_config_float_or(c, key, 0.5, &d), "float_or", key);
    check(hf_config_bool_or(c, key, true, &b), "bool_or", key);
    s = hf_config_string_or(c, key, "dflt", &str);
    check(s, "string_or", key);
    if (s == QILIN_OK) FUZZ_CHECK(str != NULL && (has || strcmp(str, "dflt") == 0), "string_or('%s')", key);
    s = hf_config_int_list(c, key, list, 4, &n);
    check(s, "int_list", key);
    if (s == QILIN_OK) FUZZ_CHECK(n <= 4, "int_list('%s') returned %zu values", key, n);
    hf_config *sub = NULL;
    s = hf_config_sub(c, key, &sub);
    check(s, "sub", key);
    FUZZ_CHECK((s == QILIN_OK) == (sub != NULL), "sub('%s') handle and status disagree", key);
    if (sub) {
        FUZZ_CHECK(strstr(hf_config_name(sub), key) != NULL, "view name '%s'", hf_config_name(sub));
        check(hf_config_int_or(sub, "hidden_size", 0, &i), "int_or", "hidden_size");
        hf_config_close(sub);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hf_config *c = (hf_config *)1;
    qilin_clear_error();
    qilin_status s = hf_config_parse((const char *)data, size, "fuzz.json", &c);
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(c == NULL, "handle returned with %s", qilin_status_name(s));
        FUZZ_CHECK(strstr(qilin_last_error(), "fuzz.json") != NULL, "message does not name the input");
        return 0;
    }
    for (size_t k = 0; k < sizeof kKeys / sizeof *kKeys; k++) probe_key(c, kKeys[k]);

    /* Keys present in the input, and one level of dotted paths below them. */
    json_t *root = hf_config_json(c), *v, *w;
    const char *key, *key2;
    int budget = 64;
    json_object_foreach(root, key, v) {
        if (budget-- <= 0) break;
        probe_key(c, key);
        if (!json_is_object(v)) continue;
        json_object_foreach(v, key2, w) {
            char path[256];
            if (budget-- <= 0 || snprintf(path, sizeof path, "%s.%s", key, key2) >= (int)sizeof path) break;
            probe_key(c, path);
        }
    }
    /* An alias (transformers attribute_map): equal or absent succeeds, a conflict is FORMAT;
     * afterwards the key reads the alias's value when only the alias was set. */
    check(hf_config_alias(c, "num_experts", "num_local_experts"), "hf_config_alias", "num_experts");
    probe_key(c, "num_experts");
    hf_generation_config g;
    check(hf_generation_config_read(c, &g), "generation_config_read", "");
    if (hf_generation_config_read(c, &g) == QILIN_OK) FUZZ_CHECK(g.n_eos <= HF_MAX_EOS, "n_eos %zu", g.n_eos);
    hf_config_close(c);
    return 0;
}
