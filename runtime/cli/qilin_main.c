/* qilin_main.c — the `qilin` command.

 *   qilin demo     run RMSNorm on a random batch on device 0, check it against
 *                  a CPU computation and report the device, the compiler that
 *                  built the kernel, and the error.
 *   qilin devices  list the devices with their properties.
 *
 * Model commands, one file each: inspect (cmd_inspect.c), plan (cmd_plan.c),
 * logits (cmd_logits.c), run (cmd_run.c), tokenize (cmd_tokenize.c), serve (cmd_serve.c), bench (cmd_bench.c). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/device.h"
#include "cuda/kernels.h"
#include "cli.h"
#include "commands.h"

static int fail(const char *what, qilin_status st) {
    fprintf(stderr, "qilin: %s: %s: %s\n", what, qilin_status_name(st), qilin_last_error());
    return 1;
}

static void print_props(const qilin_device_props *p) {
    printf("device %d: %s%s, compute capability %d.%d, %d SMs, %.1f GiB, %.0f GB/s (%s)\n", p->index,
           p->name, p->is_sim ? " [CPU emulator]" : "", p->cc_major, p->cc_minor, p->sm_count,
           (double)p->total_mem_bytes / (1 << 30), p->peak_bandwidth_gbs,
           p->peak_bandwidth_measured ? "measured" : "datasheet");
}

static int cmd_devices(void) {
    int n = 0;
    qilin_status st = qilin_device_count(&n);
    if (st != QILIN_OK) return fail("counting devices", st);
    if (n == 0) printf("no devices\n");
    for (int i = 0; i < n; i++) {
        qilin_device_props p;
        if ((st = qilin_device_get_props(i, &p)) != QILIN_OK) return fail("reading properties", st);
        print_props(&p);
    }
    return 0;
}

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

static int cmd_demo(void) {
    int n = 0;
    qilin_status st = qilin_device_count(&n);
    if (st != QILIN_OK) return fail("counting devices", st);
    if (n == 0) {
        fprintf(stderr, "qilin: no GPU found; build the sim preset to run on the CPU emulator\n");
        return 1;
    }
    qilin_device_props p;
    if ((st = qilin_device_set(0)) != QILIN_OK || (st = qilin_device_get_props(0, &p)) != QILIN_OK)
        return fail("opening device 0", st);
    print_props(&p);

    enum { ROWS = 4, DIM = 4096 };
    size_t bytes = (size_t)ROWS * DIM * sizeof(float);
    float *x = malloc(bytes), *out = malloc(bytes), *w = malloc(DIM * sizeof(float));
    if (!x || !out || !w) return fprintf(stderr, "qilin: out of host memory\n"), 1;
    uint32_t seed = 42;
    for (int i = 0; i < ROWS * DIM; i++) x[i] = (float)(lcg(&seed) >> 8) / (1 << 24) * 4.0f - 2.0f;
    for (int i = 0; i < DIM; i++) w[i] = 0.5f + (float)(lcg(&seed) >> 8) / (1 << 24);

    void *dx = NULL, *dout = NULL, *dw = NULL;
    qilin_event *start = NULL, *stop = NULL;
    float ms = 0;
    int rc = 1;
    if ((st = qilin_malloc(&dx, bytes, "demo x")) || (st = qilin_malloc(&dout, bytes, "demo out")) ||
        (st = qilin_malloc(&dw, DIM * sizeof(float), "demo weight")) ||
        (st = qilin_memcpy_h2d(dx, x, bytes, NULL)) || (st = qilin_memcpy_h2d(dw, w, DIM * sizeof(float), NULL)) ||
        (st = qilin_event_create(&start)) || (st = qilin_event_create(&stop)) ||
        (st = qilin_event_record(start, NULL))) {
        fail("setting up", st);
        goto done;
    }
    qilin_rmsnorm_args a = {.out = dout, .x = dx, .weight = dw, .rows = ROWS, .dim = DIM, .eps = 1e-5f,
                            .dtype = QILIN_F32};
    if ((st = qilin_rmsnorm(&a, NULL)) || (st = qilin_event_record(stop, NULL)) ||
        (st = qilin_memcpy_d2h(out, dout, bytes, NULL)) || (st = qilin_stream_synchronize(NULL)) ||
        (st = qilin_event_elapsed_ms(start, stop, &ms))) {
        fail("running rmsnorm", st);
        goto done;
    }
    double worst = 0;
    for (int r = 0; r < ROWS; r++) {
        double ss = 0;
        for (int i = 0; i < DIM; i++) ss += (double)x[r * DIM + i] * x[r * DIM + i];
        double scale = 1.0 / sqrt(ss / DIM + 1e-5);
        for (int i = 0; i < DIM; i++) {
            double want = x[r * DIM + i] * scale * w[i];
            double err = fabs(out[r * DIM + i] - want) / fmax(fabs(want), 1e-6);
            if (err > worst) worst = err;
        }
    }
    printf("kernel: %s\n", qilin_rmsnorm_build_info());
    printf("rmsnorm %dx%d fp32: %.3f ms, max relative error vs CPU %.2e -> %s\n", ROWS, DIM, ms, worst,
           worst < 1e-5 ? "OK" : "MISMATCH");
    rc = worst < 1e-5 ? 0 : 1;
done:
    qilin_event_destroy(start);
    qilin_event_destroy(stop);
    qilin_free(dx);
    qilin_free(dout);
    qilin_free(dw);
    free(x);
    free(out);
    free(w);
    return rc;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "demo";
    bool help = argc > 2 && cli_is_help(argv[2]);
    if (!strcmp(cmd, "demo") || !strcmp(cmd, "devices")) {
        if (help) return printf("usage: qilin %s\n", cmd), 0;
        if (argc > 2) return fprintf(stderr, "qilin %s: takes no arguments (got '%s')\n", cmd, argv[2]), 2;
        return !strcmp(cmd, "demo") ? cmd_demo() : cmd_devices();
    }
    if (!strcmp(cmd, "inspect")) return qilin_cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return qilin_cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "logits")) return qilin_cmd_logits(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return qilin_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return qilin_cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return qilin_cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return qilin_cmd_bench(argc - 1, argv + 1);
    help = cli_is_help(cmd);
    if (!help) fprintf(stderr, "qilin: unknown command '%s'\n", cmd);
    fprintf(help ? stdout : stderr,
            "usage: qilin COMMAND [flags]   (qilin COMMAND --help: that command's flags)\n"
            "  run       generate text (or ids) with a model\n"
            "  serve     an OpenAI-compatible HTTP server on a model\n"
            "  bench     prefill and decode tokens/s of a model per batch size\n"
            "  tokenize  text to token ids and back\n"
            "  logits    fp32 logits of every position of a prompt\n"
            "  inspect   what a model is: architecture, parameters, tensors\n"
            "  plan      will a model fit on these GPUs\n"
            "  devices   list the devices\n"
            "  demo      a kernel smoke test (the default)\n");
    return help ? 0 : 2;
}
