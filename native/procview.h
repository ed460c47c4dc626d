/* The guest's /proc: its own processes, seen through a procfs of its pid
 * namespace, and a listing of its /dev.
 *
 * The library OS answers what it knows of its own process (the exe, cwd and
 * fd links, cmdline, comm, the virtual host description) and forwards the
 * rest of /proc to the monitor as ordinary mediated calls on /proc paths:
 * listings, other processes, the numbers only the kernel knows (state,
 * times, memory, threads, maps, fds).  The monitor answers from two
 * sources, and from nothing else:
 *   - the kernel: a procfs instance of the guest's own pid namespace, made
 *     by the picoprocess's reaper (spawn.c) and held as an fd; host
 *     processes do not exist there, and no fd on it ever reaches the guest;
 *   - the library OS of the process asked about: what only it knows (its
 *     name, cwd, image, process group and session as the program sees
 *     them), read from its memory at PICO_LIBOS_PUBLIC_ADDR
 *     (abi/libos_public.h) and treated as hostile.
 * Host paths the kernel shows (maps, fd links) are translated back into the
 * guest's view through its mount table, or not shown; the reaper (pid 1)
 * shows nothing of the monitor it was cloned from.  Text goes back as a
 * sealed memfd; a listing as a read-only directory the monitor builds in a
 * scratch directory of its own, so getdents64 (a direct call) lists exactly
 * what the guest may see (never the loader fd).
 *
 * Paths are taken as the guest sent them and parsed component by component:
 * "." and ".." and empty components are ENOENT, never resolved. */
#ifndef PICO_PROCVIEW_H
#define PICO_PROCVIEW_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mediate_fs.h"

struct statx;

struct pico_proc_view {
	int procfd;  /* the guest's procfs (an O_PATH fd on its root), -1: none */
	int listdir; /* where listings are built (the monitor's scratch), -1: none */
	const struct pico_fs_policy *fs;
	int64_t owner;	   /* names this guest's listings */
	unsigned listings; /* listings made so far */
};

/* Is this guest path one the view answers ("/proc", "/proc/...", "/dev")? */
int pico_proc_is_view_path(const char *path, size_t len);
/* Each returns >= 0 or -errno; -ENOSYS when the guest has no view (the
 * library OS then answers what it can itself). */
/* caller: the calling thread's host pid (a listing of its own fds shows
 * the fd the listing itself becomes, as Linux's does). */
long pico_proc_open(struct pico_proc_view *v, const char *path, size_t len, int flags, pid_t caller);
long pico_proc_stat(struct pico_proc_view *v, const char *path, size_t len, int nofollow,
		    struct statx *out);
long pico_proc_readlink(struct pico_proc_view *v, const char *path, size_t len, char *out, size_t cap);
long pico_proc_access(struct pico_proc_view *v, const char *path, size_t len, int mode);
/* Closes the view's fds and removes its listings. */
void pico_proc_view_release(struct pico_proc_view *v);

#endif
