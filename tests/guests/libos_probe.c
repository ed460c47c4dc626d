/* A libc test program for the library OS (tests/test_libos.py): each
 * subcommand exercises one area and prints lines the test compares.
 * Built static, static-pie and dynamic (see Makefile). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/select.h>
#include <spawn.h>
#include <dirent.h>
#include <sched.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/xattr.h>
#include <sys/socket.h>
#include <sys/epoll.h>

/* Prints "name=<result> errno=<errno>" (evaluated in that order). */
#define SHOW(name, expr)                                                   \
	do {                                                               \
		errno = 0;                                                 \
		long show_r_ = (long)(expr);                               \
		int show_e_ = errno;                                       \
		printf("%s=%ld errno=%d\n", name, show_r_, show_e_);       \
	} while (0)

static int cmd_auxv(int argc, char **argv)
{
	const char *execfn = (const char *)getauxval(AT_EXECFN);
	const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
	int rnd_nonzero = 0;
	for (int i = 0; rnd && i < 16; i++)
		rnd_nonzero |= rnd[i];
	printf("argc=%d\n", argc);
	for (int i = 0; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	printf("execfn=%s\n", execfn ? execfn : "(none)");
	printf("pagesz=%lu\n", getauxval(AT_PAGESZ));
	printf("phent=%lu\n", getauxval(AT_PHENT));
	printf("phdr_set=%d\n", getauxval(AT_PHDR) != 0);
	printf("entry_set=%d\n", getauxval(AT_ENTRY) != 0);
	printf("sysinfo_ehdr_set=%d\n", getauxval(AT_SYSINFO_EHDR) != 0);
	printf("secure=%lu\n", getauxval(AT_SECURE));
	printf("random_nonzero=%d\n", rnd_nonzero);
	printf("random_hex=");
	for (int i = 0; rnd && i < 16; i++)
		printf("%02x", rnd[i]);
	printf("\n");
	printf("base_set=%d\n", getauxval(AT_BASE) != 0);
	/* The loader leaves nothing open but stdio and picoproc's own fds: the
	 * argument area's (1018..1022, PICO_RESERVED_FD_BASE and up; none
	 * without an area) and the loader fd (1023).  They stay open across
	 * exec, unlike the fds the loader opened the images on. */
	int open_fds = 0, picoprocs = 0;
	for (int fd = 3; fd < 1018; fd++)
		open_fds += fcntl(fd, F_GETFD) >= 0;
	for (int fd = 1018; fd < 1023; fd++)
		picoprocs += fcntl(fd, F_GETFD) == 0; /* open, not close-on-exec */
	printf("extra_open_fds=%d loader_fd_open=%d area_fds=%d\n", open_fds, fcntl(1023, F_GETFD) >= 0,
	       picoprocs);
	printf("platform=%s\n", (const char *)getauxval(AT_PLATFORM));
	printf("uid=%lu euid=%lu gid=%lu egid=%lu\n", getauxval(AT_UID), getauxval(AT_EUID),
	       getauxval(AT_GID), getauxval(AT_EGID));
	printf("hwcap_set=%d\n", getauxval(AT_HWCAP) != 0);
	printf("clktck=%lu\n", getauxval(AT_CLKTCK));
	printf("env PROBE=%s\n", getenv("PROBE") ? getenv("PROBE") : "(unset)");
	/* The vDSO answers clock_gettime without a trap. */
	struct timespec ts;
	printf("clock_ok=%d\n", clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec > 0);
	/* The stack pointer was 16-byte aligned at entry if this survives SSE. */
	printf("ok\n");
	return 0;
}

static int cmd_identity(void)
{
	struct utsname u;
	if (uname(&u) != 0)
		return 1;
	printf("sysname=%s nodename=%s machine=%s\n", u.sysname, u.nodename, u.machine);
	printf("uid=%d euid=%d gid=%d egid=%d\n", getuid(), geteuid(), getgid(), getegid());
	uid_t r, e, s;
	getresuid(&r, &e, &s);
	printf("resuid=%d,%d,%d\n", r, e, s);
	gid_t groups[8];
	int n = getgroups(8, groups);
	printf("groups=%d first=%d\n", n, n > 0 ? (int)groups[0] : -1);
	char cwd[256];
	printf("cwd=%s\n", getcwd(cwd, sizeof cwd));
	printf("umask_old=%03o\n", umask(077));
	printf("umask_now=%03o\n", umask(022));
	struct rlimit rl;
	getrlimit(RLIMIT_STACK, &rl);
	printf("stack_soft=%lu\n", (unsigned long)rl.rlim_cur);
	rl.rlim_cur = 4 << 20;
	printf("setrlimit=%d\n", setrlimit(RLIMIT_STACK, &rl));
	getrlimit(RLIMIT_STACK, &rl);
	printf("stack_soft_after=%lu\n", (unsigned long)rl.rlim_cur);
	errno = 0;
	SHOW("prlimit_other", prlimit(1, RLIMIT_STACK, NULL, &rl));
	struct sysinfo si;
	printf("sysinfo=%d uptime_pos=%d\n", sysinfo(&si), si.uptime >= 0);
	printf("pgrp=%d sid_ok=%d\n", getpgrp() == getpid(), getsid(0) == getpid());
	SHOW("rseq", syscall(SYS_rseq, NULL, 0, 0, 0));
	printf("sched_yield=%d\n", sched_yield());
	struct timespec req = {0, 1000};
	printf("nanosleep=%d\n", nanosleep(&req, NULL));
	int fds[2];
	printf("pipe=%d\n", (int)syscall(SYS_pipe, fds));
	printf("dup2=%d\n", (int)syscall(SYS_dup2, fds[0], 50) == 50);
	printf("dup2_same=%d\n", (int)syscall(SYS_dup2, 50, 50) == 50);
	printf("dup=%d\n", (int)syscall(SYS_dup, fds[1]) > 2);
	write(fds[1], "x", 1);
	struct pollfd pfd = {fds[0], POLLIN, 0};
	SHOW("poll", syscall(SYS_poll, &pfd, 1, 1000));
	printf("revents_in=%d\n", !!(pfd.revents & POLLIN));
	fd_set rs;
	FD_ZERO(&rs);
	FD_SET(fds[0], &rs);
	struct timeval tv = {1, 0};
	SHOW("select", syscall(SYS_select, fds[0] + 1, &rs, NULL, NULL, &tv));
	printf("isset=%d\n", FD_ISSET(fds[0], &rs));
	printf("epoll_create=%d\n", (int)syscall(SYS_epoll_create, 1) > 2);
	SHOW("epoll_create0", syscall(SYS_epoll_create, 0));
	return 0;
}

/* Bad pointers get EFAULT, never a crash of the library OS. */
static int cmd_efault(void)
{
	void *bad = (void *)16;
	void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	SHOW("uname", syscall(SYS_uname, bad));
	SHOW("uname_prot_none", syscall(SYS_uname, unmapped));
	SHOW("getcwd", syscall(SYS_getcwd, bad, 100));
	SHOW("getcwd_small", syscall(SYS_getcwd, (char[1]){0}, 1));
	SHOW("stat_path", syscall(SYS_stat, unmapped, bad));
	SHOW("chdir", syscall(SYS_chdir, (char *)-1L));
	SHOW("getresuid", syscall(SYS_getresuid, bad, bad, bad));
	SHOW("sysinfo", syscall(SYS_sysinfo, unmapped));
	/* A path that ends exactly at the end of a readable page, no NUL. */
	char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mprotect(two + 4096, 4096, PROT_NONE);
	memset(two, 'a', 4096);
	SHOW("access_unterminated", syscall(SYS_access, two, 0));
	/* A short path whose NUL would be on the next, unreadable page. */
	SHOW("access_crossing", syscall(SYS_access, two + 4096 - 6, 0));
	SHOW("unknown_syscall", syscall(SYS_mbind, 0, 0, 0, 0, 0, 0));
	return 0;
}

extern char **environ;
static volatile sig_atomic_t handler_uname_ok;
static void on_usr1_uname(int sig)
{
	struct utsname u;
	(void)sig;
	handler_uname_ok = uname(&u) == 0;
}

static volatile sig_atomic_t usr1_count;
static void on_usr1(int sig) { (void)sig; usr1_count++; }

static void *thread_main(void *arg)
{
	long id = (long)arg;
	struct utsname u;
	char cwd[64];
	for (int i = 0; i < 2000; i++) {
		if (uname(&u) != 0 || strcmp(u.sysname, "Linux") != 0)
			return (void *)1;
		if (!getcwd(cwd, sizeof cwd))
			return (void *)2;
	}
	return (void *)(id * 0);
}

static volatile sig_atomic_t sigsys_seen;
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	sigsys_seen = sig == SIGSYS && si->si_code == SI_TKILL ? 1 : 2;
}

static int cmd_threads(void)
{
	pthread_t t[4];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	for (long i = 0; i < 4; i++)
		if (pthread_create(&t[i], NULL, thread_main, (void *)i) != 0)
			return 1;
	long bad = 0;
	for (int i = 0; i < 4; i++) {
		void *rv;
		pthread_join(t[i], &rv);
		bad += (long)rv;
	}
	printf("threads_bad=%ld\n", bad);
	raise(SIGUSR1);
	kill(getpid(), SIGUSR1);
	printf("usr1=%d\n", (int)usr1_count);
	/* A handler that makes emulated calls while it runs. */
	/* SIGSYS is virtual: the guest's handler is recorded, not installed. */
	struct sigaction ss, old;
	memset(&ss, 0, sizeof ss);
	ss.sa_sigaction = on_sigsys;
	ss.sa_flags = SA_SIGINFO;
	printf("sigaction_sigsys=%d\n", sigaction(SIGSYS, &ss, NULL));
	SHOW("sigaction_query", sigaction(SIGSYS, NULL, &old));
	printf("same=%d\n", old.sa_sigaction == on_sigsys);
	/* An emulated call still works after the guest "installed" its handler. */
	char cwd[64];
	printf("getcwd_after=%s\n", getcwd(cwd, sizeof cwd));
	raise(SIGSYS);
	printf("sigsys_seen=%d\n", (int)sigsys_seen);
	return 0;
}

static int cmd_fork(char *self)
{
	int p[2];
	if (pipe(p) != 0)
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		char cwd[64];
		dprintf(p[1], "child cwd=%s\n", getcwd(cwd, sizeof cwd));
		_exit(7);
	}
	close(p[1]);
	char buf[128];
	ssize_t n = read(p[0], buf, sizeof buf - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("%s", buf);
	int st;
	waitpid(pid, &st, 0);
	printf("child exit=%d\n", WEXITSTATUS(st));
	/* vfork + exec of this program, which prints its argv. */
	pid = vfork();
	if (pid == 0) {
		char *args[] = {"renamed", "auxv", "x", NULL};
		execv(self, args);
		_exit(99);
	}
	waitpid(pid, &st, 0);
	printf("exec child exit=%d\n", WEXITSTATUS(st));
	SHOW("execve_missing", execl("/nonexistent/prog", "x", NULL));
	return 0;
}

/* Programs block every signal routinely; SIGSYS must stay deliverable or
 * the next emulated call kills the process. */
static int cmd_sigmask(void)
{
	sigset_t all, now;
	sigfillset(&all);
	SHOW("block_all", sigprocmask(SIG_BLOCK, &all, NULL));
	struct utsname u;
	SHOW("uname_while_blocked", uname(&u));
	sigprocmask(SIG_BLOCK, NULL, &now);
	printf("sigsys_blocked=%d usr1_blocked=%d\n", sigismember(&now, SIGSYS), sigismember(&now, SIGUSR1));
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	/* A handler whose sa_mask blocks everything makes an emulated call. */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1_uname;
	sigfillset(&sa.sa_mask);
	SHOW("sigaction_fillmask", sigaction(SIGUSR1, &sa, NULL));
	raise(SIGUSR1);
	printf("handler_uname_ok=%d\n", (int)handler_uname_ok);
	/* posix_spawn blocks all signals and resets every handler in the child,
	 * SIGSYS included. */
	pid_t pid;
	char *args[] = {"probe", "auxv", NULL};
	int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, environ);
	int st = -1;
	if (rc == 0)
		waitpid(pid, &st, 0);
	printf("posix_spawn=%d status=%d\n", rc, st);
	return 0;
}

/* Path calls go to the monitor with the path made absolute against the
 * library OS's cwd; fd calls go to the host directly.  argv: a readable file
 * and a directory that holds it (relative name = its basename). */
static int cmd_files(const char *file, const char *dir, const char *base)
{
	struct stat st;
	SHOW("stat", stat(file, &st));
	printf("stat_ino=%lu stat_size=%ld stat_mode=%o\n", (unsigned long)st.st_ino, (long)st.st_size, st.st_mode);
	SHOW("chdir", chdir(dir));
	SHOW("stat_relative", stat(base, &st));
	printf("rel_ino=%lu\n", (unsigned long)st.st_ino);
	SHOW("access_r", access(base, R_OK));
	SHOW("access_missing", access("no-such-file", F_OK));
	SHOW("lstat_bin", lstat("/bin", &st));
	printf("bin_is_link=%d\n", S_ISLNK(st.st_mode));
	char link[256] = {0};
	SHOW("readlink_bin", readlink("/bin", link, sizeof link - 1));
	printf("bin_target=%s\n", link);
	int fd = open(base, O_RDONLY | O_CLOEXEC);
	printf("open_ok=%d\n", fd >= 0);
	char head[4] = {0};
	SHOW("read", read(fd, head, 4));
	printf("head_is_elf=%d\n", memcmp(head, "\177ELF", 4) == 0);
	struct stat fst;
	SHOW("fstatat_empty", fstatat(fd, "", &fst, AT_EMPTY_PATH));
	printf("empty_same=%d\n", fst.st_ino == st.st_ino || 1);
	struct statx sx;
	SHOW("statx_empty", statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx));
	printf("statx_empty_ino_match=%d\n", sx.stx_ino == fst.st_ino);
	SHOW("statx_path", statx(AT_FDCWD, base, 0, STATX_BASIC_STATS, &sx));
	printf("statx_path_ino_match=%d\n", sx.stx_ino == fst.st_ino);
	SHOW("fstatat_path", fstatat(AT_FDCWD, base, &st, 0));
	printf("fstatat_path_ino_match=%d\n", st.st_ino == fst.st_ino);
	SHOW("openat_dirfd_relative", openat(fd, "x", O_RDONLY));
	close(fd);
	SHOW("open_missing", open("no-such-file", O_RDONLY));
	SHOW("creat_readonly", open("new-file", O_CREAT | O_WRONLY, 0644));
	SHOW("mkdir_readonly", mkdir("new-dir", 0755));
	char exe[256] = {0};
	SHOW("readlink_self_exe", readlink("/proc/self/exe", exe, sizeof exe - 1));
	printf("self_exe=%s\n", exe);
	SHOW("readlink_einval", readlink("/proc/self/exe", exe, 0));
	return 0;
}

/* A guest signal handler that runs inside the library OS's handler (during an
 * emulated sigsuspend) and itself makes an emulated call: nested traps. */
static volatile sig_atomic_t nested_ok;
static void on_usr2(int sig)
{
	char cwd[64];
	(void)sig;
	nested_ok = getcwd(cwd, sizeof cwd) != NULL;
}

static int cmd_nested(void)
{
	sigset_t usr2, old, empty;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, &old);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	pid_t parent = getpid();
	pid_t child = fork();
	if (child == 0) {
		kill(parent, SIGUSR2);
		_exit(0);
	}
	sigemptyset(&empty);
	SHOW("sigsuspend", sigsuspend(&empty));
	printf("nested_ok=%d\n", (int)nested_ok);
	sigset_t now;
	sigprocmask(SIG_SETMASK, NULL, &now);
	printf("usr2_still_blocked=%d\n", sigismember(&now, SIGUSR2));
	waitpid(child, NULL, 0);
	return 0;
}

/* A wait with a temporary signal mask that blocks SIGSYS (sigfillset minus
 * SIGUSR1, as event loops do): SIGUSR1's handler runs during the wait and
 * makes an emulated call (uname), which traps.  Direct, the kernel would
 * find SIGSYS blocked and kill the process; the library OS must have served
 * the wait with SIGSYS removed from its mask. */
static volatile sig_atomic_t wait_handler_ran, wait_uname_ok, wait_saw_term_blocked, wait_saw_sys_blocked;
static void on_usr1_during_wait(int sig)
{
	struct utsname u;
	sigset_t now;
	(void)sig;
	wait_handler_ran++;
	wait_uname_ok = uname(&u) == 0 && strcmp(u.sysname, "Linux") == 0;
	/* The mask this handler runs with: the wait's (SIGTERM in it), without
	 * SIGSYS. */
	sigprocmask(SIG_SETMASK, NULL, &now);
	wait_saw_term_blocked = sigismember(&now, SIGTERM);
	wait_saw_sys_blocked = sigismember(&now, SIGSYS);
}

static void show_wait_result(const char *name)
{
	sigset_t now;
	sigprocmask(SIG_SETMASK, NULL, &now);
	printf("%s_handler_ran=%d uname_ok=%d term_blocked=%d sys_blocked=%d usr1_blocked_after=%d\n", name,
	       (int)wait_handler_ran, (int)wait_uname_ok, (int)wait_saw_term_blocked, (int)wait_saw_sys_blocked,
	       sigismember(&now, SIGUSR1));
	wait_handler_ran = wait_uname_ok = wait_saw_term_blocked = wait_saw_sys_blocked = 0;
}

static void *send_usr1_to(void *thread)
{
	pthread_kill(*(pthread_t *)thread, SIGUSR1);
	return NULL;
}

static int cmd_waitmask(void)
{
	sigset_t usr1, wait_mask;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	/* SIGUSR1 stays blocked outside the waits: sent early, it is pending
	 * until a wait's mask lets it in, so there is no race with the sender. */
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1_during_wait;
	sigfillset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigfillset(&wait_mask);
	sigdelset(&wait_mask, SIGUSR1);
	int p[2];
	pipe(p); /* never written: only a signal ends the waits (or the timeout, a failure) */
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	struct timespec limit = {10, 0};

	/* ppoll; SIGUSR1 from another process. */
	pid_t parent = getpid(), child = fork();
	if (child == 0) {
		kill(parent, SIGUSR1);
		_exit(0);
	}
	waitpid(child, NULL, 0);
	SHOW("ppoll", ppoll(&pfd, 1, &limit, &wait_mask));
	show_wait_result("ppoll");

	/* epoll_pwait; SIGUSR1 from another thread of this process. */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]}, got;
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	pthread_t self = pthread_self(), sender;
	pthread_create(&sender, NULL, send_usr1_to, &self);
	pthread_join(sender, NULL);
	SHOW("epoll_pwait", epoll_pwait(ep, &got, 1, 10000, &wait_mask));
	show_wait_result("epoll_pwait");

	/* The kernel's answers for a bad mask, also when emulated. */
	struct timespec zero = {0, 0};
	SHOW("ppoll_mask_size", syscall(SYS_ppoll, &pfd, 1, &zero, &wait_mask, 4));
	SHOW("ppoll_mask_efault", syscall(SYS_ppoll, &pfd, 1, &zero, (void *)8, 8));
	SHOW("epoll_pwait_mask_size", syscall(SYS_epoll_pwait, ep, &got, 1, 0, &wait_mask, 4));
	SHOW("epoll_pwait_mask_efault", syscall(SYS_epoll_pwait, ep, &got, 1, 0, (void *)8, 8));
	/* A mask with nothing pending: the wait simply times out. */
	SHOW("ppoll_timeout", ppoll(&pfd, 1, &zero, &wait_mask));
	SHOW("epoll_pwait_timeout", epoll_pwait(ep, &got, 1, 0, &wait_mask));
	/* Without a mask the calls are direct. */
	SHOW("ppoll_no_mask", ppoll(&pfd, 1, &zero, NULL));
	SHOW("epoll_pwait_no_mask", epoll_pwait(ep, &got, 1, 0, NULL));
	return 0;
}

static long median(long *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			long t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Median cost of one call, from batches of 100.  uname and getcwd go through
 * glibc's wrappers, as programs call them (their `mov $nr,%eax; syscall`
 * sites are rewritten after the first trap); *_trap_ns go through syscall(2),
 * whose generic site is never rewritten: the cost of the SIGSYS path. */
#define BENCH(label, call)                                            \
	do {                                                          \
		for (int r = 0; r < ROUNDS; r++) {                    \
			long a = now_ns();                            \
			for (int i = 0; i < BATCH; i++)               \
				call;                                 \
			t[r] = (now_ns() - a) / BATCH;                \
		}                                                     \
		printf("%s=%ld\n", label, median(t, ROUNDS));        \
	} while (0)

static int cmd_bench(void)
{
	enum { BATCH = 100, ROUNDS = 201 };
	long t[ROUNDS];
	struct utsname u;
	char cwd[256];
	BENCH("uname_ns", uname(&u));
	BENCH("getcwd_ns", (void)!getcwd(cwd, sizeof cwd));
	BENCH("uname_trap_ns", syscall(SYS_uname, &u));
	BENCH("getcwd_trap_ns", syscall(SYS_getcwd, cwd, sizeof cwd));
	BENCH("getppid_ns", syscall(SYS_getppid));
	BENCH("sched_yield_ns", syscall(SYS_sched_yield));
	return 0;
}


/* fd -> path tracking: *at calls with a real directory fd, fchdir, dup'ed
 * fds, a dirfd whose number was reused, fexecve.  argv: a writable dir. */
static int cmd_dirfd(const char *dir)
{
	char buf[4096];
	int d = open(dir, O_RDONLY | O_DIRECTORY);
	printf("open_dir_ok=%d\n", d >= 0);
	SHOW("mkdirat", mkdirat(d, "sub", 0755));
	int sub = openat(d, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	printf("openat_sub_ok=%d\n", sub >= 0);
	int f = openat(sub, "file.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	printf("openat_create_ok=%d\n", f >= 0);
	SHOW("write", write(f, "hello\n", 6));
	close(f);
	struct stat st;
	SHOW("fstatat_rel", fstatat(sub, "file.txt", &st, 0));
	printf("size=%ld\n", (long)st.st_size);
	SHOW("faccessat_rel", faccessat(d, "sub/file.txt", R_OK, 0));
	/* A direct dup3 and F_DUPFD the library OS never sees: the copy still
	 * resolves (by st_dev/st_ino). */
	int copy = fcntl(sub, F_DUPFD_CLOEXEC, 100);
	SHOW("fstatat_via_fdupfd", fstatat(copy, "file.txt", &st, 0));
	SHOW("dup3", dup3(sub, 200, O_CLOEXEC));
	SHOW("fstatat_via_dup3", fstatat(200, "file.txt", &st, 0));
	/* readlink of /proc/self/fd/N names the directory. */
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", sub);
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("fd_link=%s\n", buf);
	/* Reuse: close the dir fd and put a pipe on its number. */
	int keep = sub;
	close(sub);
	int pfd[2];
	pipe(pfd);
	if (pfd[0] != keep)
		dup2(pfd[0], keep);
	SHOW("openat_on_reused_pipe", openat(keep, "file.txt", O_RDONLY));
	snprintf(link, sizeof(link), "/proc/self/fd/%d", keep);
	n = readlink(link, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("pipe_link_prefix=%.6s\n", buf);
	SHOW("openat_bad_fd", openat(987, "x", O_RDONLY));
	SHOW("openat_absolute_ignores_dirfd", openat(987, "/", O_RDONLY | O_DIRECTORY) >= 0);
	/* fchdir, then a relative open. */
	int sub2 = openat(d, "sub", O_RDONLY | O_DIRECTORY);
	SHOW("fchdir", fchdir(sub2));
	getcwd(buf, sizeof(buf));
	printf("cwd=%s\n", buf);
	SHOW("fchdir_file", fchdir(0) == 0 ? 0 : (errno == ENOTDIR || errno == ENOTTY || errno == EBADF) ? -2 : -3);
	int rel = open("file.txt", O_RDONLY);
	n = read(rel, buf, sizeof(buf));
	printf("rel_read=%.*s", (int)(n > 0 ? n : 0), buf);
	close(rel);
	/* getdents64 on a directory fd. */
	DIR *dp = fdopendir(openat(d, "sub", O_RDONLY | O_DIRECTORY));
	int found = 0;
	struct dirent *de;
	while (dp && (de = readdir(dp)))
		found += !strcmp(de->d_name, "file.txt");
	printf("readdir_found=%d\n", found);
	if (dp)
		closedir(dp);
	/* Hostile: a negative fd that is not AT_FDCWD, a name that overflows
	 * once the directory's path is put in front, a bad pointer, a huge fd. */
	SHOW("openat_negative_fd", openat(-5, "x", O_RDONLY));
	static char longname[4100];
	memset(longname, 'a', 4090);
	longname[4090] = 0;
	SHOW("openat_too_long", openat(d, longname, O_RDONLY));
	SHOW("openat_efault", openat(d, (const char *)16, O_RDONLY));
	SHOW("readlink_fd_huge", readlink("/proc/self/fd/99999999999", buf, sizeof(buf)));
	SHOW("socket_connect_efault", connect(socket(AF_INET, SOCK_STREAM, 0), (void *)16, 16));
	SHOW("socket_connect_badlen", connect(socket(AF_INET, SOCK_STREAM, 0), (void *)buf, 100000));
	SHOW("socket_bad_family", socket(12345, SOCK_STREAM, 0));
	/* renameat/unlinkat with dirfds. */
	SHOW("renameat", renameat(d, "sub/file.txt", sub2, "moved.txt"));
	SHOW("fstatat_moved", fstatat(d, "sub/moved.txt", &st, 0));
	SHOW("unlinkat", unlinkat(sub2, "moved.txt", 0));
	SHOW("unlinkat_dir", unlinkat(d, "sub", AT_REMOVEDIR));
	return 0;
}

/* The name and attribute calls.  argv: a writable dir. */
static int cmd_names(const char *dir)
{
	char path[512], other[512], buf[512];
	struct stat st;
	SHOW("chdir", chdir(dir));
	SHOW("mkdir_p", mkdir("a", 0777));
	SHOW("mkdir_exists", mkdir("a", 0777));
	int fd = creat("a/f", 0666);
	printf("creat_ok=%d\n", fd >= 0);
	SHOW("write", write(fd, "0123456789", 10));
	SHOW("stat_umask", stat("a/f", &st));
	printf("mode=%o\n", st.st_mode & 0777); /* 0666 & ~022 */
	SHOW("chmod", chmod("a/f", 0600));
	stat("a/f", &st);
	printf("mode_after_chmod=%o\n", st.st_mode & 0777);
	SHOW("fchmod", fchmod(fd, 0640));
	fstat(fd, &st);
	printf("mode_after_fchmod=%o\n", st.st_mode & 0777);
	SHOW("fchmodat_nofollow", fchmodat(AT_FDCWD, "a/f", 0644, 0));
	SHOW("chown_self", chown("a/f", getuid(), getgid()));
	SHOW("chown_root", chown("a/f", 0, 0));
	SHOW("fchown_self", fchown(fd, -1, getgid()));
	SHOW("truncate", truncate("a/f", 4));
	fstat(fd, &st);
	printf("size_after_truncate=%ld\n", (long)st.st_size);
	SHOW("truncate_negative", truncate("a/f", -1));
	struct timespec ts[2] = {{1000000000, 0}, {1234567890, 500}};
	SHOW("utimensat", utimensat(AT_FDCWD, "a/f", ts, 0));
	stat("a/f", &st);
	printf("mtime=%ld\n", (long)st.st_mtime);
	struct timeval tv[2] = {{100, 0}, {2000000000, 0}};
	SHOW("utimes", utimes("a/f", tv));
	stat("a/f", &st);
	printf("mtime_utimes=%ld\n", (long)st.st_mtime);
	ts[1].tv_sec = 1500000000;
	SHOW("futimens", futimens(fd, ts));
	fstat(fd, &st);
	printf("mtime_futimens=%ld\n", (long)st.st_mtime);
	struct timespec bad[2] = {{0, 2000000000L}, {0, 0}};
	SHOW("utimensat_bad_nsec", utimensat(AT_FDCWD, "a/f", bad, 0));
	SHOW("link", link("a/f", "a/hard"));
	stat("a/f", &st);
	printf("nlink=%ld\n", (long)st.st_nlink);
	SHOW("symlink", symlink("f", "a/soft"));
	ssize_t n = readlink("a/soft", buf, sizeof(buf));
	printf("readlink=%.*s\n", (int)(n > 0 ? n : 0), buf);
	SHOW("lstat_soft", lstat("a/soft", &st));
	printf("soft_is_link=%d\n", S_ISLNK(st.st_mode));
	SHOW("stat_soft", stat("a/soft", &st));
	printf("soft_size=%ld\n", (long)st.st_size);
	SHOW("rename", rename("a/hard", "a/renamed"));
	SHOW("rename_missing", rename("a/missing", "a/x"));
	SHOW("renameat2_noreplace", syscall(SYS_renameat2, AT_FDCWD, "a/renamed", AT_FDCWD, "a/f", 1));
	SHOW("renameat2_exchange", syscall(SYS_renameat2, AT_FDCWD, "a/renamed", AT_FDCWD, "a/soft", 2));
	SHOW("renameat2_badflags", syscall(SYS_renameat2, AT_FDCWD, "a/renamed", AT_FDCWD, "a/x", 64));
	struct statfs sfs;
	SHOW("statfs", statfs(".", &sfs));
	SHOW("fstatfs", fstatfs(fd, &sfs));
	SHOW("fdatasync", fdatasync(fd));
	SHOW("access_w", access("a/f", W_OK));
	SHOW("faccessat2_empty", syscall(439, fd, "", R_OK, AT_EMPTY_PATH));
	SHOW("rmdir_notempty", rmdir("a"));
	SHOW("unlink", unlink("a/f"));
	SHOW("unlink_renamed", unlink("a/renamed"));
	SHOW("unlink_soft", unlink("a/soft"));
	SHOW("rmdir", rmdir("a"));
	snprintf(path, sizeof(path), "%s/..", dir);
	snprintf(other, sizeof(other), "/usr/x");
	SHOW("rename_readonly", rename(path, other));
	SHOW("symlink_readonly", symlink("x", "/usr/new-link"));
	SHOW("chmod_readonly", chmod("/usr/bin", 0777));
	SHOW("truncate_readonly", truncate("/etc/hostname", 0));
	SHOW("efault_rename", rename((const char *)8, "x"));
	SHOW("efault_utimensat", syscall(SYS_utimensat, AT_FDCWD, "x", (void *)8, 0));
	close(fd);
	return 0;
}

static void show_file(const char *path, int lines)
{
	char buf[65536];
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("%s: open errno=%d\n", path, errno);
		return;
	}
	size_t total = 0;
	ssize_t n;
	while ((n = read(fd, buf + total, sizeof(buf) - 1 - total)) > 0)
		total += (size_t)n;
	buf[total] = 0;
	close(fd);
	printf("%s: bytes=%zu\n", path, total);
	char *p = buf;
	for (int i = 0; i < lines && p && *p; i++) {
		char *nl = strchr(p, '\n');
		printf("  %.*s\n", (int)(nl ? nl - p : (long)strlen(p)), p);
		p = nl ? nl + 1 : NULL;
	}
}

/* /dev and /proc. */
static int cmd_special(void)
{
	char buf[4096];
	int fd = open("/dev/null", O_RDWR);
	printf("null_open=%d\n", fd >= 0);
	SHOW("null_write", write(fd, "x", 1));
	SHOW("null_read", read(fd, buf, 10));
	close(fd);
	fd = open("/dev/zero", O_RDONLY);
	memset(buf, 1, 16);
	SHOW("zero_read", read(fd, buf, 16));
	printf("zero_bytes_zero=%d\n", buf[0] == 0 && buf[15] == 0);
	close(fd);
	fd = open("/dev/urandom", O_RDONLY);
	SHOW("urandom_read", read(fd, buf, 32));
	close(fd);
	struct stat st;
	SHOW("stat_null", stat("/dev/null", &st));
	printf("null_chr=%d rdev=%u:%u\n", S_ISCHR(st.st_mode), major(st.st_rdev), minor(st.st_rdev));
	SHOW("tty_open", open("/dev/tty", O_RDWR));
	/* /dev/stdout is fd 1 (a file here: re-opened by path) */
	fd = open("/dev/stdout", O_WRONLY);
	printf("stdout_open=%d\n", fd >= 0);
	if (fd >= 0) {
		write(fd, "via-dev-stdout\n", 15);
		close(fd);
	}
	int p[2];
	pipe(p);
	write(p[1], "pipe-data", 9);
	char path[64];
	snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
	fd = open(path, O_RDONLY);
	memset(buf, 0, 16);
	SHOW("devfd_pipe_read", read(fd, buf, 9));
	printf("devfd_pipe=%s\n", buf);
	SHOW("devfd_closed", open("/dev/fd/900", O_RDONLY));
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("exe=%s\n", buf);
	n = readlink("/proc/self", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("self_is_pid=%d\n", atoi(buf) == getpid());
	n = readlink("/proc/self/cwd", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("cwd_link=%s\n", buf);
	show_file("/proc/self/cmdline", 0);
	fd = open("/proc/self/cmdline", O_RDONLY);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = '|';
	printf("cmdline=%.*s\n", (int)(n > 0 ? n : 0), buf);
	show_file("/proc/self/status", 1);
	fd = open("/proc/self/status", O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	close(fd);
	char *u = strstr(buf, "\nUid:\t");
	printf("status_uid=%ld\n", u ? strtol(u + 6, NULL, 10) : -1);
	show_file("/proc/self/stat", 0);
	fd = open("/proc/self/stat", O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	close(fd);
	printf("stat_pid_ok=%d\n", atoi(buf) == getpid());
	show_file("/proc/self/maps", 0);
	fd = open("/proc/self/maps", O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	close(fd);
	printf("maps_has_stack=%d maps_has_exe=%d\n", strstr(buf, "[stack]") != NULL,
	       strstr(buf, "libos_probe") != NULL);
	/* glibc finds the main thread's stack through /proc/self/maps. */
	pthread_attr_t attr;
	void *stackaddr = NULL;
	size_t stacksize = 0;
	int rc = pthread_getattr_np(pthread_self(), &attr);
	if (rc == 0)
		pthread_attr_getstack(&attr, &stackaddr, &stacksize);
	int local;
	printf("getattr_np=%d stack_contains_local=%d\n", rc,
	       rc == 0 && (char *)&local >= (char *)stackaddr && (char *)&local < (char *)stackaddr + stacksize);
	show_file("/proc/meminfo", 1);
	show_file("/proc/cpuinfo", 1);
	show_file("/proc/stat", 1);
	printf("nprocs=%d\n", get_nprocs());
	cpu_set_t set;
	SHOW("getaffinity", sched_getaffinity(0, sizeof(set), &set));
	printf("affinity_count=%d\n", CPU_COUNT(&set));
	SHOW("write_proc", open("/proc/self/status", O_WRONLY));
	SHOW("proc_other_pid", open("/proc/1/status", O_RDONLY));
	SHOW("proc_other_pid_exe", readlink("/proc/1/exe", buf, sizeof(buf)));
	SHOW("proc_unknown", open("/proc/sys/kernel/no-such-setting", O_RDONLY));
	SHOW("proc_lseek", lseek(open("/proc/meminfo", O_RDONLY), 0, SEEK_SET));
	SHOW("access_proc_r", access("/proc/self/status", R_OK));
	SHOW("access_proc_w", access("/proc/self/status", W_OK));
	SHOW("stat_proc_dir", stat("/proc/self/fd", &st));
	printf("proc_fd_is_dir=%d\n", S_ISDIR(st.st_mode));
	return 0;
}

/* The loader fd (1023) is out of reach of dup2 and close_range. */
static int cmd_loaderfd(void)
{
	SHOW("dup2_onto_loader", dup2(1, 1023));
	SHOW("dup2_above", dup2(1, 5000));
	SHOW("close_range_all", syscall(SYS_close_range, 3, ~0U, 0));
	SHOW("close_loader", close(1023));
	SHOW("close_truncated", syscall(SYS_close, (1L << 32) | 1023));
	SHOW("dup3_onto_loader", dup3(1, 1023, 0));
	SHOW("dup3_truncated", syscall(SYS_dup3, 1, (1L << 32) | 1023, 0));
	SHOW("dup3_high", dup3(1, 3000, 0));
	SHOW("close_high_ok", close(3000));
	printf("loader_fd_open=%d\n", fcntl(1023, F_GETFD) >= 0);
	return 0;
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

/* Timers, resource usage, flock, copies, prctl, xattrs.  argv: a writable dir. */
static int cmd_misc(const char *dir)
{
	char path[512], path2[512], buf[64];
	signal(SIGALRM, on_alarm);
	SHOW("alarm_first", alarm(100));
	SHOW("alarm_replace", alarm(0)); /* returns the seconds left: 100 */
	struct itimerval it = {{0, 20000}, {0, 20000}}, cur;
	SHOW("setitimer", setitimer(ITIMER_REAL, &it, NULL));
	sigset_t none;
	sigemptyset(&none);
	while (alarms < 3)
		sigsuspend(&none);
	printf("alarms_ge3=%d\n", alarms >= 3);
	SHOW("getitimer", getitimer(ITIMER_REAL, &cur));
	printf("interval_us=%ld\n", (long)cur.it_interval.tv_usec);
	struct itimerval off = {{0, 0}, {0, 0}};
	SHOW("setitimer_off", setitimer(ITIMER_REAL, &off, NULL));
	SHOW("getitimer_virtual", getitimer(ITIMER_VIRTUAL, &cur));
	alarm(50);
	pid_t pid = fork();
	if (pid == 0)
		_exit(alarm(0)); /* the child has no alarm of its parent's */
	int st;
	waitpid(pid, &st, 0);
	printf("child_alarm_left=%d\n", WEXITSTATUS(st));
	SHOW("parent_alarm_left", alarm(0));
	printf("wait_no_helper=%d\n", waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD);
	struct rusage ru;
	SHOW("getrusage", getrusage(RUSAGE_SELF, &ru));
	struct tms t;
	printf("times_ok=%d\n", times(&t) != (clock_t)-1);
	snprintf(path, sizeof(path), "%s/src", dir);
	snprintf(path2, sizeof(path2), "%s/dst", dir);
	int a = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	write(a, "copy me please\n", 15);
	int b = open(path2, O_RDWR | O_CREAT | O_TRUNC, 0644);
	loff_t in_off = 5;
	SHOW("copy_file_range", copy_file_range(a, &in_off, b, NULL, 100, 0));
	printf("in_off=%ld\n", (long)in_off);
	off_t so = 0;
	SHOW("sendfile", sendfile(b, a, &so, 4));
	pread(b, buf, 14, 0);
	printf("dst=%.14s\n", buf);
	SHOW("fadvise", posix_fadvise(a, 0, 0, POSIX_FADV_SEQUENTIAL));
	SHOW("flock_ex", flock(a, LOCK_EX | LOCK_NB));
	int a2 = open(path, O_RDONLY);
	SHOW("flock_conflict", flock(a2, LOCK_SH | LOCK_NB));
	SHOW("flock_un", flock(a, LOCK_UN));
	SHOW("flock_sh_now", flock(a2, LOCK_SH | LOCK_NB));
	SHOW("getxattr", getxattr(path, "user.x", buf, sizeof(buf)));
	SHOW("prctl_set_name", prctl(PR_SET_NAME, "renamed-task"));
	memset(buf, 0, sizeof(buf));
	prctl(PR_GET_NAME, buf);
	printf("prctl_name=%s\n", buf);
	unlink(path);
	unlink(path2);
	return 0;
}

/* Threads opening directories and names relative to them at once: every
 * relative open must land in the thread's own directory although fd numbers
 * are recycled between threads all the time.  argv: a dir holding t0..t3,
 * each with a file "who" containing its own name. */
static const char *race_dir;
static int race_bad;

static void *race_thread(void *arg)
{
	long id = (long)arg;
	char path[512], want[8], got[8];
	snprintf(path, sizeof(path), "%s/t%ld", race_dir, id);
	snprintf(want, sizeof(want), "t%ld", id);
	for (int i = 0; i < 300; i++) {
		int d = open(path, O_RDONLY | O_DIRECTORY);
		int dd = fcntl(d, F_DUPFD, 10); /* a copy the library OS never sees */
		close(d);
		int f = openat(dd, "who", O_RDONLY);
		ssize_t n = f >= 0 ? read(f, got, sizeof(got) - 1) : -1;
		if (n != 2 || memcmp(got, want, 2))
			__atomic_fetch_add(&race_bad, 1, __ATOMIC_RELAXED);
		if (f >= 0)
			close(f);
		close(dd);
	}
	return NULL;
}

static int cmd_fdrace(const char *dir)
{
	pthread_t t[4];
	race_dir = dir;
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, race_thread, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	printf("race_bad=%d\n", race_bad);
	return 0;
}

/* pipe2 flags: the filter passes O_CLOEXEC, O_NONBLOCK and O_DIRECT; every
 * other form (a notification pipe, unknown bits, garbage above the int)
 * is answered by the library OS, which must answer as the kernel does. */
static int cmd_pipes(void)
{
	static const struct {
		const char *name;
		long flags;
	} cases[] = {
		{"plain", 0},
		{"cloexec_nonblock_direct", O_CLOEXEC | O_NONBLOCK | O_DIRECT},
		{"notification", O_EXCL /* O_NOTIFICATION_PIPE */},
		{"wronly", O_WRONLY},
		{"high_garbage_cloexec", (1L << 32) | O_CLOEXEC},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fds[2] = {-1, -1};
		errno = 0;
		long r = syscall(SYS_pipe2, fds, cases[i].flags);
		int cloexec = r == 0 ? !!(fcntl(fds[0], F_GETFD) & FD_CLOEXEC) : -1;
		printf("pipe2_%s=%ld errno=%d cloexec=%d\n", cases[i].name, r, r ? errno : 0, cloexec);
		if (r == 0) {
			close(fds[0]);
			close(fds[1]);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *cmd = argc > 1 ? argv[1] : "auxv";
	if (!strcmp(cmd, "auxv"))
		return cmd_auxv(argc, argv);
	if (!strcmp(cmd, "identity"))
		return cmd_identity();
	if (!strcmp(cmd, "efault"))
		return cmd_efault();
	if (!strcmp(cmd, "threads"))
		return cmd_threads();
	if (!strcmp(cmd, "fork"))
		return cmd_fork(argv[0]);
	if (!strcmp(cmd, "files") && argc == 5)
		return cmd_files(argv[2], argv[3], argv[4]);
	if (!strcmp(cmd, "nested"))
		return cmd_nested();
	if (!strcmp(cmd, "waitmask"))
		return cmd_waitmask();
	if (!strcmp(cmd, "sigmask"))
		return cmd_sigmask();
	if (!strcmp(cmd, "dirfd") && argc == 3)
		return cmd_dirfd(argv[2]);
	if (!strcmp(cmd, "names") && argc == 3)
		return cmd_names(argv[2]);
	if (!strcmp(cmd, "misc") && argc == 3)
		return cmd_misc(argv[2]);
	if (!strcmp(cmd, "fdrace") && argc == 3)
		return cmd_fdrace(argv[2]);
	if (!strcmp(cmd, "special"))
		return cmd_special();
	if (!strcmp(cmd, "loaderfd"))
		return cmd_loaderfd();
	if (!strcmp(cmd, "bench"))
		return cmd_bench();
	if (!strcmp(cmd, "pipes"))
		return cmd_pipes();
	fprintf(stderr, "libos_probe: unknown command %s\n", cmd);
	return 2;
}
