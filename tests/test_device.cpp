/* test_device.cpp — tests of the device layer (cuda/device.h).
 *
 * The same tests run in the sim build (CI) and on a real GPU in the cuda build;
 * every test starts with QILIN_REQUIRE_DEVICES so a machine without a GPU skips
 * cleanly. Covered: device count and properties, the per-thread current device,
 * allocation accounting (allocated/peak, per device, under concurrency), the
 * out-of-memory message, H2D/D2H/D2D round trips of random data at odd sizes
 * and offsets into poisoned buffers, memset, streams, events, pinned memory,
 * bandwidth measurement, launch checking, and that every failure leaves a
 * message naming the operation. Sim-only tests cover what only the emulator
 * promises: poisoned fresh allocations, bounds-checked copies, handle
 * validation and the QILIN_SIM_* environment (in child processes, since the
 * environment is read once). No test asserts a timing threshold. */
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"
#ifdef QILIN_SIM
#include "cuda/kernel.h"
#endif

namespace {

int DeviceCount() {
    int n = 0;
    return qilin_device_count(&n) == QILIN_OK ? n : 0;
}

/* A failing call: checks the status and that the thread's message is
 * non-empty and contains each needle (the operation first, by convention). */
::testing::AssertionResult Fails(qilin_status got, qilin_status want,
                                 std::initializer_list<std::string> needles) {
    std::string msg = qilin_last_error();
    if (got != want)
        return ::testing::AssertionFailure() << "status " << qilin_status_name(got) << ", expected "
                                             << qilin_status_name(want) << " (message: " << msg << ")";
    if (msg.empty()) return ::testing::AssertionFailure() << "empty error message";
    for (const std::string &needle : needles)
        if (msg.find(needle) == std::string::npos)
            return ::testing::AssertionFailure()
                   << "message \"" << msg << "\" does not mention \"" << needle << "\"";
    std::printf("  [expected error] %s\n", msg.c_str());
    return ::testing::AssertionSuccess();
}

/* Clears the message first, so a stale one cannot satisfy the check. */
#define EXPECT_FAILS(expr, want, ...)                                                                        \
    do {                                                                                                     \
        qilin_clear_error();                                                                                 \
        qilin_status expect_fails_st_ = (expr);                                                              \
        EXPECT_TRUE(Fails(expect_fails_st_, (want), {__VA_ARGS__})) << #expr;                                \
    } while (0)

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::vector<uint8_t> v(n);
    for (auto &b : v) b = uint8_t(byte(rng));
    return v;
}

/* Index of the first byte that differs, or n. */
size_t FirstMismatch(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Index of the first byte that is not `value`, or n. */
size_t FirstNotEqual(const uint8_t *a, uint8_t value, size_t n) {
    size_t i = 0;
    while (i < n && a[i] == value) i++;
    return i;
}

/* Device memory that is freed when the test ends, whatever happens. */
struct DeviceBuffer {
    void *ptr = nullptr;
    ~DeviceBuffer() { qilin_free(ptr); }
    uint8_t *bytes() const { return static_cast<uint8_t *>(ptr); }
};

size_t Allocated(int device) {
    size_t allocated = 0, peak = 0;
    EXPECT_EQ(qilin_memory_used(device, &allocated, &peak), QILIN_OK) << qilin_last_error();
    return allocated;
}

size_t Peak(int device) {
    size_t allocated = 0, peak = 0;
    EXPECT_EQ(qilin_memory_used(device, &allocated, &peak), QILIN_OK) << qilin_last_error();
    return peak;
}

} // namespace

/* ---- devices ------------------------------------------------------------- */

TEST(Device, CountAndPropsAreSane) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = DeviceCount();
    EXPECT_LE(n, 64);
    for (int i = 0; i < n; i++) {
        qilin_device_props p;
        QILIN_ASSERT_OK(qilin_device_get_props(i, &p));
        std::printf("  device %d: %s, cc %d.%d, %d SMs, %zu MiB, L2 %zu MiB, smem %zu KiB, "
                    "%.0f GB/s (%s)\n",
                    i, p.name, p.cc_major, p.cc_minor, p.sm_count, p.total_mem_bytes >> 20, p.l2_bytes >> 20,
                    p.shared_mem_per_block_optin >> 10, p.peak_bandwidth_gbs,
                    p.peak_bandwidth_measured ? "measured" : "datasheet");
        EXPECT_EQ(p.index, i);
        EXPECT_GT(std::strlen(p.name), 0u);
        EXPECT_LT(std::strlen(p.name), sizeof p.name);
        EXPECT_GE(p.cc_major, 8) << "qilin targets sm_80 and newer";
        EXPECT_GE(p.cc_minor, 0);
        EXPECT_GT(p.sm_count, 0);
        EXPECT_EQ(p.max_threads_per_block, 1024);
        EXPECT_GE(p.shared_mem_per_block_optin, size_t(48) << 10);
        EXPECT_GT(p.l2_bytes, 0u);
        EXPECT_GE(p.total_mem_bytes, size_t(1) << 20);
        EXPECT_GT(p.peak_bandwidth_gbs, 0.0);
        EXPECT_GE(p.shared_mem_per_sm, p.shared_mem_per_block_optin);
#ifdef QILIN_SIM
        EXPECT_EQ(p.is_sim, 1);
        if (std::getenv("QILIN_SIM_PROFILE")) continue; /* the profiles' own test below */
        EXPECT_STREQ(p.name, "qilin-sim (emulated H100)");
        EXPECT_EQ(p.cc_major, 9);
        EXPECT_EQ(p.cc_minor, 0);
        EXPECT_EQ(p.sm_count, 132);
        EXPECT_EQ(p.shared_mem_per_block_optin, size_t(227) << 10);
        EXPECT_EQ(p.l2_bytes, size_t(50) << 20);
#else
        EXPECT_EQ(p.is_sim, 0);
#endif
    }
}

TEST(Device, BadArgumentsToQueriesAreNamed) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = DeviceCount();
    qilin_device_props p;
    EXPECT_FAILS(qilin_device_get_props(n, &p), QILIN_ERR_NO_DEVICE, "qilin_device_get_props",
                 "device " + std::to_string(n));
    EXPECT_FAILS(qilin_device_get_props(-1, &p), QILIN_ERR_NO_DEVICE, "qilin_device_get_props", "device -1");
    EXPECT_FAILS(qilin_device_get_props(0, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_device_get_props");
    EXPECT_FAILS(qilin_device_count(nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_device_count");
    size_t a, b;
    EXPECT_FAILS(qilin_memory_used(n, &a, &b), QILIN_ERR_NO_DEVICE, "qilin_memory_used", std::to_string(n));
    EXPECT_FAILS(qilin_memory_info(n, &a, &b), QILIN_ERR_NO_DEVICE, "qilin_memory_info", std::to_string(n));
    EXPECT_FAILS(qilin_memory_info(0, nullptr, &b), QILIN_ERR_INVALID_ARGUMENT, "qilin_memory_info");
}

TEST(Device, SetAndGetCurrentDevice) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = DeviceCount();
    for (int i = 0; i < n && i < 8; i++) {
        QILIN_ASSERT_OK(qilin_device_set(i));
        int got = -1;
        QILIN_ASSERT_OK(qilin_device_get(&got));
        EXPECT_EQ(got, i);
    }
    QILIN_ASSERT_OK(qilin_device_set(0));
    EXPECT_FAILS(qilin_device_set(n), QILIN_ERR_NO_DEVICE, "qilin_device_set", "device " + std::to_string(n));
    EXPECT_FAILS(qilin_device_set(-1), QILIN_ERR_NO_DEVICE, "qilin_device_set", "device -1");
    int got = -1;
    QILIN_ASSERT_OK(qilin_device_get(&got));
    EXPECT_EQ(got, 0) << "a failed qilin_device_set must leave the current device alone";
    EXPECT_FAILS(qilin_device_get(nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_device_get");
    QILIN_ASSERT_OK(qilin_device_synchronize());
}

TEST(Device, CurrentDeviceIsPerThread) {
    QILIN_REQUIRE_DEVICES(2);
    QILIN_ASSERT_OK(qilin_device_set(1));
    int other = -1;
    qilin_status other_status = QILIN_ERR_INTERNAL;
    std::thread t([&] { other_status = qilin_device_get(&other); });
    t.join();
    EXPECT_EQ(other_status, QILIN_OK);
    EXPECT_EQ(other, 0) << "a new thread starts on device 0";
    int mine = -1;
    QILIN_ASSERT_OK(qilin_device_get(&mine));
    EXPECT_EQ(mine, 1);
    QILIN_ASSERT_OK(qilin_device_set(0));
}

/* ---- memory -------------------------------------------------------------- */

TEST(Device, MallocAndFreeMoveTheAccounting) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t base = Allocated(0);
    EXPECT_GE(Peak(0), base);

    void *a = nullptr, *b = nullptr;
    QILIN_ASSERT_OK(qilin_malloc(&a, 1000, "test buffer a"));
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(uintptr_t(a) % 256, 0u);
    EXPECT_EQ(Allocated(0), base + 1000);
    EXPECT_GE(Peak(0), base + 1000);

    QILIN_ASSERT_OK(qilin_malloc(&b, 5000, "test buffer b"));
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(uintptr_t(b) % 256, 0u);
    EXPECT_EQ(Allocated(0), base + 6000);
    const size_t peak = Peak(0);
    EXPECT_GE(peak, base + 6000);

    QILIN_ASSERT_OK(qilin_free(a));
    EXPECT_EQ(Allocated(0), base + 5000);
    EXPECT_EQ(Peak(0), peak) << "freeing must not lower the peak";
    QILIN_ASSERT_OK(qilin_free(b));
    EXPECT_EQ(Allocated(0), base);
    EXPECT_EQ(Peak(0), peak);

    QILIN_ASSERT_OK(qilin_free(nullptr));
    void *empty = &a;
    QILIN_ASSERT_OK(qilin_malloc(&empty, 0, "empty buffer"));
    EXPECT_EQ(empty, nullptr) << "zero bytes give NULL";
    EXPECT_EQ(Allocated(0), base);
    EXPECT_FAILS(qilin_malloc(nullptr, 16, "no out pointer"), QILIN_ERR_INVALID_ARGUMENT, "qilin_malloc");
}

TEST(Device, FreeRejectsPointersItDidNotAllocate) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t base = Allocated(0);
    int on_stack = 0;
    EXPECT_FAILS(qilin_free(&on_stack), QILIN_ERR_INVALID_ARGUMENT, "qilin_free");
    void *p = nullptr;
    QILIN_ASSERT_OK(qilin_malloc(&p, 64, "freed twice"));
    QILIN_ASSERT_OK(qilin_free(p));
    EXPECT_FAILS(qilin_free(p), QILIN_ERR_INVALID_ARGUMENT, "qilin_free");
    EXPECT_EQ(Allocated(0), base);
}

TEST(Device, AccountingIsPerDevice) {
    QILIN_REQUIRE_DEVICES(2);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t base0 = Allocated(0), base1 = Allocated(1);
    QILIN_ASSERT_OK(qilin_device_set(1));
    void *p = nullptr;
    QILIN_ASSERT_OK(qilin_malloc(&p, 4096, "on device 1"));
    QILIN_ASSERT_OK(qilin_device_set(0));
    EXPECT_EQ(Allocated(0), base0);
    EXPECT_EQ(Allocated(1), base1 + 4096);
    QILIN_ASSERT_OK(qilin_free(p)); /* from another current device */
    EXPECT_EQ(Allocated(1), base1);
}

TEST(Device, MemoryInfo) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    size_t free_bytes = 0, total_bytes = 0;
    QILIN_ASSERT_OK(qilin_memory_info(0, &free_bytes, &total_bytes));
    std::printf("  device 0: %zu of %zu MiB free\n", free_bytes >> 20, total_bytes >> 20);
    EXPECT_GT(total_bytes, 0u);
    EXPECT_LE(free_bytes, total_bytes);
#ifdef QILIN_SIM
    qilin_device_props p;
    QILIN_ASSERT_OK(qilin_device_get_props(0, &p));
    EXPECT_EQ(total_bytes, p.total_mem_bytes);
    EXPECT_EQ(free_bytes, total_bytes - Allocated(0));
    DeviceBuffer b;
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 1 << 20, "memory info probe"));
    size_t free_after = 0;
    QILIN_ASSERT_OK(qilin_memory_info(0, &free_after, &total_bytes));
    EXPECT_EQ(free_after, free_bytes - (1 << 20));
#endif
}

TEST(Device, OutOfMemoryNamesTheBuffer) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    size_t free_bytes = 0, total_bytes = 0;
    QILIN_ASSERT_OK(qilin_memory_info(0, &free_bytes, &total_bytes));
    const size_t base = Allocated(0);
    const size_t request = total_bytes + 1;
    void *p = &free_bytes; /* must come back NULL */
    EXPECT_FAILS(qilin_malloc(&p, request, "kv cache (oom test)"), QILIN_ERR_OUT_OF_MEMORY, "qilin_malloc",
                 "kv cache (oom test)", std::to_string(request), "device 0", std::to_string(total_bytes));
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(Allocated(0), base);
    /* A failed allocation is not a failed kernel launch, and the device still works. */
    QILIN_ASSERT_OK(qilin_check_launch("no_kernel_after_oom", __FILE__, __LINE__));
    DeviceBuffer b;
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 256, "after oom"));
}

TEST(Device, ConcurrentAllocationsKeepExactAccounting) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t base = Allocated(0);
    constexpr int kThreads = 4, kIters = 100;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([t, &failures] {
            std::mt19937 rng(1234 + t);
            std::uniform_int_distribution<size_t> size(1, 1 << 16);
            std::vector<void *> live;
            for (int i = 0; i < kIters; i++) {
                void *p = nullptr;
                if (qilin_malloc(&p, size(rng), "concurrent") != QILIN_OK) failures++;
                live.push_back(p);
                if (live.size() > 4) { /* keep a few alive so frees interleave */
                    if (qilin_free(live.front()) != QILIN_OK) failures++;
                    live.erase(live.begin());
                }
            }
            for (void *p : live)
                if (qilin_free(p) != QILIN_OK) failures++;
        });
    }
    for (auto &t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(Allocated(0), base);
    EXPECT_GE(Peak(0), base);
}

#ifdef QILIN_SIM
TEST(DeviceSim, FreshAllocationsArePoisoned) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    DeviceBuffer b;
    const size_t bytes = 989;
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, bytes, "poison probe"));
    std::vector<uint8_t> host(bytes, 0);
    QILIN_ASSERT_OK(qilin_memcpy_d2h(host.data(), b.ptr, bytes, nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    EXPECT_EQ(FirstNotEqual(host.data(), 0xFF, bytes), bytes);
    float f;
    std::memcpy(&f, host.data(), sizeof f);
    EXPECT_TRUE(f != f) << "poisoned floats read as NaN";
}
#endif

/* ---- copies and memset --------------------------------------------------- */

class DeviceCopy : public ::testing::TestWithParam<size_t> {};

/* H2D into a device buffer at an odd offset (NULL stream), D2D to a second
 * buffer and D2H into a guarded host buffer (a created stream), all into
 * poisoned destinations. */
TEST_P(DeviceCopy, RoundTripPreservesEveryByte) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t bytes = GetParam(), offset = 3, guard = 64;
    const std::vector<uint8_t> src = RandomBytes(bytes, uint32_t(bytes));
    DeviceBuffer a, b;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, bytes + offset, "copy source"));
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, bytes, "copy destination"));
    QILIN_ASSERT_OK(qilin_memset(a.ptr, 0xAB, bytes + offset, nullptr));
    QILIN_ASSERT_OK(qilin_memset(b.ptr, 0xCD, bytes, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(a.bytes() + offset, src.data(), bytes, nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));

    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    std::vector<uint8_t> back(bytes + guard, 0xEE);
    uint8_t prefix[offset] = {0, 0, 0};
    QILIN_ASSERT_OK(qilin_memcpy_d2d(b.ptr, a.bytes() + offset, bytes, s));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(back.data(), b.ptr, bytes, s));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(prefix, a.ptr, offset, s));
    QILIN_ASSERT_OK(qilin_stream_synchronize(s));
    QILIN_ASSERT_OK(qilin_stream_destroy(s));

    size_t bad = FirstMismatch(back.data(), src.data(), bytes);
    EXPECT_EQ(bad, bytes) << "first wrong byte at " << bad << " of " << bytes;
    EXPECT_EQ(FirstNotEqual(back.data() + bytes, 0xEE, guard), guard) << "D2H wrote past the end";
    EXPECT_EQ(FirstNotEqual(prefix, 0xAB, offset), offset) << "H2D wrote before its start";
}

INSTANTIATE_TEST_SUITE_P(OddSizes, DeviceCopy,
                         ::testing::Values(size_t(1), size_t(19), size_t(111), size_t(989),
                                           (size_t(1) << 20) + 3),
                         [](const ::testing::TestParamInfo<size_t> &info) {
                             return "bytes" + std::to_string(info.param);
                         });

TEST(Device, MemsetSetsExactlyItsRange) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t bytes = 989, start = 100, len = 19;
    DeviceBuffer b;
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, bytes, "memset target"));
    QILIN_ASSERT_OK(qilin_memset(b.ptr, 0x5A, bytes, nullptr));
    QILIN_ASSERT_OK(qilin_memset(b.bytes() + start, 0x00, len, nullptr));
    QILIN_ASSERT_OK(qilin_memset(b.ptr, 0x11, 0, nullptr)); /* zero bytes: nothing */
    std::vector<uint8_t> host(bytes, 0xEE);
    QILIN_ASSERT_OK(qilin_memcpy_d2h(host.data(), b.ptr, bytes, nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    for (size_t i = 0; i < bytes; i++) {
        uint8_t want = (i >= start && i < start + len) ? 0x00 : 0x5A;
        ASSERT_EQ(host[i], want) << "byte " << i;
    }
}

TEST(Device, CopyArgumentErrorsNameTheOperation) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    DeviceBuffer b;
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 64, "argument checks"));
    uint8_t host[64] = {0};
    EXPECT_FAILS(qilin_memcpy_h2d(b.ptr, nullptr, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_memcpy_h2d", "src");
    EXPECT_FAILS(qilin_memcpy_d2h(nullptr, b.ptr, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_memcpy_d2h", "dst");
    EXPECT_FAILS(qilin_memcpy_d2d(nullptr, b.ptr, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_memcpy_d2d", "dst");
    EXPECT_FAILS(qilin_memset(nullptr, 0, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_memset");
    /* Zero bytes is a no-op whatever the pointers. */
    QILIN_ASSERT_OK(qilin_memcpy_h2d(nullptr, nullptr, 0, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(host, b.ptr, 0, nullptr));
}

#ifdef QILIN_SIM
/* Host memory would forgive these; the sim refuses them as a GPU would. */
TEST(DeviceSim, CopiesAreBoundsChecked) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    DeviceBuffer b;
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 100, "small buffer"));
    uint8_t host[256] = {0};
    EXPECT_FAILS(qilin_memcpy_h2d(b.ptr, host, 101, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_memcpy_h2d",
                 "overruns");
    EXPECT_FAILS(qilin_memcpy_d2h(host, b.bytes() + 50, 51, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_memcpy_d2h", "overruns");
    EXPECT_FAILS(qilin_memcpy_d2d(b.ptr, host, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_memcpy_d2d",
                 "not device memory");
    EXPECT_FAILS(qilin_memcpy_h2d(host, b.ptr, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_memcpy_h2d",
                 "not device memory");
    EXPECT_FAILS(qilin_memcpy_d2h(b.ptr, b.bytes() + 50, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_memcpy_d2h", "swapped");
    EXPECT_FAILS(qilin_memset(host, 0, 16, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_memset",
                 "not device memory");
    EXPECT_FAILS(qilin_free(b.bytes() + 8), QILIN_ERR_INVALID_ARGUMENT, "qilin_free", "inside");
    QILIN_ASSERT_OK(qilin_memcpy_d2d(b.bytes() + 50, b.ptr, 50, nullptr)); /* exactly fits */
}

TEST(DeviceSim, DestroyedHandlesAreRejected) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    QILIN_ASSERT_OK(qilin_stream_destroy(s));
    EXPECT_FAILS(qilin_stream_synchronize(s), QILIN_ERR_INVALID_ARGUMENT, "qilin_stream_synchronize");
    EXPECT_FAILS(qilin_stream_destroy(s), QILIN_ERR_INVALID_ARGUMENT, "qilin_stream_destroy");
    qilin_event *e = nullptr;
    QILIN_ASSERT_OK(qilin_event_create(&e));
    QILIN_ASSERT_OK(qilin_event_destroy(e));
    EXPECT_FAILS(qilin_event_record(e, nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_event_record");
    void *d = nullptr;
    QILIN_ASSERT_OK(qilin_malloc(&d, 64, "not pinned"));
    EXPECT_FAILS(qilin_host_free_pinned(d), QILIN_ERR_INVALID_ARGUMENT, "qilin_host_free_pinned");
    QILIN_ASSERT_OK(qilin_free(d));
}
#endif

/* ---- streams and events -------------------------------------------------- */

TEST(Device, StreamsCreateSynchronizeDestroy) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(qilin_stream_device(s), 0);
    EXPECT_EQ(qilin_stream_device(nullptr), 0);
    EXPECT_NE(qilin_stream_native(s), nullptr);
    EXPECT_NE(qilin_stream_native(nullptr), nullptr);
    EXPECT_NE(qilin_stream_native(s), qilin_stream_native(nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(s));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    QILIN_ASSERT_OK(qilin_stream_destroy(s));
    QILIN_ASSERT_OK(qilin_stream_destroy(nullptr));
    EXPECT_FAILS(qilin_stream_create(nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_stream_create");
}

TEST(Device, StreamsBelongToTheirCreationDevice) {
    QILIN_REQUIRE_DEVICES(2);
    QILIN_ASSERT_OK(qilin_device_set(1));
    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    EXPECT_EQ(qilin_stream_device(nullptr), 1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    EXPECT_EQ(qilin_stream_device(s), 1);
    EXPECT_EQ(qilin_stream_device(nullptr), 0);
    QILIN_ASSERT_OK(qilin_stream_synchronize(s));
    QILIN_ASSERT_OK(qilin_stream_destroy(s));
}

TEST(Device, EventsTimeWorkOnAStream) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t bytes = size_t(1) << 20;
    DeviceBuffer a, b;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, bytes, "event src"));
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, bytes, "event dst"));
    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    for (qilin_stream *stream : {static_cast<qilin_stream *>(nullptr), s}) {
        qilin_event *start = nullptr, *stop = nullptr;
        QILIN_ASSERT_OK(qilin_event_create(&start));
        QILIN_ASSERT_OK(qilin_event_create(&stop));
        QILIN_ASSERT_OK(qilin_event_record(start, stream));
        QILIN_ASSERT_OK(qilin_memset(a.ptr, 1, bytes, stream));
        QILIN_ASSERT_OK(qilin_memcpy_d2d(b.ptr, a.ptr, bytes, stream));
        QILIN_ASSERT_OK(qilin_event_record(stop, stream));
        QILIN_ASSERT_OK(qilin_event_synchronize(stop));
        float ms = -1.0f;
        QILIN_ASSERT_OK(qilin_event_elapsed_ms(start, stop, &ms));
        std::printf("  memset + copy of %zu bytes on %s stream: %.3f ms\n", bytes,
                    stream ? "a created" : "the default", ms);
        EXPECT_GE(ms, 0.0f);
        QILIN_ASSERT_OK(qilin_event_destroy(start));
        QILIN_ASSERT_OK(qilin_event_destroy(stop));
    }
    QILIN_ASSERT_OK(qilin_stream_destroy(s));
}

TEST(Device, EventErrors) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    qilin_event *start = nullptr, *stop = nullptr;
    QILIN_ASSERT_OK(qilin_event_create(&start));
    QILIN_ASSERT_OK(qilin_event_create(&stop));
    float ms = 0.0f;
    EXPECT_FAILS(qilin_event_elapsed_ms(start, stop, &ms), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_event_elapsed_ms", "start", "never recorded");
    QILIN_ASSERT_OK(qilin_event_record(start, nullptr));
    EXPECT_FAILS(qilin_event_elapsed_ms(start, stop, &ms), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_event_elapsed_ms", "stop", "never recorded");
    QILIN_ASSERT_OK(qilin_event_record(stop, nullptr));
    EXPECT_FAILS(qilin_event_elapsed_ms(start, stop, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_event_elapsed_ms");
    EXPECT_FAILS(qilin_event_create(nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_event_create");
    QILIN_ASSERT_OK(qilin_event_destroy(start));
    QILIN_ASSERT_OK(qilin_event_destroy(stop));
    QILIN_ASSERT_OK(qilin_event_destroy(nullptr));
}

/* An untimed event orders and is waited on like any other, but has no
 * timestamps: elapsed time with it is refused, naming it (as CUDA refuses). */
TEST(Device, UntimedEventOrdersButIsNotTimed) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    qilin_event *timed = nullptr, *untimed = nullptr;
    QILIN_ASSERT_OK(qilin_event_create(&timed));
    QILIN_ASSERT_OK(qilin_event_create_untimed(&untimed));
    QILIN_ASSERT_OK(qilin_event_record(timed, nullptr));
    QILIN_ASSERT_OK(qilin_event_record(untimed, nullptr));
    QILIN_ASSERT_OK(qilin_event_synchronize(untimed));
    float ms = 0.0f;
    EXPECT_FAILS(qilin_event_elapsed_ms(timed, untimed, &ms), QILIN_ERR_INVALID_ARGUMENT, "stop",
                 "qilin_event_create_untimed");
    EXPECT_FAILS(qilin_event_elapsed_ms(untimed, timed, &ms), QILIN_ERR_INVALID_ARGUMENT, "start",
                 "qilin_event_create_untimed");
    EXPECT_FAILS(qilin_event_create_untimed(nullptr), QILIN_ERR_INVALID_ARGUMENT, "qilin_event_create_untimed");
    QILIN_ASSERT_OK(qilin_event_destroy(timed));
    QILIN_ASSERT_OK(qilin_event_destroy(untimed));
}

/* ---- pinned memory, bandwidth, launches ---------------------------------- */

TEST(Device, PinnedMemoryRoundTrip) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const size_t bytes = (size_t(1) << 20) + 3;
    void *up = nullptr, *down = nullptr;
    QILIN_ASSERT_OK(qilin_host_alloc_pinned(&up, bytes));
    QILIN_ASSERT_OK(qilin_host_alloc_pinned(&down, bytes));
    ASSERT_NE(up, nullptr);
    ASSERT_NE(down, nullptr);
    const std::vector<uint8_t> data = RandomBytes(bytes, 7);
    std::memcpy(up, data.data(), bytes);
    std::memset(down, 0xEE, bytes);
    DeviceBuffer d;
    QILIN_ASSERT_OK(qilin_malloc(&d.ptr, bytes, "pinned round trip"));
    qilin_stream *s = nullptr;
    QILIN_ASSERT_OK(qilin_stream_create(&s));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(d.ptr, up, bytes, s));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(down, d.ptr, bytes, s));
    QILIN_ASSERT_OK(qilin_stream_synchronize(s));
    QILIN_ASSERT_OK(qilin_stream_destroy(s));
    size_t bad = FirstMismatch(static_cast<uint8_t *>(down), data.data(), bytes);
    EXPECT_EQ(bad, bytes) << "first wrong byte at " << bad;
    QILIN_ASSERT_OK(qilin_host_free_pinned(up));
    QILIN_ASSERT_OK(qilin_host_free_pinned(down));
    QILIN_ASSERT_OK(qilin_host_free_pinned(nullptr));
    void *empty = &up;
    QILIN_ASSERT_OK(qilin_host_alloc_pinned(&empty, 0));
    EXPECT_EQ(empty, nullptr);
    EXPECT_FAILS(qilin_host_alloc_pinned(nullptr, 8), QILIN_ERR_INVALID_ARGUMENT, "qilin_host_alloc_pinned");
}

TEST(Device, MeasuredBandwidthIsReportedByProps) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_device_set(0));
    const int n = DeviceCount();
    const int device = n - 1; /* also checks the current device is restored */
    double gbs = 0.0;
    QILIN_ASSERT_OK(qilin_device_measure_bandwidth(device, &gbs));
    std::printf("  device %d: measured %.1f GB/s\n", device, gbs);
    EXPECT_GT(gbs, 0.0);
    qilin_device_props p;
    QILIN_ASSERT_OK(qilin_device_get_props(device, &p));
    EXPECT_EQ(p.peak_bandwidth_measured, 1);
    EXPECT_DOUBLE_EQ(p.peak_bandwidth_gbs, gbs);
    int current = -1;
    QILIN_ASSERT_OK(qilin_device_get(&current));
    EXPECT_EQ(current, 0);
    EXPECT_FAILS(qilin_device_measure_bandwidth(n, &gbs), QILIN_ERR_NO_DEVICE,
                 "qilin_device_measure_bandwidth", std::to_string(n));
    EXPECT_FAILS(qilin_device_measure_bandwidth(0, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 "qilin_device_measure_bandwidth");
}

TEST(Device, CheckLaunchWithoutALaunchIsOk) {
    QILIN_REQUIRE_DEVICES(1);
    QILIN_ASSERT_OK(qilin_check_launch("no_kernel", __FILE__, __LINE__));
    QILIN_ASSERT_OK(qilin_check_launch(nullptr, nullptr, 0));
}

/* ---- the sim's environment (child processes) ----------------------------- */

#ifdef QILIN_SIM
namespace {

struct SimEnvCase {
    const char *name; /* test name suffix */
    const char *var;  /* QILIN_SIM_DEVICES or QILIN_SIM_DEVICE_MEMORY */
    const char *value;
    long long expect; /* device count or memory bytes; -1: rejected */
};

/* Runs in the death-test child: sets the variable before the device layer
 * first reads it, checks the outcome, prints the message and exits 0 when
 * everything matched. */
[[noreturn]] void RunSimEnvCase(const SimEnvCase &c) {
    setenv(c.var, c.value, 1);
    bool ok = false;
    if (c.expect < 0) {
        int n = 0;
        void *p = nullptr;
        bool count_fails = qilin_device_count(&n) == QILIN_ERR_INVALID_ARGUMENT;
        std::fprintf(stderr, "%s\n", qilin_last_error());
        bool malloc_fails = qilin_malloc(&p, 16, "env probe") == QILIN_ERR_INVALID_ARGUMENT;
        std::fprintf(stderr, "%s\n", qilin_last_error());
        ok = count_fails && malloc_fails && n == 0 && p == nullptr;
    } else if (std::strcmp(c.var, "QILIN_SIM_DEVICES") == 0) {
        int n = 0;
        ok = qilin_device_count(&n) == QILIN_OK && n == c.expect && qilin_device_set(n - 1) == QILIN_OK &&
             qilin_device_set(n) == QILIN_ERR_NO_DEVICE;
        std::fprintf(stderr, "devices=%d (%s)\n", n, qilin_last_error());
    } else {
        size_t free_bytes = 0, total = 0;
        void *p = nullptr, *q = nullptr;
        ok = qilin_memory_info(0, &free_bytes, &total) == QILIN_OK && total == size_t(c.expect);
        /* Fill small budgets completely; for large ones just overshoot. */
        if (ok && total <= (size_t(16) << 20)) ok = qilin_malloc(&p, total, "whole budget") == QILIN_OK;
        ok = ok && qilin_malloc(&q, (p ? 0 : total) + 1, "one byte too many") == QILIN_ERR_OUT_OF_MEMORY;
        std::fprintf(stderr, "total=%zu (%s)\n", total, qilin_last_error());
        qilin_free(p);
    }
    if (ok) std::fprintf(stderr, "outcome as expected\n");
    std::fflush(stderr);
    std::_Exit(ok ? 0 : 1);
}

/* Names the case in test output (and ctest's names) instead of raw bytes. */
void PrintTo(const SimEnvCase &c, std::ostream *os) { *os << c.var << "=" << c.value; }

class DeviceSimEnv : public ::testing::TestWithParam<SimEnvCase> {};

} // namespace

TEST_P(DeviceSimEnv, IsParsedOrRejectedByName) {
    /* "threadsafe" re-executes the test binary, so the child has not read the
     * environment yet; the default "fast" style would fork a process that has. */
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const SimEnvCase &c = GetParam();
    /* A rejected value must be named by its variable in the message. */
    const std::string pattern = c.expect < 0 ? c.var : "outcome as expected";
    EXPECT_EXIT(RunSimEnvCase(c), ::testing::ExitedWithCode(0), pattern);
}

namespace {

/* QILIN_SIM_PROFILE: each GPU model's figures through device.h, its shared
 * memory limit at launch, and an unknown model refused by name. */
__global__ void smem_probe_kernel(int) {}

qilin_status launch_with_smem(size_t bytes) {
    return QILIN_LAUNCH(smem_probe_kernel, dim3(1), dim3(32), bytes, nullptr, 0);
}

struct SimProfileCase {
    const char *value;
    const char *name; /* expected props.name; nullptr: rejected */
    int cc_major, sm_count;
    size_t smem_optin, smem_per_sm, l2_bytes, memory_bytes;
    double gbs;
};

void PrintTo(const SimProfileCase &c, std::ostream *os) { *os << "QILIN_SIM_PROFILE=" << c.value; }

[[noreturn]] void RunSimProfileCase(const SimProfileCase &c) {
    setenv("QILIN_SIM_PROFILE", c.value, 1);
    bool ok;
    qilin_device_props p;
    if (!c.name) {
        int n = 0;
        ok = qilin_device_count(&n) == QILIN_ERR_INVALID_ARGUMENT && n == 0;
        std::fprintf(stderr, "%s\n", qilin_last_error());
    } else {
        ok = qilin_device_get_props(0, &p) == QILIN_OK && std::strcmp(p.name, c.name) == 0 &&
             p.cc_major == c.cc_major && p.sm_count == c.sm_count && p.shared_mem_per_block_optin == c.smem_optin &&
             p.shared_mem_per_sm == c.smem_per_sm && p.l2_bytes == c.l2_bytes &&
             p.total_mem_bytes == c.memory_bytes && p.peak_bandwidth_gbs == c.gbs && !p.peak_bandwidth_measured;
        std::fprintf(stderr, "%s: cc %d, %d SMs, smem %zu/%zu, L2 %zu, %zu bytes, %.0f GB/s\n", p.name, p.cc_major,
                     p.sm_count, p.shared_mem_per_block_optin, p.shared_mem_per_sm, p.l2_bytes, p.total_mem_bytes,
                     p.peak_bandwidth_gbs);
        /* The launch limit is the profile's: its opt-in bytes launch, one more does not. */
        ok = ok && launch_with_smem(c.smem_optin) == QILIN_OK &&
             launch_with_smem(c.smem_optin + 1) == QILIN_ERR_KERNEL;
        std::fprintf(stderr, "%s\n", qilin_last_error());
    }
    if (ok) std::fprintf(stderr, "outcome as expected\n");
    std::fflush(stderr);
    std::_Exit(ok ? 0 : 1);
}

class DeviceSimProfile : public ::testing::TestWithParam<SimProfileCase> {};

} // namespace

TEST_P(DeviceSimProfile, ReportsItsFigures) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const SimProfileCase &c = GetParam();
    EXPECT_EXIT(RunSimProfileCase(c), ::testing::ExitedWithCode(0),
                c.name ? "outcome as expected" : "QILIN_SIM_PROFILE='tpu' is not a GPU model");
}

INSTANTIATE_TEST_SUITE_P(
    Values, DeviceSimProfile,
    ::testing::Values(
        SimProfileCase{"h100", "qilin-sim (emulated H100)", 9, 132, 227 << 10, 228 << 10, 50 << 20, size_t(80) << 30, 3350.0},
        SimProfileCase{"h200", "qilin-sim (emulated H200)", 9, 132, 227 << 10, 228 << 10, 50 << 20, size_t(141e9), 4800.0},
        SimProfileCase{"a100", "qilin-sim (emulated A100)", 8, 108, 163 << 10, 164 << 10, 40 << 20, size_t(80) << 30, 2039.0},
        SimProfileCase{"tpu", nullptr, 0, 0, 0, 0, 0, 0, 0.0}),
    [](const ::testing::TestParamInfo<SimProfileCase> &info) { return std::string(info.param.value); });

INSTANTIATE_TEST_SUITE_P(
    Values, DeviceSimEnv,
    ::testing::Values(SimEnvCase{"devices_3", "QILIN_SIM_DEVICES", "3", 3},
                      SimEnvCase{"devices_word", "QILIN_SIM_DEVICES", "abc", -1},
                      SimEnvCase{"devices_0", "QILIN_SIM_DEVICES", "0", -1},
                      SimEnvCase{"devices_65", "QILIN_SIM_DEVICES", "65", -1},
                      SimEnvCase{"devices_trailing", "QILIN_SIM_DEVICES", "4x", -1},
                      SimEnvCase{"memory_bytes", "QILIN_SIM_DEVICE_MEMORY", "4096", 4096},
                      SimEnvCase{"memory_k", "QILIN_SIM_DEVICE_MEMORY", "3k", 3 << 10},
                      SimEnvCase{"memory_mib", "QILIN_SIM_DEVICE_MEMORY", "1MiB", 1 << 20},
                      SimEnvCase{"memory_g", "QILIN_SIM_DEVICE_MEMORY", "1G", 1ll << 30},
                      SimEnvCase{"memory_suffix", "QILIN_SIM_DEVICE_MEMORY", "12X", -1},
                      SimEnvCase{"memory_zero", "QILIN_SIM_DEVICE_MEMORY", "0", -1},
                      SimEnvCase{"memory_negative", "QILIN_SIM_DEVICE_MEMORY", "-5M", -1}),
    [](const ::testing::TestParamInfo<SimEnvCase> &info) { return std::string(info.param.name); });
#endif
