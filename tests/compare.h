/* compare.h — the repository's one comparator for kernel outputs.
 *
 * Reports the max absolute error, the max relative error and where it
 * occurs, a cosine similarity, and NaN/Inf agreement; a result passes when
 * every element satisfies |got - want| <= atol + rtol * |want| and the
 * non-finite values agree. Tolerances come from the table below, each with
 * the arithmetic that justifies it. */
#ifndef QILIN_TESTS_COMPARE_H
#define QILIN_TESTS_COMPARE_H

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

struct Tolerance {
    double atol, rtol;
    const char *why;
};

/* Outputs stored in fp32 from fp32 arithmetic: reductions of n terms err by
 * about n * 2^-24 relative at worst; 1e-5 covers n up to ~100 with pairwise
 * or warp-tree order. */
static const Tolerance kTolF32 = {1e-6, 1e-5, "fp32 arithmetic, fp32 storage"};
/* bf16 storage: rounding the output is half an ulp = 2^-9 relative; the fp32
 * arithmetic before it is negligible, a neighbouring rounding of an
 * intermediate (the residual sum) can move the result by one more ulp. */
static const Tolerance kTolBF16 = {1e-6, 1.0 / 128, "bf16 storage: 2 ulp of 2^-8"};
/* fp16 storage: 10 mantissa bits, same reasoning as bf16. */
static const Tolerance kTolF16 = {1e-6, 1.0 / 1024, "fp16 storage: 2 ulp of 2^-11"};
/* LayerNorm of rows whose |mean| / std is R (the test uses R = 48): the fp32
 * mean is off by about |mean| * 2^-24 per rounding, ~20 roundings deep
 * (serial per-thread sums, then the tree), and that error, divided by std,
 * is an absolute error of every normalised output: 48 * 20 * 6e-8 ≈ 6e-5. */
static const Tolerance kTolLayernormOffsetF32 = {1e-4, 1e-5, "fp32 layernorm, |mean|/std = 48: mean err / std"};
static const Tolerance kTolLayernormOffsetBF16 = {1e-4, 1.0 / 128, "bf16 layernorm, |mean|/std = 48: + storage"};

/* Softmax attention, output o = sum_t p_t v_t with |v| ~ N(0,1): the fp32
 * score q.k over up to 256 (MLA: 576) products errs by ~sqrt(D) * 2^-24 *
 * |terms| ~ 1e-6 after scaling, a relative error of each weight p_t that
 * moves o by ~1e-6 * max|v| ~ 5e-6 absolute; fp32 accumulation over n <= a
 * few thousand keys adds sqrt(n) * 2^-24 relative. Outputs are averages that
 * can sit near 0, so the bound is absolute: 5e-5 (10x margin), then storage
 * rounding of the result (2 ulp) for bf16/f16. */
static const Tolerance kTolAttnF32 = {5e-5, 1e-5, "fp32 attention: score/exp2 error ~5e-6 abs, 10x margin"};
static const Tolerance kTolAttnBF16 = {5e-5, 1.0 / 128, "bf16 attention: fp32 error + 2 ulp of 2^-8 storage"};
static const Tolerance kTolAttnF16 = {5e-5, 1.0 / 1024, "f16 attention: fp32 error + 2 ulp of 2^-11 storage"};
/* Tensor-core prefill (attention_prefill.cuh) rounds the softmax weights P
 * to the input dtype before P V (the mma takes bf16/f16): each weight moves
 * by at most half an ulp relative (2^-9 bf16, 2^-12 f16) while the row sum
 * stays fp32, so an output moves by at most 2^-9 * sum_t p_t |v_t| <=
 * 2^-9 * max|v| ~ 2^-9 * 4.5 (N(0,1) values, ~1e5 of them), then storage. */
static const Tolerance kTolAttnMmaBF16 = {4.5 / 512, 1.0 / 128, "bf16 mma attention: P rounded 2^-9 * max|v| 4.5 + storage"};
static const Tolerance kTolAttnMmaF16 = {4.5 / 4096, 1.0 / 1024, "f16 mma attention: P rounded 2^-12 * max|v| 4.5 + storage"};

/* MLA end to end in bf16 against the float64 naive form: each path rounds
 * different intermediates to bf16 (absorbed: q_lat, o_lat; naive: k_nope, v)
 * plus the output; each rounding (2^-9 relative) moves an output, a weighted
 * average of values |v| <= ~4, by at most 2^-9 * 4. Four of them: 2^-5. */
static const Tolerance kTolMlaFormsBF16 = {1.0 / 32, 1.0 / 128, "bf16 MLA forms: 4 roundings of 2^-9 * max|v| 4"};
/* Dot products of length n in fp32 against a float64 reference (GEMV, the
 * MoE GEMMs): the accumulation error scales with sum |x_i w_i|, not with
 * |result|, and random-sign sums cancel, so atol is given here as a
 * FRACTION OF THE REFERENCE OUTPUT'S RMS and the test multiplies it in
 * (scaled_tolerance). fp32: a few rounding errors of 2^-24 on partial sums
 * up to sqrt(n) = 64 times the output scale: 2^-24 * 64 * ~4 ~ 1.5e-5.
 * bf16/f16 storage of the output (and, for MoE, of the per-expert rows y and
 * the hidden rows h before it) adds 2 ulp relative to each rounded value;
 * y_j's rounding is relative to |y_j|, which the weighted sum can cancel,
 * hence the same 2 ulp again as atol against the RMS. */
static const Tolerance kTolDotF32 = {3e-5, 1e-5, "fp32 dot products vs float64; atol x output RMS"};
static const Tolerance kTolDotBF16 = {1.0 / 128, 1.0 / 128, "bf16 storage: 2 ulp of 2^-8; atol x output RMS"};
static const Tolerance kTolDotF16 = {1.0 / 1024, 1.0 / 1024, "fp16 storage: 2 ulp of 2^-11; atol x output RMS"};

/* tol with its atol multiplied by the RMS of the finite values of want. */
inline Tolerance scaled_tolerance(const Tolerance &tol, const std::vector<double> &want) {
    double ss = 0;
    size_t n = 0;
    for (double w : want)
        if (std::isfinite(w)) ss += w * w, n++;
    return Tolerance{tol.atol * (n ? std::sqrt(ss / n) : 1.0), tol.rtol, tol.why};
}
/* RoPE on inputs |x| <= 1.5 with |cos|, |sin| <= cos_sin_scale <= 1.14: the
 * kernel's fp32 cos/sin (sincosf, <= 2 ulp) and the reference's double cos/sin
 * may round to neighbouring values of the storage type; one ulp of a value
 * below 2 (2^-7 bf16, 2^-10 f16, 2^-22 f32 incl. the 2 ulp) in each of the
 * two products of a rotated element gives atol = 2 * 1.5 * ulp; the output
 * rounding is the rtol. */
static const Tolerance kTolRopeF32 = {2 * 1.5 * 0x1p-22, 1e-6, "rope f32: 2-ulp cos/sin, fp32 arithmetic"};
static const Tolerance kTolRopeBF16 = {2 * 1.5 * 0x1p-7, 1.0 / 256, "rope bf16: cos/sin rounding flip + storage"};
static const Tolerance kTolRopeF16 = {2 * 1.5 * 0x1p-10, 1.0 / 2048, "rope f16: cos/sin rounding flip + storage"};

struct Comparison {
    bool ok = true;
    double max_abs = 0, max_rel = 0, cosine = 1;
    size_t worst = 0, mismatched_nonfinite = 0, bad = 0;
    std::string summary;
};

inline Comparison compare(const std::vector<double> &got, const std::vector<double> &want, const Tolerance &tol) {
    Comparison c;
    double dot = 0, ng = 0, nw = 0, worst_excess = -1;
    for (size_t i = 0; i < want.size() && i < got.size(); i++) {
        double g = got[i], w = want[i];
        if (!std::isfinite(g) || !std::isfinite(w)) {
            bool same = (std::isnan(g) && std::isnan(w)) || g == w;
            if (!same) c.mismatched_nonfinite++;
            continue;
        }
        double err = std::fabs(g - w), rel = err / std::max(std::fabs(w), 1e-30);
        double excess = err - (tol.atol + tol.rtol * std::fabs(w));
        if (excess > 0) c.bad++;
        if (excess > worst_excess) {
            worst_excess = excess;
            c.worst = i;
        }
        c.max_abs = std::max(c.max_abs, err);
        if (std::fabs(w) > tol.atol) c.max_rel = std::max(c.max_rel, rel);
        dot += g * w;
        ng += g * g;
        nw += w * w;
    }
    c.cosine = (ng > 0 && nw > 0) ? dot / std::sqrt(ng * nw) : (ng == nw ? 1.0 : 0.0);
    c.ok = got.size() == want.size() && c.bad == 0 && c.mismatched_nonfinite == 0;
    char buf[512];
    snprintf(buf, sizeof buf,
             "n=%zu max_abs=%.3g max_rel=%.3g cosine=%.9f worst[%zu]: got %.9g want %.9g; "
             "out of tolerance: %zu, non-finite mismatches: %zu (tol: %s)",
             want.size(), c.max_abs, c.max_rel, c.cosine, c.worst,
             c.worst < got.size() ? got[c.worst] : NAN, c.worst < want.size() ? want[c.worst] : NAN, c.bad,
             c.mismatched_nonfinite, tol.why);
    c.summary = buf;
    return c;
}

#endif /* QILIN_TESTS_COMPARE_H */
