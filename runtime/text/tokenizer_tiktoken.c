/* tokenizer_tiktoken.c — tiktoken rank files: one "<base64 bytes> <rank>" per
 * line, the rank being the id.
 *
 * The file carries neither the split pattern nor the special tokens; those
 * belong to the model's Python wrapper, so qilin recognises the two files it
 * knows by their rank count and refuses any other:
 *   128000 ranks: Meta Llama 3 (original/tokenizer.model) — pattern "llama3",
 *                 256 specials at 128000.. named as Meta's tokenizer.py names
 *                 them, BOS <|begin_of_text|> added to a single text;
 *   163584 ranks: Kimi K2 (tiktoken.model) — pattern "kimi-k2", 256 specials
 *                 at 163584.. named by tokenizer_config.json's
 *                 added_tokens_decoder, the rest "<|reserved_token_{id}|>" as
 *                 tokenization_kimi.py does; no BOS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/fileio.h"
#include "runtime/text/tokenizer_impl.h"

enum { LLAMA3_RANKS = 128000, KIMI_RANKS = 163584, N_SPECIAL = 256 };

static int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes base64 s[0..n) into out; its length, or -1 when malformed. */
static long b64_decode(const char *s, size_t n, char *out) {
    long k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64_value(s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (char)(acc >> bits & 0xFF);
        }
    }
    return k;
}

static qilin_status read_ranks(qilin_tokenizer *t, const char *path) {
    FILE *f;
    QILIN_TRY(qilin_file_fopen(path, &f));
    char line[4096], raw[3072], text[6144];
    qilin_status st = QILIN_OK;
    tok_allow_ids(t, KIMI_RANKS +
                         N_SPECIAL); /* the largest of the two rank files qilin accepts, with specials */
    QILIN_TRY(tok_reserve_vocab(t, KIMI_RANKS + N_SPECIAL));
    for (int lineno = 1; st == QILIN_OK && fgets(line, sizeof line, f); lineno++) {
        size_t n = strcspn(line, "\r\n");
        if (n == 0) continue;
        char *sp = memchr(line, ' ', n), *end = NULL;
        long rank = sp ? strtol(sp + 1, &end, 10) : -1;
        long len = sp ? b64_decode(line, (size_t)(sp - line), raw) : -1;
        if (!sp || len <= 0 || rank < 0 || rank >= TOK_MAX_VOCAB || end != line + n) {
            st = qilin_error(QILIN_ERR_FORMAT, "%s:%d: not \"<base64> <rank>\"", path, lineno);
            break;
        }
        size_t k = tok_bytes_to_text(raw, (size_t)len, text);
        if ((st = tok_set_vocab(t, (int32_t)rank, text, k, true)) != QILIN_OK) break;
        t->bytes[rank] = tok_arena_copy(&t->arena, raw, (size_t)len);
        t->bytes_len[rank] = (uint32_t)len;
        if (!t->bytes[rank]) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s", path);
        else if ((st = tok_strmap_put(&t->vocab_bytes, t->bytes[rank], (size_t)len, (int32_t)rank, NULL)) != QILIN_OK) break;
        if (len == 1) t->byte_char_id[(uint8_t)raw[0]] = (int32_t)rank;
    }
    fclose(f);
    QILIN_TRY(st);
    for (int b = 0; b < 256; b++)
        if (t->byte_char_id[b] < 0)
            return qilin_error(QILIN_ERR_FORMAT, "%s: byte 0x%02X has no rank (every byte needs one)", path, b);
    return QILIN_OK;
}

static qilin_status add_special(qilin_tokenizer *t, int32_t id, const char *name) {
    tok_added a = {.id = id, .text = name, .len = (uint32_t)strlen(name), .special = true};
    return tok_add_added(t, &a);
}

/* Llama 3.1's names, as Meta's llama-models tokenizer.py (3.1 release) and
 * transformers' convert_llama_weights_to_hf.py list them; the reserved ones
 * continue from 3. (3.0 called 128004/128008/128010 reserved 2-4; later
 * llama-models releases name 128005 <|step_id|>.) */
static qilin_status llama3_specials(qilin_tokenizer *t) {
    static const char *named[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                  "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                  "<|reserved_special_token_2|>",
                                  "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                                  "<|python_tag|>"};
    int n_named = (int)(sizeof named / sizeof named[0]);
    for (int i = 0; i < N_SPECIAL; i++) {
        char name[64];
        if (i < n_named) snprintf(name, sizeof name, "%s", named[i]);
        else snprintf(name, sizeof name, "<|reserved_special_token_%d|>", i - n_named + 3);
        QILIN_TRY(add_special(t, LLAMA3_RANKS + i, name));
    }
    t->bos_text = "<|begin_of_text|>";
    t->eos_text = "<|end_of_text|>";
    return QILIN_OK;
}

static qilin_status load(qilin_tokenizer *t, const char *path, const char *config) {
    t->model = TOK_MODEL_RANKS;
    QILIN_TRY(read_ranks(t, path));
    int32_t n = t->n_vocab;
    int add_bos = -1, add_eos = -1;
    const char *family;
    if (n == LLAMA3_RANKS) {
        family = "llama3";
        QILIN_TRY(llama3_specials(t));
        QILIN_TRY(tok_read_config(t, config, false, &add_bos, &add_eos));
        if (add_bos < 0) add_bos = 1;
    } else if (n == KIMI_RANKS) {
        family = "kimi-k2";
        QILIN_TRY(tok_read_config(t, config, true, &add_bos, &add_eos));
        for (int32_t id = n; id < n + N_SPECIAL; id++) {
            if (id < t->n_vocab && t->text[id]) {
                t->attr[id] |= TOK_ATTR_SPECIAL; /* tiktoken treats all of them as special */
                for (int i = 0; i < t->n_added; i++)
                    if (t->added[i].id == id) t->added[i].special = true, t->added[i].normalized = false;
                continue;
            }
            char name[64];
            snprintf(name, sizeof name, "<|reserved_token_%d|>", (int)id);
            QILIN_TRY(add_special(t, id, name));
        }
    } else {
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: a tiktoken file with %d ranks is not one qilin knows (Llama 3 "
                           "has %d, Kimi K2 %d); its split pattern and special tokens are unknown",
                           path, (int)n, LLAMA3_RANKS, KIMI_RANKS);
    }
    QILIN_TRY(tok_add_named_split(t, family, path));
    QILIN_TRY(tok_finish(t));
    if (t->bos_text[0]) t->bos = qilin_tokenizer_token_id(t, t->bos_text);
    if (t->eos_text[0]) t->eos = qilin_tokenizer_token_id(t, t->eos_text);
    tok_apply_add_flags(t, add_bos, add_eos);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    QILIN_TRY(tok_read_template_file(t, dir));
    snprintf(t->describe, sizeof t->describe, "tiktoken BPE, %d ranks + %d specials, %s split", (int)n,
             (int)(t->n_vocab - n), family);
    return QILIN_OK;
}

qilin_status tok_load_tiktoken(const char *path, const char *config, qilin_tokenizer **out) {
    qilin_tokenizer *t = NULL;
    QILIN_TRY(tok_new(path, &t));
    qilin_status st = load(t, path, config);
    if (st != QILIN_OK) {
        qilin_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QILIN_OK;
}
