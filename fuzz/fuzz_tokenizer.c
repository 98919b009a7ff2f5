/* fuzz_tokenizer.c — libFuzzer target for the tokenizer.json loader and the
 * encode/decode pipeline (runtime/text/tokenizer*.c). tokenizer.json comes from
 * model repositories; a hostile one (bad regexes, id gaps, cyclic or absurd
 * merges, huge added tokens) must be refused with a status and a message or
 * load into a tokenizer that encodes and decodes a fixed multilingual text —
 * with and without special-token matching, with invalid UTF-8 in it — and
 * streams it back, without crashing, leaking or hanging. */
#include "fuzz_util.h"

#include "runtime/tokenizer.h"
#include "runtime/text/tokenizer_impl.h"

static const char kText[] = "Hello world, <|endoftext|> It's 2024: 你好 世界 مرحبا 😀👍🏽\n\n  \t<s>[INST] \xff\xfe end";

static void exercise(const qilin_tokenizer *t, unsigned flags) {
    qilin_ids ids = {0};
    qilin_status s = qilin_tokenizer_encode(t, kText, sizeof kText - 1, flags, &ids);
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        qilin_ids_free(&ids);
        return;
    }
    int vocab = qilin_tokenizer_vocab_size(t);
    for (size_t i = 0; i < ids.n; i++)
        FUZZ_CHECK(ids.ids[i] >= 0 && ids.ids[i] < vocab, "id %d outside the vocabulary of %d", ids.ids[i], vocab);
    char *text = NULL;
    size_t len = 0;
    s = qilin_tokenizer_decode(t, ids.ids, ids.n, 0, &text, &len);
    if (s != QILIN_OK) fuzz_check_failure(s);
    free(text);
    qilin_detokenizer d;
    qilin_detokenizer_init(&d, t, QILIN_DECODE_SKIP_SPECIAL);
    size_t cap = 64 + qilin_tokenizer_max_token_bytes(t), n = 0;
    char *piece = malloc(cap);
    for (size_t i = 0; piece && i < ids.n; i++) {
        s = qilin_detokenizer_push(&d, ids.ids[i], piece, cap, &n);
        if (s != QILIN_OK) fuzz_check_failure(s);
        FUZZ_CHECK(n <= cap, "detokenizer wrote %zu bytes into %zu", n, cap);
    }
    if (piece) qilin_detokenizer_flush(&d, piece, cap);
    free(piece);
    qilin_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qilin_tokenizer *t = NULL;
    qilin_status s = tok_load_hf_json(fuzz_input_path(data, size), &t);
    if (s != QILIN_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(t == NULL, "failed load returned a tokenizer");
        return 0;
    }
    exercise(t, 0);
    exercise(t, QILIN_ENCODE_ADD_SPECIAL | QILIN_ENCODE_PARSE_SPECIAL);
    qilin_tokenizer_free(t);
    return 0;
}
