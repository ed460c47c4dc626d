/* Runs many system calls, each in a forked child, and reports each child's fate:
 *
 *   syscall_probe CASE...      CASE = NR,A0,A1,A2,A3,A4,A5
 *
 * Numbers are decimal or 0x-hex; an argument "Z" stands for the address of a
 * zeroed 8 KiB buffer (a harmless pointer).  For each case, in order, prints
 *
 *   case I status S ret R    the child made the call, reported its result R
 *                            (-errno or a value) and exited; S = wait status
 *   case I status S          the child died or exited before reporting
 *                            (e.g. S = SIGSYS when the filter killed it)
 *   case I hang              no report within 5 s (the child is then killed)
 *
 * The parent uses only direct calls (pipe2, clone without CLONE_VM, ppoll,
 * read, wait4, kill), so it survives the raw filter and can test ~600 numbers
 * in one run.  rt_sigreturn (15) runs on a zeroed stack so that, if allowed,
 * it restores an all-zero frame and dies of SIGSEGV instead of jumping to
 * garbage. */
#include "guest.h"

#define NR_close 3
#define NR_rt_sigreturn 15
#define NR_kill 62
#define NR_ppoll 271
#define NR_pipe2 293
#define SIGCHLD 17
#define SIGKILL 9
#define O_CLOEXEC 02000000
#define POLLIN 1

static unsigned char zero_buf[8192] __attribute__((aligned(4096)));
static unsigned char sigreturn_stack[8192] __attribute__((aligned(4096)));

static const char *parse_num(const char *s, long *out)
{
	unsigned long v = 0;
	int neg = 0;
	if (*s == 'Z') {
		*out = (long)zero_buf;
		return s + 1;
	}
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
	g_exit(0);
}

int guest_main(int argc, char **argv, char **envp)
{
	for (int i = 1; i < argc; i++) {
		long v[7] = {0};
		const char *s = argv[i];
		for (int k = 0; k < 7 && *s; k++) {
			s = parse_num(s, &v[k]);
			if (*s == ',')
				s++;
		}
		int fds[2];
		if (sys2(NR_pipe2, fds, O_CLOEXEC) < 0) {
			g_puts("pipe2 failed\n");
			return 1;
		}
		long pid = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
		if (pid == 0) {
			sys1(NR_close, fds[0]);
			run_case(fds[1], v[0], &v[1]);
		}
		sys1(NR_close, fds[1]);
		if (pid < 0) {
			g_puts("clone failed\n");
			return 1;
		}
		struct {
			int fd;
			short events, revents;
		} pfd = {fds[0], POLLIN, 0};
		struct {
			long sec, nsec;
		} timeout = {5, 0};
		long ret = 0, got = 0;
		long ready = sys5(NR_ppoll, &pfd, 1, &timeout, 0, 8);
		if (ready > 0)
			got = sys3(NR_read, fds[0], &ret, sizeof(ret));
		sys1(NR_close, fds[0]);
		g_puts("case ");
		g_putnum(i - 1);
		if (ready == 0) {
			sys2(NR_kill, pid, SIGKILL);
			sys4(NR_wait4, pid, 0, 0, 0);
			g_puts(" hang\n");
			continue;
		}
		int status = 0;
		sys4(NR_wait4, pid, &status, 0, 0);
		g_puts(" status ");
		g_putnum(status);
		if (got == (long)sizeof(ret)) {
			g_puts(" ret ");
			g_putnum(ret);
		}
		g_puts("\n");
	}
	return 0;
}
