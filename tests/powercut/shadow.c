/*
 * LD_PRELOAD shim of the power-cut simulation (tests/powercut/run.py). For every file under
 * $SHADOW_FILTER it keeps, in $SHADOW_DIR, what a power cut would leave of it on storage that
 * honours fsync:
 *   - fsync or fdatasync of a file copies its whole content at that moment to
 *     $SHADOW_DIR/NAME (written to a temporary name, then renamed);
 *   - fsync of a directory under the filter writes the names it holds at that moment to
 *     $SHADOW_DIR/.dirlist (a created, renamed or removed name is durable only then).
 * The real call follows. Writes themselves are not intercepted: after the process is killed,
 * the file as the kernel holds it is everything written, and the shadow is what was made
 * durable; run.py builds each simulated cut from the two.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return -1;
    }
    static char buf[1 << 16];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            rc = -1;
            break;
        }
    }
    if (n < 0) rc = -1;
    close(in);
    close(out);
    if (rc == 0) rc = rename(tmp, to);
    return rc;
}

static void list_dir(const char *dir, const char *to) {
    DIR *d = opendir(dir);
    if (!d) return;
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *out = fopen(tmp, "we");
    if (!out) {
        closedir(d);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) fprintf(out, "%s\n", e->d_name);
    closedir(d);
    fclose(out);
    rename(tmp, to);
}

static void shadow(int fd) {
    const char *filter = getenv("SHADOW_FILTER"), *dir = getenv("SHADOW_DIR");
    if (!filter || !dir) return;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    size_t fl = strlen(filter);
    if (strncmp(path, filter, fl) != 0 || (path[fl] != '\0' && path[fl] != '/')) return;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    char to[4200];
    if (S_ISDIR(st.st_mode)) {
        snprintf(to, sizeof to, "%s/.dirlist", dir);
        list_dir(path, to);
    } else if (S_ISREG(st.st_mode)) {
        const char *base = strrchr(path, '/');
        snprintf(to, sizeof to, "%s/%s", dir, base ? base + 1 : path);
        if (copy_file(path, to) != 0) {
            /* A shadow that could not be written makes the test fail on a missing record. */
            fprintf(stderr, "shadow: cannot copy %s\n", path);
        }
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    shadow(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    shadow(fd);
    return real(fd);
}
