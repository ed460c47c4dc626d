/* POSIX timers as programs use them: printed results must equal native. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int hits;
static volatile int last_code;
static void on_sig(int sig, siginfo_t *si, void *uc) { hits++; (void)sig; (void)uc; last_code = si->si_code; }

static volatile int thread_hits;
static void on_thread(union sigval v) { __atomic_fetch_add(&thread_hits, v.sival_int, __ATOMIC_SEQ_CST); }

int main(void)
{
	struct sigaction sa = {0};
	sa.sa_sigaction = on_sig;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGRTMIN, &sa, 0);

	/* SIGEV_SIGNAL, periodic, on CLOCK_MONOTONIC */
	timer_t t;
	struct sigevent ev = {0};
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGRTMIN;
	ev.sigev_value.sival_int = 7;
	printf("create %d\n", timer_create(CLOCK_MONOTONIC, &ev, &t));
	struct itimerspec its = {{0, 20000000}, {0, 20000000}};
	printf("settime %d\n", timer_settime(t, 0, &its, 0));
	struct timespec limit = {5, 0};
	while (hits < 3 && limit.tv_sec) { struct timespec s = {0, 5000000}; nanosleep(&s, 0); if (++limit.tv_nsec % 200 == 0) limit.tv_sec--; }
	struct itimerspec cur;
	timer_gettime(t, &cur);
	printf("hits>=3 %d interval %ld armed %d\n", hits >= 3, cur.it_interval.tv_nsec, cur.it_value.tv_nsec > 0 || cur.it_value.tv_sec > 0);
	struct itimerspec zero = {0}, old;
	timer_settime(t, 0, &zero, &old);
	printf("old interval %ld\n", old.it_interval.tv_nsec);
	timer_gettime(t, &cur);
	printf("disarmed %ld %ld\n", cur.it_value.tv_sec, cur.it_value.tv_nsec);
	printf("delete %d\n", timer_delete(t));
	errno = 0;
	printf("delete again %d %s\n", timer_delete(t), strerror(errno));

	/* sigwaitinfo on a blocked timer signal: SI_TIMER and the value */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &set, 0);
	ev.sigev_signo = SIGRTMIN + 1;
	ev.sigev_value.sival_int = 99;
	timer_create(CLOCK_REALTIME, &ev, &t);
	struct itimerspec once = {{0, 0}, {0, 10000000}};
	timer_settime(t, 0, &once, 0);
	siginfo_t si;
	int sig = sigwaitinfo(&set, &si);
	printf("sigwaitinfo %d code_is_timer %d value %d overrun %d\n", sig == SIGRTMIN + 1, si.si_code == SI_TIMER,
	       si.si_value.sival_int, timer_getoverrun(t));
	/* absolute time in the past: fires at once */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec past = {{0, 0}, {now.tv_sec - 1, 0}};
	timer_settime(t, TIMER_ABSTIME, &past, 0);
	struct timespec tmo = {5, 0};
	printf("abs past %d\n", sigtimedwait(&set, &si, &tmo) == SIGRTMIN + 1);
	timer_delete(t);

	/* SIGEV_NONE: only read back */
	ev.sigev_notify = SIGEV_NONE;
	timer_create(CLOCK_MONOTONIC, &ev, &t);
	struct itimerspec long_one = {{0, 0}, {100, 0}};
	timer_settime(t, 0, &long_one, 0);
	timer_gettime(t, &cur);
	printf("none %d\n", cur.it_value.tv_sec == 99 || cur.it_value.tv_sec == 100);
	timer_delete(t);

	/* SIGEV_THREAD (glibc: a thread waiting in sigwaitinfo, SIGEV_THREAD_ID underneath) */
	ev.sigev_notify = SIGEV_THREAD;
	ev.sigev_notify_function = on_thread;
	ev.sigev_value.sival_int = 5;
	printf("thread create %d\n", timer_create(CLOCK_MONOTONIC, &ev, &t));
	struct itimerspec tick = {{0, 10000000}, {0, 10000000}};
	timer_settime(t, 0, &tick, 0);
	for (int i = 0; i < 500 && thread_hits < 10; i++) { struct timespec s = {0, 10000000}; nanosleep(&s, 0); }
	printf("thread hits>=10 %d\n", thread_hits >= 10);
	timer_delete(t);

	/* the process CPU clock: fires only after that much CPU time */
	hits = 0;
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGRTMIN;
	timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &t);
	struct itimerspec cpu = {{0, 0}, {0, 50000000}};
	timer_settime(t, 0, &cpu, 0);
	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	do clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	while (!hits && c1.tv_sec - c0.tv_sec < 5);
	long used_ms = (c1.tv_sec - c0.tv_sec) * 1000 + (c1.tv_nsec - c0.tv_nsec) / 1000000;
	printf("cpu fired %d after >=45ms %d\n", hits, used_ms >= 45);
	timer_delete(t);

	/* errors as Linux answers them */
	errno = 0;
	printf("bad clock %d %s\n", timer_create(12345, 0, &t), strerror(errno));
	errno = 0;
	printf("raw clock %d %s\n", timer_create(CLOCK_MONOTONIC_RAW, 0, &t), strerror(errno));
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = 100;
	errno = 0;
	printf("bad signal %d %s\n", timer_create(CLOCK_MONOTONIC, &ev, &t), strerror(errno));
	/* the default sigevent: SIGALRM, value = id */
	printf("default %d\n", timer_create(CLOCK_MONOTONIC, 0, &t));
	struct itimerspec bad = {{0, 0}, {0, 1000000000}};
	errno = 0;
	printf("bad nsec %d %s\n", timer_settime(t, 0, &bad, 0), strerror(errno));
	return 0;
}
