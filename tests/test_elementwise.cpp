// test_elementwise.cpp — tests of cuda/elementwise.cu (to come with the kernels).
#include <gtest/gtest.h>
