/* One probe per forbidden operation:  forbid OP [ARGS...]
 *
 * Prints "before OP", makes the call with real arguments that WOULD have an
 * observable effect if the kernel ran it, then prints "after OP ret=N" and
 * whatever the call obtained.  Under the raw filter every OP must be killed
 * with SIGSYS between the two markers; the tests check from outside that the
 * effect did not happen.  The same binary run natively (no picoproc) is the
 * control that shows the arguments are real: there the call takes effect.
 *
 * With "--hold" as the last argument the probe, after "after", waits for EOF
 * on stdin before exiting, so a native control can be observed while alive. */
#include "guest.h"

#define NR_ioctl 16
#define NR_getpid 39
#define NR_socket 41
#define NR_ptrace 101
#define NR_rt_sigaction 13
#define NR_mount 165
#define NR_keyctl 250
#define NR_openat 257
#define NR_unshare 272
#define NR_perf_event_open 298
#define NR_open_by_handle_at 304
#define NR_setns 308
#define NR_process_vm_readv 310
#define NR_seccomp 317
#define NR_bpf 321
#define NR_userfaultfd 323
#define NR_io_uring_setup 425

#define AT_FDCWD -100
#define O_WRONLY 01
#define O_CREAT 0100
#define O_EXCL 0200
#define O_CLOEXEC 02000000
#define O_NONBLOCK 04000
#define TIOCSTI 0x5412
#define SIGSYS 31
#define SIGCHLD 17
#define AF_NETLINK 16
#define SOCK_RAW 3
#define NETLINK_ROUTE 0
#define CLONE_NEWUSER 0x10000000
#define CLONE_NEWNS 0x00020000
#define PTRACE_ATTACH 16
#define PTRACE_POKEDATA 5
#define PTRACE_DETACH 17
#define __WALL 0x40000000
#define KEYCTL_INVALIDATE 21
#define SECCOMP_SET_MODE_FILTER 1
#define SECCOMP_RET_ALLOW 0x7fff0000U
#define BPF_MAP_CREATE 0
#define BPF_MAP_TYPE_ARRAY 2
#define PERF_TYPE_SOFTWARE 1
#define PERF_COUNT_SW_TASK_CLOCK 1
#define PERF_FLAG_FD_CLOEXEC 8
#define X32_SYSCALL_BIT 0x40000000L

static unsigned long parse_num(const char *s)
{
	unsigned long v = 0;
	int base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		if (d >= base)
			break;
		v = v * (unsigned long)base + (unsigned long)d;
	}
	return v;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Shared scratch for the calls' in/out structures (zeroed: .bss). */
static unsigned char scratch[4096] __attribute__((aligned(64)));
static char readback[256];

static void print_bytes(const char *label, const char *buf, long n)
{
	if (n <= 0)
		return;
	g_puts(label);
	sys3(NR_write, 1, buf, n);
	g_puts("\n");
}

/* --- one function per operation; argv[2..] are the operation's arguments --- */

static long op_openat(char **argv)
{
	/* argv[2]: a path that must not come to exist. */
	return sys4(NR_openat, AT_FDCWD, argv[2], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
}

static long op_mount(char **argv)
{
	/* argv[2]: a directory a tmpfs would be mounted on (source name marks it). */
	return sys5(NR_mount, "picoproc-probe", argv[2], "tmpfs", 0, "size=64k");
}

static long op_ioctl_tiocsti_bytes(unsigned long request)
{
	/* Pushes bytes into the input queue of the terminal on stdin, as if typed. */
	static const char injected[] = "INJECTED\n";
	long ret = 0;
	for (int i = 0; injected[i]; i++) {
		ret = sys3(NR_ioctl, 0, request, &injected[i]);
		if (ret < 0)
			break;
	}
	return ret;
}

static long op_ioctl_tiocsti(char **argv)
{
	return op_ioctl_tiocsti_bytes(TIOCSTI);
}

static long op_ioctl_tiocsti_hi32(char **argv)
{
	/* The kernel truncates the request to 32 bits: this IS TIOCSTI to it. */
	return op_ioctl_tiocsti_bytes((1UL << 32) | TIOCSTI);
}

/* The kernel's struct sigaction layout. */
struct k_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	unsigned long mask;
};

static void sigsys_handler(int sig)
{
	g_puts("SIGSYS handler ran\n");
}

static long set_sigsys_handler(unsigned long signo)
{
	struct k_sigaction act;
	memset(&act, 0, sizeof(act));
	act.handler = (void *)sigsys_handler;
	return sys4(NR_rt_sigaction, signo, &act, 0, 8);
}

static long op_rt_sigaction_sigsys(char **argv)
{
	return set_sigsys_handler(SIGSYS);
}

static long op_rt_sigaction_hi32(char **argv)
{
	/* Truncated to an int by the kernel: SIGSYS again. */
	return set_sigsys_handler((1UL << 32) | SIGSYS);
}

static long op_socket_netlink(char **argv)
{
	return sys3(NR_socket, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
}

static long op_unshare(char **argv)
{
	return sys1(NR_unshare, CLONE_NEWUSER | CLONE_NEWNS);
}

static long op_clone_newuser(char **argv)
{
	/* fork(2)-style clone into a new user namespace; the child announces itself. */
	long pid = sys6(NR_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0, 0);
	if (pid == 0) {
		g_puts("child in a new user namespace\n");
		g_exit(0);
	}
	if (pid > 0)
		sys4(NR_wait4, pid, 0, 0, 0);
	return pid;
}

static long op_setns(char **argv)
{
	/* stdin is a namespace fd (/proc/PID/ns/...) the test opened. */
	return sys2(NR_setns, 0, 0);
}

static long op_keyctl(char **argv)
{
	/* argv[2]: the serial of a key the test created in its session keyring. */
	return sys2(NR_keyctl, KEYCTL_INVALIDATE, parse_num(argv[2]));
}

static long op_ptrace(char **argv)
{
	/* argv[2] = pid, argv[3] = address of an 8-byte secret in that process:
	 * attach, overwrite the secret, detach.  The effect outlives the probe. */
	long pid = (long)parse_num(argv[2]);
	unsigned long addr = parse_num(argv[3]);
	long ret = sys4(NR_ptrace, PTRACE_ATTACH, pid, 0, 0);
	if (ret < 0)
		return ret;
	int status = 0;
	sys4(NR_wait4, pid, &status, __WALL, 0);
	ret = sys4(NR_ptrace, PTRACE_POKEDATA, pid, addr, 0x21212144454e5750UL); /* "PWNED!!!" */
	sys4(NR_ptrace, PTRACE_DETACH, pid, 0, 0);
	return ret;
}

struct iovec_g {
	void *base;
	unsigned long len;
};

static long op_process_vm_readv(char **argv)
{
	/* argv[2] = pid, argv[3] = address of a secret: copy it out and print it. */
	struct iovec_g local = {readback, 8};
	struct iovec_g remote = {(void *)parse_num(argv[3]), 8};
	long n = sys6(NR_process_vm_readv, (long)parse_num(argv[2]), (long)&local, 1, (long)&remote, 1, 0);
	print_bytes("read: ", readback, n);
	return n;
}

static long op_open_by_handle_at(char **argv)
{
	/* stdin: any fd on the file system (names the mount); argv[2]: struct file_handle as
	 * hex (from name_to_handle_at).  Opens the file by handle, bypassing every
	 * path check, and prints what it reads. */
	int i = 0;
	for (const char *h = argv[2]; h[0] && h[1] && i < (int)sizeof(scratch); h += 2)
		scratch[i++] = (unsigned char)(hexval(h[0]) * 16 + hexval(h[1]));
	long fd = sys3(NR_open_by_handle_at, 0, scratch, 0);
	if (fd < 0)
		return fd;
	long n = sys3(NR_read, fd, readback, sizeof(readback));
	print_bytes("read: ", readback, n);
	return fd;
}

struct sock_filter_g {
	unsigned short code;
	unsigned char jt, jf;
	unsigned int k;
};
struct sock_fprog_g {
	unsigned short len;
	struct sock_filter_g *filter;
};

static long op_seccomp(char **argv)
{
	/* Stacks a filter of its own (one that allows everything). */
	static struct sock_filter_g allow = {0x06 /* BPF_RET|BPF_K */, 0, 0, SECCOMP_RET_ALLOW};
	struct sock_fprog_g prog = {1, &allow};
	return sys3(NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static long op_io_uring_setup(char **argv)
{
	/* struct io_uring_params is 120 bytes; zero asks for defaults. */
	return sys2(NR_io_uring_setup, 4, scratch);
}

static long op_bpf(char **argv)
{
	unsigned int *attr = (unsigned int *)scratch;
	attr[0] = BPF_MAP_TYPE_ARRAY; /* map_type */
	attr[1] = 4;		      /* key_size */
	attr[2] = 4;		      /* value_size */
	attr[3] = 1;		      /* max_entries */
	return sys3(NR_bpf, BPF_MAP_CREATE, attr, 64);
}

static long op_userfaultfd(char **argv)
{
	return sys1(NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
}

static long op_perf_event_open(char **argv)
{
	/* A software task-clock counter on this process: struct perf_event_attr
	 * {u32 type; u32 size; u64 config; ...}. */
	unsigned int *attr = (unsigned int *)scratch;
	attr[0] = PERF_TYPE_SOFTWARE;
	attr[1] = 128;
	*(unsigned long *)(scratch + 8) = PERF_COUNT_SW_TASK_CLOCK;
	return sys5(NR_perf_event_open, attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static long op_x32_write(char **argv)
{
	/* write(2) through the x32 ABI (bit 30 of the number). */
	static const char msg[] = "X32-WROTE\n";
	return sys3(X32_SYSCALL_BIT | NR_write, 1, msg, sizeof(msg) - 1);
}

static long op_int80_write(char **argv)
{
	/* write(2) through the i386 ABI: int $0x80, eax = 4, ebx/ecx/edx.  The
	 * message lives in this non-PIE image, below 4 GiB, so 32-bit pointers reach it. */
	static const char msg[] = "INT80-WROTE\n";
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(4L), "b"(1L), "c"((long)msg), "d"((long)sizeof(msg) - 1)
			 : "memory");
	return ret;
}

struct op {
	const char *name;
	long (*fn)(char **argv);
	int nargs; /* arguments after OP */
};

static const struct op ops[] = {
	{"openat", op_openat, 1},
	{"mount", op_mount, 1},
	{"ioctl_tiocsti", op_ioctl_tiocsti, 0},
	{"ioctl_tiocsti_hi32", op_ioctl_tiocsti_hi32, 0},
	{"rt_sigaction_sigsys", op_rt_sigaction_sigsys, 0},
	{"rt_sigaction_hi32", op_rt_sigaction_hi32, 0},
	{"socket_netlink", op_socket_netlink, 0},
	{"unshare", op_unshare, 0},
	{"clone_newuser", op_clone_newuser, 0},
	{"setns", op_setns, 0},
	{"keyctl", op_keyctl, 1},
	{"ptrace", op_ptrace, 2},
	{"process_vm_readv", op_process_vm_readv, 2},
	{"open_by_handle_at", op_open_by_handle_at, 1},
	{"seccomp", op_seccomp, 0},
	{"io_uring_setup", op_io_uring_setup, 0},
	{"bpf", op_bpf, 0},
	{"userfaultfd", op_userfaultfd, 0},
	{"perf_event_open", op_perf_event_open, 0},
	{"x32_write", op_x32_write, 0},
	{"int80_write", op_int80_write, 0},
};

int guest_main(int argc, char **argv, char **envp)
{
	if (argc < 2) {
		g_puts("usage: forbid OP [ARGS...] [--hold]\n");
		return 2;
	}
	int hold = g_streq(argv[argc - 1], "--hold");
	for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!g_streq(argv[1], ops[i].name))
			continue;
		if (argc - 2 - hold < ops[i].nargs) {
			g_puts("forbid: missing arguments for ");
			g_puts(ops[i].name);
			g_puts("\n");
			return 2;
		}
		g_puts("before ");
		g_puts(ops[i].name);
		g_puts("\n");
		long ret = ops[i].fn(argv);
		g_puts("after ");
		g_puts(ops[i].name);
		g_puts(" ret=");
		g_putnum(ret);
		g_puts("\n");
		if (hold)
			while (sys3(NR_read, 0, readback, sizeof(readback)) > 0)
				;
		return 0;
	}
	g_puts("forbid: unknown operation ");
	g_puts(argv[1]);
	g_puts("\n");
	return 2;
}
