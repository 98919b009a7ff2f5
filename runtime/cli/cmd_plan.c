/* cmd_plan.c — `qilin plan`: will a model fit on these GPUs, and how many KV
 * tokens remain? Computed from config.json (or a GGUF header) alone.
 *
 *   qilin plan MODEL [--tp N] [--ep [--ep-dispatch replicated|all-to-all]]
 *                    [--gpus H100|H200|A100] [--gpu-mem 80GiB]
 *                    [--util 0.9] [--dtype bf16|fp16|fp32|fp8|int4]
 *                    [--kv-dtype bf16|fp16|fp8] [--max-batch-tokens T]
 *                    [--max-batch-seqs S] [--reserve 1GiB] [--slices]
 *
 * MODEL: a model directory, its config.json, or a .gguf file. The weight
 * format is the checkpoint's (config.json torch_dtype / quantization_config)
 * unless --dtype names one. GPU memory: --gpu-mem (a number with B, KB/MB/GB/TB
 * = powers of 1000, or KiB/MiB/GiB/TiB = powers of 1024; a bare number is
 * GiB; at most 1 EiB, as for --reserve: cli_bytes), or --gpus (H100 and A100 = 80 GiB, H200 = 141 GiB), else
 * device 0's.
 * --slices lists GPU 0's slices (as does QILIN_PRINT_PLANS=1).
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

typedef struct plan_args {
    const char *model, *dtype, *kv_dtype, *gpus;
    uint64_t gpu_mem; /* bytes; 0 = not given */
    qilin_plan_options plan;
    qilin_memory_options mem;
    bool slices;
} plan_args;

static int usage(FILE *to) {
    fprintf(to,
            "usage: qilin plan MODEL [--tp N] [--ep] [--gpus H100|H200|A100] [--gpu-mem 80GiB] [--util 0.9]\n"
            "                  [--dtype bf16|fp16|fp32|fp8|int4] [--kv-dtype bf16|fp16|fp8]\n"
            "                  [--max-batch-tokens T] [--max-batch-seqs S] [--reserve 1GiB] [--slices]\n"
            "                  [--ep-dispatch replicated|all-to-all]\n"
            "  sizes: a number with B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of 1024)\n"
            "         or none (GiB), up to 1 EiB\n");
    return to == stdout ? 0 : 2;
}

static int gpu_preset(const char *name, uint64_t *bytes) {
    static const struct {
        const char *name;
        uint64_t gib;
    } gpus[] = {{"H100", 80}, {"H200", 141}, {"A100", 80}};
    for (size_t i = 0; i < sizeof gpus / sizeof gpus[0]; i++)
        if (strcasecmp(name, gpus[i].name) == 0) {
            *bytes = gpus[i].gib << 30;
            return 0;
        }
    fprintf(stderr,
            "qilin plan: --gpus %s: known GPUs are H100 (80 GiB), H200 (141 GiB), A100 (80 GiB); "
            "use --gpu-mem for others\n",
            name);
    return -1;
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
        else if (cli_is_help(f))
            return 1;
        else {
            static const char *const valued[] = {
                "--tp",    "--gpus",     "--gpu-mem",          "--reserve",        "--util",
                "--dtype", "--kv-dtype", "--max-batch-tokens", "--max-batch-seqs", "--ep-dispatch"};
            bool known = false;
            for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(f, valued[k]);
            if (!known) return cli_unknown("plan", f);
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            int k = 0;
            if (!v) return fprintf(stderr, "qilin plan: %s needs a value\n", f), -1;
            if (!strcmp(f, "--tp")) {
                if (cli_int("plan", f, v, 1, CLI_MAX_GPUS, &a->plan.tp)) return -1;
            } else if (!strcmp(f, "--gpus")) {
                if (gpu_preset(v, &a->gpu_mem)) return -1;
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
    if (st == QILIN_OK) st = qilin_plan_create(d, &a.plan, &p);
    if (st != QILIN_OK) {
        fprintf(stderr, "qilin plan: %s\n", qilin_last_error());
        qilin_model_desc_free(d);
        return 2;
    }
    qilin_memory_plan m;
    st = qilin_plan_memory(p, &a.mem, &m);
    int rc = st == QILIN_OK ? 0 : st == QILIN_ERR_OUT_OF_MEMORY ? 1 : 2;
    if (rc != 2) qilin_plan_print(p, &m, stdout);
    const char *env = getenv("QILIN_PRINT_PLANS");
    if (a.slices || (env && strcmp(env, "0") != 0)) qilin_plan_print_slices(p, 0, stdout);
    if (st != QILIN_OK) fprintf(stderr, "qilin plan: %s\n", qilin_last_error());
    qilin_plan_free(p);
    qilin_model_desc_free(d);
    int out_rc = cli_check_output("plan", stdout, "stdout");
    return rc == 2 || !out_rc ? rc : 2;
}
