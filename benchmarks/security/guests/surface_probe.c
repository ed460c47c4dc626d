/* Surface probe: makes one x86-64 system call per forked child and reports
 * what happened to it.  Freestanding (no libc, its own _start) so that the
 * same static binary runs under every backend, including picoproc's raw
 * mode, where the parent may only use ABI direct calls (pipe2, clone without
 * namespace flags, ppoll, read, write, wait4, kill, clock_nanosleep,
 * rt_sigaction for SIGUSR1, exit_group).
 *
 *   pp-surface TOKEN HOLD_MS CASE...     CASE = NR[,A0,A1,A2,A3,A4,A5]
 *
 * Missing arguments are -1 (all bits set): an "impossible" pattern that the
 * kernel rejects early for almost every call (EFAULT, EBADF, EINVAL), so the
 * probe itself never changes the host.  TOKEN only marks the process so the
 * harness can find it in /proc.  With HOLD_MS > 0 the probe first waits up to
 * HOLD_MS for SIGUSR1: the harness uses that window to read the seccomp
 * filters of the process from outside (PTRACE_SECCOMP_GET_FILTER) and then
 * sends SIGUSR1; where the guest is not a host process (gVisor) nobody sends
 * it and the probe starts when the window ends.
 *
 * Output, one line per case:
 *   nr N ret R            the child made the call and reported R (-errno or value)
 *   nr N exit C           the child exited with code C before reporting
 *   nr N signal S         the child was killed by signal S (SIGSYS = seccomp kill)
 *   nr N hang             no report within 2 s (the child was killed)
 */

#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_rt_sigaction 13
#define NR_rt_sigreturn 15
#define NR_clone 56
#define NR_exit 60
#define NR_wait4 61
#define NR_kill 62
#define NR_clock_nanosleep 230
#define NR_exit_group 231
#define NR_ppoll 271
#define NR_pipe2 293

#define SIGKILL 9
#define SIGUSR1 10
#define SIGCHLD 17
#define O_CLOEXEC 02000000
#define POLLIN 1
#define SA_RESTORER 0x04000000
#define EINTR 4

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#define sys1(n, a) sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* The compiler may emit calls to these even with -fno-builtin. */
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

static void __attribute__((noreturn)) die(int code)
{
	for (;;)
		sys1(NR_exit_group, code);
}

static unsigned long slen(const char *s)
{
	unsigned long n = 0;
	while (s[n])
		n++;
	return n;
}

/* Output is buffered and written in whole lines so that a kill cannot cut one. */
static char out_buf[4096];
static unsigned long out_len;

static void flush(void)
{
	unsigned long off = 0;
	while (off < out_len) {
		long n = sys3(NR_write, 1, out_buf + off, out_len - off);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			die(3);
		off += (unsigned long)n;
	}
	out_len = 0;
}

static void put(const char *s)
{
	unsigned long n = slen(s);
	if (out_len + n > sizeof(out_buf))
		flush();
	memcpy(out_buf + out_len, s, n);
	out_len += n;
}

static void put_num(long v)
{
	char buf[24];
	int i = 23;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
	buf[i--] = 0;
	do {
		buf[i--] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		buf[i--] = '-';
	put(&buf[i + 1]);
}

static const char *parse_num(const char *s, long *out)
{
	unsigned long v = 0;
	int neg = 0;
	if (*s == '-') {
		neg = 1;
		s++;
	}
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (s += 2;; s++) {
			if (*s >= '0' && *s <= '9')
				v = v * 16 + (unsigned long)(*s - '0');
			else if (*s >= 'a' && *s <= 'f')
				v = v * 16 + (unsigned long)(*s - 'a' + 10);
			else
				break;
		}
	} else {
		for (; *s >= '0' && *s <= '9'; s++)
			v = v * 10 + (unsigned long)(*s - '0');
	}
	*out = neg ? -(long)v : (long)v;
	return s;
}

struct k_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

static volatile int go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

__asm__(".text\n"
	"probe_restorer:\n"
	"  mov $15, %eax\n"
	"  syscall\n");
void probe_restorer(void);

struct timespec_k {
	long sec, nsec;
};

static void wait_for_harness(long hold_ms)
{
	struct k_sigaction sa = {on_usr1, SA_RESTORER, probe_restorer, 0};
	if (sys4(NR_rt_sigaction, SIGUSR1, &sa, 0, 8) != 0)
		return;
	for (long waited = 0; !go && waited < hold_ms; waited += 5) {
		struct timespec_k ts = {0, 5000000};
		sys4(NR_clock_nanosleep, 1 /* CLOCK_MONOTONIC */, 0, &ts, 0);
	}
}

/* rt_sigreturn, if allowed, restores a frame from the stack: run it on a
 * zeroed stack so that it dies of SIGSEGV instead of jumping anywhere. */
static unsigned char sigreturn_stack[16384] __attribute__((aligned(4096)));

static void __attribute__((noreturn)) run_case(int report_fd, long nr, const long *a)
{
	long ret;
	if (nr == NR_rt_sigreturn) {
		long sp = (long)(sigreturn_stack + sizeof(sigreturn_stack) / 2);
		__asm__ volatile("mov %1, %%rsp\n"
				 "syscall\n"
				 : "=a"(ret)
				 : "r"(sp), "a"(nr)
				 : "rcx", "r11", "memory");
	} else {
		ret = sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	}
	sys3(NR_write, report_fd, &ret, sizeof(ret));
	die(0);
}

struct pollfd_k {
	int fd;
	short events, revents;
};

static void probe_one(const char *spec)
{
	long nr, a[6] = {-1, -1, -1, -1, -1, -1};
	const char *p = parse_num(spec, &nr);
	for (int i = 0; i < 6 && *p == ','; i++)
		p = parse_num(p + 1, &a[i]);

	int fds[2];
	if (sys2(NR_pipe2, fds, O_CLOEXEC) != 0)
		die(4);
	long pid = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
	if (pid < 0)
		die(5);
	if (pid == 0) {
		sys1(NR_close, fds[0]);
		run_case(fds[1], nr, a);
	}
	sys1(NR_close, fds[1]);
	struct pollfd_k pfd = {fds[0], POLLIN, 0};
	struct timespec_k limit = {2, 0};
	long ready;
	do {
		ready = sys4(NR_ppoll, &pfd, 1, &limit, 0);
	} while (ready == -EINTR);
	long ret = 0, got = 0;
	if (ready > 0)
		got = sys3(NR_read, fds[0], &ret, sizeof(ret));
	else
		sys2(NR_kill, pid, SIGKILL);
	sys1(NR_close, fds[0]);
	int status = 0;
	while (sys4(NR_wait4, pid, &status, 0x40000000 /* __WALL */, 0) == -EINTR)
		;
	put("nr ");
	put_num(nr);
	if (got == (long)sizeof(ret)) {
		put(" ret ");
		put_num(ret);
	} else if (ready == 0) {
		put(" hang");
	} else if ((status & 0x7f) == 0) {
		put(" exit ");
		put_num((status >> 8) & 0xff);
	} else {
		put(" signal ");
		put_num(status & 0x7f);
	}
	put("\n");
}

int probe_main(int argc, char **argv)
{
	if (argc < 3) {
		put("usage: pp-surface TOKEN HOLD_MS NR[,A0..A5]...\n");
		flush();
		return 2;
	}
	long hold_ms;
	parse_num(argv[2], &hold_ms);
	if (hold_ms > 0)
		wait_for_harness(hold_ms);
	put("probe start\n");
	for (int i = 3; i < argc; i++) {
		probe_one(argv[i]);
		if (out_len > sizeof(out_buf) / 2)
			flush();
	}
	put("probe done\n");
	flush();
	return 0;
}

void __attribute__((noreturn, used)) probe_start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	die(probe_main(argc, argv));
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"  xor %rbp, %rbp\n"
	"  mov %rsp, %rdi\n"
	"  and $-16, %rsp\n"
	"  call probe_start_c\n"
	"  hlt\n");
