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
#include "host/quant.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/moe_mma_planted.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

#if defined(QILIN_SIM)
#include "cuda/sim/sim_api.h"
#endif

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

/* Random inputs of one case (normal x and weights scaled to keep every
 * activation O(1): never zeros, so a dropped term shows) and the float64
 * reference, rounding h and y to dtype where the kernel stores them. */
struct ExpertData {
    size_t es, skew;
    std::vector<unsigned char> x, out0, gu, dn;
    std::vector<int> ids, want_counts;
    std::vector<float> w;
    std::vector<double> want;
    int want_bad = 0;
};

void make_inputs(const ExpertCase &c, ExpertData &d) {
    const qilin_dtype dt = c.dtype;
    const int T = c.tokens, E = c.n_experts, K = c.top_k, H = c.hidden, F = c.ffn, slots = T * K;
    d.es = qilin_dtype_size(dt);
    d.skew = c.misaligned ? 1 : 0;
    std::mt19937 rng(99 + T * 7 + E * 13 + K + H + F);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uni(0.1, 1.0);
    d.x.resize(((size_t)T * H + d.skew) * d.es);
    d.out0.resize((size_t)T * H * d.es);
    d.gu.resize((size_t)E * 2 * F * H * d.es);
    d.dn.resize((size_t)E * H * F * d.es);
    for (size_t i = 0; i < d.x.size() / d.es; i++) store(d.x, i, normal(rng), dt);
    for (size_t i = 0; i < d.out0.size() / d.es; i++) store(d.out0, i, normal(rng), dt);
    for (size_t i = 0; i < d.gu.size() / d.es; i++) store(d.gu, i, normal(rng) * 1.5 / std::sqrt(H), dt);
    for (size_t i = 0; i < d.dn.size() / d.es; i++) store(d.dn, i, normal(rng) / std::sqrt(F), dt);

    d.ids.resize(slots);
    d.w.resize(slots);
    std::vector<int> perm(E);
    std::iota(perm.begin(), perm.end(), 0);
    for (int t = 0; t < T; t++) {
        std::shuffle(perm.begin(), perm.end(), rng); /* k distinct experts, as a router gives */
        for (int j = 0; j < K; j++) {
            int s = t * K + j;
            d.ids[s] = c.ids == Ids::one_expert ? E / 2 : perm[j];
            if (c.ids == Ids::bad && s % 5 == 2) {
                const int bad[] = {-1, E, E + 1000, -7};
                d.ids[s] = bad[(s / 5) % 4];
                d.want_bad++;
            }
            d.w[s] = (float)uni(rng);
        }
    }
}

void make_reference(const ExpertCase &c, ExpertData &d) {
    const qilin_dtype dt = c.dtype;
    const int T = c.tokens, E = c.n_experts, K = c.top_k, H = c.hidden, F = c.ffn;
    d.want.assign((size_t)T * H, 0.0);
    d.want_counts.assign(E, 0);
    std::vector<double> xt(H), h(F);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < H; i++) xt[i] = value_of(d.x, d.skew + (size_t)t * H + i, dt);
        for (int j = 0; j < K; j++) {
            int e = d.ids[t * K + j];
            if (e < 0 || e >= E) continue;
            d.want_counts[e]++;
            for (int f = 0; f < F; f++) {
                double g = 0, u = 0;
                size_t gr = ((size_t)e * 2 * F + f) * H, ur = ((size_t)e * 2 * F + F + f) * H;
                for (int i = 0; i < H; i++) {
                    g += xt[i] * value_of(d.gu, gr + i, dt);
                    u += xt[i] * value_of(d.gu, ur + i, dt);
                }
                h[f] = rounded(act_ref(c.act, g) * u, dt);
            }
            for (int o = 0; o < H; o++) {
                double y = 0;
                size_t dr = ((size_t)e * H + o) * F;
                for (int f = 0; f < F; f++) y += h[f] * value_of(d.dn, dr + f, dt);
                d.want[(size_t)t * H + o] += (double)d.w[t * K + j] * rounded(y, dt);
            }
        }
        if (c.accumulate)
            for (int o = 0; o < H; o++) d.want[(size_t)t * H + o] += value_of(d.out0, (size_t)t * H + o, dt);
    }
}

struct ExpertResult {
    std::vector<double> out;
    std::vector<int> counts;
    int bad = 0;
};

/* qilin_moe_experts on the case with the GEMM path `gemm`, into a poisoned
 * output (or out0 for out +=) and a poisoned workspace. */
void run_experts(const ExpertCase &c, const ExpertData &d, qilin_moe_gemm gemm, ExpertResult &r) {
    const qilin_dtype dt = c.dtype;
    const int T = c.tokens, E = c.n_experts, K = c.top_k, H = c.hidden, F = c.ffn, slots = T * K;
    const size_t es = d.es, skew = d.skew;
    size_t ws = qilin_moe_experts_workspace(T, K, E, H, F, dt);
    DeviceBuffer<unsigned char> dx(d.x.size()), dout(((size_t)T * H + skew) * es), dgu(d.gu.size()),
        ddn(d.dn.size()), dws(ws);
    DeviceBuffer<int> dids(slots), dcounts(E), dbad(1);
    DeviceBuffer<float> dw(slots);
    QILIN_ASSERT_OK(dx.upload(d.x));
    QILIN_ASSERT_OK(dgu.upload(d.gu));
    QILIN_ASSERT_OK(ddn.upload(d.dn));
    QILIN_ASSERT_OK(dids.upload(d.ids));
    QILIN_ASSERT_OK(dw.upload(d.w));
    QILIN_ASSERT_OK(dws.poison());
    QILIN_ASSERT_OK(dcounts.poison());
    QILIN_ASSERT_OK(qilin_memset(dbad.ptr, 0, sizeof(int), nullptr));
    if (c.accumulate) {
        QILIN_ASSERT_OK(qilin_memcpy_h2d(dout.ptr + skew * es, d.out0.data(), d.out0.size(), nullptr));
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
    a.gemm = gemm;
    QILIN_ASSERT_OK(qilin_moe_experts(&a, nullptr));

    std::vector<unsigned char> out = dout.download();
    r.out.resize((size_t)T * H);
    for (size_t i = 0; i < r.out.size(); i++) r.out[i] = value_of(out, skew + i, dt);
    r.counts = dcounts.download();
    r.counts.resize(E);
    r.bad = dbad.download()[0];
}

const Tolerance &dot_tolerance(qilin_dtype dt) {
    return dt == QILIN_F32 ? kTolDotF32 : dt == QILIN_BF16 ? kTolDotBF16 : kTolDotF16;
}

void expect_matches(const ExpertCase &c, const ExpertData &d, const ExpertResult &r, const char *what) {
    Comparison cmp = compare(r.out, d.want, scaled_tolerance(dot_tolerance(c.dtype), d.want));
    printf("%s: %s\n", what, cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << what << ": " << cmp.summary;
    EXPECT_EQ(r.counts, d.want_counts) << what;
    EXPECT_EQ(r.bad, d.want_bad) << what;
}

class MoeExperts : public testing::TestWithParam<ExpertCase> {};

/* The automatic choice: tensor cores for bf16/f16 with widths that are
 * multiples of 8 and aligned matrices, CUDA cores otherwise (fp32 exactly). */
TEST_P(MoeExperts, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const ExpertCase c = GetParam();
    ExpertData d;
    make_inputs(c, d);
    make_reference(c, d);
    ExpertResult r;
    ASSERT_NO_FATAL_FAILURE(run_experts(c, d, QILIN_MOE_GEMM_AUTO, r));
    expect_matches(c, d, r, "out");
}

/* Both GEMM paths forced on the same inputs: each against the reference,
 * and the tensor-core result against the CUDA-core one (they differ only in
 * fp32 summation order, plus the rounding of h to dtype that it moves). */
TEST_P(MoeExperts, TensorCoresMatchCudaCores) {
    QILIN_REQUIRE_DEVICES(1);
    const ExpertCase c = GetParam();
    if (c.dtype == QILIN_F32 || c.hidden % 8 || c.ffn % 8 || c.misaligned)
        GTEST_SKIP() << "CUDA cores only: fp32 stays exact, and tensor cores need widths % 8 and aligned matrices";
    if ((long long)c.hidden * c.ffn > 100000)
        GTEST_SKIP() << "the real-width case runs once (MatchesFloat64Reference, tensor cores): emulator time";
    ExpertData d;
    make_inputs(c, d);
    make_reference(c, d);
    ExpertResult tc, cc;
    ASSERT_NO_FATAL_FAILURE(run_experts(c, d, QILIN_MOE_GEMM_TENSOR_CORES, tc));
    ASSERT_NO_FATAL_FAILURE(run_experts(c, d, QILIN_MOE_GEMM_CUDA_CORES, cc));
    expect_matches(c, d, tc, "tensor cores");
    expect_matches(c, d, cc, "cuda cores");
    Comparison cmp = compare(tc.out, cc.out, scaled_tolerance(dot_tolerance(c.dtype), cc.out));
    printf("tensor vs cuda cores: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
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
        v.push_back({t, 1, 32, 8, 264, 72});                          /* decode, 1-row experts, k tail */
        v.push_back({t, 130, 2, 2, 136, 200});                        /* prefill: 64-row tiles, k tails */
    }
    v.push_back({QILIN_BF16, 3, 8, 2, 2048, 1408}); /* DeepSeek-V2-Lite's widths (fewer experts: host memory) */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeExperts, testing::ValuesIn(expert_cases()), expert_name);

/* ---- quantized experts (FP8 block, INT4 group) ------------------------------
 * Each expert's gate, up ([Ft, H]) and down ([H, Ft]) are quantized as the
 * checkpoints are (host/quant.c's quantizer: FP8 e4m3 with 128 x 128 block
 * scales, INT4 compressed-tensors groups with bf16 scales) at a full width
 * Ft, and the kernel gets the slice [off, off + F) of the ffn dim, as a
 * tensor-parallel rank does (off not on the 128 / group grid: the scale
 * lookups must honour gate_up_row_off / down_col_off). The reference is the
 * float64 product of the same slices dequantized by host/quant.c to dtype
 * (what the kernel multiplies after its in-shared-memory dequantization). */
struct QuantCase {
    qilin_dtype dtype;
    int tokens, n_experts, top_k, hidden, ffn, full_ffn, off;
    qilin_moe_wq wq;
    int group; /* INT4 */
    Ids ids = Ids::random;
};

std::string quant_name(const testing::TestParamInfo<QuantCase> &info) {
    const QuantCase &c = info.param;
    return std::string(c.wq == QILIN_MOE_W_FP8_BLOCK ? "fp8" : "int4") + "_" + qilin_dtype_name(c.dtype) + "_t" +
           std::to_string(c.tokens) + "_e" + std::to_string(c.n_experts) + "_k" + std::to_string(c.top_k) + "_h" +
           std::to_string(c.hidden) + "_f" + std::to_string(c.ffn) + "_of" + std::to_string(c.full_ffn) + "_at" +
           std::to_string(c.off) + (c.ids == Ids::bad ? "_bad_ids" : "");
}

/* One quantized matrix [rows, cols] and its dequantization to dtype. */
struct QMat {
    quant_weight w{};
    std::vector<unsigned char> data, scales, deq;
};

void quantize(QMat &m, qilin_wformat f, int64_t rows, int64_t cols, int group, double sd, std::mt19937 &rng,
              qilin_dtype dt) {
    std::normal_distribution<double> normal(0.0, sd);
    std::vector<float> src((size_t)(rows * cols));
    for (float &v : src) v = (float)normal(rng);
    m.w = quant_weight{};
    m.w.format = f, m.w.rows = rows, m.w.cols = cols, m.w.scale_dtype = QILIN_BF16, m.w.group_size = group;
    size_t db = 0, sb = 0;
    ASSERT_EQ(quant_sizes(&m.w, &db, &sb), QILIN_OK) << qilin_last_error();
    m.data.assign(db, 0), m.scales.assign(sb, 0);
    m.w.data_bytes = db, m.w.scale_bytes = sb;
    ASSERT_EQ(quant_quantize(src.data(), &m.w, m.data.data(), m.scales.data()), QILIN_OK) << qilin_last_error();
    m.deq.assign((size_t)(rows * cols) * qilin_dtype_size(dt), 0);
    ASSERT_EQ(quant_dequantize(&m.w, 0, rows, dt, m.deq.data()), QILIN_OK) << qilin_last_error();
}

/* Appends rows [r0, r0 + n) x bytes [b0, b0 + nb) of a row-major matrix with row stride ld. */
void append_block(std::vector<unsigned char> &out, const std::vector<unsigned char> &src, int64_t r0, int64_t n,
                  int64_t b0, int64_t nb, int64_t ld) {
    for (int64_t r = r0; r < r0 + n; r++)
        out.insert(out.end(), src.begin() + (size_t)(r * ld + b0), src.begin() + (size_t)(r * ld + b0 + nb));
}

struct QuantExperts {
    std::vector<unsigned char> gu, dn, gu_scale, dn_scale;
    int row_off = 0, col_off = 0;
};

/* Builds the device layouts of moe.h from each expert's quantized gate, up
 * and down, and writes the dequantized slices into d.gu / d.dn for the
 * reference. */
void make_quant_experts(const QuantCase &c, ExpertData &d, QuantExperts &q) {
    const bool fp8 = c.wq == QILIN_MOE_W_FP8_BLOCK;
    const qilin_wformat f = fp8 ? QILIN_WF_FP8_BLOCK : QILIN_WF_INT4_GROUP;
    const int64_t E = c.n_experts, H = c.hidden, F = c.ffn, Ft = c.full_ffn, o = c.off, B = 128, G = c.group;
    const size_t es = qilin_dtype_size(c.dtype);
    std::mt19937 rng(7 + E + H * 3 + F);
    q.row_off = fp8 ? (int)(o % B) : 0;
    q.col_off = (int)(fp8 ? o % B : o % G);
    const int64_t rb_gu = (q.row_off + F + B - 1) / B, kb_h = (H + B - 1) / B, cb_dn = (q.col_off + F + B - 1) / B;
    const int64_t gd = fp8 ? 0 : (q.col_off + F + G - 1) / G;
    d.gu.clear(), d.dn.clear();
    for (int64_t e = 0; e < E; e++) {
        QMat gate, up, down;
        ASSERT_NO_FATAL_FAILURE(quantize(gate, f, Ft, H, G, 1.5 / std::sqrt((double)H), rng, c.dtype));
        ASSERT_NO_FATAL_FAILURE(quantize(up, f, Ft, H, G, 1.5 / std::sqrt((double)H), rng, c.dtype));
        ASSERT_NO_FATAL_FAILURE(quantize(down, f, H, Ft, G, 1.0 / std::sqrt((double)F), rng, c.dtype));
        for (QMat *m : {&gate, &up}) { /* rows [o, o + F) */
            append_block(d.gu, m->deq, o, F, 0, H * (int64_t)es, H * (int64_t)es);
            if (fp8) {
                append_block(q.gu, m->data, o, F, 0, H, H);
                append_block(q.gu_scale, m->scales, o / B, rb_gu, 0, kb_h * 4, kb_h * 4);
            } else {
                append_block(q.gu, m->data, o, F, 0, H / 2, H / 2);
                append_block(q.gu_scale, m->scales, o, F, 0, H / G * 2, H / G * 2);
            }
        }
        append_block(d.dn, down.deq, 0, H, o * (int64_t)es, F * (int64_t)es, Ft * (int64_t)es);
        if (fp8) {
            const int64_t kb_ft = (Ft + B - 1) / B;
            append_block(q.dn, down.data, 0, H, o, F, Ft);
            append_block(q.dn_scale, down.scales, 0, kb_h, o / B * 4, cb_dn * 4, kb_ft * 4);
        } else {
            append_block(q.dn, down.data, 0, H, o / 2, F / 2, Ft / 2);
            append_block(q.dn_scale, down.scales, 0, H, o / G * 2, gd * 2, Ft / G * 2);
        }
    }
}

class MoeQuantExperts : public testing::TestWithParam<QuantCase> {};

/* Quantized experts against the float64 reference of the dequantized
 * slices, into a poisoned output and workspace; expert counts and bad ids
 * as for dtype weights. */
TEST_P(MoeQuantExperts, MatchesFloat64ReferenceOfDequantizedWeights) {
    QILIN_REQUIRE_DEVICES(1);
    const QuantCase c = GetParam();
    ExpertCase ec{c.dtype, c.tokens, c.n_experts, c.top_k, c.hidden, c.ffn, c.ids};
    ExpertData d;
    make_inputs(ec, d);
    QuantExperts q;
    ASSERT_NO_FATAL_FAILURE(make_quant_experts(c, d, q));
    make_reference(ec, d);

    const int T = c.tokens, E = c.n_experts, K = c.top_k, H = c.hidden, F = c.ffn, slots = T * K;
    size_t ws = qilin_moe_experts_workspace(T, K, E, H, F, c.dtype);
    DeviceBuffer<unsigned char> dx(d.x.size()), dout((size_t)T * H * d.es), dgu(q.gu.size()), ddn(q.dn.size()),
        dgus(q.gu_scale.size()), ddns(q.dn_scale.size()), dws(ws);
    DeviceBuffer<int> dids(slots), dcounts(E), dbad(1);
    DeviceBuffer<float> dw(slots);
    QILIN_ASSERT_OK(dx.upload(d.x));
    QILIN_ASSERT_OK(dgu.upload(q.gu));
    QILIN_ASSERT_OK(ddn.upload(q.dn));
    QILIN_ASSERT_OK(dgus.upload(q.gu_scale));
    QILIN_ASSERT_OK(ddns.upload(q.dn_scale));
    QILIN_ASSERT_OK(dids.upload(d.ids));
    QILIN_ASSERT_OK(dw.upload(d.w));
    QILIN_ASSERT_OK(dws.poison());
    QILIN_ASSERT_OK(dout.poison());
    QILIN_ASSERT_OK(dcounts.poison());
    QILIN_ASSERT_OK(qilin_memset(dbad.ptr, 0, sizeof(int), nullptr));
    qilin_moe_experts_args a = {};
    a.out = dout.ptr, a.x = dx.ptr, a.topk_ids = dids.ptr, a.topk_weights = dw.ptr;
    a.gate_up = dgu.ptr, a.down = ddn.ptr, a.tokens = T, a.top_k = K, a.n_experts = E, a.hidden = H, a.ffn_dim = F;
    a.act = QILIN_ACT_SILU, a.dtype = c.dtype, a.expert_counts = dcounts.ptr, a.bad_ids = dbad.ptr;
    a.workspace = dws.ptr, a.workspace_bytes = ws;
    a.wq = c.wq, a.gate_up_scale = dgus.ptr, a.down_scale = ddns.ptr;
    a.gate_up_row_off = q.row_off, a.down_col_off = q.col_off, a.group = c.group;
    QILIN_ASSERT_OK(qilin_moe_experts(&a, nullptr));
    ExpertResult r;
    std::vector<unsigned char> out = dout.download();
    r.out.resize((size_t)T * H);
    for (size_t i = 0; i < r.out.size(); i++) r.out[i] = value_of(out, i, c.dtype);
    r.counts = dcounts.download();
    r.counts.resize(E);
    r.bad = dbad.download()[0];
    expect_matches(ec, d, r, "quantized experts");
}

std::vector<QuantCase> quant_cases() {
    const qilin_moe_wq F8 = QILIN_MOE_W_FP8_BLOCK, I4 = QILIN_MOE_W_INT4_GROUP;
    return {
        /* decode: 1 token, k = 2 of 8 experts (6 experts get no row); ffn slice mid-block */
        {QILIN_BF16, 1, 8, 2, 136, 48, 192, 136, F8, 0},
        /* prefill-size tiles, partial 128 blocks in both dims, uneven rows per expert */
        {QILIN_BF16, 70, 3, 2, 200, 96, 256, 64, F8, 0}, /* rows 64..160: two scale block rows */
        {QILIN_F16, 9, 6, 3, 64, 32, 32, 0, F8, 0, Ids::bad},
        /* INT4: group 32, slice starting mid-group (col_off 16) */
        {QILIN_BF16, 1, 8, 2, 96, 48, 96, 16, I4, 32},
        {QILIN_BF16, 70, 3, 2, 64, 32, 64, 32, I4, 32},
        {QILIN_F16, 9, 6, 3, 128, 24, 48, 24, I4, 8, Ids::bad},
        /* decode tiles, 74 tile slots x 16 gate_up column blocks > the launcher's ~1024 decode blocks:
         * blocks loop over column blocks; many experts with 1-4 rows, many with none */
        {QILIN_BF16, 20, 64, 8, 64, 128, 128, 0, F8, 0},
        {QILIN_BF16, 20, 64, 8, 64, 128, 256, 128, I4, 32},
    };
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeQuantExperts, testing::ValuesIn(quant_cases()), quant_name);

/* Quantized experts are refused where no kernel takes them, with the reason. */
TEST(MoeQuantExpertsEdge, RefusedOutsideTheTensorCoreKernel) {
    QILIN_REQUIRE_DEVICES(1);
    DeviceBuffer<unsigned char> buf(1 << 16);
    qilin_moe_experts_args a = {};
    a.out = a.workspace = buf.ptr;
    a.x = a.gate_up = a.down = buf.ptr;
    a.topk_ids = (const int *)buf.ptr, a.topk_weights = (const float *)buf.ptr;
    a.tokens = 1, a.top_k = 1, a.n_experts = 2, a.hidden = 64, a.ffn_dim = 32, a.dtype = QILIN_F32;
    a.workspace_bytes = 1 << 16;
    a.wq = QILIN_MOE_W_FP8_BLOCK, a.gate_up_scale = a.down_scale = buf.ptr;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_UNSUPPORTED); /* fp32: CUDA cores only */
    EXPECT_NE(std::string(qilin_last_error()).find("tensor cores"), std::string::npos) << qilin_last_error();
    a.dtype = QILIN_BF16, a.down_scale = nullptr;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("down_scale"), std::string::npos) << qilin_last_error();
    a.down_scale = buf.ptr, a.down_col_off = 128;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    a.down_col_off = 0, a.wq = QILIN_MOE_W_INT4_GROUP, a.group = 12;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("group"), std::string::npos) << qilin_last_error();
    a.wq = (qilin_moe_wq)7;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
}

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
    alignas(16) int dummy[64] = {};
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
    a.dtype = QILIN_F32;
    a.gemm = QILIN_MOE_GEMM_TENSOR_CORES; /* fp32 stays on CUDA cores: asking for tensor cores is an error */
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("tensor cores"), std::string::npos) << qilin_last_error();
    a.gemm = (qilin_moe_gemm)9;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("gemm=9"), std::string::npos) << qilin_last_error();
    a.gemm = QILIN_MOE_GEMM_AUTO;
    a.dtype = QILIN_BF16;
    a.act = (qilin_act)7;
    EXPECT_EQ(qilin_moe_experts(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("act=7"), std::string::npos) << qilin_last_error();
    EXPECT_EQ(qilin_moe_experts_workspace(0, 2, 8, 64, 32, QILIN_BF16), 0u);
    EXPECT_GT(qilin_moe_experts_workspace(1, 8, 256, 7168, 2048, QILIN_BF16), (size_t)8 * (7168 + 2048) * 2);
}

/* The tensor-core pipeline's two classic bugs, planted in the real kernel
 * (a template flag, tests/moe_mma_planted.cu): reading a slab without
 * cp.async.wait_group, and issuing the cp.async that overwrites a slot
 * before the barrier that follows every warp's ldmatrix of it. Each must
 * change the result (NaN from the emulator's poisoned copies) under at least
 * one of seeds 1..8, while the production kernel matches the float64
 * reference under every one, for both tile heights (decode swap-AB 16,
 * prefill 64). K = 200: 7 slabs through the prefill tile's 3 stages, so
 * slots are reused. The missing wait is caught under every seed (the copies
 * land only at the wait). The early overwrite needs one warp a whole slab
 * ahead of another: the 20-row prefill tile has two warps with only padding
 * rows that race ahead (caught under every seed); the decode tile is one
 * warp (and 8 stages hold all 7 slabs), so there it cannot happen, and that
 * bug is asserted over both tile heights together. */
TEST(MoeMmaPlanted, PipelineBugsCaughtUnderSomeSeedCleanKernelPassesAll) {
#if !defined(QILIN_SIM)
    GTEST_SKIP() << "emulator-only: these kernels are broken on purpose";
#else
    QILIN_REQUIRE_DEVICES(1);
    const qilin_dtype dt = QILIN_BF16;
    const int K = 200, n_out = 72, seeds = 16;
    int caught_war = 0;
    for (int bt : {16, 64}) {
        const int rows = bt == 16 ? 16 : 20; /* 20: warps 2, 3 own only padding rows and race ahead */
        std::mt19937 rng(5 + bt);
        std::normal_distribution<double> normal(0.0, 1.0);
        std::vector<unsigned char> x((size_t)rows * K * 2), w((size_t)2 * n_out * K * 2);
        for (size_t i = 0; i < x.size() / 2; i++) store(x, i, normal(rng), dt);
        for (size_t i = 0; i < w.size() / 2; i++) store(w, i, normal(rng) / std::sqrt(K), dt);
        std::vector<double> want((size_t)rows * n_out);
        for (int r = 0; r < rows; r++)
            for (int f = 0; f < n_out; f++) {
                double g = 0, u = 0;
                for (int i = 0; i < K; i++) {
                    double xv = value_of(x, (size_t)r * K + i, dt);
                    g += xv * value_of(w, (size_t)f * K + i, dt);
                    u += xv * value_of(w, (size_t)(n_out + f) * K + i, dt);
                }
                want[(size_t)r * n_out + f] = act_ref(QILIN_ACT_SILU, g) * u;
            }
        DeviceBuffer<unsigned char> dx(x.size()), dw(w.size()), dh((size_t)bt * n_out * 2);
        DeviceBuffer<int> dtiles(2), dsorted(bt);
        QILIN_ASSERT_OK(dx.upload(x));
        QILIN_ASSERT_OK(dw.upload(w));
        auto run = [&](MoePlantedBug bug, int seed) {
            qsim_set_seed((unsigned long long)seed);
            std::vector<double> got((size_t)rows * n_out, NAN);
            if (dh.poison() != QILIN_OK) return got;
            qilin_status st = launch_planted_moe_gate_up(bug, bt, dh.ptr, dx.ptr, dw.ptr, dtiles.ptr, dsorted.ptr,
                                                         rows, K, n_out);
            if (st != QILIN_OK) return got;
            std::vector<unsigned char> h = dh.download();
            for (size_t i = 0; i < got.size(); i++) got[i] = value_of(h, i, dt);
            return got;
        };
        for (int seed = 1; seed <= seeds; seed++) {
            Comparison cmp = compare(run(MoePlantedBug::none, seed), want, scaled_tolerance(kTolDotBF16, want));
            EXPECT_TRUE(cmp.ok) << "bt " << bt << " seed " << seed << ": " << cmp.summary;
        }
        for (MoePlantedBug bug : {MoePlantedBug::no_wait, MoePlantedBug::no_war_barrier}) {
            int caught = 0;
            for (int seed = 1; seed <= seeds; seed++)
                caught += !compare(run(bug, seed), want, scaled_tolerance(kTolDotBF16, want)).ok;
            printf("bt %d, planted %s: caught under %d of %d seeds\n", bt,
                   bug == MoePlantedBug::no_wait ? "missing cp.async wait" : "missing barrier before overwrite",
                   caught, seeds);
            if (bug == MoePlantedBug::no_wait)
                EXPECT_GE(caught, 1) << "bt " << bt << ": the missing cp.async wait went unnoticed under every seed";
            else
                caught_war += caught;
        }
    }
    EXPECT_GE(caught_war, 1) << "the missing barrier before the overwrite went unnoticed under every seed";
    const char *env_seed = getenv("QILIN_SIM_SEED"); /* the later tests run under the seed they were given */
    qsim_set_seed(env_seed ? strtoull(env_seed, nullptr, 0) : 1);
#endif
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
