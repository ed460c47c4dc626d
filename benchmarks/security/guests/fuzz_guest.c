/* The mediated-interface fuzzer's guest: makes random and structure-aware
 * mediated calls and reports each one, with what it got back, to the
 * driver (benchmarks/security/fuzz.py), which judges it against a policy
 * model built from the manifest.
 *
 *   pp-fuzz SEED CALLS CONTROL_SOCKET TRAP_PORT TRAP_UNIX RACE_A RACE_B FILE_CALLS WORD...
 *
 * Freestanding (no libc): every host call it makes is either an ABI direct
 * call or a mediated call, so it runs unchanged in raw mode and under the
 * library OS (where the loader's text at PICO_LOADER_TEXT_START is mapped
 * and serves as "loader memory" for hostile pointers).
 *
 * The guest connects to CONTROL_SOCKET with a mediated `unix:` open (the
 * manifest grants exactly that socket), then for each call: builds the
 * arguments, makes the call, looks at what came back (fstat and F_GETFL of
 * a returned fd, then closes it; the identity statx wrote; whether memory
 * it must not have written changed), writes one record and waits for the
 * driver's one-byte go-ahead, so the driver judges every call against the
 * host tree exactly as that call left it.
 *
 * FILE_CALLS is the comma-separated list of mediated call numbers the
 * "file calls" are drawn from: the calls the driver's model judges
 * (fuzz.py, MODELLED).  The guest builds arguments shaped for each of them
 * and refuses a number it has no arguments for, so a call the ABI adds is
 * never fuzzed with another call's arguments.
 *
 * Paths are built from WORDs (the names the driver planted: the first six
 * are mount points, then files, hidden names, symbolic links) plus `..`, `.`, empty, long and
 * non-UTF-8 components.  A second thread keeps flipping a buffer between
 * RACE_A and RACE_B (same length: one granted, one refused); "race" calls
 * open or stat that buffer, and are judged by the identity of what they
 * got, since the bytes the monitor read are unknowable. */

#include "picoproc_abi.h"

#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_fstat 5
#define NR_mmap 9
#define NR_mprotect 10
#define NR_munmap 11
#define NR_clone 56
#define NR_exit 60
#define NR_fcntl 72
#define NR_futex 202
#define NR_exit_group 231

#define O_RDONLY 0
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_EXCL 0200
#define O_TRUNC 01000
#define O_APPEND 02000
#define O_NONBLOCK 04000
#define O_DIRECTORY 0200000
#define O_NOFOLLOW 0400000
#define O_CLOEXEC 02000000
#define O_PATH 010000000
#define S_IFIFO 0010000
#define S_IFCHR 0020000
#define S_IFDIR 0040000
#define S_IFBLK 0060000
#define S_IFREG 0100000
#define S_IFLNK 0120000
#define S_IFSOCK 0140000
#define F_GETFL 3
#define PAGE 4096UL
#define EFAULT 14
#define EAGAIN 11

/* One record per call, little-endian, then path1 and path2 bytes.  The
 * driver (fuzz.py, RECORD) decodes the same layout. */
#define REC_MAGIC 0x7a7a7570u
enum rec_kind {
	KIND_PLAIN = 0,	  /* arguments as recorded; path bytes exact */
	KIND_RACE = 1,	  /* path1/path2 are the two values being flipped */
	KIND_BADPTR = 2,  /* an input pointer the guest cannot read (path unknown) */
	KIND_RAWNR = 3,	  /* a number outside the mediated range */
};
enum out_kind {
	OUT_NONE = 0,
	OUT_GOOD = 1,
	OUT_NULL = 2,
	OUT_UNMAPPED = 3,
	OUT_RODATA = 4,
	OUT_LOADER = 5,
	OUT_STRADDLE = 6,
};

struct record {
	unsigned int magic;
	unsigned short nr;
	unsigned char kind;
	unsigned char out_kind;
	long result;
	long args[6];
	unsigned int p1_len;
	unsigned int p2_len;
	unsigned long obj_dev; /* fstat of a returned fd, or statx's identity */
	unsigned long obj_ino;
	unsigned int obj_mode;
	int fd_flags;	       /* F_GETFL of a returned fd */
	unsigned int changed;  /* 1: memory the call must not write was changed */
	unsigned int has_obj;
	unsigned int out_room; /* writable bytes at the output pointer */
	unsigned int pad;
};

/* struct stat (x86-64) and struct statx: the fields used. */
struct kstat {
	unsigned long st_dev, st_ino, st_nlink;
	unsigned int st_mode, st_uid, st_gid, pad0;
	unsigned long st_rdev;
	long st_size, st_blksize, st_blocks;
	unsigned long times[6];
	long reserved[3];
};
struct statx_buf {
	unsigned int stx_mask, stx_blksize;
	unsigned long stx_attributes;
	unsigned int stx_nlink, stx_uid, stx_gid;
	unsigned short stx_mode, pad0;
	unsigned long stx_ino, stx_size, stx_blocks, stx_attributes_mask;
	unsigned long times[8];
	unsigned int stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
	unsigned long rest[14];
};

static long sys(long nr, long a, long b, long c, long d, long e, long f)
{
	return pico_syscall6(nr, a, b, c, d, e, f);
}

void *memset(void *d, int c, unsigned long n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}
void *memcpy(void *d, const void *s, unsigned long n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static unsigned long slen(const char *s)
{
	unsigned long n = 0;
	while (s[n])
		n++;
	return n;
}

static void die(const char *msg, long code)
{
	sys(NR_write, 2, (long)msg, (long)slen(msg), 0, 0, 0);
	for (;;)
		sys(NR_exit_group, code, 0, 0, 0, 0, 0);
}

static unsigned long parse_num(const char *s)
{
	unsigned long v = 0;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (unsigned long)(*s - '0');
	return v;
}

/* xorshift64*: reproducible from the seed the driver reports. */
static unsigned long rng_state;
static unsigned long rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DUL;
}
static unsigned long below(unsigned long n)
{
	return n ? rnd() % n : 0;
}
static int chance(unsigned percent)
{
	return below(100) < percent;
}

/* Memory the fuzzer points into. */
static char *page_pair;	   /* page 0 mapped read-write, page 1 unmapped */
static char *ro_page;	   /* read-only, filled with a known pattern */
static unsigned long ro_sum;
static const char rodata_path[] = "file:/ro/pub.txt";
static const char *loader_text = (const char *)PICO_LOADER_TEXT_START;
static int loader_mapped;

static unsigned long checksum(const char *p, unsigned long n)
{
	unsigned long h = 1469598103934665603UL;
	for (unsigned long i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211UL;
	return h;
}

/* Is the byte at p readable?  futex(FUTEX_WAIT_PRIVATE) with a value the
 * word does not hold reads the word and answers EAGAIN, or EFAULT. */
static int readable(const void *p)
{
	unsigned long a = (unsigned long)p & ~3UL;
	long r = sys(NR_futex, (long)a, 128 /* FUTEX_WAIT_PRIVATE */, 0x7fffffff, 0, 0, 0);
	return r != -EFAULT;
}

/* --------------------------------------------------------------------- */
/* Paths                                                                  */

static char **words;
static unsigned long nwords;

static unsigned long put(char *dst, unsigned long at, unsigned long cap, const char *src,
			 unsigned long n)
{
	for (unsigned long i = 0; i < n && at < cap; i++)
		dst[at++] = src[i];
	return at;
}

/* A component: a planted name most of the time, else something hostile. */
static unsigned long component(char *dst, unsigned long at, unsigned long cap)
{
	unsigned long k = below(100);
	if (k < 62) {
		const char *w = words[below(nwords)];
		return put(dst, at, cap, w, slen(w));
	}
	if (k < 74)
		return put(dst, at, cap, "..", 2);
	if (k < 78)
		return put(dst, at, cap, ".", 1);
	if (k < 81)
		return at; /* empty: "//" */
	if (k < 85) { /* non-UTF-8 */
		static const char bad[][4] = {"\xff", "\xfe\xfd", "\xc0\xaf", "\xed\xa0\x80"};
		unsigned long i = below(4);
		at = put(dst, at, cap, "n", 1);
		return put(dst, at, cap, bad[i], slen(bad[i]));
	}
	if (k < 89) { /* long: NAME_MAX - 1 .. NAME_MAX + 1 */
		unsigned long n = 254 + below(3);
		for (unsigned long i = 0; i < n && at < cap; i++)
			dst[at++] = (char)('a' + (i % 26));
		return at;
	}
	if (k < 92)
		return put(dst, at, cap, "\0x", 2); /* an embedded NUL */
	if (k < 96) { /* a fresh name */
		char name[8] = "f";
		unsigned long n = 1 + below(3);
		for (unsigned long i = 0; i < n; i++)
			name[1 + i] = (char)('a' + below(4));
		return put(dst, at, cap, name, 1 + n);
	}
	/* random bytes, no '/' */
	unsigned long n = 1 + below(6);
	for (unsigned long i = 0; i < n && at < cap; i++) {
		char c = (char)(1 + below(255));
		dst[at++] = c == '/' ? 'q' : c;
	}
	return at;
}

/* A path of 1..7 components, sometimes relative or with a trailing '/';
 * it starts at a mount point (the first NMOUNT_WORDS words) most times. */
#define NMOUNT_WORDS 6
static unsigned long make_path(char *dst, unsigned long cap)
{
	unsigned long at = 0, n = 1 + below(chance(20) ? 7 : 3);
	if (!chance(3))
		dst[at++] = '/';
	for (unsigned long i = 0; i < n; i++) {
		if (i)
			at = put(dst, at, cap, "/", 1);
		if (i == 0 && nwords > NMOUNT_WORDS && chance(75)) {
			const char *w = words[below(NMOUNT_WORDS)];
			at = put(dst, at, cap, w, slen(w));
			n += chance(80);
			continue;
		}
		at = component(dst, at, cap);
	}
	if (chance(5))
		at = put(dst, at, cap, "/", 1);
	return at;
}

/* --------------------------------------------------------------------- */
/* The race: a thread flipping race_buf between two values, byte by byte.  */

static char race_buf[512];
static const char *race_vals[2];
static unsigned long race_len;
static char race_stack[65536] __attribute__((aligned(16)));

static void __attribute__((noreturn, used)) flipper(void)
{
	for (unsigned long k = 0;; k++) {
		const char *src = race_vals[k & 1];
		for (unsigned long i = 0; i < race_len; i++)
			((volatile char *)race_buf)[i] = src[i];
	}
}

static long start_flipper(void)
{
	long ret;
	register long r10 __asm__("r10") = 0;
	register long r8 __asm__("r8") = 0;
	/* CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM */
	__asm__ volatile("syscall\n"
			 "test %%rax, %%rax\n"
			 "jnz 1f\n"
			 "xor %%ebp, %%ebp\n"
			 "call *%%rbx\n"
			 "1:\n"
			 : "=a"(ret)
			 : "a"(NR_clone), "D"(0x50f00L), "S"(race_stack + sizeof(race_stack)),
			   "d"(0), "r"(r10), "r"(r8), "b"(flipper)
			 : "rcx", "r11", "memory");
	return ret;
}

/* --------------------------------------------------------------------- */
/* One call                                                                */

static char p1[PICO_MAX_URI + 512], p2[PICO_MAX_URI + 512];
static char outbuf[8192];
static struct record rec;
static int ctl = -1;
static unsigned long trap_port;
static const char *trap_unix;

static void send_record(void)
{
	static char msg[sizeof(struct record) + 2 * sizeof(p1)];
	unsigned long n = 0;
	memcpy(msg, &rec, sizeof(rec));
	n = sizeof(rec);
	memcpy(msg + n, p1, rec.p1_len);
	n += rec.p1_len;
	memcpy(msg + n, p2, rec.p2_len);
	n += rec.p2_len;
	for (unsigned long off = 0; off < n;) {
		long w = sys(NR_write, ctl, (long)(msg + off), (long)(n - off), 0, 0, 0);
		if (w <= 0)
			die("pp-fuzz: the driver went away\n", 3);
		off += (unsigned long)w;
	}
	char go;
	if (sys(NR_read, ctl, (long)&go, 1, 0, 0, 0) != 1 || go != 'g')
		die("pp-fuzz: no go-ahead from the driver\n", 3);
}

/* Looks at a returned fd (fstat, F_GETFL), then closes it. */
static void take_fd(long fd)
{
	struct kstat st;
	if (sys(NR_fstat, fd, (long)&st, 0, 0, 0, 0) == 0) {
		rec.has_obj = 1;
		rec.obj_dev = st.st_dev;
		rec.obj_ino = st.st_ino;
		rec.obj_mode = st.st_mode;
	}
	rec.fd_flags = (int)sys(NR_fcntl, fd, F_GETFL, 0, 0, 0, 0);
	sys(NR_close, fd, 0, 0, 0, 0, 0);
}

/* An output buffer of a random kind (record.out_kind). */
static char *out_pointer(unsigned long need)
{
	unsigned long k = below(100);
	if (k < 80) {
		rec.out_kind = OUT_GOOD;
		return outbuf;
	}
	if (k < 84) {
		rec.out_kind = OUT_NULL;
		return 0;
	}
	if (k < 88) {
		rec.out_kind = OUT_UNMAPPED;
		return page_pair + PAGE;
	}
	if (k < 93) {
		rec.out_kind = OUT_RODATA;
		return ro_page + below(PAGE - need);
	}
	if (k < 96 && loader_mapped) {
		rec.out_kind = OUT_LOADER;
		return (char *)loader_text + below(PAGE);
	}
	rec.out_kind = OUT_STRADDLE;
	rec.out_room = 1 + (unsigned int)below(need - 1);
	return page_pair + PAGE - rec.out_room;
}

/* A path argument: where it points and the length passed.  The bytes the
 * guest meant are left in dst[0..*meant) for the record. */
static void path_arg(char *dst, long *ptr, long *len, unsigned long *meant, int uri)
{
	unsigned long n;
	if (uri) {
		static const char *schemes[] = {"file:", "dir:", "file:", "file:", "file:", "dir:"};
		const char *s = schemes[below(6)];
		unsigned long sl = slen(s);
		memcpy(dst, s, sl);
		n = sl + make_path(dst + sl, PICO_MAX_URI + 256 - sl);
	} else {
		n = make_path(dst, PICO_MAX_PATH + 256);
	}
	*meant = n;
	*ptr = (long)dst;
	*len = (long)n;
	unsigned long k = below(100);
	if (k < 88)
		return;
	if (k < 90) {
		*len = 0;
	} else if (k < 92) {
		*len = (long)(rnd() | (1UL << 63)); /* negative */
	} else if (k < 94) {
		*len = uri ? PICO_MAX_URI + 1 : PICO_MAX_PATH + 1;
	} else if (k < 96 && n < PAGE) {
		/* At the end of the mapped page: exact length reads, one more faults. */
		char *at = page_pair + PAGE - n;
		memcpy(at, dst, n);
		*ptr = (long)at;
		*len = (long)(n + below(2));
	} else if (k < 98) {
		/* A longer length over the same buffer: the monitor reads more
		 * than the guest meant, and the record carries that much. */
		unsigned long more = below(64);
		for (unsigned long i = n; i < n + more; i++)
			dst[i] = (char)('a' + below(3));
		*len = (long)(n + more);
		*meant = n + more;
	} else {
		*len = (long)below(n + 1);
		*meant = (unsigned long)*len;
	}
}

/* Hostile input pointers: the record says what the bytes were, when they
 * could be read. */
static void bad_input(long *ptr, long *len, char *dst, unsigned long *meant)
{
	unsigned long k = below(6);
	*meant = 0;
	rec.kind = KIND_BADPTR;
	switch (k) {
	case 0:
		*ptr = 0;
		*len = 1 + (long)below(64);
		return;
	case 1:
		*ptr = (long)(page_pair + PAGE);
		*len = 1 + (long)below(64);
		return;
	case 2:
		*ptr = (long)0xffffffff81000000UL;
		*len = 16;
		return;
	case 3: /* read-only data holding a real URI: readable, so judged as a path */
		*ptr = (long)rodata_path;
		*len = (long)slen(rodata_path);
		memcpy(dst, rodata_path, (unsigned long)*len);
		*meant = (unsigned long)*len;
		rec.kind = KIND_PLAIN;
		return;
	default:
		if (!loader_mapped) {
			*ptr = (long)loader_text;
			*len = 32;
			return;
		}
		*ptr = (long)(loader_text + below(PAGE - 64));
		*len = 1 + (long)below(64);
		memcpy(dst, (const char *)*ptr, (unsigned long)*len);
		*meant = (unsigned long)*len;
		rec.kind = KIND_PLAIN;
		return;
	}
}

static const char *net_uris[] = {"tcp:127.0.0.1:", "udp:127.0.0.1:", "tcp.srv:127.0.0.1:",
				 "tcp:[::1]:", "unix:", "unix:", "tcp:127.0.0.2:", "udp:[::1]:"};

static void net_call(long a[6], unsigned long *n1)
{
	const char *s = net_uris[below(8)];
	unsigned long n = slen(s);
	memcpy(p1, s, n);
	if (s[0] == 'u' && s[1] == 'n') {
		unsigned long t = slen(trap_unix);
		memcpy(p1 + n, trap_unix, t);
		n += t;
		if (chance(30))
			n = put(p1, n, sizeof(p1), "/../x.sock", 10);
	} else {
		char num[12];
		unsigned long port = chance(70) ? trap_port : below(65536), i = 11;
		num[i] = 0;
		do {
			num[--i] = (char)('0' + port % 10);
			port /= 10;
		} while (port);
		n = put(p1, n, sizeof(p1), num + i, 11 - i);
	}
	*n1 = n;
	a[0] = (long)p1;
	a[1] = (long)n;
	a[2] = chance(80) ? O_RDWR : (long)rnd();
	a[3] = 0;
}

static long flags_arg(void)
{
	static const long common[] = {O_RDONLY,
				      O_WRONLY | O_CREAT | O_TRUNC,
				      O_RDWR,
				      O_RDONLY | O_DIRECTORY,
				      O_WRONLY | O_APPEND,
				      O_RDWR | O_CREAT | O_EXCL,
				      O_PATH,
				      O_RDONLY | O_NOFOLLOW,
				      O_RDONLY | PICO_OPEN_EXEC,
				      O_RDONLY | O_TRUNC,
				      O_WRONLY | O_CREAT | O_NOFOLLOW,
				      O_PATH | O_NOFOLLOW};
	long f = common[below(sizeof(common) / sizeof(common[0]))];
	if (chance(30))
		f |= O_CLOEXEC;
	if (chance(8))
		f |= O_NONBLOCK;
	if (chance(4))
		f |= 1L << below(64); /* any bit, known or not, low or high */
	return f;
}

static long mode_arg(void)
{
	static const long modes[] = {0644, 0755, 0777, 04755, 02755, 01777, 0, 0600};
	return chance(90) ? modes[below(8)] : (long)rnd();
}

static long small_flag(const long *choices, unsigned long n)
{
	return chance(90) ? choices[below(n)] : (long)(1L << below(64));
}

/* mknod's mode: the types an unprivileged user may make, and the others. */
static long mknod_mode(void)
{
	static const long types[] = {S_IFIFO, S_IFREG, S_IFSOCK, S_IFIFO, S_IFREG, S_IFSOCK,
				     S_IFCHR, S_IFBLK, S_IFDIR, S_IFLNK, 0};
	long m = types[below(sizeof(types) / sizeof(types[0]))];
	return chance(95) ? m | (mode_arg() & 07777) : (long)rnd();
}

/* The calls the file calls are drawn from (FILE_CALLS). */
static long file_calls[PICO_MEDIATED_COUNT];
static unsigned long nfile_calls;

static void one_call(void)
{
	long a[6] = {0, 0, 0, 0, 0, 0};
	unsigned long n1 = 0, n2 = 0;
	long nr;
	memset(&rec, 0, sizeof(rec));
	rec.magic = REC_MAGIC;
	rec.fd_flags = -1;

	unsigned long k = below(1000);
	char *out = 0;
	unsigned long out_need = 0;
	unsigned long before = 0;

	if (k < 60) { /* a number outside the mediated range, or garbage args */
		static const long nrs[] = {PICO_MEDIATED_BASE + PICO_MEDIATED_COUNT,
					   PICO_MEDIATED_BASE + PICO_MEDIATED_COUNT + 1,
					   PICO_MEDIATED_BASE + 255, PICO_MEDIATED_BASE - 1,
					   PICO_NR_NOTE_UNSUPPORTED};
		nr = nrs[below(5)];
		for (int i = 0; i < 6; i++)
			a[i] = (long)rnd();
		if (nr == PICO_NR_NOTE_UNSUPPORTED)
			a[0] = (long)below(600);
		rec.kind = KIND_RAWNR;
	} else if (k < 120) { /* network URIs */
		nr = PICO_NR_OPEN;
		net_call(a, &n1);
	} else if (k < 220) { /* the race */
		nr = chance(60) ? PICO_NR_OPEN : PICO_NR_STAT;
		rec.kind = KIND_RACE;
		memcpy(p1, race_vals[0], race_len);
		memcpy(p2, race_vals[1], race_len);
		n1 = n2 = race_len;
		if (nr == PICO_NR_OPEN) {
			a[0] = (long)race_buf;
			a[1] = (long)race_len;
			a[2] = O_RDONLY;
		} else {
			/* stat takes a path: skip "file:" */
			a[0] = (long)(race_buf + 5);
			a[1] = (long)race_len - 5;
			a[2] = 0;
			a[3] = (long)outbuf;
			rec.out_kind = OUT_GOOD;
		}
	} else { /* file calls */
		nr = file_calls[below(nfile_calls)];
		int uri = nr == PICO_NR_OPEN;
		if (chance(4))
			bad_input(&a[0], &a[1], p1, &n1);
		else
			path_arg(p1, &a[0], &a[1], &n1, uri);
		static const long nofollow[] = {0, 0x100};
		static const long access_modes[] = {0, 4, 2, 1, 6, 7};
		static const long rm[] = {0, 0x200};
		static const long ren[] = {0, 0, 1, 2};
		static const long lnk[] = {0, 0x400};
		switch (nr) {
		case PICO_NR_OPEN:
			a[2] = flags_arg();
			a[3] = mode_arg();
			break;
		case PICO_NR_STAT:
			a[2] = small_flag(nofollow, 2);
			out_need = sizeof(struct statx_buf);
			break;
		case PICO_NR_READLINK:
			out_need = 64;
			a[3] = chance(90) ? 64 : (long)rnd();
			break;
		case PICO_NR_ACCESS:
			a[2] = small_flag(access_modes, 6);
			a[3] = small_flag(nofollow, 2);
			break;
		case PICO_NR_MKDIR:
			a[2] = mode_arg();
			break;
		case PICO_NR_UNLINK:
			a[2] = small_flag(rm, 2);
			break;
		case PICO_NR_RENAME:
		case PICO_NR_LINK:
		case PICO_NR_SYMLINK:
			if (chance(4)) {
				bad_input(&a[2], &a[3], p2, &n2);
				if (rec.kind == KIND_BADPTR)
					n1 = 0;
			} else {
				path_arg(p2, &a[2], &a[3], &n2, 0);
			}
			if (nr == PICO_NR_RENAME)
				a[4] = small_flag(ren, 4);
			else if (nr == PICO_NR_LINK)
				a[4] = small_flag(lnk, 2);
			break;
		case PICO_NR_CHMOD:
			a[2] = mode_arg();
			a[3] = small_flag(nofollow, 2);
			break;
		case PICO_NR_CHOWN:
			a[2] = chance(50) ? -1 : (long)below(70000);
			a[3] = chance(50) ? -1 : (long)below(70000);
			a[4] = small_flag(nofollow, 2);
			break;
		case PICO_NR_UTIMENS: {
			static long ts[4];
			ts[0] = (long)below(1u << 31);
			ts[1] = chance(90) ? (long)below(1000000000) : (long)rnd();
			ts[2] = (long)below(1u << 31);
			ts[3] = chance(10) ? (1L << 30) - 2 /* UTIME_OMIT */ : (long)below(1000000000);
			a[2] = chance(20) ? 0 : (long)ts;
			a[3] = small_flag(nofollow, 2);
			break;
		}
		case PICO_NR_TRUNCATE:
			a[2] = chance(90) ? (long)below(1 << 20) : (long)rnd();
			break;
		case PICO_NR_STATFS:
			out_need = 120;
			break;
		case PICO_NR_MKNOD:
			a[2] = mknod_mode();
			break;
		case PICO_NR_NOTE_UNSUPPORTED:
			break; /* path-shaped garbage: nothing it is given may succeed */
		default:
			die("pp-fuzz: FILE_CALLS names a call the guest has no arguments for\n", 2);
		}
	}
	if (out_need) {
		out = out_pointer(out_need);
		if (nr == PICO_NR_READLINK) {
			a[2] = (long)out;
		} else {
			a[3] = (long)out;
			if (nr == PICO_NR_STATFS)
				a[2] = (long)out;
		}
	}
	if (nr == PICO_NR_STATFS)
		a[3] = 0;
	if (rec.out_kind == OUT_RODATA)
		before = checksum(ro_page, PAGE);
	else if (rec.out_kind == OUT_LOADER)
		before = checksum(loader_text, 2 * PAGE);

	long r = sys(nr, a[0], a[1], a[2], a[3], a[4], a[5]);

	rec.nr = (unsigned short)nr;
	rec.result = r;
	for (int i = 0; i < 6; i++)
		rec.args[i] = a[i];
	rec.p1_len = (unsigned int)n1;
	rec.p2_len = (unsigned int)n2;
	if (rec.out_kind == OUT_RODATA)
		rec.changed = checksum(ro_page, PAGE) != before || checksum(ro_page, PAGE) != ro_sum;
	else if (rec.out_kind == OUT_LOADER)
		rec.changed = checksum(loader_text, 2 * PAGE) != before;
	if (nr == PICO_NR_OPEN && r >= 0)
		take_fd(r);
	if (nr == PICO_NR_STAT && r == 0 && rec.out_kind == OUT_GOOD) {
		struct statx_buf *sx = (struct statx_buf *)outbuf;
		rec.has_obj = 1;
		/* glibc's makedev, which is how st_dev encodes them */
		unsigned long ma = sx->stx_dev_major, mi = sx->stx_dev_minor;
		rec.obj_dev = ((ma & 0xfffff000UL) << 32) | ((ma & 0xfffUL) << 8) |
			      ((mi & 0xffffff00UL) << 12) | (mi & 0xffUL);
		rec.obj_ino = sx->stx_ino;
		rec.obj_mode = sx->stx_mode;
	}
	if (nr == PICO_NR_READLINK && r > 0 && rec.out_kind == OUT_GOOD && n2 == 0) {
		/* What the link said, for the driver to compare with the host. */
		unsigned long got = (unsigned long)r < 512 ? (unsigned long)r : 512;
		memcpy(p2, outbuf, got);
		rec.p2_len = (unsigned int)got;
	}
	send_record();
}

int guest_main(int argc, char **argv)
{
	if (argc < 10)
		die("usage: pp-fuzz SEED CALLS CONTROL_SOCKET TRAP_PORT TRAP_UNIX RACE_A RACE_B FILE_CALLS "
		    "WORD...\n", 2);
	rng_state = parse_num(argv[1]) * 2654435761UL + 0x9E3779B97F4A7C15UL;
	unsigned long calls = parse_num(argv[2]);
	trap_port = parse_num(argv[4]);
	trap_unix = argv[5];
	race_vals[0] = argv[6];
	race_vals[1] = argv[7];
	race_len = slen(argv[6]);
	if (race_len != slen(argv[7]) || race_len >= sizeof(race_buf) || race_len < 6)
		die("pp-fuzz: RACE_A and RACE_B must be file: URIs of one length\n", 2);
	memcpy(race_buf, race_vals[0], race_len);
	for (const char *s = argv[8]; *s; s++) {
		long nr = (long)parse_num(s);
		if (nr < PICO_MEDIATED_BASE || nr >= PICO_MEDIATED_BASE + PICO_MEDIATED_COUNT ||
		    nfile_calls == PICO_MEDIATED_COUNT)
			die("pp-fuzz: FILE_CALLS must list mediated call numbers\n", 2);
		file_calls[nfile_calls++] = nr;
		while (*s >= '0' && *s <= '9')
			s++;
		if (!*s)
			break;
		if (*s != ',')
			die("pp-fuzz: FILE_CALLS must list mediated call numbers\n", 2);
	}
	if (!nfile_calls)
		die("pp-fuzz: FILE_CALLS is empty\n", 2);
	words = argv + 9;
	nwords = (unsigned long)(argc - 9);

	page_pair = (char *)sys(NR_mmap, 0, 2 * PAGE, 3, 0x22, -1, 0);
	ro_page = (char *)sys(NR_mmap, 0, PAGE, 3, 0x22, -1, 0);
	if ((long)page_pair < 0 || (long)ro_page < 0)
		die("pp-fuzz: mmap failed\n", 4);
	sys(NR_munmap, (long)(page_pair + PAGE), PAGE, 0, 0, 0, 0);
	for (unsigned long i = 0; i < PAGE; i++)
		ro_page[i] = (char)(i * 7);
	ro_sum = checksum(ro_page, PAGE);
	sys(NR_mprotect, (long)ro_page, PAGE, 1 /* PROT_READ */, 0, 0, 0);
	loader_mapped = readable(loader_text) && readable(loader_text + PAGE);

	static char ctl_uri[PICO_MAX_URI];
	unsigned long cl = slen(argv[3]);
	memcpy(ctl_uri, "unix:", 5);
	memcpy(ctl_uri + 5, argv[3], cl);
	ctl = (int)pico_open(ctl_uri, cl + 5, O_RDWR | O_CLOEXEC, 0);
	if (ctl < 0)
		die("pp-fuzz: cannot reach the driver's control socket\n", 5);
	if (start_flipper() < 0)
		die("pp-fuzz: cannot start the flipping thread\n", 6);
	for (unsigned long i = 0; i < calls; i++)
		one_call();
	return 0;
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"  xor %rbp, %rbp\n"
	"  mov (%rsp), %rdi\n"
	"  lea 8(%rsp), %rsi\n"
	"  and $-16, %rsp\n"
	"  call guest_start_c\n"
	"  hlt\n");

void __attribute__((used, noreturn)) guest_start_c(long argc, char **argv)
{
	long code = guest_main((int)argc, argv);
	for (;;)
		sys(NR_exit_group, code, 0, 0, 0, 0, 0);
}
