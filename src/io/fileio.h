/* fileio.h — the small POSIX pieces of writing files atomically, shared by every writer
 * (safetensors, heat maps): write everything, and make a rename durable. */
#ifndef TFM_IO_FILEIO_H
#define TFM_IO_FILEIO_H

#include <stdbool.h>
#include <stddef.h>

/* write() until all n bytes are written (retrying EINTR and short writes); false with
 * errno set on failure. */
bool write_all(int fd, const void *buf, size_t n);
/* fsync the directory holding path, so that a rename into it reaches the disk; 0 or an
 * errno value. Filesystems that cannot fsync a directory count as success. */
int fsync_parent(const char *path);

#endif
