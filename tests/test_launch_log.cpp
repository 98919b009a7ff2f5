/* test_launch_log.cpp — the launch log (QILIN_LAUNCH_LOG, cuda/launch_log.h) over a real
 * forward: stories260K, a 5-token prefill then 3 decode steps at batch 1. Checks that
 *   - every line is one JSON object with a kernel name, positive grid and block (at most
 *     1024 threads), smem and step;
 *   - in the sim, there is exactly one line per launch the emulator counted;
 *   - steps follow the forward calls: prefill, then each decode step, in order, and the
 *     three decode steps launch the same kernels with the same shapes;
 *   - shapes are the model's: rmsnorm runs once per token row (grid.x = 5 at prefill, 1
 *     at decode), twice per layer plus the final norm;
 *   - the GEMV launcher declares its bytes (QILIN_LAUNCH_BYTES; attention decode and rmsnorm
 *     do too, for scripts/time_model.py): over a decode step the GEMV's
 *     add up to the model's linear weights (fp32) plus one input row per launch. */
#include <gtest/gtest.h>
#include <jansson.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cuda/launch_log.h"
#include "host/forward.h"
#include "tests/launch_log_reader.h"
#include "tests/test_util.h"
#if defined(QILIN_SIM)
#include "cuda/sim/sim_api.h"
#endif

namespace {

const bool log_env_set = launch_log_to("launches.jsonl");
using Launch = LoggedLaunch;

TEST(LaunchLog, OneLinePerLaunchOfAStories260KForward) {
    ASSERT_TRUE(log_env_set);
    QILIN_REQUIRE_DEVICES(1);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32;
    o.max_seqs = 1;
    o.max_ctx = 64;
    o.max_batch_tokens = 16;
    qilin_model *m = nullptr;
    ASSERT_EQ(qilin_model_load(QILIN_SOURCE_DIR "/models/stories260K", &o, &m), QILIN_OK) << qilin_last_error();
    const int layers = qilin_model_get_desc(m)->n_layers, vocab = qilin_model_get_desc(m)->vocab;

    size_t before = read_launch_log().size();
#if defined(QILIN_SIM)
    unsigned long long emulated_before = qsim_launch_count();
#endif
    long long first_step = qilin_launch_log_step() + 1;
    const int prompt[5] = {1, 403, 407, 261, 378}, slot = 0;
    std::vector<float> logits((size_t)vocab);
    int pos = 0, n = 5;
    qilin_batch prefill = {1, &slot, &pos, &n, prompt, false, nullptr};
    ASSERT_EQ(qilin_forward(m, &prefill, logits.data()), QILIN_OK) << qilin_last_error();
    for (int s = 0; s < 3; s++) {
        int p = 5 + s, one = 1, token = 300 + s;
        qilin_batch decode = {1, &slot, &p, &one, &token, false, nullptr};
        ASSERT_EQ(qilin_forward(m, &decode, logits.data()), QILIN_OK) << qilin_last_error();
    }
    qilin_model_free(m);

    std::vector<Launch> all = read_launch_log();
    ASSERT_GT(all.size(), before);
    std::vector<Launch> log(all.begin() + (long)before, all.end());
#if defined(QILIN_SIM)
    EXPECT_EQ((unsigned long long)log.size(), qsim_launch_count() - emulated_before)
        << "one line per launch the emulator ran";
#endif
    std::vector<std::vector<Launch>> steps(4);
    long long last = first_step;
    for (const Launch &l : log) {
        EXPECT_FALSE(l.kernel.empty());
        EXPECT_EQ(l.kernel.find('('), std::string::npos) << l.kernel << ": the launch's parentheses stay out";
        for (int i = 0; i < 3; i++) EXPECT_GE(l.grid[i], 1) << l.kernel;
        EXPECT_GE(l.block[0], 1) << l.kernel;
        EXPECT_LE(l.block[0] * l.block[1] * l.block[2], 1024) << l.kernel;
        EXPECT_GE(l.smem, 0) << l.kernel;
        EXPECT_GE(l.step, last) << l.kernel << ": steps never go back";
        last = l.step;
        ASSERT_TRUE(l.step >= first_step && l.step < first_step + 4) << l.kernel << " in step " << l.step;
        steps[(size_t)(l.step - first_step)].push_back(l);
    }
    for (int s = 0; s < 4; s++) {
        ASSERT_FALSE(steps[s].empty()) << "step " << s << " launched nothing";
        int norms = 0;
        for (const Launch &l : steps[s])
            if (l.kernel.rfind("rmsnorm_kernel", 0) == 0) {
                norms++;
                EXPECT_EQ(l.grid[0], s == 0 ? 5 : 1) << "one rmsnorm block per token row";
            }
        EXPECT_EQ(norms, 2 * layers + 1) << "step " << s;
    }
    /* stories260K: per layer wq 64x64, wk and wv 32x64, wo 64x64, w1 and w3 172x64, w2
     * 64x172; the tied lm_head 512x64 */
    const long long weights = (long long)layers * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64) + 512 * 64;
    long long gemv_bytes = 0;
    int gemvs = 0;
    for (const Launch &l : steps[1]) {
        bool gemv = l.kernel.rfind("gemv_kernel", 0) == 0;
        /* the GEMV declares its bytes; so do attention decode, the MoE GEMM and rmsnorm (time model) */
        bool declares = gemv || l.kernel.rfind("attention_decode", 0) == 0 || l.kernel.rfind("rmsnorm_kernel", 0) == 0;
        EXPECT_EQ(l.bytes >= 0, declares) << l.kernel << ": declared bytes";
        if (gemv) {
            EXPECT_GT(l.bytes, 0);
            gemv_bytes += l.bytes;
            gemvs++;
        }
    }
    EXPECT_GE(gemv_bytes, weights * 4) << "every weight read once";
    EXPECT_LE(gemv_bytes, weights * 4 + gemvs * 172 * 4) << "plus at most one input row per launch";
    for (int s = 2; s < 4; s++) {
        ASSERT_EQ(steps[s].size(), steps[1].size()) << "decode steps launch the same kernels";
        for (size_t i = 0; i < steps[s].size(); i++) {
            EXPECT_EQ(steps[s][i].kernel, steps[1][i].kernel);
            EXPECT_EQ(steps[s][i].shape, steps[1][i].shape) << steps[s][i].kernel;
        }
    }
}

} // namespace
