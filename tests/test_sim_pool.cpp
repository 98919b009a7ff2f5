/* test_sim_pool.cpp — the emulator runs a launch's blocks on a pool of host
 * threads (cuda/sim/pool.h): results and every block's schedule are the same
 * with 1, 2 or 4 threads; when several blocks fail, the lowest one is
 * reported; blocks meeting through global atomics count exactly; two devices
 * launch at once; a failed launch leaves the pool working. Emulator-only: the
 * pool and the seeded schedules do not exist on a GPU. */
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/pool_kernels.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

#if defined(QILIN_SIM)
#include "cuda/sim/sim_api.h"

namespace {

/* Sets the pool size for one test and restores the environment's after. */
struct PoolSize {
    explicit PoolSize(int threads) { qsim_set_threads(threads); }
    ~PoolSize() { qsim_set_threads(0); }
};

struct ScheduleRun {
    std::vector<unsigned long long> hashes;
    std::vector<unsigned> out;
};

/* One launch of the schedule-hash kernel under `seed`, on the calling
 * thread's current device. */
ScheduleRun schedule_run(unsigned long long seed, dim3 grid, int threads) {
    const size_t blocks = (size_t)grid.x * grid.y * grid.z;
    DeviceBuffer<unsigned long long> hashes(blocks);
    DeviceBuffer<unsigned> out(blocks * threads);
    ScheduleRun run;
    if (!hashes.ptr || !out.ptr) return run;
    qsim_set_seed(seed);
    if (launch_schedule_hash(hashes.ptr, out.ptr, grid, threads, 6) != QILIN_OK ||
        qilin_stream_synchronize(nullptr) != QILIN_OK)
        return run;
    run.hashes = hashes.download();
    run.out = out.download();
    return run;
}

const dim3 kGrid(5, 3, 2);
const int kThreads = 64;

TEST(SimPool, SameSchedulesAndResultsWithOneTwoOrFourThreads) {
    QILIN_REQUIRE_DEVICES(1);
    ScheduleRun want;
    {
        PoolSize one(1);
        want = schedule_run(7, kGrid, kThreads);
    }
    ASSERT_FALSE(want.hashes.empty()) << qilin_last_error();
    /* The hash must see the schedule, or the comparisons below prove nothing:
     * blocks differ from one another, and another seed changes them. */
    int distinct = 0;
    for (size_t b = 1; b < want.hashes.size(); b++) distinct += want.hashes[b] != want.hashes[0];
    EXPECT_GT(distinct, 0) << "every block had the same schedule";
    {
        PoolSize one(1);
        EXPECT_NE(schedule_run(8, kGrid, kThreads).hashes, want.hashes) << "the seed changed no schedule";
    }
    for (int threads : {2, 4}) {
        PoolSize pool(threads);
        EXPECT_EQ(qsim_threads(), threads);
        for (int rep = 0; rep < 3; rep++) {
            ScheduleRun got = schedule_run(7, kGrid, kThreads);
            ASSERT_EQ(got.hashes.size(), want.hashes.size()) << qilin_last_error();
            for (size_t b = 0; b < want.hashes.size(); b++)
                EXPECT_EQ(got.hashes[b], want.hashes[b]) << "block " << b << " with " << threads << " threads";
            EXPECT_EQ(got.out, want.out) << threads << " threads";
        }
    }
}

TEST(SimPool, LowestFailingBlockIsReportedThenThePoolStillWorks) {
    QILIN_REQUIRE_DEVICES(1);
    const dim3 grid(8, 3, 1);
    const size_t blocks = 24;
    std::vector<int> traps(blocks, 0);
    /* blocks (5,0,0), (1,1,0), (1,2,0), (7,2,0) trap; the lowest last in time,
     * so reporting the first failure seen instead of the lowest shows */
    traps[5] = 2000;
    traps[9] = traps[17] = traps[23] = 1;
    DeviceBuffer<int> dtraps(blocks), done(blocks);
    QILIN_ASSERT_OK(dtraps.upload(traps));
    ScheduleRun want;
    {
        PoolSize one(1);
        want = schedule_run(11, kGrid, kThreads);
    }
    ASSERT_FALSE(want.hashes.empty()) << qilin_last_error();
    for (int threads : {1, 2, 4}) {
        PoolSize pool(threads);
        for (int rep = 0; rep < 5; rep++) {
            QILIN_ASSERT_OK(done.poison());
            qilin_status st = launch_trap_blocks(dtraps.ptr, done.ptr, grid, kThreads);
            if (st == QILIN_OK) st = qilin_stream_synchronize(nullptr);
            ASSERT_EQ(st, QILIN_ERR_KERNEL) << threads << " threads";
            std::string msg = qilin_last_error();
            EXPECT_NE(msg.find("trap_blocks_kernel"), std::string::npos) << msg;
            EXPECT_NE(msg.find("block (5,0,0) of (8,3,1)"), std::string::npos) << threads << " threads: " << msg;
            EXPECT_NE(msg.find("__trap"), std::string::npos) << msg;
            /* every block below the failing one ran */
            std::vector<int> ran = done.download();
            for (size_t b = 0; b < 5; b++) EXPECT_EQ(ran[b], 1) << "block " << b << ", " << threads << " threads";
            /* a good launch right after the failed one */
            ScheduleRun got = schedule_run(11, kGrid, kThreads);
            EXPECT_EQ(got.hashes, want.hashes) << threads << " threads: " << qilin_last_error();
            EXPECT_EQ(got.out, want.out) << threads << " threads";
        }
    }
}

TEST(SimPool, CrossBlockAtomicsCountExactly) {
    QILIN_REQUIRE_DEVICES(1);
    const int blocks = 48, threads = 64, launches = 10;
    std::vector<int> in((size_t)blocks * threads);
    long long want = 0;
    for (size_t i = 0; i < in.size(); i++) {
        in[i] = (int)(i * 7919 % 1000) - 500;
        want += in[i];
    }
    DeviceBuffer<int> din(in.size()), partial(blocks);
    DeviceBuffer<unsigned> tickets(1), count(1);
    DeviceBuffer<long long> total(1);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(tickets.upload({0u}));
    QILIN_ASSERT_OK(count.upload({0u}));
    PoolSize pool(4);
    for (int l = 0; l < launches; l++) {
        QILIN_ASSERT_OK(total.upload({-1}));
        QILIN_ASSERT_OK(launch_last_block_sum(din.ptr, partial.ptr, tickets.ptr, total.ptr, count.ptr, blocks, threads));
        EXPECT_EQ(total.download()[0], want) << "launch " << l;
    }
    EXPECT_EQ(count.download()[0], (unsigned)(launches * blocks * threads));
    EXPECT_EQ(tickets.download()[0], 0u) << "the last block did not rearm the tickets";
}

TEST(SimPool, TwoDevicesLaunchAtOnce) {
    QILIN_REQUIRE_DEVICES(2);
    ScheduleRun want;
    {
        PoolSize one(1);
        want = schedule_run(5, kGrid, kThreads);
    }
    ASSERT_FALSE(want.hashes.empty()) << qilin_last_error();
    PoolSize pool(2);
    std::vector<ScheduleRun> got(2 * 4);
    std::vector<std::thread> hosts;
    for (int d = 0; d < 2; d++)
        hosts.emplace_back([&, d] {
            int previous = 0;
            if (qilin_device_get(&previous) != QILIN_OK || qilin_device_set(d) != QILIN_OK) return;
            for (int rep = 0; rep < 4; rep++) got[d * 4 + rep] = schedule_run(5, kGrid, kThreads);
            qilin_device_set(previous);
        });
    for (auto &h : hosts) h.join();
    for (size_t i = 0; i < got.size(); i++) {
        EXPECT_EQ(got[i].hashes, want.hashes) << "device " << i / 4 << " run " << i % 4;
        EXPECT_EQ(got[i].out, want.out) << "device " << i / 4 << " run " << i % 4;
    }
}

} // namespace
#endif
