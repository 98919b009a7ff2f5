/* sampling.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_sample(const qilin_sample_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_sample: not implemented yet");
}
extern "C" size_t qilin_sample_workspace(int, int) { return 0; }
