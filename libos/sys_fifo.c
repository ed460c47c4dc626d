/* Named pipes: mknod/mkfifo, and the blocking open of a FIFO.
 *
 * The monitor opens every file non-blocking (a FIFO must never block its
 * loop), so a FIFO's open(2) returns at once there: a reader before any
 * writer has opened, a writer with ENXIO when no reader has.  Linux blocks
 * both until the other side opens; the library OS rebuilds that on what it
 * can see: a writer retries (with a growing pause, interrupted by signals
 * as the real open is) until a reader exists; a reader waits until the pipe
 * has data or a writer has come and gone.  The one difference a program
 * can notice: a reader's open returns when the writer first writes (or
 * closes), not when it opens. */
#include "libos.h"

/* Implements Linux syscall mknodat(2) for FIFOs, regular files and socket
 * inodes (devices: EPERM, as for any unprivileged user). */
LIBOS_SYSCALL(mknodat)
{
	struct guest_path p;
	unsigned mode = (unsigned)a2;
	long r = libos_fetch_path((int)a0, a1, &p);
	if (r < 0)
		return r;
	if ((mode & S_IFMT) == 0)
		mode |= S_IFREG;
	return pico_mknod(p.abs, p.len, (mode & S_IFMT) | (mode & ~libos_current()->pub.umask & 07777));
}

/* Implements Linux syscall mknod(2). */
LIBOS_SYSCALL(mknod) { return libos_sys_mknodat(AT_FDCWD, a0, a1, a2, 0, 0, uc); }

static int is_fifo_fd(long fd)
{
	struct stat st;
	return sys2(__NR_fstat, fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO;
}

/* After the monitor opened a FIFO for reading without O_NONBLOCK: wait
 * for a writer.  Returns fd, or -errno (the fd then closed). */
long libos_fifo_wait_reader(long fd, int flags)
{
	if ((flags & (O_NONBLOCK | O_PATH)) || (flags & O_ACCMODE) != O_RDONLY || !is_fifo_fd(fd))
		return fd;
	struct pollfd pfd = {(int)fd, POLLIN, 0};
	long r;
	do
		r = sys4(__NR_ppoll, &pfd, 1, 0, 0);
	while (r == 0);
	if (r < 0) {
		sys1(__NR_close, fd);
		return r;
	}
	return fd;
}

/* A writer's open that the monitor answered ENXIO (no reader yet): is the
 * name a FIFO, and the open a blocking one?  Then wait and try again. */
long libos_fifo_retry_writer(const char *uri, size_t uri_len, const char *path, size_t path_len, int flags,
			     unsigned mode)
{
	struct statx stx;
	if ((flags & O_NONBLOCK) || (flags & O_ACCMODE) != O_WRONLY ||
	    pico_stat(path, path_len, 0, &stx) < 0 || (stx.stx_mode & S_IFMT) != S_IFIFO)
		return -ENXIO;
	long pause_ns = 1000000, r;
	for (;;) {
		struct __kernel_timespec ts = {0, pause_ns};
		r = sys4(__NR_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, 0);
		if (r == -EINTR)
			return -EINTR;
		r = pico_open(uri, uri_len, flags, mode);
		if (r != -ENXIO)
			return r;
		if (pause_ns < 50000000)
			pause_ns *= 2;
	}
}
