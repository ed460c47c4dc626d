/* Hostile arguments for every kind of mediated argument; one line per case,
 * "<case>: ok" or "<case>: err <errno>".  The last case is an ordinary read
 * that must still work: the monitor kept serving.
 *
 *   med_hostile GOOD_FILE_PATH SYMLINK_PATH WRITABLE_DIR */
#include "med_common.h"

#define NR_mprotect 10
#define PROT_RW 3
#define MAP_PRIVATE_ANON 0x22
#define PAGE 4096

static char big[PICO_MAX_URI + 64];
static char buf[8192];

static long open_raw(long uri, long len, long flags)
{
	return sys6(PICO_NR_OPEN, uri, len, flags, 0, 0, 0);
}

static unsigned long cat(char *dst, const char *a, const char *b)
{
	unsigned long n = 0;
	for (; *a; a++)
		dst[n++] = *a;
	for (; *b; b++)
		dst[n++] = *b;
	dst[n] = 0;
	return n;
}

int guest_main(int argc, char **argv, char **envp)
{
	if (argc < 4)
		return 2;
	const char *good = argv[1];
	const char *link = argv[2];
	const char *wdir = argv[3];
	static char uri[4200], path2[4200];
	unsigned long ulen = cat(uri, "file:", good);
	long r;

	/* A mapping whose second page is gone: data ending at the page end is
	 * readable, one byte more is not. */
	char *pages = (char *)sys6(NR_mmap, 0, 2 * PAGE, PROT_RW, MAP_PRIVATE_ANON, -1, 0);
	sys2(NR_munmap, pages + PAGE, PAGE);
	char *at_end = pages + PAGE - ulen;
	memcpy(at_end, uri, ulen);

	g_report("null_uri", open_raw(0, 10, O_RDONLY));
	g_puts("\n");
	g_report("unmapped_uri", open_raw(0x1000, 10, O_RDONLY));
	g_puts("\n");
	g_report("kernel_uri", open_raw((long)0xffffffff81000000UL, 10, O_RDONLY));
	g_puts("\n");
	r = open_raw((long)at_end, (long)ulen, O_RDONLY);
	g_report("at_page_end", r);
	g_puts("\n");
	if (r >= 0)
		sys1(NR_close, r);
	g_report("past_page_end", open_raw((long)at_end, (long)ulen + 1, O_RDONLY));
	g_puts("\n");
	g_report("len_zero", open_raw((long)uri, 0, O_RDONLY));
	g_puts("\n");
	memset(big, 'a', sizeof(big));
	memcpy(big, "file:/", 6);
	g_report("len_over_max", open_raw((long)big, PICO_MAX_URI + 1, O_RDONLY));
	g_puts("\n");
	g_report("len_huge", open_raw((long)uri, 1L << 62, O_RDONLY));
	g_puts("\n");
	g_report("len_negative", open_raw((long)uri, -1, O_RDONLY));
	g_puts("\n");
	/* Max length exactly: read in full, then the path is too long for a
	 * component (NAME_MAX). */
	g_report("len_max_component", open_raw((long)big, PICO_MAX_URI, O_RDONLY));
	g_puts("\n");
	memcpy(buf, uri, ulen);
	buf[ulen] = 0;
	buf[ulen + 1] = 'x';
	g_report("embedded_nul", open_raw((long)buf, (long)ulen + 2, O_RDONLY));
	g_puts("\n");
	g_report("flags_unknown", open_raw((long)uri, (long)ulen, 0x80000000L));
	g_puts("\n");
	g_report("flags_upper_half", open_raw((long)uri, (long)ulen, 1L << 40));
	g_puts("\n");
	g_report("scheme_unknown", open_raw((long)"http://x", 8, O_RDONLY));
	g_puts("\n");
	g_report("scheme_missing", open_raw((long)"/etc/passwd", 11, O_RDONLY));
	g_puts("\n");
	g_report("path_relative", open_raw((long)"file:etc/passwd", 15, O_RDONLY));
	g_puts("\n");
	g_report("path_empty", open_raw((long)"file:", 5, O_RDONLY));
	g_puts("\n");
	g_report("dir_for_writing", open_raw((long)"dir:/", 5, O_WRONLY));
	g_puts("\n");
	g_report("trunc_readonly", open_raw((long)uri, (long)ulen, O_RDONLY | O_TRUNC));
	g_puts("\n");

	struct statx stx;
	g_report("stat_null_buf", pico_stat(good, g_strlen(good), 0, 0));
	g_puts("\n");
	g_report("stat_unmapped_buf", pico_stat(good, g_strlen(good), 0, (struct statx *)(pages + PAGE)));
	g_puts("\n");
	g_report("stat_buf_straddles", pico_stat(good, g_strlen(good), 0,
						 (struct statx *)(pages + PAGE - 8)));
	g_puts("\n");
	g_report("stat_flags_unknown", pico_stat(good, g_strlen(good), 0x1234, &stx));
	g_puts("\n");
	g_report("stat_len_huge", pico_stat(good, ~0UL, 0, &stx));
	g_puts("\n");
	g_report("readlink_len_zero", pico_readlink(link, g_strlen(link), buf, 0));
	g_puts("\n");
	g_report("readlink_len_huge", pico_readlink(link, g_strlen(link), buf, 1UL << 40));
	g_puts("\n");
	g_report("readlink_unmapped_buf", pico_readlink(link, g_strlen(link), pages + PAGE, 100));
	g_puts("\n");
	g_report("readlink_not_link", pico_readlink(good, g_strlen(good), buf, 100));
	g_puts("\n");
	g_report("access_mode_unknown", pico_access(good, g_strlen(good), 8, 0));
	g_puts("\n");
	g_report("access_flags_unknown", pico_access(good, g_strlen(good), 4, 0x1));
	g_puts("\n");
	g_report("mkdir_mode_unknown", pico_mkdir(wdir, g_strlen(wdir), 0170000));
	g_puts("\n");
	g_report("unlink_flags_unknown", pico_unlink(good, g_strlen(good), 0x4000));
	g_puts("\n");
	g_report("rename_flags_unknown", pico_rename(good, g_strlen(good), good, g_strlen(good), 0xff));
	g_puts("\n");
	g_report("rename_unmapped_new", pico_rename(good, g_strlen(good), pages + PAGE, 5, 0));
	g_puts("\n");
	g_report("symlink_target_empty", pico_symlink("", 0, good, g_strlen(good)));
	g_puts("\n");
	g_report("link_flags_unknown", pico_link(good, g_strlen(good), good, g_strlen(good), 0x1));
	g_puts("\n");
	g_report("chmod_mode_unknown", pico_chmod(good, g_strlen(good), 0177777, 0));
	g_puts("\n");
	g_report("utimens_unmapped_times", pico_utimens(good, g_strlen(good),
							(struct timespec *)(pages + PAGE), 0));
	g_puts("\n");
	struct timespec bad_ts[2] = {{0, 2000000000L}, {0, 0}};
	g_report("utimens_bad_nsec", pico_utimens(good, g_strlen(good), bad_ts, 0));
	g_puts("\n");
	g_report("truncate_negative", pico_truncate(good, g_strlen(good), -1));
	g_puts("\n");
	g_report("statfs_null_buf", pico_statfs(good, g_strlen(good), 0));
	g_puts("\n");
	/* A name that is not UTF-8: allowed (Linux names are bytes), and
	 * found again by the same bytes. */
	unsigned long n2 = cat(path2, wdir, "/\xff\xfe-not-utf8");
	unsigned long u2 = cat(uri, "file:", path2);
	r = sys6(PICO_NR_OPEN, (long)uri, (long)u2, O_WRONLY | O_CREAT, 0644, 0, 0);
	g_report("non_utf8_create", r);
	g_puts("\n");
	if (r >= 0)
		sys1(NR_close, r);
	struct statx st2;
	g_report("non_utf8_stat", pico_stat(path2, n2, 0, &st2));
	g_puts("\n");

	/* Still serving. */
	ulen = cat(uri, "file:", good);
	r = open_raw((long)uri, (long)ulen, O_RDONLY);
	g_report("still_serving", r);
	g_puts("\n");
	return 0;
}
