/* A tiny freestanding runtime for test guests: no libc, raw system calls only.
 *
 * Raw picoprocesses die on the first call outside the ABI, and even static
 * glibc makes such calls while starting, so test guests bring their own _start.
 * Build: gcc -static -nostdlib -fno-stack-protector -O1 -o g g.c
 */
#ifndef PICO_TEST_GUEST_H
#define PICO_TEST_GUEST_H

#include "picoproc_abi.h"

typedef unsigned long size_t_g;

static inline long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	return pico_syscall6(nr, a, b, c, d, e, f);
}
#define sys0(n) sys6((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

#define NR_read 0
#define NR_write 1
#define NR_mmap 9
#define NR_munmap 11
#define NR_exit 60
#define NR_exit_group 231
#define NR_futex 202
#define NR_clone 56
#define NR_wait4 61

static inline size_t_g g_strlen(const char *s)
{
	size_t_g n = 0;
	while (s[n])
		n++;
	return n;
}

static inline void g_puts(const char *s)
{
	sys3(NR_write, 1, s, g_strlen(s));
}

static inline int g_streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

static inline void g_putnum(long v)
{
	char buf[24];
	int i = 23;
	int neg = v < 0;
	unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
	buf[i--] = 0;
	do {
		buf[i--] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (neg)
		buf[i--] = '-';
	g_puts(&buf[i + 1]);
}

static inline void __attribute__((noreturn)) g_exit(int code)
{
	for (;;)
		sys1(NR_exit_group, code);
}

int guest_main(int argc, char **argv, char **envp);

/* The kernel enters with the stack pointer at argc; align and call main. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"  xor %rbp, %rbp\n"
	"  mov (%rsp), %rdi\n"
	"  lea 8(%rsp), %rsi\n"
	"  lea 8(%rsi,%rdi,8), %rdx\n"
	"  and $-16, %rsp\n"
	"  call guest_start_c\n"
	"  hlt\n");

void __attribute__((used, noreturn)) guest_start_c(long argc, char **argv, char **envp)
{
	g_exit(guest_main((int)argc, argv, envp));
}

/* gcc may emit calls to these even with -nostdlib. */
void *memset(void *d, int c, unsigned long n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}
void *memcpy(void *d, const void *s, unsigned long n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

#endif
