/* Benchmark guest: times open+close of one file, N iterations, with the TSC
 * around each iteration (calibrated against CLOCK_MONOTONIC over the whole
 * run), and prints the per-iteration nanoseconds, sorted, as
 * "median=<ns> p10=<ns> p90=<ns> n=<N>".
 *
 *   med_bench mediated PATH N   pico_open("file:PATH") + close (needs a monitor)
 *   med_bench native PATH N     openat(AT_FDCWD, PATH) + close, run unconfined
 *   med_bench null PATH N       pico_note_unsupported: a bare mediated round trip
 *   med_bench stat PATH N       pico_stat(PATH) (needs a monitor)
 */
#include "med_common.h"

#define NR_openat 257
#define AT_FDCWD (-100)
#define MAX_N 200000

static unsigned long samples[MAX_N];
static char uri[4200];
static struct statx stx;

static inline unsigned long rdtsc(void)
{
	unsigned int lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi));
	return ((unsigned long)hi << 32) | lo;
}

static void sort(unsigned long *a, long n)
{
	/* Shell sort: no recursion, no libc. */
	for (long gap = n / 2; gap > 0; gap /= 2)
		for (long i = gap; i < n; i++) {
			unsigned long v = a[i];
			long j = i;
			while (j >= gap && a[j - gap] > v) {
				a[j] = a[j - gap];
				j -= gap;
			}
			a[j] = v;
		}
}

int guest_main(int argc, char **argv, char **envp)
{
	if (argc < 4)
		return 2;
	int mediated = g_streq(argv[1], "mediated") ? 1
		       : g_streq(argv[1], "null")   ? 2
		       : g_streq(argv[1], "stat")   ? 3
						    : 0;
	const char *path = argv[2];
	long n = g_atol(argv[3]);
	if (n <= 0 || n > MAX_N)
		return 2;
	unsigned long len = 0;
	const char *scheme = "file:";
	for (int i = 0; scheme[i]; i++)
		uri[len++] = scheme[i];
	for (int i = 0; path[i]; i++)
		uri[len++] = path[i];

	long t0 = g_now_ns();
	unsigned long c0 = rdtsc();
	for (long i = 0; i < n; i++) {
		unsigned long a = rdtsc();
		long fd;
		if (mediated == 2) {
			pico_note_unsupported(1, 2);
			samples[i] = rdtsc() - a;
			continue;
		}
		if (mediated == 3) {
			long err = pico_stat(path, g_strlen(path), 0, &stx);
			if (err < 0) {
				g_puts("stat failed ");
				g_putnum(-err);
				g_puts("\n");
				return 1;
			}
			samples[i] = rdtsc() - a;
			continue;
		}
		fd = mediated ? pico_open(uri, len, O_RDONLY | O_CLOEXEC, 0)
			      : sys4(NR_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0) {
			g_puts("open failed ");
			g_putnum(-fd);
			g_puts("\n");
			return 1;
		}
		sys1(NR_close, fd);
		samples[i] = rdtsc() - a;
	}
	unsigned long c1 = rdtsc();
	long t1 = g_now_ns();
	sort(samples, n);
	/* ns per cycle as a fraction (t1-t0)/(c1-c0), applied in integers. */
	unsigned long cycles = c1 - c0;
	unsigned long ns = (unsigned long)(t1 - t0);
	g_puts("median=");
	g_putnum((long)(samples[n / 2] * ns / cycles));
	g_puts(" p10=");
	g_putnum((long)(samples[n / 10] * ns / cycles));
	g_puts(" p90=");
	g_putnum((long)(samples[n * 9 / 10] * ns / cycles));
	g_puts(" n=");
	g_putnum(n);
	g_puts("\n");
	return 0;
}
