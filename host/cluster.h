/* cluster.h — the processes of one model spread over several nodes, and the
 * TCP channel between them.
 *
 * A model with `nodes` > 1 runs one process per node. Node 0 (the leader)
 * serves users; the others (followers) only hold their GPUs' slices and run
 * the steps the leader sends them. The channel does three things:
 *
 *   1. Bootstrap: node 0 listens on the coordinator's port; every follower
 *      connects (retrying until the timeout, so start order does not matter)
 *      and says who it is (node rank, node count) and what it was started
 *      with (a configuration text: model, tp, ep, dtype, sizes). The leader
 *      accepts only when every node rank 1..nodes-1 has come once and every
 *      configuration equals its own; otherwise every process gets an error
 *      naming the node and the two texts.
 *   2. Messages: the leader sends typed byte messages to all followers
 *      (the communicator's unique id, each step's batch, the end); a
 *      follower reads them in order.
 *   3. Failure: a follower that fails reports its message to the leader
 *      before it exits; a watcher thread on each process notices a report or
 *      a closed connection and calls back (the model aborts its
 *      communicators there, so no rank waits forever in a collective).
 *
 * Wire format (all integers little-endian): a frame is
 *   u32 magic "QLN1", u32 type, u64 length, then `length` payload bytes.
 * The hello a follower sends is a frame of type QILIN_MSG_HELLO whose
 * payload is u32 node_rank, u32 nodes, then the configuration text (no NUL).
 * The leader answers each hello with QILIN_MSG_WELCOME (empty) or
 * QILIN_MSG_ERROR (the message text). */
#ifndef QILIN_HOST_CLUSTER_H
#define QILIN_HOST_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    QILIN_MSG_HELLO = 1,   /* follower -> leader, bootstrap */
    QILIN_MSG_WELCOME = 2, /* leader -> follower, bootstrap accepted */
    QILIN_MSG_ERROR = 3,   /* either way: payload is an error message; the sender stops */
    QILIN_MSG_USER = 16,   /* first type free for callers (forward.c's id, step, end) */
};

typedef struct qilin_cluster_options {
    int nodes;               /* processes, >= 2 */
    int node_rank;           /* this process, 0 .. nodes - 1; 0 is the leader */
    const char *coordinator; /* "host:port" (host: name, IPv4 or [IPv6]); node 0 listens on
                                port on all interfaces, the others connect to host:port */
    const char *config;      /* this process's configuration text; must match the leader's */
    double timeout_s;        /* bootstrap: how long to wait for connections; <= 0: 300 */
} qilin_cluster_options;

typedef struct qilin_cluster qilin_cluster;

/* Bootstrap (blocks until every node has joined, or fails). Errors name the
 * coordinator, the node and the cause: a port in use, a refused or timed-out
 * connection, a node rank outside 0..nodes-1 or seen twice, a different
 * node count, a different configuration, a peer speaking something else. */
qilin_status qilin_cluster_open(const qilin_cluster_options *o, qilin_cluster **out);

/* Closes every connection (followers see the leader go) and stops the
 * watcher. NULL does nothing. */
void qilin_cluster_close(qilin_cluster *c);

int qilin_cluster_nodes(const qilin_cluster *c);
int qilin_cluster_node_rank(const qilin_cluster *c);

/* Leader only: sends one message to every follower, in node order. */
qilin_status qilin_cluster_send_all(qilin_cluster *c, uint32_t type, const void *data, size_t bytes);

/* Follower only: the next message from the leader (blocks without a time
 * limit: a follower idles while the leader waits for users). *data is
 * malloc'd (NULL when bytes is 0); the caller frees it. A QILIN_MSG_ERROR
 * from the leader, or the leader's connection closing, is QILIN_ERR_COMM
 * with the leader's message or "node 0 closed the connection". */
qilin_status qilin_cluster_recv(qilin_cluster *c, uint32_t *type, void **data, size_t *bytes);

/* Follower only: tells the leader this node failed, with `message`; the
 * leader's watcher passes it on. Best effort (the leader may be gone). */
void qilin_cluster_report(qilin_cluster *c, const char *message);

/* Starts a watcher thread that calls on_failure(user, message) once, from
 * that thread, when a peer fails: on the leader, a follower's ERROR report
 * or closed connection ("node 2: <its message>" / "node 2 closed its
 * connection"); on a follower, the leader's connection closing while
 * armed (qilin_cluster_arm) — outside armed periods the main thread's own
 * qilin_cluster_recv sees the close. At most one watcher per cluster. */
typedef void (*qilin_cluster_failure_fn)(void *user, const char *message);
qilin_status qilin_cluster_watch(qilin_cluster *c, qilin_cluster_failure_fn on_failure, void *user);

/* Followers: the watcher reports the leader's close only between arm(1)
 * and arm(0) — while a step runs; an ended model closes the connection
 * normally. The leader's watcher is always armed. */
void qilin_cluster_arm(qilin_cluster *c, int armed);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_CLUSTER_H */
