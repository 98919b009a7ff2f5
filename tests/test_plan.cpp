// test_plan.cpp — (in progress)
#include <gtest/gtest.h>
