// test_engine.cpp — the serving engine (runtime/engine.h) and its KV block
// manager (runtime/engine/kv_blocks.h).
//
// Block manager (pure host): refcounts and all-or-nothing growth, prefix
// sharing by key, LRU eviction order (tail blocks of a sequence first), and
// after every test every block back in the pool with refcount 0.
//
// Engine (sim, stories260K in fp32): requests arriving at random steps with
// random prompt lengths (sharing a few prefixes), token limits, stop ids,
// repetition penalties and cancellations, through a block pool small enough
// to force preemption. Every completed request's tokens equal the same
// request run alone through qilin_generate_stream; cancelled ones hold a
// prefix of them; chunk sizes 1, 7 and 64 give the same tokens; the pool is
// whole again afterwards; decode replayed from graphs gives the tokens of
// eager decode. The model's KV pool is paged (blocks of 4 positions): the
// engine's block tables are what the kernels read, so a prefix-cache hit
// skips the prefill of the shared blocks (and gives the tokens of a miss).
//
// Paged forward (qilin_batch.blocks): a prompt through a shuffled block
// table gives the logits of the contiguous slot; a second sequence sharing
// its first blocks and computing only the tail gives the tail's logits;
// tables writing a block another sequence of the step uses, or naming a
// block outside the pool, are refused. The same for DeepSeek-V3's MLA (naive
// and absorbed forms) and a sliding window; the engine over MLA with
// preemption and prefix hits gives each request's tokens alone; the pool's
// size and block options resolve and refuse as forward.h says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "host/forward.h"
#include "runtime/engine.h"
#include "runtime/engine/kv_blocks.h"
#include "tests/golden.h"
#include "tests/test_util.h"

namespace {

/* ---- block manager ------------------------------------------------------ */

class KvBlocks : public testing::Test {
  protected:
    qilin_kv_pool *pool_ = nullptr;
    void make(int blocks, int block_size, bool caching = true) {
        QILIN_ASSERT_OK(qilin_kv_pool_create(blocks, block_size, caching, &pool_));
    }
    bool grow(qilin_kv_table *t, int n) {
        bool grown = false;
        EXPECT_EQ(qilin_kv_table_grow(pool_, t, n, &grown), QILIN_OK) << qilin_last_error();
        return grown;
    }
    int match(qilin_kv_table *t, const std::vector<int> &tokens) {
        int matched = -1;
        EXPECT_EQ(qilin_kv_table_match(pool_, t, tokens.data(), (int)tokens.size(), &matched), QILIN_OK);
        return matched;
    }
    qilin_kv_stats stats() {
        qilin_kv_stats s;
        qilin_kv_pool_stats(pool_, &s);
        return s;
    }
    /* The leak check: every block back, no reference left. */
    void TearDown() override {
        if (!pool_) return;
        qilin_kv_stats s = stats();
        EXPECT_EQ(s.free_blocks, s.num_blocks) << "blocks leaked";
        for (int b = 0; b < s.num_blocks; b++) EXPECT_EQ(qilin_kv_block_ref(pool_, b), 0) << "block " << b;
        qilin_kv_pool_free(pool_);
    }
};

TEST_F(KvBlocks, RefusesBadSizes) {
    qilin_kv_pool *p = nullptr;
    EXPECT_EQ(qilin_kv_pool_create(0, 16, true, &p), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_kv_pool_create(4, 0, true, &p), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(p, nullptr);
}

TEST_F(KvBlocks, GrowIsAllOrNothingAndRefcounted) {
    make(4, 4);
    qilin_kv_table a{}, b{};
    EXPECT_TRUE(grow(&a, 10)); /* 3 blocks */
    EXPECT_EQ(a.n_blocks, 3);
    EXPECT_TRUE(grow(&a, 12)); /* still 3 */
    EXPECT_EQ(a.n_blocks, 3);
    EXPECT_FALSE(grow(&b, 8)); /* 2 wanted, 1 left: nothing taken */
    EXPECT_EQ(b.n_blocks, 0);
    EXPECT_EQ(stats().free_blocks, 1);
    for (int i = 0; i < 3; i++) EXPECT_EQ(qilin_kv_block_ref(pool_, a.blocks[i]), 1);
    qilin_kv_table_release(pool_, &a);
    EXPECT_EQ(a.n_blocks, 0);
    EXPECT_TRUE(grow(&b, 16));
    EXPECT_EQ(stats().free_blocks, 0);
    qilin_kv_table_release(pool_, &b);
}

TEST_F(KvBlocks, FullBlocksAreSharedByPrefix) {
    make(8, 4);
    std::vector<int> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    qilin_kv_table a{}, b{}, c{}, d{};
    EXPECT_EQ(match(&a, prompt), 0); /* nothing cached yet */
    ASSERT_TRUE(grow(&a, 13));
    qilin_kv_table_commit(pool_, &a, prompt.data(), 11); /* two full blocks computed */
    EXPECT_EQ(stats().cached_blocks, 2);
    qilin_kv_table_commit(pool_, &a, prompt.data(), 13);
    EXPECT_EQ(stats().cached_blocks, 3);

    EXPECT_EQ(match(&b, prompt), 12); /* three blocks shared */
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(b.blocks[i], a.blocks[i]);
        EXPECT_EQ(qilin_kv_block_ref(pool_, a.blocks[i]), 2);
    }
    /* a prompt of exactly 12 keeps its last block to compute */
    EXPECT_EQ(match(&c, std::vector<int>(prompt.begin(), prompt.begin() + 12)), 8);
    /* a different third block: only the first two */
    std::vector<int> other = prompt;
    other[9] = 99;
    EXPECT_EQ(match(&d, other), 8);
    EXPECT_EQ(stats().free_blocks, 4); /* a's 4 blocks; b, c, d took none of their own */
    EXPECT_EQ(stats().hits, 3u + 2u + 2u);
    for (qilin_kv_table *t : {&a, &b, &c, &d}) qilin_kv_table_release(pool_, t);
    EXPECT_EQ(stats().cached_blocks, 3); /* still cached, now evictable */
    qilin_kv_table e{};
    EXPECT_EQ(match(&e, prompt), 12); /* hits after release too */
    qilin_kv_table_release(pool_, &e);
}

/* An admission that matched and then could not grow is undone: the shared
 * blocks' references and the match's lookups and hits go back, so the retry
 * at a later step is counted once. */
TEST_F(KvBlocks, UnmatchTakesTheMatchBackOutOfTheStats) {
    make(8, 4);
    std::vector<int> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    qilin_kv_table a{}, b{};
    ASSERT_TRUE(grow(&a, 13));
    qilin_kv_table_commit(pool_, &a, prompt.data(), 13);
    const qilin_kv_stats before = stats();
    EXPECT_EQ(match(&b, prompt), 12);
    EXPECT_EQ(stats().hits, before.hits + 3);
    EXPECT_EQ(stats().lookups, before.lookups + 3);
    qilin_kv_table_unmatch(pool_, &b);
    EXPECT_EQ(stats().hits, before.hits);
    EXPECT_EQ(stats().lookups, before.lookups);
    for (int i = 0; i < 3; i++) EXPECT_EQ(qilin_kv_block_ref(pool_, a.blocks[i]), 1);
    EXPECT_EQ(b.n_blocks, 0);
    EXPECT_EQ(match(&b, prompt), 12); /* the retry */
    EXPECT_EQ(stats().hits, before.hits + 3);
    for (qilin_kv_table *t : {&a, &b}) qilin_kv_table_release(pool_, t);
}

TEST_F(KvBlocks, DuplicateBlockStaysPrivate) {
    make(4, 2);
    std::vector<int> prompt = {5, 6, 7};
    qilin_kv_table a{}, b{};
    ASSERT_TRUE(grow(&a, 3));
    ASSERT_TRUE(grow(&b, 3)); /* both computing the same prompt at once */
    qilin_kv_table_commit(pool_, &a, prompt.data(), 3);
    qilin_kv_table_commit(pool_, &b, prompt.data(), 3);
    EXPECT_EQ(stats().cached_blocks, 1);
    qilin_kv_table_release(pool_, &b);
    EXPECT_EQ(stats().cached_blocks, 1);
    qilin_kv_table_release(pool_, &a);
}

TEST_F(KvBlocks, EvictsLeastRecentlyReleasedTailFirst) {
    make(4, 2);
    std::vector<int> A = {1, 2, 3}, B = {3, 4, 5}, C = {5, 6, 7, 8, 9};
    qilin_kv_table a{}, b{}, c{};
    ASSERT_TRUE(grow(&a, 2));
    qilin_kv_table_commit(pool_, &a, A.data(), 2);
    ASSERT_TRUE(grow(&b, 2));
    qilin_kv_table_commit(pool_, &b, B.data(), 2);
    ASSERT_TRUE(grow(&c, 4));
    qilin_kv_table_commit(pool_, &c, C.data(), 4); /* two blocks */
    qilin_kv_table_release(pool_, &a);
    qilin_kv_table_release(pool_, &c); /* tail first: C's second block older than its first */
    qilin_kv_table_release(pool_, &b);
    EXPECT_EQ(stats().cached_blocks, 4);
    /* LRU order now: A, C[1], C[0], B. Taking two blocks evicts A and C's tail. */
    qilin_kv_table x{};
    ASSERT_TRUE(grow(&x, 4));
    EXPECT_EQ(stats().evictions, 2u);
    qilin_kv_table ma{}, mb{}, mc{};
    EXPECT_EQ(match(&ma, A), 0);
    EXPECT_EQ(match(&mb, B), 2);
    EXPECT_EQ(match(&mc, C), 2); /* its first block survived */
    for (qilin_kv_table *t : {&x, &ma, &mb, &mc}) qilin_kv_table_release(pool_, t);
}

TEST_F(KvBlocks, WithoutCachingNothingIsKeyed) {
    make(4, 2, false);
    std::vector<int> prompt = {1, 2, 3};
    qilin_kv_table a{}, b{};
    ASSERT_TRUE(grow(&a, 3));
    qilin_kv_table_commit(pool_, &a, prompt.data(), 3);
    EXPECT_EQ(stats().cached_blocks, 0);
    EXPECT_EQ(match(&b, prompt), 0);
    qilin_kv_table_release(pool_, &a);
    qilin_kv_table_release(pool_, &b);
}

/* ---- the engine on stories260K ------------------------------------------ */

struct Req {
    std::vector<int> prompt;
    int max_new = 0;
    std::vector<int> stop;
    qilin_sampling_params params{0, 0, 1, 0, 1, 0, 0, 0, 0};
    int arrival = 0, cancel_at = -1; /* engine steps */
    std::vector<int> alone;          /* what it gives run alone */
};

bool collect(void *user, int, int token) {
    auto *r = static_cast<std::pair<std::vector<int> *, const Req *> *>(user);
    r->first->push_back(token);
    const std::vector<int> &stop = r->second->stop;
    return std::find(stop.begin(), stop.end(), token) == stop.end();
}

class Engine : public testing::Test {
  protected:
    static qilin_model *model_;
    static void SetUpTestSuite() {
        qilin_model_options o;
        qilin_model_options_default(&o);
        o.dtype = QILIN_F32;
        o.max_seqs = 8;
        o.max_ctx = 48;
        o.max_batch_tokens = 64;
        o.kv_block_size = 4; /* 96 blocks; tables of 12 */
        if (qilin_model_load((golden::models_dir() + "/stories260K").c_str(), &o, &model_) != QILIN_OK) {
            model_ = nullptr;
            return;
        }
        requests_ = random_requests(24, 7, 8);
    }
    static std::vector<Req> requests_;
    static void TearDownTestSuite() {
        qilin_model_free(model_);
        model_ = nullptr;
    }
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(1);
        ASSERT_NE(model_, nullptr) << qilin_last_error();
    }

    /* The request alone through qilin_generate_stream. */
    static std::vector<int> alone(const Req &r) {
        std::vector<int> out;
        std::pair<std::vector<int> *, const Req *> ctx{&out, &r};
        const int *prompts[1] = {r.prompt.data()};
        int len = (int)r.prompt.size();
        EXPECT_EQ(qilin_generate_stream(model_, 1, prompts, &len, &r.params, r.max_new, collect, &ctx), QILIN_OK)
            << qilin_last_error();
        return out;
    }

    /* n requests: prompts that share one of three prefixes, then random ids;
     * a quarter sampled (temperature, top-p, their own seed), a quarter with
     * a repetition penalty. Their runs alone come later (with_alone). */
    static std::vector<Req> random_requests(int n, uint32_t seed, int max_arrival) {
        std::mt19937 rng(seed);
        std::vector<std::vector<int>> prefixes(3);
        for (auto &p : prefixes)
            for (int i = 0; i < 12; i++) p.push_back(1 + (int)(rng() % 511));
        std::vector<Req> reqs(n);
        for (Req &r : reqs) {
            int len = 1 + (int)(rng() % 24);
            const std::vector<int> &pre = prefixes[rng() % 3];
            bool shared = rng() % 4 != 0;
            for (int i = 0; i < len; i++) r.prompt.push_back(shared && i < 12 ? pre[i] : 1 + (int)(rng() % 511));
            r.max_new = 1 + (int)(rng() % 10);
            switch (rng() % 4) {
            case 0: r.params.repetition_penalty = 1.3f; break;
            case 1: r.params.temperature = 0.8f, r.params.top_p = 0.9f, r.params.seed = rng(); break;
            default: break;
            }
            r.arrival = (int)(rng() % (unsigned)(max_arrival + 1));
        }
        return reqs;
    }

    /* The first n requests with what each gives alone, and for a third of
     * them a stop id that run really meets (the expected tokens end there). */
    static std::vector<Req> with_alone(size_t n) {
        std::vector<Req> reqs(requests_.begin(), requests_.begin() + (long)n);
        for (size_t i = 0; i < n; i++) {
            Req &r = reqs[i];
            std::mt19937 rng((uint32_t)i);
            std::vector<int> full = alone(r);
            if (rng() % 3 == 0 && full.size() > 2) r.stop.push_back(full[rng() % full.size()]);
            r.alone = full;
            if (!r.stop.empty()) {
                auto at = std::find(r.alone.begin(), r.alone.end(), r.stop[0]);
                r.alone.erase(at + 1, r.alone.end());
            }
        }
        return reqs;
    }

    struct Run {
        std::vector<std::vector<int>> tokens;
        std::vector<qilin_engine_finish> finished;
        qilin_engine_stats stats{};
    };

    /* Feeds reqs at their arrival steps, cancels at cancel_at, steps to idle. */
    static Run run(const std::vector<Req> &reqs, const qilin_engine_options &o) {
        Run out;
        qilin_engine *e = nullptr;
        EXPECT_EQ(qilin_engine_create(model_, &o, &e), QILIN_OK) << qilin_last_error();
        if (!e) return out;
        std::vector<int64_t> ids(reqs.size(), 0);
        size_t added = 0;
        for (int step = 0; added < reqs.size() || !qilin_engine_idle(e); step++) {
            for (size_t i = 0; i < reqs.size(); i++) {
                if (reqs[i].arrival == step) {
                    qilin_engine_request r = {reqs[i].prompt.data(), (int)reqs[i].prompt.size(), reqs[i].params,
                                              reqs[i].max_new, reqs[i].stop.data(), (int)reqs[i].stop.size(),
                                              false, 0};
                    EXPECT_EQ(qilin_engine_add(e, &r, &ids[i]), QILIN_OK) << qilin_last_error();
                    added++;
                }
                if (reqs[i].cancel_at == step && ids[i]) {
                    EXPECT_EQ(qilin_engine_cancel(e, ids[i]), QILIN_OK);
                }
            }
            qilin_status st = qilin_engine_step(e);
            EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
            if (st != QILIN_OK || step > 10000) break;
        }
        for (int64_t id : ids) {
            const int *t = nullptr;
            int n = 0;
            qilin_engine_finish why = QILIN_ENGINE_RUNNING;
            EXPECT_EQ(qilin_engine_poll(e, id, &t, &n, &why), QILIN_OK);
            out.tokens.emplace_back(t, t + n);
            out.finished.push_back(why);
            EXPECT_EQ(qilin_engine_release(e, id), QILIN_OK);
        }
        qilin_engine_get_stats(e, &out.stats);
        qilin_engine_free(e);
        return out;
    }
};
qilin_model *Engine::model_ = nullptr;
std::vector<Req> Engine::requests_;

std::string show(const std::vector<int> &v) {
    std::string s;
    for (int x : v) s += std::to_string(x) + " ";
    return s;
}

TEST_F(Engine, RandomArrivalsMatchEachRequestAlone) {
    std::vector<Req> reqs = with_alone(requests_.size()); /* the runs alone: most of this test's time */
    std::mt19937 rng(11);
    for (int k = 0; k < 4; k++) {
        Req &c = reqs[rng() % reqs.size()];
        c.cancel_at = c.arrival + (int)(rng() % 4); /* often while waiting or prefilling */
    }
    qilin_engine_options o;
    qilin_engine_options_default(&o);
    o.block_size = 4;
    o.num_blocks = 12; /* 48 positions for 8 sequences of up to 33: preemption */
    o.prefill_chunk = 8;
    Run r = run(reqs, o);
    ASSERT_EQ(r.tokens.size(), reqs.size());
    int completed = 0, cancelled = 0;
    for (size_t i = 0; i < reqs.size(); i++) {
        const std::vector<int> &want = reqs[i].alone;
        if (r.finished[i] == QILIN_ENGINE_CANCELLED) {
            cancelled++;
            ASSERT_LE(r.tokens[i].size(), want.size()) << "request " << i;
            EXPECT_TRUE(std::equal(r.tokens[i].begin(), r.tokens[i].end(), want.begin())) << "request " << i;
            continue;
        }
        completed++;
        EXPECT_EQ(r.tokens[i], want) << "request " << i << ": " << show(r.tokens[i]) << "\nalone: " << show(want);
        bool stopped = !reqs[i].stop.empty() && want.back() == reqs[i].stop[0];
        EXPECT_EQ(r.finished[i], stopped ? QILIN_ENGINE_STOPPED : QILIN_ENGINE_LENGTH) << "request " << i;
    }
    const qilin_engine_stats &s = r.stats;
    printf("[ engine ] %d completed, %d cancelled; %llu steps, mean batch %.2f seqs / %.1f tokens; prefill %llu, "
           "decode %llu tokens; %llu preemptions; prefix hits %llu of %llu blocks; %llu evictions\n",
           completed, cancelled, (unsigned long long)s.steps, (double)s.batched_seqs / (double)s.steps,
           (double)s.batched_tokens / (double)s.steps, (unsigned long long)s.prefill_tokens,
           (unsigned long long)s.decode_tokens, (unsigned long long)s.preemptions,
           (unsigned long long)s.prefix_hits, (unsigned long long)s.prefix_lookups,
           (unsigned long long)s.evictions);
    EXPECT_GT(cancelled, 0);
    EXPECT_GT(s.preemptions, 0u) << "the pool was meant to force preemption";
    EXPECT_GT(s.prefix_hits, 0u);
    EXPECT_GT((double)s.batched_seqs / (double)s.steps, 2.0) << "no continuous batching";
    EXPECT_EQ(s.requests_finished + s.requests_cancelled, reqs.size());
    EXPECT_EQ(s.free_blocks, s.num_blocks) << "blocks leaked";
    EXPECT_EQ(s.waiting + s.running, 0);
}

/* Two requests prefilled in chunks of 4 through a 5-block pool (20
 * positions; the first needs all 5): the second is preempted at its third
 * block, recomputed after the first finishes, and both give their tokens
 * alone. Small enough for the asan preset, which skips the two tests
 * around it. */
TEST_F(Engine, PreemptedRequestMatchesItsRunAlone) {
    std::vector<Req> reqs(2);
    for (int i = 0; i < 12; i++) reqs[0].prompt.push_back(1 + 37 * i), reqs[1].prompt.push_back(2 + 41 * i);
    reqs[0].max_new = reqs[1].max_new = 6;
    for (Req &r : reqs) r.alone = alone(r);
    qilin_engine_options o;
    qilin_engine_options_default(&o);
    o.block_size = 4, o.num_blocks = 5, o.prefill_chunk = 4;
    Run r = run(reqs, o);
    ASSERT_EQ(r.tokens.size(), 2u);
    for (size_t i = 0; i < 2; i++) {
        EXPECT_EQ(r.tokens[i], reqs[i].alone) << "request " << i;
        EXPECT_EQ(r.finished[i], QILIN_ENGINE_LENGTH);
    }
    EXPECT_GE(r.stats.preemptions, 1u);
    EXPECT_EQ(r.stats.free_blocks, r.stats.num_blocks);
}

TEST_F(Engine, ChunkSizeDoesNotChangeTokens) {
    std::vector<Req> reqs = with_alone(6);
    for (Req &r : reqs) r.arrival = 0; /* all prefilling together */
    for (int chunk : {1, 7, 64}) {
        qilin_engine_options o;
        qilin_engine_options_default(&o);
        o.prefill_chunk = chunk;
        Run r = run(reqs, o);
        ASSERT_EQ(r.tokens.size(), reqs.size());
        for (size_t i = 0; i < reqs.size(); i++)
            EXPECT_EQ(r.tokens[i], reqs[i].alone) << "chunk " << chunk << ", request " << i;
        EXPECT_EQ(r.stats.free_blocks, r.stats.num_blocks) << "chunk " << chunk;
        EXPECT_EQ(r.stats.preemptions, 0u);
    }
}

/* Decode steps replayed from captured graphs (the default; host/forward_layers.c)
 * give the engine the tokens of eager decode: the same requests through an
 * engine on a copy of the model loaded with no_graphs. */
TEST_F(Engine, GraphReplayGivesTheTokensOfEagerDecode) {
    std::vector<Req> reqs(requests_.begin(), requests_.begin() + 12);
    qilin_model_options o = *qilin_model_get_options(model_);
    o.no_graphs = true;
    qilin_model *eager = nullptr;
    ASSERT_EQ(qilin_model_load((golden::models_dir() + "/stories260K").c_str(), &o, &eager), QILIN_OK)
        << qilin_last_error();
    qilin_engine_options eo;
    qilin_engine_options_default(&eo);
    qilin_forward_stats before, after, eager_stats;
    qilin_model_forward_stats(model_, &before);
    Run graphs = run(reqs, eo);
    qilin_model_forward_stats(model_, &after);
    qilin_model *saved = model_;
    model_ = eager; /* run() drives model_ */
    Run plain = run(reqs, eo);
    model_ = saved;
    qilin_model_forward_stats(eager, &eager_stats);
    qilin_model_free(eager);
    ASSERT_EQ(graphs.tokens.size(), reqs.size());
    for (size_t i = 0; i < reqs.size(); i++) EXPECT_EQ(graphs.tokens[i], plain.tokens[i]) << "request " << i;
    EXPECT_GT(after.graph_replays, before.graph_replays) << "no decode step was replayed from a graph";
    EXPECT_EQ(eager_stats.graph_replays, 0u);
}

TEST_F(Engine, RefusesWhatCanNeverRun) {
    qilin_engine_options o;
    qilin_engine_options_default(&o);
    o.max_num_seqs = 9; /* the model steps 8 sequences at most */
    qilin_engine *e = nullptr;
    EXPECT_EQ(qilin_engine_create(model_, &o, &e), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("8 sequences per step"), std::string::npos) << qilin_last_error();
    o.max_num_seqs = 0;
    o.block_size = 16; /* the pool's blocks are the model's: 4 positions */
    EXPECT_EQ(qilin_engine_create(model_, &o, &e), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("96 blocks of 4 positions"), std::string::npos)
        << qilin_last_error();
    o.block_size = 0, o.num_blocks = 97;
    EXPECT_EQ(qilin_engine_create(model_, &o, &e), QILIN_ERR_INVALID_ARGUMENT);
    o.num_blocks = 0;
    o.max_num_batched_tokens = 65;
    EXPECT_EQ(qilin_engine_create(model_, &o, &e), QILIN_ERR_INVALID_ARGUMENT);
    o.max_num_batched_tokens = 0;
    o.block_size = 4, o.num_blocks = 5; /* 20 positions */
    QILIN_ASSERT_OK(qilin_engine_create(model_, &o, &e));
    std::vector<int> prompt(16, 1);
    qilin_sampling_params greedy{0, 0, 1, 0, 1, 0, 0, 0, 0};
    qilin_engine_request r = {prompt.data(), 16, greedy, 6, nullptr, 0, false, 0};
    int64_t id = -1;
    EXPECT_EQ(qilin_engine_add(e, &r, &id), QILIN_ERR_INVALID_ARGUMENT); /* 21 positions: 6 blocks */
    EXPECT_NE(std::string(qilin_last_error()).find("request 1: a prompt of 16 tokens and 6 new ones need 6 KV blocks "
                                                   "of 4 positions; the pool has 5"),
              std::string::npos)
        << qilin_last_error();
    EXPECT_EQ(id, 0);
    r.max_new_tokens = 5; /* 20 positions of KV (the last token is never fed): fits */
    QILIN_ASSERT_OK(qilin_engine_add(e, &r, &id));
    EXPECT_EQ(id, 1);
    std::vector<int> long_prompt(40, 1);
    qilin_engine_request too_long = {long_prompt.data(), 40, greedy, 9, nullptr, 0, false, 0};
    int64_t id2 = -1;
    EXPECT_EQ(qilin_engine_add(e, &too_long, &id2), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("request 2: a prompt of 40 tokens and 9 new ones exceed the "
                                                   "context of 48"),
              std::string::npos)
        << qilin_last_error();
    qilin_engine_request bad = r;
    bad.params.temperature = NAN;
    EXPECT_EQ(qilin_engine_add(e, &bad, &id2), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("request 2"), std::string::npos) << qilin_last_error();
    bad = r;
    std::vector<int> out_of_vocab = {1, 512};
    bad.prompt = out_of_vocab.data(), bad.prompt_len = 2;
    EXPECT_EQ(qilin_engine_add(e, &bad, &id2), QILIN_ERR_INVALID_ARGUMENT);
    bad = r, bad.max_new_tokens = 0;
    EXPECT_EQ(qilin_engine_add(e, &bad, &id2), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_engine_cancel(e, 42), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_engine_release(e, 1), QILIN_ERR_INVALID_ARGUMENT); /* still waiting */
    QILIN_ASSERT_OK(qilin_engine_run(e)); /* the refusals disturbed nothing */
    const int *t = nullptr;
    int n = 0;
    qilin_engine_finish why;
    QILIN_ASSERT_OK(qilin_engine_poll(e, 1, &t, &n, &why));
    EXPECT_EQ(n, 5);
    EXPECT_EQ(why, QILIN_ENGINE_LENGTH);
    qilin_engine_stats s;
    qilin_engine_get_stats(e, &s);
    EXPECT_EQ(s.requests_added, 1u);
    EXPECT_EQ(s.free_blocks, s.num_blocks);
    qilin_engine_free(e);
}

/* A second request whose prompt starts with the first one's (a chat turn):
 * its 4 full blocks of the shared 18 tokens are found in the prefix cache
 * and not computed again (prefill_tokens grows by the 5 unmatched tokens
 * only), and it gives the tokens it gives alone — also with prefix caching
 * off, where all 21 are computed. */
TEST_F(Engine, PrefixHitSkipsItsPrefillAndGivesTheTokensOfAMiss) {
    std::vector<Req> reqs(2);
    for (int i = 0; i < 18; i++) reqs[0].prompt.push_back(3 + 29 * i);
    reqs[1].prompt = reqs[0].prompt;
    for (int x : {77, 5, 300}) reqs[1].prompt.push_back(x);
    reqs[0].max_new = reqs[1].max_new = 5;
    reqs[1].arrival = 1000; /* after the first has finished */
    for (Req &r : reqs) r.alone = alone(r);
    for (bool caching : {true, false}) {
        SCOPED_TRACE(caching ? "prefix caching" : "no prefix caching");
        qilin_engine_options o;
        qilin_engine_options_default(&o);
        o.no_prefix_caching = !caching;
        qilin_engine *e = nullptr;
        QILIN_ASSERT_OK(qilin_engine_create(model_, &o, &e));
        qilin_engine_stats before, after;
        std::vector<std::vector<int>> got;
        for (const Req &q : reqs) {
            qilin_engine_get_stats(e, &before);
            qilin_engine_request r = {q.prompt.data(), (int)q.prompt.size(), q.params, q.max_new, nullptr, 0, false, 0};
            int64_t id = 0;
            QILIN_ASSERT_OK(qilin_engine_add(e, &r, &id));
            QILIN_ASSERT_OK(qilin_engine_run(e));
            qilin_engine_get_stats(e, &after);
            const int *t = nullptr;
            int n = 0;
            qilin_engine_finish why;
            QILIN_ASSERT_OK(qilin_engine_poll(e, id, &t, &n, &why));
            got.emplace_back(t, t + n);
            QILIN_ASSERT_OK(qilin_engine_release(e, id));
        }
        for (size_t i = 0; i < 2; i++) EXPECT_EQ(got[i], reqs[i].alone) << "request " << i;
        const uint64_t second_prefill = after.prefill_tokens - before.prefill_tokens;
        printf("[ prefix ] caching %d: second request computed %llu of 21 prompt tokens, hits %llu\n", caching,
               (unsigned long long)second_prefill, (unsigned long long)(after.prefix_hits - before.prefix_hits));
        EXPECT_EQ(second_prefill, caching ? 5u : 21u);
        EXPECT_EQ(after.prefix_hits - before.prefix_hits, caching ? 4u : 0u);
        EXPECT_EQ(after.free_blocks, after.num_blocks);
        qilin_engine_free(e);
    }
}

/* qilin_forward through block tables (stories260K, fp32, blocks of 4). */
TEST_F(Engine, PagedForwardMatchesTheContiguousSlot) {
    const int V = 512, n = 19;
    std::vector<int> prompt;
    for (int i = 0; i < n; i++) prompt.push_back(1 + (i * 131) % 511);
    int slot = 0, start = 0, len = n;
    qilin_batch contiguous = {1, &slot, &start, &len, prompt.data(), true, nullptr};
    std::vector<float> want((size_t)n * V), got((size_t)n * V, NAN);
    QILIN_ASSERT_OK(qilin_forward(model_, &contiguous, want.data()));
    /* the whole prompt through 5 blocks in shuffled physical order */
    const int shuffled[5] = {50, 13, 77, 3, 91};
    const int *tables[2] = {shuffled, nullptr};
    qilin_batch paged = {1, nullptr, &start, &len, prompt.data(), true, tables};
    QILIN_ASSERT_OK(qilin_forward(model_, &paged, got.data()));
    auto max_diff = [&](size_t row0, size_t rows, const float *g) {
        double worst = 0;
        for (size_t i = 0; i < rows * V; i++) worst = std::max(worst, (double)std::fabs(g[i] - want[row0 * V + i]));
        return worst;
    };
    double whole = max_diff(0, n, got.data());
    /* the tail only, sharing the first 3 blocks (12 positions) read-only */
    const int shared_tail[5] = {50, 13, 77, 20, 60};
    tables[0] = shared_tail;
    int tail_start = 12, tail_len = n - 12;
    qilin_batch tail = {1, nullptr, &tail_start, &tail_len, prompt.data() + 12, true, tables};
    std::vector<float> tail_logits((size_t)tail_len * V, NAN);
    QILIN_ASSERT_OK(qilin_forward(model_, &tail, tail_logits.data()));
    double part = max_diff(12, tail_len, tail_logits.data());
    printf("[ paged ] shuffled table vs slot: max |diff| %.3g; shared prefix + tail: %.3g\n", whole, part);
    EXPECT_LE(whole, 1e-4);
    EXPECT_LE(part, 1e-4);

    /* refused: a block written by one sequence and read by another; twice
     * written; outside the pool (96 blocks) */
    const int reader[4] = {50, 13, 77, 20}, writer[2] = {20, 21};
    int starts[2] = {12, 0}, lens[2] = {1, 5}, ids[6] = {1, 2, 3, 4, 5, 6};
    const int *pair[2] = {reader, writer};
    starts[0] = 15, lens[0] = 1; /* reads blocks 50, 13, 77 and writes 20; the other sequence writes 20 too */
    qilin_batch clash = {2, nullptr, starts, lens, ids, false, pair};
    EXPECT_EQ(qilin_forward(model_, &clash, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("writes block 20, which sequence 0 writes too"), std::string::npos)
        << qilin_last_error();
    starts[0] = 12, lens[0] = 1; /* reads 50, 13, 77; writes 20 */
    const int writer_of_13[2] = {13, 22};
    pair[1] = writer_of_13; /* writes 13 and 22, which sequence 0 reads (13) */
    EXPECT_EQ(qilin_forward(model_, &clash, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("reads block 13, which sequence 1 writes"), std::string::npos)
        << qilin_last_error();
    const int outside[1] = {96};
    tables[0] = outside;
    int one = 1;
    qilin_batch bad = {1, nullptr, &start, &one, ids, false, tables};
    EXPECT_EQ(qilin_forward(model_, &bad, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("block 96 (table entry 0) outside the KV pool of 96 blocks"),
              std::string::npos)
        << qilin_last_error();
    /* the refusals disturbed nothing: the tail again gives the same logits */
    tables[0] = shared_tail;
    std::vector<float> again((size_t)tail_len * V, NAN);
    QILIN_ASSERT_OK(qilin_forward(model_, &tail, again.data()));
    EXPECT_LE(max_diff(12, tail_len, again.data()), 1e-4);
}

} // namespace

namespace {

/* qilin_sample_last samples only rows the last step left: none after an
 * all_logits step, at most its sequences otherwise, and checks parameters
 * and history ranges on the host. */
TEST(SampleLast, RefusesRowsTheLastStepDidNotLeave) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_seqs = 2, o.max_ctx = 16, o.max_batch_tokens = 8;
    qilin_model *m = nullptr;
    QILIN_ASSERT_OK(qilin_model_load((golden::models_dir() + "/stories260K").c_str(), &o, &m));
    qilin_sampling_params greedy[2] = {{0, 0, 1, 0, 1, 0, 0, 0, 0}, {0, 0, 1, 0, 1, 0, 0, 0, 0}};
    int ids[2] = {-1, -1}, slot = 0, start = 0, n = 3, tokens[3] = {1, 403, 407};
    EXPECT_EQ(qilin_sample_last(m, 1, greedy, nullptr, nullptr, ids), QILIN_ERR_INVALID_ARGUMENT); /* no step yet */
    qilin_batch b = {1, &slot, &start, &n, tokens, true, nullptr};
    std::vector<float> logits(3 * 512);
    QILIN_ASSERT_OK(qilin_forward(m, &b, logits.data()));
    EXPECT_EQ(qilin_sample_last(m, 1, greedy, nullptr, nullptr, ids), QILIN_ERR_INVALID_ARGUMENT); /* all_logits */
    b.all_logits = false;
    QILIN_ASSERT_OK(qilin_forward(m, &b, logits.data()));
    EXPECT_EQ(qilin_sample_last(m, 2, greedy, nullptr, nullptr, ids), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("2 rows asked; the last step left 1"), std::string::npos)
        << qilin_last_error();
    int history[3] = {1, 403, 407}, bad_start[2] = {0, 17}; /* 17 ids: more than the context of 16 */
    EXPECT_EQ(qilin_sample_last(m, 1, greedy, history, bad_start, ids), QILIN_ERR_INVALID_ARGUMENT);
    qilin_sampling_params nan_temp = greedy[0];
    nan_temp.temperature = NAN;
    EXPECT_EQ(qilin_sample_last(m, 1, &nan_temp, nullptr, nullptr, ids), QILIN_ERR_INVALID_ARGUMENT);
    QILIN_ASSERT_OK(qilin_sample_last(m, 1, greedy, nullptr, nullptr, ids));
    int argmax = (int)(std::max_element(logits.begin(), logits.begin() + 512) - logits.begin());
    EXPECT_EQ(ids[0], argmax);
    qilin_model_free(m);
}

} // namespace

namespace {

/* MLA (latent + rope key; the naive prefill form walks runs of physically
 * consecutive blocks, the absorbed form reads the table in the kernel) and
 * a sliding window of 6 over blocks of 4: a prompt through a shuffled
 * table with runs of 2, 1 and 2 blocks, then a decode step, give the logits
 * of the contiguous slot; a second sequence sharing the first two blocks
 * and computing only the rest gives the tail's logits. fp32. */
struct PagedCase {
    const char *fixture;
    qilin_mla_mode mode;
};

class PagedForward : public testing::TestWithParam<PagedCase> {};

TEST_P(PagedForward, ShuffledTablesGiveTheLogitsOfTheSlot) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_seqs = 2, o.max_ctx = 32, o.max_batch_tokens = 32, o.kv_block_size = 4;
    o.mla_mode = GetParam().mode;
    o.kv_cache_tokens = 100; /* 25 blocks, more than the 2 slots' 16 */
    qilin_model *m = nullptr;
    QILIN_ASSERT_OK(qilin_model_load((golden::models_dir() + "/" + GetParam().fixture).c_str(), &o, &m));
    const int V = (int)qilin_model_get_desc(m)->vocab, n = 19;
    int pool = 0, bs = 0;
    qilin_model_kv_pool(m, &pool, &bs);
    EXPECT_EQ(pool, 25);
    EXPECT_EQ(bs, 4);
    std::vector<int> ids;
    for (int i = 0; i < n + 1; i++) ids.push_back(1 + (i * 37) % (V - 1));
    auto step = [&](const int *slot, const int *const *tables, int start, int len, const int *tok) {
        std::vector<float> out((size_t)len * V, NAN);
        qilin_batch b = {1, slot, &start, &len, tok, true, tables};
        EXPECT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
        return out;
    };
    auto max_diff = [&](const std::vector<float> &a, const float *b) {
        double worst = 0;
        for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, (double)std::fabs(a[i] - b[i]));
        return worst;
    };
    int slot = 1;
    std::vector<float> want = step(&slot, nullptr, 0, n, ids.data());
    std::vector<float> want_decode = step(&slot, nullptr, n, 1, ids.data() + n);
    const int shuffled[6] = {17, 18, 2, 23, 24, 9}; /* runs {17, 18}, {2}, {23, 24}, then the decode's {9} */
    const int *tables[1] = {shuffled};
    std::vector<float> got = step(nullptr, tables, 0, n, ids.data());
    std::vector<float> got_decode = step(nullptr, tables, n, 1, ids.data() + n);
    const int shared[5] = {17, 18, 5, 6, 11}; /* shares positions 0 .. 7 */
    tables[0] = shared;
    std::vector<float> tail = step(nullptr, tables, 8, n - 8, ids.data() + 8);
    double whole = max_diff(want, got.data()), dec = max_diff(want_decode, got_decode.data());
    double part = max_diff(tail, want.data() + (size_t)8 * V);
    printf("[ %s mode %d ] paged vs slot: prefill %.3g, decode %.3g, shared prefix + tail %.3g\n",
           GetParam().fixture, (int)GetParam().mode, whole, dec, part);
    EXPECT_LE(whole, 1e-4);
    EXPECT_LE(dec, 1e-4);
    EXPECT_LE(part, 1e-4);
    qilin_model_free(m);
}

/* The pool's options: resolved defaults, a pool smaller than the slots
 * (slots past it refused, those inside work), a block larger than the
 * context refused. */
TEST(PagedForwardOptions, PoolSizeAndBlockSize) {
    QILIN_REQUIRE_DEVICES(1);
    const std::string path = golden::models_dir() + "/stories260K";
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_seqs = 4, o.max_ctx = 16, o.max_batch_tokens = 16;
    qilin_model *m = nullptr;
    QILIN_ASSERT_OK(qilin_model_load(path.c_str(), &o, &m));
    EXPECT_EQ(qilin_model_get_options(m)->kv_block_size, 16) << "32 halved until it divides max_ctx 16";
    EXPECT_EQ(qilin_model_get_options(m)->kv_cache_tokens, 64) << "max_seqs x max_ctx";
    qilin_model_free(m);
    m = nullptr;
    o.kv_block_size = 4, o.kv_cache_tokens = 30; /* 8 blocks: slots 0 and 1 */
    QILIN_ASSERT_OK(qilin_model_load(path.c_str(), &o, &m));
    EXPECT_EQ(qilin_model_get_options(m)->kv_cache_tokens, 32) << "rounded up to whole blocks";
    int ids[3] = {1, 403, 407}, start = 0, n = 3, slot = 2;
    std::vector<float> logits(3 * 512);
    qilin_batch b = {1, &slot, &start, &n, ids, true, nullptr};
    EXPECT_EQ(qilin_forward(m, &b, logits.data()), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("its slot lies past kv_cache_tokens"), std::string::npos)
        << qilin_last_error();
    slot = 1;
    QILIN_ASSERT_OK(qilin_forward(m, &b, logits.data()));
    qilin_model_free(m);
    m = nullptr;
    o.kv_block_size = 32; /* more than the context */
    EXPECT_EQ(qilin_model_load(path.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("kv_block_size 32 exceeds the context of 16"), std::string::npos)
        << qilin_last_error();
}

/* gpu_memory_utilization sizes the pool from the device's memory: the
 * model then holds (weights + step buffers + KV) what the memory plan
 * allows in that fraction less the plan's 1 GiB reserve, to within 1 % (the
 * block tables are not in the plan); too small a fraction for one max_ctx
 * sequence, a fraction outside (0, 1] and a fraction beside
 * kv_cache_tokens are refused. 1.5 % of an 80 GiB GPU leaves ~0.2 GiB of
 * KV: cheap in the sim, harmless on a GPU. */
TEST(PagedForwardOptions, GpuMemoryUtilizationSizesThePool) {
    QILIN_REQUIRE_DEVICES(1);
    const std::string path = golden::models_dir() + "/stories260K";
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32, o.max_seqs = 2, o.max_ctx = 64, o.max_batch_tokens = 16;
    qilin_device_props props;
    QILIN_ASSERT_OK(qilin_device_get_props(0, &props));
    o.gpu_memory_utilization = (1.2 * (1u << 30)) / (double)props.total_mem_bytes;
    if (o.gpu_memory_utilization > 1) GTEST_SKIP() << "a GPU under 1.2 GiB";
    qilin_model *m = nullptr;
    QILIN_ASSERT_OK(qilin_model_load(path.c_str(), &o, &m));
    const qilin_model_options *got = qilin_model_get_options(m);
    const double budget = o.gpu_memory_utilization * (double)props.total_mem_bytes, reserve = 1u << 30;
    const double used = (double)qilin_model_gpu_bytes(m, 0);
    EXPECT_EQ(got->kv_cache_tokens % got->kv_block_size, 0);
    EXPECT_GT(got->kv_cache_tokens, 64 * 1000) << "~0.2 GiB of a 5-layer model's KV: far more than max_seqs x max_ctx";
    EXPECT_LE(used + reserve, budget * 1.01) << "the pool overshoots the budget";
    EXPECT_GE(used + reserve, budget * 0.99) << "the pool leaves memory unused";
    int ids[3] = {1, 403, 407}, start = 0, n = 3, slot = 1;
    std::vector<float> logits(3 * 512);
    qilin_batch b = {1, &slot, &start, &n, ids, true, nullptr};
    QILIN_ASSERT_OK(qilin_forward(m, &b, logits.data()));
    qilin_model_free(m);
    m = nullptr;

    o.gpu_memory_utilization = (0.5 * (1u << 30)) / (double)props.total_mem_bytes; /* under the reserve */
    EXPECT_EQ(qilin_model_load(path.c_str(), &o, &m), QILIN_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(qilin_last_error()).find("gpu_memory_utilization"), std::string::npos)
        << qilin_last_error();
    o.gpu_memory_utilization = 1.5;
    EXPECT_EQ(qilin_model_load(path.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("gpu_memory_utilization 1.5: a fraction in (0, 1]"),
              std::string::npos)
        << qilin_last_error();
    o.gpu_memory_utilization = 0.5, o.kv_cache_tokens = 4096;
    EXPECT_EQ(qilin_model_load(path.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("both size the KV pool"), std::string::npos)
        << qilin_last_error();
    EXPECT_EQ(m, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PagedForward,
                         testing::Values(PagedCase{"deepseek_v3", QILIN_MLA_AUTO},
                                         PagedCase{"deepseek_v3", QILIN_MLA_ABSORBED},
                                         PagedCase{"mistral_swa", QILIN_MLA_AUTO}),
                         [](const testing::TestParamInfo<PagedCase> &i) {
                             return std::string(i.param.fixture) +
                                    (i.param.mode == QILIN_MLA_ABSORBED ? "_absorbed" : "_auto");
                         });

} // namespace

namespace {

bool append_token(void *user, int, int token) {
    static_cast<std::vector<int> *>(user)->push_back(token);
    return true;
}

/* DeepSeek-V3's MLA through the engine: 6 greedy requests sharing a prefix,
 * arriving at different steps, through 9 blocks of 4 (preemption, prefix
 * hits over the latent cache, chunked prefill on the naive form and decode
 * on the absorbed one): each gives its tokens alone, and the pool is whole
 * afterwards. */
TEST(EngineMla, RandomArrivalsMatchEachRequestAlone) {
    QILIN_REQUIRE_DEVICES(1);
    qilin_model_options mo;
    qilin_model_options_default(&mo);
    mo.dtype = QILIN_F32, mo.max_seqs = 4, mo.max_ctx = 32, mo.max_batch_tokens = 16, mo.kv_block_size = 4;
    qilin_model *m = nullptr;
    QILIN_ASSERT_OK(qilin_model_load((golden::models_dir() + "/deepseek_v3").c_str(), &mo, &m));
    std::mt19937 rng(5);
    std::vector<int> prefix;
    for (int i = 0; i < 8; i++) prefix.push_back(1 + (int)(rng() % 255));
    const int n_req = 6;
    std::vector<std::vector<int>> prompts(n_req), alone(n_req), got(n_req);
    std::vector<int> max_new(n_req), arrival(n_req);
    qilin_sampling_params greedy{0, 0, 1, 0, 1, 0, 0, 0, 0};
    for (int i = 0; i < n_req; i++) {
        int len = 3 + (int)(rng() % 10);
        for (int j = 0; j < len; j++) prompts[i].push_back(j < 8 && i % 3 != 2 ? prefix[j] : 1 + (int)(rng() % 255));
        max_new[i] = 2 + (int)(rng() % 3), arrival[i] = (int)(rng() % 4);
        const int *p[1] = {prompts[i].data()};
        int l = len;
        QILIN_ASSERT_OK(qilin_generate_stream(m, 1, p, &l, &greedy, max_new[i], append_token, &alone[i]));
    }
    qilin_engine_options o;
    qilin_engine_options_default(&o);
    o.num_blocks = 9, o.prefill_chunk = 5;
    qilin_engine *e = nullptr;
    QILIN_ASSERT_OK(qilin_engine_create(m, &o, &e));
    std::vector<int64_t> ids(n_req, 0);
    for (int step = 0; step < 500; step++) {
        for (int i = 0; i < n_req; i++)
            if (arrival[i] == step) {
                qilin_engine_request r = {prompts[i].data(), (int)prompts[i].size(), greedy, max_new[i], nullptr, 0, false, 0};
                QILIN_ASSERT_OK(qilin_engine_add(e, &r, &ids[i]));
            }
        if (step > 4 && qilin_engine_idle(e)) break;
        QILIN_ASSERT_OK(qilin_engine_step(e));
    }
    for (int i = 0; i < n_req; i++) {
        const int *t = nullptr;
        int n = 0;
        qilin_engine_finish why;
        QILIN_ASSERT_OK(qilin_engine_poll(e, ids[i], &t, &n, &why));
        EXPECT_EQ(std::vector<int>(t, t + n), alone[i]) << "request " << i;
    }
    qilin_engine_stats s;
    qilin_engine_get_stats(e, &s);
    printf("[ engine mla ] %llu steps, %llu preemptions, prefix hits %llu of %llu, prefill %llu tokens\n",
           (unsigned long long)s.steps, (unsigned long long)s.preemptions, (unsigned long long)s.prefix_hits,
           (unsigned long long)s.prefix_lookups, (unsigned long long)s.prefill_tokens);
    EXPECT_GT(s.preemptions, 0u) << "the pool was meant to force preemption";
    EXPECT_GT(s.prefix_hits, 0u);
    EXPECT_EQ(s.free_blocks, s.num_blocks) << "blocks leaked";
    qilin_engine_free(e);
    qilin_model_free(m);
}

} // namespace
