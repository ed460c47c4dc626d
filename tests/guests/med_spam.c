/* Opens and reads PATH N times (forever when N is 0), comparing the content
 * with EXPECTED each time; prints "good=<g> bad=<b>".  Used for many guests
 * served at once and for guests killed in the middle of a call. */
#include "med_common.h"

static char uri[4200];
static char buf[4096];

int guest_main(int argc, char **argv, char **envp)
{
	if (argc < 4)
		return 2;
	const char *path = argv[1];
	const char *expected = argv[2];
	long n = g_atol(argv[3]);
	unsigned long len = 0, elen = g_strlen(expected);
	const char *scheme = "file:";
	for (int i = 0; scheme[i]; i++)
		uri[len++] = scheme[i];
	for (int i = 0; path[i]; i++)
		uri[len++] = path[i];

	long good = 0, bad = 0;
	for (long i = 0; n == 0 || i < n; i++) {
		long fd = pico_open(uri, len, O_RDONLY, 0);
		if (fd < 0) {
			bad++;
			continue;
		}
		long got = sys3(NR_read, fd, buf, sizeof(buf));
		sys1(NR_close, fd);
		int same = got == (long)elen;
		for (long k = 0; same && k < got; k++)
			same = buf[k] == expected[k];
		if (same)
			good++;
		else
			bad++;
	}
	g_puts("good=");
	g_putnum(good);
	g_puts(" bad=");
	g_putnum(bad);
	g_puts("\n");
	return bad ? 1 : 0;
}
