// test_rope.cpp — tests of cuda/rope.cu (to come with the kernels).
#include <gtest/gtest.h>
