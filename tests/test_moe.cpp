// test_moe.cpp — tests of cuda/moe.cu (to come with the kernels).
#include <gtest/gtest.h>
