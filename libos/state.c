/* Process-wide library-OS state: identity, umask, cwd, rlimits.
 *
 * Threads share it (like the kernel's per-process state); fork copies it with
 * the memory; exec hands it to the next loader instance as options. */
#include "libos.h"

struct libos_identity libos_ident = {1000, 1000, 0, {0}};
unsigned libos_umask_value = 022;
char libos_hostname[65] = "picoproc";
char libos_release[65] = "6.1.0-picoproc";
char libos_exe_path[PICO_MAX_PATH];
long libos_pgid, libos_sid;
struct rlimit64 libos_rlimits[RLIMIT_NLIMITS_K];

#define RLIM_INF (~0ULL)

void libos_rlimits_init(void)
{
	for (int i = 0; i < RLIMIT_NLIMITS_K; i++) {
		libos_rlimits[i].rlim_cur = RLIM_INF;
		libos_rlimits[i].rlim_max = RLIM_INF;
	}
	/* What a default Linux login sees; the monitor enforces the real limits on
	 * the host, these are only what the guest is told. */
	libos_rlimits[RLIMIT_STACK].rlim_cur = 8UL << 20;
	libos_rlimits[RLIMIT_CORE].rlim_cur = 0;
	/* 1023, not 1024: programs that close "every fd below the limit" one by
	 * one (closefrom fallbacks) must not close the loader fd, 1023, or
	 * execve stops working. */
	libos_rlimits[RLIMIT_NOFILE].rlim_cur = PICO_LOADER_FD;
	libos_rlimits[RLIMIT_NOFILE].rlim_max = PICO_LOADER_FD;
	libos_rlimits[RLIMIT_NPROC].rlim_cur = 4096;
	libos_rlimits[RLIMIT_NPROC].rlim_max = 4096;
	libos_rlimits[RLIMIT_MEMLOCK].rlim_cur = 8UL << 20;
	libos_rlimits[RLIMIT_MEMLOCK].rlim_max = 8UL << 20;
	libos_rlimits[RLIMIT_SIGPENDING].rlim_cur = 4096;
	libos_rlimits[RLIMIT_SIGPENDING].rlim_max = 4096;
	libos_rlimits[RLIMIT_MSGQUEUE].rlim_cur = 819200;
	libos_rlimits[RLIMIT_MSGQUEUE].rlim_max = 819200;
	libos_rlimits[RLIMIT_NICE].rlim_cur = 0;
	libos_rlimits[RLIMIT_NICE].rlim_max = 0;
	libos_rlimits[RLIMIT_RTPRIO].rlim_cur = 0;
	libos_rlimits[RLIMIT_RTPRIO].rlim_max = 0;
}

/* The real RLIMIT_NOFILE soft limit, found without prlimit (not in the ABI):
 * fcntl(F_DUPFD, n) fails with EINVAL exactly when n >= the limit. */
static unsigned long probe_nofile(void)
{
	unsigned long lo = 1, hi = PICO_LOADER_FD; /* the answer is in [lo, hi] */
	int fd = -1;
	for (int k = 0; k < 3 && fd < 0; k++)
		if (sys2(__NR_fcntl, k, F_GETFD) >= 0)
			fd = k;
	if (fd < 0)
		return PICO_LOADER_FD;
	while (lo < hi) {
		unsigned long mid = lo + (hi - lo + 1) / 2; /* is the limit >= mid? */
		long r = sys3(__NR_fcntl, fd, F_DUPFD, mid - 1);
		if (r >= 0) {
			sys1(__NR_close, r);
			lo = mid;
		} else if (r == -EINVAL) {
			hi = mid - 1;
		} else {
			/* EMFILE: every fd from mid-1 up is taken; the limit is
			 * at least mid. */
			lo = mid;
		}
	}
	return lo;
}

/* Called after the options: the guest is told the real open-file limit when
 * it is below the loader fd and no option said otherwise. */
void libos_rlimits_probe(int nofile_given)
{
	if (nofile_given)
		return;
	unsigned long n = probe_nofile();
	if (n < libos_rlimits[RLIMIT_NOFILE].rlim_cur) {
		libos_rlimits[RLIMIT_NOFILE].rlim_cur = n;
		libos_rlimits[RLIMIT_NOFILE].rlim_max = n;
	}
}

/* ---- the current directory: two buffers and a sequence number ----
 * A reader takes seq, copies buffer (seq & 1) and retries if seq moved.  A
 * writer fills the other buffer and then bumps seq, so a reader never sees a
 * half-written path and never waits for a writer (a signal handler may read
 * the cwd while its own thread is in the middle of chdir). */
static char cwd_bufs[2][PICO_MAX_PATH] = {"/", "/"};
static unsigned cwd_seq;
static int cwd_writer_busy;

long libos_cwd_get(char *out, size_t cap)
{
	for (;;) {
		unsigned seq = __atomic_load_n(&cwd_seq, __ATOMIC_ACQUIRE);
		const char *src = cwd_bufs[seq & 1];
		size_t n = libos_strnlen(src, PICO_MAX_PATH - 1);
		if (n + 1 > cap)
			return -ERANGE;
		memcpy(out, src, n);
		out[n] = 0;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&cwd_seq, __ATOMIC_RELAXED) == seq)
			return (long)n;
	}
}

long libos_cwd_set(const char *abs_path)
{
	size_t n = libos_strlen(abs_path);
	if (n == 0 || abs_path[0] != '/')
		return -EINVAL;
	if (n >= PICO_MAX_PATH)
		return -ENAMETOOLONG;
	while (__atomic_exchange_n(&cwd_writer_busy, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	unsigned seq = __atomic_load_n(&cwd_seq, __ATOMIC_RELAXED);
	char *dst = cwd_bufs[(seq + 1) & 1];
	memcpy(dst, abs_path, n + 1);
	__atomic_store_n(&cwd_seq, seq + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&cwd_writer_busy, 0, __ATOMIC_RELEASE);
	return 0;
}

/* Lexical normalisation of an absolute path in place: collapses "//" and
 * "/./", resolves ".." against the preceding component (never above "/"),
 * drops a trailing slash.  Used for the cwd, which like a shell's logical
 * $PWD is kept lexically. */
static size_t normalise_in_place(char *p)
{
	size_t out = 0, i = 0, n = libos_strlen(p);
	while (i < n) {
		while (i < n && p[i] == '/')
			i++;
		size_t start = i;
		while (i < n && p[i] != '/')
			i++;
		size_t len = i - start;
		if (len == 0 || (len == 1 && p[start] == '.'))
			continue;
		if (len == 2 && p[start] == '.' && p[start + 1] == '.') {
			while (out > 0 && p[out - 1] != '/')
				out--;
			if (out > 0)
				out--; /* the slash before the removed component */
			continue;
		}
		p[out++] = '/';
		memmove(p + out, p + start, len);
		out += len;
	}
	if (out == 0)
		p[out++] = '/';
	p[out] = 0;
	return out;
}

long libos_resolve_path(int dirfd, const char *path, char *out, size_t cap)
{
	struct strbuf sb;
	if (path[0] == 0)
		return -ENOENT;
	sb_init(&sb, out, cap);
	if (path[0] != '/') {
		long r;
		if (dirfd == AT_FDCWD) {
			r = libos_cwd_get(out, cap);
		} else {
			struct stat st;
			r = libos_fd_path(dirfd, out, cap, &st);
			if ((r >= 0 || r == -ENOSYS) && (st.st_mode & S_IFMT) != S_IFDIR)
				return -ENOTDIR;
		}
		if (r < 0)
			return r;
		sb.len = (size_t)r;
		if (sb.len > 1)
			sb_add(&sb, "/");
	}
	sb_add(&sb, path);
	if (sb.overflow)
		return -ENAMETOOLONG;
	return (long)sb.len;
}

size_t libos_normalise_path(char *p)
{
	return normalise_in_place(p);
}

/* The options that carry this state into the next loader instance across
 * execve.  Each is written into buf; opts[] receives pointers to them. */
size_t libos_state_options(char *buf, size_t cap, const char **opts, size_t max_opts)
{
	struct strbuf sb;
	size_t count = 0;
	char cwd[PICO_MAX_PATH];
	sb_init(&sb, buf, cap);
#define OPT_BEGIN() (count < max_opts ? (opts[count++] = sb.buf + sb.len) : 0)
	if (libos_cwd_get(cwd, sizeof(cwd)) >= 0) {
		OPT_BEGIN();
		sb_add(&sb, "--cwd=");
		sb_add(&sb, cwd);
		sb_end_string(&sb);
	}
	OPT_BEGIN();
	sb_add(&sb, "--umask=");
	{
		char oct[8];
		unsigned v = libos_umask_value & 0777;
		oct[0] = (char)('0' + ((v >> 6) & 7));
		oct[1] = (char)('0' + ((v >> 3) & 7));
		oct[2] = (char)('0' + (v & 7));
		sb_addn(&sb, oct, 3);
	}
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--uid=");
	sb_addnum(&sb, libos_ident.uid);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--gid=");
	sb_addnum(&sb, libos_ident.gid);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--groups=");
	for (unsigned i = 0; i < libos_ident.ngroups; i++) {
		if (i)
			sb_add(&sb, ",");
		sb_addnum(&sb, libos_ident.groups[i]);
	}
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--hostname=");
	sb_add(&sb, libos_hostname);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--release=");
	sb_add(&sb, libos_release);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--cpus=");
	sb_addnum(&sb, libos_proc.cpus);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--pgid=");
	sb_addnum(&sb, (unsigned long)libos_pgid);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--sid=");
	sb_addnum(&sb, (unsigned long)libos_sid);
	sb_end_string(&sb);
	if (libos_trace) {
		OPT_BEGIN();
		sb_add(&sb, "--trace");
		sb_end_string(&sb);
	}
	/* Limits the program set survive exec, as on Linux. */
	for (int i = 0; i < RLIMIT_NLIMITS_K; i++) {
		OPT_BEGIN();
		sb_add(&sb, "--rlimit=");
		sb_addnum(&sb, (unsigned long)i);
		sb_add(&sb, ":");
		sb_addnum(&sb, libos_rlimits[i].rlim_cur);
		sb_add(&sb, ":");
		sb_addnum(&sb, libos_rlimits[i].rlim_max);
		sb_end_string(&sb);
	}
#undef OPT_BEGIN
	if (sb.overflow)
		return 0;
	return count;
}
