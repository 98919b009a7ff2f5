/* config.h — Hugging Face config.json / generation_config.json accessor.
 *
 * The parsed JSON is kept whole (jansson) and read through typed getters.
 * Keys are dotted paths into nested objects ("rope_scaling.factor",
 * "text_config.hidden_size"); hf_config_sub() gives a view of a nested object
 * (e.g. a multimodal model's "text_config") with the same getters. Required
 * getters fail with QILIN_ERR_FORMAT naming the file and the key when it is
 * missing or has the wrong type; *_or getters return the default when the key
 * is missing or null, and still fail on a wrong type. Numbers: an integer
 * getter accepts integral reals (1.0), a float getter accepts integers.
 * Architecture descriptors are built on top of this (not here).
 *
 * Thread safety: getters on one handle may run concurrently; close is not. */
#ifndef QILIN_HOST_CONFIG_H
#define QILIN_HOST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hf_config hf_config;

/* Reads and parses `path` (a JSON object; duplicate keys rejected). */
qilin_status hf_config_open(const char *path, hf_config **out);
/* Parses `len` bytes of `text`; `name` stands for the file in messages. */
qilin_status hf_config_parse(const char *text, size_t len, const char *name, hf_config **out);
/* A view of the object at `key` ("text_config"); close it separately (it
 * keeps the parsed JSON alive on its own). Missing or non-object: FORMAT. */
qilin_status hf_config_sub(const hf_config *c, const char *key, hf_config **out);
void hf_config_close(hf_config *c); /* NULL does nothing */

/* The file (and for a view, "file:key") used in messages. */
const char *hf_config_name(const hf_config *c);
/* The underlying jansson object (json_t *), borrowed; for keys not covered below. */
void *hf_config_json(const hf_config *c);

/* A transformers attribute_map alias: `alias` is another spelling of the
 * top-level `key` (Mixtral's "num_experts" for "num_local_experts"). When only
 * the alias is set, `key` reads its value from then on; when both are set
 * (not null) and differ, QILIN_ERR_FORMAT names both. Changes the handle:
 * call it before sharing the handle between threads. */
qilin_status hf_config_alias(hf_config *c, const char *key, const char *alias);

/* true when the key exists and is not null. */
bool hf_config_has(const hf_config *c, const char *key);

qilin_status hf_config_int(const hf_config *c, const char *key, int64_t *out);
qilin_status hf_config_int_or(const hf_config *c, const char *key, int64_t def, int64_t *out);
qilin_status hf_config_float(const hf_config *c, const char *key, double *out);
qilin_status hf_config_float_or(const hf_config *c, const char *key, double def, double *out);
qilin_status hf_config_bool(const hf_config *c, const char *key, bool *out);
qilin_status hf_config_bool_or(const hf_config *c, const char *key, bool def, bool *out);
/* The string stays valid while `c` (or any view of its file) is open. */
qilin_status hf_config_string(const hf_config *c, const char *key, const char **out);
qilin_status hf_config_string_or(const hf_config *c, const char *key, const char *def, const char **out);
/* An integer or an array of integers (eos_token_id is either): fills up to
 * `cap` values, sets *n to the count; more than `cap` is a FORMAT error.
 * Missing or null: *n = 0. */
qilin_status hf_config_int_list(const hf_config *c, const char *key, int64_t *out, size_t cap, size_t *n);

/* generation_config.json, with Hugging Face's defaults for absent keys. */
enum { HF_MAX_EOS = 8 };
typedef struct hf_generation_config {
    bool do_sample;            /* false */
    double temperature;        /* 1.0 */
    double top_p;              /* 1.0 */
    int64_t top_k;             /* 50 */
    double min_p;              /* 0.0 (disabled) */
    double repetition_penalty; /* 1.0 */
    int64_t max_new_tokens;    /* -1 = not set */
    int64_t bos_token_id;      /* -1 = not set */
    int64_t pad_token_id;      /* -1 = not set */
    int64_t eos_token_ids[HF_MAX_EOS];
    size_t n_eos;
} hf_generation_config;

qilin_status hf_generation_config_read(const hf_config *c, hf_generation_config *out);
qilin_status hf_generation_config_load(const char *path, hf_generation_config *out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_CONFIG_H */
