/* The library OS's own /dev and /proc.
 *
 * There is no host /dev or /proc in a picoprocess (the manifest refuses to
 * mount them): these names are the library OS's, synthesised from its own
 * state.  Programs read and write them with direct calls, so every open
 * returns a real fd:
 *   - /dev/null, zero, full, random, urandom: the host's device, opened by
 *     the monitor (pico_open "file:/dev/NAME"; the manifest's device mounts
 *     decide).  Without a device mount, /dev/null read-only falls back to an
 *     empty pipe (reads see end-of-file at once), the rest fail as the
 *     monitor answered.
 *   - /dev/stdin, stdout, stderr, /dev/fd/N, /proc/self/fd/N: the fd itself,
 *     re-opened by its remembered path when it is a file (Linux re-opens
 *     too: a fresh offset), else duplicated (pipes, sockets, terminals).
 *   - /dev/tty: a duplicate of the stdio fd that is a terminal, else ENXIO
 *     (there is no controlling terminal).
 *   - /proc/self/{maps,status,stat,statm,cmdline}, /proc/{meminfo,cpuinfo,
 *     stat,uptime,loadavg,version}: the text is generated and written into a
 *     pipe whose write end is closed, so read() sees the text and then
 *     end-of-file.  A pipe holds 64 KiB without a reader (F_SETPIPE_SZ is
 *     not in the ABI), so longer text is cut at a line boundary.  Pipes are
 *     not seekable: lseek answers ESPIPE, as a FIFO would.
 *   - /proc/<pid> is only ever the caller's own pid (= /proc/self); any
 *     other process, and anything not listed, is ENOENT.  Host /proc is
 *     never reached: these paths never go to the monitor.
 * Directory listings of /dev, /proc and /proc/self/fd are not offered
 * (open answers ENOSYS, which leaves an audit record). */
#include "libos.h"

struct libos_proc_info libos_proc = {.cpus = 1};

#define PIPE_CAPACITY 65536
#define PROC_DEV_MAJOR 0
#define PROC_DEV_MINOR 23

enum special_kind {
	SP_NOT_OURS,
	SP_ENOENT,
	SP_DIR,
	SP_LINK,     /* link_target() gives the text */
	SP_FILE,     /* generated text */
	SP_DEVICE,   /* a host device through the monitor */
	SP_FD_ALIAS, /* fd N itself */
	SP_TTY,
};

enum proc_file {
	PF_NONE,
	PF_MAPS,
	PF_STATUS,
	PF_STAT,
	PF_STATM,
	PF_CMDLINE,
	PF_MEMINFO,
	PF_CPUINFO,
	PF_SYSSTAT,
	PF_UPTIME,
	PF_LOADAVG,
	PF_VERSION,
};

enum link_kind { LK_SELF, LK_EXE, LK_CWD, LK_ROOT, LK_FD, LK_DEVFD };

struct special {
	enum special_kind kind;
	enum proc_file file;
	enum link_kind link;
	long fd;	     /* SP_FD_ALIAS, LK_FD, LK_DEVFD */
	unsigned dev_minor; /* SP_DEVICE */
	unsigned long ino;   /* synthesised inode number */
};

static const struct {
	const char *name;
	unsigned minor;
} devices[] = {{"null", 3}, {"zero", 5}, {"full", 7}, {"random", 8}, {"urandom", 9}};

static const struct {
	const char *name;
	enum proc_file file;
} self_files[] = {{"maps", PF_MAPS}, {"status", PF_STATUS}, {"stat", PF_STAT}, {"statm", PF_STATM},
		  {"cmdline", PF_CMDLINE}};

static const struct {
	const char *name;
	enum proc_file file;
} top_files[] = {{"meminfo", PF_MEMINFO}, {"cpuinfo", PF_CPUINFO}, {"stat", PF_SYSSTAT},
		 {"uptime", PF_UPTIME},	   {"loadavg", PF_LOADAVG}, {"version", PF_VERSION}};

/* Parses a decimal fd or pid component ending at '/' or NUL. */
static long parse_number(const char *s, const char **end)
{
	unsigned long v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > 0x7fffffff)
			return -1;
		p++;
	}
	if (*p != '/' && *p != 0)
		return -1;
	*end = p;
	return (long)v;
}

/* Does the component at s equal name (ending at '/' or NUL)?  Returns the
 * rest after it, or NULL. */
static const char *component(const char *s, const char *name)
{
	size_t n = libos_strlen(name);
	if (memcmp(s, name, n) != 0 || (s[n] != '/' && s[n] != 0))
		return NULL;
	return s + n;
}

static unsigned long hash_ino(const char *s)
{
	unsigned long h = 1469598103934665603UL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211UL;
	return (h & 0xffffffffUL) | 1;
}

/* Classifies the normalised path under /proc/self/ (rest points after "self"). */
static void classify_self(const char *rest, struct special *sp)
{
	const char *r;
	if (*rest == 0) {
		sp->kind = SP_DIR;
		return;
	}
	rest++; /* the slash */
	if ((r = component(rest, "exe")) && !*r) {
		sp->kind = SP_LINK;
		sp->link = LK_EXE;
		return;
	}
	if ((r = component(rest, "cwd")) && !*r) {
		sp->kind = SP_LINK;
		sp->link = LK_CWD;
		return;
	}
	if ((r = component(rest, "root")) && !*r) {
		sp->kind = SP_LINK;
		sp->link = LK_ROOT;
		return;
	}
	if ((r = component(rest, "fd"))) {
		if (!*r) {
			sp->kind = SP_DIR;
			return;
		}
		const char *end;
		long fd = parse_number(r + 1, &end);
		if (fd < 0 || *end) {
			sp->kind = SP_ENOENT;
			return;
		}
		if (sys2(__NR_fcntl, fd, F_GETFD) < 0) {
			sp->kind = SP_ENOENT;
			return;
		}
		sp->kind = SP_LINK;
		sp->link = LK_FD;
		sp->fd = fd;
		return;
	}
	for (size_t i = 0; i < sizeof(self_files) / sizeof(self_files[0]); i++)
		if ((r = component(rest, self_files[i].name)) && !*r) {
			sp->kind = SP_FILE;
			sp->file = self_files[i].file;
			return;
		}
	sp->kind = SP_ENOENT;
}

/* Decides whether the path is ours; normalises p->abs in place if it may be. */
static void classify(struct guest_path *p, struct special *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->kind = SP_NOT_OURS;
	const char *a = p->abs;
	if (!component(a + 1, "proc") && !component(a + 1, "dev"))
		return;
	p->len = libos_normalise_path(p->abs);
	/* ".." may have climbed out: /proc/../etc/x is the monitor's /etc/x. */
	if (!component(a + 1, "proc") && !component(a + 1, "dev"))
		return;
	sp->ino = hash_ino(p->abs);
	const char *r;
	if ((r = component(a + 1, "dev"))) {
		if (!*r) {
			sp->kind = SP_DIR;
			return;
		}
		r++;
		for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
			const char *e = component(r, devices[i].name);
			if (e && !*e) {
				sp->kind = SP_DEVICE;
				sp->dev_minor = devices[i].minor;
				return;
			}
		}
		static const char *const std_names[3] = {"stdin", "stdout", "stderr"};
		for (long i = 0; i < 3; i++) {
			const char *e = component(r, std_names[i]);
			if (e && !*e) {
				sp->kind = SP_LINK;
				sp->link = LK_DEVFD;
				sp->fd = i;
				return;
			}
		}
		const char *e;
		if ((e = component(r, "tty")) && !*e) {
			sp->kind = SP_TTY;
			return;
		}
		if ((e = component(r, "fd"))) {
			if (!*e) {
				sp->kind = SP_LINK;
				sp->link = LK_DEVFD;
				sp->fd = -1;
				return;
			}
			const char *end;
			long fd = parse_number(e + 1, &end);
			if (fd < 0 || *end || sys2(__NR_fcntl, fd, F_GETFD) < 0) {
				sp->kind = SP_ENOENT;
				return;
			}
			sp->kind = SP_FD_ALIAS;
			sp->fd = fd;
			return;
		}
		if ((e = component(r, "ptmx")) && !*e) {
			/* The run's own devpts (the monitor's mount at /dev/pts)
			 * has the ptmx node, as a devpts mounted with newinstance. */
			memcpy(p->abs, "/dev/pts/ptmx", sizeof("/dev/pts/ptmx"));
			p->len = sizeof("/dev/pts/ptmx") - 1;
			return;
		}
		/* Anything else under /dev (e.g. /dev/shm, /dev/pts) is the
		 * manifest's. */
		return;
	}
	r = component(a + 1, "proc");
	if (!*r) {
		sp->kind = SP_DIR;
		return;
	}
	r++;
	const char *e;
	if ((e = component(r, "self"))) {
		if (!*e) {
			sp->kind = SP_LINK;
			sp->link = LK_SELF;
			return;
		}
		classify_self(e, sp);
		return;
	}
	long pid = parse_number(r, &e);
	if (pid >= 0) {
		/* Only the caller's own pid: never another process, and never
		 * the host's. */
		if (pid != sys0(__NR_getpid)) {
			sp->kind = SP_ENOENT;
			return;
		}
		classify_self(e, sp);
		return;
	}
	for (size_t i = 0; i < sizeof(top_files) / sizeof(top_files[0]); i++)
		if ((e = component(r, top_files[i].name)) && !*e) {
			sp->kind = SP_FILE;
			sp->file = top_files[i].file;
			return;
		}
	sp->kind = SP_ENOENT;
}

/* A pseudo path for an fd without a file path, as Linux shows them. */
static size_t fd_pseudo_path(long fd, const struct stat *st, char *out, size_t cap)
{
	struct strbuf sb;
	sb_init(&sb, out, cap);
	switch (st->st_mode & S_IFMT) {
	case S_IFIFO: sb_add(&sb, "pipe:["); break;
	case S_IFSOCK: sb_add(&sb, "socket:["); break;
	default: sb_add(&sb, "anon_inode:["); break;
	}
	sb_addnum(&sb, st->st_ino);
	sb_add(&sb, "]");
	return sb.len;
}

/* The link's target text into out (cap bytes); its length or -errno. */
static long link_target(const struct special *sp, char *out, size_t cap)
{
	struct strbuf sb;
	sb_init(&sb, out, cap);
	switch (sp->link) {
	case LK_SELF:
		sb_addnum(&sb, (unsigned long)sys0(__NR_getpid));
		break;
	case LK_EXE:
		sb_add(&sb, libos_exe_path);
		break;
	case LK_CWD:
		return libos_cwd_get(out, cap);
	case LK_ROOT:
		sb_add(&sb, "/");
		break;
	case LK_FD: {
		struct stat st;
		long r = libos_fd_path(sp->fd, out, cap, &st);
		if (r >= 0)
			return r;
		if (r != -ENOSYS)
			return r;
		return (long)fd_pseudo_path(sp->fd, &st, out, cap);
	}
	case LK_DEVFD:
		sb_add(&sb, "/proc/self/fd");
		if (sp->fd >= 0) {
			sb_add(&sb, "/");
			sb_addnum(&sb, (unsigned long)sp->fd);
		}
		break;
	}
	return sb.overflow ? -ENAMETOOLONG : (long)sb.len;
}

/* ---- generated text ---- */

static void add_hex(struct strbuf *sb, uint64_t v, int width)
{
	char tmp[17];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	while (n < width)
		tmp[n++] = '0';
	while (n)
		sb_addn(sb, &tmp[--n], 1);
}

static void add_kv(struct strbuf *sb, const char *key, unsigned long v, const char *unit)
{
	sb_add(sb, key);
	sb_addnum(sb, v);
	if (unit)
		sb_add(sb, unit);
	sb_add(sb, "\n");
}

static void add_map_line(struct strbuf *sb, uint64_t start, uint64_t end, int prot, uint64_t off, uint64_t dev,
			 uint64_t ino, const char *name)
{
	add_hex(sb, start, 8);
	sb_add(sb, "-");
	add_hex(sb, end, 8);
	sb_add(sb, (prot & PROT_READ) ? " r" : " -");
	sb_add(sb, (prot & PROT_WRITE) ? "w" : "-");
	sb_add(sb, (prot & PROT_EXEC) ? "x" : "-");
	sb_add(sb, "p ");
	add_hex(sb, off, 8);
	sb_add(sb, " ");
	add_hex(sb, (dev >> 8) & 0xfff, 2);
	sb_add(sb, ":");
	add_hex(sb, (dev & 0xff) | ((dev >> 12) & 0xfff00), 2);
	sb_add(sb, " ");
	sb_addnum(sb, ino);
	if (name) {
		sb_add(sb, "                          ");
		sb_add(sb, name);
	}
	sb_add(sb, "\n");
}

/* /proc/self/maps: what the library OS knows -- the images the loader
 * mapped, the library OS itself, the vDSO and the main stack.  Later
 * mappings (shared libraries, mmap) are made with direct calls and are not
 * listed. */
static void gen_maps(struct strbuf *sb)
{
	for (int i = 0; i < libos_proc.nmaps; i++)
		add_map_line(sb, libos_proc.maps[i].start, libos_proc.maps[i].end, libos_proc.maps[i].prot,
			     libos_proc.maps[i].offset, libos_proc.maps[i].dev, libos_proc.maps[i].ino,
			     libos_proc.maps[i].path);
	if (libos_proc.stack_top)
		add_map_line(sb, libos_proc.stack_low, libos_proc.stack_top, libos_proc.stack_prot, 0, 0, 0,
			     "[stack]");
}

static const char *comm_of_exe(size_t *n)
{
	const char *base = libos_exe_path;
	for (const char *q = libos_exe_path; *q; q++)
		if (*q == '/')
			base = q + 1;
	*n = libos_strnlen(base, 15);
	return base;
}

static void gen_status(struct strbuf *sb)
{
	size_t n;
	const char *comm = comm_of_exe(&n);
	long pid = sys0(__NR_getpid);
	sb_add(sb, "Name:\t");
	sb_addn(sb, comm, n);
	sb_add(sb, "\nUmask:\t0");
	char oct[3] = {(char)('0' + ((libos_umask_value >> 6) & 7)), (char)('0' + ((libos_umask_value >> 3) & 7)),
		       (char)('0' + (libos_umask_value & 7))};
	sb_addn(sb, oct, 3);
	sb_add(sb, "\nState:\tR (running)\n");
	add_kv(sb, "Tgid:\t", (unsigned long)pid, NULL);
	add_kv(sb, "Ngid:\t", 0, NULL);
	add_kv(sb, "Pid:\t", (unsigned long)pid, NULL);
	add_kv(sb, "PPid:\t", (unsigned long)sys0(__NR_getppid), NULL);
	add_kv(sb, "TracerPid:\t", 0, NULL);
	for (int k = 0; k < 2; k++) {
		unsigned id = k ? libos_ident.gid : libos_ident.uid;
		sb_add(sb, k ? "Gid:\t" : "Uid:\t");
		for (int j = 0; j < 4; j++) {
			sb_addnum(sb, id);
			sb_add(sb, j < 3 ? "\t" : "\n");
		}
	}
	add_kv(sb, "FDSize:\t", 1024, NULL);
	add_kv(sb, "Groups:\t", libos_ident.gid, NULL);
	add_kv(sb, "Threads:\t", 1, NULL);
	sb_add(sb, "SigQ:\t0/4096\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n");
	sb_add(sb, "Seccomp:\t2\nSeccomp_filters:\t1\nNoNewPrivs:\t1\n");
	sb_add(sb, "Cpus_allowed_list:\t0");
	if (libos_proc.cpus > 1) {
		sb_add(sb, "-");
		sb_addnum(sb, libos_proc.cpus - 1);
	}
	sb_add(sb, "\n");
}

static void gen_stat(struct strbuf *sb)
{
	size_t n;
	const char *comm = comm_of_exe(&n);
	struct __kernel_timespec cpu = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &cpu);
	unsigned long ticks = (unsigned long)cpu.tv_sec * 100 + (unsigned long)cpu.tv_nsec / 10000000;
	sb_addnum(sb, (unsigned long)sys0(__NR_getpid));
	sb_add(sb, " (");
	sb_addn(sb, comm, n);
	sb_add(sb, ") R ");
	sb_addnum(sb, (unsigned long)sys0(__NR_getppid));
	sb_add(sb, " ");
	sb_addnum(sb, (unsigned long)libos_pgid);
	sb_add(sb, " ");
	sb_addnum(sb, (unsigned long)libos_sid);
	/* tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime
	 * cstime priority nice num_threads itrealvalue starttime vsize rss
	 * rsslim startcode endcode startstack kstkesp kstkeip signal blocked
	 * sigignore sigcatch wchan nswap cnswap exit_signal processor ... */
	sb_add(sb, " 0 -1 4194304 0 0 0 0 ");
	sb_addnum(sb, ticks);
	sb_add(sb, " 0 0 0 20 0 1 0 0 0 0 18446744073709551615 0 0 ");
	sb_addnum(sb, libos_proc.stack_top);
	sb_add(sb, " 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
}

static void gen_cmdline(struct strbuf *sb)
{
	char arg[PICO_MAX_PATH];
	for (long i = 0; i < libos_proc.argc && libos_proc.argv; i++) {
		const char *ptr;
		if (libos_copy_from_guest(&ptr, &libos_proc.argv[i], sizeof(ptr)) < 0 || !ptr)
			break;
		long n = libos_copy_string_from_guest(arg, ptr, sizeof(arg));
		if (n < 0)
			break;
		sb_addn(sb, arg, (size_t)n);
		sb_end_string(sb);
	}
}

#define VIRTUAL_MEM_KB (1UL << 20) /* as sysinfo: 1 GiB */

/* "Key:<pad>" then the value right-aligned in 8 columns, as Linux prints it. */
static void add_meminfo(struct strbuf *sb, const char *key, unsigned long kb)
{
	char num[24];
	size_t n = libos_format_ulong(num, kb);
	sb_add(sb, key);
	for (size_t i = n; i < 8; i++)
		sb_add(sb, " ");
	sb_addn(sb, num, n);
	sb_add(sb, " kB\n");
}

static void gen_meminfo(struct strbuf *sb)
{
	add_meminfo(sb, "MemTotal:       ", VIRTUAL_MEM_KB);
	add_meminfo(sb, "MemFree:        ", VIRTUAL_MEM_KB);
	add_meminfo(sb, "MemAvailable:   ", VIRTUAL_MEM_KB);
	add_meminfo(sb, "Buffers:        ", 0);
	add_meminfo(sb, "Cached:         ", 0);
	add_meminfo(sb, "SwapCached:     ", 0);
	add_meminfo(sb, "SwapTotal:      ", 0);
	add_meminfo(sb, "SwapFree:       ", 0);
	add_meminfo(sb, "Shmem:          ", 0);
	add_meminfo(sb, "Hugepagesize:   ", 2048);
}

static void cpuid(unsigned leaf, unsigned sub, unsigned out[4])
{
	__asm__ volatile("cpuid" : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]), "=d"(out[3]) : "a"(leaf), "c"(sub));
}

static void gen_cpuinfo(struct strbuf *sb)
{
	unsigned v[4], f1[4], f7[4] = {0, 0, 0, 0};
	char vendor[13], brand[49];
	cpuid(0, 0, v);
	memcpy(vendor, &v[1], 4);
	memcpy(vendor + 4, &v[3], 4);
	memcpy(vendor + 8, &v[2], 4);
	vendor[12] = 0;
	unsigned max_leaf = v[0];
	cpuid(1, 0, f1);
	if (max_leaf >= 7)
		cpuid(7, 0, f7);
	cpuid(0x80000000, 0, v);
	brand[0] = 0;
	if (v[0] >= 0x80000004) {
		for (unsigned i = 0; i < 3; i++)
			cpuid(0x80000002 + i, 0, (unsigned *)(brand + 16 * i));
		brand[48] = 0;
	}
	const char *b = brand;
	while (*b == ' ')
		b++;
	unsigned family = (f1[0] >> 8) & 0xf, model = (f1[0] >> 4) & 0xf;
	if (family == 0xf)
		family += (f1[0] >> 20) & 0xff;
	if (family >= 6)
		model |= ((f1[0] >> 16) & 0xf) << 4;
	static const struct {
		int reg; /* 0: leaf1 edx, 1: leaf1 ecx, 2: leaf7 ebx */
		int bit;
		const char *name;
	} flags[] = {
		{0, 0, "fpu"},	   {0, 4, "tsc"},	{0, 8, "cx8"},	     {0, 15, "cmov"},	 {0, 23, "mmx"},
		{0, 24, "fxsr"},   {0, 25, "sse"},	{0, 26, "sse2"},     {1, 0, "pni"},	 {1, 1, "pclmulqdq"},
		{1, 9, "ssse3"},   {1, 12, "fma"},	{1, 13, "cx16"},     {1, 19, "sse4_1"},	 {1, 20, "sse4_2"},
		{1, 22, "movbe"},  {1, 23, "popcnt"},	{1, 25, "aes"},	     {1, 26, "xsave"},	 {1, 28, "avx"},
		{1, 29, "f16c"},   {1, 30, "rdrand"},	{2, 3, "bmi1"},	     {2, 5, "avx2"},	 {2, 8, "bmi2"},
		{2, 16, "avx512f"}, {2, 18, "rdseed"},	{2, 19, "adx"},	     {2, 29, "sha_ni"},
	};
	for (unsigned cpu = 0; cpu < libos_proc.cpus; cpu++) {
		add_kv(sb, "processor\t: ", cpu, NULL);
		sb_add(sb, "vendor_id\t: ");
		sb_add(sb, vendor);
		sb_add(sb, "\n");
		add_kv(sb, "cpu family\t: ", family, NULL);
		add_kv(sb, "model\t\t: ", model, NULL);
		sb_add(sb, "model name\t: ");
		sb_add(sb, b);
		sb_add(sb, "\n");
		add_kv(sb, "stepping\t: ", f1[0] & 0xf, NULL);
		add_kv(sb, "physical id\t: ", 0, NULL);
		add_kv(sb, "siblings\t: ", libos_proc.cpus, NULL);
		add_kv(sb, "core id\t\t: ", cpu, NULL);
		add_kv(sb, "cpu cores\t: ", libos_proc.cpus, NULL);
		add_kv(sb, "apicid\t\t: ", cpu, NULL);
		sb_add(sb, "fpu\t\t: yes\nflags\t\t:");
		for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
			unsigned reg = flags[i].reg == 0 ? f1[3] : flags[i].reg == 1 ? f1[2] : f7[1];
			if (reg & (1U << flags[i].bit)) {
				sb_add(sb, " ");
				sb_add(sb, flags[i].name);
			}
		}
		sb_add(sb, "\n\n");
	}
}

static long boot_seconds(void)
{
	struct __kernel_timespec ts = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_BOOTTIME, &ts);
	return ts.tv_sec;
}

static void gen_sysstat(struct strbuf *sb)
{
	struct __kernel_timespec now = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_REALTIME, &now);
	sb_add(sb, "cpu  0 0 0 0 0 0 0 0 0 0\n");
	for (unsigned cpu = 0; cpu < libos_proc.cpus; cpu++) {
		sb_add(sb, "cpu");
		sb_addnum(sb, cpu);
		sb_add(sb, " 0 0 0 0 0 0 0 0 0 0\n");
	}
	sb_add(sb, "intr 0\nctxt 0\n");
	add_kv(sb, "btime ", (unsigned long)(now.tv_sec - boot_seconds()), NULL);
	sb_add(sb, "processes 1\nprocs_running 1\nprocs_blocked 0\nsoftirq 0\n");
}

static void gen_text(enum proc_file f, struct strbuf *sb)
{
	switch (f) {
	case PF_MAPS: gen_maps(sb); break;
	case PF_STATUS: gen_status(sb); break;
	case PF_STAT: gen_stat(sb); break;
	case PF_STATM: sb_add(sb, "0 0 0 0 0 0 0\n"); break;
	case PF_CMDLINE: gen_cmdline(sb); break;
	case PF_MEMINFO: gen_meminfo(sb); break;
	case PF_CPUINFO: gen_cpuinfo(sb); break;
	case PF_SYSSTAT: gen_sysstat(sb); break;
	case PF_UPTIME:
		sb_addnum(sb, (unsigned long)boot_seconds());
		sb_add(sb, ".00 0.00\n");
		break;
	case PF_LOADAVG: sb_add(sb, "0.00 0.00 0.00 1/1 1\n"); break;
	case PF_VERSION:
		sb_add(sb, "Linux version ");
		sb_add(sb, libos_release);
		sb_add(sb, " (picoproc) #1 SMP picoproc\n");
		break;
	case PF_NONE: break;
	}
}

/* A pipe holding `text` whose write end is closed: the read end is a real fd
 * on which read() returns the text and then end-of-file. */
static long text_fd(enum proc_file f, int flags)
{
	long m = sys6(__NR_mmap, 0, PIPE_CAPACITY, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m < 0)
		return m;
	struct strbuf sb;
	sb_init(&sb, (char *)m, PIPE_CAPACITY);
	gen_text(f, &sb);
	size_t len = sb.len;
	if (sb.overflow) {
		/* Cut at the last complete line: a reader never sees half a line. */
		while (len > 0 && ((char *)m)[len - 1] != '\n')
			len--;
	}
	int fds[2];
	long r = sys2(__NR_pipe2, fds, O_CLOEXEC);
	if (r < 0)
		goto out;
	for (size_t done = 0; done < len;) {
		long n = sys3(__NR_write, fds[1], (char *)m + done, len - done);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	sys1(__NR_close, fds[1]);
	r = fds[0];
	if (!(flags & O_CLOEXEC))
		sys3(__NR_fcntl, r, F_SETFD, 0);
	if (flags & O_NONBLOCK)
		sys3(__NR_fcntl, r, F_SETFL, O_NONBLOCK);
out:
	sys2(__NR_munmap, m, PIPE_CAPACITY);
	return r;
}

static long dup_fd(long fd, int flags)
{
	return sys3(__NR_fcntl, fd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
}

/* Opening /dev/fd/N: a file is re-opened by its path (fresh offset, the
 * flags asked for), anything else is duplicated. */
static long open_fd_alias(struct guest_path *p, long fd, int flags, int depth)
{
	struct stat st;
	long r = libos_fd_path(fd, p->abs, sizeof(p->abs), &st);
	if (r == -ENOSYS || (r >= 0 && (st.st_mode & S_IFMT) != S_IFREG && (st.st_mode & S_IFMT) != S_IFDIR))
		return dup_fd(fd, flags);
	if (r < 0)
		return r;
	p->len = (size_t)r;
	if (depth > 0)
		return -ELOOP;
	long out;
	if (libos_special_open(p, flags, &out))
		return out;
	const char *scheme = (st.st_mode & S_IFMT) == S_IFDIR ? "dir:" : "file:";
	size_t n = libos_strlen(scheme);
	memcpy(p->abs - n, scheme, n);
	out = pico_open(p->abs - n, n + p->len, flags & ~O_CREAT, 0);
	if (out >= 0)
		libos_fd_remember(out, p->abs);
	return out;
}

static long open_tty(int flags)
{
	struct {
		unsigned iflag, oflag, cflag, lflag;
		unsigned char line, cc[19];
	} tio;
	for (long fd = 0; fd < 3; fd++)
		if (sys3(__NR_ioctl, fd, TCGETS_K, &tio) == 0)
			return dup_fd(fd, flags);
	return -ENXIO;
}

static long open_device(struct guest_path *p, int flags)
{
	memcpy(p->abs - 5, "file:", 5);
	long r = pico_open(p->abs - 5, p->len + 5, flags, 0);
	if (r >= 0 || !libos_streq(p->abs, "/dev/null") || (flags & O_ACCMODE) != O_RDONLY)
		return r;
	/* No device mount: a read-only /dev/null is an empty pipe. */
	int fds[2];
	r = sys2(__NR_pipe2, fds, O_CLOEXEC);
	if (r < 0)
		return r;
	sys1(__NR_close, fds[1]);
	if (!(flags & O_CLOEXEC))
		sys3(__NR_fcntl, fds[0], F_SETFD, 0);
	return fds[0];
}

static long open_special(struct guest_path *p, const struct special *sp, int flags)
{
	int acc = flags & O_ACCMODE;
	switch (sp->kind) {
	case SP_NOT_OURS: return -EINVAL; /* not reached */
	case SP_ENOENT: return (flags & O_CREAT) ? -EACCES : -ENOENT;
	case SP_DIR: return -ENOSYS; /* no synthetic directory listings */
	case SP_FILE:
		if (acc != O_RDONLY || (flags & (O_CREAT | O_TRUNC)))
			return -EACCES;
		if (flags & O_DIRECTORY)
			return -ENOTDIR;
		return text_fd(sp->file, flags);
	case SP_DEVICE: return open_device(p, flags);
	case SP_TTY: return open_tty(flags);
	case SP_FD_ALIAS: return open_fd_alias(p, sp->fd, flags, 0);
	case SP_LINK:
		switch (sp->link) {
		case LK_FD: return open_fd_alias(p, sp->fd, flags, 0);
		case LK_DEVFD:
			if (sp->fd < 0)
				return -ENOSYS; /* /dev/fd: a listing */
			if (sys2(__NR_fcntl, sp->fd, F_GETFD) < 0)
				return -ENOENT;
			return open_fd_alias(p, sp->fd, flags, 0);
		case LK_SELF: return -ENOSYS;
		case LK_EXE:
		case LK_CWD:
		case LK_ROOT: {
			long r = link_target(sp, p->abs, sizeof(p->abs));
			if (r < 0)
				return r;
			p->len = (size_t)r;
			int dir = sp->link != LK_EXE;
			const char *scheme = dir ? "dir:" : "file:";
			size_t n = libos_strlen(scheme);
			memcpy(p->abs - n, scheme, n);
			r = pico_open(p->abs - n, n + p->len, dir ? (flags | O_DIRECTORY) : flags, 0);
			if (r >= 0)
				libos_fd_remember(r, p->abs);
			return r;
		}
		}
	}
	return -ENOENT;
}

int libos_special_open(struct guest_path *p, int flags, long *result)
{
	struct special sp;
	classify(p, &sp);
	if (sp.kind == SP_NOT_OURS)
		return 0;
	*result = open_special(p, &sp, flags);
	return 1;
}

static void synthetic_statx(struct statx *x, unsigned mode, unsigned long ino)
{
	struct __kernel_timespec boot = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_REALTIME, &boot);
	memset(x, 0, sizeof(*x));
	x->stx_mask = STATX_BASIC_STATS;
	x->stx_mode = (uint16_t)mode;
	x->stx_nlink = (mode & S_IFMT) == S_IFDIR ? 2 : 1;
	x->stx_uid = libos_ident.uid;
	x->stx_gid = libos_ident.gid;
	x->stx_ino = ino;
	x->stx_blksize = 1024;
	x->stx_dev_major = PROC_DEV_MAJOR;
	x->stx_dev_minor = PROC_DEV_MINOR;
	x->stx_atime.tv_sec = x->stx_mtime.tv_sec = x->stx_ctime.tv_sec = boot.tv_sec;
}

static long stat_special(struct guest_path *p, const struct special *sp, int nofollow, struct statx *out)
{
	switch (sp->kind) {
	case SP_NOT_OURS:
	case SP_ENOENT: return -ENOENT;
	case SP_DIR: synthetic_statx(out, S_IFDIR | 0555, sp->ino); return 0;
	case SP_FILE: synthetic_statx(out, S_IFREG | 0444, sp->ino); return 0;
	case SP_DEVICE:
		synthetic_statx(out, S_IFCHR | 0666, sp->ino);
		out->stx_rdev_major = 1;
		out->stx_rdev_minor = sp->dev_minor;
		out->stx_uid = out->stx_gid = 0;
		return 0;
	case SP_TTY: {
		long fd = open_tty(O_CLOEXEC);
		if (fd < 0)
			return fd;
		struct stat st;
		long r = sys2(__NR_fstat, fd, &st);
		sys1(__NR_close, fd);
		if (r < 0)
			return r;
		libos_statx_from_stat(out, &st);
		return 0;
	}
	case SP_FD_ALIAS:
	case SP_LINK:
		if (nofollow && sp->kind == SP_LINK) {
			synthetic_statx(out, S_IFLNK | 0777, sp->ino);
			return 0;
		}
		if (sp->kind == SP_FD_ALIAS || sp->link == LK_FD || (sp->link == LK_DEVFD && sp->fd >= 0)) {
			struct stat st;
			long r = sys2(__NR_fstat, sp->fd, &st);
			if (r < 0)
				return -ENOENT;
			libos_statx_from_stat(out, &st);
			return 0;
		}
		if (sp->link == LK_SELF || sp->link == LK_DEVFD) {
			synthetic_statx(out, S_IFDIR | 0555, sp->ino);
			return 0;
		}
		{
			long r = link_target(sp, p->abs, sizeof(p->abs));
			if (r < 0)
				return r;
			p->len = (size_t)r;
			return pico_stat(p->abs, p->len, 0, out);
		}
	}
	return -ENOENT;
}

int libos_special_stat(struct guest_path *p, int nofollow, struct statx *out, long *result)
{
	struct special sp;
	classify(p, &sp);
	if (sp.kind == SP_NOT_OURS)
		return 0;
	*result = stat_special(p, &sp, nofollow, out);
	return 1;
}

int libos_special_readlink(struct guest_path *p, char *guest_buf, size_t size, long *result)
{
	struct special sp;
	classify(p, &sp);
	if (sp.kind == SP_NOT_OURS)
		return 0;
	if (sp.kind == SP_ENOENT) {
		*result = -ENOENT;
		return 1;
	}
	if (sp.kind != SP_LINK) {
		*result = -EINVAL;
		return 1;
	}
	long r = link_target(&sp, p->abs, sizeof(p->abs));
	if (r >= 0) {
		size_t n = (size_t)r < size ? (size_t)r : size;
		r = libos_copy_to_guest(guest_buf, p->abs, n);
		if (r >= 0)
			r = (long)n;
	}
	*result = r;
	return 1;
}

int libos_special_access(struct guest_path *p, int mode, long *result)
{
	struct special sp;
	struct statx x;
	classify(p, &sp);
	if (sp.kind == SP_NOT_OURS)
		return 0;
	long r = stat_special(p, &sp, 0, &x);
	if (r >= 0) {
		unsigned perm = x.stx_mode & 0777;
		/* The owner's bits for files we synthesise (owned by the guest);
		 * the others' bits for everything else. */
		unsigned bits = (x.stx_uid == libos_ident.uid) ? (perm >> 6) : (perm & 7);
		if ((unsigned)mode & ~bits & 7)
			r = -EACCES;
	}
	*result = r;
	return 1;
}
