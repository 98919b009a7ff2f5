/* test_comm_fault.cpp — faults in the comm layer end in errors, not hangs or
 * double aborts (comm.h: ownership, qilin_comm_request_abort / abort / wait,
 * deadlines; issue 19).
 *
 * Each scenario runs a "step" per rank the way host/forward.c does: a few
 * all-reduces, then qilin_comm_wait; a rank whose step fails asks every
 * communicator of its process to abort (qilin_comm_request_abort), and each
 * owner aborts its own. Scenarios: every rank failing at the same point, one
 * rank failing, a peer vanishing mid-collective (qilin_comm_sim_vanish), an
 * asynchronous error injected into one communicator. Each must leave every
 * rank with QILIN_ERR_COMM naming the failing rank, within the 1 s deadline
 * (plus slack for a loaded machine), on 2, 4 and 8 ranks, in one process and
 * split over two (the sim's loopback processes). The strictness of NCCL is
 * checked too: abort from a non-owning thread, a second abort, and an
 * operation issued while another thread is inside one are errors. */
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cuda/comm.h"
#include "tests/test_util.h"

#ifdef QILIN_SIM
namespace {

constexpr double kDeadline = 1.0;   /* seconds: every wait's deadline in these tests */
constexpr double kWithin = 6.0;     /* a rank's error must come within this (deadline + slack) */
constexpr int kCollectives = 4;     /* all-reduces per step */
constexpr int kFailAt = 2;          /* the collective at which the scenario's fault happens */

enum class Fault { AllFail, OneFails, Vanish, AsyncError };

struct DeviceBuffer {
    void *ptr = nullptr;
    ~DeviceBuffer() { qilin_free(ptr); }
};

/* The communicators of n ranks, in one process or split over two (ranks
 * [0, n/2) and [n/2, n), as two qilin_comm_init_ranks from one id). */
std::vector<qilin_comm *> make_comms(int n, bool two_processes) {
    std::vector<int> devices(n);
    for (int r = 0; r < n; r++) devices[r] = r;
    std::vector<qilin_comm *> comms(n, nullptr);
    if (!two_processes) {
        EXPECT_EQ(qilin_comm_init_all(n, devices.data(), comms.data()), QILIN_OK) << qilin_last_error();
    } else {
        qilin_comm_id id;
        EXPECT_EQ(qilin_comm_get_unique_id(&id), QILIN_OK) << qilin_last_error();
        int half = n / 2;
        qilin_status st1 = QILIN_OK;
        std::thread other([&] { st1 = qilin_comm_init_ranks(&id, n, half, n - half, &devices[half], &comms[half]); });
        EXPECT_EQ(qilin_comm_init_ranks(&id, n, 0, half, devices.data(), comms.data()), QILIN_OK)
            << qilin_last_error();
        other.join();
        EXPECT_EQ(st1, QILIN_OK);
    }
    for (qilin_comm *c : comms) EXPECT_EQ(qilin_comm_set_timeout(c, kDeadline), QILIN_OK) << qilin_last_error();
    return comms;
}

struct Outcome {
    qilin_status st = QILIN_OK;
    std::string msg;
    double seconds = 0;
};

/* One rank's step: kCollectives all-reduces, then a wait. The fault of the
 * scenario hits `failing` (every rank for AllFail) at collective kFailAt. */
qilin_status step(qilin_comm *comm, Fault fault, int rank, int failing, void *buf) {
    bool mine = fault == Fault::AllFail || rank == failing;
    for (int i = 0; i < kCollectives; i++) {
        if (mine && i == kFailAt) {
            if (fault == Fault::AllFail || fault == Fault::OneFails)
                return qilin_error(QILIN_ERR_INTERNAL, "rank %d: a kernel failed (simulated)", rank);
            if (fault == Fault::Vanish) QILIN_TRY(qilin_comm_sim_vanish(comm));
            if (fault == Fault::AsyncError) QILIN_TRY(qilin_comm_sim_inject_error(comm, "simulated link failure"));
        }
        QILIN_TRY(qilin_comm_all_reduce_sum(comm, buf, buf, 16, QILIN_F32, nullptr));
    }
    return qilin_comm_wait(comm, nullptr);
}

/* Runs the scenario on one thread per rank; a failing rank (not a vanished
 * one) asks its process's communicators to abort, as forward.c does. */
std::vector<Outcome> run(int n, bool two_processes, Fault fault, int failing) {
    std::vector<qilin_comm *> comms = make_comms(n, two_processes);
    std::vector<Outcome> out(n);
    if (::testing::Test::HasFailure()) return out;
    std::vector<std::thread> threads;
    for (int r = 0; r < n; r++)
        threads.emplace_back([&, r] {
            auto t0 = std::chrono::steady_clock::now();
            EXPECT_EQ(qilin_device_set(r), QILIN_OK);
            DeviceBuffer buf;
            EXPECT_EQ(qilin_malloc(&buf.ptr, 64, "fault test"), QILIN_OK);
            qilin_status st = step(comms[r], fault, r, failing, buf.ptr);
            out[r].st = st;
            out[r].msg = qilin_last_error();
            bool vanished = fault == Fault::Vanish && r == failing;
            if (st != QILIN_OK && !vanished) {
                std::string why = "rank " + std::to_string(r) + " failed: " + out[r].msg;
                int lo = two_processes && r >= n / 2 ? n / 2 : 0, hi = two_processes && r < n / 2 ? n / 2 : n;
                for (int q = lo; q < hi; q++) qilin_comm_request_abort(comms[q], why.c_str());
            }
            out[r].seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        });
    for (std::thread &t : threads) t.join();
    for (qilin_comm *c : comms) qilin_comm_destroy(c);
    return out;
}

class CommFault : public ::testing::TestWithParam<std::tuple<int, bool>> {
  protected:
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(std::get<0>(GetParam()));
        ASSERT_EQ(qilin_comm_set_init_timeout(kDeadline), QILIN_OK);
    }
    void TearDown() override { qilin_comm_set_init_timeout(QILIN_COMM_TIMEOUT_DEFAULT_S); }
    int n() const { return std::get<0>(GetParam()); }
    bool procs() const { return std::get<1>(GetParam()); }
};

/* Every rank: QILIN_ERR_COMM (or the local failure itself on a failing
 * rank), a message naming `named`, within kWithin seconds. */
void expect_all_failed(const std::vector<Outcome> &out, const std::string &named) {
    for (size_t r = 0; r < out.size(); r++) {
        EXPECT_NE(out[r].st, QILIN_OK) << "rank " << r;
        EXPECT_NE(out[r].msg.find(named), std::string::npos) << "rank " << r << ": " << out[r].msg;
        EXPECT_LT(out[r].seconds, kWithin) << "rank " << r << ": " << out[r].msg;
    }
}

TEST_P(CommFault, EveryRankFailingAtTheSamePointIsAnError) {
    std::vector<Outcome> out = run(n(), procs(), Fault::AllFail, -1);
    for (size_t r = 0; r < out.size(); r++) {
        EXPECT_EQ(out[r].st, QILIN_ERR_INTERNAL) << out[r].msg; /* each rank's own failure, no hang */
        EXPECT_NE(out[r].msg.find("rank " + std::to_string(r) + ": a kernel failed"), std::string::npos)
            << out[r].msg;
        EXPECT_LT(out[r].seconds, kWithin);
    }
}

TEST_P(CommFault, OneRankFailingFailsEveryRankNamingIt) {
    int failing = n() - 1;
    std::vector<Outcome> out = run(n(), procs(), Fault::OneFails, failing);
    expect_all_failed(out, "rank " + std::to_string(failing));
    for (int r = 0; r < n(); r++)
        if (r != failing) {
            EXPECT_EQ(out[r].st, QILIN_ERR_COMM) << out[r].msg;
        }
}

TEST_P(CommFault, PeerVanishingMidCollectiveFailsWithinTheDeadline) {
    int failing = n() / 2; /* rank 1 of 2; the second process's first rank when split */
    std::vector<Outcome> out = run(n(), procs(), Fault::Vanish, failing);
    expect_all_failed(out, "rank");
    for (int r = 0; r < n(); r++) /* "rank(s) 4 never called it", "... holding rank 4 to rank 7" */
        EXPECT_NE(out[r].msg.find(std::to_string(failing)), std::string::npos) << out[r].msg;
    for (int r = 0; r < n(); r++) {
        if (r == failing) continue;
        EXPECT_EQ(out[r].st, QILIN_ERR_COMM) << out[r].msg;
        EXPECT_GE(out[r].seconds, 0.5 * kDeadline) << "rank " << r << " failed before the deadline: " << out[r].msg;
    }
}

TEST_P(CommFault, InjectedAsyncErrorFailsEveryRankNamingIt) {
    int failing = 0;
    std::vector<Outcome> out = run(n(), procs(), Fault::AsyncError, failing);
    expect_all_failed(out, "rank 0");
    EXPECT_NE(out[0].msg.find("simulated link failure"), std::string::npos) << out[0].msg;
    for (const Outcome &o : out) EXPECT_EQ(o.st, QILIN_ERR_COMM) << o.msg;
}

INSTANTIATE_TEST_SUITE_P(Ranks, CommFault,
                         ::testing::Combine(::testing::Values(2, 4, 8), ::testing::Values(false, true)),
                         [](const ::testing::TestParamInfo<std::tuple<int, bool>> &i) {
                             return "ranks" + std::to_string(std::get<0>(i.param)) +
                                    (std::get<1>(i.param) ? "_2procs" : "");
                         });

/* ---- NCCL's strictness ---------------------------------------------------- */

TEST(CommStrict, AbortFromANonOwningThreadOrTwiceIsAnError) {
    QILIN_REQUIRE_DEVICES(2);
    int devices[2] = {0, 1};
    qilin_comm *comms[2] = {nullptr, nullptr};
    QILIN_ASSERT_OK(qilin_comm_init_all(2, devices, comms));
    std::thread owner([&] {
        EXPECT_EQ(qilin_device_set(0), QILIN_OK);
        EXPECT_EQ(qilin_comm_wait(comms[0], nullptr), QILIN_OK) << qilin_last_error(); /* now owned */
    });
    owner.join();
    EXPECT_EQ(qilin_comm_abort(comms[0], "from main"), QILIN_ERR_COMM);
    EXPECT_NE(std::string(qilin_last_error()).find("does not own"), std::string::npos) << qilin_last_error();
    /* an unowned communicator (rank 1, never used) may be aborted once, not twice */
    EXPECT_EQ(qilin_comm_abort(comms[1], "first"), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(qilin_comm_abort(comms[1], "second"), QILIN_ERR_COMM);
    EXPECT_NE(std::string(qilin_last_error()).find("already aborted"), std::string::npos) << qilin_last_error();
    EXPECT_EQ(qilin_comm_wait(comms[1], nullptr), QILIN_ERR_COMM);
    EXPECT_NE(std::string(qilin_last_error()).find("first"), std::string::npos) << qilin_last_error();
    qilin_comm_destroy(comms[0]);
    qilin_comm_destroy(comms[1]);
}

/* A request from another thread is no abort: the owner aborts, once, at its
 * next operation; a later abort by the owner is a second abort. */
TEST(CommStrict, RequestedAbortIsCarriedOutByTheOwnerOnce) {
    QILIN_REQUIRE_DEVICES(2);
    int devices[2] = {0, 1};
    qilin_comm *comms[2] = {nullptr, nullptr};
    QILIN_ASSERT_OK(qilin_comm_init_all(2, devices, comms));
    qilin_comm_request_abort(comms[0], "peer died");
    qilin_comm_request_abort(comms[0], "a second reason"); /* the first is kept */
    std::thread owner([&] {
        EXPECT_EQ(qilin_device_set(0), QILIN_OK);
        EXPECT_EQ(qilin_comm_wait(comms[0], nullptr), QILIN_ERR_COMM);
        std::string msg = qilin_last_error();
        EXPECT_NE(msg.find("peer died"), std::string::npos) << msg;
        EXPECT_EQ(msg.find("a second reason"), std::string::npos) << msg;
        EXPECT_EQ(qilin_comm_abort(comms[0], "again"), QILIN_ERR_COMM); /* already aborted by the wait */
        EXPECT_NE(std::string(qilin_last_error()).find("already aborted"), std::string::npos);
    });
    owner.join();
    qilin_comm_destroy(comms[0]);
    qilin_comm_destroy(comms[1]);
}

TEST(CommStrict, OperationWhileAnotherThreadIsInsideOneIsAnError) {
    QILIN_REQUIRE_DEVICES(2);
    int devices[2] = {0, 1};
    qilin_comm *comms[2] = {nullptr, nullptr};
    QILIN_ASSERT_OK(qilin_comm_init_all(2, devices, comms));
    QILIN_ASSERT_OK(qilin_comm_set_timeout(comms[0], 5.0));
    std::atomic<bool> inside{false};
    qilin_status first = QILIN_ERR_INTERNAL;
    std::thread a([&] { /* rank 0 waits in an all-reduce until rank 1 comes */
        EXPECT_EQ(qilin_device_set(0), QILIN_OK);
        DeviceBuffer buf;
        EXPECT_EQ(qilin_malloc(&buf.ptr, 64, "a"), QILIN_OK);
        inside = true;
        first = qilin_comm_all_reduce_sum(comms[0], buf.ptr, buf.ptr, 4, QILIN_F32, nullptr);
    });
    while (!inside) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); /* a is inside the call by now */
    std::thread b([&] { /* a second thread on rank 0's communicator */
        EXPECT_EQ(qilin_device_set(0), QILIN_OK);
        DeviceBuffer buf;
        EXPECT_EQ(qilin_malloc(&buf.ptr, 64, "b"), QILIN_OK);
        EXPECT_EQ(qilin_comm_all_reduce_sum(comms[0], buf.ptr, buf.ptr, 4, QILIN_F32, nullptr), QILIN_ERR_COMM);
        EXPECT_NE(std::string(qilin_last_error()).find("another thread is inside"), std::string::npos)
            << qilin_last_error();
    });
    b.join();
    std::thread c([&] { /* rank 1 arrives: a's call completes normally */
        EXPECT_EQ(qilin_device_set(1), QILIN_OK);
        DeviceBuffer buf;
        EXPECT_EQ(qilin_malloc(&buf.ptr, 64, "c"), QILIN_OK);
        EXPECT_EQ(qilin_comm_all_reduce_sum(comms[1], buf.ptr, buf.ptr, 4, QILIN_F32, nullptr), QILIN_OK)
            << qilin_last_error();
    });
    c.join();
    a.join();
    EXPECT_EQ(first, QILIN_OK) << qilin_last_error();
    qilin_comm_destroy(comms[0]);
    qilin_comm_destroy(comms[1]);
}

TEST(CommStrict, BadTimeoutsAreRefused) {
    QILIN_REQUIRE_DEVICES(1);
    int devices[1] = {0};
    qilin_comm *comm = nullptr;
    QILIN_ASSERT_OK(qilin_comm_init_all(1, devices, &comm));
    for (double bad : {0.0, -1.0, 1e8, std::nan("")}) {
        EXPECT_EQ(qilin_comm_set_timeout(comm, bad), QILIN_ERR_INVALID_ARGUMENT) << bad;
        EXPECT_EQ(qilin_comm_set_init_timeout(bad), QILIN_ERR_INVALID_ARGUMENT) << bad;
    }
    qilin_comm_destroy(comm);
}

} // namespace
#endif
