/* cmd_tokenize.c — `qilin tokenize`: the model's tokenizer on the command
 * line, the hook external checks (and curious users) use.
 *
 *   qilin tokenize --model DIR [--text S] [--no-bos] [--no-special] [--pieces]
 *       reads text from stdin (or --text) and prints its ids, space-separated,
 *       on one line. By default it adds what the model adds to one text (BOS
 *       for Llama/DeepSeek/Mistral) and matches special tokens written in the
 *       text, like Hugging Face's tokenizer(text). --no-bos adds nothing,
 *       --no-special treats "<|im_start|>" as plain text, --pieces prints one
 *       "id<TAB>token text" line per token instead.
 *   qilin tokenize --model DIR --decode [--skip-special]
 *       reads ids (separated by spaces, commas or newlines) from stdin and
 *       writes their text, byte-exact, with no newline added.
 *
 * DIR is a model directory (tokenizer.json, vocab.json + merges.txt, or a
 * tiktoken file, with tokenizer_config.json), a tokenizer file or a .gguf. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "runtime/tokenizer.h"

typedef struct tokenize_args {
    const char *model, *text;
    bool decode, no_bos, no_special, pieces, skip_special;
} tokenize_args;

static int usage(FILE *to) {
    fprintf(to, "usage: qilin tokenize --model DIR [--text S] [--no-bos] [--no-special] [--pieces] < text\n"
                "       qilin tokenize --model DIR --decode [--skip-special] < ids\n");
    return to == stdout ? 0 : 2;
}

/* 0 parsed, 1 --help, -1 bad arguments (after a message). */
static int parse(int argc, char **argv, tokenize_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (cli_is_help(f)) return 1;
        if (!strcmp(f, "--decode")) a->decode = true;
        else if (!strcmp(f, "--no-bos")) a->no_bos = true;
        else if (!strcmp(f, "--no-special")) a->no_special = true;
        else if (!strcmp(f, "--pieces")) a->pieces = true;
        else if (!strcmp(f, "--skip-special")) a->skip_special = true;
        else if (strcmp(f, "--model") && strcmp(f, "--text")) return cli_unknown("tokenize", f);
        else if (i + 1 == argc) return fprintf(stderr, "qilin tokenize: %s needs a value\n", f), -1;
        else *(f[2] == 'm' ? &a->model : &a->text) = argv[++i];
    }
    if (!a->model) return fprintf(stderr, "qilin tokenize: --model DIR is required\n"), -1;
    return 0;
}

static int encode(const qilin_tokenizer *t, const tokenize_args *a) {
    size_t len = 0;
    char *owned = NULL;
    const char *text = a->text;
    if (text) len = strlen(text);
    else if (!(text = owned = cli_read_all(stdin, &len))) return fprintf(stderr, "qilin tokenize: reading stdin failed\n"), 1;
    unsigned flags = (a->no_bos ? 0 : QILIN_ENCODE_ADD_SPECIAL) | (a->no_special ? 0 : QILIN_ENCODE_PARSE_SPECIAL);
    qilin_ids ids = {0};
    qilin_status st = qilin_tokenizer_encode(t, text, len, flags, &ids);
    free(owned);
    if (st != QILIN_OK) return qilin_ids_free(&ids), cli_fail("tokenize", st);
    for (size_t i = 0; i < ids.n; i++) {
        if (a->pieces) printf("%d\t%s\n", ids.ids[i], qilin_tokenizer_token_text(t, ids.ids[i]));
        else printf(i + 1 < ids.n ? "%d " : "%d", ids.ids[i]);
    }
    if (!a->pieces) printf("\n");
    qilin_ids_free(&ids);
    return 0;
}

static int decode(const qilin_tokenizer *t, const tokenize_args *a) {
    size_t len = 0;
    char *in = cli_read_all(stdin, &len);
    if (!in) return fprintf(stderr, "qilin tokenize: reading stdin failed\n"), 1;
    qilin_ids ids = {0};
    int rc = 0;
    for (char *p = in; *p && !rc;) {
        if (strchr(" \t\r\n,[]", *p)) {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v >= qilin_tokenizer_vocab_size(t)) {
            fprintf(stderr, "qilin tokenize: '%.20s' is not a token id of this vocabulary (0..%d)\n", p,
                    qilin_tokenizer_vocab_size(t) - 1);
            rc = 2;
            break;
        }
        qilin_status st = qilin_ids_push(&ids, (int32_t)v);
        if (st != QILIN_OK) rc = cli_fail("tokenize", st);
        p = end;
    }
    free(in);
    char *text = NULL;
    size_t n = 0;
    if (!rc) {
        qilin_status st = qilin_tokenizer_decode(t, ids.ids, ids.n, a->skip_special ? QILIN_DECODE_SKIP_SPECIAL : 0,
                                                 &text, &n);
        if (st != QILIN_OK) rc = cli_fail("tokenize", st);
        else fwrite(text, 1, n, stdout);
    }
    free(text);
    qilin_ids_free(&ids);
    return rc;
}

int qilin_cmd_tokenize(int argc, char **argv) {
    tokenize_args a;
    int parsed = parse(argc, argv, &a);
    if (parsed) return usage(parsed > 0 ? stdout : stderr);
    qilin_tokenizer *t = NULL;
    qilin_status st = qilin_tokenizer_load(a.model, &t);
    if (st != QILIN_OK) return cli_fail("tokenize", st);
    int rc = a.decode ? decode(t, &a) : encode(t, &a);
    qilin_tokenizer_free(t);
    int out_rc = cli_check_output("tokenize", stdout, "stdout");
    return rc ? rc : out_rc;
}
