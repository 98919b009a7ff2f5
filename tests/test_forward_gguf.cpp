/* test_forward_gguf.cpp — whole models from quantized GGUF files
 * (tests/fixtures/gguf/, scripts/make_gguf_model_fixtures.py): the
 * projections stay in their GGUF blocks on the device and are multiplied by
 * cuda/gemm_gguf.cu, the embedding rows decoded by qilin_embedding_gguf and
 * the (tied) lm_head multiplied from the blocks; routed-expert stacks are
 * dequantized at load. The goldens are transformers' fp32 logits on gguf-py's
 * dequantization of the same blocks — an implementation independent of
 * qilin's — so they check the block layouts as well as the kernels.
 *
 *   qwen2-q8_0     every matrix Q8_0 (3 layers, GQA, q/k/v biases)
 *   qwen2-q4_k     Q4_K / Q4_0 / Q5_K / Q6_K mixed like a Q4_K_M file
 *   qwen2moe-q8_0  Q8_0 with 8 stacked routed experts (top 4) and a gated shared expert
 *
 * Checks: fp32 logits of both prompts (8 ids: the decode GEMV path; 24: the
 * GEMM path) within golden.h's fp32 tolerance; the longer prompt as a prefill
 * then single-token decode steps gives the same rows; bf16 mode within the
 * bf16 tolerance or twice transformers' own bf16 error, whichever is larger
 * (golden.h's rule); device memory for the weights is exactly the file's bytes
 * for the tensors kept quantized plus the dequantized size of the others;
 * corrupt block data (a non-finite fp16 scale) and a truncated file are
 * refused with messages naming the tensor; a tensor-parallel split that
 * would cut a block is refused naming the tensor and the block size; the
 * Q4_K-mix and the MoE file at tensor parallelism 2 (the MoE also with
 * expert parallelism) match the same goldens. */
#include <gtest/gtest.h>
#include <jansson.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "host/forward.h"
#include "host/gguf.h"
#include "tests/golden.h"
#include "tests/tempdir.h"
#include "tests/test_util.h"

namespace {

using golden::kBf16Tolerance;
using golden::kFp32Tolerance;
using golden::rel_error;

std::string gguf_dir() { return std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/gguf/"; }

struct GgufGolden {
    std::vector<std::vector<int>> prompts;
    std::vector<std::vector<float>> logits;
    std::vector<double> hf_bf16; /* transformers' own bf16 run, per prompt */
    int vocab = 0;
};

bool read_golden(const std::string &name, GgufGolden *g) {
    json_error_t err;
    json_t *root = json_load_file((gguf_dir() + name + ".json").c_str(), 0, &err);
    if (!root) return false;
    g->vocab = (int)json_integer_value(json_object_get(root, "vocab"));
    json_t *prompts = json_object_get(root, "prompts"), *files = json_object_get(root, "logits_files");
    json_t *hf = json_object_get(root, "hf_bf16_error");
    for (size_t p = 0; p < json_array_size(hf); p++)
        g->hf_bf16.push_back(json_number_value(json_array_get(hf, p)));
    for (size_t p = 0; p < json_array_size(prompts); p++) {
        g->prompts.push_back(golden::int_array(json_array_get(prompts, p)));
        std::ifstream in(gguf_dir() + json_string_value(json_array_get(files, p)), std::ios::binary);
        std::vector<float> v(g->prompts.back().size() * (size_t)g->vocab);
        in.read(reinterpret_cast<char *>(v.data()), (std::streamsize)(v.size() * sizeof(float)));
        if (!in) v.clear();
        g->logits.push_back(v);
    }
    json_decref(root);
    return g->vocab > 0 && !g->prompts.empty();
}

qilin_status load(const std::string &path, qilin_dtype dtype, int tp, qilin_model **m) {
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = dtype;
    o.tp = tp;
    o.max_seqs = 2;
    o.max_ctx = 64;
    o.max_batch_tokens = 64;
    return qilin_model_load(path.c_str(), &o, m);
}

/* Logits of ids[0 .. n) in steps of the given sizes (slot 0). */
std::vector<float> run(qilin_model *m, const std::vector<int> &ids, const std::vector<int> &steps,
                       int vocab) {
    std::vector<float> out(ids.size() * (size_t)vocab);
    int done = 0, slot = 0;
    for (int take : steps) {
        qilin_batch b = {1, &slot, &done, &take, ids.data() + done, true, nullptr};
        EXPECT_EQ(qilin_forward(m, &b, out.data() + (size_t)done * vocab), QILIN_OK) << qilin_last_error();
        done += take;
    }
    return out;
}

class ForwardGguf : public testing::TestWithParam<std::string> {
  protected:
    void SetUp() override { ASSERT_TRUE(read_golden(GetParam(), &g_)) << "golden of " << GetParam(); }
    std::string path() const { return gguf_dir() + GetParam() + ".gguf"; }
    GgufGolden g_;
};

TEST_P(ForwardGguf, Fp32LogitsMatchTransformersOnDequantizedWeights) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = nullptr;
    ASSERT_EQ(load(path(), QILIN_F32, 1, &m), QILIN_OK) << qilin_last_error();
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        const int n = (int)g_.prompts[p].size();
        std::vector<float> got = run(m, g_.prompts[p], {n}, g_.vocab);
        double err = rel_error(got.data(), g_.logits[p].data(), got.size());
        printf("[ %s ] fp32 prompt %zu (%d tokens): max|diff|/max|ref| = %.3g\n", GetParam().c_str(), p, n,
               err);
        EXPECT_LE(err, kFp32Tolerance) << "prompt " << p;
    }
    /* prefill 20, then decode steps of one token (the GEMV path at m = 1) */
    const std::vector<int> &ids = g_.prompts.back();
    std::vector<int> steps = {20};
    for (size_t i = 20; i < ids.size(); i++) steps.push_back(1);
    std::vector<float> got = run(m, ids, steps, g_.vocab);
    double err = rel_error(got.data(), g_.logits.back().data(), got.size());
    printf("[ %s ] fp32 prefill 20 + %zu decode steps: %.3g\n", GetParam().c_str(), steps.size() - 1, err);
    EXPECT_LE(err, kFp32Tolerance);
    qilin_model_free(m);
}

TEST_P(ForwardGguf, Bf16LogitsWithinTolerance) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model *m = nullptr;
    ASSERT_EQ(load(path(), QILIN_BF16, 1, &m), QILIN_OK) << qilin_last_error();
    for (size_t p = 0; p < g_.prompts.size(); p++) {
        std::vector<float> got = run(m, g_.prompts[p], {(int)g_.prompts[p].size()}, g_.vocab);
        double err = rel_error(got.data(), g_.logits[p].data(), got.size());
        double hf = p < g_.hf_bf16.size() ? g_.hf_bf16[p] : 0, bound = std::max(kBf16Tolerance, 2 * hf);
        printf("[ %s ] bf16 prompt %zu: max|diff|/max|ref| = %.3g (transformers bf16: %.3g, bound %.3g)\n",
               GetParam().c_str(), p, err, hf, bound);
        EXPECT_LE(err, bound) << "prompt " << p;
    }
    qilin_model_free(m);
}

/* The 2-D projections, the embedding and the lm_head stay in their blocks:
 * the file's bytes; everything else (norms, biases, routers, expert stacks)
 * is in the activation dtype. */
TEST_P(ForwardGguf, DeviceWeightBytesAreTheBlocksAsStored) {
    QILIN_REQUIRE_DEVICES(1);
    gguf_file *f = nullptr;
    ASSERT_EQ(gguf_open(path().c_str(), &f), QILIN_OK) << qilin_last_error();
    uint64_t want = 0, quantized = 0;
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const std::string name = t->name;
        const bool kept =
            t->n_dims == 2 && t->type != GGUF_DT_F32 && name.find("ffn_gate_inp") == std::string::npos;
        int64_t numel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) numel *= t->ne[d];
        want += kept ? t->nbytes : (uint64_t)numel * 2; /* bf16 */
        quantized += kept ? t->nbytes : 0;
    }
    gguf_close(f);
    qilin_model *m = nullptr;
    ASSERT_EQ(load(path(), QILIN_BF16, 1, &m), QILIN_OK) << qilin_last_error();
    printf("[ %s ] weights on the device: %llu bytes, of which %llu GGUF blocks\n", GetParam().c_str(),
           (unsigned long long)qilin_model_weight_bytes(m, 0), (unsigned long long)quantized);
    EXPECT_EQ(qilin_model_weight_bytes(m, 0), want);
    EXPECT_GT(quantized, 0u);
    qilin_model_free(m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ForwardGguf, testing::Values("qwen2-q8_0", "qwen2-q4_k", "qwen2moe-q8_0"),
                         [](const testing::TestParamInfo<std::string> &i) {
                             std::string s = i.param;
                             for (char &c : s)
                                 if (c == '-') c = '_';
                             return s;
                         });

std::vector<char> read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string write_copy(const std::string &name, const std::vector<char> &bytes) {
    std::string out = process_temp_dir() + "/" + name;
    std::ofstream(out, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
    return out;
}

/* The byte offset in the file of tensor `name`'s data. */
size_t data_offset(const std::string &path, const char *name) {
    gguf_file *f = nullptr;
    EXPECT_EQ(gguf_open(path.c_str(), &f), QILIN_OK) << qilin_last_error();
    const gguf_tensor *t = f ? gguf_find_tensor(f, name) : nullptr;
    size_t at = t ? (size_t)(gguf_data_offset(f) + t->offset) : 0;
    gguf_close(f);
    return at;
}

void expect_load_error(const std::string &path, int tp, qilin_status want, std::vector<std::string> parts) {
    qilin_model *m = nullptr;
    EXPECT_EQ(load(path, QILIN_F32, tp, &m), want) << path;
    const std::string msg = qilin_last_error();
    for (const std::string &p : parts)
        EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    qilin_model_free(m);
}

TEST(ForwardGgufErrors, CorruptBlocksAreRefusedNamingTheTensor) {
    QILIN_REQUIRE_DEVICES(1);
    const std::string src = gguf_dir() + "qwen2-q4_k.gguf";
    const std::vector<char> good = read_file(src);
    ASSERT_FALSE(good.empty());
    /* an infinite d in the second block of a kept projection, a NaN dmin in a K-quant, a NaN
     * scale in the embedding (which is dequantized at load) */
    struct Plant {
        const char *tensor;
        size_t at; /* bytes into the tensor's data */
        uint16_t bits;
        const char *what;
    } plants[] = {{"blk.0.attn_output.weight", 18, 0x7c00, "scale d"},      /* Q4_0 block 1 */
                  {"blk.0.attn_q.weight", 144 + 2, 0x7e00, "dmin"},         /* Q4_K block 1 */
                  {"token_embd.weight", 210 * 3 + 208, 0xfc00, "scale d"}}; /* Q6_K block 3 */
    for (const Plant &p : plants) {
        std::vector<char> bad = good;
        const size_t at = data_offset(src, p.tensor) + p.at;
        ASSERT_GT(at, p.at) << p.tensor;
        bad[at] = (char)(p.bits & 0xff);
        bad[at + 1] = (char)(p.bits >> 8);
        expect_load_error(write_copy("corrupt.gguf", bad), 1, QILIN_ERR_FORMAT,
                          {p.tensor, p.what, "non-finite", "corrupt block data"});
    }
    /* a file cut inside the last tensor's blocks */
    std::vector<char> cut(good.begin(), good.end() - 100);
    expect_load_error(write_copy("truncated.gguf", cut), 1, QILIN_ERR_FORMAT,
                      {"truncated.gguf", "blk.0.ffn_down.weight", "past end of file"});
}

/* Over 2 GPUs. qwen2-q4_k: the K-quant projections split by rows,
 * attn_output (Q4_0) and ffn_down (Q8_0) by whole 32-weight blocks of
 * columns, the Q6_K embedding / tied lm_head by vocab rows. qwen2moe-q8_0:
 * the dequantized expert stacks split by their intermediate size, or (ep)
 * whole experts per GPU. */
void expect_tp2_matches(const char *name, bool ep) {
    GgufGolden g;
    ASSERT_TRUE(read_golden(name, &g));
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32;
    o.tp = 2;
    o.ep = ep;
    o.max_seqs = 2;
    o.max_ctx = 64;
    o.max_batch_tokens = 64;
    qilin_model *m = nullptr;
    ASSERT_EQ(qilin_model_load((gguf_dir() + name + ".gguf").c_str(), &o, &m), QILIN_OK)
        << qilin_last_error();
    for (size_t p = 0; p < g.prompts.size(); p++) {
        std::vector<float> got = run(m, g.prompts[p], {(int)g.prompts[p].size()}, g.vocab);
        double err = rel_error(got.data(), g.logits[p].data(), got.size());
        printf("[ %s tp 2%s ] fp32 prompt %zu: max|diff|/max|ref| = %.3g\n", name, ep ? " ep" : "", p, err);
        EXPECT_LE(err, kFp32Tolerance) << "prompt " << p;
    }
    qilin_model_free(m);
}

TEST(ForwardGgufParallel, Tp2Fp32LogitsMatchTransformers) {
    QILIN_REQUIRE_DEVICES(2);
    expect_tp2_matches("qwen2-q4_k", false);
    expect_tp2_matches("qwen2moe-q8_0", false);
    expect_tp2_matches("qwen2moe-q8_0", true);
}

TEST(ForwardGgufErrors, TensorParallelSplitInsideABlockIsRefused) {
    QILIN_REQUIRE_DEVICES(2);
    /* ffn_down's 160 input columns split in two are 80 = 2.5 Q8_0 blocks */
    expect_load_error(gguf_dir() + "qwen2-q8_0.gguf", 2, QILIN_ERR_UNSUPPORTED,
                      {"ffn_down.weight", "Q8_0", "32-weight blocks", "split a block"});
}

} // namespace
