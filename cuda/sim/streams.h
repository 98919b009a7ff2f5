/* streams.h — when the emulator runs the work issued to a stream.
 *
 * Deferred mode (the default; QILIN_SIM_DEFERRED=0 turns it off): every
 * emulated device has a worker thread, started on the device's first piece of
 * work, that runs kernels (sharing their blocks with the pool's helpers,
 * pool.h), copies, memsets and GEMMs later, in stream order.
 * Work issued to one stream runs in issue order; work on different streams of
 * a device interleaves in an order drawn from QILIN_SIM_SEED. Work is held
 * back until something waits for it (a stream, event or device
 * synchronisation, a collective draining its stream, a qilin_free) or until a
 * grace period of about QILIN_SIM_DEFER_MS milliseconds (default 50; each
 * item's is drawn from [1/2, 3/2] of it) has passed. So a host read of a
 * copy's destination without a synchronisation sees stale data, and a host
 * buffer rewritten before the copy that reads it ran corrupts the copy, as
 * they may on a GPU.
 *
 * A failure inside deferred work (a kernel's divergent barrier or __trap, a
 * GEMM without host memory) is kept as its device's pending error, with its
 * message, and returned once by the next synchronisation on that device or
 * the next qilin_check_launch there, like CUDA's asynchronous errors.
 *
 * Immediate mode (QILIN_SIM_DEFERRED=0): work runs on the calling thread
 * when it is issued and its status is returned at once. */
#ifndef QILIN_SIM_STREAMS_H
#define QILIN_SIM_STREAMS_H

#include <cstdint>
#include <functional>
#include <vector>

#include "../device.h"
#include "../status.h"

namespace qsim {

using Work = std::function<qilin_status()>;

/* The emulator's seeded randomness (in scheduler.cpp, shared by the thread
 * schedule and the stream worker): one splitmix64 step, and an environment
 * variable as an unsigned number (fallback when unset or malformed). */
uint64_t splitmix64(uint64_t x);
uint64_t env_u64(const char *name, uint64_t fallback);

/* True in deferred mode (read once from QILIN_SIM_DEFERRED). */
bool deferred();

/* Runs `work` in order on the stream `key` of `device` (deferred), or now. */
qilin_status submit(int device, const void *key, Work work);

/* submit() on the stream a qilin_stream handle names (NULL: the calling
 * thread's default stream on its current device), after checking the handle
 * is live; `op` names the caller in that error. In device_sim.cpp. */
qilin_status submit_to(qilin_stream *stream, const char *op, Work work);

/* Graph capture (device.h): while stream `key` of `device` captures,
 * submit() appends its work to the capture instead of running it, in either
 * mode. capture_begin fails if the stream already captures; capture_end hands
 * back what was recorded (false if the stream was not capturing). */
qilin_status capture_begin(int device, const void *key);
bool capture_end(int device, const void *key, std::vector<Work> *recorded);
bool capturing(int device, const void *key);
/* capturing() for a qilin_stream handle (NULL: the default stream); in device_sim.cpp. */
bool stream_capturing(qilin_stream *stream);

/* Number of items ever issued to stream `key` of `device`: an event recorded
 * now completes when that many have run. */
uint64_t issued(int device, const void *key);

/* Waits until the first `count` items of the stream have run, then returns the
 * device's pending error, if any (clearing it). */
qilin_status wait_stream(int device, const void *key, uint64_t count);
/* Waits until every item issued to `device` so far has run. With take_error
 * it then returns (and clears) the pending error; without, it leaves it for
 * the next synchronisation (qilin_free, which must not swallow it). */
qilin_status wait_device(int device, bool take_error);
/* The device's pending error (cleared), or QILIN_OK. */
qilin_status take_error(int device);

} // namespace qsim

#endif /* QILIN_SIM_STREAMS_H */
