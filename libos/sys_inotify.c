/* inotify, through the monitor (the mediated inotify call): the instance is
 * a real one, read and polled directly; watches are added by the monitor,
 * which resolves the name in the guest's view and watches only in writable
 * mounts (a read-only view of the host answers EACCES: its changes are the
 * host's activity, not the guest's).  A run has at most 16 instances (made
 * over its life) and 8192 watches. */
#include "libos.h"

#define IN_NONBLOCK_K O_NONBLOCK
#define IN_CLOEXEC_K O_CLOEXEC

/* Implements Linux syscall inotify_init1(2). */
LIBOS_SYSCALL(inotify_init1)
{
	if (a0 & ~(long)(IN_NONBLOCK_K | IN_CLOEXEC_K))
		return -EINVAL;
	return pico_inotify(PICO_INOTIFY_INIT, (int)a0, 0, 0, 0);
}

/* Implements Linux syscall inotify_init(2). */
LIBOS_SYSCALL(inotify_init) { return pico_inotify(PICO_INOTIFY_INIT, 0, 0, 0, 0); }

/* Implements Linux syscall inotify_add_watch(2). */
LIBOS_SYSCALL(inotify_add_watch)
{
	struct guest_path p;
	long r = libos_fetch_path(AT_FDCWD, a1, &p);
	if (r < 0)
		return r;
	return pico_inotify(PICO_INOTIFY_ADD_WATCH, (int)a0, p.abs, p.len, (unsigned)a2);
}

/* Implements Linux syscall inotify_rm_watch(2). */
LIBOS_SYSCALL(inotify_rm_watch) { return pico_inotify(PICO_INOTIFY_RM_WATCH, (int)a0, 0, 0, (unsigned)a1); }
