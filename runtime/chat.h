/* chat.h — chat prompts from a model's own chat template, rendered by
 * qilin's Jinja subset (jinja.h) exactly as transformers'
 * tokenizer.apply_chat_template(messages, tokenize=False, ...) renders them.
 *
 * What apply_chat_template does around the template, and so does this:
 *   - message keys whose value is null are dropped (transformers 5 does, so
 *     `content: null` reads as undefined in the template);
 *   - a message with reasoning_content / thinking / reasoning gets both
 *     "thinking" (first) and "reasoning_content" (last) set to it;
 *   - the template sees messages, tools (null when not given), documents
 *     (null), add_generation_prompt, bos_token / eos_token when the tokenizer
 *     has them, and every extra keyword (enable_thinking, date_string, ...);
 *   - a config with several named templates uses "tool_use" when tools are
 *     given and it exists, else "default".
 * Render then tokenize the prompt without adding BOS again: templates that
 * want BOS write it themselves.
 *
 * Templates come from the model directory the way transformers loads them:
 * chat_template.jinja if present, else tokenizer_config.json "chat_template"
 * (a string, or a list of {"name", "template"}), or an explicit file
 * (`--chat-template FILE`). Handles are immutable after loading; renders may
 * run concurrently. */
#ifndef QILIN_RUNTIME_CHAT_H
#define QILIN_RUNTIME_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_chat_template qilin_chat_template;

/* One template from its Jinja source; name appears in error messages. No
 * BOS/EOS are known (pass them in qilin_chat_options). */
qilin_status qilin_chat_template_parse(const char *source, const char *name, qilin_chat_template **out);

/* From a model: `path` is a model directory or its tokenizer_config.json
 * (BOS/EOS and, unless template_file is given, the template come from
 * there). `template_file` (may be NULL) overrides the template: a .json file
 * is read as a tokenizer_config, anything else as Jinja text. path may be
 * NULL when template_file is given. Errors: QILIN_ERR_IO (missing file),
 * QILIN_ERR_FORMAT (bad JSON, no chat_template; the message names the file
 * and key), and the template's own parse errors. */
qilin_status qilin_chat_template_load(const char *path, const char *template_file, qilin_chat_template **out);
void qilin_chat_template_free(qilin_chat_template *t); /* NULL does nothing */

/* BOS/EOS strings from tokenizer_config.json; NULL when it has none. */
const char *qilin_chat_template_bos(const qilin_chat_template *t);
const char *qilin_chat_template_eos(const qilin_chat_template *t);

typedef struct qilin_chat_options {
    /* Override the tokenizer's BOS/EOS; NULL keeps the template's own (from
     * tokenizer_config.json), and none at all leaves them undefined. */
    const char *bos_token;
    const char *eos_token;
    bool add_generation_prompt;
    /* JSON object of extra template variables, as apply_chat_template's
     * **kwargs: {"enable_thinking": false, "tools": [...], "date_string": "..."}.
     * "tools" and "documents" here are apply_chat_template's arguments of
     * those names. NULL: none. */
    const char *kwargs_json;
    /* Multi-template configs: the template to use; NULL picks as transformers does. */
    const char *template_name;
    const struct tm *now; /* strftime_now's clock; NULL: local time */
    size_t max_output;    /* 0: 64 MiB (live values: 4x this, see qilin_jinja_options) */
    uint64_t max_steps;   /* the interpreter's evaluation steps; 0: its default (50 million) */
} qilin_chat_options;

/* messages_json: a JSON array of OpenAI-style messages (role, content,
 * tool_calls, reasoning_content, name, tool_call_id, ... passed through as
 * dicts). *out is malloc'd and NUL-terminated. A template's
 * raise_exception() is QILIN_ERR_INVALID_ARGUMENT carrying its message. */
qilin_status qilin_chat_render(const qilin_chat_template *t, const char *messages_json,
                               const qilin_chat_options *opt, char **out);

/* ---- reasoning text (<think>...</think>, DeepSeek-R1, Qwen3, QwQ) ---- */

/* True when a rendered prompt leaves the model inside a reasoning block
 * (it ends with "<think>" plus optional whitespace, as R1's generation prompt). */
bool qilin_chat_prompt_opens_think(const char *prompt);

/* A streaming filter over generated text: with show_reasoning it passes
 * everything through; without, it drops <think>...</think> blocks and the
 * whitespace that follows the closing tag. Tags split across pieces are held
 * back until they can be decided. starts_in_reasoning: the prompt opened the
 * block (see above). */
typedef struct qilin_think_filter qilin_think_filter;
qilin_status qilin_think_filter_create(bool show_reasoning, bool starts_in_reasoning,
                                       qilin_think_filter **out);
/* Feeds one piece; *visible / *visible_len is the text to print now, owned by
 * the filter and valid until the next call. */
qilin_status qilin_think_filter_push(qilin_think_filter *f, const char *text, size_t len,
                                     const char **visible, size_t *visible_len);
/* End of generation: releases held-back text that turned out not to be a tag. */
qilin_status qilin_think_filter_finish(qilin_think_filter *f, const char **visible, size_t *visible_len);
bool qilin_think_filter_in_reasoning(const qilin_think_filter *f);
void qilin_think_filter_free(qilin_think_filter *f); /* NULL does nothing */

#ifdef __cplusplus
}
#endif
#endif /* QILIN_RUNTIME_CHAT_H */
