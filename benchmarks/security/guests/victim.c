/* A host process the security corpus attacks (it runs unconfined, started by
 * the harness, never by a guest):
 *
 *   pp-victim DIR FILE
 *
 * changes its working directory to DIR, holds FILE open (the planted secret:
 * the target of the /proc/PID/fd and /proc/PID/cwd tricks), prints
 * "victim PID ADDR" (ADDR = the address of `marker`, which a ptrace attack
 * would overwrite and the harness reads back through /proc/PID/mem), and
 * sleeps until killed. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

volatile unsigned long marker = 0x5eed5eed5eed5eedUL;

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: pp-victim DIR FILE\n");
		return 2;
	}
	if (chdir(argv[1]) != 0 || open(argv[2], O_RDONLY) < 0) {
		perror("pp-victim");
		return 1;
	}
	printf("victim %d %p\n", (int)getpid(), (void *)&marker);
	fflush(stdout);
	for (;;)
		pause();
}
