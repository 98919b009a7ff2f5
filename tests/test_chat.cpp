// test_chat.cpp — real chat templates rendered by qilin vs transformers.
//
// ChatTemplate/*: every case in tests/fixtures/chat/cases.json (from
// scripts/make_chat_fixtures.py: transformers' apply_chat_template on the
// real DeepSeek-V3/R1, Qwen2/2.5/3, QwQ, Llama 3.1/3.2, Kimi K2 and
// Mistral/Mixtral templates) renders byte-identically, or fails where
// transformers fails with its message. Then: the template loader (model
// directories, multi-template configs, --chat-template files) and the
// streaming <think> filter.
#include <gtest/gtest.h>
#include <jansson.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "runtime/chat.h"

namespace {

const std::string kFixtures = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/chat/";

struct tm fixed_now() { // scripts/make_chat_fixtures.py pins strftime_now to 2025-03-07 14:30:05
    struct tm t = {};
    t.tm_year = 2025 - 1900;
    t.tm_mon = 2;
    t.tm_mday = 7;
    t.tm_hour = 14;
    t.tm_min = 30;
    t.tm_sec = 5;
    t.tm_wday = 5;
    t.tm_yday = 65;
    return t;
}

// Where two renderings first differ, with some context either side, escaped.
std::string diff_at(const std::string &want, const std::string &got) {
    size_t i = 0;
    while (i < want.size() && i < got.size() && want[i] == got[i]) i++;
    auto show = [&](const std::string &s) {
        size_t a = i > 40 ? i - 40 : 0;
        std::string out;
        for (size_t k = a; k < s.size() && k < i + 40; k++) {
            if (k == i) out += "⟦";
            char ch = s[k];
            if (ch == '\n')
                out += "\\n";
            else if (ch == '\t')
                out += "\\t";
            else
                out += ch;
        }
        return out;
    };
    char head[96];
    snprintf(head, sizeof head, "first difference at byte %zu (expected %zu bytes, got %zu)\n", i,
             want.size(), got.size());
    return std::string(head) + "  expected: …" + show(want) + "…\n  qilin:    …" + show(got) + "…";
}

struct Case {
    std::string name, file, bos, eos, messages, kwargs, expected, error;
    bool has_bos = false, has_eos = false, add_gen = false, is_error = false;
};

std::vector<Case> load_cases() {
    json_error_t je;
    json_t *root = json_load_file((kFixtures + "cases.json").c_str(), 0, &je);
    std::vector<Case> cases;
    if (!root) {
        Case c;
        c.name = "missing_fixture";
        c.error = je.text;
        cases.push_back(c);
        return cases;
    }
    size_t i;
    json_t *j;
    json_array_foreach(root, i, j) {
        Case c;
        c.name = json_string_value(json_object_get(j, "name"));
        c.file = kFixtures + json_string_value(json_object_get(j, "template"));
        json_t *b = json_object_get(j, "bos_token"), *e = json_object_get(j, "eos_token");
        if ((c.has_bos = json_is_string(b))) c.bos = json_string_value(b);
        if ((c.has_eos = json_is_string(e))) c.eos = json_string_value(e);
        char *m = json_dumps(json_object_get(j, "messages"), JSON_COMPACT);
        char *k = json_dumps(json_object_get(j, "kwargs"), JSON_COMPACT);
        c.messages = m;
        c.kwargs = k;
        free(m);
        free(k);
        c.add_gen = json_is_true(json_object_get(j, "add_generation_prompt"));
        json_t *err = json_object_get(j, "error");
        if ((c.is_error = err != nullptr))
            c.error = json_string_value(err);
        else
            c.expected = json_string_value(json_object_get(j, "expected"));
        for (char &ch : c.name)
            if (!isalnum((unsigned char)ch)) ch = '_';
        cases.push_back(c);
    }
    json_decref(root);
    return cases;
}

void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

class ChatTemplate : public ::testing::TestWithParam<Case> {};

TEST_P(ChatTemplate, MatchesTransformers) {
    const Case &c = GetParam();
    ASSERT_NE(c.name, "missing_fixture") << c.error;
    bool config = c.file.size() > 5 && c.file.compare(c.file.size() - 5, 5, ".json") == 0;
    qilin_chat_template *t = nullptr;
    // tokenizer_config.json: the loader finds template, BOS and EOS; .jinja: the case supplies them
    qilin_status st = config ? qilin_chat_template_load(c.file.c_str(), nullptr, &t)
                             : qilin_chat_template_load(nullptr, c.file.c_str(), &t);
    ASSERT_EQ(st, QILIN_OK) << qilin_last_error();
    if (config) {
        const char *bos = qilin_chat_template_bos(t), *eos = qilin_chat_template_eos(t);
        EXPECT_EQ(bos != nullptr, c.has_bos);
        EXPECT_EQ(eos != nullptr, c.has_eos);
        if (bos && c.has_bos) {
            EXPECT_EQ(std::string(bos), c.bos);
        }
        if (eos && c.has_eos) {
            EXPECT_EQ(std::string(eos), c.eos);
        }
    }
    struct tm now = fixed_now();
    qilin_chat_options opt = {};
    if (!config && c.has_bos) opt.bos_token = c.bos.c_str();
    if (!config && c.has_eos) opt.eos_token = c.eos.c_str();
    opt.add_generation_prompt = c.add_gen;
    opt.kwargs_json = c.kwargs.c_str();
    opt.now = &now;
    char *out = nullptr;
    st = qilin_chat_render(t, c.messages.c_str(), &opt, &out);
    std::string err = st == QILIN_OK ? "" : qilin_last_error();
    qilin_chat_template_free(t);
    if (c.is_error) {
        EXPECT_EQ(st, QILIN_ERR_INVALID_ARGUMENT) << (out ? out : "");
        EXPECT_NE(err.find(c.error), std::string::npos) << "qilin: " << err << "\ntransformers: " << c.error;
        free(out);
        return;
    }
    ASSERT_EQ(st, QILIN_OK) << err;
    std::string got(out);
    free(out);
    EXPECT_TRUE(got == c.expected) << diff_at(c.expected, got);
}

std::string case_name(const ::testing::TestParamInfo<Case> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Fixtures, ChatTemplate, ::testing::ValuesIn(load_cases()), case_name);

// ---------------------------------------------------------------- loader

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/qilin_chat_XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() {
        std::string cmd = "rm -rf '" + path + "'";
        (void)system(cmd.c_str());
    }
    void write(const std::string &name, const std::string &text) const {
        FILE *f = fopen((path + "/" + name).c_str(), "wb");
        fwrite(text.data(), 1, text.size(), f);
        fclose(f);
    }
};

std::string render_simple(const qilin_chat_template *t, const char *kwargs = nullptr,
                          const char *name = nullptr) {
    qilin_chat_options opt = {};
    opt.kwargs_json = kwargs;
    opt.template_name = name;
    char *out = nullptr;
    if (qilin_chat_render(t, "[{\"role\": \"user\", \"content\": \"hi\"}]", &opt, &out) != QILIN_OK)
        return std::string("ERROR: ") + qilin_last_error();
    std::string s(out);
    free(out);
    return s;
}

TEST(ChatLoader, ModelDirectoryPrefersChatTemplateJinja) {
    TempDir d;
    d.write(
        "tokenizer_config.json",
        R"({"bos_token": {"__type": "AddedToken", "content": "<B>"}, "eos_token": "<E>", "chat_template": "cfg {{ bos_token }}"})");
    qilin_chat_template *t = nullptr;
    ASSERT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(render_simple(t), "cfg <B>");
    EXPECT_STREQ(qilin_chat_template_eos(t), "<E>");
    qilin_chat_template_free(t);
    d.write("chat_template.jinja", "jinja {{ eos_token }}{{ messages[0].content }}\n");
    ASSERT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(render_simple(t), "jinja <E>hi");
    qilin_chat_template_free(t);
    d.write("override.jinja", "override {{ bos_token }}");
    ASSERT_EQ(qilin_chat_template_load(d.path.c_str(), (d.path + "/override.jinja").c_str(), &t), QILIN_OK);
    EXPECT_EQ(render_simple(t), "override <B>");
    qilin_chat_template_free(t);
}

TEST(ChatLoader, NamedTemplatesPickToolUseWhenToolsAreGiven) {
    TempDir d;
    d.write("tokenizer_config.json", R"({"chat_template": [{"name": "default", "template": "plain"},
                                         {"name": "tool_use", "template": "tools={{ tools|length }}"},
                                         {"name": "rag", "template": "rag"}]})");
    qilin_chat_template *t = nullptr;
    ASSERT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(render_simple(t), "plain");
    EXPECT_EQ(render_simple(t, R"({"tools": [{"a": 1}, {"b": 2}]})"), "tools=2");
    EXPECT_EQ(render_simple(t, nullptr, "rag"), "rag");
    EXPECT_EQ(render_simple(t, nullptr, "nope").rfind("ERROR", 0), 0u);
    EXPECT_EQ(qilin_chat_template_bos(t), nullptr);
    qilin_chat_template_free(t);
}

TEST(ChatLoader, ErrorsNameTheFile) {
    TempDir d;
    qilin_chat_template *t = nullptr;
    EXPECT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_ERR_IO);
    d.write("tokenizer_config.json", "{\"eos_token\": \"x\"}");
    EXPECT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("chat_template"), std::string::npos);
    d.write("tokenizer_config.json", "{not json");
    EXPECT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("tokenizer_config.json"), std::string::npos);
    d.write("chat_template.jinja", "{% if %}");
    EXPECT_EQ(qilin_chat_template_load(d.path.c_str(), nullptr, &t), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("chat_template.jinja"), std::string::npos);
    EXPECT_EQ(qilin_chat_template_load("/nonexistent/dir", nullptr, &t), QILIN_ERR_IO);
    EXPECT_EQ(t, nullptr);
}

TEST(ChatRender, RejectsBadMessages) {
    qilin_chat_template *t = nullptr;
    ASSERT_EQ(qilin_chat_template_parse("{{ messages|length }}", "t", &t), QILIN_OK);
    char *out = nullptr;
    EXPECT_EQ(qilin_chat_render(t, "[]", nullptr, &out), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_chat_render(t, "{\"role\": \"user\"}", nullptr, &out), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_chat_render(t, "[1]", nullptr, &out), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_chat_render(t, "[{", nullptr, &out), QILIN_ERR_INVALID_ARGUMENT);
    qilin_chat_options opt = {};
    opt.kwargs_json = "[1]";
    EXPECT_EQ(qilin_chat_render(t, "[{}]", &opt, &out), QILIN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(qilin_chat_render(t, "[{}, {}]", nullptr, &out), QILIN_OK);
    EXPECT_STREQ(out, "2");
    free(out);
    qilin_chat_template_free(t);
}

TEST(ChatRender, PassesMessagesAsTransformersDoes) {
    qilin_chat_template *t = nullptr;
    ASSERT_EQ(qilin_chat_template_parse(
                  "{{ messages|tojson }}|{{ tools }}|{{ documents }}|{{ add_generation_prompt }}|"
                  "{{ bos_token is defined }}",
                  "t", &t),
              QILIN_OK);
    char *out = nullptr;
    ASSERT_EQ(
        qilin_chat_render(t, R"([{"role": "assistant", "content": null, "reasoning_content": "r", "x": 1}])",
                          nullptr, &out),
        QILIN_OK)
        << qilin_last_error();
    EXPECT_STREQ(
        out,
        R"([{"thinking": "r", "role": "assistant", "reasoning_content": "r", "x": 1}]|None|None|False|False)");
    free(out);
    qilin_chat_template_free(t);
}

// ---------------------------------------------------------------- <think> filter

std::string run_filter(bool show, bool starts_in, const std::vector<std::string> &pieces,
                       bool *in_end = nullptr) {
    qilin_think_filter *f = nullptr;
    EXPECT_EQ(qilin_think_filter_create(show, starts_in, &f), QILIN_OK);
    std::string all;
    const char *v;
    size_t n;
    for (const auto &p : pieces) {
        EXPECT_EQ(qilin_think_filter_push(f, p.data(), p.size(), &v, &n), QILIN_OK);
        all.append(v, n);
    }
    if (in_end) *in_end = qilin_think_filter_in_reasoning(f);
    EXPECT_EQ(qilin_think_filter_finish(f, &v, &n), QILIN_OK);
    all.append(v, n);
    qilin_think_filter_free(f);
    return all;
}

TEST(ThinkFilter, HidesReasoningAcrossPieceBoundaries) {
    // R1: the prompt ends inside <think>; output closes it
    EXPECT_EQ(run_filter(false, true, {"Let me ", "think.</th", "ink>\n\n", "The answer", " is 4."}),
              "The answer is 4.");
    // one byte at a time
    std::string text = "pre <think>hidden</think>\n post<think>x</think>end";
    std::vector<std::string> bytes;
    for (char ch : text) bytes.emplace_back(1, ch);
    EXPECT_EQ(run_filter(false, false, bytes), "pre post"
                                               "end");
    // something that merely looks like a tag is released at the end
    EXPECT_EQ(run_filter(false, false, {"a <thi", "s"}), "a <this");
    EXPECT_EQ(run_filter(false, false, {"a <thi"}), "a <thi");
    bool in = false;
    EXPECT_EQ(run_filter(false, false, {"x<think>unfinished"}, &in), "x");
    EXPECT_TRUE(in);
}

TEST(ThinkFilter, ShowPassesEverythingThrough) {
    bool in = true;
    EXPECT_EQ(run_filter(true, true, {"reason</th", "ink>\n\nanswer"}, &in), "reason</think>\n\nanswer");
    EXPECT_FALSE(in);
    EXPECT_EQ(run_filter(true, false, {"<think>a</think>b"}), "<think>a</think>b");
}

TEST(ThinkFilter, PromptDetection) {
    EXPECT_TRUE(qilin_chat_prompt_opens_think("<｜Assistant｜><think>\n"));
    EXPECT_TRUE(qilin_chat_prompt_opens_think("<think>"));
    EXPECT_FALSE(qilin_chat_prompt_opens_think("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    EXPECT_FALSE(qilin_chat_prompt_opens_think(""));
}

} // namespace
