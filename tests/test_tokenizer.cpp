// test_tokenizer.cpp — unit tests on tiny tokenizers written by the test: the byte-to-unicode
// table, merge order, added tokens, byte fallback, streaming decode, invalid UTF-8, errors;
// bounds on ids and normalizer growth (under a 1 GiB address-space limit), FIFOs, a directory
// holding only a GGUF, and the padding ids of a padded model vocabulary.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

#include "memlimit.h"
#include "runtime/text_stream.h"
#include "runtime/tokenizer.h"
#include "test_util.h"

#include <sys/stat.h>

namespace {

// A fresh directory under the system temp dir, removed with its files at the end.
struct TempDir {
    std::string path;
    std::vector<std::string> files;
    TempDir() {
        char tmpl[] = "/tmp/qilin_tok_XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() {
        for (const auto &f : files) std::remove(f.c_str());
        rmdir(path.c_str());
    }
    std::string write(const std::string &name, const std::string &text) {
        std::string p = path + "/" + name;
        std::ofstream(p, std::ios::binary) << text;
        files.push_back(p);
        return p;
    }
};

struct Tok {
    qilin_tokenizer *t = nullptr;
    ~Tok() { qilin_tokenizer_free(t); }
};

std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += (char)cp;
    } else if (cp < 0x800) {
        s += (char)(0xC0 | cp >> 6);
        s += (char)(0x80 | (cp & 0x3F));
    } else {
        s += (char)(0xE0 | cp >> 12);
        s += (char)(0x80 | ((cp >> 6) & 0x3F));
        s += (char)(0x80 | (cp & 0x3F));
    }
    return s;
}

// GPT-2's bytes_to_unicode, written out the way the paper's code builds it.
std::vector<uint32_t> byte_table() {
    std::vector<uint32_t> cp(256, 0);
    std::vector<bool> printable(256, false);
    for (int b = 33; b <= 126; b++) printable[b] = true;
    for (int b = 161; b <= 172; b++) printable[b] = true;
    for (int b = 174; b <= 255; b++) printable[b] = true;
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) cp[b] = printable[b] ? (uint32_t)b : 256 + n++;
    return cp;
}

std::string json_escape(const std::string &s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += (char)c;
        else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            o += buf;
        } else o += (char)c;
    }
    return o;
}

// A byte-level tokenizer.json: ids 0..255 are the bytes (through the table), then `extra`
// tokens made by `merges` (in order), then `added` (JSON objects without id, numbered on).
std::string bytelevel_json(const std::vector<std::pair<std::string, std::string>> &merges,
                           const std::vector<std::string> &added = {}, const std::string &pre = "") {
    auto table = byte_table();
    std::string vocab;
    int id = 0;
    for (int b = 0; b < 256; b++, id++) vocab += (id ? "," : "") + std::string("\"") + json_escape(utf8(table[b])) + "\":" + std::to_string(id);
    std::string m;
    for (const auto &mg : merges) {
        vocab += ",\"" + json_escape(mg.first + mg.second) + "\":" + std::to_string(id++);
        m += (m.empty() ? "" : ",") + std::string("\"") + json_escape(mg.first + " " + mg.second) + "\"";
    }
    std::string a;
    for (const auto &tok : added) a += (a.empty() ? "" : ",") + std::string("{\"id\":") + std::to_string(id++) + "," + tok + "}";
    std::string pre_tok = pre.empty() ? R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true})" : pre;
    return R"({"version":"1.0","added_tokens":[)" + a + R"(],"normalizer":null,"pre_tokenizer":)" + pre_tok +
           R"(,"post_processor":null,"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","dropout":null,"unk_token":null,"vocab":{)" +
           vocab + "},\"merges\":[" + m + "]}}";
}

std::vector<int32_t> enc(const qilin_tokenizer *t, const std::string &s, unsigned flags = QILIN_ENCODE_PARSE_SPECIAL) {
    qilin_ids ids = {};
    EXPECT_EQ(qilin_tokenizer_encode(t, s.data(), s.size(), flags, &ids), QILIN_OK) << qilin_last_error();
    std::vector<int32_t> v(ids.ids, ids.ids + ids.n);
    qilin_ids_free(&ids);
    return v;
}

std::string dec(const qilin_tokenizer *t, const std::vector<int32_t> &ids, unsigned flags = 0) {
    char *text = nullptr;
    size_t n = 0;
    EXPECT_EQ(qilin_tokenizer_decode(t, ids.data(), ids.size(), flags, &text, &n), QILIN_OK) << qilin_last_error();
    std::string s(text ? text : "", n);
    free(text);
    return s;
}

void load_json(TempDir &d, const std::string &json, Tok &tk) {
    d.write("tokenizer.json", json);
    QILIN_ASSERT_OK(qilin_tokenizer_load(d.path.c_str(), &tk.t));
}

TEST(Tokenizer, ByteToUnicodeTable) {
    TempDir d;
    Tok tk;
    load_json(d, bytelevel_json({}), tk);
    auto table = byte_table();
    for (int b = 0; b < 256; b++) {
        std::string s(1, (char)b);
        auto ids = enc(tk.t, s);
        ASSERT_EQ(ids.size(), 1u) << "byte " << b;
        EXPECT_EQ(ids[0], b);
        EXPECT_EQ(std::string(qilin_tokenizer_token_text(tk.t, b)), utf8(table[b])) << "byte " << b;
        EXPECT_EQ(dec(tk.t, ids), s);
    }
    EXPECT_EQ(std::string(qilin_tokenizer_token_text(tk.t, ' ')), "\xC4\xA0");  // Ġ
    EXPECT_EQ(std::string(qilin_tokenizer_token_text(tk.t, '\n')), "\xC4\x8A"); // Ċ
    EXPECT_EQ(qilin_tokenizer_vocab_size(tk.t), 256);
}

TEST(Tokenizer, MergesApplyLowestRankFirst) {
    // "abc": with b+c ranked first the result is a|bc -> abc; with a+b first, ab|c -> abc via another path.
    {
        TempDir d;
        Tok tk;
        load_json(d, bytelevel_json({{"b", "c"}, {"a", "b"}, {"a", "bc"}}), tk); // ids 256 bc, 257 ab, 258 abc
        EXPECT_EQ(enc(tk.t, "abc"), (std::vector<int32_t>{258}));
        EXPECT_EQ(enc(tk.t, "ab"), (std::vector<int32_t>{257}));
        EXPECT_EQ(enc(tk.t, "abab"), (std::vector<int32_t>{257, 257}));
    }
    {
        TempDir d;
        Tok tk;
        load_json(d, bytelevel_json({{"a", "b"}, {"b", "c"}, {"a", "bc"}}), tk); // ab first: a+bc never forms
        EXPECT_EQ(enc(tk.t, "abc"), (std::vector<int32_t>{256, 'c'}));
    }
    {
        TempDir d; // equal pairs merge leftmost first: "aaa" -> aa|a
        Tok tk;
        load_json(d, bytelevel_json({{"a", "a"}}), tk);
        EXPECT_EQ(enc(tk.t, "aaa"), (std::vector<int32_t>{256, 'a'}));
    }
}

// Split patterns' \s is Unicode White_Space as in Oniguruma, U+0085 included, whatever the
// regex engine's own \s holds. Merging bytes 85 C2 across two U+0085s shows where the pieces end: HF splits
// "x \u0085\u0085y" into x | " \u0085" | "\u0085" | y (ids from tokenizers 0.23), so the merge
// never applies; a \s without U+0085 makes " \u0085\u0085" one piece and merges inside it.
TEST(Tokenizer, SplitWhiteSpaceIncludesU0085) {
    TempDir d;
    Tok tk;
    auto table = byte_table();
    load_json(d, bytelevel_json({{utf8(table[0x85]), utf8(table[0xC2])}}), tk); // id 256: bytes 85 C2
    EXPECT_EQ(enc(tk.t, "x \xC2\x85\xC2\x85y"), (std::vector<int32_t>{'x', ' ', 0xC2, 0x85, 0xC2, 0x85, 'y'}));
    EXPECT_EQ(enc(tk.t, "\xC2\x85\xC2\x85"), (std::vector<int32_t>{0xC2, 256, 0x85})); // one piece: merged
}

TEST(Tokenizer, AddedTokensLongestMatchStripAndNeverSplit) {
    TempDir d;
    Tok tk;
    load_json(d, bytelevel_json({}, {R"("content":"<|x|>","special":true,"normalized":false)",            // 256
                                     R"("content":"<|x|>y","special":true,"normalized":false)",           // 257
                                     R"("content":"[L]","special":false,"lstrip":true,"normalized":false)",  // 258
                                     R"("content":"[R]","special":false,"rstrip":true,"normalized":false)"}), // 259
              tk);
    EXPECT_EQ(enc(tk.t, "<|x|>"), (std::vector<int32_t>{256}));
    EXPECT_EQ(enc(tk.t, "<|x|>y"), (std::vector<int32_t>{257})); // longest match wins
    EXPECT_EQ(enc(tk.t, "a<|x|>b"), (std::vector<int32_t>{'a', 256, 'b'}));
    EXPECT_EQ(enc(tk.t, "a  [L]b"), (std::vector<int32_t>{'a', 258, 'b'})); // spaces before [L] go
    EXPECT_EQ(enc(tk.t, "a[R]  b"), (std::vector<int32_t>{'a', 259, 'b'})); // spaces after [R] go
    // Without PARSE_SPECIAL the special ones are text; the plain added token is still matched.
    auto plain = enc(tk.t, "<|x|>[R]", 0);
    EXPECT_EQ(plain.size(), 6u);
    EXPECT_EQ(plain.back(), 259);
    EXPECT_TRUE(qilin_tokenizer_is_special(tk.t, 256));
    EXPECT_FALSE(qilin_tokenizer_is_special(tk.t, 258));
    EXPECT_EQ(qilin_tokenizer_token_id(tk.t, "<|x|>y"), 257);
    EXPECT_EQ(qilin_tokenizer_token_id(tk.t, "nope"), -1);
    EXPECT_EQ(dec(tk.t, {'a', 256, 'b'}), "a<|x|>b");
    EXPECT_EQ(dec(tk.t, {'a', 256, 'b'}, QILIN_DECODE_SKIP_SPECIAL), "ab");
}

// A SentencePiece-style tokenizer.json: "▁" for spaces, byte fallback, BOS by the post-processor.
std::string spm_json() {
    std::string vocab = R"("<unk>":0,"<s>":1,"</s>":2)";
    for (int b = 0; b < 256; b++) {
        char name[16];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        vocab += ",\"" + std::string(name) + "\":" + std::to_string(3 + b);
    }
    vocab += R"(,"▁":259,"h":260,"i":261,"hi":262,"▁hi":263)";
    return R"({"version":"1.0","added_tokens":[
      {"id":0,"content":"<unk>","special":true,"normalized":false},
      {"id":1,"content":"<s>","special":true,"normalized":false},
      {"id":2,"content":"</s>","special":true,"normalized":false}],
     "normalizer":null,
     "pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false},
     "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
        "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
     "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
     "model":{"type":"BPE","dropout":null,"unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,"vocab":{)" +
           vocab + R"(},"merges":[["h","i"],["▁","hi"]]}})";
}

TEST(Tokenizer, ByteFallbackAndSentencePieceSpaces) {
    TempDir d;
    Tok tk;
    load_json(d, spm_json(), tk);
    EXPECT_EQ(enc(tk.t, "hi"), (std::vector<int32_t>{263}));
    EXPECT_EQ(enc(tk.t, "hi", QILIN_ENCODE_ADD_SPECIAL), (std::vector<int32_t>{1, 263}));
    // "é" is not in the vocabulary: its two bytes, as <0xC3> <0xA9>.
    EXPECT_EQ(enc(tk.t, "hi é"), (std::vector<int32_t>{263, 259, 3 + 0xC3, 3 + 0xA9}));
    EXPECT_EQ(dec(tk.t, enc(tk.t, "hi é")), "hi é");
    EXPECT_EQ(qilin_tokenizer_bos_id(tk.t), -1); // no tokenizer_config.json
}

TEST(Tokenizer, StreamingDecodeHoldsBackPartialCharacters) {
    TempDir d;
    Tok tk;
    load_json(d, spm_json(), tk);
    qilin_detokenizer dt;
    qilin_detokenizer_init(&dt, tk.t, 0);
    char out[512];
    size_t n = 0;
    std::string all;
    // "▁hi" then "é" as two byte tokens: nothing comes out between them.
    QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 263, out, sizeof out, &n));
    EXPECT_EQ(std::string(out, n), "hi"); // SentencePiece's first space is dropped
    QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 3 + 0xC3, out, sizeof out, &n));
    EXPECT_EQ(n, 0u);
    QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 3 + 0xA9, out, sizeof out, &n));
    EXPECT_EQ(std::string(out, n), "é");
    // An emoji over four byte tokens comes out whole with the fourth.
    const unsigned char emoji[] = {0xF0, 0x9F, 0x98, 0x8A};
    for (int i = 0; i < 4; i++) {
        QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 3 + emoji[i], out, sizeof out, &n));
        if (i < 3) EXPECT_EQ(n, 0u) << "after byte " << i;
        else EXPECT_EQ(std::string(out, n), "\xF0\x9F\x98\x8A");
    }
    // A lead byte followed by something that cannot continue it is released as it is.
    QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 3 + 0xE2, out, sizeof out, &n));
    EXPECT_EQ(n, 0u);
    QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 260, out, sizeof out, &n));
    EXPECT_EQ(std::string(out, n), "\xE2h");
    QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, 3 + 0xE2, out, sizeof out, &n));
    EXPECT_EQ(qilin_detokenizer_flush(&dt, out, sizeof out), 1u);
    EXPECT_EQ((unsigned char)out[0], 0xE2);
    EXPECT_GE(qilin_tokenizer_max_token_bytes(tk.t), 3u);
}

TEST(Tokenizer, ByteLevelStreamingSplitsACharacterAcrossTokens) {
    TempDir d;
    Tok tk;
    load_json(d, bytelevel_json({}), tk);
    std::string text = "a€b"; // € is three bytes, three tokens here
    auto ids = enc(tk.t, text);
    ASSERT_EQ(ids.size(), 5u);
    qilin_detokenizer dt;
    qilin_detokenizer_init(&dt, tk.t, 0);
    std::string got;
    std::vector<size_t> sizes;
    for (int32_t id : ids) {
        char out[128];
        size_t n = 0;
        QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, id, out, sizeof out, &n));
        got.append(out, n);
        sizes.push_back(n);
    }
    EXPECT_EQ(got, text);
    EXPECT_EQ(sizes, (std::vector<size_t>{1, 0, 0, 3, 1}));
}

TEST(Tokenizer, InvalidUtf8RoundTripsOnByteLevel) {
    TempDir d;
    Tok tk;
    load_json(d, bytelevel_json({{"\xC4\xA0", "a"}}), tk);
    const std::string cases[] = {std::string("\xff\xfe abc \xc3", 7), std::string("a\x80\x80 b\xed\xa0\x80z"),
                                 std::string("\xf0\x9f\x98", 3), std::string("x\0y", 3), std::string(" a a")};
    for (const std::string &s : cases) {
        auto ids = enc(tk.t, s);
        EXPECT_EQ(dec(tk.t, ids), s);
    }
}

TEST(Tokenizer, NormalizerReplaceRegexAndNfc) {
    TempDir d;
    std::string j = bytelevel_json({});
    j.replace(j.find("\"normalizer\":null"), 17,
              R"("normalizer":{"type":"Sequence","normalizers":[{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "},{"type":"NFC"}]})");
    Tok tk;
    load_json(d, j, tk);
    EXPECT_EQ(enc(tk.t, "a \t\n b"), enc(tk.t, "a b"));
    EXPECT_EQ(dec(tk.t, enc(tk.t, "e\xCC\x81")), "\xC3\xA9"); // e + combining acute -> é
    EXPECT_EQ(dec(tk.t, enc(tk.t, "\xFF" "e\xCC\x81")), "\xFF\xC3\xA9");
}

// ---- errors name what is wrong

std::string load_error(const std::string &path) {
    qilin_tokenizer *t = nullptr;
    qilin_status st = qilin_tokenizer_load(path.c_str(), &t);
    EXPECT_NE(st, QILIN_OK);
    EXPECT_EQ(t, nullptr);
    qilin_tokenizer_free(t);
    return qilin_last_error();
}

TEST(Tokenizer, MissingDirectoryNamesTheFilesLookedFor) {
    TempDir d;
    std::string msg = load_error(d.path);
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("merges.txt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tiktoken.model"), std::string::npos) << msg;
    EXPECT_NE(load_error(d.path + "/nowhere").find("nowhere"), std::string::npos);
}

TEST(Tokenizer, MalformedJsonNamesFileAndLine) {
    TempDir d;
    d.write("tokenizer.json", "{\n \"model\": {\n  \"vocab\": {,}\n }\n}\n");
    std::string msg = load_error(d.path);
    EXPECT_NE(msg.find("tokenizer.json:3"), std::string::npos) << msg;
}

TEST(Tokenizer, UnsupportedPartsAreNamed) {
    {
        TempDir d;
        std::string j = bytelevel_json({}, {}, R"({"type":"UnicodeScripts"})");
        d.write("tokenizer.json", j);
        std::string msg = load_error(d.path);
        EXPECT_NE(msg.find("UnicodeScripts"), std::string::npos) << msg;
    }
    {
        TempDir d;
        std::string j = bytelevel_json({});
        j.replace(j.find("\"type\":\"BPE\""), 12, "\"type\":\"WordPiece\"");
        d.write("tokenizer.json", j);
        std::string msg = load_error(d.path);
        EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
    }
    {
        TempDir d;
        std::string j = bytelevel_json({});
        j.replace(j.find("\"dropout\":null"), 14, "\"dropout\":0.1");
        d.write("tokenizer.json", j);
        EXPECT_NE(load_error(d.path).find("dropout"), std::string::npos);
    }
    {
        TempDir d;
        d.write("tokenizer.model", std::string("\x0a\x05<unk>", 7)); // a SentencePiece protobuf
        EXPECT_NE(load_error(d.path).find("tokenizer.model"), std::string::npos);
    }
}

TEST(Tokenizer, VocabularyGapsAndDuplicatesAreErrors) {
    {
        TempDir d;
        std::string j = bytelevel_json({});
        j.replace(j.find("\":255"), 5, "\":300"); // ids 255..299 missing
        d.write("tokenizer.json", j);
        std::string msg = load_error(d.path);
        EXPECT_NE(msg.find("255"), std::string::npos) << msg;
    }
    {
        TempDir d;
        std::string j = bytelevel_json({});
        j.replace(j.find("\":255"), 5, "\":254");
        d.write("tokenizer.json", j);
        std::string msg = load_error(d.path);
        EXPECT_NE(msg.find("254"), std::string::npos) << msg;
    }
    {
        TempDir d; // a merge whose parts are not tokens
        std::string j = bytelevel_json({{"a", "b"}});
        j.replace(j.find("\"a b\""), 5, "\"a q!\"");
        d.write("tokenizer.json", j);
        EXPECT_NE(load_error(d.path).find("merges[0]"), std::string::npos);
    }
}

TEST(Tokenizer, ConfigGivesBosEosAndChatTemplate) {
    TempDir d;
    d.write("tokenizer_config.json", R"({"bos_token":{"content":"<s>"},"eos_token":"</s>","add_bos_token":true,
        "model_max_length":1000000000000000019884624838656,
        "chat_template":[{"name":"tool_use","template":"T"},{"name":"default","template":"{{ bos_token }}"}]})");
    std::string j = spm_json();
    j.replace(j.find("\"post_processor\""), 16, "\"post_processor_unused\"");
    Tok tk;
    load_json(d, j, tk);
    EXPECT_EQ(qilin_tokenizer_bos_id(tk.t), 1);
    EXPECT_EQ(qilin_tokenizer_eos_id(tk.t), 2);
    EXPECT_STREQ(qilin_tokenizer_bos_text(tk.t), "<s>");
    EXPECT_STREQ(qilin_tokenizer_chat_template(tk.t), "{{ bos_token }}");
    EXPECT_EQ(enc(tk.t, "hi", QILIN_ENCODE_ADD_SPECIAL), (std::vector<int32_t>{1, 263})); // add_bos_token
    Tok again; // chat_template.jinja beside it wins
    d.write("chat_template.jinja", "J");
    QILIN_ASSERT_OK(qilin_tokenizer_load((d.path + "/tokenizer.json").c_str(), &again.t));
    EXPECT_STREQ(qilin_tokenizer_chat_template(again.t), "J");
}

// ---- bounds: ids, normalizer growth, files that are not files ------------------------------
//
// A vocabulary has no gaps, so no id can reach the number of entries the files list; an id
// past it is refused before the per-id arrays grow (id 200,000,000 once cost gigabytes). Each
// case loads in a forked child under a 1 GiB address-space limit (memlimit.h).

qilin_status load_dir(const std::string &dir) {
    qilin_tokenizer *t = nullptr;
    qilin_status st = qilin_tokenizer_load(dir.c_str(), &t);
    qilin_tokenizer_free(t);
    return st;
}

TEST(TokenizerBounds, HugeIdsAreRefusedWithinOneGiB) {
    QILIN_SKIP_UNDER_ASAN();
    struct IdCase {
        const char *what, *from, *to, *config, *message;
    } cases[] = {
        {"model.vocab id", "\":255", "\":200000000", nullptr,
         "has id 200000000, but the tokenizer files list only 256 tokens"},
        {"model.vocab id past int32", "\":255", "\":4294967551", nullptr, "is not an id in 0 .. 1073741823"},
        {"added_tokens id", "\"added_tokens\":[]",
         "\"added_tokens\":[{\"id\":200000000,\"content\":\"<x>\",\"special\":true}]", nullptr,
         "\"<x>\" has id 200000000, but the tokenizer files list only 257 tokens"},
        {"added_tokens_decoder id", nullptr, nullptr,
         R"({"added_tokens_decoder":{"200000000":{"content":"<y>","special":true}}})",
         "\"<y>\" has id 200000000, but the tokenizer files list only 257 tokens"},
        {"added_tokens_decoder id past long", nullptr, nullptr,
         R"({"added_tokens_decoder":{"99999999999999999999":{"content":"<y>","special":true}}})",
         "added_tokens_decoder key \"99999999999999999999\" is not an id"},
        {"post_processor id", "\"post_processor\":null",
         R"("post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"ids":[200000000]}}})",
         nullptr, "post_processor adds id 200000000, outside the 256 tokens"},
    };
    for (const IdCase &c : cases) {
        TempDir d;
        std::string j = bytelevel_json({});
        if (c.from) j.replace(j.find(c.from), std::strlen(c.from), c.to);
        d.write("tokenizer.json", j);
        if (c.config) d.write("tokenizer_config.json", c.config);
        SCOPED_TRACE(c.what);
        EXPECT_REFUSED_WITHIN_LIMITS([&] { return load_dir(d.path); }, QILIN_ERR_FORMAT, c.message);
        EXPECT_REFUSED_WITHIN_LIMITS([&] { return load_dir(d.path); }, QILIN_ERR_FORMAT, d.path);
    }
}

TEST(TokenizerBounds, HugeTiktokenRankIsRefusedWithinOneGiB) {
    QILIN_SKIP_UNDER_ASAN();
    TempDir d;
    d.write("tiktoken.model", "IQ== 0\nIg== 200000000\n");
    EXPECT_REFUSED_WITHIN_LIMITS([&] { return load_dir(d.path); }, QILIN_ERR_FORMAT,
                                 "has id 200000000, but the tokenizer files list only 163840 tokens");
}

// Sixteen Replace steps each turning "a" into eight: 8^16 times the input unbounded. The
// normalized text may grow to 32x the input + 4096 bytes; past that the step is named.
TEST(TokenizerBounds, ChainedReplaceGrowthIsBounded) {
    QILIN_SKIP_UNDER_ASAN();
    TempDir d;
    std::string steps;
    for (int i = 0; i < 16; i++)
        steps +=
            std::string(i ? "," : "") + R"({"type":"Replace","pattern":{"String":"a"},"content":"aaaaaaaa"})";
    std::string j = bytelevel_json({});
    j.replace(j.find("\"normalizer\":null"), 17,
              R"("normalizer":{"type":"Sequence","normalizers":[)" + steps + "]}");
    Tok tk;
    load_json(d, j, tk);
    auto encode = [&](const std::string &text) {
        return [&tk, text] {
            qilin_ids ids = {};
            qilin_status st = qilin_tokenizer_encode(tk.t, text.data(), text.size(), 0, &ids);
            qilin_ids_free(&ids);
            return st;
        };
    };
    // "aaaa": 32, 256, 2048 bytes, then 16384 > 4 * 32 + 4096 at step 3.
    EXPECT_REFUSED_WITHIN_LIMITS(encode("aaaa"), QILIN_ERR_FORMAT,
                                 "normalizer step 3 (Replace) grows 4 bytes of input past 4224 bytes");
    EXPECT_REFUSED_WITHIN_LIMITS(encode(std::string(1 << 20, 'a')), QILIN_ERR_FORMAT,
                                 "normalizer step 1 (Replace)");
    EXPECT_EQ(enc(tk.t, "bcd"), (std::vector<int32_t>{'b', 'c', 'd'})); // text without "a" is untouched
}

// A decoder Replace whose content is longer than three bytes per pattern byte once overflowed
// the buffer the decoded token was built in (a token of 100 "▁" decodes to 1900 bytes).
TEST(TokenizerBounds, LongDecoderReplaceDecodesWhole) {
    TempDir d;
    std::string j = spm_json(), spaces;
    for (int i = 0; i < 100; i++) spaces += "\xE2\x96\x81";
    j.replace(j.find(R"("content":" "},{"type":"ByteFallback"})"), 13, R"("content":"<space-space-space>")");
    j.replace(j.find(R"("▁hi":263)"), 11, R"("▁hi":263,")" + spaces + "\":264");
    Tok tk;
    load_json(d, j, tk);
    std::string want;
    for (int i = 0; i < 100; i++) want += "<space-space-space>";
    EXPECT_EQ(dec(tk.t, {264}), want);
    EXPECT_EQ(dec(tk.t, {259, 259}), "<space-space-space><space-space-space>");
}

std::string fifo_in(TempDir &d, const std::string &name) {
    std::string p = d.path + "/" + name;
    EXPECT_EQ(mkfifo(p.c_str(), 0600), 0);
    d.files.push_back(p);
    return p;
}

TEST(TokenizerBounds, FifoTokenizerFilesAreRefusedAtOnce) {
    for (const char *name : {"tokenizer.json", "tiktoken.model"}) {
        TempDir d;
        std::string p = fifo_in(d, name);
        SCOPED_TRACE(name);
        EXPECT_REFUSED_AT_ONCE([&] { return load_dir(d.path); }, QILIN_ERR_IO,
                               p + ": is a FIFO, not a regular file");
    }
    for (const char *name : {"tokenizer_config.json", "chat_template.jinja"}) {
        TempDir d;
        d.write("tokenizer.json", bytelevel_json({}));
        std::string p = fifo_in(d, name);
        SCOPED_TRACE(name);
        EXPECT_REFUSED_AT_ONCE([&] { return load_dir(d.path); }, QILIN_ERR_IO,
                               p + ": is a FIFO, not a regular file");
    }
}

// A directory holding only a GGUF: the tokenizer comes from its tokenizer.ggml.* keys, as
// for the .gguf path itself (the model loader already accepts such a directory).
TEST(TokenizerBounds, DirectoryWithOnlyAGgufUsesItsTokenizer) {
    std::string fixture =
        std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/tokenizers/gguf/stories260K-vocab.gguf";
    std::ifstream in(fixture, std::ios::binary);
    ASSERT_TRUE(in) << fixture;
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    TempDir d;
    d.write("model.gguf", bytes);
    Tok from_dir, from_file;
    QILIN_ASSERT_OK(qilin_tokenizer_load(d.path.c_str(), &from_dir.t));
    QILIN_ASSERT_OK(qilin_tokenizer_load(fixture.c_str(), &from_file.t));
    EXPECT_EQ(qilin_tokenizer_vocab_size(from_dir.t), qilin_tokenizer_vocab_size(from_file.t));
    EXPECT_STREQ(qilin_tokenizer_describe(from_dir.t), qilin_tokenizer_describe(from_file.t));
    const std::string text = "Once upon a time, there was a little girl.";
    auto ids = enc(from_dir.t, text, QILIN_ENCODE_ADD_SPECIAL);
    EXPECT_EQ(ids, enc(from_file.t, text, QILIN_ENCODE_ADD_SPECIAL));
    EXPECT_GT(ids.size(), 5u);
    EXPECT_EQ(dec(from_dir.t, ids, QILIN_DECODE_SKIP_SPECIAL), text);
    const char *ta = qilin_tokenizer_chat_template(from_dir.t),
               *tb = qilin_tokenizer_chat_template(from_file.t);
    EXPECT_EQ(ta == nullptr, tb == nullptr);
    if (ta && tb) {
        EXPECT_STREQ(ta, tb);
    }
    d.write("other.gguf", bytes); // two GGUFs: which one is meant is not clear
    EXPECT_NE(load_error(d.path).find("single .gguf"), std::string::npos);
}

// Padded vocabularies: the model's embedding has rows past the tokenizer's last id. Such an
// id decodes to empty text (transformers does the same) once the detokenizer knows the
// model's vocabulary; an id past the model's vocabulary is still an error.
TEST(TokenizerBounds, PaddingIdsPastTheTokenizerDecodeToNothing) {
    TempDir d;
    Tok tk;
    load_json(d, spm_json(), tk);
    const int32_t n = qilin_tokenizer_vocab_size(tk.t), model_vocab = n + 8;
    char out[512];
    size_t got = 0;
    qilin_detokenizer plain;
    qilin_detokenizer_init(&plain, tk.t, 0);
    EXPECT_EQ(qilin_detokenizer_push(&plain, n, out, sizeof out, &got), QILIN_ERR_INVALID_ARGUMENT);
    qilin_detokenizer dt;
    qilin_detokenizer_init(&dt, tk.t, 0);
    qilin_detokenizer_set_model_vocab(&dt, model_vocab);
    std::string all;
    for (int32_t id : {263, n, n + 7, 3 + 0xC3, n + 3, 3 + 0xA9}) { // padding between the bytes of "é"
        QILIN_ASSERT_OK(qilin_detokenizer_push(&dt, id, out, sizeof out, &got));
        if (id >= n) {
            EXPECT_EQ(got, 0u) << id;
        }
        all.append(out, got);
    }
    EXPECT_EQ(all, "hi\xC3\xA9");
    EXPECT_EQ(qilin_detokenizer_push(&dt, model_vocab, out, sizeof out, &got), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("padded vocabulary"), std::string::npos)
        << qilin_last_error();
    EXPECT_EQ(qilin_detokenizer_push(&dt, -1, out, sizeof out, &got), QILIN_ERR_INVALID_ARGUMENT);

    // A padding id first: the text still starts at "▁hi", whose space is stripped as in a full decode.
    qilin_detokenizer lead;
    qilin_detokenizer_init(&lead, tk.t, 0);
    qilin_detokenizer_set_model_vocab(&lead, model_vocab);
    all.clear();
    for (int32_t id : {n + 2, 263, 263}) {
        QILIN_ASSERT_OK(qilin_detokenizer_push(&lead, id, out, sizeof out, &got));
        all.append(out, got);
    }
    EXPECT_EQ(all, "hi hi");

    // Through the text stream, as `qilin run` uses it: the stream goes on after a padding id.
    qilin_text_stream ts;
    qilin_text_stream_init(&ts, tk.t, QILIN_DECODE_SKIP_SPECIAL, nullptr, 0, nullptr, 0, nullptr, nullptr);
    qilin_text_stream_set_model_vocab(&ts, model_vocab);
    bool more = true;
    for (int32_t id : {263, n + 1, 263}) QILIN_ASSERT_OK(qilin_text_stream_push(&ts, id, &more));
    QILIN_ASSERT_OK(qilin_text_stream_finish(&ts));
    EXPECT_TRUE(more);
    EXPECT_EQ(std::string(ts.text, ts.n_text), "hi hi");
    qilin_text_stream_free(&ts);
}

} // namespace
