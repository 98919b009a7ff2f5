// test_upload.cpp — the weight upload engine (host/upload.h): random bytes in
// a temporary file, mapped read-only, copied to two devices as whole ranges,
// row-parallel (2-D) slices with packed and pitched destinations, through
// staging buffers smaller than the jobs; device contents compared byte-exact.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "host/upload.h"
#include "test_util.h"

namespace {

// A temporary file of `n` seeded random bytes, mapped read-only.
struct MappedFile {
    std::string path;
    int fd = -1;
    const uint8_t *data = nullptr;
    size_t size = 0;

    explicit MappedFile(size_t n, uint32_t seed) {
        char tmpl[] = "/tmp/qilin_upload_XXXXXX";
        fd = mkstemp(tmpl);
        EXPECT_GE(fd, 0);
        path = tmpl;
        std::vector<uint8_t> bytes(n);
        std::mt19937 rng(seed);
        for (auto &b : bytes) b = (uint8_t)rng();
        EXPECT_EQ(write(fd, bytes.data(), n), (ssize_t)n);
        void *p = mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
        EXPECT_NE(p, MAP_FAILED);
        data = (const uint8_t *)p;
        size = n;
    }
    ~MappedFile() {
        if (data) munmap((void *)data, size);
        if (fd >= 0) close(fd);
        unlink(path.c_str());
    }
};

struct DeviceBuffer {
    void *ptr = nullptr;
    int device;
    size_t bytes;
    DeviceBuffer(int dev, size_t n) : device(dev), bytes(n) {
        EXPECT_EQ(qilin_device_set(dev), QILIN_OK);
        EXPECT_EQ(qilin_malloc(&ptr, n, "upload test"), QILIN_OK) << qilin_last_error();
        EXPECT_EQ(qilin_memset(ptr, 0xAB, n, nullptr), QILIN_OK);
        EXPECT_EQ(qilin_device_synchronize(), QILIN_OK);
    }
    ~DeviceBuffer() { qilin_free(ptr); }
    std::vector<uint8_t> read() const {
        std::vector<uint8_t> out(bytes);
        EXPECT_EQ(qilin_device_set(device), QILIN_OK);
        EXPECT_EQ(qilin_memcpy_d2h(out.data(), ptr, bytes, nullptr), QILIN_OK) << qilin_last_error();
        EXPECT_EQ(qilin_device_synchronize(), QILIN_OK);
        return out;
    }
};

qilin_upload_job job1d(const MappedFile &f, size_t off, size_t n, void *dst, int dev, const char *what) {
    qilin_upload_job j{};
    j.src = f.data, j.src_size = f.size, j.src_offset = off, j.dst = dst, j.device = dev, j.width = n;
    j.what = what;
    return j;
}

qilin_upload_job job2d(const MappedFile &f, size_t off, size_t rows, size_t width, size_t src_pitch,
                       void *dst, size_t dst_pitch, int dev, const char *what) {
    qilin_upload_job j = job1d(f, off, width, dst, dev, what);
    j.rows = rows, j.src_pitch = src_pitch, j.dst_pitch = dst_pitch;
    return j;
}

qilin_upload_options small_staging(size_t bytes, int buffers) {
    qilin_upload_options o;
    qilin_upload_options_default(&o);
    o.staging_bytes = bytes;
    o.staging_buffers = buffers;
    o.progress = 0;
    return o;
}

struct ProgressLog {
    int calls = 0;
    uint64_t last_done = 0, total = 0;
    static void cb(void *user, const qilin_upload_progress *p) {
        auto *l = (ProgressLog *)user;
        l->calls++;
        EXPECT_GE(p->done, l->last_done);
        l->last_done = p->done;
        l->total = p->total;
    }
};

} // namespace

TEST(Upload, SlicesToTwoDevicesByteExact) {
    QILIN_REQUIRE_DEVICES(2);
    MappedFile f((1 << 20) + 12345, 42);
    // A [rows, cols] matrix of 1-byte elements at offset 777: rows 211, cols 3001.
    const size_t base = 777, rows = 211, cols = 3001, c0 = 1500, cw = 1001;
    DeviceBuffer whole(0, 300000), col(1, rows * cw), pitched(1, rows * 1024), head(0, 5000), sixteen(1, 16);
    std::vector<qilin_upload_job> jobs = {
        job1d(f, 100, whole.bytes, whole.ptr, 0, "whole"),
        // row-parallel slice (columns [c0, c0 + cw)), packed on the device
        job2d(f, base + c0, rows, cw, cols, col.ptr, cw, 1, "column slice"),
        job1d(f, 0, 0, nullptr, 0, "empty"), // zero-size: skipped
        job2d(f, base, 0, 16, cols, sixteen.ptr, 16, 1, "rows 0 is 1-D"),
        // pitched destination: 1000 of every 1024 bytes
        job2d(f, base, rows, 1000, cols, pitched.ptr, 1024, 1, "pitched"),
        job1d(f, f.size - head.bytes, head.bytes, head.ptr, 0, "tail of the file"),
    };

    qilin_upload_options o = small_staging(4096 + 13, 2); // smaller than every large job
    ProgressLog log;
    o.on_progress = ProgressLog::cb;
    o.user = &log;
    qilin_upload_stats st;
    QILIN_ASSERT_OK(qilin_upload(jobs.data(), jobs.size(), &o, &st));

    uint64_t expect = whole.bytes + rows * cw + rows * 1000 + head.bytes + 16;
    EXPECT_EQ(st.bytes, expect);
    EXPECT_EQ(st.devices, 2);
    EXPECT_GT(st.copies, expect / (4096 + 13));
    EXPECT_EQ(log.last_done, expect);
    EXPECT_EQ(log.total, expect);
    EXPECT_GE(log.calls, 1);
    std::printf("%llu bytes in %llu copies, %.3f s (%.2f GB/s), read %.3f s, waited %.3f s\n",
                (unsigned long long)st.bytes, (unsigned long long)st.copies, st.seconds, st.gbps,
                st.read_seconds, st.wait_seconds);

    EXPECT_EQ(whole.read(), std::vector<uint8_t>(f.data + 100, f.data + 100 + whole.bytes));
    EXPECT_EQ(head.read(), std::vector<uint8_t>(f.data + f.size - head.bytes, f.data + f.size));
    EXPECT_EQ(sixteen.read(), std::vector<uint8_t>(f.data + base, f.data + base + 16));
    std::vector<uint8_t> c = col.read(), p = pitched.read();
    size_t bad_col = 0, bad_pitch = 0, bad_gap = 0;
    for (size_t r = 0; r < rows; r++) {
        for (size_t k = 0; k < cw; k++) bad_col += c[r * cw + k] != f.data[base + r * cols + c0 + k];
        for (size_t k = 0; k < 1024; k++) {
            if (k < 1000)
                bad_pitch += p[r * 1024 + k] != f.data[base + r * cols + k];
            else
                bad_gap += p[r * 1024 + k] != 0xAB; // the gaps are not written
        }
    }
    EXPECT_EQ(bad_col, 0u);
    EXPECT_EQ(bad_pitch, 0u);
    EXPECT_EQ(bad_gap, 0u);
}

TEST(Upload, ManySmallJobsShareBuffersAndEngineIsReusable) {
    QILIN_REQUIRE_DEVICES(2);
    MappedFile f(200000, 7);
    DeviceBuffer d0(0, 100000), d1(1, 100000);
    std::vector<qilin_upload_job> jobs;
    // 1000 jobs of 1..199 bytes, alternating devices, in file order.
    size_t off = 0, o0 = 0, o1 = 0;
    std::mt19937 rng(3);
    for (int i = 0; i < 1000 && off < 190000; i++) {
        size_t n = 1 + rng() % 199;
        int dev = i % 2;
        size_t &dpos = dev ? o1 : o0;
        jobs.push_back(job1d(f, off, n, (uint8_t *)(dev ? d1.ptr : d0.ptr) + dpos, dev, "small"));
        dpos += n;
        off += n;
    }
    qilin_upload_options o = small_staging(1 << 16, 3);
    qilin_upload_engine *e = nullptr;
    QILIN_ASSERT_OK(qilin_upload_engine_create(&o, &e));
    for (int run = 0; run < 2; run++) {
        qilin_upload_stats st;
        QILIN_ASSERT_OK(qilin_upload_run(e, jobs.data(), jobs.size(), &st));
        EXPECT_EQ(st.bytes, off);
    }
    qilin_upload_engine_destroy(e);
    std::vector<uint8_t> a = d0.read(), b = d1.read();
    size_t i0 = 0, i1 = 0, bad = 0;
    for (const auto &j : jobs) {
        const uint8_t *want = f.data + j.src_offset;
        const uint8_t *got = j.device ? &b[i1] : &a[i0];
        bad += std::memcmp(want, got, j.width) != 0;
        (j.device ? i1 : i0) += j.width;
    }
    EXPECT_EQ(bad, 0u);
}

TEST(Upload, RejectsJobsBeforeCopyingAnything) {
    QILIN_REQUIRE_DEVICES(1);
    MappedFile f(10000, 1);
    DeviceBuffer d(0, 8192);
    qilin_upload_options o = small_staging(1024, 2);
    std::vector<qilin_upload_job> jobs = {job1d(f, 0, 100, d.ptr, 0, "fine"),
                                          job1d(f, 9000, 1001, (uint8_t *)d.ptr + 100, 0, "layer 3 wq")};
    EXPECT_EQ(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    std::string err = qilin_last_error();
    std::printf("%s\n", err.c_str());
    EXPECT_NE(err.find("layer 3 wq"), std::string::npos) << err;
    EXPECT_NE(err.find("overruns its source"), std::string::npos) << err;
    EXPECT_EQ(d.read()[0], 0xAB) << "nothing may be copied when a job is bad";

    // 2-D: the last row overruns ((rows-1)·pitch + width > size).
    jobs = {job2d(f, 0, 10, 100, 1111, d.ptr, 100, 0, "2-D overrun")};
    EXPECT_EQ(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    jobs = {job2d(f, 0, 10, 100, 50, d.ptr, 100, 0, "pitch < width")};
    EXPECT_EQ(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    jobs = {job1d(f, 0, 100, d.ptr, 9999, "no such device")};
    EXPECT_EQ(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_ERR_NO_DEVICE);
    jobs = {job1d(f, 0, 100, nullptr, 0, "null dst")};
    EXPECT_EQ(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    o.staging_buffers = 1;
    jobs = {job1d(f, 0, 100, d.ptr, 0, "fine")};
    EXPECT_EQ(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    // Nothing to do is fine.
    o.staging_buffers = 2;
    qilin_upload_stats st;
    QILIN_ASSERT_OK(qilin_upload(nullptr, 0, &o, &st));
    EXPECT_EQ(st.bytes, 0u);
}

TEST(Upload, DeviceOverrunIsReportedWithTheJob) {
    // The device layer checks the destination (the sim checks every copy against its allocation).
    QILIN_REQUIRE_DEVICES(1);
    qilin_device_props props;
    QILIN_ASSERT_OK(qilin_device_get_props(0, &props));
    if (!props.is_sim) GTEST_SKIP() << "only the sim checks device-side bounds";
    MappedFile f(10000, 2);
    DeviceBuffer d(0, 1000);
    qilin_upload_options o = small_staging(512, 2);
    std::vector<qilin_upload_job> jobs = {job1d(f, 0, 2000, d.ptr, 0, "too big for its buffer")};
    EXPECT_NE(qilin_upload(jobs.data(), jobs.size(), &o, nullptr), QILIN_OK);
    std::string err = qilin_last_error();
    std::printf("%s\n", err.c_str());
    EXPECT_NE(err.find("too big for its buffer"), std::string::npos) << err;
}

TEST(Upload, ProgressBarWhenAsked) {
    // progress = 1 draws the bar on stderr even when it is not a terminal.
    QILIN_REQUIRE_DEVICES(1);
    MappedFile f(1 << 20, 5);
    DeviceBuffer d(0, f.size);
    qilin_upload_options o = small_staging(1 << 16, 2);
    o.progress = 1;
    std::vector<qilin_upload_job> jobs = {job1d(f, 0, f.size, d.ptr, 0, "bar")};
    testing::internal::CaptureStderr();
    qilin_status st = qilin_upload(jobs.data(), jobs.size(), &o, nullptr);
    std::string bar = testing::internal::GetCapturedStderr();
    QILIN_ASSERT_OK(st);
    std::printf("%s", bar.c_str());
    EXPECT_NE(bar.find("1.05 / 1.05 MB"), std::string::npos) << bar;
    EXPECT_EQ(d.read(), std::vector<uint8_t>(f.data, f.data + f.size));
}
