// test_chat.cpp — placeholder, being written.
#include <gtest/gtest.h>
