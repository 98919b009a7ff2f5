/* fileio.c — opening files that must be regular files (see fileio.h). */
#define _GNU_SOURCE /* O_CLOEXEC, fdopen, S_ISSOCK */
#include "host/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

static qilin_status not_regular(const char *path, mode_t m) {
    return qilin_error(QILIN_ERR_IO, "%s: is %s, not a regular file", path, kind_of(m));
}

qilin_status qilin_file_open(const char *path, int *fd, size_t *size) {
    *fd = -1;
    struct stat sb;
    if (stat(path, &sb) != 0) return qilin_error(QILIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return not_regular(path, sb.st_mode);
    /* O_NONBLOCK: if the path became a FIFO since stat(), open() returns instead of waiting. */
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f < 0) return qilin_error(QILIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(f, &sb) != 0 || !S_ISREG(sb.st_mode)) { /* swapped since stat() */
        qilin_status s = S_ISREG(sb.st_mode)
                             ? qilin_error(QILIN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno))
                             : not_regular(path, sb.st_mode);
        close(f);
        return s;
    }
    int flags = fcntl(f, F_GETFL);
    if (flags >= 0) fcntl(f, F_SETFL, flags & ~O_NONBLOCK);
    *fd = f;
    *size = (size_t)sb.st_size;
    return QILIN_OK;
}

qilin_status qilin_file_fopen(const char *path, FILE **out) {
    *out = NULL;
    int fd;
    size_t size;
    QILIN_TRY(qilin_file_open(path, &fd, &size));
    *out = fdopen(fd, "rb");
    if (*out) return QILIN_OK;
    close(fd);
    return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: cannot open a stream", path);
}

qilin_status qilin_file_read(const char *path, size_t max_bytes, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd;
    size_t size;
    QILIN_TRY(qilin_file_open(path, &fd, &size));
    if (size > max_bytes) {
        close(fd);
        return qilin_error(QILIN_ERR_FORMAT, "%s: %zu bytes, larger than the %zu bytes allowed", path, size,
                           max_bytes);
    }
    char *b = malloc(size + 1);
    if (!b) {
        close(fd);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: %zu bytes", path, size + 1);
    }
    size_t got = 0;
    int err = 0;
    while (got < size) { /* the size came from fstat; a file that shrinks meanwhile ends the read early */
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (err) {
        free(b);
        return qilin_error(QILIN_ERR_IO, "%s: read failed: %s", path, strerror(err));
    }
    b[got] = 0;
    *buf = b;
    *len = got;
    return QILIN_OK;
}

bool qilin_file_find_single(const char *dir, const char *suffix, char *out, size_t cap) {
    DIR *dp = opendir(dir);
    if (!dp) return false;
    size_t k = strlen(suffix);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t n = strlen(e->d_name);
        if (n > k && !strcmp(e->d_name + n - k, suffix) && found++ == 0)
            if ((size_t)snprintf(out, cap, "%s/%s", dir, e->d_name) >= cap) found = 2;
    }
    closedir(dp);
    return found == 1;
}
