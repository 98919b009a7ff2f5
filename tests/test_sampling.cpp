/* test_sampling.cpp — cuda/sampling.cu.
 *
 * A float64 reference builds each row's filtered distribution exactly as
 * sampling.h documents it (repetition penalty, temperature, ranking by
 * (value desc, id asc), top-k, top-p over the top-k mass, min-p); the tests
 * check greedy against argmax with ties, that (seed, step) fixes the token
 * whatever the batch, that steps differ, the empirical frequencies of many
 * draws (one per step) against the reference by a chi-square bound, each
 * draw's reported probability, top_k = 1 == greedy, the minimal top-p set,
 * min-p, the HF repetition-penalty rule on positive and negative logits,
 * rows with different parameters in one batch, a 151936-token row, the
 * exact-threshold fallback for kept sets over 4096 tokens, and parameter
 * validation on the host and on the device. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

qilin_sampling_params params(float temperature, int top_k = 0, float top_p = 1.0f, float min_p = 0.0f,
                             float penalty = 1.0f, uint64_t seed = 1234, uint64_t step = 0) {
    qilin_sampling_params p{};
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repetition_penalty = penalty;
    p.seed = seed;
    p.step = step;
    return p;
}

/* ---- reference ------------------------------------------------------------------ */

/* The value the kernel ranks by, in the kernel's float arithmetic. */
float ref_value(float l, bool penalised, const qilin_sampling_params &p) {
    if (std::isnan(l)) return -INFINITY;
    if (penalised) l = l < 0.0f ? l * p.repetition_penalty : l / p.repetition_penalty;
    float t = p.temperature > 0 ? p.temperature : 1.0f;
    return l / t + 0.0f;
}

/* The filtered distribution of one row per sampling.h, in double. */
std::vector<double> ref_distribution(const float *logits, int vocab, const qilin_sampling_params &p,
                                     const std::vector<int> &history) {
    std::vector<char> pen(vocab, 0);
    if (p.repetition_penalty != 1.0f)
        for (int id : history)
            if (id >= 0 && id < vocab) pen[id] = 1;
    std::vector<float> v(vocab);
    for (int i = 0; i < vocab; i++) v[i] = ref_value(logits[i], pen[i], p);
    std::vector<int> order;
    for (int i = 0; i < vocab; i++)
        if (v[i] > -INFINITY) order.push_back(i);
    std::vector<double> probs(vocab, 0.0);
    if (order.empty()) return probs;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return v[a] > v[b]; });
    if (p.temperature == 0.0f || v[order[0]] == INFINITY) {
        probs[order[0]] = 1.0;
        return probs;
    }
    int alive = (int)order.size();
    double mx = v[order[0]];
    std::vector<double> e(alive);
    for (int j = 0; j < alive; j++) e[j] = exp((double)v[order[j]] - mx);
    int n_k = p.top_k > 0 ? std::min(p.top_k, alive) : alive;
    double zk = 0;
    for (int j = 0; j < n_k; j++) zk += e[j];
    int n_p = n_k;
    if (p.top_p < 1.0f) {
        double cum = 0;
        for (int j = 0; j < n_k; j++) {
            cum += e[j];
            if (cum >= (double)p.top_p * zk) {
                n_p = j + 1;
                break;
            }
        }
    }
    int n_m = alive;
    if (p.min_p > 0.0f)
        for (int j = 0; j < alive; j++)
            if (e[j] < p.min_p) {
                n_m = std::max(j, 1);
                break;
            }
    int n = std::min(n_k, std::min(n_p, n_m));
    double z = 0;
    for (int j = 0; j < n; j++) z += e[j];
    for (int j = 0; j < n; j++) probs[order[j]] = e[j] / z;
    return probs;
}

/* ---- running the kernel ---------------------------------------------------------- */

struct Batch {
    int rows = 0, vocab = 0;
    int64_t ld = 0;
    std::vector<float> logits;                 /* [rows, ld] */
    std::vector<qilin_sampling_params> params; /* [rows] */
    std::vector<std::vector<int>> history;     /* per row; empty: none */
    bool use_history = false;
};

struct Drawn {
    std::vector<int> ids;
    std::vector<float> probs;
};

Drawn run(const Batch &b, bool want_probs = true) {
    Drawn d;
    DeviceBuffer<float> dlogits(b.logits.size());
    DeviceBuffer<qilin_sampling_params> dparams(b.rows);
    DeviceBuffer<int> dids(b.rows);
    DeviceBuffer<float> dprobs(b.rows);
    EXPECT_EQ(dlogits.upload(b.logits), QILIN_OK);
    EXPECT_EQ(dparams.upload(b.params), QILIN_OK);
    EXPECT_EQ(dids.poison(), QILIN_OK);
    EXPECT_EQ(dprobs.poison(), QILIN_OK);
    std::vector<int> hist, start(1, 0);
    for (int r = 0; r < b.rows; r++) {
        if (b.use_history && r < (int)b.history.size())
            hist.insert(hist.end(), b.history[r].begin(), b.history[r].end());
        start.push_back((int)hist.size());
    }
    DeviceBuffer<int> dhist(hist.size() + 1), dstart(start.size());
    EXPECT_EQ(dhist.upload(hist), QILIN_OK);
    EXPECT_EQ(dstart.upload(start), QILIN_OK);
    qilin_sample_args a = {};
    a.out_ids = dids.ptr;
    a.out_probs = want_probs ? dprobs.ptr : nullptr;
    a.logits = dlogits.ptr;
    a.ld = b.ld;
    a.rows = b.rows;
    a.vocab = b.vocab;
    a.params = dparams.ptr;
    a.history = b.use_history ? dhist.ptr : nullptr;
    a.history_start = b.use_history ? dstart.ptr : nullptr;
    qilin_status st = qilin_sample(&a, nullptr);
    EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
    d.ids = dids.download();
    d.probs = dprobs.download();
    return d;
}

/* rows copies of one logits row, steps 0.. rows-1 */
Batch repeated(const std::vector<float> &row, const qilin_sampling_params &p, int rows,
               const std::vector<int> &history = {}) {
    Batch b;
    b.rows = rows;
    b.vocab = (int)row.size();
    b.ld = b.vocab;
    for (int r = 0; r < rows; r++) {
        b.logits.insert(b.logits.end(), row.begin(), row.end());
        qilin_sampling_params q = p;
        q.step = p.step + r;
        b.params.push_back(q);
        b.history.push_back(history);
    }
    b.use_history = !history.empty();
    return b;
}

std::vector<float> normal_logits(int vocab, double sigma, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, sigma);
    std::vector<float> l(vocab);
    for (float &x : l) x = (float)normal(rng);
    return l;
}

/* Draws land only where the reference has mass, each reported probability is
 * the reference's, and the counts pass a chi-square bound (df + 6 sqrt(2 df)
 * + 10: beyond p = 1e-4 for any df; the seeds are fixed, so it never flakes). */
void expect_matches_distribution(const Drawn &d, const std::vector<double> &want, const char *what) {
    int vocab = (int)want.size(), n = (int)d.ids.size();
    std::vector<int> counts(vocab, 0);
    int outside = 0, bad_prob = 0;
    for (int r = 0; r < n; r++) {
        int id = d.ids[r];
        if (id < 0 || id >= vocab || want[id] == 0.0) {
            outside++;
            continue;
        }
        counts[id]++;
        if (std::fabs(d.probs[r] - want[id]) > 1e-5 * want[id] + 1e-7) bad_prob++;
    }
    EXPECT_EQ(outside, 0) << what << ": draws outside the kept set";
    EXPECT_EQ(bad_prob, 0) << what << ": reported probabilities off the reference";
    double chi2 = 0;
    int df = -1;
    for (int i = 0; i < vocab; i++)
        if (want[i] > 0) {
            double e = want[i] * n;
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
            df++;
        }
    double bound = df + 6 * sqrt(2.0 * std::max(df, 1)) + 10;
    printf("%s: %d draws, kept %d tokens, chi2 %.1f (bound %.1f)\n", what, n, df + 1, chi2, bound);
    EXPECT_LT(chi2, bound) << what;
}

int argmax_lowest(const std::vector<float> &v) {
    int best = 0;
    for (int i = 1; i < (int)v.size(); i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* ---- greedy -------------------------------------------------------------------------- */

TEST(Sampling, GreedyIsArgmaxLowestIdOnTies) {
    QILIN_REQUIRE_DEVICES(1);
    for (int vocab : {1, 7, 33, 1000, 5003}) {
        Batch b;
        b.rows = 5;
        b.vocab = vocab;
        b.ld = vocab + (vocab % 2); /* a padded row stride too */
        std::vector<int> want;
        for (int r = 0; r < b.rows; r++) {
            std::vector<float> row = normal_logits(vocab, 2.0, 10 + r + vocab);
            if (vocab > 3 && r % 2 == 1)
                row[vocab - 1] = row[1] = row[argmax_lowest(row)] + 0.5f; /* a tie at the top */
            want.push_back(argmax_lowest(row));
            row.resize(b.ld, 1e30f); /* padding past vocab must never be read */
            b.logits.insert(b.logits.end(), row.begin(), row.end());
            b.params.push_back(params(0.0f, r, 0.5f, 0.3f));
        }
        Drawn d = run(b);
        for (int r = 0; r < b.rows; r++) {
            EXPECT_EQ(d.ids[r], want[r]) << "vocab " << vocab << " row " << r;
            EXPECT_EQ(d.probs[r], 1.0f);
        }
    }
}

TEST(Sampling, NonFiniteLogits) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> nan_row = {NAN, 1.0f, NAN, 3.0f, NAN}, ninf_row(6, -INFINITY),
                       inf_row = {0.f, INFINITY, 2.f, INFINITY};
    Batch b;
    b.vocab = 6;
    b.ld = 6;
    b.rows = 6;
    for (int s = 0; s < 2; s++) { /* greedy, then sampling */
        float t = s ? 1.0f : 0.0f;
        std::vector<float> r1 = nan_row, r3 = inf_row;
        r1.resize(6, -INFINITY);
        r3.resize(6, -INFINITY);
        for (auto *row : {&r1, &ninf_row, &r3}) {
            b.logits.insert(b.logits.end(), row->begin(), row->end());
            b.params.push_back(params(t, 1, 1.0f, 0.0f, 1.0f, 5, 9)); /* top_k 1: deterministic */
        }
    }
    Drawn d = run(b);
    for (int s = 0; s < 2; s++) {
        EXPECT_EQ(d.ids[3 * s + 0], 3) << "NaN is never chosen";
        EXPECT_EQ(d.ids[3 * s + 1], 0) << "no finite logit: id 0";
        EXPECT_EQ(d.probs[3 * s + 1], 0.0f);
        EXPECT_EQ(d.ids[3 * s + 2], 1) << "+inf wins, lowest id";
    }
}

TEST(Sampling, TopK1IsGreedy) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> row = normal_logits(300, 1.0, 3);
    int first = argmax_lowest(row), other = (first + 137) % 300;
    row[other] = row[first]; /* tied at the top */
    int top = std::min(first, other);
    Drawn d = run(repeated(row, params(1.5f, 1), 64));
    for (int r = 0; r < 64; r++) {
        EXPECT_EQ(d.ids[r], top) << "step " << r;
        EXPECT_EQ(d.probs[r], 1.0f);
    }
}

/* ---- the RNG ------------------------------------------------------------------------- */

TEST(Sampling, SeedAndStepFixTheTokenWhateverTheBatch) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> row = normal_logits(97, 0.5, 8);
    qilin_sampling_params p = params(1.0f, 0, 0.95f, 0.0f, 1.0f, 777, 41);
    Drawn alone = run(repeated(row, p, 1));
    /* the same row as row 5 of a batch of different rows and parameters */
    Batch b;
    b.rows = 9;
    b.vocab = 97;
    b.ld = 97;
    for (int r = 0; r < b.rows; r++) {
        std::vector<float> other = r == 5 ? row : normal_logits(97, 2.0, 100 + r);
        b.logits.insert(b.logits.end(), other.begin(), other.end());
        b.params.push_back(r == 5 ? p : params(0.5f + 0.1f * r, r, 0.9f, 0.0f, 1.0f, r, r));
    }
    Drawn mixed = run(b), again = run(b);
    EXPECT_EQ(mixed.ids[5], alone.ids[0]);
    EXPECT_EQ(mixed.probs[5], alone.probs[0]);
    EXPECT_EQ(mixed.ids, again.ids) << "a rerun draws the same tokens";
}

TEST(Sampling, StepsAndSeedsDiffer) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> flat(50, 0.25f);
    Drawn d = run(repeated(flat, params(1.0f, 0, 1.0f, 0.0f, 1.0f, 99), 200));
    std::vector<int> seen(50, 0);
    int repeats_in_a_row = 0;
    for (int r = 0; r < 200; r++) {
        seen[d.ids[r]]++;
        if (r && d.ids[r] == d.ids[r - 1]) repeats_in_a_row++;
    }
    int distinct = (int)std::count_if(seen.begin(), seen.end(), [](int c) { return c > 0; });
    printf("200 steps over 50 equal tokens: %d distinct, %d repeats of the previous step\n", distinct,
           repeats_in_a_row);
    EXPECT_GT(distinct, 40);
    EXPECT_LT(repeats_in_a_row, 15); /* expected 4 */
    Drawn other = run(repeated(flat, params(1.0f, 0, 1.0f, 0.0f, 1.0f, 100), 200));
    int same = 0;
    for (int r = 0; r < 200; r++) same += other.ids[r] == d.ids[r];
    EXPECT_LT(same, 20) << "another seed draws another sequence (expected 4 matches)";
}

/* ---- distributions ------------------------------------------------------------------- */

struct DistCase {
    const char *name;
    qilin_sampling_params p;
    std::vector<int> history;
};

class SamplingDistribution : public testing::TestWithParam<DistCase> {};

TEST_P(SamplingDistribution, FrequenciesMatchTheFilteredDistribution) {
    QILIN_REQUIRE_DEVICES(1);
    const DistCase c = GetParam();
    std::vector<float> row = normal_logits(24, 1.2, 21);
    row[3] = -0.8f; /* negative and positive logits in the history */
    row[7] = 1.9f;
    const int draws = 3000;
    Drawn d = run(repeated(row, c.p, draws, c.history));
    expect_matches_distribution(d, ref_distribution(row.data(), 24, c.p, c.history), c.name);
}

std::string dist_name(const testing::TestParamInfo<DistCase> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    Filters, SamplingDistribution,
    testing::Values(DistCase{"temperature_0_7", params(0.7f), {}}, DistCase{"top_k_5", params(1.0f, 5), {}},
                    DistCase{"top_p_0_8_hot", params(1.6f, 0, 0.8f), {}},
                    DistCase{"min_p_0_1", params(1.0f, 0, 1.0f, 0.1f), {}},
                    DistCase{
                        "all_filters_penalty", params(0.9f, 12, 0.9f, 0.05f, 1.3f, 5), {3, 7, 7, 1, 999, -4}},
                    DistCase{"penalty_below_1", params(1.0f, 0, 1.0f, 0.0f, 0.6f, 6), {3, 7, 0}}),
    dist_name);

/* Probabilities 0.5, 0.3, 0.15, 0.05 (logits are their logs). */
TEST(Sampling, TopPKeepsTheMinimalSet) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> row = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    struct {
        float p;
        std::vector<int> kept;
    } cases[] = {{0.45f, {1}}, {0.79f, {1, 3}}, {0.81f, {1, 3, 0}}, {0.96f, {1, 3, 0, 2}}};
    for (auto &tc : cases) {
        qilin_sampling_params p = params(1.0f, 0, tc.p);
        std::vector<double> want = ref_distribution(row.data(), 4, p, {});
        int kept = (int)std::count_if(want.begin(), want.end(), [](double x) { return x > 0; });
        ASSERT_EQ(kept, (int)tc.kept.size()) << "reference, top_p " << tc.p;
        Drawn d = run(repeated(row, p, 400));
        std::vector<int> seen(4, 0);
        for (int id : d.ids) seen[id]++;
        for (int id = 0; id < 4; id++) {
            bool in = std::find(tc.kept.begin(), tc.kept.end(), id) != tc.kept.end();
            EXPECT_EQ(seen[id] > 0, in) << "top_p " << tc.p << " token " << id << " drawn " << seen[id];
        }
        expect_matches_distribution(d, want, "top_p minimal set");
    }
}

TEST(Sampling, MinPDropsBelowTheScaledMax) {
    QILIN_REQUIRE_DEVICES(1);
    /* relative to the max: 1, 0.5, 0.26, 0.24, 0.1 */
    std::vector<float> row = {0.0f, logf(0.5f), logf(0.26f), logf(0.24f), logf(0.1f)};
    qilin_sampling_params p = params(1.0f, 0, 1.0f, 0.25f);
    std::vector<double> want = ref_distribution(row.data(), 5, p, {});
    EXPECT_GT(want[2], 0);
    EXPECT_EQ(want[3], 0);
    EXPECT_EQ(want[4], 0);
    expect_matches_distribution(run(repeated(row, p, 600)), want, "min_p 0.25");
}

/* HF RepetitionPenaltyLogitsProcessor: score < 0 ? score * penalty : score / penalty. */
TEST(Sampling, RepetitionPenaltyFollowsTheHfRule) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> row = {2.0f, 1.5f, -0.5f, -0.6f, 0.0f};
    /* penalty 2 on {0, 2}: 1.0, 1.5, -1.0, -0.6, 0 -> argmax 1 */
    Drawn d = run(repeated(row, params(0.0f, 0, 1.0f, 0.0f, 2.0f), 1, {0, 2, 0, 9999, -1}));
    EXPECT_EQ(d.ids[0], 1);
    /* penalty 0.25 on {3}: -0.6 * 0.25 = -0.15 is still below 0; on {4}: 0 stays 0 */
    std::vector<float> neg = {-1.0f, -0.6f, -0.2f, -0.7f};
    d = run(repeated(neg, params(0.0f, 0, 1.0f, 0.0f, 4.0f), 1, {3}));
    EXPECT_EQ(d.ids[0], 2) << "-0.7 * 4 = -2.8 drops further";
    d = run(repeated(neg, params(0.0f, 0, 1.0f, 0.0f, 0.25f), 1, {3}));
    EXPECT_EQ(d.ids[0], 3) << "-0.7 * 0.25 = -0.175 rises above -0.2";
    /* without a penalty (1) the history changes nothing */
    d = run(repeated(row, params(0.0f, 0, 1.0f, 0.0f, 1.0f), 1, {0}));
    EXPECT_EQ(d.ids[0], 0);
}

TEST(Sampling, RowsWithDifferentParametersInOneBatch) {
    QILIN_REQUIRE_DEVICES(1);
    const int vocab = 40, per = 600;
    std::vector<float> row = normal_logits(vocab, 1.0, 55);
    std::vector<qilin_sampling_params> kinds = {params(0.0f), params(1.0f, 3), params(0.8f, 0, 0.7f),
                                                params(1.2f, 0, 1.0f, 0.2f),
                                                params(1.0f, 0, 1.0f, 0.0f, 1.5f)};
    std::vector<int> history = {argmax_lowest(row), 2};
    Batch b;
    b.rows = (int)kinds.size() * per;
    b.vocab = vocab;
    b.ld = vocab;
    b.use_history = true;
    for (int r = 0; r < b.rows; r++) { /* interleaved: row r has kind r % 5 */
        b.logits.insert(b.logits.end(), row.begin(), row.end());
        qilin_sampling_params p = kinds[r % kinds.size()];
        p.step = r;
        b.params.push_back(p);
        b.history.push_back(history);
    }
    Drawn d = run(b);
    for (size_t k = 0; k < kinds.size(); k++) {
        Drawn part;
        for (int r = (int)k; r < b.rows; r += (int)kinds.size())
            part.ids.push_back(d.ids[r]), part.probs.push_back(d.probs[r]);
        std::string what = "kind " + std::to_string(k);
        expect_matches_distribution(part, ref_distribution(row.data(), vocab, kinds[k], history),
                                    what.c_str());
    }
}

/* ---- large rows and the exact fallback ------------------------------------------------ */

TEST(Sampling, LargeVocabularyRow) {
    QILIN_REQUIRE_DEVICES(1);
    const int vocab = 151936;
    std::vector<float> row = normal_logits(vocab, 2.5, 77);
    std::vector<int> history = {argmax_lowest(row), 17, 151935};
    Batch b;
    b.rows = 3;
    b.vocab = vocab;
    b.ld = vocab;
    b.use_history = true;
    std::vector<qilin_sampling_params> ps = {params(0.0f, 0, 1.0f, 0.0f, 1.2f),
                                             params(0.8f, 50, 0.9f, 0.0f, 1.2f, 3, 11),
                                             params(1.0f, 0, 0.95f, 0.02f, 1.0f, 3, 12)};
    for (int r = 0; r < b.rows; r++) {
        b.logits.insert(b.logits.end(), row.begin(), row.end());
        b.params.push_back(ps[r]);
        b.history.push_back(history);
    }
    Drawn d = run(b);
    for (int r = 0; r < b.rows; r++) {
        std::vector<double> want = ref_distribution(row.data(), vocab, ps[r], history);
        int kept = (int)std::count_if(want.begin(), want.end(), [](double x) { return x > 0; });
        ASSERT_GE(d.ids[r], 0);
        ASSERT_LT(d.ids[r], vocab);
        printf("row %d: kept %d tokens, drew %d (p %.6f, reference %.6f)\n", r, kept, d.ids[r], d.probs[r],
               want[d.ids[r]]);
        EXPECT_GT(want[d.ids[r]], 0) << "row " << r;
        EXPECT_NEAR(d.probs[r], want[d.ids[r]], 1e-5 * want[d.ids[r]] + 1e-7) << "row " << r;
    }
}

/* Kept sets over 4096 tokens leave the shared-memory candidate list: exact
 * key bisection and the ordered draw. Group A (ids < 3000) has logit 1,
 * group B logit 0, the rest as noted. */
TEST(Sampling, FallbackForLargeKeptSets) {
    QILIN_REQUIRE_DEVICES(1);
    const int vocab = 6000, draws = 50;
    std::vector<float> two(vocab, 0.0f);
    std::fill(two.begin(), two.begin() + 3000, 1.0f);
    struct FCase {
        const char *name;
        std::vector<float> row;
        qilin_sampling_params p;
        int kept;
    } cases[] = {
        /* top-p 0.9: all of A, then B's lowest ids: c = ceil((0.9 (3000 e + 3000) - 3000 e) / 1) = 1885 */
        {"top_p_ties", two, params(1.0f, 0, 0.9f), 3000 + 1885},
        {"top_p_flat", std::vector<float>(vocab, 0.5f), params(1.0f, 0, 0.9f), 5400},
        {"top_k_4500_ties", two, params(1.0f, 4500), 4500},
        {"top_k_5000", normal_logits(vocab, 1.0, 5), params(1.0f, 5000), 5000},
        {"no_filter", two, params(1.0f), vocab},
        {"top_k_and_top_p", normal_logits(vocab, 0.3, 6), params(1.0f, 5500, 0.95f), -1},
    };
    for (const FCase &c : cases) {
        std::vector<double> want = ref_distribution(c.row.data(), vocab, c.p, {});
        int kept = (int)std::count_if(want.begin(), want.end(), [](double x) { return x > 0; });
        if (c.kept >= 0) {
            EXPECT_EQ(kept, c.kept) << c.name << ": the reference";
        }
        EXPECT_GT(kept, 4096) << c.name << " must take the fallback";
        Drawn d = run(repeated(c.row, c.p, draws));
        int outside = 0, bad_prob = 0, in_a = 0;
        double want_a = 0;
        for (int i = 0; i < 3000; i++) want_a += want[i];
        for (int r = 0; r < draws; r++) {
            int id = d.ids[r];
            if (id < 0 || id >= vocab || want[id] == 0) {
                outside++;
                continue;
            }
            in_a += id < 3000;
            if (std::fabs(d.probs[r] - want[id]) > 1e-5 * want[id]) bad_prob++;
        }
        double frac = (double)in_a / draws, sd = sqrt(want_a * (1 - want_a) / draws);
        printf("%s: kept %d, %d/%d draws in ids < 3000 (expected %.3f)\n", c.name, kept, in_a, draws, want_a);
        EXPECT_EQ(outside, 0) << c.name;
        EXPECT_EQ(bad_prob, 0) << c.name;
        EXPECT_NEAR(frac, want_a, 5 * sd + 1e-9) << c.name;
    }
}

TEST(Sampling, FallbackMinP) {
    QILIN_REQUIRE_DEVICES(1);
    /* 5000 tokens in [0, 1] (exp(v - max) >= e^-1), 3000 at -1.5 (e^-2.5 = 0.082 < min_p 0.1) */
    const int vocab = 8000, draws = 80;
    std::vector<float> row(vocab, -1.5f);
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    for (int i = 0; i < 5000; i++) row[i * 8 / 5] = uni(rng); /* spread over the ids */
    qilin_sampling_params p = params(1.0f, 0, 1.0f, 0.1f);
    std::vector<double> want = ref_distribution(row.data(), vocab, p, {});
    int kept = (int)std::count_if(want.begin(), want.end(), [](double x) { return x > 0; });
    EXPECT_EQ(kept, 5000);
    Drawn d = run(repeated(row, p, draws));
    int outside = 0;
    for (int r = 0; r < draws; r++)
        outside += want[d.ids[r]] == 0 || std::fabs(d.probs[r] - want[d.ids[r]]) > 1e-5 * want[d.ids[r]];
    EXPECT_EQ(outside, 0) << "draws below min_p (about 7% of the unfiltered mass) or off probabilities";
}

/* ---- parameters and arguments ------------------------------------------------------------ */

TEST(SamplingParams, HostCheckNamesTheProblem) {
    char why[QILIN_SAMPLING_WHY_BYTES];
    EXPECT_EQ(qilin_sampling_params_check(nullptr, why), QILIN_ERR_INVALID_ARGUMENT);
    qilin_sampling_params ok = params(0.7f, 40, 0.9f, 0.05f, 1.1f);
    EXPECT_EQ(qilin_sampling_params_check(&ok, why), QILIN_OK);
    EXPECT_STREQ(why, "");
    EXPECT_EQ(qilin_sampling_params_check(&ok, nullptr), QILIN_OK);
    struct {
        qilin_sampling_params p;
        const char *needle;
    } bad[] = {
        {params(-0.1f), "temperature"},
        {params(NAN), "temperature"},
        {params(INFINITY), "temperature"},
        {params(1.0f, -1), "top_k"},
        {params(1.0f, 0, 0.0f), "top_p"},
        {params(1.0f, 0, 1.01f), "top_p"},
        {params(1.0f, 0, NAN), "top_p"},
        {params(1.0f, 0, 1.0f, -0.1f), "min_p"},
        {params(1.0f, 0, 1.0f, 1.5f), "min_p"},
        {params(1.0f, 0, 1.0f, 0.0f, 0.0f), "repetition_penalty"},
        {params(1.0f, 0, 1.0f, 0.0f, -2.0f), "repetition_penalty"},
    };
    for (auto &b : bad) {
        EXPECT_EQ(qilin_sampling_params_check(&b.p, why), QILIN_ERR_INVALID_ARGUMENT) << b.needle;
        EXPECT_NE(std::string(why).find(b.needle), std::string::npos) << why;
        EXPECT_NE(std::string(qilin_last_error()).find(b.needle), std::string::npos) << qilin_last_error();
    }
}

TEST(SamplingParams, DeviceMarksInvalidRows) {
    QILIN_REQUIRE_DEVICES(1);
    std::vector<float> row = normal_logits(30, 1.0, 1);
    Batch b = repeated(row, params(0.0f), 4);
    b.params[1].top_p = 0.0f;
    b.params[2].temperature = -1.0f;
    Drawn d = run(b, false); /* out_probs NULL is fine */
    EXPECT_EQ(d.ids[0], argmax_lowest(row));
    EXPECT_EQ(d.ids[1], -1);
    EXPECT_EQ(d.ids[2], -1);
    EXPECT_EQ(d.ids[3], argmax_lowest(row));
}

TEST(SamplingErrors, BadArgumentsNameTheProblem) {
    float logits[8] = {0};
    int ids[1], hist[1] = {0};
    qilin_sampling_params p = params(1.0f);
    auto good = [&] {
        qilin_sample_args a = {};
        a.out_ids = ids;
        a.logits = logits;
        a.ld = 8;
        a.rows = 1;
        a.vocab = 8;
        a.params = &p;
        return a;
    };
    struct {
        void (*mutate)(qilin_sample_args &);
        qilin_status status;
        const char *needle;
    } bad[] = {
        {[](qilin_sample_args &a) { a.logits = nullptr; }, QILIN_ERR_INVALID_ARGUMENT, "logits"},
        {[](qilin_sample_args &a) { a.params = nullptr; }, QILIN_ERR_INVALID_ARGUMENT, "params"},
        {[](qilin_sample_args &a) { a.vocab = 0; }, QILIN_ERR_INVALID_ARGUMENT, "vocab=0"},
        {[](qilin_sample_args &a) { a.rows = -2; }, QILIN_ERR_INVALID_ARGUMENT, "rows=-2"},
        {[](qilin_sample_args &a) { a.ld = 4; }, QILIN_ERR_INVALID_ARGUMENT, "ld=4"},
        {[](qilin_sample_args &a) { a.vocab = a.ld = 1 << 25; }, QILIN_ERR_INVALID_ARGUMENT, "vocab"},
    };
    for (auto &b : bad) {
        qilin_sample_args a = good();
        b.mutate(a);
        EXPECT_EQ(qilin_sample(&a, nullptr), b.status) << b.needle;
        EXPECT_NE(std::string(qilin_last_error()).find(b.needle), std::string::npos) << qilin_last_error();
    }
    qilin_sample_args a = good();
    a.history = hist;
    EXPECT_EQ(qilin_sample(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("history_start"), std::string::npos) << qilin_last_error();
    a = good();
    a.rows = 0;
    EXPECT_EQ(qilin_sample(&a, nullptr), QILIN_OK) << "no rows is a no-op";
    EXPECT_EQ(qilin_sample_workspace(64, 151936), 0u);
}

} // namespace

namespace {

/* qilin_apply_penalties against a host reference doing the same float
 * operations in vLLM's order (repetition over prompt + generated distinct
 * ids; then per distinct generated id: -= frequency * count, -= presence):
 * equal bit for bit. Rows: all three penalties, presence/frequency only
 * (negative ones too), none (untouched), a repetition penalty only, ids out
 * of range and duplicates in the history, NaN and -inf logits, and an
 * invalid row (left for qilin_sample to flag). */
TEST(Sampling, PresenceAndFrequencyPenaltiesInPlace) {
    QILIN_REQUIRE_DEVICES(1);
    const int vocab = 300, rows = 6;
    const int64_t ld = 320;
    std::mt19937 rng(99);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits((size_t)rows * ld);
    for (float &x : logits) x = normal(rng);
    logits[7] = NAN, logits[8] = -INFINITY;
    std::vector<qilin_sampling_params> p(rows, params(1.0f));
    p[0].repetition_penalty = 1.3f, p[0].presence_penalty = 0.5f, p[0].frequency_penalty = 0.25f;
    p[1].presence_penalty = -1.0f, p[1].frequency_penalty = 2.0f;
    /* p[2]: no penalty */
    p[3].repetition_penalty = 0.7f;
    p[4].frequency_penalty = 1.5f;                    /* generated: only the NaN, -inf and out-of-range ids */
    p[5].frequency_penalty = 1.0f, p[5].top_p = 0.0f; /* invalid: untouched */
    std::vector<std::vector<int>> prompt(rows), gen(rows);
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < 12; i++) prompt[r].push_back((int)(rng() % vocab));
        for (int i = 0; i < 20 && r != 4; i++) gen[r].push_back((int)(rng() % 16)); /* many repeats */
        gen[r].push_back(7), gen[r].push_back(8), prompt[r].push_back(-3), gen[r].push_back(vocab + 5);
    }
    std::vector<int> hist, start(1, 0), out;
    for (int r = 0; r < rows; r++) {
        hist.insert(hist.end(), prompt[r].begin(), prompt[r].end());
        out.push_back((int)hist.size());
        hist.insert(hist.end(), gen[r].begin(), gen[r].end());
        start.push_back((int)hist.size());
    }
    std::vector<float> want = logits;
    for (int r = 0; r < rows; r++) {
        const qilin_sampling_params &q = p[r];
        if (qilin_sampling_params_check(&q, nullptr) != QILIN_OK) continue;
        float *l = &want[(size_t)r * ld];
        std::vector<bool> seen(vocab, false);
        for (int h = start[r]; h < start[r + 1] && q.repetition_penalty != 1.0f; h++) {
            int id = hist[h];
            if (id < 0 || id >= vocab || seen[id]) continue;
            seen[id] = true;
            l[id] = l[id] < 0.0f ? l[id] * q.repetition_penalty : l[id] / q.repetition_penalty;
        }
        std::vector<int> count(vocab, 0);
        for (int h = out[r]; h < start[r + 1]; h++)
            if (hist[h] >= 0 && hist[h] < vocab) count[hist[h]]++;
        for (int id = 0; id < vocab && (q.presence_penalty != 0.0f || q.frequency_penalty != 0.0f); id++)
            if (count[id]) {
                float x = l[id] - q.frequency_penalty * (float)count[id];
                l[id] = x - q.presence_penalty;
            }
    }
    qilin_clear_error();
    DeviceBuffer<float> dlogits(logits.size());
    DeviceBuffer<qilin_sampling_params> dparams(rows);
    DeviceBuffer<int> dhist(hist.size()), dstart(start.size()), dout(out.size());
    ASSERT_EQ(dlogits.upload(logits), QILIN_OK);
    ASSERT_EQ(dparams.upload(p), QILIN_OK);
    ASSERT_EQ(dhist.upload(hist), QILIN_OK);
    ASSERT_EQ(dstart.upload(start), QILIN_OK);
    ASSERT_EQ(dout.upload(out), QILIN_OK);
    qilin_penalty_args a = {dlogits.ptr, ld, rows, vocab, dparams.ptr, dhist.ptr, dstart.ptr, dout.ptr};
    ASSERT_EQ(qilin_apply_penalties(&a, nullptr), QILIN_OK) << qilin_last_error();
    std::vector<float> got = dlogits.download();
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < vocab; i++) {
            float g = got[(size_t)r * ld + i], w = want[(size_t)r * ld + i];
            if (std::isnan(w))
                EXPECT_TRUE(std::isnan(g)) << "row " << r << " id " << i;
            else
                EXPECT_EQ(g, w) << "row " << r << " id " << i;
        }
    int changed = 0;
    for (int i = 0; i < vocab; i++) changed += got[i] != logits[i] && !std::isnan(logits[i]);
    EXPECT_GE(changed, 10) << "row 0 was penalised";
    a.output_start = nullptr;
    EXPECT_EQ(qilin_apply_penalties(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    qilin_sampling_params inf = params(1.0f);
    inf.presence_penalty = INFINITY;
    EXPECT_EQ(qilin_sampling_params_check(&inf, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    inf.presence_penalty = 0, inf.frequency_penalty = NAN;
    EXPECT_EQ(qilin_sampling_params_check(&inf, nullptr), QILIN_ERR_INVALID_ARGUMENT);
}

} // namespace
