// test_mla.cpp — tests of cuda/mla.cu (to come with the kernels).
#include <gtest/gtest.h>
