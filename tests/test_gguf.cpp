// test_gguf.cpp — the GGUF reader on files built byte by byte in the test:
// every metadata type round-trips, tensor infos and sizes follow the ggml
// block table, each rejection rule gives QILIN_ERR_FORMAT with a message naming
// the file and the key/tensor, every truncation is rejected, and a seeded
// mutation loop never crashes (ASan in CI). Also parses a real vocab-only file.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "host/gguf.h"
#include "tempdir.h"
#include "test_util.h"

namespace {

std::string temp_path(const std::string &name) { return process_temp_dir() + "qilin_gguf_" + name; }

// Unlink first: rewriting a file in place by truncation makes ext4 flush it on
// close (auto_da_alloc), which turns the mutation loops from ms into seconds.
void write_bytes(const std::string &path, const std::string &bytes) {
    unlink(path.c_str());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), (std::streamsize)bytes.size());
}

// Little-endian byte writer with GGUF's encodings.
struct Bytes {
    std::string b;
    Bytes &raw(uint64_t v, int n) {
        for (int i = 0; i < n; i++) b.push_back((char)(v >> (8 * i)));
        return *this;
    }
    Bytes &u32(uint32_t v) { return raw(v, 4); }
    Bytes &u64(uint64_t v) { return raw(v, 8); }
    Bytes &str(const std::string &s) {
        u64(s.size());
        b += s;
        return *this;
    }
    Bytes &f32(float f) {
        uint32_t x;
        std::memcpy(&x, &f, 4);
        return u32(x);
    }
    Bytes &f64(double f) {
        uint64_t x;
        std::memcpy(&x, &f, 8);
        return u64(x);
    }
    Bytes &key(const std::string &k, gguf_type t) { return str(k).u32(t); }
};

struct TensorSpec {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t nbytes;
    int64_t offset = -1; // -1: next aligned offset
};

// A whole file: header, `kvs` (already encoded, `n_kvs` of them), tensors.
std::string gguf_image(const std::string &kvs, uint64_t n_kvs, std::vector<TensorSpec> tensors,
                       uint32_t alignment = 32, uint32_t version = 3) {
    Bytes out;
    out.b = "GGUF";
    out.u32(version).u64(tensors.size()).u64(n_kvs);
    out.b += kvs;
    uint64_t next = 0, end = 0;
    for (auto &t : tensors) {
        if (t.offset < 0) t.offset = (int64_t)next;
        next = (t.offset + t.nbytes + alignment - 1) / alignment * alignment;
        end = std::max<uint64_t>(end, t.offset + t.nbytes);
        out.str(t.name).u32((uint32_t)t.ne.size());
        for (uint64_t d : t.ne) out.u64(d);
        out.u32(t.type).u64((uint64_t)t.offset);
    }
    while (out.b.size() % alignment) out.b.push_back('\0');
    for (uint64_t i = 0; i < end; i++) out.b.push_back((char)(i * 7));
    return out.b;
}

std::string write_gguf(const std::string &name, const std::string &img) {
    std::string path = temp_path(name);
    write_bytes(path, img);
    return path;
}

void expect_reject(const std::string &path, std::initializer_list<const char *> what) {
    gguf_file *f = nullptr;
    EXPECT_EQ(gguf_open(path.c_str(), &f), QILIN_ERR_FORMAT) << qilin_last_error();
    EXPECT_EQ(f, nullptr);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const char *w : what)
        EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
    gguf_close(f);
}

// Every metadata type once, plus alignment 64.
std::string all_kvs(uint64_t *n) {
    Bytes k;
    k.key("general.architecture", GGUF_TYPE_STRING).str("llama");
    k.key("t.u8", GGUF_TYPE_UINT8).raw(200, 1);
    k.key("t.i8", GGUF_TYPE_INT8).raw(0xFE, 1);
    k.key("t.u16", GGUF_TYPE_UINT16).raw(60000, 2);
    k.key("t.i16", GGUF_TYPE_INT16).raw(0xFFFD, 2);
    k.key("t.u32", GGUF_TYPE_UINT32).u32(4000000000u);
    k.key("t.i32", GGUF_TYPE_INT32).u32((uint32_t)-5);
    k.key("t.f32", GGUF_TYPE_FLOAT32).f32(1.5f);
    k.key("t.bool", GGUF_TYPE_BOOL).raw(1, 1);
    k.key("t.u64", GGUF_TYPE_UINT64).u64(1ull << 40);
    k.key("t.i64", GGUF_TYPE_INT64).u64((uint64_t)-7);
    k.key("t.f64", GGUF_TYPE_FLOAT64).f64(-2.25);
    k.key("t.arr_i32", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_INT32).u64(3).u32(1).u32((uint32_t)-2).u32(3);
    k.key("t.arr_f32", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_FLOAT32).u64(2).f32(0.5f).f32(-1.0f);
    k.key("t.arr_str", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_STRING).u64(3).str("a").str("").str("hello");
    k.key("t.arr_empty", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_UINT8).u64(0);
    k.key("general.alignment", GGUF_TYPE_UINT32).u32(64);
    *n = 17;
    return k.b;
}

std::vector<TensorSpec> some_tensors() {
    return {
        {"token_embd.weight", {4, 3}, GGUF_DT_F32, 48},
        {"blk.0.ffn_down.weight", {512, 2}, GGUF_DT_Q4_K, 2 * 2 * 144},
        {"blk.0.attn_q.weight", {64, 1}, GGUF_DT_Q8_0, 2 * 34},
        {"blk.0.ffn_up.weight", {256, 1, 1, 2}, GGUF_DT_Q6_K, 2 * 210},
        {"output_norm.weight", {5}, GGUF_DT_BF16, 10},
        {"blk.0.q5", {32}, GGUF_DT_Q5_0, 22},
    };
}

std::string valid_image() {
    uint64_t n;
    std::string kvs = all_kvs(&n);
    return gguf_image(kvs, n, some_tensors(), 64);
}

TEST(Gguf, RoundTripMetadataAndTensors) {
    std::string path = write_gguf("valid.gguf", valid_image());
    gguf_file *f = nullptr;
    QILIN_ASSERT_OK(gguf_open(path.c_str(), &f));
    EXPECT_EQ(gguf_version(f), 3u);
    EXPECT_EQ(gguf_alignment(f), 64u);
    EXPECT_EQ(gguf_kv_count(f), 17);
    EXPECT_EQ(gguf_data_offset(f) % 64, 0u);

    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    gguf_str s;
    QILIN_ASSERT_OK(gguf_get_u8(f, "t.u8", &u8));
    EXPECT_EQ(u8, 200);
    QILIN_ASSERT_OK(gguf_get_i8(f, "t.i8", &i8));
    EXPECT_EQ(i8, -2);
    QILIN_ASSERT_OK(gguf_get_u16(f, "t.u16", &u16));
    EXPECT_EQ(u16, 60000);
    QILIN_ASSERT_OK(gguf_get_i16(f, "t.i16", &i16));
    EXPECT_EQ(i16, -3);
    QILIN_ASSERT_OK(gguf_get_u32(f, "t.u32", &u32));
    EXPECT_EQ(u32, 4000000000u);
    QILIN_ASSERT_OK(gguf_get_i32(f, "t.i32", &i32));
    EXPECT_EQ(i32, -5);
    QILIN_ASSERT_OK(gguf_get_f32(f, "t.f32", &f32));
    EXPECT_EQ(f32, 1.5f);
    QILIN_ASSERT_OK(gguf_get_bool(f, "t.bool", &b));
    EXPECT_TRUE(b);
    QILIN_ASSERT_OK(gguf_get_u64(f, "t.u64", &u64));
    EXPECT_EQ(u64, 1ull << 40);
    QILIN_ASSERT_OK(gguf_get_i64(f, "t.i64", &i64));
    EXPECT_EQ(i64, -7);
    QILIN_ASSERT_OK(gguf_get_f64(f, "t.f64", &f64));
    EXPECT_EQ(f64, -2.25);
    QILIN_ASSERT_OK(gguf_get_str(f, "general.architecture", &s));
    EXPECT_EQ(std::string(s.data, s.len), "llama");

    gguf_array a;
    QILIN_ASSERT_OK(gguf_get_array(f, "t.arr_i32", GGUF_TYPE_INT32, &a));
    ASSERT_EQ(a.count, 3u);
    EXPECT_EQ(gguf_array_int(&a, 1), -2);
    EXPECT_EQ(gguf_array_float(&a, 2), 3.0);
    QILIN_ASSERT_OK(gguf_get_array(f, "t.arr_f32", GGUF_TYPE_FLOAT32, &a));
    EXPECT_EQ(gguf_array_float(&a, 1), -1.0);
    QILIN_ASSERT_OK(gguf_get_array(f, "t.arr_str", GGUF_TYPE_STRING, &a));
    ASSERT_EQ(a.count, 3u);
    EXPECT_EQ(std::string(a.strs[2].data, a.strs[2].len), "hello");
    EXPECT_EQ(a.strs[1].len, 0u);
    QILIN_ASSERT_OK(gguf_get_array(f, "t.arr_empty", GGUF_TYPE_UINT8, &a));
    EXPECT_EQ(a.count, 0u);

    // Iteration in file order.
    EXPECT_STREQ(gguf_kv_at(f, 0)->key, "general.architecture");
    EXPECT_EQ(gguf_kv_at(f, 17), nullptr);

    ASSERT_EQ(gguf_tensor_count(f), 6);
    const gguf_tensor *t;
    QILIN_ASSERT_OK(gguf_get_tensor(f, "blk.0.ffn_down.weight", &t));
    EXPECT_EQ(t->type, GGUF_DT_Q4_K);
    EXPECT_EQ(t->n_dims, 2);
    EXPECT_EQ(t->ne[0], 512);
    EXPECT_EQ(t->ne[1], 2);
    EXPECT_EQ(t->ne[2], 1);
    EXPECT_EQ(t->nbytes, 576u);
    EXPECT_EQ(t->offset % 64, 0u);
    EXPECT_EQ((const uint8_t *)t->data, (const uint8_t *)gguf_tensor_at(f, 0)->data + t->offset);
    EXPECT_EQ(gguf_find_tensor(f, "blk.0.ffn_up.weight")->nbytes, 420u);
    EXPECT_EQ(gguf_find_tensor(f, "output_norm.weight")->nbytes, 10u);
    EXPECT_EQ(gguf_find_tensor(f, "nope"), nullptr);
    EXPECT_EQ(gguf_get_tensor(f, "nope", &t), QILIN_ERR_FORMAT);
    gguf_close(f);
    gguf_close(nullptr);
}

TEST(Gguf, BlockTable) {
    size_t bytes;
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q8_0, &bytes), 32);
    EXPECT_EQ(bytes, 34u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q2_K, &bytes), 256);
    EXPECT_EQ(bytes, 84u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q3_K, &bytes), 256);
    EXPECT_EQ(bytes, 110u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q5_K, &bytes), 256);
    EXPECT_EQ(bytes, 176u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q8_K, &bytes), 256);
    EXPECT_EQ(bytes, 292u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q4_1, &bytes), 32);
    EXPECT_EQ(bytes, 20u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_Q5_1, &bytes), 32);
    EXPECT_EQ(bytes, 24u);
    EXPECT_EQ(gguf_dtype_block(GGUF_DT_F64, &bytes), 1);
    EXPECT_EQ(bytes, 8u);
    EXPECT_EQ(gguf_dtype_block((gguf_dtype)16, &bytes), 0);
}

TEST(Gguf, VersionTwoAndDefaultAlignment) {
    Bytes k;
    k.key("a", GGUF_TYPE_UINT32).u32(1);
    std::string path = write_gguf("v2.gguf", gguf_image(k.b, 1, {{"x", {8}, GGUF_DT_F16, 16}}, 32, 2));
    gguf_file *f = nullptr;
    QILIN_ASSERT_OK(gguf_open(path.c_str(), &f));
    EXPECT_EQ(gguf_version(f), 2u);
    EXPECT_EQ(gguf_alignment(f), 32u);
    EXPECT_EQ(gguf_data_offset(f) % 32, 0u);
    gguf_close(f);
}

TEST(Gguf, TypedGetterMismatchNamesKeyAndType) {
    std::string path = write_gguf("getters.gguf", valid_image());
    gguf_file *f = nullptr;
    QILIN_ASSERT_OK(gguf_open(path.c_str(), &f));
    uint32_t v;
    EXPECT_EQ(gguf_get_u32(f, "t.i32", &v), QILIN_ERR_FORMAT);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find("'t.i32' is int32, not uint32"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(gguf_get_u32(f, "t.arr_str", &v), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("array of string"), std::string::npos)
        << qilin_last_error();
    gguf_array a;
    EXPECT_EQ(gguf_get_array(f, "t.arr_str", GGUF_TYPE_INT32, &a), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("not array of int32"), std::string::npos);
    EXPECT_EQ(gguf_get_u32(f, "no.such.key", &v), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("'no.such.key' not found"), std::string::npos);
    gguf_close(f);
}

// ---- rejections ----

std::string one_kv(const std::string &kv) { return gguf_image(kv, 1, {}); }

TEST(Gguf, RejectsBadMagicAndVersion) {
    std::string img = valid_image();
    img[0] = 'X';
    expect_reject(write_gguf("magic.gguf", img), {"not a GGUF file"});
    img = valid_image();
    img[4] = 1;
    expect_reject(write_gguf("v1.gguf", img), {"version 1"});
    expect_reject(write_gguf("empty.gguf", ""), {"magic", "past end of file"});
}

TEST(Gguf, RejectsHugeCounts) {
    Bytes b;
    b.b = "GGUF";
    b.u32(3).u64(0).u64(1ull << 60);
    expect_reject(write_gguf("kvcount.gguf", b.b),
                  {"1152921504606846976 metadata entries", "past end of file"});
    Bytes t;
    t.b = "GGUF";
    t.u32(3).u64(1ull << 40).u64(0);
    expect_reject(write_gguf("tcount.gguf", t.b), {"1099511627776 tensor infos"});
}

TEST(Gguf, RejectsStringArrayPastEnd) {
    Bytes k;
    k.key("a.b", GGUF_TYPE_UINT8).raw(1, 1);
    k.key("tokenizer.ggml.tokens", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_STRING).u64(151936).str("x");
    expect_reject(write_gguf("strarr.gguf", gguf_image(k.b, 2, {})),
                  {"metadata key 1 ('tokenizer.ggml.tokens')",
                   "array of 151936 strings runs past end of file at byte"});
}

TEST(Gguf, RejectsStringInArrayPastEnd) {
    Bytes k;
    k.key("toks", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_STRING).u64(2).str("ok").u64(1000).u64(0).u64(0);
    expect_reject(write_gguf("strarr2.gguf", gguf_image(k.b, 1, {})),
                  {"'toks'", "string 1 of an array of 2"});
}

TEST(Gguf, RejectsKeyLengthPastEnd) {
    Bytes k;
    k.u64(1ull << 62).b += "abc";
    expect_reject(write_gguf("keylen.gguf", gguf_image(k.b, 1, {})),
                  {"metadata key 0", "key (4611686018427387904 bytes) runs past end of file"});
}

TEST(Gguf, RejectsNumericArrayPastEnd) {
    Bytes k;
    k.key("nums", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_UINT64).u64(1ull << 61).u64(5);
    expect_reject(write_gguf("numarr.gguf", gguf_image(k.b, 1, {})),
                  {"'nums'", "array of 2305843009213693952 uint64"});
}

TEST(Gguf, RejectsBadValueTypes) {
    Bytes k1;
    k1.key("weird", (gguf_type)13).u32(0);
    expect_reject(write_gguf("vtype.gguf", one_kv(k1.b)), {"'weird'", "unknown value type 13"});
    Bytes k2;
    k2.key("nested", GGUF_TYPE_ARRAY).u32(GGUF_TYPE_ARRAY).u64(0);
    expect_reject(write_gguf("nested.gguf", one_kv(k2.b)), {"'nested'", "nested array"});
    Bytes k3;
    k3.key("flag", GGUF_TYPE_BOOL).raw(2, 1);
    expect_reject(write_gguf("bool.gguf", one_kv(k3.b)), {"'flag'", "neither 0 nor 1"});
    Bytes k4;
    k4.key(std::string("nul\0key", 7), GGUF_TYPE_UINT8).raw(0, 1);
    expect_reject(write_gguf("nulkey.gguf", one_kv(k4.b)), {"metadata key 0", "NUL"});
}

TEST(Gguf, RejectsDuplicateKey) {
    Bytes k;
    k.key("dup.key", GGUF_TYPE_UINT8).raw(1, 1).key("dup.key", GGUF_TYPE_UINT8).raw(2, 1);
    expect_reject(write_gguf("dupkey.gguf", gguf_image(k.b, 2, {})), {"duplicate metadata key 'dup.key'"});
}

TEST(Gguf, RejectsBadAlignment) {
    Bytes k1;
    k1.key("general.alignment", GGUF_TYPE_UINT64).u64(32);
    expect_reject(write_gguf("align_type.gguf", one_kv(k1.b)), {"'general.alignment' is uint64"});
    Bytes k2;
    k2.key("general.alignment", GGUF_TYPE_UINT32).u32(48);
    expect_reject(write_gguf("align_pow2.gguf", one_kv(k2.b)), {"'general.alignment'", "power of two"});
}

TEST(Gguf, RejectsBadTensorInfos) {
    expect_reject(write_gguf("ndims.gguf", gguf_image("", 0, {{"t.five", {1, 1, 1, 1, 1}, GGUF_DT_F32, 4}})),
                  {"'t.five'", "n_dims 5"});
    expect_reject(write_gguf("gtype.gguf", gguf_image("", 0, {{"t.iq", {256}, 16, 0}})),
                  {"'t.iq'", "ggml type 16"});
    expect_reject(write_gguf("block.gguf", gguf_image("", 0, {{"t.q4k", {100, 2}, GGUF_DT_Q4_K, 0}})),
                  {"'t.q4k'", "not a multiple of the Q4_K block size 256"});
    expect_reject(write_gguf("unaligned.gguf", gguf_image("", 0, {{"t.off", {4}, GGUF_DT_F32, 16, 8}})),
                  {"'t.off'", "not a multiple of the alignment 32"});
    expect_reject(write_gguf("bigdim.gguf", gguf_image("", 0, {{"t.big", {1ull << 63}, GGUF_DT_F32, 0}})),
                  {"'t.big'", "out of range"});
    expect_reject(
        write_gguf("huge.gguf",
                   gguf_image("", 0, {{"t.huge", {1ull << 40, 1ull << 40, 1ull << 40}, GGUF_DT_F32, 0}})),
        {"'t.huge'", "exceed"});
}

TEST(Gguf, RejectsDuplicateTensorName) {
    expect_reject(
        write_gguf("duptensor.gguf",
                   gguf_image("", 0, {{"same", {4}, GGUF_DT_F32, 16}, {"same", {4}, GGUF_DT_F32, 16}})),
        {"duplicate tensor name 'same'"});
}

TEST(Gguf, RejectsTensorDataPastEnd) {
    std::string img = gguf_image("", 0, {{"tail", {64}, GGUF_DT_F32, 256}});
    img.resize(img.size() - 1);
    expect_reject(write_gguf("datapast.gguf", img), {"'tail'", "past end of file"});
}

TEST(Gguf, RejectsOverlappingTensors) {
    expect_reject(write_gguf("overlap.gguf", gguf_image("", 0,
                                                        {{"first", {16}, GGUF_DT_F32, 64, 0},
                                                         {"second", {16}, GGUF_DT_F32, 64, 32}})),
                  {"'second'", "overlaps tensor 'first'"});
}

TEST(Gguf, EveryTruncationIsRejected) {
    const std::string img = valid_image();
    const std::string path = temp_path("trunc.gguf");
    for (size_t n = 0; n < img.size(); n++) {
        write_bytes(path, img.substr(0, n));
        gguf_file *f = nullptr;
        ASSERT_EQ(gguf_open(path.c_str(), &f), QILIN_ERR_FORMAT) << "length " << n;
        std::string msg = qilin_last_error();
        ASSERT_NE(msg.find(path), std::string::npos) << msg;
        ASSERT_NE(msg.find("past end of file"), std::string::npos) << "length " << n << ": " << msg;
    }
}

TEST(Gguf, MutationsNeverCrash) {
    const std::string valid = valid_image();
    const std::string path = temp_path("mutant.gguf");
    std::mt19937 rng(4242);
    int ok = 0, rejected = 0;
    for (int iter = 0; iter < 3000; iter++) {
        std::string m = valid;
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = rng() % m.size();
            if (rng() % 2)
                m[pos] = (char)(m[pos] ^ (1u << (rng() % 8)));
            else
                m[pos] = (char)rng();
        }
        if (rng() % 4 == 0) m.resize(rng() % (m.size() + 1));
        write_bytes(path, m);
        gguf_file *f = nullptr;
        qilin_status s = gguf_open(path.c_str(), &f);
        ASSERT_TRUE(s == QILIN_OK || s == QILIN_ERR_FORMAT) << iter << ": " << qilin_last_error();
        if (s == QILIN_OK) {
            ok++;
            unsigned sum = 0; // touch everything handed out, for ASan
            for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
                const gguf_tensor *t = gguf_tensor_at(f, i);
                for (size_t b = 0; b < t->nbytes; b++) sum += ((const uint8_t *)t->data)[b];
            }
            for (int64_t i = 0; i < gguf_kv_count(f); i++) {
                const gguf_kv *kv = gguf_kv_at(f, i);
                if (kv->type == GGUF_TYPE_STRING && kv->v.str.len)
                    sum += (uint8_t)kv->v.str.data[kv->v.str.len - 1];
                if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type == GGUF_TYPE_STRING)
                    for (uint64_t j = 0; j < kv->v.arr.count; j++)
                        if (kv->v.arr.strs[j].len)
                            sum += (uint8_t)kv->v.arr.strs[j].data[kv->v.arr.strs[j].len - 1];
                if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type != GGUF_TYPE_STRING && kv->v.arr.count)
                    sum += (unsigned)gguf_array_float(&kv->v.arr, kv->v.arr.count - 1);
            }
            (void)sum;
        } else {
            rejected++;
        }
        gguf_close(f);
    }
    std::printf("gguf mutations: %d accepted, %d rejected\n", ok, rejected);
    EXPECT_GT(rejected, 0);
}

// ---- a real file (llama.cpp's vocab-only GPT-NeoX test vector) ----

TEST(Gguf, RealVocabFileGptNeox) {
    const char *path = QILIN_SOURCE_DIR "/tests/fixtures/gguf/ggml-vocab-gpt-neox.gguf";
    gguf_file *f = nullptr;
    QILIN_ASSERT_OK(gguf_open(path, &f));
    EXPECT_EQ(gguf_version(f), 3u);
    EXPECT_EQ(gguf_tensor_count(f), 0);
    EXPECT_EQ(gguf_kv_count(f), 17);
    gguf_str arch;
    QILIN_ASSERT_OK(gguf_get_str(f, "general.architecture", &arch));
    EXPECT_EQ(std::string(arch.data, arch.len), "gptneox");
    uint32_t v;
    QILIN_ASSERT_OK(gguf_get_u32(f, "gptneox.embedding_length", &v));
    EXPECT_EQ(v, 6144u);
    QILIN_ASSERT_OK(gguf_get_u32(f, "gptneox.block_count", &v));
    EXPECT_EQ(v, 44u);
    bool par;
    QILIN_ASSERT_OK(gguf_get_bool(f, "gptneox.use_parallel_residual", &par));
    EXPECT_TRUE(par);
    float eps;
    QILIN_ASSERT_OK(gguf_get_f32(f, "gptneox.attention.layer_norm_epsilon", &eps));
    EXPECT_NEAR(eps, 1e-5, 1e-9);
    gguf_array toks, types, merges;
    QILIN_ASSERT_OK(gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks));
    EXPECT_EQ(toks.count, 50432u);
    EXPECT_EQ(std::string(toks.strs[0].data, toks.strs[0].len), "<|endoftext|>");
    QILIN_ASSERT_OK(gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types));
    EXPECT_EQ(types.count, 50432u);
    EXPECT_EQ(gguf_array_int(&types, 0), 3); // control token
    QILIN_ASSERT_OK(gguf_get_array(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges));
    EXPECT_EQ(merges.count, 50009u);
    gguf_close(f);
}

} // namespace
