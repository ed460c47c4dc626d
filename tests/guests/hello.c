/* The smallest picoprocess: one write, then exit 0. */
#include "guest.h"

int guest_main(int argc, char **argv, char **envp)
{
	g_puts("hello from a picoprocess\n");
	return 0;
}
