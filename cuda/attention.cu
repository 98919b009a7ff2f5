/* attention.cu — placeholder: the launchers return QILIN_ERR_UNSUPPORTED until the
 * kernels land (first-light issue). */
#include <cmath>

#include "common.cuh"
#include "kernels.h"

extern "C" qilin_status qilin_kv_append(const qilin_kv_append_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_kv_append: not implemented yet");
}
extern "C" qilin_status qilin_attention_prefill(const qilin_attention_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_attention_prefill: not implemented yet");
}
extern "C" qilin_status qilin_attention_decode(const qilin_attention_args *, qilin_stream *) {
    return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_attention_decode: not implemented yet");
}
extern "C" size_t qilin_attention_decode_workspace(int, int, int, int) { return 0; }
