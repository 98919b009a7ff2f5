#!/bin/sh
# gpu_check_sim.sh SOURCE_DIR BUILD_DIR — scripts/gpu_check.sh --sim end to end on the built sim
# tree (--no-build): it exits 0; the results section it writes (to a temporary file, never the
# tracked bench/RESULTS.md, whose bytes are compared before and after) has the stage table with
# every stage ok or skipped with a reason, the three qilin bench tables with their rows, and the
# kernel benchmarks' output; each bench JSON parses. Then a 4-second budget: stages past it are
# skipped as "budget is spent", not run, and the script still writes its section.
set -u
src=$1 build=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
tracked=$(cksum <"$src/bench/RESULTS.md")
export GPU_CHECK_IN_CTEST=1

bash "$src/scripts/gpu_check.sh" --sim --no-build --build-dir "$build" --out "$dir/out" --results "$dir/R.md" \
    >"$dir/log" 2>&1 || fail "gpu_check.sh --sim exited $?: $(tail -20 "$dir/log")"
r=$dir/R.md
grep -q '^## .* scripts/gpu_check.sh --sim' "$r" || fail "no dated section in $r"
for stage in bench_stories kernels bench_qwen3 bench_deepseek; do
    grep -q "^| $stage | [0-9]* | [0-9]* | ok |" "$r" || fail "stage $stage not ok: $(grep "^| $stage " "$r")"
done
for stage in configure build_core build_tests ctest; do
    grep -q "^- $stage: ." "$r" || fail "stage $stage not skipped with a reason"
done
for name in bench_stories bench_qwen3 bench_deepseek; do
    grep -q "^### $name" "$r" || fail "no $name section"
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["results"], d' "$dir/out/$name.json" ||
        fail "$name.json does not parse or has no results"
done
[ "$(grep -c '^| [0-9]* | 8 | 2 | ' "$r")" = 2 ] || fail "stories260K table: wanted 2 rows"
[ "$(grep -c '^| [0-9]* | 64 | 4 | ' "$r")" = 4 ] || fail "Qwen3 + DeepSeek-V3 tables: wanted 2 rows each"
grep -q "30.53 B params" "$r" || fail "Qwen3-30B-A3B is not its 30.53 B parameters"
grep -q "timings are meaningless: dry-run" "$r" || fail "no dry-run note"
grep -q '^### bench_moe_gemm' "$r" || fail "no kernel benchmark output"

bash "$src/scripts/gpu_check.sh" --sim --no-build --build-dir "$build" --out "$dir/out2" --results "$dir/R2.md" \
    --budget 14 >"$dir/log2" 2>&1
grep -q "SKIP bench_deepseek: the 14 s budget is spent" "$dir/log2" || fail "--budget 14: deepseek not skipped: $(tail -5 "$dir/log2")"
grep -q '^## ' "$dir/R2.md" || fail "--budget 14: no section written"
[ "$(cksum <"$src/bench/RESULTS.md")" = "$tracked" ] || fail "bench/RESULTS.md was modified"
[ $failures = 0 ] && echo "gpu_check_sim: all cases passed"
exit $((failures > 0))
