/* test_moe_dispatch.cpp — cuda/moe_dispatch.cu against plain C++ references.
 *
 * One rank's side of the all-to-all dispatch: random routing of `rows`
 * share rows (top_k distinct experts out of n_ranks x experts_per_rank,
 * optionally with ids outside the range, as a router gives -1 for a token
 * with too few selectable experts) through count (positions and counts
 * exactly), pack (send rows and ids exactly, padding ids -1, a chunk larger
 * than this rank's counts as when another rank sets it) and combine (fp32
 * weighted sum, one rounding, zeros outside the share; float64 reference).
 * Inputs are random and never zero, outputs poisoned first; shapes: rows 1,
 * 3, 17 (and a 1500-row case that spans two count chunks), n 2..4, top_k
 * 1, 2, 6, experts_per_rank 1..8, hidden 16, 72 and 19 (scalar path), every
 * dtype; then bad arguments. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

struct Case {
    qilin_dtype dtype;
    int rows, n, top_k, epr, hidden;
    bool bad_ids = false; /* some ids outside [0, n epr) */
};

std::string case_name(const testing::TestParamInfo<Case> &i) {
    const Case &c = i.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_rows" + std::to_string(c.rows) + "_n" +
                    std::to_string(c.n) + "_k" + std::to_string(c.top_k) + "_epr" + std::to_string(c.epr) +
                    "_h" + std::to_string(c.hidden);
    return c.bad_ids ? s + "_bad_ids" : s;
}

qilin_status poison_bytes(void *p, int byte, size_t n) { return qilin_memset(p, byte, n, nullptr); }

class MoeDispatch : public testing::TestWithParam<Case> {};

TEST_P(MoeDispatch, MatchesReference) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const qilin_dtype dt = c.dtype;
    const size_t es = qilin_dtype_size(dt);
    const int R = c.rows, n = c.n, K = c.top_k, E = c.epr, H = c.hidden, slots = R * K, n_exp = n * E;
    ASSERT_LE(K, n_exp) << "top_k distinct experts";
    std::mt19937 rng(1234 + R * 31 + n * 7 + K * 5 + E * 3 + H + (int)dt);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uni(0.1, 1.0);

    /* routing: k distinct experts per row; some bad ids when asked */
    std::vector<int> ids(slots), perm(n_exp);
    std::vector<float> w(slots);
    std::iota(perm.begin(), perm.end(), 0);
    for (int r = 0; r < R; r++) {
        std::shuffle(perm.begin(), perm.end(), rng);
        for (int j = 0; j < K; j++) {
            int s = r * K + j;
            ids[s] = perm[j];
            if (c.bad_ids && s % 4 == 1) ids[s] = (s / 4) % 2 ? -1 : n_exp + s;
            w[s] = (float)uni(rng);
        }
    }
    std::vector<int> want_pos(slots, -1), want_counts(n, 0);
    for (int s = 0; s < slots; s++)
        if (ids[s] >= 0 && ids[s] < n_exp) want_pos[s] = want_counts[ids[s] / E]++;

    /* count */
    DeviceBuffer<int> dids(slots), dpos(slots), dcounts(n);
    QILIN_ASSERT_OK(dids.upload(ids));
    QILIN_ASSERT_OK(poison_bytes(dpos.ptr, 0x7b, slots * sizeof(int)));
    QILIN_ASSERT_OK(poison_bytes(dcounts.ptr, 0x7b, n * sizeof(int)));
    qilin_moe_dispatch_count_args ca = {dpos.ptr, dcounts.ptr, dids.ptr, R, K, n, E};
    QILIN_ASSERT_OK(qilin_moe_dispatch_count(&ca, nullptr));
    std::vector<int> pos = dpos.download(), counts = dcounts.download();
    pos.resize(slots), counts.resize(n);
    EXPECT_EQ(pos, want_pos);
    EXPECT_EQ(counts, want_counts);

    /* pack, into a chunk one larger than this rank needs (another rank's max) */
    const int C = *std::max_element(want_counts.begin(), want_counts.end()) + 1;
    std::vector<unsigned char> x((size_t)R * H * es);
    for (size_t i = 0; i < (size_t)R * H; i++) store(x, i, normal(rng) + (normal(rng) > 0 ? 0.5 : -0.5), dt);
    DeviceBuffer<unsigned char> dx(x.size()), dsend((size_t)n * C * H * es);
    DeviceBuffer<int> dsend_ids((size_t)n * C);
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(dsend.poison());
    QILIN_ASSERT_OK(poison_bytes(dsend_ids.ptr, 0x7b, (size_t)n * C * sizeof(int)));
    qilin_moe_dispatch_pack_args pa = {
        dsend.ptr, dsend_ids.ptr, dx.ptr, dids.ptr, dpos.ptr, dcounts.ptr, R, K, n, E, H, C, dt};
    QILIN_ASSERT_OK(qilin_moe_dispatch_pack(&pa, nullptr));
    std::vector<unsigned char> send = dsend.download();
    std::vector<int> send_ids = dsend_ids.download();
    std::vector<int> want_ids((size_t)n * C, -1);
    int row_errors = 0;
    for (int s = 0; s < slots; s++) {
        if (want_pos[s] < 0) continue;
        int d = ids[s] / E;
        size_t dst = (size_t)d * C + want_pos[s];
        want_ids[dst] = ids[s] - d * E;
        row_errors += std::memcmp(&send[dst * H * es], &x[(size_t)(s / K) * H * es], H * es) != 0;
    }
    send_ids.resize((size_t)n * C);
    EXPECT_EQ(send_ids, want_ids);
    EXPECT_EQ(row_errors, 0) << "rows copied wrongly";

    /* combine: this rank's rows are [row0, row0 + R) of T tokens; back is random */
    const int row0 = (int)(rng() % 3), T = row0 + R + (int)(rng() % 3);
    std::vector<unsigned char> back((size_t)n * C * H * es);
    for (size_t i = 0; i < (size_t)n * C * H; i++) store(back, i, normal(rng) + 0.25, dt);
    std::vector<double> want((size_t)T * H, 0.0);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < K; j++) {
            int s = r * K + j;
            if (want_pos[s] < 0) continue;
            size_t src = ((size_t)(ids[s] / E) * C + want_pos[s]) * H;
            for (int h = 0; h < H; h++)
                want[(size_t)(row0 + r) * H + h] += (double)w[s] * value_of(back, src + h, dt);
        }
    DeviceBuffer<unsigned char> dback(back.size()), dout((size_t)T * H * es);
    DeviceBuffer<float> dw(slots);
    QILIN_ASSERT_OK(dback.upload(back));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(dout.poison());
    qilin_moe_dispatch_combine_args ma = {dout.ptr, dback.ptr, dids.ptr, dpos.ptr, dw.ptr, T, row0,
                                          R,        K,         n,        E,        H,      C, dt};
    QILIN_ASSERT_OK(qilin_moe_dispatch_combine(&ma, nullptr));
    std::vector<unsigned char> out = dout.download();
    std::vector<double> got((size_t)T * H);
    for (size_t i = 0; i < got.size(); i++) got[i] = value_of(out, i, dt);
    const Tolerance &base = dt == QILIN_F32 ? kTolDotF32 : dt == QILIN_BF16 ? kTolDotBF16 : kTolDotF16;
    Comparison cmp = compare(got, want, scaled_tolerance(base, want));
    printf("combine: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
    int nonzero_outside = 0;
    for (int t = 0; t < T; t++)
        if (t < row0 || t >= row0 + R)
            for (int h = 0; h < H; h++) nonzero_outside += got[(size_t)t * H + h] != 0.0;
    EXPECT_EQ(nonzero_outside, 0) << "tokens outside the share must be zeros";
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        v.push_back({t, 1, 2, 1, 1, 16}); /* decode, one expert per rank */
        v.push_back({t, 1, 4, 6, 2, 72}); /* decode, k over several ranks */
        v.push_back({t, 3, 2, 2, 1, 16}); /* both experts of a row on distinct ranks */
        v.push_back({t, 3, 3, 6, 8, 72});
        v.push_back({t, 3, 4, 2, 5, 72});
        v.push_back({t, 17, 2, 6, 8, 72}); /* Qwen-MoE-like k */
        v.push_back({t, 17, 3, 2, 3, 16});
        v.push_back({t, 17, 4, 1, 7, 72});
        v.push_back({t, 17, 3, 6, 2, 16}); /* k = n E: every expert of every row */
        v.push_back({t, 17, 3, 2, 4, 19}); /* odd width: scalar path */
        v.push_back({t, 17, 2, 6, 6, 72, true});
        v.push_back({t, 3, 4, 2, 3, 16, true});
    }
    v.push_back({QILIN_BF16, 1500, 4, 2, 8, 16}); /* 3000 assignments: count spans three chunks */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeDispatch, testing::ValuesIn(cases()), case_name);

/* An empty share (rows = 0): counts are zeros, pack writes only padding ids,
 * combine writes zeros for every token. */
TEST(MoeDispatchEdge, EmptyShare) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = 3, C = 2, H = 16, T = 2;
    DeviceBuffer<int> ids(1), pos(1), counts(n), send_ids(n * C);
    DeviceBuffer<float> w(1);
    DeviceBuffer<__nv_bfloat16> x(H), send(n * C * H), out(T * H);
    QILIN_ASSERT_OK(poison_bytes(counts.ptr, 0x7b, n * sizeof(int)));
    QILIN_ASSERT_OK(poison_bytes(send_ids.ptr, 0x7b, n * C * sizeof(int)));
    QILIN_ASSERT_OK(out.poison());
    qilin_moe_dispatch_count_args ca = {pos.ptr, counts.ptr, ids.ptr, 0, 2, n, 4};
    QILIN_ASSERT_OK(qilin_moe_dispatch_count(&ca, nullptr));
    std::vector<int> got = counts.download();
    got.resize(n);
    EXPECT_EQ(got, std::vector<int>(n, 0));
    qilin_moe_dispatch_pack_args pa = {
        send.ptr, send_ids.ptr, x.ptr, ids.ptr, pos.ptr, counts.ptr, 0, 2, n, 4, H, C, QILIN_BF16};
    QILIN_ASSERT_OK(qilin_moe_dispatch_pack(&pa, nullptr));
    got = send_ids.download();
    got.resize(n * C);
    EXPECT_EQ(got, std::vector<int>(n * C, -1));
    qilin_moe_dispatch_combine_args ma = {out.ptr, send.ptr, ids.ptr, pos.ptr, w.ptr, T, 1,
                                          0,       2,        n,       4,       H,     C, QILIN_BF16};
    QILIN_ASSERT_OK(qilin_moe_dispatch_combine(&ma, nullptr));
    std::vector<__nv_bfloat16> o = out.download();
    int nonzero = 0;
    for (int i = 0; i < T * H; i++) nonzero += __bfloat162float(o[i]) != 0.0f;
    EXPECT_EQ(nonzero, 0);
}

/* Positions do not depend on the emulator's thread order: two runs agree. */
TEST(MoeDispatchEdge, CountIsDeterministic) {
    QILIN_REQUIRE_DEVICES(1);
    const int R = 700, K = 6, n = 4, E = 8;
    std::mt19937 rng(5);
    std::vector<int> ids(R * K);
    for (int &v : ids) v = (int)(rng() % (n * E));
    DeviceBuffer<int> dids(R * K), pos(R * K), counts(n);
    QILIN_ASSERT_OK(dids.upload(ids));
    qilin_moe_dispatch_count_args ca = {pos.ptr, counts.ptr, dids.ptr, R, K, n, E};
    QILIN_ASSERT_OK(qilin_moe_dispatch_count(&ca, nullptr));
    std::vector<int> first = pos.download();
    QILIN_ASSERT_OK(pos.poison());
    QILIN_ASSERT_OK(qilin_moe_dispatch_count(&ca, nullptr));
    EXPECT_EQ(pos.download(), first);
}

TEST(MoeDispatchErrors, BadArgumentsNameTheProblem) {
    int dummy[64] = {};
    auto expect_error = [](qilin_status st, qilin_status want, const char *needle) {
        EXPECT_EQ(st, want);
        EXPECT_NE(std::string(qilin_last_error()).find(needle), std::string::npos) << qilin_last_error();
    };
    qilin_moe_dispatch_count_args ca = {};
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "must be set");
    expect_error(qilin_moe_dispatch_count(nullptr, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_moe_dispatch_count");
    ca = {dummy, dummy, dummy, 4, 2, 2, 4};
    ca.top_k = 0;
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "top_k=0");
    ca.top_k = 33;
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "top_k=33");
    ca.top_k = 2, ca.n_ranks = 0;
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "n_ranks=0");
    ca.n_ranks = 257;
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "n_ranks=257");
    ca.n_ranks = 2, ca.experts_per_rank = 0;
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "experts_per_rank=0");
    ca.experts_per_rank = 4, ca.rows = -1;
    expect_error(qilin_moe_dispatch_count(&ca, nullptr), QILIN_ERR_INVALID_ARGUMENT, "rows=-1");

    qilin_moe_dispatch_pack_args pa = {dummy, dummy, dummy, dummy, dummy, dummy,     4,
                                       2,     2,     4,     16,    3,     QILIN_BF16};
    pa.x = nullptr;
    expect_error(qilin_moe_dispatch_pack(&pa, nullptr), QILIN_ERR_INVALID_ARGUMENT, "must be set");
    pa.x = dummy, pa.chunk = -1;
    expect_error(qilin_moe_dispatch_pack(&pa, nullptr), QILIN_ERR_INVALID_ARGUMENT, "chunk=-1");
    pa.chunk = 3, pa.hidden = 0;
    expect_error(qilin_moe_dispatch_pack(&pa, nullptr), QILIN_ERR_INVALID_ARGUMENT, "hidden=0");
    pa.hidden = 16, pa.dtype = QILIN_I8;
    expect_error(qilin_moe_dispatch_pack(&pa, nullptr), QILIN_ERR_UNSUPPORTED, "i8");
    pa.dtype = QILIN_BF16, pa.chunk = 1 << 30, pa.n_ranks = 4;
    expect_error(qilin_moe_dispatch_pack(&pa, nullptr), QILIN_ERR_INVALID_ARGUMENT, "too many");

    qilin_moe_dispatch_combine_args ma = {dummy, dummy, dummy, dummy,    (const float *)dummy, 4, 2, 3, 2, 2,
                                          4,     16,    3,     QILIN_F32};
    expect_error(qilin_moe_dispatch_combine(&ma, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "must lie in tokens=4");
    ma.row0 = -1;
    expect_error(qilin_moe_dispatch_combine(&ma, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "must lie in tokens=4");
    ma.row0 = 0, ma.topk_weights = nullptr;
    expect_error(qilin_moe_dispatch_combine(&ma, nullptr), QILIN_ERR_INVALID_ARGUMENT, "must be set");
    ma.topk_weights = (const float *)dummy, ma.dtype = QILIN_I32;
    expect_error(qilin_moe_dispatch_combine(&ma, nullptr), QILIN_ERR_UNSUPPORTED, "i32");
}

} // namespace
