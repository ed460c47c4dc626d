/* statloop: one of N concurrent clients of the scale benchmark.
 *
 *   statloop FILE COUNT
 *
 * Prints "ready", waits for one byte on stdin (the harness releases every
 * client at once, so they really run concurrently), then calls stat(FILE)
 * COUNT times, timing each call with CLOCK_MONOTONIC (vDSO), and prints:
 *
 *   calls=COUNT start=NS end=NS vdso=0|1 marks=NS,... hist=IDX:COUNT,...
 *
 * marks are the clock when each of MARKS equal parts of the calls was done
 * (the harness compares the clients' progress while all of them run).
 * start/end are CLOCK_MONOTONIC readings (one clock for every process on the
 * host, so the harness can take the span of all clients).  hist is a
 * log-linear latency histogram: values below 16 ns have their own bucket;
 * above, 16 buckets per power of two (about 6 % resolution).  The harness
 * merges the clients' histograms and decodes them with the same rule
 * (picoproc.bench.perf.stats.hist_bucket_low).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 4
#define SUB (1u << SUB_BITS)
#define NBUCKETS (SUB * 61)

static uint64_t counts[NBUCKETS];
#define MARKS 64
static uint64_t marks[MARKS];
static int next_mark;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t v)
{
	if (v < SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* v in [2^e, 2^(e+1)) */
	unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & (SUB - 1);
	unsigned idx = SUB * (e - SUB_BITS + 1) + sub;
	return idx < NBUCKETS ? idx : NBUCKETS - 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: statloop FILE COUNT\n");
		return 2;
	}
	const char *file = argv[1];
	long count = strtol(argv[2], NULL, 10);
	if (count <= 0) {
		fprintf(stderr, "statloop: bad COUNT\n");
		return 2;
	}
	struct stat st;
	if (stat(file, &st) != 0) { /* fail before the barrier, visibly */
		fprintf(stderr, "statloop: stat %s: %s\n", file, strerror(errno));
		return 3;
	}
	printf("ready\n");
	fflush(stdout);
	char go;
	if (read(0, &go, 1) != 1) {
		fprintf(stderr, "statloop: no start signal on stdin\n");
		return 4;
	}
	uint64_t start = now_ns();
	for (long i = 0; i < count; i++) {
		uint64_t t0 = now_ns();
		if (stat(file, &st) != 0) {
			fprintf(stderr, "statloop: stat failed: %s\n", strerror(errno));
			return 3;
		}
		uint64_t t1 = now_ns();
		counts[bucket_of(t1 - t0)]++;
		while (next_mark < MARKS && (uint64_t)(i + 1) * MARKS >= (uint64_t)(next_mark + 1) * (uint64_t)count)
			marks[next_mark++] = t1;
	}
	uint64_t end = now_ns();
	printf("calls=%ld start=%llu end=%llu vdso=%d marks=", count, (unsigned long long)start,
	       (unsigned long long)end, getauxval(AT_SYSINFO_EHDR) != 0);
	for (int m = 0; m < MARKS; m++)
		printf("%s%llu", m ? "," : "", (unsigned long long)(marks[m] ? marks[m] : end));
	printf(" hist=");
	int first = 1;
	for (unsigned i = 0; i < NBUCKETS; i++) {
		if (!counts[i])
			continue;
		printf("%s%u:%llu", first ? "" : ",", i, (unsigned long long)counts[i]);
		first = 0;
	}
	printf("\n");
	return 0;
}
