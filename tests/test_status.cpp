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

// A context given without its separator still reads as two messages
// (issue 12: "layer 0qilin_attention_prefill: ..."); one ending in ':' gets a
// space; an empty inner message leaves the context alone.
TEST(Status, ContextAndMessageAreAlwaysSeparated) {
    qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_attention_prefill: head_dim=20");
    qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "layer %d", 0);
    EXPECT_STREQ(qilin_last_error(), "layer 0: qilin_attention_prefill: head_dim=20");
    qilin_error(QILIN_ERR_INVALID_ARGUMENT, "bad");
    qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "upload:");
    EXPECT_STREQ(qilin_last_error(), "upload: bad");
    qilin_clear_error();
    qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "layer 1");
    EXPECT_STREQ(qilin_last_error(), "layer 1");
}

TEST(Dtype, SizesAndNames) {
    EXPECT_EQ(qilin_dtype_size(QILIN_BF16), 2u);
    EXPECT_EQ(qilin_dtype_size(QILIN_F32), 4u);
    EXPECT_EQ(qilin_dtype_size(QILIN_FP8_E4M3), 1u);
    EXPECT_STREQ(qilin_dtype_name(QILIN_BF16), "bf16");
    EXPECT_EQ(qilin_dtype_size(QILIN_DTYPE_COUNT), 0u);
}
