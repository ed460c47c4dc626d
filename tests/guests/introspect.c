/* Reports what a picoprocess inherited, for the leak tests:
 *   "fd N"    for every open descriptor 0..MAX_FD (probed with fcntl(F_GETFD),
 *             a direct call, so the probe survives the raw filter);
 *   "arg S"   for every argv string;
 *   "env S"   for every envp string, in order. */
#include "guest.h"

#define NR_fcntl 72
#define F_GETFD 1
#define MAX_FD 4096

int guest_main(int argc, char **argv, char **envp)
{
	for (long fd = 0; fd <= MAX_FD; fd++) {
		if (sys2(NR_fcntl, fd, F_GETFD) >= 0) {
			g_puts("fd ");
			g_putnum(fd);
			g_puts("\n");
		}
	}
	for (int i = 0; i < argc; i++) {
		g_puts("arg ");
		g_puts(argv[i]);
		g_puts("\n");
	}
	for (char **e = envp; *e; e++) {
		g_puts("env ");
		g_puts(*e);
		g_puts("\n");
	}
	return 0;
}
