/* test_sim_streams.cpp — the emulator's deferred streams (cuda/sim/streams.h)
 * and its vector-alignment check. Stream work runs later, in stream order, on
 * the device's worker, so a missing synchronisation gives wrong data here as
 * it may on a GPU: each planted miss below fails, and the same code with its
 * synchronisation passes. Sim build only (the misses are bugs on purpose). */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/intrinsic_kernels.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

#if defined(QILIN_SIM)
#include "cuda/sim/sim_api.h"

namespace {

/* Work waits a minute for someone to wait on it, rather than ~50 ms, so a
 * planted miss fails however slowly this process runs (every test here
 * synchronises, so nothing waits that long). Set before the sim reads it. */
const int hold_work = setenv("QILIN_SIM_DEFER_MS", "60000", 1);

#define REQUIRE_DEFERRED()                                                          \
    do {                                                                            \
        QILIN_REQUIRE_DEVICES(1);                                                   \
        if (!qsim_deferred()) GTEST_SKIP() << "QILIN_SIM_DEFERRED=0: work runs when issued"; \
    } while (0)

std::vector<float> ramp(size_t n, float scale) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = scale * (float)(i + 1);
    return v;
}

/* A kernel's own failure shows at its launch or at the next synchronisation. */
qilin_status launched(qilin_status launch) {
    if (launch != QILIN_OK) return launch;
    return qilin_stream_synchronize(nullptr);
}

TEST(SimStreams, HostReadOfACopyWithoutSyncIsStaleWithSyncIsRight) {
    REQUIRE_DEFERRED();
    (void)hold_work;
    const size_t n = 1000;
    const std::vector<float> want = ramp(n, 0.5f);
    DeviceBuffer<float> d(n);
    QILIN_ASSERT_OK(d.upload(want));
    std::vector<float> host(n, -1.0f);
    QILIN_ASSERT_OK(qilin_memcpy_d2h(host.data(), d.ptr, n * sizeof(float), nullptr));
    /* The planted bug: the host reads before synchronising. */
    EXPECT_EQ(host, std::vector<float>(n, -1.0f)) << "the copy ran before anyone waited for it";
    EXPECT_NE(host, want) << "a host read without a synchronisation went unnoticed";
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    EXPECT_EQ(host, want);
}

/* Two uploads through one pinned staging buffer, as host/upload.c does:
 * refilling it before the first copy's event completed corrupts that copy. */
std::vector<float> first_of_two_uploads(bool wait_for_event) {
    const size_t n = 512;
    float *stage = nullptr;
    qilin_stream *s = nullptr;
    qilin_event *ev = nullptr;
    DeviceBuffer<float> a(n), b(n);
    std::vector<float> out;
    if (qilin_host_alloc_pinned((void **)&stage, n * sizeof(float)) != QILIN_OK ||
        qilin_stream_create(&s) != QILIN_OK || qilin_event_create(&ev) != QILIN_OK)
        return out;
    const std::vector<float> first = ramp(n, 1.0f), second = ramp(n, -1.0f);
    std::memcpy(stage, first.data(), n * sizeof(float));
    bool ok = qilin_memcpy_h2d(a.ptr, stage, n * sizeof(float), s) == QILIN_OK &&
              qilin_event_record(ev, s) == QILIN_OK;
    if (ok && wait_for_event) ok = qilin_event_synchronize(ev) == QILIN_OK;
    std::memcpy(stage, second.data(), n * sizeof(float)); /* the buffer is reused */
    ok = ok && qilin_memcpy_h2d(b.ptr, stage, n * sizeof(float), s) == QILIN_OK &&
         qilin_stream_synchronize(s) == QILIN_OK;
    if (ok) {
        out = a.download();
        out.resize(n);
    }
    qilin_event_destroy(ev);
    qilin_stream_destroy(s);
    qilin_host_free_pinned(stage);
    return out;
}

TEST(SimStreams, StagingBufferReusedBeforeItsEventCorruptsTheUpload) {
    REQUIRE_DEFERRED();
    const std::vector<float> racy = first_of_two_uploads(false);
    ASSERT_EQ(racy.size(), 512u) << qilin_last_error();
    EXPECT_EQ(racy, ramp(512, -1.0f)) << "the staging buffer was refilled before its copy ran, unnoticed";
    EXPECT_EQ(first_of_two_uploads(true), ramp(512, 1.0f)) << "with the event synchronised";
}

TEST(SimStreams, PageableSourceIsStagedWhenTheCopyIsIssued) {
    REQUIRE_DEFERRED();
    /* CUDA's driver stages pageable memory before cudaMemcpyAsync returns, so
     * reusing it at once is correct code; pinned memory is read later (above). */
    const size_t n = 256;
    std::vector<float> host = ramp(n, 1.0f);
    DeviceBuffer<float> d(n);
    QILIN_ASSERT_OK(qilin_memcpy_h2d(d.ptr, host.data(), n * sizeof(float), nullptr));
    std::fill(host.begin(), host.end(), 0.0f);
    std::vector<float> got = d.download();
    got.resize(n);
    EXPECT_EQ(got, ramp(n, 1.0f));
}

TEST(SimStreams, KernelRunsAfterItsLaunchInStreamOrder) {
    REQUIRE_DEFERRED();
    const int n = 2048;
    DeviceBuffer<float> d(n);
    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    QILIN_ASSERT_OK(qilin_memset(d.ptr, 0, n * sizeof(float), s));
    for (int v = 1; v <= 8; v++) QILIN_ASSERT_OK(launch_fill(d.ptr, n, (float)v, s));
    /* Device memory is host memory in the sim: nothing has run yet. */
    uint32_t bits = 0;
    std::memcpy(&bits, d.ptr, sizeof bits);
    EXPECT_EQ(bits, 0xFFFFFFFFu) << "the memset or a kernel ran when it was issued";
    std::vector<float> host(n, -1.0f);
    QILIN_ASSERT_OK(qilin_memcpy_d2h(host.data(), d.ptr, n * sizeof(float), s));
    QILIN_ASSERT_OK(qilin_stream_synchronize(s));
    EXPECT_EQ(host, std::vector<float>(n, 8.0f)) << "the last kernel issued must be the last to write";
    QILIN_ASSERT_OK(qilin_stream_destroy(s));
}

TEST(SimStreams, EventOrdersWorkAcrossStreams) {
    REQUIRE_DEFERRED();
    const int n = 256;
    DeviceBuffer<float> x(n), y(n);
    qilin_stream *s1 = nullptr, *s2 = nullptr;
    qilin_event *ev = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s1));
    QILIN_ASSERT_OK(qilin_stream_create(&s2));
    QILIN_ASSERT_OK(qilin_event_create(&ev));
    QILIN_ASSERT_OK(launch_fill(x.ptr, n, 5.0f, s1));
    QILIN_ASSERT_OK(qilin_event_record(ev, s1));
    QILIN_ASSERT_OK(qilin_event_synchronize(ev));
    QILIN_ASSERT_OK(qilin_memcpy_d2d(y.ptr, x.ptr, n * sizeof(float), s2));
    QILIN_ASSERT_OK(qilin_stream_synchronize(s2));
    EXPECT_EQ(y.download(), std::vector<float>(n, 5.0f));
    QILIN_ASSERT_OK(qilin_event_destroy(ev));
    QILIN_ASSERT_OK(qilin_stream_destroy(s1));
    QILIN_ASSERT_OK(qilin_stream_destroy(s2));
}

TEST(SimStreams, FreeWaitsForTheWorkStillUsingTheBuffer) {
    REQUIRE_DEFERRED();
    /* cudaFree synchronises, so freeing after issuing the copy is correct code. */
    const size_t n = 300;
    const std::vector<float> want = ramp(n, 2.0f);
    float *d = nullptr;
    QILIN_ASSERT_OK(qilin_malloc((void **)&d, n * sizeof(float), "freed while copied"));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(d, want.data(), n * sizeof(float), nullptr));
    std::vector<float> host(n, 0.0f);
    QILIN_ASSERT_OK(qilin_memcpy_d2h(host.data(), d, n * sizeof(float), nullptr));
    QILIN_ASSERT_OK(qilin_free(d));
    EXPECT_EQ(host, want);
}

TEST(SimStreams, KernelFailureIsReportedOnceAtTheNextSynchronisation) {
    REQUIRE_DEFERRED();
    DeviceBuffer<int> out(8);
    QILIN_ASSERT_OK(launch_trap(out.ptr)); /* it has not run yet */
    EXPECT_EQ(qilin_device_synchronize(), QILIN_ERR_KERNEL);
    std::string msg = qilin_last_error();
    printf("message: %s\n", msg.c_str());
    EXPECT_NE(msg.find("trap_kernel"), std::string::npos) << msg;
    EXPECT_NE(msg.find("__trap"), std::string::npos) << msg;
    EXPECT_NE(msg.find("asynchronously"), std::string::npos) << msg;
    QILIN_ASSERT_OK(qilin_device_synchronize()); /* reported once, the device works on */
}

TEST(SimStreams, ElapsedTimeNeedsCompletedEvents) {
    REQUIRE_DEFERRED();
    DeviceBuffer<float> d(4096);
    qilin_event *start = nullptr, *stop = nullptr;
    QILIN_ASSERT_OK(qilin_event_create(&start));
    QILIN_ASSERT_OK(qilin_event_create(&stop));
    QILIN_ASSERT_OK(qilin_event_record(start, nullptr));
    QILIN_ASSERT_OK(launch_fill(d.ptr, 4096, 1.0f, nullptr));
    QILIN_ASSERT_OK(qilin_event_record(stop, nullptr));
    float ms = -1.0f;
    EXPECT_EQ(qilin_event_elapsed_ms(start, stop, &ms), QILIN_ERR_DEVICE) << "events not yet completed";
    QILIN_ASSERT_OK(qilin_event_synchronize(stop));
    QILIN_ASSERT_OK(qilin_event_elapsed_ms(start, stop, &ms));
    EXPECT_GE(ms, 0.0f);
    QILIN_ASSERT_OK(qilin_event_destroy(start));
    QILIN_ASSERT_OK(qilin_event_destroy(stop));
}

/* In a child with QILIN_SIM_DEFERRED=0: a copy has landed when it returns. */
[[noreturn]] void RunImmediateMode() {
    setenv("QILIN_SIM_DEFERRED", "0", 1);
    const size_t n = 64;
    std::vector<float> want = ramp(n, 3.0f), host(n, 0.0f);
    float *d = nullptr;
    bool ok = qilin_malloc((void **)&d, n * sizeof(float), "immediate") == QILIN_OK &&
              qilin_memcpy_h2d(d, want.data(), n * sizeof(float), nullptr) == QILIN_OK &&
              qilin_memcpy_d2h(host.data(), d, n * sizeof(float), nullptr) == QILIN_OK;
    ok = ok && qsim_deferred() == 0 && host == want;
    qilin_free(d);
    std::fprintf(stderr, ok ? "immediate as expected\n" : "not immediate\n");
    std::fflush(stderr);
    std::_Exit(ok ? 0 : 1);
}

TEST(SimStreams, DeferredModeCanBeTurnedOff) {
    QILIN_REQUIRE_DEVICES(1);
    GTEST_FLAG_SET(death_test_style, "threadsafe"); /* a fresh process reads the variable */
    EXPECT_EXIT(RunImmediateMode(), ::testing::ExitedWithCode(0), "immediate as expected");
}

/* ---- 16-byte vector accesses must be aligned ------------------------------ */

TEST(SimAlignment, MisalignedVectorLoadIsReportedNamingTheKernel) {
    QILIN_REQUIRE_DEVICES(1);
    const int threads = 32;
    const std::vector<float> in = ramp(4 * threads + 4, 1.0f);
    DeviceBuffer<float> din(in.size()), dout(4 * threads);
    QILIN_ASSERT_OK(din.upload(in));
    for (int through_vec16 = 0; through_vec16 <= 1; through_vec16++) {
        SCOPED_TRACE(through_vec16 ? "Vec16 through load_elems" : "load_vec<float4>");
        QILIN_ASSERT_OK(launched(launch_vector_load(din.ptr, dout.ptr, 0, threads, through_vec16)));
        std::vector<float> got = dout.download();
        EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + 4 * threads),
                  std::vector<float>(in.begin(), in.begin() + 4 * threads));
        /* One float past a 16-byte boundary: a GPU faults, x86 would not. */
        EXPECT_EQ(launched(launch_vector_load(din.ptr, dout.ptr, 1, threads, through_vec16)), QILIN_ERR_KERNEL);
        std::string msg = qilin_last_error();
        printf("message: %s\n", msg.c_str());
        EXPECT_NE(msg.find("vector_load_kernel"), std::string::npos) << msg;
        EXPECT_NE(msg.find("misaligned 16-byte vector load"), std::string::npos) << msg;
    }
}

} // namespace
#endif
