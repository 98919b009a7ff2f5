/* streams.cpp — the sim's stream engine (streams.h): a worker thread per
 * emulated device that runs the work issued to its streams later, in stream
 * order.
 *
 * Each device has one Engine: a queue per stream (keyed by the stream's
 * handle), the list of queues holding work, and counters of items issued and
 * run per stream, which is all an event or a synchronisation needs. The
 * worker takes the front item of one of the queues whose front is due —
 * picked at random, seeded, so the streams of a device interleave — runs it
 * without the lock, and counts it run. An item is due when its grace period
 * has passed or when someone waits on the device (`demand`); then everything
 * queued on the device runs, which keeps waiting simple and deadlock-free: a
 * waiter only ever waits for its own device's worker, which depends on no
 * one. Workers start with a device's first item and live for the process
 * (detached; the engines are never destroyed, so work issued from static
 * destructors still finds them). */
#include "streams.h"

#include "sim_api.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace qsim {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxDevices = 64; /* device_sim.cpp's limit */
constexpr long kDefaultDeferMs = 50;

struct Item {
    Work work;
    Clock::time_point due;
};

struct Queue {
    std::deque<Item> items;
    uint64_t issued = 0, run = 0;
};

struct Engine {
    std::mutex mu;
    std::condition_variable wake;     /* the worker: new work, or demand */
    std::condition_variable finished; /* waiters: an item ran */
    std::unordered_map<const void *, Queue> queues; /* references stay valid as it grows */
    std::vector<Queue *> busy;                      /* queues holding items */
    uint64_t pending = 0;                           /* items queued, all streams */
    int demand = 0;                                 /* threads waiting on this device */
    bool started = false;
    uint64_t rng = 0;
    qilin_status error = QILIN_OK; /* the first failure of deferred work, until reported */
    std::string message;
    std::unordered_map<const void *, std::vector<Work>> captures; /* streams capturing a graph */
};

struct Settings {
    bool deferred = true;
    long defer_ms = kDefaultDeferMs;
    uint64_t seed = 1;
};

long env_long(const char *name, long fallback) {
    const char *s = std::getenv(name);
    if (s == nullptr || *s == '\0') return fallback;
    char *end = nullptr;
    long v = std::strtol(s, &end, 10);
    return (*end == '\0' && v >= 0) ? v : fallback;
}

const Settings &settings() {
    static const Settings s = [] {
        Settings t;
        t.deferred = env_long("QILIN_SIM_DEFERRED", 1) != 0;
        t.defer_ms = env_long("QILIN_SIM_DEFER_MS", kDefaultDeferMs);
        t.seed = env_u64("QILIN_SIM_SEED", 1); /* read as the thread schedule reads it */
        return t;
    }();
    return s;
}

Engine *engines() {
    static Engine *e = new Engine[kMaxDevices]; /* never destroyed: workers outlive main */
    return e;
}

thread_local int worker_of = -1; /* the device whose worker this thread is */

uint64_t next_random(Engine &e) {
    e.rng = splitmix64(e.rng);
    return e.rng;
}

/* Grace period of one item: [1/2, 3/2] of QILIN_SIM_DEFER_MS, from the seed. */
Clock::duration grace(Engine &e) {
    long ms = settings().defer_ms;
    if (ms == 0) return Clock::duration::zero();
    long micros = ms * 500 + (long)(next_random(e) % (uint64_t)(ms * 1000 + 1));
    return std::chrono::microseconds(micros);
}

/* The queue to run next, or null with *wait_until set to when one is due. */
Queue *pick_due(Engine &e, Clock::time_point *wait_until) {
    Clock::time_point now = Clock::now(), earliest = Clock::time_point::max();
    std::vector<size_t> due;
    for (size_t i = 0; i < e.busy.size(); i++) {
        Clock::time_point t = e.busy[i]->items.front().due;
        if (e.demand > 0 || t <= now)
            due.push_back(i);
        else
            earliest = std::min(earliest, t);
    }
    *wait_until = earliest;
    if (due.empty()) return nullptr;
    return e.busy[due[next_random(e) % due.size()]];
}

void worker_main(int device) {
    worker_of = device;
    Engine &e = engines()[device];
    std::unique_lock<std::mutex> lock(e.mu);
    for (;;) {
        Clock::time_point wait_until;
        Queue *q = pick_due(e, &wait_until);
        if (q == nullptr) {
            if (wait_until == Clock::time_point::max())
                e.wake.wait(lock);
            else
                e.wake.wait_until(lock, wait_until);
            continue;
        }
        Work work = std::move(q->items.front().work);
        q->items.pop_front();
        if (q->items.empty()) e.busy.erase(std::find(e.busy.begin(), e.busy.end(), q));
        lock.unlock();
        qilin_status st = work();
        std::string message = st != QILIN_OK ? qilin_last_error() : std::string();
        work = nullptr; /* release what it captured outside the lock */
        lock.lock();
        if (st != QILIN_OK && e.error == QILIN_OK) {
            e.error = st;
            e.message = message;
        }
        q->run++;
        e.pending--;
        e.finished.notify_all();
    }
}

qilin_status take_error_locked(Engine &e, int device) {
    if (e.error == QILIN_OK) return QILIN_OK;
    qilin_status st = e.error;
    e.error = QILIN_OK;
    return qilin_error(st, "%s (failed asynchronously on sim device %d; reported at the next "
                           "synchronisation)",
                       e.message.c_str(), device);
}

/* Waits, lock held, until done() holds; the worker runs everything meanwhile. */
template <class Done> qilin_status wait_locked(Engine &e, int device, std::unique_lock<std::mutex> &lock, Done done) {
    if (done()) return QILIN_OK;
    if (worker_of == device)
        return qilin_error(QILIN_ERR_INTERNAL,
                           "sim: work running on device %d's stream worker waited for that device "
                           "(it would wait for itself)",
                           device);
    e.demand++;
    e.wake.notify_one();
    e.finished.wait(lock, done);
    e.demand--;
    return QILIN_OK;
}

} // namespace

bool deferred() { return settings().deferred; }

qilin_status submit(int device, const void *key, Work work) {
    Engine &e = engines()[device];
    {
        std::lock_guard<std::mutex> lock(e.mu);
        auto c = e.captures.find(key);
        if (c != e.captures.end()) { /* recorded for replay, not run */
            c->second.push_back(std::move(work));
            return QILIN_OK;
        }
    }
    if (!deferred()) return work();
    std::lock_guard<std::mutex> lock(e.mu);
    if (!e.started) {
        e.rng = splitmix64(settings().seed * 0x100 + (uint64_t)device);
        try {
            std::thread(worker_main, device).detach();
        } catch (const std::system_error &err) {
            return qilin_error(QILIN_ERR_INTERNAL, "sim: cannot start the stream worker of device %d: %s",
                               device, err.what());
        }
        e.started = true;
    }
    Queue &q = e.queues[key];
    if (q.items.empty()) e.busy.push_back(&q);
    q.items.push_back(Item{std::move(work), Clock::now() + grace(e)});
    q.issued++;
    /* A worker with queued work already sleeps until the earliest is due (a
     * later item may wait up to one grace period longer); waking it for
     * every launch would cost a context switch each. */
    if (e.pending++ == 0 || e.demand > 0) e.wake.notify_one();
    return QILIN_OK;
}

qilin_status capture_begin(int device, const void *key) {
    Engine &e = engines()[device];
    std::lock_guard<std::mutex> lock(e.mu);
    if (!e.captures.emplace(key, std::vector<Work>()).second)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_stream_begin_capture: stream %p of sim device %d is already capturing", key,
                           device);
    return QILIN_OK;
}

bool capture_end(int device, const void *key, std::vector<Work> *recorded) {
    Engine &e = engines()[device];
    std::lock_guard<std::mutex> lock(e.mu);
    auto c = e.captures.find(key);
    if (c == e.captures.end()) return false;
    *recorded = std::move(c->second);
    e.captures.erase(c);
    return true;
}

bool capturing(int device, const void *key) {
    Engine &e = engines()[device];
    std::lock_guard<std::mutex> lock(e.mu);
    return e.captures.count(key) != 0;
}

uint64_t issued(int device, const void *key) {
    if (!deferred()) return 0;
    Engine &e = engines()[device];
    std::lock_guard<std::mutex> lock(e.mu);
    auto it = e.queues.find(key);
    return it == e.queues.end() ? 0 : it->second.issued;
}

qilin_status wait_stream(int device, const void *key, uint64_t count) {
    if (!deferred()) return QILIN_OK;
    Engine &e = engines()[device];
    std::unique_lock<std::mutex> lock(e.mu);
    Queue &q = e.queues[key];
    QILIN_TRY(wait_locked(e, device, lock, [&] { return q.run >= count; }));
    return take_error_locked(e, device);
}

qilin_status wait_device(int device, bool take) {
    if (!deferred()) return QILIN_OK;
    Engine &e = engines()[device];
    std::unique_lock<std::mutex> lock(e.mu);
    /* Everything issued so far, per stream (a stream whose last item is
     * running is no longer busy but has not run it yet). */
    std::vector<std::pair<Queue *, uint64_t>> targets;
    for (auto &kv : e.queues)
        if (kv.second.run < kv.second.issued) targets.emplace_back(&kv.second, kv.second.issued);
    QILIN_TRY(wait_locked(e, device, lock, [&] {
        for (auto &t : targets)
            if (t.first->run < t.second) return false;
        return true;
    }));
    return take ? take_error_locked(e, device) : QILIN_OK;
}

qilin_status take_error(int device) {
    if (!deferred()) return QILIN_OK;
    Engine &e = engines()[device];
    std::lock_guard<std::mutex> lock(e.mu);
    return take_error_locked(e, device);
}

} // namespace qsim

extern "C" int qsim_deferred(void) { return qsim::deferred() ? 1 : 0; }
