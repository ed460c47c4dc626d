/* spawn_floor: what the kernel alone charges for starting a program in the
 * namespaces every picoprocess gets -- the floor under picoproc's start-up
 * overhead, with no monitor, no seccomp filter and no library OS.
 *
 *   spawn_floor RUNS PROGRAM [ARG...]
 *
 * Runs PROGRAM RUNS times each way, alternating so that both see the same
 * machine:
 *   native  fork(), execv, waitpid;
 *   ns      clone() with new user, pid, mount, network, IPC and UTS
 *           namespaces (what spawn.py asks for; docs/ARCHITECTURE.md,
 *           invariant 5),
 *           execv, waitpid -- the wait includes the pid namespace's end.
 * PROGRAM's output goes to /dev/null.  Prints median, p10 and p90 wall
 * time of a whole run (CLOCK_MONOTONIC) for each:
 *
 *   native median_ns=N p10_ns=N p90_ns=N
 *   ns median_ns=N p10_ns=N p90_ns=N
 *
 * Exit status 0 only if every run of PROGRAM exited 0; errors name the
 * step that failed (EPERM from clone: user namespaces are disabled). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_PROGRAM "spawn_floor"
#include "floor_common.h"

#define NAMESPACES (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

/* One run of argv: its wall time in ns. */
static long run_once(char **argv, unsigned long flags, int devnull)
{
	long t0 = now_ns();
	/* The raw system call: glibc's clone() wants a stack, and this child
	 * only execs, like fork()'s. */
	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0)
		die(flags ? "clone with namespaces" : "fork");
	if (pid == 0) {
		dup2(devnull, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
	long t = now_ns() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "spawn_floor: %s did not exit 0 (status %#x)\n", argv[0], status);
		exit(1);
	}
	return t;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: spawn_floor RUNS PROGRAM [ARG...]\n");
		return 2;
	}
	int n = atoi(argv[1]);
	if (n < 1 || n > 100000) {
		fprintf(stderr, "spawn_floor: RUNS must be 1..100000\n");
		return 2;
	}
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0)
		die("/dev/null");
	long *native = calloc((size_t)n, sizeof(long)), *ns = calloc((size_t)n, sizeof(long));
	if (!native || !ns)
		die("calloc");
	for (int i = 0; i < n; i++) {
		native[i] = run_once(argv + 2, 0, devnull);
		ns[i] = run_once(argv + 2, NAMESPACES, devnull);
	}
	report("native", native, n);
	report("ns", ns, n);
	return 0;
}
