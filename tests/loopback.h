/* loopback.h — a TCP port on 127.0.0.1 reserved for the leader of a test's
 * nodes, without the race of "bind port 0, close, hand the number on".
 *
 * The reservation is a socket bound to port 0 (the kernel picks a free port)
 * with SO_REUSEADDR, kept open and never listening until the object dies:
 *   - Linux hands a bound port to no other socket: bind(0) and connect()'s
 *     automatic bind skip it, and an explicit bind() to it fails unless that
 *     socket also sets SO_REUSEADDR and nothing listens there;
 *   - the leader (host/cluster.c binds its listening socket with SO_REUSEADDR)
 *     may still bind and listen on it, because the reservation never listens.
 * So no other process can take the port between the test choosing it and
 * node 0 listening on it, and the test needs no change in the code it tests.
 * (A foreign program binding this very number with SO_REUSEADDR could still
 * listen first; node 0 then fails with "cannot listen", it does not hang.) */
#ifndef QILIN_TESTS_LOOPBACK_H
#define QILIN_TESTS_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

class ReservedPort {
  public:
    ReservedPort() {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd_ < 0 || setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
            getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
            perror("loopback.h: reserving a port");
            std::abort(); /* a test machine without loopback TCP: nothing to test */
        }
        port_ = ntohs(a.sin_port);
    }
    ~ReservedPort() { close(fd_); }
    ReservedPort(const ReservedPort &) = delete;
    ReservedPort &operator=(const ReservedPort &) = delete;

    int port() const { return port_; }
    /* "127.0.0.1:PORT", the coordinator address of the nodes */
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  private:
    int fd_ = -1, port_ = 0;
};

#endif /* QILIN_TESTS_LOOPBACK_H */
