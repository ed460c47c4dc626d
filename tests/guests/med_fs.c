/* Runs the mediated file calls named on its command line, one line of output
 * per call ("<call>: ok ..." or "<call>: err <errno>"), so that tests can
 * drive the monitor with any sequence:
 *
 *   read PATH            open file:PATH read-only, print its content
 *   write PATH TEXT      open file:PATH O_WRONLY|O_CREAT|O_TRUNC 0644, write TEXT
 *   open URI FLAGS       open with these flags, print the fd's F_GETFD/F_GETFL
 *   exec PATH            open file:PATH with PICO_OPEN_EXEC
 *   stat PATH / lstat PATH / readlink PATH / access PATH MODE / mkdir PATH MODE
 *   unlink PATH / rmdir PATH / rename OLD NEW FLAGS / symlink TARGET PATH
 *   link OLD NEW / linkf OLD NEW (AT_SYMLINK_FOLLOW) / chmod PATH MODE
 *   chown PATH UID GID / utimens PATH SEC / truncate PATH LEN / statfs PATH
 *   list PATH            open dir:PATH and print the names in it
 *   note NR              note_unsupported(NR, 7)
 *   fds                  print how many fds are open among 0..63
 *   hoard URI            open URI until a call fails; print the count and errno
 */
#include "med_common.h"

static char buf[8192];

static long open_uri(const char *scheme, const char *path, int flags, unsigned int mode)
{
	static char uri[4300];
	unsigned long n = 0, i;
	for (i = 0; scheme[i]; i++)
		uri[n++] = scheme[i];
	for (i = 0; path[i] && n < sizeof(uri); i++)
		uri[n++] = path[i];
	return pico_open(uri, n, flags, mode);
}

static void print_bytes(const char *p, long n)
{
	sys3(NR_write, 1, p, n);
}

static int cmd_read(const char *path)
{
	long fd = open_uri("file:", path, O_RDONLY, 0);
	if (g_report("read", fd))
		return 1;
	long n = sys3(NR_read, fd, buf, sizeof(buf));
	sys1(NR_close, fd);
	if (n < 0) {
		g_puts(" read-failed ");
		g_putnum(-n);
		return 1;
	}
	g_puts(" ");
	print_bytes(buf, n);
	return 0;
}

static int cmd_write(const char *path, const char *text)
{
	long fd = open_uri("file:", path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (g_report("write", fd))
		return 1;
	long n = sys3(NR_write, fd, text, g_strlen(text));
	sys1(NR_close, fd);
	g_puts(" ");
	g_putnum(n);
	return n < 0;
}

static int cmd_open(const char *uri, long flags)
{
	long fd = pico_open(uri, g_strlen(uri), (int)flags, 0644);
	if (g_report("open", fd))
		return 1;
	g_puts(" fd=");
	g_putnum(fd);
	g_puts(" getfd=");
	g_putnum(sys2(NR_fcntl, fd, F_GETFD));
	g_puts(" getfl=");
	g_putoct((unsigned long)sys2(NR_fcntl, fd, F_GETFL));
	sys1(NR_close, fd);
	return 0;
}

static int cmd_stat(const char *path, int flags, const char *name)
{
	struct statx st;
	memset(&st, 0, sizeof(st));
	long r = pico_stat(path, g_strlen(path), flags, &st);
	if (g_report(name, r))
		return 1;
	g_puts(" size=");
	g_putnum((long)st.stx_size);
	g_puts(" mode=");
	g_putoct(st.stx_mode);
	g_puts(" uid=");
	g_putnum(st.stx_uid);
	g_puts(" ino=");
	g_putnum((long)st.stx_ino);
	return 0;
}

static int cmd_readlink(const char *path)
{
	long n = pico_readlink(path, g_strlen(path), buf, 4096);
	if (g_report("readlink", n))
		return 1;
	g_puts(" ");
	print_bytes(buf, n);
	return 0;
}

static int cmd_list(const char *path)
{
	long fd = open_uri("dir:", path, O_RDONLY, 0);
	if (g_report("list", fd))
		return 1;
	for (;;) {
		long n = sys3(NR_getdents64, fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			unsigned short reclen = *(unsigned short *)(buf + off + 16);
			const char *name = buf + off + 19;
			if (!g_streq(name, ".") && !g_streq(name, "..")) {
				g_puts(" ");
				g_puts(name);
			}
			off += reclen;
		}
	}
	sys1(NR_close, fd);
	return 0;
}

static int cmd_statfs(const char *path)
{
	struct statfs sfs;
	memset(&sfs, 0, sizeof(sfs));
	long r = pico_statfs(path, g_strlen(path), &sfs);
	if (g_report("statfs", r))
		return 1;
	g_puts(" type=0x");
	{
		char hex[20];
		int i = 19;
		unsigned long v = (unsigned long)sfs.f_type;
		hex[i--] = 0;
		do {
			hex[i--] = "0123456789abcdef"[v & 15];
			v >>= 4;
		} while (v);
		g_puts(&hex[i + 1]);
	}
	g_puts(" blocks=");
	g_putnum((long)sfs.f_blocks);
	g_puts(" bsize=");
	g_putnum(sfs.f_bsize);
	return 0;
}

static int cmd_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 64; fd++)
		if (sys2(NR_fcntl, fd, F_GETFD) >= 0)
			n++;
	g_puts("fds: ok ");
	g_putnum(n);
	return 0;
}

#define L(s) (s), g_strlen(s)

int guest_main(int argc, char **argv, char **envp)
{
	int failures = 0;
	int i = 1;
	while (i < argc) {
		const char *c = argv[i++];
		const char *a = i < argc ? argv[i] : "";
		const char *b = i + 1 < argc ? argv[i + 1] : "";
		const char *d = i + 2 < argc ? argv[i + 2] : "";
		if (g_streq(c, "read")) {
			failures += cmd_read(a);
			i += 1;
		} else if (g_streq(c, "write")) {
			failures += cmd_write(a, b);
			i += 2;
		} else if (g_streq(c, "open")) {
			failures += cmd_open(a, g_atol(b));
			i += 2;
		} else if (g_streq(c, "exec")) {
			long fd = open_uri("file:", a, O_RDONLY | PICO_OPEN_EXEC, 0);
			failures += g_report("exec", fd);
			if (fd >= 0)
				sys1(NR_close, fd);
			i += 1;
		} else if (g_streq(c, "stat")) {
			failures += cmd_stat(a, 0, "stat");
			i += 1;
		} else if (g_streq(c, "lstat")) {
			failures += cmd_stat(a, AT_SYMLINK_NOFOLLOW, "lstat");
			i += 1;
		} else if (g_streq(c, "readlink")) {
			failures += cmd_readlink(a);
			i += 1;
		} else if (g_streq(c, "access")) {
			failures += g_report("access", pico_access(L(a), (int)g_atol(b), 0));
			i += 2;
		} else if (g_streq(c, "mkdir")) {
			failures += g_report("mkdir", pico_mkdir(L(a), (unsigned int)g_atol(b)));
			i += 2;
		} else if (g_streq(c, "unlink")) {
			failures += g_report("unlink", pico_unlink(L(a), 0));
			i += 1;
		} else if (g_streq(c, "rmdir")) {
			failures += g_report("rmdir", pico_unlink(L(a), AT_REMOVEDIR));
			i += 1;
		} else if (g_streq(c, "rename")) {
			failures += g_report("rename", pico_rename(L(a), L(b), (unsigned int)g_atol(d)));
			i += 3;
		} else if (g_streq(c, "symlink")) {
			failures += g_report("symlink", pico_symlink(L(a), L(b)));
			i += 2;
		} else if (g_streq(c, "link")) {
			failures += g_report("link", pico_link(L(a), L(b), 0));
			i += 2;
		} else if (g_streq(c, "linkf")) {
			failures += g_report("linkf", pico_link(L(a), L(b), AT_SYMLINK_FOLLOW));
			i += 2;
		} else if (g_streq(c, "chmod")) {
			failures += g_report("chmod", pico_chmod(L(a), (unsigned int)g_atol(b), 0));
			i += 2;
		} else if (g_streq(c, "chown")) {
			failures += g_report("chown", pico_chown(L(a), (unsigned int)g_atol(b),
								(unsigned int)g_atol(d), 0));
			i += 3;
		} else if (g_streq(c, "utimens")) {
			struct timespec ts[2] = {{g_atol(b), 0}, {g_atol(b), 0}};
			failures += g_report("utimens", pico_utimens(L(a), ts, 0));
			i += 2;
		} else if (g_streq(c, "truncate")) {
			failures += g_report("truncate", pico_truncate(L(a), g_atol(b)));
			i += 2;
		} else if (g_streq(c, "statfs")) {
			failures += cmd_statfs(a);
			i += 1;
		} else if (g_streq(c, "list")) {
			failures += cmd_list(a);
			i += 1;
		} else if (g_streq(c, "note")) {
			failures += g_report("note", pico_note_unsupported(g_atol(a), 7));
			i += 1;
		} else if (g_streq(c, "fds")) {
			failures += cmd_fds();
		} else if (g_streq(c, "hoard")) {
			long count = 0, fd;
			while ((fd = pico_open(a, g_strlen(a), O_RDONLY, 0)) >= 0 && count < 100000)
				count++;
			g_puts("hoard: ");
			g_putnum(count);
			g_puts(" then err ");
			g_putnum(-fd);
			i += 1;
		} else {
			g_puts("unknown command ");
			g_puts(c);
			g_puts("\n");
			return 2;
		}
		g_puts("\n");
	}
	return failures ? 1 : 0;
}
