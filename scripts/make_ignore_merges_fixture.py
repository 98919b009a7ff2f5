#!/usr/bin/env python3
"""A byte-level BPE tokenizer.json where `ignore_merges: true` changes the ids, and its vectors.

Llama-3's tokenizer.json sets model.ignore_merges = true: a pre-tokenized word that is itself in the
vocabulary becomes that one token, whatever the merges would make of it. Llama-3's own file (9 MB) is
not in the repository, and the committed ignore_merges fixture (trained_bytelevel_digits) never meets a
word whose merges disagree with its vocabulary entry. This script takes trained_bytelevel's
tokenizer.json, appends whole words to the vocabulary that its merges cannot build (so the merges
split them into several tokens), sets ignore_merges true, and writes:

  tests/fixtures/tokenizers/trained_bytelevel_ignore_merges/tokenizer.json
  tests/fixtures/tokenizers/testvectors/ignore_merges.json   texts, HF tokenizers' ids, and the ids
                                                             the same file gives with ignore_merges
                                                             false (they differ on every `sensitive`
                                                             case; checked here)

  python3 scripts/make_ignore_merges_fixture.py
"""

import json
import os
import tempfile

import tokenizers
from tokenizers import Tokenizer
from tokenizers.pre_tokenizers import ByteLevel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "tests", "fixtures", "tokenizers", "trained_bytelevel", "tokenizer.json")
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "tokenizers", "trained_bytelevel_ignore_merges")
VECTORS = os.path.join(REPO, "tests", "fixtures", "tokenizers", "testvectors", "ignore_merges.json")

# Words added to the vocabulary as single tokens (with and without the leading space).
WORDS = [" understanding", " beautiful", "Something", " programming", " éléphant", " 2024", " naïve"]
TEXTS = [
    ("sensitive", "understanding"),                     # no leading space: not the added piece
    ("sensitive", "A beautiful understanding of it."),
    ("sensitive", "Something programming"),
    ("sensitive", "un éléphant naïve 2024"),
    ("sensitive", "beautiful beautiful  beautiful"),
    ("control", "misunderstanding beautifully"),        # longer words: merges apply as usual
    ("control", "Hello world"),
]


def byte_level(word):
    return "".join(p for p, _ in ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(word))


def with_ignore(obj, flag):
    o = json.loads(json.dumps(obj))
    o["model"]["ignore_merges"] = flag
    return o


def load(obj):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(obj, f, ensure_ascii=False)
    try:
        return Tokenizer.from_file(f.name)
    finally:
        os.remove(f.name)


def main():
    src = json.load(open(SRC, encoding="utf-8"))
    plain = load(src)
    vocab = src["model"]["vocab"]
    next_id = max(max(vocab.values()), max(t["id"] for t in src["added_tokens"])) + 1
    added = {}
    for w in WORDS + [w.strip() for w in WORDS]:
        piece = byte_level(w)
        if piece in vocab or piece in added:
            continue
        split = plain.encode(w, add_special_tokens=False).ids
        assert len(split) > 1, (w, split)  # the merges alone split it
        added[piece] = next_id
        next_id += 1
    out = json.loads(json.dumps(src))
    out["model"]["vocab"] = {**vocab, **added}
    # added tokens keep ids after the new vocabulary entries? they are 0..2 here, below every new id
    on, off = load(with_ignore(out, True)), load(with_ignore(out, False))
    cases = []
    for kind, text in TEXTS:
        ids_on = on.encode(text, add_special_tokens=False).ids
        ids_off = off.encode(text, add_special_tokens=False).ids
        if kind == "sensitive":
            assert ids_on != ids_off, (text, ids_on)
        else:
            assert ids_on == ids_off, (text, ids_on, ids_off)
        cases.append({"text": text, "ids": ids_on, "ids_with_merges_applied": ids_off, "kind": kind})
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(with_ignore(out, True), f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(VECTORS, "w", encoding="utf-8") as f:
        json.dump({"reference": f"tokenizers {tokenizers.__version__}: Tokenizer.from_file(tokenizer.json)"
                                ".encode(text, add_special_tokens=False).ids",
                   "tokenizer": "trained_bytelevel_ignore_merges/tokenizer.json",
                   "added_vocab": added, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"added {len(added)} words; {len(cases)} cases")


if __name__ == "__main__":
    main()
