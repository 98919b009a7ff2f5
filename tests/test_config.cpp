// test_config.cpp — config.json / generation_config.json access on the real
// configs in tests/fixtures/configs (copied from the model repositories) and on
// small JSON written here for the error paths: every error names file and key.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "host/config.h"
#include "host/model.h"
#include "patched_config.h"
#include "test_util.h"

#include <jansson.h>
#include <unistd.h>

namespace {

#define CONFIG_FIXTURE(name) QILIN_SOURCE_DIR "/tests/fixtures/configs/" name

struct Config {
    hf_config *c = nullptr;
    ~Config() { hf_config_close(c); }
};

int64_t get_int(const hf_config *c, const char *key) {
    int64_t v = -12345;
    qilin_status s = hf_config_int(c, key, &v);
    EXPECT_EQ(s, QILIN_OK) << qilin_last_error();
    return v;
}

double get_float(const hf_config *c, const char *key) {
    double v = -12345;
    qilin_status s = hf_config_float(c, key, &v);
    EXPECT_EQ(s, QILIN_OK) << qilin_last_error();
    return v;
}

std::string get_string(const hf_config *c, const char *key) {
    const char *v = "";
    qilin_status s = hf_config_string(c, key, &v);
    EXPECT_EQ(s, QILIN_OK) << qilin_last_error();
    return v;
}

TEST(Config, DeepSeekV3) {
    Config cfg;
    QILIN_ASSERT_OK(hf_config_open(CONFIG_FIXTURE("DeepSeek-V3.config.json"), &cfg.c));
    EXPECT_EQ(get_int(cfg.c, "hidden_size"), 7168);
    EXPECT_EQ(get_int(cfg.c, "n_routed_experts"), 256);
    EXPECT_EQ(get_int(cfg.c, "q_lora_rank"), 1536);
    EXPECT_EQ(get_int(cfg.c, "kv_lora_rank"), 512);
    EXPECT_EQ(get_int(cfg.c, "num_hidden_layers"), 61);
    EXPECT_EQ(get_int(cfg.c, "first_k_dense_replace"), 3);
    EXPECT_EQ(get_string(cfg.c, "model_type"), "deepseek_v3");
    EXPECT_EQ(get_string(cfg.c, "scoring_func"), "sigmoid");
    EXPECT_DOUBLE_EQ(get_float(cfg.c, "routed_scaling_factor"), 2.5);
    EXPECT_DOUBLE_EQ(get_float(cfg.c, "rms_norm_eps"), 1e-6);
    // Nested rope_scaling by dotted path and through a view.
    EXPECT_EQ(get_string(cfg.c, "rope_scaling.type"), "yarn");
    EXPECT_DOUBLE_EQ(get_float(cfg.c, "rope_scaling.factor"), 40.0); // an integer in the file
    Config rs;
    QILIN_ASSERT_OK(hf_config_sub(cfg.c, "rope_scaling", &rs.c));
    EXPECT_EQ(get_int(rs.c, "original_max_position_embeddings"), 4096);
    EXPECT_STREQ(hf_config_name(rs.c), CONFIG_FIXTURE("DeepSeek-V3.config.json") ":rope_scaling");
    int64_t blocks[2];
    size_t n;
    QILIN_ASSERT_OK(hf_config_int_list(cfg.c, "quantization_config.weight_block_size", blocks, 2, &n));
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(blocks[0], 128);
    bool tie;
    QILIN_ASSERT_OK(hf_config_bool(cfg.c, "tie_word_embeddings", &tie));
    EXPECT_FALSE(tie);
}

TEST(Config, QwenAndLlama) {
    Config q;
    QILIN_ASSERT_OK(hf_config_open(CONFIG_FIXTURE("Qwen2.5-7B-Instruct.config.json"), &q.c));
    EXPECT_EQ(get_int(q.c, "num_key_value_heads"), 4);
    EXPECT_EQ(get_int(q.c, "hidden_size"), 3584);
    EXPECT_DOUBLE_EQ(get_float(q.c, "rope_theta"), 1000000.0);
    int64_t v;
    QILIN_ASSERT_OK(hf_config_int_or(q.c, "rope_scaling.factor", 1, &v)); // absent → default
    EXPECT_EQ(v, 1);
    EXPECT_FALSE(hf_config_has(q.c, "rope_scaling"));

    Config l;
    QILIN_ASSERT_OK(hf_config_open(CONFIG_FIXTURE("Llama-3.1-8B-Instruct.config.json"), &l.c));
    EXPECT_EQ(get_int(l.c, "num_key_value_heads"), 8);
    EXPECT_EQ(get_string(l.c, "rope_scaling.rope_type"), "llama3");
    int64_t eos[4];
    size_t n;
    QILIN_ASSERT_OK(hf_config_int_list(l.c, "eos_token_id", eos, 4, &n));
    EXPECT_EQ(n, 3u);

    for (const char *f :
         {CONFIG_FIXTURE("Qwen3-8B.config.json"), CONFIG_FIXTURE("Qwen2-1.5B-Instruct.config.json")}) {
        Config c;
        QILIN_ASSERT_OK(hf_config_open(f, &c.c));
        EXPECT_GT(get_int(c.c, "vocab_size"), 100000);
    }
}

TEST(Config, GenerationConfig) {
    hf_generation_config g;
    QILIN_ASSERT_OK(
        hf_generation_config_load(CONFIG_FIXTURE("Qwen2-1.5B-Instruct.generation_config.json"), &g));
    EXPECT_TRUE(g.do_sample);
    EXPECT_DOUBLE_EQ(g.temperature, 0.5);
    EXPECT_DOUBLE_EQ(g.top_p, 0.7);
    EXPECT_EQ(g.top_k, 40);
    EXPECT_DOUBLE_EQ(g.repetition_penalty, 1.1);
    ASSERT_EQ(g.n_eos, 2u);
    EXPECT_EQ(g.eos_token_ids[0], 151645);
    EXPECT_EQ(g.bos_token_id, 151643);
    EXPECT_EQ(g.max_new_tokens, -1);

    Config empty;
    QILIN_ASSERT_OK(hf_config_parse("{}", 2, "gen.json", &empty.c));
    QILIN_ASSERT_OK(hf_generation_config_read(empty.c, &g));
    EXPECT_FALSE(g.do_sample);
    EXPECT_DOUBLE_EQ(g.temperature, 1.0);
    EXPECT_EQ(g.top_k, 50);
    EXPECT_EQ(g.n_eos, 0u);
}

TEST(Config, TextConfigView) {
    const char *json = R"({"architectures":["X"],"text_config":{"hidden_size":2048,"rope_scaling":null}})";
    Config c;
    QILIN_ASSERT_OK(hf_config_parse(json, std::strlen(json), "mm.json", &c.c));
    Config t;
    QILIN_ASSERT_OK(hf_config_sub(c.c, "text_config", &t.c));
    hf_config_close(c.c); // the view keeps the tree alive
    c.c = nullptr;
    EXPECT_EQ(get_int(t.c, "hidden_size"), 2048);
    double f;
    QILIN_ASSERT_OK(hf_config_float_or(t.c, "rope_scaling.factor", 1.0, &f)); // null parent → default
    EXPECT_EQ(f, 1.0);
}

// Expects `status` to be FORMAT with a message naming file and key.
void expect_error(qilin_status status, const char *file, const char *key, const char *what) {
    EXPECT_EQ(status, QILIN_ERR_FORMAT);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

TEST(Config, ErrorsNameFileAndKey) {
    const char *json =
        R"({"hidden_size":"big","eps":1.5,"flag":1,"ids":[1,"x"],"sub":3,"half":2.5,"many":[1,2,3]})";
    Config c;
    QILIN_ASSERT_OK(hf_config_parse(json, std::strlen(json), "cfg.json", &c.c));
    int64_t i;
    double d;
    bool b;
    const char *s;
    int64_t ids[2];
    size_t n;
    hf_config *sub = nullptr;
    expect_error(hf_config_int(c.c, "hidden_size", &i), "cfg.json", "'hidden_size'",
                 "a string, expected an integer");
    expect_error(hf_config_int_or(c.c, "hidden_size", 1, &i), "cfg.json", "'hidden_size'",
                 "expected an integer");
    expect_error(hf_config_int(c.c, "half", &i), "cfg.json", "'half'", "a real number");
    expect_error(hf_config_int(c.c, "num_layers", &i), "cfg.json", "'num_layers'", "missing");
    expect_error(hf_config_float(c.c, "hidden_size", &d), "cfg.json", "'hidden_size'", "expected a number");
    expect_error(hf_config_bool(c.c, "flag", &b), "cfg.json", "'flag'", "expected a boolean");
    expect_error(hf_config_string(c.c, "eps", &s), "cfg.json", "'eps'", "expected a string");
    expect_error(hf_config_int_list(c.c, "ids", ids, 2, &n), "cfg.json", "'ids'", "expected an integer");
    expect_error(hf_config_int_list(c.c, "many", ids, 2, &n), "cfg.json", "'many'", "3 values");
    expect_error(hf_config_sub(c.c, "sub", &sub), "cfg.json", "'sub'", "expected an object");
    EXPECT_EQ(sub, nullptr);
    QILIN_ASSERT_OK(hf_config_float(c.c, "eps", &d));
    EXPECT_EQ(d, 1.5);
}

TEST(Config, RejectsBadFiles) {
    Config c;
    expect_error(hf_config_parse("[1]", 3, "arr.json", &c.c), "arr.json", "arr.json", "not a JSON object");
    expect_error(hf_config_parse("{\"a\":", 5, "trunc.json", &c.c), "trunc.json", "trunc.json",
                 "invalid JSON");
    const char *dup = R"({"hidden_size":1,"hidden_size":2})";
    expect_error(hf_config_parse(dup, std::strlen(dup), "dup.json", &c.c), "dup.json", "hidden_size",
                 "duplicate");
    EXPECT_EQ(c.c, nullptr);
    EXPECT_EQ(hf_config_open("/nonexistent/config.json", &c.c), QILIN_ERR_IO);
    EXPECT_NE(std::string(qilin_last_error()).find("/nonexistent/config.json"), std::string::npos);
}

TEST(Config, MutationsNeverCrash) {
    std::ifstream in(CONFIG_FIXTURE("DeepSeek-V3.config.json"), std::ios::binary);
    std::string valid((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GT(valid.size(), 100u);
    std::mt19937 rng(777);
    for (int iter = 0; iter < 2000; iter++) {
        std::string m = valid;
        for (int k = 0; k < 1 + (int)(rng() % 3); k++) m[rng() % m.size()] = "{}[]\",:0a \\"[rng() % 12];
        if (rng() % 4 == 0) m.resize(rng() % m.size());
        hf_config *c = nullptr;
        qilin_status s = hf_config_parse(m.data(), m.size(), "mutant.json", &c);
        ASSERT_TRUE(s == QILIN_OK || s == QILIN_ERR_FORMAT) << qilin_last_error();
        if (c) {
            int64_t v;
            double d;
            (void)hf_config_int_or(c, "hidden_size", 0, &v);
            (void)hf_config_float_or(c, "rope_scaling.factor", 1.0, &d);
        }
        hf_config_close(c);
    }
}

// ---- transformers attribute_map aliases ------------------------------------------------------
//
// A config saved by a current transformers release may spell a key with an alias its config
// class's attribute_map allows (transformers 5.25: Mixtral, Qwen3-MoE, DeepSeek-V2/V3 and
// GPT-J have such maps). Each alias must give the same descriptor as the key; both present
// and different is an error naming both.

TEST(ConfigAlias, OnlyTheAliasSetReadsThroughTheKey) {
    hf_config *c = nullptr;
    const char json[] = R"({"num_local_experts": 16, "n": null})";
    QILIN_ASSERT_OK(hf_config_parse(json, sizeof json - 1, "alias.json", &c));
    QILIN_ASSERT_OK(hf_config_alias(c, "num_experts", "num_local_experts"));
    EXPECT_EQ(get_int(c, "num_experts"), 16);
    QILIN_ASSERT_OK(hf_config_alias(c, "num_experts", "num_local_experts")); // now both, equal
    QILIN_ASSERT_OK(hf_config_alias(c, "m", "n"));                           // a null alias is absent
    EXPECT_FALSE(hf_config_has(c, "m"));
    hf_config_close(c);
}

struct AliasCase {
    const char *fixture, *key, *alias;
};

// Every alias of every supported architecture (host/model.c config_aliases).
const AliasCase kAliases[] = {
    {"mixtral", "num_local_experts", "num_experts"},
    {"qwen3_moe", "num_experts", "num_local_experts"},
    {"deepseek_v2", "n_routed_experts", "num_experts"},
    {"deepseek_v3", "n_routed_experts", "num_local_experts"},
    {"deepseek_v3", "num_nextn_predict_layers", "num_mtp_layers"},
    {"gptj", "n_positions", "max_position_embeddings"},
    {"gptj", "n_embd", "hidden_size"},
    {"gptj", "n_head", "num_attention_heads"},
    {"gptj", "n_layer", "num_hidden_layers"},
};

std::string describe(const std::string &path) {
    qilin_model_desc *d = nullptr;
    qilin_status s = qilin_model_desc_load(path.c_str(), &d);
    EXPECT_EQ(s, QILIN_OK) << path << ": " << qilin_last_error();
    if (s != QILIN_OK) return "";
    char *buf = nullptr;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    qilin_model_desc_print(d, f);
    std::fclose(f);
    std::string out(buf, n);
    std::free(buf);
    size_t from = out.find(" from "), eol = out.find('\n'); // drop the path
    if (from != std::string::npos && eol != std::string::npos) out.erase(from, eol - from);
    out += "mtp layers " + std::to_string(d->n_mtp_layers) + "\n"; // not printed above
    qilin_model_desc_free(d);
    return out;
}

TEST(ConfigAlias, EveryAliasGivesTheSameModel) {
    for (const AliasCase &a : kAliases) {
        SCOPED_TRACE(std::string(a.fixture) + ": " + a.alias + " for " + a.key);
        std::string fixture =
            std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/models/" + a.fixture + "/config.json";
        json_error_t je;
        json_t *cfg = json_load_file(fixture.c_str(), 0, &je);
        ASSERT_NE(cfg, nullptr);
        json_t *v = json_object_get(cfg, a.key);
        // Keys the fixture leaves at the default get a non-default value, so the alias must be read.
        long long value = json_is_integer(v) ? json_integer_value(v) : 2;
        if (!strcmp(a.key, "num_nextn_predict_layers")) value = 1;
        json_decref(cfg);
        std::string with_key = "{\"" + std::string(a.key) + "\": " + std::to_string(value) + "}";
        std::string with_alias =
            "{\"" + std::string(a.key) + "\": null, \"" + a.alias + "\": " + std::to_string(value) + "}";
        PatchedConfig k(a.fixture, with_key.c_str()), al(a.fixture, with_alias.c_str());
        std::string want = describe(k.path), got = describe(al.path);
        EXPECT_FALSE(want.empty());
        EXPECT_EQ(got, want);

        std::string both = "{\"" + std::string(a.key) + "\": " + std::to_string(value) + ", \"" + a.alias +
                           "\": " + std::to_string(value + 1) + "}";
        PatchedConfig bad(a.fixture, both.c_str());
        qilin_model_desc *d = nullptr;
        EXPECT_EQ(qilin_model_desc_load(bad.path.c_str(), &d), QILIN_ERR_FORMAT);
        std::string msg = qilin_last_error();
        std::string want_msg = "key '" + std::string(a.key) + "' (" + std::to_string(value) +
                               ") and its alias '" + a.alias + "' (" + std::to_string(value + 1) +
                               ") are both set and differ";
        EXPECT_NE(msg.find(want_msg), std::string::npos) << msg;
        EXPECT_NE(msg.find(bad.path), std::string::npos) << msg;
        qilin_model_desc_free(d);
    }
}

// The issue's example: Qwen3-MoE saved with num_local_experts once read the default 128.
TEST(ConfigAlias, Qwen3MoeNumLocalExperts) {
    PatchedConfig c("qwen3_moe", R"({"num_experts": null, "num_local_experts": 8})");
    qilin_model_desc *d = nullptr;
    QILIN_ASSERT_OK(qilin_model_desc_load(c.path.c_str(), &d));
    EXPECT_EQ(d->n_experts, 8);
    qilin_model_desc_free(d);
}

} // namespace
