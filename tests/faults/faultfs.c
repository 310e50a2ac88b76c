/*
 * faultfs: failing disk calls for Fjord's fault tests, loaded into the real broker binary
 * with LD_PRELOAD. Nothing in the broker knows about it.
 *
 * FJORD_FAULTS names a control directory. While a file named after a call family exists
 * there, that family fails with EIO for every file whose path matches the shell pattern
 * (fnmatch) on the file's first line:
 *
 *   <dir>/fsync   fsync, fdatasync, syncfs
 *   <dir>/write   write, writev, pwrite, pwritev (and their 64-bit names)
 *
 * The pattern is the control file's first line, unquoted (an empty file matches every
 * file): to fail the fsyncs of segment files only, write the pattern STAR/segments/STAR
 * (STAR being '*') to $FJORD_FAULTS/fsync. A second line may name the error instead of EIO:
 * ENOSPC (a full disk: a write or writev first writes half of its first buffer, as a write
 * the disk filled up in the middle of returns a short count, and fails on the next call) or
 * EDQUOT. Removing the control file stops the faults. Each
 * injected failure appends one line to <dir>/injected.log, so a test can tell that the
 * fault was hit. Sockets and pipes never match a pattern that names a directory.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* The errno to fail with, or 0. */
static int should_fail(const char *family, int fd) {
    const char *dir = getenv("FJORD_FAULTS");
    if (dir == NULL || fd < 0) return 0;
    char ctl[PATH_MAX];
    snprintf(ctl, sizeof ctl, "%s/%s", dir, family);
    int saved = errno;
    FILE *f = fopen(ctl, "re");
    if (f == NULL) {
        errno = saved;
        return 0;
    }
    char pattern[PATH_MAX] = "", error[32] = "";
    if (fgets(pattern, sizeof pattern, f) == NULL) pattern[0] = '\0';
    if (fgets(error, sizeof error, f) == NULL) error[0] = '\0';
    fclose(f);
    pattern[strcspn(pattern, "\r\n")] = '\0';
    error[strcspn(error, "\r\n")] = '\0';
    int code = EIO;
    if (strcmp(error, "ENOSPC") == 0) code = ENOSPC;
    else if (strcmp(error, "EDQUOT") == 0) code = EDQUOT;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    errno = saved;
    if (n < 0) return 0;
    path[n] = '\0';
    if (fnmatch(pattern[0] ? pattern : "*", path, 0) != 0) return 0;
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/injected.log", dir);
    int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (lfd >= 0) {
        char line[PATH_MAX + 32];
        int len = snprintf(line, sizeof line, "%s %s %s\n", family, code == EIO ? "EIO" : error, path);
        /* The real write: this file never matches a test's pattern. */
        ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
        if (real_write && len > 0) real_write(lfd, line, (size_t)len);
        close(lfd);
    }
    errno = saved;
    return code;
}

#define REAL(name, ret, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = dlsym(RTLD_NEXT, name)

int fsync(int fd) {
    REAL("fsync", int, int);
    int err = should_fail("fsync", fd);
    if (err) { errno = err; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    REAL("fdatasync", int, int);
    int err = should_fail("fsync", fd);
    if (err) { errno = err; return -1; }
    return real(fd);
}

int syncfs(int fd) {
    REAL("syncfs", int, int);
    int err = should_fail("fsync", fd);
    if (err) { errno = err; return -1; }
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL("write", ssize_t, int, const void *, size_t);
    int err = should_fail("write", fd);
    if (err == ENOSPC && count > 1) return real(fd, buf, count / 2);
    if (err) { errno = err; return -1; }
    return real(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL("writev", ssize_t, int, const struct iovec *, int);
    int err = should_fail("write", fd);
    if (err == ENOSPC && iovcnt > 0 && iov[0].iov_len > 1) {
        struct iovec half = { iov[0].iov_base, iov[0].iov_len / 2 };
        return real(fd, &half, 1);
    }
    if (err) { errno = err; return -1; }
    return real(fd, iov, iovcnt);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL("pwrite", ssize_t, int, const void *, size_t, off_t);
    int err = should_fail("write", fd);
    if (err) { errno = err; return -1; }
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL("pwrite64", ssize_t, int, const void *, size_t, off_t);
    int err = should_fail("write", fd);
    if (err) { errno = err; return -1; }
    return real(fd, buf, count, offset);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL("pwritev", ssize_t, int, const struct iovec *, int, off_t);
    int err = should_fail("write", fd);
    if (err) { errno = err; return -1; }
    return real(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL("pwritev64", ssize_t, int, const struct iovec *, int, off_t);
    int err = should_fail("write", fd);
    if (err) { errno = err; return -1; }
    return real(fd, iov, iovcnt, offset);
}
