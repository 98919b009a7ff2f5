/* test_mla.cpp — cuda/mla.cu against float64 references.
 *
 * Absorbed form (qilin_mla_attention): batches of sequences whose latent and
 * rope-key history sits in the cache (NaN past kv_len) and whose new tokens go
 * in through qilin_mla_append; output o_lat compared with a float64 MQA over
 * [c ; k_pe]. Shapes: r 32/64/512, dr 16/64, head counts that straddle the
 * 32-row tiles, causal n_q > 1 (chunked prefill), split sequences, separate
 * and interleaved cache layouts, seq_slot permutations.
 *
 * End to end, on random kv_b_proj weights: the naive form in float64 (per-head
 * k_nope and v through W_UK / W_UV, k_pe broadcast, softmax, o = sum p v)
 * against (1) the absorbed form through the kernels — q_lat = W_UK^T q_nope
 * on the host, qilin_mla_attention, o = W_UV o_lat on the host — and (2) the
 * naive form through the kernels — kv = c W^T on the host, qilin_mla_expand_k,
 * qilin_attention_prefill with head_dim dn + dr, head_dim_v dv. Agreement of
 * (1) with the float64 naive form is the proof that the absorption is right. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

struct Seq {
    int n_q, kv_len;
};

struct Case {
    std::string name;
    qilin_dtype dtype;
    int n_heads, r, dr;
    std::vector<Seq> seqs;
    bool permute = false;  /* seq_slot[b] is not b */
    bool combined = false; /* latent and k_pe interleaved in one [slot, pos, r + dr] buffer */
    bool no_workspace = false; /* no split-KV: one block per row tile over the whole sequence */
    int block = 0;             /* > 0: paged caches (blocks of this many positions, shuffled, NaN free blocks) */
};

void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

const Tolerance &attn_tol(qilin_dtype t) {
    return t == QILIN_F32 ? kTolAttnF32 : t == QILIN_BF16 ? kTolAttnBF16 : kTolAttnF16;
}

/* A batch: caches, new tokens, queries, on the host (bytes in dtype) and as
 * float64 values as stored. */
struct Batch {
    const Case &c;
    size_t es;
    int n_seqs, tokens = 0, max_q = 0, max_kv = 0, slots, max_ctx;
    std::vector<int> q_start{0}, kv_len, seq_slot, token_slot, positions;
    qilin_kv_layout ll{}, pl{};
    size_t pe_offset;                    /* element offset of the pe cache in `cache` */
    std::vector<unsigned char> cache;    /* latent cache followed by (or interleaved with) pe cache */
    std::vector<unsigned char> kva;      /* new tokens [tokens, r + dr]: c then k_pe */
    std::vector<unsigned char> q_lat;    /* [tokens, heads, r] */
    std::vector<unsigned char> q_pe;     /* [tokens, heads, dr + 8]: strided */
    std::vector<double> lat, pe;         /* [slot, pos, r] and [slot, pos, dr], NaN where unset */
    std::mt19937 rng;
    std::normal_distribution<double> normal{0.0, 1.0};
    int rows_per = 0, n_phys = 0, table_stride = 0; /* positions per physical block, blocks, table row */
    std::vector<int> tables;                        /* paged: [n_seqs, table_stride] */

    int phys(int b, int t) const { return c.block > 0 ? tables[(size_t)b * table_stride + t / c.block] : seq_slot[b]; }
    int offset(int t) const { return c.block > 0 ? t % c.block : t; }

    /* Shuffled tables over a pool with 3 blocks no table names (NaN). */
    void make_tables() {
        const int bs = c.block;
        table_stride = (max_kv + bs - 1) / bs;
        int used = 0;
        for (const Seq &s : c.seqs) used += std::max(1, (s.kv_len + bs - 1) / bs);
        n_phys = used + 3, rows_per = bs;
        std::vector<int> order(n_phys);
        for (int i = 0; i < n_phys; i++) order[i] = i;
        std::shuffle(order.begin(), order.end(), rng);
        tables.assign((size_t)n_seqs * table_stride, -1);
        for (int b = 0, k = 0; b < n_seqs; b++)
            for (int j = 0; j < std::max(1, (c.seqs[b].kv_len + bs - 1) / bs); j++)
                tables[(size_t)b * table_stride + j] = order[k++];
    }

    explicit Batch(const Case &cs) : c(cs), es(qilin_dtype_size(cs.dtype)), rng(std::hash<std::string>()(cs.name) & 0xffffffu) {
        n_seqs = (int)c.seqs.size();
        for (const Seq &s : c.seqs) {
            tokens += s.n_q;
            q_start.push_back(tokens);
            kv_len.push_back(s.kv_len);
            max_q = std::max(max_q, s.n_q);
            max_kv = std::max(max_kv, s.kv_len);
        }
        slots = n_seqs + 1;
        max_ctx = max_kv + 3;
        for (int b = 0; b < n_seqs; b++) seq_slot.push_back(c.permute ? (b * 3 + 1) % slots : b);
        const int r = c.r, dr = c.dr;
        rows_per = max_ctx, n_phys = slots;
        if (c.block > 0) make_tables();
        const size_t rows = (size_t)n_phys * rows_per, logical = (size_t)slots * max_ctx;
        if (c.combined) {
            ll = {(int64_t)rows_per * (r + dr), r + dr, 0};
            pl = ll;
            pe_offset = r;
        } else {
            ll = {(int64_t)rows_per * r, r, 0};
            pl = {(int64_t)rows_per * dr, dr, 0};
            pe_offset = rows * r;
        }
        cache.assign(rows * (r + dr) * es, 0);
        lat.assign(logical * r, NAN);
        pe.assign(logical * dr, NAN);
        for (size_t i = 0; i < rows * (r + dr); i++) store(cache, i, NAN, c.dtype);
        for (int b = 0; b < n_seqs; b++)
            for (int t = 0; t < c.seqs[b].kv_len - c.seqs[b].n_q; t++) set_position(b, t, nullptr, 0);
        kva.assign((size_t)tokens * (r + dr) * es, 0);
        q_lat.assign((size_t)tokens * c.n_heads * r * es, 0);
        q_pe.assign((size_t)tokens * c.n_heads * (dr + 8) * es, 0);
        for (int b = 0; b < n_seqs; b++)
            for (int i = 0; i < c.seqs[b].n_q; i++) {
                const int tok = q_start[b] + i;
                positions.push_back(c.seqs[b].kv_len - c.seqs[b].n_q + i);
                token_slot.push_back(phys(b, positions.back()));
                set_position(b, positions.back(), &kva, (size_t)tok * (r + dr));
                for (int h = 0; h < c.n_heads; h++) {
                    for (int d = 0; d < r; d++) store(q_lat, ((size_t)tok * c.n_heads + h) * r + d, normal(rng), c.dtype);
                    for (int d = 0; d < dr; d++)
                        store(q_pe, ((size_t)tok * c.n_heads + h) * (dr + 8) + d, normal(rng), c.dtype);
                }
            }
    }

    size_t lat_idx(int s, int t) const { return s * ll.slot_stride + t * ll.pos_stride; }
    size_t pe_idx(int s, int t) const { return pe_offset + s * pl.slot_stride + t * pl.pos_stride; }

    /* Random c and k_pe for sequence b's position t: into the cache
     * (history) or into `dst` at element `at` (new tokens, appended by the
     * kernel). */
    void set_position(int b, int t, std::vector<unsigned char> *dst, size_t at) {
        const size_t row = (size_t)seq_slot[b] * max_ctx + t;
        const int s = phys(b, t), o = offset(t);
        for (int d = 0; d < c.r; d++) {
            const double v = normal(rng);
            store(dst ? *dst : cache, dst ? at + d : lat_idx(s, o) + d, v, c.dtype);
            lat[row * c.r + d] = rounded(v, c.dtype);
        }
        for (int d = 0; d < c.dr; d++) {
            const double v = normal(rng);
            store(dst ? *dst : cache, dst ? at + c.r + d : pe_idx(s, o) + d, v, c.dtype);
            pe[row * c.dr + d] = rounded(v, c.dtype);
        }
    }
    const double *latent(int b, int t) const { return &lat[((size_t)seq_slot[b] * max_ctx + t) * c.r]; }
    const double *kpe(int b, int t) const { return &pe[((size_t)seq_slot[b] * max_ctx + t) * c.dr]; }
    double qpe(int tok, int h, int d) const { return value_of(q_pe, ((size_t)tok * c.n_heads + h) * (c.dr + 8) + d, c.dtype); }

    /* softmax weights of query (b, i, head h) given its latent-part scores */
    template <class Score> std::vector<double> weights(int b, int i, Score score) const {
        const int pos = c.seqs[b].kv_len - c.seqs[b].n_q + i;
        std::vector<double> p(pos + 1);
        double mx = -INFINITY, sum = 0;
        for (int t = 0; t <= pos; t++) mx = std::max(mx, p[t] = score(t));
        for (int t = 0; t <= pos; t++) sum += (p[t] = std::exp(p[t] - mx));
        for (double &x : p) x /= sum;
        return p;
    }

    /* float64 absorbed MQA: o_lat [tokens, heads, r] */
    std::vector<double> reference(double scale) const {
        std::vector<double> out((size_t)tokens * c.n_heads * c.r, 0.0);
        for (int b = 0; b < n_seqs; b++)
            for (int i = 0; i < c.seqs[b].n_q; i++) {
                const int tok = q_start[b] + i;
                for (int h = 0; h < c.n_heads; h++) {
                    std::vector<double> p = weights(b, i, [&](int t) {
                        double s = 0;
                        for (int d = 0; d < c.r; d++)
                            s += value_of(q_lat, ((size_t)tok * c.n_heads + h) * c.r + d, c.dtype) * latent(b, t)[d];
                        for (int d = 0; d < c.dr; d++) s += qpe(tok, h, d) * kpe(b, t)[d];
                        return s * scale;
                    });
                    for (size_t t = 0; t < p.size(); t++)
                        for (int d = 0; d < c.r; d++) out[((size_t)tok * c.n_heads + h) * c.r + d] += p[t] * latent(b, t)[d];
                }
            }
        return out;
    }
};

/* Device copies of a batch, the append, and one qilin_mla_attention call. */
struct DeviceBatch {
    const Batch &h;
    DeviceBuffer<unsigned char> cache, kva, q_lat, q_pe, out, ws;
    DeviceBuffer<int> q_start, kv_len, seq_slot, token_slot, positions;
    size_t ws_bytes;

    explicit DeviceBatch(const Batch &b)
        : h(b), cache(b.cache.size()), kva(b.kva.size()), q_lat(b.q_lat.size()), q_pe(b.q_pe.size()),
          out((size_t)b.tokens * b.c.n_heads * b.c.r * b.es),
          ws(qilin_mla_attention_workspace(b.tokens, b.c.n_heads, b.c.r, b.max_kv)), q_start(b.q_start.size()),
          kv_len(b.kv_len.size() + 1),
          seq_slot((b.c.block > 0 ? b.tables.size() : b.seq_slot.size()) + 1), token_slot(b.token_slot.size() + 1),
          positions(b.positions.size() + 1), ws_bytes(qilin_mla_attention_workspace(b.tokens, b.c.n_heads, b.c.r, b.max_kv)) {}

    void *latent_cache() const { return cache.ptr; }
    void *pe_cache() const { return cache.ptr + h.pe_offset * h.es; }

    qilin_status upload_and_append() {
        QILIN_TRY(cache.upload(h.cache));
        QILIN_TRY(kva.upload(h.kva));
        QILIN_TRY(q_lat.upload(h.q_lat));
        QILIN_TRY(q_pe.upload(h.q_pe));
        QILIN_TRY(q_start.upload(h.q_start));
        QILIN_TRY(kv_len.upload(h.kv_len));
        QILIN_TRY(seq_slot.upload(h.c.block > 0 ? h.tables : h.seq_slot));
        QILIN_TRY(token_slot.upload(h.token_slot));
        QILIN_TRY(positions.upload(h.positions));
        qilin_mla_append_args a = {};
        a.latent_cache = latent_cache(), a.pe_cache = pe_cache();
        a.latent_layout = h.ll, a.pe_layout = h.pl;
        a.latent = kva.ptr, a.k_pe = kva.ptr + h.c.r * h.es;
        a.latent_stride = a.pe_stride = h.c.r + h.c.dr;
        a.token_slot = token_slot.ptr, a.positions = positions.ptr;
        a.tokens = h.tokens, a.r = h.c.r, a.dr = h.c.dr, a.max_ctx = h.max_ctx, a.dtype = h.c.dtype;
        a.block_size = h.c.block;
        return qilin_mla_append(&a, nullptr);
    }

    qilin_status attend(double scale) {
        QILIN_TRY(out.poison());
        QILIN_TRY(ws.poison());
        const Case &c = h.c;
        qilin_mla_attention_args a = {};
        a.out = out.ptr, a.out_token_stride = (int64_t)c.n_heads * c.r, a.out_head_stride = c.r;
        a.q_lat = q_lat.ptr, a.q_lat_token_stride = (int64_t)c.n_heads * c.r, a.q_lat_head_stride = c.r;
        a.q_pe = q_pe.ptr, a.q_pe_token_stride = (int64_t)c.n_heads * (c.dr + 8), a.q_pe_head_stride = c.dr + 8;
        a.latent_cache = latent_cache(), a.pe_cache = pe_cache(), a.latent_layout = h.ll, a.pe_layout = h.pl;
        a.q_start = q_start.ptr, a.kv_len = kv_len.ptr, a.seq_slot = seq_slot.ptr;
        a.table_stride = h.table_stride, a.block_size = c.block;
        a.n_seqs = h.n_seqs, a.tokens = h.tokens, a.max_q_len = h.max_q, a.max_kv_len = h.max_kv;
        a.n_heads = c.n_heads, a.r = c.r, a.dr = c.dr, a.scale = (float)scale, a.dtype = c.dtype;
        if (!c.no_workspace) a.workspace = ws_bytes ? ws.ptr : nullptr, a.workspace_bytes = ws_bytes;
        return qilin_mla_attention(&a, nullptr);
    }

    std::vector<double> read() {
        std::vector<unsigned char> bytes = out.download();
        std::vector<double> v((size_t)h.tokens * h.c.n_heads * h.c.r);
        for (size_t i = 0; i < v.size(); i++) v[i] = value_of(bytes, i, h.c.dtype);
        return v;
    }
};

/* ---- absorbed attention on random inputs ------------------------------------------- */

class MlaAttention : public testing::TestWithParam<Case> {};

TEST_P(MlaAttention, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const Case &c = GetParam();
    Batch b(c);
    DeviceBatch d(b);
    QILIN_ASSERT_OK(d.upload_and_append());
    const double scale = 1.5 / std::sqrt((double)(c.r + c.dr));
    QILIN_ASSERT_OK(d.attend(scale));
    Comparison cmp = compare(d.read(), b.reference(scale), attn_tol(c.dtype));
    printf("workspace %zu bytes: %s\n", c.no_workspace ? (size_t)0 : d.ws_bytes, cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<Case> cases() {
    /* decode, chunked prefill (causal n_q > 1), no new tokens, fresh prompt */
    const std::vector<Seq> mixed = {{1, 40}, {3, 50}, {0, 10}, {17, 17}};
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        const std::string dt = qilin_dtype_name(t);
        Case a{dt + "_h16_r64_dr16", t, 16, 64, 16, mixed};
        a.permute = true;
        v.push_back(a);
        Case b{dt + "_h5_r32_dr16_combined", t, 5, 32, 16, mixed};
        b.combined = true;
        v.push_back(b);
    }
    v.push_back(Case{"bf16_h3_r512_dr64_realsize", QILIN_BF16, 3, 512, 64, {{1, 21}, {2, 9}}});
    Case real{"f32_h2_r512_dr64_realsize_combined", QILIN_F32, 2, 512, 64, {{3, 13}}};
    real.combined = true;
    v.push_back(real);
    /* long sequences: split along the sequence, merged through the workspace */
    v.push_back(Case{"f32_h4_r64_dr16_long1500", QILIN_F32, 4, 64, 16, {{1, 1500}}});
    Case lp{"bf16_h4_r32_dr16_long_chunked_prefill", QILIN_BF16, 4, 32, 16, {{3, 1300}, {1, 600}, {1, 1}}};
    lp.permute = true;
    v.push_back(lp);
    /* bf16/f16 run on tensor cores (attention_decode.cuh): DeepSeek-V3's
     * r = 512, dr = 64 at 16 heads (TP 8: one 16-row tile) and 128 heads
     * (TP 1: two 64-row tiles); odd and tile-straddling lengths, a long
     * split sequence, with and without the workspace; three data seeds. */
    for (qilin_dtype t : {QILIN_BF16, QILIN_F16})
        for (int seed = 1; seed <= 3; seed++) {
            const std::string tag = std::string(qilin_dtype_name(t)) + "_seed" + std::to_string(seed);
            std::vector<Seq> s16 = {{1, 1}, {1, 7}, {1, 150}, {1, 33}};
            if (seed == 1) s16.push_back({1, 3001});
            Case tp8{"tc_" + tag + "_h16_r512_dr64", t, 16, 512, 64, s16};
            tp8.permute = seed == 2;
            v.push_back(tp8);
            Case tp1{"tc_" + tag + "_h128_r512_dr64", t, 128, 512, 64, {{1, 7}, {1, seed == 1 ? 1100 : 70}}};
            tp1.combined = seed == 3;
            v.push_back(tp1);
            Case nows{"tc_" + tag + "_h32_r512_dr64_noworkspace", t, 32, 512, 64, {{1, 300}, {1, 1}}};
            nows.no_workspace = true;
            v.push_back(nows);
            v.push_back(Case{"tc_" + tag + "_h7_r48_dr16_chunked", t, 7, 48, 16, {{2, 9}, {1, 1}, {5, 40}}});
        }
    /* paged caches: 64-position pages (FlashMLA's), odd 7-position blocks
     * that every 32-key tile straddles, split decode over shuffled blocks;
     * fp32 (CUDA cores) and bf16 (tensor cores) */
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16})
        for (int bs : {7, 64}) {
            Case p{std::string(qilin_dtype_name(t)) + "_h16_r64_dr16_paged" + std::to_string(bs), t, 16, 64, 16,
                   {{1, 40}, {3, 150}, {0, 10}, {17, 17}, {1, 700}}};
            p.block = bs, p.combined = bs == 7;
            v.push_back(p);
        }
    Case pr{"bf16_h16_r512_dr64_paged64_realsize", QILIN_BF16, 16, 512, 64, {{1, 300}, {1, 1}, {2, 65}}};
    pr.block = 64;
    v.push_back(pr);
    return v;
}

std::string case_name(const testing::TestParamInfo<Case> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Batches, MlaAttention, testing::ValuesIn(cases()), case_name);

TEST(MlaAttention, WorkspaceSizing) {
    EXPECT_GT(qilin_mla_attention_workspace(1, 16, 512, 4096), 0u) << "a long decode should be split";
    EXPECT_GT(qilin_mla_attention_workspace(1, 16, 512, 100), 0u) << "100 positions split to fill the SMs";
    EXPECT_EQ(qilin_mla_attention_workspace(1, 16, 512, 16), 0u) << "16 positions (kMinChunk) are one split";
    /* the workspace stays bounded for big batches: at most 16384 partial rows */
    EXPECT_LE(qilin_mla_attention_workspace(4096, 128, 512, 163840), (size_t)16384 * (512 * 4 + 8) + 256);
}

/* ---- end to end: absorbed and naive forms against float64 naive MLA ------------------ */

struct E2E {
    std::string name;
    qilin_dtype dtype;
    int n_heads, r, dn, dr, dv;
    std::vector<Seq> seqs;
};

void PrintTo(const E2E &e, std::ostream *os) { *os << e.name; }

class MlaEndToEnd : public testing::TestWithParam<E2E> {};

TEST_P(MlaEndToEnd, AbsorbedAndNaiveFormsMatchFloat64Naive) {
    QILIN_REQUIRE_DEVICES(1);
    const E2E &e = GetParam();
    const int nh = e.n_heads, r = e.r, dn = e.dn, dr = e.dr, dv = e.dv, dkv = dn + dv, dk = dn + dr;
    Case c{e.name, e.dtype, nh, r, dr, e.seqs};
    Batch b(c);
    const size_t es = b.es;
    std::mt19937 rng(99);
    std::normal_distribution<double> normal(0.0, 1.0);
    /* kv_b_proj [nh * (dn + dv), r]: rows h*dkv .. +dn are W_UK[h], the next dv W_UV[h] */
    std::vector<double> W((size_t)nh * dkv * r), q_nope((size_t)b.tokens * nh * dn);
    for (double &w : W) w = normal(rng) / std::sqrt((double)r);
    for (double &q : q_nope) q = rounded(normal(rng), e.dtype);
    auto w_uk = [&](int h, int i, int j) { return W[((size_t)h * dkv + i) * r + j]; };
    auto w_uv = [&](int h, int i, int j) { return W[((size_t)h * dkv + dn + i) * r + j]; };
    const double scale = 1.0 / std::sqrt((double)dk);

    /* float64 naive MLA (models.md §7.4) */
    std::vector<double> want((size_t)b.tokens * nh * dv, 0.0);
    for (int s = 0; s < b.n_seqs; s++)
        for (int i = 0; i < e.seqs[s].n_q; i++) {
            const int tok = b.q_start[s] + i;
            for (int h = 0; h < nh; h++) {
                auto up = [&](int t, bool value, int k) { /* k_nope or v of head h at t, element k */
                    double acc = 0;
                    for (int j = 0; j < r; j++) acc += (value ? w_uv(h, k, j) : w_uk(h, k, j)) * b.latent(s, t)[j];
                    return acc;
                };
                std::vector<double> p = b.weights(s, i, [&](int t) {
                    double sc = 0;
                    for (int k = 0; k < dn; k++) sc += q_nope[((size_t)tok * nh + h) * dn + k] * up(t, false, k);
                    for (int k = 0; k < dr; k++) sc += b.qpe(tok, h, k) * b.kpe(s, t)[k];
                    return sc * scale;
                });
                for (size_t t = 0; t < p.size(); t++)
                    for (int k = 0; k < dv; k++) want[((size_t)tok * nh + h) * dv + k] += p[t] * up((int)t, true, k);
            }
        }

    /* (1) absorbed: q_lat = W_UK^T q_nope on the host, kernels, o = W_UV o_lat */
    for (int tok = 0; tok < b.tokens; tok++)
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int k = 0; k < dn; k++) acc += w_uk(h, k, j) * q_nope[((size_t)tok * nh + h) * dn + k];
                store(b.q_lat, ((size_t)tok * nh + h) * r + j, acc, e.dtype);
            }
    DeviceBatch d(b);
    QILIN_ASSERT_OK(d.upload_and_append());
    QILIN_ASSERT_OK(d.attend(scale));
    const std::vector<double> o_lat = d.read();
    std::vector<double> absorbed((size_t)b.tokens * nh * dv, 0.0);
    for (int tok = 0; tok < b.tokens; tok++)
        for (int h = 0; h < nh; h++)
            for (int k = 0; k < dv; k++)
                for (int j = 0; j < r; j++)
                    absorbed[((size_t)tok * nh + h) * dv + k] += w_uv(h, k, j) * o_lat[((size_t)tok * nh + h) * r + j];

    /* (2) naive through the kernels: kv = c W^T for every cached position,
     * per-head keys by qilin_mla_expand_k, values read in place from kv */
    const int rows = b.slots * b.max_ctx;
    std::vector<unsigned char> kv((size_t)rows * nh * dkv * es), q((size_t)b.tokens * nh * dk * es);
    for (int row = 0; row < rows; row++) {
        const double *cl = &b.lat[(size_t)row * r];
        for (int o = 0; o < nh * dkv; o++) {
            double acc = 0;
            for (int j = 0; j < r; j++) acc += W[(size_t)o * r + j] * cl[j];
            store(kv, (size_t)row * nh * dkv + o, acc, e.dtype); /* NaN rows stay NaN: never read */
        }
    }
    for (int tok = 0; tok < b.tokens; tok++)
        for (int h = 0; h < nh; h++) {
            for (int k = 0; k < dn; k++) store(q, ((size_t)tok * nh + h) * dk + k, q_nope[((size_t)tok * nh + h) * dn + k], e.dtype);
            for (int k = 0; k < dr; k++) store(q, ((size_t)tok * nh + h) * dk + dn + k, b.qpe(tok, h, k), e.dtype);
        }
    DeviceBuffer<unsigned char> dkvb(kv.size()), dkeys((size_t)rows * nh * dk * es), dq(q.size()),
        dout((size_t)b.tokens * nh * dv * es);
    QILIN_ASSERT_OK(dkvb.upload(kv));
    QILIN_ASSERT_OK(dq.upload(q));
    QILIN_ASSERT_OK(dkeys.poison());
    QILIN_ASSERT_OK(dout.poison());
    qilin_mla_expand_k_args x = {};
    x.k = dkeys.ptr, x.kv = dkvb.ptr, x.k_pe = d.pe_cache(), x.pe_stride = b.pl.pos_stride;
    x.n = rows, x.n_heads = nh, x.dn = dn, x.dv = dv, x.dr = dr, x.dtype = e.dtype;
    ASSERT_EQ(b.pl.slot_stride, b.max_ctx * b.pl.pos_stride) << "expand_k walks the pe cache as [rows, pe_stride]";
    QILIN_ASSERT_OK(qilin_mla_expand_k(&x, nullptr));
    qilin_attention_args a = {};
    a.out = dout.ptr, a.out_token_stride = (int64_t)nh * dv, a.out_head_stride = dv;
    a.q = dq.ptr, a.q_token_stride = (int64_t)nh * dk, a.q_head_stride = dk;
    a.k_cache = dkeys.ptr, a.k_layout = {(int64_t)b.max_ctx * nh * dk, (int64_t)nh * dk, dk};
    a.v_cache = dkvb.ptr + dn * es, a.v_layout = {(int64_t)b.max_ctx * nh * dkv, (int64_t)nh * dkv, dkv};
    a.q_start = d.q_start.ptr, a.kv_len = d.kv_len.ptr, a.seq_slot = d.seq_slot.ptr;
    a.n_seqs = b.n_seqs, a.tokens = b.tokens, a.max_q_len = b.max_q, a.max_kv_len = b.max_kv;
    a.n_heads = a.n_kv_heads = nh, a.head_dim = dk, a.head_dim_v = dv, a.scale = (float)scale, a.dtype = e.dtype;
    QILIN_ASSERT_OK(qilin_attention_prefill(&a, nullptr));
    std::vector<unsigned char> ob = dout.download();
    std::vector<double> naive(want.size());
    for (size_t i = 0; i < naive.size(); i++) naive[i] = value_of(ob, i, e.dtype);

    const Tolerance &tol = e.dtype == QILIN_F32 ? kTolAttnF32 : kTolMlaFormsBF16;
    Comparison ca = compare(absorbed, want, tol), cn = compare(naive, want, tol);
    printf("absorbed vs float64 naive: %s\nnaive kernels vs float64 naive: %s\n", ca.summary.c_str(), cn.summary.c_str());
    EXPECT_TRUE(ca.ok) << "absorbed: " << ca.summary;
    EXPECT_TRUE(cn.ok) << "naive: " << cn.summary;
}

std::vector<E2E> e2e_cases() {
    const std::vector<Seq> batch = {{1, 37}, {5, 12}, {0, 3}, {2, 2}};
    return {
        {"f32_h4_r64_dn32_dr16_dv24", QILIN_F32, 4, 64, 32, 16, 24, batch},
        {"bf16_h4_r64_dn32_dr16_dv24", QILIN_BF16, 4, 64, 32, 16, 24, batch},
        {"f32_h2_r512_dn128_dr64_dv128_realsize", QILIN_F32, 2, 512, 128, 64, 128, {{1, 9}, {3, 6}}},
    };
}

std::string e2e_name(const testing::TestParamInfo<E2E> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Forms, MlaEndToEnd, testing::ValuesIn(e2e_cases()), e2e_name);

/* ---- expand_k and append: exact copies ------------------------------------------------- */

TEST(MlaExpandK, CopiesNopeAndBroadcastsRope) {
    QILIN_REQUIRE_DEVICES(1);
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16}) {
        for (int pe_stride : {24, 27}) { /* 27: misaligned rows, the element path */
            const size_t es = qilin_dtype_size(t);
            const int n = 5, nh = 3, dn = 16, dv = 8, dr = 16;
            std::vector<unsigned char> kv((size_t)n * nh * (dn + dv) * es), pe((size_t)n * pe_stride * es);
            for (size_t i = 0; i < kv.size() / es; i++) store(kv, i, 1.0 + (double)i, t);
            for (size_t i = 0; i < pe.size() / es; i++) store(pe, i, -1.0 - (double)i, t);
            DeviceBuffer<unsigned char> dkv(kv.size()), dpe(pe.size()), dk((size_t)n * nh * (dn + dr) * es);
            QILIN_ASSERT_OK(dkv.upload(kv));
            QILIN_ASSERT_OK(dpe.upload(pe));
            QILIN_ASSERT_OK(dk.poison());
            qilin_mla_expand_k_args a = {};
            a.k = dk.ptr, a.kv = dkv.ptr, a.k_pe = dpe.ptr, a.pe_stride = pe_stride;
            a.n = n, a.n_heads = nh, a.dn = dn, a.dv = dv, a.dr = dr, a.dtype = t;
            QILIN_ASSERT_OK(qilin_mla_expand_k(&a, nullptr));
            std::vector<unsigned char> got = dk.download(), want(got.size(), 0xFF);
            for (int i = 0; i < n; i++)
                for (int h = 0; h < nh; h++) {
                    unsigned char *k = &want[(((size_t)i * nh + h) * (dn + dr)) * es];
                    memcpy(k, &kv[(((size_t)i * nh + h) * (dn + dv)) * es], dn * es);
                    memcpy(k + dn * es, &pe[(size_t)i * pe_stride * es], dr * es);
                }
            EXPECT_TRUE(got == want) << qilin_dtype_name(t) << " pe_stride " << pe_stride;
        }
    }
}

TEST(MlaAppend, WritesLatentAndRopeKey) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c{"bf16_append", QILIN_BF16, 1, 32, 16, {{3, 5}, {1, 2}}};
    Batch b(c);
    DeviceBatch d(b);
    QILIN_ASSERT_OK(d.cache.poison());
    QILIN_ASSERT_OK(d.upload_and_append());
    std::vector<unsigned char> got = d.cache.download();
    for (int s = 0; s < b.n_seqs; s++)
        for (int t = 0; t < b.kv_len[s]; t++) {
            for (int k = 0; k < c.r; k++)
                ASSERT_EQ(value_of(got, b.lat_idx(b.seq_slot[s], t) + k, c.dtype), b.latent(s, t)[k]) << s << " " << t;
            for (int k = 0; k < c.dr; k++)
                ASSERT_EQ(value_of(got, b.pe_idx(b.seq_slot[s], t) + k, c.dtype), b.kpe(s, t)[k]) << s << " " << t;
        }
}

TEST(MlaErrors, BadArgumentsNameTheProblem) {
    float buf[64];
    int ibuf[4] = {0, 1, 1, 1};
    qilin_mla_attention_args a = {};
    a.out = buf, a.q_lat = buf, a.q_pe = buf, a.latent_cache = buf, a.pe_cache = buf;
    a.q_start = ibuf, a.kv_len = ibuf, a.seq_slot = ibuf;
    a.n_seqs = 1, a.tokens = 1, a.max_q_len = 1, a.max_kv_len = 1;
    a.n_heads = 4, a.r = 520, a.dr = 64, a.scale = 0.1f, a.dtype = QILIN_BF16;
    EXPECT_EQ(qilin_mla_attention(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("r=520"), std::string::npos) << qilin_last_error();
    a.r = 512, a.dr = 12;
    EXPECT_EQ(qilin_mla_attention(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("dr=12"), std::string::npos) << qilin_last_error();
    a.dr = 64, a.q_pe = nullptr;
    EXPECT_EQ(qilin_mla_attention(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("q_pe"), std::string::npos) << qilin_last_error();
    a.q_pe = buf, a.dtype = QILIN_FP8_E4M3;
    EXPECT_EQ(qilin_mla_attention(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("fp8_e4m3"), std::string::npos) << qilin_last_error();

    qilin_mla_expand_k_args x = {};
    x.n = 2, x.n_heads = 2, x.dn = 8, x.dv = 8, x.dr = 0, x.dtype = QILIN_BF16;
    EXPECT_EQ(qilin_mla_expand_k(&x, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("dr=0"), std::string::npos) << qilin_last_error();

    qilin_mla_append_args m = {};
    m.tokens = 1, m.r = 8, m.dr = 8, m.max_ctx = 2, m.dtype = QILIN_BF16;
    EXPECT_EQ(qilin_mla_append(&m, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("latent_cache"), std::string::npos) << qilin_last_error();
}

} // namespace
