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
 * Hangs become errors: a rank waiting for a peer that destroyed its
 * communicator fails at once, and any wait longer than QILIN_SIM_COMM_TIMEOUT_S
 * seconds (default 300, read at init) fails. Both mark the clique broken, and
 * every later call on any of its ranks fails with the same message, like a
 * communicator NCCL has aborted. */
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
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

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
    int size = 0;
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

} // namespace

struct qilin_comm {
    std::shared_ptr<Clique> clique;
    int rank;
    int device;
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

/* Empty when every rank posted the same call as rank 0. */
std::string mismatch(const Clique &c) {
    const Post &p0 = c.posts[0];
    bool same = true;
    for (int r = 1; r < c.size; r++) {
        const Post &p = c.posts[r];
        same = same && p.op == p0.op && p.count == p0.count && p.dtype == p0.dtype && p.root == p0.root;
    }
    if (same) return {};
    std::string s = "comm: ranks disagree on the collective: ";
    for (int r = 0; r < c.size; r++) s += (r ? "; " : "") + describe(c.posts[r], r);
    return s;
}

void run_reduce(Clique &c, size_t elems, std::vector<unsigned char> &tmp) {
    std::vector<const unsigned char *> src(c.size);
    for (int r = 0; r < c.size; r++) src[r] = static_cast<const unsigned char *>(c.posts[r].send);
    tmp.resize(elems * qilin_dtype_size(c.posts[0].dtype));
    if (elems > 0) sum_any(c.posts[0].dtype, src, elems, tmp.data());
}

/* Concatenates every rank's `bytes` of send, rank-major. */
void gather_sends(Clique &c, size_t bytes, std::vector<unsigned char> &tmp) {
    tmp.resize(bytes * c.size);
    for (int r = 0; r < c.size; r++) copy_bytes(tmp.data() + r * bytes, c.posts[r].send, bytes);
}

void execute(Clique &c) {
    const Post &p0 = c.posts[0];
    const size_t n = p0.count, esz = qilin_dtype_size(p0.dtype), bytes = n * esz;
    const int size = c.size;
    std::vector<unsigned char> tmp;
    switch (p0.op) {
    case Op::AllReduce:
        run_reduce(c, n, tmp);
        for (int r = 0; r < size; r++) copy_bytes(c.posts[r].recv, tmp.data(), bytes);
        break;
    case Op::ReduceScatter:
        run_reduce(c, n * size, tmp);
        for (int r = 0; r < size; r++) copy_bytes(c.posts[r].recv, tmp.data() + r * bytes, bytes);
        break;
    case Op::AllGather:
        gather_sends(c, bytes, tmp);
        for (int r = 0; r < size; r++) copy_bytes(c.posts[r].recv, tmp.data(), bytes * size);
        break;
    case Op::Broadcast:
        tmp.resize(bytes);
        copy_bytes(tmp.data(), c.posts[p0.root].send, bytes);
        for (int r = 0; r < size; r++) copy_bytes(c.posts[r].recv, tmp.data(), bytes);
        break;
    case Op::AllToAll:
        /* recv of rank q, chunk p = send of rank p, chunk q */
        gather_sends(c, bytes * size, tmp);
        for (int q = 0; q < size; q++)
            for (int p = 0; p < size; p++)
                copy_bytes(static_cast<unsigned char *>(c.posts[q].recv) + p * bytes,
                           tmp.data() + (p * size + q) * bytes, bytes);
        break;
    }
}

/* Sets every rank's outcome and releases the waiters. */
void complete(Clique &c) {
    std::string bad = mismatch(c);
    qilin_status st = QILIN_OK;
    if (bad.empty()) {
        try {
            execute(c);
        } catch (const std::bad_alloc &) {
            st = QILIN_ERR_OUT_OF_MEMORY;
            bad = std::string("comm: ") + op_name(c.posts[0].op) +
                  ": no host memory for the sim's staging buffer";
        }
    } else {
        st = QILIN_ERR_COMM;
    }
    for (int r = 0; r < c.size; r++) {
        c.result[r] = st;
        c.result_msg[r] = bad;
        c.posted[r] = 0;
    }
    c.arrived = 0;
    c.generation++;
    c.cv.notify_all();
}

/* ---- waiting --------------------------------------------------------- */

Clock::time_point deadline(const Clique &c) {
    auto d = std::chrono::duration<double>(c.timeout_s);
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(d);
}

/* A rank that has not joined the collective but destroyed its communicator;
 * -1 when none. */
int vanished_peer(const Clique &c) {
    for (int r = 0; r < c.size; r++)
        if (!c.posted[r] && c.destroyed[r]) return r;
    return -1;
}

std::string missing_ranks(const Clique &c) {
    std::string s;
    for (int r = 0; r < c.size; r++)
        if (!c.posted[r]) s += (s.empty() ? "" : ", ") + std::to_string(r);
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
    auto until = deadline(c);
    bool done = c.cv.wait_until(
        lock, until, [&] { return c.generation != gen || !c.broken.empty() || vanished_peer(c) >= 0; });
    if (c.generation != gen) {
        if (c.result[comm->rank] == QILIN_OK) return QILIN_OK;
        return qilin_error(c.result[comm->rank], "%s", c.result_msg[comm->rank].c_str());
    }
    if (c.broken.empty()) {
        int gone = vanished_peer(c);
        char buf[512];
        if (done && gone >= 0)
            std::snprintf(buf, sizeof buf, "rank %d destroyed its communicator while rank %d waited in %s",
                          gone, comm->rank, op);
        else
            std::snprintf(buf, sizeof buf,
                          "rank %d waited %.3g s (QILIN_SIM_COMM_TIMEOUT_S) in %s; rank(s) %s "
                          "never called it",
                          comm->rank, c.timeout_s, op, missing_ranks(c).c_str());
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
    c.posts[comm->rank] = post;
    c.posted[comm->rank] = 1;
    if (++c.arrived == c.size) {
        complete(c);
        if (c.result[comm->rank] == QILIN_OK) return QILIN_OK;
        return qilin_error(c.result[comm->rank], "%s", c.result_msg[comm->rank].c_str());
    }
    return wait_collective(comm, lock, op);
}

/* Checks shared by every operation; fills the site for later messages. */
qilin_status check_call(const char *op, const qilin_comm *comm, qilin_dtype dtype, qilin_stream *stream,
                        qilin_comm_site *s) {
    if (comm == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: comm = NULL", op);
    *s = site(op, comm);
    QILIN_TRY(qilin_comm_check_dtype(*s, dtype));
    return qilin_comm_check_stream(*s, comm->device, stream);
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
    std::deque<Message> &box = c.mailbox[(size_t)r.peer * c.size + comm->rank];
    bool ready = c.cv.wait_until(lock, deadline(c),
                                 [&] { return !box.empty() || !c.broken.empty() || c.destroyed[r.peer]; });
    if (!box.empty()) {
        Message m = std::move(box.front());
        box.pop_front();
        return take_message(comm, m, r);
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
                          "rank %d waited %.3g s (QILIN_SIM_COMM_TIMEOUT_S) to receive from "
                          "rank %d, which never sent",
                          comm->rank, c.timeout_s, r.peer);
        c.broken = buf;
        c.cv.notify_all();
    }
    return fail_broken(c, "recv", comm->rank);
}

qilin_status read_timeout(double *out) {
    const char *env = std::getenv("QILIN_SIM_COMM_TIMEOUT_S");
    *out = 300.0;
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

std::shared_ptr<Clique> make_clique(int ndev, double timeout_s) {
    auto c = std::make_shared<Clique>();
    c->size = ndev;
    c->timeout_s = timeout_s;
    c->posts.resize(ndev);
    c->posted.assign(ndev, 0);
    c->result.assign(ndev, QILIN_OK);
    c->result_msg.resize(ndev);
    c->mailbox.resize((size_t)ndev * ndev);
    c->destroyed.assign(ndev, 0);
    return c;
}

} // namespace

extern "C" {

qilin_status qilin_comm_init_all(int ndev, const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init(ndev, devices, comms));
    double timeout_s = 300.0;
    QILIN_TRY(read_timeout(&timeout_s));
    for (int r = 0; r < ndev; r++) comms[r] = nullptr;
    try {
        auto clique = make_clique(ndev, timeout_s);
        for (int r = 0; r < ndev; r++) comms[r] = new qilin_comm{clique, r, devices[r]};
    } catch (const std::bad_alloc &) {
        for (int r = 0; r < ndev; r++) {
            delete comms[r];
            comms[r] = nullptr;
        }
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "comm_init_all: out of host memory");
    }
    return QILIN_OK;
}

qilin_status qilin_comm_destroy(qilin_comm *comm) {
    if (comm == nullptr) return QILIN_OK;
    {
        Clique &c = *comm->clique;
        std::lock_guard<std::mutex> lock(c.mu);
        c.destroyed[comm->rank] = 1;
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
    QILIN_TRY(check_call("all_reduce_sum", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    return collective(comm, Post{Op::AllReduce, count, dtype, -1, send, recv});
}

qilin_status qilin_comm_all_gather(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    QILIN_TRY(check_call("all_gather", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    return collective(comm, Post{Op::AllGather, count, dtype, -1, send, recv});
}

qilin_status qilin_comm_reduce_scatter_sum(qilin_comm *comm, const void *send, void *recv, size_t recv_count,
                                           qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    QILIN_TRY(check_call("reduce_scatter_sum", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, recv_count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, recv_count, 1, dtype));
    return collective(comm, Post{Op::ReduceScatter, recv_count, dtype, -1, send, recv});
}

qilin_status qilin_comm_broadcast(qilin_comm *comm, const void *send, void *recv, size_t count,
                                  qilin_dtype dtype, int root, qilin_stream *stream) {
    qilin_comm_site s;
    QILIN_TRY(check_call("broadcast", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_rank(s, "root", root));
    if (comm->rank == root) QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    return collective(comm, Post{Op::Broadcast, count, dtype, root, send, recv});
}

qilin_status qilin_comm_all_to_all(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    QILIN_TRY(check_call("all_to_all", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    size_t bytes = count * qilin_dtype_size(dtype) * (size_t)s.size;
    QILIN_TRY(qilin_comm_check_disjoint(s, send, recv, bytes));
    return collective(comm, Post{Op::AllToAll, count, dtype, -1, send, recv});
}

qilin_status qilin_comm_send(qilin_comm *comm, const void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    QILIN_TRY(check_call("send", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    Clique &c = *comm->clique;
    size_t bytes = count * qilin_dtype_size(dtype);
    try {
        Message m{std::vector<unsigned char>(bytes), count, dtype};
        copy_bytes(m.data.data(), buf, bytes); /* eager: the sender may reuse buf at once */
        std::lock_guard<std::mutex> lock(c.mu);
        if (!c.broken.empty()) return fail_broken(c, "send", comm->rank);
        if (c.destroyed[peer])
            return qilin_error(QILIN_ERR_COMM,
                               "send (rank %d of %d): peer = %d has destroyed its communicator", comm->rank,
                               c.size, peer);
        c.mailbox[(size_t)comm->rank * c.size + peer].push_back(std::move(m));
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
    QILIN_TRY(check_call("recv", comm, dtype, stream, &s));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
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
