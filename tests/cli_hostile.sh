#!/bin/sh
# cli_hostile.sh QILIN STORIES — the `qilin` command given careless and
# hostile arguments (issue 12). Every case checks BOTH the exit status and the
# message: a refusal must exit non-zero and say what was wrong; nothing may be
# silently coerced, lost or run anyway. Most cases stop at argument parsing;
# the few that run the model keep -n tiny (the sim build runs it on the CPU
# emulator).
set -u
qilin=$1 stories=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0 cases=0

# expect RC REGEX -- CMD ARGS...: runs the command, checks its exit status is
# RC ("nonzero" for any failure) and that its stdout + stderr match REGEX
# (grep -E, over the whole output).
expect() {
    want_rc=$1 regex=$2
    shift 3
    cases=$((cases + 1))
    "$@" >"$dir/out" 2>&1
    rc=$?
    ok=1
    if [ "$want_rc" = nonzero ]; then [ "$rc" -ne 0 ] || ok=0; else [ "$rc" -eq "$want_rc" ] || ok=0; fi
    grep -Eq -- "$regex" "$dir/out" || ok=0
    if [ $ok = 0 ]; then
        failures=$((failures + 1))
        echo "FAIL: $* -> exit $rc (want $want_rc), output:"
        sed 's/^/    /' "$dir/out" | head -20
        echo "    (wanted /$regex/)"
    fi
}

# ---- numeric flags: typed, range-checked, never coerced ----
for bad in "-n -5|-n -5: must be from 1 to" "-n nan|-n nan: not a whole number" \
    "-n 1099511627776|-n 1099511627776: must be from 1 to" "-n 2^40|-n 2\\^40: not a whole number" \
    "--tp 2.5|--tp 2.5: not a whole number" "--max-ctx -1|--max-ctx -1: must be from 1 to" \
    "--seed -1|--seed -1: not a whole number" "-n 5x|-n 5x: not a whole number"; do
    args=${bad%%|*} regex=${bad#*|}
    # shellcheck disable=SC2086 # args is a flag and its value
    expect 2 "qilin run: $regex" -- "$qilin" run --model "$stories" -p hi $args
done
expect 2 "qilin logits: --tp 2.5: not a whole number" -- "$qilin" logits --model "$stories" --ids 1 --out "$dir/l" --tp 2.5
expect 2 "qilin run: --nodes 0: must be from 1" -- "$qilin" run --model "$stories" -p hi --nodes 0
expect 2 "qilin plan: --max-batch-tokens 1.5: not a whole number" -- "$qilin" plan "$stories" --gpu-mem 80GiB --max-batch-tokens 1.5
expect 2 "qilin plan: --util nan: not a finite number" -- "$qilin" plan "$stories" --gpu-mem 80GiB --util nan

# ---- sampling parameters: one check (qilin_sampling_params_check), named flag ----
for bad in "--temperature nan|not a finite number" "--temperature -1|temperature must be finite and >= 0" \
    "--temperature inf|not a finite number" "--temperature 1e39|must be from" "--top-p 0|top_p must be in \\(0, 1\\]" \
    "--top-p 1.5|top_p must be in" "--top-k -1|top_k must be >= 0" "--min-p 1.5|min_p must be in \\[0, 1\\]" \
    "--min-p -0.1|min_p must be in" "--repetition-penalty 0|repetition_penalty must be finite and > 0" \
    "--repetition-penalty nan|not a finite number"; do
    args=${bad%%|*} regex=${bad#*|}
    # shellcheck disable=SC2086
    expect 2 "qilin run: $args: $regex" -- "$qilin" run --model "$stories" -p hi $args
done
# ... and from generation_config.json (do_sample: its values are used, so checked)
mkdir "$dir/model"
abs=$(cd "$stories" && pwd)
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do ln -s "$abs/$f" "$dir/model/$f"; done
printf '{"do_sample": true, "temperature": 0.7, "top_p": 1.5}' >"$dir/model/generation_config.json"
expect 1 "generation_config.json of .*: sampling params: top_p must be in \\(0, 1\\]" -- "$qilin" run --model "$dir/model" -p hi -n 1
# max_new_tokens is the default -n (here 3), and -n still wins
printf '{"max_new_tokens": 3}' >"$dir/model/generation_config.json"
expect 0 "generation 3 tokens" -- "$qilin" run --model "$dir/model" -p "Once upon a time" --ignore-eos
expect 0 "^261,378\$" -- "$qilin" run --model "$dir/model" --ids 1,403,407 -n 2

# ---- context: never past max_position_embeddings (512 for stories260K) ----
expect 1 "a context of 10000000 tokens exceeds the model's max_position_embeddings of 512" -- \
    "$qilin" run --model "$stories" -p hi -n 2 --max-ctx 10000000
long=$(awk 'BEGIN { for (i = 0; i < 300; i++) printf "the cat sat. " }')
expect 1 "the prompt has [0-9]+ tokens; the context holds 512" -- "$qilin" run --model "$stories" -p "$long" -n 2
ids=$(awk 'BEGIN { for (i = 0; i < 600; i++) printf "%s1", i ? "," : "" }')
expect 1 "--ids: 600 tokens \\+ -n 1 exceed the context of 512 tokens" -- \
    "$qilin" run --model "$stories" --ids "$ids" -n 1
expect 1 "--ids: 3 tokens \\+ -n 2147483647 exceed the context of 512 tokens" -- \
    "$qilin" run --model "$stories" --ids 1,403,407 -n 2147483647
expect 1 "exceeds the model's max_position_embeddings of 512" -- "$qilin" logits --model "$stories" --ids "$ids" --out "$dir/l"
expect 0 "-n 2147483647 capped to 2: the context holds 7 tokens" -- \
    "$qilin" run --model "$stories" -p "Once upon a time" -n 2147483647 --max-ctx 7

# ---- sizes: cli_bytes refuses what does not fit ----
expect 2 "qilin plan: --reserve 1e30: too large" -- "$qilin" plan "$stories" --gpu-mem 80GiB --reserve 1e30
expect 2 "qilin plan: --gpu-mem 1e30: too large" -- "$qilin" plan "$stories" --gpu-mem 1e30
expect 2 "qilin plan: --gpu-mem -1GiB: must be at least 1 bytes" -- "$qilin" plan "$stories" --gpu-mem -1GiB
expect 2 "qilin plan: --gpu-mem 80XB: not a size" -- "$qilin" plan "$stories" --gpu-mem 80XB
expect 0 "on 1 x 74.5 GiB" -- "$qilin" plan "$stories" --gpu-mem 80GB

# ---- messages ----
for cmd in run logits tokenize; do
    expect 2 "qilin $cmd: unknown flag --promt \\(qilin $cmd --help lists the flags\\)" -- \
        "$qilin" $cmd --model "$stories" --promt hi
done
for cmd in plan inspect; do
    expect 2 "qilin $cmd: unknown flag --promt \\(qilin $cmd --help lists the flags\\)" -- "$qilin" $cmd "$stories" --promt
done
expect 2 "qilin run: unknown flag --promt" -- "$qilin" run --model "$stories" --promt
for cmd in run logits tokenize plan inspect devices demo; do
    cases=$((cases + 1))
    "$qilin" $cmd --help >"$dir/help" 2>"$dir/err" && "$qilin" $cmd -h >"$dir/h" 2>>"$dir/err"
    if [ $? -ne 0 ] || ! grep -q "^usage: qilin $cmd" "$dir/help" || ! cmp -s "$dir/help" "$dir/h" || [ -s "$dir/err" ]; then
        failures=$((failures + 1))
        echo "FAIL: qilin $cmd --help: want its usage on stdout, exit 0"
        cat "$dir/help" "$dir/err"
    fi
done
expect 0 "usage: qilin COMMAND" -- "$qilin" --help
expect 2 "qilin: unknown command 'frobnicate'" -- "$qilin" frobnicate
expect 1 "coordinator '127.0.0.1:99999' is not HOST:PORT \\(PORT 1..65535\\)" -- \
    "$qilin" run --model "$stories" --tp 2 --nodes 2 --node-rank 1 --coordinator 127.0.0.1:99999

# ---- output that cannot be written is an error, not exit 0 ----
if [ -w /dev/full ]; then
    expect 1 "qilin run: writing stdout: No space left on device" -- sh -c "'$qilin' run --model '$stories' -p hi -n 2 >/dev/full"
    expect 1 "qilin run: writing stdout: No space left on device" -- sh -c "'$qilin' run --model '$stories' --ids 1 -n 1 >/dev/full"
    expect 1 "qilin tokenize: writing stdout: No space left on device" -- sh -c "'$qilin' tokenize --model '$stories' --text hi >/dev/full"
    expect 1 "qilin inspect: writing stdout: No space left on device" -- sh -c "'$qilin' inspect '$stories' >/dev/full"
    expect 2 "qilin plan: writing stdout: No space left on device" -- sh -c "'$qilin' plan '$stories' --gpu-mem 80GiB >/dev/full"
    expect 1 "qilin logits: writing /dev/full: No space left on device" -- "$qilin" logits --model "$stories" --ids 1 --out /dev/full
fi

# ---- streamed text = tokenize --decode of prompt + generated ids ----
for prompt in "Once upon" " Lily saw" "héllo 你好"; do
    cases=$((cases + 1))
    text=$("$qilin" run --model "$stories" -p "$prompt" -n 4 --ignore-eos 2>/dev/null; echo x)
    prompt_ids=$("$qilin" tokenize --model "$stories" --text "$prompt" | tr ' ' ',')
    new_ids=$("$qilin" run --model "$stories" --ids "$prompt_ids" -n 4 2>/dev/null)
    decoded=$(echo "$prompt_ids,$new_ids" | "$qilin" tokenize --model "$stories" --decode --skip-special; echo x)
    if [ "$text" != "$decoded" ]; then
        failures=$((failures + 1))
        echo "FAIL: run -p '$prompt' printed '${text%x}', tokenize --decode of its ids reads '${decoded%x}'"
    fi
done

echo "cli_hostile: $cases cases, $failures failed"
[ "$failures" -eq 0 ]
