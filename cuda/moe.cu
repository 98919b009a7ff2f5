/* moe.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_moe_route(const qilin_moe_route_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_moe_route: not implemented yet");
}
extern "C" qilin_status qilin_moe_experts(const qilin_moe_experts_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_moe_experts: not implemented yet");
}
extern "C" size_t qilin_moe_experts_workspace(int, int, int, int, int, qilin_dtype) { return 0; }
