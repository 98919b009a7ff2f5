/* pool_kernels.h — launchers of tests/pool_kernels.cu, the kernels that check
 * the emulator's pool of host threads (tests/test_sim_pool.cpp). */
#ifndef QILIN_TESTS_POOL_KERNELS_H
#define QILIN_TESTS_POOL_KERNELS_H

#include <vector_types.h>

#include "cuda/device.h"

/* Every block records, in hashes[its linear index], a hash of the order in
 * which its threads reached `rounds` barriers and warp shuffles, and every
 * thread writes a value computed through those shuffles to out[its global
 * linear index]. grid.x*y*z hashes, grid * block.x outputs (1-D blocks). */
qilin_status launch_schedule_hash(unsigned long long *hashes, unsigned *out, dim3 grid, int threads, int rounds);

/* Thread 0 of each block whose traps[linear block index] is nonzero calls
 * __trap() after 4 + traps[block] barriers; the other blocks write 1 to
 * done[block]. */
qilin_status launch_trap_blocks(const int *traps, int *done, dim3 grid, int threads);

/* Cross-block atomics: every thread adds 1 to *count; each block writes the
 * sum of its slice of `in` to partial[block], fences, and takes a ticket; the
 * block with the last ticket adds the partials into *total and rearms
 * *tickets. `in` holds blocks * threads ints. */
qilin_status launch_last_block_sum(const int *in, int *partial, unsigned *tickets, long long *total,
                                   unsigned *count, int blocks, int threads);

#endif /* QILIN_TESTS_POOL_KERNELS_H */
