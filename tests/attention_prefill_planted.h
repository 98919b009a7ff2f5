/* attention_prefill_planted.h — launcher of tests/attention_prefill_planted.cu. */
#ifndef QILIN_TESTS_ATTENTION_PREFILL_PLANTED_H
#define QILIN_TESTS_ATTENTION_PREFILL_PLANTED_H

#include "cuda/attention.h"

enum { PLANT_NONE = 0, PLANT_NO_WAIT = 1, PLANT_NO_BARRIER = 2 };

/* The bf16 tensor-core prefill (head dims <= 64, aligned rows) with the
 * planted defect; checks nothing about the arguments. */
qilin_status launch_prefill_planted(const qilin_attention_args *a, int plant);

#endif
