/* test_moe.cpp — cuda/moe.cu against float64 references.
 *
 * Routing: every routing configuration of models.md §1.7 (softmax with and
 * without renormalisation, sigmoid + correction bias + groups ranked by the
 * top-2 sum, V2's groups ranked by max, routed scaling), on random logits
 * drawn so that no decision is closer than fp32 can resolve; hand-built
 * cases where the group mask changes the answer, and ties (lower index
 * first, for experts and for groups).
 *
 * Experts: random x, expert weights and routing on decode (1 token) and
 * prefill shapes, both tile heights (16 and 64 rows), experts with no rows,
 * all rows to one expert, bad ids (skipped, counted), expert_counts, out =
 * and out +=, odd widths and a misaligned x (scalar path), every dtype; the
 * reference rounds the hidden rows h and the per-slot rows y to dtype where
 * the kernel stores them. */
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

/* ---- routing ---------------------------------------------------------------- */

struct RouteCfg {
    std::string name;
    int n_experts, top_k, n_group, topk_group;
    qilin_moe_score score;
    qilin_moe_group_score group_score;
    bool bias, renormalize;
    float routed_scale;
};

struct RouteRef {
    std::vector<int> ids;
    std::vector<double> weights;
    double min_gap; /* smallest score difference any decision rested on */
};

/* (value, index) ranking: larger value first, then lower index. */
std::vector<int> ranked(const std::vector<double> &v) {
    std::vector<int> order(v.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return v[a] > v[b]; });
    return order;
}

double gap_over(const std::vector<double> &v, const std::vector<int> &order, int count) {
    double g = INFINITY;
    for (int i = 0; i + 1 < (int)order.size() && i < count; i++) {
        double a = v[order[i]], b = v[order[i + 1]];
        if (std::isfinite(a) && std::isfinite(b)) g = std::min(g, a - b);
    }
    return g;
}

RouteRef route_reference(const RouteCfg &c, const float *logits, const float *bias) {
    const int E = c.n_experts;
    std::vector<double> score(E), sel(E);
    if (c.score == QILIN_MOE_SOFTMAX) {
        double m = -INFINITY, s = 0;
        for (int e = 0; e < E; e++) m = std::max(m, (double)logits[e]);
        for (int e = 0; e < E; e++) s += std::exp(logits[e] - m);
        for (int e = 0; e < E; e++) score[e] = std::exp(logits[e] - m) / s;
    } else {
        for (int e = 0; e < E; e++) score[e] = 1.0 / (1.0 + std::exp(-(double)logits[e]));
    }
    for (int e = 0; e < E; e++) sel[e] = score[e] + (bias ? bias[e] : 0.0);
    RouteRef r;
    r.min_gap = INFINITY;
    if (c.n_group > 1) {
        const int G = E / c.n_group;
        std::vector<double> gs(c.n_group);
        for (int g = 0; g < c.n_group; g++) {
            std::vector<double> m(sel.begin() + g * G, sel.begin() + (g + 1) * G);
            std::sort(m.rbegin(), m.rend());
            gs[g] = c.group_score == QILIN_MOE_GROUP_MAX ? m[0] : m[0] + m[1];
        }
        std::vector<int> order = ranked(gs);
        r.min_gap = gap_over(gs, order, c.topk_group);
        std::vector<bool> kept(c.n_group, false);
        for (int i = 0; i < c.topk_group; i++) kept[order[i]] = true;
        for (int e = 0; e < E; e++)
            if (!kept[e / G]) sel[e] = -INFINITY;
    }
    std::vector<int> order = ranked(sel);
    r.min_gap = std::min(r.min_gap, gap_over(sel, order, c.top_k));
    double sum = 0;
    for (int j = 0; j < c.top_k; j++) {
        r.ids.push_back(order[j]);
        r.weights.push_back(score[order[j]]);
        sum += score[order[j]];
    }
    for (double &w : r.weights) w = (c.renormalize ? w / (sum + 1e-20) : w) * c.routed_scale;
    return r;
}

/* Runs the kernel on [tokens, E] logits and checks ids exactly, weights to fp32 accuracy. */
void check_route(const RouteCfg &c, int tokens, const std::vector<float> &logits, const std::vector<float> &bias) {
    const int E = c.n_experts, k = c.top_k;
    DeviceBuffer<float> dlogits(logits.size()), dbias(E), dw((size_t)tokens * k);
    DeviceBuffer<int> dids((size_t)tokens * k);
    ASSERT_EQ(qilin_memcpy_h2d(dlogits.ptr, logits.data(), logits.size() * 4, nullptr), QILIN_OK);
    if (c.bias) {
        ASSERT_EQ(qilin_memcpy_h2d(dbias.ptr, bias.data(), (size_t)E * 4, nullptr), QILIN_OK);
    }
    QILIN_ASSERT_OK(dw.poison());
    QILIN_ASSERT_OK(dids.poison());
    qilin_moe_route_args a = {};
    a.topk_ids = dids.ptr;
    a.topk_weights = dw.ptr;
    a.logits = dlogits.ptr;
    a.correction_bias = c.bias ? dbias.ptr : nullptr;
    a.tokens = tokens;
    a.n_experts = E;
    a.top_k = k;
    a.n_group = c.n_group;
    a.topk_group = c.topk_group;
    a.score = c.score;
    a.group_score = c.group_score;
    a.renormalize = c.renormalize;
    a.routed_scale = c.routed_scale;
    QILIN_ASSERT_OK(qilin_moe_route(&a, nullptr));
    std::vector<int> ids = dids.download();
    std::vector<float> w = dw.download();
    std::vector<double> got, want;
    for (int t = 0; t < tokens; t++) {
        RouteRef r = route_reference(c, &logits[(size_t)t * E], c.bias ? bias.data() : nullptr);
        for (int j = 0; j < k; j++) {
            EXPECT_EQ(ids[(size_t)t * k + j], r.ids[j]) << c.name << " token " << t << " pick " << j;
            got.push_back(w[(size_t)t * k + j]);
            want.push_back(r.weights[j]);
        }
    }
    Comparison cmp = compare(got, want, kTolF32);
    printf("%s, %d tokens, weights: %s\n", c.name.c_str(), tokens, cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

const qilin_moe_score SM = QILIN_MOE_SOFTMAX, SG = QILIN_MOE_SIGMOID;
const qilin_moe_group_score GMAX = QILIN_MOE_GROUP_MAX, GTOP2 = QILIN_MOE_GROUP_TOP2_SUM;

/* models.md §1.7 / §7.2: E, k, groups, score, renormalise, routed_scaling_factor. */
std::vector<RouteCfg> model_configs() {
    return {
        {"mixtral", 8, 2, 1, 1, SM, GMAX, false, true, 1.0f},
        {"qwen1_5_moe", 60, 4, 1, 1, SM, GMAX, false, false, 1.0f},
        {"qwen3_moe", 128, 8, 1, 1, SM, GMAX, false, true, 1.0f},
        {"deepseek_v2_lite", 64, 6, 1, 1, SM, GMAX, false, false, 1.0f},
        {"deepseek_v2", 160, 6, 8, 3, SM, GMAX, false, false, 16.0f},
        {"deepseek_v3", 256, 8, 8, 4, SG, GTOP2, true, true, 2.5f},
        {"moonlight", 64, 6, 1, 1, SG, GTOP2, true, true, 2.446f},
        {"kimi_k2", 384, 8, 1, 1, SG, GTOP2, true, true, 2.827f},
    };
}

class MoeRoute : public testing::TestWithParam<RouteCfg> {};

TEST_P(MoeRoute, ModelConfigMatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const RouteCfg c = GetParam();
    const int E = c.n_experts;
    std::mt19937 rng(2024 + E * 3 + c.top_k);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<float> bias(E);
    for (float &b : bias) b = (float)(0.05 * normal(rng));
    for (int tokens : {1, 37}) {
        std::vector<float> logits((size_t)tokens * E);
        for (int t = 0; t < tokens; t++) {
            float *row = &logits[(size_t)t * E];
            /* redraw a token until every decision has a margin fp32 can see */
            do {
                for (int e = 0; e < E; e++) row[e] = (float)(2.0 * normal(rng));
            } while (route_reference(c, row, c.bias ? bias.data() : nullptr).min_gap < 1e-4);
        }
        check_route(c, tokens, logits, bias);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, MoeRoute, testing::ValuesIn(model_configs()),
                         [](const testing::TestParamInfo<RouteCfg> &i) { return i.param.name; });

/* A top-2-sum group mask: expert 0 has the highest score, alone in group 0,
 * whose top-2 sum is low, so group 0 is dropped and expert 0 is not chosen;
 * group 1's four experts tie, so the lower two indices win. */
TEST(MoeRouteHand, Top2SumGroupDropsTheBestExpert) {
    QILIN_REQUIRE_DEVICES(1);
    RouteCfg c = {"v3_mask", 16, 2, 4, 2, SG, GTOP2, true, true, 2.5f};
    std::vector<float> logits = {5, -5, -5, -5, 2, 2, 2, 2, 1.5f, 1.4f, 1.3f, 1.2f, -1, -1, -1, -1};
    std::vector<float> bias(16, 0.0f);
    RouteRef r = route_reference(c, logits.data(), bias.data());
    ASSERT_EQ(r.ids, (std::vector<int>{4, 5}));
    check_route(c, 1, logits, bias);
}

/* The bias moves selection only: expert 3 has the lowest score but a large
 * bias, so it is chosen, and its weight is its unbiased sigmoid. */
TEST(MoeRouteHand, BiasSelectsWeightsStayUnbiased) {
    QILIN_REQUIRE_DEVICES(1);
    RouteCfg c = {"bias", 8, 2, 1, 1, SG, GTOP2, true, false, 1.0f};
    std::vector<float> logits = {1, 2, 3, -4, 0.5f, 0.2f, 0.1f, 0};
    std::vector<float> bias = {0, 0, 0, 1, 0, 0, 0, 0};
    RouteRef r = route_reference(c, logits.data(), bias.data());
    ASSERT_EQ(r.ids, (std::vector<int>{3, 2}));
    check_route(c, 1, logits, bias);
}

/* V2 group_limited_greedy: groups ranked by max; expert 2 (third best
 * overall) sits in group 1, whose max is only third, so it loses to expert 1. */
TEST(MoeRouteHand, MaxGroupMaskChangesTheAnswer) {
    QILIN_REQUIRE_DEVICES(1);
    RouteCfg c = {"v2_mask", 8, 3, 4, 2, SM, GMAX, false, false, 16.0f};
    std::vector<float> logits = {3.0f, 2.9f, 2.95f, 2.94f, 3.1f, -5, -5, -5};
    RouteRef r = route_reference(c, logits.data(), nullptr);
    ASSERT_EQ(r.ids, (std::vector<int>{4, 0, 1}));
    check_route(c, 1, logits, {});
}

/* Equal logits: experts in index order, groups in index order. */
TEST(MoeRouteHand, TiesGoToTheLowerIndex) {
    QILIN_REQUIRE_DEVICES(1);
    RouteCfg flat = {"ties", 40, 5, 1, 1, SM, GMAX, false, true, 1.0f};
    check_route(flat, 3, std::vector<float>(3 * 40, 0.25f), {});
    RouteCfg grouped = {"group_ties", 32, 4, 8, 2, SG, GTOP2, true, true, 1.0f};
    std::vector<float> logits(32, 0.0f);
    logits[31] = logits[30] = 1.0f; /* group 7 best, then groups 0..6 tie: group 0 kept */
    RouteRef r = route_reference(grouped, logits.data(), std::vector<float>(32, 0.0f).data());
    ASSERT_EQ(r.ids, (std::vector<int>{30, 31, 0, 1}));
    check_route(grouped, 1, logits, std::vector<float>(32, 0.0f));
}

TEST(MoeRouteErrors, BadArgumentsNameTheProblem) {
    int ids[8];
    float w[8], logits[8];
    qilin_moe_route_args a = {};
    EXPECT_EQ(qilin_moe_route(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    a.topk_ids = ids;
    a.topk_weights = w;
    a.logits = logits;
    a.tokens = 1;
    a.n_experts = 8;
    a.top_k = 9;
    a.n_group = a.topk_group = 1;
    a.routed_scale = 1;
    EXPECT_EQ(qilin_moe_route(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("top_k=9"), std::string::npos) << qilin_last_error();
    a.top_k = 2;
    a.n_group = 3;
    EXPECT_EQ(qilin_moe_route(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("n_group=3"), std::string::npos) << qilin_last_error();
    a.n_group = 2;
    a.topk_group = 3;
    EXPECT_EQ(qilin_moe_route(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("topk_group=3"), std::string::npos) << qilin_last_error();
    a.topk_group = 1;
    a.correction_bias = logits; /* with softmax */
    EXPECT_EQ(qilin_moe_route(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("correction_bias"), std::string::npos) << qilin_last_error();
    a.correction_bias = nullptr;
    a.n_group = 8;
    a.topk_group = 2;
    a.group_score = QILIN_MOE_GROUP_TOP2_SUM; /* one expert per group */
    EXPECT_EQ(qilin_moe_route(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("top2_sum"), std::string::npos) << qilin_last_error();
}

/* ---- experts ---------------------------------------------------------------- */

enum class Ids { random, one_expert, bad };

struct ExpertCase {
    qilin_dtype dtype;
    int tokens, n_experts, top_k, hidden, ffn;
    Ids ids = Ids::random;
    bool accumulate = false, misaligned = false;
    qilin_act act = QILIN_ACT_SILU;
};

std::string expert_name(const testing::TestParamInfo<ExpertCase> &info) {
    const ExpertCase &c = info.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_t" + std::to_string(c.tokens) + "_e" +
                    std::to_string(c.n_experts) + "_k" + std::to_string(c.top_k) + "_h" + std::to_string(c.hidden) +
                    "_f" + std::to_string(c.ffn);
    if (c.ids == Ids::one_expert) s += "_one_expert";
    if (c.ids == Ids::bad) s += "_bad_ids";
    if (c.accumulate) s += "_accumulate";
    if (c.misaligned) s += "_misaligned";
    if (c.act != QILIN_ACT_SILU) s += c.act == QILIN_ACT_GELU_ERF ? "_gelu_erf" : "_gelu_tanh";
    return s;
}

double act_ref(qilin_act a, double x) {
    switch (a) {
    case QILIN_ACT_SILU: return x / (1.0 + std::exp(-x));
    case QILIN_ACT_GELU_ERF: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    default: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
}

class MoeExperts : public testing::TestWithParam<ExpertCase> {};

TEST_P(MoeExperts, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const ExpertCase c = GetParam();
    const qilin_dtype dt = c.dtype;
    const size_t es = qilin_dtype_size(dt), skew = c.misaligned ? 1 : 0;
    const int T = c.tokens, E = c.n_experts, K = c.top_k, H = c.hidden, F = c.ffn, slots = T * K;
    std::mt19937 rng(99 + T * 7 + E * 13 + K + H + F);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uni(0.1, 1.0);

    std::vector<unsigned char> x(((size_t)T * H + skew) * es), out0((size_t)T * H * es);
    std::vector<unsigned char> gu((size_t)E * 2 * F * H * es), dn((size_t)E * H * F * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), dt);
    for (size_t i = 0; i < out0.size() / es; i++) store(out0, i, normal(rng), dt);
    for (size_t i = 0; i < gu.size() / es; i++) store(gu, i, normal(rng) * 1.5 / std::sqrt(H), dt);
    for (size_t i = 0; i < dn.size() / es; i++) store(dn, i, normal(rng) / std::sqrt(F), dt);

    std::vector<int> ids(slots);
    std::vector<float> w(slots);
    std::vector<int> perm(E);
    std::iota(perm.begin(), perm.end(), 0);
    int want_bad = 0;
    for (int t = 0; t < T; t++) {
        std::shuffle(perm.begin(), perm.end(), rng); /* k distinct experts, as a router gives */
        for (int j = 0; j < K; j++) {
            int s = t * K + j;
            ids[s] = c.ids == Ids::one_expert ? E / 2 : perm[j];
            if (c.ids == Ids::bad && s % 5 == 2) {
                const int bad[] = {-1, E, E + 1000, -7};
                ids[s] = bad[(s / 5) % 4];
                want_bad++;
            }
            w[s] = (float)uni(rng);
        }
    }

    /* reference, rounding h and y to dtype where the kernel stores them */
    std::vector<double> want((size_t)T * H, 0.0);
    std::vector<int> want_counts(E, 0);
    std::vector<double> xt(H), h(F);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < H; i++) xt[i] = value_of(x, skew + (size_t)t * H + i, dt);
        for (int j = 0; j < K; j++) {
            int e = ids[t * K + j];
            if (e < 0 || e >= E) continue;
            want_counts[e]++;
            for (int f = 0; f < F; f++) {
                double g = 0, u = 0;
                size_t gr = ((size_t)e * 2 * F + f) * H, ur = ((size_t)e * 2 * F + F + f) * H;
                for (int i = 0; i < H; i++) {
                    g += xt[i] * value_of(gu, gr + i, dt);
                    u += xt[i] * value_of(gu, ur + i, dt);
                }
                h[f] = rounded(act_ref(c.act, g) * u, dt);
            }
            for (int o = 0; o < H; o++) {
                double y = 0;
                size_t dr = ((size_t)e * H + o) * F;
                for (int f = 0; f < F; f++) y += h[f] * value_of(dn, dr + f, dt);
                want[(size_t)t * H + o] += (double)w[t * K + j] * rounded(y, dt);
            }
        }
        if (c.accumulate)
            for (int o = 0; o < H; o++) want[(size_t)t * H + o] += value_of(out0, (size_t)t * H + o, dt);
    }

    size_t ws = qilin_moe_experts_workspace(T, K, E, H, F, dt);
    DeviceBuffer<unsigned char> dx(x.size()), dout(((size_t)T * H + skew) * es), dgu(gu.size()), ddn(dn.size()),
        dws(ws);
    DeviceBuffer<int> dids(slots), dcounts(E), dbad(1);
    DeviceBuffer<float> dw(slots);
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(dgu.upload(gu));
    QILIN_ASSERT_OK(ddn.upload(dn));
    QILIN_ASSERT_OK(dids.upload(ids));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(dws.poison());
    QILIN_ASSERT_OK(dcounts.poison());
    QILIN_ASSERT_OK(qilin_memset(dbad.ptr, 0, sizeof(int), nullptr));
    if (c.accumulate) {
        QILIN_ASSERT_OK(qilin_memcpy_h2d(dout.ptr + skew * es, out0.data(), out0.size(), nullptr));
    } else {
        QILIN_ASSERT_OK(dout.poison());
    }
    qilin_moe_experts_args a = {};
    a.out = dout.ptr + skew * es;
    a.accumulate = c.accumulate;
    a.x = dx.ptr + skew * es;
    a.topk_ids = dids.ptr;
    a.topk_weights = dw.ptr;
    a.gate_up = dgu.ptr;
    a.down = ddn.ptr;
    a.tokens = T;
    a.top_k = K;
    a.n_experts = E;
    a.hidden = H;
    a.ffn_dim = F;
    a.act = c.act;
    a.dtype = dt;
    a.expert_counts = dcounts.ptr;
    a.bad_ids = dbad.ptr;
    a.workspace = dws.ptr;
    a.workspace_bytes = ws;
    QILIN_ASSERT_OK(qilin_moe_experts(&a, nullptr));

    std::vector<unsigned char> out = dout.download();
    std::vector<double> got((size_t)T * H);
    for (size_t i = 0; i < got.size(); i++) got[i] = value_of(out, skew + i, dt);
    const Tolerance &base = dt == QILIN_F32 ? kTolDotF32 : dt == QILIN_BF16 ? kTolDotBF16 : kTolDotF16;
    Comparison cmp = compare(got, want, scaled_tolerance(base, want));
    printf("out: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
    std::vector<int> counts = dcounts.download();
    counts.resize(E);
    EXPECT_EQ(counts, want_counts);
    EXPECT_EQ(dbad.download()[0], want_bad);
}

std::vector<ExpertCase> expert_cases() {
    std::vector<ExpertCase> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        v.push_back({t, 1, 8, 2, 128, 64});                           /* decode */
        v.push_back({t, 1, 64, 6, 96, 40, Ids::random, true});        /* decode, out += */
        v.push_back({t, 37, 8, 2, 200, 88});                          /* Mixtral-like routing */
        v.push_back({t, 37, 8, 2, 200, 88, Ids::random, true});
        v.push_back({t, 19, 64, 6, 64, 48});                          /* many experts empty */
        v.push_back({t, 97, 4, 2, 72, 136});                          /* 64-row tiles */
        v.push_back({t, 97, 4, 2, 72, 136, Ids::random, true});
        v.push_back({t, 3, 16, 2, 136, 24});                          /* most experts get no row */
        v.push_back({t, 70, 4, 1, 64, 72, Ids::one_expert});          /* one expert, 16-row tiles */
        v.push_back({t, 150, 4, 1, 40, 32, Ids::one_expert, true});   /* one expert, 64-row tiles */
        v.push_back({t, 17, 8, 3, 64, 40, Ids::bad});                 /* bad ids skipped, counted */
        v.push_back({t, 9, 5, 2, 61, 37});                            /* odd widths: scalar path */
        v.push_back({t, 11, 6, 2, 64, 48, Ids::random, true, true});  /* misaligned x: scalar path */
        v.push_back({t, 5, 8, 2, 64, 32, Ids::random, false, false, QILIN_ACT_GELU_TANH});
    }
    v.push_back({QILIN_BF16, 3, 8, 2, 2048, 1408}); /* DeepSeek-V2-Lite's widths (fewer experts: host memory) */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeExperts, testing::ValuesIn(expert_cases()), expert_name);

/* tokens = 0 still writes expert_counts (all zero). */
TEST(MoeExpertsEdge, NoTokensZeroesCounts) {
    QILIN_REQUIRE_DEVICES(1);
    DeviceBuffer<int> counts(7);
    QILIN_ASSERT_OK(counts.poison());
    int dummy = 0;
    qilin_moe_experts_args a = {};
    a.out = &dummy;
    a.x = a.gate_up = a.down = &dummy;
    a.topk_ids = &dummy;
    a.topk_weights = (const float *)&dummy;
    a.top_k = 2;
    a.n_experts = 7;
    a.hidden = a.ffn_dim = 8;
    a.dtype = QILIN_BF16;
    a.expert_counts = counts.ptr;
    QILIN_ASSERT_OK(qilin_moe_experts(&a, nullptr));
    std::vector<int> c = counts.download();
    c.resize(7);
    EXPECT_EQ(c, std::vector<int>(7, 0));
}

TEST(MoeExpertsErrors, BadArgumentsNameTheProblem) {
    int dummy[64] = {};
    qilin_moe_experts_args a = {};
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("qilin_moe_experts"), std::string::npos);
    a.out = dummy;
    a.x = dummy;
    a.gate_up = dummy;
    a.down = dummy;
    a.topk_ids = dummy;
    a.topk_weights = (const float *)dummy;
    a.tokens = 4;
    a.top_k = 2;
    a.n_experts = 8;
    a.hidden = 64;
    a.ffn_dim = 32;
    a.dtype = QILIN_BF16;
    a.workspace = dummy;
    a.workspace_bytes = 16;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("workspace has 16 bytes"), std::string::npos) << qilin_last_error();
    a.top_k = 0;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("top_k=0"), std::string::npos) << qilin_last_error();
    a.top_k = 2;
    a.dtype = QILIN_I8;
    a.workspace_bytes = 1 << 20;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i8"), std::string::npos) << qilin_last_error();
    a.dtype = QILIN_BF16;
    a.act = (qilin_act)7;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("act=7"), std::string::npos) << qilin_last_error();
    EXPECT_EQ(qilin_moe_experts_workspace(0, 2, 8, 64, 32, QILIN_BF16), 0u);
    EXPECT_GT(qilin_moe_experts_workspace(1, 8, 256, 7168, 2048, QILIN_BF16), (size_t)8 * (7168 + 2048) * 2);
}

/* Expert parallelism's id shift (qilin_moe_local_ids): out = ids - first for
 * every element, odd counts (a partial block) and a count past one grid. */
TEST(MoeLocalIds, ShiftsEveryId) {
    QILIN_REQUIRE_DEVICES(1);
    for (int n : {1, 19, 989, 300000}) {
        std::mt19937 rng(7 + n);
        std::vector<int> ids(n), out(n, -12345);
        for (int &v : ids) v = (int)(rng() % 256);
        DeviceBuffer<int> din(n), dout(n);
        QILIN_ASSERT_OK(qilin_memcpy_h2d(din.ptr, ids.data(), (size_t)n * 4, nullptr));
        QILIN_ASSERT_OK(qilin_memset(dout.ptr, 0xff, (size_t)n * 4, nullptr));
        qilin_moe_local_ids_args a = {.out = dout.ptr, .ids = din.ptr, .n = n, .first = 96};
        QILIN_ASSERT_OK(qilin_moe_local_ids(&a, nullptr));
        QILIN_ASSERT_OK(qilin_memcpy_d2h(out.data(), dout.ptr, (size_t)n * 4, nullptr));
        QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
        int bad = 0;
        for (int i = 0; i < n; i++) bad += out[i] != ids[i] - 96;
        EXPECT_EQ(bad, 0) << "n = " << n;
    }
    qilin_moe_local_ids_args none = {};
    EXPECT_EQ(qilin_moe_local_ids(&none, nullptr), QILIN_OK); /* n = 0: nothing to do */
    none.n = 4;
    EXPECT_EQ(qilin_moe_local_ids(&none, nullptr), QILIN_ERR_INVALID_ARGUMENT);
}

} // namespace
