/* A picoprocess that uses only direct calls: write, mmap/munmap, a real
 * thread (raw clone with its own stack), futex wait/wake between the two
 * threads, exit.  Under `picoproc run --raw` it must exit 0 and print exactly
 *
 *   main: mapped
 *   thread: started
 *   thread: got 42
 *   main: reply 43
 *   main: thread gone
 *   main: done
 *
 * The order is forced by futex hand-shakes, not by timing, so the output is
 * deterministic.  Any call outside the ABI would kill it with SIGSYS. */
#include "guest.h"

#define NR_gettid 186
#define NR_getpid 39


#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define STACK_SIZE (64 * 1024)

#include "thread_clone.h"

static volatile int go;	   /* main -> thread: the value to work on (0: not yet) */
static volatile int reply; /* thread -> main: the answer (0: not yet) */
static volatile int child_tid;

static void futex_wait_while(volatile int *word, int value)
{
	/* FUTEX_WAIT returns at once if *word != value: no lost wake-up. */
	while (*word == value)
		sys6(NR_futex, (long)word, FUTEX_WAIT, value, 0, 0, 0);
}

static void futex_wake(volatile int *word)
{
	sys6(NR_futex, (long)word, FUTEX_WAKE, 1, 0, 0, 0);
}

static int thread_main(void *arg)
{
	long main_tid = (long)arg;
	if (sys0(NR_gettid) == main_tid || sys0(NR_getpid) != main_tid)
		g_puts("thread: not a thread of the same process\n");
	g_puts("thread: started\n");
	futex_wait_while(&go, 0);
	g_puts("thread: got ");
	g_putnum(go);
	g_puts("\n");
	reply = go + 1;
	futex_wake(&reply);
	return 0;
}

int guest_main(int argc, char **argv, char **envp)
{
	char *stack = (char *)sys6(NR_mmap, 0, STACK_SIZE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((long)stack < 0 && (long)stack > -4096) {
		g_puts("main: mmap failed\n");
		return 1;
	}
	stack[0] = 1; /* touch it: the mapping is real */
	g_puts("main: mapped\n");

	unsigned long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
			      CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
	long tid = thread_clone(flags, stack + STACK_SIZE, (int *)&child_tid, (int *)&child_tid,
				thread_main, (void *)sys0(NR_gettid));
	if (tid < 0) {
		g_puts("main: clone failed ");
		g_putnum(tid);
		g_puts("\n");
		return 1;
	}

	go = 42;
	futex_wake(&go);
	futex_wait_while(&reply, 0);
	g_puts("main: reply ");
	g_putnum(reply);
	g_puts("\n");

	/* CLONE_CHILD_CLEARTID: the kernel zeroes child_tid and wakes it once the
	 * thread is gone, so its stack can then be unmapped safely. */
	while (child_tid != 0)
		sys6(NR_futex, (long)&child_tid, FUTEX_WAIT, child_tid, 0, 0, 0);
	g_puts("main: thread gone\n");
	if (sys2(NR_munmap, stack, STACK_SIZE) != 0) {
		g_puts("main: munmap failed\n");
		return 1;
	}
	g_puts("main: done\n");
	return 0;
}
