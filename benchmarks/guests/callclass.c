/* callclass: the cost of one system call of each class, measured inside the
 * sandbox that runs this program.
 *
 *   callclass FILE TARGET_NS BATCHES CLASS...
 *
 * For each CLASS (getppid, uname, getcwd, uname_trap, openclose, stat, read4k) it first
 * calibrates an iteration count whose batch lasts about TARGET_NS, then runs
 * BATCHES batches of that many calls and prints one line:
 *
 *   class=NAME iters=N ps=B1,B2,...   (per-call picoseconds of each batch)
 *
 * FILE is the file that openclose, stat and read4k use (at least 4 KiB).
 * Time is CLOCK_MONOTONIC through glibc, so through the vDSO wherever the
 * sandbox provides one: the header line says whether it does (vdso=0 means
 * every clock read is itself a system call and the numbers include it).
 *
 * An ordinary dynamic glibc program on purpose: the same binary runs
 * natively and under every backend, so the ratios compare like with like.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *g_file;
static int g_fd = -1;
static char g_buf[4096];

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Each body makes exactly one call of its class per iteration and fails
 * loudly (exit 3) if the call fails: a sandbox that refuses the call must
 * not look fast. */
static void die(const char *what)
{
	fprintf(stderr, "callclass: %s failed: %s\n", what, strerror(errno));
	exit(3);
}

static void run_getppid(uint64_t n)
{
	/* syscall() rather than getppid(): glibc does not cache it, but be
	 * explicit that each iteration enters the kernel (or the sandbox). */
	for (uint64_t i = 0; i < n; i++)
		if (syscall(SYS_getppid) < 0)
			die("getppid");
}

static void run_uname(uint64_t n)
{
	struct utsname u;
	for (uint64_t i = 0; i < n; i++)
		if (uname(&u) != 0)
			die("uname");
}

static void run_getcwd(uint64_t n)
{
	char buf[4096];
	/* glibc's getcwd() is a thin wrapper (no user-space cache): the call
	 * as programs make it, from a `mov $nr,%eax; syscall` site. */
	for (uint64_t i = 0; i < n; i++)
		if (!getcwd(buf, sizeof buf))
			die("getcwd");
}

static void run_uname_trap(uint64_t n)
{
	struct utsname u;
	/* Through syscall(2), whose generic call site the library OS never
	 * rewrites: what an emulated call costs when it traps (SIGSYS). */
	for (uint64_t i = 0; i < n; i++)
		if (syscall(SYS_uname, &u) != 0)
			die("uname (syscall)");
}

static void run_openclose(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		int fd = open(g_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open");
		close(fd);
	}
}

static void run_stat(uint64_t n)
{
	struct stat st;
	for (uint64_t i = 0; i < n; i++)
		if (stat(g_file, &st) != 0)
			die("stat");
}

static void run_read4k(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (pread(g_fd, g_buf, sizeof g_buf, 0) != (ssize_t)sizeof g_buf)
			die("pread 4096");
}

struct call_class {
	const char *name;
	void (*run)(uint64_t n);
};

static const struct call_class CLASSES[] = {
	{"getppid", run_getppid}, {"uname", run_uname}, {"getcwd", run_getcwd}, {"uname_trap", run_uname_trap},
	{"openclose", run_openclose}, {"stat", run_stat}, {"read4k", run_read4k},
};

/* Grows the count until one batch lasts at least target_ns and holds at least
 * MIN_ITERS calls, so that a slow sandbox still averages over several calls
 * (a warm-up as well: first-touch faults and caches are paid here, not in
 * the batches). */
#define MIN_ITERS 16
static uint64_t calibrate(const struct call_class *c, uint64_t target_ns)
{
	uint64_t n = 1;
	for (;;) {
		uint64_t t0 = now_ns();
		c->run(n);
		uint64_t dt = now_ns() - t0;
		if ((dt >= target_ns && n >= MIN_ITERS) || n >= (1ull << 26))
			return n;
		if (dt < target_ns / 64)
			n *= 16;
		else
			n *= 2;
	}
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: callclass FILE TARGET_NS BATCHES CLASS...\n");
		return 2;
	}
	g_file = argv[1];
	uint64_t target = strtoull(argv[2], NULL, 10);
	long batches = strtol(argv[3], NULL, 10);
	if (target == 0 || batches <= 0 || batches > 1000) {
		fprintf(stderr, "callclass: bad TARGET_NS or BATCHES\n");
		return 2;
	}
	g_fd = open(g_file, O_RDONLY | O_CLOEXEC);
	if (g_fd < 0)
		die("open FILE");
	printf("vdso=%d pid=%d\n", getauxval(AT_SYSINFO_EHDR) != 0, (int)getpid());
	for (int a = 4; a < argc; a++) {
		const struct call_class *c = NULL;
		for (size_t k = 0; k < sizeof CLASSES / sizeof CLASSES[0]; k++)
			if (strcmp(CLASSES[k].name, argv[a]) == 0)
				c = &CLASSES[k];
		if (!c) {
			fprintf(stderr, "callclass: unknown class %s\n", argv[a]);
			return 2;
		}
		uint64_t n = calibrate(c, target);
		printf("class=%s iters=%llu ps=", c->name, (unsigned long long)n);
		for (long b = 0; b < batches; b++) {
			uint64_t t0 = now_ns();
			c->run(n);
			uint64_t dt = now_ns() - t0;
			/* per-call picoseconds: keeps sub-ns resolution in an integer */
			printf("%s%llu", b ? "," : "", (unsigned long long)(dt * 1000 / n));
		}
		printf("\n");
		fflush(stdout);
	}
	return 0;
}
