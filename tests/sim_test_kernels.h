/* sim_test_kernels.h — small helpers shared by the emulator's test files. */
#ifndef QILIN_SIM_TEST_KERNELS_H
#define QILIN_SIM_TEST_KERNELS_H

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/device.h"
#include "tests/test_util.h"

/* A device buffer of n T's, freed on scope exit. */
template <class T> struct DeviceBuffer {
    T *ptr = nullptr;
    size_t n = 0;
    explicit DeviceBuffer(size_t count) : n(count) {
        if (qilin_malloc((void **)&ptr, count * sizeof(T) + 1, "test buffer") != QILIN_OK) ptr = nullptr;
    }
    ~DeviceBuffer() { qilin_free(ptr); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
    qilin_status upload(const std::vector<T> &host) {
        return qilin_memcpy_h2d(ptr, host.data(), host.size() * sizeof(T), nullptr);
    }
    qilin_status poison() { return qilin_memset(ptr, 0xFF, n * sizeof(T), nullptr); }
    std::vector<T> download() {
        std::vector<T> host(n);
        if (qilin_memcpy_d2h(host.data(), ptr, n * sizeof(T), nullptr) != QILIN_OK ||
            qilin_stream_synchronize(nullptr) != QILIN_OK)
            std::memset((void *)host.data(), 0xFF, n * sizeof(T));
        return host;
    }
};

#endif /* QILIN_SIM_TEST_KERNELS_H */
