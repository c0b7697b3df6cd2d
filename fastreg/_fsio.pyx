# cython: language_level=3, boundscheck=False, wraparound=False
"""Durable small-file writes without the GIL: the filesystem driver's link, tag and manifest
writes and its blob commits (fastreg/storage/driver/backends/filesystem.py).

Each function runs its whole sequence of system calls in one ``nogil`` block.  Written with
``os.*`` calls, a worker thread gives the GIL back and takes it again around every call (open,
write, fsync, close, rename, open, fsync, close): eight hand-offs per link, each one a chance to
queue behind the event loop and to make it queue behind the thread (futex storms: strace of
ci-push counted ~1,500 futex calls per image).  Here a job takes the GIL once to start and once
to finish.  The pure twin, fastreg._fsio_py, does the same with ``os`` (FASTREG_NO_EXTENSIONS=1).

Errors are raised as ``OSError(errno, strerror, filename)``, so Python picks the subclass
(FileNotFoundError, ...) exactly as ``os`` would.
"""
from libc.errno cimport EINTR, errno
from libc.string cimport strerror


cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags, ...)
    int O_WRONLY, O_CREAT, O_EXCL, O_RDONLY, O_DIRECTORY, O_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    ssize_t c_write "write"(int fd, const void *buf, size_t n)
    int c_close "close"(int fd)
    int c_fsync "fsync"(int fd)
    int c_unlink "unlink"(const char *path)

cdef extern from "<stdio.h>" nogil:
    int c_rename "rename"(const char *old, const char *new)


cdef int _sync_dir(const char *path) noexcept nogil:
    """fsync a directory; 0 or an errno."""
    cdef int fd = c_open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    cdef int err = 0
    if fd < 0:
        return errno
    if c_fsync(fd) != 0:
        err = errno
    c_close(fd)
    return err


cdef object _error(int err, object filename):
    return OSError(err, strerror(err).decode("utf-8", "replace"), filename)


def put_file(bytes tmp, bytes target, const unsigned char[:] data, bint durable, object sync_dir):
    """Create `tmp` (it must not exist), write `data`, fsync it if `durable`, rename it to
    `target`, then fsync the directory `sync_dir` (None: none).  On failure before the rename
    `tmp` is removed; a failure of the directory fsync leaves `target` in place."""
    cdef const char *ctmp = tmp
    cdef const char *ctarget = target
    cdef const char *cdir = NULL
    cdef bytes dir_b = None
    cdef Py_ssize_t n = data.shape[0]
    cdef Py_ssize_t done = 0
    cdef ssize_t w
    cdef const unsigned char *p = NULL
    cdef int fd
    cdef int err = 0
    cdef int stage = 0          # what failed: 0 create, 1 write/fsync/close, 2 rename, 3 directory
    if sync_dir is not None:
        dir_b = sync_dir
        cdir = dir_b
    if n > 0:
        p = &data[0]
    with nogil:
        fd = c_open(ctmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0:
            err = errno
        else:
            stage = 1
            while done < n:
                w = c_write(fd, p + done, <size_t>(n - done))
                if w < 0:
                    if errno == EINTR:
                        continue
                    err = errno
                    break
                done += w
            if err == 0 and durable and c_fsync(fd) != 0:
                err = errno
            if c_close(fd) != 0 and err == 0:
                err = errno
            if err == 0:
                stage = 2
                if c_rename(ctmp, ctarget) != 0:
                    err = errno
            if err != 0:
                c_unlink(ctmp)
            elif cdir != NULL:
                stage = 3
                err = _sync_dir(cdir)
    if err != 0:
        raise _error(err, (tmp, tmp, target, sync_dir)[stage])


def rename_sync(bytes src, bytes dst, object sync_dir):
    """rename(2) `src` to `dst`, then fsync the directory `sync_dir` (None: none)."""
    cdef const char *csrc = src
    cdef const char *cdst = dst
    cdef const char *cdir = NULL
    cdef bytes dir_b = None
    cdef int err = 0
    cdef int stage = 0
    if sync_dir is not None:
        dir_b = sync_dir
        cdir = dir_b
    with nogil:
        if c_rename(csrc, cdst) != 0:
            err = errno
        elif cdir != NULL:
            stage = 1
            err = _sync_dir(cdir)
    if err != 0:
        raise _error(err, (src, sync_dir)[stage])


def sync_dirs(list dirs):
    """fsync each directory of `dirs` (bytes), in order; the first failure is raised."""
    cdef list paths = [bytes(d) for d in dirs]
    cdef Py_ssize_t i
    cdef const char *c
    cdef int err = 0
    for i in range(len(paths)):
        c = <bytes>paths[i]
        with nogil:
            err = _sync_dir(c)
        if err != 0:
            raise _error(err, paths[i])
