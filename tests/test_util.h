/* test_util.h — helpers shared by the test suites. */
#ifndef QILIN_TEST_UTIL_H
#define QILIN_TEST_UTIL_H

#include <gtest/gtest.h>

#include "cuda/device.h"

/* Skips the current test (with the reason) unless at least `n` devices exist;
 * fails it when the devices cannot even be counted (a bad QILIN_SIM_DEVICES
 * must not silently skip the suite). In the sim build there are always
 * QILIN_SIM_DEVICES (default 8). */
#define QILIN_REQUIRE_DEVICES(n)                                                    \
    do {                                                                            \
        int qilin_ndev_ = 0;                                                        \
        qilin_status qilin_cst_ = qilin_device_count(&qilin_ndev_);                 \
        ASSERT_EQ(qilin_cst_, QILIN_OK) << "counting devices: " << qilin_last_error(); \
        if (qilin_ndev_ < (n))                                                      \
            GTEST_SKIP() << "needs " << (n) << " device(s), found " << qilin_ndev_  \
                         << " (" << qilin_last_error() << ")";                      \
    } while (0)

/* Asserts a qilin call succeeded, printing the thread's error message if not. */
#define QILIN_ASSERT_OK(expr)                                                       \
    do {                                                                            \
        qilin_status qilin_st_ = (expr);                                            \
        ASSERT_EQ(qilin_st_, QILIN_OK)                                              \
            << #expr << " -> " << qilin_status_name(qilin_st_) << ": "              \
            << qilin_last_error();                                                  \
    } while (0)

#endif /* QILIN_TEST_UTIL_H */
