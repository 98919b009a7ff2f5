// test_gemv.cpp — tests of cuda/gemv.cu (to come with the kernels).
#include <gtest/gtest.h>
