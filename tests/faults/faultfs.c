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
 * (STAR being '*') to $FJORD_FAULTS/fsync. Removing the control file stops the faults. Each
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
    char pattern[PATH_MAX] = "";
    if (fgets(pattern, sizeof pattern, f) == NULL) pattern[0] = '\0';
    fclose(f);
    pattern[strcspn(pattern, "\r\n")] = '\0';
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
        int len = snprintf(line, sizeof line, "%s %s\n", family, path);
        /* The real write: this file never matches a test's pattern. */
        ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
        if (real_write && len > 0) real_write(lfd, line, (size_t)len);
        close(lfd);
    }
    errno = saved;
    return 1;
}

#define REAL(name, ret, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = dlsym(RTLD_NEXT, name)

int fsync(int fd) {
    REAL("fsync", int, int);
    if (should_fail("fsync", fd)) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    REAL("fdatasync", int, int);
    if (should_fail("fsync", fd)) { errno = EIO; return -1; }
    return real(fd);
}

int syncfs(int fd) {
    REAL("syncfs", int, int);
    if (should_fail("fsync", fd)) { errno = EIO; return -1; }
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL("write", ssize_t, int, const void *, size_t);
    if (should_fail("write", fd)) { errno = EIO; return -1; }
    return real(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL("writev", ssize_t, int, const struct iovec *, int);
    if (should_fail("write", fd)) { errno = EIO; return -1; }
    return real(fd, iov, iovcnt);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL("pwrite", ssize_t, int, const void *, size_t, off_t);
    if (should_fail("write", fd)) { errno = EIO; return -1; }
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL("pwrite64", ssize_t, int, const void *, size_t, off_t);
    if (should_fail("write", fd)) { errno = EIO; return -1; }
    return real(fd, buf, count, offset);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL("pwritev", ssize_t, int, const struct iovec *, int, off_t);
    if (should_fail("write", fd)) { errno = EIO; return -1; }
    return real(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL("pwritev64", ssize_t, int, const struct iovec *, int, off_t);
    if (should_fail("write", fd)) { errno = EIO; return -1; }
    return real(fd, iov, iovcnt, offset);
}
