/* test_launch_shapes.cpp — the sim's dry-run (QILIN_SIM_DRY_RUN, device_sim.cpp) and, on
 * it, the launch shapes of one decode step of real-size models (sim only; issue 14).
 *
 * DryRun: a kernel that would write is checked and logged but not run; a 64 GiB device
 * allocation succeeds without the process's resident memory growing; copies out read zeros;
 * copies are still checked.
 *
 * RandomWeights (host/random_weights.h): DeepSeek-V3's config gives FP8 block-scaled linear
 * weights that bind as FP8 with every spec accounted for; filled values are seeded and of
 * scale 1/sqrt(fan_in), norms 1.
 *
 * DecodeShapes: DeepSeek-V3 (TP 8: every rank's launches are logged; each rank launches the
 * same, so counts are per rank = lines / 8), Qwen3-30B-A3B and Llama-3.1-8B (1 GPU) from
 * their config.json alone (--random-weights), the first few layers (--layers: DeepSeek-V3
 * keeps 4, its 3 dense layers and one MoE layer), batch 1 and 64, one decode step at
 * position 1023 — after a 1023-token prefill at batch 1; at batch 64 without one, because
 * the forward takes each sequence's cached length from the batch (qilin_batch.start_pos)
 * and the decode launches depend on nothing else, so the shapes are the same. The test
 * binary runs once per device profile (ctest: launch_shapes_h100, launch_shapes_a100).
 *
 * "A full wave": the launch's grid has at least as many blocks as the device has SMs
 * (x·y·z >= sm_count), i.e. no SM is left without a block. This is the necessary
 * condition, not occupancy: a kernel whose blocks fit several per SM needs more to hide
 * latency, and the time model (scripts/time_model.py) charges that. The MoE grouped GEMM's
 * grid is sized for the worst routing; its blocks past the routed rows exit at once, so
 * its count is an upper bound on the working blocks.
 * Families checked: attention / MLA decode, GEMV (every linear layer at decode), the MoE
 * expert GEMM. Not checked: norms, RoPE, KV append, activation, residual add, routing,
 * embedding, sampling — one block per token row by design; each reads kilobytes, so their
 * cost is launch latency (counted below), not bandwidth.
 *
 * kUnderfill lists the launches known not to fill (model, profile, batch, kernel, blocks)
 * with the reason; the test fails when an unlisted launch underfills and when a listed one
 * no longer does (or no longer exists), so the table stays true. kLaunches records the
 * launches per decode step per rank (at the kept layers, and the last layer's own count);
 * a change in launch count is a visible test update. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "cuda/device.h"
#include "cuda/elementwise.h"
#include "cuda/launch_log.h"
#include "cuda/sim/sim_api.h"
#include "host/checkpoint.h"
#include "host/forward.h"
#include "host/random_weights.h"
#include "tests/launch_log_reader.h"

namespace {

const bool log_env_set = launch_log_to("launch_shapes.jsonl");
using Launch = LoggedLaunch;

long rss_kib() {
    std::ifstream f("/proc/self/status");
    std::string key;
    long v = 0;
    while (f >> key)
        if (key == "VmRSS:") return f >> v, v;
    return -1;
}

/* Restores dry-run to the environment's default when a test ends. */
struct DryRun {
    DryRun() { qsim_set_dry_run(1); }
    ~DryRun() { qsim_set_dry_run(-1); }
};

TEST(DryRun, KernelIsCheckedAndLoggedButNotRun) {
    ASSERT_EQ(qilin_device_set(0), QILIN_OK);
    const size_t n = 1024;
    void *buf = nullptr;
    ASSERT_EQ(qilin_malloc(&buf, n * sizeof(float), "dry-run out"), QILIN_OK); /* real: poisoned */
    std::vector<float> ones(n, 1.0f), got(n, 0.0f);
    ASSERT_EQ(qilin_memcpy_h2d(buf, ones.data(), n * sizeof(float), nullptr), QILIN_OK);
    ASSERT_EQ(qilin_device_synchronize(), QILIN_OK);
    unsigned long long launches = qsim_launch_count();
    {
        DryRun on;
        EXPECT_EQ(qilin_device_dry_run(), 1);
        qilin_add_args add = {buf, buf, buf, nullptr, n, QILIN_F32}; /* would double every element */
        ASSERT_EQ(qilin_add(&add, nullptr), QILIN_OK) << qilin_last_error();
        EXPECT_EQ(qsim_launch_count(), launches + 1); /* counted (and logged) */
        ASSERT_EQ(qilin_device_synchronize(), QILIN_OK);
        /* a copy out in dry-run reads zeros, whatever the device holds */
        ASSERT_EQ(qilin_memcpy_d2h(got.data(), buf, n * sizeof(float), nullptr), QILIN_OK);
        ASSERT_EQ(qilin_device_synchronize(), QILIN_OK);
        EXPECT_EQ(got[0], 0.0f);
        EXPECT_EQ(got[n - 1], 0.0f);
    }
    EXPECT_EQ(qilin_device_dry_run(), 0);
    ASSERT_EQ(qilin_memcpy_d2h(got.data(), buf, n * sizeof(float), nullptr), QILIN_OK);
    ASSERT_EQ(qilin_device_synchronize(), QILIN_OK);
    EXPECT_EQ(got[0], 1.0f); /* the add did not run */
    EXPECT_EQ(got[n - 1], 1.0f);
    EXPECT_EQ(qilin_free(buf), QILIN_OK);
}

TEST(DryRun, CopiesAreStillChecked) {
    DryRun on;
    ASSERT_EQ(qilin_device_set(0), QILIN_OK);
    void *buf = nullptr;
    ASSERT_EQ(qilin_malloc(&buf, 64, "dry-run small"), QILIN_OK);
    /* an overrunning copy is refused at the call, as outside dry-run */
    char host[128];
    EXPECT_NE(qilin_memcpy_h2d(buf, host, sizeof host, nullptr), QILIN_OK);
    EXPECT_EQ(qilin_free(buf), QILIN_OK);
}

TEST(DryRun, HugeAllocationCostsNoResidentMemory) {
    DryRun on;
    ASSERT_EQ(qilin_device_set(0), QILIN_OK);
    const size_t bytes = size_t(64) << 30;
    long before = rss_kib();
    void *buf = nullptr;
    ASSERT_EQ(qilin_malloc(&buf, bytes, "64 GiB of weights"), QILIN_OK) << qilin_last_error();
    std::vector<char> host(1 << 20, 1);
    ASSERT_EQ(qilin_memcpy_h2d((char *)buf + bytes - host.size(), host.data(), host.size(), nullptr), QILIN_OK);
    ASSERT_EQ(qilin_memset(buf, 0, bytes, nullptr), QILIN_OK); /* skipped: would touch 64 GiB */
    ASSERT_EQ(qilin_device_synchronize(), QILIN_OK);
    long after = rss_kib();
    EXPECT_LT(after - before, 64L * 1024) << "resident memory grew by " << after - before << " KiB";
    size_t used = 0;
    ASSERT_EQ(qilin_memory_used(0, &used, nullptr), QILIN_OK);
    EXPECT_GE(used, bytes); /* still accounted against the device's budget */
    EXPECT_EQ(qilin_free(buf), QILIN_OK);
}

/* ---- random weights in the release's format -------------------------------- */

/* Every seed family's random checkpoint (4 layers kept: dense and MoE
 * layers alike) holds exactly the parameters qilin inspect counts for that
 * config, each tensor in the bytes its stored format takes (INT4: 8 weights
 * a packed int32 word; FP8: 1 byte; the rest bf16 or fp32). Not filled. */
TEST(RandomWeights, EverySeedFamilyHasTheParametersInspectCounts) {
    const char *configs[] = {"DeepSeek-V2-Lite",    "DeepSeek-V3",  "Kimi-K2-Instruct", "Llama-3.1-8B-Instruct",
                             "Mixtral-8x7B-v0.1",   "Qwen2-1.5B-Instruct", "Qwen2.5-7B-Instruct",
                             "Qwen3-235B-A22B",     "Qwen3-30B-A3B", "Qwen3-8B"};
    for (const char *name : configs) {
        SCOPED_TRACE(name);
        std::string config = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/" + name + ".config.json";
        qilin_model_desc *d = nullptr;
        ASSERT_EQ(qilin_model_desc_load(config.c_str(), &d), QILIN_OK) << qilin_last_error();
        ASSERT_EQ(qilin_model_desc_keep_layers(d, d->n_layers < 4 ? d->n_layers : 4), QILIN_OK);
        qilin_param_counts want;
        qilin_model_param_counts(d, &want);
        qilin_checkpoint *c = nullptr;
        ASSERT_EQ(qilin_checkpoint_random(d, 1, false, &c), QILIN_OK) << qilin_last_error();
        qilin_bound_model *b = nullptr;
        ASSERT_EQ(qilin_model_bind(d, c, &b), QILIN_OK) << qilin_last_error();
        int64_t got = 0;
        for (int i = 0; i < b->n_tensors; i++) {
            const qilin_bound_tensor &t = b->tensors[i];
            if (!t.data) continue; /* an absent optional spec */
            int64_t stored = 1;
            for (int k = 0; k < t.n_dims; k++) stored *= t.shape[k];
            const bool int4 = t.quant == QILIN_WQ_INT4_GROUP;
            const size_t elem = int4 ? 4 : t.dtype == QILIN_WDT_F8_E4M3 ? 1 : t.dtype == QILIN_WDT_F32 ? 4 : 2;
            EXPECT_EQ(t.nbytes, (size_t)stored * elem) << t.name;
            got += int4 ? stored * 8 : stored;
        }
        EXPECT_EQ(got, want.total) << "parameters in the random checkpoint vs qilin inspect's count";
        EXPECT_EQ(b->n_ignored, 0);
        qilin_bound_model_free(b);
        qilin_checkpoint_close(c);
        qilin_model_desc_free(d);
    }
}

/* DeepSeek-V3's config says fp8: its linear weights come as F8_E4M3 with 128 x 128 block
 * scales and bind as FP8; embedding, router and norms stay BF16; every spec is bound and
 * nothing is left over. --layers 4 keeps 3 dense + 1 MoE layer. Not filled (dry-run size). */
TEST(RandomWeights, DeepSeekV3BindsAsFp8Release) {
    std::string config = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/DeepSeek-V3.config.json";
    qilin_model_desc *d = nullptr;
    ASSERT_EQ(qilin_model_desc_load(config.c_str(), &d), QILIN_OK) << qilin_last_error();
    qilin_param_counts full;
    qilin_model_param_counts(d, &full);
    EXPECT_GT(full.total, 600000000000LL); /* the real size, ~671 B */
    ASSERT_EQ(qilin_model_desc_keep_layers(d, 4), QILIN_OK);
    EXPECT_EQ(d->n_layers, 4);
    EXPECT_EQ(d->n_moe_layers, 1);
    EXPECT_NE(qilin_model_desc_keep_layers(d, 5), QILIN_OK); /* past the kept 4 */
    qilin_checkpoint *c = nullptr;
    ASSERT_EQ(qilin_checkpoint_random(d, 1, false, &c), QILIN_OK) << qilin_last_error();
    qilin_bound_model *b = nullptr;
    ASSERT_EQ(qilin_model_bind(d, c, &b), QILIN_OK) << qilin_last_error();
    const qilin_bound_tensor *q_a = qilin_bound_get(b, QILIN_W_Q_A, 0, -1);
    ASSERT_NE(q_a, nullptr);
    EXPECT_EQ(q_a->quant, QILIN_WQ_FP8_BLOCK);
    EXPECT_EQ(q_a->dtype, QILIN_WDT_F8_E4M3);
    EXPECT_EQ(q_a->block[0], 128);
    EXPECT_EQ(q_a->scale_shape[0], (q_a->shape[0] + 127) / 128);
    const qilin_bound_tensor *expert = qilin_bound_get(b, QILIN_W_EXP_UP, 3, 255);
    ASSERT_NE(expert, nullptr);
    EXPECT_EQ(expert->quant, QILIN_WQ_FP8_BLOCK);
    const qilin_bound_tensor *embed = qilin_bound_get(b, QILIN_W_EMBED, -1, -1);
    ASSERT_NE(embed, nullptr);
    EXPECT_EQ(embed->dtype, QILIN_WDT_BF16);
    EXPECT_EQ(qilin_bound_get(b, QILIN_W_ROUTER, 3, -1)->dtype, QILIN_WDT_BF16);
    EXPECT_EQ(qilin_bound_get(b, QILIN_W_ROUTER_BIAS, 3, -1)->dtype, QILIN_WDT_F32);
    EXPECT_EQ(b->n_ignored, 0);
    qilin_bound_model_free(b);
    qilin_checkpoint_close(c);
    qilin_model_desc_free(d);
}

/* Filled values: seeded (same seed, same bytes; another seed, others), norms 1, linear
 * weights of scale 1/sqrt(fan_in). */
TEST(RandomWeights, SeededValuesOfRealisticScale) {
    std::string config = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/models/qwen3/config.json";
    qilin_model_desc *d = nullptr;
    ASSERT_EQ(qilin_model_desc_load(config.c_str(), &d), QILIN_OK) << qilin_last_error();
    qilin_checkpoint *c1 = nullptr, *c2 = nullptr, *c3 = nullptr;
    ASSERT_EQ(qilin_checkpoint_random(d, 5, true, &c1), QILIN_OK);
    ASSERT_EQ(qilin_checkpoint_random(d, 5, true, &c2), QILIN_OK);
    ASSERT_EQ(qilin_checkpoint_random(d, 6, true, &c3), QILIN_OK);
    const qilin_tensor_spec *q = nullptr;
    for (int i = 0; i < d->n_tensors; i++)
        if (d->tensors[i].slot == QILIN_W_Q && d->tensors[i].layer == 0) q = &d->tensors[i];
    ASSERT_NE(q, nullptr);
    const qilin_ckpt_tensor *a = qilin_checkpoint_find(c1, q->name), *b = qilin_checkpoint_find(c2, q->name),
                            *o = qilin_checkpoint_find(c3, q->name);
    ASSERT_TRUE(a && b && o);
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0);
    EXPECT_NE(std::memcmp(a->data, o->data, a->nbytes), 0);
    double sum2 = 0;
    const uint16_t *w = (const uint16_t *)a->data;
    size_t n = a->nbytes / 2;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)w[i] << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        sum2 += (double)f * f;
    }
    double want = 1.0 / (double)q->shape[1];
    EXPECT_NEAR(sum2 / (double)n, want, 0.15 * want); /* variance 1/fan_in */
    for (int i = 0; i < d->n_tensors; i++)
        if (d->tensors[i].slot == QILIN_W_ATTN_NORM && d->tensors[i].layer == 0) {
            const qilin_ckpt_tensor *norm = qilin_checkpoint_find(c1, d->tensors[i].name);
            ASSERT_NE(norm, nullptr);
            EXPECT_EQ(((const uint16_t *)norm->data)[0], 0x3f80); /* bf16 1.0 */
        }
    qilin_checkpoint_close(c1);
    qilin_checkpoint_close(c2);
    qilin_checkpoint_close(c3);
    qilin_model_desc_free(d);
}

/* ---- decode launch shapes ------------------------------------------------- */

struct ModelCase {
    const char *name, *config; /* tests/fixtures/configs/ */
    int tp, layers;
};
const ModelCase kModels[] = {
    {"DeepSeek-V3", "DeepSeek-V3.config.json", 8, 4},
    {"Qwen3-30B-A3B", "Qwen3-30B-A3B.config.json", 1, 2},
    {"Llama-3.1-8B", "Llama-3.1-8B-Instruct.config.json", 1, 2},
};

enum Family { kAttention, kGemv, kMoe, kOther };
Family family_of(const std::string &k) {
    if (k.find("attention_decode") != std::string::npos || k.find("mla") != std::string::npos) return kAttention;
    if (k.find("gemv") != std::string::npos) return kGemv;
    if (k.find("moe_gemm") != std::string::npos) return kMoe;
    return kOther;
}

/* Launches known to underfill: measured blocks and why. */
struct Underfill {
    const char *model, *profile;
    int batch;
    const char *kernel;
    long long blocks;
    const char *reason;
};
const Underfill kUnderfill[] = {
#include "tests/launch_shapes_underfill.inc"
};

/* Launches per decode step per rank at the kept layers, and those of the last kept layer. */
struct LaunchCount {
    const char *model, *profile; /* the count may depend on the profile (split choices) */
    int batch;
    long long step, last_layer;
};
const LaunchCount kLaunches[] = {
#include "tests/launch_shapes_counts.inc"
};

std::string profile_key() {
    qilin_device_props p;
    EXPECT_EQ(qilin_device_get_props(0, &p), QILIN_OK);
    const char *v = std::getenv("QILIN_SIM_PROFILE");
    return v && *v ? v : "h100";
}

int sm_count() {
    qilin_device_props p;
    EXPECT_EQ(qilin_device_get_props(0, &p), QILIN_OK);
    return p.sm_count;
}

/* With QILIN_LAUNCH_SHAPES_KEEP=DIR, the decode step's log lines go to
 * DIR/<model>_<profile>_b<batch>_L<layers>.jsonl, for scripts/time_model.py. */
void keep_step_log(const ModelCase &m, int layers, int batch, long long step) {
    const char *dir = std::getenv("QILIN_LAUNCH_SHAPES_KEEP");
    if (!dir || !*dir) return;
    const char *profile = std::getenv("QILIN_SIM_PROFILE");
    std::string path = std::string(dir) + "/" + m.name + "_" + (profile && *profile ? profile : "h100") + "_b" +
                       std::to_string(batch) + "_L" + std::to_string(layers) + ".jsonl";
    std::ofstream out(path);
    for (const Launch &l : launches_of_step(step)) out << l.line << "\n";
    EXPECT_TRUE(out.good()) << path;
}

/* One decode step (after a prefill at batch 1) of `m` with `layers` layers; its launches. */
std::vector<Launch> decode_step(const ModelCase &m, int layers, int batch) {
    std::string config = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/" + m.config;
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.random_weights = true;
    o.layers = layers;
    o.tp = m.tp;
    o.max_seqs = batch;
    o.max_ctx = 1024;
    o.max_batch_tokens = batch == 1 ? 1024 : batch;
    qilin_model *model = nullptr;
    EXPECT_EQ(qilin_model_load(config.c_str(), &o, &model), QILIN_OK) << qilin_last_error();
    if (!model) return {};
    const int ctx = 1023;
    std::vector<float> logits((size_t)batch * qilin_model_get_desc(model)->vocab);
    if (batch == 1) {
        std::vector<int> prompt(ctx, 1);
        int slot = 0, start = 0, n = ctx;
        qilin_batch b = {1, &slot, &start, &n, prompt.data(), false, nullptr};
        EXPECT_EQ(qilin_forward(model, &b, logits.data()), QILIN_OK) << qilin_last_error();
    }
    std::vector<int> slot(batch), start(batch, ctx), n(batch, 1), tokens(batch, 1);
    for (int i = 0; i < batch; i++) slot[i] = i;
    qilin_batch b = {batch, slot.data(), start.data(), n.data(), tokens.data(), false, nullptr};
    EXPECT_EQ(qilin_forward(model, &b, logits.data()), QILIN_OK) << qilin_last_error();
    long long step = qilin_launch_log_step();
    qilin_model_free(model);
    keep_step_log(m, layers, batch, step);
    return launches_of_step(step);
}

class DecodeShapes : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(DecodeShapes, FillTheDeviceOrAreListed) {
    DryRun on;
    const ModelCase &m = kModels[std::get<0>(GetParam())];
    const int batch = std::get<1>(GetParam());
    const std::string profile = profile_key();
    const int sms = sm_count();
    std::vector<Launch> step = decode_step(m, m.layers, batch);
    std::vector<Launch> more = decode_step(m, m.layers + 1, batch);
    ASSERT_FALSE(step.empty());
    const long long per_rank = (long long)step.size() / m.tp, last_layer = ((long long)more.size() - (long long)step.size()) / m.tp;

    /* underfilling launches of the checked families, as (kernel, blocks) */
    std::set<std::pair<std::string, long long>> under, listed;
    std::map<std::string, long long> per_kernel;
    for (const Launch &l : step) {
        per_kernel[l.kernel]++;
        if (family_of(l.kernel) != kOther && l.blocks() < sms) under.insert({l.kernel, l.blocks()});
    }
    for (const Underfill &u : kUnderfill)
        if (m.name == std::string(u.model) && profile == u.profile && batch == u.batch) listed.insert({u.kernel, u.blocks});
    for (auto &k : per_kernel)
        std::printf("[launches] %s %s batch %d: %-45s x %lld per rank\n", m.name, profile.c_str(), batch,
                    k.first.c_str(), k.second / m.tp);
    const int n_layers = m.name == std::string("DeepSeek-V3") ? 61 : m.name == std::string("Qwen3-30B-A3B") ? 48 : 32;
    std::printf("[launches] %s %s batch %d: %lld per decode step per rank at %d layers; one more layer: %lld; "
                "the whole model (%d layers, the rest like the last): %lld\n",
                m.name, profile.c_str(), batch, per_rank, m.layers, last_layer, n_layers,
                per_rank + (n_layers - m.layers) * last_layer);
    for (auto &u : under)
        if (!listed.count(u))
            ADD_FAILURE() << m.name << " " << profile << " batch " << batch << ": " << u.first << " launches " << u.second
                          << " blocks on " << sms << " SMs and is not in kUnderfill: {\"" << m.name << "\", \""
                          << profile << "\", " << batch << ", \"" << u.first << "\", " << u.second << ", \"...\"},";
    for (auto &u : listed)
        if (!under.count(u))
            ADD_FAILURE() << m.name << " " << profile << " batch " << batch << ": kUnderfill lists " << u.first << " at "
                          << u.second << " blocks, but no such launch underfills now: update the table";
    bool found = false;
    for (const LaunchCount &c : kLaunches)
        if (m.name == std::string(c.model) && profile == c.profile && batch == c.batch) {
            found = true;
            EXPECT_EQ(per_rank, c.step) << m.name << " batch " << batch << ": launches per decode step per rank";
            EXPECT_EQ(last_layer, c.last_layer) << m.name << " batch " << batch << ": launches of one more layer";
        }
    EXPECT_TRUE(found) << "kLaunches has no row {\"" << m.name << "\", \"" << profile << "\", " << batch << ", " << per_rank << ", "
                       << last_layer << "},";
}

INSTANTIATE_TEST_SUITE_P(Models, DecodeShapes,
                         ::testing::Combine(::testing::Values(0, 1, 2), ::testing::Values(1, 64)),
                         [](const auto &info) {
                             std::string n = kModels[std::get<0>(info.param)].name;
                             std::replace(n.begin(), n.end(), '-', '_');
                             std::replace(n.begin(), n.end(), '.', '_');
                             return n + "_batch" + std::to_string(std::get<1>(info.param));
                         });

} // namespace
