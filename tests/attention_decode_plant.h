/* attention_decode_plant.h — the tensor-core decode kernel with a planted
 * synchronisation bug (tests/attention_decode_plant.cu), for the tests that
 * prove the emulator catches it. */
#ifndef QILIN_TESTS_ATTENTION_DECODE_PLANT_H
#define QILIN_TESTS_ATTENTION_DECODE_PLANT_H

#include "cuda/attention.h"

enum DecodePlant { kDecodeClean = 0, kDecodeNoCpAsyncWait = 1, kDecodeNoStageBarrier = 2 };

/* GQA decode of a bf16 batch (aligned, no workspace: one split) through
 * attention_decode_tc_kernel<bf16, GqaShape, plant>. */
qilin_status attention_decode_planted(const qilin_attention_args *args, DecodePlant plant);

#endif
