/* plan_workspace.c — the forward pass's per-step buffers on one GPU.
 *
 * forward_load.c allocates exactly these (it takes the kernel workspaces
 * and the row width from here), and qilin_plan_memory counts them, so
 * `qilin plan` and a loaded model agree on what a GPU holds besides its
 * weights and KV cache. All sizes are for T = tokens per step, S = sequences
 * (KV slots), ctx = positions per sequence; see plan.h. */
#include <string.h>

#include "cuda/attention.h"
#include "cuda/mla.h"
#include "cuda/moe.h"
#include "cuda/sampling.h"
#include "host/plan.h"

static int imax(int a, int b) { return a > b ? a : b; }

/* The widest intermediate row of a step: attention projections (NeoX's
 * fused qkv), MLA's latents and absorbed heads, gate+up of every MLP kind. */
static int row_width(const qilin_model_desc *d, int tp, bool ep) {
    int nh = d->n_heads / tp;
    int w = imax(d->hidden, 3 * nh * d->head_dim);
    w = imax(w, nh * d->head_dim_v);
    w = imax(w, 2 * (d->ffn_dim / tp));
    w = imax(w, 2 * (d->shared_ffn_dim / tp));
    w = imax(w, 2 * (ep ? d->moe_ffn_dim : d->moe_ffn_dim / tp));
    if (d->attn == QILIN_ATTN_MLA) {
        w = imax(w, d->q_lora_rank);
        w = imax(w, d->kv_lora_rank + d->qk_rope_dim);
        w = imax(w, nh * d->kv_lora_rank); /* absorbed q and output */
    }
    return w;
}

/* All-to-all dispatch (plan.h's ep_all_to_all): a rank routes at most
 * S = ceil(T / tp) rows and sends a destination at most min(top_k, E) of
 * each (top_k distinct experts, E of them there), so every chunk holds
 * C = S min(top_k, E) rows. Buffers: send and receive rows [tp, C, H],
 * their expert ids, fp32 weights of 1 for the experts' top-1 call, the
 * positions [S, top_k], this rank's counts [tp] and the gathered [tp, tp]. */
static uint64_t all_to_all_bytes(int tp, int T, int top_k, int E, uint64_t H, uint64_t a, int *chunk) {
    uint64_t S = (uint64_t)(T + tp - 1) / (uint64_t)tp, n = (uint64_t)tp;
    uint64_t C = S * (uint64_t)(top_k < E ? top_k : E);
    *chunk = (int)C;
    return 2 * n * C * H * a + 3 * n * C * 4 + S * (uint64_t)top_k * 4 + n * 4 + n * n * 4;
}

static void attention_ws(const qilin_model_desc *d, int tp, int T, int S, int ctx, uint64_t a,
                         qilin_workspace_plan *w) {
    int nh = d->n_heads / tp;
    if (d->attn != QILIN_ATTN_MLA) {
        w->attn_ws = qilin_attention_decode_workspace(S, nh, d->head_dim_v, ctx);
        return;
    }
    uint64_t mla = qilin_mla_attention_workspace(T, nh, d->kv_lora_rank, ctx);
    uint64_t naive = qilin_attention_decode_workspace(S, nh, d->v_head_dim, ctx);
    w->attn_ws = mla > naive ? mla : naive;
    w->mla_kvb = (uint64_t)ctx * (uint64_t)nh * (uint64_t)(d->qk_nope_dim + d->v_head_dim) * a;
    w->mla_k = (uint64_t)ctx * (uint64_t)nh * (uint64_t)(d->qk_nope_dim + d->qk_rope_dim) * a;
}

void qilin_plan_workspace(const qilin_plan *p, int gpu, int T, int S, int ctx, int act_elem_bytes,
                          qilin_workspace_plan *w) {
    const qilin_model_desc *d = p->desc;
    int tp = p->opt.tp;
    bool ep = p->opt.ep;
    uint64_t a = (uint64_t)act_elem_bytes, t = (uint64_t)T, s = (uint64_t)S, H = (uint64_t)d->hidden;
    memset(w, 0, sizeof *w);
    w->width = row_width(d, tp, ep);
    w->activations = 3 * t * H * a + 4 * t * (uint64_t)w->width * a;
    attention_ws(d, tp, T, S, ctx, a, w);
    w->attention = w->attn_ws + w->mla_kvb + w->mla_k;
    if (d->n_experts > 0) {
        int E = ep ? d->n_experts / tp : d->n_experts, Fe = ep ? d->moe_ffn_dim : d->moe_ffn_dim / tp;
        uint64_t k = (uint64_t)d->top_k, a2a = 0;
        qilin_dtype dt = a == 4 ? QILIN_F32 : QILIN_BF16;
        bool all_to_all = ep && p->opt.ep_all_to_all && tp > 1;
        if (all_to_all) { /* the experts see the received rows, one expert each */
            a2a = all_to_all_bytes(tp, T, d->top_k, E, H, a, &w->ep_chunk);
            w->moe_ws = qilin_moe_experts_workspace(tp * w->ep_chunk, 1, E, d->hidden, Fe, dt);
        } else {
            w->moe_ws = qilin_moe_experts_workspace(T, d->top_k, E, d->hidden, Fe, dt);
        }
        /* router logits, top-k ids and weights (+ local ids in replicated ep), expert counts */
        w->routing = t * (uint64_t)d->n_experts * 4 + t * k * (ep && !all_to_all ? 12 : 8) +
                     (uint64_t)d->n_layers * E * 4 + w->moe_ws + a2a;
    }
    w->sample_ws = qilin_sample_workspace(S, d->vocab);
    uint64_t Vp = (uint64_t)(d->vocab + tp - 1) / (uint64_t)tp;
    /* full rows, sampling (ids, params, workspace, the repetition-penalty history of every slot and
     * its offsets), and with tp > 1 the row ids of the reorder */
    if (gpu == 0)
        w->logits = t * (uint64_t)d->vocab * 4 + s * (4 + sizeof(qilin_sampling_params)) + w->sample_ws +
                    s * (uint64_t)ctx * 4 + (s + 1) * 4 + (tp > 1 ? 4 * t : 0);
    if (tp > 1) w->logits += t * Vp * 4 + (uint64_t)tp * t * Vp * 4; /* own columns, all-gathered block */
    /* ids, positions, slots, logit rows [T]; per sequence {0, n_q, kv_len, 0}, kv_len, slot; q starts */
    w->indices = 16 * t + 16 * s + 8 * s + 4 * (s + 1) + (uint64_t)(d->rope.rot_dim / 2) * 4;
    w->total = w->activations + w->attention + w->routing + w->logits + w->indices;
}
