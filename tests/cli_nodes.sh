#!/bin/sh
# cli_nodes.sh QILIN FIXTURES STORIES — the multi-node path with real
# processes on one machine: two `qilin` processes (--nodes 2, one GPU each)
# must write the very logits one process writes with --tp 2 (the sim sums in
# rank order either way), and `qilin run` over two nodes must tell the story
# one GPU tells. Node 1 runs the same command with --node-rank 1 and no prompt.
#
# ctest matches this script's output, not its exit status, so every line it
# matches is printed only after both processes of that check have exited 0
# (the leader's story is held in a file until node 1's status is known).
# The coordinator ports are reserved by tests/reserve_ports.py for the whole
# run (bound, never listening), so no other process can take them first.
set -eu
if [ -z "${QILIN_TEST_PORTS:-}" ]; then
    exec python3 "$(dirname "$0")/reserve_ports.py" 2 sh "$0" "$@"
fi
qilin=$1 fixtures=$2 stories=$3
dir=$(mktemp -d)
follower=
trap 'if [ -n "$follower" ]; then kill $follower 2>/dev/null || true; fi; rm -rf "$dir"' EXIT
set -- $QILIN_TEST_PORTS
port1=$1 port2=$2

# waits for node 1 (pid $follower); fails naming the check when it did not exit 0
wait_follower() {
    rc=0
    wait $follower || rc=$?
    follower=
    if [ "$rc" -ne 0 ]; then
        echo "cli_nodes: node 1 ($1) exited with status $rc" >&2
        exit 1
    fi
}

"$qilin" logits --model "$fixtures/llama" --ids 1,5,7,9 --dtype f32 --tp 2 --out "$dir/one.bin"
# Each process its own GPU (--device): NCCL refuses two ranks on one GPU.
"$qilin" logits --model "$fixtures/llama" --dtype f32 --tp 2 --nodes 2 --node-rank 1 --device 1 \
    --coordinator 127.0.0.1:$port1 --comm-timeout 120 &
follower=$!
"$qilin" logits --model "$fixtures/llama" --ids 1,5,7,9 --dtype f32 --tp 2 --nodes 2 --node-rank 0 --device 0 \
    --comm-timeout 120 --coordinator 127.0.0.1:$port1 --out "$dir/nodes.bin"
wait_follower logits
cmp "$dir/one.bin" "$dir/nodes.bin"
echo "logits over 2 processes: identical to one process with --tp 2"

"$qilin" run --model "$stories" --tp 2 --nodes 2 --node-rank 1 --device 1 --coordinator 127.0.0.1:$port2 &
follower=$!
"$qilin" run --model "$stories" -p "Once upon a time" -n 24 --tp 2 --nodes 2 --node-rank 0 --device 0 \
    --coordinator 127.0.0.1:$port2 >"$dir/story.txt"
wait_follower run
cat "$dir/story.txt"
