/* engine.c — continuous batching over qilin_forward (engine.h has the
 * contract): requests, the scheduler, one step, sampling and delivery.
 *
 * A request is waiting (queued, arrival order, no blocks), running (a block
 * table of the model's KV pool; the KV of tokens[0 .. n_computed) is in its
 * blocks) or done (finished or cancelled, kept for polling). tokens holds
 * the prompt then the generated ids, so a preempted request is recomputed
 * from tokens alone, and the same array is its repetition-penalty history.
 * The pool's block indices are the model's: qilin_forward reads and writes
 * each sequence's KV through the table the engine passes. */
#include "runtime/engine.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/engine/kv_blocks.h"

typedef struct request {
    int64_t id;
    int *tokens; /* prompt then generated ids; room for prompt_len + max_new */
    int prompt_len, n_tokens;
    int n_computed; /* positions whose KV its blocks hold */
    qilin_sampling_params params;
    int max_new;
    int *stop, n_stop;
    bool logprobs;
    int top_logprobs;
    qilin_kv_table table;
    bool running, done;
    qilin_engine_finish finished;
} request;

/* One sequence of the step being built: n_new tokens from n_computed on. */
typedef struct entry {
    request *r;
    int n_new;
    bool samples; /* its last computed token is its last token: the step gives its next one */
} entry;

struct qilin_engine {
    qilin_model *m;
    qilin_engine_options opt; /* defaults resolved */
    int vocab, max_ctx;
    qilin_kv_pool *pool;
    request **reqs;    /* every request not yet released, in id order */
    int n_reqs, cap_reqs;
    request **waiting; /* arrival (= id) order */
    int n_waiting;
    request **running; /* admission order: the last is preempted first */
    int n_running;
    int64_t next_id;
    /* step buffers, sized at create */
    entry *entries, *ordered;
    const int **tables;
    int *start, *n_new, *batch_tokens;
    qilin_sampling_params *params;
    int *sampled, *history, *history_start, *output_start;
    float *host_logits; /* [max_num_seqs, vocab], allocated when a request first asks for logprobs */
    qilin_engine_stats stats;
};

const char *qilin_engine_finish_name(qilin_engine_finish r) {
    switch (r) {
    case QILIN_ENGINE_RUNNING: return "none";
    case QILIN_ENGINE_LENGTH: return "length";
    case QILIN_ENGINE_STOPPED: return "stop";
    case QILIN_ENGINE_CANCELLED: return "cancelled";
    }
    return "unknown";
}

void qilin_engine_options_default(qilin_engine_options *o) { memset(o, 0, sizeof *o); }

/* ---- create / free ------------------------------------------------------ */

static qilin_status resolve_options(const qilin_model *m, qilin_engine_options *o) {
    const qilin_model_options *mo = qilin_model_get_options(m);
    int pool_blocks = 0, pool_block_size = 0;
    qilin_model_kv_pool(m, &pool_blocks, &pool_block_size);
    if (o->max_num_seqs == 0) o->max_num_seqs = mo->max_seqs;
    if (o->max_num_batched_tokens == 0) o->max_num_batched_tokens = mo->max_batch_tokens;
    if (o->prefill_chunk == 0) o->prefill_chunk = o->max_num_batched_tokens;
    if (o->block_size == 0) o->block_size = pool_block_size;
    if (o->num_blocks == 0) o->num_blocks = pool_blocks;
    if (o->max_num_seqs < 1 || o->max_num_seqs > mo->max_seqs)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_create: max_num_seqs %d: the model was loaded for %d sequences per step "
                           "(max_seqs; use 1 .. %d)",
                           o->max_num_seqs, mo->max_seqs, mo->max_seqs);
    if (o->block_size != pool_block_size || o->num_blocks < 1 || o->num_blocks > pool_blocks)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_create: block_size %d, num_blocks %d: the model's KV pool has %d blocks of "
                           "%d positions (kv_block_size, kv_cache_tokens): use that block size and 1 .. %d blocks",
                           o->block_size, o->num_blocks, pool_blocks, pool_block_size, pool_blocks);
    if (o->max_num_batched_tokens < 1 || o->max_num_batched_tokens > mo->max_batch_tokens)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_create: max_num_batched_tokens %d: the model was loaded for %d tokens per "
                           "step (use 1 .. %d)",
                           o->max_num_batched_tokens, mo->max_batch_tokens, mo->max_batch_tokens);
    if (o->prefill_chunk < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_create: prefill_chunk %d: need >= 1",
                           o->prefill_chunk);
    return QILIN_OK;
}

static qilin_status alloc_buffers(qilin_engine *e) {
    int S = e->opt.max_num_seqs, T = e->opt.max_num_batched_tokens;
    e->entries = malloc((size_t)S * sizeof(entry)), e->ordered = malloc((size_t)S * sizeof(entry));
    e->tables = malloc((size_t)S * sizeof(int *)), e->start = malloc((size_t)S * sizeof(int));
    e->n_new = malloc((size_t)S * sizeof(int)), e->batch_tokens = malloc((size_t)T * sizeof(int));
    e->params = malloc((size_t)S * sizeof(qilin_sampling_params)), e->sampled = malloc((size_t)S * sizeof(int));
    e->history = malloc((size_t)S * (size_t)e->max_ctx * sizeof(int));
    e->history_start = malloc((size_t)(S + 1) * sizeof(int)), e->output_start = malloc((size_t)S * sizeof(int));
    if (!e->entries || !e->ordered || !e->tables || !e->start || !e->n_new || !e->batch_tokens ||
        !e->params || !e->sampled || !e->history || !e->history_start || !e->output_start)
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_engine_create: step buffers for %d sequences", S);
    return QILIN_OK;
}

qilin_status qilin_engine_create(qilin_model *m, const qilin_engine_options *options, qilin_engine **out) {
    *out = NULL;
    if (!m) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_create: no model (NULL)");
    qilin_engine_options o;
    if (options) o = *options;
    else qilin_engine_options_default(&o);
    const qilin_model_options *mo = qilin_model_get_options(m);
    QILIN_TRY(resolve_options(m, &o));
    qilin_engine *e = calloc(1, sizeof *e);
    if (!e) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_engine_create");
    e->m = m, e->opt = o, e->next_id = 1;
    e->vocab = (int)qilin_model_get_desc(m)->vocab, e->max_ctx = mo->max_ctx;
    qilin_status st = qilin_kv_pool_create(o.num_blocks, o.block_size, !o.no_prefix_caching, &e->pool);
    if (st == QILIN_OK) st = alloc_buffers(e);
    if (st != QILIN_OK) {
        qilin_engine_free(e);
        return st;
    }
    *out = e;
    return QILIN_OK;
}

static void request_free(request *r) {
    if (!r) return;
    free(r->tokens), free(r->stop), free(r->table.blocks);
    free(r);
}

void qilin_engine_free(qilin_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_reqs; i++) {
        if (e->pool) qilin_kv_table_release(e->pool, &e->reqs[i]->table);
        request_free(e->reqs[i]);
    }
    free(e->reqs), free(e->waiting), free(e->running);
    free(e->entries), free(e->ordered), free(e->tables), free(e->start), free(e->n_new), free(e->batch_tokens);
    free(e->params), free(e->sampled), free(e->history), free(e->history_start), free(e->host_logits);
    free(e->output_start);
    qilin_kv_pool_free(e->pool);
    free(e);
}

/* ---- requests ----------------------------------------------------------- */

static request *find_request(const qilin_engine *e, int64_t id) {
    int lo = 0, hi = e->n_reqs - 1; /* reqs is in id order */
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (e->reqs[mid]->id == id) return e->reqs[mid];
        if (e->reqs[mid]->id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static qilin_status check_request(const qilin_engine *e, const qilin_engine_request *r, int64_t id) {
    if (r->top_logprobs < 0 || r->top_logprobs > QILIN_MAX_TOP_LOGPROBS || (r->top_logprobs && !r->logprobs))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_add: request %lld: top_logprobs %d: must be 0 .. %d, and needs logprobs",
                           (long long)id, r->top_logprobs, QILIN_MAX_TOP_LOGPROBS);
    if (!r->prompt || r->prompt_len < 1 || r->max_new_tokens < 1 || r->n_stop_ids < 0 ||
        (r->n_stop_ids > 0 && !r->stop_ids))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_add: request %lld: prompt of %d ids%s, max_new_tokens %d, %d stop ids%s: "
                           "need a prompt of >= 1 id and max_new_tokens >= 1",
                           (long long)id, r->prompt_len, r->prompt ? "" : " (NULL)", r->max_new_tokens,
                           r->n_stop_ids, r->n_stop_ids > 0 && !r->stop_ids ? " (NULL)" : "");
    for (int i = 0; i < r->prompt_len; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->vocab)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_engine_add: request %lld: prompt id %d at position %d is outside the "
                               "vocabulary of %d",
                               (long long)id, r->prompt[i], i, e->vocab);
    if (qilin_sampling_params_check(&r->params, NULL) != QILIN_OK)
        return qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_add: request %lld", (long long)id);
    int64_t positions = (int64_t)r->prompt_len + r->max_new_tokens;
    if (positions > e->max_ctx)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_add: request %lld: a prompt of %d tokens and %d new ones exceed the "
                           "context of %d",
                           (long long)id, r->prompt_len, r->max_new_tokens, e->max_ctx);
    /* the last new token is never fed back: its position needs no KV */
    int blocks = qilin_kv_blocks_for(e->pool, positions - 1);
    if (blocks > e->opt.num_blocks)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_engine_add: request %lld: a prompt of %d tokens and %d new ones need %d KV blocks "
                           "of %d positions; the pool has %d",
                           (long long)id, r->prompt_len, r->max_new_tokens, blocks, e->opt.block_size,
                           e->opt.num_blocks);
    return QILIN_OK;
}

/* Grows a request-pointer array by one slot if full. */
static qilin_status reserve_ptrs(request ***arr, int n, int *cap) {
    if (n < *cap) return QILIN_OK;
    int grown = *cap ? 2 * *cap : 16;
    request **a = realloc(*arr, (size_t)grown * sizeof *a);
    if (!a) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_engine: %d requests", grown);
    *arr = a, *cap = grown;
    return QILIN_OK;
}

static request *request_new(const qilin_engine_request *in, int64_t id) {
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->tokens = malloc(((size_t)in->prompt_len + (size_t)in->max_new_tokens) * sizeof(int));
    r->stop = malloc(((size_t)in->n_stop_ids + 1) * sizeof(int));
    if (!r->tokens || !r->stop) {
        request_free(r);
        return NULL;
    }
    memcpy(r->tokens, in->prompt, (size_t)in->prompt_len * sizeof(int));
    if (in->n_stop_ids > 0) memcpy(r->stop, in->stop_ids, (size_t)in->n_stop_ids * sizeof(int));
    r->id = id, r->prompt_len = r->n_tokens = in->prompt_len, r->n_stop = in->n_stop_ids;
    r->params = in->params, r->max_new = in->max_new_tokens;
    r->logprobs = in->logprobs, r->top_logprobs = in->top_logprobs;
    return r;
}

qilin_status qilin_engine_add(qilin_engine *e, const qilin_engine_request *in, int64_t *id) {
    *id = 0;
    if (!in) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_add: request %lld is NULL", (long long)e->next_id);
    QILIN_TRY(check_request(e, in, e->next_id));
    /* the waiting and running arrays never hold more than reqs does: one capacity for all three */
    int cap = e->cap_reqs;
    QILIN_TRY(reserve_ptrs(&e->reqs, e->n_reqs, &cap));
    if (cap != e->cap_reqs) {
        request **w = realloc(e->waiting, (size_t)cap * sizeof *w);
        if (w) e->waiting = w;
        request **run = w ? realloc(e->running, (size_t)cap * sizeof *run) : NULL;
        if (run) e->running = run;
        if (!w || !run) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_engine_add: %d requests", cap);
        e->cap_reqs = cap;
    }
    request *r = request_new(in, e->next_id);
    if (!r) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_engine_add: request %lld", (long long)e->next_id);
    e->reqs[e->n_reqs++] = r;
    e->waiting[e->n_waiting++] = r; /* the newest arrival: the back of the queue */
    *id = e->next_id++;
    e->stats.requests_added++;
    return QILIN_OK;
}

static void remove_ptr(request **arr, int *n, const request *r) {
    for (int i = 0; i < *n; i++)
        if (arr[i] == r) {
            memmove(arr + i, arr + i + 1, (size_t)(*n - i - 1) * sizeof *arr);
            (*n)--;
            return;
        }
}

/* Gives back a running request's blocks (its full keyed blocks stay cached
 * for a later prefix hit, its own re-admission included). */
static void stop_running(qilin_engine *e, request *r) {
    qilin_kv_table_release(e->pool, &r->table);
    r->running = false, r->n_computed = 0;
    remove_ptr(e->running, &e->n_running, r);
}

static void finish(qilin_engine *e, request *r, qilin_engine_finish why) {
    if (r->running) stop_running(e, r);
    else remove_ptr(e->waiting, &e->n_waiting, r);
    r->done = true, r->finished = why;
    if (why == QILIN_ENGINE_CANCELLED) e->stats.requests_cancelled++;
    else e->stats.requests_finished++;
}

qilin_status qilin_engine_cancel(qilin_engine *e, int64_t id) {
    request *r = find_request(e, id);
    if (!r)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_cancel: no request %lld (never added, or released)",
                           (long long)id);
    if (!r->done) finish(e, r, QILIN_ENGINE_CANCELLED);
    return QILIN_OK;
}

qilin_status qilin_engine_poll(const qilin_engine *e, int64_t id, const int **tokens, int *n_tokens,
                               qilin_engine_finish *finished) {
    const request *r = find_request(e, id);
    if (!r)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_poll: no request %lld (never added, or released)",
                           (long long)id);
    *tokens = r->tokens + r->prompt_len, *n_tokens = r->n_tokens - r->prompt_len, *finished = r->finished;
    return QILIN_OK;
}

qilin_status qilin_engine_release(qilin_engine *e, int64_t id) {
    request *r = find_request(e, id);
    if (!r || !r->done)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_engine_release: request %lld %s", (long long)id,
                           r ? "is still waiting or running (cancel it first)" : "does not exist (never added, or released)");
    remove_ptr(e->reqs, &e->n_reqs, r);
    request_free(r);
    return QILIN_OK;
}

bool qilin_engine_idle(const qilin_engine *e) { return e->n_waiting == 0 && e->n_running == 0; }

void qilin_engine_get_stats(const qilin_engine *e, qilin_engine_stats *out) {
    *out = e->stats;
    out->waiting = e->n_waiting, out->running = e->n_running;
    qilin_kv_stats k;
    qilin_kv_pool_stats(e->pool, &k);
    out->num_blocks = k.num_blocks, out->block_size = k.block_size;
    out->free_blocks = k.free_blocks, out->cached_blocks = k.cached_blocks;
    out->prefix_lookups = k.lookups, out->prefix_hits = k.hits, out->evictions = k.evictions;
}

/* ---- scheduling --------------------------------------------------------- */

/* Back to the waiting queue at its arrival place, to be recomputed. */
static void preempt(qilin_engine *e, request *r) {
    stop_running(e, r);
    int at = e->n_waiting;
    while (at > 0 && e->waiting[at - 1]->id > r->id) at--;
    memmove(e->waiting + at + 1, e->waiting + at, (size_t)(e->n_waiting - at) * sizeof *e->waiting);
    e->waiting[at] = r;
    e->n_waiting++;
    e->stats.preemptions++;
}

static int chunk_for(const qilin_engine *e, const request *r, int budget) {
    int n = r->n_tokens - r->n_computed;
    if (n > e->opt.prefill_chunk) n = e->opt.prefill_chunk;
    return n < budget ? n : budget;
}

/* Running requests, oldest first, each its next token or chunk while the
 * budget lasts; a request that needs a block the pool lacks preempts the
 * newest running ones (possibly itself). */
static qilin_status schedule_running(qilin_engine *e, int *n_entries, int *budget) {
    for (int i = 0; i < e->n_running && *budget > 0; i++) {
        request *r = e->running[i];
        int n = chunk_for(e, r, *budget);
        bool grown = false;
        while (!grown) {
            QILIN_TRY(qilin_kv_table_grow(e->pool, &r->table, r->n_computed + n, &grown));
            if (!grown) preempt(e, e->running[e->n_running - 1]);
            if (!r->running) break; /* it was the newest */
        }
        if (!grown) break;
        e->entries[(*n_entries)++] = (entry){.r = r, .n_new = n};
        *budget -= n;
    }
    return QILIN_OK;
}

/* Waiting requests, first come first served, while a sequence, the budget
 * and blocks for their first chunk remain. A prefix hit shares the cached
 * blocks of the prompt's longest keyed prefix and skips their prefill: the
 * first chunk starts after them. Sharing a cached block takes it out of the
 * free count, so the growth after a match can still fail: then the match is
 * undone and admission stops for this step. */
static qilin_status admit_waiting(qilin_engine *e, int *n_entries, int *budget) {
    while (e->n_waiting > 0 && e->n_running < e->opt.max_num_seqs && *budget > 0) {
        request *r = e->waiting[0];
        qilin_kv_stats k;
        qilin_kv_pool_stats(e->pool, &k);
        if (qilin_kv_blocks_for(e->pool, chunk_for(e, r, *budget)) > k.free_blocks) break;
        int matched = 0;
        bool grown = false;
        QILIN_TRY(qilin_kv_table_match(e->pool, &r->table, r->tokens, r->n_tokens, &matched));
        r->n_computed = matched;
        int n = chunk_for(e, r, *budget);
        QILIN_TRY(qilin_kv_table_grow(e->pool, &r->table, matched + n, &grown));
        if (!grown) {
            qilin_kv_table_unmatch(e->pool, &r->table);
            r->n_computed = 0;
            break;
        }
        remove_ptr(e->waiting, &e->n_waiting, r);
        r->running = true;
        e->running[e->n_running++] = r;
        e->entries[(*n_entries)++] = (entry){.r = r, .n_new = n};
        *budget -= n;
    }
    return QILIN_OK;
}

/* ---- one step ----------------------------------------------------------- */

/* The batch, sampling sequences first (the sampler reads rows 0 .. rows-1). */
static int build_batch(qilin_engine *e, int n_entries, qilin_batch *b) {
    int rows = 0, k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_entries; i++) {
            entry en = e->entries[i];
            en.samples = en.r->n_computed + en.n_new == en.r->n_tokens;
            if (en.samples != (pass == 0)) continue;
            e->ordered[k++] = en;
            rows += en.samples;
        }
    for (int i = 0, t = 0; i < n_entries; i++) {
        const entry *en = &e->ordered[i];
        e->tables[i] = en->r->table.blocks, e->start[i] = en->r->n_computed, e->n_new[i] = en->n_new;
        memcpy(e->batch_tokens + t, en->r->tokens + en->r->n_computed, (size_t)en->n_new * sizeof(int));
        t += en->n_new;
    }
    *b = (qilin_batch){.n_seqs = n_entries, .start_pos = e->start, .n_tokens = e->n_new,
                       .tokens = e->batch_tokens, .blocks = e->tables};
    return rows;
}

/* Samples the next token of the first `rows` batch sequences. */
static qilin_status sample_rows(qilin_engine *e, int rows) {
    bool penalty = false;
    e->history_start[0] = 0;
    for (int i = 0; i < rows; i++) {
        const request *r = e->ordered[i].r;
        e->params[i] = r->params;
        e->params[i].step = r->params.step + (uint64_t)(r->n_tokens - r->prompt_len);
        penalty |= r->params.repetition_penalty != 1.0f || r->params.presence_penalty != 0.0f ||
                   r->params.frequency_penalty != 0.0f;
        memcpy(e->history + e->history_start[i], r->tokens, (size_t)r->n_tokens * sizeof(int));
        e->output_start[i] = e->history_start[i] + r->prompt_len; /* presence/frequency: generated ids only */
        e->history_start[i + 1] = e->history_start[i] + r->n_tokens;
    }
    return qilin_sample_last_ex(e->m, rows, e->params, penalty ? e->history : NULL, e->history_start,
                                e->output_start, e->sampled);
}

static qilin_engine_finish finish_reason(const request *r, int token) {
    for (int i = 0; i < r->n_stop; i++)
        if (r->stop[i] == token) return QILIN_ENGINE_STOPPED;
    return r->n_tokens - r->prompt_len == r->max_new ? QILIN_ENGINE_LENGTH : QILIN_ENGINE_RUNNING;
}

/* Whether a sampling row of this step asked for logprobs: then its logits come to the host. */
static bool step_wants_logits(const qilin_engine *e, int rows) {
    for (int i = 0; i < rows; i++)
        if (e->ordered[i].r->logprobs) return e->opt.on_logprobs != NULL;
    return false;
}

static void report_logprobs(qilin_engine *e, const request *r, int row, int token) {
    int top_ids[QILIN_MAX_TOP_LOGPROBS];
    float top_lp[QILIN_MAX_TOP_LOGPROBS];
    int k = r->top_logprobs < e->vocab ? r->top_logprobs : e->vocab;
    qilin_token_logprobs lp = {.token = token, .n_top = k, .top_ids = top_ids, .top_logprobs = top_lp};
    qilin_log_softmax_top(e->host_logits + (size_t)row * (size_t)e->vocab, e->vocab, token, k, &lp.logprob, top_ids,
                          top_lp);
    e->opt.on_logprobs(e->opt.user, r->id, &lp);
}

/* Appends each sampled token, delivers it, retires finished requests. */
static void deliver(qilin_engine *e, int rows, bool have_logits) {
    for (int i = 0; i < rows; i++) {
        request *r = e->ordered[i].r;
        int token = e->sampled[i];
        if (have_logits && r->logprobs) report_logprobs(e, r, i, token);
        r->tokens[r->n_tokens++] = token;
        qilin_engine_finish why = finish_reason(r, token);
        if (why != QILIN_ENGINE_RUNNING) finish(e, r, why);
        if (e->opt.on_token) e->opt.on_token(e->opt.user, r->id, token, why);
    }
}

qilin_status qilin_engine_step(qilin_engine *e) {
    if (qilin_engine_idle(e)) return QILIN_OK;
    int n_entries = 0, budget = e->opt.max_num_batched_tokens;
    uint64_t preemptions = e->stats.preemptions;
    QILIN_TRY(schedule_running(e, &n_entries, &budget));
    /* blocks just ran out: admitting now would only take back what preemption freed */
    if (e->stats.preemptions == preemptions) QILIN_TRY(admit_waiting(e, &n_entries, &budget));
    if (n_entries == 0) /* cannot happen: an idle pool fits any request add accepted */
        return qilin_error(QILIN_ERR_INTERNAL, "qilin_engine_step: %d waiting and %d running requests, none schedulable",
                           e->n_waiting, e->n_running);
    qilin_batch b;
    int rows = build_batch(e, n_entries, &b);
    bool want_logits = step_wants_logits(e, rows);
    if (want_logits && !e->host_logits &&
        !(e->host_logits = malloc((size_t)e->opt.max_num_seqs * (size_t)e->vocab * sizeof(float))))
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_engine_step: logits of %d sequences for logprobs",
                           e->opt.max_num_seqs);
    QILIN_TRY(qilin_forward(e->m, &b, want_logits ? e->host_logits : NULL));
    for (int i = 0; i < n_entries; i++) {
        request *r = e->ordered[i].r;
        bool decode = e->ordered[i].n_new == 1 && r->n_computed == r->n_tokens - 1 && r->n_computed >= r->prompt_len;
        if (decode) e->stats.decode_tokens++;
        else e->stats.prefill_tokens += (uint64_t)e->ordered[i].n_new;
        r->n_computed += e->ordered[i].n_new;
        qilin_kv_table_commit(e->pool, &r->table, r->tokens, r->n_computed);
    }
    e->stats.steps++;
    e->stats.batched_seqs += (uint64_t)n_entries;
    e->stats.batched_tokens += (uint64_t)(e->opt.max_num_batched_tokens - budget);
    qilin_status st = rows > 0 ? sample_rows(e, rows) : QILIN_OK;
    if (st != QILIN_OK) { /* their last token is computed again next step (same position, same KV) */
        for (int i = 0; i < rows; i++) e->ordered[i].r->n_computed--;
        return st;
    }
    deliver(e, rows, want_logits);
    return QILIN_OK;
}

qilin_status qilin_engine_run(qilin_engine *e) {
    while (!qilin_engine_idle(e)) QILIN_TRY(qilin_engine_step(e));
    return QILIN_OK;
}
