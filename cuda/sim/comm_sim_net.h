/* comm_sim_net.h — the sim's transport between processes (comm_sim.cpp).
 *
 * When a communicator's ranks live in several processes (qilin_comm_init_ranks),
 * the processes form a star over loopback TCP: the process holding rank 0
 * (the hub) made the unique id, which names its listener; every other
 * process connects and says which ranks it holds. A collective is then one
 * exchange: each process sends the hub one blob (its ranks' arguments and
 * send buffers), the hub sends every process the concatenation of all
 * blobs, and each process computes the result for its own ranks from it.
 * That moves every rank's data to every process — fine for an emulator, and
 * it keeps the result bit-identical across processes (one code path sums
 * the same inputs in the same order everywhere). */
#ifndef QILIN_SIM_COMM_SIM_NET_H
#define QILIN_SIM_COMM_SIM_NET_H

#include <atomic>
#include <mutex>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/comm.h"

namespace qilin_sim_net {

/* Fills a unique id naming a new loopback listener owned by this process. */
bool make_id(qilin_comm_id *id, std::string &err);

/* The processes of one communicator, seen from one of them. */
struct Group {
    bool hub = false;
    std::vector<int> fds; /* hub: one per other process, by first rank; others: the hub */
    std::vector<int> firsts; /* hub: the first rank of fds[i]'s process (messages name its ranks) */
    int world = 0;
    std::atomic<bool> stop{false};
    ~Group();
    /* Wakes every blocked transfer (abort, failure): peers see the close.
     * The first reason given is kept for messages. */
    void shut(const std::string &why);
    std::string why(); /* the reason shut was first called with */

  private:
    std::mutex why_mu;
    std::string why_;
};

/* Joins the processes holding [first, first + nlocal) of `world` ranks; the
 * hub (first == 0) waits for the others, the others connect to it. */
bool join(const qilin_comm_id *id, int world, int first, int nlocal, double timeout_s, Group &g,
          std::string &err);

/* One collective: `mine` in, every process's blob (in rank order) out. */
bool exchange(Group &g, const std::vector<unsigned char> &mine, std::vector<unsigned char> &all,
              double timeout_s, std::string &err);

} // namespace qilin_sim_net

#endif /* QILIN_SIM_COMM_SIM_NET_H */
