/* signalfd as daemons use it: block, read records, poll. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, 0);
	int fd = signalfd(-1, &set, SFD_CLOEXEC);
	printf("created %d\n", fd >= 0);
	struct signalfd_siginfo si;
	kill(getpid(), SIGUSR1);
	ssize_t n = read(fd, &si, sizeof(si));
	printf("read %zd signo %u code %d pid_is_self %d\n", n, si.ssi_signo, si.ssi_code, si.ssi_pid == (unsigned)getpid());
	pid_t child = fork();
	if (child == 0)
		_exit(7);
	struct pollfd p = {fd, POLLIN, 0};
	printf("poll %d\n", poll(&p, 1, 5000));
	n = read(fd, &si, sizeof(si));
	printf("chld %zd signo %u status %d pid_is_child %d\n", n, si.ssi_signo, si.ssi_status, si.ssi_pid == (unsigned)child);
	waitpid(child, 0, 0);
	/* non-blocking: nothing pending */
	int nb = signalfd(-1, &set, SFD_NONBLOCK);
	errno = 0;
	n = read(nb, &si, sizeof(si));
	printf("empty %zd %s\n", n, strerror(errno));
	/* a new mask for an existing fd */
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, 0);
	printf("remask %d\n", signalfd(nb, &set, 0) == nb);
	kill(getpid(), SIGUSR2);
	p.fd = nb;
	poll(&p, 1, 5000);
	n = read(nb, &si, sizeof(si));
	printf("usr2 %zd signo %u\n", n, si.ssi_signo);
	errno = 0;
	int r = signalfd(-1, &set, 0x10);
	printf("bad flags %d %s\n", r, strerror(errno));
	return 0;
}
