/* forward_nodes.c — one model over several processes (opt.nodes > 1).
 *
 * Every node runs the same command with its own --node-rank. Node n holds
 * global ranks n * L .. n * L + L - 1 (L = tp / nodes GPUs per node) and
 * loads only their slices; the plan is the same everywhere (it is per global
 * rank already). Startup:
 *
 *   1. cluster bootstrap over TCP (cluster.h): every node's configuration
 *      text (architecture, sizes, tp, ep, dtype) must equal node 0's;
 *   2. node 0 makes the communicator's unique id and sends it with its
 *      step limits (max_seqs, max_ctx, max_batch_tokens, MLA mode) and its
 *      KV pool (block size and tokens), which
 *      the followers adopt — node 0's caller chooses them (`qilin run`
 *      sizes the context from the prompt), and every node must allocate the
 *      same buffers or they would disagree inside a collective; every node
 *      creates its local ranks from the id (qilin_comm_init_ranks);
 *   3. each node loads its slices, then all ranks meet in a one-integer
 *      all-reduce: a node whose load failed never arrives, reports its error,
 *      and the others' watchers abort their communicators, so node 0's load
 *      fails with that node's message instead of waiting.
 *
 * Then node 0 is the model the caller drives: every step's batch (ids,
 * positions, slots or block tables) is sent to the followers before node 0's workers start,
 * and the followers (qilin_model_follow) run the same step on their shards.
 * Logits and sampling stay on global rank 0; nothing flows back.
 *
 * Failure: a follower whose step fails reports and leaves; a node that dies
 * closes its connections. Node 0's watcher then aborts node 0's
 * communicators (the step fails with the follower's message) and a
 * follower's armed watcher does the same when node 0 goes. A failed step on
 * a multi-node model is final: the nodes no longer agree on the KV cache, so
 * later calls are refused. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host/cluster.h"
#include "host/forward_impl.h"

enum { MSG_COMM_ID = QILIN_MSG_USER, MSG_STEP, MSG_END };

/* ---- startup ------------------------------------------------------------ */

/* What every node must agree on, as text (shown side by side on mismatch). */
static void config_text(const qilin_model *m, char *out, size_t n) {
    const qilin_model_desc *d = m->desc;
    const qilin_model_options *o = &m->opt;
    snprintf(out, n,
             "arch=%s layers=%d hidden=%d vocab=%d experts=%d tp=%d nodes=%d ep=%d ep_dispatch=%d dtype=%s",
             qilin_arch_hf_name(d->arch), d->n_layers, d->hidden, d->vocab, d->n_experts, o->tp, o->nodes, (int)o->ep,
             (int)o->ep_dispatch, qilin_dtype_name(o->dtype));
}

/* Watcher thread: a peer failed. Keep its message, free every local rank
 * from its collectives. */
static void on_peer_failure(void *user, const char *message) {
    qilin_model *m = user;
    snprintf(m->peer_failure, sizeof m->peer_failure, "%s", message);
    atomic_store(&m->peer_failed, 1);
    for (int r = 0; r < m->n; r++) qilin_comm_request_abort(m->comms[r], message);
}

/* Node 0's message after the bootstrap. */
typedef struct start_msg {
    qilin_comm_id id;
    int32_t max_seqs, max_ctx, max_batch_tokens, mla_mode, kv_block_size;
    int64_t kv_cache_tokens; /* node 0's KV pool: block tables index the same pool everywhere */
} start_msg;

static qilin_status share_comm_id(qilin_model *m, qilin_comm_id *id) {
    qilin_model_options *o = &m->opt;
    start_msg s = {.max_seqs = o->max_seqs,
                   .max_ctx = o->max_ctx,
                   .max_batch_tokens = o->max_batch_tokens,
                   .mla_mode = (int32_t)o->mla_mode,
                   .kv_block_size = o->kv_block_size,
                   .kv_cache_tokens = o->kv_cache_tokens};
    if (o->node_rank == 0) {
        QILIN_TRY(qilin_comm_get_unique_id(&s.id));
        *id = s.id;
        return qilin_cluster_send_all(m->cluster, MSG_COMM_ID, &s, sizeof s);
    }
    uint32_t type = 0;
    void *data = NULL;
    size_t bytes = 0;
    QILIN_TRY(qilin_cluster_recv(m->cluster, &type, &data, &bytes));
    bool ok = type == MSG_COMM_ID && bytes == sizeof s;
    if (ok) {
        memcpy(&s, data, sizeof s);
        *id = s.id;
        o->max_seqs = s.max_seqs, o->max_ctx = s.max_ctx, o->max_batch_tokens = s.max_batch_tokens;
        o->mla_mode = (qilin_mla_mode)s.mla_mode;
        o->kv_block_size = s.kv_block_size, o->kv_cache_tokens = s.kv_cache_tokens;
    }
    free(data);
    if (!ok)
        return qilin_error(QILIN_ERR_COMM, "node %d: expected the communicator id from node 0, got message type %u",
                           m->opt.node_rank, type);
    return QILIN_OK;
}

qilin_status nodes_start(qilin_model *m, const int *devices) {
    char config[512];
    config_text(m, config, sizeof config);
    qilin_cluster_options co = {.nodes = m->opt.nodes,
                                .node_rank = m->opt.node_rank,
                                .coordinator = m->opt.coordinator,
                                .config = config};
    QILIN_TRY(qilin_cluster_open(&co, &m->cluster));
    qilin_comm_id id;
    QILIN_TRY(share_comm_id(m, &id));
    QILIN_TRY(qilin_comm_init_ranks(&id, m->opt.tp, m->first_rank, m->n, devices, m->comms));
    if (m->opt.node_rank > 0) qilin_cluster_arm(m->cluster, 1); /* until loaded (nodes_ready) */
    return qilin_cluster_watch(m->cluster, on_peer_failure, m);
}

static qilin_status ready_shard(int rank, void *ctx) {
    shard *g = &((qilin_model *)ctx)->shards[rank];
    QILIN_TRY(qilin_memset(g->d_single, 0, sizeof(int), g->stream));
    QILIN_TRY(qilin_comm_all_reduce_sum(g->comm, g->d_single, g->d_single, 1, QILIN_I32, g->stream));
    return qilin_comm_wait(g->comm, g->stream);
}

qilin_status nodes_ready(qilin_model *m) {
    qilin_status st = qilin_workers_run(m->workers, ready_shard, m);
    if (m->opt.node_rank > 0) qilin_cluster_arm(m->cluster, 0);
    return nodes_explain(m, st);
}

/* ---- steps -------------------------------------------------------------- */

/* A failure's message, preferring a peer's own report: the report arrives
 * just before the closed connection that may have failed this node first,
 * so wait a moment for the watcher to read it. */
qilin_status nodes_explain(qilin_model *m, qilin_status st) {
    if (st == QILIN_OK || !m->cluster) return st;
    char mine[512];
    snprintf(mine, sizeof mine, "%s", qilin_last_error());
    for (int i = 0; i < 50 && !atomic_load(&m->peer_failed); i++) nanosleep(&(struct timespec){0, 20000000}, NULL);
    atomic_store(&m->broken, 1);
    if (atomic_load(&m->peer_failed))
        return qilin_error(st, "node %d: a peer failed: %s (here: %s)", m->opt.node_rank, m->peer_failure, mine);
    return qilin_error(st, "node %d: %s", m->opt.node_rank, mine);
}

/* Table entries sequence i of a step uses: its blocks up to its last new position. */
static int used_blocks(int start_pos, int n_tokens, int block_size) {
    return (start_pos + n_tokens + block_size - 1) / block_size;
}

/* The batch as int32s: n_seqs, all_logits, T, has_tables, slot[n] (0s with
 * tables), start_pos[n], n_tokens[n], tokens[T], then with tables each
 * sequence's used entries (used_blocks) back to back. */
qilin_status nodes_send_step(qilin_model *m, const qilin_batch *b) {
    int n = b->n_seqs, T = 0, bs = m->opt.kv_block_size;
    size_t table_entries = 0;
    for (int i = 0; i < n; i++) {
        T += b->n_tokens[i];
        if (b->blocks) table_entries += (size_t)used_blocks(b->start_pos[i], b->n_tokens[i], bs);
    }
    size_t count = 4 + 3 * (size_t)n + (size_t)T + table_entries;
    int *msg = calloc(count, sizeof *msg);
    if (!msg) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_forward: host memory for the step message");
    msg[0] = n, msg[1] = b->all_logits, msg[2] = T, msg[3] = b->blocks != NULL;
    if (!b->blocks) memcpy(msg + 4, b->slot, (size_t)n * sizeof(int));
    memcpy(msg + 4 + n, b->start_pos, (size_t)n * sizeof(int));
    memcpy(msg + 4 + 2 * n, b->n_tokens, (size_t)n * sizeof(int));
    memcpy(msg + 4 + 3 * n, b->tokens, (size_t)T * sizeof(int));
    int *at = msg + 4 + 3 * n + T;
    for (int i = 0; b->blocks && i < n; i++) {
        int used = used_blocks(b->start_pos[i], b->n_tokens[i], bs);
        memcpy(at, b->blocks[i], (size_t)used * sizeof(int));
        at += used;
    }
    qilin_status st = qilin_cluster_send_all(m->cluster, MSG_STEP, msg, count * sizeof *msg);
    free(msg);
    return st;
}

/* A follower's view of a step message; false when it is malformed. With
 * tables, *tables receives the per-sequence pointers into msg (free it). */
static bool parse_step(const int *msg, size_t bytes, int block_size, qilin_batch *b, const int ***tables) {
    *tables = NULL;
    size_t count = bytes / sizeof(int);
    if (bytes % sizeof(int) || count < 4 || msg[0] < 1 || msg[2] < 1 || (msg[3] != 0 && msg[3] != 1)) return false;
    int n = msg[0], T = msg[2];
    if (count < 4 + 3 * (size_t)n + (size_t)T) return false;
    *b = (qilin_batch){.n_seqs = n,
                       .all_logits = msg[1] != 0,
                       .slot = msg + 4,
                       .start_pos = msg + 4 + n,
                       .n_tokens = msg + 4 + 2 * n,
                       .tokens = msg + 4 + 3 * n};
    int64_t sum = 0, entries = 0;
    for (int i = 0; i < n; i++) {
        if (b->n_tokens[i] < 1 || b->start_pos[i] < 0 || b->start_pos[i] > INT32_MAX - b->n_tokens[i]) return false;
        sum += b->n_tokens[i];
        if (msg[3]) entries += used_blocks(b->start_pos[i], b->n_tokens[i], block_size);
    }
    if (sum != T || count != 4 + 3 * (size_t)n + (size_t)T + (size_t)entries) return false;
    if (!msg[3]) return true;
    *tables = malloc((size_t)n * sizeof **tables);
    if (!*tables) return false;
    const int *at = msg + 4 + 3 * n + T;
    for (int i = 0; i < n; i++) {
        (*tables)[i] = at;
        at += used_blocks(b->start_pos[i], b->n_tokens[i], block_size);
    }
    b->blocks = *tables;
    return true;
}

/* One message from node 0: a step (run), the end (*done), or an error. */
static qilin_status follow_one(qilin_model *m, bool *done) {
    uint32_t type = 0;
    void *data = NULL;
    size_t bytes = 0;
    QILIN_TRY(qilin_cluster_recv(m->cluster, &type, &data, &bytes));
    qilin_batch b;
    const int **tables = NULL;
    qilin_status st = QILIN_OK;
    if (type == MSG_END) {
        *done = true;
    } else if (type != MSG_STEP || !parse_step(data, bytes, m->opt.kv_block_size, &b, &tables)) {
        st = qilin_error(QILIN_ERR_COMM, "node %d: malformed message from node 0 (type %u, %zu bytes)",
                         m->opt.node_rank, type, bytes);
    } else {
        qilin_cluster_arm(m->cluster, 1);
        st = forward_run_step(m, &b, NULL);
        qilin_cluster_arm(m->cluster, 0);
    }
    free(tables);
    free(data);
    return st;
}

qilin_status qilin_model_follow(qilin_model *m) {
    if (!m->cluster || m->opt.node_rank == 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_model_follow: only a node other than 0 of a multi-node model follows "
                           "(nodes %d, node_rank %d)",
                           m->opt.nodes, m->opt.node_rank);
    bool done = false;
    qilin_status st = QILIN_OK;
    while (st == QILIN_OK && !done) st = follow_one(m, &done);
    if (st != QILIN_OK) {
        st = nodes_explain(m, st);
        qilin_cluster_report(m->cluster, qilin_last_error());
    }
    return st;
}

/* Node 0 tells the followers to stop (they return from qilin_model_follow);
 * every node closes its connections. */
void nodes_end(qilin_model *m) {
    if (!m->cluster) return;
    if (m->opt.node_rank == 0 && !atomic_load(&m->broken)) qilin_cluster_send_all(m->cluster, MSG_END, NULL, 0);
    qilin_cluster_close(m->cluster);
    m->cluster = NULL;
}
