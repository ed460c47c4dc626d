/* What the floor programs (notif_floor.c, spawn_floor.c) share: the clock,
 * the report line benchmarks/bench_floor.py parses, and dying with a
 * message.  Define FLOOR_PROGRAM (the program's name) before including. */
#ifndef PICO_FLOOR_COMMON_H
#define PICO_FLOOR_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

static void __attribute__((noreturn)) die(const char *what)
{
	fprintf(stderr, FLOOR_PROGRAM ": %s: %s\n", what, strerror(errno));
	exit(1);
}

/* "NAME median_ns=N p10_ns=N p90_ns=N" over the n samples of t (sorted). */
static inline void report(const char *name, long *t, int n)
{
	qsort(t, (size_t)n, sizeof(long), cmp_long);
	printf("%s median_ns=%ld p10_ns=%ld p90_ns=%ld\n", name, t[n / 2], t[n / 10], t[n * 9 / 10]);
}

#endif
