// test_model.cpp — (in progress)
#include <gtest/gtest.h>
