/* launch_log_reader.h — the tests' reader of the launch log (cuda/launch_log.h).
 *
 * A test binary that reads the log names its file once, at namespace scope,
 * so the variable is set before the process's first launch (the log reads
 * QILIN_LAUNCH_LOG once, then):
 *
 *   const bool log_env_set = launch_log_to("launches.jsonl");
 *
 * read_launch_log() parses the whole file with the JSON library; a line that
 * is not a well-formed launch fails the test naming it. */
#pragma once

#include <jansson.h>
#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/tempdir.h"

struct LoggedLaunch {
    std::string kernel;
    std::string shape; /* grid, block and smem as the log wrote them: compares steps */
    std::string line;  /* the whole line, to copy a step's launches elsewhere */
    long long grid[3] = {0, 0, 0}, block[3] = {0, 0, 0}, smem = 0, step = 0;
    long long bytes = -1; /* -1: the launcher declared none */
    long long blocks() const { return grid[0] * grid[1] * grid[2]; }
    long long threads() const { return block[0] * block[1] * block[2]; }
};

/* The log file of this process (launch_log_to's name in its temp dir). */
inline std::string &launch_log_path() {
    static std::string path;
    return path;
}

/* Points QILIN_LAUNCH_LOG at `name` in this process's temp dir. */
inline bool launch_log_to(const char *name) {
    launch_log_path() = process_temp_dir() + name;
    return setenv("QILIN_LAUNCH_LOG", launch_log_path().c_str(), 1) == 0;
}

inline bool launch_log_int3(json_t *a, long long out[3]) {
    if (!json_is_array(a) || json_array_size(a) != 3) return false;
    for (int i = 0; i < 3; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v)) return false;
        out[i] = json_integer_value(v);
    }
    return true;
}

/* One line of the log; false (and a test failure naming line n) when it is not a launch. */
inline bool parse_launch(const std::string &text, int n, LoggedLaunch *l) {
    json_error_t err;
    json_t *o = json_loads(text.c_str(), 0, &err);
    EXPECT_TRUE(json_is_object(o)) << "launch log line " << n << ": " << err.text << ": " << text;
    if (!o) return false;
    json_t *k = json_object_get(o, "kernel"), *smem = json_object_get(o, "smem"), *step = json_object_get(o, "step"),
           *bytes = json_object_get(o, "bytes");
    bool ok = json_is_string(k) && launch_log_int3(json_object_get(o, "grid"), l->grid) &&
              launch_log_int3(json_object_get(o, "block"), l->block) && json_is_integer(smem) &&
              json_is_integer(step) && (!bytes || json_is_integer(bytes));
    EXPECT_TRUE(ok) << "launch log line " << n << " lacks a field or has one of the wrong type: " << text;
    if (ok) {
        l->kernel = json_string_value(k);
        l->smem = json_integer_value(smem);
        l->step = json_integer_value(step);
        l->bytes = bytes ? json_integer_value(bytes) : -1;
        size_t grid_at = text.find("\"grid\""), step_at = text.find(",\"step\"");
        l->shape = text.substr(grid_at, step_at - grid_at);
        l->line = text;
    }
    json_decref(o);
    return ok;
}

/* The launches logged after byte offset *from (the whole log when from is
 * NULL); *from moves to the end, so successive calls see only new launches. */
inline std::vector<LoggedLaunch> read_launch_log(std::streamoff *from = nullptr) {
    std::vector<LoggedLaunch> out;
    std::ifstream f(launch_log_path());
    if (!f) return out; /* no file before the process's first launch */
    if (from) f.seekg(*from);
    std::string text;
    for (int n = 1; std::getline(f, text); n++) {
        LoggedLaunch l;
        if (parse_launch(text, n, &l)) out.push_back(l);
    }
    if (from) {
        f.clear();
        f.seekg(0, std::ios::end);
        *from = f.tellg();
    }
    return out;
}

/* The launches of forward step `step`. */
inline std::vector<LoggedLaunch> launches_of_step(long long step) {
    std::vector<LoggedLaunch> out;
    for (const LoggedLaunch &l : read_launch_log())
        if (l.step == step) out.push_back(l);
    return out;
}
