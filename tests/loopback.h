/* loopback.h — a free TCP port on 127.0.0.1 for tests that start nodes. */
#ifndef QILIN_TESTS_LOOPBACK_H
#define QILIN_TESTS_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bound then released: another process could take it in between, which a
 * test on a shared machine accepts (it would fail to listen, not hang). */
inline int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

#endif /* QILIN_TESTS_LOOPBACK_H */
