#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
	int clocks[] = {0, 1, 2, 3, 4, 5, 6, 7, 11, -6, -7, -8, -2, 12345};
	for (unsigned i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
		struct timespec ts = {0, 0};
		long r = syscall(SYS_clock_getres, clocks[i], &ts);
		printf("%d %ld %ld.%09ld\n", clocks[i], r, ts.tv_sec, ts.tv_nsec);
	}
}
