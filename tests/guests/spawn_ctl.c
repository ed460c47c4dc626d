/* A guest the spawn tests steer through stdin, one command byte at a time,
 * so that they can inspect it from outside while it waits (synchronisation
 * through the pipe, never sleeps).  Every command answers on stdout.
 *
 *   r   answer "R": I am running (and blocked in read until the next byte)
 *   p   answer "pid=<getpid> ppid=<getppid>\n"
 *   o   answer the fds open among 0..1100, e.g. "fds=0,1,2\n"
 *   f   fork 3 children, each forks a grandchild; every one of the 6 answers
 *       "c" (child) or "g" (grandchild) and then blocks forever; then "F"
 *   n   fork until it fails, children block forever; answer
 *       "forks=<n> err=<errno>\n"
 *   m   touch 256 MiB of anonymous memory page by page (a memory limit ends
 *       this), then answer "M"
 *   c   burn CPU forever (a CPU-time limit ends this)
 *   k   kill myself with SIGUSR1
 *   e   exit with status 42
 *   EOF exit with status 0
 */
#include "guest.h"

#define NR_getpid 39
#define NR_getppid 110
#define NR_kill 62
#define NR_fcntl 72
#define NR_clock_nanosleep 230
#define SIGCHLD_ 17
#define SIGUSR1_ 10

static void block_forever(void)
{
	long ts[2] = {1000, 0};
	for (;;)
		sys4(NR_clock_nanosleep, 1 /* CLOCK_MONOTONIC */, 0, ts, 0);
}

static long fork_child(void)
{
	return sys5(NR_clone, SIGCHLD_, 0, 0, 0, 0);
}

static void list_fds(void)
{
	g_puts("fds=");
	int first = 1;
	for (long fd = 0; fd <= 1100; fd++) {
		if (sys2(NR_fcntl, fd, 1 /* F_GETFD */) >= 0) {
			if (!first)
				g_puts(",");
			g_putnum(fd);
			first = 0;
		}
	}
	g_puts("\n");
}

static void touch_memory(void)
{
	unsigned long size = 256UL << 20;
	char *p = (char *)sys6(NR_mmap, 0, size, 3 /* RW */, 0x22 /* PRIVATE|ANON */, -1, 0);
	if ((long)p < 0 && (long)p > -4096) {
		g_puts("mmap-failed\n");
		return;
	}
	for (unsigned long off = 0; off < size; off += 4096)
		p[off] = 1;
	g_puts("M");
}

int guest_main(int argc, char **argv, char **envp)
{
	char c;
	for (;;) {
		long n = sys3(NR_read, 0, &c, 1);
		if (n <= 0)
			return 0;
		switch (c) {
		case 'r':
			g_puts("R");
			break;
		case 'p':
			g_puts("pid=");
			g_putnum(sys0(NR_getpid));
			g_puts(" ppid=");
			g_putnum(sys0(NR_getppid));
			g_puts("\n");
			break;
		case 'o':
			list_fds();
			break;
		case 'f':
			for (int i = 0; i < 3; i++) {
				if (fork_child() == 0) {
					if (fork_child() == 0) {
						g_puts("g");
						block_forever();
					}
					g_puts("c");
					block_forever();
				}
			}
			g_puts("F");
			break;
		case 'n': {
			long forks = 0, rc;
			for (;;) {
				rc = fork_child();
				if (rc == 0)
					block_forever();
				if (rc < 0)
					break;
				forks++;
				if (forks > 10000)
					break;
			}
			g_puts("forks=");
			g_putnum(forks);
			g_puts(" err=");
			g_putnum(-rc);
			g_puts("\n");
			break;
		}
		case 'm':
			touch_memory();
			break;
		case 'c':
			for (volatile unsigned long i = 0;; i++)
				;
		case 'k':
			sys2(NR_kill, sys0(NR_getpid), SIGUSR1_);
			break;
		case 'e':
			return 42;
		default:
			break;
		}
	}
}
