// test_safetensors.cpp — the safetensors reader on files written by the test:
// a round trip over every dtype, one test per rejection rule (status and a
// message naming the file and tensor), sharded checkpoints, and a seeded
// mutation loop that must never crash (run under ASan in CI).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <sys/stat.h>
#include <vector>

#include "host/safetensors.h"
#include "tempdir.h"
#include "test_util.h"

namespace {

std::string temp_path(const std::string &name) { return process_temp_dir() + "qilin_st_" + name; }

// Unlink first: rewriting a file in place by truncation makes ext4 flush it on
// close (auto_da_alloc), which turns the mutation loops from ms into seconds.
void write_bytes(const std::string &path, const std::string &bytes) {
    unlink(path.c_str());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), (std::streamsize)bytes.size());
}

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; i++) s[i] = (char)(v >> (8 * i));
    return s;
}

// A file image: header length, header JSON, data.
std::string image(const std::string &header, const std::string &data) {
    return le64(header.size()) + header + data;
}

std::string write_st(const std::string &name, const std::string &header, const std::string &data) {
    std::string path = temp_path(name);
    write_bytes(path, image(header, data));
    return path;
}

// Expects `path` to be rejected as malformed with a message naming `what`s.
void expect_reject(const std::string &path, std::initializer_list<const char *> what) {
    st_file *f = nullptr;
    qilin_status s = st_open(path.c_str(), &f);
    EXPECT_EQ(s, QILIN_ERR_FORMAT) << qilin_last_error();
    EXPECT_EQ(f, nullptr);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const char *w : what)
        EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
    st_close(f);
}

// Header of the valid multi-dtype file; data is bytes 0..(n-1).
const char *kValidHeader = R"({"__metadata__":{"format":"pt","note":"hi"},)"
                           R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                           R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},)"
                           R"("s":{"dtype":"I64","shape":[],"data_offsets":[32,40]},)"
                           R"("e":{"dtype":"F8_E4M3","shape":[2,2,1,1,1,1,1,2],"data_offsets":[40,48]},)"
                           R"("z":{"dtype":"BOOL","shape":[0,5],"data_offsets":[48,48]},)"
                           R"("d":{"dtype":"F64","shape":[1],"data_offsets":[48,56]},)"
                           R"("h":{"dtype":"F16","shape":[1],"data_offsets":[56,58]},)"
                           R"("i16":{"dtype":"I16","shape":[1],"data_offsets":[58,60]},)"
                           R"("i32":{"dtype":"I32","shape":[1],"data_offsets":[60,64]},)"
                           R"("i8":{"dtype":"I8","shape":[1],"data_offsets":[64,65]},)"
                           R"("u8":{"dtype":"U8","shape":[3],"data_offsets":[65,68]}})";

std::string counting_bytes(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = (char)i;
    return s;
}

TEST(Safetensors, RoundTripAllDtypes) {
    std::string path = write_st("valid.safetensors", kValidHeader, counting_bytes(68));
    st_file *f = nullptr;
    QILIN_ASSERT_OK(st_open(path.c_str(), &f));
    EXPECT_EQ(st_tensor_count(f), 11);
    EXPECT_STREQ(st_path(f), path.c_str());

    const st_tensor *w;
    QILIN_ASSERT_OK(st_get(f, "w", &w));
    EXPECT_EQ(w->dtype, ST_F32);
    ASSERT_EQ(w->ndim, 2);
    EXPECT_EQ(w->shape[0], 2);
    EXPECT_EQ(w->shape[1], 3);
    EXPECT_EQ(w->nbytes, 24u);
    EXPECT_EQ(((const uint8_t *)w->data)[5], 5);

    const st_tensor *e = st_find(f, "e");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->dtype, ST_F8_E4M3);
    EXPECT_EQ(e->ndim, 8);
    EXPECT_EQ(((const uint8_t *)e->data)[0], 40);
    EXPECT_EQ(st_find(f, "s")->ndim, 0);
    EXPECT_EQ(st_find(f, "s")->nbytes, 8u);
    EXPECT_EQ(st_find(f, "z")->nbytes, 0u);
    EXPECT_EQ(st_find(f, "u8")->dtype, ST_U8);
    EXPECT_EQ(((const uint8_t *)st_find(f, "u8")->data)[2], 67);
    EXPECT_EQ(st_find(f, "i16")->dtype, ST_I16);
    EXPECT_EQ(st_find(f, "d")->dtype, ST_F64);
    EXPECT_EQ(st_find(f, "missing"), nullptr);

    // Iteration is in data order, and the data pointers tile the buffer.
    const uint8_t *at = (const uint8_t *)st_tensor_at(f, 0)->data;
    for (int i = 0; i < st_tensor_count(f); i++) {
        EXPECT_EQ((const uint8_t *)st_tensor_at(f, i)->data, at);
        at += st_tensor_at(f, i)->nbytes;
    }

    EXPECT_EQ(st_metadata_count(f), 2);
    EXPECT_STREQ(st_metadata_get(f, "format"), "pt");
    EXPECT_EQ(st_metadata_get(f, "absent"), nullptr);
    const char *k, *v;
    st_metadata_at(f, 1, &k, &v);
    EXPECT_NE(k, nullptr);

    const st_tensor *none;
    EXPECT_EQ(st_get(f, "nope", &none), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("nope"), std::string::npos);
    st_close(f);
    st_close(nullptr);
}

TEST(Safetensors, MissingFileIsIoError) {
    st_file *f = nullptr;
    EXPECT_EQ(st_open(temp_path("does-not-exist").c_str(), &f), QILIN_ERR_IO);
    EXPECT_NE(std::string(qilin_last_error()).find("does-not-exist"), std::string::npos);
}

TEST(Safetensors, RejectsShortFile) {
    std::string path = temp_path("short.safetensors");
    write_bytes(path, std::string("\x02\0\0", 3));
    expect_reject(path, {"shorter than"});
}

TEST(Safetensors, RejectsHugeHeaderLength) {
    std::string path = temp_path("huge.safetensors");
    write_bytes(path, le64(200000000) + "{}");
    expect_reject(path, {"header length 200000000"});
}

TEST(Safetensors, RejectsHeaderPastEnd) {
    std::string path = temp_path("pastend.safetensors");
    write_bytes(path, le64(100) + "{}");
    expect_reject(path, {"past the end"});
}

TEST(Safetensors, RejectsInvalidJson) {
    expect_reject(write_st("badjson.safetensors", R"({"a":{"dtype":"F32",)", ""), {"invalid"});
}

TEST(Safetensors, RejectsNonObjectHeader) {
    expect_reject(write_st("array.safetensors", "[1,2]", ""), {"not an object"});
}

TEST(Safetensors, RejectsUnknownDtype) {
    expect_reject(
        write_st("dtype.safetensors", R"({"t1":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", "xx"),
        {"'t1'", "unknown dtype 'F4'"});
}

TEST(Safetensors, RejectsNegativeDim) {
    expect_reject(
        write_st("neg.safetensors", R"({"t2":{"dtype":"U8","shape":[-2],"data_offsets":[0,2]}})", "xx"),
        {"'t2'", "shape[0]"});
}

TEST(Safetensors, RejectsTooManyDims) {
    expect_reject(write_st("dims.safetensors",
                           R"({"t3":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}})", "x"),
                  {"'t3'", "9 dims"});
}

TEST(Safetensors, RejectsShapeSpanMismatch) {
    expect_reject(
        write_st("span.safetensors", R"({"t4":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}})", "xxxx"),
        {"'t4'", "span 4 bytes"});
}

TEST(Safetensors, RejectsHugeShapeWithoutOverflow) {
    expect_reject(
        write_st("ovf.safetensors",
                 R"({"t5":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})", ""),
        {"'t5'"});
}

TEST(Safetensors, RejectsOffsetsOutOfBounds) {
    expect_reject(
        write_st("oob.safetensors", R"({"t6":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", "xxxx"),
        {"'t6'", "past the 4-byte data buffer"});
}

TEST(Safetensors, RejectsEndBeforeBegin) {
    expect_reject(
        write_st("rev.safetensors", R"({"t7":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", "xxxx"),
        {"'t7'", "end 2 < begin 4"});
}

TEST(Safetensors, RejectsOverlap) {
    expect_reject(write_st("overlap.safetensors",
                           R"({"a1":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("a2":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                           "xxxxxx"),
                  {"'a2'", "overlaps tensor 'a1'"});
}

TEST(Safetensors, RejectsHoleBetweenSpans) {
    expect_reject(write_st("hole.safetensors",
                           R"({"b2":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                           R"("b1":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                           "xxxxxx"),
                  {"'b2'", "hole"});
}

TEST(Safetensors, RejectsTrailingBytes) {
    expect_reject(
        write_st("trail.safetensors", R"({"c1":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "xxxx"),
        {"'c1'", "2 trailing bytes"});
}

TEST(Safetensors, RejectsDuplicateNames) {
    expect_reject(write_st("dup.safetensors",
                           R"({"twin":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                           R"("twin":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                           "xx"),
                  {"duplicate", "twin"});
}

TEST(Safetensors, RejectsNonStringMetadata) {
    expect_reject(write_st("meta.safetensors", R"({"__metadata__":{"step":3}})", ""),
                  {"__metadata__", "'step'"});
    expect_reject(write_st("meta2.safetensors", R"({"__metadata__":["x"]})", ""), {"__metadata__"});
}

TEST(Safetensors, RejectsMalformedEntries) {
    expect_reject(write_st("e1.safetensors", R"({"n1":[1]})", ""), {"'n1'", "not an object"});
    expect_reject(write_st("e2.safetensors", R"({"n2":{"shape":[1],"data_offsets":[0,1]}})", "x"),
                  {"'n2'", "dtype"});
    expect_reject(write_st("e3.safetensors", R"({"n3":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"),
                  {"'n3'", "data_offsets"});
    expect_reject(
        write_st("e4.safetensors", R"({"n4":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", "x"),
        {"'n4'", "shape[0]"});
}

// ---- sharded checkpoints ----

std::string make_dir(const std::string &name) {
    std::string dir = temp_path(name);
    mkdir(dir.c_str(), 0755);
    return dir;
}

const char *kShard1 = R"({"model.a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("model.b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
const char *kShard2 = R"({"lm_head":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})";

void write_shards(const std::string &dir) {
    write_bytes(dir + "/model-00001-of-00002.safetensors", image(kShard1, counting_bytes(11)));
    write_bytes(dir + "/model-00002-of-00002.safetensors", image(kShard2, counting_bytes(8)));
}

void write_index(const std::string &dir, const std::string &weight_map) {
    write_bytes(dir + "/model.safetensors.index.json",
                R"({"metadata":{"total_size":19},"weight_map":)" + weight_map + "}");
}

TEST(Safetensors, ShardedCheckpoint) {
    std::string dir = make_dir("sharded");
    write_shards(dir);
    write_index(
        dir, R"({"model.a":"model-00001-of-00002.safetensors","model.b":"model-00001-of-00002.safetensors",)"
             R"("lm_head":"model-00002-of-00002.safetensors"})");
    st_checkpoint *c = nullptr;
    QILIN_ASSERT_OK(st_checkpoint_open(dir.c_str(), &c));
    EXPECT_EQ(st_checkpoint_tensor_count(c), 3);
    EXPECT_EQ(st_checkpoint_file_count(c), 2);                    // each shard opened once
    EXPECT_STREQ(st_checkpoint_tensor_at(c, 0)->name, "lm_head"); // sorted by name
    const st_tensor *t;
    QILIN_ASSERT_OK(st_checkpoint_get(c, "lm_head", &t));
    EXPECT_EQ(t->dtype, ST_BF16);
    EXPECT_NE(std::string(t->file).find("00002"), std::string::npos);
    QILIN_ASSERT_OK(st_checkpoint_get(c, "model.b", &t));
    EXPECT_EQ(((const uint8_t *)t->data)[0], 8);
    EXPECT_EQ(st_checkpoint_get(c, "model.zzz", &t), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("model.zzz"), std::string::npos);
    st_checkpoint_close(c);
}

TEST(Safetensors, SingleFileCheckpointDirectory) {
    std::string dir = make_dir("single");
    write_bytes(dir + "/model.safetensors", image(kShard2, counting_bytes(8)));
    st_checkpoint *c = nullptr;
    QILIN_ASSERT_OK(st_checkpoint_open(dir.c_str(), &c));
    EXPECT_EQ(st_checkpoint_tensor_count(c), 1);
    EXPECT_NE(st_checkpoint_find(c, "lm_head"), nullptr);
    st_checkpoint_close(c);
}

void expect_checkpoint_reject(const std::string &dir, std::initializer_list<const char *> what) {
    st_checkpoint *c = nullptr;
    EXPECT_EQ(st_checkpoint_open(dir.c_str(), &c), QILIN_ERR_FORMAT) << qilin_last_error();
    EXPECT_EQ(c, nullptr);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
    for (const char *w : what)
        EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
}

TEST(Safetensors, RejectsIndexWithMissingShard) {
    std::string dir = make_dir("missing_shard");
    write_shards(dir);
    write_index(
        dir, R"({"model.a":"model-00001-of-00002.safetensors","extra":"model-00003-of-00003.safetensors"})");
    expect_checkpoint_reject(dir, {"'model-00003-of-00003.safetensors'", "'extra'", "missing"});
}

TEST(Safetensors, RejectsIndexTensorAbsentFromShard) {
    std::string dir = make_dir("absent_tensor");
    write_shards(dir);
    write_index(
        dir,
        R"({"model.a":"model-00001-of-00002.safetensors","lm_head":"model-00001-of-00002.safetensors"})");
    expect_checkpoint_reject(dir, {"'lm_head'", "'model-00001-of-00002.safetensors'", "does not contain"});
}

TEST(Safetensors, RejectsIndexWithBadShardName) {
    std::string dir = make_dir("bad_shard_name");
    write_shards(dir);
    write_index(dir, R"({"model.a":"../model-00001-of-00002.safetensors"})");
    expect_checkpoint_reject(dir, {"'model.a'", "plain shard file name"});
}

TEST(Safetensors, IndexNamesCorruptShard) {
    std::string dir = make_dir("corrupt_shard");
    write_shards(dir);
    write_bytes(dir + "/model-00002-of-00002.safetensors", "tiny");
    write_index(dir, R"({"lm_head":"model-00002-of-00002.safetensors"})");
    expect_checkpoint_reject(dir, {"'lm_head'", "shorter than"});
}

// ---- mutation loop ----

TEST(Safetensors, MutationsNeverCrash) {
    const std::string valid = image(kValidHeader, counting_bytes(68));
    const std::string path = temp_path("mutant.safetensors");
    std::mt19937 rng(12345);
    int ok = 0, rejected = 0;
    for (int iter = 0; iter < 3000; iter++) {
        std::string m = valid;
        int kind = (int)(rng() % 4);
        if (kind == 0) {
            m.resize(rng() % (m.size() + 1)); // truncate
        } else {
            int flips = 1 + (int)(rng() % 4);
            for (int k = 0; k < flips; k++) {
                // Bias toward the length prefix and the header, where parsing happens.
                size_t pos = (kind == 1 ? rng() % 8 : rng() % m.size());
                if (kind == 3)
                    m[pos] = "0123456789[]{}\",:-eE."[rng() % 21];
                else
                    m[pos] = (char)(m[pos] ^ (1u << (rng() % 8)));
            }
        }
        write_bytes(path, m);
        st_file *f = nullptr;
        qilin_status s = st_open(path.c_str(), &f);
        ASSERT_TRUE(s == QILIN_OK || s == QILIN_ERR_FORMAT) << iter << ": " << qilin_last_error();
        if (s == QILIN_OK) {
            ok++;
            // Touch every byte the reader hands out, so ASan sees any bad span.
            unsigned sum = 0;
            for (int i = 0; i < st_tensor_count(f); i++) {
                const st_tensor *t = st_tensor_at(f, i);
                for (size_t b = 0; b < t->nbytes; b++) sum += ((const uint8_t *)t->data)[b];
            }
            (void)sum;
        } else {
            rejected++;
            EXPECT_NE(std::string(qilin_last_error()).find(path), std::string::npos);
        }
        st_close(f);
    }
    std::printf("safetensors mutations: %d accepted, %d rejected\n", ok, rejected);
    EXPECT_GT(rejected, 0);
}

} // namespace
