/* matmul_check.h — the read-back check the GEMV and GEMM tests share. */
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "tests/compare.h"
#include "tests/dtype_io.h"

/* y: an m x n result read back from the device, rows ldy elements apart, in
 * yt, after the output was poisoned. Expects every value within the dot
 * product tolerance of yt (scaled to want, the float64 reference, m x n) and
 * the padding between rows still the poison (NaN): a kernel leaves it alone. */
inline void expect_matmul_rows(const std::vector<unsigned char> &y, int m, int n, long long ldy, qilin_dtype yt,
                               const std::vector<double> &want) {
    std::vector<double> got((size_t)m * n);
    for (int i = 0; i < m; i++)
        for (int r = 0; r < n; r++) got[(size_t)i * n + r] = value_of(y, (size_t)i * ldy + r, yt);
    for (int i = 0; i < m; i++)
        for (long long r = n; r < ldy; r++)
            EXPECT_TRUE(std::isnan(value_of(y, (size_t)i * ldy + r, yt))) << "y pad row " << i << " col " << r;
    const Tolerance &base = yt == QILIN_F32 ? kTolDotF32 : yt == QILIN_BF16 ? kTolDotBF16 : kTolDotF16;
    Comparison cmp = compare(got, want, scaled_tolerance(base, want));
    printf("y: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}
