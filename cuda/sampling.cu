/* sampling.cu — next-token choice on the device, one block per row.
 *
 * Per row (its own qilin_sampling_params):
 *   v[i] = penalise(logits[i]) / temperature   NaN -> -inf; -0 -> +0
 *   greedy (temperature 0): argmax v, lowest id on ties
 *   else the kept set is the first n tokens of the order
 *     a < b  <=>  v[a] > v[b] || (v[a] == v[b] && a < b)
 *   with n = min(n_k, n_p, n_m): every filter keeps a prefix of that order
 *     top-k: n_k = k (exactly k: ties at the k-th value go by lowest id)
 *     top-p: n_p = smallest prefix of the top-k set whose mass >= p * mass(top-k)
 *     min-p: n_m = #{ exp(v - max) >= min_p }
 *   and one token is drawn from the kept set with u = Philox-4x32-10(seed, step).
 *
 * Masses are fixed point: q(v) = floor(exp(v - max) * 2^40) in a uint64
 * (vocab <= 2^24, so sums fit). Integer sums are exact and associative, so
 * the total the draw scales u by, every prefix sum and every threshold test
 * agree to the last unit however the block adds them up; tokens with
 * p / p_max < 2^-40 get mass 0 and are never drawn.
 *
 * Finding the kept set without sorting the row (vocab up to ~256k):
 *  1. stats pass: max (and argmax), min, count of tokens with v > -inf.
 *  2. candidate search: a value threshold L whose set {v >= L} surely holds
 *     the kept set and has at most kCap = 4096 tokens. Min-p names one
 *     directly (one counting pass); top-k / top-p bisect on the value, each
 *     step one streaming pass (count, mass, nearest values on either side,
 *     block-reduced) that snaps the bracket to token values, so gaps and tie
 *     groups cost nothing. A few passes: the kept set of a real distribution
 *     sits in a thin top slice.
 *  3. compaction: one pass appends those (v, id) to shared memory, a bitonic
 *     sort orders them, and n_k, n_p, n_m, the draw and the probability are
 *     read off the sorted list with block scans of q.
 *  Fallback, when the kept set itself is larger than kCap (top-p 0.99 over a
 *  flat distribution, top-k 10000): the cut of each filter is found exactly
 *  by bisection on the order-preserving 32-bit key of v, but only until the
 *  bracket holds at most kCap tokens (or one tied value); those are then
 *  sorted in shared memory and the cut read off them, so ties at the cut go
 *  to the lowest ids. Then a min-p count pass and an ordered pass over the
 *  row in id order (block scans of q and of tie ranks) finds the token whose
 *  prefix mass passes u * total.
 *  Radix-select with shared-memory histograms would take fewer passes, but
 *  real logits pile into a few exponent buckets and serialise the atomics;
 *  the bisection passes are pure streaming reductions from L2.
 *
 * Block: 1024 threads for a large vocabulary (fewer for small ones, vocab /
 * 16 rounded to warps), logits read as float4 when the row is 16-byte
 * aligned. Shared memory: the candidate list (8 bytes x min(kCap, vocab
 * rounded up to a power of two)) and, with a repetition penalty, a bitmask of
 * the row's history (vocab / 8 bytes), built with shared atomics; 51 KB for
 * a 152k vocabulary, so two blocks fit an SM. */
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common.cuh"
#include "kernels.h"

static constexpr int kCap = 4096; /* candidates held in shared memory (a power of two) */
static constexpr int kMaxThreads = 1024;
static constexpr float kFixed = 1099511627776.0f; /* 2^40: the fixed-point unit of mass */

/* ---- parameters -------------------------------------------------------------- */

/* One rule for host and device; `why` may be NULL. */
__host__ __device__ static inline bool params_valid(const qilin_sampling_params &p, const char **why) {
    const char *bad = nullptr;
    if (!(p.temperature >= 0.0f) || p.temperature == INFINITY)
        bad = "temperature must be finite and >= 0";
    else if (p.top_k < 0)
        bad = "top_k must be >= 0";
    else if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
        bad = "top_p must be in (0, 1]";
    else if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        bad = "min_p must be in [0, 1]";
    else if (!(p.repetition_penalty > 0.0f) || p.repetition_penalty == INFINITY)
        bad = "repetition_penalty must be finite and > 0";
    else if (!(p.presence_penalty - p.presence_penalty == 0.0f))
        bad = "presence_penalty must be finite";
    else if (!(p.frequency_penalty - p.frequency_penalty == 0.0f))
        bad = "frequency_penalty must be finite";
    if (why) *why = bad;
    return bad == nullptr;
}

/* ---- Philox-4x32-10 (Salmon et al., SC'11), keyed by the seed ------------------ */

__device__ inline float uniform_open01(uint64_t seed, uint64_t step) {
    uint32_t c0 = (uint32_t)step, c1 = (uint32_t)(step >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return ((float)(c0 >> 9) + 0.5f) * (1.0f / 8388608.0f); /* (0, 1), 23 bits */
}

/* The row's result; out_prob may be NULL. */
__device__ inline void emit(int *out_id, float *out_prob, int id, float prob) {
    *out_id = id;
    if (out_prob) *out_prob = prob;
}

/* ---- the row ------------------------------------------------------------------- */

struct Row {
    const float *logits;
    const uint32_t *penalised; /* bitmask in shared memory, or nullptr */
    int vocab;
    bool vec;
    float penalty, temperature; /* temperature 1 for greedy */
    float max;                  /* set after the stats pass */
};

__device__ inline float row_value(const Row &r, int i, float l) {
    if (l != l) return -INFINITY;
    if (r.penalised && (r.penalised[i >> 5] >> (i & 31)) & 1u) l = l < 0.0f ? l * r.penalty : l / r.penalty;
    return l / r.temperature + 0.0f; /* + 0 turns -0 into +0: equal values, equal keys */
}

__device__ inline uint64_t mass_of(const Row &r, float v) { return (uint64_t)(expf(v - r.max) * kFixed); }

/* f(i, v) for every token of the row this thread owns, float4 loads when aligned. */
template <class F> __device__ inline void for_each_value(const Row &r, F &&f) {
    int head = 0;
    if (r.vec) {
        int n4 = r.vocab >> 2;
        const float4 *p = reinterpret_cast<const float4 *>(r.logits);
        for (int q = threadIdx.x; q < n4; q += blockDim.x) {
            float4 x = load_vec<float4>(p + q);
            int i = 4 * q;
            f(i, row_value(r, i, x.x));
            f(i + 1, row_value(r, i + 1, x.y));
            f(i + 2, row_value(r, i + 2, x.z));
            f(i + 3, row_value(r, i + 3, x.w));
        }
        head = 4 * n4;
    }
    for (int i = head + threadIdx.x; i < r.vocab; i += blockDim.x) f(i, row_value(r, i, r.logits[i]));
}

/* ---- block collectives (blockDim.x a multiple of 32; all threads get the same) -- */

struct Stats {
    float max, min;
    int arg, alive;
};

__device__ inline void stats_merge(Stats &a, const Stats &b) {
    if (b.max > a.max || (b.max == a.max && b.arg < a.arg)) a.arg = b.arg;
    a.max = fmaxf(a.max, b.max);
    a.min = fminf(a.min, b.min);
    a.alive += b.alive;
}

__device__ inline Stats block_stats(Stats s) {
    __shared__ Stats part[32];
    for (int off = 16; off > 0; off >>= 1) {
        Stats o;
        o.max = __shfl_xor_sync(0xffffffffu, s.max, off);
        o.min = __shfl_xor_sync(0xffffffffu, s.min, off);
        o.arg = __shfl_xor_sync(0xffffffffu, s.arg, off);
        o.alive = __shfl_xor_sync(0xffffffffu, s.alive, off);
        stats_merge(s, o);
    }
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    s = part[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) stats_merge(s, part[w]);
    __syncthreads();
    return s;
}

/* count and fixed-point mass, summed over the block */
struct CountMass {
    int count;
    uint64_t mass;
};

__device__ inline CountMass block_sum(CountMass v) {
    __shared__ CountMass part[32];
    for (int off = 16; off > 0; off >>= 1) {
        v.count += __shfl_xor_sync(0xffffffffu, v.count, off);
        v.mass += __shfl_xor_sync(0xffffffffu, v.mass, off);
    }
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    CountMass s = {0, 0};
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) s.count += part[w].count, s.mass += part[w].mass;
    __syncthreads();
    return s;
}

/* Exclusive prefix sum over the block (exact: integers); *total gets the sum. */
template <class T> __device__ inline T block_exclusive_scan(T v, T *total) {
    __shared__ T part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    T incl = v;
    for (int off = 1; off < 32; off <<= 1) {
        T o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
    }
    if (lane == 31) part[warp] = incl;
    __syncthreads();
    T before = 0, sum = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
        if (w < warp) before += part[w];
        sum += part[w];
    }
    __syncthreads();
    *total = sum;
    return before + incl - v;
}

/* Broadcasts thread-local `value` from whichever thread has `mine` set (at
 * most one) to the block; `fallback` when none has. */
template <class T> __device__ inline T block_pick(bool mine, T value, T fallback) {
    __shared__ T slot;
    __shared__ int any;
    if (threadIdx.x == 0) any = 0;
    __syncthreads();
    if (mine) slot = value, any = 1;
    __syncthreads();
    T r = any ? slot : fallback;
    __syncthreads();
    return r;
}

/* ---- passes over the row ---------------------------------------------------------- */

__device__ inline Stats stats_pass(const Row &r) {
    Stats s = {-INFINITY, INFINITY, INT_MAX, 0};
    for_each_value(r, [&](int i, float v) {
        if (v > s.max || (v == s.max && i < s.arg)) s.arg = i;
        s.max = fmaxf(s.max, v);
        if (v > -INFINITY) {
            s.min = fminf(s.min, v);
            s.alive++;
        }
    });
    return block_stats(s);
}

/* count and mass of the tokens with v >= t (t > -inf) */
__device__ inline CountMass at_least(const Row &r, float t) {
    CountMass cm = {0, 0};
    for_each_value(r, [&](int, float v) {
        if (v >= t) cm.count++, cm.mass += mass_of(r, v);
    });
    return block_sum(cm);
}

/* ---- order-preserving keys for the exact bisection ------------------------------- */

__device__ inline uint32_t key_of(float v) {
    uint32_t b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}
__device__ inline float value_of_key(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k);
}

/* ---- the candidate path ------------------------------------------------------------- */

struct Filters {
    bool top_k, top_p, min_p;
    int k;            /* min(top_k, alive) when top_k */
    float p, min_p_v; /* top_p, min_p */
};

/* Does {v >= L} (count K, mass M) surely hold the kept set, and the whole top-k
 * set when top-p needs the top-k mass? */
__device__ inline bool candidates_hold(const Filters &f, const Row &r, float L, CountMass cm,
                                       uint64_t p_mass) {
    bool holds = (f.top_k && cm.count >= f.k) || (f.top_p && cm.mass >= p_mass) ||
                 (f.min_p && expf(L - r.max) < f.min_p_v);
    return holds && (!(f.top_k && f.top_p) || cm.count >= f.k);
}

/* Bitonic sort of cand[0, n2) (n2 a power of two) into the order "v desc, id asc". */
__device__ inline bool precedes(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

__device__ inline void sort_candidates(float *cv, int *cid, int n2) {
    for (int size = 2; size <= n2; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n2 / 2; i += blockDim.x) {
                int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                bool up = (lo & size) == 0;
                if (precedes(cv[hi], cid[hi], cv[lo], cid[lo]) == up) {
                    float tv = cv[lo];
                    cv[lo] = cv[hi];
                    cv[hi] = tv;
                    int ti = cid[lo];
                    cid[lo] = cid[hi];
                    cid[hi] = ti;
                }
            }
            __syncthreads();
        }
}

/* Each thread owns a contiguous segment of the sorted list; `before` is the
 * mass of the segments in front of it. */
struct Segment {
    int begin, end;
    uint64_t before;
};

__device__ inline Segment segment_of(const Row &r, const float *cv, int n) {
    int per = (n + blockDim.x - 1) / blockDim.x;
    Segment s;
    s.begin = min(n, (int)threadIdx.x * per);
    s.end = min(n, s.begin + per);
    uint64_t mass = 0, total;
    for (int j = s.begin; j < s.end; j++) mass += mass_of(r, cv[j]);
    s.before = block_exclusive_scan(mass, &total);
    return s;
}

/* The first j < limit whose inclusive prefix mass is > x (>= x when `at_least`);
 * limit when there is none. */
__device__ inline int first_prefix_past(const Row &r, const float *cv, const Segment &s, int limit,
                                        uint64_t x, bool at_least) {
    uint64_t run = s.before;
    int found = -1;
    for (int j = s.begin; j < s.end && j < limit && found < 0; j++) {
        run += mass_of(r, cv[j]);
        if (at_least ? run >= x : run > x) found = j;
    }
    /* prefix sums only grow: the first thread that found one holds the answer */
    __shared__ int first;
    if (threadIdx.x == 0) first = INT_MAX;
    __syncthreads();
    if (found >= 0) atomicMin(&first, found);
    __syncthreads();
    int r2 = first == INT_MAX ? limit : first;
    __syncthreads();
    return r2;
}

/* Inclusive prefix mass at j (j < n). */
__device__ inline uint64_t prefix_mass(const Row &r, const float *cv, const Segment &s, int j) {
    bool mine = j >= s.begin && j < s.end;
    uint64_t run = s.before;
    if (mine)
        for (int i = s.begin; i <= j; i++) run += mass_of(r, cv[i]);
    return block_pick<uint64_t>(mine, run, 0);
}

/* Appends the tokens with lo <= v < hi to (cv, cid) — the caller knows there
 * are at most cap — and sorts them; returns their number. */
__device__ inline int gather_sorted(const Row &r, float lo, float hi, float *cv, int *cid, int cap) {
    __shared__ int count;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    for_each_value(r, [&](int i, float v) {
        if (v >= lo && v < hi) {
            int slot = atomicAdd(&count, 1);
            if (slot < cap) cv[slot] = v, cid[slot] = i;
        }
    });
    __syncthreads();
    int n = min(count, cap), n2 = 1;
    while (n2 < n) n2 <<= 1;
    for (int j = n + threadIdx.x; j < n2; j += blockDim.x) cv[j] = -INFINITY, cid[j] = INT_MAX;
    __syncthreads();
    sort_candidates(cv, cid, n2);
    return n;
}

__device__ inline void draw_from_candidates(const Row &r, const Filters &f, float *cv, int *cid, int n,
                                            uint64_t total_mass, bool all_alive, float u, int *out_id,
                                            float *out_prob) {
    Segment seg = segment_of(r, cv, n);

    int n_k = f.top_k ? min(f.k, n) : n;
    uint64_t mass_k = f.top_k && f.k <= n ? prefix_mass(r, cv, seg, n_k - 1)
                      : all_alive         ? prefix_mass(r, cv, seg, n - 1)
                                          : total_mass;
    int n_p = n_k;
    if (f.top_p)
        n_p = min(n_k, 1 + first_prefix_past(r, cv, seg, n_k, (uint64_t)ceil((double)f.p * mass_k), true));
    int n_m = n;
    if (f.min_p) {
        /* v is sorted, so exp(v - max) >= min_p holds on a prefix */
        bool edge = false;
        int j_edge = 0;
        for (int j = threadIdx.x; j < n; j += blockDim.x)
            if (expf(cv[j] - r.max) < f.min_p_v && (j == 0 || expf(cv[j - 1] - r.max) >= f.min_p_v))
                edge = true, j_edge = j;
        n_m = max(1, block_pick(edge, j_edge, n));
    }
    int n_f = min(n_k, min(n_p, n_m));
    uint64_t mass_f = prefix_mass(r, cv, seg, n_f - 1);
    uint64_t target = (uint64_t)((double)u * (double)mass_f); /* in [0, mass_f) */
    int j = first_prefix_past(r, cv, seg, n_f, target, false);
    if (threadIdx.x == 0) {
        j = j < n_f ? j : n_f - 1;
        emit(out_id, out_prob, cid[j], (float)((double)mass_of(r, cv[j]) / (double)mass_f));
    }
}

/* ---- the fallback: exact thresholds and an ordered draw ---------------------------- */

/* Which tokens the ordered pass keeps. */
struct Keep {
    int mode; /* 0: every alive token; 1: v > tau, or v == tau among the first `ties` ids; 2: min-p */
    float tau;
    int ties;
};

__device__ inline bool keep_token(const Keep &k, const Row &r, float v, const Filters &f, int *tie_rank) {
    if (!(v > -INFINITY)) return false;
    if (k.mode == 0) return true;
    if (k.mode == 2) return expf(v - r.max) >= f.min_p_v;
    if (v > k.tau) return true;
    return v == k.tau && (*tie_rank)++ < k.ties;
}

/* Walks the row in id order, 4 consecutive ids per thread and step, and
 * returns the token whose prefix-mass interval holds `target`. */
__device__ inline void ordered_draw(const Row &r, const Filters &f, const Keep &k, uint64_t target,
                                    uint64_t total, int *out_id, float *out_prob) {
    uint64_t carry = 0;
    int tie_carry = 0;
    for (int base = 0; base < r.vocab; base += 4 * blockDim.x) {
        int i0 = base + 4 * threadIdx.x;
        float v[4];
        if (r.vec && i0 + 3 < r.vocab) {
            float4 x = load_vec<float4>(r.logits + i0);
            v[0] = row_value(r, i0, x.x), v[1] = row_value(r, i0 + 1, x.y);
            v[2] = row_value(r, i0 + 2, x.z), v[3] = row_value(r, i0 + 3, x.w);
        } else {
            for (int q = 0; q < 4; q++)
                v[q] = i0 + q < r.vocab ? row_value(r, i0 + q, r.logits[i0 + q]) : -INFINITY;
        }
        int tie_rank = 0, tie_total = 0;
        if (k.mode == 1) {
            int ties = (v[0] == k.tau) + (v[1] == k.tau) + (v[2] == k.tau) + (v[3] == k.tau);
            tie_rank = tie_carry + block_exclusive_scan(ties, &tie_total);
        }
        uint64_t m[4], mass = 0, chunk;
        for (int q = 0; q < 4; q++) {
            m[q] = keep_token(k, r, v[q], f, &tie_rank) ? mass_of(r, v[q]) : 0;
            mass += m[q];
        }
        uint64_t run = carry + block_exclusive_scan(mass, &chunk);
        int found = -1;
        float prob = 0.0f;
        if (run <= target && target < run + mass)
            for (int q = 0; q < 4 && found < 0; q++) {
                run += m[q];
                if (target < run) found = i0 + q, prob = (float)((double)m[q] / (double)total);
            }
        int id = block_pick(found >= 0, found, -1);
        float pr = block_pick(found >= 0, prob, 0.0f);
        if (id >= 0) {
            if (threadIdx.x == 0) emit(out_id, out_prob, id, pr);
            return;
        }
        carry += chunk;
        tie_carry += tie_total;
    }
    if (threadIdx.x == 0) emit(out_id, out_prob, -1, NAN); /* unreachable: target < total */
}

/* A key interval [lo, hi) that holds the boundary token, with the count and
 * mass of the tokens at or above each end. */
struct Bracket {
    uint32_t lo, hi;
    CountMass at_lo, at_hi;
};

/* Bisects b until it holds at most cap tokens (or one value); pred(at(t))
 * says the boundary is at or above threshold t. */
template <class P> __device__ inline Bracket narrow(const Row &r, Bracket b, int cap, P pred) {
    while (b.hi - b.lo > 1 && b.at_lo.count - b.at_hi.count > cap) {
        uint32_t mid = b.lo + (b.hi - b.lo) / 2;
        CountMass cm = at_least(r, value_of_key(mid));
        if (pred(cm))
            b.lo = mid, b.at_lo = cm;
        else
            b.hi = mid, b.at_hi = cm;
    }
    return b;
}

/* The end of a kept prefix: every token above tau, and the `ties` lowest ids
 * of those equal to tau; n tokens of total mass `mass`. */
struct Cut {
    float tau;
    int ties, n;
    uint64_t mass;
};

/* The cut inside bracket b after `rank` tokens (rank > 0), or after the
 * fewest tokens whose mass reaches `goal` (rank 0). */
__device__ inline Cut cut_in(const Row &r, const Bracket &b, float *cv, int *cid, int cap, int rank,
                             uint64_t goal) {
    float lo = value_of_key(b.lo);
    if (b.hi - b.lo == 1) { /* one value, maybe many tied tokens */
        uint64_t q = mass_of(r, lo);
        int group = b.at_lo.count - b.at_hi.count;
        int c = rank > 0 ? rank - b.at_hi.count : (int)((goal - b.at_hi.mass + q - 1) / q);
        c = c < 1 ? 1 : c > group ? group : c;
        return {lo, c, b.at_hi.count + c, b.at_hi.mass + (uint64_t)c * q};
    }
    int n = gather_sorted(r, lo, value_of_key(b.hi), cv, cid, cap);
    Segment seg = segment_of(r, cv, n);
    int j = rank > 0 ? rank - b.at_hi.count - 1 : first_prefix_past(r, cv, seg, n, goal - b.at_hi.mass, true);
    j = j < 0 ? 0 : j >= n ? n - 1 : j;
    float tau = cv[j];
    bool edge = false;
    int at = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (cv[i] == tau && (i == 0 || cv[i - 1] != tau)) edge = true, at = i;
    int first = block_pick(edge, at, 0);
    uint64_t mass = prefix_mass(r, cv, seg, j);
    return {tau, j - first + 1, b.at_hi.count + j + 1, b.at_hi.mass + mass};
}

__device__ inline void draw_exact(const Row &r, const Filters &f, const Stats &st, uint64_t z, float u,
                                  float *cv, int *cid, int cap, int *out_id, float *out_prob) {
    const Bracket all = {key_of(st.min), key_of(st.max) + 1, {st.alive, z}, {0, 0}};
    Keep keep = {0, 0.0f, 0};
    Cut cut = {st.min, 0, st.alive, z};
    if (f.top_k) {
        Bracket b = narrow(r, all, cap, [&](CountMass cm) { return cm.count >= f.k; });
        cut = cut_in(r, b, cv, cid, cap, f.k, 0);
        keep = {1, cut.tau, cut.ties};
    }
    if (f.top_p) {
        uint64_t goal = (uint64_t)ceil((double)f.p * (double)cut.mass);
        Bracket b = narrow(r, all, cap, [&](CountMass cm) { return cm.mass >= goal; });
        Cut cp = cut_in(r, b, cv, cid, cap, 0, goal);
        if (f.top_k && cp.tau == cut.tau && cp.ties > cut.ties) cp = cut; /* never past the top-k cut */
        cut = cp;
        keep = {1, cut.tau, cut.ties};
    }
    uint64_t mass = cut.mass;
    if (f.min_p) {
        CountMass cm = {0, 0};
        for_each_value(r, [&](int, float v) {
            if (v > -INFINITY && expf(v - r.max) >= f.min_p_v) cm.count++, cm.mass += mass_of(r, v);
        });
        cm = block_sum(cm);
        if (cm.count < cut.n) keep = {2, 0.0f, 0}, mass = cm.mass;
    }
    ordered_draw(r, f, keep, (uint64_t)((double)u * (double)mass), mass, out_id, out_prob);
}

/* ---- the kernel ---------------------------------------------------------------------- */

/* count and mass at or above t, and the nearest values on either side */
struct Probe {
    CountMass at;
    float below, from; /* max{v < t}, min{v >= t} */
};

__device__ inline Probe probe(const Row &r, float t) {
    Probe p = {{0, 0}, -INFINITY, INFINITY};
    for_each_value(r, [&](int, float v) {
        if (v >= t)
            p.at.count++, p.at.mass += mass_of(r, v), p.from = fminf(p.from, v);
        else
            p.below = fmaxf(p.below, v);
    });
    __shared__ Probe part[32];
    for (int off = 16; off > 0; off >>= 1) {
        p.at.count += __shfl_xor_sync(0xffffffffu, p.at.count, off);
        p.at.mass += __shfl_xor_sync(0xffffffffu, p.at.mass, off);
        p.below = fmaxf(p.below, __shfl_xor_sync(0xffffffffu, p.below, off));
        p.from = fminf(p.from, __shfl_xor_sync(0xffffffffu, p.from, off));
    }
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = p;
    __syncthreads();
    Probe s = {{0, 0}, -INFINITY, INFINITY};
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
        s.at.count += part[w].at.count, s.at.mass += part[w].at.mass;
        s.below = fmaxf(s.below, part[w].below), s.from = fminf(s.from, part[w].from);
    }
    __syncthreads();
    return s;
}

/* Candidate search: an L with {v >= L} holding the kept set and at most `cap`
 * tokens; -inf when there is none. Min-p names its own bound (one probe);
 * top-k and top-p bisect on the value, snapping each side to the nearest
 * token value, so gaps and tie groups cost no extra passes. */
__device__ inline float candidate_bound(const Row &r, Filters f, const Stats &st, uint64_t p_mass, int cap) {
    if (f.min_p) {
        float L = r.max + logf(f.min_p_v);
        for (int i = 0; i < 4 && !(expf(L - r.max) < f.min_p_v); i++) L = nextafterf(L, -INFINITY);
        if (L > st.min) {
            CountMass cm = at_least(r, L);
            if (cm.count <= cap && candidates_hold(f, r, L, cm, p_mass)) return L;
        }
        f.min_p = false; /* a lower L only adds tokens: min-p has nothing more to offer */
    }
    if (!(f.top_k || f.top_p)) return -INFINITY;
    /* lo: holds, over cap; hi: does not hold; thresholds strictly between are open */
    float lo = st.min, hi = nextafterf(st.max, INFINITY);
    for (int iter = 0; iter < 32; iter++) {
        float mid = 0.5f * lo + 0.5f * hi;
        if (!(mid > lo && mid < hi)) break;
        Probe pr = probe(r, mid);
        bool holds = candidates_hold(f, r, mid, pr.at, p_mass);
        if (holds && pr.at.count <= cap) return mid;
        if (holds)
            lo = pr.from; /* thresholds in (mid, from] behave as mid */
        else if (pr.at.count > cap)
            break; /* the kept set alone is over cap */
        else
            hi = nextafterf(pr.below, INFINITY); /* thresholds in (below, mid] behave as mid */
    }
    return -INFINITY;
}

__global__ void __launch_bounds__(kMaxThreads)
    sample_kernel(int *out_ids, float *out_probs, const float *logits, int64_t ld, int vocab,
                  const qilin_sampling_params *params, const int *history, const int *history_start,
                  int cap) {
    QILIN_DYNAMIC_SMEM(float, cv); /* [cap] values, then [cap] ids, then the history bitmask */
    int *cid = reinterpret_cast<int *>(cv + cap);
    uint32_t *bits = reinterpret_cast<uint32_t *>(cid + cap);
    const int row = blockIdx.x;
    const qilin_sampling_params p = params[row];
    float *prob_out = out_probs ? out_probs + row : nullptr;
    int *id_out = out_ids + row;
    if (!params_valid(p, nullptr)) {
        if (threadIdx.x == 0) emit(id_out, prob_out, -1, NAN);
        return;
    }

    Row r;
    r.logits = logits + row * ld;
    r.vocab = vocab;
    r.vec = (uintptr_t)r.logits % 16 == 0;
    r.penalty = p.repetition_penalty;
    r.temperature = p.temperature > 0.0f ? p.temperature : 1.0f;
    r.penalised = nullptr;
    if (history && p.repetition_penalty != 1.0f) {
        int words = (vocab + 31) / 32;
        for (int w = threadIdx.x; w < words; w += blockDim.x) bits[w] = 0;
        __syncthreads();
        for (int h = history_start[row] + threadIdx.x; h < history_start[row + 1]; h += blockDim.x) {
            int id = history[h];
            if (id >= 0 && id < vocab) atomicOr(&bits[id >> 5], 1u << (id & 31));
        }
        __syncthreads();
        r.penalised = bits;
    }

    Stats st = stats_pass(r);
    r.max = st.max;
    if (p.temperature == 0.0f || st.alive == 0 || st.max == INFINITY) {
        /* greedy; also a row with no finite logit (id 0) or an infinite one */
        if (threadIdx.x == 0) emit(id_out, prob_out, st.alive ? st.arg : 0, st.alive ? 1.0f : 0.0f);
        return;
    }

    Filters f;
    f.top_k = p.top_k > 0 && p.top_k < st.alive;
    f.k = f.top_k ? p.top_k : st.alive;
    f.top_p = p.top_p < 1.0f;
    f.p = p.top_p;
    f.min_p = p.min_p > 0.0f;
    f.min_p_v = p.min_p;
    float u = uniform_open01(p.seed, p.step);

    /* the total mass is needed unless every alive token fits the candidate list */
    bool all_fit = st.alive <= cap;
    uint64_t z = all_fit ? 0 : at_least(r, st.min).mass;
    float L = all_fit ? st.min : candidate_bound(r, f, st, (uint64_t)ceil((double)f.p * (double)z), cap);
    if (!(L > -INFINITY)) {
        draw_exact(r, f, st, z, u, cv, cid, cap, id_out, prob_out);
        return;
    }
    int n = gather_sorted(r, L, INFINITY, cv, cid, cap);
    draw_from_candidates(r, f, cv, cid, n, z, all_fit, u, id_out, prob_out);
}

/* ---- penalties, in place before sampling -------------------------------------------- */

/* Sets the bit of id in bits; true when this call set it (the id's first sighting). */
__device__ inline bool first_sighting(uint32_t *bits, int id) {
    uint32_t bit = 1u << (id & 31);
    return !(atomicOr(&bits[id >> 5], bit) & bit);
}

__global__ void __launch_bounds__(kMaxThreads)
    penalty_kernel(float *logits, int64_t ld, int vocab, const qilin_sampling_params *params,
                   const int *history, const int *history_start, const int *output_start) {
    QILIN_DYNAMIC_SMEM(uint32_t, bits); /* one bit per id: seen in this phase */
    const int row = blockIdx.x;
    const qilin_sampling_params p = params[row];
    bool repeat = p.repetition_penalty != 1.0f,
         generated = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
    if (!params_valid(p, nullptr) || (!repeat && !generated)) return;
    float *l = logits + row * ld;
    const int begin = history_start[row], end = history_start[row + 1];
    const int out = min(max(output_start[row], begin), end);
    const int words = (vocab + 31) / 32;
    if (repeat) { /* each distinct id of prompt + generated once */
        for (int w = threadIdx.x; w < words; w += blockDim.x) bits[w] = 0;
        __syncthreads();
        for (int h = begin + threadIdx.x; h < end; h += blockDim.x) {
            int id = history[h];
            if (id < 0 || id >= vocab || !first_sighting(bits, id)) continue;
            float x = l[id];
            l[id] = x < 0.0f ? x * p.repetition_penalty : x / p.repetition_penalty;
        }
        __syncthreads();
    }
    if (!generated) return;
    for (int w = threadIdx.x; w < words; w += blockDim.x) bits[w] = 0;
    __syncthreads();
    for (int h = out + threadIdx.x; h < end; h += blockDim.x) {
        int id = history[h];
        if (id < 0 || id >= vocab || !first_sighting(bits, id)) continue;
        int count = 0; /* the first sighting's thread counts them all: O(n^2 / threads), n = generated ids */
        for (int k = out; k < end; k++) count += history[k] == id;
        float x = l[id] - p.frequency_penalty * (float)count;
        l[id] = x - p.presence_penalty;
    }
}

/* ---- launcher -------------------------------------------------------------------------- */

static const int kMaxVocab = 1 << 24;        /* fixed-point sums: vocab * 2^40 < 2^64 */
static const int kMaxVocabPenalty = 1 << 20; /* the history bitmask in shared memory: 128 KB */

extern "C" qilin_status qilin_sampling_params_check(const qilin_sampling_params *p, char *why) {
    const char *bad = "params must be set";
    if (p && params_valid(*p, &bad)) {
        if (why) why[0] = '\0';
        return QILIN_OK;
    }
    if (why) snprintf(why, QILIN_SAMPLING_WHY_BYTES, "%s", bad);
    if (!p) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "sampling params: %s", bad);
    return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                       "sampling params: %s (temperature=%g top_k=%d top_p=%g min_p=%g repetition_penalty=%g "
                       "presence_penalty=%g frequency_penalty=%g)",
                       bad, (double)p->temperature, p->top_k, (double)p->top_p, (double)p->min_p,
                       (double)p->repetition_penalty, (double)p->presence_penalty,
                       (double)p->frequency_penalty);
}

extern "C" size_t qilin_sample_workspace(int rows, int vocab) { return 0; }

extern "C" qilin_status qilin_sample(const qilin_sample_args *a, qilin_stream *stream) {
    if (!a || !a->out_ids || !a->logits || !a->params)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "sample: out_ids, logits and params must be set");
    if (a->rows < 0 || a->vocab <= 0 || a->vocab > kMaxVocab)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "sample: bad shape rows=%d vocab=%d (vocab in [1, %d])", a->rows, a->vocab,
                           kMaxVocab);
    if (a->ld < a->vocab)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "sample: ld=%lld is below vocab=%d", (long long)a->ld,
                           a->vocab);
    if (!a->history != !a->history_start)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "sample: history and history_start must be set together");
    if (a->history && a->vocab > kMaxVocabPenalty)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "sample: repetition penalty over vocab=%d (at most %d)",
                           a->vocab, kMaxVocabPenalty);
    if (a->rows == 0) return QILIN_OK;
    int cap = 1;
    while (cap < a->vocab && cap < kCap) cap <<= 1;
    size_t smem = (size_t)cap * (sizeof(float) + sizeof(int));
    if (a->history) smem += (size_t)(a->vocab + 31) / 32 * sizeof(uint32_t);
#if !defined(QILIN_SIM)
    /* QILIN_LAUNCH opts in past 48 KB of dynamic shared memory, but the
     * kernel's ~1.5 KB of static shared memory counts against the same 48 KB:
     * opt in here from 44 KB (DeepSeek's 129280-token bitmask lands there). */
    if (smem > 44 * 1024 && smem <= 48 * 1024) {
        cudaError_t e =
            cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess)
            return qilin_error(QILIN_ERR_KERNEL, "sample: %zu bytes of shared memory: %s", smem,
                               cudaGetErrorName(e));
    }
#endif
    int work = (a->vocab + 15) / 16;
    int threads = work >= kMaxThreads ? kMaxThreads : work <= 32 ? 32 : (work + 31) / 32 * 32;
    return QILIN_LAUNCH(sample_kernel, dim3(a->rows), dim3(threads), smem, stream, a->out_ids, a->out_probs,
                        a->logits, a->ld, a->vocab, a->params, a->history, a->history_start, cap);
}

extern "C" qilin_status qilin_apply_penalties(const qilin_penalty_args *a, qilin_stream *stream) {
    if (!a || !a->logits || !a->params || !a->history || !a->history_start || !a->output_start)
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "apply_penalties: logits, params, history, history_start and output_start must be set");
    if (a->rows < 0 || a->vocab <= 0 || a->vocab > kMaxVocabPenalty || a->ld < a->vocab)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "apply_penalties: bad shape rows=%d vocab=%d ld=%lld (vocab "
                           "in [1, %d])",
                           a->rows, a->vocab, (long long)a->ld, kMaxVocabPenalty);
    if (a->rows == 0) return QILIN_OK;
    size_t smem = (size_t)(a->vocab + 31) / 32 * sizeof(uint32_t);
#if !defined(QILIN_SIM)
    if (smem > 44 * 1024) {
        cudaError_t e =
            cudaFuncSetAttribute(penalty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess)
            return qilin_error(QILIN_ERR_KERNEL, "apply_penalties: %zu bytes of shared memory: %s", smem,
                               cudaGetErrorName(e));
    }
#endif
    return QILIN_LAUNCH(penalty_kernel, dim3(a->rows), dim3(256), smem, stream, a->logits, a->ld, a->vocab,
                        a->params, a->history, a->history_start, a->output_start);
}
