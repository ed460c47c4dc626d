/* fd -> path: which guest path each fd the library OS opened names.
 *
 * The kernel knows the path of every fd, but the picoprocess cannot ask it
 * (there is no /proc).  The library OS therefore remembers the absolute guest
 * path it gave the monitor for each fd it opened, so that *at calls with a
 * real dirfd, fchdir, fchmod/fchown/fstatfs/futimens and /proc/self/fd/N
 * work.
 *
 * The table can be stale: close, dup3 and fcntl(F_DUPFD) are direct calls
 * the library OS never sees.  So an entry is never trusted as such: it also
 * records the (st_dev, st_ino) the fd had when it was remembered, and a
 * lookup first fstat()s the fd and compares.  When the fd's own entry does
 * not match (the fd was closed and reused, or is a copy made by a direct
 * dup3/F_DUPFD), a small inode cache keyed by (st_dev, st_ino) is asked: a
 * path that named this inode is a path to it.
 *
 * Concurrency without locks a signal can deadlock on: each entry has a
 * sequence number, odd while a writer fills it.  Readers copy and retry a
 * bounded number of times; a writer that finds the entry busy (another
 * thread, or the code it interrupted on its own stack) gives up, leaving
 * whatever the entry held -- a lookup validates it anyway.
 *
 * A vm child (vmchild.c) has an fd table of its own but shares this memory:
 * the paths it learns go to a small overlay in its own state, not into its
 * parent's slots; its lookups ask the overlay first.  The inode cache is
 * shared (a path that names an inode is true for both). */
#include "libos.h"

#define FDT_SLOTS PICO_LOADER_FD
/* The inode cache: (st_dev, st_ino) -> path, independent of fd numbers, so a
 * copy made by a direct dup still resolves after the original fd's number
 * was reused for something else (coreutils' fts does exactly that). */
#define INO_SLOTS 512
#define INO_PROBES 4
#define ALL_SLOTS (FDT_SLOTS + INO_SLOTS)
#define FDT_READ_RETRIES 8

struct fd_key {
	unsigned seq; /* 0: never written; odd: being written */
	unsigned len;
	uint64_t dev, ino;
};

/* Keys apart from paths so that the (dev, ino) scan touches 24 KiB, not 4 MiB. */
static struct fd_key fdt_keys[ALL_SLOTS];
static char fdt_paths[ALL_SLOTS][PICO_MAX_PATH];
/* One more than the highest fd slot ever filled: execve looks no further. */
static long fdt_high;

static unsigned ino_home(uint64_t dev, uint64_t ino)
{
	uint64_t h = (ino * 0x9E3779B97F4A7C15ULL) ^ (dev * 0xC2B2AE3D27D4EB4FULL);
	return (unsigned)(h >> 40) % INO_SLOTS;
}

static int slot_ok(long fd) { return fd >= 0 && fd < FDT_SLOTS; }

/* Collapses "//" and "/./" and drops a trailing slash, leaving ".." alone: the
 * monitor resolves ".." physically (after symbolic links), which lexical
 * removal would get wrong for a path through a link. */
size_t libos_tidy_path(char *p)
{
	size_t out = 0, i = 0, n = libos_strlen(p);
	while (i < n) {
		if (p[i] == '/') {
			while (i < n && p[i] == '/')
				i++;
			if (i < n && p[i] == '.' && (i + 1 == n || p[i + 1] == '/')) {
				i++;
				continue;
			}
			p[out++] = '/';
			continue;
		}
		p[out++] = p[i++];
	}
	while (out > 1 && p[out - 1] == '/')
		out--;
	if (out == 0)
		p[out++] = '/';
	p[out] = 0;
	return out;
}

static void fill_slot(long fd, uint64_t dev, uint64_t ino, const char *abs, size_t len)
{
	struct fd_key *k = &fdt_keys[fd];
	unsigned seq = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
	if (seq & 1)
		return;
	if (!__atomic_compare_exchange_n(&k->seq, &seq, seq + 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return;
	memcpy(fdt_paths[fd], abs, len);
	fdt_paths[fd][len] = 0;
	if (fd < FDT_SLOTS) {
		long high = __atomic_load_n(&fdt_high, __ATOMIC_RELAXED);
		while (fd >= high &&
		       !__atomic_compare_exchange_n(&fdt_high, &high, fd + 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
	k->len = (unsigned)len;
	k->dev = dev;
	k->ino = ino;
	__atomic_store_n(&k->seq, seq + 2, __ATOMIC_RELEASE);
}

/* A vm child's overlay entry for fd (or, with create, a free one). */
static struct libos_fd_overlay *overlay_entry(struct libos_fd_overlay *ov, long fd, int create)
{
	struct libos_fd_overlay *free_entry = NULL;
	for (int i = 0; i < LIBOS_FD_OVERLAY; i++) {
		if (ov[i].fd == fd)
			return &ov[i];
		if (ov[i].fd < 0 && !free_entry)
			free_entry = &ov[i];
	}
	if (!create)
		return NULL;
	/* Full: the entry of an fd no longer open, else the first. */
	for (int i = 0; i < LIBOS_FD_OVERLAY && !free_entry; i++)
		if (sys2(__NR_fcntl, ov[i].fd, F_GETFD) < 0)
			free_entry = &ov[i];
	return free_entry ? free_entry : &ov[0];
}

static void remember_in(long fd, uint64_t dev, uint64_t ino, const char *path, size_t len)
{
	struct libos_fd_overlay *ov = libos_current()->fd_overlay;
	if (ov) {
		struct libos_fd_overlay *e = overlay_entry(ov, fd, 1);
		e->fd = -1;
		memcpy(e->path, path, len);
		e->path[len] = 0;
		e->dev = dev;
		e->ino = ino;
		e->fd = fd;
		return;
	}
	fill_slot(fd, dev, ino, path, len);
}

void libos_fd_remember(long fd, const char *abs)
{
	struct stat st;
	if (!slot_ok(fd))
		return;
	size_t len = libos_strnlen(abs, PICO_MAX_PATH);
	if (len == 0 || len >= PICO_MAX_PATH || abs[0] != '/')
		return;
	if (sys2(__NR_fstat, fd, &st) < 0)
		return;
	char tidy[PICO_MAX_PATH];
	memcpy(tidy, abs, len + 1);
	len = libos_tidy_path(tidy);
	remember_in(fd, st.st_dev, st.st_ino, tidy, len);
	/* The inode cache: the slot already holding this inode, else an empty
	 * one, else the home slot (evicting). */
	unsigned home = ino_home(st.st_dev, st.st_ino), pick = home;
	for (unsigned i = 0; i < INO_PROBES; i++) {
		unsigned slot = (home + i) % INO_SLOTS;
		struct fd_key *k = &fdt_keys[FDT_SLOTS + slot];
		unsigned seq = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
		if (seq != 0 && k->dev == st.st_dev && k->ino == st.st_ino) {
			pick = slot;
			break;
		}
		if (seq == 0 && pick == home)
			pick = slot;
	}
	fill_slot(FDT_SLOTS + pick, st.st_dev, st.st_ino, tidy, len);
}

void libos_fd_copy(long from, long to)
{
	char path[PICO_MAX_PATH];
	struct stat st;
	if (libos_fd_path(from, path, sizeof(path), &st) >= 0 && slot_ok(to))
		remember_in(to, st.st_dev, st.st_ino, path, libos_strlen(path));
}

/* Copies slot i's path if it holds (dev, ino); the length or -1. */
static long read_slot(long i, uint64_t dev, uint64_t ino, char *out, size_t cap)
{
	struct fd_key *k = &fdt_keys[i];
	for (int tries = 0; tries < FDT_READ_RETRIES; tries++) {
		unsigned seq = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
		if (seq == 0)
			return -1;
		if (seq & 1)
			continue;
		if (k->dev != dev || k->ino != ino)
			return -1;
		size_t len = k->len;
		if (len >= cap || len >= PICO_MAX_PATH)
			return -1;
		memcpy(out, fdt_paths[i], len);
		out[len] = 0;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&k->seq, __ATOMIC_RELAXED) == seq)
			return (long)len;
	}
	return -1;
}

long libos_fd_path(long fd, char *out, size_t cap, struct stat *st)
{
	if (fd < 0 || fd > 0x7fffffff)
		return -EBADF;
	long r = sys2(__NR_fstat, fd, st);
	if (r < 0)
		return r;
	uint64_t dev = st->st_dev, ino = st->st_ino;
	struct libos_fd_overlay *ov = libos_current()->fd_overlay;
	if (ov) {
		struct libos_fd_overlay *e = overlay_entry(ov, fd, 0);
		if (e && e->dev == dev && e->ino == ino) {
			size_t len = libos_strnlen(e->path, PICO_MAX_PATH);
			if (len >= cap)
				return -ENAMETOOLONG;
			memcpy(out, e->path, len + 1);
			return (long)len;
		}
	}
	if (slot_ok(fd)) {
		r = read_slot(fd, dev, ino, out, cap);
		if (r >= 0)
			return r;
	}
	/* A copy made by a direct dup3/F_DUPFD, or an entry overwritten by a
	 * concurrent writer: the inode cache names the same object. */
	unsigned home = ino_home(dev, ino);
	for (unsigned i = 0; i < INO_PROBES; i++) {
		r = read_slot(FDT_SLOTS + (home + i) % INO_SLOTS, dev, ino, out, cap);
		if (r >= 0)
			return r;
	}
	return -ENOSYS;
}

/* Options "--fd-path=N:PATH" for every tracked fd that survives exec (no
 * FD_CLOEXEC, still naming what it was opened as).  Writes them one after
 * another (NUL-separated) into buf, pointers into opts; returns how many
 * fitted.  An fd whose option does not fit is simply not carried: it stays
 * open, only its path is forgotten. */
size_t libos_fd_exec_options(char *buf, size_t cap, const char **opts, size_t max_opts)
{
	size_t count = 0, used = 0;
	char path[PICO_MAX_PATH];
	struct stat st;
	struct libos_fd_overlay *ov = libos_current()->fd_overlay;
	/* Only fds that have a slot or an overlay entry can carry a path. */
	long end = __atomic_load_n(&fdt_high, __ATOMIC_RELAXED);
	for (int i = 0; ov && i < LIBOS_FD_OVERLAY; i++)
		if (ov[i].fd >= end && ov[i].fd < FDT_SLOTS)
			end = ov[i].fd + 1;
	for (long fd = 0; fd < end && count < max_opts; fd++) {
		struct libos_fd_overlay *e = ov ? overlay_entry(ov, fd, 0) : NULL;
		if (!e && __atomic_load_n(&fdt_keys[fd].seq, __ATOMIC_RELAXED) == 0)
			continue;
		long fl = sys2(__NR_fcntl, fd, F_GETFD);
		if (fl < 0 || (fl & FD_CLOEXEC))
			continue;
		long len = libos_fd_path(fd, path, sizeof(path), &st);
		if (len < 0)
			continue;
		struct strbuf sb;
		sb_init(&sb, buf + used, cap - used);
		sb_add(&sb, "--fd-path=");
		sb_addnum(&sb, (unsigned long)fd);
		sb_add(&sb, ":");
		sb_addn(&sb, path, (size_t)len);
		sb_end_string(&sb);
		if (sb.overflow)
			break;
		opts[count++] = buf + used;
		used += sb.len;
	}
	return count;
}
