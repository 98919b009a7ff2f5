// test_serve.cpp — `qilin serve` (runtime/serve/) in-process on a free
// loopback port, stories260K in fp32 on the sim, greedy, with a minimal HTTP
// client over a socket. Asserts: completions (text, token ids, streamed and
// not) equal the model's tokens generated alone through
// qilin_generate_stream; the SSE framing is exactly OpenAI's (data: lines,
// role first, finish_reason last, usage chunk, [DONE]); usage counts match
// the tokenizer; 4 concurrent requests each equal their run alone; every
// error case returns its status and an OpenAI error object naming the field;
// a full server answers 429; clients that disconnect mid-stream get their
// requests cancelled (the engine goes back to idle); a bounded load with
// disconnects keeps every other answer exact; <think> splitting; tools are
// rendered through the template, validated field by field, and generated
// tool calls come out as OpenAI tool_calls (whole and as streamed deltas),
// malformed ones as plain content.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "golden.h"
#include "host/forward.h"
#include "runtime/chat.h"
#include "runtime/serve/serve.h"
extern "C" {
#include "runtime/serve/serve_internal.h" /* serve_split_reasoning, serve_parse_generation, ... */
}
#include "runtime/tokenizer.h"
#include "test_util.h"

namespace {

const char *kKey = "test-key";

struct Reply {
    int status = 0;
    std::string headers, body;
};

int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

std::string request_text(const std::string &method, const std::string &path, const std::string &body,
                         const std::string &extra_headers, bool with_key) {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (with_key) r += std::string("Authorization: Bearer ") + kKey + "\r\n";
    if (method == "POST") r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    return r + extra_headers + "\r\n" + body;
}

bool send_all(int fd, const std::string &s) {
    for (size_t off = 0; off < s.size();) {
        ssize_t k = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (k <= 0) return false;
        off += (size_t)k;
    }
    return true;
}

std::string dechunk(const std::string &raw) {
    std::string out;
    for (size_t p = 0; p < raw.size();) {
        size_t eol = raw.find("\r\n", p);
        if (eol == std::string::npos) break;
        size_t n = strtoul(raw.substr(p, eol - p).c_str(), nullptr, 16);
        if (n == 0) break;
        out += raw.substr(eol + 2, n);
        p = eol + 2 + n + 2;
    }
    return out;
}

Reply http(int port, const std::string &method, const std::string &path, const std::string &body = "",
           const std::string &extra_headers = "", bool with_key = true) {
    Reply r;
    int fd = connect_to(port);
    if (fd < 0 || !send_all(fd, request_text(method, path, body, extra_headers, with_key))) {
        if (fd >= 0) close(fd);
        return r;
    }
    std::string raw;
    char buf[65536];
    for (ssize_t k; (k = recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, (size_t)k);
    close(fd);
    size_t end = raw.find("\r\n\r\n");
    if (end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ")) return r;
    r.status = atoi(raw.c_str() + 9);
    r.headers = raw.substr(0, end);
    r.body = raw.substr(end + 4);
    if (r.headers.find("Transfer-Encoding: chunked") != std::string::npos) r.body = dechunk(r.body);
    return r;
}

json_t *parse(const std::string &s) { return json_loadb(s.data(), s.size(), 0, nullptr); }

std::string str(json_t *o, const char *path1, const char *path2 = nullptr) {
    json_t *v = json_object_get(o, path1);
    if (path2) v = json_object_get(v, path2);
    return json_is_string(v) ? json_string_value(v) : std::string("<not a string>");
}

long long num(json_t *o, const char *a, const char *b) {
    return json_integer_value(json_object_get(json_object_get(o, a), b));
}

/* SSE body -> the JSON payloads of its events; checks each event is exactly
 * "data: PAYLOAD\n\n" and that the last is [DONE]. */
std::vector<json_t *> events(const std::string &body, bool *framed) {
    std::vector<json_t *> out;
    *framed = true;
    size_t p = 0;
    bool done = false;
    while (p < body.size()) {
        size_t end = body.find("\n\n", p);
        if (end == std::string::npos || body.compare(p, 6, "data: ") || done) {
            *framed = false;
            break;
        }
        std::string payload = body.substr(p + 6, end - p - 6);
        if (payload.find('\n') != std::string::npos) *framed = false;
        if (payload == "[DONE]") done = true;
        else out.push_back(parse(payload));
        p = end + 2;
    }
    if (!done) *framed = false;
    return out;
}

class Serve : public testing::Test {
  protected:
    static qilin_model *model_, *alone_model_;
    static qilin_tokenizer *tok_;
    static qilin_chat_template *tpl_;
    static qilin_server *server_;
    static int port_;

    static void SetUpTestSuite() {
        std::string dir = std::string(QILIN_SOURCE_DIR) + "/models/stories260K";
        qilin_model_options o;
        qilin_model_options_default(&o);
        o.dtype = QILIN_F32, o.max_seqs = 4, o.max_ctx = 64, o.max_batch_tokens = 64;
        std::string tpl = std::string(QILIN_SOURCE_DIR) +
                          "/tests/fixtures/chat/templates/chat_template.Mistral-7B-Instruct-v0.1.jinja";
        if (qilin_tokenizer_load(dir.c_str(), &tok_) != QILIN_OK ||
            qilin_chat_template_load(nullptr, tpl.c_str(), &tpl_) != QILIN_OK ||
            qilin_model_load(dir.c_str(), &o, &model_) != QILIN_OK)
            return;
        o.max_seqs = 1;
        if (qilin_model_load(dir.c_str(), &o, &alone_model_) != QILIN_OK) return;
        qilin_server_options so{};
        so.model_name = "stories", so.api_key = kKey, so.port = 0, so.max_waiting = 2, so.max_body_bytes = 1 << 16;
        if (qilin_server_start(model_, tok_, tpl_, &so, &server_) == QILIN_OK) port_ = qilin_server_port(server_);
    }
    static void TearDownTestSuite() {
        qilin_server_stop(server_);
        qilin_model_free(model_);
        qilin_model_free(alone_model_);
        qilin_chat_template_free(tpl_);
        qilin_tokenizer_free(tok_);
    }
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(1);
        ASSERT_NE(server_, nullptr) << qilin_last_error();
    }

    /* Greedy continuation of ids alone through qilin_generate_stream. */
    static std::vector<int> alone(const std::vector<int> &prompt, int n) {
        std::vector<int> out;
        const int *prompts[1] = {prompt.data()};
        int len = (int)prompt.size();
        qilin_sampling_params p{0, 0, 1, 0, 1, 0, 0, 0, 0};
        auto collect = [](void *user, int, int token) {
            static_cast<std::vector<int> *>(user)->push_back(token);
            return true;
        };
        EXPECT_EQ(qilin_generate_stream(alone_model_, 1, prompts, &len, &p, n, collect, &out), QILIN_OK)
            << qilin_last_error();
        return out;
    }
    static std::string decode(const std::vector<int> &ids) {
        std::vector<int32_t> v(ids.begin(), ids.end());
        char *text = nullptr;
        size_t n = 0;
        EXPECT_EQ(qilin_tokenizer_decode(tok_, v.data(), v.size(), QILIN_DECODE_SKIP_SPECIAL, &text, &n), QILIN_OK);
        std::string s(text ? text : "", n);
        free(text);
        return s;
    }
    /* The text of gen as it reads after prompt (a SentencePiece space at the join is kept). */
    static std::string continuation(const std::vector<int> &prompt, const std::vector<int> &gen) {
        std::vector<int> all = prompt;
        all.insert(all.end(), gen.begin(), gen.end());
        return decode(all).substr(decode(prompt).size());
    }
    static std::string ids_json(const std::vector<int> &ids) {
        std::string s = "[";
        for (size_t i = 0; i < ids.size(); i++) s += (i ? "," : "") + std::to_string(ids[i]);
        return s + "]";
    }
    /* Waits (60 s at most) until the server holds no job and the engine is idle. */
    static bool back_to_idle() {
        for (int i = 0; i < 1200; i++) { /* 60 s: only a hang reaches it */
            qilin_server_stats st;
            qilin_server_get_stats(server_, &st);
            if (st.jobs == 0 && st.running == 0 && st.waiting == 0 && st.queued == 0 &&
                st.engine.free_blocks == st.engine.num_blocks)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }
};
qilin_model *Serve::model_, *Serve::alone_model_;
qilin_tokenizer *Serve::tok_;
qilin_chat_template *Serve::tpl_;
qilin_server *Serve::server_;
int Serve::port_;

const std::vector<int> kPrompt = {1, 403, 407, 261, 378, 430, 274, 9, 402, 268, 437};

TEST_F(Serve, CompletionEqualsGenerationAlone) {
    std::vector<int> want = alone(kPrompt, 5);
    Reply r = http(port_, "POST", "/v1/completions",
                   R"({"model": "stories", "prompt": )" + ids_json(kPrompt) +
                       R"(, "max_tokens": 5, "temperature": 0, "ignore_eos": true})");
    ASSERT_EQ(r.status, 200) << r.body;
    json_t *o = parse(r.body);
    ASSERT_NE(o, nullptr) << r.body;
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    EXPECT_EQ(str(o, "object"), "text_completion");
    EXPECT_EQ(str(choice, "text"), continuation(kPrompt, want));
    EXPECT_EQ(str(choice, "finish_reason"), "length");
    EXPECT_EQ(num(o, "usage", "prompt_tokens"), (long long)kPrompt.size());
    EXPECT_EQ(num(o, "usage", "completion_tokens"), 5);
    EXPECT_EQ(num(o, "usage", "total_tokens"), (long long)kPrompt.size() + 5);
    json_decref(o);
}

TEST_F(Serve, TextPromptUsageMatchesTokenizerAndRun) {
    /* `qilin run -p "Once upon a time"` prints this continuation (tests/CMakeLists.txt cli_run_story) */
    Reply r = http(port_, "POST", "/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0})");
    ASSERT_EQ(r.status, 200) << r.body;
    json_t *o = parse(r.body);
    std::string text = str(json_array_get(json_object_get(o, "choices"), 0), "text");
    EXPECT_EQ(std::string(", there was a little girl named Lily").compare(0, text.size(), text), 0) << text;
    EXPECT_GE(text.size(), 16u);
    EXPECT_EQ(num(o, "usage", "completion_tokens"), 6);
    qilin_ids ids = {};
    ASSERT_EQ(qilin_tokenizer_encode(tok_, "Once upon a time", 16, QILIN_ENCODE_ADD_SPECIAL | QILIN_ENCODE_PARSE_SPECIAL,
                                     &ids), QILIN_OK);
    EXPECT_EQ(num(o, "usage", "prompt_tokens"), (long long)ids.n);
    qilin_ids_free(&ids);
    json_decref(o);
    Reply t = http(port_, "POST", "/tokenize", R"({"prompt": "Once upon a time"})");
    ASSERT_EQ(t.status, 200) << t.body;
    json_t *tj = parse(t.body);
    EXPECT_EQ(json_integer_value(json_object_get(tj, "count")), 5);
    EXPECT_EQ(json_integer_value(json_object_get(tj, "max_model_len")), 64);
    char *token_list = json_dumps(json_object_get(tj, "tokens"), 0);
    ASSERT_NE(token_list, nullptr);
    std::string detok_body = "{\"tokens\": " + std::string(token_list) + "}";
    free(token_list);
    Reply d = http(port_, "POST", "/detokenize", detok_body);
    json_t *dj = parse(d.body);
    EXPECT_EQ(str(dj, "prompt"), "<s> Once upon a time") << d.body;
    json_decref(tj), json_decref(dj);
}

TEST_F(Serve, StreamedCompletionFramingAndText) {
    std::vector<int> want = alone(kPrompt, 5);
    Reply r = http(port_, "POST", "/v1/completions",
                   R"({"prompt": )" + ids_json(kPrompt) + R"(, "max_tokens": 5, "temperature": 0, "ignore_eos": true,
                        "stream": true, "stream_options": {"include_usage": true}})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.headers.find("Content-Type: text/event-stream"), std::string::npos) << r.headers;
    bool framed = false;
    std::vector<json_t *> ev = events(r.body, &framed);
    EXPECT_TRUE(framed) << r.body;
    ASSERT_GE(ev.size(), 2u);
    std::string text;
    for (size_t i = 0; i + 1 < ev.size(); i++) {
        json_t *c = json_array_get(json_object_get(ev[i], "choices"), 0);
        ASSERT_NE(c, nullptr) << i;
        text += str(c, "text");
        bool last = i + 2 == ev.size();
        json_t *fr = json_object_get(c, "finish_reason");
        EXPECT_EQ(json_is_null(fr), !last) << "only the last choice chunk carries finish_reason (" << i << ")";
        EXPECT_TRUE(json_is_null(json_object_get(ev[i], "usage")));
    }
    EXPECT_EQ(text, continuation(kPrompt, want));
    json_t *usage = ev.back();
    EXPECT_EQ(json_array_size(json_object_get(usage, "choices")), 0u);
    EXPECT_EQ(num(usage, "usage", "completion_tokens"), 5);
    EXPECT_EQ(num(usage, "usage", "prompt_tokens"), (long long)kPrompt.size());
    for (json_t *e : ev) json_decref(e);
}

TEST_F(Serve, StreamedChatRoleFirstAndUsageEqualsTokenize) {
    const std::string messages = R"([{"role": "user", "content": "Tell me about a cat."}])";
    Reply t = http(port_, "POST", "/tokenize", R"({"messages": )" + messages + "}");
    ASSERT_EQ(t.status, 200) << t.body;
    json_t *tj = parse(t.body);
    long long prompt_tokens = json_integer_value(json_object_get(tj, "count"));
    json_decref(tj);
    Reply s = http(port_, "POST", "/v1/chat/completions",
                   R"({"messages": )" + messages + R"(, "max_tokens": 5, "temperature": 0, "stream": true,
                        "stream_options": {"include_usage": true}})");
    Reply n = http(port_, "POST", "/v1/chat/completions",
                   R"({"messages": )" + messages + R"(, "max_completion_tokens": 5, "temperature": 0})");
    ASSERT_EQ(s.status, 200) << s.body;
    ASSERT_EQ(n.status, 200) << n.body;
    bool framed = false;
    std::vector<json_t *> ev = events(s.body, &framed);
    EXPECT_TRUE(framed) << s.body;
    ASSERT_GE(ev.size(), 3u);
    json_t *first = json_object_get(json_array_get(json_object_get(ev[0], "choices"), 0), "delta");
    EXPECT_EQ(str(first, "role"), "assistant");
    EXPECT_EQ(str(first, "content"), "");
    std::string text;
    for (size_t i = 1; i + 1 < ev.size(); i++) {
        json_t *d = json_object_get(json_array_get(json_object_get(ev[i], "choices"), 0), "delta");
        EXPECT_EQ(json_object_get(d, "role"), nullptr) << "role only in the first chunk";
        if (json_is_string(json_object_get(d, "content"))) text += str(d, "content");
        EXPECT_EQ(str(ev[i], "object"), "chat.completion.chunk");
    }
    EXPECT_EQ(num(ev.back(), "usage", "prompt_tokens"), prompt_tokens);
    json_t *o = parse(n.body);
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    EXPECT_EQ(str(json_object_get(choice, "message"), "content"), text) << "streamed == not streamed";
    EXPECT_EQ(str(json_object_get(choice, "message"), "role"), "assistant");
    EXPECT_EQ(num(o, "usage", "prompt_tokens"), prompt_tokens);
    EXPECT_EQ(num(o, "usage", "completion_tokens"), num(ev.back(), "usage", "completion_tokens"));
    json_decref(o);
    for (json_t *e : ev) json_decref(e);
}

TEST_F(Serve, StopStringEndsTheTextUnprinted) {
    Reply r = http(port_, "POST", "/v1/completions",
                   R"({"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0, "stop": [" named", "zzz"]})");
    ASSERT_EQ(r.status, 200) << r.body;
    json_t *o = parse(r.body);
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    EXPECT_EQ(str(choice, "text"), ", there was a little girl");
    EXPECT_EQ(str(choice, "finish_reason"), "stop");
    json_decref(o);
}

TEST_F(Serve, ConcurrentRequestsEachEqualTheirRunAlone) {
    std::vector<std::vector<int>> prompts = {{1, 403, 407, 261}, {1, 45, 120, 7, 213, 88, 19}, kPrompt, {1, 300, 301}};
    std::vector<std::string> want, got(prompts.size());
    for (auto &p : prompts) want.push_back(continuation(p, alone(p, 4)));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < prompts.size(); i++)
        threads.emplace_back([&, i] {
            Reply r = http(port_, "POST", "/v1/completions",
                           R"({"prompt": )" + ids_json(prompts[i]) + R"(, "max_tokens": 4, "temperature": 0,
                                "ignore_eos": true, "stream": )" + (i % 2 ? "true" : "false") + "}");
            if (i % 2 == 0) {
                json_t *o = parse(r.body);
                got[i] = str(json_array_get(json_object_get(o, "choices"), 0), "text");
                json_decref(o);
                return;
            }
            bool framed = false;
            for (json_t *e : events(r.body, &framed)) {
                got[i] += str(json_array_get(json_object_get(e, "choices"), 0), "text");
                json_decref(e);
            }
        });
    for (auto &t : threads) t.join();
    for (size_t i = 0; i < prompts.size(); i++) EXPECT_EQ(got[i], want[i]) << "request " << i;
    EXPECT_TRUE(back_to_idle());
}

struct ErrorCase {
    const char *name, *method, *path, *body, *headers;
    bool key;
    int status;
    const char *param;   /* expected "param" ("" = null) */
    const char *message; /* a part of the message */
};

TEST_F(Serve, ErrorsAreOpenAIErrorObjects) {
    const ErrorCase cases[] = {
        {"malformed JSON", "POST", "/v1/completions", "{\"prompt\": ", "", true, 400, "", "malformed JSON"},
        {"not an object", "POST", "/v1/chat/completions", "[1]", "", true, 400, "", "JSON object"},
        {"wrong type", "POST", "/v1/completions", R"({"prompt": "a", "temperature": "hot"})", "", true, 400,
         "temperature", "expected a number"},
        {"wrong type int", "POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 2.5})", "", true, 400,
         "max_tokens", "expected an integer"},
        {"out of range", "POST", "/v1/completions", R"({"prompt": "a", "top_p": 1.5})", "", true, 400, "top_p",
         "out of range"},
        {"no prompt", "POST", "/v1/completions", R"({"max_tokens": 2})", "", true, 400, "prompt", "expected"},
        {"bad message", "POST", "/v1/chat/completions", R"({"messages": [{"content": "x"}]})", "", true, 400,
         "messages", "role"},
        {"token id", "POST", "/v1/completions", R"({"prompt": [1, 99999]})", "", true, 400, "prompt", "[0, 512)"},
        {"unknown model", "POST", "/v1/completions", R"({"model": "gpt-4", "prompt": "a"})", "", true, 404, "model",
         "gpt-4"},
        {"no key", "POST", "/v1/completions", R"({"prompt": "a"})", "", false, 401, "", "API key"},
        {"wrong key", "GET", "/v1/models", "", "Authorization: Bearer nope\r\n", false, 401, "", "API key"},
        {"context", "POST", "/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 60})", "", true, 400,
         "max_tokens", "maximum context length is 64 tokens. However, you requested 65 tokens (5 in the prompt, 60"},
        {"penalty", "POST", "/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 2.5})", "", true, 400,
         "frequency_penalty", "out of range"},
        {"presence type", "POST", "/v1/completions", R"({"prompt": "a", "presence_penalty": "lots"})", "", true, 400,
         "presence_penalty", "expected a number"},
        {"n", "POST", "/v1/completions", R"({"prompt": "a", "n": 17})", "", true, 400, "n", "out of range"},
        {"n type", "POST", "/v1/completions", R"({"prompt": "a", "n": "2"})", "", true, 400, "n", "expected an integer"},
        {"logprobs", "POST", "/v1/completions", R"({"prompt": "a", "logprobs": 21})", "", true, 400, "logprobs",
         "out of range"},
        {"logprobs type", "POST", "/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 2})", "", true, 400, "logprobs",
         "expected a boolean"},
        {"top_logprobs alone", "POST", "/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "", true, 400, "top_logprobs",
         "need \"logprobs\": true"},
        {"top_logprobs range", "POST", "/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21})", "", true, 400,
         "top_logprobs", "out of range"},
        {"stop type", "POST", "/v1/completions", R"({"prompt": "a", "stop": [1]})", "", true, 400, "stop", "stop[0]"},
        {"duplicate key", "POST", "/v1/completions", R"({"prompt": "a", "prompt": "b"})", "", true, 400, "",
         "duplicate"},
        {"no route", "GET", "/v2/nothing", "", "", true, 404, "", "no route"},
        {"method", "GET", "/v1/completions", "", "", true, 405, "", "use POST"},
        {"detokenize", "POST", "/detokenize", R"({"tokens": [1, -4]})", "", true, 400, "tokens", "tokens[1]"},
        /* hostile or careless bodies: each refused, none disturbs the server */
        {"NUL in a string", "POST", "/v1/completions", R"({"prompt": "a\u0000b"})", "", true, 400, "", "malformed"},
        {"invalid UTF-8", "POST", "/v1/completions", "{\"prompt\": \"\xff\xfe\"}", "", true, 400, "", "malformed"},
        {"empty id list", "POST", "/v1/completions", R"({"prompt": []})", "", true, 400, "prompt", "expected"},
        {"prompt batch", "POST", "/v1/completions", R"({"prompt": ["a", "b"]})", "", true, 400, "prompt", "batch"},
        {"max_tokens 0", "POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 0})", "", true, 400,
         "max_tokens", "out of range"},
        {"max_tokens huge", "POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 99999999999999})", "", true,
         400, "max_tokens", "out of range"},
        {"temperature huge", "POST", "/v1/completions", R"({"prompt": "a", "temperature": 1e308})", "", true, 400,
         "temperature", "out of range"},
        {"top_k", "POST", "/v1/completions", R"({"prompt": "a", "top_k": -2})", "", true, 400, "top_k", "out of range"},
        {"repetition_penalty", "POST", "/v1/completions", R"({"prompt": "a", "repetition_penalty": 0})", "", true, 400,
         "repetition_penalty", "out of range"},
        {"too many stops", "POST", "/v1/completions",
         R"({"prompt": "a", "stop": ["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]})",
         "", true, 400, "stop", "at most 16"},
        {"stream type", "POST", "/v1/completions", R"({"prompt": "a", "stream": "yes"})", "", true, 400, "stream",
         "boolean"},
        {"stream_options alone", "POST", "/v1/completions", R"({"prompt": "a", "stream_options": {"include_usage": true}})",
         "", true, 400, "stream_options", "stream: true"},
        {"model type", "POST", "/v1/completions", R"({"prompt": "a", "model": 5})", "", true, 400, "model", "string"},
        {"no messages", "POST", "/v1/chat/completions", R"({"messages": []})", "", true, 400, "messages", "non-empty"},
        {"messages string", "POST", "/v1/chat/completions", R"({"messages": "hi"})", "", true, 400, "messages", ""},
        {"image part", "POST", "/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})", "", true,
         400, "messages", "content[0]"},
        {"content number", "POST", "/v1/chat/completions", R"({"messages": [{"role": "user", "content": 7}]})", "", true,
         400, "messages", "content"},
        {"tools", "POST", "/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", "", true, 400,
         "tools[0]", "expected {\"type\": \"function\""},
    };
    for (const ErrorCase &c : cases) {
        Reply r = http(port_, c.method, c.path, c.body, c.headers, c.key);
        EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
        json_t *o = parse(r.body);
        json_t *e = json_object_get(o, "error");
        ASSERT_TRUE(json_is_object(e)) << c.name << ": " << r.body;
        EXPECT_NE(str(e, "message").find(c.message), std::string::npos) << c.name << ": " << r.body;
        EXPECT_TRUE(json_is_string(json_object_get(e, "type"))) << c.name;
        EXPECT_EQ(json_integer_value(json_object_get(e, "code")), c.status) << c.name;
        json_t *param = json_object_get(e, "param");
        if (*c.param) EXPECT_EQ(str(e, "param"), c.param) << c.name;
        else EXPECT_TRUE(json_is_null(param)) << c.name << ": " << r.body;
        json_decref(o);
    }
    /* a body over the limit (64 KiB here): 413, announced by Content-Length or not */
    std::string big = R"({"prompt": ")" + std::string(100000, 'a') + "\"}";
    Reply r = http(port_, "POST", "/v1/completions", big);
    EXPECT_EQ(r.status, 413) << r.body;
    json_t *o = parse(r.body);
    EXPECT_TRUE(json_is_object(json_object_get(o, "error"))) << r.body;
    json_decref(o);
    /* nesting far past the parser's depth limit */
    Reply deep = http(port_, "POST", "/v1/completions", std::string(30000, '[') + std::string(30000, ']'));
    EXPECT_EQ(deep.status, 400) << deep.body.substr(0, 200);
    /* the server still serves */
    EXPECT_EQ(http(port_, "GET", "/health").status, 200);
    EXPECT_TRUE(back_to_idle());
}

/* Opens a streamed completion and reads until the response headers arrived
 * (sent once the engine took the request); returns the socket, still open. */
int open_stream(int port, int max_tokens) {
    int fd = connect_to(port);
    std::string body = R"({"prompt": "Once upon a time", "temperature": 0, "ignore_eos": true, "stream": true, "max_tokens": )" +
                       std::to_string(max_tokens) + "}";
    if (fd < 0 || !send_all(fd, request_text("POST", "/v1/completions", body, "", true))) return -1;
    std::string raw;
    char buf[4096];
    while (raw.find("\r\n\r\n") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 20000) <= 0) break;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) break;
        raw.append(buf, (size_t)k);
    }
    return fd;
}

TEST_F(Serve, FullServerAnswers429AndDisconnectsCancel) {
    /* 4 running + 2 waiting fill it; paused, none can finish meanwhile */
    qilin_server_pause(server_, true);
    std::vector<int> fds;
    for (int i = 0; i < 6; i++) fds.push_back(open_stream(port_, 50));
    for (int fd : fds) ASSERT_GE(fd, 0);
    qilin_server_stats st;
    qilin_server_get_stats(server_, &st);
    EXPECT_EQ(st.jobs, 6);
    Reply r = http(port_, "POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 1})");
    EXPECT_EQ(r.status, 429) << r.body;
    json_t *o = parse(r.body);
    EXPECT_TRUE(json_is_object(json_object_get(o, "error"))) << r.body;
    json_decref(o);
    for (int fd : fds) close(fd); /* mid-stream */
    EXPECT_TRUE(back_to_idle()) << "the disconnected requests were not cancelled";
    qilin_server_stats after;
    qilin_server_get_stats(server_, &after);
    EXPECT_EQ(after.engine.requests_cancelled - st.engine.requests_cancelled, 6u);
    EXPECT_EQ(after.engine.requests_finished, st.engine.requests_finished);
    qilin_server_pause(server_, false);
    /* and it serves again */
    Reply ok = http(port_, "POST", "/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 2, "temperature": 0})");
    EXPECT_EQ(ok.status, 200) << ok.body;
}

/* A bounded load: 12 requests from 6 clients at once (4 run, 2 wait), a
 * quarter of them disconnecting after their first event; every other one
 * (retried on 429 while the server is full) gets the text it gets alone, and
 * afterwards nothing runs, waits or holds a KV block. */
TEST_F(Serve, LoadWithDisconnectsKeepsEveryAnswer) {
    std::vector<std::vector<int>> prompts = {{1, 403, 407, 261}, {1, 45, 120, 7}, {1, 300, 301, 302, 303}};
    std::vector<std::string> want;
    for (auto &p : prompts) want.push_back(continuation(p, alone(p, 3)));
    const int n = 12;
    std::vector<std::string> got(n);
    std::atomic<int> next{0};
    auto client = [&] {
        for (int i; (i = next++) < n;) {
            const std::vector<int> &p = prompts[i % 3];
            std::string body = R"({"prompt": )" + ids_json(p) + R"(, "max_tokens": 3, "temperature": 0, "ignore_eos": true,
                                   "stream": )" + (i % 2 ? "true" : "false") + "}";
            if (i % 4 == 3) { /* streamed (i odd): leave after the headers */
                int fd = -1;
                for (int tries = 0; tries < 400 && fd < 0; tries++) {
                    fd = connect_to(port_);
                    std::string raw;
                    char buf[4096];
                    send_all(fd, request_text("POST", "/v1/completions", body, "", true));
                    while (raw.find("\r\n\r\n") == std::string::npos) {
                        ssize_t k = recv(fd, buf, sizeof buf, 0);
                        if (k <= 0) break;
                        raw.append(buf, (size_t)k);
                    }
                    if (raw.compare(0, 12, "HTTP/1.1 200")) {
                        close(fd), fd = -1;
                        std::this_thread::sleep_for(std::chrono::milliseconds(50));
                    }
                }
                if (fd >= 0) close(fd);
                got[i] = "cancelled";
                continue;
            }
            Reply r;
            for (int tries = 0; tries < 400; tries++) {
                r = http(port_, "POST", "/v1/completions", body);
                if (r.status != 429) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            if (r.status != 200) {
                got[i] = "status " + std::to_string(r.status) + ": " + r.body;
                continue;
            }
            if (i % 2 == 0) {
                json_t *o = parse(r.body);
                got[i] = str(json_array_get(json_object_get(o, "choices"), 0), "text");
                json_decref(o);
                continue;
            }
            bool framed = false;
            for (json_t *e : events(r.body, &framed)) {
                json_t *c = json_array_get(json_object_get(e, "choices"), 0);
                if (c) got[i] += str(c, "text");
                json_decref(e);
            }
            if (!framed) got[i] += " (badly framed)";
        }
    };
    std::vector<std::thread> clients;
    for (int c = 0; c < 6; c++) clients.emplace_back(client);
    for (auto &t : clients) t.join();
    for (int i = 0; i < n; i++) EXPECT_EQ(got[i], i % 4 == 3 ? "cancelled" : want[i % 3]) << "request " << i;
    EXPECT_TRUE(back_to_idle());
}

TEST_F(Serve, ModelsHealthMetrics) {
    Reply m = http(port_, "GET", "/v1/models");
    ASSERT_EQ(m.status, 200);
    json_t *o = parse(m.body);
    EXPECT_EQ(str(json_array_get(json_object_get(o, "data"), 0), "id"), "stories");
    json_decref(o);
    EXPECT_EQ(http(port_, "GET", "/health", "", "", false).status, 200);
    Reply p = http(port_, "GET", "/", "", "", false);
    EXPECT_EQ(p.status, 200);
    EXPECT_NE(p.body.find("/v1/chat/completions"), std::string::npos);
    ASSERT_EQ(http(port_, "POST", "/v1/completions", R"({"prompt": "Once", "max_tokens": 3, "temperature": 0})").status, 200);
    ASSERT_TRUE(back_to_idle());
    Reply x = http(port_, "GET", "/metrics", "", "", false);
    ASSERT_EQ(x.status, 200);
    const char *names[] = {"qilin:num_requests_running{model_name=\"stories\"} 0\n",
                           "qilin:num_requests_waiting{model_name=\"stories\"} 0\n",
                           "qilin:kv_cache_usage_perc{model_name=\"stories\"} 0\n",
                           "qilin:prefix_cache_hit_rate", "qilin:prompt_tokens_total", "qilin:generation_tokens_total",
                           "qilin:time_to_first_token_seconds_bucket{model_name=\"stories\",le=\"+Inf\"}",
                           "qilin:inter_token_latency_seconds_count", "qilin:e2e_request_latency_seconds_sum",
                           "# TYPE qilin:time_to_first_token_seconds histogram"};
    for (const char *n : names) EXPECT_NE(x.body.find(n), std::string::npos) << n << "\n" << x.body;
}

/* ---- logprobs ---- */

/* float64 log-softmax of the logits qilin_forward gives (alone, all_logits) at each generated position. */
std::vector<std::vector<double>> reference_logprobs(qilin_model *m, const std::vector<int> &prompt,
                                                    const std::vector<int> &gen) {
    std::vector<int> all = prompt;
    all.insert(all.end(), gen.begin(), gen.end());
    int n = (int)all.size() - 1, slot = 0, start = 0, vocab = qilin_model_get_desc(m)->vocab;
    std::vector<float> logits((size_t)n * vocab);
    qilin_batch b{1, &slot, &start, &n, all.data(), true, nullptr};
    EXPECT_EQ(qilin_forward(m, &b, logits.data()), QILIN_OK) << qilin_last_error();
    std::vector<std::vector<double>> out;
    for (size_t t = 0; t < gen.size(); t++) {
        const float *row = &logits[(prompt.size() - 1 + t) * vocab];
        double max = -INFINITY, sum = 0;
        for (int i = 0; i < vocab; i++) max = std::max(max, (double)row[i]);
        for (int i = 0; i < vocab; i++) sum += std::exp((double)row[i] - max);
        std::vector<double> lp(vocab);
        for (int i = 0; i < vocab; i++) lp[i] = (double)row[i] - max - std::log(sum);
        out.push_back(lp);
    }
    return out;
}

TEST_F(Serve, CompletionLogprobsEqualTheForwardsLogSoftmax) {
    const int n = 6, k = 3;
    std::string body = R"({"prompt": )" + ids_json(kPrompt) + R"(, "max_tokens": 6, "temperature": 0, "logprobs": 3})";
    Reply r = http(port_, "POST", "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    std::vector<int> gen = alone(kPrompt, n);
    std::vector<std::vector<double>> ref = reference_logprobs(alone_model_, kPrompt, gen);
    json_t *o = parse(r.body), *choice = json_array_get(json_object_get(o, "choices"), 0);
    json_t *lp = json_object_get(choice, "logprobs");
    json_t *tokens = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"),
           *tops = json_object_get(lp, "top_logprobs"), *offsets = json_object_get(lp, "text_offset");
    ASSERT_EQ(json_array_size(tokens), (size_t)n) << r.body;
    std::string joined;
    for (int t = 0; t < n; t++) {
        EXPECT_EQ((int)json_integer_value(json_array_get(offsets, t)), (int)joined.size());
        joined += json_string_value(json_array_get(tokens, t));
        EXPECT_NEAR(json_real_value(json_array_get(lps, t)), ref[t][gen[t]], 1e-4) << "token " << t;
        json_t *top = json_array_get(tops, t);
        EXPECT_EQ(json_object_size(top), (size_t)k);
        /* greedy: the chosen token is the most likely alternative */
        double best = -INFINITY;
        const char *key;
        json_t *v;
        json_object_foreach(top, key, v) best = std::max(best, json_real_value(v));
        EXPECT_NEAR(best, ref[t][gen[t]], 1e-4);
    }
    EXPECT_EQ(joined, str(choice, "text")); /* the tokens spell the text */
    json_decref(o);
}

TEST_F(Serve, ChatLogprobsStreamedEqualNotStreamed) {
    const std::string req = R"({"messages": [{"role": "user", "content": "Tell me about a cat."}], "max_tokens": 5,
        "temperature": 0, "logprobs": true, "top_logprobs": 2)";
    Reply whole = http(port_, "POST", "/v1/chat/completions", req + "}");
    ASSERT_EQ(whole.status, 200) << whole.body;
    json_t *o = parse(whole.body);
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(o, "choices"), 0), "logprobs"), "content");
    ASSERT_EQ(json_array_size(content), 5u) << whole.body;
    for (size_t i = 0; i < 5; i++) {
        json_t *e = json_array_get(content, i), *top = json_object_get(e, "top_logprobs");
        ASSERT_EQ(json_array_size(top), 2u);
        EXPECT_EQ(str(json_array_get(top, 0), "token"), str(e, "token")); /* greedy: top-1 */
        EXPECT_GE(json_real_value(json_object_get(json_array_get(top, 0), "logprob")),
                  json_real_value(json_object_get(json_array_get(top, 1), "logprob")));
        EXPECT_EQ(json_array_size(json_object_get(e, "bytes")), str(e, "token").size());
    }
    Reply streamed = http(port_, "POST", "/v1/chat/completions", req + R"(, "stream": true})");
    bool framed = false;
    std::vector<json_t *> evs = events(streamed.body, &framed);
    EXPECT_TRUE(framed);
    json_t *all = json_array();
    for (json_t *ev : evs) {
        json_t *lp = json_object_get(json_array_get(json_object_get(ev, "choices"), 0), "logprobs");
        if (json_is_object(lp)) json_array_extend(all, json_object_get(lp, "content"));
        json_decref(ev);
    }
    EXPECT_TRUE(json_equal(all, content)) << json_dumps(all, 0);
    json_decref(all);
    json_decref(o);
}

/* ---- n choices ---- */

TEST_F(Serve, SeveralChoicesEachEqualTheRunAlone) {
    std::vector<int> want = alone(kPrompt, 5);
    Reply r = http(port_, "POST", "/v1/completions",
                   R"({"prompt": )" + ids_json(kPrompt) + R"(, "max_tokens": 5, "temperature": 0, "ignore_eos": true, "n": 3})");
    ASSERT_EQ(r.status, 200) << r.body;
    json_t *o = parse(r.body), *choices = json_object_get(o, "choices");
    ASSERT_EQ(json_array_size(choices), 3u) << r.body;
    for (size_t i = 0; i < 3; i++) {
        json_t *c = json_array_get(choices, i);
        EXPECT_EQ(json_integer_value(json_object_get(c, "index")), (json_int_t)i);
        EXPECT_EQ(str(c, "text"), continuation(kPrompt, want));
        EXPECT_EQ(str(c, "finish_reason"), "length");
    }
    EXPECT_EQ(num(o, "usage", "prompt_tokens"), (long long)kPrompt.size()); /* the prompt once */
    EXPECT_EQ(num(o, "usage", "completion_tokens"), 15);
    EXPECT_EQ(num(o, "usage", "total_tokens"), (long long)kPrompt.size() + 15);
    json_decref(o);
    ASSERT_TRUE(back_to_idle());
}

TEST_F(Serve, SeveralChoicesStreamWithTheirIndexes) {
    const std::string req = R"({"messages": [{"role": "user", "content": "Tell me about a cat."}], "max_tokens": 6,
        "temperature": 0.8, "seed": 5, "n": 2)";
    Reply whole = http(port_, "POST", "/v1/chat/completions", req + "}");
    ASSERT_EQ(whole.status, 200) << whole.body;
    json_t *o = parse(whole.body);
    Reply streamed = http(port_, "POST", "/v1/chat/completions",
                          req + R"(, "stream": true, "stream_options": {"include_usage": true}})");
    bool framed = false;
    std::vector<json_t *> evs = events(streamed.body, &framed);
    EXPECT_TRUE(framed) << streamed.body;
    std::string content[2];
    int roles[2] = {0, 0}, finishes[2] = {0, 0};
    long long usage_completion = -1;
    for (json_t *ev : evs) {
        json_t *choices = json_object_get(ev, "choices");
        if (json_array_size(choices) == 0) usage_completion = num(ev, "usage", "completion_tokens");
        json_t *c = json_array_get(choices, 0);
        if (!c) {
            json_decref(ev);
            continue;
        }
        long long i = json_integer_value(json_object_get(c, "index"));
        ASSERT_TRUE(i == 0 || i == 1) << i;
        json_t *d = json_object_get(c, "delta");
        if (json_object_get(d, "role")) roles[i]++;
        if (json_is_string(json_object_get(d, "content"))) content[i] += str(d, "content");
        if (json_is_string(json_object_get(c, "finish_reason"))) finishes[i]++;
        json_decref(ev);
    }
    json_t *choices = json_object_get(o, "choices");
    ASSERT_EQ(json_array_size(choices), 2u);
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ(roles[i], 1) << "choice " << i;
        EXPECT_EQ(finishes[i], 1) << "choice " << i;
        /* the same seed gives the same choices streamed or not; seed + index makes them their own draws */
        EXPECT_EQ(content[i], str(json_object_get(json_array_get(choices, i), "message"), "content")) << i;
    }
    EXPECT_EQ(usage_completion, num(o, "usage", "completion_tokens"));
    json_decref(o);
    ASSERT_TRUE(back_to_idle());
}

/* ---- presence / frequency penalties ---- */

/* Greedy with OpenAI's penalties, step by step on the host: qilin_forward's
 * last-row logits, logit -= frequency * count - presence over the ids
 * generated so far, argmax (lowest id on ties). */
std::vector<int> penalised_greedy(qilin_model *m, const std::vector<int> &prompt, int n, float presence,
                                  float frequency) {
    std::vector<int> all = prompt, gen;
    int vocab = qilin_model_get_desc(m)->vocab;
    for (int t = 0; t < n; t++) {
        int len = (int)all.size(), slot = 0, start = 0;
        std::vector<float> logits((size_t)len * vocab);
        qilin_batch b{1, &slot, &start, &len, all.data(), true, nullptr};
        EXPECT_EQ(qilin_forward(m, &b, logits.data()), QILIN_OK) << qilin_last_error();
        float *row = &logits[(size_t)(len - 1) * vocab];
        std::vector<int> count(vocab, 0);
        for (int id : gen) count[id]++;
        int best = 0;
        for (int i = 0; i < vocab; i++) {
            if (count[i]) row[i] = row[i] - frequency * (float)count[i] - presence;
            if (row[i] > row[best]) best = i;
        }
        gen.push_back(best), all.push_back(best);
    }
    return gen;
}

TEST_F(Serve, PresenceAndFrequencyPenaltiesMatchTheReference) {
    const int n = 12;
    std::vector<int> plain = alone(kPrompt, n);
    std::vector<int> want = penalised_greedy(alone_model_, kPrompt, n, 0.8f, 1.2f);
    ASSERT_NE(want, plain) << "the penalties change this continuation";
    Reply r = http(port_, "POST", "/v1/completions",
                   R"({"prompt": )" + ids_json(kPrompt) +
                       R"(, "max_tokens": 12, "temperature": 0, "ignore_eos": true, "presence_penalty": 0.8,
                       "frequency_penalty": 1.2})");
    ASSERT_EQ(r.status, 200) << r.body;
    json_t *o = parse(r.body);
    EXPECT_EQ(str(json_array_get(json_object_get(o, "choices"), 0), "text"), continuation(kPrompt, want));
    json_decref(o);
}

/* ---- tools: rendering, validation, the response shapes ---- */

/* A server struct that never listens: serve_parse_generation and the
 * response builders on model_'s tokenizer with the Qwen2.5 template (which
 * renders tools) and the Hermes parser. */
struct OfflineServer {
    qilin_server s{};
    qilin_chat_template *tpl = nullptr;
    OfflineServer(qilin_model *m, const qilin_tokenizer *t) {
        std::string path = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/chat/templates/chat_template.Qwen2.5-7B-Instruct.jinja";
        EXPECT_EQ(qilin_chat_template_load(nullptr, path.c_str(), &tpl), QILIN_OK) << qilin_last_error();
        s.model = m, s.tok = t, s.tpl = tpl, s.model_name = const_cast<char *>("stories");
        s.max_ctx = 1 << 20, s.vocab = qilin_model_get_desc(m)->vocab, s.tool_format = SERVE_TOOLS_HERMES;
        s.default_sp = qilin_sampling_params{1, 0, 1, 0, 1, 0, 0, 0, 0};
        pthread_mutex_init(&s.mu, nullptr);
    }
    ~OfflineServer() {
        pthread_mutex_destroy(&s.mu);
        qilin_chat_template_free(tpl);
    }
};

const char *kWeatherTool =
    R"({"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})";

/* A finished chat call whose job generated `text`. */
void fake_call(OfflineServer &o, const std::string &text, bool stream, serve_call *c) {
    std::string body = std::string(R"({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [)") +
                       kWeatherTool + "]" + (stream ? R"(, "stream": true})" : "}");
    serve_error e;
    ASSERT_TRUE(serve_parse_generation(&o.s, SERVE_CHAT, body.data(), body.size(), c, &e)) << e.message;
    ASSERT_EQ(c->tools, SERVE_TOOLS_HERMES);
    ASSERT_TRUE(c->job->keep_special);
    c->job->text = strdup(text.c_str()), c->job->n_text = text.size(), c->job->cap_text = text.size() + 1;
    c->job->n_tokens = 7, c->job->state = JOB_DONE, c->job->finish_reason = "stop";
}

TEST_F(Serve, ToolsRenderThroughTheTemplate) {
    OfflineServer o(model_, tok_);
    serve_call c;
    fake_call(o, "", false, &c);
    std::vector<int> prompt(c.job->prompt, c.job->prompt + c.job->prompt_len);
    std::string text = decode(prompt);
    /* the Qwen2.5 template's tool block, with the tool as tojson writes it */
    EXPECT_NE(text.find("<tools>"), std::string::npos) << text;
    EXPECT_NE(text.find("\"name\": \"get_weather\""), std::string::npos) << text;
    EXPECT_NE(text.find("The weather in a city"), std::string::npos) << text;
    int with_tools = c.job->prompt_len;
    serve_job_free(c.job);
    /* tool_choice none: no tools in the prompt, no parsing */
    std::string body = std::string(R"({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [)") +
                       kWeatherTool + R"(], "tool_choice": "none"})";
    serve_error e;
    ASSERT_TRUE(serve_parse_generation(&o.s, SERVE_CHAT, body.data(), body.size(), &c, &e)) << e.message;
    EXPECT_EQ(c.tools, SERVE_TOOLS_NONE);
    EXPECT_LT(c.job->prompt_len, with_tools);
    serve_job_free(c.job);
}

TEST_F(Serve, ToolCallsResponseShape) {
    OfflineServer o(model_, tok_);
    serve_call c;
    fake_call(o, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", false, &c);
    json_t *r = serve_response_json(&o.s, &c);
    json_t *choice = json_array_get(json_object_get(r, "choices"), 0), *msg = json_object_get(choice, "message");
    EXPECT_EQ(str(choice, "finish_reason"), "tool_calls");
    EXPECT_EQ(str(msg, "content"), "Let me check.");
    json_t *calls = json_object_get(msg, "tool_calls");
    ASSERT_EQ(json_array_size(calls), 2u);
    for (size_t i = 0; i < 2; i++) {
        json_t *call = json_array_get(calls, i);
        EXPECT_EQ(str(call, "type"), "function");
        EXPECT_EQ(str(call, "function", "name"), "get_weather");
        EXPECT_EQ(str(call, "function", "arguments"), i ? "{\"city\":\"Oslo\"}" : "{\"city\":\"Paris\"}");
        EXPECT_EQ(str(call, "id").rfind("call_", 0), 0u);
        EXPECT_EQ(json_object_get(call, "index"), nullptr); /* only deltas carry it */
    }
    EXPECT_NE(str(json_array_get(calls, 0), "id"), str(json_array_get(calls, 1), "id"));
    EXPECT_EQ(num(r, "usage", "completion_tokens"), 7);
    json_decref(r);
    serve_job_free(c.job);
    /* only calls: content null; a malformed call: all of it is content, finish stays stop */
    fake_call(o, "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>", false, &c);
    r = serve_response_json(&o.s, &c);
    msg = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "message");
    EXPECT_TRUE(json_is_null(json_object_get(msg, "content")));
    EXPECT_EQ(json_array_size(json_object_get(msg, "tool_calls")), 1u);
    json_decref(r);
    serve_job_free(c.job);
    const std::string bad = "Sure <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": ";
    fake_call(o, bad, false, &c);
    r = serve_response_json(&o.s, &c);
    choice = json_array_get(json_object_get(r, "choices"), 0), msg = json_object_get(choice, "message");
    EXPECT_EQ(str(msg, "content"), bad);
    EXPECT_EQ(json_object_get(msg, "tool_calls"), nullptr);
    EXPECT_EQ(str(choice, "finish_reason"), "stop");
    json_decref(r);
    serve_job_free(c.job);
}

/* Streamed: the text grows one byte at a time; content deltas stop before
 * the call, one delta carries the calls with their indexes, and a malformed
 * call comes out as content at the end (nothing lost, nothing doubled). */
TEST_F(Serve, ToolCallsStreamAsDeltas) {
    OfflineServer o(model_, tok_);
    struct Case {
        std::string text, content;
        int calls;
    } cases[] = {
        {"Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
         "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>", "Let me check.", 2},
        {"Sure <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": ", "Sure <tool_call>{\"name\": "
         "\"get_weather\", \"arguments\": {\"city\": ", 0},
        {"No tools needed: it is sunny. <tool_", "No tools needed: it is sunny. <tool_", 0},
    };
    for (const Case &k : cases) {
        serve_call c;
        fake_call(o, k.text, true, &c);
        serve_stream_pos pos{};
        std::string content;
        std::vector<json_t *> tool_deltas;
        const char *finish = nullptr;
        for (size_t n = 0; n <= k.text.size(); n++) {
            c.job->n_text = n;
            json_t *events = json_array();
            finish = serve_stream_events(&o.s, &c, &pos, n == k.text.size(), events);
            size_t i;
            json_t *ev;
            json_array_foreach(events, i, ev) {
                json_t *d = json_object_get(json_array_get(json_object_get(ev, "choices"), 0), "delta");
                if (json_is_string(json_object_get(d, "content"))) content += str(d, "content");
                if (json_object_get(d, "tool_calls")) tool_deltas.push_back(json_incref(json_object_get(d, "tool_calls")));
            }
            json_decref(events);
        }
        EXPECT_EQ(content, k.content);
        EXPECT_EQ(std::string(finish), k.calls ? "tool_calls" : "stop");
        ASSERT_EQ(tool_deltas.size(), k.calls ? 1u : 0u);
        for (json_t *d : tool_deltas) {
            ASSERT_EQ((int)json_array_size(d), k.calls);
            for (int i = 0; i < k.calls; i++) {
                json_t *call = json_array_get(d, (size_t)i);
                EXPECT_EQ(json_integer_value(json_object_get(call, "index")), i);
                EXPECT_EQ(str(call, "function", "name"), "get_weather");
                EXPECT_EQ(str(call, "type"), "function");
                EXPECT_TRUE(json_is_string(json_object_get(call, "id")));
            }
            json_decref(d);
        }
        serve_job_free(c.job);
    }
}

TEST_F(Serve, ToolFieldsAreValidated) {
    OfflineServer o(model_, tok_);
    const std::string msgs = R"("messages": [{"role": "user", "content": "x"}])";
    struct Case {
        std::string extra, param, text;
    } cases[] = {
        {R"("tools": {"type": "function"})", "tools", "expected a list"},
        {R"("tools": [3])", "tools[0]", "type"},
        {R"("tools": [{"type": "code", "function": {"name": "f"}}])", "tools[0]", "function"},
        {R"("tools": [{"type": "function", "function": {"name": "a b"}}])", "tools[0].function.name", "allowed"},
        {R"("tools": [{"type": "function", "function": {}}])", "tools[0].function.name", "1 to 64"},
        {R"("tools": [{"type": "function", "function": {"name": "f", "parameters": []}}])",
         "tools[0].function.parameters", "JSON Schema"},
        {R"("tools": [{"type": "function", "function": {"name": "f", "description": 1}}])",
         "tools[0].function.description", "string"},
        {std::string(R"("tools": [)") + kWeatherTool + R"(], "tool_choice": "required")", "tool_choice", "constrained"},
        {std::string(R"("tools": [)") + kWeatherTool + R"(], "tool_choice": {"type": "function", "function": {"name": "get_weather"}})",
         "tool_choice", "constrained"},
        {std::string(R"("tools": [)") + kWeatherTool + R"(], "tool_choice": "sometimes")", "tool_choice", "expected"},
        {R"("tool_choice": "auto")", "tool_choice", "without tools"},
        {R"("functions": [{"name": "f"}])", "functions", "tools"},
    };
    for (const Case &k : cases) {
        std::string body = "{" + msgs + ", " + k.extra + "}";
        serve_call c;
        serve_error e;
        EXPECT_FALSE(serve_parse_generation(&o.s, SERVE_CHAT, body.data(), body.size(), &c, &e)) << body;
        EXPECT_EQ(e.status, 400) << body;
        EXPECT_EQ(std::string(e.param), k.param) << body;
        EXPECT_NE(std::string(e.message).find(k.text), std::string::npos) << body << ": " << e.message;
    }
    /* over HTTP: the test server (stories: no tool-call tokens, no --tool-call-parser) refuses tools by name */
    Reply r = http(port_, "POST", "/v1/chat/completions",
                   "{" + msgs + R"(, "tools": [)" + kWeatherTool + "]}");
    EXPECT_EQ(r.status, 400);
    json_t *reply = parse(r.body), *err = json_object_get(reply, "error");
    EXPECT_EQ(str(err, "param"), "tools");
    EXPECT_NE(str(err, "message").find("--tool-call-parser"), std::string::npos);
    json_decref(reply);
    /* completions take no tools */
    std::string body = std::string(R"({"prompt": "a", "tools": [)") + kWeatherTool + "]}";
    serve_call c;
    serve_error e;
    EXPECT_FALSE(serve_parse_generation(&o.s, SERVE_COMPLETION, body.data(), body.size(), &c, &e));
    EXPECT_EQ(std::string(e.param), "tools");
}

/* The request parser on hostile bodies (a cheap in-process stand-in for a
 * libFuzzer target): valid requests with every field's value swapped for
 * values of other types and ranges, truncated at every length, and with
 * random byte flips. Each parse either succeeds with a job the engine
 * accepts (prompt in [1, max_ctx), prompt + max_new within it, n jobs,
 * top_logprobs <= 20) and a response that builds, or fails with 400/404/500,
 * a message and a param that is a field path. ASan checks the rest. */
TEST_F(Serve, RequestParserSurvivesHostileBodies) {
    OfflineServer o(model_, tok_);
    o.s.max_ctx = 2048;
    const std::vector<std::pair<serve_kind, std::string>> bases = {
        {SERVE_CHAT, std::string(R"({"model": "stories", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Weather?"}]}], "tools": [)") +
                         kWeatherTool + R"(], "tool_choice": "auto", "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 3, "stop": ["x", "y"], "n": 2, "logprobs": true, "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true}, "chat_template_kwargs": {"enable_thinking": false}})"},
        {SERVE_COMPLETION, R"({"prompt": "Once upon a time", "max_tokens": 5, "logprobs": 2, "n": 3, "stop": "z", "echo": false, "ignore_eos": true, "seed": -7})"},
        {SERVE_COMPLETION, R"({"prompt": [1, 403, 407], "max_completion_tokens": 4})"},
    };
    const char *values[] = {"null", "true", "-1", "0", "1", "2.5", "1e308", "-1e308", "9223372036854775807", "\"\"",
                            "\"x\"", "[]", "[1]", "[\"a\"]", "{}", "{\"type\": \"function\"}", "[{}]", "[[]]", "17", "21"};
    std::mt19937 rng(2024);
    int parsed = 0, refused = 0;
    auto check = [&](serve_kind kind, const std::string &body) {
        serve_call c;
        serve_error e{};
        if (serve_parse_generation(&o.s, kind, body.data(), body.size(), &c, &e)) {
            parsed++;
            ASSERT_GE(c.n_choices, 1);
            ASSERT_LE(c.n_choices, (int)SERVE_MAX_CHOICES);
            for (int i = 0; i < c.n_choices; i++) {
                const serve_job *j = c.choices[i];
                ASSERT_GE(j->prompt_len, 1);
                ASSERT_LT(j->prompt_len, o.s.max_ctx);
                ASSERT_GE(j->max_new, 1);
                ASSERT_LE(j->prompt_len + j->max_new, o.s.max_ctx);
                ASSERT_LE(j->top_logprobs, 20);
                ASSERT_EQ(qilin_sampling_params_check(&j->sp, nullptr), QILIN_OK);
                for (int t = 0; t < j->prompt_len; t++) ASSERT_LT(j->prompt[t], o.s.vocab);
                c.choices[i]->state = JOB_DONE, c.choices[i]->finish_reason = "stop";
            }
            json_t *r = serve_response_json(&o.s, &c);
            ASSERT_NE(r, nullptr);
            json_decref(r);
            for (int i = 0; i < c.n_choices; i++) serve_job_free(c.choices[i]);
        } else {
            refused++;
            ASSERT_TRUE(e.status == 400 || e.status == 404 || e.status == 500) << e.status << " " << body;
            ASSERT_NE(e.message[0], '\0') << body;
            for (const char *p = e.param; *p; p++) ASSERT_TRUE(isalnum((unsigned char)*p) || strchr("_.[]", *p)) << e.param;
        }
    };
    for (const auto &[kind, base] : bases) {
        check(kind, base);
        /* every field's value swapped for each hostile value */
        for (size_t at = base.find("\": "); at != std::string::npos; at = base.find("\": ", at + 1)) {
            size_t v = at + 3, end = v;
            int depth = 0;
            bool in_str = false;
            for (; end < base.size(); end++) {
                char ch = base[end];
                if (in_str) { if (ch == '\\') end++; else if (ch == '"') in_str = false; continue; }
                if (ch == '"') in_str = true;
                else if (ch == '[' || ch == '{') depth++;
                else if ((ch == ']' || ch == '}') && depth-- == 0) break;
                else if (ch == ',' && depth == 0) break;
            }
            for (const char *val : values) check(kind, base.substr(0, v) + val + base.substr(end));
        }
        for (size_t n = 0; n < base.size(); n += 7) check(kind, base.substr(0, n)); /* truncations */
        for (int trial = 0; trial < 200; trial++) { /* byte flips */
            std::string b = base;
            for (int k = 0; k < 3; k++) b[rng() % b.size()] = (char)(rng() % 256);
            check(kind, b);
        }
    }
    EXPECT_GT(parsed, 20);
    EXPECT_GT(refused, 100);
}

/* <think> splitting as a stream sees it: the text grows one byte at a time,
 * each step sends the growth of both ranges; the ranges never shrink and
 * the final split equals the whole-text split. */
TEST(ServeReasoning, SplitIsMonotoneAndExact) {
    struct Case {
        const char *text;
        bool opens;
        const char *reasoning, *content;
    } cases[] = {
        {"<think>abc</think>\n\nHello", false, "abc", "Hello"},
        {"\n<think>a<b</think>x", false, "a<b", "x"},
        {"abc</think> Hello </think>", true, "abc", "Hello </think>"},
        {"Hello <think>x</think>", false, "", "Hello <think>x</think>"},
        {"  <think>unfinished</thi", false, "unfinished</thi", ""},
        {"<thi", false, "", "<thi"},
        {"a</thinkX", true, "a</thinkX", ""},
        {"", true, "", ""},
    };
    for (const Case &c : cases) {
        std::string t = c.text, reasoning, content;
        size_t r_sent = 0, c_sent = 0;
        for (size_t n = 0; n <= t.size(); n++) {
            bool final = n == t.size();
            size_t rb, re, cb, ce;
            serve_split_reasoning(t.data(), n, c.opens, final, &rb, &re, &cb, &ce);
            ASSERT_LE(rb, re);
            ASSERT_LE(cb, ce);
            ASSERT_LE(ce, n);
            size_t from = std::max(r_sent, rb);
            if (re > from) reasoning += t.substr(from, re - from), r_sent = re;
            from = std::max(c_sent, cb);
            if (ce > from) content += t.substr(from, ce - from), c_sent = ce;
        }
        EXPECT_EQ(reasoning, c.reasoning) << c.text;
        EXPECT_EQ(content, c.content) << c.text;
    }
}

}  // namespace
