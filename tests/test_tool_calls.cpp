// test_tool_calls.cpp — the tool-call parsers (runtime/serve/tool_calls.c)
// on the formats each family emits and on hostile text. Asserts: calls come
// out with their names and arguments re-serialized as compact JSON objects,
// text before them is content, several calls keep their order; truncated,
// malformed, nameless or trailing-text outputs fall back to plain content
// with no call; every prefix of every case is parsed without a crash and the
// streaming content prefix only grows and never passes the final content_end.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "runtime/serve/tool_calls.h"
}

namespace {

struct Call {
    std::string id, name, args;
};
struct Parsed {
    std::string content;
    std::vector<Call> calls;
};

Parsed parse(serve_tool_format f, const std::string &text) {
    serve_tool_calls c;
    EXPECT_TRUE(serve_tool_calls_parse(f, text.data(), text.size(), &c));
    Parsed p;
    p.content = text.substr(0, c.content_end);
    for (int i = 0; i < c.n; i++)
        p.calls.push_back({c.calls[i].id ? c.calls[i].id : "", c.calls[i].name, c.calls[i].arguments});
    serve_tool_calls_free(&c);
    return p;
}

void expect_plain(serve_tool_format f, const std::string &text) {
    Parsed p = parse(f, text);
    EXPECT_EQ(p.calls.size(), 0u) << serve_tool_format_name(f) << ": " << text;
    EXPECT_EQ(p.content, text);
}

/* Every prefix parses (no crash, no leak under ASan) and the streaming content prefix is monotone and
 * bounded. */
void check_prefixes(serve_tool_format f, const std::string &text) {
    size_t last = 0;
    for (size_t n = 0; n <= text.size(); n++) {
        serve_tool_calls c;
        ASSERT_TRUE(serve_tool_calls_parse(f, text.data(), n, &c));
        size_t prefix = serve_tool_calls_content_prefix(f, text.data(), n);
        EXPECT_GE(prefix, last) << serve_tool_format_name(f) << " at " << n << ": " << text;
        EXPECT_LE(prefix, n);
        if (c.n > 0) {
            EXPECT_LE(prefix, c.content_end) << serve_tool_format_name(f) << " at " << n;
        }
        last = prefix;
        serve_tool_calls_free(&c);
    }
}

TEST(ToolCalls, Hermes) {
    Parsed p =
        parse(SERVE_TOOLS_HERMES,
              "Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", "
              "\"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": "
              "{}}\n</tool_call>");
    EXPECT_EQ(p.content, "Let me check.");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].args, "{\"city\":\"Paris\",\"days\":2}");
    EXPECT_EQ(p.calls[0].id, "");
    EXPECT_EQ(p.calls[1].name, "get_time");
    EXPECT_EQ(p.calls[1].args, "{}");
    /* no arguments field: a function without parameters */
    p = parse(SERVE_TOOLS_HERMES, "<tool_call>{\"name\": \"now\"}</tool_call>");
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].args, "{}");
    EXPECT_EQ(p.content, "");
    /* non-ASCII arguments survive */
    p = parse(SERVE_TOOLS_HERMES,
              "<tool_call>{\"name\": \"f\", \"arguments\": {\"q\": \"北京 ☂\"}}</tool_call>");
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].args, "{\"q\":\"北京 ☂\"}");
}

TEST(ToolCalls, HermesHostileFallsBackToContent) {
    for (const char *t : {
             "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par",       /* truncated */
             "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", /* no close */
             "<tool_call>{\"name\": \"f\", \"arguments\": {}</tool_call>",                     /* bad JSON */
             "<tool_call>{\"arguments\": {}}</tool_call>",                                     /* no name */
             "<tool_call>{\"name\": \"\", \"arguments\": {}}</tool_call>",      /* empty name */
             "<tool_call>{\"name\": \"a b\", \"arguments\": {}}</tool_call>",   /* space in name */
             "<tool_call>{\"name\": 3, \"arguments\": {}}</tool_call>",         /* name not a string */
             "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",    /* args not an object */
             "<tool_call>{\"name\": \"f\", \"arguments\": \"{}\"}</tool_call>", /* args a string */
             "<tool_call>[{\"name\": \"f\"}]</tool_call>",                      /* a list */
             "<tool_call>{\"name\": \"f\", \"name\": \"g\"}</tool_call>",       /* duplicate key */
             "<tool_call>{\"name\": \"f\"}</tool_call> and then some text",     /* trailing text */
             "<tool_call>{\"name\": \"f\"}</tool_call><tool_call>{\"name\":",   /* second truncated */
             "<tool_call></tool_call>",                                         /* empty */
             "<tool_call>",                                                     /* marker only */
             "</tool_call>",                                                    /* close only */
             "<tool_call>{\"name\": \"f\"}\0</tool_call>",                      /* cut by a NUL */
             "just an answer, no call",                                         /* plain */
             "",                                                                /* empty */
         })
        expect_plain(SERVE_TOOLS_HERMES, t);
    static const char nul_text[] = "<tool_call>{\"name\": \"f\0\"}</tool_call>"; /* a NUL inside the name */
    std::string nul(nul_text, sizeof nul_text - 1);
    expect_plain(SERVE_TOOLS_HERMES, nul);
}

TEST(ToolCalls, DeepSeekV3AndV31) {
    const std::string v3 =
        "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        "{\"location\": "
        "\"Tokyo\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
        "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    Parsed p = parse(SERVE_TOOLS_DEEPSEEK, v3);
    EXPECT_EQ(p.content, "Sure.");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].args, "{\"location\":\"Tokyo\"}");
    EXPECT_EQ(p.calls[1].name, "get_time");
    const std::string v31 =
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"location\": \"Tokyo\"}"
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    p = parse(SERVE_TOOLS_DEEPSEEK, v31);
    EXPECT_EQ(p.content, "");
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].args, "{\"location\":\"Tokyo\"}");
    /* the closing section marker may be cut by max_tokens once the last call is whole */
    p = parse(SERVE_TOOLS_DEEPSEEK, v31.substr(0, v31.size() - strlen("<｜tool▁calls▁end｜>")));
    EXPECT_EQ(p.calls.size(), 1u);
    for (size_t cut = 0; cut + strlen("<｜tool▁call▁end｜><｜tool▁calls▁end｜>") < v31.size(); cut++)
        expect_plain(SERVE_TOOLS_DEEPSEEK, v31.substr(0, cut));
    for (
        const char *t : {
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls▁begin｜><｜tool▁calls▁end｜>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n{}<｜tool▁call▁end｜>", /* no
                                                                                                            fence
                                                                                                          */
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}<"
            "｜tool▁call▁end｜>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f```json{}```<"
            "｜tool▁call▁end｜>", /* no newline */
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁call▁end｜><｜tool▁sep｜>{}<"
            "｜tool▁call▁end｜>",
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜><｜tool▁sep｜>{}<｜tool▁call▁end｜>", /* no name */
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>junk",
            "<｜tool▁calls▁begin｜>junk<｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>",
        })
        expect_plain(SERVE_TOOLS_DEEPSEEK, t);
    check_prefixes(SERVE_TOOLS_DEEPSEEK, v3);
    check_prefixes(SERVE_TOOLS_DEEPSEEK, v31);
}

TEST(ToolCalls, KimiK2) {
    const std::string t =
        "I will look.<|tool_calls_section_begin|> <|tool_call_begin|>functions.get_weather:0"
        "<|tool_call_argument_begin|>{\"city\": \"Beijing\"}<|tool_call_end|>"
        "<|tool_call_begin|>functions.search:1<|tool_call_argument_begin|>{\"q\": \"x\"}"
        "<|tool_call_end|><|tool_calls_section_end|>";
    Parsed p = parse(SERVE_TOOLS_KIMI_K2, t);
    EXPECT_EQ(p.content, "I will look.");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].id, "functions.get_weather:0");
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].args, "{\"city\":\"Beijing\"}");
    EXPECT_EQ(p.calls[1].id, "functions.search:1");
    EXPECT_EQ(p.calls[1].name, "search");
    for (size_t cut = 0; cut < t.find("<|tool_call_end|>") + strlen("<|tool_call_end|>"); cut++)
        expect_plain(SERVE_TOOLS_KIMI_K2, t.substr(0, cut));
    for (const char *bad : {
             "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0{}<|tool_call_end|>", /* no args
                                                                                                   marker */
             "<|tool_calls_section_begin|><|tool_call_begin|><|tool_call_argument_begin|>{}<|tool_call_end|>",
             "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{"
             "<|tool_call_end|>",
             "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_end|>"
             "<|tool_call_argument_begin|>{}<|tool_call_end|>",
         })
        expect_plain(SERVE_TOOLS_KIMI_K2, bad);
    check_prefixes(SERVE_TOOLS_KIMI_K2, t);
}

TEST(ToolCalls, Llama3Json) {
    Parsed p = parse(SERVE_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}");
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[0].args, "{\"city\":\"Oslo\"}");
    p = parse(SERVE_TOOLS_LLAMA3, " <|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
                                  "\"arguments\": {\"x\": 1}}\n");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[1].name, "b");
    EXPECT_EQ(p.calls[1].args, "{\"x\":1}");
    EXPECT_EQ(p.content, " ");
    for (const char *t : {
             "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Os",
             "{\"answer\": 42}",                                  /* JSON, not a call */
             "{\"name\": \"f\"}",                                 /* no parameters: an answer */
             "The call is {\"name\": \"f\", \"parameters\": {}}", /* text first */
             "{\"name\": \"f\", \"parameters\": {}} and more",
             "{\"name\": \"f\", \"parameters\": 1}",
             "<|python_tag|>brave_search.call(query=\"x\")", /* built-in tool syntax: not JSON */
             "<|python_tag|>",
             "{",
         })
        expect_plain(SERVE_TOOLS_LLAMA3, t);
    check_prefixes(SERVE_TOOLS_LLAMA3, "{\"name\": \"a\", \"parameters\": {}}");
    check_prefixes(SERVE_TOOLS_LLAMA3, "Hello {\"name\": \"a\", \"parameters\": {}}");
}

TEST(ToolCalls, Mistral) {
    Parsed p = parse(SERVE_TOOLS_MISTRAL,
                     "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                     "\"Rome\"}, \"id\": \"a1b2c3d4e\"}, {\"name\": \"g\", \"arguments\": {}}]");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].id, "a1b2c3d4e");
    EXPECT_EQ(p.calls[0].args, "{\"city\":\"Rome\"}");
    EXPECT_EQ(p.calls[1].id, "");
    p = parse(SERVE_TOOLS_MISTRAL,
              "ok[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Rome\"}[TOOL_CALLS]g[ARGS]{}");
    EXPECT_EQ(p.content, "ok");
    ASSERT_EQ(p.calls.size(), 2u);
    EXPECT_EQ(p.calls[0].name, "get_weather");
    EXPECT_EQ(p.calls[1].name, "g");
    for (const char *t : {
             "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ro",
             "[TOOL_CALLS] []",
             "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}] trailing",
             "[TOOL_CALLS] [1, 2]",
             "[TOOL_CALLS]get_weather{\"city\": 1}",
             "[TOOL_CALLS]get_weather[ARGS]{\"city\": ",
             "[TOOL_CALLS]",
         })
        expect_plain(SERVE_TOOLS_MISTRAL, t);
    check_prefixes(SERVE_TOOLS_MISTRAL, "Hi [TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}]");
}

TEST(ToolCalls, StreamingPrefixHoldsAPartialMarker) {
    const std::string t = "Let me check.<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    EXPECT_EQ(serve_tool_calls_content_prefix(SERVE_TOOLS_HERMES, t.data(), 16),
              13u); /* "Let me check.<to" */
    EXPECT_EQ(serve_tool_calls_content_prefix(SERVE_TOOLS_HERMES, t.data(), 13), 13u);
    EXPECT_EQ(serve_tool_calls_content_prefix(SERVE_TOOLS_HERMES, t.data(), t.size()), 13u);
    EXPECT_EQ(serve_tool_calls_content_prefix(SERVE_TOOLS_NONE, t.data(), t.size()), t.size());
    check_prefixes(SERVE_TOOLS_HERMES, t);
}

/* Text the parsers were not written for: random bytes and marker soup, every format. */
TEST(ToolCalls, RandomMarkerSoupNeverCrashes) {
    const char *pieces[] = {"<tool_call>",
                            "</tool_call>",
                            "{\"name\": \"f\", \"arguments\": {}}",
                            "{",
                            "}",
                            "\"",
                            "<｜tool▁calls▁begin｜>",
                            "<｜tool▁call▁begin｜>",
                            "<｜tool▁sep｜>",
                            "<｜tool▁call▁end｜>",
                            "function",
                            "\n```json\n",
                            "```",
                            "<|tool_calls_section_begin|>",
                            "<|tool_call_begin|>",
                            "<|tool_call_argument_begin|>",
                            "<|tool_call_end|>",
                            "functions.f:0",
                            "[TOOL_CALLS]",
                            "[ARGS]",
                            "[",
                            "]",
                            "<|python_tag|>",
                            ";",
                            " ",
                            "\xff\xfe",
                            "\xe2\x96"};
    const int n_pieces = sizeof pieces / sizeof *pieces;
    uint32_t rng = 12345;
    for (int trial = 0; trial < 3000; trial++) {
        std::string t;
        int len = (int)(rng % 12);
        for (int i = 0; i < len; i++) {
            rng = rng * 1664525u + 1013904223u;
            t += pieces[(rng >> 8) % n_pieces];
        }
        rng = rng * 1664525u + 1013904223u;
        for (int f = SERVE_TOOLS_NONE; f <= SERVE_TOOLS_MISTRAL; f++) {
            serve_tool_calls c;
            ASSERT_TRUE(serve_tool_calls_parse((serve_tool_format)f, t.data(), t.size(), &c));
            ASSERT_LE(c.content_end, t.size());
            for (int i = 0; i < c.n; i++) ASSERT_NE(c.calls[i].name[0], '\0');
            size_t prefix = serve_tool_calls_content_prefix((serve_tool_format)f, t.data(), t.size());
            ASSERT_LE(prefix, t.size());
            if (c.n) {
                ASSERT_LE(prefix, c.content_end) << t;
            }
            serve_tool_calls_free(&c);
        }
    }
}

TEST(ToolCalls, FormatNames) {
    serve_tool_format f = SERVE_TOOLS_NONE;
    for (int i = SERVE_TOOLS_NONE; i <= SERVE_TOOLS_MISTRAL; i++) {
        ASSERT_TRUE(serve_tool_format_from_name(serve_tool_format_name((serve_tool_format)i), &f));
        EXPECT_EQ(f, i);
    }
    EXPECT_FALSE(serve_tool_format_from_name("qwen", &f));
    EXPECT_FALSE(serve_tool_format_from_name(nullptr, &f));
    EXPECT_EQ(serve_tool_format_detect(nullptr), SERVE_TOOLS_NONE);
}

} // namespace
