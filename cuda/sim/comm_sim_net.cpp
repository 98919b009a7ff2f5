/* comm_sim_net.cpp — loopback TCP between the processes of one sim
 * communicator (comm_sim_net.h has the scheme).
 *
 * Frames are a u64 length then the bytes. Every wait polls in short slices
 * so that an abort (Group::stop, set from another thread) or the
 * communicator's timeout ends it; a closed or reset connection is an error
 * naming the process at the other end. */
#include "comm_sim_net.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <random>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qilin_sim_net {
namespace {

const unsigned char ID_MAGIC[4] = {'Q', 'S', 'I', 'M'};
const uint32_t HELLO_MAGIC = 0x314a5351; /* "QSJ1" */
const uint64_t MAX_FRAME = uint64_t(1) << 36;

using Clock = std::chrono::steady_clock;

struct IdFields {
    uint16_t port;
    uint64_t nonce;
    uint32_t pid;
};

void put_id(qilin_comm_id *id, const IdFields &f) {
    std::memset(id->bytes, 0, sizeof id->bytes);
    std::memcpy(id->bytes, ID_MAGIC, 4);
    std::memcpy(id->bytes + 4, &f.port, 2);
    std::memcpy(id->bytes + 8, &f.nonce, 8);
    std::memcpy(id->bytes + 16, &f.pid, 4);
}

bool get_id(const qilin_comm_id *id, IdFields &f, std::string &err) {
    if (std::memcmp(id->bytes, ID_MAGIC, 4) != 0) {
        err = "the id was not made by qilin_comm_get_unique_id in a sim build";
        return false;
    }
    std::memcpy(&f.port, id->bytes + 4, 2);
    std::memcpy(&f.nonce, id->bytes + 8, 8);
    std::memcpy(&f.pid, id->bytes + 16, 4);
    return true;
}

/* Listeners made by make_id in this process, by nonce, until the hub joins. */
std::mutex listeners_mu;
std::map<uint64_t, int> listeners;

Clock::time_point deadline_after(double s) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

/* Waits for `events` on fd; false on timeout or stop (err says which). */
bool wait_fd(int fd, short events, Clock::time_point until, const std::atomic<bool> *stop, const char *what,
             std::string &err) {
    for (;;) {
        if (stop && stop->load()) {
            err = std::string("aborted while ") + what;
            return false;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        if (left <= 0) {
            err = std::string("timed out (QILIN_SIM_COMM_TIMEOUT_S) while ") + what;
            return false;
        }
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, (int)std::min<long long>(left, 100));
        if (r > 0) return true; /* readable, writable, closed or failed: the transfer finds out */
        if (r < 0 && errno != EINTR) {
            err = std::string("poll failed while ") + what + ": " + std::strerror(errno);
            return false;
        }
    }
}

bool send_all(int fd, const void *data, size_t n, Clock::time_point until, const std::atomic<bool> *stop,
              const char *what, std::string &err) {
    const char *p = static_cast<const char *>(data);
    while (n > 0) {
        if (!wait_fd(fd, POLLOUT, until, stop, what, err)) return false;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k < 0) {
            err = std::string("the connection closed (") + std::strerror(errno) + ") while " + what;
            return false;
        }
        p += k, n -= (size_t)k;
    }
    return true;
}

bool recv_all(int fd, void *data, size_t n, Clock::time_point until, const std::atomic<bool> *stop,
              const char *what, std::string &err) {
    char *p = static_cast<char *>(data);
    while (n > 0) {
        if (!wait_fd(fd, POLLIN, until, stop, what, err)) return false;
        ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k <= 0) {
            err = std::string("the connection closed while ") + what;
            return false;
        }
        p += k, n -= (size_t)k;
    }
    return true;
}

bool send_frame(int fd, const std::vector<unsigned char> &b, Clock::time_point until,
                const std::atomic<bool> *stop, const char *what, std::string &err) {
    uint64_t n = b.size();
    return send_all(fd, &n, sizeof n, until, stop, what, err) &&
           send_all(fd, b.data(), b.size(), until, stop, what, err);
}

bool recv_frame(int fd, std::vector<unsigned char> &b, Clock::time_point until, const std::atomic<bool> *stop,
                const char *what, std::string &err) {
    uint64_t n = 0;
    if (!recv_all(fd, &n, sizeof n, until, stop, what, err)) return false;
    if (n > MAX_FRAME) {
        err = std::string("a peer sent a ") + std::to_string(n) + "-byte frame while " + what;
        return false;
    }
    b.resize(n);
    return recv_all(fd, b.data(), n, until, stop, what, err);
}

void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

struct Hello {
    uint32_t magic;
    int32_t world, first, nlocal;
    uint64_t nonce;
};

/* Hub: accepts the other processes until every rank is covered. */
bool accept_all(int lfd, const IdFields &id, int world, int nlocal, double timeout_s, Group &g,
                std::string &err) {
    auto until = deadline_after(timeout_s);
    std::vector<std::pair<int, int>> joined; /* (first, fd) */
    std::vector<char> held(world, 0);
    std::fill(held.begin(), held.begin() + nlocal, 1);
    int covered = nlocal;
    while (covered < world) {
        if (!wait_fd(lfd, POLLIN, until, nullptr, "waiting for the other processes to join", err)) {
            err += "; " + std::to_string(world - covered) + " of " + std::to_string(world) + " ranks never joined";
            break;
        }
        int fd = accept(lfd, nullptr, nullptr);
        if (fd < 0) continue;
        g.fds.push_back(fd); /* closed with the group, whatever happens */
        std::vector<unsigned char> b;
        if (!recv_frame(fd, b, until, nullptr, "reading a process's hello", err)) break;
        Hello h{};
        if (b.size() == sizeof h) std::memcpy(&h, b.data(), sizeof h);
        bool fits = h.magic == HELLO_MAGIC && h.nonce == id.nonce && h.world == world && h.nlocal >= 1 &&
                    h.first >= 0 && h.first <= world - h.nlocal;
        for (int r = h.first; fits && r < h.first + h.nlocal; r++) fits = !held[r];
        if (!fits) {
            err = "a process joined with ranks " + std::to_string(h.first) + ".." +
                  std::to_string(h.first + h.nlocal - 1) + " of world " + std::to_string(h.world) +
                  ", which do not fit the communicator (world " + std::to_string(world) +
                  ", or ranks taken twice, or another id)";
            break;
        }
        for (int r = h.first; r < h.first + h.nlocal; r++) held[r] = 1;
        covered += h.nlocal;
        joined.push_back({h.first, fd});
    }
    if (covered < world) return false;
    std::sort(joined.begin(), joined.end());
    g.fds.clear();
    for (auto &j : joined) g.fds.push_back(j.second), g.firsts.push_back(j.first);
    g.world = world;
    std::vector<unsigned char> ok = {'O', 'K'};
    for (int fd : g.fds)
        if (!send_frame(fd, ok, until, nullptr, "welcoming the processes", err)) return false;
    return true;
}

/* Others: connects to the hub (retrying while it is not listening yet). */
bool connect_hub(const IdFields &id, int world, int first, int nlocal, double timeout_s, Group &g,
                 std::string &err) {
    auto until = deadline_after(timeout_s);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(id.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    while (fd < 0) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
        if (Clock::now() > until) {
            err = "could not connect to the process holding rank 0 (127.0.0.1:" + std::to_string(id.port) +
                  "): " + std::strerror(errno);
            return false;
        }
        usleep(50 * 1000);
    }
    set_nodelay(fd);
    g.fds.push_back(fd);
    Hello h{HELLO_MAGIC, world, first, nlocal, id.nonce};
    std::vector<unsigned char> b(sizeof h);
    std::memcpy(b.data(), &h, sizeof h);
    if (!send_frame(fd, b, until, nullptr, "sending this process's hello", err)) return false;
    if (!recv_frame(fd, b, until, nullptr, "waiting for every process to join", err)) return false;
    return b.size() == 2 && b[0] == 'O' && b[1] == 'K';
}

} // namespace

Group::~Group() {
    for (int fd : fds) close(fd);
}

void Group::shut(const std::string &reason) {
    {
        std::lock_guard<std::mutex> lock(why_mu);
        if (why_.empty()) why_ = reason;
    }
    stop.store(true);
    for (int fd : fds) shutdown(fd, SHUT_RDWR);
}

std::string Group::why() {
    std::lock_guard<std::mutex> lock(why_mu);
    return why_;
}

bool make_id(qilin_comm_id *id, std::string &err) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
        err = std::string("cannot open a loopback listener: ") + std::strerror(errno);
        if (fd >= 0) close(fd);
        return false;
    }
    std::random_device rd;
    IdFields f{ntohs(a.sin_port), (uint64_t(rd()) << 32) ^ rd(), (uint32_t)getpid()};
    put_id(id, f);
    std::lock_guard<std::mutex> lock(listeners_mu);
    listeners[f.nonce] = fd;
    return true;
}

bool join(const qilin_comm_id *id, int world, int first, int nlocal, double timeout_s, Group &g,
          std::string &err) {
    IdFields f{};
    if (!get_id(id, f, err)) return false;
    g.hub = first == 0;
    if (!g.hub) return connect_hub(f, world, first, nlocal, timeout_s, g, err);
    int lfd = -1;
    {
        std::lock_guard<std::mutex> lock(listeners_mu);
        auto it = listeners.find(f.nonce);
        if (it != listeners.end()) lfd = it->second, listeners.erase(it);
    }
    if (lfd < 0) {
        err = "the id was made by process " + std::to_string(f.pid) +
              " (or already used); the process holding rank 0 must make it";
        return false;
    }
    bool ok = accept_all(lfd, f, world, nlocal, timeout_s, g, err);
    close(lfd);
    for (int fd : g.fds) set_nodelay(fd);
    return ok;
}

bool exchange(Group &g, const std::vector<unsigned char> &mine, std::vector<unsigned char> &all,
              double timeout_s, std::string &err) {
    auto until = deadline_after(timeout_s);
    if (!g.hub) {
        if (!send_frame(g.fds[0], mine, until, &g.stop, "sending to the process holding rank 0", err) ||
            !recv_frame(g.fds[0], all, until, &g.stop, "waiting for the process holding rank 0", err))
            return false;
        return true;
    }
    all = mine;
    std::vector<unsigned char> b;
    for (size_t p = 0; p < g.fds.size(); p++) {
        if (!recv_frame(g.fds[p], b, until, &g.stop, "waiting for another process's ranks", err)) {
            int last = (p + 1 < g.firsts.size() ? g.firsts[p + 1] : g.world) - 1;
            err += " (process " + std::to_string(p + 1) + " of " + std::to_string(g.fds.size() + 1) + ", holding rank " +
                   std::to_string(g.firsts[p]) + " to rank " + std::to_string(last) + ")";
            return false;
        }
        all.insert(all.end(), b.begin(), b.end());
    }
    for (int fd : g.fds)
        if (!send_frame(fd, all, until, &g.stop, "sending the exchange to the other processes", err)) return false;
    return true;
}

} // namespace qilin_sim_net
