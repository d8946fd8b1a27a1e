/*
 * LD_PRELOAD shim for tests/fsync/run.sh: logs every fsync and fdatasync on a file or
 * directory whose path starts with $FSYNC_FILTER, as "MONOTONIC_NS PATH" lines appended to
 * $FSYNC_LOG, then does the real call. Nothing else changes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void note(int fd) {
    const char *filter = getenv("FSYNC_FILTER"), *log = getenv("FSYNC_LOG");
    if (!filter || !log) return;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    if (strncmp(path, filter, strlen(filter)) != 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char line[4200];
    int len = snprintf(line, sizeof line, "%lld %s\n",
                       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, path);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (out < 0) return;
    if (write(out, line, (size_t)len) < 0) { /* the count is then short: the test fails */ }
    close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    note(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    note(fd);
    return real(fd);
}
