/* tempdir.h — a temporary directory of this test process's own.
 *
 * Tests that write files put them under process_temp_dir(): a fresh
 * mkdtemp directory under $TMPDIR (or /tmp), so two runs at once (the sim
 * and asan suites, two checkouts on one machine, ctest -j) never share a
 * file name. It is removed with everything in it when the process exits. */
#ifndef QILIN_TESTS_TEMPDIR_H
#define QILIN_TESTS_TEMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

namespace tempdir_detail {
inline int remove_entry(const char *path, const struct stat *, int, struct FTW *) { return remove(path); }

struct Dir {
    std::string path;
    Dir() {
        const char *base = getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/qilin_test_XXXXXX";
        if (!mkdtemp(&tmpl[0])) {
            perror("tempdir.h: mkdtemp");
            abort();
        }
        path = tmpl;
    }
    ~Dir() { nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS); }
};
} // namespace tempdir_detail

/* The directory, with a trailing '/'. */
inline std::string process_temp_dir() {
    static tempdir_detail::Dir dir;
    return dir.path + "/";
}

#endif /* QILIN_TESTS_TEMPDIR_H */
