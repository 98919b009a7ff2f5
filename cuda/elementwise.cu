/* elementwise.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_add_bias(const qilin_add_bias_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_add_bias: not implemented yet");
}
extern "C" qilin_status qilin_add(const qilin_add_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_add: not implemented yet");
}
extern "C" qilin_status qilin_sigmoid_gate_add(const qilin_sigmoid_gate_add_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_sigmoid_gate_add: not implemented yet");
}
extern "C" qilin_status qilin_cast(const qilin_cast_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_cast: not implemented yet");
}
extern "C" qilin_status qilin_gather_rows(const qilin_gather_rows_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_gather_rows: not implemented yet");
}
