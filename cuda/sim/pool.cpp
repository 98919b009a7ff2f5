/* pool.cpp — the helper threads that run a launch's blocks (pool.h).
 *
 * One process-wide pool: a list of the tasks (launches) in progress, a count
 * of helpers at work, and detached helper threads that sleep until a task is
 * posted. A free helper joins the task with work left that has the fewest
 * helpers, so concurrent launches (several devices' stream workers) share the
 * helpers instead of queueing behind one another. At most pool_threads() - 1
 * helpers work at once, whatever the number of launchers. */
#include "pool.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "sim_api.h"
#include "streams.h"

namespace qsim {
namespace {

constexpr int kMaxThreads = 64;     /* what QILIN_SIM_THREADS or qsim_set_threads may ask */
constexpr int kDefaultCap = 16;     /* the default's cap: fibers are cheap, threads are not */

struct Pool {
    std::mutex mu;
    std::condition_variable posted; /* helpers: a task was posted */
    std::condition_variable left;   /* launchers: a helper left a task */
    std::vector<Task *> tasks;      /* tasks in progress */
    int started = 0;                /* helper threads started */
    int busy = 0;                   /* helpers inside a task */
};

Pool &pool() {
    static Pool *p = new Pool; /* never destroyed: helpers outlive main */
    return *p;
}

std::atomic<int> requested{0}; /* qsim_set_threads; 0: not called */

int default_threads() {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int fallback = cpus < 1 ? 1 : (int)std::min<long>(cpus, kDefaultCap);
    uint64_t n = env_u64("QILIN_SIM_THREADS", 0);
    if (n == 0) return fallback; /* unset, malformed or 0 */
    return (int)std::min<uint64_t>(n, kMaxThreads);
}

/* The task with work left and the fewest helpers, or null. */
Task *pick_task(Pool &p) {
    Task *best = nullptr;
    for (Task *t : p.tasks)
        if (t->has_work() && (!best || t->helpers < best->helpers)) best = t;
    return best;
}

void helper_main() {
    Pool &p = pool();
    std::unique_lock<std::mutex> lock(p.mu);
    for (;;) {
        Task *task = p.busy < pool_threads() - 1 ? pick_task(p) : nullptr;
        if (!task) {
            p.posted.wait(lock);
            continue;
        }
        task->helpers++;
        p.busy++;
        lock.unlock();
        task->share();
        lock.lock();
        task->helpers--; /* after this the launcher may return and free the task */
        p.busy--;
        p.left.notify_all();
    }
}

/* Starts helpers up to the pool size, lock held. A thread that cannot start
 * only costs speed: the launcher runs whatever the helpers do not. */
void start_helpers(Pool &p) {
    while (p.started < pool_threads() - 1) {
        try {
            std::thread(helper_main).detach();
        } catch (const std::system_error &) {
            return;
        }
        p.started++;
    }
}

} // namespace

int pool_threads() {
    static const int from_env = default_threads();
    int n = requested.load(std::memory_order_relaxed);
    return n > 0 ? n : from_env;
}

void pool_run(Task &task, unsigned long long items) {
    const int threads = pool_threads();
    if (threads <= 1 || items <= 1) {
        task.share();
        return;
    }
    Pool &p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mu);
        start_helpers(p);
        p.tasks.push_back(&task);
    }
    /* a small grid wakes no more helpers than it has blocks for */
    for (unsigned long long k = 1; k < items && k < (unsigned long long)threads; k++) p.posted.notify_one();
    task.share();
    std::unique_lock<std::mutex> lock(p.mu);
    p.tasks.erase(std::find(p.tasks.begin(), p.tasks.end(), &task));
    p.left.wait(lock, [&] { return task.helpers == 0; });
}

} // namespace qsim

extern "C" void qsim_set_threads(int threads) {
    qsim::requested.store(threads < 1 ? 0 : std::min(threads, qsim::kMaxThreads), std::memory_order_relaxed);
}

extern "C" int qsim_threads(void) { return qsim::pool_threads(); }
