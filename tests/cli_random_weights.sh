#!/bin/sh
# cli_random_weights.sh QILIN FIXTURES — `qilin run/logits --random-weights` on a directory
# holding only a tiny config.json (tests/fixtures/models/qwen3's; no weights, no tokenizer):
# the same --weights-seed gives the same ids, another seed other ids; --layers keeps fewer
# layers; careless input (no/malformed config, --layers 0 or past n_layers, -p without a
# tokenizer) is refused with a message naming it.
set -u
qilin=$1 fixtures=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
mkdir "$dir/m" "$dir/empty" "$dir/bad"
cp "$fixtures/qwen3/config.json" "$dir/m/config.json"
printf '{"architectures": ["Qwen3ForCausalLM"], ' >"$dir/bad/config.json"
export QILIN_SIM_DEVICES=1

fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
ids() { "$qilin" run --model "$dir/m" --random-weights --ids 1,2,3 -n 6 "$@" 2>"$dir/err"; }

a=$(ids --weights-seed 7) || fail "seed 7: $(cat "$dir/err")"
b=$(ids --weights-seed 7) || fail "seed 7 again: $(cat "$dir/err")"
c=$(ids --weights-seed 8) || fail "seed 8: $(cat "$dir/err")"
d=$(ids --weights-seed 7 --layers 1) || fail "--layers 1: $(cat "$dir/err")"
echo "seed 7: $a; again: $b; seed 8: $c; seed 7, 1 layer: $d"
[ -n "$a" ] && [ "$a" = "$b" ] || fail "seed 7 twice gave '$a' and '$b'"
[ "$a" != "$c" ] || fail "seeds 7 and 8 both gave '$a'"
[ "$a" != "$d" ] || fail "--layers 1 gave the 2-layer ids '$a'"
"$qilin" logits --model "$dir/m" --random-weights --ids 1,2 --out "$dir/l.f32" 2>"$dir/err" || fail "logits: $(cat "$dir/err")"
[ "$(wc -c <"$dir/l.f32")" -gt 0 ] || fail "logits wrote nothing"

# expect REGEX CMD...: must fail, saying REGEX
expect() {
    regex=$1
    shift
    if "$@" >"$dir/out" 2>&1; then fail "$* succeeded"; return; fi
    grep -Eq -- "$regex" "$dir/out" || fail "$*: wanted /$regex/, got: $(head -3 "$dir/out")"
}
expect "no config.json" "$qilin" run --model "$dir/empty" --random-weights --ids 1
expect "config.json: invalid JSON" "$qilin" run --model "$dir/bad" --random-weights --ids 1
expect "--layers 0: must be from 1" "$qilin" run --model "$dir/m" --random-weights --ids 1 --layers 0
expect "cannot keep 3 layers: the model has 2" "$qilin" run --model "$dir/m" --random-weights --ids 1 --layers 3
expect "cannot keep 3 layers: the model has 2" "$qilin" logits --model "$dir/m" --random-weights --ids 1 --out "$dir/x" --layers 3
expect "without a tokenizer .* use --ids" "$qilin" run --model "$dir/m" --random-weights -p hello
expect "--weights-seed" "$qilin" run --model "$dir/m" --random-weights --ids 1 --weights-seed -1
[ $failures = 0 ] && echo "cli_random_weights: all cases passed"
exit $((failures > 0))
