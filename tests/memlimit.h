/* memlimit.h — runs a check in a forked child under an address-space limit
 * and a time limit, so a test can feed absurd counts (2^31 experts, token id
 * 2e8) and expect a clean refusal instead of the suite being killed by the
 * OOM killer or hanging (a FIFO opened for reading).
 *
 * The child gets QILIN_TEST_AS_BYTES (1 GiB) of address space on top of what
 * the process already maps (the test binary and its libraries), via
 * setrlimit(RLIMIT_AS), and an alarm of `seconds`. It runs `fn`, which returns
 * the qilin status of the call under test, and sends the status and
 * qilin_last_error() back through a pipe. Under AddressSanitizer the shadow
 * memory needs terabytes of address space, so QILIN_SKIP_UNDER_ASAN() skips
 * such tests there (the plain build runs them). */
#ifndef QILIN_TEST_MEMLIMIT_H
#define QILIN_TEST_MEMLIMIT_H

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "cuda/status.h"

#if defined(__SANITIZE_ADDRESS__)
#define QILIN_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QILIN_TEST_ASAN 1
#endif
#endif

#ifdef QILIN_TEST_ASAN
#define QILIN_SKIP_UNDER_ASAN()                                                                              \
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of shadow address space, so an RLIMIT_AS "          \
                    "of 1 GiB cannot be applied; the plain build runs this test"
#else
#define QILIN_SKIP_UNDER_ASAN() (void)0
#endif

constexpr unsigned long long QILIN_TEST_AS_BYTES = 1ull << 30;

struct LimitedResult {
    bool exited = false; /* the child returned normally (no signal, no crash) */
    int signal = 0;      /* the signal that ended it, 0 if none */
    qilin_status status = QILIN_OK;
    std::string message;
};

/* Address space the process maps now (VmSize), in bytes; 0 if unknown. */
inline unsigned long long qilin_test_vm_size() {
    FILE *f = std::fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmSize: %llu kB", &kb) == 1) break;
    std::fclose(f);
    return kb * 1024;
}

/* limit_memory false: only the alarm (for tests that must also run under ASan). */
inline LimitedResult run_limited(const std::function<qilin_status()> &fn, unsigned seconds = 20,
                                 bool limit_memory = true) {
    LimitedResult r;
    int fds[2];
    if (pipe(fds) != 0) return r;
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (limit_memory) {
            unsigned long long lim = qilin_test_vm_size() + QILIN_TEST_AS_BYTES;
            struct rlimit rl = {(rlim_t)lim, (rlim_t)lim};
            setrlimit(RLIMIT_AS, &rl);
        }
        alarm(seconds);
        qilin_status st = fn();
        std::string out = std::to_string((int)st) + "\n" + qilin_last_error();
        ssize_t w = write(fds[1], out.data(), out.size());
        (void)w;
        _exit(0);
    }
    close(fds[1]);
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, (size_t)n);
    close(fds[0]);
    int ws = 0;
    waitpid(pid, &ws, 0);
    r.exited = WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && !got.empty();
    r.signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    size_t nl = got.find('\n');
    if (r.exited && nl != std::string::npos) {
        r.status = (qilin_status)std::atoi(got.substr(0, nl).c_str());
        r.message = got.substr(nl + 1);
    }
    return r;
}

/* Expects fn to end cleanly, under the limits, with `want` and a message containing `needle`. */
#define EXPECT_REFUSED_WITHIN_LIMITS(fn, want, needle) EXPECT_REFUSED_(run_limited(fn), want, needle)
/* The same with only the time limit: files that must not block (FIFOs); runs under ASan too. */
#define EXPECT_REFUSED_AT_ONCE(fn, want, needle) EXPECT_REFUSED_(run_limited(fn, 20, false), want, needle)
#define EXPECT_REFUSED_(run, want, needle)                                                                   \
    do {                                                                                                     \
        LimitedResult qilin_r_ = (run);                                                                      \
        EXPECT_TRUE(qilin_r_.exited) << "the child did not return (signal " << qilin_r_.signal               \
                                     << (qilin_r_.signal == SIGALRM ? ": timed out" : "") << ")";            \
        EXPECT_EQ(qilin_r_.status, (want))                                                                   \
            << qilin_status_name(qilin_r_.status) << ": " << qilin_r_.message;                               \
        EXPECT_NE(qilin_r_.message.find(needle), std::string::npos)                                          \
            << "message: " << qilin_r_.message << "\nexpected to contain: " << (needle);                     \
    } while (0)

#endif /* QILIN_TEST_MEMLIMIT_H */
