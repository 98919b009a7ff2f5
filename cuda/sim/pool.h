/* pool.h — the host threads that run a launch's blocks side by side.
 *
 * A launch with several blocks is a Task: whoever calls pool_run (the
 * launching thread, or the device's stream worker in deferred mode) works on
 * it, and so do up to QILIN_SIM_THREADS - 1 helper threads shared by the whole
 * process. Each participant takes items (blocks) one at a time until none are
 * left. The caller always works on its own task, so a launch progresses even
 * when every helper is busy with other devices' launches: no deadlock, and
 * never more than one thread per concurrent launcher plus the helpers.
 *
 * QILIN_SIM_THREADS: number of host threads per launch (default: the online
 * CPUs, at most 16; 1 runs every block on the calling thread, as before the
 * pool existed). qsim_set_threads (sim_api.h) overrides it. Helpers start on
 * the first launch that can use them and live for the process (detached, like
 * the stream workers). */
#ifndef QILIN_SIM_POOL_H
#define QILIN_SIM_POOL_H

namespace qsim {

struct Task {
    /* True while share() would find an item to take; read without a lock. */
    virtual bool has_work() const = 0;
    /* Takes and runs items until none are left (or the task gave up). Called
     * once by the launcher and at most once by each helper. */
    virtual void share() = 0;
    int helpers = 0; /* helpers inside share(); guarded by the pool's lock */
    virtual ~Task() = default;
};

/* The pool size in force: the last qsim_set_threads, else QILIN_SIM_THREADS,
 * else the default; >= 1. */
int pool_threads();

/* Runs task.share() on the calling thread, and on free helpers when the pool
 * has more than one thread (waking at most items - 1 of them: the task has
 * `items` to take); returns once every participant has left it. */
void pool_run(Task &task, unsigned long long items);

} // namespace qsim

#endif /* QILIN_SIM_POOL_H */
