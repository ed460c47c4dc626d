/* Leaves a child behind: forks a child that blocks forever reading stdin (a
 * pipe the test holds open), waits until the child is running, then exits 0.
 * A sandbox must not leave that orphan alive once the run is over. */
#include "guest.h"

#define NR_pipe2 293
#define NR_close 3
#define SIGCHLD 17

int guest_main(int argc, char **argv, char **envp)
{
	int ready[2];
	char c;
	if (sys2(NR_pipe2, ready, 0) < 0)
		return 1;
	long pid = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
	if (pid == 0) {
		sys3(NR_write, ready[1], "r", 1);
		g_puts("orphan: running\n");
		while (sys3(NR_read, 0, &c, 1) > 0)
			;
		g_puts("orphan: stdin closed\n");
		g_exit(0);
	}
	if (pid < 0)
		return 1;
	sys1(NR_close, ready[1]);
	sys3(NR_read, ready[0], &c, 1);
	g_puts("parent: exiting\n");
	return 0;
}
