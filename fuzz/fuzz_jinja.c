/* fuzz_jinja.c — libFuzzer target for the chat-template interpreter
 * (runtime/template/jinja_*.c through chat.h). Templates come from model repositories,
 * i.e. from strangers: whatever the source, parsing and rendering must end in
 * QILIN_OK or a status with a message — never a crash, a leak, a hang or
 * unbounded memory (the interpreter's depth, step, output and memory limits). A
 * parsed template is rendered twice, over a fixed multi-turn conversation
 * with a tool call and over an empty one, with tools and a fixed clock. */
#include "fuzz_util.h"

#include <time.h>

#include "runtime/chat.h"

static const char kMessages[] =
    "[{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":\"What is 2+2? \\u4f60\\u597d\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>add</think>4\",\"tool_calls\":[{\"type\":\"function\","
    "\"function\":{\"name\":\"calc\",\"arguments\":{\"x\":2}}}]},"
    "{\"role\":\"tool\",\"content\":\"4\",\"tool_call_id\":\"c1\"},"
    "{\"role\":\"user\",\"content\":\"thanks\"}]";
static const char kKwargs[] =
    "{\"enable_thinking\":false,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\","
    "\"parameters\":{\"type\":\"object\"}}}]}";

static void render(const qilin_chat_template *t, const char *messages, const char *kwargs) {
    struct tm now = {.tm_year = 124, .tm_mon = 6, .tm_mday = 26};
    qilin_chat_options o = {.bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = true,
                            .kwargs_json = kwargs, .now = &now, .max_output = 1 << 20,
                            /* a step under ASan costs ~100 ns: 2M keep one input well inside -timeout */
                            .max_steps = 2000000};
    char *out = NULL;
    qilin_status s = qilin_chat_render(t, messages, &o, &out);
    if (s == QILIN_OK) FUZZ_CHECK(out != NULL, "render succeeded without output");
    else fuzz_check_failure(s);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *source = malloc(size + 1);
    if (!source) return 0;
    memcpy(source, data, size);
    source[size] = '\0';
    qilin_chat_template *t = NULL;
    qilin_status s = qilin_chat_template_parse(source, "fuzz", &t);
    free(source);
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(t == NULL, "failed parse returned a template");
        return 0;
    }
    render(t, kMessages, kKwargs);
    render(t, "[]", NULL);
    qilin_chat_template_free(t);
    return 0;
}
