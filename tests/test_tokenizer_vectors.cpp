// test_tokenizer_vectors.cpp — placeholder, being written.
#include <gtest/gtest.h>
