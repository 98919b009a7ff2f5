/* test_graph.cpp — capture and replay of a stream's work (device.h's graphs),
 * in both builds: a captured sequence of kernels, async copies and memsets
 * replays to the eager results; a replay reads the inputs at the captured
 * addresses as they are at replay time; every call that cannot be part of a
 * graph fails during a capture naming itself, invalidates the capture (whose
 * end then names that call) and leaves the stream usable; a capture on one
 * stream leaves another stream eager. Kernels are qilin_add (elementwise.h),
 * so the same test runs on a GPU. */
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/elementwise.h"
#include "tests/test_util.h"

namespace {

constexpr size_t kN = 1000;

struct Buffers {
    float *a = nullptr, *b = nullptr, *c = nullptr, *out = nullptr;
    float *pinned_in = nullptr, *pinned_out = nullptr;
    qilin_stream *stream = nullptr;
    bool ok = false;
    Buffers() {
        ok = qilin_malloc((void **)&a, kN * 4, "a") == QILIN_OK && qilin_malloc((void **)&b, kN * 4, "b") == QILIN_OK &&
             qilin_malloc((void **)&c, kN * 4, "c") == QILIN_OK &&
             qilin_malloc((void **)&out, kN * 4, "out") == QILIN_OK &&
             qilin_host_alloc_pinned((void **)&pinned_in, kN * 4) == QILIN_OK &&
             qilin_host_alloc_pinned((void **)&pinned_out, kN * 4) == QILIN_OK &&
             qilin_stream_create(&stream) == QILIN_OK;
    }
    ~Buffers() {
        qilin_stream_synchronize(stream);
        qilin_stream_destroy(stream);
        qilin_free(a), qilin_free(b), qilin_free(c), qilin_free(out);
        qilin_host_free_pinned(pinned_in), qilin_host_free_pinned(pinned_out);
    }
};

qilin_status Add(float *out, const float *x, const float *y, qilin_stream *s) {
    qilin_add_args args = {};
    args.out = out, args.a = x, args.b = y, args.n = kN, args.dtype = QILIN_F32;
    return qilin_add(&args, s);
}

/* The work under test: a = pinned_in (h2d), b = 0 (memset), b = a + a,
 * c = b + a, c = c + c (in place), out = c (d2d), pinned_out = out (d2h). */
qilin_status Sequence(Buffers &w) {
    QILIN_TRY(qilin_memcpy_h2d(w.a, w.pinned_in, kN * 4, w.stream));
    QILIN_TRY(qilin_memset(w.b, 0, kN * 4, w.stream));
    QILIN_TRY(Add(w.b, w.a, w.a, w.stream));
    QILIN_TRY(Add(w.c, w.b, w.a, w.stream));
    QILIN_TRY(Add(w.c, w.c, w.c, w.stream));
    QILIN_TRY(qilin_memcpy_d2d(w.out, w.c, kN * 4, w.stream));
    return qilin_memcpy_d2h(w.pinned_out, w.out, kN * 4, w.stream);
}

void FillInput(Buffers &w, float base) {
    for (size_t i = 0; i < kN; i++) w.pinned_in[i] = base + float(i) * 0.25f;
}

std::vector<float> Expected(float base) {
    std::vector<float> e(kN);
    for (size_t i = 0; i < kN; i++) e[i] = 6.0f * (base + float(i) * 0.25f);
    return e;
}

std::vector<float> Output(Buffers &w) { return std::vector<float>(w.pinned_out, w.pinned_out + kN); }

void ExpectContains(const std::string &msg, const std::string &needle) {
    EXPECT_NE(msg.find(needle), std::string::npos) << "message \"" << msg << "\" lacks \"" << needle << "\"";
}

TEST(Graph, ReplayEqualsEagerAndReadsInputsAtReplayTime) {
    QILIN_REQUIRE_DEVICES(1);
    Buffers w;
    ASSERT_TRUE(w.ok) << qilin_last_error();
    FillInput(w, 1.0f);
    ASSERT_EQ(Sequence(w), QILIN_OK) << qilin_last_error();
    ASSERT_EQ(qilin_stream_synchronize(w.stream), QILIN_OK) << qilin_last_error();
    const std::vector<float> eager = Output(w);
    EXPECT_EQ(eager, Expected(1.0f));

    std::memset(w.pinned_out, 0, kN * 4);
    ASSERT_EQ(qilin_stream_begin_capture(w.stream), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(qilin_capturing(), 1);
    ASSERT_EQ(Sequence(w), QILIN_OK) << qilin_last_error();
    qilin_graph *g = nullptr;
    ASSERT_EQ(qilin_stream_end_capture(w.stream, &g), QILIN_OK) << qilin_last_error();
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(qilin_capturing(), 0);
    EXPECT_GE(qilin_graph_nodes(g), 7u);
    /* capture ran nothing */
    ASSERT_EQ(qilin_stream_synchronize(w.stream), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(Output(w), std::vector<float>(kN, 0.0f));

    ASSERT_EQ(qilin_graph_launch(g, w.stream), QILIN_OK) << qilin_last_error();
    ASSERT_EQ(qilin_stream_synchronize(w.stream), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(Output(w), eager); /* bit-equal: same kernels, same order */

    /* new values at the same addresses: the replay reads them */
    for (float base : {-3.0f, 7.5f}) {
        FillInput(w, base);
        ASSERT_EQ(qilin_graph_launch(g, w.stream), QILIN_OK) << qilin_last_error();
        ASSERT_EQ(qilin_stream_synchronize(w.stream), QILIN_OK) << qilin_last_error();
        EXPECT_EQ(Output(w), Expected(base)) << "base " << base;
    }
    EXPECT_EQ(qilin_graph_destroy(g), QILIN_OK);
    EXPECT_EQ(qilin_graph_destroy(nullptr), QILIN_OK);
}

/* Each non-capturable call: fails naming itself, invalidates the capture
 * (end names it, no graph), and the stream then works eagerly. */
struct Refused {
    const char *name;
    std::function<qilin_status(Buffers &)> call;
};

TEST(Graph, NonCapturableCallsFailByNameAndLeaveTheStreamUsable) {
    QILIN_REQUIRE_DEVICES(1);
    static std::vector<float> pageable(kN, 1.0f);
    static void *allocated = nullptr;
    static qilin_event *event = nullptr;
    ASSERT_EQ(qilin_event_create(&event), QILIN_OK);
    const std::vector<Refused> calls = {
        {"qilin_stream_synchronize", [](Buffers &w) { return qilin_stream_synchronize(w.stream); }},
        {"qilin_stream_synchronize", [](Buffers &) { return qilin_stream_synchronize(nullptr); }},
        {"qilin_device_synchronize", [](Buffers &) { return qilin_device_synchronize(); }},
        {"qilin_malloc", [](Buffers &) { return qilin_malloc(&allocated, 64, "in capture"); }},
        {"qilin_free", [](Buffers &w) { return qilin_free(w.b); }},
        {"qilin_host_alloc_pinned", [](Buffers &) { return qilin_host_alloc_pinned(&allocated, 64); }},
        {"qilin_host_free_pinned", [](Buffers &w) { return qilin_host_free_pinned(w.pinned_in); }},
        {"qilin_memcpy_h2d", [](Buffers &w) { return qilin_memcpy_h2d(w.a, pageable.data(), kN * 4, w.stream); }},
        {"qilin_memcpy_d2h", [](Buffers &w) { return qilin_memcpy_d2h(pageable.data(), w.a, kN * 4, w.stream); }},
        {"qilin_event_record", [](Buffers &w) { return qilin_event_record(event, w.stream); }},
        {"qilin_event_synchronize", [](Buffers &) { return qilin_event_synchronize(event); }},
    };
    Buffers w;
    ASSERT_TRUE(w.ok) << qilin_last_error();
    for (const Refused &r : calls) {
        SCOPED_TRACE(r.name);
        ASSERT_EQ(qilin_stream_begin_capture(w.stream), QILIN_OK) << qilin_last_error();
        ASSERT_EQ(Add(w.b, w.a, w.a, w.stream), QILIN_OK) << qilin_last_error();
        qilin_clear_error();
        allocated = nullptr;
        EXPECT_EQ(r.call(w), QILIN_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(allocated, nullptr) << "a refused allocation allocated";
        std::string msg = qilin_last_error();
        ExpectContains(msg, r.name);
        ExpectContains(msg, "not capturable");
        qilin_graph *g = nullptr;
        qilin_clear_error();
        EXPECT_EQ(qilin_stream_end_capture(w.stream, &g), QILIN_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(g, nullptr);
        msg = qilin_last_error();
        ExpectContains(msg, "invalidated");
        ExpectContains(msg, r.name);
        EXPECT_EQ(qilin_capturing(), 0);
        /* the stream and the buffers the refused call named still work eagerly */
        FillInput(w, 2.0f);
        ASSERT_EQ(Sequence(w), QILIN_OK) << qilin_last_error();
        ASSERT_EQ(qilin_stream_synchronize(w.stream), QILIN_OK) << qilin_last_error();
        EXPECT_EQ(Output(w), Expected(2.0f));
    }
    EXPECT_EQ(qilin_event_destroy(event), QILIN_OK);
}

TEST(Graph, CaptureLeavesOtherStreamsEager) {
    QILIN_REQUIRE_DEVICES(1);
    Buffers w, other;
    ASSERT_TRUE(w.ok && other.ok) << qilin_last_error();
    FillInput(w, 1.0f);
    FillInput(other, 4.0f);
    ASSERT_EQ(qilin_stream_begin_capture(w.stream), QILIN_OK) << qilin_last_error();
    /* work on the other stream is issued (and runs) eagerly; this thread may
     * not synchronise it until the capture ends (thread-local mode) */
    ASSERT_EQ(Sequence(other), QILIN_OK) << qilin_last_error();
    ASSERT_EQ(Sequence(w), QILIN_OK) << qilin_last_error();
    qilin_graph *g = nullptr;
    ASSERT_EQ(qilin_stream_end_capture(w.stream, &g), QILIN_OK) << qilin_last_error();
    ASSERT_EQ(qilin_stream_synchronize(other.stream), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(Output(other), Expected(4.0f)) << "the other stream's work must have run eagerly";
    ASSERT_EQ(qilin_graph_launch(g, w.stream), QILIN_OK) << qilin_last_error();
    ASSERT_EQ(qilin_stream_synchronize(w.stream), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(Output(w), Expected(1.0f));
    /* replay on another stream of the same device */
    FillInput(w, 5.0f);
    ASSERT_EQ(qilin_graph_launch(g, other.stream), QILIN_OK) << qilin_last_error();
    ASSERT_EQ(qilin_stream_synchronize(other.stream), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(Output(w), Expected(5.0f));
    EXPECT_EQ(qilin_graph_destroy(g), QILIN_OK);
}

TEST(Graph, MisuseIsNamed) {
    QILIN_REQUIRE_DEVICES(1);
    Buffers w;
    ASSERT_TRUE(w.ok) << qilin_last_error();
    qilin_graph *g = nullptr;
    EXPECT_EQ(qilin_stream_begin_capture(nullptr), QILIN_ERR_INVALID_ARGUMENT);
    ExpectContains(qilin_last_error(), "default stream");
    EXPECT_EQ(qilin_stream_end_capture(w.stream, &g), QILIN_ERR_INVALID_ARGUMENT);
    ExpectContains(qilin_last_error(), "not capturing");
    ASSERT_EQ(qilin_stream_begin_capture(w.stream), QILIN_OK);
    EXPECT_EQ(qilin_stream_begin_capture(w.stream), QILIN_ERR_INVALID_ARGUMENT);
    ExpectContains(qilin_last_error(), "already capturing");
    ASSERT_EQ(qilin_stream_end_capture(w.stream, &g), QILIN_OK) << qilin_last_error();
    EXPECT_EQ(qilin_graph_nodes(g), 0u);
    EXPECT_EQ(qilin_graph_launch(nullptr, w.stream), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_graph_launch(g, w.stream), QILIN_OK) << qilin_last_error(); /* empty graph */
    EXPECT_EQ(qilin_graph_destroy(g), QILIN_OK);
}

} // namespace
