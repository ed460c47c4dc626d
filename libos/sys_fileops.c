/* Calls on open files that the ABI has no direct form of: msync,
 * fallocate, splice and tee, and the fcntl commands outside the direct
 * set's rules (pipe sizes). */
#include "libos.h"

#define MS_ASYNC_K 1
#define MS_INVALIDATE_K 2
#define MS_SYNC_K 4
#ifndef MADV_WILLNEED
#define MADV_WILLNEED 3
#endif

/* Implements Linux syscall msync(2).  A shared file mapping is the file's
 * page cache, so what the program wrote through it is already what every
 * reader of the file sees; what cannot be done without the file's fd is
 * MS_SYNC's wait for the disk.  The arguments are checked as Linux checks
 * them (ENOMEM for a range that is not mapped). */
LIBOS_SYSCALL(msync)
{
	unsigned long addr = (unsigned long)a0, len = (unsigned long)a1;
	int flags = (int)a2;
	if (addr & (PAGE_SIZE_K - 1))
		return -EINVAL;
	if (flags & ~(MS_ASYNC_K | MS_INVALIDATE_K | MS_SYNC_K))
		return -EINVAL;
	if ((flags & MS_ASYNC_K) && (flags & MS_SYNC_K))
		return -EINVAL;
	len = (len + PAGE_SIZE_K - 1) & ~(PAGE_SIZE_K - 1);
	if (len == 0)
		return 0;
	if (addr + len < addr)
		return -ENOMEM;
	/* madvise(WILLNEED) answers ENOMEM for a hole, like msync, and
	 * changes nothing a program can observe. */
	long r = sys3(__NR_madvise, addr, len, MADV_WILLNEED);
	return r == -ENOMEM ? -ENOMEM : 0;
}

/* ---- fallocate ---- */

#define FALLOC_FL_KEEP_SIZE_K 0x01
#define FALLOC_FL_PUNCH_HOLE_K 0x02
#define FALLOC_FL_COLLAPSE_RANGE_K 0x08
#define FALLOC_FL_ZERO_RANGE_K 0x10
#define FALLOC_FL_INSERT_RANGE_K 0x20

static const char zeros[16384];

/* Writes zeros over [from, to) of fd; 0 or -errno. */
static long write_zeros(int fd, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
		long w = sys4(__NR_pwrite64, fd, zeros, n, (long)from);
		if (w < 0)
			return w;
		if (w == 0)
			return -ENOSPC;
		from += (uint64_t)w;
	}
	return 0;
}

/* Implements Linux syscall fallocate(2) by writing zeros: growing a file
 * (mode 0, FALLOC_FL_ZERO_RANGE) writes them past its end, so the space is
 * really taken and a full disk or quota answers ENOSPC at once, as Linux
 * does; FALLOC_FL_PUNCH_HOLE and FALLOC_FL_ZERO_RANGE zero the range (the
 * blocks stay allocated); FALLOC_FL_KEEP_SIZE alone has nothing to do.
 * What is not done: holes inside the file stay holes (mode 0 does not
 * reserve their blocks); collapsing and inserting ranges answer
 * EOPNOTSUPP, as on file systems without them. */
LIBOS_SYSCALL(fallocate)
{
	int fd = (int)a0, mode = (int)a1;
	long offset = a2, len = a3;
	struct stat st;
	long r = sys2(__NR_fstat, fd, &st);
	if (r < 0)
		return r;
	if (offset < 0 || len <= 0)
		return -EINVAL;
	if (mode & ~(FALLOC_FL_KEEP_SIZE_K | FALLOC_FL_PUNCH_HOLE_K | FALLOC_FL_COLLAPSE_RANGE_K |
		     FALLOC_FL_ZERO_RANGE_K | FALLOC_FL_INSERT_RANGE_K))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE_K) && !(mode & FALLOC_FL_KEEP_SIZE_K))
		return -EOPNOTSUPP;
	long fl = sys2(__NR_fcntl, fd, F_GETFL);
	if (fl < 0)
		return fl;
	if ((fl & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	if ((st.st_mode & S_IFMT) == S_IFIFO)
		return -ESPIPE;
	if ((st.st_mode & S_IFMT) == S_IFDIR)
		return -EISDIR;
	if ((st.st_mode & S_IFMT) != S_IFREG)
		return -ENODEV;
	if (mode & (FALLOC_FL_COLLAPSE_RANGE_K | FALLOC_FL_INSERT_RANGE_K))
		return -EOPNOTSUPP;
	if ((uint64_t)offset + (uint64_t)len > (uint64_t)0x7fffffffffffffffLL)
		return -EFBIG;
	uint64_t size = (uint64_t)st.st_size, end = (uint64_t)offset + (uint64_t)len;
	int zero_inside = mode & (FALLOC_FL_PUNCH_HOLE_K | FALLOC_FL_ZERO_RANGE_K);
	if (zero_inside && (fl & O_APPEND))
		return -EOPNOTSUPP; /* pwrite would append */
	if (zero_inside && (uint64_t)offset < size &&
	    (r = write_zeros(fd, (uint64_t)offset, end < size ? end : size)) < 0)
		return r;
	if (end <= size || (mode & FALLOC_FL_KEEP_SIZE_K))
		return 0;
	r = write_zeros(fd, size, end);
	if (r < 0) {
		sys2(__NR_ftruncate, fd, (long)size); /* as if nothing happened */
		return r;
	}
	return 0;
}

/* ---- splice and tee ---- */

#define SPLICE_F_NONBLOCK_K 0x02
#define FIONREAD_K 0x541B

static int is_pipe(int fd)
{
	struct stat st;
	return sys2(__NR_fstat, fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO;
}

/* Implements Linux syscall splice(2) with one read and its write through a
 * bounce buffer (a short count is what splice may return).  As on Linux,
 * one end must be a pipe, and a pipe end takes no offset. */
LIBOS_SYSCALL(splice)
{
	int in_fd = (int)a0, out_fd = (int)a2;
	long *in_offp = (long *)a1, *out_offp = (long *)a3;
	size_t len = (size_t)a4;
	unsigned flags = (unsigned)a5;
	long in_off = 0, out_off = 0, r;
	char buf[4096];
	struct stat st;
	if ((r = sys2(__NR_fstat, in_fd, &st)) < 0 || (r = sys2(__NR_fstat, out_fd, &st)) < 0)
		return r;
	int in_pipe = is_pipe(in_fd), out_pipe = is_pipe(out_fd);
	if (!in_pipe && !out_pipe)
		return -EINVAL;
	if ((in_pipe && in_offp) || (out_pipe && out_offp))
		return -ESPIPE;
	if (in_offp && (r = libos_copy_from_guest(&in_off, in_offp, sizeof(in_off))) < 0)
		return r;
	if (out_offp && (r = libos_copy_from_guest(&out_off, out_offp, sizeof(out_off))) < 0)
		return r;
	if (in_off < 0 || out_off < 0)
		return -EINVAL;
	if (len == 0)
		return 0;
	if ((flags & SPLICE_F_NONBLOCK_K) && in_pipe) {
		int avail = 0;
		if (sys3(__NR_ioctl, in_fd, FIONREAD_K, &avail) == 0 && avail == 0)
			return -EAGAIN;
	}
	size_t want = len < sizeof(buf) ? len : sizeof(buf);
	long n = in_offp ? sys4(__NR_pread64, in_fd, buf, want, in_off) : sys3(__NR_read, in_fd, buf, want);
	if (n <= 0)
		return n;
	long done = 0;
	while (done < n) {
		long w = out_offp ? sys4(__NR_pwrite64, out_fd, buf + done, (size_t)(n - done), out_off + done)
				  : sys3(__NR_write, out_fd, buf + done, (size_t)(n - done));
		if (w <= 0) {
			if (!in_pipe && !in_offp)
				sys3(__NR_lseek, in_fd, done - n, 1 /* SEEK_CUR */);
			if (done == 0)
				return w < 0 ? w : -EIO;
			break;
		}
		done += w;
	}
	in_off += done;
	out_off += done;
	if (in_offp && (r = libos_copy_to_guest(in_offp, &in_off, sizeof(in_off))) < 0)
		return r;
	if (out_offp && (r = libos_copy_to_guest(out_offp, &out_off, sizeof(out_off))) < 0)
		return r;
	return done;
}

/* Implements Linux syscall tee(2) as far as it can be: duplicating a pipe's
 * contents without consuming them needs the kernel's own pipe buffers, which
 * no call of the ABI reaches; so two pipes answer EINVAL (what Linux answers
 * when tee cannot be done on its arguments), and anything else as Linux. */
LIBOS_SYSCALL(tee)
{
	struct stat st;
	long r;
	if ((r = sys2(__NR_fstat, (int)a0, &st)) < 0 || (r = sys2(__NR_fstat, (int)a1, &st)) < 0)
		return r;
	return -EINVAL;
}

/* ---- fcntl beyond the direct rules ---- */

#define F_SETPIPE_SZ_K 1031
#define F_GETPIPE_SZ_K 1032
#define F_ADD_SEALS_K 1033
#define F_GET_SEALS_K 1034
#define F_NOTIFY_K 1026
#define DN_MULTISHOT_K 0x80000000UL
#define PIPE_DEFAULT_SIZE (16 * PAGE_SIZE_K)
#define PIPE_MAX_SIZE_K (1024 * 1024)

/* Pipe sizes the program set, by pipe (st_dev, st_ino).  The kernel's pipe
 * keeps its 64 KiB: the ABI does not resize pipes (each pipe's pages would
 * count against the guest identity's per-user pipe budget, shared with every
 * other guest of that identity). */
static struct {
	int lock;
	unsigned next;
	struct {
		uint64_t dev, ino;
		long size;
	} e[64];
} pipe_sizes;

static long pipe_size_lookup(const struct stat *st, long set)
{
	long size = PIPE_DEFAULT_SIZE;
	while (__atomic_exchange_n(&pipe_sizes.lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	unsigned n = sizeof(pipe_sizes.e) / sizeof(pipe_sizes.e[0]), found = n;
	for (unsigned i = 0; i < n; i++)
		if (pipe_sizes.e[i].size && pipe_sizes.e[i].dev == st->st_dev && pipe_sizes.e[i].ino == st->st_ino)
			found = i;
	if (set) {
		if (found == n)
			found = pipe_sizes.next++ % n;
		pipe_sizes.e[found].dev = st->st_dev;
		pipe_sizes.e[found].ino = st->st_ino;
		pipe_sizes.e[found].size = set;
		size = set;
	} else if (found < n) {
		size = pipe_sizes.e[found].size;
	}
	__atomic_store_n(&pipe_sizes.lock, 0, __ATOMIC_RELEASE);
	return size;
}

/* Implements Linux syscall fcntl(2) for the commands the filter traps:
 * F_GETPIPE_SZ and F_SETPIPE_SZ (the size is recorded and reported, rounded
 * as Linux rounds it; the pipe's capacity stays 64 KiB), and file seals,
 * which no file of a picoprocess supports (EINVAL, as for a file that does
 * not).  F_NOTIFY (dnotify) without an event to watch removes the
 * directory's notifications, of which there are none; asking for events is
 * not offered (ENOSYS), nor are leases or F_SETOWN. */
LIBOS_SYSCALL(fcntl)
{
	int fd = (int)a0, cmd = (int)a1;
	struct stat st;
	long r;
	switch (cmd) {
	case F_GETPIPE_SZ_K:
	case F_SETPIPE_SZ_K:
		if ((r = sys2(__NR_fstat, fd, &st)) < 0)
			return r;
		if ((st.st_mode & S_IFMT) != S_IFIFO)
			return -EBADF;
		if (cmd == F_GETPIPE_SZ_K)
			return pipe_size_lookup(&st, 0);
		{
			unsigned long want = (unsigned int)a2, size = PAGE_SIZE_K;
			if (want > (1UL << 31))
				return -EINVAL;
			while (size < want)
				size <<= 1;
			if (size > PIPE_MAX_SIZE_K)
				return -EPERM;
			int queued = 0;
			if (sys3(__NR_ioctl, fd, FIONREAD_K, &queued) == 0 && (unsigned long)queued > size)
				return -EBUSY;
			return pipe_size_lookup(&st, (long)size);
		}
	case F_NOTIFY_K:
		if ((r = sys2(__NR_fstat, fd, &st)) < 0)
			return r;
		if (((unsigned long)a2 & ~DN_MULTISHOT_K) == 0)
			return 0;
		return (st.st_mode & S_IFMT) != S_IFDIR ? -ENOTDIR : -ENOSYS;
	case F_ADD_SEALS_K:
	case F_GET_SEALS_K:
		if ((r = sys2(__NR_fstat, fd, &st)) < 0)
			return r;
		return -EINVAL;
	default:
		return -ENOSYS;
	}
}

/* ---- preadv, pwritev ---- */

#define IOV_MAX_K 1024

struct iovec_k {
	void *base;
	size_t len;
};

/* Reads (write = 0) or writes the guest's iovecs at `off`, one pread64 or
 * pwrite64 per vector, stopping at the first short transfer: the count, or
 * -errno when nothing moved.  Unlike Linux's, a transfer of several vectors
 * is not one atomic operation. */
static long positioned_vector(int fd, long user_iov, long cnt, long off, int write)
{
	if (cnt < 0 || cnt > IOV_MAX_K)
		return -EINVAL;
	if (off < 0)
		return -EINVAL;
	long done = 0;
	for (long i = 0; i < cnt; i++) {
		struct iovec_k v;
		long r = libos_copy_from_guest(&v, (const struct iovec_k *)user_iov + i, sizeof(v));
		if (r < 0)
			return done ? done : r;
		if (v.len == 0)
			continue;
		r = write ? sys4(__NR_pwrite64, fd, v.base, v.len, off + done)
			  : sys4(__NR_pread64, fd, v.base, v.len, off + done);
		if (r < 0)
			return done ? done : r;
		done += r;
		if ((size_t)r < v.len)
			break;
	}
	return done;
}

/* Implements Linux syscalls preadv(2) and pwritev(2). */
LIBOS_SYSCALL(preadv) { return positioned_vector((int)a0, a1, a2, a3, 0); }
LIBOS_SYSCALL(pwritev) { return positioned_vector((int)a0, a1, a2, a3, 1); }

/* <linux/fs.h> */
#define RWF_HIPRI_K 0x01
#define RWF_DSYNC_K 0x02
#define RWF_SYNC_K 0x04
#define RWF_NOWAIT_K 0x08
#define RWF_APPEND_K 0x10
#define RWF_NOAPPEND_K 0x20

/* Implements Linux syscalls preadv2(2) and pwritev2(2); an offset of -1 is
 * the fd's own position (readv/writev).  Of the RWF_* flags: RWF_HIPRI is
 * a polling hint that a buffered file ignores, as Linux ignores it there;
 * RWF_DSYNC and RWF_SYNC make a write durable before it returns (an fsync
 * after it) and do nothing for a read, nor do RWF_APPEND and RWF_NOAPPEND;
 * RWF_NOWAIT reads a regular file as a plain read does (it may wait for
 * the disk, where Linux would say EAGAIN), and a pipe or socket after a
 * poll (EAGAIN when nothing is there).  A write with RWF_NOWAIT or
 * RWF_APPEND, and unknown flags, answer EOPNOTSUPP, as on a file that does
 * not take them. */
LIBOS_SYSCALL(preadv2)
{
	if (a5 & ~(long)(RWF_HIPRI_K | RWF_DSYNC_K | RWF_SYNC_K | RWF_NOWAIT_K | RWF_APPEND_K | RWF_NOAPPEND_K))
		return -EOPNOTSUPP;
	if (a5 & RWF_NOWAIT_K) {
		struct stat st;
		long r = sys2(__NR_fstat, (int)a0, &st);
		if (r < 0)
			return r;
		if ((st.st_mode & S_IFMT) != S_IFREG) {
			/* A pipe or socket: EAGAIN unless something is there
			 * (another reader may still take it first). */
			struct pollfd p = {(int)a0, POLLIN, 0};
			struct __kernel_timespec zero = {0, 0};
			r = sys4(__NR_ppoll, &p, 1, &zero, 0);
			if (r < 0)
				return r;
			if (r == 0)
				return -EAGAIN;
		}
	}
	if (a3 == -1)
		return sys3(__NR_readv, (int)a0, a1, a2);
	return positioned_vector((int)a0, a1, a2, a3, 0);
}

LIBOS_SYSCALL(pwritev2)
{
	if (a5 & ~(long)(RWF_HIPRI_K | RWF_DSYNC_K | RWF_SYNC_K))
		return -EOPNOTSUPP;
	long r = a3 == -1 ? sys3(__NR_writev, (int)a0, a1, a2) : positioned_vector((int)a0, a1, a2, a3, 1);
	if (r > 0 && (a5 & (RWF_DSYNC_K | RWF_SYNC_K))) {
		long s = sys1(__NR_fsync, (int)a0);
		if (s < 0 && s != -EINVAL && s != -EROFS)
			return s; /* the data did not reach the disk */
	}
	return r;
}
