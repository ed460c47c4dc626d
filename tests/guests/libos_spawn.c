/* Process creation with Linux semantics (tests/test_process.py): vfork,
 * posix_spawn, system, clone with CLONE_VM and clone3, each checked against
 * what the parent must still see afterwards.  Every subcommand prints
 * "key=value" lines; the test runs it natively (same identity) and in a
 * picoprocess and compares.  Built static, static-pie and dynamic. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fenv.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sched.h>

extern char **environ;
static const char *self_path;

struct state {
	char cwd[4096];
	mode_t umask;
	pid_t pgrp, sid;
	void *usr1;
};

static void snapshot(struct state *s)
{
	if (!getcwd(s->cwd, sizeof(s->cwd)))
		strcpy(s->cwd, "?");
	s->umask = umask(022);
	umask(s->umask);
	s->pgrp = getpgrp();
	s->sid = getsid(0);
	struct sigaction sa;
	sigaction(SIGUSR1, NULL, &sa);
	s->usr1 = (void *)sa.sa_handler;
}

static int same(const struct state *a, const struct state *b)
{
	return !strcmp(a->cwd, b->cwd) && a->umask == b->umask && a->pgrp == b->pgrp && a->sid == b->sid &&
	       a->usr1 == b->usr1;
}

static void on_usr1(int sig) { (void)sig; }

static void setup_parent(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	umask(027);
	if (chdir("/etc") < 0)
		perror("chdir /etc");
}

static int wait_status(pid_t pid)
{
	int st = 0;
	if (waitpid(pid, &st, 0) != pid)
		return -1000 - errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The child side of "spawn": what a spawned process inherited. */
static int cmd_child(void)
{
	char cwd[4096];
	struct sigaction sa;
	sigaction(SIGUSR1, NULL, &sa);
	mode_t m = umask(0);
	printf("child_cwd=%s child_umask=%03o child_pgrp_is_self=%d child_sid_is_self=%d child_usr1_default=%d\n",
	       getcwd(cwd, sizeof(cwd)) ? cwd : "?", m, getpgrp() == getpid(), getsid(0) == getpid(),
	       sa.sa_handler == SIG_DFL);
	char buf[64] = "";
	ssize_t n = read(3, buf, sizeof(buf) - 1);
	printf("child_fd3=%s\n", n > 0 ? buf : "(none)");
	fflush(stdout);
	return 5;
}

static int cmd_spawn(void)
{
	struct state before, after;
	setup_parent();
	snapshot(&before);
	int fd = open("/etc/hostname", O_RDONLY);
	char *argv[] = {(char *)self_path, "child", NULL};

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addchdir_np(&fa, "/usr");
	posix_spawn_file_actions_addopen(&fa, 3, "/etc/passwd", O_RDONLY, 0);
	posix_spawnattr_init(&at);
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGUSR1);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_RESETIDS);
	pid_t pid;
	fflush(stdout);
	int rc = posix_spawn(&pid, self_path, &fa, &at, argv, environ);
	printf("spawn_rc=%d\n", rc);
	fflush(stdout);
	if (rc == 0)
		printf("spawn_status=%d\n", wait_status(pid));
	/* A failing exec reports its errno through the memory the child shares
	 * (posix_spawn returns it): a fork-based emulation would return 0. */
	rc = posix_spawn(&pid, "/nonexistent/prog", NULL, NULL, argv, environ);
	printf("spawn_missing_rc=%d\n", rc);
	rc = posix_spawnp(&pid, "true", NULL, NULL, (char *[]){"true", NULL}, environ);
	printf("spawnp_true_rc=%d status=%d\n", rc, rc ? -1 : wait_status(pid));
	snapshot(&after);
	printf("parent_state_kept=%d fd_still_open=%d\n", same(&before, &after), fcntl(fd, F_GETFD) >= 0);
	return 0;
}

static int cmd_system(void)
{
	struct state before, after;
	setup_parent();
	snapshot(&before);
	fflush(stdout);
	int s1 = system("exit 7");
	int s2 = system("cd /usr && umask 077 && pwd");
	fflush(stdout);
	snapshot(&after);
	printf("system_exit=%d system_cd_exit=%d parent_state_kept=%d\n", WEXITSTATUS(s1), WEXITSTATUS(s2),
	       same(&before, &after));
	return 0;
}

/* Uses a lot of the stack the vfork child shares with its parent, with
 * library-OS calls in between, as a child that scribbles would. */
static __attribute__((noinline)) long scribble(int depth)
{
	volatile char big[16384];
	memset((char *)big, 0xA5, sizeof(big));
	char cwd[256];
	long r = getcwd(cwd, sizeof(cwd)) ? 1 : 0;
	r += syscall(SYS_getuid) >= 0;
	if (depth > 0)
		r += scribble(depth - 1);
	return r + (big[depth] == (char)0xA5);
}

/* vfork; the child fails an exec, then runs sh -c 'exit $#' with n
 * arguments: its status. */
static int __attribute__((noinline)) vfork_exec_args(int n)
{
	char **av = calloc((size_t)n + 4, sizeof(char *));
	if (!av)
		return -1;
	av[0] = "sh";
	av[1] = "-c";
	av[2] = "exit $#";
	for (int k = 0; k < n; k++)
		av[3 + k] = "arg";
	pid_t pid = vfork();
	if (pid == 0) {
		execl("/nonexistent", "x", (char *)NULL);
		execv("/bin/sh", av);
		_exit(126);
	}
	int st = wait_status(pid);
	free(av);
	return st;
}

static int cmd_vfork(void)
{
	struct state before, after;
	setup_parent();
	snapshot(&before);
	fesetround(FE_TOWARDZERO);
	volatile int shared = 0;
	volatile int child_round = -1;
	pid_t pid = vfork();
	if (pid == 0) {
		/* In the child: memory is the parent's, state is not. */
		shared = 42;
		child_round = fegetround() == FE_TOWARDZERO;
		if (chdir("/") < 0 || setsid() < 0)
			_exit(90);
		umask(077);
		signal(SIGUSR1, SIG_IGN);
		_exit(scribble(6) > 0 ? 3 : 91);
	}
	int st = wait_status(pid);
	snapshot(&after);
	printf("vfork_status=%d shared_write_seen=%d child_rounding_kept=%d parent_rounding_kept=%d\n", st,
	       shared == 42, child_round, fegetround() == FE_TOWARDZERO);
	printf("parent_state_kept=%d\n", same(&before, &after));
	fesetround(FE_TONEAREST);

	/* exec from the child; a failing exec's errno, through shared memory. */
	volatile int exec_errno = 0;
	pid = vfork();
	if (pid == 0) {
		execl("/nonexistent", "x", (char *)NULL);
		exec_errno = errno;
		_exit(127);
	}
	st = wait_status(pid);
	printf("vfork_exec_missing status=%d errno_seen=%d\n", st, exec_errno);
	pid = vfork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exit 4", (char *)NULL);
		_exit(126);
	}
	printf("vfork_exec_sh status=%d\n", wait_status(pid));
	/* An exec after a failed one, from the same child, with argument
	 * vectors small and large (the library OS builds the next image's
	 * arguments in the child's block when they fit, in a mapping of its
	 * own when not): every argument arrives. */
	printf("vfork_exec_args n=1 status=%d\n", vfork_exec_args(1));
	printf("vfork_exec_args n=2000 status=%d\n", vfork_exec_args(2000));
	printf("vfork_exec_args n=10000 status=%d\n", vfork_exec_args(10000));
	/* A child that dies by a signal while it shares our stack. */
	pid = vfork();
	if (pid == 0) {
		scribble(2);
		raise(SIGKILL);
		_exit(1);
	}
	printf("vfork_killed status=%d\n", wait_status(pid));
	snapshot(&after);
	printf("parent_state_kept_after_all=%d\n", same(&before, &after));
	return 0;
}

/* clone(CLONE_VM) without CLONE_VFORK: a child that runs at the same time
 * as its parent, in its memory, with a process state of its own. */
struct vm_arg {
	volatile int done;
	char cwd[256];
};

static int vm_child(void *p)
{
	struct vm_arg *a = p;
	if (chdir("/usr") < 0)
		return 1;
	if (!getcwd(a->cwd, sizeof(a->cwd)))
		return 2;
	a->done = 1;
	return 0;
}

static int cmd_clonevm(int rounds)
{
	struct state before, after;
	setup_parent();
	snapshot(&before);
	size_t size = 64 * 1024;
	char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	int ok = 0;
	for (int i = 0; i < rounds; i++) {
		struct vm_arg a = {0, ""};
		pid_t pid = clone(vm_child, stack + size, CLONE_VM | SIGCHLD, &a);
		if (pid < 0) {
			printf("clone_errno=%d round=%d\n", errno, i);
			break;
		}
		int st = wait_status(pid);
		ok += st == 0 && a.done && !strcmp(a.cwd, "/usr");
	}
	snapshot(&after);
	printf("clonevm_ok=%d/%d parent_state_kept=%d\n", ok, rounds, same(&before, &after));
	return 0;
}

/* Threads: glibc >= 2.34 creates them with clone3. */
static __thread int tls_value;
static void *thread_main(void *p)
{
	long i = (long)p;
	tls_value = (int)i;
	int ok = fegetround() == FE_UPWARD;
	for (int k = 0; k < 1000; k++)
		ok &= tls_value == (int)i;
	return (void *)(long)ok;
}

static int cmd_threads(void)
{
	fesetround(FE_UPWARD);
	pthread_t t[16];
	int ok = 0;
	for (int round = 0; round < 4; round++) {
		for (long i = 0; i < 16; i++)
			pthread_create(&t[i], NULL, thread_main, (void *)i);
		for (int i = 0; i < 16; i++) {
			void *r;
			pthread_join(t[i], &r);
			ok += (long)r;
		}
	}
	printf("threads_ok=%d/64 main_rounding_kept=%d\n", ok, fegetround() == FE_UPWARD);
	fesetround(FE_TONEAREST);
	return 0;
}

/* clone3's argument checks, as the kernel makes them. */
static long raw_clone3(struct clone_args *ca, size_t size)
{
	long r = syscall(SYS_clone3, ca, size);
	if (r == 0)
		_exit(0);
	return r < 0 ? -errno : r;
}

static int cmd_clone3(void)
{
	struct clone_args ca;
	unsigned char big[128];
	memset(&ca, 0, sizeof(ca));
	printf("small_size=%ld\n", raw_clone3(&ca, 32));
	memset(big, 0, sizeof(big));
	big[100] = 1;
	memcpy(big, &ca, sizeof(ca));
	printf("nonzero_tail=%ld\n", raw_clone3((struct clone_args *)big, sizeof(big)));
	ca.exit_signal = 200;
	printf("bad_exit_signal=%ld\n", raw_clone3(&ca, sizeof(ca)));
	ca.exit_signal = SIGCHLD;
	ca.flags = CSIGNAL & SIGCHLD;
	printf("csignal_in_flags=%ld\n", raw_clone3(&ca, sizeof(ca)));
	ca.flags = 0;
	ca.stack_size = 4096;
	printf("size_without_stack=%ld\n", raw_clone3(&ca, sizeof(ca)));
	ca.stack_size = 0;
	ca.flags = CLONE_THREAD;
	printf("thread_without_sighand=%ld\n", raw_clone3(&ca, sizeof(ca)));
	ca.flags = CLONE_SIGHAND;
	ca.exit_signal = 0;
	printf("sighand_without_vm=%ld\n", raw_clone3(&ca, sizeof(ca)));
	/* A fork through clone3, and a vfork with its own stack. */
	memset(&ca, 0, sizeof(ca));
	ca.exit_signal = SIGCHLD;
	long pid = raw_clone3(&ca, sizeof(ca));
	printf("fork_like status=%d\n", pid > 0 ? wait_status((pid_t)pid) : (int)pid);
	fflush(stdout);
	return 0;
}

/* Parallel spawns while another thread watches the cwd: a child's chdir
 * must never show in its parent. */
static volatile int stop_watch;
static void *watch_cwd(void *p __attribute__((unused)))
{
	long bad = 0;
	char cwd[4096];
	while (!stop_watch) {
		if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, "/etc"))
			bad++;
		if (umask(027) != 027)
			bad++;
	}
	return (void *)bad;
}

static int cmd_concurrent(int rounds)
{
	setup_parent();
	pthread_t w;
	pthread_create(&w, NULL, watch_cwd, NULL);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addchdir_np(&fa, "/usr");
	char *argv[] = {"sh", "-c", "umask 077; cd /; exit 0", NULL};
	int ok = 0;
	for (int i = 0; i < rounds; i++) {
		pid_t pid;
		if (posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ) == 0 && wait_status(pid) == 0)
			ok++;
	}
	stop_watch = 1;
	void *bad;
	pthread_join(w, &bad);
	printf("concurrent_spawns=%d/%d watcher_saw_foreign_state=%ld\n", ok, rounds, (long)bad);
	return 0;
}

/* ---- process-wide state that children sharing memory must not touch ----
 * POSIX timers, CPU-time itimers, the parent-death signal, nice values,
 * signalfds and the dispositions kept aside while a signal is accepted
 * synchronously all belong to one process: a vfork or posix_spawn child
 * starts without the timers and signalfds, and what it changes stays its
 * own, although it runs in its parent's memory. */

/* Waits (at most 5 s) for `n` signals `sig` that the caller blocks; the
 * number that came. */
static int take_signals(int sig, int n)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	struct timespec tmo = {5, 0};
	int got = 0;
	while (got < n) {
		siginfo_t si;
		if (sigtimedwait(&set, &si, &tmo) != sig)
			break;
		got++;
	}
	return got;
}

/* A program that uses timers, run by the "timers" test through posix_spawn
 * and vfork+exec. */
static int cmd_timerchild(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	timer_t t;
	struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM};
	struct itimerspec its = {{0, 2000000}, {0, 2000000}};
	int ok = timer_create(CLOCK_MONOTONIC, &ev, &t) == 0 && timer_settime(t, 0, &its, NULL) == 0;
	siginfo_t si = {0};
	struct timespec tmo = {5, 0};
	int first = sigtimedwait(&set, &si, &tmo);
	printf("timerchild ok=%d signo=%d code_is_timer=%d more=%d\n", ok, first, si.si_code == SI_TIMER,
	       take_signals(SIGALRM, 2));
	return 0;
}

/* How much memory the process has mapped (what a child's leftovers would
 * add). */
static unsigned long mapped_bytes(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long total = 0, lo, hi;
	char line[512];
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			total += hi - lo;
	fclose(f);
	return total;
}

static volatile int usr1_handled;
static void count_usr1(int sig)
{
	(void)sig;
	usr1_handled++;
}

struct vfork_report {
	int status, timer, itimer, pdeath, nice, dfl;
};

static void vfork_using_tables(struct vfork_report *out, int nice_before)
{
	volatile int child_timer = -1, child_itimer = -1, child_pdeath = -1, child_nice = -1, child_dfl = -1;
	pid_t pid = vfork();
	if (pid == 0) {
		timer_t t;
		struct sigevent none = {.sigev_notify = SIGEV_NONE};
		struct itimerspec its = {{0, 2000000}, {0, 2000000}};
		child_timer = timer_create(CLOCK_MONOTONIC, &none, &t) == 0 && timer_settime(t, 0, &its, NULL) == 0;
		struct itimerval vt = {{0, 0}, {100, 0}}, cur;
		child_itimer = setitimer(ITIMER_VIRTUAL, &vt, NULL) == 0 && getitimer(ITIMER_VIRTUAL, &cur) == 0 &&
			       cur.it_value.tv_sec > 0;
		int sig = 0;
		child_pdeath = prctl(PR_SET_PDEATHSIG, SIGTERM) == 0 && prctl(PR_GET_PDEATHSIG, &sig) == 0 &&
			       sig == SIGTERM;
		int want = nice_before + 5 > 19 ? 19 : nice_before + 5;
		child_nice = setpriority(PRIO_PROCESS, 0, want) == 0 && getpriority(PRIO_PROCESS, 0) == want;
		/* As glibc's posix_spawn and Python's subprocess do in the child. */
		child_dfl = signal(SIGUSR1, SIG_DFL) == count_usr1;
		_exit(0);
	}
	out->status = wait_status(pid);
	out->timer = child_timer;
	out->itimer = child_itimer;
	out->pdeath = child_pdeath;
	out->nice = child_nice;
	out->dfl = child_dfl;
}

static int cmd_timers(void)
{
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR1);
	sigaddset(&blocked, SIGUSR2);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = count_usr1;
	sigaction(SIGUSR1, &sa, NULL);

	/* The parent's timer, armed throughout; its signal is taken with
	 * sigtimedwait. */
	timer_t mine;
	struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
	struct itimerspec its = {{0, 2000000}, {0, 2000000}};
	if (timer_create(CLOCK_MONOTONIC, &ev, &mine) || timer_settime(mine, 0, &its, NULL))
		return 3;
	/* A signalfd of SIGUSR1: SIGUSR1 is accepted synchronously, and the
	 * handler installed above is the program's disposition kept aside. */
	int sfd = signalfd(-1, &(sigset_t){0}, SFD_CLOEXEC);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sfd = signalfd(sfd, &usr1, 0);
	int nice_before = getpriority(PRIO_PROCESS, 0);

	/* A vfork child that uses every one of those tables (two of them
	 * start helper threads in the library OS), then exits; again and
	 * again, and the last must leave no memory mapped behind.  (The
	 * first ones leave the library OS's own: the memory it made the child
	 * from, kept for the next, and the stubs of call sites it rewrote,
	 * each on its third trap.) */
	struct vfork_report first, second;
	for (int i = 0; i < 3; i++) {
		vfork_using_tables(&first, nice_before);
		mapped_bytes();
	}
	unsigned long mapped_before = mapped_bytes();
	vfork_using_tables(&second, nice_before);
	printf("vfork_child status=%d timer=%d itimer=%d pdeathsig=%d nice=%d saw_handler=%d\n", second.status,
	       second.timer, second.itimer, second.pdeath, second.nice, second.dfl);
	printf("parent mapped_kept=%d\n", mapped_bytes() == mapped_before);
	pid_t pid;

	/* Children that accept SIGUSR1 synchronously themselves while the
	 * parent's signalfd holds it: a vfork child (from itself) and a fork
	 * child (from the parent). */
	volatile int vfork_sig = -1, vfork_from_self = -1;
	pid = vfork();
	if (pid == 0) {
		siginfo_t si;
		struct timespec tmo = {5, 0};
		kill(getpid(), SIGUSR1);
		vfork_sig = sigtimedwait(&usr1, &si, &tmo);
		vfork_from_self = si.si_pid == getpid();
		_exit(0);
	}
	printf("vfork_child_sigwait status=%d sig=%d from_self=%d\n", wait_status(pid), vfork_sig, vfork_from_self);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* SIGUSR1 is blocked (inherited): it waits pending until taken. */
		siginfo_t si;
		struct timespec tmo = {5, 0};
		int got = sigtimedwait(&usr1, &si, &tmo);
		_exit(got == SIGUSR1 && si.si_pid == getppid() ? 10 : 20);
	}
	kill(pid, SIGUSR1);
	printf("fork_child_sigwait status=%d\n", wait_status(pid));

	/* A program with timers of its own, started by posix_spawn and by
	 * vfork+exec while ours is armed. */
	char *argv[] = {(char *)self_path, "timerchild", NULL};
	fflush(stdout);
	int rc = posix_spawn(&pid, self_path, NULL, NULL, argv, environ);
	printf("spawn_timerchild rc=%d status=%d\n", rc, rc ? -1 : wait_status(pid));
	fflush(stdout);
	pid = vfork();
	if (pid == 0) {
		execv(self_path, argv);
		_exit(127);
	}
	printf("vfork_exec_timerchild status=%d\n", wait_status(pid));

	/* What the parent must still have. */
	struct itimerspec cur;
	int sig = -1;
	struct itimerval vt;
	getitimer(ITIMER_VIRTUAL, &vt);
	prctl(PR_GET_PDEATHSIG, &sig);
	printf("parent timer_kept=%d fires=%d itimer_virtual_off=%d pdeathsig=%d nice_kept=%d\n",
	       timer_gettime(mine, &cur) == 0 && cur.it_interval.tv_nsec == 2000000, take_signals(SIGUSR2, 3),
	       vt.it_value.tv_sec == 0 && vt.it_value.tv_usec == 0, sig, getpriority(PRIO_PROCESS, 0) == nice_before);
	timer_t next;
	printf("parent next_timer_is_second=%d\n",
	       timer_create(CLOCK_MONOTONIC, &(struct sigevent){.sigev_notify = SIGEV_NONE}, &next) == 0 &&
		       next != mine && timer_delete(next) == 0);
	struct sigaction now;
	sigaction(SIGUSR1, NULL, &now);
	kill(getpid(), SIGUSR1);
	struct signalfd_siginfo rec;
	ssize_t n = read(sfd, &rec, sizeof(rec));
	printf("parent usr1_handler_kept=%d signalfd_read=%d signo=%u\n", now.sa_handler == count_usr1, (int)n,
	       n > 0 ? rec.ssi_signo : 0);
	close(sfd);
	timer_delete(mine);
	return 0;
}

/* Fork children of a process whose timers fire all the time: the library
 * OS's helper threads take the timer table's lock at every expiration, and
 * a child whose copy of memory has it taken must not wait forever. */
static int cmd_forktimers(int rounds)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (int k = 0; k < 4; k++) {
		timer_t t;
		struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
		struct itimerspec its = {{0, 5000}, {0, 5000}};
		if (timer_create(CLOCK_MONOTONIC, &ev, &t) || timer_settime(t, 0, &its, NULL))
			return 3;
	}
	int ok = 0;
	for (int i = 0; i < rounds; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			timer_t t;
			struct sigevent none = {.sigev_notify = SIGEV_NONE};
			_exit(timer_create(CLOCK_MONOTONIC, &none, &t) == 0 && timer_delete(t) == 0 ? 0 : 1);
		}
		/* A child that hangs is killed after 2 s. */
		int st = 0, r = 0;
		for (int w = 0; w < 2000 && (r = waitpid(pid, &st, WNOHANG)) == 0; w++)
			usleep(1000);
		if (r == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
		}
		ok += r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	printf("fork_children_with_timers ok=%d/%d\n", ok, rounds);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	self_path = argv[0];
	if (argc < 2)
		return 2;
	const char *cmd = argv[1];
	if (!strcmp(cmd, "child"))
		return cmd_child();
	if (!strcmp(cmd, "spawn"))
		return cmd_spawn();
	if (!strcmp(cmd, "system"))
		return cmd_system();
	if (!strcmp(cmd, "vfork"))
		return cmd_vfork();
	if (!strcmp(cmd, "clonevm"))
		return cmd_clonevm(argc > 2 ? atoi(argv[2]) : 100);
	if (!strcmp(cmd, "threads"))
		return cmd_threads();
	if (!strcmp(cmd, "clone3"))
		return cmd_clone3();
	if (!strcmp(cmd, "timers"))
		return cmd_timers();
	if (!strcmp(cmd, "timerchild"))
		return cmd_timerchild();
	if (!strcmp(cmd, "forktimers"))
		return cmd_forktimers(argc > 2 ? atoi(argv[2]) : 1000);
	if (!strcmp(cmd, "concurrent"))
		return cmd_concurrent(argc > 2 ? atoi(argv[2]) : 50);
	return 2;
}
