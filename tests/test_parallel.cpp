/* test_parallel.cpp — tensor and expert parallelism: the split is invisible.
 *
 * For every fixture (golden.h) and every degree among 2 and 4 that its
 * shapes allow (pinned_cases; the planner is checked against them), in "tp" mode and, for MoE
 * fixtures, with expert parallelism (tokens replicated, and sent to their
 * experts by all-to-all), over emulated GPUs:
 *   - fp32: logits within 1e-5 of transformers' (golden.h; the bound one GPU meets),
 *     a batch of both prompts likewise, and the greedy continuation
 *     identical (prefill and decode steps, both MLA forms);
 *   - bf16: logits within the first-light bound (test_forward.cpp);
 *   - the collectives of one step are what forward.h says: one all-reduce
 *     for the embedding, two per sequential layer (one per parallel layer),
 *     one all-gather of the logits; all-to-all dispatch adds one all-gather
 *     and three all-to-alls per MoE layer;
 *   - what each GPU allocated (the device layer's accounting) agrees with
 *     qilin_plan_memory within 1%;
 *   - MoE: per-expert token counts add up to tokens x top_k per layer and
 *     are the same in every mode.
 * Degree 1 is test_forward.cpp. A degree that does not divide is refused
 * with the numbers and the degrees that work. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <ostream>
#include <string>
#include <vector>

#include "host/forward.h"
#include "host/plan.h"
#include "host/safetensors.h"
#include "tests/golden.h"
#include "tests/test_util.h"

namespace {

using namespace golden;

struct Case {
    std::string fixture;
    int tp;
    bool ep;
    bool a2a; /* with ep: QILIN_EP_ALL_TO_ALL */
};

const char *mode(const Case &c) { return c.a2a ? " ep a2a" : c.ep ? " ep" : ""; }

void PrintTo(const Case &c, std::ostream *os) { *os << c.fixture << " tp" << c.tp << mode(c); }

std::string case_name(const testing::TestParamInfo<Case> &i) {
    return i.param.fixture + "_tp" + std::to_string(i.param.tp) +
           (i.param.a2a  ? "_ep_a2a"
            : i.param.ep ? "_ep"
                         : "");
}

/* The cases, written out: every fixture at each degree (2, 4) its shapes
 * split over, in "tp" mode, and MoE fixtures also with expert parallelism
 * (replicated tokens and all-to-all). Pinned here rather than asked of the
 * planner under test: Plan.SplitsExactlyThePinnedCases checks the planner
 * against this list, so a planner that starts refusing a case (or a fixture
 * that vanishes) fails instead of silently shrinking the suite. */
std::vector<Case> pinned_cases() {
    std::vector<Case> cases;
    auto dense = [&](const char *f, std::initializer_list<int> tps) {
        for (int tp : tps) cases.push_back({f, tp, false, false});
    };
    auto moe = [&](const char *f, std::initializer_list<int> tps) {
        for (int tp : tps) {
            cases.push_back({f, tp, false, false});
            cases.push_back({f, tp, true, false});
            cases.push_back({f, tp, true, true});
        }
    };
    moe("deepseek_v2", {2, 4});
    moe("deepseek_v2_group", {2, 4});
    moe("deepseek_v3", {2, 4});
    moe("deepseek_v3_fp8", {2, 4});
    moe("deepseek_v3_noqlora", {2, 4});
    dense("gpt_neox", {2, 4});
    dense("gptj", {2});
    moe("kimi_k2_int4", {2, 4});
    dense("llama", {2, 4});
    dense("llama_fp8", {2, 4});
    dense("mistral", {2, 4});
    dense("mistral_swa", {2, 4});
    moe("mixtral", {2, 4});
    dense("qwen2", {2, 4});
    moe("qwen2_moe", {2, 4});
    dense("qwen2_yarn", {2, 4});
    dense("qwen3", {2, 4});
    moe("qwen3_moe", {2, 4});
    dense("stories260K", {2, 4});
    moe("stories260K_mixtral", {2, 4});
    moe("stories260K_qwen2moe", {2});
    return cases;
}

class Parallel : public testing::TestWithParam<Case> {
  protected:
    void SetUp() override {
        dir_ = models_dir() + "/" + GetParam().fixture;
        std::string why;
        ASSERT_TRUE(load_golden(dir_, &g_, &why)) << why;
    }
    qilin_model *load(qilin_dtype dtype, int tp, bool ep, bool a2a) {
        qilin_model_options o;
        qilin_model_options_default(&o);
        o.dtype = dtype;
        o.max_seqs = 4;
        o.max_ctx = 128;
        o.max_batch_tokens = 160;
        o.tp = tp;
        o.ep = ep;
        o.ep_dispatch = a2a ? QILIN_EP_ALL_TO_ALL : QILIN_EP_REPLICATED;
        qilin_model *m = nullptr;
        qilin_status st = qilin_model_load(dir_.c_str(), &o, &m);
        EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
        return m;
    }
    qilin_model *load(qilin_dtype dtype) { return load(dtype, GetParam().tp, GetParam().ep, GetParam().a2a); }
    std::vector<float> logits(qilin_model *m, int p, int slot = 0) {
        const std::vector<int> &ids = g_.prompts[p];
        std::vector<float> out(ids.size() * (size_t)g_.vocab);
        int start = 0, n = (int)ids.size();
        qilin_batch b = {1, &slot, &start, &n, ids.data(), true, nullptr};
        EXPECT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
        return out;
    }
    const char *name() { return GetParam().fixture.c_str(); }
    std::string dir_;
    Golden g_;
};

TEST_P(Parallel, Fp32LogitsAndGreedyMatch) {
    QILIN_REQUIRE_DEVICES(GetParam().tp);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        std::vector<float> got = logits(m, (int)p);
        double err = rel_error(got.data(), g_.logits[p].data(), got.size());
        printf("[ %s tp%d%s ] fp32 prompt %zu: max|diff|/max|ref| = %.3g\n", name(), GetParam().tp,
               mode(GetParam()), p, err);
        EXPECT_LE(err, kFp32Tolerance) << "prompt " << p;
    }
    /* both prompts in one step, slots reversed */
    std::vector<int> slots, starts, counts, tokens;
    for (int p = (int)g_.prompts.size() - 1; p >= 0; p--) {
        slots.push_back(p + 1), starts.push_back(0), counts.push_back((int)g_.prompts[p].size());
        tokens.insert(tokens.end(), g_.prompts[p].begin(), g_.prompts[p].end());
    }
    std::vector<float> out(tokens.size() * (size_t)g_.vocab);
    qilin_batch b = {(int)slots.size(), slots.data(), starts.data(), counts.data(), tokens.data(), true, nullptr};
    ASSERT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
    for (int p = (int)g_.prompts.size() - 1, row = 0; p >= 0; p--) {
        size_t n = g_.prompts[p].size() * (size_t)g_.vocab;
        EXPECT_LE(rel_error(out.data() + row, g_.logits[p].data(), n), kFp32Tolerance)
            << "prompt " << p << " in a batch";
        row += (int)n;
    }
    const std::vector<int> &prompt = g_.prompts[g_.greedy_prompt];
    std::vector<int> greedy(g_.greedy.size());
    const int *prompts[1] = {prompt.data()};
    int len = (int)prompt.size();
    qilin_sampling_params params = {0, 0, 1, 0, 1, 0, 0, 0, 0};
    ASSERT_EQ(qilin_generate(m, 1, prompts, &len, &params, (int)greedy.size(), greedy.data()), QILIN_OK)
        << qilin_last_error();
    EXPECT_EQ(greedy, g_.greedy);
    qilin_model_free(m);
}

/* bf16: the first-light bound, row by row. One exception, for MoE: a token
 * whose router scores sit within bf16 rounding of a tie may choose other
 * experts once the rounding changes, and the split does change it (partial
 * sums are rounded before the all-reduce). deepseek_v2_group at 2 GPUs:
 * layer 1, token 0 of prompt 1 has groups at 0.0976 and 0.0994 (fp32
 * softmax scores, transformers), the top-2 groups flip and that one row is
 * off by 0.025 of the logit range; every other row stays at 0.007 or less.
 * Likewise deepseek_v3_noqlora at 4 GPUs with all-to-all dispatch (which
 * rounds the routed sum once, not per GPU): layer 2, token 9 of prompt 1
 * has experts 4 and 6 at biased selection scores 0.54250 and 0.54248 for
 * the third choice (0.540 and 0.542 in replicated mode), the choice flips,
 * and with its weight of 0.45 (x routed_scale 2) that row is off by 0.11;
 * the fp32 run of the same configuration matches transformers to 4e-7.
 * Those rows, and only they, may exceed the bound (kBf16Flips: by
 * fixture, degree, mode, prompt and row; the first in all three modes at 2
 * GPUs, to 2.5x; the second to 6x) — a flipped choice, not garbage; every
 * other row of every case must be within it. */
struct Bf16Flip {
    const char *fixture;
    int tp;
    bool ep, a2a;
    int prompt, row;
    double factor; /* of the bound */
};
const Bf16Flip kBf16Flips[] = {
    /* measured 0.025, 0.026, 0.026 of the logit range against a bound of 0.02 */
    {"deepseek_v2_group", 2, false, false, 1, 0, 2.5},
    {"deepseek_v2_group", 2, true, false, 1, 0, 2.5},
    {"deepseek_v2_group", 2, true, true, 1, 0, 2.5},
    /* measured 0.11 */
    {"deepseek_v3_noqlora", 4, true, true, 1, 9, 6},
    /* the same near-tie flips at 2 GPUs in replicated mode once prefill runs on tensor cores
     * (P rounded to bf16 moves the attention output by ~2^-9): measured 0.114, while the
     * 4-GPU a2a row above then stays at 0.0065 */
    {"deepseek_v3_noqlora", 2, false, false, 1, 9, 6},
    /* deepseek_v3_fp8 (FP8 quantization moved deepseek_v3's weights off the seed chosen for router
     * safety: its golden's HF bf16 router_safety is 0.026, against 0.12 for deepseek_v3, and HF bf16
     * itself flips a greedy token): at 2 and 4 GPUs prompt 1 row 43 measures 0.293-0.296 in every
     * mode, row 19 0.18 in two; every other row stays at <= 0.0093, the fp32 runs of the same
     * configurations match transformers, and the same TP 2 run with the FP8 projections dequantized
     * at load (the path before they stayed FP8) stays at 0.0084: the exact e4m3 x bf16 products move
     * a near-tie in the router, the choice flips. */
    {"deepseek_v3_fp8", 2, false, false, 1, 43, 16},
    {"deepseek_v3_fp8", 2, true, false, 1, 43, 16},
    {"deepseek_v3_fp8", 2, true, false, 1, 19, 10},
    {"deepseek_v3_fp8", 2, true, true, 1, 43, 16},
    {"deepseek_v3_fp8", 4, false, false, 1, 43, 16},
    {"deepseek_v3_fp8", 4, true, false, 1, 43, 16},
    {"deepseek_v3_fp8", 4, true, true, 1, 43, 16},
    {"deepseek_v3_fp8", 4, true, true, 1, 19, 10},
};

/* The allowance for this case's row, or 1 (the bound itself). */
double flip_factor(const Case &c, int prompt, int row) {
    for (const Bf16Flip &f : kBf16Flips)
        if (c.fixture == f.fixture && c.tp == f.tp && c.ep == f.ep && c.a2a == f.a2a && prompt == f.prompt &&
            row == f.row)
            return f.factor;
    return 1;
}

TEST_P(Parallel, Bf16LogitsWithinTolerance) {
    QILIN_REQUIRE_DEVICES(GetParam().tp);
    qilin_model *m = load(QILIN_BF16);
    ASSERT_NE(m, nullptr);
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        std::vector<float> got = logits(m, (int)p);
        const std::vector<float> &want = g_.logits[p];
        double hf = p < g_.hf_bf16_error.size() ? g_.hf_bf16_error[p] : -1;
        double bound = std::max(kBf16Tolerance, 2 * hf), ref = 0, worst_in = 0, worst = 0;
        for (float v : want) ref = std::max(ref, (double)std::fabs(v));
        std::string over;
        int rows = (int)g_.prompts[p].size();
        for (int r = 0; r < rows; r++) {
            double md = 0;
            for (int i = 0; i < g_.vocab; i++) {
                size_t k = (size_t)r * g_.vocab + i;
                md = std::max(md, (double)std::fabs(got[k] - want[k]));
            }
            double e = md / ref;
            worst = std::max(worst, e);
            if (e <= bound)
                worst_in = std::max(worst_in, e);
            else
                over += " row " + std::to_string(r) + ": " + std::to_string(e);
            EXPECT_LE(e, flip_factor(GetParam(), (int)p, r) * bound) << "prompt " << p << " row " << r;
        }
        printf("[ %s tp%d%s ] bf16 prompt %zu: max|diff|/max|ref| = %.3g, %.3g without rows over the bound "
               "%.3g%s\n",
               name(), GetParam().tp, mode(GetParam()), p, worst, worst_in, bound, over.c_str());
    }
    qilin_model_free(m);
}

/* One all-reduce for the embedding, then per layer one after attention and
 * one after the FFN, or one for both in a parallel block; one all-gather. */
TEST_P(Parallel, CollectivesPerStep) {
    QILIN_REQUIRE_DEVICES(GetParam().tp);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    const qilin_model_desc *d = qilin_model_get_desc(m);
    qilin_forward_stats before, after;
    qilin_model_forward_stats(m, &before);
    logits(m, 0);
    qilin_model_forward_stats(m, &after);
    uint64_t per_layer = d->block == QILIN_BLOCK_SEQUENTIAL ? 2 : 1;
    uint64_t moe_layers = GetParam().a2a ? (uint64_t)d->n_moe_layers : 0; /* all-to-all dispatch */
    printf("[ %s tp%d%s ] one step: %" PRIu64 " all-reduces over %d layers, %" PRIu64 " all-gathers, %" PRIu64
           " all-to-alls\n",
           name(), GetParam().tp, mode(GetParam()), after.all_reduce - before.all_reduce, d->n_layers,
           after.all_gather - before.all_gather, after.all_to_all - before.all_to_all);
    if (GetParam().a2a) {
        EXPECT_GT(d->n_moe_layers, 0);
    }
    EXPECT_EQ(after.steps - before.steps, 1u);
    EXPECT_EQ(after.all_reduce - before.all_reduce, 1 + per_layer * (uint64_t)d->n_layers);
    EXPECT_EQ(after.all_gather - before.all_gather, 1u + moe_layers); /* logits, + the dispatch counts */
    EXPECT_EQ(after.all_to_all - before.all_to_all, 3 * moe_layers);  /* rows, ids, results back */
    qilin_model_free(m);
}

/* What every GPU allocated against the memory plan for the same limits. */
TEST_P(Parallel, AllocationMatchesPlan) {
    QILIN_REQUIRE_DEVICES(GetParam().tp);
    std::vector<size_t> before(GetParam().tp);
    for (int g = 0; g < GetParam().tp; g++) {
        size_t peak;
        ASSERT_EQ(qilin_memory_used(g, &before[g], &peak), QILIN_OK);
    }
    qilin_model *m = load(QILIN_BF16);
    ASSERT_NE(m, nullptr);
    const qilin_model_desc *d = qilin_model_get_desc(m);
    const qilin_model_options *o = qilin_model_get_options(m);
    qilin_plan_options po;
    qilin_plan_options_default(&po);
    po.tp = o->tp, po.ep = o->ep, po.ep_all_to_all = o->ep_dispatch == QILIN_EP_ALL_TO_ALL;
    /* as uploaded: bf16, FP8 projections kept FP8, routed experts kept FP8 / INT4 at this GPU's ffn width */
    std::vector<qilin_wfmt> formats(d->n_tensors);
    qilin_upload_formats_fe(d, QILIN_BF16, o->ep ? d->moe_ffn_dim : d->moe_ffn_dim / o->tp, formats.data());
    if (d->weight_group > 0) po.format.group = d->weight_group;
    po.tensor_formats = formats.data();
    qilin_plan *p = nullptr;
    ASSERT_EQ(qilin_plan_create(d, &po, &p), QILIN_OK) << qilin_last_error();
    qilin_memory_options mo;
    qilin_memory_options_default(&mo);
    mo.gpu_mem_bytes = 1ull << 40;
    mo.reserve_bytes = 0;
    mo.max_batch_tokens = o->max_batch_tokens;
    mo.max_batch_seqs = o->max_seqs;
    mo.min_kv_tokens = (int64_t)o->max_seqs * o->max_ctx;
    mo.max_ctx = o->max_ctx;
    qilin_memory_plan mp;
    ASSERT_EQ(qilin_plan_memory(p, &mo, &mp), QILIN_OK) << qilin_last_error();
    uint64_t kv = mp.kv_bytes_per_token * (uint64_t)o->max_seqs * (uint64_t)o->max_ctx;
    for (int g = 0; g < o->tp; g++) {
        qilin_workspace_plan w;
        qilin_plan_workspace(p, g, o->max_batch_tokens, o->max_seqs, o->max_ctx, 2, &w);
        if (g == 0) {
            EXPECT_EQ(w.total, mp.workspace) << "GPU 0 is the most loaded";
        }
        uint64_t want = p->gpus[g].weight_bytes + w.total + kv, got = qilin_model_gpu_bytes(m, g);
        double rel = std::fabs((double)got - (double)want) / (double)want;
        printf("[ %s tp%d%s ] GPU %d: allocated %" PRIu64 " bytes, plan %" PRIu64 " (weights %" PRIu64
               ", workspace %" PRIu64 ", KV %" PRIu64 "): %.3f%%\n",
               name(), GetParam().tp, mode(GetParam()), g, got, want, p->gpus[g].weight_bytes, w.total, kv,
               100 * rel);
        EXPECT_LE(rel, 0.01) << "GPU " << g;
        EXPECT_EQ(qilin_model_weight_bytes(m, g), p->gpus[g].weight_bytes) << "GPU " << g << ": weights";
        size_t now, peak; /* the device layer's own accounting agrees with the model's */
        ASSERT_EQ(qilin_memory_used(g, &now, &peak), QILIN_OK);
        EXPECT_EQ(now - before[g], got) << "GPU " << g;
    }
    qilin_plan_free(p);
    qilin_model_free(m);
}

/* Tokens per expert: tokens x top_k in all, the same in every MoE mode
 * (compared with "tp" mode, and "tp" mode with replicated ep). */
TEST_P(Parallel, ExpertCounts) {
    QILIN_REQUIRE_DEVICES(GetParam().tp);
    qilin_model *m = load(QILIN_F32);
    ASSERT_NE(m, nullptr);
    const qilin_model_desc *d = qilin_model_get_desc(m);
    if (d->n_experts <= 0) {
        qilin_model_free(m);
        GTEST_SKIP() << "no routed experts";
    }
    qilin_model *other = load(QILIN_F32, GetParam().tp, !GetParam().ep, false);
    logits(m, 0);
    if (other) logits(other, 0);
    int T = (int)g_.prompts[0].size();
    for (int l = 0; l < d->n_layers; l++) {
        std::vector<int> counts(d->n_experts, -1), again(d->n_experts, -2);
        if (qilin_model_expert_counts(m, l, counts.data()) != QILIN_OK) {
            EXPECT_NE(d->layer_ffn[l], QILIN_FFN_MOE) << qilin_last_error();
            continue;
        }
        int sum = 0;
        for (int c : counts) sum += c;
        EXPECT_EQ(sum, T * d->top_k) << "layer " << l;
        if (other) {
            ASSERT_EQ(qilin_model_expert_counts(other, l, again.data()), QILIN_OK) << qilin_last_error();
            EXPECT_EQ(counts, again) << "layer " << l;
        }
    }
    qilin_model_free(other);
    qilin_model_free(m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Parallel, testing::ValuesIn(pinned_cases()), case_name);

/* The planner splits every pinned case and refuses every other (fixture,
 * degree, mode) of the fixture list: EP only for MoE fixtures, and the
 * degrees left out above do not divide those fixtures' heads or experts. */
/* Quantized fixtures stay quantized on the device: llama_fp8's projections
 * (FP8), deepseek_v3_fp8's projections and routed experts (FP8; kv_a/kv_b
 * are dequantized), kimi_k2_int4's routed experts (INT4, the rest bf16 as
 * its config's ignore list says). The weights the forward uploads are what
 * the plan counts in the upload formats, and fewer bytes than the same
 * model dequantized to bf16. */
struct QuantFixture {
    const char *name;
    qilin_wfmt format;
    int n_quantized; /* tensors uploaded in `format` */
    int n_experts_quantized; /* of them, routed experts' */
};

class QuantWeights : public testing::TestWithParam<QuantFixture> {};

TEST_P(QuantWeights, UploadedBytesArePlannedAndBelowBf16) {
    QILIN_REQUIRE_DEVICES(1);
    const QuantFixture q = GetParam();
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_BF16;
    o.max_seqs = 1;
    o.max_ctx = 64;
    o.max_batch_tokens = 64;
    qilin_model *m = nullptr;
    ASSERT_EQ(qilin_model_load((models_dir() + "/" + q.name).c_str(), &o, &m), QILIN_OK) << qilin_last_error();
    const qilin_model_desc *d = qilin_model_get_desc(m);
    std::vector<qilin_wfmt> formats(d->n_tensors);
    qilin_upload_formats_fe(d, QILIN_BF16, d->moe_ffn_dim, formats.data());
    int n_q = 0, n_exp = 0;
    for (int i = 0; i < d->n_tensors; i++) {
        n_q += formats[i] == q.format;
        n_exp += formats[i] == q.format && d->tensors[i].expert >= 0;
    }
    EXPECT_EQ(n_q, q.n_quantized);
    EXPECT_EQ(n_exp, q.n_experts_quantized);
    qilin_plan_options po;
    qilin_plan_options_default(&po);
    if (d->weight_group > 0) po.format.group = d->weight_group;
    qilin_plan *as_uploaded = nullptr, *as_bf16 = nullptr;
    ASSERT_EQ(qilin_plan_create(d, &po, &as_bf16), QILIN_OK) << qilin_last_error();
    po.tensor_formats = formats.data();
    ASSERT_EQ(qilin_plan_create(d, &po, &as_uploaded), QILIN_OK) << qilin_last_error();
    uint64_t got = qilin_model_weight_bytes(m, 0), bf16 = as_bf16->gpus[0].weight_bytes;
    printf("%s weights on the device: %" PRIu64 " bytes (dequantized to bf16: %" PRIu64 ", %.1f%%)\n", q.name, got,
           bf16, 100.0 * (double)got / (double)bf16);
    EXPECT_EQ(got, as_uploaded->gpus[0].weight_bytes);
    EXPECT_LT(got, bf16);
    qilin_plan_free(as_uploaded);
    qilin_plan_free(as_bf16);
    qilin_model_free(m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantWeights,
                         /* deepseek_v3_fp8: q_a, q_b, o of 3 layers, the dense layer's gate/up/down, 2 MoE
                          * layers' shared gate/up/down, and 2 x 8 experts x 3; kimi_k2_int4: the experts only */
                         testing::Values(QuantFixture{"llama_fp8", QILIN_WFMT_FP8_BLOCK, 2 * 7, 0},
                                         QuantFixture{"deepseek_v3_fp8", QILIN_WFMT_FP8_BLOCK, 66, 48},
                                         QuantFixture{"kimi_k2_int4", QILIN_WFMT_INT4_GROUP, 48, 48}),
                         [](const testing::TestParamInfo<QuantFixture> &i) { return std::string(i.param.name); });

TEST(Plan, SplitsExactlyThePinnedCases) {
    EXPECT_EQ(list_fixtures(), kFixtureNames);
    std::vector<std::string> pinned, planner;
    for (const Case &c : pinned_cases())
        if (!c.a2a) pinned.push_back(c.fixture + " tp" + std::to_string(c.tp) + (c.ep ? " ep" : ""));
    for (const std::string &f : kFixtureNames)
        for (int tp : {2, 4})
            for (bool ep : {false, true})
                if (splits(f, tp, ep)) planner.push_back(f + " tp" + std::to_string(tp) + (ep ? " ep" : ""));
    std::sort(pinned.begin(), pinned.end());
    std::sort(planner.begin(), planner.end());
    EXPECT_EQ(pinned, planner);
}

/* A copy of fixture `name` with the last `drop` vocabulary rows removed
 * (config vocab_size, and every tensor whose first dim is the vocabulary:
 * embedding, lm_head and its bias), written under `dir`. Logits of the kept
 * columns are the fixture's own, for prompts that avoid the dropped ids. */
bool write_smaller_vocab(const std::string &name, int drop, const std::string &dir, int *vocab) {
    std::string src = models_dir() + "/" + name;
    json_error_t err;
    json_t *cfg = json_load_file((src + "/config.json").c_str(), 0, &err);
    if (!cfg) return false;
    int V = (int)json_integer_value(json_object_get(cfg, "vocab_size"));
    *vocab = V - drop;
    json_object_set_new(cfg, "vocab_size", json_integer(V - drop));
    bool ok = json_dump_file(cfg, (dir + "/config.json").c_str(), 0) == 0;
    json_decref(cfg);
    st_file *f = nullptr;
    if (!ok || st_open((src + "/model.safetensors").c_str(), &f) != QILIN_OK) return false;
    json_t *hdr = json_object();
    std::vector<std::pair<const void *, size_t>> parts;
    size_t off = 0;
    for (int i = 0; i < st_tensor_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        json_t *e = json_object(), *shape = json_array();
        size_t bytes = t->nbytes;
        for (int k = 0; k < t->ndim; k++) {
            int64_t n = t->shape[k];
            if (k == 0 && n == V) bytes = bytes / (size_t)V * (size_t)(V - drop), n = V - drop;
            json_array_append_new(shape, json_integer(n));
        }
        json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(hdr, t->name, e);
        parts.push_back({t->data, bytes});
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    FILE *out = fopen((dir + "/model.safetensors").c_str(), "wb");
    uint64_t n = strlen(text);
    ok = out && fwrite(&n, 8, 1, out) == 1 && fwrite(text, 1, n, out) == n;
    for (auto &p : parts) ok = ok && fwrite(p.first, 1, p.second, out) == p.second;
    if (out) ok = fclose(out) == 0 && ok;
    free(text);
    st_close(f);
    return ok;
}

/* Vocabularies that do not divide: 299 = gpt_neox's 300 less one over 2 GPUs
 * (150 + 149 rows) and 4 (75 + 75 + 75 + 74): the padded rows are dropped
 * and every kept column matches transformers' logits. */
TEST(ParallelVocab, PaddedVocabularySlices) {
    QILIN_REQUIRE_DEVICES(4);
    char tmpl[] = "/tmp/qilin_vocab_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    int V = 0;
    ASSERT_TRUE(write_smaller_vocab("gpt_neox", 1, dir, &V));
    Golden g;
    std::string why;
    ASSERT_TRUE(load_golden(models_dir() + "/gpt_neox", &g, &why)) << why;
    int tested = 0;
    for (int tp : {2, 4}) {
        qilin_model_options o;
        qilin_model_options_default(&o);
        o.dtype = QILIN_F32, o.max_seqs = 1, o.max_ctx = 128, o.max_batch_tokens = 128, o.tp = tp;
        qilin_model *m = nullptr;
        ASSERT_EQ(qilin_model_load(dir.c_str(), &o, &m), QILIN_OK) << qilin_last_error();
        for (size_t p = 0; p < g.prompts.size(); p++) {
            const std::vector<int> &ids = g.prompts[p];
            if (*std::max_element(ids.begin(), ids.end()) >= V) continue;
            std::vector<float> got(ids.size() * (size_t)V), want;
            for (size_t r = 0; r < ids.size(); r++)
                want.insert(want.end(), g.logits[p].begin() + r * g.vocab,
                            g.logits[p].begin() + r * g.vocab + V);
            int slot = 0, start = 0, n = (int)ids.size();
            qilin_batch b = {1, &slot, &start, &n, ids.data(), true, nullptr};
            ASSERT_EQ(qilin_forward(m, &b, got.data()), QILIN_OK) << qilin_last_error();
            double err = rel_error(got.data(), want.data(), got.size());
            printf("[ gpt_neox, vocab %d, tp%d ] fp32 prompt %zu: %.3g\n", V, tp, p, err);
            EXPECT_LE(err, kFp32Tolerance) << "tp " << tp << " prompt " << p;
            tested++;
        }
        qilin_model_free(m);
    }
    EXPECT_GT(tested, 0) << "every prompt uses the dropped id";
    for (const char *f : {"/config.json", "/model.safetensors"}) remove((dir + f).c_str());
    rmdir(dir.c_str());
}

/* 4 heads over 3 GPUs: refused before anything is read, naming the numbers
 * and the degrees that work; likewise 4 experts over 8 GPUs with --ep and
 * more GPUs than exist. */
TEST(ParallelErrors, DegreesThatDoNotSplit) {
    QILIN_REQUIRE_DEVICES(4);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32;
    o.max_ctx = 16;
    o.tp = 3;
    qilin_model *m = nullptr;
    EXPECT_EQ(qilin_model_load((models_dir() + "/llama").c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(m, nullptr);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find("4 attention heads do not split over 3 GPUs"), std::string::npos) << msg;
    EXPECT_NE(msg.find("degrees that work: 1, 2, 4"), std::string::npos) << msg;

    int n_dev = 0;
    ASSERT_EQ(qilin_device_count(&n_dev), QILIN_OK);
    if (n_dev >= 8) {
        o.tp = 8, o.ep = true;
        EXPECT_EQ(qilin_model_load((models_dir() + "/mixtral").c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
        msg = qilin_last_error();
        EXPECT_NE(msg.find("do not split over 8 GPUs"), std::string::npos) << msg;
    }
    o.tp = n_dev + 1, o.ep = false;
    EXPECT_EQ(qilin_model_load((models_dir() + "/llama").c_str(), &o, &m), QILIN_ERR_NO_DEVICE);
    msg = qilin_last_error();
    EXPECT_NE(msg.find("device(s) are present"), std::string::npos) << msg;
}

/* All-to-all dispatch without expert parallelism, on one GPU, or with an
 * unknown value: refused before anything is read. */
TEST(ParallelErrors, AllToAllNeedsExpertParallelism) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_ctx = 16, o.ep_dispatch = QILIN_EP_ALL_TO_ALL;
    const std::string dir = models_dir() + "/mixtral";
    struct {
        int tp;
        bool ep;
    } bad[] = {{2, false}, {1, true}};
    for (auto b : bad) {
        o.tp = b.tp, o.ep = b.ep;
        qilin_model *m = nullptr;
        EXPECT_EQ(qilin_model_load(dir.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT) << "tp " << b.tp;
        EXPECT_EQ(m, nullptr);
        std::string msg = qilin_last_error();
        EXPECT_NE(msg.find("all-to-all expert dispatch needs expert parallelism"), std::string::npos) << msg;
    }
    o.tp = 2, o.ep = true, o.ep_dispatch = (qilin_ep_dispatch)7;
    qilin_model *m = nullptr;
    EXPECT_EQ(qilin_model_load(dir.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("unknown ep_dispatch 7"), std::string::npos)
        << qilin_last_error();
}

} // namespace
