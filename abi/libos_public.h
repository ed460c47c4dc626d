/* What the library OS publishes about its process, for the monitor's /proc.
 *
 * The monitor answers /proc/<pid> for every process of a picoprocess.  The
 * kernel knows most of it (state, times, memory, fds, maps), but some facts
 * exist only in the library OS of that process: the name the program gave
 * itself (prctl(PR_SET_NAME)), its process group and session (virtual), its
 * current directory and its program image as guest paths.  Each library OS
 * keeps them in this structure at the fixed address PICO_LIBOS_PUBLIC_ADDR
 * (inside the loader image, picoproc_abi.h), and the monitor reads it
 * through /proc/<pid>/mem of the guest's own procfs.
 *
 * Everything here is written by an untrusted process about itself: the
 * monitor checks the magic, bounds every string and reads at most one record
 * per lookup; a program can only lie about itself to its own processes.
 *
 * A process that shares its memory with children (vfork, posix_spawn:
 * libos/vmchild.c) publishes each child's record in a slot; the record whose
 * pid is the process asked about wins, otherwise `main` is the one (a fork
 * child's copy of it is its own). */
#ifndef PICO_LIBOS_PUBLIC_H
#define PICO_LIBOS_PUBLIC_H

#include <stdint.h>

#include "picoproc_abi.h"

#define PICO_LIBOS_PUBLIC_MAGIC 0x3162757073736f6cULL /* "lospub1" */
#define PICO_LIBOS_PUBLIC_SLOTS 64

struct pico_libos_proc_public {
	int32_t pid;
	/* The current directory: cwd[cwd_seq & 1]; a writer fills the other
	 * buffer, then bumps cwd_seq (a reader retries if it moved). */
	uint32_t cwd_seq;
	uint32_t umask;
	int64_t pgid, sid;
	char comm[16]; /* "" until prctl(PR_SET_NAME): the image's name then */
	char cwd[2][PICO_MAX_PATH];
};

struct pico_libos_public {
	uint64_t magic;
	uint64_t main;				  /* address of the main record */
	uint64_t slot[PICO_LIBOS_PUBLIC_SLOTS]; /* vm children's records, 0: none */
	char exe[PICO_MAX_PATH];		  /* the program's image, a guest path */
};

#endif
