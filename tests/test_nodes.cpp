/* test_nodes.cpp — one model over several nodes (forward_nodes.c).
 *
 * Each "node" is a thread here with its own qilin_model_load (nodes = 2,
 * its own node_rank and devices), talking to the others only through the
 * cluster's TCP channel and the communicator's transport between processes
 * — the path separate processes take (tests/cli_nodes.sh runs the same with
 * two `qilin` processes). For every fixture the tensor-parallel split
 * allows at 2 GPUs (one per node), and at 4 GPUs (two per node) for some:
 *   - fp32 logits within 1e-4 of transformers' and the greedy continuation
 *     identical (node 0 drives qilin_forward / qilin_generate, node 1
 *     follows);
 *   - node 1 returns from qilin_model_follow when node 0 frees its model.
 * And the failures: nodes started with different settings both fail naming
 * the difference; a node that leaves makes node 0's next step fail with a
 * message instead of a hang, and later steps are refused. */
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "host/forward.h"
#include "host/plan.h"
#include "tests/golden.h"
#include "tests/loopback.h"
#include "tests/test_util.h"

namespace {

using namespace golden;


struct NodeCase {
    std::string fixture;
    int tp;
    bool ep, a2a; /* a2a: expert parallelism by all-to-all dispatch */
};

std::string mode(const NodeCase &c) { return c.a2a ? "_ep_a2a" : c.ep ? "_ep" : ""; }

void PrintTo(const NodeCase &c, std::ostream *os) { *os << c.fixture << " tp" << c.tp << mode(c); }


/* Every fixture at tp 2 over 2 nodes; MoE fixtures also with EP; a dense,
 * an MLA and a MoE fixture at tp 4 (2 GPUs per node); all-to-all dispatch
 * across the nodes for two MoE fixtures. */
std::vector<NodeCase> list_cases() {
    std::vector<NodeCase> cases;
    for (const std::string &f : list_fixtures()) {
        if (splits(f, 2, false)) cases.push_back({f, 2, false, false});
        if (splits(f, 2, true)) cases.push_back({f, 2, true, false});
    }
    for (const char *f : {"llama", "deepseek_v3", "mixtral"})
        if (splits(f, 4, false)) cases.push_back({f, 4, std::string(f) == "mixtral", false});
    if (splits("deepseek_v3", 2, true)) cases.push_back({"deepseek_v3", 2, true, true});
    if (splits("mixtral", 4, true)) cases.push_back({"mixtral", 4, true, true});
    return cases;
}

qilin_model_options node_options(int tp, bool ep, int node_rank, const char *coordinator, bool a2a = false) {
    qilin_model_options o;
    qilin_model_options_default(&o);
    o.dtype = QILIN_F32;
    o.max_seqs = 2;
    o.max_ctx = 128;
    o.max_batch_tokens = 160;
    o.tp = tp;
    o.ep = ep;
    o.ep_dispatch = a2a ? QILIN_EP_ALL_TO_ALL : QILIN_EP_REPLICATED;
    o.nodes = 2;
    o.node_rank = node_rank;
    o.coordinator = coordinator;
    o.device = node_rank * (tp / 2); /* distinct emulated devices per node, as on two machines */
    return o;
}

/* Node 1 on its own thread: load, follow until node 0 ends, free. */
struct Follower {
    std::thread thread;
    qilin_status load = QILIN_OK, follow = QILIN_OK;
    std::string message;

    void start(const std::string &dir, qilin_model_options o) {
        thread = std::thread([this, dir, o] {
            qilin_model *m = nullptr;
            load = qilin_model_load(dir.c_str(), &o, &m);
            if (load != QILIN_OK) {
                message = qilin_last_error();
                return;
            }
            follow = qilin_model_follow(m);
            if (follow != QILIN_OK) message = qilin_last_error();
            qilin_model_free(m);
        });
    }
    void join() {
        if (thread.joinable()) thread.join();
    }
};

class Nodes : public testing::TestWithParam<NodeCase> {};

TEST_P(Nodes, Fp32LogitsAndGreedyMatch) {
    const NodeCase &c = GetParam();
    QILIN_REQUIRE_DEVICES(c.tp);
    std::string dir = models_dir() + "/" + c.fixture, why;
    Golden g;
    ASSERT_TRUE(load_golden(dir, &g, &why)) << why;
    ReservedPort port; /* held until node 0 listens: see loopback.h */
    std::string coordinator = port.address();
    Follower node1;
    node1.start(dir, node_options(c.tp, c.ep, 1, coordinator.c_str(), c.a2a));
    qilin_model_options o = node_options(c.tp, c.ep, 0, coordinator.c_str(), c.a2a);
    qilin_model *m = nullptr;
    qilin_status st = qilin_model_load(dir.c_str(), &o, &m);
    if (st != QILIN_OK) node1.join();
    ASSERT_EQ(st, QILIN_OK) << qilin_last_error() << " / node 1: " << node1.message;
    for (size_t p = 0; p < g.prompts.size(); p++) {
        const std::vector<int> &ids = g.prompts[p];
        std::vector<float> out(ids.size() * (size_t)g.vocab);
        int slot = 0, start = 0, n = (int)ids.size();
        qilin_batch b = {1, &slot, &start, &n, ids.data(), true, nullptr};
        ASSERT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
        double err = rel_error(out.data(), g.logits[p].data(), out.size());
        printf("[ %s tp%d%s, 2 nodes ] fp32 prompt %zu: max|diff|/max|ref| = %.3g\n", c.fixture.c_str(), c.tp,
               mode(c).c_str(), p, err);
        EXPECT_LE(err, kFp32Tolerance) << "prompt " << p;
    }
    const std::vector<int> &prompt = g.prompts[g.greedy_prompt];
    std::vector<int> greedy(g.greedy.size());
    const int *prompts[1] = {prompt.data()};
    int len = (int)prompt.size();
    qilin_sampling_params params = {0, 0, 1, 0, 1, 0, 0, 0, 0};
    EXPECT_EQ(qilin_generate(m, 1, prompts, &len, &params, (int)greedy.size(), greedy.data()), QILIN_OK)
        << qilin_last_error();
    EXPECT_EQ(greedy, g.greedy);
    qilin_model_free(m); /* tells node 1 to stop */
    node1.join();
    EXPECT_EQ(node1.load, QILIN_OK) << node1.message;
    EXPECT_EQ(node1.follow, QILIN_OK) << node1.message;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Nodes, testing::ValuesIn(list_cases()),
                         [](const testing::TestParamInfo<NodeCase> &i) {
                             return i.param.fixture + "_tp" + std::to_string(i.param.tp) + mode(i.param);
                         });

/* Block tables travel with the step: node 0 runs a prompt in two chunks
 * through a table of its pool's blocks in reverse order, with a pool (8-token
 * blocks, 40 of them) that node 1 was not started with — node 1 adopts node
 * 0's — and both chunks' logits equal the golden's rows. */
TEST(NodesPaged, ShuffledTablesTravelToTheFollower) {
    QILIN_REQUIRE_DEVICES(2);
    std::string dir = models_dir() + "/llama", why;
    Golden g;
    ASSERT_TRUE(load_golden(dir, &g, &why)) << why;
    ReservedPort port;
    std::string coordinator = port.address();
    Follower node1;
    node1.start(dir, node_options(2, false, 1, coordinator.c_str()));
    qilin_model_options o = node_options(2, false, 0, coordinator.c_str());
    o.kv_block_size = 8, o.kv_cache_tokens = 320;
    qilin_model *m = nullptr;
    qilin_status st = qilin_model_load(dir.c_str(), &o, &m);
    if (st != QILIN_OK) node1.join();
    ASSERT_EQ(st, QILIN_OK) << qilin_last_error() << " / node 1: " << node1.message;
    const std::vector<int> &ids = g.prompts[0];
    const int len = (int)ids.size(), half = len / 2;
    ASSERT_GE(half, 1);
    std::vector<int> table;
    for (int j = 0; j < (len + 7) / 8; j++) table.push_back(39 - j);
    const int *tables[1] = {table.data()};
    for (int chunk = 0; chunk < 2; chunk++) {
        int start = chunk ? half : 0, n = chunk ? len - half : half, slot = 0;
        std::vector<float> out((size_t)n * g.vocab);
        qilin_batch b = {1, &slot, &start, &n, ids.data() + start, true, tables};
        ASSERT_EQ(qilin_forward(m, &b, out.data()), QILIN_OK) << qilin_last_error();
        double err = rel_error(out.data(), g.logits[0].data() + (size_t)start * g.vocab, out.size());
        EXPECT_LE(err, kFp32Tolerance) << "chunk " << chunk;
    }
    qilin_model_free(m);
    node1.join();
    EXPECT_EQ(node1.load, QILIN_OK) << node1.message;
    EXPECT_EQ(node1.follow, QILIN_OK) << node1.message;
}

/* Node 1 started with bf16, node 0 with f32: both refuse, showing both settings. */
TEST(NodesErrors, DifferentSettingsAreRefused) {
    QILIN_REQUIRE_DEVICES(2);
    std::string dir = models_dir() + "/llama";
    ReservedPort port; /* held until node 0 listens: see loopback.h */
    std::string coordinator = port.address();
    Follower node1;
    qilin_model_options o1 = node_options(2, false, 1, coordinator.c_str());
    o1.dtype = QILIN_BF16;
    node1.start(dir, o1);
    qilin_model_options o = node_options(2, false, 0, coordinator.c_str());
    qilin_model *m = nullptr;
    EXPECT_NE(qilin_model_load(dir.c_str(), &o, &m), QILIN_OK);
    std::string msg = qilin_last_error();
    node1.join();
    printf("[ nodes ] node 0: %s\n[ nodes ] node 1: %s\n", msg.c_str(), node1.message.c_str());
    EXPECT_EQ(m, nullptr);
    EXPECT_NE(msg.find("dtype=f32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dtype=bf16"), std::string::npos) << msg;
    EXPECT_NE(node1.load, QILIN_OK);
    EXPECT_NE(node1.message.find("dtype="), std::string::npos) << node1.message;
}

/* Node 1 loads and then leaves without following: node 0's step fails with
 * an error (no hang) and the model refuses further steps. */
TEST(NodesErrors, NodeThatLeavesFailsTheStep) {
    QILIN_REQUIRE_DEVICES(2);
    std::string dir = models_dir() + "/llama";
    ReservedPort port; /* held until node 0 listens: see loopback.h */
    std::string coordinator = port.address();
    qilin_model_options o1 = node_options(2, false, 1, coordinator.c_str());
    std::thread node1([&] {
        qilin_model *m1 = nullptr;
        if (qilin_model_load(dir.c_str(), &o1, &m1) == QILIN_OK) qilin_model_free(m1); /* leaves */
    });
    qilin_model_options o = node_options(2, false, 0, coordinator.c_str());
    qilin_model *m = nullptr;
    qilin_status st = qilin_model_load(dir.c_str(), &o, &m);
    node1.join();
    ASSERT_EQ(st, QILIN_OK) << qilin_last_error();
    int slot = 0, start = 0, n = 3, ids[3] = {1, 5, 7};
    std::vector<float> out(3 * 256);
    qilin_batch b = {1, &slot, &start, &n, ids, true, nullptr};
    EXPECT_NE(qilin_forward(m, &b, out.data()), QILIN_OK);
    std::string msg = qilin_last_error();
    printf("[ nodes ] node 0's step after node 1 left: %s\n", msg.c_str());
    EXPECT_NE(msg.find("node 0"), std::string::npos) << msg;
    EXPECT_NE(qilin_forward(m, &b, out.data()), QILIN_OK);
    msg = qilin_last_error();
    EXPECT_NE(msg.find("an earlier step failed"), std::string::npos) << msg;
    qilin_model_free(m);
}

TEST(NodesErrors, OptionsAreChecked) {
    QILIN_REQUIRE_DEVICES(1);
    std::string dir = models_dir() + "/llama";
    qilin_model *m = nullptr;
    qilin_model_options o = node_options(2, false, 0, "");
    EXPECT_EQ(qilin_model_load(dir.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("needs a coordinator"), std::string::npos) << qilin_last_error();
    o = node_options(3, false, 0, "127.0.0.1:1");
    EXPECT_EQ(qilin_model_load(dir.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("tp 3 must split evenly"), std::string::npos)
        << qilin_last_error();
    for (double bad : {-1.0, 1e8}) { /* the deadline of waits on collectives (issue 19) */
        o = node_options(2, false, 0, "127.0.0.1:1");
        o.comm_timeout_s = bad;
        EXPECT_EQ(qilin_model_load(dir.c_str(), &o, &m), QILIN_ERR_INVALID_ARGUMENT) << bad;
        EXPECT_NE(std::string(qilin_last_error()).find("comm_timeout_s"), std::string::npos) << qilin_last_error();
    }
    qilin_model_options one;
    qilin_model_options_default(&one);
    one.dtype = QILIN_F32, one.max_ctx = 16;
    ASSERT_EQ(qilin_model_load(dir.c_str(), &one, &m), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(qilin_model_follow(m), QILIN_ERR_INVALID_ARGUMENT);
    qilin_model_free(m);
}

} // namespace
