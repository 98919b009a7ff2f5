/* sim_api.h — what the rest of the sim backend (device layer) needs from the
 * emulator's scheduler. C linkage so device_sim.cpp and tests can use it. */
#ifndef QILIN_SIM_API_H
#define QILIN_SIM_API_H

#include <stddef.h>

#include "../status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Status of the calling thread's last kernel launch, cleared by the call
 * (like cudaGetLastError). On failure the thread's error message names the
 * kernel and what went wrong (divergent barrier, bad launch shape, trap). */
qilin_status qsim_take_launch_status(void);

/* Number of fiber switches (into or out of a thread) made by the launches
 * that have finished, on any host thread (in deferred mode kernels run on the
 * devices' workers: synchronise first). */
unsigned long long qsim_switch_count(void);

/* Number of kernel launches issued (QILIN_LAUNCH calls that reached the
 * emulator), on any host thread: the launch log's tests count lines against it. */
unsigned long long qsim_launch_count(void);

/* The dynamic shared memory a block may opt in to on the emulated GPU model
 * (QILIN_SIM_PROFILE; device_sim.cpp). */
size_t qsim_max_dynamic_smem(void);

/* Dry-run (device_sim.cpp's header): launches are checked and logged but not
 * run, device allocations are lazy MAP_NORESERVE reservations, copies into
 * device memory are skipped and copies out of it read zeros. 1 when on: under
 * QILIN_SIM_DRY_RUN=1, or after qsim_set_dry_run(1). Only the sim has it. */
int qsim_dry_run(void);
/* Turns dry-run on (1) or off (0) process-wide from now on; < 0 restores
 * QILIN_SIM_DRY_RUN. Allocations keep the kind they were made with. */
void qsim_set_dry_run(int on);

/* Reseeds the calling thread's scheduler (the order in which fibers run
 * between scheduling points): its next launch's seed, from which each block's
 * schedule is drawn (by block index). The default seed is QILIN_SIM_SEED,
 * else 1. */
void qsim_set_seed(unsigned long long seed);

/* Number of host threads that run a launch's blocks (pool.h): `threads` from
 * now on, process-wide; < 1 restores QILIN_SIM_THREADS (default: the online
 * CPUs, at most 16). A block's schedule does not depend on it. */
void qsim_set_threads(int threads);
/* The number in force. */
int qsim_threads(void);

/* 1 when streams run their work later on per-device workers (the default),
 * 0 under QILIN_SIM_DEFERRED=0, when work runs as it is issued (streams.h). */
int qsim_deferred(void);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_SIM_API_H */
