#!/bin/sh
# cli_bench.sh QILIN FIXTURES — `qilin bench` end to end, tiny sizes:
#   - stories260K (a real checkpoint) and a 2-layer random-weight DeepSeek-V3 FP8 (tests/fixtures/
#     models/deepseek_v3_fp8's config): the markdown table has one row per --batch size with the
#     asked prompt/gen, the --json file parses and holds the device, formats, commit, flags and, per
#     batch, positive prefill/decode tokens/s and ms per token; the emulator's timings are flagged
#     as not a GPU's (timings_meaningful false) and a real GPU's are not; each batch carries the
#     roofline prediction (host/predict.h) of the GPU the device is, or emulates;
#   - dry-run (QILIN_SIM_DRY_RUN=1, sim only): every step still runs and the table and JSON say the
#     timings are meaningless;
#   - careless input is refused before anything loads, naming the flag and the value, and leaves
#     no --json file behind.
set -u
qilin=$1 fixtures=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export QILIN_SIM_DEVICES=1
failures=0
fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
small="--prompt 8 --gen 2 --repeat 1 --warmup 0"

# check_json FILE BATCHES EXPECT_PY: the JSON's common fields, one result per batch, and EXPECT_PY
# (a Python expression over `d`) true.
check_json() {
    python3 - "$1" "$2" "$3" <<'EOF' || fail "JSON $1: see above"
import json, sys
path, batches, expect = sys.argv[1], [int(b) for b in sys.argv[2].split(",")], sys.argv[3]
d = json.load(open(path))
for key in ("command", "model", "device", "dtype", "weight_format", "commit", "flags", "prompt", "gen",
            "repeat", "tp", "timings_meaningful", "timing_note", "params_total", "weight_bytes", "results"):
    assert key in d, f"no '{key}' in {sorted(d)}"
assert d["command"] == "qilin bench" and d["commit"], d
assert d["device"]["name"] and d["timings_meaningful"] == (not d["device"]["emulator"]), d["device"]
assert d["prompt"] == 8 and d["gen"] == 2 and d["params_total"] > 0, d
assert [r["batch"] for r in d["results"]] == batches, d["results"]
for r in d["results"]:  # every prompt token prefilled once, in full steps of `chunk` but the last
    assert r["prefill_tokens"] == r["batch"] * d["prompt"], r
    assert r["prefill_steps"] == -(-r["prefill_tokens"] // d["chunk"]), (r, d["chunk"])
for r in d["results"]:
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "ms_per_token", "prefill_s", "decode_s"):
        assert r[k]["mean"] >= 0 and r[k]["sd"] >= 0, (k, r)
    if d["timing_note"] == "" or "emulator" in d["timing_note"]:  # kernels ran: real (if slow) times
        assert r["prefill_tokens_per_s"]["mean"] > 0 and r["ms_per_token"]["mean"] > 0, r
known = any(g in d["device"]["name"] for g in ("H100", "H200", "A100"))  # the sim emulates an H100
for r in d["results"]:  # the roofline beside each measurement: the decode step at prompt + gen/2
    roof = r["roofline"]
    assert (roof is not None) == known, (d["device"]["name"], roof)
    if roof:
        assert roof["decode_tokens_per_s"] > 0 and roof["prefill_tokens_per_s"] > 0, roof
        assert roof["decode_context"] == d["prompt"] + d["gen"] // 2 and roof["decode_bytes_per_gpu"] > 0, roof
        assert roof["decode_bound"] in ("memory", "math"), roof
assert eval("(" + expect + ")"), f"{expect}: {d}"
print(f"{path}: {len(d['results'])} results, {d['weight_format']}, {d['device']['name']}: ok")
EOF
}

# check_table OUT BATCHES: the header row, then one row per batch size with prompt 8 and gen 2.
check_table() {
    grep -q '^| batch | prompt | gen | prefill tok/s | decode tok/s | ms/token |' "$1" || fail "$1: no table header"
    rows=$(grep -E '^\| [0-9]+ \| 8 \| 2 \| ' "$1" | cut -d'|' -f2 | tr -d ' ' | paste -sd, -)
    [ "$rows" = "$2" ] || fail "$1: table rows for batches '$rows', wanted '$2'"
}

if "$qilin" bench --model "$fixtures/stories260K" $small --batch 1,2 --json "$dir/s.json" >"$dir/s.out" 2>"$dir/s.err"; then
    cat "$dir/s.out"
    check_table "$dir/s.out" 1,2
    check_json "$dir/s.json" 1,2 'd["weight_format"] == "unquantized" and not d["random_weights"] and d["layers"] == 5'
    grep -q "batch 2, run 1/1: prefill 2 x 8 tokens" "$dir/s.err" || fail "no progress on stderr: $(cat "$dir/s.err")"
else
    cat "$dir/s.err"
    grep -q QILIN_ERR_NO_DEVICE "$dir/s.err" && exit 0 # the cuda build without a GPU: ctest skips
    fail "stories260K bench failed"
fi

# --chunk 5: prompts split across steps and sharing them (2 x 8 tokens: 5 | 3 + 2 | 5 | 1)
"$qilin" bench --model "$fixtures/deepseek_v3_fp8" --random-weights --weights-seed 3 --layers 2 $small --batch 2,1 \
    --chunk 5 --json "$dir/d.json" >"$dir/d.out" 2>"$dir/d.err" || fail "DeepSeek-V3 bench: $(cat "$dir/d.err")"
cat "$dir/d.out"
check_table "$dir/d.out" 2,1
check_json "$dir/d.json" 2,1 'd["weight_format"].startswith("fp8") and d["random_weights"] and d["weights_seed"] == 3
    and d["layers"] == 2 and d["chunk"] == 5
    and [(r["prefill_steps"], r["prefill_tokens"]) for r in d["results"]] == [(4, 16), (2, 8)]'

if grep -q "CPU emulator" "$dir/s.out"; then
    QILIN_SIM_DRY_RUN=1 "$qilin" bench --model "$fixtures/deepseek_v3_fp8" --random-weights $small --batch 4 \
        --json "$dir/dry.json" >"$dir/dry.out" 2>"$dir/dry.err" || fail "dry-run bench: $(cat "$dir/dry.err")"
    grep -q "^NOTE: timings are meaningless: dry-run" "$dir/dry.out" || fail "dry-run table has no NOTE: $(cat "$dir/dry.out")"
    check_table "$dir/dry.out" 4
    check_json "$dir/dry.json" 4 '"meaningless" in d["timing_note"] and d["layers"] == 3'
fi

# expect REGEX ARGS...: bench must exit 2 (bad flags) or 1 (the model), saying REGEX, writing no JSON.
expect() {
    regex=$1
    shift
    rm -f "$dir/x.json"
    "$qilin" bench --json "$dir/x.json" "$@" >"$dir/out" 2>&1 && { fail "bench $* succeeded"; return; }
    grep -Eq -- "$regex" "$dir/out" || fail "bench $*: wanted /$regex/, got: $(head -3 "$dir/out")"
    [ ! -e "$dir/x.json" ] || fail "bench $*: left $dir/x.json behind"
}
m="--model $fixtures/stories260K"
expect "$dir/none: no such file or directory" --model "$dir/none"
expect "--model DIR is required" --batch 1
expect "--batch 0: '0' is not a batch size \(a whole number from 1 to 4096\)" $m --batch 0
expect "--batch 1,,2: '' is not a batch size" $m --batch 1,,2
expect "--batch 8,: '' is not a batch size" $m --batch 8,
expect "--batch 1,x7: 'x7' is not a batch size" $m --batch 1,x7
expect "--batch -3: '-3' is not a batch size" $m --batch -3
expect "--batch 1e3: '1e3' is not a batch size" $m --batch 1e3
expect "--batch 5000: '5000' is not a batch size" $m --batch 5000
expect "--prompt 0: must be from 1" $m --prompt 0
expect "--gen 2.5: " $m --gen 2.5
expect "--repeat 0: must be from 1" $m --repeat 0
expect "--layers 0: must be from 1" $m --layers 0
expect "unknown flag --batches" $m --batches 1
expect "--tp needs a value" $m --tp
expect "--prompt 500 \+ --gen 128 = 628 positions.*max_position_embeddings of 512" $m --prompt 500
expect "at most 32 batch sizes" $m --batch "$(seq -s, 1 33)"
mkdir "$dir/adir"
"$qilin" bench $m --json "$dir/adir" >"$dir/out" 2>&1 && fail "--json DIRECTORY succeeded"
grep -q -- "--json $dir/adir: cannot open for writing" "$dir/out" || fail "--json DIRECTORY: $(head -3 "$dir/out")"
[ $failures = 0 ] && echo "cli_bench: all cases passed"
exit $((failures > 0))
