/* golden.h — the model fixtures and their golden outputs, shared by
 * test_forward.cpp (one GPU) and test_parallel.cpp (tensor and expert
 * parallelism).
 *
 * Every directory under tests/fixtures/models/ holds a tiny checkpoint saved
 * by transformers (scripts/make_fixtures.py, or the converted stories260K
 * and its MoE twins) and golden.json: prompts of token ids, fp32 logits of
 * every position computed by transformers in float32, and a 32-token greedy
 * continuation. */
#ifndef QILIN_TESTS_GOLDEN_H
#define QILIN_TESTS_GOLDEN_H

#include <jansson.h>

#include "host/model.h"
#include "host/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace golden {

/* fp32 logits against transformers' fp32 logits, as max|diff| / max|ref|.
 * Both sides round every product and sum to fp32 (unit roundoff u = 2^-24
 * = 6e-8) but in different orders, so they differ by the accumulated
 * rounding of each: a dot product of n terms errs by at most ~sqrt(n) u
 * relative in practice (n <= 256 here: 16 u = 1e-6), and the few layers
 * (<= 5) add and amplify that through the norms and the softmax by a small
 * factor. The worst seen over every fixture, prompt and decode row is
 * 7.5e-7. 1e-5 leaves 13x that and is 10x below what a real bug costs: the
 * smallest planted one, RMSNorm without its eps (1e-5 .. 1e-6 against
 * activations of mean square ~1e-2 .. 1), moves the logits by 7.2e-5. */
const double kFp32Tolerance = 1e-5;
/* bf16 weights and activations, fp32 accumulation: each rounding is 2^-9
 * relative; a few layers of them land around 1e-2 of the logit range. The
 * bound per prompt is the larger of kBf16Tolerance and twice the error of
 * transformers' own bf16 run (recorded in golden.json as hf_bf16): a bf16
 * implementation as careful as the reference passes, a wrong one does not. */
const double kBf16Tolerance = 2e-2;

inline std::string models_dir() { return std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/models"; }

/* Every fixture directory, pinned: a fixture that vanishes (or loses its
 * golden.json) fails FixtureList.Pinned instead of silently shrinking the
 * suites instantiated from this list. */
const std::vector<std::string> kFixtureNames = {
    "deepseek_v2", "deepseek_v2_group", "deepseek_v3", "deepseek_v3_fp8", "deepseek_v3_noqlora",
    "gpt_neox",    "gptj",              "kimi_k2_int4", "llama",       "llama_fp8",
    "mistral",     "mistral_swa",       "mixtral",     "qwen2",
    "qwen2_moe",   "qwen2_yarn",        "qwen3",       "qwen3_moe",
    "stories260K", "stories260K_mixtral", "stories260K_qwen2moe"};

/* The fixture directories that hold a golden.json, sorted. */
inline std::vector<std::string> list_fixtures() {
    std::vector<std::string> names;
    DIR *dir = opendir(models_dir().c_str());
    if (!dir) return names;
    while (dirent *e = readdir(dir)) {
        std::string name = e->d_name;
        struct stat st;
        if (name[0] != '.' && stat((models_dir() + "/" + name + "/golden.json").c_str(), &st) == 0)
            names.push_back(name);
    }
    closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
}

struct Golden {
    /* transformers' own bf16 run against its fp32 golden (scripts/bf16_reference.py),
     * when recorded: per prompt, the relative error and the confident top-1 mismatches */
    std::vector<double> hf_bf16_error;
    std::vector<int> hf_bf16_mismatches;
    std::vector<std::vector<int>> prompts;
    std::vector<std::vector<float>> logits; /* per prompt [len, vocab] */
    std::vector<int> greedy;
    int greedy_prompt = 0, vocab = 0;
};

inline std::vector<int> int_array(json_t *a) {
    std::vector<int> v;
    for (size_t i = 0; i < json_array_size(a); i++)
        v.push_back((int)json_integer_value(json_array_get(a, i)));
    return v;
}

inline bool load_golden(const std::string &dir, Golden *g, std::string *why) {
    json_error_t err;
    json_t *root = json_load_file((dir + "/golden.json").c_str(), 0, &err);
    if (!root) return *why = std::string("golden.json: ") + err.text, false;
    g->vocab = (int)json_integer_value(json_object_get(root, "vocab"));
    g->greedy_prompt = (int)json_integer_value(json_object_get(root, "greedy_prompt"));
    g->greedy = int_array(json_object_get(root, "greedy"));
    if (json_t *hf = json_object_get(root, "hf_bf16")) {
        json_t *err = json_object_get(hf, "rel_error"), *mis = json_object_get(hf, "confident_mismatches");
        for (size_t i = 0; i < json_array_size(err); i++) {
            g->hf_bf16_error.push_back(json_number_value(json_array_get(err, i)));
            g->hf_bf16_mismatches.push_back((int)json_array_size(json_array_get(mis, i)));
        }
    }
    json_t *prompts = json_object_get(root, "prompts"), *files = json_object_get(root, "logits_files");
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        g->prompts.push_back(int_array(json_array_get(prompts, i)));
        std::string path = dir + "/" + json_string_value(json_array_get(files, i));
        std::vector<float> l(g->prompts.back().size() * (size_t)g->vocab);
        FILE *f = fopen(path.c_str(), "rb");
        size_t got = f ? fread(l.data(), sizeof(float), l.size(), f) : 0;
        if (f) fclose(f);
        if (got != l.size()) return json_decref(root), *why = path + ": short or missing", false;
        g->logits.push_back(std::move(l));
    }
    json_decref(root);
    return true;
}

/* max |got - want| / max |want| over the rows given. */
inline double rel_error(const float *got, const float *want, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = std::max(md, (double)std::fabs(got[i] - want[i]));
        mr = std::max(mr, (double)std::fabs(want[i]));
    }
    return md / std::max(mr, 1e-30);
}

inline int argmax(const float *row, int n) { return (int)(std::max_element(row, row + n) - row); }

/* Positions whose reference top-1 differs from ours although the reference
 * top-2 margin exceeds 1% of the row's range. */
inline int confident_top1_mismatches(const float *got, const float *want, int rows, int vocab,
                                     std::string *where) {
    int bad = 0;
    for (int r = 0; r < rows; r++) {
        const float *w = want + (size_t)r * vocab;
        float top = -INFINITY, second = -INFINITY, lo = INFINITY;
        for (int i = 0; i < vocab; i++) {
            lo = std::min(lo, w[i]);
            if (w[i] > top)
                second = top, top = w[i];
            else if (w[i] > second)
                second = w[i];
        }
        if (top - second <= 0.01f * (top - lo)) continue;
        if (argmax(got + (size_t)r * vocab, vocab) != argmax(w, vocab))
            bad++, *where += " " + std::to_string(r);
    }
    return bad;
}

/* Whether the plan splits the fixture over tp GPUs in this mode. */
inline bool splits(const std::string &fixture, int tp, bool ep) {
    qilin_model_desc *d = nullptr;
    if (qilin_model_desc_load((models_dir() + "/" + fixture).c_str(), &d) != QILIN_OK) return false;
    bool ok = !ep || d->n_experts > 0;
    qilin_plan_options po;
    qilin_plan_options_default(&po);
    po.tp = tp, po.ep = ep;
    qilin_plan *p = nullptr;
    ok = ok && qilin_plan_create(d, &po, &p) == QILIN_OK;
    qilin_plan_free(p);
    qilin_model_desc_free(d);
    return ok;
}

} // namespace golden

#endif /* QILIN_TESTS_GOLDEN_H */
