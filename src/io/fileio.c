/* fileio.c — see fileio.h. */
#include "io/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* write() until done: it may write less than asked (signals, pipes, >2 GiB requests). */
bool write_all(int fd, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n) {
        size_t chunk = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
        ssize_t k = write(fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* After the rename, the directory entry itself must reach the disk. */
int fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return ENOMEM;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return errno;
    int e = 0;
    /* Some filesystems cannot fsync a directory; there is nothing more to do there. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) e = errno;
    close(fd);
    return e;
}

