// test_text_stream.cpp — generated ids to streamed text (runtime/text_stream.h):
// stop ids end the stream unseen, stop strings are cut out even when split
// over tokens, text that only looks like the start of a stop string is
// released, every emitted chunk is whole UTF-8, and the chunks add up to the
// decoded text. Tokenizers: the stories260K SentencePiece model (byte
// fallback: CJK and emoji arrive one byte token at a time) and Qwen2's
// byte-level BPE; and, for the prompt + generation split that `qilin run -p`
// streams, every tokenizer family in the fixtures.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/text_stream.h"
#include "runtime/tokenizer.h"

namespace {

std::string src(const std::string &rel) { return std::string(QILIN_SOURCE_DIR) + "/" + rel; }

struct Tok {
    qilin_tokenizer *t = nullptr;
    explicit Tok(const std::string &path) {
        EXPECT_EQ(qilin_tokenizer_load(path.c_str(), &t), QILIN_OK) << qilin_last_error();
    }
    ~Tok() { qilin_tokenizer_free(t); }
    std::vector<int32_t> encode(const std::string &text) const {
        qilin_ids ids = {};
        EXPECT_EQ(qilin_tokenizer_encode(t, text.data(), text.size(), 0, &ids), QILIN_OK) << qilin_last_error();
        std::vector<int32_t> out(ids.ids, ids.ids + ids.n);
        qilin_ids_free(&ids);
        return out;
    }
};

bool whole_utf8(const std::string &s) {
    for (size_t i = 0; i < s.size();) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] >> 6) != 2) return false;
        i += n;
    }
    return true;
}

struct Chunks {
    std::vector<std::string> chunks;
    std::string joined() const {
        std::string s;
        for (auto &c : chunks) s += c;
        return s;
    }
};

void collect(void *user, const char *text, size_t n) { static_cast<Chunks *>(user)->chunks.emplace_back(text, n); }

// Pushes ids until the stream says stop; returns how many were taken.
size_t feed(qilin_text_stream *s, const std::vector<int32_t> &ids) {
    size_t taken = 0;
    for (int32_t id : ids) {
        bool more = false;
        EXPECT_EQ(qilin_text_stream_push(s, id, &more), QILIN_OK) << qilin_last_error();
        taken++;
        if (!more) break;
    }
    return taken;
}

TEST(TextStream, StopIdEndsTheStreamUnseen) {
    Tok tok(src("models/stories260K"));
    ASSERT_NE(tok.t, nullptr);
    std::vector<int32_t> ids = tok.encode("Lily saw a big dog.");
    size_t body = ids.size();
    int32_t eos = qilin_tokenizer_eos_id(tok.t);
    ASSERT_GE(eos, 0);
    ids.push_back(eos);
    ids.push_back(ids[0]); // never reached
    Chunks run;
    qilin_text_stream s;
    qilin_text_stream_init(&s, tok.t, QILIN_DECODE_SKIP_SPECIAL, &eos, 1, nullptr, 0, collect, &run);
    EXPECT_EQ(feed(&s, ids), body + 1);
    EXPECT_EQ(s.finish, QILIN_FINISH_EOS);
    EXPECT_EQ(s.last_id, eos);
    EXPECT_EQ(std::string(s.text), "Lily saw a big dog.");
    EXPECT_EQ(run.joined(), "Lily saw a big dog.");
    qilin_text_stream_free(&s);
}

TEST(TextStream, StopStringIsCutEvenAcrossTokens) {
    Tok tok(src("tests/fixtures/tokenizers/qwen2"));
    ASSERT_NE(tok.t, nullptr);
    const char *stops[] = {"never", "User:"};
    std::string text = "Sure, here it is.\nUser: and more text after";
    std::vector<int32_t> ids = tok.encode(text);
    Chunks run;
    qilin_text_stream s;
    qilin_text_stream_init(&s, tok.t, 0, nullptr, 0, stops, 2, collect, &run);
    size_t taken = feed(&s, ids);
    EXPECT_LT(taken, ids.size());
    EXPECT_EQ(s.finish, QILIN_FINISH_STOP);
    EXPECT_EQ(std::string(s.text), "Sure, here it is.\n");
    EXPECT_EQ(run.joined(), "Sure, here it is.\n");
    for (auto &c : run.chunks) EXPECT_EQ(c.find("User"), std::string::npos) << "a stop-string prefix leaked: " << c;
    qilin_text_stream_free(&s);
}

TEST(TextStream, FalseStartOfAStopStringIsReleased) {
    Tok tok(src("tests/fixtures/tokenizers/qwen2"));
    ASSERT_NE(tok.t, nullptr);
    const char *stops[] = {"the end."};
    std::string text = "not the enemy, the end";
    Chunks run;
    qilin_text_stream s;
    qilin_text_stream_init(&s, tok.t, 0, nullptr, 0, stops, 1, collect, &run);
    std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(feed(&s, ids), ids.size());
    EXPECT_EQ(s.finish, QILIN_FINISH_NONE);
    EXPECT_NE(run.joined(), text); // "the end" is still held: it may become "the end."
    ASSERT_EQ(qilin_text_stream_finish(&s), QILIN_OK);
    EXPECT_EQ(run.joined(), text);
    EXPECT_EQ(std::string(s.text), text);
    qilin_text_stream_free(&s);
}

TEST(TextStream, ChunksAreWholeUtf8) {
    for (const char *path : {"models/stories260K", "tests/fixtures/tokenizers/qwen2"}) {
        Tok tok(src(path));
        ASSERT_NE(tok.t, nullptr);
        std::string text = "Tom said 你好 and 😀👍🏽 then مرحبا — fin";
        Chunks run;
        qilin_text_stream s;
        qilin_text_stream_init(&s, tok.t, 0, nullptr, 0, nullptr, 0, collect, &run);
        std::vector<int32_t> ids = tok.encode(text);
        EXPECT_EQ(feed(&s, ids), ids.size());
        ASSERT_EQ(qilin_text_stream_finish(&s), QILIN_OK);
        EXPECT_GT(run.chunks.size(), 5u) << path;
        for (auto &c : run.chunks) EXPECT_TRUE(whole_utf8(c)) << path << ": chunk '" << c << "'";
        EXPECT_EQ(run.joined(), text) << path;
        qilin_text_stream_free(&s);
    }
}

// ---- prompt + generation reads as the decoded ids (issue 12) ----
//
// `qilin run -p` echoes the prompt's ids through the stream and then streams
// the generated ids; the whole must equal qilin_tokenizer_decode of all the
// ids (what `qilin tokenize --decode` prints), for every family: a
// SentencePiece decoder strips one leading space only at the start of the
// text ("Once upon" + "▁a" must not read "Once upona"), byte-fallback
// characters split between prompt and generation, special and added tokens
// (skipped or not) on either side of the split.

struct Family {
    const char *name, *path; // path relative to the repository root
};

const Family kFamilies[] = {
    {"qwen2 (byte-level BPE, vocab.json + merges.txt)", "tests/fixtures/tokenizers/qwen2"},
    {"llama3 (tiktoken)", "tests/fixtures/tokenizers/llama3"},
    {"kimi_k2 (tiktoken, tokenizer_config)", "tests/fixtures/tokenizers/kimi_k2"},
    {"gpt_neox_20b (tokenizer.json byte-level)", "tests/fixtures/tokenizers/gpt_neox_20b"},
    {"mistral_7b (Metaspace + byte fallback)", "tests/fixtures/tokenizers/mistral_7b"},
    {"deepseek_v3 (fetched)", "tests/fixtures/tokenizers/deepseek_v3"},
    {"trained_bytelevel", "tests/fixtures/tokenizers/trained_bytelevel"},
    {"trained_bytelevel_digits", "tests/fixtures/tokenizers/trained_bytelevel_digits"},
    {"trained_bytelevel_prefix", "tests/fixtures/tokenizers/trained_bytelevel_prefix"},
    {"trained_spbpe (SentencePiece BPE)", "tests/fixtures/tokenizers/trained_spbpe"},
    {"stories260K (SentencePiece, llama2.c)", "models/stories260K"},
    {"stories260K GGUF vocabulary", "tests/fixtures/tokenizers/gguf/stories260K-vocab.gguf"},
};

void PrintTo(const Family &f, std::ostream *os) { *os << f.name; }

std::string decode_all(const qilin_tokenizer *t, const std::vector<int32_t> &ids, unsigned flags) {
    char *text = nullptr;
    size_t len = 0;
    EXPECT_EQ(qilin_tokenizer_decode(t, ids.data(), ids.size(), flags, &text, &len), QILIN_OK) << qilin_last_error();
    std::string out(text ? text : "", len);
    free(text);
    return out;
}

// Echoes ids[0..split) as the prompt, streams the rest; returns all emitted text.
std::string stream_split(const qilin_tokenizer *t, const std::vector<int32_t> &ids, size_t split, unsigned flags) {
    Chunks run;
    qilin_text_stream s;
    qilin_text_stream_init(&s, t, flags, nullptr, 0, nullptr, 0, collect, &run);
    EXPECT_EQ(qilin_text_stream_prompt(&s, ids.data(), split, true), QILIN_OK) << qilin_last_error();
    for (size_t i = split; i < ids.size(); i++) {
        bool more = false;
        EXPECT_EQ(qilin_text_stream_push(&s, ids[i], &more), QILIN_OK) << qilin_last_error();
        EXPECT_TRUE(more);
    }
    EXPECT_EQ(qilin_text_stream_finish(&s), QILIN_OK) << qilin_last_error();
    qilin_text_stream_free(&s);
    return run.joined();
}

class PromptThenGeneration : public ::testing::TestWithParam<Family> {};

TEST_P(PromptThenGeneration, ReadsAsTheDecodedIds) {
    const Family &f = GetParam();
    std::string path = src(f.path);
    if (std::string(f.name).rfind("deepseek", 0) == 0 && !std::ifstream(path + "/tokenizer.json").good())
        GTEST_SKIP() << "DeepSeek-V3 tokenizer.json absent: run scripts/fetch_test_data.sh";
    Tok tok(path);
    ASSERT_NE(tok.t, nullptr);
    const qilin_tokenizer *t = tok.t;
    // Texts as a prompt would be encoded (BOS added, special tokens parsed),
    // and ids no encoder makes but a model may sample: every token once in
    // a seeded random order (lone UTF-8 bytes, specials, leading spaces).
    std::vector<std::vector<int32_t>> cases;
    for (const char *text : {"Once upon a time", " leading space", "two  spaces\n\nand a newline",
                             "héllo wörld 你好 😀👍🏽 مرحبا", "<|im_start|>user\nhi<|im_end|>", "<s> [INST] x [/INST]",
                             "</s>Once", "<|endoftext|> after"}) {
        qilin_ids ids = {};
        ASSERT_EQ(qilin_tokenizer_encode(t, text, strlen(text), QILIN_ENCODE_ADD_SPECIAL | QILIN_ENCODE_PARSE_SPECIAL,
                                         &ids),
                  QILIN_OK)
            << qilin_last_error();
        cases.emplace_back(ids.ids, ids.ids + ids.n);
        qilin_ids_free(&ids);
    }
    uint64_t seed = 12;
    int vocab = qilin_tokenizer_vocab_size(t);
    for (int c = 0; c < 24; c++) {
        std::vector<int32_t> ids;
        for (int k = 0; k < 12; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            ids.push_back((int32_t)((seed >> 33) % (uint64_t)vocab));
        }
        int32_t lone_space = qilin_tokenizer_token_id(t, "\xE2\x96\x81"); // SentencePiece's "▁", if any
        if (c % 3 == 0 && lone_space >= 0) ids.insert(ids.begin(), lone_space);
        cases.push_back(ids);
    }
    size_t compared = 0;
    for (unsigned flags : {0u, (unsigned)QILIN_DECODE_SKIP_SPECIAL})
        for (const auto &ids : cases) {
            std::string want = decode_all(t, ids, flags);
            for (size_t split = 0; split <= ids.size(); split++, compared++)
                ASSERT_EQ(stream_split(t, ids, split, flags), want)
                    << f.name << ": prompt of " << split << " of " << ids.size() << " ids, flags " << flags;
        }
    printf("[ %s ] %zu prompt/generation splits read as the decoded ids\n", f.name, compared);
}

INSTANTIATE_TEST_SUITE_P(Families, PromptThenGeneration, ::testing::ValuesIn(kFamilies));

} // namespace
