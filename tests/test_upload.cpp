// test_upload.cpp — (in progress)
#include <gtest/gtest.h>
