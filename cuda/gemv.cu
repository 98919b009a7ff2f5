/* gemv.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_gemv(const qilin_gemv_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_gemv: not implemented yet");
}
