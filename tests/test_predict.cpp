// test_predict.cpp — the decode / prefill roofline (host/predict.h) on real model shapes
// from their config.json fixtures, checked against arithmetic done by hand in the comments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "host/predict.h"
#include "test_util.h"

namespace {

struct Model {
    qilin_model_desc *d = nullptr;
    explicit Model(const char *name) {
        std::string path = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/" + name + ".config.json";
        EXPECT_EQ(qilin_model_desc_load(path.c_str(), &d), QILIN_OK) << qilin_last_error();
    }
    ~Model() { qilin_model_desc_free(d); }
};

struct Plan {
    qilin_plan *p = nullptr;
    Plan(const qilin_model_desc *d, int tp, const char *format, bool ep = false, bool a2a = false) {
        qilin_plan_options o;
        qilin_plan_options_default(&o);
        o.tp = tp;
        o.ep = ep;
        o.ep_all_to_all = a2a;
        EXPECT_EQ(qilin_weight_format_parse(format, &o.format), QILIN_OK) << qilin_last_error();
        EXPECT_EQ(qilin_plan_create(d, &o, &p), QILIN_OK) << qilin_last_error();
    }
    ~Plan() { qilin_plan_free(p); }
};

const qilin_gpu_perf *gpu(const char *name) {
    const qilin_gpu_perf *g = qilin_gpu_perf_find(name);
    EXPECT_NE(g, nullptr) << name;
    return g;
}

qilin_step_prediction decode(const Plan &p, const char *g, int64_t batch, int64_t context = 1024) {
    qilin_step_prediction r;
    EXPECT_EQ(qilin_predict_decode(p.p, gpu(g), batch, context, 2, 2, &r), QILIN_OK) << qilin_last_error();
    return r;
}

TEST(GpuPerf, PublishedFigures) {
    // perf.md §1.1, and the same figures as scripts/time_model.py's PROFILES.
    EXPECT_EQ(gpu("H100")->hbm_bytes_per_s, 3.35e12);
    EXPECT_EQ(gpu("h200")->hbm_bytes_per_s, 4.8e12);
    EXPECT_EQ(gpu("A100")->bf16_flops_per_s, 312e12);
    EXPECT_EQ(gpu("A100")->fp8_flops_per_s, 0.0);
    EXPECT_EQ(gpu("H100")->fp8_flops_per_s, 1979e12);
    EXPECT_EQ(qilin_gpu_perf_find("V100"), nullptr);
    EXPECT_EQ(qilin_gpu_perf_find(nullptr), nullptr);
}

// Qwen3-30B-A3B, bf16, one H100, batch 1, 1024 positions of context. Weights read per token:
//   attention  q 4096x2048 + k 512x2048 + v 512x2048 + o 2048x4096      = 18.87 M
//   router     128 x 2048                                                =  0.26 M
//   8 experts  8 x 3 x 768 x 2048                                        = 37.75 M
//   per layer 56.88 M (+ 4 norms of 2048/128) x 48 layers               = 2730.4 M
//   lm_head    151936 x 2048 (untied)                                    =  311.2 M
//   embedding  one row of 2048                                           ~ 0
//   total 3041.6 M parameters x 2 B = 6.083 GB
// KV: 48 layers x 4 KV heads x (128 + 128) x 2 B = 98,304 B per position x 1024 = 0.1007 GB.
// Step: 6.184 GB / 3.35 TB/s = 1.846 ms -> 542 tok/s (551 with no context: 6.083 GB alone);
// math 6.9 GFLOP / 989 TFLOP/s = 7 us: memory-bound.
TEST(Predict, Qwen3MoeBatch1OnH100) {
    Model m("Qwen3-30B-A3B");
    Plan p(m.d, 1, "bf16");
    qilin_step_prediction r = decode(p, "H100", 1);
    EXPECT_NEAR(r.experts_touched, 8.0, 1e-9);
    EXPECT_NEAR(r.weight_bytes, 6.083e9, 0.01 * 6.083e9);
    EXPECT_NEAR(r.kv_bytes, 98304.0 * 1024, 1.0);
    EXPECT_NEAR(r.t_step, (r.weight_bytes + r.kv_bytes) / 3.35e12, 1e-12);
    EXPECT_STREQ(r.bound, "memory");
    EXPECT_EQ(r.n_collectives, 0);
    EXPECT_GT(r.tokens_per_s, 530);
    EXPECT_LT(r.tokens_per_s, 555);
    EXPECT_NEAR(decode(p, "H100", 1, 1).tokens_per_s, 551, 6); // the issue's ~550: weights alone
    // linear 2 x 3.04 G + attention 2 x (128 + 128) x 1024 pairs x 32 heads x 48 layers = 0.81 G
    EXPECT_NEAR(r.flops, 2 * 3.0416e9 + 512.0 * 1024 * 32 * 48, 0.01 * r.flops);
    // Twice as fast on an H200 by bandwidth alone (4.8 / 3.35).
    EXPECT_NEAR(decode(p, "H200", 1).tokens_per_s / r.tokens_per_s, 4.8 / 3.35, 1e-6);
}

// Distinct experts at batch B: E(1 - (1 - k/E)^B); Qwen3: 128(1 - (15/16)^B) = 15.5 at B 2,
// 111.8 at 32 (perf.md §2.3's table). Bytes per generated token fall with the batch, tokens/s rise.
TEST(Predict, ExpertReuseAcrossTheBatch) {
    Model m("Qwen3-30B-A3B");
    Plan p(m.d, 1, "bf16");
    EXPECT_NEAR(decode(p, "H100", 2).experts_touched, 15.5, 0.05);
    EXPECT_NEAR(decode(p, "H100", 32).experts_touched, 111.8, 0.05);
    EXPECT_NEAR(decode(p, "H100", 256).experts_touched, 128.0, 0.01);
    double last_tps = 0, last_per_token = 1e30;
    for (int b = 1; b <= 256; b *= 2) {
        qilin_step_prediction r = decode(p, "H100", b);
        EXPECT_GT(r.tokens_per_s, last_tps) << b;
        EXPECT_LT(r.weight_bytes / b, last_per_token) << b;
        last_tps = r.tokens_per_s, last_per_token = r.weight_bytes / b;
    }
    // At 256 every expert is read: the whole model (56.87 GiB = 61.06 GB) once but for the
    // embedding table, of which only the 256 rows looked up (151936 x 2048 x 2 B = 0.62 GB): 60.44 GB.
    EXPECT_NEAR(decode(p, "H100", 256).weight_bytes, 60.44e9, 0.005 * 60.44e9);
}

// The storage format counts: FP8 blocks are 1 B + 4 B per 128 x 128 block, INT4 0.5 B + 2 B per 32.
// Embeddings, router and lm_head stay bf16: of the 6.083 GB, 0.622 GB (lm_head) + 0.025 (router)
// + norms are dense, 5.43 GB are projections.
TEST(Predict, QuantisedWeightsReadFewerBytes) {
    Model m("Qwen3-30B-A3B");
    Plan bf16(m.d, 1, "bf16"), fp8(m.d, 1, "fp8"), int4(m.d, 1, "int4");
    double dense = decode(bf16, "H100", 1).weight_bytes;
    double proj = 2 * (18.87e6 + 37.75e6) * 48;
    EXPECT_NEAR(decode(fp8, "H100", 1).weight_bytes, dense - proj / 2, 0.01 * dense);
    EXPECT_NEAR(decode(int4, "H100", 1).weight_bytes, dense - proj * (1 - 0.25 - 1.0 / 32), 0.01 * dense);
    // FP8 matmuls run at the FP8 rate on H100, at the BF16 rate on A100 (no FP8 tensor cores).
    qilin_step_prediction h = decode(fp8, "H100", 1), a = decode(fp8, "A100", 1);
    EXPECT_GT(h.flops_fp8, 0.9 * 2 * 56.62e6 * 48);
    EXPECT_EQ(a.flops_fp8, 0.0);
    EXPECT_NEAR(a.flops, h.flops, 1e-6 * h.flops);
}

// Tensor parallelism splits the bytes and adds the collectives the forward pass issues:
// the embedding's all-reduce, 2 per layer (after o_proj and after the MLP), and the logits'
// all-gather: 1 + 2 x 48 + 1 = 98 for Qwen3; expert parallelism by all-to-all adds 4 per MoE layer
// (count matrix all-gather, rows out, their ids, results back).
TEST(Predict, TensorParallelCollectives) {
    Model m("Qwen3-30B-A3B");
    Plan one(m.d, 1, "bf16"), two(m.d, 2, "bf16"), ep(m.d, 2, "bf16", true, true);
    qilin_step_prediction r1 = decode(one, "H100", 1), r2 = decode(two, "H100", 1), re = decode(ep, "H100", 1);
    EXPECT_EQ(r2.n_collectives, 98);
    EXPECT_EQ(re.n_collectives, 98 + 4 * 48);
    // Per GPU about half the bytes (the norms and router are replicated: < 1 % more).
    EXPECT_NEAR(r2.weight_bytes, r1.weight_bytes / 2, 0.01 * r1.weight_bytes / 2);
    EXPECT_NEAR(r2.kv_bytes, r1.kv_bytes / 2, 1.0);
    // 98 calls x 6 us dominate the bandwidth part (hidden 2048 x 2 B rows are tiny).
    EXPECT_NEAR(r2.t_comm, 98 * 6e-6, 0.1 * 98 * 6e-6);
    EXPECT_NEAR(r2.t_step, std::max(r2.t_memory, r2.t_math) + r2.t_comm, 1e-12);
}

// DeepSeek-V3 FP8 (config's quantization_config: 128 x 128 blocks) on 8 x H200, 1024 positions.
// By hand (perf.md §2.2): 37.7 GB of weights per token at batch 1, split over 8 = 4.71 GB, plus
// the MLA q_a (1536 x 7168) and kv_a (576 x 7168) projections, which the plan replicates:
// 15.1 MB FP8 per layer x 61 = 0.92 GB on every GPU -> ~5.6-5.7 GB per GPU -> 1.18 ms at 4.8 TB/s.
// KV: the 576-wide latent x 2 B x 61 layers = 70,272 B per position, replicated: 72 MB -> 0.015 ms.
// Collectives: 1 + 2 x 61 + 1 = 124 at 6 us = 0.74 ms (the rows of 7168 x 2 B add ~10 us).
// Step ~1.95 ms -> ~510 tok/s; a range of 450..570 allows ±10 %.
// Batch 256: 255.9 of 256 experts touched: the whole 671 B-parameter model ~ 690 GB with scales /
// 8 + 0.92 replicated = ~85 GB per GPU, KV 256 x 72 MB = 18.4 GB -> (85 + 18.4) / 4.8 TB/s = 21.5 ms;
// math 256 tokens x 73 GFLOP / 8 GPUs at the FP8 rate ~ 1.2 ms + MLA 2 x (2 x 512 + 64) x 1024
// x 256 x 16 heads x 61 / 989 TFLOP/s ~ 0.55 ms: memory-bound. Collectives: 123 all-reduces of
// 256 x 7168 x 2 B = 3.67 MB, each sending 7/4 of it (6.4 MB / 450 GB/s = 14 us) + 6 us = 2.5 ms,
// logits all-gather 7 x 256 x 16160 x 4 B = 116 MB = 0.26 ms. Step ~24.3 ms -> ~10,500 tok/s;
// range 9,000..12,000.
TEST(Predict, DeepSeekV3Fp8On8xH200) {
    Model m("DeepSeek-V3");
    qilin_plan_options o;
    qilin_plan_options_default(&o);
    o.tp = 8;
    bool known = false;
    std::string cfg = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/DeepSeek-V3.config.json";
    QILIN_ASSERT_OK(qilin_weight_format_from_config(cfg.c_str(), &o.format, &known));
    ASSERT_TRUE(known);
    ASSERT_EQ(o.format.linear, QILIN_WFMT_FP8_BLOCK);
    qilin_plan *plan = nullptr;
    QILIN_ASSERT_OK(qilin_plan_create(m.d, &o, &plan));
    qilin_step_prediction b1, b256;
    QILIN_ASSERT_OK(qilin_predict_decode(plan, gpu("H200"), 1, 1024, 2, 2, &b1));
    QILIN_ASSERT_OK(qilin_predict_decode(plan, gpu("H200"), 256, 1024, 2, 2, &b256));
    std::printf("DeepSeek-V3 8xH200 batch 1: %.3f GB/GPU, %.3f ms (comm %.3f) -> %.0f tok/s\n",
                b1.weight_bytes / 1e9, b1.t_step * 1e3, b1.t_comm * 1e3, b1.tokens_per_s);
    std::printf("DeepSeek-V3 8xH200 batch 256: %.3f GB/GPU + %.3f GB KV, %.3f ms -> %.0f tok/s\n",
                b256.weight_bytes / 1e9, b256.kv_bytes / 1e9, b256.t_step * 1e3, b256.tokens_per_s);
    EXPECT_NEAR(b1.experts_touched, 8.0, 1e-9);
    EXPECT_GT(b1.weight_bytes, 5.4e9);
    EXPECT_LT(b1.weight_bytes, 5.9e9);
    EXPECT_NEAR(b1.kv_bytes, 70272.0 * 1024, 1.0);
    EXPECT_EQ(b1.n_collectives, 124);
    EXPECT_GT(b1.tokens_per_s, 450);
    EXPECT_LT(b1.tokens_per_s, 570);
    EXPECT_NEAR(b256.experts_touched, 255.9, 0.05);
    EXPECT_GT(b256.weight_bytes, 80e9);
    EXPECT_LT(b256.weight_bytes, 90e9);
    EXPECT_NEAR(b256.kv_bytes, 256 * 70272.0 * 1024, 256.0);
    EXPECT_STREQ(b256.bound, "memory");
    EXPECT_GT(b256.t_comm, 2.0e-3);
    EXPECT_LT(b256.t_comm, 3.2e-3);
    EXPECT_GT(b256.tokens_per_s, 9000);
    EXPECT_LT(b256.tokens_per_s, 12000);
    qilin_plan_free(plan);
}

// `qilin plan --uploaded` (and the forward pass's own plan, which `qilin bench` can predict from):
// the formats qilin uploads. A bf16 checkpoint uploads as stored; DeepSeek-V3's FP8 experts are
// dequantised at load today, so it reads more than its storage format says (the same once they
// stay FP8: never fewer).
TEST(Predict, UploadedFormats) {
    for (const char *name : {"Qwen3-30B-A3B", "DeepSeek-V3"}) {
        Model m(name);
        std::string cfg = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/" + name + ".config.json";
        qilin_plan_options o;
        qilin_plan_options_default(&o);
        o.tp = 8;
        bool known = false;
        QILIN_ASSERT_OK(qilin_weight_format_from_config(cfg.c_str(), &o.format, &known));
        qilin_plan *stored = nullptr, *uploaded = nullptr;
        QILIN_ASSERT_OK(qilin_plan_create(m.d, &o, &stored));
        std::vector<qilin_wfmt> formats(m.d->n_tensors);
        qilin_upload_formats(m.d, QILIN_BF16, formats.data());
        o.tensor_formats = formats.data();
        QILIN_ASSERT_OK(qilin_plan_create(m.d, &o, &uploaded));
        qilin_step_prediction s, u;
        QILIN_ASSERT_OK(qilin_predict_decode(stored, gpu("H200"), 1, 1024, 2, 2, &s));
        QILIN_ASSERT_OK(qilin_predict_decode(uploaded, gpu("H200"), 1, 1024, 2, 2, &u));
        if (std::string(name) == "Qwen3-30B-A3B")
            EXPECT_EQ(u.weight_bytes, s.weight_bytes) << name;
        else
            EXPECT_GE(u.weight_bytes, s.weight_bytes) << name;
        qilin_plan_free(stored);
        qilin_plan_free(uploaded);
    }
}

// Prefill: a long prompt touches every expert once and multiplies each weight by every token:
// Qwen3 at 65,536 tokens does 65,536 x 6.08 GFLOP = 399 TFLOP of linears (0.40 s at 989 TFLOP/s)
// against 61 GB of weights (18 ms): math-bound. At 64 tokens it is still memory-bound.
TEST(Predict, PrefillBecomesMathBound) {
    Model m("Qwen3-30B-A3B");
    Plan p(m.d, 1, "bf16");
    qilin_step_prediction small, big;
    QILIN_ASSERT_OK(qilin_predict_prefill(p.p, gpu("H100"), 64, 2, 2, &small));
    QILIN_ASSERT_OK(qilin_predict_prefill(p.p, gpu("H100"), 65536, 2, 2, &big));
    EXPECT_STREQ(small.bound, "memory");
    EXPECT_STREQ(big.bound, "math");
    EXPECT_GT(big.t_math, 0.40);
    // causal attention: 65536 x 65537 / 2 pairs x 512 FLOP x 32 heads x 48 layers
    EXPECT_NEAR(big.attn_flops, 65536.0 * 65537 / 2 * 512 * 32 * 48, 1e-6 * big.attn_flops);
    EXPECT_NEAR(big.tokens_per_s, 65536 / big.t_step, 1e-6 * big.tokens_per_s);
    EXPECT_GT(small.tokens_per_s, decode(p, "H100", 1).tokens_per_s);
}

TEST(Predict, RefusesBadSizes) {
    Model m("Qwen3-30B-A3B");
    Plan p(m.d, 1, "bf16");
    qilin_step_prediction r;
    EXPECT_EQ(qilin_predict_decode(p.p, gpu("H100"), 0, 1024, 2, 2, &r), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("batch 0"), std::string::npos) << qilin_last_error();
    EXPECT_EQ(qilin_predict_decode(p.p, gpu("H100"), 1, -5, 2, 2, &r), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_predict_decode(p.p, gpu("H100"), 1, 1024, 0, 2, &r), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_predict_decode(p.p, nullptr, 1, 1024, 2, 2, &r), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_predict_prefill(p.p, gpu("H100"), 0, 2, 2, &r), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(r.t_step, 0.0);
}

} // namespace
