/* test_decode_graphs.cpp — decode steps replayed from captured graphs
 * (host/forward_layers.c) against the same steps run eagerly.
 *
 * Two copies of a fixture model, one with graphs (the default) and one with
 * qilin_model_options.no_graphs, run the same schedule: a prefill of four
 * sequences whose contexts start just below 64 (a max_kv bucket boundary,
 * decode_kv_bucket), then greedy decode steps whose batch shrinks and grows
 * (4, 2, 1, 3 — padded to 4 — and 4 again) while the contexts cross 64.
 * Each side picks its own greedy tokens. Asserted per step: the logits are
 * bit-equal (same kernels, same split plans; fp32) when the batch is a
 * bucket, within 1e-5 of the largest |logit| and finite when it was padded,
 * and the tokens equal; every decode step was replayed, graphs were
 * captured for each (bucket, kv bucket) key and replayed more often than
 * captured, and never under no_graphs; a replayed step issues no kernel
 * launch from the host (sim). Tensor parallelism keeps decode eager
 * (the sim's collectives cannot be captured) and still decodes. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "host/forward.h"
#include "tests/golden.h"
#include "tests/test_util.h"
#ifdef QILIN_SIM
#include "cuda/sim/sim_api.h"
#endif

namespace {

using namespace golden;

constexpr int kSeqs = 4, kCtx = 128;

qilin_model *Load(const std::string &name, bool graphs, int tp = 1) {
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_seqs = kSeqs, o.max_ctx = kCtx, o.max_batch_tokens = 256, o.tp = tp;
    o.no_graphs = !graphs;
    qilin_model *m = nullptr;
    EXPECT_EQ(qilin_model_load((models_dir() + "/" + name).c_str(), &o, &m), QILIN_OK) << qilin_last_error();
    return m;
}

int Argmax(const float *row, int vocab) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* One model's run of the schedule: per sequence its context and next token. */
struct ModelRun {
    ModelRun(qilin_model *model, int vocab_size) : m(model), vocab(vocab_size) {}
    qilin_model *m;
    int vocab;
    std::vector<int> pos, next;
    std::vector<float> logits;
    unsigned long long last_step_launches = 0;

    /* One step of `seqs` (each one new token: its `next`), greedy. */
    void Decode(const std::vector<int> &seqs) {
        std::vector<int> slot, start, n_tok, tokens;
        for (int s : seqs) slot.push_back(s), start.push_back(pos[s]), n_tok.push_back(1), tokens.push_back(next[s]);
        qilin_batch b = {(int)seqs.size(), slot.data(), start.data(), n_tok.data(), tokens.data(), false, nullptr};
        logits.assign(seqs.size() * (size_t)vocab, 0.0f);
#ifdef QILIN_SIM
        unsigned long long before = qsim_launch_count();
#endif
        ASSERT_EQ(qilin_forward(m, &b, logits.data()), QILIN_OK) << qilin_last_error();
#ifdef QILIN_SIM
        last_step_launches = qsim_launch_count() - before;
#endif
        for (size_t i = 0; i < seqs.size(); i++) {
            pos[seqs[i]]++;
            next[seqs[i]] = Argmax(logits.data() + i * vocab, vocab);
        }
    }
};

class DecodeGraphs : public testing::TestWithParam<std::string> {};

TEST_P(DecodeGraphs, ReplayEqualsEagerAcrossBatchSizesAndKvBuckets) {
    QILIN_REQUIRE_DEVICES(1);
    const std::string dir = models_dir() + "/" + GetParam();
    Golden g;
    std::string why;
    ASSERT_TRUE(load_golden(dir, &g, &why)) << why;
    ModelRun graph(Load(GetParam(), true), g.vocab), eager(Load(GetParam(), false), g.vocab);
    ASSERT_NE(graph.m, nullptr);
    ASSERT_NE(eager.m, nullptr);

    /* prefill: sequence s gets 58 + s tokens, cycled from the golden prompts */
    std::vector<int> slot, start, n_tok, tokens;
    for (int s = 0; s < kSeqs; s++) {
        const std::vector<int> &p = g.prompts[s % g.prompts.size()];
        slot.push_back(s), start.push_back(0), n_tok.push_back(58 + s);
        for (int t = 0; t < 58 + s; t++) tokens.push_back(p[t % p.size()]);
    }
    qilin_batch prefill = {kSeqs, slot.data(), start.data(), n_tok.data(), tokens.data(), false, nullptr};
    for (ModelRun *r : {&graph, &eager}) {
        r->logits.assign(kSeqs * (size_t)g.vocab, 0.0f);
        ASSERT_EQ(qilin_forward(r->m, &prefill, r->logits.data()), QILIN_OK) << qilin_last_error();
        for (int s = 0; s < kSeqs; s++) {
            r->pos.push_back(58 + s);
            r->next.push_back(Argmax(r->logits.data() + (size_t)s * g.vocab, g.vocab));
        }
    }
    ASSERT_EQ(graph.next, eager.next);

    const std::vector<std::vector<int>> schedule = {
        {0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1}, {2, 3}, {3}, {3}, {0, 1, 2}, {0, 1, 2, 3}, {0, 1, 2, 3},
        {1},          {0, 1},       {0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 3}};
    unsigned long long eager_launches = 0, replay_launches = ~0ull;
    for (size_t step = 0; step < schedule.size(); step++) {
        SCOPED_TRACE("decode step " + std::to_string(step));
        qilin_forward_stats before;
        qilin_model_forward_stats(graph.m, &before);
        graph.Decode(schedule[step]);
        eager.Decode(schedule[step]);
        ASSERT_FALSE(HasFailure());
        const bool bucket = (schedule[step].size() & (schedule[step].size() - 1)) == 0;
        if (bucket) {
            ASSERT_EQ(std::memcmp(graph.logits.data(), eager.logits.data(), graph.logits.size() * sizeof(float)), 0)
                << "graph replay logits differ from the eager step's";
        } else { /* padded to the next bucket: other split plans, same values within fp32 rounding */
            double max_ref = 0, max_diff = 0;
            for (size_t i = 0; i < graph.logits.size(); i++) {
                ASSERT_TRUE(std::isfinite(graph.logits[i])) << "logit " << i;
                max_ref = std::max(max_ref, (double)std::fabs(eager.logits[i]));
                max_diff = std::max(max_diff, (double)std::fabs(graph.logits[i] - eager.logits[i]));
            }
            ASSERT_LE(max_diff, 1e-5 * max_ref) << "padded replay strays from the eager step";
        }
        ASSERT_EQ(graph.next, eager.next);
        qilin_forward_stats after;
        qilin_model_forward_stats(graph.m, &after);
        EXPECT_EQ(after.graph_replays - before.graph_replays, 1u) << "every decode step is replayed";
        if (after.graph_captures == before.graph_captures) /* a pure replay */
            replay_launches = std::min(replay_launches, graph.last_step_launches);
        eager_launches = std::max(eager_launches, eager.last_step_launches);
    }
    for (int s = 0; s < kSeqs; s++) EXPECT_GT(graph.pos[s], 64) << "sequence " << s << " never crossed 64";
    qilin_forward_stats gs, es;
    qilin_model_forward_stats(graph.m, &gs);
    qilin_model_forward_stats(eager.m, &es);
    /* keys met: n_seqs 4 in buckets 64 and 80, 2 and 1 (in 64 and/or 80) */
    EXPECT_GE(gs.graph_captures, 4u);
    EXPECT_GT(gs.graph_replays, gs.graph_captures);
    EXPECT_EQ(es.graph_captures, 0u);
    EXPECT_EQ(es.graph_replays, 0u);
#ifdef QILIN_SIM
    std::printf("  %s: kernel launches issued per decode step: eager up to %llu, replayed %llu\n",
                GetParam().c_str(), eager_launches, replay_launches);
    EXPECT_GT(eager_launches, 0u);
    EXPECT_EQ(replay_launches, 0u) << "a replayed step launched kernels from the host";
#endif
    qilin_model_free(graph.m);
    qilin_model_free(eager.m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecodeGraphs, testing::Values("llama", "qwen3_moe", "deepseek_v3", "gpt_neox"),
                         [](const testing::TestParamInfo<std::string> &i) { return i.param; });

TEST(DecodeGraphs, TensorParallelDecodeStaysEager) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_model *m = Load("llama", true, 2);
    ASSERT_NE(m, nullptr);
    int slot = 0, start = 0, n = 3, toks[3] = {1, 2, 3};
    qilin_batch prefill = {1, &slot, &start, &n, toks, false, nullptr};
    std::vector<float> logits(qilin_model_get_desc(m)->vocab);
    ASSERT_EQ(qilin_forward(m, &prefill, logits.data()), QILIN_OK) << qilin_last_error();
    int one = 1, tok = 4;
    start = 3;
    qilin_batch decode = {1, &slot, &start, &one, &tok, false, nullptr};
    ASSERT_EQ(qilin_forward(m, &decode, logits.data()), QILIN_OK) << qilin_last_error();
    qilin_forward_stats st;
    qilin_model_forward_stats(m, &st);
    EXPECT_EQ(st.graph_replays, 0u);
    qilin_model_free(m);
}

} // namespace
