/* forward.c — the model API: loading over one or several GPUs, one step
 * (qilin_forward), generation, and what a loaded model reports.
 *
 * Loading: the sharding plan (plan.h) validates the split (a clear error
 * names the numbers that do not divide and the degrees that would), one
 * communicator rank and one worker thread per GPU are created, the
 * checkpoint is bound once on the calling thread, and every worker uploads
 * its own slices and allocates its buffers (forward_load.c). A step is
 * checked and its index arrays built here, on the calling thread, before any
 * worker starts: a bad batch never leaves some ranks waiting in a collective.
 * Then every worker runs the step on its shard (forward_layers.c); rank 0
 * holds the full logits and samples. A rank that fails mid-step aborts the
 * local communicators, so the others fail in their next collective instead
 * of waiting, and the model refuses later steps. With several nodes
 * (forward_nodes.c) the batch goes to the other processes first and a
 * failing node makes the others abort their communicators likewise. */
#include "host/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cuda/launch_log.h"
#include "host/cluster.h"
#include "host/forward_impl.h"
#include "host/random_weights.h"

void qilin_model_options_default(qilin_model_options *o) {
    memset(o, 0, sizeof *o);
    o->dtype = QILIN_BF16;
    o->max_seqs = 8;
    o->max_ctx = 0;
    o->max_batch_tokens = 512;
    o->mla_mode = QILIN_MLA_AUTO;
    o->tp = 1;
    o->nodes = 1;
}

int qilin_model_default_ctx(const qilin_model_desc *d) {
    return d->max_position > 0 && d->max_position < QILIN_DEFAULT_CTX ? (int)d->max_position : QILIN_DEFAULT_CTX;
}

const qilin_model_desc *qilin_model_get_desc(const qilin_model *m) { return m->desc; }
const qilin_model_options *qilin_model_get_options(const qilin_model *m) { return &m->opt; }

uint64_t qilin_model_gpu_bytes(const qilin_model *m, int gpu) {
    return gpu >= 0 && gpu < m->n ? m->shards[gpu].bytes : 0;
}

uint64_t qilin_model_weight_bytes(const qilin_model *m, int gpu) {
    return gpu >= 0 && gpu < m->n ? m->shards[gpu].weight_bytes : 0;
}

const qilin_plan *qilin_model_get_plan(const qilin_model *m) { return m->plan; }

void qilin_model_forward_stats(const qilin_model *m, qilin_forward_stats *out) { *out = m->shards[0].stats; }

/* ---- loading ------------------------------------------------------------ */

typedef struct load_job {
    qilin_model *m;
    const qilin_bound_model *bound;
    const char *where;
} load_job;

static qilin_status load_shard(int rank, void *ctx) {
    load_job *j = ctx;
    return shard_load(&j->m->shards[rank], j->m->plan, j->bound, j->where);
}

static qilin_status free_shard(int rank, void *ctx) {
    qilin_model *m = ctx;
    shard_free(&m->shards[rank]);
    return QILIN_OK;
}

/* Binds the checkpoint first — a missing, misshaped or unexpected tensor is
 * reported before anything is uploaded — then every GPU uploads its slices. */
static qilin_status load_weights(qilin_model *m, const char *path) {
    qilin_checkpoint *ck = NULL;
    qilin_bound_model *bound = NULL;
    if (m->opt.random_weights) /* no values to make when the device will not compute (dry-run) */
        QILIN_TRY(qilin_checkpoint_random(m->desc, m->opt.random_seed, !qilin_device_dry_run(), &ck));
    else
        QILIN_TRY(qilin_checkpoint_open(path, &ck));
    qilin_status st = qilin_model_bind(m->desc, ck, &bound);
    load_job j = {.m = m, .bound = bound, .where = qilin_checkpoint_path(ck)};
    if (st == QILIN_OK) st = qilin_workers_run(m->workers, load_shard, &j);
    qilin_bound_model_free(bound);
    qilin_checkpoint_close(ck);
    return st;
}

/* The KV pool's block size and token count (forward.h has the defaults):
 * the default block is the kernels' key tile (32; MLA 64, FlashMLA's page)
 * halved until it divides max_ctx, so that slot s's identity table is the
 * old contiguous slot and the default pool holds max_seqs × max_ctx
 * positions exactly. */
static qilin_status resolve_kv_pool(const qilin_model_desc *d, qilin_model_options *o) {
    if (o->kv_block_size == 0) {
        o->kv_block_size = d->kv_lora_rank > 0 ? 64 : 32;
        while (o->max_ctx % o->kv_block_size != 0) o->kv_block_size /= 2;
    }
    if (o->kv_block_size > o->max_ctx)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: kv_block_size %d exceeds the context of %d positions",
                           o->kv_block_size, o->max_ctx);
    int64_t bs = o->kv_block_size, per_slot = (o->max_ctx + bs - 1) / bs;
    if (o->kv_cache_tokens == 0) o->kv_cache_tokens = (int64_t)o->max_seqs * per_slot * bs;
    int64_t blocks = (o->kv_cache_tokens + bs - 1) / bs;
    if (blocks > INT32_MAX)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: kv_cache_tokens %lld: %lld blocks of %d",
                           (long long)o->kv_cache_tokens, (long long)blocks, o->kv_block_size);
    o->kv_cache_tokens = blocks * bs;
    return QILIN_OK;
}

void qilin_model_kv_pool(const qilin_model *m, int *num_blocks, int *block_size) {
    *block_size = m->opt.kv_block_size;
    *num_blocks = (int)(m->opt.kv_cache_tokens / m->opt.kv_block_size);
}

static qilin_status check_options(const qilin_model_options *o) {
    if (o->dtype != QILIN_F32 && o->dtype != QILIN_BF16 && o->dtype != QILIN_F16)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: dtype %s: use f32, bf16 or f16",
                           qilin_dtype_name(o->dtype));
    if (o->max_seqs < 1 || o->max_batch_tokens < 1 || o->max_ctx < 0 || o->kv_block_size < 0 ||
        o->kv_cache_tokens < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: max_seqs %d, max_batch_tokens %d, max_ctx %d, kv_block_size %d, "
                           "kv_cache_tokens %lld",
                           o->max_seqs, o->max_batch_tokens, o->max_ctx, o->kv_block_size,
                           (long long)o->kv_cache_tokens);
    if (!(o->gpu_memory_utilization >= 0 && o->gpu_memory_utilization <= 1))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: gpu_memory_utilization %g: a fraction in (0, 1], or 0 for off",
                           o->gpu_memory_utilization);
    if (o->gpu_memory_utilization > 0 && o->kv_cache_tokens > 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: kv_cache_tokens %lld and gpu_memory_utilization %g both size the "
                           "KV pool; give one",
                           (long long)o->kv_cache_tokens, o->gpu_memory_utilization);
    if (!(o->comm_timeout_s >= 0 && o->comm_timeout_s <= 1e7))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: comm_timeout_s %g: seconds in (0, 1e7], or 0 for the default",
                           o->comm_timeout_s);
    if (o->ep_dispatch != QILIN_EP_REPLICATED && o->ep_dispatch != QILIN_EP_ALL_TO_ALL)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: unknown ep_dispatch %d",
                           (int)o->ep_dispatch);
    if (o->ep_dispatch == QILIN_EP_ALL_TO_ALL && (!o->ep || o->tp < 2))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: all-to-all expert dispatch needs expert parallelism (ep) over "
                           "tp >= 2 GPUs (ep %s, tp %d)",
                           o->ep ? "on" : "off", o->tp);
    int n_dev = 0;
    QILIN_TRY(qilin_device_count(&n_dev));
    if (o->tp < 1 || o->device < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: tp %d, device %d", o->tp, o->device);
    if (o->nodes < 1 || o->tp % o->nodes != 0 || o->node_rank < 0 || o->node_rank >= o->nodes)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: nodes %d, node_rank %d: tp %d must split evenly over the nodes and "
                           "node_rank be in 0 .. nodes - 1",
                           o->nodes, o->node_rank, o->tp);
    if (o->nodes > 1 && (!o->coordinator || !o->coordinator[0]))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_load: nodes %d needs a coordinator (\"host:port\" where node 0 listens)",
                           o->nodes);
    int local = o->tp / o->nodes;
    if (o->device + local > n_dev) /* a missing GPU is NO_DEVICE, as for one GPU (callers skip on it) */
        return qilin_error(QILIN_ERR_NO_DEVICE,
                           "qilin_model_load: %d GPU(s) from device %d wanted, but %d device(s) are present", local,
                           o->device, n_dev);
    return QILIN_OK;
}

/* The plan in the formats the forward pass uploads (qilin_upload_formats_fe:
 * the activation dtype, FP8 projections kept FP8, routed experts kept FP8 or
 * INT4 when qilin_experts_stay_quantized). */
static qilin_status make_plan(qilin_model *m) {
    qilin_plan_options po;
    qilin_plan_options_default(&po);
    po.tp = m->opt.tp;
    po.ep = m->opt.ep;
    po.ep_all_to_all = m->opt.ep_dispatch == QILIN_EP_ALL_TO_ALL;
    const char *fmt = m->opt.dtype == QILIN_F32 ? "fp32" : m->opt.dtype == QILIN_F16 ? "fp16" : "bf16";
    QILIN_TRY(qilin_weight_format_parse(fmt, &po.format));
    qilin_wfmt *formats = malloc((size_t)(m->desc->n_tensors > 0 ? m->desc->n_tensors : 1) * sizeof *formats);
    if (!formats) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_model_load: plan formats");
    int expert_ffn = m->opt.ep ? m->desc->moe_ffn_dim : m->desc->moe_ffn_dim / (m->opt.tp > 0 ? m->opt.tp : 1);
    qilin_upload_formats_fe(m->desc, m->opt.dtype, expert_ffn, formats);
    if (m->desc->weight_group > 0) po.format.group = m->desc->weight_group; /* INT4 experts' scale bytes */
    po.tensor_formats = formats;
    qilin_status st = qilin_plan_create(m->desc, &po, &m->plan);
    if (st == QILIN_OK) m->plan->opt.tensor_formats = NULL; /* read while planning only; freed here */
    free(formats);
    return st;
}

/* gpu_memory_utilization: the pool becomes every whole block of KV tokens
 * the memory plan fits in that fraction of the first GPU's memory (all
 * GPUs of a model are alike), after the weights as uploaded, the step
 * buffers qilin_plan_workspace gives for these options and the plan's
 * reserve; at least one max_ctx sequence must fit. */
static qilin_status size_kv_from_memory(qilin_model *m) {
    qilin_model_options *o = &m->opt;
    qilin_device_props props;
    QILIN_TRY(qilin_device_get_props(o->device, &props));
    qilin_memory_options mo;
    qilin_memory_options_default(&mo);
    mo.gpu_mem_bytes = props.total_mem_bytes, mo.util = o->gpu_memory_utilization;
    mo.max_batch_tokens = o->max_batch_tokens, mo.max_batch_seqs = o->max_seqs, mo.max_ctx = o->max_ctx;
    mo.kv_elem_bytes = mo.act_elem_bytes = (int)qilin_dtype_size(o->dtype);
    mo.min_kv_tokens = o->max_ctx;
    qilin_memory_plan mp;
    qilin_status st = qilin_plan_memory(m->plan, &mo, &mp);
    if (st != QILIN_OK)
        return qilin_error_context(st, "qilin_model_load: gpu_memory_utilization %g of %s (%.2f GiB)",
                                   o->gpu_memory_utilization, props.name,
                                   (double)props.total_mem_bytes / (1u << 30));
    int64_t bs = o->kv_block_size, blocks = mp.kv_tokens / bs;
    if (blocks > INT32_MAX) blocks = INT32_MAX;
    o->kv_cache_tokens = blocks * bs;
    return QILIN_OK;
}

/* Shards, communicators (more than one GPU) and worker threads; with
 * several nodes the cluster bootstrap first (forward_nodes.c). */
static qilin_status start_workers(qilin_model *m) {
    int n = m->n;
    int *devices = malloc((size_t)n * sizeof *devices);
    m->shards = calloc((size_t)n, sizeof *m->shards);
    m->comms = calloc((size_t)n, sizeof *m->comms);
    qilin_status st = QILIN_OK;
    if (!devices || !m->shards || !m->comms)
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_model_load: host memory");
    for (int r = 0; st == QILIN_OK && r < n; r++) {
        devices[r] = m->opt.device + r;
        m->shards[r] = (shard){
            .rank = m->first_rank + r, .n_ranks = m->opt.tp, .device = devices[r], .desc = m->desc, .opt = &m->opt};
    }
    double timeout_s = m->opt.comm_timeout_s > 0 ? m->opt.comm_timeout_s : QILIN_COMM_TIMEOUT_DEFAULT_S;
    if (st == QILIN_OK && m->opt.tp > 1) st = qilin_comm_set_init_timeout(timeout_s); /* start-up's deadline */
    if (st == QILIN_OK && m->opt.nodes > 1) st = nodes_start(m, devices);
    else if (st == QILIN_OK && n > 1) st = qilin_comm_init_all(n, devices, m->comms);
    for (int r = 0; st == QILIN_OK && r < n; r++) m->shards[r].comm = m->comms[r];
    for (int r = 0; st == QILIN_OK && m->opt.tp > 1 && r < n; r++) st = qilin_comm_set_timeout(m->comms[r], timeout_s);
    if (st == QILIN_OK) st = qilin_workers_create(n, &m->workers);
    free(devices);
    return st;
}

qilin_status qilin_model_load(const char *path, const qilin_model_options *options, qilin_model **out) {
    *out = NULL;
    qilin_model_options opt;
    if (options)
        opt = *options;
    else
        qilin_model_options_default(&opt);
    QILIN_TRY(check_options(&opt));
    qilin_model *m = calloc(1, sizeof *m);
    if (!m) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_model_load: host memory");
    qilin_status st = qilin_model_desc_load(path, &m->desc);
    if (st != QILIN_OK) {
        free(m);
        return st;
    }
    if (opt.layers < 0 || opt.layers > 0)
        st = opt.layers < 0 ? qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: layers %d", opt.layers)
                            : qilin_model_desc_keep_layers(m->desc, opt.layers);
    if (st != QILIN_OK) {
        qilin_model_desc_free(m->desc);
        free(m);
        return st;
    }
    const qilin_model_desc *d = m->desc;
    if (opt.max_ctx == 0) opt.max_ctx = qilin_model_default_ctx(d);
    if (d->max_position > 0 && opt.max_ctx > d->max_position) { /* positions past it were never trained */
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                         "qilin_model_load: a context of %d tokens exceeds the model's max_position_embeddings "
                         "of %lld (%s)", opt.max_ctx, (long long)d->max_position, d->source);
        qilin_model_desc_free(m->desc);
        free(m);
        return st;
    }
    st = resolve_kv_pool(d, &opt);
    if (st != QILIN_OK) {
        qilin_model_desc_free(m->desc);
        free(m);
        return st;
    }
    m->opt = opt;
    m->n = opt.tp / opt.nodes;
    m->first_rank = opt.node_rank * m->n;
    st = make_plan(m);
    if (st == QILIN_OK && opt.gpu_memory_utilization > 0) st = size_kv_from_memory(m);
    if (st == QILIN_OK) st = start_workers(m);
    if (st == QILIN_OK) st = load_weights(m, path);
    if (st == QILIN_OK && opt.nodes > 1) st = nodes_ready(m);
    if (st != QILIN_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qilin_last_error());
        if (m->cluster && opt.node_rank > 0) qilin_cluster_report(m->cluster, msg); /* node 0 shows it */
        qilin_model_free(m);
        return qilin_error(st, "%s", msg); /* freeing may have touched the message */
    }
    *out = m;
    return QILIN_OK;
}

void qilin_model_free(qilin_model *m) {
    if (!m) return;
    nodes_end(m); /* first: its watcher may abort the communicators */
    if (m->workers) {
        qilin_workers_run(m->workers, free_shard, m);
        qilin_workers_destroy(m->workers);
    } else if (m->comms) {
        for (int r = 0; r < m->n; r++) qilin_comm_destroy(m->comms[r]);
    }
    free(m->comms);
    free(m->shards);
    qilin_plan_free(m->plan);
    qilin_model_desc_free(m->desc);
    free(m);
}

/* ---- one step ----------------------------------------------------------- */

static void step_free(step *s) {
    free(s->kv_len), free(s->pos), free(s->tslot), free(s->q_start), free(s->single), free(s->last);
    free(s->tables);
}

/* Block j of sequence i: its table's entry, or slot i's identity block. */
static int64_t batch_block(const qilin_model *m, const qilin_batch *b, int i, int j) {
    if (b->blocks) return b->blocks[i][j];
    int per_slot = (m->opt.max_ctx + m->opt.kv_block_size - 1) / m->opt.kv_block_size;
    return (int64_t)b->slot[i] * per_slot + j;
}

/* Every block a sequence uses is in the pool; a block that new tokens are
 * written to is used by no other sequence of the batch (nor twice by its
 * own): owner[] marks each written block with its sequence + 1. */
static qilin_status check_tables(const qilin_model *m, const qilin_batch *b, int *owner) {
    int bs = m->opt.kv_block_size;
    int64_t n_blocks = m->opt.kv_cache_tokens / bs;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < b->n_seqs; i++) {
            int first_written = b->start_pos[i] / bs, used = (b->start_pos[i] + b->n_tokens[i] + bs - 1) / bs;
            for (int j = 0; j < used; j++) {
                int64_t blk = batch_block(m, b, i, j);
                bool written = j >= first_written;
                if (blk < 0 || blk >= n_blocks)
                    return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                       "qilin_forward: sequence %d: block %lld (table entry %d) outside the KV pool "
                                       "of %lld blocks%s",
                                       i, (long long)blk, j, (long long)n_blocks,
                                       b->blocks ? "" : " (its slot lies past kv_cache_tokens)");
                if (pass == 0 && written) {
                    if (owner[blk])
                        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                           "qilin_forward: sequence %d writes block %lld, which sequence %d "
                                           "writes too",
                                           i, (long long)blk, owner[blk] - 1);
                    owner[blk] = i + 1;
                }
                if (pass == 1 && !written && owner[blk])
                    return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                       "qilin_forward: sequence %d reads block %lld, which sequence %d writes in "
                                       "the same step",
                                       i, (long long)blk, owner[blk] - 1);
            }
        }
    return QILIN_OK;
}

/* Checks the batch against the model's limits, on the calling thread
 * before any GPU starts. */
static qilin_status check_batch(const qilin_model *m, const qilin_batch *b) {
    const qilin_model_options *o = &m->opt;
    if (b->n_seqs < 1 || b->n_seqs > o->max_seqs)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_forward: %d sequences; this model was loaded for 1 to %d", b->n_seqs,
                           o->max_seqs);
    if (!b->blocks && !b->slot)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: the batch has neither slots nor block tables");
    int T = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        int n = b->n_tokens[i], start = b->start_pos[i];
        if (n < 1)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: sequence %d has %d new tokens", i,
                               n);
        if (b->blocks && !b->blocks[i])
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: sequence %d has no block table", i);
        if (!b->blocks && (b->slot[i] < 0 || b->slot[i] >= o->max_seqs))
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_forward: sequence %d: slot %d outside [0, %d)", i, b->slot[i], o->max_seqs);
        if (start < 0 || (int64_t)start + n > o->max_ctx)
            return qilin_error(
                QILIN_ERR_INVALID_ARGUMENT,
                "qilin_forward: sequence %d: %d cached + %d new tokens exceed the context of %d", i, start, n,
                o->max_ctx);
        T += n;
    }
    if (T > o->max_batch_tokens)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_forward: %d new tokens in one step; the limit is %d", T,
                           o->max_batch_tokens);
    for (int t = 0; t < T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= m->desc->vocab)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_forward: token %d has id %d; the vocabulary has %d ids", t,
                               b->tokens[t], m->desc->vocab);
    int *owner = calloc((size_t)(o->kv_cache_tokens / o->kv_block_size), sizeof(int));
    if (!owner) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_forward: host memory");
    qilin_status st = check_tables(m, b, owner);
    free(owner);
    return st;
}

/* The step's host-side index arrays, shared read-only by the workers. */
static qilin_status prepare_step(const qilin_model *m, const qilin_batch *b, step *s) {
    *s = (step){.b = b, .n_seqs = b->n_seqs, .decode = true};
    QILIN_TRY(check_batch(m, b));
    int S = b->n_seqs;
    for (int i = 0; i < S; i++) s->T += b->n_tokens[i];
    s->kv_len = malloc((size_t)S * sizeof(int)), s->q_start = malloc((size_t)(S + 1) * sizeof(int));
    s->single = malloc((size_t)S * 4 * sizeof(int)), s->last = malloc((size_t)S * sizeof(int));
    s->pos = malloc((size_t)s->T * sizeof(int)), s->tslot = malloc((size_t)s->T * sizeof(int));
    s->block_size = m->opt.kv_block_size;
    s->table_stride = (m->opt.max_ctx + s->block_size - 1) / s->block_size;
    s->tables = malloc((size_t)S * (size_t)s->table_stride * sizeof(int));
    if (!s->kv_len || !s->q_start || !s->single || !s->last || !s->pos || !s->tslot || !s->tables) {
        step_free(s);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_forward: host memory");
    }
    for (int i = 0, t = 0; i < S; i++) {
        int n = b->n_tokens[i];
        s->kv_len[i] = b->start_pos[i] + n;
        if (n > s->max_q) s->max_q = n;
        if (s->kv_len[i] > s->max_kv) s->max_kv = s->kv_len[i];
        if (n != 1) s->decode = false;
        s->q_start[i] = t;
        int *one = s->single + 4 * i; /* {q_start[2], kv_len, slot} of a one-sequence launch */
        one[0] = 0, one[1] = n, one[2] = s->kv_len[i], one[3] = 0;
        int *table = s->tables + (size_t)i * s->table_stride, used = (s->kv_len[i] + s->block_size - 1) / s->block_size;
        for (int j = 0; j < s->table_stride; j++) table[j] = j < used ? (int)batch_block(m, b, i, j) : -1;
        for (int j = 0; j < n; j++, t++) {
            s->pos[t] = b->start_pos[i] + j;
            s->tslot[t] = table[s->pos[t] / s->block_size]; /* the block kv_append writes */
        }
        s->q_start[i + 1] = t;
        s->last[i] = t - 1;
    }
    s->rows = b->all_logits ? s->T : S;
    /* a bound, as the attention kernels allow: whether or not the step is
     * replayed from a graph, so that graphs change no result */
    if (s->decode) s->max_kv = decode_kv_bucket(s->max_kv, m->opt.max_ctx);
    return QILIN_OK;
}

/* One step on every GPU; rank 0 is left with s.rows rows of full logits
 * and, with host_logits set, copies them there. */
typedef struct step_job {
    qilin_model *m;
    step s;
    float *host_logits;
} step_job;

/* With several GPUs every rank waits for its step through the comm layer: a
 * poll over the stream, NCCL's asynchronous error and the abort flag, with
 * the --comm-timeout deadline, so a peer that never arrives is an error. */
static qilin_status step_on_shard(const step_job *j, shard *g) {
    QILIN_TRY(shard_step(g, &j->s));
    bool copy = g->rank == 0 && j->host_logits;
    if (copy) {
        size_t bytes = (size_t)j->s.rows * (size_t)j->m->desc->vocab * sizeof(float);
        QILIN_TRY(qilin_memcpy_d2h(j->host_logits, g->logits, bytes, g->stream));
    }
    if (g->comm) return qilin_comm_wait(g->comm, g->stream);
    return copy ? qilin_stream_synchronize(g->stream) : QILIN_OK;
}

/* A rank that fails mid-step would leave the others waiting in their next
 * collective: it aborts every local communicator so that they fail too
 * (the model is then broken: its ranks stopped at different layers). */
static qilin_status step_shard(int rank, void *ctx) {
    step_job *j = ctx;
    qilin_model *m = j->m;
    qilin_status st = step_on_shard(j, &m->shards[rank]);
    if (st == QILIN_OK || m->opt.tp == 1) return st;
    char why[512];
    snprintf(why, sizeof why, "rank %d failed: %s", m->shards[rank].rank, qilin_last_error());
    atomic_store(&m->broken, 1);
    for (int r = 0; r < m->n; r++) qilin_comm_request_abort(m->comms[r], why);
    return qilin_error(st, "%s", why);
}

qilin_status forward_run_step(qilin_model *m, const qilin_batch *b, float *host_logits) {
    if (atomic_load(&m->broken))
        return qilin_error(QILIN_ERR_COMM, "qilin_forward: an earlier step failed on this multi-GPU model "
                                           "(its GPUs' caches no longer agree); load it again");
    step_job j = {.m = m, .host_logits = host_logits};
    m->sample_rows = 0;
    qilin_launch_log_next_step(); /* the launch log's "step" for every launch below */
    QILIN_TRY(prepare_step(m, b, &j.s));
    qilin_status st = QILIN_OK;
    if (m->cluster && m->opt.node_rank == 0) st = nodes_send_step(m, b); /* checked: safe to send */
    if (st == QILIN_OK) st = qilin_workers_run(m->workers, step_shard, &j);
    if (st == QILIN_OK && !b->all_logits) m->sample_rows = b->n_seqs;
    step_free(&j.s);
    return nodes_explain(m, st);
}

qilin_status qilin_forward(qilin_model *m, const qilin_batch *b, float *logits) {
    if (m->opt.node_rank != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_forward: node %d follows node 0 (qilin_model_follow); only node 0 runs steps",
                           m->opt.node_rank);
    return forward_run_step(m, b, logits);
}

/* ---- generation --------------------------------------------------------- */

/* Samples `rows` ids on rank 0 from the logits the last step left there.
 * history (host, or NULL when no row has a penalty) holds each
 * row's token history, row r at [history_start[r], history_start[r + 1]). */
typedef struct sample_job {
    qilin_model *m;
    int rows;
    const qilin_sampling_params *params;
    const int *history, *history_start, *output_start;
    int *ids;
} sample_job;

static qilin_status sample_shard(int rank, void *ctx) {
    sample_job *j = ctx;
    shard *g = &j->m->shards[rank];
    if (g->rank != 0) return QILIN_OK;
    int rows = j->rows, vocab = j->m->desc->vocab;
    QILIN_TRY(qilin_memcpy_h2d(g->d_params, j->params, (size_t)rows * sizeof *j->params, g->stream));
    qilin_sample_args a = {.out_ids = g->d_sample_ids,
                           .logits = g->logits,
                           .ld = vocab,
                           .rows = rows,
                           .vocab = vocab,
                           .params = g->d_params,
                           .workspace = g->sample_ws,
                           .workspace_bytes = g->sample_ws_bytes};
    if (j->history) { /* every penalty goes in place on the logits first; the sampler then sees none */
        int *d_output_start = g->d_history_start + rows + 1;
        QILIN_TRY(qilin_memcpy_h2d(g->d_history_start, j->history_start, (size_t)(rows + 1) * sizeof(int),
                                   g->stream));
        QILIN_TRY(qilin_memcpy_h2d(d_output_start, j->output_start ? j->output_start : j->history_start + 1,
                                   (size_t)rows * sizeof(int), g->stream)); /* NULL: nothing generated */
        QILIN_TRY(qilin_memcpy_h2d(g->d_history, j->history, (size_t)j->history_start[rows] * sizeof(int),
                                   g->stream));
        qilin_penalty_args pa = {.logits = g->logits, .ld = vocab, .rows = rows, .vocab = vocab,
                                 .params = g->d_params, .history = g->d_history,
                                 .history_start = g->d_history_start, .output_start = d_output_start};
        QILIN_TRY(qilin_apply_penalties(&pa, g->stream));
    }
    QILIN_TRY(qilin_sample(&a, g->stream));
    QILIN_TRY(qilin_memcpy_d2h(j->ids, g->d_sample_ids, (size_t)rows * sizeof(int), g->stream));
    return qilin_stream_synchronize(g->stream);
}

/* Every sequence's tokens so far, prompt then generated ids: the repetition
 * penalty's history (transformers penalises input_ids, which hold the
 * prompt). seq i owns tokens[off[i], off[i] + len[i]); cat / cat_start
 * gather the rows of one sampling call. */
typedef struct histories {
    int *tokens, *off, *len, *prompt_len;
    int *cat, *cat_start, *cat_output; /* cat_output: where each gathered row's generated ids begin */
    bool used; /* some sequence has a penalty */
} histories;

static bool has_penalty(const qilin_sampling_params *p) {
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

static void histories_free(histories *h) {
    free(h->tokens), free(h->off), free(h->len), free(h->prompt_len), free(h->cat), free(h->cat_start);
    free(h->cat_output);
    memset(h, 0, sizeof *h);
}

static qilin_status histories_init(histories *h, int n_seqs, const int *const *prompts, const int *prompt_lens,
                                   const qilin_sampling_params *params, int max_new) {
    memset(h, 0, sizeof *h);
    for (int i = 0; i < n_seqs; i++) h->used |= has_penalty(&params[i]);
    if (!h->used) return QILIN_OK;
    size_t total = 0;
    for (int i = 0; i < n_seqs; i++) total += (size_t)prompt_lens[i] + (size_t)max_new;
    h->tokens = malloc(total * sizeof(int)), h->cat = malloc(total * sizeof(int));
    h->off = malloc((size_t)n_seqs * sizeof(int)), h->len = malloc((size_t)n_seqs * sizeof(int));
    h->cat_start = malloc((size_t)(n_seqs + 1) * sizeof(int));
    h->prompt_len = malloc((size_t)n_seqs * sizeof(int)), h->cat_output = malloc((size_t)n_seqs * sizeof(int));
    if (!h->tokens || !h->cat || !h->off || !h->len || !h->cat_start || !h->prompt_len || !h->cat_output) {
        histories_free(h);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_generate: token histories (%zu ids)", total);
    }
    for (int i = 0, at = 0; i < n_seqs; i++) {
        h->off[i] = at, h->len[i] = h->prompt_len[i] = prompt_lens[i];
        memcpy(h->tokens + at, prompts[i], (size_t)prompt_lens[i] * sizeof(int));
        at += prompt_lens[i] + max_new;
    }
    return QILIN_OK;
}

static void histories_append(histories *h, int seq, int token) {
    if (h->used) h->tokens[h->off[seq] + h->len[seq]++] = token;
}

/* Gathers the histories of seqs[0..rows) into cat; NULL when unused. */
static const int *histories_gather(histories *h, int rows, const int *seqs) {
    if (!h->used) return NULL;
    h->cat_start[0] = 0;
    for (int r = 0; r < rows; r++) {
        int s = seqs[r];
        memcpy(h->cat + h->cat_start[r], h->tokens + h->off[s], (size_t)h->len[s] * sizeof(int));
        h->cat_output[r] = h->cat_start[r] + h->prompt_len[s];
        h->cat_start[r + 1] = h->cat_start[r] + h->len[s];
    }
    return h->cat;
}

static qilin_status sample(qilin_model *m, int rows, const qilin_sampling_params *params, histories *h,
                           const int *seqs, int *ids) {
    sample_job j = {.m = m, .rows = rows, .params = params, .ids = ids};
    j.history = histories_gather(h, rows, seqs), j.history_start = h->cat_start, j.output_start = h->cat_output;
    return qilin_workers_run(m->workers, sample_shard, &j);
}

qilin_status qilin_sample_last(qilin_model *m, int rows, const qilin_sampling_params *params, const int *history,
                               const int *history_start, int *ids) {
    return qilin_sample_last_ex(m, rows, params, history, history_start, NULL, ids);
}

qilin_status qilin_sample_last_ex(qilin_model *m, int rows, const qilin_sampling_params *params, const int *history,
                                  const int *history_start, const int *output_start, int *ids) {
    if (rows < 1 || rows > m->sample_rows)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_sample_last: %d rows asked; the last step left %d sequence rows (0 after a failed "
                           "or all_logits step)",
                           rows, m->sample_rows);
    for (int r = 0; r < rows; r++) {
        if (qilin_sampling_params_check(&params[r], NULL) != QILIN_OK)
            return qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "qilin_sample_last: row %d", r);
        if (history && (history_start[0] != 0 || history_start[r + 1] < history_start[r] ||
                        history_start[r + 1] - history_start[r] > m->opt.max_ctx))
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_sample_last: row %d: history [%d, %d) (starting at %d) is not an increasing "
                               "range from 0 of at most the context of %d ids",
                               r, history_start[r], history_start[r + 1], history_start[0], m->opt.max_ctx);
        if (history && output_start && (output_start[r] < history_start[r] || output_start[r] > history_start[r + 1]))
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_sample_last: row %d: generated ids start at %d, outside its history [%d, %d)", r,
                               output_start[r], history_start[r], history_start[r + 1]);
    }
    sample_job j = {.m = m, .rows = rows, .params = params, .history = history, .history_start = history_start,
                    .output_start = output_start, .ids = ids};
    return qilin_workers_run(m->workers, sample_shard, &j);
}

/* ---- load statistics ---------------------------------------------------- */

typedef struct counts_job {
    qilin_model *m;
    int layer, *counts;
} counts_job;

static qilin_status counts_shard(int rank, void *ctx) {
    counts_job *j = ctx;
    shard *g = &j->m->shards[rank];
    if (!j->m->opt.ep && g->rank != 0) return QILIN_OK; /* "tp" mode: every GPU saw every assignment */
    QILIN_TRY(qilin_memcpy_d2h(j->counts + g->e0, g->expert_counts + (size_t)j->layer * g->E,
                               (size_t)g->E * sizeof(int), g->stream));
    return qilin_stream_synchronize(g->stream);
}

qilin_status qilin_model_expert_counts(qilin_model *m, int layer, int *counts) {
    const qilin_model_desc *d = m->desc;
    if (layer < 0 || layer >= d->n_layers || d->layer_ffn[layer] != QILIN_FFN_MOE)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_expert_counts: layer %d has no routed experts", layer);
    if (m->opt.nodes > 1 && m->opt.ep)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "qilin_model_expert_counts: with expert parallelism over %d nodes the other nodes' "
                           "experts are counted there; gathering them is not implemented",
                           m->opt.nodes);
    counts_job j = {.m = m, .layer = layer, .counts = counts};
    return qilin_workers_run(m->workers, counts_shard, &j);
}

/* Prefills sequence i's prompt in chunks of at most max_batch_tokens and
 * samples its first new token from the last chunk's logits. */
static qilin_status prefill_one(qilin_model *m, int slot, const int *prompt, int len,
                                const qilin_sampling_params *params, histories *h, int *first) {
    int chunk_max = m->opt.max_batch_tokens;
    for (int start = 0; start < len; start += chunk_max) {
        int n = len - start < chunk_max ? len - start : chunk_max;
        qilin_batch b = {
            .n_seqs = 1, .slot = &slot, .start_pos = &start, .n_tokens = &n, .tokens = prompt + start};
        QILIN_TRY(forward_run_step(m, &b, NULL));
    }
    return sample(m, 1, params, h, &slot, first);
}

qilin_status qilin_generate_stream(qilin_model *m, int n_seqs, const int *const *prompts,
                                   const int *prompt_lens, const qilin_sampling_params *params, int max_new,
                                   qilin_token_fn on_token, void *user) {
    if (m->opt.node_rank != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_generate: node %d follows node 0; only node 0 generates",
                           m->opt.node_rank);
    if (n_seqs < 1 || n_seqs > m->opt.max_seqs || max_new < 0 || !on_token)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_generate: %d sequences (max %d), %d new tokens%s", n_seqs, m->opt.max_seqs,
                           max_new, on_token ? "" : ", no callback");
    for (int i = 0; i < n_seqs; i++) {
        if (prompt_lens[i] < 1)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_generate: prompt %d is empty", i);
        /* the sampler cannot report bad parameters from the device (it returns id -1): check them here */
        if (qilin_sampling_params_check(&params[i], NULL) != QILIN_OK)
            return qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "qilin_generate: sequence %d", i);
        if ((int64_t)prompt_lens[i] + max_new > m->opt.max_ctx)
            return qilin_error(
                QILIN_ERR_INVALID_ARGUMENT,
                "qilin_generate: prompt %d has %d tokens; with %d new ones that exceeds the context of %d", i,
                prompt_lens[i], max_new, m->opt.max_ctx);
    }
    if (max_new == 0) return QILIN_OK;
    /* live[k] is the k-th sequence still generating, and also its KV slot
     * (sequence i owns slot i); the arrays are compacted as sequences end */
    int *live = malloc((size_t)n_seqs * sizeof *live), *start = malloc((size_t)n_seqs * sizeof *start);
    int *n_tok = malloc((size_t)n_seqs * sizeof *n_tok), *tokens = malloc((size_t)n_seqs * sizeof *tokens);
    int *next = malloc((size_t)n_seqs * sizeof *next);
    qilin_sampling_params *p = malloc((size_t)n_seqs * sizeof *p);
    histories h;
    qilin_status st = histories_init(&h, n_seqs, prompts, prompt_lens, params, max_new);
    if (st == QILIN_OK && (!live || !start || !n_tok || !tokens || !next || !p))
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_generate");
    int n_live = 0;
    for (int i = 0; st == QILIN_OK && i < n_seqs; i++) {
        int first = 0;
        st = prefill_one(m, i, prompts[i], prompt_lens[i], &params[i], &h, &first);
        if (st == QILIN_OK) histories_append(&h, i, first);
        if (st == QILIN_OK && on_token(user, i, first) && max_new > 1) {
            live[n_live] = i, start[n_live] = prompt_lens[i], n_tok[n_live] = 1;
            tokens[n_live++] = first;
        }
    }
    /* decode: one token for every live sequence per step */
    for (int j = 1; st == QILIN_OK && n_live > 0 && j < max_new; j++) {
        qilin_batch b = {
            .n_seqs = n_live, .slot = live, .start_pos = start, .n_tokens = n_tok, .tokens = tokens};
        st = forward_run_step(m, &b, NULL);
        for (int k = 0; st == QILIN_OK && k < n_live; k++)
            p[k] = params[live[k]], p[k].step = params[live[k]].step + (uint64_t)j;
        if (st == QILIN_OK) st = sample(m, n_live, p, &h, live, next);
        int kept = 0;
        for (int k = 0; st == QILIN_OK && k < n_live; k++) {
            histories_append(&h, live[k], next[k]);
            if (!on_token(user, live[k], next[k]) || j + 1 == max_new) continue;
            live[kept] = live[k], start[kept] = start[k] + 1, n_tok[kept] = 1;
            tokens[kept++] = next[k];
        }
        n_live = kept;
    }
    free(live), free(start), free(n_tok), free(tokens), free(next), free(p);
    histories_free(&h);
    return st;
}

typedef struct fixed_output {
    int *out, n_new, *count;
} fixed_output;

static bool store_token(void *user, int seq, int token) {
    fixed_output *f = user;
    f->out[seq * f->n_new + f->count[seq]++] = token;
    return true;
}

qilin_status qilin_generate(qilin_model *m, int n_seqs, const int *const *prompts, const int *prompt_lens,
                            const qilin_sampling_params *params, int n_new, int *out) {
    /* qilin_generate_stream checks the arguments; n_seqs < 1 only needs a valid allocation here */
    int *count = calloc(n_seqs > 0 ? (size_t)n_seqs : 1, sizeof *count);
    if (!count) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_generate");
    fixed_output f = {.out = out, .n_new = n_new, .count = count};
    qilin_status st = qilin_generate_stream(m, n_seqs, prompts, prompt_lens, params, n_new, store_token, &f);
    free(count);
    return st;
}
