/* attention_prefill_planted.cu — the tensor-core prefill kernel with one
 * synchronisation removed on purpose (attn_mma::Plant), for
 * tests/test_attention.cpp: the emulator must catch each under some seed.
 * bf16, head dims exactly 64. */
#include "cuda/attention_prefill.cuh"
#include "tests/attention_prefill_planted.h"

qilin_status launch_prefill_planted(const qilin_attention_args *a, int plant) {
    using namespace attn_mma;
    switch (plant) {
    case PLANT_NO_WAIT:
        return launch_prefill_mma<__nv_bfloat16, BucketD64::Exact, Plant::no_wait>(a, nullptr);
    case PLANT_NO_BARRIER:
        return launch_prefill_mma<__nv_bfloat16, BucketD64::Exact, Plant::no_barrier>(a, nullptr);
    default:
        return launch_prefill_mma<__nv_bfloat16, BucketD64::Exact, Plant::none>(a, nullptr);
    }
}
