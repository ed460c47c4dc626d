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
	/* The loader leaves nothing open but stdio and its own fd (1023). */
	int open_fds = 0;
	for (int fd = 3; fd < 1023; fd++)
		open_fds += fcntl(fd, F_GETFD) >= 0;
	printf("extra_open_fds=%d loader_fd_open=%d\n", open_fds, fcntl(1023, F_GETFD) >= 0);
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

/* Median cost of one call, from batches of 100. */
static int cmd_bench(void)
{
	enum { BATCH = 100, ROUNDS = 201 };
	long t[ROUNDS];
	struct utsname u;
	char cwd[256];
	for (int r = 0; r < ROUNDS; r++) {
		long a = now_ns();
		for (int i = 0; i < BATCH; i++)
			syscall(SYS_uname, &u);
		t[r] = (now_ns() - a) / BATCH;
	}
	printf("uname_ns=%ld\n", median(t, ROUNDS));
	for (int r = 0; r < ROUNDS; r++) {
		long a = now_ns();
		for (int i = 0; i < BATCH; i++)
			syscall(SYS_getcwd, cwd, sizeof cwd);
		t[r] = (now_ns() - a) / BATCH;
	}
	printf("getcwd_ns=%ld\n", median(t, ROUNDS));
	for (int r = 0; r < ROUNDS; r++) {
		long a = now_ns();
		for (int i = 0; i < BATCH; i++)
			syscall(SYS_getppid);
		t[r] = (now_ns() - a) / BATCH;
	}
	printf("getppid_ns=%ld\n", median(t, ROUNDS));
	for (int r = 0; r < ROUNDS; r++) {
		long a = now_ns();
		for (int i = 0; i < BATCH; i++)
			syscall(SYS_sched_yield);
		t[r] = (now_ns() - a) / BATCH;
	}
	printf("sched_yield_ns=%ld\n", median(t, ROUNDS));
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
	if (!strcmp(cmd, "sigmask"))
		return cmd_sigmask();
	if (!strcmp(cmd, "bench"))
		return cmd_bench();
	fprintf(stderr, "libos_probe: unknown command %s\n", cmd);
	return 2;
}
