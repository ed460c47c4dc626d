/* Process-wide library-OS state: identity, umask, cwd, rlimits.
 *
 * Threads share it (like the kernel's per-process state); fork copies it with
 * the memory; exec hands it to the next loader instance as options; a vm
 * child has a copy of its own (vmchild.c). */
#include "libos.h"

struct libos_process libos_main_process = {
	.pub = {.cwd = {"/", "/"}},
	.pub.umask = 022,
	.ident = {1000, 1000, 0, {0}},
};
/* At a fixed address (libos/build.py links the section there), so that the
 * monitor finds it in every guest process. */
struct pico_libos_public libos_public __attribute__((section(".picoproc_public"), aligned(4096))) = {
	.magic = PICO_LIBOS_PUBLIC_MAGIC,
	.main = (uint64_t)(uintptr_t)&libos_main_process.pub,
};
/* Constant once the loader has read its options. */
char libos_hostname[65] = "picoproc";
char libos_release[65] = "6.1.0-picoproc";

void libos_lock(int *word)
{
	int self = (int)sys0(__NR_gettid);
	for (unsigned spins = 1;; spins++) {
		int holder = 0;
		if (__atomic_compare_exchange_n(word, &holder, self, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return;
		if (!(spins % 1024) && sys3(__NR_tgkill, sys0(__NR_getpid), holder, 0) == -ESRCH)
			__atomic_compare_exchange_n(word, &holder, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		__asm__ volatile("pause");
	}
}

void libos_unlock(int *word)
{
	__atomic_store_n(word, 0, __ATOMIC_RELEASE);
}

void libos_process_copy(struct libos_process *dst, struct libos_process *src)
{
	char cwd[PICO_MAX_PATH];
	struct libos_fd_overlay *overlay = dst->fd_overlay;
	long n = 0;
	/* The cwd through its seqlock: another thread may be in chdir. */
	for (;;) {
		unsigned seq = __atomic_load_n(&src->pub.cwd_seq, __ATOMIC_ACQUIRE);
		n = (long)libos_strnlen(src->pub.cwd[seq & 1], PICO_MAX_PATH - 1);
		memcpy(cwd, src->pub.cwd[seq & 1], (size_t)n);
		cwd[n] = 0;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&src->pub.cwd_seq, __ATOMIC_RELAXED) == seq)
			break;
	}
	dst->pub.pid = 0;
	dst->pub.cwd_seq = 0;
	dst->cwd_writer_busy = 0;
	memcpy(dst->pub.cwd[0], cwd, (size_t)n + 1);
	dst->pub.umask = __atomic_load_n(&src->pub.umask, __ATOMIC_RELAXED);
	dst->ident = src->ident;
	dst->pub.pgid = src->pub.pgid;
	dst->pub.sid = src->pub.sid;
	memcpy(dst->pub.comm, src->pub.comm, sizeof(dst->pub.comm));
	memcpy(dst->rlimits, src->rlimits, sizeof(dst->rlimits));
	dst->guest_sigsys = src->guest_sigsys;
	dst->guest_sigsys_lock = 0;
	dst->itimer = src->itimer;
	dst->itimer.lock = 0;
	dst->not_dumpable = src->not_dumpable;
	dst->timerslack_ns = src->timerslack_ns;
	dst->subreaper = 0; /* not inherited by a child, as on Linux */
	dst->nice = src->nice;
	memcpy(dst->chosen_cpus, src->chosen_cpus, sizeof(dst->chosen_cpus));
	/* A new process has no timer (POSIX), no waiter and no signalfd; the
	 * dispositions the library OS keeps aside for the program are its. */
	memset(&dst->timers, 0, sizeof(dst->timers));
	libos_sigwait_inherit(&dst->sigwait, &src->sigwait);
	dst->fd_overlay = overlay;
}

#define RLIM_INF (~0ULL)

void libos_rlimits_init(void)
{
	struct rlimit64 *rl = libos_main_process.rlimits;
	for (int i = 0; i < RLIMIT_NLIMITS_K; i++) {
		rl[i].rlim_cur = RLIM_INF;
		rl[i].rlim_max = RLIM_INF;
	}
	/* What a default Linux login sees; the monitor enforces the real limits on
	 * the host, these are only what the guest is told. */
	rl[RLIMIT_STACK].rlim_cur = 8UL << 20;
	rl[RLIMIT_CORE].rlim_cur = 0;
	/* Below picoproc's own fds, not 1024: programs that close "every fd
	 * below the limit" one by one (closefrom fallbacks) must not close the
	 * loader fd (execve needs it) or the argument area's. */
	rl[RLIMIT_NOFILE].rlim_cur = PICO_RESERVED_FD_BASE;
	rl[RLIMIT_NOFILE].rlim_max = PICO_RESERVED_FD_BASE;
	rl[RLIMIT_NPROC].rlim_cur = 4096;
	rl[RLIMIT_NPROC].rlim_max = 4096;
	rl[RLIMIT_MEMLOCK].rlim_cur = 8UL << 20;
	rl[RLIMIT_MEMLOCK].rlim_max = 8UL << 20;
	rl[RLIMIT_SIGPENDING].rlim_cur = 4096;
	rl[RLIMIT_SIGPENDING].rlim_max = 4096;
	rl[RLIMIT_MSGQUEUE].rlim_cur = 819200;
	rl[RLIMIT_MSGQUEUE].rlim_max = 819200;
	rl[RLIMIT_NICE].rlim_cur = 0;
	rl[RLIMIT_NICE].rlim_max = 0;
	rl[RLIMIT_RTPRIO].rlim_cur = 0;
	rl[RLIMIT_RTPRIO].rlim_max = 0;
}

/* The real RLIMIT_NOFILE soft limit, found without prlimit (not in the ABI):
 * fcntl(F_DUPFD, n) fails with EINVAL exactly when n >= the limit. */
static unsigned long probe_nofile(void)
{
	unsigned long lo = 1, hi = PICO_RESERVED_FD_BASE; /* the answer is in [lo, hi] */
	int fd = -1;
	for (int k = 0; k < 3 && fd < 0; k++)
		if (sys2(__NR_fcntl, k, F_GETFD) >= 0)
			fd = k;
	if (fd < 0)
		return PICO_RESERVED_FD_BASE;
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
	struct rlimit64 *rl = libos_main_process.rlimits;
	if (nofile_given)
		return;
	unsigned long n = probe_nofile();
	if (n < rl[RLIMIT_NOFILE].rlim_cur) {
		rl[RLIMIT_NOFILE].rlim_cur = n;
		rl[RLIMIT_NOFILE].rlim_max = n;
	}
}

/* ---- the current directory: two buffers and a sequence number ----
 * A reader takes seq, copies buffer (seq & 1) and retries if seq moved.  A
 * writer fills the other buffer and then bumps seq, so a reader never sees a
 * half-written path and never waits for a writer (a signal handler may read
 * the cwd while its own thread is in the middle of chdir). */
long libos_cwd_get(char *out, size_t cap)
{
	struct libos_process *proc = libos_current();
	for (;;) {
		unsigned seq = __atomic_load_n(&proc->pub.cwd_seq, __ATOMIC_ACQUIRE);
		const char *src = proc->pub.cwd[seq & 1];
		size_t n = libos_strnlen(src, PICO_MAX_PATH - 1);
		if (n + 1 > cap)
			return -ERANGE;
		memcpy(out, src, n);
		out[n] = 0;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&proc->pub.cwd_seq, __ATOMIC_RELAXED) == seq)
			return (long)n;
	}
}

long libos_cwd_set(const char *abs_path)
{
	struct libos_process *proc = libos_current();
	size_t n = libos_strlen(abs_path);
	if (n == 0 || abs_path[0] != '/')
		return -EINVAL;
	if (n >= PICO_MAX_PATH)
		return -ENAMETOOLONG;
	while (__atomic_exchange_n(&proc->cwd_writer_busy, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	unsigned seq = __atomic_load_n(&proc->pub.cwd_seq, __ATOMIC_RELAXED);
	char *dst = proc->pub.cwd[(seq + 1) & 1];
	memcpy(dst, abs_path, n + 1);
	__atomic_store_n(&proc->pub.cwd_seq, seq + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&proc->cwd_writer_busy, 0, __ATOMIC_RELEASE);
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

long libos_dir_path(int dirfd, int need_dir, char *out, size_t cap)
{
	if (dirfd == AT_FDCWD)
		return libos_cwd_get(out, cap);
	struct stat st;
	long r = libos_fd_path(dirfd, out, cap, &st);
	/* -ENOSYS: no path remembered, but fstat succeeded (the fd is open). */
	if ((r >= 0 || r == -ENOSYS) && need_dir && (st.st_mode & S_IFMT) != S_IFDIR)
		return -ENOTDIR;
	return r;
}

long libos_join_base(int dirfd, char *out, size_t cap)
{
	long r = libos_dir_path(dirfd, 1, out, cap);
	if (r < 0)
		return r;
	size_t n = (size_t)r;
	if (n > 1) {
		if (n + 1 >= cap)
			return -ENAMETOOLONG;
		out[n++] = '/';
	}
	return (long)n;
}

long libos_resolve_path(int dirfd, const char *path, char *out, size_t cap)
{
	struct strbuf sb;
	if (path[0] == 0)
		return -ENOENT;
	sb_init(&sb, out, cap);
	if (path[0] != '/') {
		long r = libos_join_base(dirfd, out, cap);
		if (r < 0)
			return r;
		sb.len = (size_t)r;
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
	struct libos_process *proc = libos_current();
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
		unsigned v = proc->pub.umask & 0777;
		oct[0] = (char)('0' + ((v >> 6) & 7));
		oct[1] = (char)('0' + ((v >> 3) & 7));
		oct[2] = (char)('0' + (v & 7));
		sb_addn(&sb, oct, 3);
	}
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--uid=");
	sb_addnum(&sb, proc->ident.uid);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--gid=");
	sb_addnum(&sb, proc->ident.gid);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--groups=");
	for (unsigned i = 0; i < proc->ident.ngroups; i++) {
		if (i)
			sb_add(&sb, ",");
		sb_addnum(&sb, proc->ident.groups[i]);
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
	sb_addnum(&sb, (unsigned long)proc->pub.pgid);
	sb_end_string(&sb);
	OPT_BEGIN();
	sb_add(&sb, "--sid=");
	sb_addnum(&sb, (unsigned long)proc->pub.sid);
	sb_end_string(&sb);
	if (proc->nice) {
		/* The nice value survives exec, as on Linux (0..19: only raised). */
		OPT_BEGIN();
		sb_add(&sb, "--nice=");
		sb_addnum(&sb, (unsigned long)proc->nice);
		sb_end_string(&sb);
	}
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
		sb_addnum(&sb, proc->rlimits[i].rlim_cur);
		sb_add(&sb, ":");
		sb_addnum(&sb, proc->rlimits[i].rlim_max);
		sb_end_string(&sb);
	}
#undef OPT_BEGIN
	if (sb.overflow)
		return 0;
	return count;
}
