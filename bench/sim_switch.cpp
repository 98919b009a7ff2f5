/* sim_switch.cpp — fiber switches per second of the SIMT emulator.
 *
 * Runs a kernel of 1024-thread blocks with two barriers per loop iteration
 * (bench/sim_switch_kernels.cu) on QILIN_SIM_THREADS host threads — the
 * device's stream worker, waited for by a synchronisation, and the pool's
 * helpers (QILIN_SIM_THREADS=1 with `taskset -c 0`: one core) — and
 * divides the emulator's switch counter by wall time. A "switch" is one
 * context switch, scheduler -> fiber or fiber -> scheduler; every barrier
 * costs each thread two. Also reports the time per barrier per thread.
 *
 *   bench_sim_switch [blocks=4] [iters=200]
 * Whole-model tests run through this emulator, so this figure is CI's speed. */
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/device.h"
#include "cuda/sim/sim_api.h"

qilin_status launch_barrier_loop_bench(float *data, int blocks, int iters);

int main(int argc, char **argv) {
    int blocks = argc > 1 ? atoi(argv[1]) : 4;
    int iters = argc > 2 ? atoi(argv[2]) : 200;
    if (blocks < 1 || iters < 1) return fprintf(stderr, "usage: bench_sim_switch [blocks] [iters]\n"), 2;
    size_t n = (size_t)blocks * 1024;
    float *d = nullptr;
    std::vector<float> host(n, 1.0f);
    if (qilin_malloc((void **)&d, n * sizeof(float), "bench data") != QILIN_OK ||
        qilin_memcpy_h2d(d, host.data(), n * sizeof(float), nullptr) != QILIN_OK)
        return fprintf(stderr, "bench: %s\n", qilin_last_error()), 1;
    if (launch_barrier_loop_bench(d, 1, 2) != QILIN_OK || /* warm-up: maps the fiber stacks */
        qilin_device_synchronize() != QILIN_OK)
        return fprintf(stderr, "bench: %s\n", qilin_last_error()), 1;

    double best = 0, best_s = 0;
    unsigned long long best_sw = 0;
    for (int rep = 0; rep < 3; rep++) {
        unsigned long long s0 = qsim_switch_count();
        auto t0 = std::chrono::steady_clock::now();
        if (launch_barrier_loop_bench(d, blocks, iters) != QILIN_OK || qilin_device_synchronize() != QILIN_OK)
            return fprintf(stderr, "bench: %s\n", qilin_last_error()), 1;
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        unsigned long long sw = qsim_switch_count() - s0;
        if (sw / s > best) {
            best = sw / s;
            best_s = s;
            best_sw = sw;
        }
    }
    double barriers = (double)blocks * 1024 * (2.0 * iters);
    printf("| blocks x threads | barriers/thread | switches | seconds | switches/s | ns per thread-barrier |\n");
    printf("| %d x 1024 | %d | %llu | %.3f | %.1f M | %.1f |\n", blocks, 2 * iters, best_sw, best_s, best / 1e6,
           best_s * 1e9 / barriers);
    printf("host threads: %d (QILIN_SIM_THREADS)\n", qsim_threads());
    printf("target: >= 10 M switches/s on one core -> %s\n",
           qsim_threads() != 1 ? "not measured (needs QILIN_SIM_THREADS=1)" : best >= 10e6 ? "met" : "NOT met");
    qilin_free(d);
    return 0;
}
