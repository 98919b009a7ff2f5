/* mla.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_mla_append(const qilin_mla_append_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_mla_append: not implemented yet");
}
extern "C" qilin_status qilin_mla_attention(const qilin_mla_attention_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_mla_attention: not implemented yet");
}
extern "C" qilin_status qilin_mla_expand_k(const qilin_mla_expand_k_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_mla_expand_k: not implemented yet");
}
extern "C" size_t qilin_mla_attention_workspace(int, int, int, int) { return 0; }
