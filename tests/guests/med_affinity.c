/* Guest for tests/test_monitor_affinity.py: the monitor once narrowed a
 * calling thread's CPU affinity around the ADDFD that answered pico_open
 * ("steering", gone: fds now come back on a channel, docs/ARCHITECTURE.md),
 * and every task of the guest must keep its own mask through opens, forks
 * and threads.
 *
 *   med_affinity MODE PATH N ALLOWED
 *
 * ALLOWED is the guest's CPU mask as a number (bit i: CPU i).  After every
 * open the calling thread checks, with RDTSCP, that it runs on an allowed
 * CPU (the monitor must never move it outside its mask).  Modes:
 *
 *   open     N x (open PATH, close)
 *   fork     N x (open PATH, fork a child that waits for EOF on stdin, close)
 *   thread   N x (open PATH, start a thread that waits for EOF on stdin, close)
 *   threads  two more threads and the main one each do N x (open, close)
 *
 * Then a last mediated call (pico_note_unsupported: the loop answers it only
 * after it has finished with the previous call), "ready opens=<n>
 * outside=<n>" on stdout, and the guest waits for EOF on stdin while the
 * test looks at the affinity of its tasks; fork mode then reaps its
 * children. */
#include "med_common.h"

#define SIGCHLD 17
#define FUTEX_WAIT 0
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define STACK_SIZE (16 * 1024)
#define MAX_N 1000
#define WORKERS 2

#include "thread_clone.h"

static char uri[4200];
static unsigned long uri_len;
static unsigned long allowed;
static long n_iter;
static volatile long opens, outside;
static volatile int worker_tid[WORKERS];

static unsigned int current_cpu(void)
{
	unsigned int lo, hi, aux;
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	return aux & 0xfff; /* Linux keeps (node << 12) | cpu in TSC_AUX */
}

/* One open on the calling thread: the fd, or -1 after reporting. */
static long open_once(void)
{
	long fd = pico_open(uri, uri_len, O_RDONLY | O_CLOEXEC, 0);
	unsigned int cpu = current_cpu();
	if (fd < 0) {
		g_puts("open failed ");
		g_putnum(-fd);
		g_puts("\n");
		return -1;
	}
	__atomic_fetch_add(&opens, 1, __ATOMIC_RELAXED);
	if (cpu >= 64 || !(allowed & (1ul << cpu)))
		__atomic_fetch_add(&outside, 1, __ATOMIC_RELAXED);
	return fd;
}

static void wait_for_eof(void)
{
	char c;
	while (sys3(NR_read, 0, &c, 1) > 0)
		;
}

static int waiter_main(void *arg)
{
	wait_for_eof();
	return 0;
}

static int worker_main(void *arg)
{
	for (long i = 0; i < n_iter; i++) {
		long fd = open_once();
		if (fd < 0)
			return 1;
		sys1(NR_close, fd);
	}
	return 0;
}

static char *new_stack(void)
{
	long p = sys6(NR_mmap, 0, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	return p < 0 && p > -4096 ? 0 : (char *)p + STACK_SIZE;
}

static const unsigned long thread_flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
					  CLONE_THREAD | CLONE_SYSVSEM;

int guest_main(int argc, char **argv, char **envp)
{
	if (argc < 5)
		return 2;
	const char *mode = argv[1];
	n_iter = g_atol(argv[3]);
	allowed = (unsigned long)g_atol(argv[4]);
	if (n_iter <= 0 || n_iter > MAX_N)
		return 2;
	const char *scheme = "file:";
	for (int i = 0; scheme[i]; i++)
		uri[uri_len++] = scheme[i];
	for (int i = 0; argv[2][i]; i++)
		uri[uri_len++] = argv[2][i];

	int forking = g_streq(mode, "fork"), threading = g_streq(mode, "thread");
	if (g_streq(mode, "threads")) {
		for (int w = 0; w < WORKERS; w++) {
			char *stack = new_stack();
			unsigned long flags = thread_flags | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
			if (!stack || thread_clone(flags, stack, (int *)&worker_tid[w],
						   (int *)&worker_tid[w], worker_main, 0) < 0)
				return 1;
		}
		if (worker_main(0) != 0)
			return 1;
		for (int w = 0; w < WORKERS; w++)
			while (worker_tid[w] != 0)
				sys6(NR_futex, (long)&worker_tid[w], FUTEX_WAIT, worker_tid[w], 0, 0, 0);
	} else if (forking || threading || g_streq(mode, "open")) {
		for (long i = 0; i < n_iter; i++) {
			long fd = open_once();
			if (fd < 0)
				return 1;
			/* Right after the call, while the monitor may not have
			 * given the thread its mask back yet. */
			if (forking) {
				long pid = sys5(NR_clone, SIGCHLD, 0, 0, 0, 0);
				if (pid == 0) {
					wait_for_eof();
					g_exit(0);
				}
				if (pid < 0)
					return 1;
			} else if (threading) {
				char *stack = new_stack();
				if (!stack || thread_clone(thread_flags, stack, 0, 0, waiter_main, 0) < 0)
					return 1;
			}
			sys1(NR_close, fd);
		}
	} else {
		return 2;
	}
	pico_note_unsupported(0, 0);
	g_puts("ready opens=");
	g_putnum(opens);
	g_puts(" outside=");
	g_putnum(outside);
	g_puts("\n");
	wait_for_eof();
	if (forking)
		for (long i = 0; i < n_iter; i++)
			sys4(NR_wait4, -1, 0, 0, 0);
	return 0;
}
