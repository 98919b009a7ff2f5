/* test_same_source.cpp — the kernel that the sim build executes is the very
 * file nvcc compiles in the cuda build. Each .cu records __FILE__ and the
 * compiler that built it; both builds run this test (ctest in .ci/run), so
 * the cuda run reports "nvcc compiled <path>/cuda/rmsnorm.cu" and the sim run
 * "sim (host C++) compiled <same path>". The rmsnorm tests then execute that
 * object: through the emulator here, on the GPU when one is present. */
#include <gtest/gtest.h>

#include <string>

#include "cuda/kernels.h"

TEST(SameSource, RmsnormIsCompiledFromCudaRmsnormCu) {
    std::string info = qilin_rmsnorm_build_info();
    printf("%s\n", info.c_str());
    std::string path = std::string(QILIN_SOURCE_DIR) + "/cuda/rmsnorm.cu";
    EXPECT_EQ(info.substr(info.size() - path.size()), path) << info;
#if defined(QILIN_SIM)
    EXPECT_EQ(info.rfind("sim (host C++) compiled ", 0), 0u) << info;
#else
    EXPECT_EQ(info.rfind("nvcc compiled ", 0), 0u) << info;
#endif
}
