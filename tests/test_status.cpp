/* test_status.cpp — the status table and the thread-local error message. */
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "cuda/dtype.h"
#include "cuda/status.h"

TEST(Status, NamesAndStringsComeFromTheTable) {
    EXPECT_STREQ(qilin_status_name(QILIN_OK), "QILIN_OK");
    EXPECT_STREQ(qilin_status_name(QILIN_ERR_OUT_OF_MEMORY), "QILIN_ERR_OUT_OF_MEMORY");
    EXPECT_STREQ(qilin_status_string(QILIN_ERR_OUT_OF_MEMORY), "out of memory");
    EXPECT_STREQ(qilin_status_name((qilin_status)999), "QILIN_STATUS_UNKNOWN");
    EXPECT_STREQ(qilin_status_string((qilin_status)999), "unknown status");
}

TEST(Status, MessageIsPerThreadAndContextPrefixes) {
    qilin_clear_error();
    EXPECT_EQ(qilin_error(QILIN_ERR_FORMAT, "tensor %s: bad shape %d", "wq", 3), QILIN_ERR_FORMAT);
    EXPECT_STREQ(qilin_last_error(), "tensor wq: bad shape 3");
    std::string other;
    std::thread t([&] { other = qilin_last_error(); });
    t.join();
    EXPECT_EQ(other, "");
    EXPECT_EQ(qilin_error_context(QILIN_ERR_FORMAT, "layer %d: ", 7), QILIN_ERR_FORMAT);
    EXPECT_STREQ(qilin_last_error(), "layer 7: tensor wq: bad shape 3");
}

TEST(Dtype, SizesAndNames) {
    EXPECT_EQ(qilin_dtype_size(QILIN_BF16), 2u);
    EXPECT_EQ(qilin_dtype_size(QILIN_F32), 4u);
    EXPECT_EQ(qilin_dtype_size(QILIN_FP8_E4M3), 1u);
    EXPECT_STREQ(qilin_dtype_name(QILIN_BF16), "bf16");
    EXPECT_EQ(qilin_dtype_size(QILIN_DTYPE_COUNT), 0u);
}
