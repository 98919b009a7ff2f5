/* tensor_core_sim.h — between the scheduler and the emulation of
 * tensor_core.cuh's instructions (tensor_core_sim.cpp). Internal to cuda/sim. */
#ifndef QILIN_SIM_TENSOR_CORE_SIM_H
#define QILIN_SIM_TENSOR_CORE_SIM_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sim.h"

namespace qsim {

/* One cp.async in flight: its source bytes (read when issued, zero-filled
 * past src_bytes) wait here until the thread's cp_async_wait lands them. */
struct PendingCopy {
    void *dst;
    int bytes;
    int group; /* 0 while the group is open, else its commit number (1, 2, ...) */
    unsigned char data[16];
};

/* A thread's asynchronous copies (kept by the scheduler per CUDA thread). */
struct AsyncCopies {
    std::vector<PendingCopy> pending;
    int committed = 0; /* groups committed so far */
    void reset() {
        pending.clear();
        committed = 0;
    }
};

/* The calling CUDA thread's copies (scheduler.cpp). */
AsyncCopies &current_async_copies(const char *what);

/* Writes every committed copy of groups older than the newest `keep_newer`
 * to its destination and forgets it; keep_newer < 0 lands everything, open
 * group included (a thread's exit: the hardware completes its copies). */
void land_copies(AsyncCopies &copies, int keep_newer);

/* Resolves a warp's mma or ldmatrix once every lane has arrived: lane l's
 * operands are at operands[l] (all 32 lanes are present). Returns "" or the
 * reason the instruction is malformed (differing variants, a misaligned or
 * global ldmatrix row address), which the scheduler reports for the block. */
std::string resolve_matrix_op(WarpOp op, void *const operands[32], const unsigned char *smem,
                              size_t smem_bytes);

/* Whether [p, p + bytes) lies inside one live device allocation, and whether p
 * is inside any (device_sim.cpp). */
bool device_range_live(const void *p, size_t bytes);
bool is_device_address(const void *p);

} // namespace qsim

#endif /* QILIN_SIM_TENSOR_CORE_SIM_H */
