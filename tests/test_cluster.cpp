/* test_cluster.cpp — the multi-node TCP channel (host/cluster.h), with
 * every node a thread of this process on 127.0.0.1. */
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host/cluster.h"
#include "tests/loopback.h"

namespace {


struct Node {
    qilin_cluster *c = nullptr;
    qilin_status st = QILIN_OK;
    std::string msg;
};

/* Opens node `rank` of `nodes` at addr with `config` (on the calling thread). */
void open_node(Node &n, const std::string &addr, int nodes, int rank, const char *config, double timeout_s = 5) {
    qilin_cluster_options o = {nodes, rank, addr.c_str(), config, timeout_s};
    n.st = qilin_cluster_open(&o, &n.c);
    if (n.st != QILIN_OK) n.msg = qilin_last_error();
}

bool has(const std::string &s, const char *needle) { return s.find(needle) != std::string::npos; }

/* A watcher callback that records its message. */
struct Seen {
    std::mutex mu;
    std::string msg;
    std::atomic<int> calls{0};
    static void fn(void *user, const char *m) {
        Seen *s = static_cast<Seen *>(user);
        std::lock_guard<std::mutex> lock(s->mu);
        s->msg = m;
        s->calls++;
    }
    bool wait(double seconds) {
        for (int i = 0; i < seconds * 100 && calls == 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return calls > 0;
    }
};

/* Leader and followers started concurrently; returns them opened. */
std::vector<Node> start(int nodes, const std::string &addr, const char *config = "cfg") {
    std::vector<Node> n(nodes);
    std::vector<std::thread> t;
    for (int r = nodes - 1; r >= 1; r--) t.emplace_back([&, r] { open_node(n[r], addr, nodes, r, config); });
    std::this_thread::sleep_for(std::chrono::milliseconds(150)); /* followers first: they retry */
    open_node(n[0], addr, nodes, 0, config);
    for (auto &x : t) x.join();
    return n;
}

void close_all(std::vector<Node> &n) {
    for (auto &x : n) qilin_cluster_close(x.c);
}

TEST(Cluster, ThreeNodesReceiveEveryMessageInOrder) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n = start(3, addr);
    for (int r = 0; r < 3; r++) ASSERT_EQ(n[r].st, QILIN_OK) << "node " << r << ": " << n[r].msg;
    EXPECT_EQ(qilin_cluster_nodes(n[2].c), 3);
    EXPECT_EQ(qilin_cluster_node_rank(n[2].c), 2);
    std::vector<unsigned char> big(10 << 20);
    for (size_t i = 0; i < big.size(); i++) big[i] = (unsigned char)(i * 131 + 7);
    std::vector<std::thread> readers;
    std::vector<int> ok(3, 0);
    for (int r = 1; r < 3; r++)
        readers.emplace_back([&, r] {
            uint32_t type = 0;
            void *data = nullptr;
            size_t bytes = 0;
            bool good = qilin_cluster_recv(n[r].c, &type, &data, &bytes) == QILIN_OK && type == 20 && bytes == 5 &&
                        std::memcmp(data, "hello", 5) == 0;
            std::free(data);
            good = good && qilin_cluster_recv(n[r].c, &type, &data, &bytes) == QILIN_OK && type == 21 &&
                   bytes == 0 && data == nullptr;
            good = good && qilin_cluster_recv(n[r].c, &type, &data, &bytes) == QILIN_OK && type == 22 &&
                   bytes == big.size() && std::memcmp(data, big.data(), big.size()) == 0;
            std::free(data);
            ok[r] = good;
        });
    EXPECT_EQ(qilin_cluster_send_all(n[0].c, 20, "hello", 5), QILIN_OK);
    EXPECT_EQ(qilin_cluster_send_all(n[0].c, 21, nullptr, 0), QILIN_OK);
    EXPECT_EQ(qilin_cluster_send_all(n[0].c, 22, big.data(), big.size()), QILIN_OK) << qilin_last_error();
    for (auto &t : readers) t.join();
    EXPECT_TRUE(ok[1]);
    EXPECT_TRUE(ok[2]);
    close_all(n);
}

TEST(Cluster, DifferentConfigurationsFailOnBothSides) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n(2);
    std::thread f([&] { open_node(n[1], addr, 2, 1, "tp=2 dtype=bf16"); });
    open_node(n[0], addr, 2, 0, "tp=2 dtype=f32");
    f.join();
    EXPECT_EQ(n[0].st, QILIN_ERR_COMM);
    EXPECT_EQ(n[1].st, QILIN_ERR_COMM);
    for (auto &x : n) {
        EXPECT_TRUE(has(x.msg, "node 1 has dtype=bf16, node 0 has dtype=f32")) << x.msg;
        EXPECT_EQ(x.c, nullptr);
    }
}

TEST(Cluster, SameNodeRankTwiceIsRefused) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n(3);
    std::thread a([&] { open_node(n[1], addr, 3, 1, "cfg", 30); });
    std::thread b([&] { open_node(n[2], addr, 3, 1, "cfg", 30); });
    open_node(n[0], addr, 3, 0, "cfg", 30);
    a.join(), b.join();
    EXPECT_EQ(n[0].st, QILIN_ERR_COMM);
    EXPECT_TRUE(has(n[0].msg, "node 1 joined twice")) << n[0].msg;
    close_all(n);
}

TEST(Cluster, OtherNodeCountIsRefused) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n(2);
    std::thread f([&] { open_node(n[1], addr, 3, 1, "cfg", 30); });
    open_node(n[0], addr, 2, 0, "cfg", 30);
    f.join();
    EXPECT_TRUE(has(n[0].msg, "node 1 was started with 3 nodes, node 0 with 2")) << n[0].msg;
    EXPECT_TRUE(has(n[1].msg, "refused node 1")) << n[1].msg;
    close_all(n);
}

/* Node 1 joins, node 2 never comes. Whether node 1 makes it inside node 0's
 * timeout is up to the scheduler, so that is not what passes or fails: a
 * try where node 1 was late (node 0 names nodes 1 and 2) is recognised by
 * its message and repeated with a longer timeout (0.5 s, then 2, 8, 32). */
TEST(Cluster, LeaderTimeoutNamesTheMissingNodes) {
    for (double timeout = 0.5;; timeout *= 4) {
        ReservedPort port;
        std::string addr = port.address();
        std::vector<Node> n(3);
        std::thread f([&] { open_node(n[1], addr, 3, 1, "cfg", 2 * timeout); });
        open_node(n[0], addr, 3, 0, "cfg", timeout);
        f.join();
        close_all(n);
        EXPECT_EQ(n[0].st, QILIN_ERR_COMM);
        EXPECT_NE(n[1].st, QILIN_OK); /* node 0 went away before welcoming it */
        if (has(n[0].msg, "node(s) 1, 2 never joined") && timeout < 32) continue; /* node 1 was late */
        EXPECT_TRUE(has(n[0].msg, "node(s) 2 never joined")) << n[0].msg;
        break;
    }
}

TEST(Cluster, FollowerGivesUpWhenNobodyListens) {
    Node n;
    ReservedPort port; /* bound, never listening: nobody can listen there */
    open_node(n, port.address(), 2, 1, "cfg", 0.3);
    EXPECT_EQ(n.st, QILIN_ERR_COMM);
    EXPECT_TRUE(has(n.msg, "could not connect to node 0 at 127.0.0.1:")) << n.msg;
}

TEST(Cluster, ForeignPeerIsRefused) {
    ReservedPort reserved;
    int port = reserved.port();
    std::string addr = reserved.address();
    Node leader;
    std::thread l([&] { open_node(leader, addr, 2, 0, "cfg", 3); });
    int fd = -1;
    for (int i = 0; i < 100 && fd < 0; i++) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
            close(fd), fd = -1;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    ASSERT_GE(fd, 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_GT(write(fd, junk, sizeof junk), 0);
    l.join();
    close(fd);
    EXPECT_EQ(leader.st, QILIN_ERR_COMM);
    EXPECT_TRUE(has(leader.msg, "does not speak qilin's cluster protocol")) << leader.msg;
}

TEST(Cluster, FollowerReportReachesTheLeadersWatcher) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n = start(2, addr);
    ASSERT_EQ(n[0].st, QILIN_OK) << n[0].msg;
    ASSERT_EQ(n[1].st, QILIN_OK) << n[1].msg;
    Seen seen;
    ASSERT_EQ(qilin_cluster_watch(n[0].c, Seen::fn, &seen), QILIN_OK);
    EXPECT_EQ(qilin_cluster_watch(n[0].c, Seen::fn, &seen), QILIN_ERR_INVALID_ARGUMENT); /* one watcher */
    qilin_cluster_report(n[1].c, "out of memory on GPU 3");
    ASSERT_TRUE(seen.wait(30)); /* returns at the call: only a hang waits 30 s */
    EXPECT_EQ(seen.msg, "node 1: out of memory on GPU 3");
    close_all(n);
    EXPECT_EQ(seen.calls, 1);
}

TEST(Cluster, VanishedFollowerReachesTheLeadersWatcher) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n = start(3, addr);
    for (auto &x : n) ASSERT_EQ(x.st, QILIN_OK) << x.msg;
    Seen seen;
    ASSERT_EQ(qilin_cluster_watch(n[0].c, Seen::fn, &seen), QILIN_OK);
    qilin_cluster_close(n[2].c), n[2].c = nullptr;
    ASSERT_TRUE(seen.wait(30));
    EXPECT_EQ(seen.msg, "node 2 closed its connection");
    close_all(n);
}

TEST(Cluster, LeaderGoneEndsTheFollower) {
    ReservedPort port;
    std::string addr = port.address();
    std::vector<Node> n = start(2, addr);
    ASSERT_EQ(n[1].st, QILIN_OK) << n[1].msg;
    Seen seen;
    ASSERT_EQ(qilin_cluster_watch(n[1].c, Seen::fn, &seen), QILIN_OK);
    qilin_cluster_close(n[0].c), n[0].c = nullptr;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(seen.calls, 0) << "unarmed: the follower's own recv sees the close";
    uint32_t type = 0;
    void *data = nullptr;
    size_t bytes = 0;
    EXPECT_EQ(qilin_cluster_recv(n[1].c, &type, &data, &bytes), QILIN_ERR_COMM);
    EXPECT_TRUE(has(qilin_last_error(), "node 0 closed the connection")) << qilin_last_error();
    qilin_cluster_arm(n[1].c, 1); /* a step in progress: now the watcher reports it */
    ASSERT_TRUE(seen.wait(30));
    EXPECT_EQ(seen.msg, "node 0 closed its connection");
    close_all(n);
}

TEST(Cluster, BadOptionsAreRefused) {
    qilin_cluster *c = nullptr;
    qilin_cluster_options o = {1, 0, "127.0.0.1:1", "cfg", 1};
    EXPECT_EQ(qilin_cluster_open(&o, &c), QILIN_ERR_INVALID_ARGUMENT);
    o = {2, 2, "127.0.0.1:1", "cfg", 1};
    EXPECT_EQ(qilin_cluster_open(&o, &c), QILIN_ERR_INVALID_ARGUMENT);
    /* ports outside 1..65535 too: getaddrinfo would take 99999 as another port (issue 12) */
    for (const char *bad : {"localhost", ":80", "host:", "host:http", "[::1:80", "127.0.0.1:0", "127.0.0.1:99999",
                            "127.0.0.1:65536", "[::1]:123456789012345"}) {
        o = {2, 1, bad, "cfg", 1};
        EXPECT_EQ(qilin_cluster_open(&o, &c), QILIN_ERR_INVALID_ARGUMENT) << bad;
        EXPECT_TRUE(has(qilin_last_error(), "is not HOST:PORT")) << qilin_last_error();
    }
    o = {2, 1, "127.0.0.1:1", nullptr, 1};
    EXPECT_EQ(qilin_cluster_open(&o, &c), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(c, nullptr);
}

} // namespace
