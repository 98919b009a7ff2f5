/* cluster.c — the TCP channel between the nodes of one model (cluster.h).
 *
 * Node 0 holds one socket per follower, in node order; a follower holds one
 * socket to node 0. Every blocking step polls in short slices against a
 * deadline, so a bootstrap never waits past its timeout and the watcher
 * notices close() promptly. Sends use MSG_NOSIGNAL: a dead peer is an error,
 * not SIGPIPE. */
#define _GNU_SOURCE /* POLLRDHUP, MSG_NOSIGNAL */
#include "host/cluster.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAGIC 0x314e4c51u             /* "QLN1" little-endian */
#define MAX_FRAME ((uint64_t)1 << 30)       /* a step is kilobytes; more is a foreign peer */
#define SLICE_MS 50

struct qilin_cluster {
    int nodes, node_rank;
    char coordinator[256];
    int *fds; /* node 0: fds[n] for node n (fds[0] unused); follower: fds[0] to node 0 */
    pthread_t watcher;
    bool watching;
    atomic_int stop, armed;
    qilin_cluster_failure_fn on_failure;
    void *user;
};

typedef struct frame_header {
    uint32_t magic, type;
    uint64_t length;
} frame_header;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- byte transfer with a deadline (deadline <= 0: none) --------------- */

/* 1 ready, 0 timed out, -1 poll failed. */
static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        int ms = SLICE_MS;
        if (deadline > 0) {
            double left = deadline - now_s();
            if (left <= 0) return 0;
            if (left * 1000 < ms) ms = (int)(left * 1000) + 1;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* 0 on success; else an errno-like cause: ETIMEDOUT, EPIPE (closed), ... */
static int send_bytes(int fd, const void *data, size_t n, double deadline) {
    const char *p = data;
    while (n > 0) {
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w <= 0) return w == 0 ? ETIMEDOUT : errno;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k < 0) return errno;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int recv_bytes(int fd, void *data, size_t n, double deadline) {
    char *p = data;
    while (n > 0) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) return w == 0 ? ETIMEDOUT : errno;
        ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k == 0) return EPIPE;
        if (k < 0) return errno;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static int send_frame(int fd, uint32_t type, const void *data, size_t n, double deadline) {
    frame_header h = {FRAME_MAGIC, type, n};
    int e = send_bytes(fd, &h, sizeof h, deadline);
    return e ? e : send_bytes(fd, data, n, deadline);
}

/* Reads one frame; *data malloc'd with a NUL after it (messages are text).
 * EPROTO for a peer that speaks something else. */
static int recv_frame(int fd, uint32_t *type, char **data, size_t *n, double deadline) {
    frame_header h;
    *data = NULL;
    int e = recv_bytes(fd, &h, sizeof h, deadline);
    if (e) return e;
    if (h.magic != FRAME_MAGIC || h.length > MAX_FRAME) return EPROTO;
    char *buf = malloc((size_t)h.length + 1);
    if (!buf) return ENOMEM;
    e = recv_bytes(fd, buf, (size_t)h.length, deadline);
    if (e) return free(buf), e;
    buf[h.length] = '\0';
    *type = h.type, *data = buf, *n = (size_t)h.length;
    return 0;
}

static const char *cause(int e) {
    if (e == EPIPE || e == ECONNRESET) return "the connection closed";
    if (e == EPROTO) return "the peer does not speak qilin's cluster protocol";
    if (e == ETIMEDOUT) return "timed out";
    return strerror(e);
}

/* ---- addresses ------------------------------------------------------------ */

/* "host:port" or "[v6]:port" -> host, port text; false unless port is a
 * number from 1 to 65535. */
static bool split_address(const char *addr, char *host, size_t hn, char *port, size_t pn) {
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1] || strlen(colon + 1) >= pn) return false;
    const char *h = addr;
    size_t len = (size_t)(colon - addr);
    if (h[0] == '[') {
        if (len < 2 || h[len - 1] != ']') return false;
        h++, len -= 2;
    }
    if (len == 0 || len >= hn) return false;
    memcpy(host, h, len), host[len] = '\0';
    snprintf(port, pn, "%s", colon + 1);
    long number = 0;
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9') return false;
        number = number * 10 + (*c - '0'); /* port is < 16 digits: no overflow */
    }
    return number >= 1 && number <= 65535; /* else getaddrinfo wraps 99999 into another port */
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static qilin_status listen_on(const qilin_cluster *c, const char *port, int *out) {
    struct addrinfo hints = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int fd = -1, err = 0;
    if (getaddrinfo(NULL, port, &hints, &ai) == 0) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        int one = 1, zero = 0;
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 too */
        }
        if (fd >= 0 && (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0))
            err = errno, close(fd), fd = -1;
        else if (fd < 0)
            err = errno;
        freeaddrinfo(ai);
    }
    if (fd < 0)
        return qilin_error(QILIN_ERR_COMM, "cluster: node 0 cannot listen on port %s (coordinator %s): %s", port,
                           c->coordinator, strerror(err ? err : EINVAL));
    *out = fd;
    return QILIN_OK;
}

/* One connection attempt to every address of host:port; -1 when none answers. */
static int try_connect(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return -1;
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) close(fd), fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* ---- bootstrap -------------------------------------------------------------- */

/* The space-separated words of `a` that `b` lacks, joined by spaces
 * (configuration texts are "key=value ..."): the settings that differ. */
static void words_not_in(const char *a, const char *b, char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (const char *w = a; *w;) {
        size_t len = strcspn(w, " ");
        bool found = false;
        for (const char *v = b; *v && !found;) {
            size_t vl = strcspn(v, " ");
            found = vl == len && memcmp(v, w, len) == 0;
            v += vl + (v[vl] == ' ');
        }
        if (!found && len > 0 && used + len + 2 < n) {
            used += (size_t)snprintf(out + used, n - used, "%s%.*s", used ? " " : "", (int)len, w);
        }
        w += len + (w[len] == ' ');
    }
}

typedef struct hello {
    uint32_t node_rank, nodes;
} hello;

/* Node 0: reads one hello on a new connection and decides. Returns the
 * follower's node rank (> 0) to keep the connection, 0 to drop it (the
 * message for the follower already sent), or -1 with *st set to fail. */
static int admit(qilin_cluster *c, int fd, const char *config, double deadline, qilin_status *st) {
    uint32_t type = 0;
    char *data = NULL;
    size_t n = 0;
    int e = recv_frame(fd, &type, &data, &n, deadline);
    hello h = {0, 0};
    if (!e && (type != QILIN_MSG_HELLO || n < sizeof h)) e = EPROTO;
    if (e) {
        free(data);
        *st = qilin_error(QILIN_ERR_COMM, "cluster: node 0 (coordinator %s): a connection's hello failed: %s",
                          c->coordinator, cause(e));
        return -1;
    }
    memcpy(&h, data, sizeof h);
    const char *theirs = data + sizeof h;
    char why[2048] = "";
    if ((int)h.nodes != c->nodes)
        snprintf(why, sizeof why, "node %u was started with %u nodes, node 0 with %d", h.node_rank, h.nodes,
                 c->nodes);
    else if (h.node_rank == 0 || (int)h.node_rank >= c->nodes)
        snprintf(why, sizeof why, "a node says it is node %u; node ranks are 1 .. %d", h.node_rank, c->nodes - 1);
    else if (c->fds[h.node_rank] >= 0)
        snprintf(why, sizeof why, "node %u joined twice", h.node_rank);
    else if (strcmp(theirs, config) != 0) {
        char only_theirs[512], only_ours[512];
        words_not_in(theirs, config, only_theirs, sizeof only_theirs);
        words_not_in(config, theirs, only_ours, sizeof only_ours);
        snprintf(why, sizeof why, "node %u was started differently: node %u has %s, node 0 has %s (node 0: \"%s\")",
                 h.node_rank, h.node_rank, only_theirs, only_ours, config);
    }
    free(data);
    if (why[0]) {
        send_frame(fd, QILIN_MSG_ERROR, why, strlen(why), now_s() + 1);
        *st = qilin_error(QILIN_ERR_COMM, "cluster (coordinator %s): %s", c->coordinator, why);
        return -1;
    }
    return (int)h.node_rank;
}

static void missing_nodes(const qilin_cluster *c, char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (int r = 1; r < c->nodes && used < n; r++)
        if (c->fds[r] < 0) used += (size_t)snprintf(out + used, n - used, "%s%d", used ? ", " : "", r);
}

static qilin_status lead(qilin_cluster *c, const char *port, const char *config, double timeout_s) {
    int lfd = -1;
    QILIN_TRY(listen_on(c, port, &lfd));
    double deadline = now_s() + timeout_s;
    qilin_status st = QILIN_OK;
    for (int joined = 1; joined < c->nodes && st == QILIN_OK;) {
        int w = wait_fd(lfd, POLLIN, deadline);
        if (w <= 0) {
            char missing[256];
            missing_nodes(c, missing, sizeof missing);
            st = qilin_error(QILIN_ERR_COMM, "cluster: node 0 (coordinator %s) waited %.3g s; node(s) %s never joined",
                             c->coordinator, timeout_s, missing);
            break;
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        int r = admit(c, fd, config, deadline, &st);
        if (r > 0) c->fds[r] = fd, joined++, set_nodelay(fd);
        else close(fd);
    }
    close(lfd);
    for (int r = 1; st == QILIN_OK && r < c->nodes; r++) {
        int e = send_frame(c->fds[r], QILIN_MSG_WELCOME, NULL, 0, deadline + 5);
        if (e) st = qilin_error(QILIN_ERR_COMM, "cluster: welcoming node %d: %s", r, cause(e));
    }
    return st;
}

static qilin_status follow(qilin_cluster *c, const char *host, const char *port, const char *config,
                           double timeout_s) {
    double deadline = now_s() + timeout_s;
    int fd = -1;
    while ((fd = try_connect(host, port)) < 0) {
        if (now_s() > deadline)
            return qilin_error(QILIN_ERR_COMM, "cluster: node %d could not connect to node 0 at %s within %.3g s",
                               c->node_rank, c->coordinator, timeout_s);
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    set_nodelay(fd);
    c->fds[0] = fd;
    size_t n = sizeof(hello) + strlen(config);
    char *msg = malloc(n);
    if (!msg) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "cluster: hello");
    hello h = {(uint32_t)c->node_rank, (uint32_t)c->nodes};
    memcpy(msg, &h, sizeof h), memcpy(msg + sizeof h, config, strlen(config));
    int e = send_frame(fd, QILIN_MSG_HELLO, msg, n, deadline);
    free(msg);
    uint32_t type = 0;
    char *answer = NULL;
    size_t an = 0;
    if (!e) e = recv_frame(fd, &type, &answer, &an, deadline + 5);
    qilin_status st = QILIN_OK;
    if (e)
        st = qilin_error(QILIN_ERR_COMM, "cluster: node %d joining node 0 at %s: %s", c->node_rank, c->coordinator,
                         cause(e));
    else if (type == QILIN_MSG_ERROR)
        st = qilin_error(QILIN_ERR_COMM, "cluster: node 0 (%s) refused node %d: %s", c->coordinator, c->node_rank,
                         answer);
    else if (type != QILIN_MSG_WELCOME)
        st = qilin_error(QILIN_ERR_COMM, "cluster: node %d: node 0 answered with message type %u", c->node_rank, type);
    free(answer);
    return st;
}

qilin_status qilin_cluster_open(const qilin_cluster_options *o, qilin_cluster **out) {
    *out = NULL;
    char host[256], port[16];
    if (!o || o->nodes < 2 || o->node_rank < 0 || o->node_rank >= o->nodes || !o->config)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "cluster: nodes %d, node_rank %d, config %s: need nodes >= 2, "
                           "node_rank in 0 .. nodes - 1 and a configuration", o ? o->nodes : 0,
                           o ? o->node_rank : 0, o && o->config ? "set" : "NULL");
    if (!o->coordinator || !split_address(o->coordinator, host, sizeof host, port, sizeof port))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "cluster: coordinator '%s' is not HOST:PORT (PORT 1..65535)",
                           o->coordinator ? o->coordinator : "(null)");
    qilin_cluster *c = calloc(1, sizeof *c);
    if (c) c->fds = malloc((size_t)o->nodes * sizeof *c->fds);
    if (!c || !c->fds) return free(c), qilin_error(QILIN_ERR_OUT_OF_MEMORY, "cluster: host memory");
    for (int r = 0; r < o->nodes; r++) c->fds[r] = -1;
    c->nodes = o->nodes, c->node_rank = o->node_rank;
    snprintf(c->coordinator, sizeof c->coordinator, "%s", o->coordinator);
    double timeout_s = o->timeout_s > 0 ? o->timeout_s : 300;
    qilin_status st = c->node_rank == 0 ? lead(c, port, o->config, timeout_s)
                                        : follow(c, host, port, o->config, timeout_s);
    if (st != QILIN_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", qilin_last_error());
        qilin_cluster_close(c);
        return qilin_error(st, "%s", msg);
    }
    *out = c;
    return QILIN_OK;
}

/* ---- after the bootstrap -------------------------------------------------- */

int qilin_cluster_nodes(const qilin_cluster *c) { return c->nodes; }
int qilin_cluster_node_rank(const qilin_cluster *c) { return c->node_rank; }

qilin_status qilin_cluster_send_all(qilin_cluster *c, uint32_t type, const void *data, size_t bytes) {
    if (c->node_rank != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "cluster: send_all on node %d (node 0 only)", c->node_rank);
    for (int r = 1; r < c->nodes; r++) {
        int e = send_frame(c->fds[r], type, data, bytes, 0);
        if (e) return qilin_error(QILIN_ERR_COMM, "cluster: sending to node %d: %s", r, cause(e));
    }
    return QILIN_OK;
}

qilin_status qilin_cluster_recv(qilin_cluster *c, uint32_t *type, void **data, size_t *bytes) {
    *data = NULL, *bytes = 0;
    if (c->node_rank == 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "cluster: recv on node 0 (followers only)");
    char *buf = NULL;
    int e = recv_frame(c->fds[0], type, &buf, bytes, 0);
    if (e == EPIPE || e == ECONNRESET)
        return qilin_error(QILIN_ERR_COMM, "cluster: node %d: node 0 closed the connection", c->node_rank);
    if (e) return qilin_error(QILIN_ERR_COMM, "cluster: node %d: reading from node 0: %s", c->node_rank, cause(e));
    if (*type == QILIN_MSG_ERROR) {
        qilin_status st = qilin_error(QILIN_ERR_COMM, "cluster: node 0 failed: %s", buf);
        free(buf);
        return st;
    }
    if (*bytes == 0) free(buf), buf = NULL;
    *data = buf;
    return QILIN_OK;
}

void qilin_cluster_report(qilin_cluster *c, const char *message) {
    if (!c || c->node_rank == 0 || c->fds[0] < 0) return;
    send_frame(c->fds[0], QILIN_MSG_ERROR, message, strlen(message), now_s() + 1);
}

void qilin_cluster_arm(qilin_cluster *c, int armed) { atomic_store(&c->armed, armed); }

/* Node 0's watcher: the first follower that reports or closes. */
static bool watch_followers(qilin_cluster *c, char *msg, size_t n) {
    struct pollfd p[256];
    int count = c->nodes - 1 < 256 ? c->nodes - 1 : 256;
    for (int i = 0; i < count; i++) p[i] = (struct pollfd){.fd = c->fds[i + 1], .events = POLLIN};
    if (poll(p, (nfds_t)count, SLICE_MS) <= 0) return false;
    for (int i = 0; i < count; i++) {
        if (!p[i].revents) continue;
        uint32_t type = 0;
        char *data = NULL;
        size_t len = 0;
        int e = recv_frame(p[i].fd, &type, &data, &len, now_s() + 1);
        if (!e && type == QILIN_MSG_ERROR) snprintf(msg, n, "node %d: %s", i + 1, data);
        else snprintf(msg, n, "node %d closed its connection", i + 1);
        free(data);
        return true;
    }
    return false;
}

/* A follower's watcher: node 0's connection closing while armed. */
static bool watch_leader(qilin_cluster *c, char *msg, size_t n) {
    struct pollfd p = {.fd = c->fds[0], .events = POLLRDHUP};
    if (poll(&p, 1, SLICE_MS) <= 0 || !atomic_load(&c->armed)) return false;
    if (!(p.revents & (POLLRDHUP | POLLHUP | POLLERR))) return false;
    snprintf(msg, n, "node 0 closed its connection");
    return true;
}

static void *watch(void *arg) {
    qilin_cluster *c = arg;
    char msg[2048];
    while (!atomic_load(&c->stop)) {
        bool failed = c->node_rank == 0 ? watch_followers(c, msg, sizeof msg) : watch_leader(c, msg, sizeof msg);
        if (failed && !atomic_load(&c->stop)) {
            c->on_failure(c->user, msg);
            break;
        }
        if (c->node_rank != 0 && !atomic_load(&c->armed))
            nanosleep(&(struct timespec){0, SLICE_MS * 1000 * 1000}, NULL); /* idle: RDHUP would spin */
    }
    return NULL;
}

qilin_status qilin_cluster_watch(qilin_cluster *c, qilin_cluster_failure_fn on_failure, void *user) {
    if (c->watching) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "cluster: a watcher is already running");
    c->on_failure = on_failure, c->user = user;
    if (pthread_create(&c->watcher, NULL, watch, c) != 0)
        return qilin_error(QILIN_ERR_COMM, "cluster: cannot start the watcher thread");
    c->watching = true;
    return QILIN_OK;
}

void qilin_cluster_close(qilin_cluster *c) {
    if (!c) return;
    atomic_store(&c->stop, 1);
    if (c->watching) pthread_join(c->watcher, NULL);
    for (int r = 0; r < c->nodes; r++)
        if (c->fds[r] >= 0) close(c->fds[r]);
    free(c->fds);
    free(c);
}
