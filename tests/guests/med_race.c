/* The time-of-check/time-of-use attack on a mediated call: a second thread
 * keeps rewriting the URI buffer between an allowed name and a forbidden
 * one (same length) while the first thread opens it, N times.
 *
 *   med_race ALLOWED FORBIDDEN N
 *
 * Prints "opened=<o> refused=<r> forbidden_content=<f>": f counts opens whose
 * content starts with "SECRET" (the forbidden file's content). */
#include "med_common.h"

#define CLONE_THREAD_FLAGS (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000)

static char uri[256];
static unsigned long uri_len;
static const char *names[2];
static char stack[65536] __attribute__((aligned(16)));

static void __attribute__((noreturn, used)) flipper(void)
{
	/* Byte by byte, so the monitor may also see a mix of both names. */
	for (unsigned long k = 0;; k++) {
		const char *src = names[k & 1];
		for (unsigned long i = 0; i < uri_len; i++)
			((volatile char *)uri)[i] = src[i];
	}
}

static long start_thread(void (*fn)(void), void *stack_top)
{
	long ret;
	register long r10 __asm__("r10") = 0;
	register long r8 __asm__("r8") = 0;
	__asm__ volatile("syscall\n"
			 "test %%rax, %%rax\n"
			 "jnz 1f\n"
			 "call *%%rbx\n"
			 "1:\n"
			 : "=a"(ret)
			 : "a"(NR_clone), "D"(CLONE_THREAD_FLAGS), "S"(stack_top), "d"(0), "r"(r10),
			   "r"(r8), "b"(fn)
			 : "rcx", "r11", "memory");
	return ret;
}

int guest_main(int argc, char **argv, char **envp)
{
	static char buf[64];
	if (argc < 4 || g_strlen(argv[1]) != g_strlen(argv[2]))
		return 2;
	names[0] = argv[1];
	names[1] = argv[2];
	uri_len = g_strlen(argv[1]);
	memcpy(uri, argv[1], uri_len);
	long n = g_atol(argv[3]);
	if (start_thread(flipper, stack + sizeof(stack)) < 0)
		return 3;

	long opened = 0, refused = 0, forbidden = 0;
	for (long i = 0; i < n; i++) {
		long fd = pico_open(uri, uri_len, O_RDONLY, 0);
		if (fd < 0) {
			refused++;
			continue;
		}
		opened++;
		long got = sys3(NR_read, fd, buf, sizeof(buf));
		sys1(NR_close, fd);
		if (got >= 6 && buf[0] == 'S' && buf[1] == 'E' && buf[2] == 'C' && buf[3] == 'R' &&
		    buf[4] == 'E' && buf[5] == 'T')
			forbidden++;
	}
	g_puts("opened=");
	g_putnum(opened);
	g_puts(" refused=");
	g_putnum(refused);
	g_puts(" forbidden_content=");
	g_putnum(forbidden);
	g_puts("\n");
	return 0;
}
