// test_jinja.cpp — placeholder, being written.
#include <gtest/gtest.h>
