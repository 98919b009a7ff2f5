// test_tokenizer.cpp — placeholder, being written.
#include <gtest/gtest.h>
