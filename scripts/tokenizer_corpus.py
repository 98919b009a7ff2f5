"""The text corpus qilin's tokenizers are tested on (tests/fixtures/tokenizers/corpus.jsonl).

Every line of corpus.jsonl is one JSON string: one text sample. The samples
cover what tokenizers get wrong: English prose, Arabic, Chinese and other
scripts, source code, emoji sequences, whitespace runs, numbers of every
length, contractions, fragments of special-token syntax, and Unicode edge
cases (combining marks, NFC vs NFD, zero-width and bidi characters, very long
words, single characters, the empty string, "▁", "Ġ", U+FFFD).

Deterministic: a fixed seed drives every random choice, and the code samples
come from this repository's files at one pinned commit (SOURCE_COMMIT, read
with `git show`), so editing the repository later does not change the corpus.
Python strings cannot hold invalid UTF-8 (and we keep lone surrogates out), so
invalid byte sequences are left to the C tests. No sample contains U+0000:
C callers pass text as NUL-terminated strings.

build_corpus() returns the list of samples; make_tokenizer_fixtures.py writes it.
"""

import os
import random
import subprocess
import unicodedata

from tokenizer_refs import REPO_ROOT, fixture_path

SEED = 20250505
SOURCE_COMMIT = "3fe2752253aee5ccacfc6d95077143bebffec9b0"

# Files whose lines become code and prose samples (read at SOURCE_COMMIT).
CODE_FILES = [
    "cuda/status.c", "cuda/status.h", "host/config.c", "host/gguf.c",
    "host/safetensors.c", "host/forward.c", "cuda/rope.cu", "cuda/moe.cu",
    "scripts/convert_llama2c.py", "scripts/fixture_common.py",
    "scripts/make_fixtures.py", "fuzz/make_corpus.py",
    "CMakeLists.txt", "CMakePresets.json", "Makefile",
    "tests/fixtures/models/llama/config.json",
    "tests/fixtures/models/deepseek_v3/config.json",
]
PROSE_FILES = ["README.md", "bench/README.md", "bench/RESULTS.md", "scripts/README.md",
               "host/README.md", "fuzz/README.md", "tests/fixtures/models/README.md",
               "tests/fixtures/configs/README.md"]

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.",
    "It was the best of times, it was the worst of times.",
    "Please send the report by Friday; we need it before the board meeting at 9:30 a.m.",
    "She said, \"I can't believe it's already November!\"",
    "Mr. O'Neil paid $1,234.56 for the 3rd-edition book (ISBN 978-3-16-148410-0).",
    "E-mail me at jane.doe@example.com or visit https://example.org/path?q=1&r=two#frag.",
    "Wait... what?! No -- absolutely not; that's *not* how it works.",
    "Hello world",
    " Hello world",
    "Hello  world",
    "HELLO WORLD",
    "hello\nworld",
    "The model was trained on 2.5T tokens over 14 days using 512 GPUs.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong stepped out at 02:56 UTC.",
    "Tokenization splits text into pieces; byte-level BPE never needs an unknown token.",
    "A man, a plan, a canal: Panama!",
    "They're here, we've seen them, and you'll see them too; I'd bet he's right.",
    "Rock 'n' roll isn't dead -- it's just resting.",
    "Tom & Jerry < Bugs Bunny > Daffy Duck | Elmer Fudd",
    "50% off!!! Limited time only *** act now ***",
    "Section 4.2.1(b)(iii) applies, cf. Table 7 and Fig. 3a.",
    "Ünïcödé is ëvérywhéré: café, naïve, façade, jalapeño, Zürich, São Paulo.",
    "The temperature dropped to -40°C (which is also -40°F).",
    "“Smart quotes” and ‘single ones’ — plus an em dash – and an en dash.",
    "Dear Sir or Madam,\n\nI am writing to complain.\n\nYours faithfully,\nA. Customer",
    "TODO: fix this before release\nFIXME: and this\nXXX: hack",
    "camelCaseWords and snake_case_words and kebab-case-words and SCREAMING_CASE",
    "iPhone iPad macOS GitHub OpenAI LLaMA DeepSeek-V3 Qwen2.5-7B-Instruct",
    "It's 5 o'clock somewhere.",
]

ARABIC = [
    "مرحبا بالعالم",
    "اللغة العربية جميلة جدا.",
    "ذهب الولد إلى المدرسة صباحا، ثم عاد إلى البيت.",
    "كم عمرك؟ عمري ٢٥ سنة.",
    "السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ",
    "قال: «هذا كتاب مفيد» ثم ابتسم.",
    "في عام 2024 بلغ عدد السكان ١٠٠ مليون نسمة.",
    "الذكاء الاصطناعي يغير العالم بسرعة كبيرة",
    "هل تتكلم الإنجليزية؟ نعم، قليلا.",
    "شكرا جزيلا لك يا صديقي",
]
CHINESE = [
    "你好，世界！",
    "今天天气很好，我们去公园散步吧。",
    "机器学习是人工智能的一个分支。",
    "他说：“我明天再来。”",
    "北京是中华人民共和国的首都，人口超过两千万。",
    "一二三四五六七八九十百千万亿",
    "這是繁體中文的句子，和簡體不一樣。",
    "我喜欢吃苹果和香蕉，但是不喜欢吃梨。",
    "请在2024年12月31日之前提交报告。",
    "深度求索发布了新的大语言模型",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "标点符号：，。！？；：“”‘’（）【】《》",
]
OTHER_SCRIPTS = [
    "こんにちは、世界！今日はいい天気ですね。",
    "東京タワーは333メートルです。カタカナとひらがなと漢字。",
    "ｶﾀｶﾅ ﾊﾝｶｸ と 全角ＡＢＣ１２３",
    "안녕하세요, 세계! 오늘 날씨가 좋네요.",
    "한국어는 한글로 씁니다. 1234원입니다.",
    "नमस्ते दुनिया! आप कैसे हैं?",
    "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है।",
    "Привет, мир! Как дела?",
    "Москва — столица России. В 2024 году.",
    "Γειά σου Κόσμε! Αλφάβητο: αβγδε.",
    "שלום עולם! מה שלומך?",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Xin chào thế giới! Tiếng Việt có nhiều dấu.",
    "Merhaba dünya! İstanbul'da ılık bir gün.",
    "Zażółć gęślą jaźń. Łódź.",
    "Ἐν ἀρχῇ ἦν ὁ λόγος",
    "ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᚱᚩᚠᚢᚱ",
    "ሰላም ለዓለም",
    "Բարեւ աշխարհ",
    "გამარჯობა მსოფლიო",
    "வணக்கம் உலகம்",
    "ওহে বিশ্ব",
    "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝟙𝟚𝟛",
    "Ⅻ ⅷ ½ ¾ ⁴ ₂ ² ³ ㊿ ① ⑳",
]

EMOJI = [
    "😀", "😊 smile", "👍", "👍🏽", "👍🏿👍🏻", "👋🏼 hi",
    "👨‍👩‍👧‍👦", "👩‍💻 coding", "🏳️‍🌈", "🏴‍☠️", "❤️", "❤️‍🔥",
    "🇺🇸🇬🇧🇯🇵🇨🇳🇸🇦🇩🇪", "🇫🇷 France", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland",
    "1️⃣2️⃣3️⃣ #️⃣ *️⃣", "🧑🏾‍🤝‍🧑🏻", "👁️‍🗨️", "🐕‍🦺", "😶‍🌫️",
    "Such joy 😊 let's run!🏃‍♂️", "🎉🎉🎉 party 🎉🎉🎉", "emoji🙂inside🙃words",
    "☀️☁️☂️☃️", "✌🏻✌🏼✌🏽✌🏾✌🏿", "🤷‍♀️🤷‍♂️", "🫠🫡🫶", "🧔‍♂️",
    "©️ ®️ ™️", "♀ ♂ ⚧", "🅰️🅱️🆎", "🀄🃏",
]

# Specials of the tested tokenizers, and fragments that only look like them.
SPECIAL_SYNTAX = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|>user\nHi<|im_end|>",
    "<|im_start", "im_start|>", "<|im_end|", "<|endoftext", "endoftext|>",
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>",
    "<|reserved_special_token_0|>", "<|reserved_special_token_247|>",
    "<|reserved_special_token_248|>", "<|step_id|>", "<|image|>",
    "[BOS]", "[EOS]", "[PAD]", "[UNK]", "[EOT]", "<|im_user|>", "<|im_assistant|>",
    "<|im_system|>", "<|im_middle|>", "<|tool_calls_section_begin|>",
    "<|reserved_token_163589|>", "<|reserved_token_163600|>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜fim▁hole｜>", "<｜place▁holder▁no▁0｜>",
    "<|begin▁of▁sentence|>", "<｜begin_of_sentence｜>",
    "<s>", "</s>", "<unk>", "<s> </s>", "<s>[INST] Hi [/INST]", "[INST]", "[/INST]",
    "<think>", "</think>", "<think>\nLet me think.\n</think>\n\nAnswer: 42",
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|vision_start|>",
    "<|padding|>", "<pad>", "<mask>", "<|>", "<||>", "<| |>", "|>", "<|",
    "<<SYS>>\nYou are helpful.\n<</SYS>>",
]

# A sample of single characters from many Unicode blocks.
SINGLE_CHARS = (
    "aZ09 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t\n\r\x0b\x0c\x01\x1b\x7f"
    "\u00a0\u00ad\u00e9\u00df\u00ff\u0100\u0130\u0131\u017f\u01c5\u0300\u0301\u0345"
    "\u037e\u0391\u03c9\u0401\u044f\u05d0\u0627\u0660\u06f0\u0900\u0966\u0e01"
    "\u1100\u1680\u1e9e\u2000\u2002\u2003\u2009\u200a\u200b\u200c\u200d\u200e\u200f"
    "\u2028\u2029\u202a\u202e\u202f\u205f\u2060\u2066\u2069\u20ac\u2116\u2122\u2160"
    "\u2190\u2200\u2500\u25cf\u2603\u2764\u3000\u3001\u3042\u30a2\u4e00\u9fff"
    "\uac00\ud7a3\ue000\uf8ff\ufb01\ufe0f\ufeff\uff10\uff21\uff61\ufffc\ufffd\uffff"
    "\U00010000\U0001d400\U0001f600\U0001f1fa\U0001f3fb\U00020000\U0002a6d6"
    "\U000e0001\U000e007f\U000f0000\U0010fffd\U0010ffff"
    "\u2581\u0120\u010a\u0100\u0109"
)

UNICODE_SPACES = ["\u00a0", "\u1680", "\u2000", "\u2002", "\u2003", "\u2007",
                  "\u2009", "\u200a", "\u202f", "\u205f", "\u3000", "\u0085",
                  "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1f"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",
             "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d",
             "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u061c",
             "\u180e", "\u034f"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a",
             "\u0327", "\u0328", "\u0331", "\u0338", "\u20d7", "\u0483",
             "\u0591", "\u064b", "\u0651", "\u093c", "\u0e31", "\u3099"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE",
                "'VE", "'M", "'LL", "'D", "'Ve", "'Ll", "'Re", "’s", "’ll", "'",
                "''", "'x", "'st"]
WORDS = ["it", "he", "she", "they", "we", "you", "I", "John", "dog", "cat",
         "don", "isn", "won", "shan", "o", "rock", "ma", "y", "CAN", "Y"]


def _git_show(path):
    """A file of this repository at SOURCE_COMMIT (not the working tree)."""
    out = subprocess.run(["git", "-C", REPO_ROOT, "show", f"{SOURCE_COMMIT}:{path}"],
                         check=True, capture_output=True)
    return out.stdout.decode("utf-8")


def english(rng):
    out = list(ENGLISH)
    prose = []
    for path in PROSE_FILES:
        for para in _git_show(path).split("\n\n"):
            para = para.strip("\n")
            if 20 <= len(para) <= 800 and "```" not in para:
                prose.append(para)
            # Single lines too: Markdown prose, list items, table rows.
            prose += [line for line in para.split("\n") if 30 <= len(line) <= 300]
    out += rng.sample(prose, min(len(prose), 260))
    # Sentences glued together, with varied separators.
    for _ in range(60):
        seps = [" ", "  ", "\n", "\n\n", "\t", ". ", "; "]
        out.append(rng.choice(seps).join(rng.sample(ENGLISH, 3)))
    return out


def multilingual(rng):
    out = ARABIC + CHINESE + OTHER_SCRIPTS
    pools = [ARABIC, CHINESE, OTHER_SCRIPTS, ENGLISH]
    for _ in range(160):
        parts = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(2, 4))]
        out.append(rng.choice([" ", "", "\n", " - "]).join(parts))
    # Scripts mixed inside one word (the Kimi pattern splits Han from other letters).
    for a, b in [("abc", "中文"), ("中文", "abc"), ("ABC", "汉字DEF"), ("日本語", "テキスト"),
                 ("Ωmega", "欧米茄"), ("ünï", "字"), ("한국", "漢字"), ("x", "一")]:
        out += [a + b, b + a, a + b + a, " " + a + b, a.upper() + b + "'s"]
    return out


def code(rng):
    out = []
    for path in CODE_FILES:
        lines = _git_show(path).split("\n")
        picked = [l for l in lines if l.strip()]
        out += rng.sample(picked, min(len(picked), 30))
        # Multi-line snippets keep real indentation and blank lines.
        for _ in range(8):
            start = rng.randrange(max(1, len(lines) - 12))
            out.append("\n".join(lines[start:start + rng.randint(3, 12)]))
    out += [
        "int main(void) {\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "if x == 1:\n    print('one')\nelif x == 2:\n    print(\"two\")\nelse:\n    pass",
        "def f(*args, **kwargs) -> dict[str, int]:\n    return {k: len(v) for k, v in kwargs.items()}",
        "{\"name\": \"qilin\", \"version\": [0, 1, 2], \"ok\": true, \"none\": null}",
        "[{\"a\":1},{\"b\":[2,3,{\"c\":\"d\"}]}]",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
        "x+=1;y-=2;z*=3;w/=4;v%=5;u<<=6;t>>=7;s&=8;r|=9;q^=10;",
        "a->b->c; p = &q; **pp = 0; i++; --j; k == l != m <= n >= o && p || !q",
        "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))",
        "std::vector<std::pair<int, std::string>> v{{1, \"a\"}};",
        "$ echo \"$HOME\" | grep -E '^/root' && ls -la ~/.config 2>/dev/null",
        "    \n        \n            indented();\n",
        "\t\tif (err) {\n\t\t\treturn -1;\n\t\t}",
        "https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp#L1234",
        "0x7fffffff 0XDEADBEEF 0b1010 0o777 1e-9 3.14159f 1_000_000 42ULL",
        "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
        "// comment\n/* block\n   comment */\n# python comment\n-- sql comment",
        "\\n \\t \\\\ \\\" \\u00e9 \\x41",
        "lambda x: x**2 if x > 0 else -x",
        "key: value\nlist:\n  - item1\n  - item2\n",
    ]
    return out


def emoji(rng):
    out = list(EMOJI)
    tones = ["\U0001f3fb", "\U0001f3fc", "\U0001f3fd", "\U0001f3fe", "\U0001f3ff"]
    bases = ["\U0001f44b", "\U0001f44d", "\U0001f9d1", "\U0001f469", "\U0001f468", "\u270b"]
    for _ in range(40):
        out.append(rng.choice(bases) + rng.choice(tones) + rng.choice(["", " ", "!", "\u200d\U0001f4bb"]))
    regional = [chr(0x1F1E6 + i) for i in range(26)]
    for _ in range(30):
        out.append("".join(rng.choice(regional) for _ in range(rng.randint(1, 5))))
    for _ in range(40):
        words = rng.sample(ENGLISH[0].split() + ["ok", "yes", "no"], 3)
        out.append(" ".join(w + rng.choice(EMOJI) for w in words))
    return out


def whitespace(rng):
    out = ["", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\n\n\n", "\r", "\r\r\n",
           "\n \n", " \n ", "\t\n\t", " \t ", "     \n", "\n     ", " " * 64,
           "\t" * 17, "\n" * 33, "\r\n" * 9, " a", "a ", " a ", "  a  ", "\ta\t",
           "\na\n", "a\n\n\nb", "a \n b", "a\t\tb", "a\r\nb\r\nc", "a\u00a0b",
           "\u3000全角スペース\u3000", "a" + " " * 40 + "b", "x\n" * 20]
    chars = [" ", "\t", "\n", "\r", "\r\n"] + UNICODE_SPACES
    for _ in range(160):
        run = "".join(rng.choice(chars) for _ in range(rng.randint(1, 12)))
        left = rng.choice(["", "word", "Hello", "中文", "123", "!"])
        right = rng.choice(["", "word", "world", "العربية", "456", "?"])
        out.append(left + run + right)
    return out


def numbers(rng):
    out = []
    for n in range(1, 41):
        out.append("".join(rng.choice("0123456789") for _ in range(n)))
    for n in range(1, 25):
        out.append("1" + "0" * n)
    out += ["0", "00", "000", "0000", "007", "-1", "+1", "3.14", "-0.5", ".5", "5.",
            "1,000", "1,000,000", "1.000.000,50", "1 000 000", "1'000'000",
            "6.022e23", "1E-10", "2^64 = 18446744073709551616", "12:30:45",
            "2024-11-23T18:36:00Z", "+1 (555) 123-4567", "192.168.0.1", "v1.2.3-rc4",
            "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "０１２３４５６７８９", "¹²³⁴",
            "₀₁₂", "ⅠⅡⅢⅣ", "①②③", "一千二百三十四", "3½", "10¹⁰", "π≈3.14159265358979",
            "123abc456", "abc123def", "a1b2c3d4", "x2", "H2O", "CO₂", "1st 2nd 3rd 4th",
            "$100", "€99.99", "¥1000", "100%", "#1", "No.7", "1/2", "3:4", "1-2-3"]
    for _ in range(80):
        n = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 31, 64])
        digits = "".join(rng.choice("0123456789") for _ in range(n))
        out.append(rng.choice(["", " ", "x", "$", "-", "The answer is ", "中"]) + digits
                   + rng.choice(["", " ", ".", "px", "%", "th", "年"]))
    return out


def contractions(rng):
    out = ["I'm", "you're", "it's", "don't", "can't", "won't", "we've", "they'll",
           "he'd", "I'LL", "YOU'VE", "IT'S", "DON'T", "We'Ve", "They'Ll", "she'S",
           "rock'n'roll", "O'Reilly", "'tis", "'twas", "ma'am", "y'all'd've",
           "it’s (curly)", "''quoted''", "'single'", "'s", "'S", "'ll", "'LL"]
    for _ in range(90):
        w = rng.choice(WORDS)
        c = rng.choice(CONTRACTIONS)
        out.append(rng.choice(["", " ", "  "]) + w + c + rng.choice(["", " ", " x", ".", "'s"]))
    return out


def special_syntax(rng):
    out = list(SPECIAL_SYNTAX)
    words = ["hello", "the", "中文", "123", "", " ", "\n", "x"]
    for _ in range(160):
        tok = rng.choice(SPECIAL_SYNTAX)
        left, right = rng.choice(words), rng.choice(words)
        if rng.random() < 0.5:  # cut it somewhere
            cut = rng.randrange(1, max(2, len(tok)))
            tok = tok[:cut] if rng.random() < 0.5 else tok[cut:]
        out.append(left + tok + right)
    for _ in range(40):
        out.append("".join(rng.choice(SPECIAL_SYNTAX) for _ in range(rng.randint(2, 5))))
    out += ["mid<|endoftext|>word", "pre<|im_start|>post", "<|endoftext|><|endoftext|>",
            "<|endoftext|> <|endoftext|>", " <|endoftext|> ", "<<|endoftext|>>",
            "<|<|endoftext|>|>", "<|endoftext|>" * 5, "a</s>b<s>c", "<s><s></s></s>",
            "[INST][INST][/INST]", "<think></think>", "<think>\n\n</think>\n\n"]
    return out


def unicode_edges(rng):
    out = []
    # NFC vs NFD of the same words.
    for word in ["é", "café", "naïve", "Ångström", "Ǆemal", "한국어", "ﬁle", "Å", "Ω",
                 "ḱṷṓn", "\u1e9b\u0323", "e\u0301\u0301", "ｶﾞ", "①"]:
        for form in ("NFC", "NFD", "NFKC", "NFKD"):
            out.append(unicodedata.normalize(form, word))
        out.append("x " + unicodedata.normalize("NFD", word) + " y")
    for _ in range(60):
        base = rng.choice("aeiouAEIOUnczxq")
        out.append(base + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 6))))
    out += [COMBINING[0] + "start", "Z" + "".join(COMBINING) * 2, " \u0301", "\u0301"]
    for _ in range(60):
        w1, w2 = rng.choice(WORDS + ["中文", "عربي"]), rng.choice(WORDS + ["中文"])
        out.append(w1 + rng.choice(INVISIBLE) + w2)
    out += ["\u200fRTL mark", "English \u202eSIHT ESREVER\u202c end",
            "\u2067مرحبا\u2069 hello", "abc\u200d", "\u200b" * 10, "\ufeffBOM at start",
            "soft\u00adhyphen", "zero\u200bwidth\u200bspace"]
    # Very long words.
    out += ["a" * 1000, "ab" * 700, "supercalifragilisticexpialidocious" * 20,
            "Z" * 333, "中" * 800, "文字" * 400, "😀" * 200, "!" * 500, "-" * 300,
            "9" * 400, "_" * 100 + "x", "é" * 300, unicodedata.normalize("NFD", "é") * 300,
            "\u2581" * 200, "\u0120" * 200, "x" + "\u0301" * 100]
    # Byte-level and SentencePiece marker characters on their own and in text.
    out += ["\u2581", "\u0120", "\u010a", "\u2581\u2581", "\u0120\u0120", "\u2581hello",
            "hello\u2581world", "\u0120the", "\u2581 ", " \u2581", "\ufffd", "\ufffd\ufffd",
            "a\ufffdb", "\ufffdhello", "<0x41>", "<0xE4><0xB8><0xAD>", "<unk>hello"]
    out += list(SINGLE_CHARS)
    # Private use, non-characters, supplementary planes, control characters.
    out += ["\ue000\uf8ff", "\U000f0000\U0010fffd", "\uffff\ufffe", "\U0001ffff",
            "\x01\x02\x03", "bell\x07", "esc\x1b[31mred\x1b[0m", "del\x7f", "\x85nel",
            "tab\x0bvt\x0cff", "\U00010348\U00010330", "\U0001d11e music"]
    return out


def kitoken_and_llamacpp():
    """Texts of the third-party test vectors: every line of kitoken's small and
    mixed inputs (unescaped as kitoken's tests do), and llama.cpp's .inp cases."""
    out = []
    kit = fixture_path("testvectors", "kitoken")
    for name in ("small_input.txt", "mixed_input.txt"):
        with open(os.path.join(kit, name), encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        out += [kitoken_unescape(l) for l in lines]
    path = fixture_path("testvectors", "llama.cpp", "ggml-vocab-qwen2.gguf.inp")
    with open(path, encoding="utf-8") as f:
        cases = f.read().split("\n__ggml_vocab_test__\n")
    out += [c for c in cases if c]
    return out


def kitoken_unescape(line):
    """kitoken's input escapes: \\n is a newline, \\s a space, \\x nothing."""
    return line.replace("\\n", "\n").replace("\\s", " ").replace("\\x", "")


def mixtures(rng, pools):
    """Random concatenations across categories: tokenizers must not care
    where one kind of text ends and the next begins."""
    out = []
    for _ in range(300):
        parts = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(2, 5))]
        parts = [p[:300] for p in parts]
        out.append(rng.choice(["", " ", "\n", "\t", "  "]).join(parts))
    return out


def build_corpus():
    rng = random.Random(SEED)
    groups = [english(rng), multilingual(rng), code(rng), emoji(rng), whitespace(rng),
              numbers(rng), contractions(rng), special_syntax(rng), unicode_edges(rng)]
    corpus = [s for g in groups for s in g]
    corpus += mixtures(rng, groups)
    corpus += kitoken_and_llamacpp()
    for i, s in enumerate(corpus):
        assert "\x00" not in s, f"sample {i} contains NUL"
        s.encode("utf-8")  # raises on lone surrogates
    return corpus
