// test_text_stream.cpp — generated ids to streamed text (runtime/text_stream.h):
// stop ids end the stream unseen, stop strings are cut out even when split
// over tokens, text that only looks like the start of a stop string is
// released, every emitted chunk is whole UTF-8, and the chunks add up to the
// decoded text. Tokenizers: the stories260K SentencePiece model (byte
// fallback: CJK and emoji arrive one byte token at a time) and Qwen2's
// byte-level BPE.
#include <gtest/gtest.h>

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

} // namespace
