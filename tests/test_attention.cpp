// test_attention.cpp — tests of cuda/attention.cu (to come with the kernels).
#include <gtest/gtest.h>
