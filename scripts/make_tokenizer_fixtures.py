"""Writes the reference data qilin's tokenizer tests compare against.

Run from anywhere (by hand; CI never runs it, it only reads what it wrote):

    scripts/fetch_test_data.sh                 # DeepSeek-V3 tokenizer.json (optional)
    python3 scripts/make_tokenizer_fixtures.py

It makes, under tests/fixtures/tokenizers/:

* corpus.jsonl: one JSON string per line, the text samples (tokenizer_corpus.py);
* <name>/expected.jsonl: line i is the JSON array of ids the reference gives
  for corpus line i, without BOS/EOS, with special/added tokens in the text
  parsed (tokenizer_refs.py says what "the reference" is for each name);
* <name>/meta.json: reference and version, input files, a BOS case
  ("Hello world" encoded the way the model's tokenizer adds specials), and
  whether decode(encode(x)) == x held on every corpus line (decode_equals_input;
  the lines where it did not are in decode_mismatch_lines);
* trained_*/tokenizer.json: small BPE tokenizers trained here on the corpus
  with the `tokenizers` library, one per pipeline variant qilin must support;
* models/stories260K/tokenizer.json + tokenizer_config.json: the embedded
  default model's SentencePiece tok512.model converted by transformers (its
  expected ids are in tests/fixtures/tokenizers/stories260K/);
* gguf/stories260K-vocab.gguf: a vocab-only GGUF of the same tokenizer, when
  the `gguf` package is installed (make_gguf_fixture.py).

Before writing anything it checks the references against the third-party
vectors in testvectors/ (kitoken, llama.cpp, hand-picked), so a wrong split
pattern or special-token table fails here rather than in the C tests.
Deterministic: rerunning with the same package versions rewrites the same bytes.
"""

import collections
import importlib.util
import json
import os
import re
import sys
import unicodedata

# One thread for the Rust libraries: training and encoding must not depend on
# scheduling. Set before tokenizers is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tokenizer_refs as refs  # noqa: E402
from tokenizer_corpus import build_corpus, kitoken_unescape  # noqa: E402

FIXTURES = refs.FIXTURES
REPO_ROOT = refs.REPO_ROOT
STORIES_DIR = os.path.join(REPO_ROOT, "models", "stories260K")
TRAINED_VOCAB = 3000
BOS_TEXT = "Hello world"


# ---------------------------------------------------------------- output helpers

def repo_relative(path):
    return os.path.relpath(path, REPO_ROOT)


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def json_line(value):
    """One JSON value on one line: UTF-8, compact, and with the characters that
    some readers treat as line breaks (U+0085, U+2028, U+2029) escaped, so that
    splitting the file on "\\n" is always right."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for ch in ("\u0085", "\u2028", "\u2029"):
        text = text.replace(ch, "\\u%04x" % ord(ch))
    return text


def write_jsonl(path, values):
    write_text(path, "".join(json_line(v) + "\n" for v in values))


def write_json(path, value):
    write_text(path, json.dumps(value, ensure_ascii=False, indent=1) + "\n")


def read_corpus():
    with open(os.path.join(FIXTURES, "corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().split("\n") if line]


# ---------------------------------------------------------------- trained tokenizers

def train(tok, trainer, corpus, name):
    tok.train_from_iterator(corpus, trainer=trainer)
    path = os.path.join(FIXTURES, name, "tokenizer.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(path, pretty=False)
    return path


def train_bytelevel(corpus):
    """(a) GPT-2 style: ByteLevel pre-tokenizer (GPT-2 regex) and decoder, and
    special tokens matched in text before BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB, show_progress=False,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return train(tok, trainer, corpus, "trained_bytelevel")


def train_bytelevel_prefix(corpus):
    """(a') byte-level with add_prefix_space (RoBERTa/GPT-2 option) and added
    tokens with lstrip/rstrip/single_word, which eat or require the spaces
    around them."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB, show_progress=False,
        special_tokens=["<s>", "</s>", AddedToken("<mask>", lstrip=True, special=True)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken("[SEP]", rstrip=True, special=False),
                    AddedToken("cat", single_word=True, special=False)])
    path = os.path.join(FIXTURES, "trained_bytelevel_prefix", "tokenizer.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(path, pretty=False)
    return path


def latin_and_han(text):
    """text without the characters outside Latin-1/Latin Extended-A and the
    CJK Unified Ideographs block."""
    return "".join(ch for ch in text if ord(ch) < 0x180 or 0x4E00 <= ord(ch) <= 0x9FFF)


def train_spbpe(corpus):
    """(b) SentencePiece-style BPE as Llama 2's tokenizer.json has it: the
    normalizer prepends "▁" and turns spaces into "▁", byte_fallback with
    <0x00>..<0xFF> in the vocabulary, <unk>, and a post-processor adding <s>.
    It is trained on Latin and Han text only, so every other character (Arabic,
    kana, emoji, ...) is outside the vocabulary and takes the byte fallback.
    (The trainer's limit_alphabet would do that too, but it breaks frequency
    ties in hash order: the result would change from run to run.)"""
    from tokenizers import (Tokenizer, decoders, models, normalizers, processors,
                            trainers)
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB, show_progress=False,
        special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens)
    tok.train_from_iterator([latin_and_han(s) for s in corpus], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    # The trainer made the byte tokens added tokens; in a SentencePiece vocab
    # they are ordinary pieces (text "<0x41>" is not the byte 0x41), so keep
    # them in the model's vocab only.
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    path = os.path.join(FIXTURES, "trained_spbpe", "tokenizer.json")
    write_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return path


def train_bytelevel_digits(corpus):
    """(c) the modern pipeline: NFC, Sequence[Split(regex, Isolated),
    Digits(individual), ByteLevel(use_regex=false)], BPE with ignore_merges
    (a whole pre-token found in the vocabulary is taken as is)."""
    from tokenizers import (Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, trainers)
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(refs.LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB, show_progress=False,
        special_tokens=["<|endoftext|>", "<think>", "</think>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return train(tok, trainer, corpus, "trained_bytelevel_digits")


TRAINERS = {
    "trained_bytelevel": train_bytelevel,
    "trained_bytelevel_prefix": train_bytelevel_prefix,
    "trained_spbpe": train_spbpe,
    "trained_bytelevel_digits": train_bytelevel_digits,
}


# ---------------------------------------------------------------- stories260K

def convert_stories260k():
    """tok512.model -> tokenizer.json with transformers' SentencePiece
    converter (LlamaTokenizerFast, legacy=True, add_bos_token=True: what
    llama2.c and Llama 2 do). Writes models/stories260K/tokenizer.json and
    tokenizer_config.json and returns the backend tokenizers.Tokenizer."""
    import tempfile
    from transformers import LlamaTokenizerFast
    # transformers 5 sends a file named tokenizer.model to its tiktoken reader,
    # so the conversion starts from the .model path directly.
    kwargs = LlamaTokenizerFast.convert_to_native_format(
        vocab_file=os.path.join(STORIES_DIR, "tok512.model"), legacy=True,
        add_bos_token=True, add_eos_token=False,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    hf = LlamaTokenizerFast(**kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    config.update({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "add_bos_token": True, "add_eos_token": False})
    config.pop("vocab_file", None)
    hf._tokenizer.save(os.path.join(STORIES_DIR, "tokenizer.json"), pretty=True)
    write_json(os.path.join(STORIES_DIR, "tokenizer_config.json"), config)
    check_stories_greedy(hf._tokenizer)
    return hf._tokenizer


def shared_data_dir():
    """The team's ../shared/data (PROVENANCE.md there), or $QILIN_SHARED_DATA."""
    candidates = [os.environ.get("QILIN_SHARED_DATA"),
                  os.path.join(REPO_ROOT, "..", "shared", "data"),
                  os.path.join(REPO_ROOT, "..", "..", "shared", "data"),
                  "/work/shared/data"]
    for path in candidates:
        if path and os.path.isdir(path):
            return path
    return None


def check_stories_greedy(tok):
    """The model's known greedy ids (llama2.c's sample) must decode to the
    known story text, both from shared/data's expected_greedy.json."""
    shared = shared_data_dir()
    path = shared and os.path.join(shared, "weights", "stories260K", "expected_greedy.json")
    if not path or not os.path.exists(path):
        print("stories260K: shared/data expected_greedy.json not found, decode check skipped")
        return
    with open(path, encoding="utf-8") as f:
        greedy = json.load(f)
    text = tok.decode(greedy["generated_ids"])
    assert text == greedy["text"], "stories260K greedy ids do not decode to the story"
    print(f"stories260K: the {len(greedy['generated_ids'])} greedy ids decode to the story text")


# ---------------------------------------------------------------- reference checks

def ids_of(line):
    return [int(x) for x in line.replace("[", "").replace("]", "").split(",") if x.strip()]


def check_kitoken(ref, kitoken_name, skip=()):
    """kitoken's small/mixed/utf8 vectors; returns the failing (file, line)s."""
    kit = os.path.join(FIXTURES, "testvectors", "kitoken")
    bad = []
    for kind in ("small", "mixed"):
        with open(os.path.join(kit, f"{kind}_input.txt"), encoding="utf-8") as f:
            inputs = f.read().split("\n")
        with open(os.path.join(kit, f"{kind}_tokens_{kitoken_name}.txt"), encoding="utf-8") as f:
            expected = f.read().split("\n")
        for i, (text, ids) in enumerate(zip(inputs, expected)):
            if (kind, i) not in skip and ref.encode(kitoken_unescape(text)) != ids_of(ids):
                bad.append((kind, i))
    with open(os.path.join(kit, "utf8_input.txt"), encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(kit, f"utf8_tokens_{kitoken_name}.txt"), encoding="utf-8") as f:
        if ref.encode(text) != ids_of(f.read()):
            bad.append(("utf8", 0))
    return bad


def check_llamacpp(ref, vocab_name):
    base = os.path.join(FIXTURES, "testvectors", "llama.cpp", f"ggml-vocab-{vocab_name}.gguf")
    sep = "\n__ggml_vocab_test__\n"
    with open(base + ".inp", encoding="utf-8") as f:
        inputs = f.read().split(sep)
    with open(base + ".out", encoding="utf-8") as f:
        outputs = f.read().split("\n")  # one line of ids per case
    if inputs[-1] == "" and outputs[-1] == "":  # both files end with a separator
        inputs, outputs = inputs[:-1], outputs[:-1]
    bad = [i for i, (t, o) in enumerate(zip(inputs, outputs))
           if ref.encode(t) != [int(x) for x in o.split()]]
    return bad, min(len(inputs), len(outputs))


def check_handpicked(ref, name):
    """Hand-picked cases with a "text" (chat-level cases are the chat tests'
    business); "bos"/"add_bos" and "eos" say whether ids has BOS/EOS around
    the text's ids."""
    with open(os.path.join(FIXTURES, "testvectors", name), encoding="utf-8") as f:
        cases = [c for c in json.load(f)["cases"] if "text" in c]
    bad = []
    for i, case in enumerate(cases):
        ids = case["ids"]
        front = 1 if case.get("bos") or case.get("add_bos") else 0
        back = 1 if case.get("eos") else 0
        ok = ref.encode(case["text"]) == ids[front:len(ids) - back]
        if front:
            ok = ok and ids[0] == ref.encode_with_special("x")[0]
        if not ok:
            bad.append(i)
    return bad, len(cases)


def verify_references(built):
    """Every reference against the third-party vectors it has; raises on a miss."""
    # Kimi: kitoken's Kimi table has no [PAD] special, so small line 17
    # ("<s>[PAD]</s>") differs where tiktoken with allowed_special="all"
    # gives [PAD] its id 163839, as Moonshot's tokenizer does.
    kimi_skip = {("small", 17)}
    checks = {
        "kimi_k2": lambda r: check_kitoken(r, "kimi_k2", kimi_skip),
        "llama3": lambda r: check_kitoken(r, "llama33"),
        "gpt_neox_20b": lambda r: check_kitoken(r, "gpt_neox"),
        "mistral_7b": lambda r: check_kitoken(r, "mistral01"),
        "deepseek_v3": lambda r: check_kitoken(r, "r1"),
    }
    failures = []
    for name, check in checks.items():
        if name in built:
            bad = check(built[name])
            print(f"check {name} vs kitoken vectors: {'ok' if not bad else bad}")
            failures += [(name, b) for b in bad]
    for name, vocab in (("qwen2", "qwen2"), ("llama3", "llama-bpe")):
        bad, n = check_llamacpp(built[name], vocab)
        print(f"check {name} vs llama.cpp {vocab} ({n} cases): {'ok' if not bad else bad}")
        failures += [(name, b) for b in bad]
    for name, file in (("llama3", "llama3_handpicked.json"),
                       ("deepseek_v3", "deepseek_v3_handpicked.json")):
        if name in built:
            bad, n = check_handpicked(built[name], file)
            print(f"check {name} vs {file} ({n} cases): {'ok' if not bad else bad}")
            failures += [(name, b) for b in bad]
    if failures:
        raise SystemExit(f"reference check failed: {failures}")


def check_kimi_lookahead(corpus):
    """KIMI_PATTERN_LOOKAHEAD (no `&&`) must split exactly as KIMI_PATTERN."""
    a = refs.kimi_k2(refs.KIMI_PATTERN)
    b = refs.kimi_k2(refs.KIMI_PATTERN_LOOKAHEAD)
    bad = [i for i, s in enumerate(corpus) if a.encode(s) != b.encode(s)]
    bad_vectors = check_kitoken(b, "kimi_k2", {("small", 17)})
    if bad or bad_vectors:
        raise SystemExit(f"Kimi look-ahead pattern differs: corpus lines {bad}, vectors {bad_vectors}")
    print(f"check Kimi look-ahead pattern == && pattern on {len(corpus)} corpus lines and kitoken: ok")


# ---------------------------------------------------------------- expected ids

def bos_rule(name):
    return {
        "llama3": "<|begin_of_text|> (128000) first, as Llama 3's tokenizer.json post-processor "
                  "and llama-models encode(bos=True) add it",
        "kimi_k2": "none: Kimi's tokenizer adds no BOS (tokenization_kimi.py encode)",
        "deepseek_v3": "none from tokenizer.json (ByteLevel post-processor); transformers adds "
                       "<｜begin▁of▁sentence｜> (0) only when tokenizer_config add_bos_token is "
                       "true (the HF DeepSeek-V3 config: true; the shipped zip/wheel config: false)",
    }.get(name, "the tokenizer.json post-processor (add_special_tokens=True)")


SP_MARKERS = re.compile(r"(<s>|</s>|<unk>|\[INST\]|\[/INST\]|<mask>|\[SEP\]|cat)")


def mismatch_reason(text, decoded):
    """Why decode(encode(text)) != text, in the cases the corpus shows."""
    if unicodedata.normalize("NFC", text) == decoded:
        return "NFC normaliser changed the input"
    if text.replace("\u2581", " ") == decoded:
        return "input U+2581 (the SentencePiece space marker) decodes as a space"
    if decoded == " " + text:
        return "add_prefix_space: the decoder keeps the added leading space"
    if text.startswith(" ") and decoded == text[1:]:
        return ("leading space lost: Metaspace adds no U+2581 when the text already starts "
                "with a space, and the decoder strips one")

    def loose(x):  # ignore U+2581, leading spaces and spaces around specials
        x = SP_MARKERS.sub(lambda m: "\x00" + m.group(1) + "\x00", x.replace("\u2581", " "))
        return re.sub(r" *\x00 *", "\x00", x).lstrip(" ")
    if loose(text) == loose(decoded):
        return ("spaces around special/added tokens: U+2581 prepended to the text after a "
                "special token, lstrip/rstrip/single_word tokens, or U+2581 in the input")
    return "other"


def write_expected(ref, corpus):
    out_dir = os.path.join(FIXTURES, ref.name)
    ids = [ref.encode(s) for s in corpus]
    reasons = collections.Counter()
    mismatches = []
    for i, (text, t) in enumerate(zip(corpus, ids)):
        decoded = ref.decode(t)
        if decoded != text:
            mismatches.append(i)
            reasons[mismatch_reason(text, decoded)] += 1
    write_text(os.path.join(out_dir, "expected.jsonl"),
               "".join(json.dumps(t, separators=(",", ":")) + "\n" for t in ids))
    files = [f if f.startswith("models/") else repo_relative(os.path.join(FIXTURES, f))
             for f in ref.files]
    meta = {
        "reference": ref.reference,
        "files": files,
        "encode": "no BOS/EOS added; special and added tokens in the text are parsed",
        "bos_case": {"text": BOS_TEXT, "ids_with_special": ref.encode_with_special(BOS_TEXT),
                     "rule": bos_rule(ref.name)},
        "decode_equals_input": not mismatches,
        "decode_mismatch_lines": mismatches,
        "decode_mismatch_reasons": dict(sorted(reasons.items())),
        "corpus_lines": len(corpus),
        "total_ids": sum(len(t) for t in ids),
    }
    write_json(os.path.join(out_dir, "meta.json"), meta)
    size = os.path.getsize(os.path.join(out_dir, "expected.jsonl"))
    print(f"{ref.name:26s} {meta['total_ids']:7d} ids  expected.jsonl {size // 1024:4d} KiB"
          f"  decode==input on {len(corpus) - len(mismatches)}/{len(corpus)}")


def main():
    import tiktoken
    import tokenizers
    import transformers
    print(f"python {sys.version.split()[0]}, tokenizers {tokenizers.__version__}, "
          f"transformers {transformers.__version__}, tiktoken {tiktoken.__version__}")

    corpus = build_corpus()
    write_jsonl(os.path.join(FIXTURES, "corpus.jsonl"), corpus)
    assert read_corpus() == corpus, "corpus.jsonl does not read back"
    size = os.path.getsize(os.path.join(FIXTURES, "corpus.jsonl"))
    print(f"corpus.jsonl: {len(corpus)} lines, {size // 1024} KiB")

    built = {name: make() for name, make in refs.REAL.items()
             if name != "deepseek_v3" or refs.deepseek_available()}
    if "deepseek_v3" not in built:
        print("deepseek_v3: tokenizer.json not fetched (scripts/fetch_test_data.sh), skipped")
    verify_references(built)
    check_kimi_lookahead(corpus)

    for name, trainer in TRAINERS.items():
        trainer(corpus)
        built[name] = refs.trained(name)

    stories = convert_stories260k()
    built["stories260K"] = refs.from_hf_tokenizer(
        "stories260K", stories,
        ["models/stories260K/tokenizer.json", "models/stories260K/tokenizer_config.json"])

    for ref in built.values():
        write_expected(ref, corpus)

    if importlib.util.find_spec("gguf") is not None:
        import make_gguf_fixture
        make_gguf_fixture.main()
    else:
        print("gguf package not installed: gguf/stories260K-vocab.gguf not rewritten")


if __name__ == "__main__":
    main()
