"""Tokenizer encoding speed of the reference libraries, for comparison with
qilin's tokenizer benchmark on the same text and machine.

The benchmark text (qilin's C benchmark builds the same bytes):
    take the samples of tests/fixtures/tokenizers/corpus.jsonl in file order,
    cycling back to the first after the last, and join them with "\\n"; stop
    after the first sample whose end brings the UTF-8 length to at least
    1,048,576 bytes. No "\\n" follows that last sample. (Samples themselves may
    contain newlines; "line end" in this rule means the end of a sample.)
The script prints the text's byte length and sha256 so the C side can check
that it built the same text.

For each tokenizer (qwen2, llama3, kimi_k2, deepseek_v3 when
scripts/fetch_test_data.sh has fetched it, gpt_neox_20b, mistral_7b) it
encodes the whole text as ONE string, single-threaded, without BOS/EOS and
with special tokens in the text parsed (the same call that made the fixtures:
tokenizers' Tokenizer.encode(text, add_special_tokens=False), tiktoken's
Encoding.encode(text, allowed_special="all"), not the batch APIs), takes the
best of 3 runs, and prints MB/s (MB = 10^6 bytes) and the token count; qilin
must produce the same count.

Usage: python3 bench/bench_tokenizer_hf.py [--repeat N] [name ...]
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time

# Single-threaded Rust: set before tokenizers is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))

import tokenizer_refs as refs  # noqa: E402

TARGET_BYTES = 1 << 20


def benchmark_text():
    """The ~1 MiB text described in the module docstring."""
    path = os.path.join(refs.FIXTURES, "corpus.jsonl")
    with open(path, encoding="utf-8") as f:
        samples = [json.loads(line) for line in f.read().split("\n") if line]
    parts, size, i = [], 0, 0
    while size < TARGET_BYTES:
        sample = samples[i % len(samples)]
        size += len(sample.encode("utf-8")) + (1 if parts else 0)
        parts.append(sample)
        i += 1
    text = "\n".join(parts)
    assert len(text.encode("utf-8")) == size
    return text


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_encode(ref, text, repeat):
    """Best wall time of `repeat` encodes of the whole text, and the ids."""
    best, ids = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        ids = ref.encode(text)
        best = min(best, time.perf_counter() - start)
    return best, ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("names", nargs="*", help="tokenizers to run (default: all)")
    args = parser.parse_args()

    text = benchmark_text()
    data = text.encode("utf-8")
    print(f"text: {len(data)} bytes, {len(text)} characters, "
          f"sha256 {hashlib.sha256(data).hexdigest()}")
    print(f"cpu: {cpu_name()}; single-threaded; best of {args.repeat}")

    import tiktoken
    import tokenizers
    print(f"tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}\n")
    print(f"{'tokenizer':14s} {'reference':18s} {'MB/s':>8s} {'seconds':>8s} {'tokens':>9s}")
    for name, make in refs.REAL.items():
        if args.names and name not in args.names:
            continue
        if name == "deepseek_v3" and not refs.deepseek_available():
            print(f"{name:14s} (not fetched: run scripts/fetch_test_data.sh)")
            continue
        ref = make()
        seconds, ids = time_encode(ref, text, args.repeat)
        print(f"{name:14s} {ref.reference:18s} {len(data) / seconds / 1e6:8.2f} "
              f"{seconds:8.3f} {len(ids):9d}")


if __name__ == "__main__":
    main()
