/* test_embedding.cpp — cuda/embedding.cu against a plain gather: every
 * table dtype, copied as is or widened to f32, odd shapes, misaligned rows
 * that take the scalar path, and out-of-range ids, which must read nothing,
 * zero their rows and report the lowest bad token through the error flag. */
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

/* A gather moves values and the f32 widening is exact for bf16 and f16. */
const Tolerance kExact = {0, 0, "a copy, or an exact widening to f32"};

struct Case {
    qilin_dtype dtype, out_dtype;
    int tokens, dim;
    bool misaligned = false;
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + (c.out_dtype != c.dtype ? "_to_f32" : "") + "_tokens" +
           std::to_string(c.tokens) + "_dim" + std::to_string(c.dim) + (c.misaligned ? "_misaligned" : "");
}

struct Gathered {
    std::vector<double> got, want;
    int error = -1;
};

/* Gathers `ids` from a random [vocab, dim] table through the kernel; `want`
 * holds zeros for ids outside the vocabulary. */
Gathered run_embedding(const Case &c, int vocab, const std::vector<int> &ids) {
    Gathered r;
    const size_t tes = qilin_dtype_size(c.dtype), oes = qilin_dtype_size(c.out_dtype);
    const size_t skew = c.misaligned ? 1 : 0, n = (size_t)c.tokens * c.dim;
    std::mt19937 rng(555 + c.tokens * 31 + c.dim);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> table(((size_t)vocab * c.dim + skew) * tes);
    for (size_t i = 0; i < (size_t)vocab * c.dim; i++) store(table, skew + i, 0.02 + normal(rng), c.dtype);
    r.want.assign(n, 0.0);
    for (int t = 0; t < c.tokens; t++)
        if (ids[t] >= 0 && ids[t] < vocab)
            for (int j = 0; j < c.dim; j++)
                r.want[(size_t)t * c.dim + j] = value_of(table, skew + (size_t)ids[t] * c.dim + j, c.dtype);

    DeviceBuffer<unsigned char> dtable(table.size()), dout((n + skew) * oes);
    DeviceBuffer<int> dids(ids.size()), derr(1);
    EXPECT_EQ(dtable.upload(table), QILIN_OK);
    EXPECT_EQ(dids.upload(ids), QILIN_OK);
    EXPECT_EQ(derr.upload({0}), QILIN_OK);
    EXPECT_EQ(dout.poison(), QILIN_OK);
    qilin_embedding_args a = {};
    a.out = dout.ptr + skew * oes;
    a.table = dtable.ptr + skew * tes;
    a.ids = dids.ptr;
    a.error = derr.ptr;
    a.tokens = c.tokens;
    a.dim = c.dim;
    a.vocab = vocab;
    a.dtype = c.dtype;
    a.out_dtype = c.out_dtype;
    qilin_status st = qilin_embedding(&a, nullptr);
    EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
    std::vector<unsigned char> out = dout.download();
    r.got.resize(n);
    for (size_t i = 0; i < n; i++) r.got[i] = value_of(out, skew + i, c.out_dtype);
    r.error = derr.download()[0];
    return r;
}

class Embedding : public testing::TestWithParam<Case> {};

TEST_P(Embedding, GathersRows) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const int vocab = 64; /* small: the table is generated on the host for every case */
    std::mt19937 rng(42 + c.tokens);
    std::uniform_int_distribution<int> pick(0, vocab - 1);
    std::vector<int> ids(c.tokens);
    for (int &id : ids) id = pick(rng);
    ids[0] = vocab - 1; /* the table's last row: an off-by-one reads past it */
    Gathered r = run_embedding(c, vocab, ids);
    Comparison cmp = compare(r.got, r.want, kExact);
    printf("out: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
    EXPECT_EQ(r.error, 0) << "every id was valid";
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16})
        for (qilin_dtype o : {t, QILIN_F32}) {
            if (t == QILIN_F32 && o == QILIN_F32 && !v.empty() && v.back().dtype == QILIN_F32) continue;
            for (int tokens : {1, 19})
                for (int dim : {1, 19, 111, 989, 4096}) v.push_back({t, o, tokens, dim});
        }
    v.push_back({QILIN_BF16, QILIN_BF16, 111, 989});
    v.push_back({QILIN_BF16, QILIN_F32, 111, 2048});
    v.push_back({QILIN_BF16, QILIN_BF16, 19, 4096, true});
    v.push_back({QILIN_F16, QILIN_F32, 19, 4096, true});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Embedding, testing::ValuesIn(cases()), case_name);

/* Ids past either end of the vocabulary: zero rows, the rest intact, and the
 * flag names the lowest bad token whatever order the blocks ran in. */
TEST(EmbeddingBadIds, ZeroRowsAndReportTheFirstBadToken) {
    QILIN_REQUIRE_DEVICES(1);
    for (int dim : {111, 4096}) {
        Case c = {QILIN_BF16, QILIN_BF16, 19, dim};
        const int vocab = 64; /* small: the table is generated on the host for every case */
        std::vector<int> ids(c.tokens);
        for (int t = 0; t < c.tokens; t++) ids[t] = (t * 37) % vocab;
        ids[5] = -1;
        ids[11] = vocab;
        ids[17] = 200000;
        Gathered r = run_embedding(c, vocab, ids);
        Comparison cmp = compare(r.got, r.want, kExact);
        printf("dim %d: error flag %d; out: %s\n", dim, r.error, cmp.summary.c_str());
        EXPECT_TRUE(cmp.ok) << cmp.summary;
        for (int t : {5, 11, 17})
            for (int j = 0; j < dim; j++) ASSERT_EQ(r.got[(size_t)t * dim + j], 0.0) << "token " << t;
        EXPECT_EQ(r.error, 6) << "token 5 is the first bad one";
    }
}

TEST(EmbeddingBadIds, NullFlagStillZeroesTheRow) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<int> ids = {3, 70000, 1};
    DeviceBuffer<float> table(8 * 4), out(3 * 4);
    DeviceBuffer<int> dids(3);
    std::vector<float> host(8 * 4);
    for (size_t i = 0; i < host.size(); i++) host[i] = 1.0f + (float)i;
    QILIN_ASSERT_OK(table.upload(host));
    QILIN_ASSERT_OK(dids.upload(ids));
    QILIN_ASSERT_OK(out.poison());
    qilin_embedding_args a = {};
    a.out = out.ptr;
    a.table = table.ptr;
    a.ids = dids.ptr;
    a.tokens = 3;
    a.dim = 4;
    a.vocab = 8;
    a.dtype = a.out_dtype = QILIN_F32;
    QILIN_ASSERT_OK(qilin_embedding(&a, nullptr));
    std::vector<float> got = out.download();
    for (int j = 0; j < 4; j++) {
        EXPECT_EQ(got[j], host[3 * 4 + j]);
        EXPECT_EQ(got[4 + j], 0.0f);
        EXPECT_EQ(got[8 + j], host[1 * 4 + j]);
    }
}

TEST(EmbeddingErrors, BadArgumentsNameTheProblem) {
    qilin_embedding_args a = {};
    EXPECT_EQ(qilin_embedding(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("embedding"), std::string::npos);
    float buf[4];
    int ids[1] = {0};
    a.out = buf;
    a.table = buf;
    a.ids = ids;
    a.tokens = 1;
    a.dim = 4;
    a.vocab = 0;
    EXPECT_EQ(qilin_embedding(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("vocab=0"), std::string::npos) << qilin_last_error();
    a.vocab = 1;
    a.dtype = QILIN_F32;
    a.out_dtype = QILIN_BF16;
    EXPECT_EQ(qilin_embedding(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("out_dtype bf16"), std::string::npos)
        << qilin_last_error();
    a.dtype = a.out_dtype = QILIN_I64;
    EXPECT_EQ(qilin_embedding(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i64"), std::string::npos) << qilin_last_error();
}

} // namespace
