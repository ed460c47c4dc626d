/* /dev and /proc, as the library OS shows them.
 *
 * There is no host /dev or /proc in a picoprocess (the manifest refuses to
 * mount them).  Every open returns a real fd, because programs then use
 * direct read/write/getdents64 on it:
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
 *   - What only this library OS knows, about its own process: the exe, cwd,
 *     root and fd/N links, cmdline, comm; and the picoprocess's virtual host
 *     description: /proc/{meminfo,cpuinfo,stat,uptime,loadavg,version} and a
 *     few /proc/sys/kernel values.  That text is generated here into an
 *     empty file the monitor hands out (seekable and re-readable, as procps
 *     needs), or a pipe when it cannot.
 *   - Everything else under /proc -- the listings of /proc and of a
 *     process's fd, fdinfo and task directories, every other process, the
 *     kernel's numbers for this one (stat, status, statm, maps), the mounts
 *     -- and the listing of /dev go to the monitor as mediated calls on the
 *     /proc path, "self" replaced by the caller's pid (native/procview.c).
 *     It answers from a procfs of the guest's own pid namespace and from
 *     what each process's library OS publishes (abi/libos_public.h): never
 *     a host process.  A monitor without that view answers ENOSYS: the
 *     library OS then generates stat, status, statm and maps for itself as
 *     well as it can, and other processes do not exist. */
#include "libos.h"
#include "devices.h"

struct libos_proc_info libos_proc = {.cpus = 1};

#define PIPE_CAPACITY 65536
#define PROC_DEV_MAJOR 0
#define PROC_DEV_MINOR 23

enum special_kind {
	SP_NOT_OURS,
	SP_ENOENT,
	SP_LINK,     /* link_target() gives the text */
	SP_FILE,     /* generated text */
	SP_DEVICE,   /* a host device through the monitor */
	SP_FD_ALIAS, /* fd N itself */
	SP_TTY,
	SP_MONITOR, /* the monitor's /proc: p->abs rewritten to /proc/<pid>/... */
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
	PF_COMM,
	PF_SYSCTL, /* a few of /proc/sys: special.sysctl */
};

enum link_kind { LK_SELF, LK_THREAD_SELF, LK_EXE, LK_CWD, LK_ROOT, LK_FD, LK_DEVFD };

struct special {
	enum special_kind kind;
	enum proc_file file;
	/* SP_FILE that the monitor answers better (real numbers, every
	 * mapping): asked first, generated here only when it cannot answer. */
	int monitor_first;
	enum link_kind link;
	long fd;	     /* SP_FD_ALIAS, LK_FD, LK_DEVFD */
	unsigned dev_minor; /* SP_DEVICE */
	unsigned long ino;   /* synthesised inode number */
	int sysctl;	     /* PF_SYSCTL: index in sysctls[] */
};

static const struct {
	const char *name;
	unsigned minor;
} devices[] = {
#define DEVICE_ROW(name, minor) {#name, minor},
	LIBOS_DEVICES(DEVICE_ROW)
#undef DEVICE_ROW
};

static const struct {
	const char *name;
	enum proc_file file;
} self_files[] = {{"maps", PF_MAPS},	  {"status", PF_STATUS}, {"stat", PF_STAT}, {"statm", PF_STATM},
		  {"cmdline", PF_CMDLINE}, {"comm", PF_COMM}};

static const struct {
	const char *name;
	enum proc_file file;
} top_files[] = {{"meminfo", PF_MEMINFO}, {"cpuinfo", PF_CPUINFO}, {"stat", PF_SYSSTAT},
		 {"uptime", PF_UPTIME},	   {"loadavg", PF_LOADAVG}, {"version", PF_VERSION}};

/* The kernel settings programs read to size and describe things (procps
 * reads pid_max for its column widths): the picoprocess's values. */
static const char *const sysctls[] = {"sys/kernel/pid_max",	"sys/kernel/osrelease", "sys/kernel/ostype",
				      "sys/kernel/hostname",	"sys/kernel/version",	"sys/kernel/domainname",
				      "sys/kernel/ngroups_max", "sys/kernel/threads-max"};

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

/* The path becomes /proc/<pid><rest> (rest: "" or "/..."), for the monitor. */
static void forward(struct guest_path *p, struct special *sp, long pid, const char *rest)
{
	char tail[PICO_MAX_PATH];
	size_t n = libos_strnlen(rest, sizeof(tail) - 1);
	memcpy(tail, rest, n);
	tail[n] = 0;
	struct strbuf sb;
	sb_init(&sb, p->abs, sizeof(p->abs));
	sb_add(&sb, "/proc/");
	sb_addnum(&sb, (unsigned long)pid);
	sb_add(&sb, tail);
	if (sb.overflow) {
		sp->kind = SP_ENOENT;
		return;
	}
	p->len = sb.len;
	sp->kind = SP_MONITOR;
}

/* Classifies the normalised path under /proc/self or /proc/<own pid> (rest
 * points after that component): the links and the text the library OS
 * knows itself; everything else is the monitor's, with real numbers. */
static void classify_self(struct guest_path *p, const char *rest, struct special *sp, long pid)
{
	const char *r;
	if (*rest == 0) {
		forward(p, sp, pid, rest);
		return;
	}
	const char *slash = rest;
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
	if ((r = component(rest, "fd")) && *r) {
		const char *end;
		long fd = parse_number(r + 1, &end);
		if (fd < 0 || *end) {
			sp->kind = SP_ENOENT;
			return;
		}
		/* picoproc's own fds are not the program's to see. */
		if (libos_fd_is_picoprocs(fd) || sys2(__NR_fcntl, fd, F_GETFD) < 0) {
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
			sp->monitor_first = sp->file == PF_MAPS || sp->file == PF_STATUS || sp->file == PF_STAT ||
					    sp->file == PF_STATM;
			if (sp->monitor_first) {
				forward(p, sp, pid, slash);
				sp->kind = SP_FILE;
			}
			return;
		}
	forward(p, sp, pid, slash);
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
			sp->kind = SP_MONITOR; /* the listing of the guest's /dev */
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
			if (fd < 0 || *end || libos_fd_is_picoprocs(fd) || sys2(__NR_fcntl, fd, F_GETFD) < 0) {
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
		sp->kind = SP_MONITOR; /* the listing of the guest's processes */
		return;
	}
	r++;
	const char *e;
	long self = sys0(__NR_getpid);
	if ((e = component(r, "self"))) {
		if (!*e) {
			sp->kind = SP_LINK;
			sp->link = LK_SELF;
			return;
		}
		classify_self(p, e, sp, self);
		return;
	}
	if ((e = component(r, "thread-self"))) {
		if (!*e) {
			sp->kind = SP_LINK;
			sp->link = LK_THREAD_SELF;
			return;
		}
		/* /proc/thread-self/x is /proc/<pid>/task/<tid>/x */
		char rest[PICO_MAX_PATH];
		struct strbuf sb;
		sb_init(&sb, rest, sizeof(rest));
		sb_add(&sb, "/task/");
		sb_addnum(&sb, (unsigned long)sys0(__NR_gettid));
		sb_add(&sb, e);
		forward(p, sp, self, sb.overflow ? "" : rest);
		return;
	}
	long pid = parse_number(r, &e);
	if (pid >= 0) {
		if (pid == self) {
			classify_self(p, e, sp, self);
			return;
		}
		/* Another process of the picoprocess (the monitor shows only the
		 * guest's own pid namespace): the monitor's to answer. */
		sp->kind = SP_MONITOR;
		return;
	}
	for (size_t i = 0; i < sizeof(top_files) / sizeof(top_files[0]); i++)
		if ((e = component(r, top_files[i].name)) && !*e) {
			sp->kind = SP_FILE;
			sp->file = top_files[i].file;
			return;
		}
	for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		if (libos_streq(r, sysctls[i])) {
			sp->kind = SP_FILE;
			sp->file = PF_SYSCTL;
			sp->sysctl = (int)i;
			return;
		}
	/* mounts, and whatever else the monitor may know (or answer ENOENT). */
	sp->kind = SP_MONITOR;
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
	case LK_THREAD_SELF:
		sb_addnum(&sb, (unsigned long)sys0(__NR_getpid));
		sb_add(&sb, "/task/");
		sb_addnum(&sb, (unsigned long)sys0(__NR_gettid));
		break;
	case LK_EXE:
		sb_add(&sb, libos_public.exe);
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
		/* An fd the library OS did not open (inherited from the monitor,
		 * passed over a socket): the kernel knows what it is, and the
		 * monitor names it in the guest's view. */
		{
			char path[40];
			struct strbuf pb;
			sb_init(&pb, path, sizeof(path));
			sb_add(&pb, "/proc/");
			sb_addnum(&pb, (unsigned long)sys0(__NR_getpid));
			sb_add(&pb, "/fd/");
			sb_addnum(&pb, (unsigned long)sp->fd);
			long n = pico_readlink(path, pb.len, out, cap > PICO_MAX_PATH ? PICO_MAX_PATH : cap);
			if (n > 0 && (size_t)n < cap && out[0] == '/')
				return n;
		}
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
	const char *comm = libos_current()->pub.comm;
	if (comm[0]) {
		*n = libos_strnlen(comm, 15);
		return comm;
	}
	const char *base = libos_public.exe;
	for (const char *q = libos_public.exe; *q; q++)
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
	unsigned umask = libos_current()->pub.umask;
	char oct[3] = {(char)('0' + ((umask >> 6) & 7)), (char)('0' + ((umask >> 3) & 7)), (char)('0' + (umask & 7))};
	sb_addn(sb, oct, 3);
	sb_add(sb, "\nState:\tR (running)\n");
	add_kv(sb, "Tgid:\t", (unsigned long)pid, NULL);
	add_kv(sb, "Ngid:\t", 0, NULL);
	add_kv(sb, "Pid:\t", (unsigned long)pid, NULL);
	add_kv(sb, "PPid:\t", (unsigned long)sys0(__NR_getppid), NULL);
	add_kv(sb, "TracerPid:\t", 0, NULL);
	for (int k = 0; k < 2; k++) {
		unsigned id = k ? libos_current()->ident.gid : libos_current()->ident.uid;
		sb_add(sb, k ? "Gid:\t" : "Uid:\t");
		for (int j = 0; j < 4; j++) {
			sb_addnum(sb, id);
			sb_add(sb, j < 3 ? "\t" : "\n");
		}
	}
	add_kv(sb, "FDSize:\t", 1024, NULL);
	add_kv(sb, "Groups:\t", libos_current()->ident.gid, NULL);
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
	sb_addnum(sb, (unsigned long)libos_current()->pub.pgid);
	sb_add(sb, " ");
	sb_addnum(sb, (unsigned long)libos_current()->pub.sid);
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

/* /proc/stat: the picoprocess's view of its CPUs.  The host's counters are
 * not the guest's business; each CPU shows the time since boot as idle
 * except what this process used (CLOCK_PROCESS_CPUTIME_ID), which tools
 * such as top need to be non-zero and consistent (their percentages come
 * from the differences between two reads). */
static void add_cpu_line(struct strbuf *sb, const char *name, unsigned long user, unsigned long idle)
{
	sb_add(sb, name);
	sb_add(sb, " ");
	sb_addnum(sb, user);
	sb_add(sb, " 0 0 ");
	sb_addnum(sb, idle);
	sb_add(sb, " 0 0 0 0 0 0\n");
}

static void gen_sysstat(struct strbuf *sb)
{
	struct __kernel_timespec now = {0, 0}, boot = {0, 0}, cpu = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_REALTIME, &now);
	sys2(__NR_clock_gettime, CLOCK_BOOTTIME, &boot);
	sys2(__NR_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &cpu);
	unsigned n = libos_proc.cpus ? libos_proc.cpus : 1;
	unsigned long per_cpu = (unsigned long)boot.tv_sec * 100 + (unsigned long)boot.tv_nsec / 10000000 + 1;
	unsigned long used = (unsigned long)cpu.tv_sec * 100 + (unsigned long)cpu.tv_nsec / 10000000;
	if (used > per_cpu)
		used = per_cpu;
	add_cpu_line(sb, "cpu ", used, per_cpu * n - used);
	for (unsigned k = 0; k < n; k++) {
		char name[32] = "cpu";
		name[3 + libos_format_ulong(name + 3, k)] = 0;
		add_cpu_line(sb, name, k == 0 ? used : 0, k == 0 ? per_cpu - used : per_cpu);
	}
	sb_add(sb, "intr 0\nctxt 0\n");
	add_kv(sb, "btime ", (unsigned long)(now.tv_sec - boot.tv_sec), NULL);
	sb_add(sb, "processes 1\nprocs_running 1\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n");
}

static void gen_sysctl(int which, struct strbuf *sb)
{
	switch (which) {
	case 0: sb_add(sb, "4194304"); break;
	case 1: sb_add(sb, libos_release); break;
	case 2: sb_add(sb, "Linux"); break;
	case 3: sb_add(sb, libos_hostname); break;
	case 4: sb_add(sb, "#1 SMP picoproc"); break;
	case 5: sb_add(sb, "(none)"); break;
	case 6: sb_add(sb, "65536"); break;
	default: sb_add(sb, "4096"); break; /* threads-max: the picoprocess's own limit is lower */
	}
	sb_add(sb, "\n");
}

static void gen_text(enum proc_file f, int sysctl, struct strbuf *sb)
{
	switch (f) {
	case PF_SYSCTL: gen_sysctl(sysctl, sb); break;
	case PF_MAPS: gen_maps(sb); break;
	case PF_STATUS: gen_status(sb); break;
	case PF_STAT: gen_stat(sb); break;
	case PF_STATM: sb_add(sb, "0 0 0 0 0 0 0\n"); break;
	case PF_CMDLINE: gen_cmdline(sb); break;
	case PF_COMM: {
		size_t n;
		const char *comm = libos_current()->pub.comm;
		if (comm[0])
			n = libos_strnlen(comm, 15);
		else
			comm = comm_of_exe(&n);
		sb_addn(sb, comm, n);
		sb_add(sb, "\n");
		break;
	}
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

/* The text in a file readers may seek in and read again (procps keeps
 * /proc/stat open and rereads it from offset 0): an empty memfd the monitor
 * hands out for that (native/procview.c), written here and rewound.
 * Without one (a monitor with no /proc view), a pipe whose write end is
 * closed: read() sees the text and then end-of-file, but lseek is ESPIPE. */
#define TEXT_FILE "file:/proc/.picoproc-text"

static long text_fd(enum proc_file f, int sysctl, int flags)
{
	long m = sys6(__NR_mmap, 0, PIPE_CAPACITY, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m < 0)
		return m;
	struct strbuf sb;
	sb_init(&sb, (char *)m, PIPE_CAPACITY);
	gen_text(f, sysctl, &sb);
	size_t len = sb.len;
	if (sb.overflow) {
		/* Cut at the last complete line: a reader never sees half a line. */
		while (len > 0 && ((char *)m)[len - 1] != '\n')
			len--;
	}
	long r = pico_open(TEXT_FILE, sizeof(TEXT_FILE) - 1, O_RDWR | O_CLOEXEC, 0);
	int fds[2] = {-1, -1};
	if (r >= 0) {
		fds[0] = fds[1] = (int)r;
	} else {
		r = sys2(__NR_pipe2, fds, O_CLOEXEC);
		if (r < 0)
			goto out;
	}
	for (size_t done = 0; done < len;) {
		long n = sys3(__NR_write, fds[1], (char *)m + done, len - done);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (fds[0] != fds[1])
		sys1(__NR_close, fds[1]);
	else
		sys3(__NR_lseek, fds[0], 0, 0 /* SEEK_SET */);
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

/* The monitor's /proc (and /dev listing): read-only, every open a real fd
 * (a file of the text, or a directory to list with getdents64). */
static long monitor_open(struct guest_path *p, int flags)
{
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)))
		return -EACCES;
	const char *scheme = (flags & O_DIRECTORY) ? "dir:" : "file:";
	size_t n = libos_strlen(scheme);
	memcpy(p->abs - n, scheme, n);
	long r = pico_open(p->abs - n, n + p->len, flags, 0);
	if (r >= 0)
		libos_fd_remember(r, p->abs);
	return r;
}

/* A directory the monitor lists: /proc/<pid>[suffix]. */
static long open_listing(struct guest_path *p, struct special *sp, const char *suffix, int flags)
{
	forward(p, sp, sys0(__NR_getpid), suffix);
	if (sp->kind != SP_MONITOR)
		return -ENOENT;
	return monitor_open(p, flags | O_DIRECTORY);
}

static long open_special(struct guest_path *p, struct special *sp, int flags)
{
	int acc = flags & O_ACCMODE;
	switch (sp->kind) {
	case SP_NOT_OURS: return -EINVAL; /* not reached */
	case SP_ENOENT: return (flags & O_CREAT) ? -EACCES : -ENOENT;
	case SP_MONITOR: {
		long r = monitor_open(p, flags);
		/* A monitor without the guest's procfs (an old kernel) knows no
		 * process but lets this one answer for itself: the rest does
		 * not exist; listings are not offered at all. */
		if (r == -ENOSYS && !(flags & O_DIRECTORY) && !libos_streq(p->abs, "/proc") &&
		    !libos_streq(p->abs, "/dev"))
			r = -ENOENT;
		return r;
	}
	case SP_FILE:
		if (acc != O_RDONLY || (flags & (O_CREAT | O_TRUNC)))
			return -EACCES;
		if (flags & O_DIRECTORY)
			return -ENOTDIR;
		if (sp->monitor_first) {
			/* ENOSYS: a monitor without the guest's procfs (an old
			 * kernel): what the library OS knows itself. */
			long r = monitor_open(p, flags);
			if (r != -ENOSYS)
				return r;
		}
		return text_fd(sp->file, sp->sysctl, flags);
	case SP_DEVICE: return open_device(p, flags);
	case SP_TTY: return open_tty(flags);
	case SP_FD_ALIAS: return open_fd_alias(p, sp->fd, flags, 0);
	case SP_LINK:
		switch (sp->link) {
		case LK_FD: return open_fd_alias(p, sp->fd, flags, 0);
		case LK_DEVFD:
			if (sp->fd < 0)
				return open_listing(p, sp, "/fd", flags); /* /dev/fd */
			if (sys2(__NR_fcntl, sp->fd, F_GETFD) < 0)
				return -ENOENT;
			return open_fd_alias(p, sp->fd, flags, 0);
		case LK_SELF: return open_listing(p, sp, "", flags);
		case LK_THREAD_SELF: {
			char rest[48];
			struct strbuf sb;
			sb_init(&sb, rest, sizeof(rest));
			sb_add(&sb, "/task/");
			sb_addnum(&sb, (unsigned long)sys0(__NR_gettid));
			return open_listing(p, sp, rest, flags);
		}
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

/* /proc/<own pid>, or its fd, fdinfo or task directory? */
static int own_process_dir(const char *abs)
{
	char own[32];
	struct strbuf sb;
	sb_init(&sb, own, sizeof(own));
	sb_add(&sb, "/proc/");
	sb_addnum(&sb, (unsigned long)sys0(__NR_getpid));
	if (!libos_startswith(abs, own))
		return 0;
	const char *rest = abs + sb.len;
	return !*rest || libos_streq(rest, "/fd") || libos_streq(rest, "/fdinfo") || libos_streq(rest, "/task");
}

static void synthetic_statx(struct statx *x, unsigned mode, unsigned long ino)
{
	struct __kernel_timespec boot = {0, 0};
	sys2(__NR_clock_gettime, CLOCK_REALTIME, &boot);
	memset(x, 0, sizeof(*x));
	x->stx_mask = STATX_BASIC_STATS;
	x->stx_mode = (uint16_t)mode;
	x->stx_nlink = (mode & S_IFMT) == S_IFDIR ? 2 : 1;
	x->stx_uid = libos_current()->ident.uid;
	x->stx_gid = libos_current()->ident.gid;
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
	case SP_MONITOR: {
		long r = pico_stat(p->abs, p->len, nofollow, out);
		if (r != -ENOSYS)
			return r;
		/* No procfs for this guest: the directories of the library OS's
		 * own process still exist. */
		if (libos_streq(p->abs, "/proc") || libos_streq(p->abs, "/dev") || own_process_dir(p->abs)) {
			synthetic_statx(out, S_IFDIR | 0555, sp->ino);
			return 0;
		}
		return -ENOENT;
	}
	case SP_FILE:
		if (sp->monitor_first) {
			long r = pico_stat(p->abs, p->len, nofollow, out);
			if (r != -ENOSYS)
				return r;
		}
		synthetic_statx(out, S_IFREG | 0444, sp->ino);
		return 0;
	case SP_DEVICE:
		synthetic_statx(out, S_IFCHR | 0666, sp->ino);
		out->stx_rdev_major = 1;
		out->stx_rdev_minor = sp->dev_minor;
		out->stx_uid = out->stx_gid = 0;
		return 0;
	case SP_TTY: {
		long fd = open_tty(O_CLOEXEC);
		if (fd == -ENXIO) {
			/* No terminal: the node is still there (ls -l /dev), as on
			 * Linux, where only opening it fails. */
			synthetic_statx(out, S_IFCHR | 0666, sp->ino);
			out->stx_rdev_major = 5;
			out->stx_rdev_minor = 0;
			out->stx_uid = out->stx_gid = 0;
			return 0;
		}
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
			unsigned perm = 0777;
			if (sp->link == LK_FD) {
				/* As Linux: the fd's access mode, for its owner. */
				long fl = sys2(__NR_fcntl, sp->fd, F_GETFL);
				int acc = fl < 0 ? O_RDWR : (int)(fl & O_ACCMODE);
				perm = acc == O_RDONLY ? 0500 : acc == O_WRONLY ? 0300 : 0700;
			}
			synthetic_statx(out, S_IFLNK | perm, sp->ino);
			if (sp->link == LK_FD)
				out->stx_size = 64;
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
		if (sp->link == LK_SELF || sp->link == LK_DEVFD || sp->link == LK_THREAD_SELF) {
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
	if (sp.kind == SP_MONITOR) {
		/* The monitor writes into the guest's buffer itself. */
		long r = pico_readlink(p->abs, p->len, guest_buf, size > PICO_MAX_PATH ? PICO_MAX_PATH : size);
		*result = r == -ENOSYS ? -ENOENT : r;
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
		unsigned bits = (x.stx_uid == libos_current()->ident.uid) ? (perm >> 6) : (perm & 7);
		if ((unsigned)mode & ~bits & 7)
			r = -EACCES;
	}
	*result = r;
	return 1;
}
