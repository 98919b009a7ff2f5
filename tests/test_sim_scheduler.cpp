/* test_sim_scheduler.cpp — the emulator's scheduler: shuffled order exposes a
 * missing barrier, divergent barriers and broken warp collectives are reported
 * with the kernel's name instead of hanging, bad launches are refused, and the
 * emulator keeps working after a failed launch. Sim build only: on a GPU these
 * kernels hang, trap or race by design. */
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/intrinsic_kernels.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

#if defined(QILIN_SIM)
#include "cuda/sim/sim_api.h"
#endif

namespace {

#if defined(QILIN_SIM)
#define REQUIRE_SIM() QILIN_REQUIRE_DEVICES(1)
#else
#define REQUIRE_SIM() GTEST_SKIP() << "emulator-only: this kernel is broken on purpose"
#endif

/* A kernel's own failure (a divergent barrier, a trap) shows at the launch or,
 * when the sim defers the kernel as a GPU does, at the next synchronisation:
 * the status of whichever reports it. */
qilin_status launched(qilin_status launch) {
    if (launch != QILIN_OK) return launch;
    return qilin_stream_synchronize(nullptr);
}

#if defined(QILIN_SIM)
std::vector<float> reversed_blocks(const std::vector<float> &in, int blocks, int threads) {
    std::vector<float> out(in.size());
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < threads; t++) out[b * threads + t] = in[b * threads + threads - 1 - t];
    return out;
}
#endif

TEST(SimScheduler, MissingBarrierFailsUnderSomeSeedFixedPassesUnderAll) {
    REQUIRE_SIM();
#if defined(QILIN_SIM)
    const int blocks = 2, threads = 256;
    std::mt19937 rng(31);
    std::vector<float> in(blocks * threads);
    for (auto &v : in) v = (float)(rng() % 1000) + 1.0f;
    std::vector<float> want = reversed_blocks(in, blocks, threads);
    DeviceBuffer<float> din(in.size()), dout(in.size());
    QILIN_ASSERT_OK(din.upload(in));
    int racy_failures = 0;
    const int seeds = 4;
    for (int seed = 1; seed <= seeds; seed++) {
        qsim_set_seed((unsigned long long)seed);
        QILIN_ASSERT_OK(dout.poison());
        QILIN_ASSERT_OK(launch_reverse(din.ptr, dout.ptr, blocks, threads, false));
        if (dout.download() != want) racy_failures++;
        qsim_set_seed((unsigned long long)seed);
        QILIN_ASSERT_OK(dout.poison());
        QILIN_ASSERT_OK(launch_reverse(din.ptr, dout.ptr, blocks, threads, true));
        EXPECT_EQ(dout.download(), want) << "the kernel with its barrier must pass under seed " << seed;
    }
    printf("missing barrier caught under %d of %d seeds\n", racy_failures, seeds);
    EXPECT_GE(racy_failures, 1) << "the planted race went unnoticed under every seed";
#endif
}

TEST(SimScheduler, DivergentBarrierIsReportedNotHung) {
    REQUIRE_SIM();
    DeviceBuffer<int> out(64);
    qilin_status st = launched(launch_divergent_barrier(out.ptr, 64));
    EXPECT_EQ(st, QILIN_ERR_KERNEL);
    std::string msg = qilin_last_error();
    printf("message: %s\n", msg.c_str());
    EXPECT_NE(msg.find("divergent_barrier_kernel"), std::string::npos) << msg;
    EXPECT_NE(msg.find("divergent barrier"), std::string::npos) << msg;
    EXPECT_NE(msg.find("__syncthreads"), std::string::npos) << msg;
    /* the emulator is usable again afterwards */
    DeviceBuffer<float> d(1024);
    std::vector<float> ones(1024, 1.0f);
    QILIN_ASSERT_OK(d.upload(ones));
    QILIN_ASSERT_OK(launch_barrier_loop(d.ptr, 1, 1024, 1));
    EXPECT_EQ(d.download(), std::vector<float>(1024, 2.0f));
}

TEST(SimScheduler, ExitedLaneInShuffleIsReported) {
    REQUIRE_SIM();
    DeviceBuffer<int> out(32);
    EXPECT_EQ(launched(launch_exited_lane(out.ptr)), QILIN_ERR_KERNEL);
    std::string msg = qilin_last_error();
    printf("message: %s\n", msg.c_str());
    EXPECT_NE(msg.find("exited_lane_kernel"), std::string::npos) << msg;
    EXPECT_NE(msg.find("__shfl_xor_sync"), std::string::npos) << msg;
}

TEST(SimScheduler, TrapIsReported) {
    REQUIRE_SIM();
    DeviceBuffer<int> out(8);
    EXPECT_EQ(launched(launch_trap(out.ptr)), QILIN_ERR_KERNEL);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find("__trap"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(3,0,0)"), std::string::npos) << msg;
}

TEST(SimScheduler, OversizedBlockIsRefused) {
    QILIN_REQUIRE_DEVICES(1);
    DeviceBuffer<int> out(2048);
    qilin_status st = launch_bad_shape(out.ptr);
    EXPECT_NE(st, QILIN_OK);
    std::string msg = qilin_last_error();
    printf("message: %s\n", msg.c_str());
    EXPECT_NE(msg.find("divergent_barrier_kernel"), std::string::npos) << msg;
}

TEST(SimScheduler, SameSeedSameSchedule) {
    REQUIRE_SIM();
#if defined(QILIN_SIM)
    /* Two racy runs under one seed give the same (wrong or right) answer. */
    const int threads = 512;
    std::vector<float> in(threads);
    for (int i = 0; i < threads; i++) in[i] = (float)i;
    DeviceBuffer<float> din(threads), dout(threads);
    QILIN_ASSERT_OK(din.upload(in));
    std::vector<float> stale(threads, -1.0f);
    DeviceBuffer<float> dstale(threads);
    QILIN_ASSERT_OK(dstale.upload(stale));
    /* Static shared memory keeps what the last block left, as on a GPU, so
     * each run starts from the same stale tile (a full run of the kernel
     * leaves tile == its input whatever the order) and then races on `in`. */
    auto racy_run = [&](std::vector<float> &out) {
        QILIN_ASSERT_OK(launch_reverse(dstale.ptr, dout.ptr, 1, threads, false));
        qsim_set_seed(99);
        QILIN_ASSERT_OK(dout.poison());
        QILIN_ASSERT_OK(launch_reverse(din.ptr, dout.ptr, 1, threads, false));
        out = dout.download();
    };
    std::vector<float> first, second;
    racy_run(first);
    racy_run(second);
    int stale_reads = 0;
    for (int i = 0; i < threads; i++) stale_reads += first[i] == -1.0f;
    printf("stale reads under seed 99: %d of %d\n", stale_reads, threads);
    EXPECT_GT(stale_reads, 0);
    for (int i = 0; i < threads; i++)
        ASSERT_EQ(std::memcmp(&first[i], &second[i], sizeof(float)), 0)
            << "thread " << i << ": " << first[i] << " vs " << second[i];
#endif
}

TEST(SimScheduler, FibersSwitchWithoutSyscalls) {
    REQUIRE_SIM();
#if defined(QILIN_SIM)
    unsigned long long before = qsim_switch_count();
    DeviceBuffer<float> d(1024);
    std::vector<float> ones(1024, 1.0f);
    QILIN_ASSERT_OK(d.upload(ones));
    QILIN_ASSERT_OK(launch_barrier_loop(d.ptr, 1, 1024, 3));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr)); /* the kernel may run on the device's worker */
    /* 1024 threads, 4 barriers + exit: each is a switch in and a switch out */
    EXPECT_EQ(qsim_switch_count() - before, 2ull * 1024 * 5);
#endif
}

} // namespace
