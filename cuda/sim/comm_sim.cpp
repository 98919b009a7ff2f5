/* comm_sim.cpp — qilin's collectives between emulated devices (sim build).
 *
 * The ranks of one qilin_comm_init_all share a Clique; each rank is driven by
 * its own host thread (comm.h) and device memory is host memory, so an
 * exchange is a copy under the clique's mutex.
 *
 * Collectives: every rank posts its arguments and waits; the last to arrive
 * checks that all ranks called the same collective with the same count, dtype
 * and root (a mismatch fails the call on every rank, naming the op and the
 * ranks), computes the whole result, writes every rank's recv buffer, bumps
 * the generation counter and wakes the others. Inputs are gathered into a
 * temporary before any output is written, so in-place calls are safe. Sums
 * run over ranks in the fixed order 0..N-1, f16/bf16/fp8 accumulate in fp32
 * and round once, integers wrap: every rank gets bit-identical results.
 *
 * Point-to-point: a FIFO mailbox per (src, dst) pair. Sends are eager (copy
 * into the mailbox and return); a receive waits for its message and checks
 * that count and dtype match. Eager sends are more forgiving than NCCL, whose
 * ungrouped send may wait for the peer's receive: two ranks that each send
 * and then receive outside a group pass here and hang on GPUs. Inside qilin_comm_group_start/end receives are
 * deferred to the outermost group_end, so the sends and receives of a group
 * never wait for one another in any order (NCCL's group promise). Collectives
 * are not deferred: in a group they block at the call as they would outside,
 * so unlike NCCL one thread cannot issue several ranks' collectives inside one
 * group; each rank needs its own thread, which is comm.h's model anyway. A
 * collective with count 0 still meets the other ranks (NCCL may skip it), so
 * the sim also catches ranks that disagree about empty calls.
 *
 * Stream order: with the sim's deferred streams (sim/streams.h) every call
 * first waits for the work already issued to its stream, then exchanges on
 * the calling thread, so the collective sits between the work issued before
 * and after it, as on a GPU. (It also means the exchange has finished when the
 * call returns: a host read of a recv buffer without a synchronisation is not
 * caught here, unlike with copies and kernels.)
 *
 * Ranks in several processes (qilin_comm_init_ranks): the ranks of each
 * process meet in their own clique as above, and the last local rank to
 * arrive exchanges all local arguments and send buffers with the other
 * processes (comm_sim_net.h) before computing; only its own ranks' recv
 * buffers are written. Point-to-point stays within a process.
 *
 * Hangs become errors: a rank waiting for a peer that destroyed its
 * communicator fails at once, and any wait longer than QILIN_SIM_COMM_TIMEOUT_S
 * seconds (default 300, read at init) fails. Both mark the clique broken, and
 * every later call on any of its ranks fails with the same message, like a
 * communicator NCCL has aborted. */
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "comm_sim_net.h"
#include "cuda/comm.h"
#include "cuda/comm_check.h"

namespace {

enum class Op { AllReduce, AllGather, ReduceScatter, Broadcast, AllToAll };

const char *op_name(Op op) {
    switch (op) {
    case Op::AllReduce:
        return "all_reduce_sum";
    case Op::AllGather:
        return "all_gather";
    case Op::ReduceScatter:
        return "reduce_scatter_sum";
    case Op::Broadcast:
        return "broadcast";
    case Op::AllToAll:
        return "all_to_all";
    }
    return "?";
}

/* One rank's arguments to the collective in progress. */
struct Post {
    Op op;
    size_t count;
    qilin_dtype dtype;
    int root; /* broadcast only; -1 otherwise */
    const void *send;
    void *recv;
};

struct Message {
    std::vector<unsigned char> data;
    size_t count;
    qilin_dtype dtype;
};

using Clock = std::chrono::steady_clock;

struct Clique {
    int size = 0;            /* world: ranks in every process */
    int first = 0, nlocal = 0; /* this process's ranks [first, first + nlocal); the vectors below
                                  are indexed by rank - first */
    std::unique_ptr<qilin_sim_net::Group> net; /* the other processes; NULL when none */
    double timeout_s = 300.0;
    std::mutex mu;
    std::condition_variable cv;
    /* Collective rendezvous. */
    uint64_t generation = 0; /* collectives completed */
    int arrived = 0;
    std::vector<Post> posts;
    std::vector<char> posted;
    std::vector<qilin_status> result;
    std::vector<std::string> result_msg;
    /* Point-to-point: mailbox[src * size + dst]. */
    std::vector<std::deque<Message>> mailbox;
    /* Lifetime and failure. */
    std::vector<char> destroyed;
    std::string broken; /* non-empty once a timeout or a vanished peer broke the clique */
};

int local(const Clique &c, int rank) { return rank - c.first; }
bool is_local(const Clique &c, int rank) { return rank >= c.first && rank < c.first + c.nlocal; }

} // namespace

/* Per rank. Fields after `device` are read and written under clique->mu,
 * except `busy`, which is claimed by compare-and-swap. */
struct qilin_comm {
    std::shared_ptr<Clique> clique;
    int rank;
    int device;
    double timeout_s;
    std::atomic<int> busy{0};   /* 1 while a thread is inside an operation */
    std::thread::id owner{};     /* the thread of the last operation; none at first */
    std::string requested;       /* qilin_comm_request_abort's reason; empty when none */
    std::string injected;        /* qilin_comm_sim_inject_error's message */
    bool aborted = false, vanished = false;
    qilin_comm(std::shared_ptr<Clique> c, int r, int d, double t) : clique(std::move(c)), rank(r), device(d), timeout_s(t) {}
};

namespace {

qilin_comm_site site(const char *op, const qilin_comm *c) {
    return qilin_comm_site{op, c->rank, c->clique->size};
}

/* ---- element-wise sums in rank order --------------------------------- */

inline float to_f32(float x) { return x; }
inline float to_f32(__half x) { return __half2float(x); }
inline float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float to_f32(__nv_fp8_e4m3 x) { return static_cast<float>(x); }

template <typename T> T from_f32(float x);
template <> float from_f32<float>(float x) { return x; }
template <> __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __nv_fp8_e4m3 from_f32<__nv_fp8_e4m3>(float x) { return __nv_fp8_e4m3(x); }

/* out[i] = src[0][i] + src[1][i] + ... in fp32, rounded once. Starting from
 * rank 0's value (not 0.0f) keeps a lone -0.0 as NCCL would copy it. */
template <typename T>
void sum_float(const std::vector<const unsigned char *> &src, size_t count, unsigned char *out) {
    T *o = reinterpret_cast<T *>(out);
    for (size_t i = 0; i < count; i++) {
        float s = to_f32(reinterpret_cast<const T *>(src[0])[i]);
        for (size_t r = 1; r < src.size(); r++) s += to_f32(reinterpret_cast<const T *>(src[r])[i]);
        o[i] = from_f32<T>(s);
    }
}

/* Integer sums wrap around (two's complement), computed unsigned to stay
 * defined behaviour. */
template <typename T>
void sum_int(const std::vector<const unsigned char *> &src, size_t count, unsigned char *out) {
    T *o = reinterpret_cast<T *>(out);
    for (size_t i = 0; i < count; i++) {
        uint64_t s = 0;
        for (const unsigned char *p : src)
            s += static_cast<uint64_t>(static_cast<int64_t>(reinterpret_cast<const T *>(p)[i]));
        o[i] = static_cast<T>(s);
    }
}

void sum_any(qilin_dtype t, const std::vector<const unsigned char *> &src, size_t count, unsigned char *out) {
    switch (t) {
    case QILIN_F32:
        sum_float<float>(src, count, out);
        break;
    case QILIN_F16:
        sum_float<__half>(src, count, out);
        break;
    case QILIN_BF16:
        sum_float<__nv_bfloat16>(src, count, out);
        break;
    case QILIN_FP8_E4M3:
        sum_float<__nv_fp8_e4m3>(src, count, out);
        break;
    case QILIN_I32:
        sum_int<int32_t>(src, count, out);
        break;
    case QILIN_I64:
        sum_int<int64_t>(src, count, out);
        break;
    case QILIN_I8:
        sum_int<int8_t>(src, count, out);
        break;
    case QILIN_U8:
        sum_int<uint8_t>(src, count, out);
        break;
    default:
        break; /* unreachable: dtype checked at the call */
    }
}

/* memcpy that accepts empty copies with NULL pointers (UBSan's nonnull check). */
void copy_bytes(void *dst, const void *src, size_t n) {
    if (n > 0 && dst != src) std::memmove(dst, src, n);
}

/* ---- collective execution (by the last rank to arrive, under the lock) --- */

std::string describe(const Post &p, int rank) {
    std::string s = "rank " + std::to_string(rank) + " " + op_name(p.op) +
                    "(count=" + std::to_string(p.count) + ", " + qilin_dtype_name(p.dtype);
    if (p.op == Op::Broadcast) s += ", root=" + std::to_string(p.root);
    return s + ")";
}

/* Every rank's post, by global rank; recv is NULL for another process's ranks. */
using Posts = std::vector<Post>;

/* Empty when every rank posted the same call as rank 0. */
std::string mismatch(const Posts &posts) {
    const Post &p0 = posts[0];
    bool same = true;
    for (size_t r = 1; r < posts.size(); r++) {
        const Post &p = posts[r];
        same = same && p.op == p0.op && p.count == p0.count && p.dtype == p0.dtype && p.root == p0.root;
    }
    if (same) return {};
    std::string s = "comm: ranks disagree on the collective: ";
    for (size_t r = 0; r < posts.size(); r++) s += (r ? "; " : "") + describe(posts[r], (int)r);
    return s;
}

void run_reduce(const Posts &posts, size_t elems, std::vector<unsigned char> &tmp) {
    std::vector<const unsigned char *> src(posts.size());
    for (size_t r = 0; r < posts.size(); r++) src[r] = static_cast<const unsigned char *>(posts[r].send);
    tmp.resize(elems * qilin_dtype_size(posts[0].dtype));
    if (elems > 0) sum_any(posts[0].dtype, src, elems, tmp.data());
}

/* Concatenates every rank's `bytes` of send, rank-major. */
void gather_sends(const Posts &posts, size_t bytes, std::vector<unsigned char> &tmp) {
    tmp.resize(bytes * posts.size());
    for (size_t r = 0; r < posts.size(); r++) copy_bytes(tmp.data() + r * bytes, posts[r].send, bytes);
}

/* copy_bytes into a rank's recv, skipped for ranks of other processes. */
void deliver(const Post &p, size_t offset, const unsigned char *src, size_t n) {
    if (p.recv != nullptr) copy_bytes(static_cast<unsigned char *>(p.recv) + offset, src, n);
}

void execute(const Posts &posts) {
    const Post &p0 = posts[0];
    const size_t n = p0.count, esz = qilin_dtype_size(p0.dtype), bytes = n * esz;
    const int size = (int)posts.size();
    std::vector<unsigned char> tmp;
    switch (p0.op) {
    case Op::AllReduce:
        run_reduce(posts, n, tmp);
        for (int r = 0; r < size; r++) deliver(posts[r], 0, tmp.data(), bytes);
        break;
    case Op::ReduceScatter:
        run_reduce(posts, n * size, tmp);
        for (int r = 0; r < size; r++) deliver(posts[r], 0, tmp.data() + r * bytes, bytes);
        break;
    case Op::AllGather:
        gather_sends(posts, bytes, tmp);
        for (int r = 0; r < size; r++) deliver(posts[r], 0, tmp.data(), bytes * size);
        break;
    case Op::Broadcast:
        tmp.resize(bytes);
        copy_bytes(tmp.data(), posts[p0.root].send, bytes);
        for (int r = 0; r < size; r++) deliver(posts[r], 0, tmp.data(), bytes);
        break;
    case Op::AllToAll:
        /* recv of rank q, chunk p = send of rank p, chunk q */
        gather_sends(posts, bytes * size, tmp);
        for (int q = 0; q < size; q++)
            for (int p = 0; p < size; p++) deliver(posts[q], p * bytes, tmp.data() + (p * size + q) * bytes, bytes);
        break;
    }
}

/* ---- several processes ------------------------------------------------ */

/* What one rank contributes to an exchange between processes. */
struct WireHeader {
    int32_t rank, op, dtype, root;
    uint64_t count, bytes;
};

/* Bytes of send a rank's call reads. */
size_t send_bytes(const Post &p, int rank, int size) {
    size_t b = p.count * qilin_dtype_size(p.dtype);
    switch (p.op) {
    case Op::ReduceScatter:
    case Op::AllToAll:
        return b * (size_t)size;
    case Op::Broadcast:
        return rank == p.root ? b : 0;
    default:
        return b;
    }
}

void pack_local(const Clique &c, std::vector<unsigned char> &blob) {
    for (int i = 0; i < c.nlocal; i++) {
        const Post &p = c.posts[i];
        WireHeader h{c.first + i, (int32_t)p.op, (int32_t)p.dtype, p.root, p.count,
                     send_bytes(p, c.first + i, c.size)};
        size_t at = blob.size();
        blob.resize(at + sizeof h + h.bytes);
        std::memcpy(blob.data() + at, &h, sizeof h);
        copy_bytes(blob.data() + at + sizeof h, p.send, h.bytes);
    }
}

/* Every rank's post from the processes' blobs (pointing into `all`). */
bool unpack_all(const Clique &c, const std::vector<unsigned char> &all, Posts &posts, std::string &err) {
    posts.assign(c.size, Post{});
    std::vector<char> seen(c.size, 0);
    size_t at = 0;
    while (at < all.size()) {
        WireHeader h{};
        if (all.size() - at < sizeof h) break;
        std::memcpy(&h, all.data() + at, sizeof h);
        at += sizeof h;
        if (h.rank < 0 || h.rank >= c.size || seen[h.rank] || h.bytes > all.size() - at) break;
        seen[h.rank] = 1;
        void *recv = is_local(c, h.rank) ? c.posts[local(c, h.rank)].recv : nullptr;
        posts[h.rank] = Post{(Op)h.op, h.count, (qilin_dtype)h.dtype, h.root, all.data() + at, recv};
        at += h.bytes;
    }
    for (int r = 0; r < c.size; r++)
        if (!seen[r]) {
            err = "comm: the exchange between processes lacks rank " + std::to_string(r) + "'s part";
            return false;
        }
    return true;
}

/* Runs the collective the local ranks posted: directly when every rank is
 * local, else after the exchange with the other processes. */
qilin_status run_collective(Clique &c, std::string &bad) {
    std::vector<unsigned char> all;
    Posts global;
    const Posts *posts = &c.posts;
    if (c.net) {
        std::vector<unsigned char> mine;
        pack_local(c, mine);
        std::string err;
        if (!qilin_sim_net::exchange(*c.net, mine, all, c.timeout_s, err) || !unpack_all(c, all, global, err)) {
            std::string why = c.net->why(); /* set when this process aborted */
            bad = "comm: " + std::string(op_name(c.posts[0].op)) + " between processes: " +
                  (why.empty() ? err : why);
            c.broken = bad;
            c.net->shut(bad); /* the other processes fail at once instead of timing out */
            return QILIN_ERR_COMM;
        }
        posts = &global;
    }
    bad = mismatch(*posts);
    if (!bad.empty()) return QILIN_ERR_COMM;
    execute(*posts);
    return QILIN_OK;
}

/* Sets every rank's outcome and releases the waiters. */
void complete(Clique &c) {
    std::string bad;
    qilin_status st = QILIN_OK;
    try {
        st = run_collective(c, bad);
    } catch (const std::bad_alloc &) {
        st = QILIN_ERR_OUT_OF_MEMORY;
        bad = std::string("comm: ") + op_name(c.posts[0].op) + ": no host memory for the sim's staging buffer";
    }
    for (int r = 0; r < c.nlocal; r++) {
        c.result[r] = st;
        c.result_msg[r] = bad;
        c.posted[r] = 0;
    }
    c.arrived = 0;
    c.generation++;
    c.cv.notify_all();
}

/* ---- waiting --------------------------------------------------------- */

Clock::time_point deadline(double timeout_s) {
    auto d = std::chrono::duration<double>(timeout_s);
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(d);
}

/* A rank that has not joined the collective but destroyed its communicator;
 * -1 when none. */
int vanished_peer(const Clique &c) {
    for (int r = 0; r < c.nlocal; r++)
        if (!c.posted[r] && c.destroyed[r]) return c.first + r;
    return -1;
}

std::string missing_ranks(const Clique &c) {
    std::string s;
    for (int r = 0; r < c.nlocal; r++)
        if (!c.posted[r]) s += (s.empty() ? "" : ", ") + std::to_string(c.first + r);
    return s;
}

qilin_status fail_broken(const Clique &c, const char *op, int rank) {
    return qilin_error(QILIN_ERR_COMM, "%s (rank %d of %d): communicator is broken: %s", op, rank, c.size,
                       c.broken.c_str());
}

/* Called with the lock held after posting; returns this rank's outcome. */
qilin_status wait_collective(qilin_comm *comm, std::unique_lock<std::mutex> &lock, const char *op) {
    Clique &c = *comm->clique;
    const uint64_t gen = c.generation;
    auto until = deadline(comm->timeout_s);
    bool done = c.cv.wait_until(lock, until, [&] {
        return c.generation != gen || !c.broken.empty() || vanished_peer(c) >= 0 || !comm->requested.empty();
    });
    if (c.generation != gen) {
        int i = local(c, comm->rank);
        if (c.result[i] == QILIN_OK) return QILIN_OK;
        return qilin_error(c.result[i], "%s", c.result_msg[i].c_str());
    }
    if (c.broken.empty() && !comm->requested.empty()) {
        c.broken = "rank " + std::to_string(comm->rank) + " aborted: " + comm->requested;
        c.cv.notify_all();
    }
    if (c.broken.empty()) {
        int gone = vanished_peer(c);
        char buf[512];
        if (done && gone >= 0)
            std::snprintf(buf, sizeof buf, "rank %d destroyed its communicator while rank %d waited in %s",
                          gone, comm->rank, op);
        else
            std::snprintf(buf, sizeof buf,
                          "rank %d waited %.3g s (comm timeout: qilin_comm_set_timeout or QILIN_SIM_COMM_TIMEOUT_S) in %s; rank(s) %s "
                          "never called it",
                          comm->rank, comm->timeout_s, op, missing_ranks(c).c_str());
        c.broken = buf;
        c.cv.notify_all();
    }
    return fail_broken(c, op, comm->rank);
}

qilin_status collective(qilin_comm *comm, const Post &post) {
    Clique &c = *comm->clique;
    const char *op = op_name(post.op);
    std::unique_lock<std::mutex> lock(c.mu);
    if (!c.broken.empty()) return fail_broken(c, op, comm->rank);
    const int i = local(c, comm->rank);
    c.posts[i] = post;
    c.posted[i] = 1;
    if (++c.arrived == c.nlocal) {
        complete(c);
        if (c.result[i] == QILIN_OK) return QILIN_OK;
        return qilin_error(c.result[i], "%s", c.result_msg[i].c_str());
    }
    return wait_collective(comm, lock, op);
}

/* ---- ownership and faults (comm.h) --------------------------------------- */

/* Ends the communicator on behalf of its owner; once. Under c.mu. */
void abort_locked(qilin_comm *comm, const std::string &reason) {
    Clique &c = *comm->clique;
    comm->aborted = true;
    if (c.broken.empty()) c.broken = "rank " + std::to_string(comm->rank) + " aborted: " + reason;
    c.cv.notify_all();
}

/* A pending fault of this rank (injected error, requested abort, earlier
 * abort, vanished) as an error; the owner aborts on the first one. Under c.mu. */
qilin_status pending_fault(qilin_comm *comm, const char *op) {
    Clique &c = *comm->clique;
    const int size = c.size;
    if (comm->vanished)
        return qilin_error(QILIN_ERR_COMM, "%s (rank %d of %d): the rank vanished (test hook)", op, comm->rank, size);
    std::string why;
    if (!comm->injected.empty()) why = "asynchronous error: " + comm->injected;
    else if (!comm->requested.empty()) why = "aborted on request: " + comm->requested;
    if (why.empty()) return QILIN_OK;
    if (!comm->aborted) abort_locked(comm, why);
    return qilin_error(QILIN_ERR_COMM, "%s (rank %d of %d): %s", op, comm->rank, size, why.c_str());
}

/* Marks the calling thread inside an operation on `comm` (and its owner);
 * an operation already in progress on another thread is an error, as NCCL
 * forbids it. Releases on destruction. */
struct Use {
    qilin_comm *comm = nullptr;
    ~Use() {
        if (comm) comm->busy.store(0);
    }
    qilin_status claim(qilin_comm *c, const char *op) {
        int expected = 0;
        if (!c->busy.compare_exchange_strong(expected, 1))
            return qilin_error(QILIN_ERR_COMM,
                               "%s (rank %d of %d): issued while another thread is inside an operation on this "
                               "communicator (one thread per communicator)",
                               op, c->rank, c->clique->size);
        comm = c;
        std::lock_guard<std::mutex> lock(c->clique->mu);
        c->owner = std::this_thread::get_id();
        return pending_fault(c, op);
    }
};

/* Checks shared by every operation; fills the site for later messages and
 * claims the communicator for the calling thread (released with `use`). */
qilin_status check_call(const char *op, qilin_comm *comm, qilin_dtype dtype, qilin_stream *stream,
                        qilin_comm_site *s, Use &use) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: comm = NULL", op);
    QILIN_TRY(use.claim(comm, op));
    *s = site(op, comm);
    QILIN_TRY(qilin_comm_check_dtype(*s, dtype));
    QILIN_TRY(qilin_comm_check_stream(*s, comm->device, stream));
    /* Stream order: the work issued before the call (which writes the send
     * buffer, or still reads the recv buffer) runs first; the exchange then
     * happens on this thread, before any work issued after the call. */
    return qilin_stream_synchronize(stream);
}

/* ---- point-to-point -------------------------------------------------- */

struct DeferredRecv {
    qilin_comm *comm;
    void *buf;
    size_t count;
    qilin_dtype dtype;
    int peer;
};

/* NCCL's group state is per host thread; so is ours. */
struct GroupState {
    int depth = 0;
    std::vector<DeferredRecv> recvs;
};
thread_local GroupState group_state;

qilin_status take_message(qilin_comm *comm, Message &m, const DeferredRecv &r) {
    Clique &c = *comm->clique;
    if (m.count != r.count || m.dtype != r.dtype)
        return qilin_error(QILIN_ERR_COMM,
                           "recv (rank %d of %d): rank %d sent %zu x %s but rank %d expects "
                           "%zu x %s from it",
                           comm->rank, c.size, r.peer, m.count, qilin_dtype_name(m.dtype), comm->rank,
                           r.count, qilin_dtype_name(r.dtype));
    copy_bytes(r.buf, m.data.data(), m.data.size());
    return QILIN_OK;
}

qilin_status do_recv(const DeferredRecv &r) {
    qilin_comm *comm = r.comm;
    Clique &c = *comm->clique;
    std::unique_lock<std::mutex> lock(c.mu);
    std::deque<Message> &box = c.mailbox[(size_t)local(c, r.peer) * c.nlocal + local(c, comm->rank)];
    bool ready = c.cv.wait_until(lock, deadline(comm->timeout_s), [&] {
        return !box.empty() || !c.broken.empty() || c.destroyed[local(c, r.peer)] || !comm->requested.empty();
    });
    if (!box.empty()) {
        Message m = std::move(box.front());
        box.pop_front();
        return take_message(comm, m, r);
    }
    if (c.broken.empty() && !comm->requested.empty()) {
        c.broken = "rank " + std::to_string(comm->rank) + " aborted: " + comm->requested;
        c.cv.notify_all();
    }
    if (c.broken.empty()) {
        char buf[512];
        if (ready)
            std::snprintf(buf, sizeof buf,
                          "rank %d destroyed its communicator while rank %d waited to receive "
                          "from it",
                          r.peer, comm->rank);
        else
            std::snprintf(buf, sizeof buf,
                          "rank %d waited %.3g s (comm timeout: qilin_comm_set_timeout or QILIN_SIM_COMM_TIMEOUT_S) to receive from "
                          "rank %d, which never sent",
                          comm->rank, comm->timeout_s, r.peer);
        c.broken = buf;
        c.cv.notify_all();
    }
    return fail_broken(c, "recv", comm->rank);
}

std::atomic<double> init_timeout_s{QILIN_COMM_TIMEOUT_DEFAULT_S};

qilin_status read_timeout(double *out) {
    const char *env = std::getenv("QILIN_SIM_COMM_TIMEOUT_S");
    *out = init_timeout_s.load();
    if (env == nullptr || env[0] == '\0') return QILIN_OK;
    char *end = nullptr;
    double v = std::strtod(env, &end);
    if (end == env || *end != '\0' || !(v > 0.0) || v > 1e7)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "comm_init_all: QILIN_SIM_COMM_TIMEOUT_S = '%s' is not a number of "
                           "seconds in (0, 1e7]",
                           env);
    *out = v;
    return QILIN_OK;
}

std::shared_ptr<Clique> make_clique(int world, int first, int nlocal, double timeout_s) {
    auto c = std::make_shared<Clique>();
    c->size = world;
    c->first = first;
    c->nlocal = nlocal;
    c->timeout_s = timeout_s;
    c->posts.resize(nlocal);
    c->posted.assign(nlocal, 0);
    c->result.assign(nlocal, QILIN_OK);
    c->result_msg.resize(nlocal);
    c->mailbox.resize((size_t)nlocal * nlocal);
    c->destroyed.assign(nlocal, 0);
    return c;
}

/* Point-to-point stays inside one process (the exchange carries collectives). */
qilin_status check_local_peer(const qilin_comm *comm, const char *op, int peer) {
    const Clique &c = *comm->clique;
    if (is_local(c, peer)) return QILIN_OK;
    return qilin_error(QILIN_ERR_UNSUPPORTED,
                       "%s (rank %d of %d): peer = %d is in another process; the sim carries only "
                       "collectives between processes",
                       op, comm->rank, c.size, peer);
}

/* The clique of this process's ranks [first, first + nlocal) of `world`
 * (joined to the other processes through `id` when it is not all of them)
 * and one handle per local rank; on failure no handle is left. */
qilin_status init_clique(const qilin_comm_id *id, int world, int first, int nlocal, const int *devices,
                         qilin_comm **comms, const char *op) {
    double timeout_s = 300.0;
    QILIN_TRY(read_timeout(&timeout_s));
    for (int i = 0; i < nlocal; i++) comms[i] = nullptr;
    try {
        auto clique = make_clique(world, first, nlocal, timeout_s);
        if (nlocal < world) {
            clique->net.reset(new qilin_sim_net::Group);
            std::string err;
            if (!qilin_sim_net::join(id, world, first, nlocal, timeout_s, *clique->net, err))
                return qilin_error(QILIN_ERR_COMM, "%s (ranks %d..%d of %d): %s", op, first, first + nlocal - 1,
                                   world, err.c_str());
        }
        for (int i = 0; i < nlocal; i++) comms[i] = new qilin_comm(clique, first + i, devices[i], timeout_s);
    } catch (const std::bad_alloc &) {
        for (int i = 0; i < nlocal; i++) {
            delete comms[i];
            comms[i] = nullptr;
        }
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    }
    return QILIN_OK;
}

} // namespace

extern "C" {

qilin_status qilin_comm_init_all(int ndev, const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init(ndev, devices, comms));
    return init_clique(nullptr, ndev, 0, ndev, devices, comms, "comm_init_all");
}

qilin_status qilin_comm_get_unique_id(qilin_comm_id *id) {
    if (id == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_get_unique_id: id = NULL");
    std::string err;
    if (!qilin_sim_net::make_id(id, err)) return qilin_error(QILIN_ERR_COMM, "comm_get_unique_id: %s", err.c_str());
    return QILIN_OK;
}

qilin_status qilin_comm_init_ranks(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                   const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init_ranks(id, world, first_rank, nlocal, devices, comms));
    return init_clique(id, world, first_rank, nlocal, devices, comms, "comm_init_ranks");
}

void qilin_comm_request_abort(qilin_comm *comm, const char *reason) {
    if (comm == nullptr) return;
    Clique &c = *comm->clique;
    std::string why = reason ? reason : "no reason given";
    /* first, without the lock: an exchange between processes may hold it
     * while it waits; the other processes then fail at once */
    if (c.net) c.net->shut("rank " + std::to_string(comm->rank) + " aborted: " + why);
    std::lock_guard<std::mutex> lock(c.mu);
    if (comm->requested.empty()) comm->requested = why;
    c.cv.notify_all();
}

qilin_status qilin_comm_abort(qilin_comm *comm, const char *reason) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_abort: comm = NULL");
    Clique &c = *comm->clique;
    std::string why = reason ? reason : "no reason given";
    std::lock_guard<std::mutex> lock(c.mu);
    if (comm->owner != std::thread::id() && comm->owner != std::this_thread::get_id())
        return qilin_error(QILIN_ERR_COMM,
                           "comm_abort (rank %d of %d): called from a thread that does not own the communicator "
                           "(use qilin_comm_request_abort)",
                           comm->rank, c.size);
    if (comm->aborted)
        return qilin_error(QILIN_ERR_COMM, "comm_abort (rank %d of %d): the communicator was already aborted",
                           comm->rank, c.size);
    comm->owner = std::this_thread::get_id();
    if (c.net) c.net->shut("rank " + std::to_string(comm->rank) + " aborted: " + why);
    abort_locked(comm, why);
    return QILIN_OK;
}

/* Collectives finish inside their call in the sim, so waiting is the
 * stream's work plus a check for faults that arrived meanwhile. */
qilin_status qilin_comm_wait(qilin_comm *comm, qilin_stream *stream) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_wait: comm = NULL");
    Use use;
    QILIN_TRY(use.claim(comm, "comm_wait"));
    QILIN_TRY(qilin_stream_synchronize(stream));
    Clique &c = *comm->clique;
    std::lock_guard<std::mutex> lock(c.mu);
    QILIN_TRY(pending_fault(comm, "comm_wait"));
    if (!c.broken.empty()) {
        if (!comm->aborted) abort_locked(comm, c.broken);
        return fail_broken(c, "comm_wait", comm->rank);
    }
    return QILIN_OK;
}

qilin_status qilin_comm_set_timeout(qilin_comm *comm, double seconds) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_set_timeout: comm = NULL");
    if (!(seconds > 0.0) || seconds > 1e7)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_set_timeout (rank %d): %g s is not in (0, 1e7]",
                           comm->rank, seconds);
    std::lock_guard<std::mutex> lock(comm->clique->mu);
    comm->timeout_s = seconds;
    return QILIN_OK;
}

qilin_status qilin_comm_set_init_timeout(double seconds) {
    if (!(seconds > 0.0) || seconds > 1e7)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_set_init_timeout: %g s is not in (0, 1e7]", seconds);
    init_timeout_s.store(seconds);
    return QILIN_OK;
}

qilin_status qilin_comm_sim_inject_error(qilin_comm *comm, const char *message) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_sim_inject_error: comm = NULL");
    std::lock_guard<std::mutex> lock(comm->clique->mu);
    comm->injected = message ? message : "injected error";
    comm->clique->cv.notify_all();
    return QILIN_OK;
}

qilin_status qilin_comm_sim_vanish(qilin_comm *comm) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_sim_vanish: comm = NULL");
    std::lock_guard<std::mutex> lock(comm->clique->mu);
    comm->vanished = true;
    return QILIN_OK;
}

qilin_status qilin_comm_destroy(qilin_comm *comm) {
    if (comm == nullptr) return QILIN_OK;
    {
        Clique &c = *comm->clique;
        std::lock_guard<std::mutex> lock(c.mu);
        c.destroyed[local(c, comm->rank)] = 1;
        c.cv.notify_all(); /* peers waiting on this rank fail instead of hanging */
    }
    delete comm;
    return QILIN_OK;
}

int qilin_comm_rank(const qilin_comm *comm) { return comm ? comm->rank : -1; }

int qilin_comm_size(const qilin_comm *comm) { return comm ? comm->clique->size : -1; }

qilin_status qilin_comm_all_reduce_sum(qilin_comm *comm, const void *send, void *recv, size_t count,
                                       qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("all_reduce_sum", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    return collective(comm, Post{Op::AllReduce, count, dtype, -1, send, recv});
}

qilin_status qilin_comm_all_gather(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("all_gather", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    return collective(comm, Post{Op::AllGather, count, dtype, -1, send, recv});
}

qilin_status qilin_comm_reduce_scatter_sum(qilin_comm *comm, const void *send, void *recv, size_t recv_count,
                                           qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("reduce_scatter_sum", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, recv_count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, recv_count, 1, dtype));
    return collective(comm, Post{Op::ReduceScatter, recv_count, dtype, -1, send, recv});
}

qilin_status qilin_comm_broadcast(qilin_comm *comm, const void *send, void *recv, size_t count,
                                  qilin_dtype dtype, int root, qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("broadcast", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_rank(s, "root", root));
    if (comm->rank == root) QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    return collective(comm, Post{Op::Broadcast, count, dtype, root, send, recv});
}

qilin_status qilin_comm_all_to_all(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("all_to_all", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    size_t bytes = count * qilin_dtype_size(dtype) * (size_t)s.size;
    QILIN_TRY(qilin_comm_check_disjoint(s, send, recv, bytes));
    return collective(comm, Post{Op::AllToAll, count, dtype, -1, send, recv});
}

qilin_status qilin_comm_send(qilin_comm *comm, const void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("send", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    QILIN_TRY(check_local_peer(comm, "send", peer));
    Clique &c = *comm->clique;
    size_t bytes = count * qilin_dtype_size(dtype);
    try {
        Message m{std::vector<unsigned char>(bytes), count, dtype};
        copy_bytes(m.data.data(), buf, bytes); /* eager: the sender may reuse buf at once */
        std::lock_guard<std::mutex> lock(c.mu);
        if (!c.broken.empty()) return fail_broken(c, "send", comm->rank);
        if (c.destroyed[local(c, peer)])
            return qilin_error(QILIN_ERR_COMM,
                               "send (rank %d of %d): peer = %d has destroyed its communicator", comm->rank,
                               c.size, peer);
        c.mailbox[(size_t)local(c, comm->rank) * c.nlocal + local(c, peer)].push_back(std::move(m));
    } catch (const std::bad_alloc &) {
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "send (rank %d of %d): no host memory for a %zu-byte message", comm->rank, c.size,
                           bytes);
    }
    c.cv.notify_all();
    return QILIN_OK;
}

qilin_status qilin_comm_recv(qilin_comm *comm, void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    Use use;
    QILIN_TRY(check_call("recv", comm, dtype, stream, &s, use));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    QILIN_TRY(check_local_peer(comm, "recv", peer));
    DeferredRecv r{comm, buf, count, dtype, peer};
    if (group_state.depth == 0) return do_recv(r);
    try {
        group_state.recvs.push_back(r);
    } catch (const std::bad_alloc &) {
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "recv (rank %d of %d): out of host memory", comm->rank,
                           s.size);
    }
    return QILIN_OK;
}

qilin_status qilin_comm_group_start(void) {
    group_state.depth++;
    return QILIN_OK;
}

/* The outermost end runs the deferred receives in call order. All of them
 * run even after a failure (a mismatch should not strand the others' data);
 * the first failure is reported. */
qilin_status qilin_comm_group_end(void) {
    if (group_state.depth == 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "comm_group_end: no matching comm_group_start on this thread");
    if (--group_state.depth > 0) return QILIN_OK;
    std::vector<DeferredRecv> recvs;
    recvs.swap(group_state.recvs);
    qilin_status first = QILIN_OK;
    std::string first_msg;
    for (const DeferredRecv &r : recvs) {
        qilin_status st = do_recv(r);
        if (st != QILIN_OK && first == QILIN_OK) {
            first = st;
            first_msg = qilin_last_error();
        }
    }
    if (first != QILIN_OK) return qilin_error(first, "%s", first_msg.c_str());
    return QILIN_OK;
}

} // extern "C"
