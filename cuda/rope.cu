/* rope.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_rope(const qilin_rope_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_rope: not implemented yet");
}
extern "C" qilin_status qilin_rope_inv_freq(const qilin_rope_config *, float *, float *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_rope_inv_freq: not implemented yet");
}
extern "C" double qilin_yarn_mscale(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0; }
