/* Identity and host description: uname, uids, rlimits, sysinfo.
 * All virtual: the guest is told what the monitor chose (loader options),
 * never the host's values. */
#include "libos.h"

/* Implements Linux syscall uname(2). */
LIBOS_SYSCALL(uname)
{
	struct new_utsname u;
	memset(&u, 0, sizeof(u));
	memcpy(u.sysname, "Linux", 6);
	memcpy(u.nodename, libos_hostname, libos_strnlen(libos_hostname, 64));
	memcpy(u.release, libos_release, libos_strnlen(libos_release, 64));
	memcpy(u.version, "#1 SMP picoproc", 16);
	memcpy(u.machine, "x86_64", 7);
	memcpy(u.domainname, "(none)", 7);
	return libos_copy_to_guest((void *)a0, &u, sizeof(u));
}

/* Implements Linux syscalls getuid(2), geteuid(2), getgid(2), getegid(2). */
LIBOS_SYSCALL(getuid) { return libos_current()->ident.uid; }
LIBOS_SYSCALL(geteuid) { return libos_current()->ident.uid; }
LIBOS_SYSCALL(getgid) { return libos_current()->ident.gid; }
LIBOS_SYSCALL(getegid) { return libos_current()->ident.gid; }

/* Implements Linux syscall getgroups(2): the supplementary groups of the
 * guest identity, those the monitor acts with (none for `nobody`). */
LIBOS_SYSCALL(getgroups)
{
	int size = (int)a0;
	const struct libos_identity *ident = &libos_current()->ident;
	unsigned n = ident->ngroups;
	if (size < 0)
		return -EINVAL;
	if (size == 0)
		return n;
	if ((unsigned)size < n)
		return -EINVAL;
	long r = libos_copy_to_guest((void *)a1, ident->groups, n * sizeof(unsigned));
	return r < 0 ? r : n;
}

/* Implements Linux syscall setgroups(2): the guest is unprivileged. */
LIBOS_SYSCALL(setgroups)
{
	if ((int)a0 < 0 || a0 > 65536)
		return -EINVAL;
	return -EPERM;
}

static long put_three_ids(long a, long b, long c, unsigned id)
{
	long r;
	if ((r = libos_copy_to_guest((void *)a, &id, sizeof(id))) < 0 ||
	    (r = libos_copy_to_guest((void *)b, &id, sizeof(id))) < 0 ||
	    (r = libos_copy_to_guest((void *)c, &id, sizeof(id))) < 0)
		return r;
	return 0;
}

/* Implements Linux syscalls getresuid(2), getresgid(2). */
LIBOS_SYSCALL(getresuid) { return put_three_ids(a0, a1, a2, libos_current()->ident.uid); }
LIBOS_SYSCALL(getresgid) { return put_three_ids(a0, a1, a2, libos_current()->ident.gid); }

/* An unprivileged process may only "change" an id to one it already has
 * (its real, effective and saved ids are all the guest identity's); -1
 * leaves an id alone.  The kernel takes the ids as 32-bit values. */
static long keep_id(long requested, unsigned current)
{
	unsigned id = (unsigned)requested;
	return id == (unsigned)-1 || id == current ? 0 : -EPERM;
}

/* Implements Linux syscalls setuid(2), setgid(2). */
LIBOS_SYSCALL(setuid) { return (unsigned)a0 == libos_current()->ident.uid ? 0 : -EPERM; }
LIBOS_SYSCALL(setgid) { return (unsigned)a0 == libos_current()->ident.gid ? 0 : -EPERM; }

/* Implements Linux syscalls setreuid(2), setresuid(2) (posix_spawn's
 * POSIX_SPAWN_RESETIDS is setresuid(-1, getuid(), -1)). */
LIBOS_SYSCALL(setreuid)
{
	unsigned uid = libos_current()->ident.uid;
	return keep_id(a0, uid) ?: keep_id(a1, uid);
}
LIBOS_SYSCALL(setresuid)
{
	unsigned uid = libos_current()->ident.uid;
	return keep_id(a0, uid) ?: keep_id(a1, uid) ?: keep_id(a2, uid);
}

/* Implements Linux syscalls setregid(2), setresgid(2). */
LIBOS_SYSCALL(setregid)
{
	unsigned gid = libos_current()->ident.gid;
	return keep_id(a0, gid) ?: keep_id(a1, gid);
}
LIBOS_SYSCALL(setresgid)
{
	unsigned gid = libos_current()->ident.gid;
	return keep_id(a0, gid) ?: keep_id(a1, gid) ?: keep_id(a2, gid);
}

/* Implements Linux syscalls setfsuid(2), setfsgid(2): they return the
 * previous id and never fail; the only id there is the guest's. */
LIBOS_SYSCALL(setfsuid) { return libos_current()->ident.uid; }
LIBOS_SYSCALL(setfsgid) { return libos_current()->ident.gid; }

/* Implements Linux syscall prlimit64(2) for the calling process only (pid 0
 * or its own).  The values are the library OS's record; the host limits that
 * bind are the monitor's. */
LIBOS_SYSCALL(prlimit64)
{
	long pid = a0;
	unsigned resource = (unsigned)a1;
	if ((int)pid < 0)
		return -ESRCH; /* no process has a negative pid */
	if (pid != 0 && pid != sys0(__NR_getpid))
		return sys2(__NR_kill, pid, 0) == -ESRCH ? -ESRCH : -EPERM;
	if (resource >= RLIMIT_NLIMITS_K)
		return -EINVAL;
	struct libos_process *proc = libos_current();
	struct rlimit64 old = proc->rlimits[resource], new_limit;
	if (a2) {
		long r = libos_copy_from_guest(&new_limit, (const void *)a2, sizeof(new_limit));
		if (r < 0)
			return r;
		if (new_limit.rlim_cur > new_limit.rlim_max)
			return -EINVAL;
		/* Raising a hard limit needs privilege. */
		if (new_limit.rlim_max > old.rlim_max)
			return -EPERM;
	}
	if (a3) {
		long r = libos_copy_to_guest((void *)a3, &old, sizeof(old));
		if (r < 0)
			return r;
	}
	if (a2)
		proc->rlimits[resource] = new_limit;
	return 0;
}

/* Implements Linux syscall getrlimit(2). */
LIBOS_SYSCALL(getrlimit) { return libos_sys_prlimit64(0, a0, 0, a1, 0, 0, uc); }

/* Implements Linux syscall setrlimit(2). */
LIBOS_SYSCALL(setrlimit) { return libos_sys_prlimit64(0, a0, a1, 0, 0, 0, uc); }

/* Implements Linux syscall sysinfo(2): uptime from the boot clock, memory and
 * load virtual (the picoprocess does not learn the host's). */
LIBOS_SYSCALL(sysinfo)
{
	struct sysinfo info;
	struct __kernel_timespec ts;
	memset(&info, 0, sizeof(info));
	if (sys2(__NR_clock_gettime, CLOCK_BOOTTIME, &ts) == 0)
		info.uptime = ts.tv_sec;
	info.totalram = 1UL << 30;
	info.freeram = 1UL << 30;
	info.procs = 1;
	info.mem_unit = 1;
	return libos_copy_to_guest((void *)a0, &info, sizeof(info));
}
