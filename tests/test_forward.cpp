// test_forward.cpp — (in progress)
#include <gtest/gtest.h>
