/* tool_calls.h — a model's generated text into OpenAI tool calls, for the
 * formats the target families emit (pure functions, no server state):
 *
 *   hermes    Qwen2.5 / Qwen3 / QwQ:  <tool_call>\n{"name": N, "arguments": {..}}\n</tool_call> ...
 *   deepseek  DeepSeek-V3:
 * <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{..}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *             DeepSeek-V3.1:
 * <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>N<｜tool▁sep｜>{..}<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *   kimi_k2   Kimi K2:
 * <|tool_calls_section_begin|><|tool_call_begin|>functions.N:0<|tool_call_argument_begin|>{..}<|tool_call_end|>...<|tool_calls_section_end|>
 *   llama3    Llama 3.1/3.2 JSON: the whole message is {"name": N, "parameters": {..}} (optionally
 *             after <|python_tag|>; several separated by ';')
 *   mistral   [TOOL_CALLS][{"name": N, "arguments": {..}, "id": ".."}, ...] or the v11 form
 *             [TOOL_CALLS]N[ARGS]{..} repeated
 *
 * Text before the first call is content (llama3: only whitespace may come
 * before). A call whose JSON is malformed or truncated, a missing name, or
 * text other than whitespace between or after the calls makes the whole
 * text plain content with no calls: a malformed call is never half-read. */
#ifndef QILIN_RUNTIME_SERVE_TOOL_CALLS_H
#define QILIN_RUNTIME_SERVE_TOOL_CALLS_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/tokenizer.h"

typedef enum serve_tool_format {
    SERVE_TOOLS_NONE,
    SERVE_TOOLS_HERMES,
    SERVE_TOOLS_DEEPSEEK,
    SERVE_TOOLS_KIMI_K2,
    SERVE_TOOLS_LLAMA3,
    SERVE_TOOLS_MISTRAL,
} serve_tool_format;

/* "hermes", "deepseek", "kimi_k2", "llama3", "mistral"; "none" for NONE. */
const char *serve_tool_format_name(serve_tool_format f);
/* False when name is none of the above (then *out is unchanged). */
bool serve_tool_format_from_name(const char *name, serve_tool_format *out);
/* The format whose marker tokens the vocabulary has; NONE when none does. */
serve_tool_format serve_tool_format_detect(const qilin_tokenizer *t);

typedef struct serve_tool_call {
    char *id;        /* the model's own (kimi_k2, mistral), else NULL: the server makes one */
    char *name;      /* non-empty */
    char *arguments; /* a JSON object, compact */
} serve_tool_call;

typedef struct serve_tool_calls {
    size_t content_end; /* text[0, content_end) is content; the whole text when n == 0 */
    int n;
    serve_tool_call *calls;
} serve_tool_calls;

/* Parses the whole generated text[0, len). Returns false only when out of
 * memory (then *out holds nothing). */
bool serve_tool_calls_parse(serve_tool_format f, const char *text, size_t len, serve_tool_calls *out);
void serve_tool_calls_free(serve_tool_calls *c);

/* While text grows: how many leading bytes are surely content, whatever
 * comes next (before the first call marker and before a suffix that may
 * still become one). Only grows as text is appended, and never exceeds the
 * content_end a final parse that finds calls returns. */
size_t serve_tool_calls_content_prefix(serve_tool_format f, const char *text, size_t len);

#endif
