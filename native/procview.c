/* The guest's /proc and /dev listing (see procview.h). */
#define _GNU_SOURCE
#include "procview.h"
#include "denial.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "libos_public.h"
#include "picoproc_abi.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* Bounds: what one request may make the monitor read or write. */
#define TEXT_MAX (4u << 20)	/* generated text (maps of a large program) */
#define ARGS_MAX (128u << 10)	/* a process's argument or environment area */
#define LISTING_MAX 4096	/* entries in one listing */
#define LISTINGS_PER_GUEST 8	/* live listing directories per guest */
#define INIT_PID 1		/* the reaper: shows nothing of the monitor */
#define INIT_NAME "picoproc-init"
/* The library OS generates some /proc text itself (/proc/stat, meminfo...)
 * and needs a file to put it in that readers may seek in and read again
 * (procps does): a pipe is not, and memfd_create is not in the ABI.  This
 * name gives it an empty memfd; to anyone else it is just that. */
#define TEXT_NAME ".picoproc-text"

/* ---- small text buffer ---- */

struct text {
	char *buf;
	size_t len, cap;
	int overflow;
};

/* The fds of a picoprocess that are picoproc's (its channels, argument
 * area and loader fd): its /proc shows none of them, as the library OS
 * answers EBADF for them. */
static int is_picoprocs_fd(long fd)
{
	return fd >= PICO_RESERVED_FD_BASE && fd <= PICO_LOADER_FD;
}

static void text_add(struct text *t, const char *s, size_t n)
{
	if (t->overflow)
		return;
	if (t->len + n > TEXT_MAX) {
		t->overflow = 1;
		return;
	}
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap : 4096;
		while (cap < t->len + n)
			cap *= 2;
		char *grown = realloc(t->buf, cap);
		if (!grown) {
			t->overflow = 1;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
}

static void text_str(struct text *t, const char *s) { text_add(t, s, strlen(s)); }

static void text_fmt(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_fmt(struct text *t, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		text_add(t, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ---- the guest's procfs ---- */

static int open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

/* Reads a whole procfs file (at most max bytes) into t; 0 or -errno. */
static long read_proc(int procfd, const char *rel, struct text *t, size_t max)
{
	int fd = open_beneath(procfd, rel, O_RDONLY);
	if (fd < 0)
		return fd == -ENOENT || fd == -ESRCH ? -ENOENT : fd;
	char chunk[8192];
	long ret = 0;
	size_t start = t->len;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = errno == ESRCH ? -ENOENT : -errno;
			break;
		}
		if (n == 0)
			break;
		size_t room = max - (t->len - start);
		text_add(t, chunk, (size_t)n < room ? (size_t)n : room);
		if ((size_t)n >= room)
			break;
	}
	close(fd);
	return ret;
}

/* ---- parsing the guest's path ---- */

enum node {
	N_NONE,
	N_ROOT,	   /* /proc */
	N_DEV,	   /* /dev */
	N_MOUNTS,  /* /proc/mounts */
	N_PID,	   /* /proc/P */
	N_FILE,	   /* /proc/P/<file> */
	N_LINK,	   /* /proc/P/{exe,cwd,root} */
	N_FDDIR,   /* /proc/P/fd */
	N_FD,	   /* /proc/P/fd/N */
	N_INFODIR, /* /proc/P/fdinfo */
	N_INFO,	   /* /proc/P/fdinfo/N */
	N_TASKDIR, /* /proc/P/task */
	N_TEXT,	   /* /proc/.picoproc-text: an empty file for the library OS's own text */
};

struct target {
	enum node node;
	long pid, tid; /* tid: under task/T (0: the process itself) */
	long fd;
	char name[16]; /* N_FILE, N_LINK */
};

static const char *const pid_files[] = {"stat",	  "statm",  "status", "cmdline", "comm",
					"environ", "maps",   "limits", "mountinfo", "mounts"};
static const char *const task_files[] = {"stat", "statm", "status", "comm"};
static const char *const pid_links[] = {"exe", "cwd", "root"};

static int in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, list[i]))
			return 1;
	return 0;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A decimal number > 0 that fits an int, or -1. */
static long number(const char *s)
{
	long v = 0;
	if (!*s || *s == '0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > 0x7fffffff)
			return -1;
	}
	return v;
}

static int parse(const char *path, size_t len, struct target *t)
{
	char comp[8][32];
	size_t n = 0;
	memset(t, 0, sizeof(*t));
	if (len == 4 && !memcmp(path, "/dev", 4)) {
		t->node = N_DEV;
		return 0;
	}
	if (len < 5 || memcmp(path, "/proc", 5) || (len > 5 && path[5] != '/'))
		return -ENOENT;
	for (size_t i = 5; i < len;) {
		i++; /* the slash */
		size_t start = i;
		while (i < len && path[i] != '/')
			i++;
		size_t cl = i - start;
		if (cl == 0 || cl >= sizeof(comp[0]) || n == COUNT(comp))
			return -ENOENT;
		memcpy(comp[n], path + start, cl);
		comp[n][cl] = 0;
		if (!strcmp(comp[n], ".") || !strcmp(comp[n], ".."))
			return -ENOENT;
		n++;
	}
	if (n == 0) {
		t->node = N_ROOT;
		return 0;
	}
	if (n == 1 && !strcmp(comp[0], "mounts")) {
		t->node = N_MOUNTS;
		return 0;
	}
	if (n == 1 && !strcmp(comp[0], TEXT_NAME)) {
		t->node = N_TEXT;
		return 0;
	}
	if ((t->pid = number(comp[0])) < 0)
		return -ENOENT;
	size_t k = 1;
	if (n >= 3 && !strcmp(comp[1], "task")) {
		if ((t->tid = number(comp[2])) < 0)
			return -ENOENT;
		k = 3;
	} else if (n == 2 && !strcmp(comp[1], "task")) {
		t->node = N_TASKDIR;
		return 0;
	}
	if (n == k) {
		t->node = N_PID;
		return 0;
	}
	const char *c = comp[k];
	if (n == k + 1) {
		if (t->tid ? in_list(c, task_files, COUNT(task_files)) : in_list(c, pid_files, COUNT(pid_files))) {
			t->node = N_FILE;
		} else if (in_list(c, pid_links, COUNT(pid_links))) {
			t->node = N_LINK;
		} else if (!t->tid && !strcmp(c, "fd")) {
			t->node = N_FDDIR;
		} else if (!t->tid && !strcmp(c, "fdinfo")) {
			t->node = N_INFODIR;
		} else {
			return -ENOENT;
		}
		snprintf(t->name, sizeof(t->name), "%.15s", c);
		return 0;
	}
	if (n == k + 2 && !t->tid && (!strcmp(c, "fd") || !strcmp(c, "fdinfo"))) {
		const char *d = comp[k + 1];
		/* "0" is an fd: number() refuses a leading zero. */
		t->fd = !strcmp(d, "0") ? 0 : number(d);
		if (t->fd < 0 || is_picoprocs_fd(t->fd))
			return -ENOENT;
		t->node = c[2] == 0 ? N_FD : N_INFO;
		return 0;
	}
	return -ENOENT;
}

/* "P" or "P/task/T": the procfs directory of the target, if it exists. */
static int proc_dir(const struct pico_proc_view *v, const struct target *t, char *rel, size_t cap,
		    struct stat *st)
{
	if (t->tid)
		snprintf(rel, cap, "%ld/task/%ld", t->pid, t->tid);
	else
		snprintf(rel, cap, "%ld", t->pid);
	struct stat own;
	if (fstatat(v->procfd, rel, st ? st : &own, AT_SYMLINK_NOFOLLOW) < 0)
		return -ENOENT;
	return 0;
}

/* ---- what the library OS of a process publishes ---- */

struct facts {
	int have;
	char comm[16];
	char exe[PICO_MAX_PATH];
	char cwd[PICO_MAX_PATH];
	long pgid, sid;
	unsigned umask;
};

static int read_at(int fd, uint64_t addr, void *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len, (off_t)addr);
	return n == (ssize_t)len ? 0 : -1;
}

static int valid_path(char *s, size_t cap)
{
	s[cap - 1] = 0;
	return s[0] == '/';
}

/* Reads the facts of process pid from its library OS (never the reaper's). */
static void read_facts(const struct pico_proc_view *v, long pid, struct facts *f)
{
	memset(f, 0, sizeof(*f));
	if (pid == INIT_PID)
		return;
	char rel[32];
	snprintf(rel, sizeof(rel), "%ld/mem", pid);
	int fd = open_beneath(v->procfd, rel, O_RDONLY);
	if (fd < 0)
		return;
	struct pico_libos_public pub;
	if (read_at(fd, PICO_LIBOS_PUBLIC_ADDR, &pub, sizeof(pub)) < 0 || pub.magic != PICO_LIBOS_PUBLIC_MAGIC)
		goto out;
	uint64_t record = pub.main;
	for (int i = 0; i < PICO_LIBOS_PUBLIC_SLOTS; i++) {
		int32_t spid;
		if (pub.slot[i] && read_at(fd, pub.slot[i], &spid, sizeof(spid)) == 0 && spid == pid) {
			record = pub.slot[i];
			break;
		}
	}
	struct pico_libos_proc_public rec;
	for (int tries = 0; tries < 4; tries++) {
		uint32_t seq_after;
		if (read_at(fd, record, &rec, sizeof(rec)) < 0 ||
		    read_at(fd, record + offsetof(struct pico_libos_proc_public, cwd_seq), &seq_after,
			    sizeof(seq_after)) < 0)
			goto out;
		if (seq_after == rec.cwd_seq)
			break;
	}
	memcpy(f->cwd, rec.cwd[rec.cwd_seq & 1], sizeof(f->cwd));
	memcpy(f->exe, pub.exe, sizeof(f->exe));
	memcpy(f->comm, rec.comm, sizeof(f->comm));
	f->comm[sizeof(f->comm) - 1] = 0;
	if (!valid_path(f->cwd, sizeof(f->cwd)))
		strcpy(f->cwd, "/");
	if (!valid_path(f->exe, sizeof(f->exe)))
		f->exe[0] = 0;
	for (char *c = f->comm; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == '\n')
			*c = '?';
	f->pgid = rec.pgid > 0 && rec.pgid <= 0x7fffffff ? rec.pgid : pid;
	f->sid = rec.sid > 0 && rec.sid <= 0x7fffffff ? rec.sid : pid;
	f->umask = rec.umask & 0777;
	f->have = 1;
out:
	close(fd);
}

/* The program's argv out of the kernel's argument area, which holds the
 * loader's: "picoproc-loader [--opt=...] -- PATH ARGV0 ARGS..." */
static long program_args(const struct pico_proc_view *v, long pid, struct text *out, const char **path)
{
	struct text raw = {0};
	char rel[32];
	snprintf(rel, sizeof(rel), "%ld/cmdline", pid);
	long r = read_proc(v->procfd, rel, &raw, ARGS_MAX);
	*path = NULL;
	if (r < 0) {
		free(raw.buf);
		return r;
	}
	size_t i = 0;
	int seen_sep = 0;
	while (i < raw.len) {
		const char *s = raw.buf + i;
		size_t n = strnlen(s, raw.len - i);
		i += n + 1;
		if (!seen_sep) {
			seen_sep = n == 2 && !memcmp(s, "--", 2);
			continue;
		}
		if (!*path) {
			static __thread char path_copy[PICO_MAX_PATH];
			snprintf(path_copy, sizeof(path_copy), "%.*s", (int)n, s);
			*path = path_copy;
			continue;
		}
		text_add(out, s, n);
		text_add(out, "", 1);
	}
	free(raw.buf);
	return 0;
}

static void comm_of(const struct pico_proc_view *v, long pid, const struct facts *f, char out[16])
{
	if (pid == INIT_PID) {
		snprintf(out, 16, "%.15s", INIT_NAME);
		return;
	}
	if (f->have && f->comm[0]) {
		snprintf(out, 16, "%.15s", f->comm);
		return;
	}
	/* No library OS state (yet): the name of the image the loader was
	 * asked to run, as the kernel names a process after its exec. */
	struct text args = {0};
	const char *path = NULL;
	program_args(v, pid, &args, &path);
	const char *base = path ? strrchr(path, '/') : NULL;
	snprintf(out, 16, "%.15s", base ? base + 1 : path ? path : "?");
	free(args.buf);
}

/* ---- generated files ---- */

/* stat: the kernel's numbers, the library OS's name, group and session. */
static long gen_stat(const struct pico_proc_view *v, const struct target *t, const char *rel, struct text *o)
{
	struct text raw = {0};
	char path[64];
	snprintf(path, sizeof(path), "%s/stat", rel);
	long r = read_proc(v->procfd, path, &raw, 4096);
	if (r < 0 || !raw.len) {
		free(raw.buf);
		return r < 0 ? r : -ENOENT;
	}
	text_add(&raw, "", 1);
	char *close_paren = strrchr(raw.buf, ')');
	if (!close_paren) {
		free(raw.buf);
		return -EIO;
	}
	struct facts f;
	read_facts(v, t->pid, &f);
	char comm[16];
	comm_of(v, t->pid, &f, comm);
	/* Fields after "(comm) ": state ppid pgrp session ... */
	char *field[64];
	size_t nf = 0;
	for (char *s = strtok(close_paren + 1, " \n"); s && nf < COUNT(field); s = strtok(NULL, " \n"))
		field[nf++] = s;
	text_fmt(o, "%ld (%s)", t->tid ? t->tid : t->pid, comm);
	for (size_t i = 0; i < nf; i++) {
		char num[24];
		const char *val = field[i];
		if (f.have && (i == 2 || i == 3)) {
			snprintf(num, sizeof(num), "%ld", i == 2 ? f.pgid : f.sid);
			val = num;
		}
		/* vsize, rss, and the code/stack addresses of the reaper are
		 * the monitor's: none of the guest's business. */
		if (t->pid == INIT_PID && (i == 20 || i == 21 || (i >= 23 && i <= 27) || i >= 42))
			val = "0";
		text_str(o, " ");
		text_str(o, val);
	}
	text_str(o, "\n");
	free(raw.buf);
	return 0;
}

static long gen_status(const struct pico_proc_view *v, const struct target *t, const char *rel, struct text *o)
{
	struct text raw = {0};
	char path[64];
	snprintf(path, sizeof(path), "%s/status", rel);
	long r = read_proc(v->procfd, path, &raw, 16384);
	if (r < 0) {
		free(raw.buf);
		return r;
	}
	text_add(&raw, "", 1);
	struct facts f;
	read_facts(v, t->pid, &f);
	char comm[16];
	comm_of(v, t->pid, &f, comm);
	for (char *line = raw.buf, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (!strncmp(line, "Name:", 5)) {
			text_fmt(o, "Name:\t%s\n", comm);
		} else if (!strncmp(line, "Umask:", 6) && f.have) {
			text_fmt(o, "Umask:\t%04o\n", f.umask);
		} else if (!strncmp(line, "NSpgid:", 7) && f.have) {
			text_fmt(o, "NSpgid:\t%ld\n", f.pgid);
		} else if (!strncmp(line, "NSsid:", 6) && f.have) {
			text_fmt(o, "NSsid:\t%ld\n", f.sid);
		} else if (!strncmp(line, "Cpus_allowed", 12) || !strncmp(line, "Mems_allowed", 12)) {
			/* The host's CPU and memory topology. */
		} else if (t->pid == INIT_PID && (!strncmp(line, "Vm", 2) || !strncmp(line, "Rss", 3) ||
						  !strncmp(line, "Hugetlb", 7))) {
			/* The reaper's memory is the monitor's. */
		} else {
			text_str(o, line);
			text_str(o, "\n");
		}
	}
	free(raw.buf);
	return 0;
}

/* maps: every mapping, named in the guest's view. */
static long gen_maps(const struct pico_proc_view *v, const struct target *t, const char *rel, struct text *o)
{
	if (t->pid == INIT_PID)
		return 0;
	struct text raw = {0};
	char path[64];
	snprintf(path, sizeof(path), "%s/maps", rel);
	long r = read_proc(v->procfd, path, &raw, TEXT_MAX);
	if (r < 0) {
		free(raw.buf);
		return r;
	}
	text_add(&raw, "", 1);
	for (char *line = raw.buf, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		unsigned long start, end, offset, ino;
		unsigned major, minor;
		char perms[8];
		int name_at = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &start, &end, perms, &offset, &major, &minor, &ino,
			   &name_at) < 7) {
			continue;
		}
		const char *name = line + name_at;
		text_add(o, line, (size_t)name_at);
		if (name[0] == '/' && strncmp(name, "/memfd:", 7)) {
			char host[PICO_MAX_PATH + 32], guest[PICO_MAX_PATH + 32];
			snprintf(host, sizeof(host), "%s", name);
			char *deleted = strstr(host, " (deleted)");
			if (deleted)
				*deleted = 0;
			long n = pico_fs_guest_path_of(v->fs, makedev(major, minor), (ino_t)ino, host, strlen(host),
						       guest, sizeof(guest));
			if (n > 0) {
				text_add(o, guest, (size_t)n);
				if (deleted)
					text_str(o, " (deleted)");
			} else if (start >= PICO_LOADER_TEXT_START && start < PICO_LOADER_TEXT_START + PICO_LOADER_TEXT_SIZE) {
				text_str(o, "[picoproc-libos]");
			}
		} else if (!strncmp(name, "/memfd:picoproc-area", 20)) {
			/* The argument area the library OS shares with the monitor (a
			 * guest makes no memfd of its own: memfd_create is emulated by
			 * an unnamed file). */
			text_str(o, "[picoproc-area]");
		} else {
			text_str(o, name);
		}
		text_str(o, "\n");
	}
	free(raw.buf);
	return 0;
}

static long gen_args(const struct pico_proc_view *v, const struct target *t, struct text *o, int environ)
{
	if (t->pid == INIT_PID)
		return 0;
	if (!environ) {
		const char *path;
		return program_args(v, t->pid, o, &path);
	}
	char rel[32];
	snprintf(rel, sizeof(rel), "%ld/environ", t->pid);
	return read_proc(v->procfd, rel, o, ARGS_MAX);
}

static const char *fstype_name(long type)
{
	switch (type) {
	case 0xEF53: return "ext4";
	case 0x01021994: return "tmpfs";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x794c7630: return "overlay";
	case 0x6969: return "nfs";
	case 0x65735546: return "fuse";
	case 0x9fa0: return "proc";
	default: return "unknown";
	}
}

/* mountinfo, or mounts: the guest's view, the manifest's mounts, "/"
 * first; no host path or device name. */
static void mount_line(struct text *o, int mountinfo, int id, int parent, const char *guest, size_t n, dev_t dev,
		       const char *type, int writable, int exec)
{
	const char *rw = writable == PICO_MOUNT_RO ? "ro" : "rw";
	if (mountinfo)
		text_fmt(o, "%d %d %u:%u / ", id, parent, major(dev), minor(dev));
	else
		text_fmt(o, "%s ", type);
	text_add(o, guest, n);
	if (mountinfo)
		text_fmt(o, " %s,nosuid,nodev%s - %s %s %s\n", rw, exec ? "" : ",noexec", type, type, rw);
	else
		text_fmt(o, " %s %s,nosuid,nodev%s 0 0\n", type, rw, exec ? "" : ",noexec");
}

static long gen_mounts(const struct pico_proc_view *v, struct text *o, int mountinfo)
{
	const char *guest;
	dev_t dev;
	long fstype;
	int writable, exec;
	size_t n;
	int root = 0;
	for (size_t i = 0; (n = pico_fs_policy_mount(v->fs, i, &guest, &dev, &fstype, &writable, &exec)); i++)
		if (n == 1) {
			mount_line(o, mountinfo, 1, 0, guest, n, dev, fstype_name(fstype), writable, exec);
			root = 1;
		}
	if (!root) /* "/" holds only the mount points */
		mount_line(o, mountinfo, 1, 0, "/", 1, makedev(0, 1), "picoproc", PICO_MOUNT_RO, 1);
	for (size_t i = 0; (n = pico_fs_policy_mount(v->fs, i, &guest, &dev, &fstype, &writable, &exec)); i++)
		if (n > 1)
			mount_line(o, mountinfo, (int)i + 2, 1, guest, n, dev, fstype_name(fstype), writable, exec);
	return 0;
}

static long gen_fdinfo(const struct pico_proc_view *v, const struct target *t, struct text *o)
{
	struct text raw = {0};
	char rel[64];
	snprintf(rel, sizeof(rel), "%ld/fdinfo/%ld", t->pid, t->fd);
	long r = read_proc(v->procfd, rel, &raw, 16384);
	if (r < 0) {
		free(raw.buf);
		return r;
	}
	text_add(&raw, "", 1);
	for (char *line = raw.buf, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (strncmp(line, "mnt_id:", 7)) { /* the host's mount ids */
			text_str(o, line);
			text_str(o, "\n");
		}
	}
	free(raw.buf);
	return 0;
}

/* A sealed memfd holding the text: what the guest reads. */
static long text_fd(const struct text *t, int flags)
{
	if (t->overflow)
		return -EFBIG;
	int fd = memfd_create("picoproc-proc", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	while (done < t->len) {
		ssize_t n = write(fd, t->buf + done, t->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;
			close(fd);
			return -err;
		}
		done += (size_t)n;
	}
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	lseek(fd, 0, SEEK_SET);
	if (flags & O_NONBLOCK)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static long gen_file(struct pico_proc_view *v, const struct target *t, int flags)
{
	char rel[48];
	struct text o = {0};
	long r = 0;
	if (t->node == N_MOUNTS) {
		r = gen_mounts(v, &o, 0);
	} else if (t->node == N_INFO) {
		r = gen_fdinfo(v, t, &o);
	} else {
		if (proc_dir(v, t, rel, sizeof(rel), NULL) < 0)
			return -ENOENT;
		const char *n = t->name;
		if (!strcmp(n, "stat")) {
			r = gen_stat(v, t, rel, &o);
		} else if (!strcmp(n, "status")) {
			r = gen_status(v, t, rel, &o);
		} else if (!strcmp(n, "maps")) {
			r = gen_maps(v, t, rel, &o);
		} else if (!strcmp(n, "cmdline") || !strcmp(n, "environ")) {
			r = gen_args(v, t, &o, n[0] == 'e');
		} else if (!strcmp(n, "comm")) {
			struct facts f;
			char comm[16];
			read_facts(v, t->pid, &f);
			comm_of(v, t->pid, &f, comm);
			text_fmt(&o, "%s\n", comm);
		} else if (!strcmp(n, "mountinfo") || !strcmp(n, "mounts")) {
			r = gen_mounts(v, &o, n[5] == 'i');
		} else if (!strcmp(n, "statm") || !strcmp(n, "limits")) {
			char path[64];
			snprintf(path, sizeof(path), "%s/%s", rel, n);
			if (t->pid == INIT_PID && n[4] == 'm')
				text_str(&o, "0 0 0 0 0 0 0\n");
			else
				r = read_proc(v->procfd, path, &o, 16384);
		} else {
			r = -ENOENT;
		}
	}
	if (r >= 0)
		r = text_fd(&o, flags);
	free(o.buf);
	return r;
}

/* ---- listings ---- */

enum kind { K_FILE, K_DIR, K_LINK };

struct entry {
	char name[24];
	enum kind kind;
};

struct listing {
	struct entry *e;
	size_t n, cap;
};

static void list_add(struct listing *l, const char *name, enum kind kind)
{
	if (l->n == LISTING_MAX)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct entry *grown = realloc(l->e, cap * sizeof(*grown));
		if (!grown)
			return;
		l->e = grown;
		l->cap = cap;
	}
	snprintf(l->e[l->n].name, sizeof(l->e[l->n].name), "%.23s", name);
	l->e[l->n].kind = kind;
	l->n++;
}

/* The caller's process id in the guest's namespace: the last NStgid of its host
 * pid (the notification gives the host's), or -1. */
static long ns_pid_of(pid_t host_pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)host_pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *line = strstr(buf, "\nNStgid:");
	if (!line)
		return -1;
	char *end = strchr(line + 1, '\n');
	if (end)
		*end = 0;
	char *last = strrchr(line, '\t');
	return last ? strtol(last + 1, NULL, 10) : -1;
}

/* The numeric entries of a procfs directory (processes, threads, fds);
 * hide_picoprocs: not picoproc's own fds. */
static long list_numbers(int procfd, const char *rel, struct listing *l, enum kind kind, int hide_picoprocs)
{
	int fd = open_beneath(procfd, rel, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd == -EACCES ? -EACCES : -ENOENT;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		long v = !strcmp(de->d_name, "0") ? 0 : number(de->d_name);
		if (v >= 0 && !(hide_picoprocs && is_picoprocs_fd(v)))
			list_add(l, de->d_name, kind);
	}
	closedir(d);
	return 0;
}

/* Empties (or makes) listing directory `name` in the scratch. */
static int fresh_dir(int listdir, const char *name)
{
	int fd = openat(listdir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (mkdirat(listdir, name, 0755) < 0)
			return -errno;
		fd = openat(listdir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		return fd < 0 ? -errno : fd;
	}
	DIR *d = fdopendir(dup(fd));
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(fd, de->d_name, de->d_type == DT_DIR ? AT_REMOVEDIR : 0);
		closedir(d);
	}
	return fd;
}

/* A read-only directory fd whose entries are the listing's. */
static long make_listing(struct pico_proc_view *v, const struct listing *l)
{
	char name[48];
	snprintf(name, sizeof(name), "g%lld.%u", (long long)v->owner, v->listings++ % LISTINGS_PER_GUEST);
	int dir = fresh_dir(v->listdir, name);
	if (dir < 0)
		return dir;
	/* tmpfs lists the newest entry first: made last to first, the
	 * listing reads in the order given (ascending, as procfs). */
	for (size_t i = l->n; i-- > 0;) {
		const struct entry *e = &l->e[i];
		int fd;
		switch (e->kind) {
		case K_DIR: mkdirat(dir, e->name, 0555); break;
		case K_LINK: symlinkat("/", dir, e->name); break;
		case K_FILE:
			fd = openat(dir, e->name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
			if (fd >= 0)
				close(fd);
			break;
		}
	}
	int ro = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long ret = ro < 0 ? -errno : ro;
	close(dir);
	return ret;
}

static const char *const top_files[] = {"meminfo", "cpuinfo", "stat", "uptime", "loadavg", "version", "mounts"};
static const char *const dev_files[] = {"null", "zero", "full", "random", "urandom", "tty"};
static const char *const dev_links[] = {"stdin", "stdout", "stderr", "fd"};

/* The fd the listing of the caller's own fds will be installed as: the
 * lowest one free (what NOTIF_ADDFD picks), which Linux lists too, since
 * it reads the directory after opening it. */
static void add_own_listing_fd(const struct listing *l, struct listing *out, enum kind kind)
{
	for (long fd = 0; fd < PICO_LOADER_FD + 1024; fd++) {
		char name[24];
		int taken = is_picoprocs_fd(fd);
		snprintf(name, sizeof(name), "%ld", fd);
		for (size_t i = 0; i < l->n && !taken; i++)
			taken = !strcmp(l->e[i].name, name);
		if (!taken) {
			if (fd < PICO_RESERVED_FD_BASE) {
				/* In order: procfs lists fds ascending. */
				size_t at = 0;
				while (at < out->n && strtol(out->e[at].name, NULL, 10) < fd)
					at++;
				list_add(out, name, kind);
				struct entry e = out->e[out->n - 1];
				memmove(&out->e[at + 1], &out->e[at], (out->n - 1 - at) * sizeof(e));
				out->e[at] = e;
			}
			return;
		}
	}
}

static long gen_listing(struct pico_proc_view *v, const struct target *t, pid_t caller)
{
	struct listing l = {0};
	char rel[64];
	long r = 0;
	switch (t->node) {
	case N_ROOT:
		r = list_numbers(v->procfd, ".", &l, K_DIR, 0);
		list_add(&l, "self", K_LINK);
		list_add(&l, "thread-self", K_LINK);
		for (size_t i = 0; i < COUNT(top_files); i++)
			list_add(&l, top_files[i], K_FILE);
		break;
	case N_DEV: {
		for (size_t i = 0; i < COUNT(dev_files); i++)
			list_add(&l, dev_files[i], K_FILE);
		for (size_t i = 0; i < COUNT(dev_links); i++)
			list_add(&l, dev_links[i], K_LINK);
		/* Mounts the manifest shows under /dev (shm, pts...). */
		const char *guest;
		dev_t dev;
		long fstype;
		int writable, exec;
		size_t n;
		for (size_t i = 0; (n = pico_fs_policy_mount(v->fs, i, &guest, &dev, &fstype, &writable, &exec)); i++) {
			if (n <= 5 || memcmp(guest, "/dev/", 5))
				continue;
			char first[24];
			size_t k = 0;
			while (5 + k < n && guest[5 + k] != '/' && k < sizeof(first) - 1) {
				first[k] = guest[5 + k];
				k++;
			}
			first[k] = 0;
			int known = in_list(first, dev_files, COUNT(dev_files)) || in_list(first, dev_links, COUNT(dev_links));
			for (size_t j = 0; j < l.n && !known; j++)
				known = !strcmp(l.e[j].name, first);
			if (!known)
				list_add(&l, first, K_DIR);
		}
		break;
	}
	case N_PID:
		if (proc_dir(v, t, rel, sizeof(rel), NULL) < 0) {
			r = -ENOENT;
			break;
		}
		if (t->tid) {
			for (size_t i = 0; i < COUNT(task_files); i++)
				list_add(&l, task_files[i], K_FILE);
		} else {
			for (size_t i = 0; i < COUNT(pid_files); i++)
				list_add(&l, pid_files[i], K_FILE);
			list_add(&l, "fd", K_DIR);
			list_add(&l, "fdinfo", K_DIR);
			list_add(&l, "task", K_DIR);
		}
		for (size_t i = 0; i < COUNT(pid_links); i++)
			list_add(&l, pid_links[i], K_LINK);
		break;
	case N_FDDIR:
	case N_INFODIR:
		snprintf(rel, sizeof(rel), "%ld/fd", t->pid);
		if (t->pid == INIT_PID)
			break; /* the reaper's fds are the monitor's business */
		r = list_numbers(v->procfd, rel, &l, t->node == N_FDDIR ? K_LINK : K_FILE, 1);
		if (r >= 0 && ns_pid_of(caller) == t->pid) {
			/* Count picoproc's fds as taken: they are open. */
			add_own_listing_fd(&l, &l, t->node == N_FDDIR ? K_LINK : K_FILE);
		}
		break;
	case N_TASKDIR:
		snprintf(rel, sizeof(rel), "%ld/task", t->pid);
		r = list_numbers(v->procfd, rel, &l, K_DIR, 0);
		break;
	default: r = -ENOTDIR;
	}
	if (r >= 0)
		r = make_listing(v, &l);
	free(l.e);
	return r;
}

/* ---- the calls ---- */

int pico_proc_is_view_path(const char *path, size_t len)
{
	return (len == 4 && !memcmp(path, "/dev", 4)) ||
	       (len >= 5 && !memcmp(path, "/proc", 5) && (len == 5 || path[5] == '/'));
}

static int is_dir_node(enum node n)
{
	return n == N_ROOT || n == N_DEV || n == N_PID || n == N_FDDIR || n == N_INFODIR || n == N_TASKDIR;
}

static int available(const struct pico_proc_view *v, const struct target *t)
{
	if (v->listdir < 0 && is_dir_node(t->node))
		return 0;
	return t->node == N_DEV || t->node == N_MOUNTS || t->node == N_TEXT || v->procfd >= 0;
}

long pico_proc_readlink(struct pico_proc_view *v, const char *path, size_t len, char *out, size_t cap)
{
	struct target t;
	long r = parse(path, len, &t);
	if (r < 0)
		return r;
	if (!available(v, &t))
		return -ENOSYS;
	char rel[64];
	if (t.node == N_LINK) {
		if (proc_dir(v, &t, rel, sizeof(rel), NULL) < 0)
			return -ENOENT;
		struct facts f;
		read_facts(v, t.pid, &f);
		const char *target = !strcmp(t.name, "root") ? "/" : !f.have ? NULL : t.name[0] == 'e' ? f.exe : f.cwd;
		if (!target || !*target)
			return -ENOENT;
		size_t n = strlen(target);
		n = n < cap ? n : cap;
		memcpy(out, target, n);
		return (long)n;
	}
	if (t.node != N_FD)
		return -EINVAL;
	if (t.pid == INIT_PID)
		return -ENOENT;
	char host[PICO_MAX_PATH + 32], guest[PICO_MAX_PATH + 32];
	snprintf(rel, sizeof(rel), "%ld/fd/%ld", t.pid, t.fd);
	ssize_t n = readlinkat(v->procfd, rel, host, sizeof(host) - 1);
	if (n < 0)
		return -ENOENT;
	host[n] = 0;
	const char *text = host;
	if (host[0] == '/' && strncmp(host, "/memfd:", 7)) {
		struct stat st;
		char *deleted = strstr(host, " (deleted)");
		if (deleted)
			*deleted = 0;
		long g = -ENOENT;
		if (fstatat(v->procfd, rel, &st, 0) == 0)
			g = pico_fs_guest_path_of(v->fs, st.st_dev, st.st_ino, host, strlen(host), guest,
						  sizeof(guest) - 16);
		if (g < 0)
			snprintf(guest, sizeof(guest), "/[outside the view]");
		else if (deleted)
			strcat(guest, " (deleted)");
		text = guest;
	}
	size_t len_out = strlen(text);
	len_out = len_out < cap ? len_out : cap;
	memcpy(out, text, len_out);
	return (long)len_out;
}

long pico_proc_stat(struct pico_proc_view *v, const char *path, size_t len, int nofollow, struct statx *out)
{
	struct target t;
	long r = parse(path, len, &t);
	if (r < 0)
		return r;
	if (!available(v, &t))
		return -ENOSYS;
	char rel[64];
	struct stat st;
	memset(out, 0, sizeof(*out));
	unsigned mode;
	if (t.node == N_ROOT || t.node == N_DEV) {
		mode = S_IFDIR | 0555;
		memset(&st, 0, sizeof(st));
		if (v->procfd >= 0)
			fstatat(v->procfd, ".", &st, 0);
	} else if (t.node == N_MOUNTS || t.node == N_TEXT) {
		mode = S_IFREG | 0444;
		memset(&st, 0, sizeof(st));
	} else {
		if (proc_dir(v, &t, rel, sizeof(rel), &st) < 0)
			return -ENOENT;
		switch (t.node) {
		case N_PID:
		case N_FDDIR:
		case N_INFODIR:
		case N_TASKDIR: mode = S_IFDIR | 0555; break;
		case N_FILE: mode = S_IFREG | 0444; break;
		case N_INFO:
		case N_FD: {
			struct stat fdst;
			char fdrel[80];
			snprintf(fdrel, sizeof(fdrel), "%ld/fd/%ld", t.pid, t.fd);
			if (t.pid == INIT_PID || fstatat(v->procfd, fdrel, &fdst, AT_SYMLINK_NOFOLLOW) < 0)
				return -ENOENT;
			if (t.node == N_FD && !nofollow) {
				/* Its target, as the guest could fstat the fd itself. */
				if (fstatat(v->procfd, fdrel, &fdst, 0) < 0)
					return -ENOENT;
				st = fdst;
				mode = fdst.st_mode;
				break;
			}
			mode = t.node == N_FD ? (S_IFLNK | 0700) : (S_IFREG | 0400);
			break;
		}
		case N_LINK: {
			if (nofollow) {
				mode = S_IFLNK | 0777;
				break;
			}
			char target[PICO_MAX_PATH];
			long n = pico_proc_readlink(v, path, len, target, sizeof(target) - 1);
			if (n < 0)
				return n;
			target[n] = 0;
			/* What the link leads to answers the stat, but a
			 * refusal there is not a refusal of this path: the
			 * call's record stays an error, not a denial. */
			int denial = pico_denial;
			long ret = pico_fs_stat(v->fs, target, (size_t)n, 0, out);
			pico_denial = denial;
			return ret;
		}
		default: return -ENOENT;
		}
	}
	out->stx_mask = STATX_BASIC_STATS;
	out->stx_mode = (uint16_t)mode;
	out->stx_nlink = S_ISDIR(mode) ? 2 : 1;
	out->stx_uid = st.st_uid;
	out->stx_gid = st.st_gid;
	out->stx_ino = st.st_ino;
	out->stx_size = S_ISDIR(mode) || !S_ISREG(st.st_mode) ? 0 : (uint64_t)st.st_size;
	out->stx_blksize = 1024;
	out->stx_dev_major = major(st.st_dev);
	out->stx_dev_minor = minor(st.st_dev);
	out->stx_rdev_major = major(st.st_rdev);
	out->stx_rdev_minor = minor(st.st_rdev);
	out->stx_atime.tv_sec = out->stx_mtime.tv_sec = out->stx_ctime.tv_sec = st.st_mtim.tv_sec;
	out->stx_atime.tv_nsec = out->stx_mtime.tv_nsec = out->stx_ctime.tv_nsec = (uint32_t)st.st_mtim.tv_nsec;
	return 0;
}

long pico_proc_access(struct pico_proc_view *v, const char *path, size_t len, int mode)
{
	struct statx x;
	long r = pico_proc_stat(v, path, len, 0, &x);
	if (r < 0)
		return r;
	return (mode & 2) ? -EACCES : 0; /* nothing here is writable */
}

long pico_proc_open(struct pico_proc_view *v, const char *path, size_t len, int flags, pid_t caller)
{
	struct target t;
	long r = parse(path, len, &t);
	if (r < 0)
		return r;
	if (!available(v, &t))
		return -ENOSYS;
	/* Only a link leads to an image (the file policy then decides). */
	if ((flags & PICO_OPEN_EXEC) && t.node != N_LINK)
		return -EACCES;
	if (t.node == N_TEXT) {
		int fd = memfd_create("picoproc-text", MFD_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)))
		return -EACCES;
	if (t.node == N_LINK) {
		/* The path it names, opened as the guest could open it. */
		char target[PICO_MAX_PATH];
		long n = pico_proc_readlink(v, path, len, target, sizeof(target) - 1);
		if (n < 0)
			return n;
		/* cwd and root (and a directory asked for): a listing. */
		if (t.name[0] != 'e' || (flags & O_DIRECTORY)) {
			flags = pico_fs_listing_flags(flags);
			if (flags < 0)
				return flags;
		}
		return pico_fs_open(v->fs, target, (size_t)n, flags, 0);
	}
	if (is_dir_node(t.node)) {
		if (t.node == N_PID || t.node == N_FDDIR || t.node == N_INFODIR || t.node == N_TASKDIR) {
			char rel[64];
			if (proc_dir(v, &t, rel, sizeof(rel), NULL) < 0)
				return -ENOENT;
		}
		return gen_listing(v, &t, caller);
	}
	if (flags & O_DIRECTORY)
		return -ENOTDIR;
	if (t.node == N_FD)
		return -EACCES; /* another process's file: its owner may pass it */
	return gen_file(v, &t, flags);
}

void pico_proc_view_release(struct pico_proc_view *v)
{
	if (v->listdir >= 0) {
		for (unsigned i = 0; i < LISTINGS_PER_GUEST && i < v->listings; i++) {
			char name[48];
			snprintf(name, sizeof(name), "g%lld.%u", (long long)v->owner, i);
			int fd = fresh_dir(v->listdir, name);
			if (fd >= 0) {
				close(fd);
				unlinkat(v->listdir, name, AT_REMOVEDIR);
			}
		}
		close(v->listdir);
	}
	if (v->procfd >= 0)
		close(v->procfd);
	v->listdir = v->procfd = -1;
}
