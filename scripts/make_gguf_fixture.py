"""Writes tests/fixtures/tokenizers/gguf/stories260K-vocab.gguf: a vocab-only
GGUF (no tensors) holding the stories260K SentencePiece tokenizer as llama.cpp
stores one (tokenizer.ggml.model "llama": pieces, scores, token types, BOS/EOS/
UNK ids, add_bos_token, add_space_prefix).

Why: qilin must load tokenizers from GGUF metadata too. The pieces and scores
come from models/stories260K/tok512.model, the same model the HF tokenizer.json
in that directory was converted from, so the expected ids for this GGUF are
tests/fixtures/tokenizers/stories260K/expected.jsonl. The script checks the
link: the GGUF's tokens equal tokenizer.json's vocabulary, and the order of
tokenizer.json's merges is the order of the merged pieces' scores (a
SentencePiece BPE model merges the highest-scoring pair first; HF derived its
merge ranks from those scores).

Needs the `gguf` package (pip install gguf; made with gguf 0.19.0) and
sentencepiece. Run by make_tokenizer_fixtures.py when gguf is installed, or
alone: python3 scripts/make_gguf_fixture.py
"""

import json
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES_DIR = os.path.join(REPO_ROOT, "models", "stories260K")
OUT_PATH = os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizers", "gguf",
                        "stories260K-vocab.gguf")


def read_sentencepiece(path):
    """(pieces, scores, token types) in id order, token types as GGUF numbers."""
    import gguf
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=path)
    pieces, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        pieces.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            kind = gguf.TokenType.CONTROL
        elif sp.is_byte(i):
            kind = gguf.TokenType.BYTE
        elif sp.is_unused(i):
            kind = gguf.TokenType.UNUSED
        else:
            kind = gguf.TokenType.NORMAL
        types.append(int(kind))
    return pieces, scores, types, sp


def check_matches_tokenizer_json(pieces, scores):
    """The GGUF and tokenizer.json must describe the same tokenizer."""
    with open(os.path.join(STORIES_DIR, "tokenizer.json"), encoding="utf-8") as f:
        model = json.load(f)["model"]
    vocab = model["vocab"]
    assert len(vocab) == len(pieces), "vocab size differs from tok512.model"
    for i, piece in enumerate(pieces):
        assert vocab.get(piece) == i, f"piece {i} {piece!r} has id {vocab.get(piece)} in tokenizer.json"
    merged_scores = []
    for merge in model["merges"]:
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        merged_scores.append(scores[vocab[left + right]])
    assert merged_scores == sorted(merged_scores, reverse=True), \
        "tokenizer.json merge order is not the score order"


def write_gguf(pieces, scores, types, sp):
    import gguf
    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    writer = gguf.GGUFWriter(OUT_PATH, arch="llama")
    writer.add_name("stories260K")
    writer.add_vocab_size(len(pieces))
    writer.add_context_length(512)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    import gguf
    pieces, scores, types, sp = read_sentencepiece(os.path.join(STORIES_DIR, "tok512.model"))
    check_matches_tokenizer_json(pieces, scores)
    write_gguf(pieces, scores, types, sp)
    reader = gguf.GGUFReader(OUT_PATH)
    assert list(reader.fields["tokenizer.ggml.tokens"].contents()) == pieces
    from importlib.metadata import version
    print(f"gguf/stories260K-vocab.gguf: {len(pieces)} tokens, "
          f"{os.path.getsize(OUT_PATH)} bytes (gguf {version('gguf')})")


if __name__ == "__main__":
    main()
