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
LIBOS_SYSCALL(getuid) { return libos_ident.uid; }
LIBOS_SYSCALL(geteuid) { return libos_ident.uid; }
LIBOS_SYSCALL(getgid) { return libos_ident.gid; }
LIBOS_SYSCALL(getegid) { return libos_ident.gid; }

/* Implements Linux syscall getgroups(2): the supplementary groups of the
 * guest identity, those the monitor acts with (none for `nobody`). */
LIBOS_SYSCALL(getgroups)
{
	int size = (int)a0;
	unsigned n = libos_ident.ngroups;
	if (size < 0)
		return -EINVAL;
	if (size == 0)
		return n;
	if ((unsigned)size < n)
		return -EINVAL;
	long r = libos_copy_to_guest((void *)a1, libos_ident.groups, n * sizeof(unsigned));
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
LIBOS_SYSCALL(getresuid) { return put_three_ids(a0, a1, a2, libos_ident.uid); }
LIBOS_SYSCALL(getresgid) { return put_three_ids(a0, a1, a2, libos_ident.gid); }

/* Implements Linux syscalls setuid(2), setgid(2): an unprivileged process
 * may only "change" to the identity it has. */
LIBOS_SYSCALL(setuid) { return (unsigned)a0 == libos_ident.uid ? 0 : -EPERM; }
LIBOS_SYSCALL(setgid) { return (unsigned)a0 == libos_ident.gid ? 0 : -EPERM; }

/* Implements Linux syscall sethostname(2): the guest is unprivileged. */
LIBOS_SYSCALL(sethostname) { return -EPERM; }

/* Implements Linux syscall prlimit64(2) for the calling process only (pid 0
 * or its own).  The values are the library OS's record; the host limits that
 * bind are the monitor's. */
LIBOS_SYSCALL(prlimit64)
{
	long pid = a0;
	unsigned resource = (unsigned)a1;
	if (pid != 0 && pid != sys0(__NR_getpid))
		return -EPERM;
	if (resource >= RLIMIT_NLIMITS_K)
		return -EINVAL;
	struct rlimit64 old = libos_rlimits[resource], new_limit;
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
		libos_rlimits[resource] = new_limit;
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
