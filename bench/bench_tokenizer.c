/* bench_tokenizer.c — tokenizer encode and decode speed on ~1 MiB of mixed text.
 *
 *   bench_tokenizer [--reps N] [--text FILE] [TOKENIZER...]
 *
 * TOKENIZER: model directories or tokenizer files (default: every fixture
 * tokenizer under tests/fixtures/tokenizers and models/stories260K). The text
 * is built from tests/fixtures/tokenizers/corpus.jsonl — its samples (one
 * JSON string per line) joined by "\n", cycling through the corpus until the
 * text reaches 1 MiB — the same rule as bench/bench_tokenizer_hf.py, which
 * measures Hugging Face `tokenizers` / `tiktoken` on the same text; --text
 * FILE uses a file instead. One thread; the text is encoded as one string
 * with special tokens matched and nothing added; best of --reps (default 3).
 * Reports load ms, token count, encode MB/s (1 MB = 1e6 bytes of input) and
 * decode MB/s (bytes of output), and checks decode(encode(text)) == text. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/tokenizer.h"

enum { TEXT_BYTES = 1 << 20 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The benchmark text from corpus.jsonl (see the file comment). */
static char *corpus_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "r");
    if (!f) return fprintf(stderr, "bench_tokenizer: cannot open %s\n", path), NULL;
    json_t **lines = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    while (getline(&line, &line_cap, f) > 0) {
        json_error_t err;
        json_t *s = json_loads(line, JSON_DECODE_ANY, &err);
        if (!json_is_string(s)) {
            fprintf(stderr, "bench_tokenizer: %s:%zu: not a JSON string\n", path, n + 1);
            exit(1);
        }
        if (n == cap) lines = realloc(lines, (cap = cap ? 2 * cap : 1024) * sizeof *lines);
        lines[n++] = s;
    }
    free(line);
    fclose(f);
    size_t cap_text = TEXT_BYTES + 1, at = 0;
    char *text = malloc(cap_text);
    for (size_t i = 0; text && n && at < TEXT_BYTES; i++) {
        json_t *s = lines[i % n];
        size_t l = json_string_length(s);
        if (at + l + 2 > cap_text) text = realloc(text, cap_text = 2 * (at + l + 2));
        if (!text) break;
        if (i) text[at++] = '\n';
        memcpy(text + at, json_string_value(s), l);
        at += l;
    }
    for (size_t i = 0; i < n; i++) json_decref(lines[i]);
    free(lines);
    *len = at;
    return text;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    *len = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

static int bench_one(const char *path, const char *text, size_t len, int reps) {
    double t0 = now_s();
    qilin_tokenizer *t = NULL;
    if (qilin_tokenizer_load(path, &t) != QILIN_OK) {
        printf("%-44s load failed: %s\n", path, qilin_last_error());
        return 1;
    }
    double load_ms = (now_s() - t0) * 1e3, best_enc = 1e30, best_dec = 1e30;
    qilin_ids ids = {0};
    char *back = NULL;
    size_t back_len = 0;
    for (int r = 0; r < reps; r++) {
        ids.n = 0;
        t0 = now_s();
        qilin_tokenizer_encode(t, text, len, QILIN_ENCODE_PARSE_SPECIAL, &ids);
        double t1 = now_s();
        free(back);
        qilin_tokenizer_decode(t, ids.ids, ids.n, 0, &back, &back_len);
        double t2 = now_s();
        if (t1 - t0 < best_enc) best_enc = t1 - t0;
        if (t2 - t1 < best_dec) best_dec = t2 - t1;
    }
    int same = back_len == len && !memcmp(back, text, len);
    printf("%-44s %8.1f %10zu %10.2f %10.2f  %s\n", path, load_ms, ids.n, len / best_enc / 1e6,
           back_len / best_dec / 1e6, same ? "yes" : "no (normalizer)");
    free(back);
    qilin_ids_free(&ids);
    qilin_tokenizer_free(t);
    return 0;
}

int main(int argc, char **argv) {
    int reps = 3;
    const char *text_path = NULL, *paths[64];
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (n_paths < 64) paths[n_paths++] = argv[i];
    }
    static const char *const defaults[] = {"qwen2", "llama3", "kimi_k2", "deepseek_v3", "gpt_neox_20b", "mistral_7b"};
    static char default_paths[8][512];
    if (n_paths == 0) {
        for (int i = 0; i < 6; i++) {
            snprintf(default_paths[i], sizeof default_paths[i], "%s/tests/fixtures/tokenizers/%s", QILIN_SOURCE_DIR,
                     defaults[i]);
            paths[n_paths++] = default_paths[i];
        }
        snprintf(default_paths[6], sizeof default_paths[6], "%s/models/stories260K", QILIN_SOURCE_DIR);
        paths[n_paths++] = default_paths[6];
    }
    size_t len = 0;
    char corpus[512];
    snprintf(corpus, sizeof corpus, "%s/tests/fixtures/tokenizers/corpus.jsonl", QILIN_SOURCE_DIR);
    char *text = text_path ? read_file(text_path, &len) : corpus_text(corpus, &len);
    if (!text) return fprintf(stderr, "bench_tokenizer: no text\n"), 1;
    printf("text: %zu bytes (%s), best of %d, one thread\n", len, text_path ? text_path : "corpus.jsonl cycled to 1 MiB",
           reps);
    printf("%-44s %8s %10s %10s %10s  %s\n", "tokenizer", "load ms", "tokens", "enc MB/s", "dec MB/s", "round trip");
    int rc = 0;
    for (int i = 0; i < n_paths; i++) rc |= bench_one(paths[i], text, len, reps);
    free(text);
    return rc;
}
