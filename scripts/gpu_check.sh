#!/usr/bin/env bash
# gpu_check.sh — everything a GPU machine should tell us, in one command and under 9 minutes.
#
#   scripts/gpu_check.sh [--results FILE] [--out DIR] [--budget S] [--qwen-layers N] [--deepseek-layers N]
#   scripts/gpu_check.sh --sim [--no-build] [--build-dir DIR] [--results FILE] [--out DIR]
#
# Stages, in order, each under `timeout` with its own limit (seconds; never past what is left of
# the total --budget, default 530 s, so the whole run stays under 9 minutes). A stage that fails or
# times out is reported and the next one runs; a stage that cannot run says why (SKIP lines):
#   configure        30  cmake --preset cuda for the present GPU only (nvidia-smi's compute
#                        capability -> QILIN_CUDA_ARCHS, 9.0 -> 90a)
#   build_core      180  qilin and the kernel benchmarks, -j $(nproc)
#   build_tests     120  everything else (the GPU test suite)
#   bench_stories    20  qilin bench on stories260K (a real checkpoint; the quick sanity check)
#   ctest           100  the cuda build's ctest, -j 8, 60 s per test, sass checks left out (CPU-only)
#   kernels          75  bench/run_kernels.sh: bench_linear, bench_gemv_quant, bench_gemm_quant,
#                        bench_decode_attention, bench_attention, bench_moe_gemm, bench_small_ops,
#                        bench_load (20 s each)
#   bench_qwen3     120  qilin bench, random-weight Qwen3-30B-A3B bf16, --qwen-layers (default 48: all)
#   bench_deepseek  100  qilin bench, random-weight DeepSeek-V3 FP8, --deepseek-layers (default 4:
#                        the 3 dense layers and one MoE layer)
# Random weights are filled on every CPU (host/random_weights.c, 4 MiB per work item): Qwen3's
# 30.5 B bf16 parameters (61 GB; fits one 80 GB GPU) take of the order of 15-30 s on 16 cores
# (~8-16 ns a parameter per core). DeepSeek-V3 keeps 4 layers: each MoE layer is 11 B parameters,
# and its routed experts are still bf16 on the device unless they load quantized.
#
# Afterwards a dated section (device, commit, stage table, the bench tables, the kernel figures,
# the ctest summary) goes into --results (default bench/RESULTS.md, newest first: inserted before
# the first "## " section); every stage's full log stays in --out (default build/gpu_check).
#
# --sim runs the same stages on the sim build with tiny sizes so CI proves the script works end
# to end: the build stages only without --no-build (ctest passes --no-build: it must not rebuild
# the tree it runs from), ctest only $GPU_CHECK_CTEST_REGEX (default ^time_model$: a nested full
# suite would be CI twice; none at all under GPU_CHECK_IN_CTEST=1, which the ctest entry sets), the kernel benchmarks with --reps 1 at their sim sizes, qilin bench
# on stories260K at prompt 8 / gen 2, Qwen3-30B-A3B (all 48 layers) and DeepSeek-V3 in dry-run
# (QILIN_SIM_DRY_RUN=1: no kernel runs, so real-size weights cost nothing). In --sim the results
# default to OUT/RESULTS.md: the tracked bench/RESULTS.md is only written on a GPU run.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
sim=0 build=1 results="" out="" budget=530 qwen_layers=48 ds_layers=4 build_dir=""
die() { echo "gpu_check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --sim) sim=1 ;;
    --no-build) build=0 ;;
    --results) [ $# -ge 2 ] || die "--results needs a file"; results=$2; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift ;;
    --build-dir) [ $# -ge 2 ] || die "--build-dir needs a directory"; build_dir=$2; shift ;;
    --budget) [ $# -ge 2 ] && [ "$2" -gt 0 ] 2>/dev/null || die "--budget needs seconds > 0"; budget=$2; shift ;;
    --qwen-layers) [ $# -ge 2 ] && [ "$2" -ge 1 ] 2>/dev/null && [ "$2" -le 48 ] || die "--qwen-layers: 1 to 48"
        qwen_layers=$2; shift ;;
    --deepseek-layers) [ $# -ge 2 ] && [ "$2" -ge 1 ] 2>/dev/null && [ "$2" -le 61 ] || die "--deepseek-layers: 1 to 61"
        ds_layers=$2; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (--help lists them)" ;;
    esac
    shift
done
preset=$([ $sim = 1 ] && echo sim || echo cuda)
[ -n "$build_dir" ] || build_dir=$root/build/$preset
[ -n "$out" ] || out=$root/build/gpu_check
[ -n "$results" ] || results=$([ $sim = 1 ] && echo "$out/RESULTS.md" || echo "$root/bench/RESULTS.md")
mkdir -p "$out" || die "cannot create $out"
results_dir=$(cd "$(dirname "$results")" 2>/dev/null && pwd) || die "--results $results: no such directory"
out=$(cd "$out" && pwd) results=$results_dir/$(basename "$results")
cd "$root" || die "cannot enter $root"
rm -f "$out"/*.log "$out"/*.json "$out/stages.md" "$out/skipped.txt"
qilin=$build_dir/runtime/qilin
fixtures=$root/tests/fixtures
reserve=10 # seconds kept for writing the results
start=$SECONDS

# ---- stages ----

# skip NAME WHY: a stage that does not run, and why (printed and kept for the results).
skip() {
    echo "gpu_check: SKIP $1: $2"
    echo "- $1: $2" >>"$out/skipped.txt"
    echo "| $1 | - | - | skipped |" >>"$out/stages.md"
}

# stage NAME LIMIT CMD...: runs CMD under timeout min(LIMIT, what is left of the budget), its
# output in OUT/NAME.log (and the last lines on the terminal). Returns CMD's status (124: timed out).
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - (SECONDS - start) - reserve))
    [ $left -lt $limit ] && limit=$left
    if [ $limit -lt 3 ]; then
        skip "$name" "the ${budget} s budget is spent"
        return 125
    fi
    echo "gpu_check: == $name (limit ${limit} s): $*"
    local t0=$SECONDS rc
    timeout --kill-after=5 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    local took=$((SECONDS - t0)) status=ok
    [ $rc -ne 0 ] && status="FAILED (exit $rc)"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMED OUT"
    tail -n 15 "$out/$name.log" | sed 's/^/    /'
    echo "gpu_check: == $name: $status after ${took} s"
    echo "| $name | $limit | $took | $status |" >>"$out/stages.md"
    return $rc
}

echo "| stage | limit s | took s | status |" >"$out/stages.md"
echo "| --- | ---: | ---: | --- |" >>"$out/stages.md"
: >"$out/skipped.txt"

# The device: name, compute capability, memory, driver (nvidia-smi), or the sim.
device="sim (CPU emulator)" arch=""
if [ $sim = 0 ]; then
    command -v nvidia-smi >/dev/null || die "no nvidia-smi: not a GPU machine (--sim runs on the emulator)"
    device=$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
    [ -n "$device" ] || die "nvidia-smi lists no GPU"
    cc=$(echo "$device" | cut -d, -f2 | tr -d ' ')
    case $cc in
    9.0) arch=90a ;;                     # Hopper: the wgmma/TMA kernels need the arch-specific target
    [0-9]*.[0-9]) arch=$(echo "$cc" | tr -d .) ;;
    *) arch=native; echo "gpu_check: compute capability '$cc' not read; building for 'native'" ;;
    esac
    export PATH=/usr/local/cuda/bin:$PATH
fi
# The commit: git's, else $GPU_CHECK_COMMIT (a tree copied without .git), else "unknown"; the
# cuda configure passes it on to qilin bench (-DQILIN_COMMIT) when git cannot say.
commit=$(git -C "$root" describe --always --dirty 2>/dev/null) || commit=""
commit_define=()
if [ -z "$commit" ]; then
    commit=${GPU_CHECK_COMMIT:-unknown}
    commit_define=("-DQILIN_COMMIT=$commit")
fi
echo "gpu_check: device: $device; commit $commit; budget ${budget} s; logs in $out"

jobs=$(nproc)
if [ $build = 1 ]; then
    if [ $sim = 1 ]; then
        stage configure 30 cmake --preset sim -B "$build_dir"
    else
        stage configure 30 cmake --preset cuda -B "$build_dir" -DQILIN_CUDA_ARCHS="$arch" "${commit_define[@]}"
    fi
    benches="bench_linear bench_gemv_quant bench_gemm_quant bench_decode_attention bench_moe_gemm bench_attention bench_small_ops bench_load"
    stage build_core 180 cmake --build "$build_dir" -j "$jobs" --target qilin $benches
    stage build_tests 120 cmake --build "$build_dir" -j "$jobs" -- -k 0
    tests_built=$?
else
    skip configure "--no-build: using the build in $build_dir as it is"
    skip build_core "--no-build"
    skip build_tests "--no-build"
    tests_built=0
fi

# qilin bench: NAME LIMIT ARGS... (its JSON in OUT/NAME.json)
qbench() {
    local name=$1 limit=$2
    shift 2
    if [ ! -x "$qilin" ]; then skip "$name" "$qilin not built"; return; fi
    stage "$name" "$limit" "$qilin" bench --json "$out/$name.json" "$@"
}

if [ $sim = 1 ]; then
    export QILIN_SIM_DEVICES=1
    qbench bench_stories 20 --model "$fixtures/models/stories260K" --prompt 8 --gen 2 --batch 1,2 --repeat 1 --warmup 0
else
    qbench bench_stories 20 --model "$fixtures/models/stories260K" --prompt 128 --gen 128 --batch 1,8,32 --repeat 3
fi

if [ $tests_built -ne 0 ]; then
    skip ctest "the test build did not finish (build_tests: exit $tests_built)"
elif [ -n "${GPU_CHECK_IN_CTEST:-}" ]; then
    skip ctest "run by ctest: a nested ctest would write the outer one's Testing/ logs"
elif [ $sim = 1 ]; then
    stage ctest 30 ctest --test-dir "$build_dir" -R "${GPU_CHECK_CTEST_REGEX:-^time_model\$}" --output-on-failure \
        --no-tests=error
else
    stage ctest 100 ctest --test-dir "$build_dir" -j 8 --timeout 60 -LE sass --output-on-failure --no-tests=error
fi

# Kernel benchmarks, one after another inside the stage's limit (bench/README.md says what each reports).
runner=$(dirname "$0")/../bench/run_kernels.sh
if [ $sim = 1 ]; then stage kernels 50 "$runner" "$build_dir" --reps 1 --each 15 --sim
else stage kernels 75 "$runner" "$build_dir" --reps 5 --each 20; fi

qwen=$fixtures/configs/Qwen3-30B-A3B.config.json ds=$fixtures/configs/DeepSeek-V3.config.json
if [ $sim = 1 ]; then
    QILIN_SIM_DRY_RUN=1 qbench bench_qwen3 20 --model "$qwen" --random-weights --prompt 64 --gen 4 --batch 1,8 \
        --repeat 1 --warmup 0
    QILIN_SIM_DRY_RUN=1 qbench bench_deepseek 20 --model "$ds" --random-weights --layers "$ds_layers" --prompt 64 \
        --gen 4 --batch 1,8 --repeat 1 --warmup 0
else
    qbench bench_qwen3 120 --model "$qwen" --random-weights --layers "$qwen_layers" --prompt 512 --gen 128 \
        --batch 1,8,32,128 --repeat 2
    qbench bench_deepseek 100 --model "$ds" --random-weights --layers "$ds_layers" --prompt 512 --gen 64 \
        --batch 1,8,32 --repeat 2
fi

# ---- results ----

section=$out/section.md
{
    echo "## $(date -u +%Y-%m-%d) — scripts/gpu_check.sh$([ $sim = 1 ] && echo " --sim (emulator: figures prove the harness only)"); commit $commit"
    echo
    echo "**Device:** $device. **Commit:** $commit. **Total:** $((SECONDS - start)) s of a ${budget} s budget."
    echo
    cat "$out/stages.md"
    if [ -s "$out/skipped.txt" ]; then echo; echo "Skipped:"; echo; cat "$out/skipped.txt"; fi
    for name in bench_stories bench_qwen3 bench_deepseek; do
        [ -f "$out/$name.log" ] || continue
        echo
        echo "### $name"
        echo
        # the header (and any error) in a code block, then the table: the rows printed so far,
        # even when the stage timed out
        echo '```'
        grep -E '^(qilin bench:|device:|commit |flags:|NOTE:)' "$out/$name.log" |
            grep -v '^qilin bench: \(batch\|loading\|wrote\|NOTE\)'
        echo '```'
        echo
        if grep -q '^| [0-9]' "$out/$name.log"; then
            grep '^|' "$out/$name.log"
        else # nothing measured: where it stopped
            echo "No rows; the log ($out/$name.log) ends:"
            echo
            echo '```'
            tail -n 4 "$out/$name.log"
            echo '```'
        fi
    done
    if [ -f "$out/ctest.log" ]; then
        echo
        echo "### ctest"
        echo
        echo '```'
        # the summary, or (stage timed out) the counts so far; then every test that did not pass
        grep -E 'tests passed|tests failed|Total Test time' "$out/ctest.log" ||
            echo "no summary (stage stopped): $(grep -c ' Passed ' "$out/ctest.log") passed so far"
        grep -E '\*\*\*Failed|\*\*\*Timeout|\*\*\*Exception|Not Run|Failed  ' "$out/ctest.log" | tail -n 40
        echo '```'
    fi
    if [ -f "$out/kernels.log" ]; then
        echo
        echo "### kernel benchmarks"
        echo
        echo '```'
        cat "$out/kernels.log"
        echo '```'
    fi
    echo
} >"$section"

# Newest first: before the file's first "## " section (appended when it has none).
if [ -f "$results" ] && grep -q '^## ' "$results"; then
    awk -v sec="$section" 'done == 0 && /^## / { while ((getline l < sec) > 0) print l; done = 1 } { print }' \
        "$results" >"$results.tmp" && mv "$results.tmp" "$results"
else
    [ -f "$results" ] || printf '# Results\n\n' >"$results"
    cat "$section" >>"$results"
fi
echo "gpu_check: wrote the section to $results ($((SECONDS - start)) s in all)"
grep -q 'FAILED\|TIMED OUT' "$out/stages.md" && exit 1
exit 0
