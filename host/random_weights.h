/* random_weights.h — a checkpoint made from a descriptor alone, with seeded
 * random values (`qilin run --random-weights`; vLLM's "dummy" load format):
 * real-size models can be timed and their launches inspected with nothing
 * downloaded but config.json.
 *
 * The tensors are those a release of the model holds, in its format:
 *   - every spec of the descriptor, BF16 (F32 for the router's score bias);
 *   - quantization_config fp8 (DeepSeek-V3, Kimi K2): the linear weights of
 *     attention and MLPs as F8_E4M3 with F32 W.weight_scale_inv block scales
 *     (weight_block_size, 128 x 128 by default); embedding, lm_head, router
 *     and norms stay BF16, as in the release;
 *   - compressed-tensors with a group size (Kimi K2-Thinking): the routed
 *     experts' weights as W.weight_packed I32 [out, in/8] + W.weight_scale
 *     BF16 [out, in/group] + W.weight_shape I32 [2]; the rest BF16. An input
 *     width not a multiple of the group is refused.
 * Values: linear weights ~ N(0, 1/fan_in) (FP8: e4m3 of N(0, 1) times a scale
 * of 1/sqrt(fan_in); INT4: uniform nibbles, scale 1/(4.6 sqrt(fan_in))), norm
 * weights 1, biases 0. Each tensor's values depend on the seed and its name
 * only (every 4 MiB of a tensor has its own generator stream, so the fill
 * runs on all online CPUs and gives the same bytes on any number of them). The data lives in one anonymous MAP_NORESERVE mapping; when `fill` is
 * false (the device is in dry-run, qilin_device_dry_run) nothing is written
 * but the INT4 shape companions, so the weights cost no RAM. */
#ifndef QILIN_HOST_RANDOM_WEIGHTS_H
#define QILIN_HOST_RANDOM_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "host/checkpoint.h"
#include "host/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* `d` must outlive the checkpoint only while binding (names are copied). */
qilin_status qilin_checkpoint_random(const qilin_model_desc *d, uint64_t seed, bool fill, qilin_checkpoint **out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_RANDOM_WEIGHTS_H */
