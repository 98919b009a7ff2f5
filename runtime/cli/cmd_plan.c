/* cmd_plan.c — `qilin plan`: will a model fit on these GPUs, and how many KV
 * tokens remain? Computed from config.json (or a GGUF header) alone.
 *
 *   qilin plan MODEL [--tp N] [--ep [--ep-dispatch replicated|all-to-all]]
 *                    [--gpus H100|H200|A100] [--gpu-mem 80GiB]
 *                    [--util 0.9] [--dtype bf16|fp16|fp32|fp8|int4]
 *                    [--kv-dtype bf16|fp16|fp8] [--max-batch-tokens T]
 *                    [--max-batch-seqs S] [--reserve 1GiB] [--slices]
 *                    [--predict [--context C] [--prompt P] [--batch 1,2,..]
 *                               [--json FILE]]
 *
 * MODEL: a model directory, its config.json, or a .gguf file. The weight
 * format is the checkpoint's (config.json torch_dtype / quantization_config)
 * unless --dtype names one. GPU memory: --gpu-mem (a number with B, KB/MB/GB/TB
 * = powers of 1000, or KiB/MiB/GiB/TiB = powers of 1024; a bare number is
 * GiB; at most 1 EiB, as for --reserve: cli_bytes), or --gpus (H100 and A100 = 80 GiB, H200 = 141 GiB), else
 * device 0's.
 * --slices lists GPU 0's slices (as does QILIN_PRINT_PLANS=1).
 *
 * --predict (needs --gpus) adds the roofline of host/predict.h: per batch
 * size (default 1, 2, 4, ..., 256) the bytes, FLOPs and collectives of one
 * decode step per GPU with every sequence at --context positions (1024), the
 * step time and tokens/s they imply on that GPU, and the prefill tokens/s of
 * one --prompt-token prompt (default: the context). A batch whose KV
 * (batch x context tokens) exceeds what the memory plan leaves is marked.
 * --json FILE writes the same as JSON (scripts/plot_bench.py reads it).
 * --uploaded plans (and predicts) the weights in the formats the forward
 * pass uploads them in today (qilin_upload_formats at bf16 activations: FP8
 * kept only where qilin_slot_stays_fp8), i.e. what `qilin run` reads, instead
 * of the checkpoint's storage format.
 *
 * Exit status: 0 it fits; 1 it does not (the shortfall is printed); 2 bad
 * arguments, a model that does not split over N GPUs, or output that could
 * not be written. -h/--help prints the usage and exits 0. */
#define _POSIX_C_SOURCE 200809L /* strcasecmp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "commands.h"
#include "cuda/device.h"
#include "host/model.h"
#include "host/plan.h"
#include "host/predict.h"

#include <jansson.h>

enum { MAX_BATCHES = 32 };

typedef struct plan_args {
    const char *model, *dtype, *kv_dtype, *gpus;
    uint64_t gpu_mem; /* bytes; 0 = not given */
    qilin_plan_options plan;
    qilin_memory_options mem;
    bool slices;
    bool uploaded; /* --uploaded: the formats the forward pass uploads */
    /* --predict */
    bool predict;
    const qilin_gpu_perf *perf; /* --gpus */
    int context, prompt;        /* prompt 0: = context */
    int batches[MAX_BATCHES], n_batches;
    const char *json;
} plan_args;

static int usage(FILE *to) {
    fprintf(
        to,
        "usage: qilin plan MODEL [--tp N] [--ep] [--gpus H100|H200|A100] [--gpu-mem 80GiB] [--util 0.9]\n"
        "                  [--dtype bf16|fp16|fp32|fp8|int4] [--kv-dtype bf16|fp16|fp8]\n"
        "                  [--max-batch-tokens T] [--max-batch-seqs S] [--reserve 1GiB] [--slices]\n"
        "                  [--ep-dispatch replicated|all-to-all]\n"
        "                  [--predict [--context 1024] [--prompt P] [--batch 1,2,4,...] [--json FILE]]\n"
        "  --predict: roofline decode/prefill step time and tokens/s on the --gpus model (host/predict.h)\n"
        "  sizes: a number with B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of 1024)\n"
        "         or none (GiB), up to 1 EiB\n");
    return to == stdout ? 0 : 2;
}

static int gpu_preset(const char *name, plan_args *a) {
    a->perf = qilin_gpu_perf_find(name);
    if (!a->perf) {
        fprintf(stderr, "qilin plan: --gpus %s: known GPUs are %s; use --gpu-mem for others\n", name,
                qilin_gpu_perf_names());
        return -1;
    }
    a->gpu_mem = a->perf->memory_bytes;
    return 0;
}

/* "1,8,32" -> a->batches (each 1..2^20, at most MAX_BATCHES). */
static int parse_batches(const char *v, plan_args *a) {
    char buf[512];
    if (strlen(v) >= sizeof buf) return fprintf(stderr, "qilin plan: --batch %.32s...: too long\n", v), -1;
    strcpy(buf, v);
    a->n_batches = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (a->n_batches == MAX_BATCHES)
            return fprintf(stderr, "qilin plan: --batch: at most %d sizes\n", MAX_BATCHES), -1;
        if (cli_int("plan", "--batch", t, 1, 1 << 20, &a->batches[a->n_batches++])) return -1;
    }
    if (a->n_batches == 0 || v[strlen(v) - 1] == ',' || v[0] == ',' || strstr(v, ",,"))
        return fprintf(stderr, "qilin plan: --batch %s: a list like 1,8,32\n", v), -1;
    return 0;
}

static int parse_args(int argc, char **argv, plan_args *a) {
    memset(a, 0, sizeof *a);
    qilin_plan_options_default(&a->plan);
    qilin_memory_options_default(&a->mem);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (f[0] != '-') {
            if (a->model)
                return fprintf(stderr, "qilin plan: two models given ('%s', '%s')\n", a->model, f), -1;
            a->model = f;
            continue;
        }
        if (!strcmp(f, "--ep"))
            a->plan.ep = true;
        else if (!strcmp(f, "--slices"))
            a->slices = true;
        else if (!strcmp(f, "--predict"))
            a->predict = true;
        else if (!strcmp(f, "--uploaded"))
            a->uploaded = true;
        else if (cli_is_help(f))
            return 1;
        else {
            /* clang-format off */
            static const char *const valued[] = {
                "--tp",      "--gpus",     "--gpu-mem",          "--reserve",        "--util",
                "--dtype",   "--kv-dtype", "--max-batch-tokens", "--max-batch-seqs", "--ep-dispatch",
                "--context", "--prompt",   "--batch",            "--json"};
            /* clang-format on */
            bool known = false;
            for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(f, valued[k]);
            if (!known) return cli_unknown("plan", f);
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            int k = 0;
            if (!v) return fprintf(stderr, "qilin plan: %s needs a value\n", f), -1;
            if (!strcmp(f, "--tp")) {
                if (cli_int("plan", f, v, 1, CLI_MAX_GPUS, &a->plan.tp)) return -1;
            } else if (!strcmp(f, "--gpus")) {
                if (gpu_preset(v, a)) return -1;
            } else if (!strcmp(f, "--context") || !strcmp(f, "--prompt")) {
                if (cli_int("plan", f, v, 1, 1 << 24, !strcmp(f, "--context") ? &a->context : &a->prompt))
                    return -1;
            } else if (!strcmp(f, "--batch")) {
                if (parse_batches(v, a)) return -1;
            } else if (!strcmp(f, "--json")) {
                a->json = v;
            } else if (!strcmp(f, "--gpu-mem")) {
                if (cli_bytes("plan", f, v, 1, CLI_MAX_BYTES, &a->gpu_mem)) return -1;
            } else if (!strcmp(f, "--reserve")) {
                if (cli_bytes("plan", f, v, 0, CLI_MAX_BYTES, &a->mem.reserve_bytes)) return -1;
            } else if (!strcmp(f, "--util")) {
                if (cli_double("plan", f, v, 0, 1, &a->mem.util)) return -1;
                if (a->mem.util == 0) return fprintf(stderr, "qilin plan: --util %s: must be > 0\n", v), -1;
            } else if (!strcmp(f, "--max-batch-tokens") || !strcmp(f, "--max-batch-seqs")) {
                if (cli_int("plan", f, v, 1, 1000000000, &k)) return -1;
                if (!strcmp(f, "--max-batch-tokens"))
                    a->mem.max_batch_tokens = k;
                else
                    a->mem.max_batch_seqs = k;
            } else if (!strcmp(f, "--dtype")) {
                a->dtype = v;
            } else if (!strcmp(f, "--ep-dispatch")) { /* all-to-all adds its exchange buffers */
                if (strcmp(v, "replicated") && strcmp(v, "all-to-all"))
                    return fprintf(stderr, "qilin plan: --ep-dispatch %s: replicated or all-to-all\n", v), -1;
                a->plan.ep_all_to_all = !strcmp(v, "all-to-all");
            } else { /* --kv-dtype */
                if (!strcmp(v, "bf16") || !strcmp(v, "fp16"))
                    a->mem.kv_elem_bytes = 2;
                else if (!strcmp(v, "fp8"))
                    a->mem.kv_elem_bytes = 1;
                else
                    return fprintf(stderr, "qilin plan: --kv-dtype %s: bf16, fp16 or fp8\n", v), -1;
            }
        }
    }
    if (!a->model) return fprintf(stderr, "qilin plan: no model given\n"), -1;
    bool predict_only = a->context || a->prompt || a->n_batches || a->json;
    if (predict_only && !a->predict)
        return fprintf(stderr, "qilin plan: --context, --prompt, --batch and --json go with --predict\n"), -1;
    if (a->predict && !a->perf)
        return fprintf(stderr, "qilin plan: --predict needs --gpus %s (the device's published figures)\n",
                       qilin_gpu_perf_names()),
               -1;
    if (a->uploaded && a->dtype)
        return fprintf(stderr,
                       "qilin plan: --uploaded takes the formats from the checkpoint; not with --dtype\n"),
               -1;
    if (!a->context) a->context = 1024;
    if (!a->prompt) a->prompt = a->context;
    if (!a->n_batches)
        for (int b = 1; b <= 256; b *= 2) a->batches[a->n_batches++] = b;
    return 0;
}

/* GPU memory when neither --gpus nor --gpu-mem was given: device 0's. */
static int device_memory(uint64_t *bytes) {
    int n = 0;
    qilin_device_props p;
    if (qilin_device_count(&n) != QILIN_OK || n == 0 || qilin_device_get_props(0, &p) != QILIN_OK) {
        fprintf(stderr, "qilin plan: no device to measure; give --gpus H100|H200 or --gpu-mem SIZE\n");
        return -1;
    }
    *bytes = p.total_mem_bytes;
    fprintf(stderr, "qilin plan: GPU memory of device 0 (%s%s): %.1f GiB\n", p.name,
            p.is_sim ? ", emulated" : "", (double)*bytes / 1073741824.0);
    return 0;
}

/* ---- --predict ------------------------------------------------------------ */

static json_t *step_json(const qilin_step_prediction *r) {
    return json_pack(
        "{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:s}",
        "tokens", (json_int_t)r->tokens, "seqs", (json_int_t)r->seqs, "context", (json_int_t)r->context,
        "experts_touched", r->experts_touched, "weight_bytes", r->weight_bytes, "kv_bytes", r->kv_bytes,
        "bytes", r->bytes, "flops", r->flops, "flops_fp8", r->flops_fp8, "attn_flops", r->attn_flops,
        "collectives", r->n_collectives, "comm_bytes", r->comm_bytes, "t_memory_s", r->t_memory, "t_math_s",
        r->t_math, "t_comm_s", r->t_comm, "t_step_s", r->t_step, "tokens_per_s", r->tokens_per_s, "bound",
        r->bound);
}

static void print_header(const plan_args *a, const qilin_plan *p, int kv_bytes) {
    const qilin_model_desc *d = p->desc;
    const qilin_gpu_perf *g = a->perf;
    printf("\nroofline prediction (host/predict.h) on %d x %s, weights %s (%s), KV %s, context %d\n",
           p->n_gpus, g->name, qilin_wfmt_name(p->opt.format.linear), p->opt.format.origin,
           kv_bytes == 1 ? "fp8" : "bf16", a->context);
    printf("  device: %s\n", g->source);
    printf("  step = max(bytes / %.2f TB/s, FLOPs / %.0f TFLOP/s BF16", g->hbm_bytes_per_s / 1e12,
           g->bf16_flops_per_s / 1e12);
    if (g->fp8_flops_per_s > 0) printf(" + FP8 FLOPs / %.0f TFLOP/s", g->fp8_flops_per_s / 1e12);
    printf(") + collectives (sent bytes / %.0f GB/s + %.0f us each); per GPU, the slowest\n",
           g->link_bytes_per_s / 1e9, g->link_latency_s * 1e6);
    if (d->n_experts > 0)
        printf("  routed experts read per MoE layer: E(1 - (1 - k/E)^B) distinct, E = %d, k = %d, "
               "B = tokens in the step\n",
               d->n_experts, d->top_k);
    printf("  KV: every sequence reads %d positions; GB = 1e9 bytes, per GPU\n", a->context);
}

/* Prints the table (and fills the JSON) of decode steps and the prefill. */
static int print_predictions(const plan_args *a, const qilin_plan *p, const qilin_memory_plan *m,
                             json_t *doc) {
    int kv_bytes = a->mem.kv_elem_bytes, act = a->mem.act_elem_bytes;
    print_header(a, p, kv_bytes);
    printf("%6s %8s %9s %8s %9s %6s %8s %8s %8s %9s %10s %-6s\n", "batch", "experts", "weight GB", "KV GB",
           "GFLOP", "colls", "mem ms", "math ms", "comm ms", "step ms", "tok/s", "bound");
    json_t *rows = json_array();
    bool any_over = false;
    for (int i = 0; i < a->n_batches; i++) {
        qilin_step_prediction r;
        if (qilin_predict_decode(p, a->perf, a->batches[i], a->context, kv_bytes, act, &r) != QILIN_OK) {
            json_decref(rows);
            return fprintf(stderr, "qilin plan: %s\n", qilin_last_error()), -1;
        }
        bool fits = (double)a->batches[i] * a->context <= (double)m->kv_tokens;
        any_over |= !fits;
        printf("%6d %8.1f %9.3f %8.3f %9.1f %6d %8.3f %8.3f %8.3f %9.3f %10.0f %-6s%s\n", a->batches[i],
               r.experts_touched, r.weight_bytes / 1e9, r.kv_bytes / 1e9, r.flops / 1e9, r.n_collectives,
               r.t_memory * 1e3, r.t_math * 1e3, r.t_comm * 1e3, r.t_step * 1e3, r.tokens_per_s, r.bound,
               fits ? "" : " *");
        json_t *row = step_json(&r);
        if (!row) {
            json_decref(rows);
            return fprintf(stderr, "qilin plan: out of memory\n"), -1;
        }
        json_object_set_new(row, "batch", json_integer(a->batches[i]));
        json_object_set_new(row, "kv_fits", json_boolean(fits));
        json_array_append_new(rows, row);
    }
    if (any_over)
        printf("  * batch x context exceeds the %lld KV tokens the memory plan leaves\n",
               (long long)m->kv_tokens);
    qilin_step_prediction pre;
    if (qilin_predict_prefill(p, a->perf, a->prompt, kv_bytes, act, &pre) != QILIN_OK) {
        json_decref(rows);
        return fprintf(stderr, "qilin plan: %s\n", qilin_last_error()), -1;
    }
    printf("prefill of one %d-token prompt: %.3f GB weights + %.3f GB KV, %.1f GFLOP (%.1f attention), "
           "%.3f ms (%s-bound) -> %.0f tokens/s\n",
           a->prompt, pre.weight_bytes / 1e9, pre.kv_bytes / 1e9, pre.flops / 1e9, pre.attn_flops / 1e9,
           pre.t_step * 1e3, pre.bound, pre.tokens_per_s);
    json_object_set_new(doc, "decode", rows);
    json_object_set_new(doc, "prefill", step_json(&pre));
    return 0;
}

static json_t *predict_doc(const plan_args *a, const qilin_plan *p) {
    return json_pack("{s:s, s:s, s:s, s:i, s:b, s:s, s:b, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f}", "model",
                     p->desc->source, "gpu", a->perf->name, "gpu_source", a->perf->source, "tp", p->n_gpus,
                     "ep", p->opt.ep, "format", qilin_wfmt_name(p->opt.format.linear), "uploaded",
                     a->uploaded, "context", a->context, "prompt", a->prompt, "kv_elem_bytes",
                     a->mem.kv_elem_bytes, "hbm_bytes_per_s", a->perf->hbm_bytes_per_s, "bf16_flops_per_s",
                     a->perf->bf16_flops_per_s, "fp8_flops_per_s", a->perf->fp8_flops_per_s,
                     "link_bytes_per_s", a->perf->link_bytes_per_s, "link_latency_s",
                     a->perf->link_latency_s);
}

/* --predict: the table on stdout, --json FILE; 0 or -1 (after a message). */
static int predict(const plan_args *a, const qilin_plan *p, const qilin_memory_plan *m) {
    json_t *doc = predict_doc(a, p);
    if (!doc) return fprintf(stderr, "qilin plan: out of memory\n"), -1;
    int rc = print_predictions(a, p, m, doc);
    if (rc == 0 && a->json && json_dump_file(doc, a->json, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "qilin plan: --json %s: cannot write it\n", a->json);
        rc = -1;
    }
    json_decref(doc);
    return rc;
}

/* --uploaded: per-tensor formats as host/forward.c's make_plan gives them;
 * `format` keeps the checkpoint's FP8 block sizes. *out: free after planning. */
static qilin_status uploaded_formats(const qilin_model_desc *d, qilin_plan_options *o, qilin_wfmt **out) {
    *out = malloc((size_t)(d->n_tensors > 0 ? d->n_tensors : 1) * sizeof **out);
    if (!*out) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin plan: --uploaded formats");
    qilin_upload_formats(d, QILIN_BF16, *out);
    o->tensor_formats = *out;
    o->format.linear = o->format.dense = QILIN_WFMT_BF16;
    o->format.experts_only = false;
    snprintf(o->format.origin, sizeof o->format.origin, "--uploaded: as qilin uploads them, FP8 where kept");
    return QILIN_OK;
}

int qilin_cmd_plan(int argc, char **argv) {
    plan_args a;
    int parsed = parse_args(argc, argv, &a);
    if (parsed) return usage(parsed > 0 ? stdout : stderr);
    if (a.gpu_mem == 0 && device_memory(&a.gpu_mem)) return 2;
    a.mem.gpu_mem_bytes = a.gpu_mem;

    qilin_model_desc *d = NULL;
    qilin_plan *p = NULL;
    qilin_status st = qilin_model_desc_load(a.model, &d);
    if (st != QILIN_OK) {
        fprintf(stderr, "qilin plan: %s\n", qilin_last_error());
        return 2;
    }
    bool known = false;
    st = a.dtype ? qilin_weight_format_parse(a.dtype, &a.plan.format)
                 : qilin_weight_format_from_config(d->source, &a.plan.format, &known);
    if (st == QILIN_OK && !a.dtype && !known)
        fprintf(stderr, "qilin plan: %s does not say how its weights are stored; assuming bf16 (--dtype)\n",
                d->source);
    qilin_wfmt *formats = NULL;
    if (st == QILIN_OK && a.uploaded) st = uploaded_formats(d, &a.plan, &formats);
    if (st == QILIN_OK) st = qilin_plan_create(d, &a.plan, &p);
    if (p) p->opt.tensor_formats = NULL; /* read while planning only */
    free(formats);
    if (st != QILIN_OK) {
        fprintf(stderr, "qilin plan: %s\n", qilin_last_error());
        qilin_model_desc_free(d);
        return 2;
    }
    qilin_memory_plan m;
    st = qilin_plan_memory(p, &a.mem, &m);
    int rc = st == QILIN_OK ? 0 : st == QILIN_ERR_OUT_OF_MEMORY ? 1 : 2;
    if (rc != 2) qilin_plan_print(p, &m, stdout);
    if (rc != 2 && a.predict && predict(&a, p, &m)) rc = 2;
    const char *env = getenv("QILIN_PRINT_PLANS");
    if (a.slices || (env && strcmp(env, "0") != 0)) qilin_plan_print_slices(p, 0, stdout);
    if (st != QILIN_OK) fprintf(stderr, "qilin plan: %s\n", qilin_last_error());
    qilin_plan_free(p);
    qilin_model_desc_free(d);
    int out_rc = cli_check_output("plan", stdout, "stdout");
    return rc == 2 || !out_rc ? rc : 2;
}
