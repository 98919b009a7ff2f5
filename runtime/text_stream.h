/* text_stream.h — generated ids to text, as they come: the part of `qilin
 * run` (and later the server's streaming responses) that decides what text
 * is ready to show and when generation is over.
 *
 * Each pushed id is checked against the stop ids (EOS and end-of-turn
 * tokens, never shown), decoded through a streaming detokenizer (partial
 * UTF-8 characters wait), and appended to the visible text. Text that could
 * still turn out to be the start of a stop string is held back; when a stop
 * string completes, the text before it is emitted and the stream ends with
 * the stop string itself dropped (OpenAI's `stop` semantics). */
#ifndef QILIN_RUNTIME_TEXT_STREAM_H
#define QILIN_RUNTIME_TEXT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"
#include "runtime/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qilin_finish {
    QILIN_FINISH_NONE = 0, /* still going */
    QILIN_FINISH_EOS,      /* a stop id was generated */
    QILIN_FINISH_STOP,     /* a stop string appeared */
} qilin_finish;

typedef void (*qilin_emit_fn)(void *user, const char *text, size_t n);

typedef struct qilin_text_stream {
    qilin_detokenizer detok;
    const int32_t *stop_ids;
    size_t n_stop_ids;
    const char *const *stops;
    size_t n_stops;
    qilin_emit_fn emit;
    void *user;
    char *held;          /* decoded, not yet emitted: may begin a stop string */
    size_t n_held, cap_held;
    char *text;          /* everything emitted so far (NUL-terminated) */
    size_t n_text, cap_text;
    qilin_finish finish;
    int32_t last_id;     /* the stop id, when finish is QILIN_FINISH_EOS */
} qilin_text_stream;

/* stop_ids and stops are borrowed and must outlive the stream; emit may be NULL. */
void qilin_text_stream_init(qilin_text_stream *s, const qilin_tokenizer *t, unsigned decode_flags,
                            const int32_t *stop_ids, size_t n_stop_ids, const char *const *stops, size_t n_stops,
                            qilin_emit_fn emit, void *user);
/* The model's vocabulary size: ids past the tokenizer's, below it, are padding
 * and decode to empty text (qilin_detokenizer_set_model_vocab). */
void qilin_text_stream_set_model_vocab(qilin_text_stream *s, int32_t model_vocab);
/* The prompt, before the first push: its ids go through the same decoder, so
 * the first generated token decodes as it does after them (SentencePiece
 * drops a leading space only at the start of the whole text: "Once upon" +
 * "▁a" reads "Once upon a", not "Once upona"). With echo the prompt's text
 * is emitted as decoded (not kept in s->text, never matched against stop
 * strings), so prompt and generation together read exactly as
 * qilin_tokenizer_decode of all the ids; bytes of a UTF-8 character the
 * prompt leaves unfinished wait for the generated ones. */
qilin_status qilin_text_stream_prompt(qilin_text_stream *s, const int32_t *ids, size_t n, bool echo);
/* Takes one generated id; *more is false once the stream has finished. */
qilin_status qilin_text_stream_push(qilin_text_stream *s, int32_t id, bool *more);
/* End of generation (length limit or a finished stream): emits what is held. */
qilin_status qilin_text_stream_finish(qilin_text_stream *s);
void qilin_text_stream_free(qilin_text_stream *s);

#ifdef __cplusplus
}
#endif

#endif
