/* A victim for the ptrace and process_vm_readv probes, run natively by the
 * tests (never sandboxed).  Prints "PID ADDR" (ADDR in hex: where its 8-byte
 * secret lives), then for every byte read on stdin prints the secret as it is
 * now in memory; exits at EOF.  So the test can ask, after a probe ran,
 * whether the secret was read or overwritten from outside. */
#include "guest.h"

#define NR_getpid 39

static char secret[8] = {'S', 'E', 'C', 'R', 'E', 'T', '4', '2'};

static void put_hex(unsigned long v)
{
	char buf[19];
	int i = 18;
	buf[i--] = 0;
	do {
		buf[i--] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[i--] = 'x';
	buf[i] = '0';
	g_puts(&buf[i]);
}

int guest_main(int argc, char **argv, char **envp)
{
	char c;
	g_putnum(sys0(NR_getpid));
	g_puts(" ");
	put_hex((unsigned long)secret);
	g_puts("\n");
	while (sys3(NR_read, 0, &c, 1) == 1) {
		sys3(NR_write, 1, (const char *)secret, sizeof(secret));
		g_puts("\n");
	}
	return 0;
}
