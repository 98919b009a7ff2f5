/* jinja.h — qilin's Jinja subset, the language of Hugging Face chat templates.
 *
 * Renders what jinja2 renders under transformers' environment
 * (ImmutableSandboxedEnvironment, trim_blocks=True, lstrip_blocks=True, the
 * loopcontrols extension, and transformers' tojson / raise_exception /
 * strftime_now / namespace globals), for the constructs chat templates use:
 *
 *   statements   if/elif/else, for (loop.*, for-else, `for k, v in ...`,
 *                inline `if` filter), set (names, tuples, ns.attr, block set),
 *                macro, break/continue, raw, generation, comments;
 *                whitespace control {%- -%} {{- -}} {#- -#} and the + forms
 *   expressions  literals, lists, dicts, tuples (as lists), attribute and
 *                subscript access, slices, + - * / // % ** ~, comparisons,
 *                and/or/not, in/not in, `is [not] test`, `a if c else b`,
 *                filters, calls of methods, macros and globals
 *
 * Values are none/bool/int/float/string/list/dict (dicts keep insertion
 * order), printed as Python prints them. Undefined variables behave as
 * Jinja's default Undefined. Anything else is QILIN_ERR_UNSUPPORTED naming the
 * construct and the template line; template errors (syntax, type errors,
 * raise_exception) are QILIN_ERR_FORMAT / QILIN_ERR_INVALID_ARGUMENT with the
 * line. Hostile templates end in an error, never a crash: nesting depth
 * (of the template and of values), output size, live memory and evaluation
 * steps are bounded (qilin_jinja_options). Integers are 64-bit: where Python
 * would give a larger int (9223372036854775807 + 1, 2 ** 64, abs of the
 * smallest int, '99999999999999999999'|int) the render fails with
 * QILIN_ERR_UNSUPPORTED naming the operation, never a wrapped value.
 *
 * A parsed template is immutable; renders of one template may run
 * concurrently. */
#ifndef QILIN_RUNTIME_JINJA_H
#define QILIN_RUNTIME_JINJA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_jinja_template qilin_jinja_template;

/* source[0..len) is the template text; name appears in error messages. */
qilin_status qilin_jinja_parse(const char *source, size_t len, const char *name, qilin_jinja_template **out);
void qilin_jinja_free(qilin_jinja_template *t); /* NULL does nothing */

typedef struct qilin_jinja_options {
    size_t max_output;  /* bytes of output (and of any one string value); 0: 64 MiB */
    uint64_t max_steps; /* evaluation steps; 0: 50 million */
    size_t max_memory;  /* bytes of strings, lists, dicts and buffers alive at once;
                           0: 4 x max_output (256 MiB with the default output limit) */
    /* Clock for strftime_now(fmt); NULL: local time at render. */
    const struct tm *now;
} qilin_jinja_options;

/* Renders with the variables of `context_json`, a JSON object (NULL: none).
 * *out is malloc'd and NUL-terminated (free() it); *out_len may be NULL.
 * opt may be NULL for the defaults. */
qilin_status qilin_jinja_render(const qilin_jinja_template *t, const char *context_json,
                                const qilin_jinja_options *opt, char **out, size_t *out_len);
/* The same with the context as a jansson object (borrowed; NULL: none). */
struct json_t;
qilin_status qilin_jinja_render_json(const qilin_jinja_template *t, const struct json_t *context,
                                     const qilin_jinja_options *opt, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_RUNTIME_JINJA_H */
