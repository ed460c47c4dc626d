/* Checks the library OS's syscall-site rewriting (libos/rewrite.c) from the
 * guest's side.  Prints key=value lines; tests/test_libos.py asserts them.
 *
 *   regs     a hand-written `mov $63,%eax; syscall` (uname) site, entered
 *            five times with every register, the flags (CF and DF set) and
 *            the 128-byte red zone holding known values: all but rax, rcx and
 *            r11 must survive, before and after the site is rewritten (on its
 *            third trap); the same for a site with register moves between
 *            the mov and the syscall (glibc's open; rewritten, the moves made
 *            by the stub) and for one with a nop there (left trapping).
 *   threads  8 threads make their first uname/getcwd calls at once (the
 *            rewrite races with other threads on the same sites), while
 *            another thread signals the first one, whose handler calls uname.
 *   pages    sites copied into anonymous pages: read-write-exec (rewritten,
 *            and still writable), read-exec (rewritten, still not writable),
 *            one whose 5 bytes straddle a 16-byte block (left alone), and two
 *            reached only once and twice (left trapping: not worth a rewrite),
 *            and one whose syscall instruction ends on the next page.
 *   libc     the glibc uname wrapper's site, found by its bytes.
 * Natively nothing is rewritten (rewritten=0) and the checks still pass. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct regs {
	uint64_t rbx, rbp, rsi, rdx, r8, r9, r10, r12, r13, r14, r15, rdi, rax, flags;
	uint64_t xmm0[2];
	uint64_t redzone[16];
};
struct regs rw_after;
void regs_call(struct utsname *buf);
extern const unsigned char regs_site[];

/* regs_call(buf): loads patterns, runs the site, stores what it sees into
 * rw_after without touching the stack (the red zone is under test).
 * regs_call_filler: the same with a site of glibc's open form, register
 * moves between the mov and the syscall (the buffer reaches %rdi only
 * through them); regs_call_nop: a site with a nop there, which the library
 * OS does not copy (it stays trapping). */
#define REGS_CALL(name, site, before, between)                                                                  \
	".text\n"                                                                                              \
	".globl " name "\n"                                                                                    \
	".type " name ", @function\n" name ":\n"                                                                \
	"	push %rbx\n	push %rbp\n	push %r12\n	push %r13\n	push %r14\n	push %r15\n"                      \
	"	movabs $0x1111111111111111, %rbx\n"                                                            \
	"	movabs $0x2222222222222222, %rbp\n"                                                            \
	"	movabs $0x3333333333333333, %rsi\n"                                                            \
	"	movabs $0x4444444444444444, %rdx\n"                                                            \
	"	movabs $0x5555555555555555, %r8\n"                                                             \
	"	movabs $0x6666666666666666, %r9\n"                                                             \
	"	movabs $0x7777777777777777, %r10\n"                                                            \
	"	movabs $0x8888888888888888, %r12\n"                                                            \
	"	movabs $0x9999999999999999, %r13\n"                                                            \
	"	movabs $0xaaaaaaaaaaaaaaaa, %r14\n"                                                            \
	"	movabs $0xbbbbbbbbbbbbbbbb, %r15\n"                                                            \
	"	movq %r12, %xmm0\n	movq %r13, %xmm1\n	punpcklqdq %xmm1, %xmm0\n"                              \
	"	movabs $0xfeed000000000000, %rax\n"                                                            \
	"	.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"                                               \
	"	lea \\i(%rax), %r11\n"                                                                         \
	"	mov %r11, -8-8*\\i(%rsp)\n"                                                                    \
	"	.endr\n" before "	std\n"                                                                   \
	"	stc\n"                                                                                         \
	"	.balign 16\n"                                                                                  \
	".globl " site "\n" site ":\n"                                                                         \
	"	mov $63, %eax\n" between "	syscall\n"                                                       \
	"	mov %rax, rw_after+96(%rip)\n"                                                                 \
	"	.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"                                               \
	"	mov -8-8*\\i(%rsp), %r11\n"                                                                    \
	"	mov %r11, rw_after+128+8*\\i(%rip)\n"                                                          \
	"	.endr\n"                                                                                       \
	"	pushfq\n	pop %r11\n	mov %r11, rw_after+104(%rip)\n"                                         \
	"	cld\n"                                                                                         \
	"	mov %rbx, rw_after+0(%rip)\n"                                                                  \
	"	mov %rbp, rw_after+8(%rip)\n"                                                                  \
	"	mov %rsi, rw_after+16(%rip)\n"                                                                 \
	"	mov %rdx, rw_after+24(%rip)\n"                                                                 \
	"	mov %r8, rw_after+32(%rip)\n"                                                                  \
	"	mov %r9, rw_after+40(%rip)\n"                                                                  \
	"	mov %r10, rw_after+48(%rip)\n"                                                                 \
	"	mov %r12, rw_after+56(%rip)\n"                                                                 \
	"	mov %r13, rw_after+64(%rip)\n"                                                                 \
	"	mov %r14, rw_after+72(%rip)\n"                                                                 \
	"	mov %r15, rw_after+80(%rip)\n"                                                                 \
	"	mov %rdi, rw_after+88(%rip)\n"                                                                 \
	"	movdqu %xmm0, rw_after+112(%rip)\n"                                                            \
	"	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n	pop %rbp\n	pop %rbx\n"                        \
	"	ret\n"

void regs_call_filler(struct utsname *buf);
void regs_call_nop(struct utsname *buf);
extern const unsigned char regs_site_filler[], regs_site_nop[];
__asm__(REGS_CALL("regs_call", "regs_site", "", ""));
/* %rdi is 0 up to the site; only the moves give it the buffer back (and
 * %r8 to itself).  No flag is changed on the way. */
__asm__(REGS_CALL("regs_call_filler", "regs_site_filler", "	mov %rdi, %rcx\n	mov $0, %edi\n",
		  "	mov %rcx, %rdi\n	mov %r8, %r8\n"));
__asm__(REGS_CALL("regs_call_nop", "regs_site_nop", "", "	nop\n"));

static int regs_bad(struct utsname *buf)
{
	const struct regs *r = &rw_after;
	int bad = 0;
	const uint64_t want[] = {0x1111111111111111, 0x2222222222222222, 0x3333333333333333, 0x4444444444444444,
				 0x5555555555555555, 0x6666666666666666, 0x7777777777777777, 0x8888888888888888,
				 0x9999999999999999, 0xaaaaaaaaaaaaaaaa, 0xbbbbbbbbbbbbbbbb};
	const uint64_t *got = &r->rbx;
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (got[i] != want[i]) {
			printf("reg%u=%#lx\n", i, (unsigned long)got[i]);
			bad++;
		}
	if (r->rdi != (uint64_t)(uintptr_t)buf)
		bad++, printf("rdi=%#lx\n", (unsigned long)r->rdi);
	if (r->rax != 0)
		bad++, printf("rax=%#lx\n", (unsigned long)r->rax);
	if (!(r->flags & 1) || !(r->flags & (1 << 10)))
		bad++, printf("flags=%#lx\n", (unsigned long)r->flags);
	if (r->xmm0[0] != 0x8888888888888888 || r->xmm0[1] != 0x9999999999999999)
		bad++, printf("xmm0=%#lx,%#lx\n", (unsigned long)r->xmm0[0], (unsigned long)r->xmm0[1]);
	for (int i = 0; i < 16; i++)
		if (r->redzone[i] != 0xfeed000000000000 + (uint64_t)i)
			bad++, printf("redzone%d=%#lx\n", i, (unsigned long)r->redzone[i]);
	if (strcmp(buf->sysname, "Linux") != 0)
		bad++, printf("sysname=%s\n", buf->sysname);
	return bad;
}

static int run_site(void (*call)(struct utsname *))
{
	int bad = 0;
	for (int i = 0; i < 5; i++) {
		struct utsname u;
		memset(&u, 0, sizeof(u));
		memset(&rw_after, 0, sizeof(rw_after));
		call(&u);
		bad += regs_bad(&u);
	}
	return bad;
}

static int cmd_regs(void)
{
	printf("regs_bad=%d\n", run_site(regs_call));
	printf("regs_rewritten=%d\n", regs_site[0] == 0xe9 && regs_site[5] == 0x0f && regs_site[6] == 0x05);
	/* mov $63,%eax; mov %rcx,%rdi (3 bytes); mov %r8,%r8 (3); syscall */
	printf("filler_bad=%d\n", run_site(regs_call_filler));
	printf("filler_rewritten=%d\n", regs_site_filler[0] == 0xe9 && regs_site_filler[5] == 0x48 &&
					       regs_site_filler[11] == 0x0f && regs_site_filler[12] == 0x05);
	printf("nop_bad=%d\n", run_site(regs_call_nop));
	printf("nop_rewritten=%d\n", regs_site_nop[0] == 0xe9);
	return 0;
}

/* ---- threads ---- */

enum { NTHREADS = 8, ROUNDS = 20000 };
static pthread_barrier_t start;
static volatile int stop_signals;
static pthread_t victim;
static volatile long handler_calls, handler_bad;
static char expect_cwd[256];

static void on_usr1(int sig)
{
	(void)sig;
	struct utsname u;
	handler_calls++;
	if (uname(&u) != 0 || strcmp(u.sysname, "Linux") != 0)
		handler_bad++;
}

static long calls_checked(void)
{
	long bad = 0;
	char cwd[256];
	struct utsname u;
	if (uname(&u) != 0 || strcmp(u.sysname, "Linux") != 0)
		bad++;
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, expect_cwd) != 0)
		bad++;
	return bad;
}

static void *worker(void *arg)
{
	long bad = 0;
	pthread_barrier_wait(&start);
	for (int i = 0; i < ROUNDS; i++)
		bad += calls_checked();
	/* The signal target goes on until its handler has interrupted it
	 * often enough, however the threads were scheduled. */
	if (arg)
		while (handler_calls < 200)
			bad += calls_checked();
	return (void *)bad;
}

static void *signaller(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start);
	while (!stop_signals)
		pthread_kill(victim, SIGUSR1);
	return NULL;
}

static int cmd_threads(void)
{
	if (!getcwd(expect_cwd, sizeof(expect_cwd)))
		return 1;
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
	sigaction(SIGUSR1, &sa, NULL);
	/* The main thread is worker 0 and the signal target: it outlives the
	 * signaller, so pthread_kill never names a finished thread. */
	pthread_t t[NTHREADS], s;
	pthread_barrier_init(&start, NULL, NTHREADS + 1);
	victim = pthread_self();
	for (int i = 1; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	pthread_create(&s, NULL, signaller, NULL);
	long bad = (long)worker(&victim);
	stop_signals = 1;
	pthread_join(s, NULL);
	void *ret;
	for (int i = 1; i < NTHREADS; i++) {
		pthread_join(t[i], &ret);
		bad += (long)ret;
	}
	printf("threads_bad=%ld\n", bad);
	printf("handler_calls_pos=%d\n", handler_calls > 0);
	printf("handler_bad=%ld\n", handler_bad);
	return 0;
}

/* ---- pages ---- */

/* mov $63,%eax; syscall; ret */
static const unsigned char site_code[] = {0xb8, 63, 0, 0, 0, 0x0f, 0x05, 0xc3};

static long call_at(unsigned char *code)
{
	struct utsname u;
	long r = ((long (*)(struct utsname *))(void *)code)(&u);
	return r == 0 && strcmp(u.sysname, "Linux") == 0 ? 0 : -1;
}

static int writable(void *page)
{
	return madvise(page, 4096, MADV_POPULATE_WRITE) == 0;
}

static int cmd_pages(void)
{
	int bad = 0;
	unsigned char *rwx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *rx = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rwx == MAP_FAILED || rx == MAP_FAILED)
		return 1;
	memcpy(rwx + 64, site_code, sizeof(site_code));
	memcpy(rx + 64, site_code, sizeof(site_code));
	memcpy(rx + 128 + 12, site_code, sizeof(site_code)); /* bytes 12..16 of a block */
	memcpy(rwx + 256, site_code, sizeof(site_code));
	memcpy(rwx + 320, site_code, sizeof(site_code));
	if (mprotect(rx, 4096, PROT_READ | PROT_EXEC) != 0)
		return 1;
	for (int i = 0; i < 4; i++) {
		bad += call_at(rwx + 64) != 0;
		bad += call_at(rx + 64) != 0;
		bad += call_at(rx + 128 + 12) != 0;
		if (i == 0)
			bad += call_at(rwx + 256) != 0;
		if (i < 2)
			bad += call_at(rwx + 320) != 0;
	}
	printf("pages_bad=%d\n", bad);
	printf("once_rewritten=%d twice_rewritten=%d\n", rwx[256] == 0xe9, rwx[320] == 0xe9);
	printf("rwx_rewritten=%d rwx_writable=%d\n", rwx[64] == 0xe9, writable(rwx));
	printf("rx_rewritten=%d rx_writable=%d\n", rx[64] == 0xe9, writable(rx));
	printf("straddling_rewritten=%d\n", rx[128 + 12] != 0xb8);
	/* A syscall instruction that ends on the next page (glibc's open has
	 * one): its mov is on the first page and is rewritten. */
	unsigned char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (two == MAP_FAILED)
		return 1;
	memcpy(two + 4096 - 6, site_code, sizeof(site_code));
	if (mprotect(two, 8192, PROT_READ | PROT_EXEC) != 0)
		return 1;
	int crossing_bad = 0;
	for (int i = 0; i < 4; i++)
		crossing_bad += call_at(two + 4096 - 6) != 0;
	printf("crossing_bad=%d crossing_rewritten=%d\n", crossing_bad, two[4096 - 6] == 0xe9);
	/* A page that was writable stays so: the guest's own JIT can go on. */
	rwx[64 + 8] = 0xc3;
	return 0;
}

/* ---- libc ---- */

static int cmd_libc(void)
{
	struct utsname u;
	for (int i = 0; i < 3; i++)
		if (uname(&u) != 0)
			return 1;
	const unsigned char *f = (const unsigned char *)(void *)uname;
	int found = -1;
	for (int i = 0; i < 32; i++)
		if ((f[i] == 0xb8 || f[i] == 0xe9) && f[i + 5] == 0x0f && f[i + 6] == 0x05) {
			found = i;
			break;
		}
	printf("libc_site_found=%d\n", found >= 0);
	if (found >= 0)
		printf("libc_rewritten=%d\n", f[found] == 0xe9);
	printf("sysname=%s\n", u.sysname);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "regs"))
		return cmd_regs();
	if (!strcmp(argv[1], "threads"))
		return cmd_threads();
	if (!strcmp(argv[1], "pages"))
		return cmd_pages();
	if (!strcmp(argv[1], "libc"))
		return cmd_libc();
	return 2;
}
