/* text_stream.c — see text_stream.h. */
#include "runtime/text_stream.h"

#include <stdlib.h>
#include <string.h>

void qilin_text_stream_init(qilin_text_stream *s, const qilin_tokenizer *t, unsigned decode_flags,
                            const int32_t *stop_ids, size_t n_stop_ids, const char *const *stops, size_t n_stops,
                            qilin_emit_fn emit, void *user) {
    memset(s, 0, sizeof *s);
    qilin_detokenizer_init(&s->detok, t, decode_flags);
    s->stop_ids = stop_ids, s->n_stop_ids = n_stop_ids;
    s->stops = stops, s->n_stops = n_stops;
    s->emit = emit, s->user = user;
    s->last_id = -1;
}

/* Room for `need` bytes in *buf. */
static qilin_status reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return QILIN_OK;
    size_t want = *cap ? *cap : 256;
    while (want < need) want *= 2;
    char *grown = realloc(*buf, want);
    if (!grown) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "text stream: %zu bytes", want);
    *buf = grown, *cap = want;
    return QILIN_OK;
}

static qilin_status append(char **buf, size_t *n, size_t *cap, const char *text, size_t len) {
    QILIN_TRY(reserve(buf, cap, *n + len + 1));
    memcpy(*buf + *n, text, len);
    *n += len;
    (*buf)[*n] = '\0';
    return QILIN_OK;
}

/* Moves the first n held bytes to the output. */
void qilin_text_stream_set_model_vocab(qilin_text_stream *s, int32_t model_vocab) {
    qilin_detokenizer_set_model_vocab(&s->detok, model_vocab);
}

static qilin_status release(qilin_text_stream *s, size_t n) {
    if (n == 0) return QILIN_OK;
    QILIN_TRY(append(&s->text, &s->n_text, &s->cap_text, s->held, n));
    if (s->emit) s->emit(s->user, s->held, n);
    memmove(s->held, s->held + n, s->n_held - n);
    s->n_held -= n;
    return QILIN_OK;
}

/* Longest suffix of the held text that is a proper prefix of some stop string. */
static size_t partial_stop_suffix(const qilin_text_stream *s) {
    size_t best = 0;
    for (size_t i = 0; i < s->n_stops; i++) {
        size_t len = strlen(s->stops[i]);
        for (size_t k = len - (len > 0); k > best; k--)
            if (k <= s->n_held && !memcmp(s->held + s->n_held - k, s->stops[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* Earliest complete stop string in the held text: its offset, or -1. */
static long find_stop(const qilin_text_stream *s) {
    long first = -1;
    for (size_t i = 0; i < s->n_stops; i++) {
        size_t len = strlen(s->stops[i]);
        if (len == 0 || len > s->n_held) continue;
        for (size_t at = 0; at + len <= s->n_held && (first < 0 || (long)at < first); at++)
            if (!memcmp(s->held + at, s->stops[i], len)) {
                first = (long)at;
                break;
            }
    }
    return first;
}

qilin_status qilin_text_stream_prompt(qilin_text_stream *s, const int32_t *ids, size_t n, bool echo) {
    size_t room = 64 + qilin_tokenizer_max_token_bytes(s->detok.t), got = 0;
    char *piece = malloc(room);
    if (!piece) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "text stream: %zu bytes", room);
    qilin_status st = QILIN_OK;
    for (size_t i = 0; i < n && st == QILIN_OK; i++) {
        st = qilin_detokenizer_push(&s->detok, ids[i], piece, room, &got);
        if (st == QILIN_OK && echo && got && s->emit) s->emit(s->user, piece, got);
    }
    free(piece);
    return st == QILIN_OK ? QILIN_OK : qilin_error_context(st, "text stream: prompt");
}

qilin_status qilin_text_stream_push(qilin_text_stream *s, int32_t id, bool *more) {
    *more = false;
    if (s->finish != QILIN_FINISH_NONE) return QILIN_OK;
    for (size_t i = 0; i < s->n_stop_ids; i++)
        if (id == s->stop_ids[i]) {
            s->finish = QILIN_FINISH_EOS, s->last_id = id;
            return qilin_text_stream_finish(s);
        }
    /* decode straight onto the end of the held text (no per-token buffer) */
    size_t room = 64 + qilin_tokenizer_max_token_bytes(s->detok.t), n = 0;
    QILIN_TRY(reserve(&s->held, &s->cap_held, s->n_held + room + 1));
    QILIN_TRY(qilin_detokenizer_push(&s->detok, id, s->held + s->n_held, room, &n));
    s->n_held += n;
    long stop = find_stop(s);
    if (stop >= 0) {
        s->finish = QILIN_FINISH_STOP;
        QILIN_TRY(release(s, (size_t)stop));
        s->n_held = 0;
        return QILIN_OK;
    }
    QILIN_TRY(release(s, s->n_held - partial_stop_suffix(s)));
    *more = true;
    return QILIN_OK;
}

qilin_status qilin_text_stream_finish(qilin_text_stream *s) {
    if (s->finish == QILIN_FINISH_STOP) return QILIN_OK;
    char tail[16];
    size_t n = qilin_detokenizer_flush(&s->detok, tail, sizeof tail);
    QILIN_TRY(append(&s->held, &s->n_held, &s->cap_held, tail, n));
    return release(s, s->n_held);
}

void qilin_text_stream_free(qilin_text_stream *s) {
    free(s->held);
    free(s->text);
    memset(s, 0, sizeof *s);
}
