// test_sampling.cpp — tests of cuda/sampling.cu (to come with the kernels).
#include <gtest/gtest.h>
