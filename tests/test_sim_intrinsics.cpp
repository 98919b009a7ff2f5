/* test_sim_intrinsics.cpp — every intrinsic the emulator provides, against its
 * definition in the CUDA programming guide, computed independently on the
 * host. The kernels (intrinsic_kernels.cu) run through the emulator in the sim
 * build and on the GPU in the cuda build (skipped without one). */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "tests/intrinsic_kernels.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

/* The programming guide's definitions of the four shuffles for a lane. */
int shfl_reference_source(int mode, int lane, int arg, int width) {
    int group_start = lane / width * width, in_group = lane % width;
    switch (mode) {
    case SHFL_IDX: return group_start + (((arg % width) + width) % width);
    case SHFL_UP: return in_group >= arg ? lane - arg : lane;
    case SHFL_DOWN: return in_group + arg < width ? lane + arg : lane;
    default: { /* earlier groups may be read, later ones give the lane's own value */
        int j = lane ^ arg;
        return j / width > lane / width ? lane : j;
    }
    }
}

template <class T, class Launch> void check_shuffles(Launch launch, int threads) {
    std::mt19937 rng(7);
    std::vector<T> in(threads);
    for (auto &v : in) v = (T)(rng() % 100000) - (T)50000;
    DeviceBuffer<T> din(threads), dout(threads);
    QILIN_ASSERT_OK(din.upload(in));
    const char *names[] = {"idx", "up", "down", "xor"};
    int checked = 0;
    for (int mode = 0; mode < 4; mode++)
        for (int width = 1; width <= 32; width *= 2)
            for (int arg : {0, 1, 2, 3, 5, 8, 13, 16, 31}) {
                if (mode == SHFL_IDX && arg >= 32) continue;
                QILIN_ASSERT_OK(dout.poison());
                QILIN_ASSERT_OK(launch(din.ptr, dout.ptr, threads, mode, arg, width));
                std::vector<T> out = dout.download();
                for (int t = 0; t < threads; t++) {
                    int lane = t % 32, base = t - lane;
                    int src = base + shfl_reference_source(mode, lane, arg, width);
                    ASSERT_EQ(out[t], in[src]) << "shfl_" << names[mode] << " width " << width << " arg "
                                               << arg << " thread " << t;
                    checked++;
                }
            }
    printf("checked %d shuffled values\n", checked);
}

TEST(SimIntrinsics, ShuffleF32) {
    QILIN_REQUIRE_DEVICES(1);
    check_shuffles<float>(launch_shfl_f32, 64);
}
TEST(SimIntrinsics, ShuffleF64) {
    QILIN_REQUIRE_DEVICES(1);
    check_shuffles<double>(launch_shfl_f64, 32);
}
TEST(SimIntrinsics, ShuffleI32) {
    QILIN_REQUIRE_DEVICES(1);
    check_shuffles<int>(launch_shfl_i32, 96);
}

TEST(SimIntrinsics, Votes) {
    QILIN_REQUIRE_DEVICES(1);
    const int threads = 64;
    std::mt19937 rng(11);
    std::vector<int> pred(threads);
    for (int round = 0; round < 4; round++) {
        for (int t = 0; t < threads; t++) pred[t] = round == 1 ? 1 : round == 2 ? 0 : (int)(rng() % 3 == 0);
        DeviceBuffer<int> dp(threads);
        DeviceBuffer<unsigned> dout(6 * threads);
        QILIN_ASSERT_OK(dp.upload(pred));
        QILIN_ASSERT_OK(dout.poison());
        QILIN_ASSERT_OK(launch_vote(dp.ptr, dout.ptr, threads));
        std::vector<unsigned> out = dout.download();
        for (int t = 0; t < threads; t++) {
            int warp = t / 32, lane = t % 32;
            unsigned full = 0, low = 0;
            for (int l = 0; l < 32; l++)
                if (pred[warp * 32 + l]) (l < 16 ? low : full) |= 1u << l;
            full |= low;
            EXPECT_EQ(out[6 * t + 0], full) << "ballot thread " << t;
            EXPECT_EQ(out[6 * t + 1], full != 0u) << "any thread " << t;
            EXPECT_EQ(out[6 * t + 2], full == 0xffffffffu) << "all thread " << t;
            if (lane < 16) {
                EXPECT_EQ(out[6 * t + 3], low) << "half ballot thread " << t;
                EXPECT_EQ(out[6 * t + 4], low != 0u) << "half any thread " << t;
                EXPECT_EQ(out[6 * t + 5], low == 0xffffu) << "half all thread " << t;
            }
        }
    }
}

TEST(SimIntrinsics, MatchAndReduce) {
    QILIN_REQUIRE_DEVICES(1);
    int ndev = 0;
    qilin_device_props props{};
    QILIN_ASSERT_OK(qilin_device_count(&ndev));
    QILIN_ASSERT_OK(qilin_device_get_props(0, &props));
    const int threads = 64;
    std::mt19937 rng(5);
    std::vector<unsigned> in(threads);
    for (auto &v : in) v = rng();
    DeviceBuffer<unsigned> din(threads), dout(8 * threads);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(dout.poison());
    QILIN_ASSERT_OK(launch_warp_misc(din.ptr, dout.ptr, threads));
    std::vector<unsigned> out = dout.download();
    for (int t = 0; t < threads; t++) {
        int base = t / 32 * 32;
        unsigned match = 0, add = 0, mn = ~0u, mx = 0, and_ = ~0u, or_ = 0, xor_ = 0;
        int smax = INT32_MIN;
        for (int l = 0; l < 32; l++) {
            unsigned v = in[base + l];
            if ((v & 3u) == (in[t] & 3u)) match |= 1u << l;
            add += v;
            mn = std::min(mn, v);
            mx = std::max(mx, v);
            smax = std::max(smax, (int)v);
            and_ &= v;
            or_ |= v;
            xor_ ^= v;
        }
        EXPECT_EQ(out[8 * t + 0], match) << "match_any thread " << t;
        if (props.cc_major < 8) continue;
        EXPECT_EQ(out[8 * t + 1], add) << "reduce_add thread " << t;
        EXPECT_EQ(out[8 * t + 2], mn) << "reduce_min thread " << t;
        EXPECT_EQ(out[8 * t + 3], mx) << "reduce_max thread " << t;
        EXPECT_EQ((int)out[8 * t + 4], smax) << "reduce_max(int) thread " << t;
        EXPECT_EQ(out[8 * t + 5], and_) << "reduce_and thread " << t;
        EXPECT_EQ(out[8 * t + 6], or_) << "reduce_or thread " << t;
        EXPECT_EQ(out[8 * t + 7], xor_) << "reduce_xor thread " << t;
    }
}

TEST(SimIntrinsics, ActiveMaskInBranch) {
    QILIN_REQUIRE_DEVICES(1);
    for (unsigned taken : {0xffffffffu, 0x0000ffffu, 0x80000001u, 0x5555aaaau}) {
        DeviceBuffer<unsigned> dout(32);
        QILIN_ASSERT_OK(dout.poison());
        QILIN_ASSERT_OK(launch_activemask(taken, dout.ptr));
        std::vector<unsigned> out = dout.download();
        for (int l = 0; l < 32; l++) {
            if (taken >> l & 1) {
                /* the guide promises only that the calling lane is in the mask
                 * and no lane outside the branch is; the emulator (and, for
                 * these simple branches, the GPU) gives exactly the branch */
                EXPECT_TRUE(out[l] >> l & 1) << "lane " << l;
                EXPECT_EQ(out[l] & ~taken, 0u) << "lane " << l;
#if defined(QILIN_SIM)
                EXPECT_EQ(out[l], taken) << "lane " << l;
#endif
            } else {
                EXPECT_EQ(out[l], 0u) << "lane " << l;
            }
        }
    }
}

TEST(SimIntrinsics, SyncthreadsCountAndOr) {
    QILIN_REQUIRE_DEVICES(1);
    const int blocks = 5, threads = 111;
    std::mt19937 rng(3);
    std::vector<int> pred(blocks * threads);
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < threads; t++)
            pred[b * threads + t] = b == 0 ? 1 : b == 1 ? 0 : b == 2 ? (t == 50) : (int)(rng() % 2);
    DeviceBuffer<int> dp(pred.size()), dout(3 * blocks);
    QILIN_ASSERT_OK(dp.upload(pred));
    QILIN_ASSERT_OK(dout.poison());
    QILIN_ASSERT_OK(launch_syncthreads_pred(dp.ptr, dout.ptr, blocks, threads));
    std::vector<int> out = dout.download();
    for (int b = 0; b < blocks; b++) {
        int count = 0;
        for (int t = 0; t < threads; t++) count += pred[b * threads + t];
        EXPECT_EQ(out[3 * b + 0], count) << "block " << b;
        EXPECT_EQ(out[3 * b + 1] != 0, count == threads) << "block " << b;
        EXPECT_EQ(out[3 * b + 2] != 0, count > 0) << "block " << b;
    }
}

TEST(SimIntrinsics, AtomicsGlobalAndShared) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = 989, threads = 128, blocks = (n + threads - 1) / threads;
    std::mt19937 rng(13);
    std::vector<int> vals(n);
    for (auto &v : vals) v = (int)(rng() % 2000001) - 1000000;
    std::vector<int> gi(16, 0);
    std::vector<unsigned> gu(16, 0);
    std::vector<float> gf(16, 0.0f);
    gi[3] = INT32_MIN; gi[4] = INT32_MAX; gu[5] = 0; gu[6] = 0xffffffffu;
    gf[7] = -1e30f; gf[8] = 1e30f;
    DeviceBuffer<int> dv(n), dgi(16), dbs(blocks);
    DeviceBuffer<unsigned> dgu(16);
    DeviceBuffer<float> dgf(16);
    QILIN_ASSERT_OK(dv.upload(vals));
    QILIN_ASSERT_OK(dgi.upload(gi));
    QILIN_ASSERT_OK(dgu.upload(gu));
    QILIN_ASSERT_OK(dgf.upload(gf));
    QILIN_ASSERT_OK(dbs.poison());
    QILIN_ASSERT_OK(launch_atomics(dv.ptr, n, dgi.ptr, dgu.ptr, dgf.ptr, dbs.ptr, blocks, threads));
    gi = dgi.download();
    gu = dgu.download();
    gf = dgf.download();
    std::vector<int> bs = dbs.download();
    long long sum = 0;
    unsigned usum = 0;
    for (int v : vals) {
        sum += v;
        usum += (unsigned)(v & 0xff);
    }
    EXPECT_EQ(gi[0], (int)sum);
    EXPECT_EQ(gu[1], usum);
    EXPECT_EQ(gf[2], (float)usum) << "sums of small integers are exact in fp32";
    EXPECT_EQ(gi[3], *std::max_element(vals.begin(), vals.end()));
    EXPECT_EQ(gi[4], *std::min_element(vals.begin(), vals.end()));
    unsigned umax = 0, umin = ~0u;
    for (int v : vals) {
        umax = std::max(umax, (unsigned)v);
        umin = std::min(umin, (unsigned)v);
    }
    EXPECT_EQ(gu[5], umax);
    EXPECT_EQ(gu[6], umin);
    EXPECT_EQ(gf[7], (float)*std::max_element(vals.begin(), vals.end()) * 0.5f);
    EXPECT_EQ(gf[8], (float)*std::min_element(vals.begin(), vals.end()) * 0.5f);
    EXPECT_EQ(gi[9], n) << "CAS loop increments";
    EXPECT_EQ(gi[10], -n) << "atomicSub";
    for (int b = 0; b < blocks; b++) {
        int s = 0;
        for (int i = b * threads; i < std::min(n, (b + 1) * threads); i++) s += vals[i] & 0xff;
        EXPECT_EQ(bs[b], s + 1000000) << "shared-memory atomics, block " << b;
    }
}

unsigned ref_brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

TEST(SimIntrinsics, BitsAndConversions) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = 300;
    std::mt19937 rng(17);
    std::vector<unsigned> in(n);
    const unsigned edge[4] = {0u, 1u, 0x80000000u, 0xffffffffu};
    for (int i = 0; i < n; i++) in[i] = i < 4 ? edge[i] : rng();
    DeviceBuffer<unsigned> din(n), dout(16 * n);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(dout.poison());
    QILIN_ASSERT_OK(launch_bits(din.ptr, dout.ptr, n));
    std::vector<unsigned> out = dout.download();
    for (int i = 0; i < n; i++) {
        unsigned x = in[i], y = in[(i + 1) % n];
        const unsigned *o = &out[16 * i];
        unsigned pop = 0, clz = 32, ffs = 0;
        for (int b = 0; b < 32; b++) pop += x >> b & 1;
        for (int b = 31; b >= 0; b--)
            if (x >> b & 1) { clz = 31 - b; break; }
        for (int b = 0; b < 32; b++)
            if (x >> b & 1) { ffs = b + 1; break; }
        EXPECT_EQ(o[0], pop) << i;
        EXPECT_EQ(o[1], clz) << i;
        EXPECT_EQ(o[2], ffs) << i;
        EXPECT_EQ(o[3], ref_brev(x)) << i;
        unsigned char bytes[8];
        for (int b = 0; b < 4; b++) {
            bytes[b] = (unsigned char)(x >> (8 * b));
            bytes[4 + b] = (unsigned char)(y >> (8 * b));
        }
        unsigned perm = 0, sel = y & 0x7777u;
        for (int b = 0; b < 4; b++) perm |= (unsigned)bytes[(sel >> (4 * b)) & 7] << (8 * b);
        EXPECT_EQ(o[4], perm) << i;
        EXPECT_EQ(o[5], (unsigned)(((unsigned long long)x * y) >> 32)) << i;
        EXPECT_EQ((int)o[6], (int)(((long long)(int)x * (int)y) >> 32)) << i;
        unsigned long long pair = ((unsigned long long)y << 32) | x;
        unsigned s = y & 31u;
        EXPECT_EQ(o[7], (unsigned)((pair << s) >> 32)) << i;
        EXPECT_EQ(o[8], (unsigned)(pair >> s)) << i;
        unsigned long long xy = ((unsigned long long)x << 32) | y;
        EXPECT_EQ(o[9], (unsigned)__builtin_popcountll(xy)) << i;
        EXPECT_EQ(o[10], xy ? (unsigned)__builtin_clzll(xy) : 64u) << i;
        float f = (float)(int)x * 1e-6f;
        EXPECT_EQ((int)o[11], (int)std::nearbyint(f)) << i;
        unsigned fbits;
        std::memcpy(&fbits, &f, 4);
        EXPECT_EQ(o[12], fbits) << i;
        EXPECT_EQ((int)o[13], (int)std::trunc(f)) << i;
        EXPECT_EQ((int)o[14], (int)std::floor(f)) << i;
        EXPECT_EQ((int)o[15], (int)std::ceil(f)) << i;
    }
}

TEST(SimIntrinsics, MathWithinUlps) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = 257;
    std::mt19937 rng(19);
    std::uniform_real_distribution<float> u(-8.0f, 8.0f);
    std::vector<float> in(n);
    for (auto &v : in) v = u(rng);
    DeviceBuffer<float> din(n), dout(8 * n);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(dout.poison());
    QILIN_ASSERT_OK(launch_math(din.ptr, dout.ptr, n));
    std::vector<float> out = dout.download();
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double x = in[i];
        double ref[8] = {std::exp(x), 1.0 / std::sqrt(std::fabs(x) + 1.0), x / 3.0, std::tanh(x),
                         std::log(std::fabs(x) + 1.0), std::exp2(x), std::min(std::max(x, 0.0), 1.0),
                         std::fma(x, x, 1.0)};
        /* __expf/__logf/__fdividef are hardware approximations on the GPU:
         * the guide bounds them by 2 + 1.16*|x| ulp (exp) and 2^-21.41 abs
         * (log); 1e-5 relative covers them on [-8, 8]. */
        for (int k = 0; k < 8; k++) {
            double err = std::fabs(out[8 * i + k] - ref[k]) / std::max(1e-30, std::fabs(ref[k]));
            if (k != 6) worst = std::max(worst, err);
            EXPECT_LE(err, k == 6 ? 0.0 : 1e-5) << "function " << k << " at x=" << x;
        }
    }
    printf("worst relative error %.3g\n", worst);
}

TEST(SimIntrinsics, GridAndBlockGeometry3D) {
    QILIN_REQUIRE_DEVICES(1);
    struct Case { dim3 grid, block; } cases[] = {
        {dim3(1), dim3(1)}, {dim3(3, 2, 2), dim3(7, 3, 2)}, {dim3(2, 1, 3), dim3(32, 4, 1)},
        {dim3(1), dim3(1024)}, {dim3(5), dim3(19)},
    };
    for (const Case &c : cases) {
        int nt = (int)(c.block.x * c.block.y * c.block.z);
        int total = nt * (int)(c.grid.x * c.grid.y * c.grid.z);
        DeviceBuffer<int> dout(2 * total);
        QILIN_ASSERT_OK(dout.poison());
        QILIN_ASSERT_OK(launch_geometry(dout.ptr, c.grid, c.block));
        std::vector<int> out = dout.download();
        for (int i = 0; i < total; i++) {
            ASSERT_EQ(out[2 * i], i) << "slot " << i;
            ASSERT_EQ(out[2 * i + 1], nt) << "slot " << i;
        }
    }
}

TEST(SimIntrinsics, MultiBlockReductionWithAtomics) {
    QILIN_REQUIRE_DEVICES(1);
    const int n = 100003;
    std::mt19937 rng(23);
    std::vector<float> in(n);
    double ref = 0;
    for (auto &v : in) {
        v = (float)(int)(rng() % 201) - 100.0f; /* integers: every partial sum is exact in fp32 */
        ref += v;
    }
    DeviceBuffer<float> din(n), dtotal(1);
    QILIN_ASSERT_OK(din.upload(in));
    for (int blocks : {1, 7, 64}) {
        QILIN_ASSERT_OK(qilin_memset(dtotal.ptr, 0, sizeof(float), nullptr));
        QILIN_ASSERT_OK(launch_reduce_sum(din.ptr, n, dtotal.ptr, blocks, 256));
        EXPECT_EQ((double)dtotal.download()[0], ref) << blocks << " blocks";
    }
}

TEST(SimIntrinsics, BarrierInLoop1024Threads) {
    QILIN_REQUIRE_DEVICES(1);
    const int threads = 1024, blocks = 2, iters = 5;
    std::mt19937 rng(29);
    std::vector<float> data(blocks * threads);
    for (auto &v : data) v = (float)(rng() % 16);
    std::vector<float> ref = data;
    for (int b = 0; b < blocks; b++)
        for (int i = 0; i < iters; i++) {
            std::vector<float> next(threads);
            for (int t = 0; t < threads; t++)
                next[t] = ref[b * threads + t] + ref[b * threads + (t + 1) % threads];
            std::copy(next.begin(), next.end(), ref.begin() + b * threads);
        }
    DeviceBuffer<float> d(data.size());
    QILIN_ASSERT_OK(d.upload(data));
    QILIN_ASSERT_OK(launch_barrier_loop(d.ptr, blocks, threads, iters));
    EXPECT_EQ(d.download(), ref);
}

} // namespace
