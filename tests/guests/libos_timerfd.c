/* timerfd as event loops use it: one-shot, periodic, absolute, poll, errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

int main(void)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	printf("created %d\n", fd >= 0);
	struct itimerspec once = {{0, 0}, {0, 20000000}}, cur;
	printf("set %d\n", timerfd_settime(fd, 0, &once, 0));
	timerfd_gettime(fd, &cur);
	printf("armed %d\n", cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 20000000);
	uint64_t n = 0;
	ssize_t k = read(fd, &n, sizeof(n));
	printf("read %zd n %llu\n", k, (unsigned long long)n);
	timerfd_gettime(fd, &cur);
	printf("disarmed %ld %ld\n", cur.it_value.tv_sec, cur.it_value.tv_nsec);
	/* periodic: the expirations add up over reads */
	struct itimerspec tick = {{0, 10000000}, {0, 10000000}};
	timerfd_settime(fd, 0, &tick, 0);
	uint64_t total = 0;
	while (total < 5) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 5000) != 1)
			break;
		read(fd, &n, sizeof(n));
		total += n;
	}
	printf("ticks>=5 %d\n", total >= 5);
	/* re-arm forgets what was not read */
	struct itimerspec far = {{0, 0}, {100, 0}};
	timerfd_settime(fd, 0, &far, 0);
	int nb = fcntl(fd, F_GETFL);
	(void)nb;
	struct pollfd p = {fd, POLLIN, 0};
	printf("after re-arm %d\n", poll(&p, 1, 50));
	/* absolute, already past: fires at once */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int rt = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	errno = 0;
	k = read(rt, &n, sizeof(n));
	printf("empty %zd %s\n", k, strerror(errno));
	struct itimerspec past = {{0, 0}, {now.tv_sec - 5, 0}};
	timerfd_settime(rt, TFD_TIMER_ABSTIME, &past, 0);
	p.fd = rt;
	poll(&p, 1, 5000);
	k = read(rt, &n, sizeof(n));
	printf("past %zd n %llu\n", k, (unsigned long long)n);
	errno = 0;
	int r = timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0);
	printf("bad clock %d %s\n", r, strerror(errno));
	errno = 0;
	r = timerfd_settime(0, 0, &once, 0);
	printf("not a timerfd %d %s\n", r, strerror(errno));
	close(fd);
	close(rt);
	/* many created and closed: their slots come back */
	int ok = 1;
	for (int i = 0; i < 100 && ok; i++) {
		int t = timerfd_create(CLOCK_MONOTONIC, 0);
		struct itimerspec quick = {{0, 1000000}, {0, 1000000}};
		ok = t >= 0 && timerfd_settime(t, 0, &quick, 0) == 0 && read(t, &n, sizeof(n)) == 8;
		close(t);
		if (ok && i % 20 == 19) {
			struct timespec s = {0, 20000000};
			nanosleep(&s, 0);
		}
	}
	printf("100 created and closed %d\n", ok);
	return 0;
}
