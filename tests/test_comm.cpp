/* test_comm.cpp — qilin's collectives and point-to-point against host results.
 *
 * Every collective runs for N = 1, 2, 3, 4 ranks, one std::thread per rank,
 * each bound to device `rank` (qilin_device_set) before touching its comm, with
 * seeded random data per rank. Expected values are computed on the host:
 *   - gathers, broadcasts, all-to-all and send/recv move bytes: exact;
 *   - f32 sums: NCCL's summation order is its own, so each result may differ
 *     from the exact sum by one fp32 rounding per addition:
 *     tol = N * 2^-24 * sum_r |x_r|;
 *   - bf16 sums: NCCL adds in bf16 (a rounding per addition, 2^-8 each):
 *     tol = N * 2^-8 * sum_r |x_r|;
 *   - integer sums: exact.
 * The sim promises more (fixed rank order, fp32 accumulation, one rounding),
 * so in the sim build f32/bf16 sums must also equal the rank-order result
 * exactly and be bit-identical on every rank.
 *
 * A thread destroys its own communicator when its part ends, so a rank that
 * fails early makes its peers fail fast in the sim instead of waiting.
 *
 * The "procs" instances run the same cases with the ranks split into
 * groups as separate processes would hold them (qilin_comm_init_ranks from
 * one unique id, one init per group on its own thread): in the sim that
 * takes the loopback transport between processes, on GPUs ncclCommInitRank. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda/comm.h"
#include "tests/test_util.h"

namespace {

struct DeviceBuffer {
    void *ptr = nullptr;
    ~DeviceBuffer() { qilin_free(ptr); }
};

/* How many ranks each "process" holds when the ranks are split (n = 2, 3, 4):
 * the process holding rank 0 with one and with several ranks, likewise the others. */
std::vector<int> process_sizes(int n) {
    if (n == 4) return {2, 1, 1};
    if (n == 3) return {1, 2};
    return std::vector<int>(n, 1);
}

/* Set by the "procs" instances: run_ranks splits the ranks into processes. */
bool g_split_processes = false;

/* qilin_comm_init_ranks for each group of process_sizes(n), concurrently
 * (each blocks until all have joined). */
void init_split(int n, const std::vector<int> &devices, std::vector<qilin_comm *> &comms) {
    qilin_comm_id id;
    QILIN_ASSERT_OK(qilin_comm_get_unique_id(&id));
    std::vector<int> sizes = process_sizes(n);
    std::vector<qilin_status> st(sizes.size(), QILIN_OK);
    std::vector<std::string> msg(sizes.size());
    std::vector<std::thread> threads;
    for (size_t p = 0, first = 0; p < sizes.size(); first += sizes[p], p++)
        threads.emplace_back([&, p, first] {
            st[p] = qilin_comm_init_ranks(&id, n, (int)first, sizes[p], &devices[first], &comms[first]);
            msg[p] = qilin_last_error();
        });
    for (std::thread &t : threads) t.join();
    for (size_t p = 0; p < sizes.size(); p++) ASSERT_EQ(st[p], QILIN_OK) << "process " << p << ": " << msg[p];
}

/* Runs body(rank, comm) on one thread per rank; each thread binds to device
 * `rank` first and destroys its communicator when the body returns. */
void run_ranks(int n, const std::function<void(int, qilin_comm *)> &body) {
    std::vector<int> devices(n);
    for (int r = 0; r < n; r++) devices[r] = r;
    std::vector<qilin_comm *> comms(n, nullptr);
    if (g_split_processes && n > 1) {
        init_split(n, devices, comms);
        for (int r = 0; r < n; r++)
            if (!comms[r]) return;
    } else {
        QILIN_ASSERT_OK(qilin_comm_init_all(n, devices.data(), comms.data()));
    }
    std::vector<std::thread> threads;
    for (int r = 0; r < n; r++)
        threads.emplace_back([&, r] {
            qilin_status st = qilin_device_set(r);
            EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
            if (st == QILIN_OK) body(r, comms[r]);
            EXPECT_EQ(qilin_comm_destroy(comms[r]), QILIN_OK) << qilin_last_error();
        });
    for (std::thread &t : threads) t.join();
}

/* Uploads `host` into a new device buffer. */
template <typename T> void upload(DeviceBuffer &d, const std::vector<T> &host, size_t extra_bytes = 0) {
    size_t bytes = host.size() * sizeof(T);
    QILIN_ASSERT_OK(qilin_malloc(&d.ptr, bytes + extra_bytes + 1, "comm test"));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(d.ptr, host.data(), bytes, nullptr));
}

template <typename T> std::vector<T> download(const void *d, size_t n) {
    std::vector<T> h(n);
    qilin_status st = qilin_memcpy_d2h(h.data(), d, n * sizeof(T), nullptr);
    if (st == QILIN_OK) st = qilin_stream_synchronize(nullptr);
    EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
    return h;
}

std::vector<float> random_f32(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float &x : v) x = u(rng);
    return v;
}

std::vector<__nv_bfloat16> random_bf16(size_t n, uint32_t seed) {
    std::vector<float> f = random_f32(n, seed);
    std::vector<__nv_bfloat16> v(n);
    for (size_t i = 0; i < n; i++) v[i] = __float2bfloat16_rn(f[i]);
    return v;
}

template <typename T> std::vector<T> random_int(size_t n, uint32_t seed, int lo, int hi) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> u(lo, hi);
    std::vector<T> v(n);
    for (T &x : v) x = (T)u(rng);
    return v;
}

float to_f(float x) { return x; }
float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

/* Compares each of `outputs` with the exact sum over ranks of
 * inputs[q][offset + i], with tol = n * u * sum |x|; in the sim also with the
 * rank-order fp32 sum rounded once (bit-exact, hence identical on all ranks).
 * Prints the worst error. */
template <typename T>
void check_sums(const char *what, const std::vector<std::vector<T>> &inputs,
                const std::vector<std::vector<T>> &outputs, size_t offset, size_t count, double u,
                T (*round)(float)) {
    const int n = (int)inputs.size();
    double worst = 0, worst_ratio = 0;
    for (size_t r = 0; r < outputs.size(); r++)
        for (size_t i = 0; i < count; i++) {
            double exact = 0, mag = 0;
            float ordered = to_f(inputs[0][offset + i]);
            for (int q = 0; q < n; q++) {
                double x = to_f(inputs[q][offset + i]);
                exact += x;
                mag += std::fabs(x);
                if (q > 0) ordered += to_f(inputs[q][offset + i]);
            }
            double got = to_f(outputs[r][i]), tol = n * u * mag, err = std::fabs(got - exact);
            ASSERT_LE(err, tol) << what << ": rank " << r << " element " << i << " got " << got << " exact "
                                << exact;
            worst = std::max(worst, err);
            if (tol > 0) worst_ratio = std::max(worst_ratio, err / tol);
#ifdef QILIN_SIM
            T expect = round(ordered);
            ASSERT_EQ(std::memcmp(&outputs[r][i], &expect, sizeof(T)), 0)
                << what << ": sim result is not the rank-order fp32 sum at rank " << r << " element " << i;
#endif
        }
    std::printf("[   comm   ] %s, %d rank(s): max |err| %.3g, max err/tol %.3f\n", what, n, worst,
                worst_ratio);
}

float round_f32(float x) { return x; }
__nv_bfloat16 round_bf16(float x) { return __float2bfloat16_rn(x); }

template <typename T>
void expect_equal(const char *what, const std::vector<T> &got, const std::vector<T> &want, int rank) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); i++)
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(T)), 0)
            << what << ": rank " << rank << " element " << i;
}

constexpr size_t kCount = 1031; /* prime: no chunking of NCCL's lines up evenly */

/* Parameter: ranks, plus 100 for the instances split into processes. */
class Comm : public ::testing::TestWithParam<int> {
  protected:
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(n());
        g_split_processes = split();
    }
    void TearDown() override { g_split_processes = false; }
    int n() const { return GetParam() % 100; }
    bool split() const { return GetParam() >= 100; }
};

/* ---- all-reduce -------------------------------------------------------- */

template <typename T>
void all_reduce_case(int n, const char *what, qilin_dtype dtype, bool in_place,
                     std::vector<T> (*gen)(size_t, uint32_t), double u, T (*round)(float)) {
    std::vector<std::vector<T>> in(n), out(n);
    for (int r = 0; r < n; r++) in[r] = gen(kCount, 100 + r);
    run_ranks(n, [&](int r, qilin_comm *comm) {
        DeviceBuffer send, recv;
        upload(send, in[r]);
        void *dst = send.ptr;
        if (!in_place) {
            QILIN_ASSERT_OK(qilin_malloc(&recv.ptr, kCount * sizeof(T), "recv"));
            QILIN_ASSERT_OK(qilin_memset(recv.ptr, 0xff, kCount * sizeof(T), nullptr)); /* poison */
            dst = recv.ptr;
        }
        QILIN_ASSERT_OK(qilin_comm_all_reduce_sum(comm, send.ptr, dst, kCount, dtype, nullptr));
        out[r] = download<T>(dst, kCount);
    });
    check_sums(what, in, out, 0, kCount, u, round);
}

TEST_P(Comm, AllReduceF32) {
    all_reduce_case<float>(n(), "all_reduce f32", QILIN_F32, false, random_f32, std::ldexp(1.0, -24),
                           round_f32);
}

TEST_P(Comm, AllReduceF32InPlace) {
    all_reduce_case<float>(n(), "all_reduce f32 in-place", QILIN_F32, true, random_f32, std::ldexp(1.0, -24),
                           round_f32);
}

TEST_P(Comm, AllReduceBf16) {
    all_reduce_case<__nv_bfloat16>(n(), "all_reduce bf16", QILIN_BF16, false, random_bf16,
                                   std::ldexp(1.0, -8), round_bf16);
}

TEST_P(Comm, AllReduceI32) {
    std::vector<std::vector<int32_t>> in(n()), out(n());
    for (int r = 0; r < n(); r++) in[r] = random_int<int32_t>(kCount, 200 + r, -100000, 100000);
    run_ranks(n(), [&](int r, qilin_comm *comm) {
        DeviceBuffer buf;
        upload(buf, in[r]);
        QILIN_ASSERT_OK(qilin_comm_all_reduce_sum(comm, buf.ptr, buf.ptr, kCount, QILIN_I32, nullptr));
        out[r] = download<int32_t>(buf.ptr, kCount);
    });
    std::vector<int32_t> want(kCount, 0);
    for (int r = 0; r < n(); r++)
        for (size_t i = 0; i < kCount; i++) want[i] += in[r][i];
    for (int r = 0; r < n(); r++) expect_equal("all_reduce i32", out[r], want, r);
}

/* ---- reduce-scatter ----------------------------------------------------- */

TEST_P(Comm, ReduceScatterF32) {
    const int n = this->n();
    std::vector<std::vector<float>> in(n), out(n);
    for (int r = 0; r < n; r++) in[r] = random_f32(kCount * n, 300 + r);
    run_ranks(n, [&](int r, qilin_comm *comm) {
        DeviceBuffer send, recv;
        upload(send, in[r]);
        QILIN_ASSERT_OK(qilin_malloc(&recv.ptr, kCount * 4, "recv"));
        QILIN_ASSERT_OK(qilin_comm_reduce_scatter_sum(comm, send.ptr, recv.ptr, kCount, QILIN_F32, nullptr));
        out[r] = download<float>(recv.ptr, kCount);
    });
    /* Rank r holds slice r of the sum. */
    for (int r = 0; r < n; r++) {
        char what[64];
        std::snprintf(what, sizeof what, "reduce_scatter f32, slice of rank %d", r);
        check_sums(what, in, {out[r]}, (size_t)r * kCount, kCount, std::ldexp(1.0, -24), round_f32);
    }
}

/* ---- all-gather --------------------------------------------------------- */

void all_gather_case(int n, bool in_place) {
    std::vector<std::vector<int16_t>> in(n), out(n); /* f16 bit patterns: gathers move bytes */
    for (int r = 0; r < n; r++) in[r] = random_int<int16_t>(kCount, 400 + r, -30000, 30000);
    run_ranks(n, [&](int r, qilin_comm *comm) {
        DeviceBuffer send, recv;
        QILIN_ASSERT_OK(qilin_malloc(&recv.ptr, kCount * n * 2, "recv"));
        QILIN_ASSERT_OK(qilin_memset(recv.ptr, 0xff, kCount * n * 2, nullptr));
        const void *src = nullptr;
        if (in_place) { /* NCCL's in-place form: send is this rank's slot of recv */
            char *slot = static_cast<char *>(recv.ptr) + (size_t)r * kCount * 2;
            QILIN_ASSERT_OK(qilin_memcpy_h2d(slot, in[r].data(), kCount * 2, nullptr));
            src = slot;
        } else {
            upload(send, in[r]);
            src = send.ptr;
        }
        QILIN_ASSERT_OK(qilin_comm_all_gather(comm, src, recv.ptr, kCount, QILIN_F16, nullptr));
        out[r] = download<int16_t>(recv.ptr, kCount * n);
    });
    std::vector<int16_t> want;
    for (int r = 0; r < n; r++) want.insert(want.end(), in[r].begin(), in[r].end());
    for (int r = 0; r < n; r++) expect_equal("all_gather", out[r], want, r);
}

TEST_P(Comm, AllGatherF16) { all_gather_case(n(), false); }
TEST_P(Comm, AllGatherInPlace) { all_gather_case(n(), true); }

/* ---- broadcast ---------------------------------------------------------- */

TEST_P(Comm, Broadcast) {
    const int n = this->n();
    for (int root : {0, n - 1}) {
        std::vector<int64_t> data = random_int<int64_t>(kCount, 500 + root, -(1 << 30), 1 << 30);
        std::vector<std::vector<int64_t>> out(n);
        run_ranks(n, [&](int r, qilin_comm *comm) {
            DeviceBuffer send, recv;
            if (r == root) upload(send, data); /* non-roots pass send = NULL */
            QILIN_ASSERT_OK(qilin_malloc(&recv.ptr, kCount * 8, "recv"));
            QILIN_ASSERT_OK(qilin_memset(recv.ptr, 0xff, kCount * 8, nullptr));
            QILIN_ASSERT_OK(qilin_comm_broadcast(comm, send.ptr, recv.ptr, kCount, QILIN_I64, root, nullptr));
            out[r] = download<int64_t>(recv.ptr, kCount);
        });
        for (int r = 0; r < n; r++) expect_equal("broadcast", out[r], data, r);
    }
}

/* ---- all-to-all --------------------------------------------------------- */

TEST_P(Comm, AllToAll) {
    const int n = this->n();
    const size_t count = 257;
    /* send of rank p, chunk q, element i = p * 1e6 + q * 1e3 + i (as a tag) */
    auto tag = [](int p, int q, size_t i) { return (int32_t)(p * 1000000 + q * 1000 + (int)i); };
    std::vector<std::vector<int32_t>> out(n);
    run_ranks(n, [&](int r, qilin_comm *comm) {
        std::vector<int32_t> mine(count * n);
        for (int q = 0; q < n; q++)
            for (size_t i = 0; i < count; i++) mine[q * count + i] = tag(r, q, i);
        DeviceBuffer send, recv;
        upload(send, mine);
        QILIN_ASSERT_OK(qilin_malloc(&recv.ptr, count * n * 4, "recv"));
        QILIN_ASSERT_OK(qilin_comm_all_to_all(comm, send.ptr, recv.ptr, count, QILIN_I32, nullptr));
        out[r] = download<int32_t>(recv.ptr, count * n);
    });
    for (int q = 0; q < n; q++) {
        std::vector<int32_t> want(count * n);
        for (int p = 0; p < n; p++)
            for (size_t i = 0; i < count; i++) want[p * count + i] = tag(p, q, i);
        expect_equal("all_to_all", out[q], want, q);
    }
}

/* ---- point-to-point ----------------------------------------------------- */

/* Each rank receives from its left neighbour and sends to its right one, the
 * receive posted first: only the group makes this order safe. */
TEST_P(Comm, GroupedSendRecvRing) {
#ifdef QILIN_SIM
    if (split()) GTEST_SKIP() << "the sim carries only collectives between processes";
#endif
    const int n = this->n();
    std::vector<std::vector<float>> in(n), out(n);
    for (int r = 0; r < n; r++) in[r] = random_f32(kCount, 600 + r);
    run_ranks(n, [&](int r, qilin_comm *comm) {
        DeviceBuffer send, recv;
        upload(send, in[r]);
        QILIN_ASSERT_OK(qilin_malloc(&recv.ptr, kCount * 4, "recv"));
        int left = (r + n - 1) % n, right = (r + 1) % n;
        QILIN_ASSERT_OK(qilin_comm_group_start());
        qilin_status st1 = qilin_comm_recv(comm, recv.ptr, kCount, QILIN_F32, left, nullptr);
        qilin_status st2 = qilin_comm_send(comm, send.ptr, kCount, QILIN_F32, right, nullptr);
        qilin_status st3 = qilin_comm_group_end(); /* always end the group */
        QILIN_ASSERT_OK(st1);
        QILIN_ASSERT_OK(st2);
        QILIN_ASSERT_OK(st3);
        out[r] = download<float>(recv.ptr, kCount);
    });
    for (int r = 0; r < n; r++) expect_equal("ring send/recv", out[r], in[(r + n - 1) % n], r);
}

INSTANTIATE_TEST_SUITE_P(Comm, Comm, ::testing::Values(1, 2, 3, 4, 102, 103, 104),
                         [](const ::testing::TestParamInfo<int> &i) {
                             return "ranks" + std::to_string(i.param % 100) + (i.param >= 100 ? "_procs" : "");
                         });

/* ---- argument checks (both builds; no call reaches the transport) -------- */

bool names(const char *needle) { return std::string(qilin_last_error()).find(needle) != std::string::npos; }

TEST(CommApi, InitArgumentsAreChecked) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_comm *comms[2] = {nullptr, nullptr};
    int same[2] = {1, 1}, bad[2] = {0, 999};
    EXPECT_EQ(qilin_comm_init_all(0, same, comms), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(names("ndev = 0")) << qilin_last_error();
    EXPECT_EQ(qilin_comm_init_all(2, nullptr, comms), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(names("devices = NULL")) << qilin_last_error();
    EXPECT_EQ(qilin_comm_init_all(2, same, comms), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(names("devices[0] = devices[1] = 1")) << qilin_last_error();
    EXPECT_EQ(qilin_comm_init_all(2, bad, comms), QILIN_ERR_NO_DEVICE);
    EXPECT_TRUE(names("devices[1] = 999")) << qilin_last_error();
    EXPECT_EQ(qilin_comm_destroy(nullptr), QILIN_OK);
    EXPECT_EQ(qilin_comm_rank(nullptr), -1);
    EXPECT_EQ(qilin_comm_size(nullptr), -1);
}

class CommArgs : public ::testing::Test {
  protected:
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(2);
        int devices[2] = {0, 1};
        QILIN_ASSERT_OK(qilin_comm_init_all(2, devices, comms_));
        QILIN_ASSERT_OK(qilin_device_set(0));
        QILIN_ASSERT_OK(qilin_malloc(&buf_.ptr, 4096, "comm args"));
    }
    void TearDown() override {
        for (qilin_comm *c : comms_) EXPECT_EQ(qilin_comm_destroy(c), QILIN_OK);
    }
    void expect(qilin_status got, qilin_status want, const char *needle) {
        EXPECT_EQ(got, want) << qilin_status_name(got) << ": " << qilin_last_error();
        EXPECT_TRUE(names(needle)) << "'" << qilin_last_error() << "' does not name '" << needle << "'";
    }
    qilin_comm *comms_[2] = {nullptr, nullptr};
    DeviceBuffer buf_;
};

TEST_F(CommArgs, CallArgumentsAreChecked) {
    qilin_comm *c = comms_[0];
    void *b = buf_.ptr;
    EXPECT_EQ(qilin_comm_rank(c), 0);
    EXPECT_EQ(qilin_comm_size(c), 2);
    expect(qilin_comm_all_reduce_sum(nullptr, b, b, 4, QILIN_F32, nullptr), QILIN_ERR_INVALID_ARGUMENT,
           "comm = NULL");
    expect(qilin_comm_all_reduce_sum(c, nullptr, b, 4, QILIN_F32, nullptr), QILIN_ERR_INVALID_ARGUMENT,
           "all_reduce_sum (rank 0 of 2): send = NULL with count = 4");
    expect(qilin_comm_all_gather(c, b, nullptr, 4, QILIN_F32, nullptr), QILIN_ERR_INVALID_ARGUMENT,
           "recv = NULL");
    expect(qilin_comm_all_reduce_sum(c, b, b, 4, (qilin_dtype)99, nullptr), QILIN_ERR_UNSUPPORTED,
           "dtype = 99");
    expect(qilin_comm_broadcast(c, b, b, 4, QILIN_F32, 2, nullptr), QILIN_ERR_INVALID_ARGUMENT,
           "root = 2 is out of range [0, 2)");
    expect(qilin_comm_send(c, b, 4, QILIN_F32, -1, nullptr), QILIN_ERR_INVALID_ARGUMENT, "peer = -1");
    expect(qilin_comm_recv(c, b, 4, QILIN_F32, 2, nullptr), QILIN_ERR_INVALID_ARGUMENT, "peer = 2");
    expect(qilin_comm_recv(c, nullptr, 4, QILIN_F32, 1, nullptr), QILIN_ERR_INVALID_ARGUMENT, "buf = NULL");
    expect(qilin_comm_all_to_all(c, b, (char *)b + 8, 4, QILIN_F32, nullptr), QILIN_ERR_INVALID_ARGUMENT,
           "overlap");
    /* comms_[0] belongs to device 0; driving it from a thread bound to device 1 */
    QILIN_ASSERT_OK(qilin_device_set(1));
    expect(qilin_comm_all_reduce_sum(c, b, b, 4, QILIN_F32, nullptr), QILIN_ERR_INVALID_ARGUMENT,
           "stream belongs to device 1");
    QILIN_ASSERT_OK(qilin_device_set(0));
}

TEST(CommApi, GroupEndWithoutStartFails) {
    QILIN_REQUIRE_DEVICES(1);
    EXPECT_NE(qilin_comm_group_end(), QILIN_OK);
}

/* ---- sim-only promises: mismatches and vanished peers are errors --------- */
#ifdef QILIN_SIM

TEST(CommSim, MismatchedCountFailsOnEveryRank) {
    QILIN_REQUIRE_DEVICES(3);
    std::vector<qilin_status> st(3);
    std::vector<std::string> msg(3);
    run_ranks(3, [&](int r, qilin_comm *comm) {
        DeviceBuffer buf;
        QILIN_ASSERT_OK(qilin_malloc(&buf.ptr, 64 * 4, "buf"));
        size_t count = r == 2 ? 11 : 10;
        st[r] = qilin_comm_all_reduce_sum(comm, buf.ptr, buf.ptr, count, QILIN_F32, nullptr);
        msg[r] = qilin_last_error();
    });
    for (int r = 0; r < 3; r++) {
        EXPECT_EQ(st[r], QILIN_ERR_COMM) << msg[r];
        EXPECT_NE(msg[r].find("rank 2 all_reduce_sum(count=11, f32)"), std::string::npos) << msg[r];
        EXPECT_NE(msg[r].find("rank 0 all_reduce_sum(count=10, f32)"), std::string::npos) << msg[r];
    }
}

TEST(CommSim, MismatchedOpFailsOnEveryRank) {
    QILIN_REQUIRE_DEVICES(2);
    std::vector<qilin_status> st(2);
    std::vector<std::string> msg(2);
    run_ranks(2, [&](int r, qilin_comm *comm) {
        DeviceBuffer buf;
        QILIN_ASSERT_OK(qilin_malloc(&buf.ptr, 64 * 4, "buf"));
        st[r] = r == 0 ? qilin_comm_all_reduce_sum(comm, buf.ptr, buf.ptr, 8, QILIN_F32, nullptr)
                       : qilin_comm_broadcast(comm, buf.ptr, buf.ptr, 8, QILIN_F32, 0, nullptr);
        msg[r] = qilin_last_error();
    });
    for (int r = 0; r < 2; r++) {
        EXPECT_EQ(st[r], QILIN_ERR_COMM) << msg[r];
        EXPECT_NE(msg[r].find("rank 1 broadcast(count=8, f32, root=0)"), std::string::npos) << msg[r];
    }
}

TEST(CommSim, RecvMismatchNamesBothRanks) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_status st = QILIN_OK;
    std::string msg;
    run_ranks(2, [&](int r, qilin_comm *comm) {
        DeviceBuffer buf;
        QILIN_ASSERT_OK(qilin_malloc(&buf.ptr, 64 * 4, "buf"));
        if (r == 0) {
            QILIN_ASSERT_OK(qilin_comm_send(comm, buf.ptr, 10, QILIN_F32, 1, nullptr));
        } else {
            st = qilin_comm_recv(comm, buf.ptr, 9, QILIN_F32, 0, nullptr);
            msg = qilin_last_error();
        }
    });
    EXPECT_EQ(st, QILIN_ERR_COMM);
    EXPECT_NE(msg.find("rank 0 sent 10 x f32 but rank 1 expects 9 x f32"), std::string::npos) << msg;
}

/* Rank 1 leaves without joining; rank 0 must get an error, not a hang. */
TEST(CommSim, PeerDestroyedIsAnErrorNotAHang) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_status st = QILIN_OK;
    std::string msg;
    run_ranks(2, [&](int r, qilin_comm *comm) {
        if (r == 1) return; /* run_ranks destroys the comm */
        DeviceBuffer buf;
        QILIN_ASSERT_OK(qilin_malloc(&buf.ptr, 64, "buf"));
        st = qilin_comm_all_reduce_sum(comm, buf.ptr, buf.ptr, 4, QILIN_F32, nullptr);
        msg = qilin_last_error();
    });
    EXPECT_EQ(st, QILIN_ERR_COMM);
    EXPECT_NE(msg.find("rank 1 destroyed its communicator"), std::string::npos) << msg;
}

/* A deadlock (rank 0 in a collective, rank 1 waiting for a message) ends in
 * an error on both ranks after QILIN_SIM_COMM_TIMEOUT_S. */
TEST(CommSim, DeadlockTimesOut) {
    QILIN_REQUIRE_DEVICES(2);
    ASSERT_EQ(setenv("QILIN_SIM_COMM_TIMEOUT_S", "0.2", 1), 0);
    std::vector<qilin_status> st(2);
    std::vector<std::string> msg(2);
    run_ranks(2, [&](int r, qilin_comm *comm) {
        DeviceBuffer buf;
        QILIN_ASSERT_OK(qilin_malloc(&buf.ptr, 64, "buf"));
        st[r] = r == 0 ? qilin_comm_all_reduce_sum(comm, buf.ptr, buf.ptr, 4, QILIN_F32, nullptr)
                       : qilin_comm_recv(comm, buf.ptr, 4, QILIN_F32, 0, nullptr);
        msg[r] = qilin_last_error();
    });
    unsetenv("QILIN_SIM_COMM_TIMEOUT_S");
    for (int r = 0; r < 2; r++) {
        EXPECT_EQ(st[r], QILIN_ERR_COMM) << msg[r];
        EXPECT_NE(msg[r].find("QILIN_SIM_COMM_TIMEOUT_S"), std::string::npos) << msg[r];
    }
}

TEST(CommSim, BadTimeoutIsRejected) {
    QILIN_REQUIRE_DEVICES(1);
    ASSERT_EQ(setenv("QILIN_SIM_COMM_TIMEOUT_S", "soon", 1), 0);
    int devices[1] = {0};
    qilin_comm *comm = nullptr;
    EXPECT_EQ(qilin_comm_init_all(1, devices, &comm), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(names("QILIN_SIM_COMM_TIMEOUT_S = 'soon'")) << qilin_last_error();
    unsetenv("QILIN_SIM_COMM_TIMEOUT_S");
}

/* fp8 sums accumulate in fp32 and round once (NCCL needs sm_90 for this). */
TEST(CommSim, AllReduceFp8RoundsOnce) {
    QILIN_REQUIRE_DEVICES(3);
    const int n = 3;
    const size_t count = 64;
    std::vector<std::vector<__nv_fp8_e4m3>> in(n), out(n);
    for (int r = 0; r < n; r++) {
        std::vector<float> f = random_f32(count, 700 + r);
        for (float x : f) in[r].push_back(__nv_fp8_e4m3(x * 4.0f));
    }
    run_ranks(n, [&](int r, qilin_comm *comm) {
        DeviceBuffer buf;
        upload(buf, in[r]);
        QILIN_ASSERT_OK(qilin_comm_all_reduce_sum(comm, buf.ptr, buf.ptr, count, QILIN_FP8_E4M3, nullptr));
        out[r] = download<__nv_fp8_e4m3>(buf.ptr, count);
    });
    for (size_t i = 0; i < count; i++) {
        float s = (float)in[0][i];
        for (int r = 1; r < n; r++) s += (float)in[r][i];
        __nv_fp8_e4m3 want(s);
        for (int r = 0; r < n; r++) ASSERT_EQ(out[r][i].__x, want.__x) << "element " << i;
    }
}

#endif /* QILIN_SIM */

} // namespace

/* ---- ranks in several processes (sim transport) ------------------------- */

#ifdef QILIN_SIM
namespace {

/* Two one-rank "processes" from one id, created concurrently. */
void init_two_processes(qilin_comm *comms[2]) {
    qilin_comm_id id;
    QILIN_ASSERT_OK(qilin_comm_get_unique_id(&id));
    int dev[2] = {0, 1};
    qilin_status st[2];
    std::thread other([&] { st[1] = qilin_comm_init_ranks(&id, 2, 1, 1, &dev[1], &comms[1]); });
    st[0] = qilin_comm_init_ranks(&id, 2, 0, 1, &dev[0], &comms[0]);
    other.join();
    ASSERT_EQ(st[0], QILIN_OK);
    ASSERT_EQ(st[1], QILIN_OK);
}

} // namespace

/* Another thread aborts rank 0 while it waits for a process that never
 * comes: rank 0 fails with the reason, and the other process, arriving
 * later, finds the connection closed instead of waiting. */
TEST(CommSim, AbortEndsAWaitBetweenProcesses) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_comm *comms[2] = {nullptr, nullptr};
    init_two_processes(comms);
    DeviceBuffer a;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, 64, "a"));
    std::thread watchdog([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        qilin_comm_request_abort(comms[0], "node 1 reported a failure");
    });
    EXPECT_EQ(qilin_comm_all_reduce_sum(comms[0], a.ptr, a.ptr, 4, QILIN_F32, nullptr), QILIN_ERR_COMM);
    EXPECT_TRUE(names("node 1 reported a failure")) << qilin_last_error();
    watchdog.join();
    std::thread late([&] { /* rank 1, on its own device */
        DeviceBuffer b;
        ASSERT_EQ(qilin_device_set(1), QILIN_OK);
        QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 64, "b"));
        EXPECT_EQ(qilin_comm_all_reduce_sum(comms[1], b.ptr, b.ptr, 4, QILIN_F32, nullptr), QILIN_ERR_COMM);
        EXPECT_TRUE(names("closed")) << qilin_last_error();
    });
    late.join();
    EXPECT_EQ(qilin_comm_all_reduce_sum(comms[0], a.ptr, a.ptr, 4, QILIN_F32, nullptr), QILIN_ERR_COMM);
    EXPECT_TRUE(names("aborted")) << qilin_last_error(); /* and stays so */
    qilin_comm_destroy(comms[0]);
    qilin_comm_destroy(comms[1]);
}

/* A process that goes away (its communicators destroyed) fails the other's
 * next collective at once. */
TEST(CommSim, ProcessGoneIsAnErrorNotAHang) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_comm *comms[2] = {nullptr, nullptr};
    init_two_processes(comms);
    qilin_comm_destroy(comms[1]);
    DeviceBuffer a;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, 64, "a"));
    EXPECT_EQ(qilin_comm_all_gather(comms[0], a.ptr, a.ptr, 0, QILIN_F32, nullptr), QILIN_ERR_COMM);
    EXPECT_TRUE(names("closed")) << qilin_last_error();
    qilin_comm_destroy(comms[0]);
}

TEST(CommSim, MismatchBetweenProcessesFailsOnBoth) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_comm *comms[2] = {nullptr, nullptr};
    init_two_processes(comms);
    qilin_status st[2];
    std::string msg[2];
    std::thread other([&] {
        DeviceBuffer b;
        qilin_device_set(1);
        QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 64, "b"));
        st[1] = qilin_comm_all_reduce_sum(comms[1], b.ptr, b.ptr, 3, QILIN_F32, nullptr);
        msg[1] = qilin_last_error();
    });
    DeviceBuffer a;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, 64, "a"));
    st[0] = qilin_comm_all_reduce_sum(comms[0], a.ptr, a.ptr, 4, QILIN_F32, nullptr);
    msg[0] = qilin_last_error();
    other.join();
    for (int r = 0; r < 2; r++) {
        EXPECT_EQ(st[r], QILIN_ERR_COMM);
        EXPECT_NE(msg[r].find("rank 1 all_reduce_sum(count=3"), std::string::npos) << msg[r];
    }
    qilin_comm_destroy(comms[0]);
    qilin_comm_destroy(comms[1]);
}

TEST(CommSim, PointToPointBetweenProcessesIsRefused) {
    QILIN_REQUIRE_DEVICES(2);
    qilin_comm *comms[2] = {nullptr, nullptr};
    init_two_processes(comms);
    DeviceBuffer a;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, 64, "a"));
    EXPECT_EQ(qilin_comm_send(comms[0], a.ptr, 4, QILIN_F32, 1, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_TRUE(names("peer = 1 is in another process")) << qilin_last_error();
    qilin_comm_destroy(comms[0]);
    qilin_comm_destroy(comms[1]);
}

TEST(CommSim, JoiningFailsClearly) {
    QILIN_REQUIRE_DEVICES(2);
    int dev[1] = {0};
    qilin_comm *comm = nullptr;
    qilin_comm_id id;
    std::memset(&id, 0, sizeof id);
    EXPECT_EQ(qilin_comm_init_ranks(&id, 2, 0, 1, dev, &comm), QILIN_ERR_COMM);
    EXPECT_TRUE(names("not made by qilin_comm_get_unique_id")) << qilin_last_error();
    QILIN_ASSERT_OK(qilin_comm_get_unique_id(&id));
    EXPECT_EQ(qilin_comm_init_ranks(&id, 2, 1, 2, dev, &comm), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(names("ranks 1 .. 2 of world 2")) << qilin_last_error();
    ASSERT_EQ(setenv("QILIN_SIM_COMM_TIMEOUT_S", "0.3", 1), 0);
    EXPECT_EQ(qilin_comm_init_ranks(&id, 2, 0, 1, dev, &comm), QILIN_ERR_COMM); /* nobody else comes */
    EXPECT_TRUE(names("1 of 2 ranks never joined")) << qilin_last_error();
    EXPECT_EQ(qilin_comm_init_ranks(&id, 2, 0, 1, dev, &comm), QILIN_ERR_COMM); /* an id is used once */
    EXPECT_TRUE(names("already used")) << qilin_last_error();
    unsetenv("QILIN_SIM_COMM_TIMEOUT_S");
}
#endif
