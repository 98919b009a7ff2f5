/* test_forward.cpp — the whole forward pass against Hugging Face transformers.
 *
 * Every directory under tests/fixtures/models/ holds a tiny checkpoint saved
 * by transformers (scripts/make_fixtures.py, or the converted stories260K
 * and its MoE twins) and golden.json: prompts of token ids, fp32 logits of
 * every position computed by transformers in float32, and a 32-token greedy
 * continuation. Checks, per fixture:
 *   - fp32 mode: logits within 1e-4 of the largest |logit| (max |diff| /
 *     max |ref|), greedy continuation identical (decode steps: the cache and
 *     the one-query kernels);
 *   - bf16 mode: logits within kBf16Tolerance, and the same top-1 at every
 *     position whose fp32 top-2 margin exceeds 1% of that row's range;
 *   - a chunked prefill (the prompt in two steps) and a batch of both prompts
 *     give the same logits as the reference;
 *   - MLA models: the absorbed and the naive forms both match. */
#include <gtest/gtest.h>
#include <jansson.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "host/forward.h"
#include "tests/test_util.h"

namespace {

const double kFp32Tolerance = 1e-4;
/* bf16 weights and activations, fp32 accumulation: each rounding is 2^-9
 * relative; a few layers of them land around 1e-2 of the logit range. The
 * bound per prompt is the larger of kBf16Tolerance and twice the error of
 * transformers' own bf16 run (recorded in golden.json as hf_bf16): a bf16
 * implementation as careful as the reference passes, a wrong one does not. */
const double kBf16Tolerance = 2e-2;

std::string models_dir() { return std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/models"; }

std::vector<std::string> list_fixtures() {
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

std::vector<int> int_array(json_t *a) {
    std::vector<int> v;
    for (size_t i = 0; i < json_array_size(a); i++) v.push_back((int)json_integer_value(json_array_get(a, i)));
    return v;
}

bool load_golden(const std::string &dir, Golden *g, std::string *why) {
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
double rel_error(const float *got, const float *want, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = std::max(md, (double)std::fabs(got[i] - want[i]));
        mr = std::max(mr, (double)std::fabs(want[i]));
    }
    return md / std::max(mr, 1e-30);
}

int argmax(const float *row, int n) { return (int)(std::max_element(row, row + n) - row); }

/* Positions whose reference top-1 differs from ours although the reference
 * top-2 margin exceeds 1% of the row's range. */
int confident_top1_mismatches(const float *got, const float *want, int rows, int vocab, std::string *where) {
    int bad = 0;
    for (int r = 0; r < rows; r++) {
        const float *w = want + (size_t)r * vocab;
        float top = -INFINITY, second = -INFINITY, lo = INFINITY;
        for (int i = 0; i < vocab; i++) {
            lo = std::min(lo, w[i]);
            if (w[i] > top) second = top, top = w[i];
            else if (w[i] > second) second = w[i];
        }
        if (top - second <= 0.01f * (top - lo)) continue;
        if (argmax(got + (size_t)r * vocab, vocab) != argmax(w, vocab)) bad++, *where += " " + std::to_string(r);
    }
    return bad;
}

class Forward : public testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        dir_ = models_dir() + "/" + GetParam();
        std::string why;
        ASSERT_TRUE(load_golden(dir_, &g_, &why)) << why;
    }
    qilin_model *load(qilin_dtype dtype, qilin_mla_mode mla = QILIN_MLA_AUTO) {
        qilin_model_options o;
        qilin_model_options_default(&o);
        o.dtype = dtype;
        o.max_seqs = 4;
        o.max_ctx = 256;
        o.max_batch_tokens = 256;
        o.mla_mode = mla;
        qilin_model *m = nullptr;
        qilin_status st = qilin_model_load(dir_.c_str(), &o, &m);
        EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
        return m;
    }
    /* all-position logits of prompt p in `chunks` steps */
    std::vector<float> logits(qilin_model *m, int p, int chunks = 1, int slot = 0) {
        const std::vector<int> &ids = g_.prompts[p];
        std::vector<float> out(ids.size() * (size_t)g_.vocab);
        int n = (int)ids.size(), done = 0;
        for (int c = 0; c < chunks; c++) {
            int take = c == chunks - 1 ? n - done : n / chunks;
            qilin_batch b = {1, &slot, &done, &take, ids.data() + done, true};
            EXPECT_EQ(qilin_forward(m, &b, out.data() + (size_t)done * g_.vocab), QILIN_OK) << qilin_last_error();
            done += take;
        }
        return out;
    }
    bool is_mla(qilin_model *m) { return qilin_model_get_desc(m)->attn == QILIN_ATTN_MLA; }
    std::string dir_;
    Golden g_;
};

TEST_P(Forward, Fp32LogitsMatchTransformers) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    ASSERT_EQ(qilin_model_get_desc(m)->vocab, g_.vocab);
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        std::vector<float> got = logits(m, (int)p);
        double err = rel_error(got.data(), g_.logits[p].data(), got.size());
        printf("[ %s ] fp32 prompt %zu (%zu tokens): max|diff|/max|ref| = %.3g\n", GetParam().c_str(), p,
               g_.prompts[p].size(), err);
        EXPECT_LE(err, kFp32Tolerance) << "prompt " << p;
    }
    qilin_model_free(m);
}

TEST_P(Forward, Fp32GreedyMatchesTransformers) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    const std::vector<int> &prompt = g_.prompts[g_.greedy_prompt];
    std::vector<int> out(g_.greedy.size());
    const int *prompts[1] = {prompt.data()};
    int len = (int)prompt.size();
    qilin_sampling_params greedy = {0, 0, 1, 0, 1, 0, 0};
    ASSERT_EQ(qilin_generate(m, 1, prompts, &len, &greedy, (int)out.size(), out.data()), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(out, g_.greedy);
    qilin_model_free(m);
}

TEST_P(Forward, Bf16LogitsWithinTolerance) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = load(QILIN_BF16);
    ASSERT_NE(m, nullptr);
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        std::vector<float> got = logits(m, (int)p);
        double err = rel_error(got.data(), g_.logits[p].data(), got.size());
        std::string where;
        int bad = confident_top1_mismatches(got.data(), g_.logits[p].data(), (int)g_.prompts[p].size(), g_.vocab, &where);
        double hf = p < g_.hf_bf16_error.size() ? g_.hf_bf16_error[p] : -1;
        int hf_bad = p < g_.hf_bf16_mismatches.size() ? g_.hf_bf16_mismatches[p] : 0;
        double bound = std::max(kBf16Tolerance, 2 * hf);
        printf("[ %s ] bf16 prompt %zu: max|diff|/max|ref| = %.3g (transformers bf16: %.3g, bound %.3g), "
               "confident top-1 mismatches: %d (transformers: %d)%s\n",
               GetParam().c_str(), p, err, hf, bound, bad, hf_bad, where.c_str());
        EXPECT_LE(err, bound) << "prompt " << p;
        EXPECT_LE(bad, hf_bad) << "positions:" << where;
    }
    qilin_model_free(m);
}

TEST_P(Forward, ChunkedPrefillAndBatchMatch) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    int last = (int)g_.prompts.size() - 1;
    std::vector<float> chunked = logits(m, last, 3, 1);
    EXPECT_LE(rel_error(chunked.data(), g_.logits[last].data(), chunked.size()), kFp32Tolerance);

    /* both prompts in one step, slots in reverse order */
    std::vector<int> slots, starts, counts, tokens;
    for (int p = last; p >= 0; p--) {
        slots.push_back(p + 1), starts.push_back(0), counts.push_back((int)g_.prompts[p].size());
        tokens.insert(tokens.end(), g_.prompts[p].begin(), g_.prompts[p].end());
    }
    std::vector<float> out(tokens.size() * (size_t)g_.vocab);
    qilin_batch b = {(int)slots.size(), slots.data(), starts.data(), counts.data(), tokens.data(), true};
    ASSERT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
    size_t row = 0;
    for (int p = last; p >= 0; p--) {
        size_t n = g_.prompts[p].size() * (size_t)g_.vocab;
        EXPECT_LE(rel_error(out.data() + row, g_.logits[p].data(), n), kFp32Tolerance) << "prompt " << p << " in a batch";
        row += n;
    }
    qilin_model_free(m);
}

TEST_P(Forward, BatchedGreedyEqualsOneAtATime) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    const int n_new = 8;
    int n = (int)g_.prompts.size();
    std::vector<const int *> prompts;
    std::vector<int> lens;
    for (auto &p : g_.prompts) prompts.push_back(p.data()), lens.push_back((int)p.size());
    std::vector<qilin_sampling_params> params(n, qilin_sampling_params{0, 0, 1, 0, 1, 0, 0});
    std::vector<int> batched(n * n_new), single(n_new);
    ASSERT_EQ(qilin_generate(m, n, prompts.data(), lens.data(), params.data(), n_new, batched.data()), QILIN_OK)
        << qilin_last_error();
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(qilin_generate(m, 1, &prompts[i], &lens[i], params.data(), n_new, single.data()), QILIN_OK);
        EXPECT_EQ(std::vector<int>(batched.begin() + i * n_new, batched.begin() + (i + 1) * n_new), single)
            << "sequence " << i;
    }
    qilin_model_free(m);
}

TEST_P(Forward, MlaFormsAgree) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *probe = load(QILIN_F32, QILIN_MLA_ABSORBED);
    ASSERT_NE(probe, nullptr);
    if (!is_mla(probe)) {
        qilin_model_free(probe);
        GTEST_SKIP() << "not an MLA model";
    }
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        std::vector<float> got = logits(probe, (int)p);
        double err = rel_error(got.data(), g_.logits[p].data(), got.size());
        printf("[ %s ] absorbed MLA, fp32, prompt %zu: %.3g\n", GetParam().c_str(), p, err);
        EXPECT_LE(err, kFp32Tolerance);
    }
    qilin_model_free(probe);
    qilin_model *naive = load(QILIN_F32, QILIN_MLA_NAIVE);
    ASSERT_NE(naive, nullptr);
    std::vector<float> got = logits(naive, 0);
    EXPECT_LE(rel_error(got.data(), g_.logits[0].data(), got.size()), kFp32Tolerance);
    qilin_model_free(naive);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Forward, testing::ValuesIn(list_fixtures()),
                         [](const testing::TestParamInfo<std::string> &i) { return i.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Forward);

/* stories260K, a real trained model: 256 greedy ids from BOS equal
 * llama2.c's expected output (golden greedy256_from_bos, checked against
 * expected_greedy.json by scripts/convert_llama2c.py), in fp32; the MoE
 * twins upcycled from it (every expert a copy of the dense FFN) give the
 * same ids whatever the router picks. bf16 is reported, not asserted: the
 * smallest top-2 margin on that path is 1.5e-4 of the logit range. */
std::vector<int> greedy_from_bos(const std::string &name, qilin_dtype dtype, int n) {
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = dtype;
    o.max_seqs = 1;
    o.max_ctx = n + 1;
    o.max_batch_tokens = 1;
    qilin_model *m = nullptr;
    std::vector<int> out(n, -1);
    qilin_status st = qilin_model_load((models_dir() + "/" + name).c_str(), &o, &m);
    EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
    if (st != QILIN_OK) return out;
    int bos = 1, len = 1;
    const int *prompts[1] = {&bos};
    qilin_sampling_params greedy = {0, 0, 1, 0, 1, 0, 0};
    EXPECT_EQ(qilin_generate(m, 1, prompts, &len, &greedy, n, out.data()), QILIN_OK) << qilin_last_error();
    qilin_model_free(m);
    return out;
}

TEST(Stories260K, Fp32Greedy256MatchesLlama2c) {
    QILIN_REQUIRE_DEVICES(1);
    json_error_t err;
    json_t *root = json_load_file((models_dir() + "/stories260K/golden.json").c_str(), 0, &err);
    ASSERT_NE(root, nullptr) << err.text;
    std::vector<int> want = int_array(json_object_get(root, "greedy256_from_bos"));
    json_decref(root);
    ASSERT_EQ(want.size(), 256u);
    std::vector<int> dense = greedy_from_bos("stories260K", QILIN_F32, 256);
    EXPECT_EQ(dense, want);
    for (const char *twin : {"stories260K_mixtral", "stories260K_qwen2moe"})
        EXPECT_EQ(greedy_from_bos(twin, QILIN_F32, 256), want) << twin;
    std::vector<int> bf16 = greedy_from_bos("stories260K", QILIN_BF16, 256);
    size_t i = 0;
    while (i < want.size() && bf16[i] == want[i]) i++;
    if (i == want.size()) printf("[ stories260K ] bf16: all 256 greedy ids equal llama2c's\n");
    else printf("[ stories260K ] bf16: greedy ids equal llama2c's up to position %zu of 256\n", i);
}

TEST(ForwardErrors, BadInputsAreRejectedWithoutHarm) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<std::string> names = list_fixtures();
    if (names.empty()) GTEST_SKIP() << "no fixtures under " << models_dir();
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32;
    o.max_seqs = 2;
    o.max_ctx = 16;
    o.max_batch_tokens = 16;
    qilin_model *m = nullptr;
    ASSERT_EQ(qilin_model_load((models_dir() + "/" + names[0]).c_str(), &o, &m), QILIN_OK) << qilin_last_error();
    int vocab = qilin_model_get_desc(m)->vocab;
    std::vector<float> out(16 * (size_t)vocab);
    int slot = 0, start = 0, n = 3;
    int bad_ids[3] = {1, vocab, 2};
    qilin_batch b = {1, &slot, &start, &n, bad_ids, true};
    EXPECT_EQ(qilin_forward(m, &b, out.data()), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("token 1 has id"), std::string::npos) << qilin_last_error();
    int ok_ids[3] = {1, 2, 3};
    start = 15; /* 15 cached + 3 new > 16 */
    b.tokens = ok_ids;
    EXPECT_EQ(qilin_forward(m, &b, out.data()), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("exceed the context"), std::string::npos) << qilin_last_error();
    slot = 5;
    start = 0;
    EXPECT_EQ(qilin_forward(m, &b, out.data()), QILIN_ERR_INVALID_ARGUMENT);
    /* the model still works afterwards */
    slot = 0;
    EXPECT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
    qilin_model_free(m);

    EXPECT_NE(qilin_model_load((models_dir() + "/no-such-model").c_str(), &o, &m), QILIN_OK);
}

} // namespace

/* qilin_generate_stream: a sequence whose callback says stop leaves the batch
 * while the others go on with the same tokens as without it; a prompt longer
 * than max_batch_tokens is prefilled in chunks; prompt + max_new beyond the
 * context is refused up front, naming both numbers. */
struct StreamLog {
    std::vector<std::vector<int>> got;
    int stop_seq0_after;
};

static bool log_token(void *user, int seq, int token) {
    StreamLog *l = static_cast<StreamLog *>(user);
    l->got[seq].push_back(token);
    return !(seq == 0 && (int)l->got[0].size() >= l->stop_seq0_after);
}

TEST(GenerateStream, StopChunkAndContext) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32;
    o.max_seqs = 2;
    o.max_ctx = 64;
    o.max_batch_tokens = 5; /* the 11-token prompt takes three chunks */
    qilin_model *m = nullptr;
    ASSERT_EQ(qilin_model_load((models_dir() + "/stories260K").c_str(), &o, &m), QILIN_OK) << qilin_last_error();
    std::vector<int> a = {1, 403, 407, 261, 378, 430, 274, 9, 402, 268, 437}, b = {1, 320};
    const int *prompts[2] = {a.data(), b.data()};
    int lens[2] = {(int)a.size(), (int)b.size()};
    qilin_sampling_params greedy[2] = {{0, 0, 1, 0, 1, 0, 0}, {0, 0, 1, 0, 1, 0, 0}};
    const int n_new = 12;
    std::vector<int> full(2 * n_new);
    ASSERT_EQ(qilin_generate(m, 2, prompts, lens, greedy, n_new, full.data()), QILIN_OK) << qilin_last_error();

    StreamLog log{{{}, {}}, 3};
    ASSERT_EQ(qilin_generate_stream(m, 2, prompts, lens, greedy, n_new, log_token, &log), QILIN_OK)
        << qilin_last_error();
    EXPECT_EQ(log.got[0], std::vector<int>(full.begin(), full.begin() + 3));
    EXPECT_EQ(log.got[1], std::vector<int>(full.begin() + n_new, full.end()));

    /* the same prompt alone, prefilled in one step, continues identically */
    std::vector<int> alone(n_new);
    qilin_model_free(m);
    o.max_batch_tokens = 64;
    ASSERT_EQ(qilin_model_load((models_dir() + "/stories260K").c_str(), &o, &m), QILIN_OK);
    ASSERT_EQ(qilin_generate(m, 1, prompts, lens, greedy, n_new, alone.data()), QILIN_OK);
    EXPECT_EQ(alone, std::vector<int>(full.begin(), full.begin() + n_new));

    EXPECT_EQ(qilin_generate_stream(m, 1, prompts, lens, greedy, 60, log_token, &log), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("11 tokens; with 60 new ones that exceeds the context of 64"),
              std::string::npos)
        << qilin_last_error();
    qilin_model_free(m);
}
