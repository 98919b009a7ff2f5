// test_engine_logprobs.cpp — the engine's optional logprobs
// (runtime/engine.h: qilin_engine_request.logprobs, on_logprobs) on
// stories260K in fp32. Asserts: each generated token of a request that asks
// gets its logprob and top-k equal to a float64 log-softmax of the logits
// qilin_forward gives for the same prefix (all_logits, run alone); greedy
// tokens are their own top-1; a request in the same batch that does not ask
// gets no call and the same tokens; bad top_logprobs is refused; and the
// pure qilin_log_softmax_top handles NaN, -inf rows and ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "golden.h"
#include "host/forward.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace {

struct Got {
    std::map<int64_t, std::vector<int>> tokens;
    std::map<int64_t, std::vector<qilin_token_logprobs>> lps;
    std::map<int64_t, std::vector<std::vector<int>>> top_ids;
    std::map<int64_t, std::vector<std::vector<float>>> top_lps;
};

void on_token(void *user, int64_t id, int token, qilin_engine_finish) {
    static_cast<Got *>(user)->tokens[id].push_back(token);
}

void on_logprobs(void *user, int64_t id, const qilin_token_logprobs *lp) {
    Got *g = static_cast<Got *>(user);
    g->lps[id].push_back(*lp);
    g->top_ids[id].emplace_back(lp->top_ids, lp->top_ids + lp->n_top);
    g->top_lps[id].emplace_back(lp->top_logprobs, lp->top_logprobs + lp->n_top);
}

/* float64 log-softmax of one row. */
std::vector<double> log_softmax(const float *row, int vocab) {
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < vocab; i++) max = std::max(max, (double)row[i]);
    for (int i = 0; i < vocab; i++) sum += std::exp((double)row[i] - max);
    std::vector<double> out(vocab);
    for (int i = 0; i < vocab; i++) out[i] = (double)row[i] - max - std::log(sum);
    return out;
}

TEST(EngineLogprobs, EqualLogSoftmaxOfForwardLogits) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_seqs = 2, o.max_ctx = 48, o.max_batch_tokens = 64;
    qilin_model *m = nullptr;
    ASSERT_EQ(qilin_model_load((golden::models_dir() + "/stories260K").c_str(), &o, &m), QILIN_OK)
        << qilin_last_error();
    const int vocab = qilin_model_get_desc(m)->vocab, k = 5, n_new = 6;
    const std::vector<int> prompt = {1, 403, 407, 261, 378, 430, 274};
    Got got;
    qilin_engine_options eo{};
    eo.on_token = on_token, eo.on_logprobs = on_logprobs, eo.user = &got;
    qilin_engine *e = nullptr;
    ASSERT_EQ(qilin_engine_create(m, &eo, &e), QILIN_OK) << qilin_last_error();
    qilin_engine_request r{};
    r.prompt = prompt.data(), r.prompt_len = (int)prompt.size(), r.max_new_tokens = n_new;
    r.params = qilin_sampling_params{0, 0, 1, 0, 1, 0, 0, 0, 0};
    int64_t plain = 0, asks = 0, sampled = 0;
    ASSERT_EQ(qilin_engine_add(e, &r, &plain), QILIN_OK);
    r.logprobs = true, r.top_logprobs = k;
    ASSERT_EQ(qilin_engine_add(e, &r, &asks), QILIN_OK);
    r.top_logprobs = QILIN_MAX_TOP_LOGPROBS + 1;
    int64_t refused = 0;
    EXPECT_EQ(qilin_engine_add(e, &r, &refused), QILIN_ERR_INVALID_ARGUMENT);
    r.top_logprobs = 2, r.logprobs = false;
    EXPECT_EQ(qilin_engine_add(e, &r, &refused), QILIN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(qilin_engine_run(e), QILIN_OK) << qilin_last_error();
    /* a sampled request: logprobs are of the raw distribution whatever the temperature */
    r.logprobs = true, r.top_logprobs = 0, r.params = qilin_sampling_params{0.9f, 0, 1, 0, 1, 77, 0, 0, 0};
    ASSERT_EQ(qilin_engine_add(e, &r, &sampled), QILIN_OK);
    ASSERT_EQ(qilin_engine_run(e), QILIN_OK) << qilin_last_error();
    qilin_engine_free(e);

    EXPECT_EQ(got.lps.count(plain), 0u);
    ASSERT_EQ(got.tokens[asks], got.tokens[plain]);
    ASSERT_EQ(got.lps[asks].size(), (size_t)n_new);
    ASSERT_EQ(got.lps[sampled].size(), (size_t)n_new);
    /* the reference: prompt + generated ids in one all_logits forward (slot 0, from position 0) */
    for (int64_t id : {asks, sampled}) {
        std::vector<int> all = prompt;
        all.insert(all.end(), got.tokens[id].begin(), got.tokens[id].end());
        int n = (int)all.size() - 1, slot = 0, start = 0;
        std::vector<float> logits((size_t)n * vocab);
        qilin_batch b{1, &slot, &start, &n, all.data(), true, nullptr};
        ASSERT_EQ(qilin_forward(m, &b, logits.data()), QILIN_OK) << qilin_last_error();
        for (int t = 0; t < n_new; t++) {
            int pos = (int)prompt.size() - 1 + t, token = got.tokens[id][t];
            std::vector<double> ref = log_softmax(&logits[(size_t)pos * vocab], vocab);
            const qilin_token_logprobs &lp = got.lps[id][t];
            EXPECT_EQ(lp.token, token);
            EXPECT_NEAR(lp.logprob, ref[token], 1e-4) << "request " << id << " token " << t;
            const std::vector<int> &top = got.top_ids[id][t];
            ASSERT_EQ((int)top.size(), id == asks ? k : 0);
            if (id == asks) {
                EXPECT_EQ(top[0], token) << "greedy is top-1";
            }
            for (size_t i = 0; i < top.size(); i++) {
                EXPECT_NEAR(got.top_lps[id][t][i], ref[top[i]], 1e-4);
                if (i) {
                    EXPECT_GE(ref[top[i - 1]], ref[top[i]] - 1e-6);
                }
                for (int v = 0; v < vocab; v++) /* nothing outside the list beats its last entry */
                    if (std::find(top.begin(), top.end(), v) == top.end()) {
                        ASSERT_LE(ref[v], ref[top.back()] + 1e-6);
                    }
            }
        }
    }
    qilin_model_free(m);
}

TEST(EngineLogprobs, LogSoftmaxTopEdgeCases) {
    const float row[] = {1.0f, NAN, 3.0f, 3.0f, -INFINITY, 0.5f};
    int ids[6];
    float lps[6], lp = 0;
    qilin_log_softmax_top(row, 6, 3, 6, &lp, ids, lps);
    double lse = 3.0 + std::log(std::exp(-2.0) + 1 + 1 + std::exp(-2.5));
    EXPECT_NEAR(lp, 3.0 - lse, 1e-6);
    const int order[] = {2, 3, 0, 5, 1, 4}; /* ties: lowest id first; NaN and -inf last, by id */
    for (int i = 0; i < 6; i++) EXPECT_EQ(ids[i], order[i]) << i;
    EXPECT_EQ(lps[4], -INFINITY);
    qilin_log_softmax_top(row, 6, 1, 0, &lp, ids, lps);
    EXPECT_EQ(lp, -INFINITY); /* NaN logit: never likely */
    qilin_log_softmax_top(row, 6, 6, 2, &lp, ids, lps);
    EXPECT_EQ(lp, -INFINITY); /* outside the vocabulary */
    const float dead[] = {-INFINITY, NAN};
    qilin_log_softmax_top(dead, 2, 0, 2, &lp, ids, lps);
    EXPECT_EQ(lp, -INFINITY);
    EXPECT_EQ(ids[0], 0);
}

} // namespace
