"""Reference tokenizers for qilin's tokenizer tests and benchmark.

One function per tokenizer family builds the implementation qilin must agree
with, id for id:

* Hugging Face `tokenizers` (the Rust library transformers uses) for every
  tokenizer.json and for Qwen2's vocab.json + merges.txt;
* the `tiktoken` package for tiktoken-format rank files (Llama 3's original
  tokenizer.model, Kimi K2's tiktoken.model), with the split pattern and the
  special-token names the models' own tokenizer code uses (those files carry
  neither).

Every builder returns a `Reference`: encode(text) -> ids without BOS/EOS but
with special/added tokens in the text parsed; encode_with_special(text) -> ids
as the tokenizer's own post-processor adds them (BOS for Llama-style ones);
decode(ids) -> text. make_tokenizer_fixtures.py and
bench/bench_tokenizer_hf.py both import this module, so the fixtures and the
benchmark always use the same references.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Callable, List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "tokenizers")

# Llama 3's split pattern: meta-llama/llama-models models/llama3/tokenizer.py
# `pat_str` (the cl100k pattern). No normaliser.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Kimi K2's split pattern: `pat_str` of Moonshot's tokenization_kimi.py.
# "[...&&[^\p{Han}]]" is a class intersection ("these letters, but not Han"),
# which tiktoken's regex engine (Rust regex via fancy-regex) accepts as is.
KIMI_PATTERN = "|".join([
    r"[\p{Han}]+",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])

# The same pattern without class intersection, for engines that lack `&&`
# (PCRE2 among them): "a letter/mark that is not Han" becomes a look-ahead
# (?!\p{Han}) in front of each such class. Checked against KIMI_PATTERN on the
# whole corpus and the kitoken vectors by make_tokenizer_fixtures.py.
_NOT_HAN_UPPER = r"(?:(?!\p{Han})[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}])"
_NOT_HAN_LOWER = r"(?:(?!\p{Han})[\p{Ll}\p{Lm}\p{Lo}\p{M}])"
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
KIMI_PATTERN_LOOKAHEAD = "|".join([
    r"[\p{Han}]+",
    r"[^\r\n\p{L}\p{N}]?" + _NOT_HAN_UPPER + "*" + _NOT_HAN_LOWER + "+" + _CONTRACTION,
    r"[^\r\n\p{L}\p{N}]?" + _NOT_HAN_UPPER + "+" + _NOT_HAN_LOWER + "*" + _CONTRACTION,
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])

# Llama 3.1's names for ids 128000..128255, as Meta's llama-models
# models/llama3/tokenizer.py (3.1 release) and transformers'
# convert_llama_weights_to_hf.py ("3.1") list them. See the fixtures README
# for the other generations (3.0 had reserved_special_token_2..4 where 3.1 has
# finetune_right_pad_id / eom_id / python_tag; later llama-models names 128005
# <|step_id|> and 128011 <|image|>).
LLAMA3_NAMED_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
LLAMA3_NUM_SPECIALS = 256
KIMI_NUM_SPECIALS = 256


@dataclass
class Reference:
    """A reference tokenizer as the fixtures and the benchmark use it."""
    name: str
    reference: str            # "tokenizers 0.23.3" / "tiktoken 0.14.0"
    files: List[str]          # paths relative to tests/fixtures/tokenizers
    encode: Callable[[str], List[int]]
    encode_with_special: Callable[[str], List[int]]
    decode: Callable[[List[int]], str]
    backend: object = field(default=None, repr=False)


def fixture_path(*parts):
    return os.path.join(FIXTURES, *parts)


def _tokenizers_version():
    import tokenizers
    return "tokenizers " + tokenizers.__version__


def _tiktoken_version():
    import tiktoken
    return "tiktoken " + tiktoken.__version__


def from_hf_tokenizer(name, tok, files):
    """Wraps a tokenizers.Tokenizer."""
    return Reference(
        name=name,
        reference=_tokenizers_version(),
        files=files,
        encode=lambda text: tok.encode(text, add_special_tokens=False).ids,
        encode_with_special=lambda text: tok.encode(text, add_special_tokens=True).ids,
        decode=lambda ids: tok.decode(ids, skip_special_tokens=False),
        backend=tok,
    )


def from_tokenizer_json(name, relpath):
    """Any tokenizer.json: tokenizers.Tokenizer.from_file, nothing else."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(fixture_path(relpath))
    return from_hf_tokenizer(name, tok, [relpath])


def gpt_neox_20b():
    return from_tokenizer_json("gpt_neox_20b", "gpt_neox_20b/tokenizer.json")


def mistral_7b():
    return from_tokenizer_json("mistral_7b", "mistral_7b/tokenizer.json")


def deepseek_v3():
    """Needs scripts/fetch_test_data.sh to have fetched tokenizer.json."""
    return from_tokenizer_json("deepseek_v3", "deepseek_v3/tokenizer.json")


def qwen2(save_json_to=None):
    """Qwen2 from vocab.json + merges.txt + tokenizer_config.json only.

    That is what transformers builds for a user whose model directory has no
    tokenizer.json: Qwen2TokenizerFast (an alias of Qwen2Tokenizer in
    transformers 5) makes NFC + the Qwen2 split regex + ByteLevel, and the
    added tokens of tokenizer_config.json's added_tokens_decoder. We keep its
    Rust backend. save_json_to: optional path to write the backend's
    tokenizer.json to, for inspection (it is ~7 MB, never committed).
    """
    from transformers import Qwen2TokenizerFast
    hf = Qwen2TokenizerFast.from_pretrained(fixture_path("qwen2"))
    tok = hf._tokenizer
    if save_json_to:
        tok.save(save_json_to)
    files = ["qwen2/vocab.json", "qwen2/merges.txt", "qwen2/tokenizer_config.json"]
    return from_hf_tokenizer("qwen2", tok, files)


def from_tiktoken(name, relpath, pattern, specials, bos_id):
    """A tiktoken.Encoding over a rank file; specials: name -> id; bos_id:
    what encoding one text with special tokens adds in front (None: nothing)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    ranks = load_tiktoken_bpe(fixture_path(relpath))
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                            special_tokens=specials)

    def encode(text):
        return enc.encode(text, allowed_special="all")

    return Reference(
        name=name,
        reference=_tiktoken_version(),
        files=[relpath],
        encode=encode,
        encode_with_special=lambda text: ([bos_id] if bos_id is not None else []) + encode(text),
        # errors="strict": a fixture whose ids do not decode to valid UTF-8
        # should fail loudly here, not be papered over with U+FFFD.
        decode=lambda ids: enc.decode_bytes(ids).decode("utf-8", errors="strict"),
        backend=enc,
    )


def llama3_specials(num_base):
    named = list(LLAMA3_NAMED_SPECIALS)
    reserved = [f"<|reserved_special_token_{i}|>"
                for i in range(3, 3 + LLAMA3_NUM_SPECIALS - len(named))]
    return {tok: num_base + i for i, tok in enumerate(named + reserved)}


def llama3():
    """Llama 3 / 3.1 / 3.2 / 3.3 from the original tiktoken tokenizer.model."""
    specials = llama3_specials(128000)
    assert len(specials) == LLAMA3_NUM_SPECIALS
    assert specials["<|eot_id|>"] == 128009
    assert specials["<|reserved_special_token_247|>"] == 128255
    return from_tiktoken("llama3", "llama3/tokenizer.model", LLAMA3_PATTERN,
                         specials, bos_id=specials["<|begin_of_text|>"])


def kimi_specials(num_base):
    """Ids num_base..num_base+255, named from tokenizer_config.json's
    added_tokens_decoder, the rest "<|reserved_token_{id}|>" (the naming of
    Moonshot's tokenization_kimi.py and of transformers' tiktoken loader)."""
    with open(fixture_path("kimi_k2", "tokenizer_config.json"), encoding="utf-8") as f:
        decoder = json.load(f)["added_tokens_decoder"]
    names = {int(i): entry["content"] for i, entry in decoder.items()}
    return {names.get(i, f"<|reserved_token_{i}|>"): i
            for i in range(num_base, num_base + KIMI_NUM_SPECIALS)}


def kimi_k2(pattern=KIMI_PATTERN):
    specials = kimi_specials(163584)
    assert len(specials) == KIMI_NUM_SPECIALS
    # tokenization_kimi.py's encode adds nothing, and with add_special_tokens
    # it falls back to PreTrainedTokenizer, whose default adds nothing either.
    ref = from_tiktoken("kimi_k2", "kimi_k2/tiktoken.model", pattern,
                        specials, bos_id=None)
    ref.files = ["kimi_k2/tiktoken.model", "kimi_k2/tokenizer_config.json"]
    return ref


def trained(name):
    """The tokenizers trained by make_tokenizer_fixtures.py (committed)."""
    return from_tokenizer_json(name, f"{name}/tokenizer.json")


# The real tokenizers, in the order the benchmark reports them.
REAL = {
    "qwen2": qwen2,
    "llama3": llama3,
    "kimi_k2": kimi_k2,
    "deepseek_v3": deepseek_v3,
    "gpt_neox_20b": gpt_neox_20b,
    "mistral_7b": mistral_7b,
}


def deepseek_available():
    return os.path.exists(fixture_path("deepseek_v3", "tokenizer.json"))
