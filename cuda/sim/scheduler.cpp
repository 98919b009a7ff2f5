/* scheduler.cpp — the SIMT emulator's block scheduler.
 *
 * A launch's blocks are handed out in order (x fastest) to the calling host
 * thread and, with QILIN_SIM_THREADS > 1, to the pool's helper threads
 * (pool.h); each host thread runs one block at a time with its own Executor
 * (fibers, shared memory, thread-local __shared__). A block's schedule is
 * drawn from splitmix64(launch seed ^ linear block index) — never from the
 * host thread that runs it — so a given QILIN_SIM_SEED gives every block the
 * same interleaving with 1 or N threads. The launch seed is the launching
 * thread's (QILIN_SIM_SEED or qsim_set_seed, then one splitmix64 step per
 * launch). When blocks fail, no more are handed out, the blocks already
 * taken finish, and the launch reports the lowest failing block's status and
 * message (in the launching thread's qilin_last_error), as running the grid
 * in order on one thread would.
 *
 * Within a block every CUDA thread is a fiber (fiber.h). The scheduler keeps
 * a list of runnable fibers, resumes one chosen at random, and when it parks
 * at a scheduling point records why:
 *
 *   barrier     __syncthreads*: released when every thread of the block waits;
 *               a thread that exits while others wait, or a barrier reached
 *               after some thread exited, is a divergent-barrier error.
 *   warp        a warp collective (__shfl*, __ballot, __syncwarp, ...): the
 *               lanes of its mask form a group that completes when all have
 *               arrived; results follow PTX's definitions.
 *   activemask  __activemask: resolved when nothing else can run, to the set
 *               of lanes of the warp waiting at the same call site — the
 *               lanes that reached that point together.
 *   done/trap   the thread returned / called __trap.
 *
 * When nothing is runnable and the block is not finished, the block can never
 * finish on a GPU either: the launch fails with a message that names the
 * kernel, the block and who waits where. Fibers live in a per-host-thread
 * Executor and are reused across blocks and launches; after a failed block
 * they are reset before reuse. */
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fiber.h"
#include "pool.h"
#include "sim.h"
#include "sim_api.h"
#include "streams.h"
#include "tensor_core_sim.h"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace qsim {
namespace {

enum class Wait : uint8_t { running, barrier, warp, activemask, done, trapped, misaligned, fault };

struct Thread {
    Context ctx;
    Stack stack;
    uint3 idx{};
    int warp = 0, lane = 0;
    Wait wait = Wait::running;
    const char *file = "";
    int line = 0;
    /* the collective or barrier in flight */
    WarpOp op = WarpOp::sync;
    unsigned mask = 0, b = 0, c = 0;
    uint64_t value = 0, result = 0;
    int pred = 0, barrier_mode = 0;
    /* the misaligned vector access that stopped it */
    const void *addr = nullptr;
    size_t align = 0;
    const char *access = "";
    std::string fault; /* the message of a fault() */
    AsyncCopies async; /* cp.async copies in flight (tensor_core_sim.h) */
};

struct Group { /* lanes of one warp gathering for one collective */
    unsigned mask, arrived;
    WarpOp op;
};

constexpr size_t kMaxThreads = 1024;

struct Executor {
    std::vector<std::unique_ptr<Thread>> threads; /* pool, grown on demand */
    Context sched;                                /* the host thread's own context */
    size_t stack_bytes = 0;
    bool dirty = false;                           /* some fiber was abandoned mid-run */
    uint64_t rng = 0;
    unsigned long long switches = 0;
    qilin_status last_launch = QILIN_OK;

    /* current launch */
    const std::function<void()> *body = nullptr;
    const char *kernel = "";
    const char *launch_file = "";
    int launch_line = 0;
    unsigned char *smem = nullptr;
    size_t smem_capacity = 0, smem_bytes = 0;

    /* current block */
    int nthreads = 0;
    std::vector<Thread *> runnable;
    std::vector<std::vector<Group>> groups; /* per warp */
    int n_done = 0, n_barrier = 0, n_activemask = 0;
    Thread *current = nullptr;

    ~Executor() {
        for (auto &t : threads) stack_unmap(&t->stack);
        std::free(smem);
    }
};

/* Switches made by finished launches, all threads (qsim_switch_count). */
std::atomic<unsigned long long> total_switches{0};
/* Kernel launches issued, all threads (qsim_launch_count). */
std::atomic<unsigned long long> total_launches{0};

thread_local std::unique_ptr<Executor> tls_holder;
thread_local Executor *tls_ex = nullptr;

Executor &executor() {
    if (!tls_ex) {
        tls_holder.reset(new Executor);
        tls_ex = tls_holder.get();
        tls_ex->rng = splitmix64(env_u64("QILIN_SIM_SEED", 1));
#if defined(QILIN_ASAN)
        size_t default_kb = 512; /* ASan's redzones make frames several times larger */
#else
        size_t default_kb = 64;
#endif
        tls_ex->stack_bytes = (size_t)env_u64("QILIN_SIM_STACK_KB", default_kb) * 1024;
    }
    return *tls_ex;
}

/* xorshift64*: a uniform pick among n runnable fibers. */
inline size_t pick(Executor &ex, size_t n) {
    ex.rng ^= ex.rng >> 12;
    ex.rng ^= ex.rng << 25;
    ex.rng ^= ex.rng >> 27;
    uint64_t r = ex.rng * 0x2545F4914F6CDD1Dull;
    return (size_t)(((r >> 32) * (uint64_t)n) >> 32);
}

void fiber_entry(void *arg) {
    Thread *t = static_cast<Thread *>(arg);
    Executor &ex = *tls_ex;
    fiber_started(&ex.sched);
    for (;;) {
        (*ex.body)();
        t->wait = Wait::done;
        ex.switches++;
        context_switch(&t->ctx, &ex.sched);
    }
}

qilin_status ensure_threads(Executor &ex, int n) {
    while ((int)ex.threads.size() < n) {
        auto t = std::make_unique<Thread>();
        if (!stack_map(&t->stack, ex.stack_bytes))
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                               "sim: cannot map a %zu-byte fiber stack for thread %zu: %s "
                               "(QILIN_SIM_STACK_KB sets the size)",
                               ex.stack_bytes, ex.threads.size(), strerror(errno));
        context_init(&t->ctx, t->stack, fiber_entry, t.get());
        ex.threads.push_back(std::move(t));
    }
    if (ex.dirty) {
        for (auto &t : ex.threads) context_init(&t->ctx, t->stack, fiber_entry, t.get());
        ex.dirty = false;
    }
    return QILIN_OK;
}

/* ---- errors ------------------------------------------------------------- */

const char *op_name(WarpOp op) {
    switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shfl_idx: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_bfly: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::any: return "__any_sync";
    case WarpOp::all: return "__all_sync";
    case WarpOp::match_any: return "__match_any_sync";
    case WarpOp::match_all: return "__match_all_sync";
    case WarpOp::reduce_add: return "__reduce_add_sync";
    case WarpOp::reduce_min: case WarpOp::reduce_min_signed: return "__reduce_min_sync";
    case WarpOp::reduce_max: case WarpOp::reduce_max_signed: return "__reduce_max_sync";
    case WarpOp::reduce_and: return "__reduce_and_sync";
    case WarpOp::reduce_or: return "__reduce_or_sync";
    case WarpOp::reduce_xor: return "__reduce_xor_sync";
    case WarpOp::mma: return "mma.sync";
    case WarpOp::ldmatrix: return "ldmatrix.sync";
    }
    return "?";
}

const char *barrier_name(int mode) {
    static const char *names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                  "__syncthreads_or"};
    return names[mode & 3];
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
bool fail(Executor &ex, const char *fmt, ...) {
    char what[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    qilin_error(QILIN_ERR_KERNEL, "kernel '%s' (launched at %s:%d), block (%u,%u,%u) of (%u,%u,%u): %s",
                ex.kernel, ex.launch_file, ex.launch_line, blockIdx.x, blockIdx.y, blockIdx.z,
                gridDim.x, gridDim.y, gridDim.z, what);
    ex.dirty = true;
    return false;
}

std::string describe_waiters(Executor &ex) {
    std::string out;
    char buf[256];
    int exited = 0;
    for (int i = 0; i < ex.nthreads; i++) {
        Thread &t = *ex.threads[i];
        if (t.wait == Wait::done) exited++;
    }
    /* one line per distinct (kind, site, mask) */
    std::vector<std::string> seen;
    for (int i = 0; i < ex.nthreads; i++) {
        Thread &t = *ex.threads[i];
        if (t.wait == Wait::done || t.wait == Wait::running) continue;
        if (t.wait == Wait::barrier)
            snprintf(buf, sizeof buf, "%s at %s:%d", barrier_name(t.barrier_mode), t.file, t.line);
        else if (t.wait == Wait::warp)
            snprintf(buf, sizeof buf, "%s(mask 0x%08x) at %s:%d in warp %d", op_name(t.op), t.mask, t.file,
                     t.line, t.warp);
        else
            snprintf(buf, sizeof buf, "__activemask at %s:%d", t.file, t.line);
        std::string key = buf;
        if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
        seen.push_back(key);
        int count = 0;
        for (int j = 0; j < ex.nthreads; j++) {
            Thread &u = *ex.threads[j];
            if (u.wait == t.wait && u.file == t.file && u.line == t.line && u.mask == t.mask &&
                (u.wait != Wait::warp || u.warp == t.warp))
                count++;
        }
        snprintf(buf, sizeof buf, "%s%d thread(s) wait in %s", out.empty() ? "" : "; ", count, key.c_str());
        out += buf;
    }
    snprintf(buf, sizeof buf, "; %d of %d thread(s) exited", exited, ex.nthreads);
    out += buf;
    return out;
}

/* ---- barriers ------------------------------------------------------------ */

void make_runnable(Executor &ex, Thread &t, uint64_t result) {
    t.result = result;
    t.wait = Wait::running;
    ex.runnable.push_back(&t);
}

bool release_barrier(Executor &ex) {
    int count = 0, mode = ex.threads[0]->barrier_mode;
    for (int i = 0; i < ex.nthreads; i++) {
        Thread &t = *ex.threads[i];
        if (t.barrier_mode != mode)
            return fail(ex, "threads meet at different barriers: thread (%u,%u,%u) at %s (%s:%d), "
                            "thread (%u,%u,%u) at %s (%s:%d)",
                        ex.threads[0]->idx.x, ex.threads[0]->idx.y, ex.threads[0]->idx.z,
                        barrier_name(mode), ex.threads[0]->file, ex.threads[0]->line, t.idx.x, t.idx.y,
                        t.idx.z, barrier_name(t.barrier_mode), t.file, t.line);
        count += t.pred;
    }
    uint64_t result = 0;
    if (mode == barrier_count) result = (uint64_t)count;
    if (mode == barrier_and) result = count == ex.nthreads;
    if (mode == barrier_or) result = count > 0;
    for (int i = 0; i < ex.nthreads; i++) make_runnable(ex, *ex.threads[i], result);
    ex.n_barrier = 0;
    return true;
}

bool divergent_barrier(Executor &ex, Thread &culprit) { /* culprit: an exited thread */
    Thread *waiter = nullptr;
    for (int i = 0; i < ex.nthreads && !waiter; i++)
        if (ex.threads[i]->wait == Wait::barrier) waiter = ex.threads[i].get();
    return fail(ex, "divergent barrier: %s at %s:%d can never complete — %d of %d threads wait "
                    "there but thread (%u,%u,%u) has exited (every thread of a block must reach "
                    "each __syncthreads)",
                barrier_name(waiter->barrier_mode), waiter->file, waiter->line, ex.n_barrier,
                ex.nthreads, culprit.idx.x, culprit.idx.y, culprit.idx.z);
}

/* ---- warp collectives ---------------------------------------------------- */

unsigned warp_lanes(Executor &ex, int warp) { /* lanes that exist in this warp */
    int n = ex.nthreads - warp * 32;
    return n >= 32 ? 0xffffffffu : ((1u << n) - 1);
}

/* PTX shfl.sync: source lane j for `lane`, or lane itself when out of range. */
int shfl_source(WarpOp op, int lane, unsigned b, unsigned c) {
    int seg = (int)((c >> 8) & 0x1f), clamp = (int)(c & 0x1f);
    int max_lane = (lane & seg) | (clamp & ~seg);
    int min_lane = lane & seg;
    int j = lane;
    bool ok = false;
    switch (op) {
    case WarpOp::shfl_up: j = lane - (int)(b & 0x1f); ok = j >= max_lane; break;
    case WarpOp::shfl_down: j = lane + (int)(b & 0x1f); ok = j <= max_lane; break;
    case WarpOp::shfl_bfly: j = lane ^ (int)(b & 0x1f); ok = j <= max_lane; break;
    default: j = min_lane | ((int)(b & 0x1f) & ~seg); ok = j <= max_lane; break;
    }
    return ok ? j : lane;
}

/* The result every lane of the group receives, for the collectives whose
 * result is the same for all lanes (votes, match_all, reductions, sync). */
uint64_t uniform_result(const Group &g, Thread *const lanes[32]) {
    unsigned votes = 0;
    uint32_t acc = 0;
    bool first = true, all_equal = true;
    uint64_t first_value = 0;
    for (int l = 0; l < 32; l++) {
        if (!lanes[l]) continue;
        uint64_t value = lanes[l]->value;
        uint32_t v = (uint32_t)value;
        if (value) votes |= 1u << l;
        if (first) {
            acc = v;
            first_value = value;
            first = false;
            continue;
        }
        all_equal = all_equal && value == first_value;
        switch (g.op) {
        case WarpOp::reduce_add: acc += v; break;
        case WarpOp::reduce_min: acc = std::min(acc, v); break;
        case WarpOp::reduce_max: acc = std::max(acc, v); break;
        case WarpOp::reduce_min_signed: acc = (uint32_t)std::min((int32_t)acc, (int32_t)v); break;
        case WarpOp::reduce_max_signed: acc = (uint32_t)std::max((int32_t)acc, (int32_t)v); break;
        case WarpOp::reduce_and: acc &= v; break;
        case WarpOp::reduce_or: acc |= v; break;
        case WarpOp::reduce_xor: acc ^= v; break;
        default: break;
        }
    }
    switch (g.op) {
    case WarpOp::sync: return 0;
    case WarpOp::ballot: return votes;
    case WarpOp::any: return votes != 0;
    case WarpOp::all: return votes == g.mask;
    case WarpOp::match_all: return all_equal ? ((uint64_t)1 << 32) | g.mask : 0;
    default: return acc; /* the reductions */
    }
}

/* mma and ldmatrix: the operands of all 32 lanes meet in tensor_core_sim.cpp. */
bool resolve_matrix_group(Executor &ex, Thread *const lanes[32], const Group &g) {
    void *operands[32];
    for (int l = 0; l < 32; l++) operands[l] = reinterpret_cast<void *>((uintptr_t)lanes[l]->value);
    std::string error = resolve_matrix_op(g.op, operands, ex.smem, ex.smem_bytes);
    if (!error.empty())
        return fail(ex, "%s at %s:%d in warp %d: %s", op_name(g.op), lanes[0]->file, lanes[0]->line,
                    lanes[0]->warp, error.c_str());
    for (int l = 0; l < 32; l++) make_runnable(ex, *lanes[l], 0);
    return true;
}

bool resolve_group(Executor &ex, int warp, const Group &g) {
    Thread *lanes[32] = {};
    for (int l = 0; l < 32; l++)
        if (g.mask & (1u << l)) lanes[l] = ex.threads[warp * 32 + l].get();
    if (g.op == WarpOp::mma || g.op == WarpOp::ldmatrix) return resolve_matrix_group(ex, lanes, g);
    bool per_lane = g.op == WarpOp::shfl_idx || g.op == WarpOp::shfl_up || g.op == WarpOp::shfl_down ||
                    g.op == WarpOp::shfl_bfly || g.op == WarpOp::match_any;
    uint64_t uniform = per_lane ? 0 : uniform_result(g, lanes); /* shuffles, the common case, skip it */
    for (int l = 0; l < 32; l++) {
        Thread *t = lanes[l];
        if (!t) continue;
        uint64_t r = uniform;
        if (g.op == WarpOp::match_any) {
            unsigned m = 0;
            for (int k = 0; k < 32; k++)
                if (lanes[k] && lanes[k]->value == t->value) m |= 1u << k;
            r = m;
        } else if (per_lane) {
            int j = shfl_source(g.op, l, t->b, t->c);
            /* a source outside the mask is undefined on the GPU; we return the lane's own value */
            r = lanes[j] ? lanes[j]->value : t->value;
        }
        make_runnable(ex, *t, r);
    }
    return true;
}

bool join_group(Executor &ex, Thread &t) {
    unsigned bit = 1u << t.lane, exist = warp_lanes(ex, t.warp);
    if (!(t.mask & bit))
        return fail(ex, "%s at %s:%d: thread (%u,%u,%u) (warp %d lane %d) is not in its own mask 0x%08x",
                    op_name(t.op), t.file, t.line, t.idx.x, t.idx.y, t.idx.z, t.warp, t.lane, t.mask);
    if (t.mask & ~exist)
        return fail(ex, "%s at %s:%d: mask 0x%08x names lanes that do not exist in warp %d (the "
                        "block has %d threads)",
                    op_name(t.op), t.file, t.line, t.mask, t.warp, ex.nthreads);
    for (int l = 0; l < 32; l++)
        if ((t.mask >> l & 1) && ex.threads[t.warp * 32 + l]->wait == Wait::done)
            return fail(ex, "%s at %s:%d: mask 0x%08x names lane %d of warp %d, which has exited",
                        op_name(t.op), t.file, t.line, t.mask, l, t.warp);
    std::vector<Group> &groups = ex.groups[t.warp];
    Group *g = nullptr;
    for (Group &h : groups) {
        if (h.mask == t.mask) { g = &h; break; }
        if (h.mask & t.mask)
            return fail(ex, "%s(mask 0x%08x) at %s:%d overlaps a pending %s(mask 0x%08x) in warp %d",
                        op_name(t.op), t.mask, t.file, t.line, op_name(h.op), h.mask, t.warp);
    }
    if (!g) {
        groups.push_back(Group{t.mask, 0, t.op});
        g = &groups.back();
    }
    if (g->op != t.op)
        return fail(ex, "lanes of warp %d with mask 0x%08x meet at different collectives: %s and %s "
                        "(at %s:%d)",
                    t.warp, t.mask, op_name(g->op), op_name(t.op), t.file, t.line);
    g->arrived |= bit;
    if (g->arrived == g->mask) {
        Group done = *g;
        groups.erase(groups.begin() + (g - groups.data()));
        return resolve_group(ex, t.warp, done);
    }
    return true;
}

bool lane_exited(Executor &ex, Thread &t) {
    for (const Group &g : ex.groups[t.warp])
        if (g.mask & (1u << t.lane)) {
            const Thread &first = *ex.threads[t.warp * 32 + __builtin_ctz(g.arrived)]; /* one lane that is there */
            return fail(ex, "%s(mask 0x%08x) at %s:%d in warp %d can never complete: lane %d has exited "
                            "(arrived: 0x%08x)",
                        op_name(g.op), g.mask, first.file, first.line, t.warp, t.lane, g.arrived);
        }
    return true;
}

/* Nothing can run: lanes parked at the same __activemask site are the ones
 * that reached it together. */
bool resolve_activemask(Executor &ex) {
    if (ex.n_activemask == 0) return false;
    std::vector<Thread *> waiting;
    for (int i = 0; i < ex.nthreads; i++)
        if (ex.threads[i]->wait == Wait::activemask) waiting.push_back(ex.threads[i].get());
    for (Thread *t : waiting) {
        unsigned m = 0;
        for (int l = 0; l < 32 && t->warp * 32 + l < ex.nthreads; l++) {
            Thread &u = *ex.threads[t->warp * 32 + l];
            if (u.wait == Wait::activemask && u.file == t->file && u.line == t->line) m |= 1u << l;
        }
        t->mask = m;
    }
    for (Thread *t : waiting) make_runnable(ex, *t, t->mask);
    ex.n_activemask = 0;
    return true;
}

/* Book-keeping after a fiber parks; false when the block failed. */
bool after_park(Executor &ex, Thread &t) {
    switch (t.wait) {
    case Wait::done:
        land_copies(t.async, -1); /* the hardware completes a thread's copies */
        ex.n_done++;
        if (ex.n_barrier > 0) return divergent_barrier(ex, t);
        return lane_exited(ex, t);
    case Wait::barrier:
        ex.n_barrier++;
        if (ex.n_done > 0) {
            for (int i = 0; i < ex.nthreads; i++)
                if (ex.threads[i]->wait == Wait::done) return divergent_barrier(ex, *ex.threads[i]);
        }
        return ex.n_barrier == ex.nthreads ? release_barrier(ex) : true;
    case Wait::warp: return join_group(ex, t);
    case Wait::activemask: ex.n_activemask++; return true;
    case Wait::trapped:
        return fail(ex, "__trap() at %s:%d in thread (%u,%u,%u)", t.file, t.line, t.idx.x, t.idx.y, t.idx.z);
    case Wait::misaligned:
    {
        char where[512];
        if (t.line > 0)
            snprintf(where, sizeof where, "at %s:%d", t.file, t.line);
        else
            snprintf(where, sizeof where, "in %s", t.file); /* a site without a line, e.g. a Vec16 copy */
        return fail(ex, "misaligned %zu-byte vector %s at %p (%zu bytes past a %zu-byte boundary) %s in thread "
                        "(%u,%u,%u); a GPU faults on it",
                    t.align, t.access, t.addr, (size_t)((uintptr_t)t.addr % t.align), t.align, where, t.idx.x,
                    t.idx.y, t.idx.z);
    }
    case Wait::fault:
        return fail(ex, "%s at %s:%d in thread (%u,%u,%u)", t.fault.c_str(), t.file, t.line, t.idx.x, t.idx.y,
                    t.idx.z);
    case Wait::running: break;
    }
    return fail(ex, "internal: thread (%u,%u,%u) parked without a reason", t.idx.x, t.idx.y, t.idx.z);
}

bool run_block(Executor &ex, uint3 block) {
    blockIdx = block;
    ex.n_done = ex.n_barrier = ex.n_activemask = 0;
    ex.runnable.clear();
    for (auto &g : ex.groups) g.clear();
    for (int i = 0; i < ex.nthreads; i++) {
        Thread &t = *ex.threads[i];
        t.idx = uint3{(unsigned)i % blockDim.x, (unsigned)i / blockDim.x % blockDim.y,
                      (unsigned)i / (blockDim.x * blockDim.y)};
        t.warp = i / 32;
        t.lane = i % 32;
        t.wait = Wait::running;
        t.result = 0;
        t.async.reset();
        ex.runnable.push_back(&t);
    }
    if (ex.smem_bytes) std::memset(ex.smem, 0xFF, ex.smem_bytes); /* NaN poison, as on a GPU: no zeroing */
    while (ex.n_done < ex.nthreads) {
        if (ex.runnable.empty()) {
            if (resolve_activemask(ex)) continue;
            return fail(ex, "deadlock: no thread can proceed: %s", describe_waiters(ex).c_str());
        }
        size_t k = pick(ex, ex.runnable.size());
        Thread *t = ex.runnable[k];
        ex.runnable[k] = ex.runnable.back();
        ex.runnable.pop_back();
        threadIdx = t->idx;
        ex.current = t;
        ex.switches++;
        context_switch(&ex.sched, &t->ctx);
        ex.current = nullptr;
        if (!after_park(ex, *t)) return false;
    }
    return true;
}

qilin_status check_shape(const char *kernel, const char *file, int line, dim3 grid, dim3 block,
                         size_t smem) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    const char *bad = nullptr;
    if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        bad = "a zero grid or block dimension";
    else if (threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64)
        bad = "more than 1024 threads per block (or block.x/y > 1024, block.z > 64)";
    else if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        bad = "a grid beyond (2^31-1, 65535, 65535)";
    else if (smem > qsim_max_dynamic_smem())
        bad = "more dynamic shared memory than a block may have (QILIN_SIM_PROFILE's opt-in limit)";
    if (!bad) return QILIN_OK;
    return qilin_error(QILIN_ERR_KERNEL,
                       "kernel '%s' (launched at %s:%d): invalid launch: grid (%u,%u,%u), block "
                       "(%u,%u,%u), %zu bytes of dynamic shared memory: %s",
                       kernel, file, line, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, bad);
}

/* ---- a launch's blocks on the pool of host threads (pool.h) ---------------- */

/* The schedule of block i is drawn from the launch's seed and i alone, never
 * from the host thread that runs it, so a seed gives the same interleavings
 * whatever QILIN_SIM_THREADS is. */
uint64_t block_seed(uint64_t launch_seed, unsigned long long block) {
    uint64_t s = splitmix64(launch_seed ^ block);
    return s ? s : 1; /* xorshift's state must not be 0 */
}

/* One launch's grid, shared by the host threads that run its blocks. Blocks
 * are handed out in order (x fastest, as a single thread runs them); after a
 * failure no more are, so every block below the failing one still runs and
 * the failure reported is the lowest failing block's, with its message. */
struct Grid final : Task {
    const char *kernel, *file;
    int line;
    dim3 grid, block;
    size_t smem_bytes;
    const std::function<void()> &body;
    Executor &launcher;
    unsigned long long blocks;
    uint64_t seed;
    std::atomic<unsigned long long> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu; /* guards the failure below */
    unsigned long long failed_block = ~0ull;
    qilin_status status = QILIN_OK;
    std::string message;

    Grid(const char *kernel_, const char *file_, int line_, dim3 grid_, dim3 block_, size_t smem_,
         const std::function<void()> &body_, Executor &launcher_)
        : kernel(kernel_), file(file_), line(line_), grid(grid_), block(block_), smem_bytes(smem_),
          body(body_), launcher(launcher_),
          blocks((unsigned long long)grid_.x * grid_.y * grid_.z), seed(launcher_.rng) {}
    bool has_work() const override {
        return !failed.load(std::memory_order_relaxed) && next.load(std::memory_order_relaxed) < blocks;
    }
    void share() override;
    void record_failure(unsigned long long i) {
        std::lock_guard<std::mutex> lock(mu);
        if (i < failed_block) {
            failed_block = i;
            status = QILIN_ERR_KERNEL;
            message = qilin_last_error(); /* this thread's; the launcher reports it */
        }
        failed.store(true, std::memory_order_release);
    }
};

/* Readies this thread's executor for the grid: fibers, shared memory, the
 * launch's fields and the thread-local gridDim/blockDim. */
qilin_status enter_grid(Executor &ex, const Grid &g) {
    int n = (int)(g.block.x * g.block.y * g.block.z);
    QILIN_TRY(ensure_threads(ex, n));
    if (g.smem_bytes > ex.smem_capacity) {
        std::free(ex.smem);
        ex.smem = static_cast<unsigned char *>(std::aligned_alloc(128, (g.smem_bytes + 127) / 128 * 128));
        ex.smem_capacity = ex.smem ? g.smem_bytes : 0;
        if (!ex.smem)
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "sim: no memory for %zu bytes of shared memory",
                               g.smem_bytes);
    }
    ex.body = &g.body;
    ex.kernel = g.kernel;
    ex.launch_file = g.file;
    ex.launch_line = g.line;
    ex.smem_bytes = g.smem_bytes;
    ex.nthreads = n;
    ex.groups.assign((size_t)(n + 31) / 32, {});
    gridDim = g.grid;
    blockDim = g.block;
    return QILIN_OK;
}

void Grid::share() {
    Executor &ex = executor();
    /* a helper that cannot map its fibers leaves the blocks to the others */
    if (&ex != &launcher && enter_grid(ex, *this) != QILIN_OK) return;
    const unsigned long long switches_before = ex.switches;
    while (!failed.load(std::memory_order_acquire)) {
        unsigned long long i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= blocks) break;
        uint3 b{(unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y),
                (unsigned)(i / ((unsigned long long)grid.x * grid.y))};
        ex.rng = block_seed(seed, i);
        if (!run_block(ex, b)) {
            record_failure(i); /* this executor's fibers are abandoned: it takes no more blocks */
            break;
        }
    }
    ex.body = nullptr;
    total_switches += ex.switches - switches_before;
}

} // namespace

/* ---- entry points used by sim.h ------------------------------------------ */

static Thread &current_thread(const char *what) {
    Executor *ex = tls_ex;
    if (!ex || !ex->current) {
        fprintf(stderr, "qilin sim: %s called outside a kernel\n", what);
        abort(); /* a broken internal invariant: only kernels call intrinsics */
    }
    return *ex->current;
}

static inline void park(Thread &t) {
    Executor &ex = *tls_ex;
    ex.switches++;
    context_switch(&t.ctx, &ex.sched);
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, unsigned b, unsigned c, const char *file,
                         int line) {
    Thread &t = current_thread("a warp collective");
    t.op = op;
    t.mask = mask;
    t.value = value;
    t.b = b;
    t.c = c;
    t.file = file;
    t.line = line;
    t.wait = Wait::warp;
    park(t);
    return t.result;
}

int block_barrier(int pred, int mode, const char *file, int line) {
    Thread &t = current_thread("__syncthreads");
    t.pred = pred;
    t.barrier_mode = mode;
    t.file = file;
    t.line = line;
    t.wait = Wait::barrier;
    park(t);
    return (int)t.result;
}

unsigned active_mask(const char *file, int line) {
    Thread &t = current_thread("__activemask");
    t.file = file;
    t.line = line;
    t.wait = Wait::activemask;
    park(t);
    return (unsigned)t.result;
}

void trap(const char *file, int line) {
    Thread &t = current_thread("__trap");
    t.file = file;
    t.line = line;
    t.wait = Wait::trapped;
    park(t);
    abort(); /* never resumed: the block is abandoned */
}

void check_aligned(const void *p, size_t align, const char *access, const char *file, int line) {
    if ((uintptr_t)p % align == 0) return;
    Executor *ex = tls_ex;
    if (!ex || !ex->current) return; /* host code (a CPU reference) cannot fault this way */
    Thread &t = *ex->current;
    t.addr = p;
    t.align = align;
    t.access = access;
    t.file = file;
    t.line = line;
    t.wait = Wait::misaligned;
    park(t);
    abort(); /* never resumed: the block is abandoned */
}

void fault(const char *file, int line, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    Thread &t = current_thread("a checked instruction");
    t.fault = what;
    t.file = file;
    t.line = line;
    t.wait = Wait::fault;
    park(t);
    abort(); /* never resumed: the block is abandoned */
}

AsyncCopies &current_async_copies(const char *what) { return current_thread(what).async; }

void *dynamic_smem() { return tls_ex ? tls_ex->smem : nullptr; }

qilin_status launch(const char *kernel, const char *file, int line, dim3 grid, dim3 block,
                    size_t smem_bytes, const std::function<void()> &body) {
    Executor &ex = executor();
    qilin_status st = check_shape(kernel, file, line, grid, block, smem_bytes);
    if (st == QILIN_OK && ex.current)
        st = qilin_error(QILIN_ERR_KERNEL, "kernel '%s' (at %s:%d) launched from inside kernel '%s'",
                         kernel, file, line, ex.kernel);
    Grid g(kernel, file, line, grid, block, smem_bytes, body, ex);
    if (st == QILIN_OK) st = enter_grid(ex, g);
    if (st != QILIN_OK) {
        ex.last_launch = st;
        return st;
    }
    const uint64_t launch_seed = ex.rng;
    pool_run(g, g.blocks); /* a single block stays on this thread, with this thread's __shared__ */
    ex.rng = splitmix64(launch_seed); /* the next launch's seed, whoever ran the blocks */
    if (g.status != QILIN_OK) st = qilin_error(g.status, "%s", g.message.c_str()); /* the lowest failing block's */
    ex.last_launch = st;
    return st;
}

qilin_status launch_on_stream(const char *kernel, const char *file, int line, dim3 grid, dim3 block,
                              size_t smem_bytes, qilin_stream *stream, std::function<void()> body) {
    total_launches.fetch_add(1);
    if (qsim_dry_run()) { /* checked (and logged, kernel.h) as always, never run */
        Executor &ex = executor();
        qilin_status st = check_shape(kernel, file, line, grid, block, smem_bytes);
        if (st == QILIN_OK && ex.current)
            st = qilin_error(QILIN_ERR_KERNEL, "kernel '%s' (at %s:%d) launched from inside kernel '%s'",
                             kernel, file, line, ex.kernel);
        ex.last_launch = st;
        return st;
    }
    /* a capturing stream records the launch (through submit_to) in either mode */
    if (!deferred() && !stream_capturing(stream)) return launch(kernel, file, line, grid, block, smem_bytes, body);
    Executor &ex = executor();
    /* What CUDA reports at the launch itself: its shape, launching from a
     * kernel, a dead stream. The rest shows when the kernel has run. */
    qilin_status st = check_shape(kernel, file, line, grid, block, smem_bytes);
    if (st == QILIN_OK && ex.current)
        st = qilin_error(QILIN_ERR_KERNEL, "kernel '%s' (at %s:%d) launched from inside kernel '%s'",
                         kernel, file, line, ex.kernel);
    if (st == QILIN_OK) {
        /* The worker runs it under a seed drawn from this thread's, so
         * qsim_set_seed before a launch still picks its schedule. */
        ex.rng = splitmix64(ex.rng);
        const uint64_t seed = ex.rng | 1;
        st = submit_to(stream, kernel, [=, body = std::move(body)] {
            Executor &worker = executor();
            worker.rng = seed;
            qilin_status run = launch(kernel, file, line, grid, block, smem_bytes, body);
            worker.last_launch = QILIN_OK; /* the engine keeps the failure for the device */
            return run;
        });
    }
    ex.last_launch = st;
    return st;
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t env_u64(const char *name, uint64_t fallback) {
    const char *s = getenv(name);
    if (!s || !*s) return fallback;
    char *end = nullptr;
    unsigned long long v = strtoull(s, &end, 0);
    return (end && *end == '\0') ? (uint64_t)v : fallback;
}

} // namespace qsim

extern "C" qilin_status qsim_take_launch_status(void) {
    qsim::Executor &ex = qsim::executor();
    qilin_status st = ex.last_launch;
    ex.last_launch = QILIN_OK;
    return st;
}

extern "C" unsigned long long qsim_switch_count(void) { return qsim::total_switches.load(); }

extern "C" unsigned long long qsim_launch_count(void) { return qsim::total_launches.load(); }

extern "C" void qsim_set_seed(unsigned long long seed) { qsim::executor().rng = qsim::splitmix64(seed); }
