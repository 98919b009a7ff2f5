#!/bin/bash
# run_kernels.sh BUILD_DIR [--reps N] [--each SECONDS] [--sim] — every kernel benchmark of a build,
# one after the other, each under its own time limit, into one report on stdout:
#   bench_linear        dense bf16 linear: our GEMV (m <= 8) vs cuBLAS, m = 1 ... 4096
#   bench_gemv_quant    decode GEMV from FP8 block-scaled and INT4 group weights vs the bf16 GEMV
#   bench_gemm_quant    prefill GEMM / decode GEMV from FP8 and GGUF (Q8_0, Q4_K, Q6_K) weights vs cuBLAS
#   bench_decode_attention  paged split-KV decode attention (GQA) and absorbed MLA
#   bench_attention     prefill attention on tensor cores
#   bench_moe_gemm      the MoE grouped GEMMs (align, gate_up + SwiGLU, down, combine)
#   bench_small_ops     RMSNorm + residual and the device sampler (greedy, top-p) at model widths
#   bench_load          the checkpoint upload engine vs the page cache
# Each prints µs, GB/s, TFLOP/s and % of the measured bandwidth or the datasheet peak
# (bench/README.md), after checking its kernel against a reference. A benchmark that is not
# built, fails or times out is reported ("### NAME: SKIPPED / FAILED / TIMED OUT") and the next
# one runs; the exit status is 0 unless BUILD_DIR is missing. --sim: the emulator's small sizes
# (bench_load on 16 MiB), which prove the harness, not speed. scripts/gpu_check.sh runs this.
set -u
build_dir=${1:?usage: run_kernels.sh BUILD_DIR [--reps N] [--each SECONDS] [--sim]}
shift
reps=5 each=20 sim=0
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2; shift ;;
    --each) each=$2; shift ;;
    --sim) sim=1 ;;
    *) echo "run_kernels.sh: unknown flag $1" >&2; exit 2 ;;
    esac
    shift
done
[ -d "$build_dir/bench" ] || { echo "run_kernels.sh: $build_dir/bench: no such directory" >&2; exit 2; }
for b in bench_linear bench_gemv_quant bench_gemm_quant bench_decode_attention bench_attention bench_moe_gemm bench_small_ops \
    bench_load; do
    args="--reps $reps"
    [ $b = bench_load ] && args=$([ $sim = 1 ] && echo "16M --reps 1" || echo "1G --reps 3")
    if [ ! -x "$build_dir/bench/$b" ]; then echo "### $b: SKIPPED (not built)"; continue; fi
    echo "### $b $args"
    timeout --kill-after=2 "$each" stdbuf -oL "$build_dir/bench/$b" $args 2>&1 # lines survive a timeout
    rc=$?
    [ $rc -eq 124 ] && echo "### $b: TIMED OUT after $each s"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "### $b: FAILED (exit $rc)"
done
exit 0
