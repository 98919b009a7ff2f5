#!/usr/bin/env bash
# run_fuzz.sh — builds the libFuzzer targets (clang, -DQILIN_FUZZ=ON) in
# build/fuzz and runs each one for a bounded time, seeded from fuzz/seeds/ and
# the test fixtures (tests/fixtures/malformed/, configs/, gguf/). New corpus
# entries go to build/fuzz/corpus/<target>/ (kept between runs), crashes to
# build/fuzz/artifacts/<target>/. Exits non-zero when a target crashes, leaks,
# times out or fails to build. See fuzz/README.md.
#
#   scripts/run_fuzz.sh [seconds per target, default 20] [target ...]
#   targets: safetensors gguf config jinja tokenizer (default: all five)
# The two interpreters (jinja templates, tokenizer.json pipelines) get twice the
# time: their state space (nesting, loops, normalizer chains) is the deepest.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/cuda/bin:$PATH # configuring the project finds the CUDA toolkit headers

secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors gguf config jinja tokenizer)
build=${QILIN_FUZZ_BUILD:-build/fuzz}
jobs=${JOBS:-$(nproc)}

die() { echo "run_fuzz: $*" >&2; exit 1; }

mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DQILIN_FUZZ=ON -DBUILD_TESTING=OFF -DQILIN_BACKEND=sim \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; die "configuring $build failed"; }
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}" || die "building the fuzzers failed"

fixtures=tests/fixtures
failed=0
for t in "${targets[@]}"; do
  seeds=(fuzz/seeds/$t)
  case $t in
    safetensors) seeds+=($fixtures/malformed/safetensors $fixtures/malformed/safetensors_index) ;;
    gguf) seeds+=($fixtures/malformed/gguf $fixtures/gguf) ;;
    config) seeds+=($fixtures/malformed/config $fixtures/configs) ;;
    jinja) seeds+=($fixtures/chat/templates) ;;
    tokenizer) ;;
    *) die "unknown target '$t' (safetensors, gguf, config, jinja, tokenizer)" ;;
  esac
  dict=()
  [ -f fuzz/$t.dict ] && dict=(-dict=fuzz/$t.dict) # tokens that reach deep/large cases (fuzz/README.md)
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  log=$build/fuzz_$t.log
  mkdir -p "$corpus" "$artifacts"
  t_secs=$secs
  case $t in jinja | tokenizer) t_secs=$((secs * 2)) ;; esac
  echo "--- fuzz_$t: ${t_secs}s, seeds: ${seeds[*]}"
  # max_len bounds each input (the 1.7 MB vocab GGUF is read truncated, as a
  # prefix); rss/timeout limits turn a blow-up into a reported failure.
  "$build/fuzz/fuzz_$t" -max_total_time="$t_secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz_$t: FAILED (exit $rc); input saved in $artifacts/, log in $log"
    failed=1
  else
    echo "fuzz_$t: ok, ${runs:-?} runs, ${speed:-?} exec/s, $cov, corpus $(ls "$corpus" | wc -l) files"
  fi
done
exit $failed
