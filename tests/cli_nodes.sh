#!/bin/sh
# cli_nodes.sh QILIN FIXTURES STORIES — the multi-node path with real
# processes on one machine: two `qilin` processes (--nodes 2, one GPU each)
# must write the very logits one process writes with --tp 2 (the sim sums in
# rank order either way), and `qilin run` over two nodes must tell the story
# one GPU tells. Node 1 runs the same command with --node-rank 1 and no prompt.
set -eu
qilin=$1 fixtures=$2 stories=$3
dir=$(mktemp -d)
trap 'kill $follower 2>/dev/null || true; rm -rf "$dir"' EXIT
follower=
port=$((20000 + $$ % 20000))

"$qilin" logits --model "$fixtures/llama" --ids 1,5,7,9 --dtype f32 --tp 2 --out "$dir/one.bin"
"$qilin" logits --model "$fixtures/llama" --dtype f32 --tp 2 --nodes 2 --node-rank 1 \
    --coordinator 127.0.0.1:$port &
follower=$!
"$qilin" logits --model "$fixtures/llama" --ids 1,5,7,9 --dtype f32 --tp 2 --nodes 2 --node-rank 0 \
    --coordinator 127.0.0.1:$port --out "$dir/nodes.bin"
wait $follower
cmp "$dir/one.bin" "$dir/nodes.bin"
echo "logits over 2 processes: identical to one process with --tp 2"

port=$((port + 1))
"$qilin" run --model "$stories" --tp 2 --nodes 2 --node-rank 1 --coordinator 127.0.0.1:$port &
follower=$!
"$qilin" run --model "$stories" -p "Once upon a time" -n 24 --tp 2 --nodes 2 --node-rank 0 \
    --coordinator 127.0.0.1:$port
wait $follower
