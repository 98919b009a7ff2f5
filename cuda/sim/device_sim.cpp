/* device_sim.cpp — the device layer (device.h) for the CPU emulator.
 *
 * Emulated devices look like the GPU model QILIN_SIM_PROFILE names: h100
 * (default: cc 9.0, 132 SMs, 227 KiB opt-in shared memory, 50 MiB L2, 80 GiB,
 * 3350 GB/s), h200 or a100 (kProfiles below); device_get_props reports the
 * profile's figures, and the scheduler refuses launches beyond its shared
 * memory, so split and tile decisions can be tested for each. Their count comes
 * from QILIN_SIM_DEVICES (default 8, 1..64) and each one's memory budget from
 * QILIN_SIM_DEVICE_MEMORY (bytes, with an optional K/M/G/T or KiB/MiB/GiB/TiB
 * suffix, binary multiples; default: the profile's memory); all are read
 * once, on first use.
 *
 * Device memory is 256-byte aligned host memory, accounted against the
 * device's budget (so an over-budget plan fails here as it would on a GPU) and
 * filled with 0xFF on allocation, so a float read before it was written is a
 * NaN. Copies check that their device side lies inside one live allocation and
 * their host side outside all of them, which catches overruns and swapped
 * directions that host memory would otherwise forgive.
 *
 * Work on a stream — kernels, copies, memsets — runs later, in stream order,
 * on the device's worker thread (streams.h; QILIN_SIM_DEFERRED=0 runs it when
 * it is issued). Arguments are checked when the work is issued, so a bad copy
 * fails at the call. The host memory of a copy is read or written when the
 * copy runs, as CUDA's asynchronous copies do, so a host buffer read or
 * reused before a synchronisation shows stale or corrupted data — except the
 * source of a host-to-device copy from pageable (not pinned) memory, which
 * is staged when the copy is issued, as CUDA's driver stages it. Synchronisation
 * waits for the work it covers and returns a failure of deferred work (a
 * kernel's trap). qilin_free and qilin_host_free_pinned wait for the
 * device's (all devices') work first, as cudaFree and cudaFreeHost
 * synchronise. Streams and events are small heap objects kept in registries,
 * so a destroyed or foreign handle is reported instead of dereferenced.
 *
 * Dry-run (QILIN_SIM_DRY_RUN=1 or qsim_set_dry_run; sim_api.h): launches are
 * checked and logged but their bodies do not run (scheduler.cpp), and so
 * nothing on the device ever holds a computed value. Allocations made in
 * dry-run are anonymous MAP_NORESERVE mappings, not poisoned: untouched pages
 * cost no RAM, so a real-size model's weights fit in any host, and read as
 * zeros. Copies are still checked when issued, then: host-to-device and
 * device-to-device copies and memsets are skipped (nothing reads device memory
 * as data in dry-run, so their contents cannot matter, and skipping them keeps
 * the pages untouched); a device-to-host copy writes zeros into the host
 * buffer, in stream order, so the host code that decides its control flow
 * from device results (sampled ids, the EP all-to-all's per-rank counts, MoE
 * alignment sizes) reads zeros — deterministic, as a device that computed
 * zeros. */
#include "../device.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include <sys/mman.h>

#include "sim_api.h"
#include "streams.h"
#include "tensor_core_sim.h"

struct qilin_stream {
    int device;
};

/* When a recorded event completed; written by the work item it records. */
struct EventStamp {
    std::atomic<bool> done{false};
    std::chrono::steady_clock::time_point when;
};

struct qilin_event {
    int device;
    bool recorded;
    /* the stream it was last recorded on and that stream's issue count then */
    const void *stream_key;
    uint64_t count;
    std::shared_ptr<EventStamp> stamp;
    bool untimed = false; /* qilin_event_create_untimed: elapsed_ms refuses it, as CUDA does */
};

namespace {

constexpr int kMaxDevices = 64;
constexpr int kDefaultDevices = 8;
constexpr size_t kAlign = 256;
constexpr int kPoison = 0xFF;            /* every float made of it is a NaN */

/* The GPU models the sim can look like (datasheet figures of the SXM parts). */
struct Profile {
    const char *key, *name;
    int cc_major, cc_minor, sm_count;
    size_t smem_per_block_optin, smem_per_sm, l2_bytes, memory_bytes;
    double bandwidth_gbs; /* datasheet HBM bandwidth, GB/s */
};
constexpr size_t KiB = 1024, MiB = KiB << 10, GiB = MiB << 10;
constexpr Profile kProfiles[] = {
    {"h100", "qilin-sim (emulated H100)", 9, 0, 132, 227 * KiB, 228 * KiB, 50 * MiB, 80 * GiB, 3350.0},
    {"h200", "qilin-sim (emulated H200)", 9, 0, 132, 227 * KiB, 228 * KiB, 50 * MiB, size_t(141e9), 4800.0},
    {"a100", "qilin-sim (emulated A100)", 8, 0, 108, 163 * KiB, 164 * KiB, 40 * MiB, 80 * GiB, 2039.0},
};

/* ---- configuration (environment, read once) ------------------------------ */

struct Config {
    qilin_status status = QILIN_OK;
    std::string error; /* why the environment was rejected */
    int devices = kDefaultDevices;
    const Profile *profile = &kProfiles[0];
    size_t memory_bytes = kProfiles[0].memory_bytes;
    bool dry_run = false; /* QILIN_SIM_DRY_RUN=1 */
};

bool parse_profile(const char *text, const Profile **profile) {
    for (const Profile &p : kProfiles)
        if (std::strcmp(text, p.key) == 0) {
            *profile = &p;
            return true;
        }
    return false;
}

bool parse_devices(const char *text, int *devices) {
    char *end = nullptr;
    errno = 0;
    long v = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1 || v > kMaxDevices) return false;
    *devices = int(v);
    return true;
}

/* Suffix -> shift; the letter may be either case, "iB" is optional. */
bool memory_suffix_shift(const char *suffix, int *shift) {
    if (*suffix == '\0') {
        *shift = 0;
        return true;
    }
    static const char letters[] = "KMGT";
    const char *at = std::strchr(letters, std::toupper((unsigned char)suffix[0]));
    if (at == nullptr) return false;
    if (suffix[1] != '\0' && std::strcmp(suffix + 1, "iB") != 0) return false;
    *shift = 10 * int(at - letters + 1);
    return true;
}

bool parse_memory(const char *text, size_t *bytes) {
    if (!std::isdigit((unsigned char)text[0])) return false;
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    int shift = 0;
    if (errno != 0 || !memory_suffix_shift(end, &shift) || v == 0) return false;
    if (shift > 0 && v > (~0ull >> shift)) return false;
    *bytes = size_t(v << shift);
    return true;
}

Config read_config() {
    Config c;
    if (const char *v = std::getenv("QILIN_SIM_PROFILE"); v && *v) {
        if (parse_profile(v, &c.profile)) {
            c.memory_bytes = c.profile->memory_bytes;
        } else {
            c.status = QILIN_ERR_INVALID_ARGUMENT;
            c.error = "QILIN_SIM_PROFILE='" + std::string(v) + "' is not a GPU model the sim knows (h100, h200, a100)";
        }
    }
    if (const char *v = std::getenv("QILIN_SIM_DEVICES"); v && !parse_devices(v, &c.devices) && c.status == QILIN_OK) {
        c.status = QILIN_ERR_INVALID_ARGUMENT;
        c.error = "QILIN_SIM_DEVICES='" + std::string(v) + "' is not a device count in 1.." +
                  std::to_string(kMaxDevices);
    }
    if (const char *v = std::getenv("QILIN_SIM_DEVICE_MEMORY");
        v && !parse_memory(v, &c.memory_bytes) && c.status == QILIN_OK) {
        c.status = QILIN_ERR_INVALID_ARGUMENT;
        c.error = "QILIN_SIM_DEVICE_MEMORY='" + std::string(v) +
                  "' is not a positive byte count (digits, optionally followed by K, M, G, T, "
                  "KiB, MiB, GiB or TiB)";
    }
    if (const char *v = std::getenv("QILIN_SIM_DRY_RUN"); v && *v) {
        if (std::strcmp(v, "1") == 0 || std::strcmp(v, "0") == 0) {
            c.dry_run = v[0] == '1';
        } else if (c.status == QILIN_OK) {
            c.status = QILIN_ERR_INVALID_ARGUMENT;
            c.error = "QILIN_SIM_DRY_RUN='" + std::string(v) + "' is neither 1 (dry-run) nor 0";
        }
    }
    return c;
}

const Config &config() {
    static const Config c = read_config(); /* thread-safe, once */
    return c;
}

/* Every entry point starts here, so a bad environment is reported by every
 * call, each time naming the operation and the variable. */
qilin_status check_config(const char *op) {
    const Config &c = config();
    if (c.status != QILIN_OK) return qilin_error(c.status, "%s: %s", op, c.error.c_str());
    return QILIN_OK;
}

qilin_status check_device(int device, const char *op) {
    QILIN_TRY(check_config(op));
    if (device < 0 || device >= config().devices)
        return qilin_error(QILIN_ERR_NO_DEVICE,
                           "%s: device %d does not exist (the sim has %d devices; "
                           "QILIN_SIM_DEVICES)",
                           op, device, config().devices);
    return QILIN_OK;
}

/* ---- shared state -------------------------------------------------------- */

struct Allocation {
    size_t bytes;
    int device;
    bool mapped; /* a dry-run reservation (mmap), freed with munmap */
};

/* -1: not set by qsim_set_dry_run, the environment decides. */
std::atomic<int> dry_run_override{-1};

bool dry_run() {
    int o = dry_run_override.load(std::memory_order_relaxed);
    return o >= 0 ? o != 0 : config().dry_run;
}

struct DeviceState {
    size_t allocated = 0, peak = 0;
    double measured_gbs = 0.0; /* 0 until measured */
};

struct State {
    std::mutex mu;
    std::map<uintptr_t, Allocation> allocations; /* ordered, to find the one holding an address */
    std::map<uintptr_t, size_t> pinned; /* start -> bytes */
    std::unordered_set<const qilin_stream *> streams;
    std::unordered_set<const qilin_event *> events;
    DeviceState devices[kMaxDevices];
};

/* Never destroyed, so buffers freed from other static destructors still find it. */
State &state() {
    static State *s = new State;
    return *s;
}

thread_local int current_device = 0;
thread_local qilin_stream default_stream{0};

const char *name_of(const char *what) { return what ? what : "unnamed buffer"; }

size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

/* ---- checking the two sides of a copy (call with mu held) ---------------- */

/* The allocation whose range holds address p, or end(). */
std::map<uintptr_t, Allocation>::const_iterator holder(const State &s, uintptr_t p) {
    auto it = s.allocations.upper_bound(p);
    if (it == s.allocations.begin()) return s.allocations.end();
    --it;
    return p < it->first + it->second.bytes ? it : s.allocations.end();
}

qilin_status check_device_range(const State &s, const char *op, const char *side, const void *ptr,
                                size_t bytes) {
    uintptr_t p = uintptr_t(ptr);
    auto it = holder(s, p);
    if (it == s.allocations.end())
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: %s %p (%zu bytes) is not device memory from qilin_malloc", op, side, ptr,
                           bytes);
    size_t room = it->first + it->second.bytes - p;
    if (bytes > room)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: %s %p + %zu bytes overruns its allocation (%p, %zu bytes, device "
                           "%d) by %zu bytes",
                           op, side, ptr, bytes, (void *)it->first, it->second.bytes, it->second.device,
                           bytes - room);
    return QILIN_OK;
}

qilin_status check_host_range(const State &s, const char *op, const char *side, const void *ptr,
                              size_t bytes) {
    uintptr_t p = uintptr_t(ptr);
    /* The last allocation starting before the end of [p, p + bytes). */
    auto it = s.allocations.lower_bound(p + bytes);
    if (it != s.allocations.begin() && std::prev(it)->first + std::prev(it)->second.bytes > p) {
        --it;
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: %s %p (%zu bytes) should be host memory but overlaps device "
                           "allocation %p on device %d (arguments swapped?)",
                           op, side, ptr, bytes, (void *)it->first, it->second.device);
    }
    return QILIN_OK;
}

/* NULL and this thread's default-stream object are always valid. */
qilin_status check_stream(const State &s, const char *op, const qilin_stream *stream) {
    if (stream == nullptr || stream == &default_stream || s.streams.count(stream)) return QILIN_OK;
    return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                       "%s: stream %p is not a live qilin stream (destroyed, or another thread's "
                       "default stream?)",
                       op, (const void *)stream);
}

qilin_status check_event(const State &s, const char *op, const qilin_event *event) {
    if (event != nullptr && s.events.count(event)) return QILIN_OK;
    return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: event %p is not a live qilin event", op,
                       (const void *)event);
}

/* The device and queue key of a stream handle (NULL: this thread's default
 * stream on the current device). */
struct Target {
    int device;
    const void *key;
};

Target target_of(const qilin_stream *stream) {
    if (stream == nullptr || stream == &default_stream) return Target{current_device, &default_stream};
    return Target{stream->device, stream};
}

/* The capture the calling thread has open (device.h: one per thread), and
 * the first non-capturable call made during it. */
struct ThreadCapture {
    qilin_stream *stream = nullptr;
    Target target{0, nullptr};
    bool open = false;
    qilin_status failure = QILIN_OK;
    std::string failure_message;
};
thread_local ThreadCapture thread_capture;

/* Refuses `op` while this thread captures: the call does nothing, fails
 * naming itself and the stream, and invalidates the capture (device.h). */
qilin_status refuse_in_capture(const char *op, const char *why) {
    if (!thread_capture.open) return QILIN_OK;
    qilin_status st = qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                  "%s: not capturable (%s) while stream %p is capturing a graph "
                                  "(qilin_stream_begin_capture); the capture is now invalid",
                                  op, why, (void *)thread_capture.stream);
    if (thread_capture.failure == QILIN_OK) {
        thread_capture.failure = st;
        thread_capture.failure_message = qilin_last_error();
    }
    return st;
}

enum class Side { host, device };

/* Whether [p, p + bytes) lies in one qilin_host_alloc_pinned buffer. */
bool is_pinned(State &s, const void *p, size_t bytes) {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.pinned.upper_bound(uintptr_t(p));
    if (it == s.pinned.begin()) return false;
    --it;
    return uintptr_t(p) + bytes <= it->first + it->second;
}

/* Validates and performs one copy; the sim's "device" memory is host memory. */
qilin_status copy(const char *op, void *dst, Side dst_side, const void *src, Side src_side, size_t bytes,
                  qilin_stream *stream) {
    QILIN_TRY(check_config(op));
    if (bytes == 0) return QILIN_OK;
    if (dst == nullptr || src == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL (%zu bytes)", op,
                           dst == nullptr ? "dst" : "src", bytes);
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_stream(s, op, stream));
        QILIN_TRY(dst_side == Side::device ? check_device_range(s, op, "dst", dst, bytes)
                                           : check_host_range(s, op, "dst", dst, bytes));
        QILIN_TRY(src_side == Side::device ? check_device_range(s, op, "src", src, bytes)
                                           : check_host_range(s, op, "src", src, bytes));
    }
    Target t = target_of(stream);
    if (thread_capture.open && (src_side == Side::host || dst_side == Side::host) &&
        qsim::capturing(t.device, t.key) &&
        !is_pinned(s, src_side == Side::host ? src : dst, bytes))
        return refuse_in_capture(op, "its host buffer is pageable memory; a graph's copy needs pinned memory "
                                     "(qilin_host_alloc_pinned)");
    if (dry_run()) { /* see the header: device memory holds no values in dry-run */
        if (dst_side == Side::device) return QILIN_OK;
        return qsim::submit(t.device, t.key, [dst, bytes] {
            std::memset(dst, 0, bytes);
            return QILIN_OK;
        });
    }
    if (src_side == Side::host && qsim::deferred() && !is_pinned(s, src, bytes)) {
        /* Pageable: the driver copies it to a staging buffer before returning. */
        std::shared_ptr<unsigned char[]> staged(new (std::nothrow) unsigned char[bytes]);
        if (staged == nullptr)
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: no host memory to stage %zu pageable bytes", op,
                               bytes);
        std::memcpy(staged.get(), src, bytes);
        return qsim::submit(t.device, t.key, [dst, staged, bytes] {
            std::memcpy(dst, staged.get(), bytes);
            return QILIN_OK;
        });
    }
    return qsim::submit(t.device, t.key, [dst, src, bytes] {
        std::memmove(dst, src, bytes); /* cudaMemcpy does not promise overlap, but d2d may alias */
        return QILIN_OK;
    });
}

/* Median time of host memcpys of `bytes`, in seconds. */
double time_memcpy(void *dst, const void *src, size_t bytes) {
    constexpr int kWarmup = 1, kReps = 5;
    std::vector<double> seconds;
    for (int i = 0; i < kWarmup + kReps; i++) {
        auto t0 = std::chrono::steady_clock::now();
        std::memcpy(dst, src, bytes);
        auto t1 = std::chrono::steady_clock::now();
        if (i >= kWarmup) seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    std::sort(seconds.begin(), seconds.end());
    return seconds[seconds.size() / 2];
}

} // namespace

/* ---- devices ------------------------------------------------------------- */

extern "C" qilin_status qilin_device_count(int *count) {
    if (count == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_device_count: count is NULL");
    *count = 0;
    QILIN_TRY(check_config("qilin_device_count"));
    *count = config().devices;
    return QILIN_OK;
}

extern "C" qilin_status qilin_device_get_props(int device, qilin_device_props *props) {
    if (props == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_device_get_props: props is NULL");
    QILIN_TRY(check_device(device, "qilin_device_get_props"));
    *props = qilin_device_props{};
    props->index = device;
    const Profile &gpu = *config().profile;
    std::snprintf(props->name, sizeof props->name, "%s", gpu.name);
    props->is_sim = 1;
    props->cc_major = gpu.cc_major;
    props->cc_minor = gpu.cc_minor;
    props->sm_count = gpu.sm_count;
    props->max_threads_per_block = 1024;
    props->shared_mem_per_block_optin = gpu.smem_per_block_optin;
    props->shared_mem_per_sm = gpu.smem_per_sm;
    props->l2_bytes = gpu.l2_bytes;
    props->total_mem_bytes = config().memory_bytes;
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    double measured = s.devices[device].measured_gbs;
    props->peak_bandwidth_measured = measured > 0.0;
    props->peak_bandwidth_gbs = measured > 0.0 ? measured : gpu.bandwidth_gbs;
    return QILIN_OK;
}

extern "C" size_t qsim_max_dynamic_smem(void) { return config().profile->smem_per_block_optin; }

extern "C" int qsim_dry_run(void) { return dry_run() ? 1 : 0; }

extern "C" void qsim_set_dry_run(int on) { dry_run_override.store(on < 0 ? -1 : on != 0 ? 1 : 0); }

extern "C" int qilin_device_dry_run(void) { return dry_run() ? 1 : 0; }

extern "C" qilin_status qilin_device_measure_bandwidth(int device, double *gbs) {
    if (gbs == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_device_measure_bandwidth: gbs is NULL");
    QILIN_TRY(check_device(device, "qilin_device_measure_bandwidth"));
    /* The sim's device copies are host memcpys, so that is what is timed.
     * 64 MiB is well past the last-level cache and quick to run. */
    const size_t bytes = size_t(64) << 20;
    void *src = std::aligned_alloc(kAlign, bytes), *dst = std::aligned_alloc(kAlign, bytes);
    double seconds = 0.0;
    if (src && dst) {
        std::memset(src, 1, bytes);
        std::memset(dst, 0, bytes); /* fault the pages in before timing */
        seconds = time_memcpy(dst, src, bytes);
    }
    std::free(src);
    std::free(dst);
    if (!(src && dst))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "qilin_device_measure_bandwidth: no host memory for 2 x %zu bytes", bytes);
    /* A clock too coarse to see the copy: report the copy as taking one tick. */
    seconds = std::max(seconds, 1e-9);
    double measured = 2.0 * double(bytes) / seconds / 1e9;
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        s.devices[device].measured_gbs = measured;
    }
    *gbs = measured;
    return QILIN_OK;
}

extern "C" qilin_status qilin_device_set(int device) {
    QILIN_TRY(check_device(device, "qilin_device_set"));
    current_device = device;
    return QILIN_OK;
}

extern "C" qilin_status qilin_device_get(int *device) {
    if (device == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_device_get: device is NULL");
    QILIN_TRY(check_config("qilin_device_get"));
    *device = current_device;
    return QILIN_OK;
}

extern "C" qilin_status qilin_device_synchronize(void) {
    QILIN_TRY(refuse_in_capture("qilin_device_synchronize", "a synchronisation"));
    QILIN_TRY(check_config("qilin_device_synchronize"));
    return qsim::wait_device(current_device, true);
}

/* ---- memory -------------------------------------------------------------- */

extern "C" qilin_status qilin_malloc(void **ptr, size_t bytes, const char *what) {
    if (ptr == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_malloc: ptr is NULL (allocating '%s')",
                           name_of(what));
    *ptr = nullptr;
    QILIN_TRY(check_config("qilin_malloc"));
    QILIN_TRY(refuse_in_capture("qilin_malloc", "an allocation"));
    if (bytes == 0) return QILIN_OK;
    const int device = current_device;
    const size_t total = config().memory_bytes;
    State &s = state();
    {
        /* Reserve first, so concurrent allocations cannot overshoot the budget. */
        std::lock_guard<std::mutex> lock(s.mu);
        DeviceState &d = s.devices[device];
        if (bytes > total - d.allocated || bytes > SIZE_MAX - kAlign)
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                               "qilin_malloc: out of device memory allocating '%s' (%zu bytes) on "
                               "sim device %d: %zu of %zu bytes in use (QILIN_SIM_DEVICE_MEMORY)",
                               name_of(what), bytes, device, d.allocated, total);
        d.allocated += bytes;
    }
    const bool mapped = dry_run();
    void *p = nullptr;
    if (mapped) { /* reserved, not committed: pages cost RAM only once written */
        p = mmap(nullptr, round_up(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) p = nullptr;
    } else {
        p = std::aligned_alloc(kAlign, round_up(bytes));
    }
    std::lock_guard<std::mutex> lock(s.mu);
    DeviceState &d = s.devices[device];
    if (p == nullptr) {
        d.allocated -= bytes;
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "qilin_malloc: the host has no memory for sim device %d's '%s' "
                           "(%zu bytes)",
                           device, name_of(what), bytes);
    }
    if (!mapped) std::memset(p, kPoison, round_up(bytes));
    s.allocations[uintptr_t(p)] = Allocation{bytes, device, mapped};
    d.peak = std::max(d.peak, d.allocated);
    *ptr = p;
    return QILIN_OK;
}

extern "C" qilin_status qilin_free(void *ptr) {
    if (ptr == nullptr) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_free", "a free, which waits for the device"));
    State &s = state();
    int device = -1;
    bool mapped = false;
    size_t bytes = 0;
    {
        std::lock_guard<std::mutex> lock(s.mu);
        auto it = s.allocations.find(uintptr_t(ptr));
        if (it != s.allocations.end()) device = it->second.device;
    }
    /* cudaFree waits for the device: work still queued may use the buffer.
     * A failure of that work stays pending for the next synchronisation. */
    if (device >= 0) QILIN_TRY(qsim::wait_device(device, false));
    {
        std::lock_guard<std::mutex> lock(s.mu);
        auto it = s.allocations.find(uintptr_t(ptr));
        if (it == s.allocations.end()) {
            auto in = holder(s, uintptr_t(ptr));
            if (in != s.allocations.end())
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                   "qilin_free: %p points inside allocation %p (%zu bytes), not at "
                                   "its start",
                                   ptr, (void *)in->first, in->second.bytes);
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_free: %p was not allocated by qilin_malloc, or was already "
                               "freed",
                               ptr);
        }
        s.devices[it->second.device].allocated -= it->second.bytes;
        mapped = it->second.mapped;
        bytes = it->second.bytes;
        s.allocations.erase(it);
    }
    if (mapped)
        munmap(ptr, round_up(bytes));
    else
        std::free(ptr);
    return QILIN_OK;
}

extern "C" qilin_status qilin_memory_used(int device, size_t *allocated, size_t *peak) {
    QILIN_TRY(check_device(device, "qilin_memory_used"));
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    if (allocated) *allocated = s.devices[device].allocated;
    if (peak) *peak = s.devices[device].peak;
    return QILIN_OK;
}

extern "C" qilin_status qilin_memory_info(int device, size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes == nullptr || total_bytes == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_memory_info: free_bytes or total_bytes is NULL");
    QILIN_TRY(check_device(device, "qilin_memory_info"));
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    *total_bytes = config().memory_bytes;
    *free_bytes = *total_bytes - s.devices[device].allocated;
    return QILIN_OK;
}

extern "C" qilin_status qilin_host_alloc_pinned(void **ptr, size_t bytes) {
    if (ptr == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_host_alloc_pinned: ptr is NULL");
    *ptr = nullptr;
    if (bytes == 0) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_host_alloc_pinned", "an allocation"));
    void *p = bytes > SIZE_MAX - kAlign ? nullptr : std::aligned_alloc(kAlign, round_up(bytes));
    if (p == nullptr)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "qilin_host_alloc_pinned: cannot allocate %zu bytes of host memory", bytes);
    std::memset(p, kPoison, round_up(bytes)); /* pinned memory is not zeroed either */
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.pinned[uintptr_t(p)] = bytes;
    *ptr = p;
    return QILIN_OK;
}

extern "C" qilin_status qilin_host_free_pinned(void *ptr) {
    if (ptr == nullptr) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_host_free_pinned", "a free, which waits for the device"));
    /* cudaFreeHost synchronises: a queued copy may still read or write it. */
    for (int d = 0; d < config().devices; d++) QILIN_TRY(qsim::wait_device(d, false));
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        if (s.pinned.erase(uintptr_t(ptr)) == 0)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_host_free_pinned: %p was not allocated by "
                               "qilin_host_alloc_pinned, or was already freed",
                               ptr);
    }
    std::free(ptr);
    return QILIN_OK;
}

/* ---- copies -------------------------------------------------------------- */

extern "C" qilin_status qilin_memcpy_h2d(void *dst, const void *src, size_t bytes, qilin_stream *stream) {
    return copy("qilin_memcpy_h2d", dst, Side::device, src, Side::host, bytes, stream);
}

extern "C" qilin_status qilin_memcpy_d2h(void *dst, const void *src, size_t bytes, qilin_stream *stream) {
    return copy("qilin_memcpy_d2h", dst, Side::host, src, Side::device, bytes, stream);
}

extern "C" qilin_status qilin_memcpy_d2d(void *dst, const void *src, size_t bytes, qilin_stream *stream) {
    return copy("qilin_memcpy_d2d", dst, Side::device, src, Side::device, bytes, stream);
}

extern "C" qilin_status qilin_memset(void *dst, int byte_value, size_t bytes, qilin_stream *stream) {
    const char *op = "qilin_memset";
    QILIN_TRY(check_config(op));
    if (bytes == 0) return QILIN_OK;
    if (dst == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: dst is NULL (%zu bytes)", op, bytes);
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_stream(s, op, stream));
        QILIN_TRY(check_device_range(s, op, "dst", dst, bytes));
    }
    if (dry_run()) return QILIN_OK; /* device memory holds no values in dry-run */
    Target t = target_of(stream);
    return qsim::submit(t.device, t.key, [dst, byte_value, bytes] {
        std::memset(dst, byte_value, bytes);
        return QILIN_OK;
    });
}

/* ---- streams ------------------------------------------------------------- */

extern "C" qilin_status qilin_stream_create(qilin_stream **stream) {
    if (stream == nullptr)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_stream_create: stream is NULL");
    *stream = nullptr;
    QILIN_TRY(check_config("qilin_stream_create"));
    auto *s = new (std::nothrow) qilin_stream{current_device};
    if (s == nullptr) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_stream_create: out of host memory");
    State &st = state();
    std::lock_guard<std::mutex> lock(st.mu);
    st.streams.insert(s);
    *stream = s;
    return QILIN_OK;
}

extern "C" qilin_status qilin_stream_destroy(qilin_stream *stream) {
    if (stream == nullptr) return QILIN_OK;
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        if (s.streams.erase(stream) == 0)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_stream_destroy: stream %p is not a live qilin stream", (void *)stream);
    }
    delete stream;
    return QILIN_OK;
}

extern "C" qilin_status qilin_stream_synchronize(qilin_stream *stream) {
    QILIN_TRY(check_config("qilin_stream_synchronize"));
    QILIN_TRY(refuse_in_capture("qilin_stream_synchronize", "a synchronisation"));
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_stream(s, "qilin_stream_synchronize", stream));
    }
    Target t = target_of(stream);
    return qsim::wait_stream(t.device, t.key, qsim::issued(t.device, t.key));
}

extern "C" void *qilin_stream_native(qilin_stream *stream) {
    if (stream != nullptr) return stream;
    default_stream.device = current_device;
    return &default_stream;
}

extern "C" int qilin_stream_device(qilin_stream *stream) {
    if (stream == nullptr || stream == &default_stream) return current_device;
    return stream->device;
}

/* ---- events -------------------------------------------------------------- */

static qilin_status event_create(qilin_event **event, bool timing, const char *op) {
    if (event == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: event is NULL", op);
    *event = nullptr;
    QILIN_TRY(check_config(op));
    auto *e = new (std::nothrow) qilin_event{current_device, false, nullptr, 0, nullptr, !timing};
    if (e == nullptr) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.events.insert(e);
    *event = e;
    return QILIN_OK;
}

extern "C" qilin_status qilin_event_create(qilin_event **event) {
    return event_create(event, true, "qilin_event_create");
}

extern "C" qilin_status qilin_event_create_untimed(qilin_event **event) {
    return event_create(event, false, "qilin_event_create_untimed");
}

extern "C" qilin_status qilin_event_destroy(qilin_event *event) {
    if (event == nullptr) return QILIN_OK;
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        if (s.events.erase(event) == 0)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_event_destroy: event %p is not a live qilin event", (void *)event);
    }
    delete event;
    return QILIN_OK;
}

extern "C" qilin_status qilin_event_record(qilin_event *event, qilin_stream *stream) {
    const char *op = "qilin_event_record";
    if (qsim::stream_capturing(stream))
        QILIN_TRY(refuse_in_capture(op, "an event record on the capturing stream"));
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    QILIN_TRY(check_event(s, op, event));
    QILIN_TRY(check_stream(s, op, stream));
    auto stamp = std::make_shared<EventStamp>();
    if (stamp == nullptr) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    /* The event completes when the work issued to the stream before it has
     * run: a stamp item queued behind that work. */
    Target t = target_of(stream);
    QILIN_TRY(qsim::submit(t.device, t.key, [stamp] {
        stamp->when = std::chrono::steady_clock::now();
        stamp->done.store(true, std::memory_order_release);
        return QILIN_OK;
    }));
    event->device = t.device;
    event->stream_key = t.key;
    event->count = qsim::issued(t.device, t.key);
    event->stamp = stamp;
    event->recorded = true;
    return QILIN_OK;
}

extern "C" qilin_status qilin_event_synchronize(qilin_event *event) {
    const char *op = "qilin_event_synchronize";
    QILIN_TRY(refuse_in_capture(op, "a synchronisation"));
    State &s = state();
    Target t{0, nullptr};
    uint64_t count = 0;
    {
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_event(s, op, event));
        if (!event->recorded) return QILIN_OK; /* as cudaEventSynchronize: nothing to wait for */
        t = Target{event->device, event->stream_key};
        count = event->count;
    }
    return qsim::wait_stream(t.device, t.key, count);
}

extern "C" qilin_status qilin_event_elapsed_ms(qilin_event *start, qilin_event *stop, float *ms) {
    const char *op = "qilin_event_elapsed_ms";
    if (ms == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: ms is NULL", op);
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    QILIN_TRY(check_event(s, op, start));
    QILIN_TRY(check_event(s, op, stop));
    if (!start->recorded || !stop->recorded)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: the %s event was never recorded", op,
                           start->recorded ? "stop" : "start");
    if (start->untimed || stop->untimed)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: the %s event was made by qilin_event_create_untimed (no timestamps)", op,
                           start->untimed ? "start" : "stop");
    /* cudaEventElapsedTime fails with cudaErrorNotReady before both completed. */
    if (!start->stamp->done.load(std::memory_order_acquire) || !stop->stamp->done.load(std::memory_order_acquire))
        return qilin_error(QILIN_ERR_DEVICE,
                           "%s: the %s event has not completed yet (synchronise on it first)", op,
                           start->stamp->done.load() ? "stop" : "start");
    *ms = std::chrono::duration<float, std::milli>(stop->stamp->when - start->stamp->when).count();
    return QILIN_OK;
}

/* ---- launch checking ----------------------------------------------------- */

extern "C" qilin_status qilin_check_launch(const char *kernel, const char *file, int line) {
    /* A launch error (bad shape, bad stream) is known now; a failure while the
     * kernel ran is the device's pending error: in immediate mode it is the
     * launch status too, in deferred mode it shows here once the kernel has
     * run, or at the next synchronisation. Its message names the kernel, the
     * launch site and the block. */
    (void)kernel;
    (void)file;
    (void)line;
    QILIN_TRY(qsim_take_launch_status());
    static const bool sync_launches = [] {
        const char *v = std::getenv("QILIN_SYNC_LAUNCHES");
        return v != nullptr && std::strcmp(v, "1") == 0;
    }();
    if (sync_launches && !thread_capture.open) return qsim::wait_device(current_device, true);
    return qsim::take_error(current_device);
}

/* ---- for the rest of the sim (streams.h) ---------------------------------- */

qilin_status qsim::submit_to(qilin_stream *stream, const char *op, Work work) {
    State &s = state();
    {
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_stream(s, op, stream));
    }
    Target t = target_of(stream);
    return submit(t.device, t.key, std::move(work));
}

bool qsim::stream_capturing(qilin_stream *stream) {
    Target t = target_of(stream);
    return qsim::capturing(t.device, t.key);
}

/* ---- graphs (device.h) ----------------------------------------------------- */

/* A capture's work items, replayed in order: each kernel launch kept its
 * grid, block, shared memory, seed and a copy of its arguments; copies and
 * memsets their addresses and sizes. */
struct qilin_graph {
    int device;
    std::vector<qsim::Work> work;
};

extern "C" qilin_status qilin_stream_begin_capture(qilin_stream *stream) {
    const char *op = "qilin_stream_begin_capture";
    QILIN_TRY(check_config(op));
    if (stream == nullptr || stream == &default_stream)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: the default stream cannot capture; create one",
                           op);
    {
        State &s = state();
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_stream(s, op, stream));
    }
    if (thread_capture.open)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: this thread is already capturing stream %p (one capture per thread)", op,
                           (void *)thread_capture.stream);
    Target t = target_of(stream);
    QILIN_TRY(qsim::capture_begin(t.device, t.key));
    thread_capture = ThreadCapture{};
    thread_capture.stream = stream;
    thread_capture.target = t;
    thread_capture.open = true;
    return QILIN_OK;
}

extern "C" int qilin_capturing(void) { return thread_capture.open ? 1 : 0; }

extern "C" qilin_status qilin_stream_end_capture(qilin_stream *stream, qilin_graph **graph) {
    const char *op = "qilin_stream_end_capture";
    if (graph == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: graph is NULL", op);
    *graph = nullptr;
    if (!thread_capture.open || thread_capture.stream != stream)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: stream %p is not capturing on this thread", op,
                           (void *)stream);
    std::vector<qsim::Work> work;
    qsim::capture_end(thread_capture.target.device, thread_capture.target.key, &work);
    ThreadCapture ended = std::move(thread_capture);
    thread_capture = ThreadCapture{};
    if (ended.failure != QILIN_OK)
        return qilin_error(ended.failure, "%s: the capture of stream %p was invalidated by: %s", op,
                           (void *)stream, ended.failure_message.c_str());
    auto *g = new (std::nothrow) qilin_graph{ended.target.device, std::move(work)};
    if (g == nullptr) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    *graph = g;
    return QILIN_OK;
}

extern "C" qilin_status qilin_graph_launch(qilin_graph *graph, qilin_stream *stream) {
    const char *op = "qilin_graph_launch";
    if (graph == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: graph is NULL", op);
    {
        State &s = state();
        std::lock_guard<std::mutex> lock(s.mu);
        QILIN_TRY(check_stream(s, op, stream));
    }
    Target t = target_of(stream);
    if (t.device != graph->device)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: the graph was captured on sim device %d, the stream belongs to device %d", op,
                           graph->device, t.device);
    for (const qsim::Work &w : graph->work) QILIN_TRY(qsim::submit(t.device, t.key, w));
    return qsim::take_error(t.device); /* in immediate mode the replay has run: its failure, if any */
}

extern "C" qilin_status qilin_graph_destroy(qilin_graph *graph) {
    delete graph; /* its work holds copies of arguments, never device memory */
    return QILIN_OK;
}

extern "C" size_t qilin_graph_nodes(const qilin_graph *graph) { return graph ? graph->work.size() : 0; }

/* ---- address checks for the emulated instructions (tensor_core_sim.h) ---- */

namespace qsim {

bool device_range_live(const void *p, size_t bytes) {
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = holder(s, uintptr_t(p));
    return it != s.allocations.end() && bytes <= it->first + it->second.bytes - uintptr_t(p);
}

bool is_device_address(const void *p) {
    State &s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    return holder(s, uintptr_t(p)) != s.allocations.end();
}

} // namespace qsim
