/* GENERATED from abi/abi_v1.toml by `python -m picoproc.abi.generate`: do not edit. */
/* The picoproc ABI v1 for C: the monitor (native/), the library OS (libos/)
 * and freestanding guests include this one header. */
#ifndef PICOPROC_ABI_H
#define PICOPROC_ABI_H

#include <stddef.h>

#define PICO_ABI_VERSION 1
#define PICO_MEDIATED_BASE 4096
#define PICO_MEDIATED_COUNT 20
#define PICO_DIRECT_COUNT 59
#define PICO_LOADER_FD 1023
#define PICO_LOADER_TEXT_START 0x10000000000UL
#define PICO_LOADER_TEXT_SIZE 0x1000000UL
#define PICO_MAX_PATH 4096
#define PICO_MAX_URI 4200

#define PICO_LIBOS_PUBLIC_ADDR 0x10000f00000
#define PICO_AREA_FD 0x3fe
#define PICO_CHANNEL_FD 0x3fa
#define PICO_AREA_SLOTS 0x4
#define PICO_AREA_SLOT_SIZE 0x4000
#define PICO_AREA_SLOTS_OFFSET 0x1000
#define PICO_AREA_SIZE 0x11000
#define PICO_AREA_REF 0xfe00000000000000
#define PICO_AREA_REF_MASK 0xff00000000000000
#define PICO_AREA_FD_VIA_CHANNEL 0x43484e4c
#define PICO_FD_ON_CHANNEL 0x100000000
#define PICO_RESERVED_FD_BASE 0x3fa
#define PICO_OPEN_EXEC 0x40000000
#define PICO_NOTE_EMULATED 0x100000000
#define PICO_TASK_INFO_WORDS 0xd
#define PICO_XATTR_GET 0x0
#define PICO_XATTR_LIST 0x1
#define PICO_XATTR_SET 0x2
#define PICO_XATTR_REMOVE 0x3
#define PICO_XATTR_NOFOLLOW 0x8
#define PICO_INOTIFY_INIT 0x0
#define PICO_INOTIFY_ADD_WATCH 0x1
#define PICO_INOTIFY_RM_WATCH 0x2
#define PICO_INOTIFY_MAX_INSTANCES 0x10
#define PICO_INOTIFY_MAX_WATCHES 0x2000

/* Mediated call numbers (the guest issues them as syscalls). */
#define PICO_NR_OPEN 4096
#define PICO_NR_STAT 4097
#define PICO_NR_READLINK 4098
#define PICO_NR_ACCESS 4099
#define PICO_NR_MKDIR 4100
#define PICO_NR_UNLINK 4101
#define PICO_NR_RENAME 4102
#define PICO_NR_SYMLINK 4103
#define PICO_NR_LINK 4104
#define PICO_NR_CHMOD 4105
#define PICO_NR_CHOWN 4106
#define PICO_NR_UTIMENS 4107
#define PICO_NR_TRUNCATE 4108
#define PICO_NR_STATFS 4109
#define PICO_NR_NOTE_UNSUPPORTED 4110
#define PICO_NR_TASK_INFO 4111
#define PICO_NR_MKNOD 4112
#define PICO_NR_XATTR 4113
#define PICO_NR_TTY_IOCTL 4114
#define PICO_NR_INOTIFY 4115

/* X-macros: X(name, linux_nr) for each direct call; X(name, nr, nargs) for each
 * mediated call. */
#define PICO_DIRECT_CALLS(X) \
	X(read, 0) \
	X(write, 1) \
	X(readv, 19) \
	X(writev, 20) \
	X(pread64, 17) \
	X(pwrite64, 18) \
	X(lseek, 8) \
	X(close, 3) \
	X(dup3, 292) \
	X(fcntl, 72) \
	X(ioctl, 16) \
	X(fstat, 5) \
	X(ftruncate, 77) \
	X(fsync, 74) \
	X(getdents64, 217) \
	X(pipe2, 293) \
	X(socketpair, 53) \
	X(sendmsg, 46) \
	X(recvmsg, 47) \
	X(sendto, 44) \
	X(recvfrom, 45) \
	X(shutdown, 48) \
	X(accept4, 288) \
	X(getsockname, 51) \
	X(setsockopt, 54) \
	X(getsockopt, 55) \
	X(eventfd2, 290) \
	X(ppoll, 271) \
	X(epoll_create1, 291) \
	X(epoll_ctl, 233) \
	X(epoll_pwait, 281) \
	X(mmap, 9) \
	X(munmap, 11) \
	X(mprotect, 10) \
	X(mremap, 25) \
	X(madvise, 28) \
	X(brk, 12) \
	X(clone, 56) \
	X(execveat, 322) \
	X(exit, 60) \
	X(exit_group, 231) \
	X(wait4, 61) \
	X(futex, 202) \
	X(set_tid_address, 218) \
	X(set_robust_list, 273) \
	X(gettid, 186) \
	X(getpid, 39) \
	X(getppid, 110) \
	X(arch_prctl, 158) \
	X(rt_sigaction, 13) \
	X(rt_sigprocmask, 14) \
	X(rt_sigreturn, 15) \
	X(sigaltstack, 131) \
	X(kill, 62) \
	X(tgkill, 234) \
	X(restart_syscall, 219) \
	X(clock_gettime, 228) \
	X(clock_nanosleep, 230) \
	X(getrandom, 318) \

#define PICO_MEDIATED_CALLS(X) \
	X(open, 4096, 4) \
	X(stat, 4097, 4) \
	X(readlink, 4098, 4) \
	X(access, 4099, 4) \
	X(mkdir, 4100, 3) \
	X(unlink, 4101, 3) \
	X(rename, 4102, 5) \
	X(symlink, 4103, 4) \
	X(link, 4104, 5) \
	X(chmod, 4105, 4) \
	X(chown, 4106, 5) \
	X(utimens, 4107, 4) \
	X(truncate, 4108, 3) \
	X(statfs, 4109, 3) \
	X(note_unsupported, 4110, 2) \
	X(task_info, 4111, 2) \
	X(mknod, 4112, 3) \
	X(xattr, 4113, 6) \
	X(tty_ioctl, 4114, 3) \
	X(inotify, 4115, 5) \

#if defined(__x86_64__) && !defined(PICO_ABI_NO_WRAPPERS)
#ifdef PICO_ABI_AREA
/* The argument area (PICO_AREA_*), for a caller that holds one (the
 * library OS defines PICO_ABI_AREA and implements these).  A call takes a
 * slot, copies its in-arguments there and passes area references; out-
 * arguments are reserved there and copied back after the call.  When no
 * slot is free (or an argument does not fit) the wrappers pass the
 * caller's own pointers, which the monitor reads from the process. */
struct pico_area_call {
	unsigned int slot;
	unsigned int tag;
	unsigned long used;
};
/* 1 with a slot held, 0 without (no area, or every slot busy). */
int pico_area_begin(struct pico_area_call *c);
/* The area reference of a copy of n bytes of p, or 0 when they do not fit. */
long pico_area_put(struct pico_area_call *c, const void *p, unsigned long n);
/* The area reference of n bytes for a result, or 0. */
long pico_area_reserve(struct pico_area_call *c, unsigned long n);
void pico_area_get(const struct pico_area_call *c, long ref, void *dst, unsigned long n);
/* Before a call that answers with an fd: ask for it on the slot's channel. */
void pico_area_ask_fd(struct pico_area_call *c);
/* After it: the answer, with an fd sent on the channel received (flags: the
 * open flags, for O_CLOEXEC). */
long pico_area_take_fd(struct pico_area_call *c, long answer, int flags);
void pico_area_end(struct pico_area_call *c);
#endif

/* Raw system call with up to six arguments; no libc, no errno: returns -errno. */
static inline long pico_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5)
{
	long ret;
	register long r10 __asm__("r10") = a3;
	register long r8 __asm__("r8") = a4;
	register long r9 __asm__("r9") = a5;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

struct statx;
struct statfs;
struct timespec;

/* One typed wrapper per mediated call: pico_<name>(args...). */
static inline long pico_open(const char *uri, size_t uri_len, int flags, unsigned int mode)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, uri, uri_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			pico_area_ask_fd(&area_);
			long r_ = pico_syscall6(PICO_NR_OPEN, a0_, (long)uri_len, (long)flags, (long)mode, 0, 0);
			r_ = pico_area_take_fd(&area_, r_, flags);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_OPEN, (long)uri, (long)uri_len, (long)flags, (long)mode, 0, 0);
}
static inline long pico_stat(const char *path, size_t path_len, int flags, struct statx *buf)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		long a3_ = pico_area_reserve(&area_, 256);
		ok_ &= a3_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_STAT, a0_, (long)path_len, (long)flags, a3_, 0, 0);
			if (r_ >= 0)
				pico_area_get(&area_, a3_, buf, 256);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_STAT, (long)path, (long)path_len, (long)flags, (long)buf, 0, 0);
}
static inline long pico_readlink(const char *path, size_t path_len, char *buf, size_t buf_len)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		long a2_ = pico_area_reserve(&area_, buf_len);
		ok_ &= a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_READLINK, a0_, (long)path_len, a2_, (long)buf_len, 0, 0);
			if (r_ > 0)
				pico_area_get(&area_, a2_, buf, (unsigned long)r_ < buf_len ? (unsigned long)r_ : buf_len);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_READLINK, (long)path, (long)path_len, (long)buf, (long)buf_len, 0, 0);
}
static inline long pico_access(const char *path, size_t path_len, int mode, int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_ACCESS, a0_, (long)path_len, (long)mode, (long)flags, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_ACCESS, (long)path, (long)path_len, (long)mode, (long)flags, 0, 0);
}
static inline long pico_mkdir(const char *path, size_t path_len, unsigned int mode)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_MKDIR, a0_, (long)path_len, (long)mode, 0, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_MKDIR, (long)path, (long)path_len, (long)mode, 0, 0, 0);
}
static inline long pico_unlink(const char *path, size_t path_len, int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_UNLINK, a0_, (long)path_len, (long)flags, 0, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_UNLINK, (long)path, (long)path_len, (long)flags, 0, 0, 0);
}
static inline long pico_rename(const char *old, size_t old_len, const char *new, size_t new_len, unsigned int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, old, old_len);
		ok_ &= a0_ != 0;
		long a2_ = pico_area_put(&area_, new, new_len);
		ok_ &= a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_RENAME, a0_, (long)old_len, a2_, (long)new_len, (long)flags, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_RENAME, (long)old, (long)old_len, (long)new, (long)new_len, (long)flags, 0);
}
static inline long pico_symlink(const char *target, size_t target_len, const char *path, size_t path_len)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, target, target_len);
		ok_ &= a0_ != 0;
		long a2_ = pico_area_put(&area_, path, path_len);
		ok_ &= a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_SYMLINK, a0_, (long)target_len, a2_, (long)path_len, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_SYMLINK, (long)target, (long)target_len, (long)path, (long)path_len, 0, 0);
}
static inline long pico_link(const char *old, size_t old_len, const char *new, size_t new_len, int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, old, old_len);
		ok_ &= a0_ != 0;
		long a2_ = pico_area_put(&area_, new, new_len);
		ok_ &= a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_LINK, a0_, (long)old_len, a2_, (long)new_len, (long)flags, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_LINK, (long)old, (long)old_len, (long)new, (long)new_len, (long)flags, 0);
}
static inline long pico_chmod(const char *path, size_t path_len, unsigned int mode, int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_CHMOD, a0_, (long)path_len, (long)mode, (long)flags, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_CHMOD, (long)path, (long)path_len, (long)mode, (long)flags, 0, 0);
}
static inline long pico_chown(const char *path, size_t path_len, unsigned int uid, unsigned int gid, int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_CHOWN, a0_, (long)path_len, (long)uid, (long)gid, (long)flags, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_CHOWN, (long)path, (long)path_len, (long)uid, (long)gid, (long)flags, 0);
}
static inline long pico_utimens(const char *path, size_t path_len, const struct timespec *times, int flags)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		long a2_ = times ? pico_area_put(&area_, times, 32) : 0;
		ok_ &= !times || a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_UTIMENS, a0_, (long)path_len, a2_, (long)flags, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_UTIMENS, (long)path, (long)path_len, (long)times, (long)flags, 0, 0);
}
static inline long pico_truncate(const char *path, size_t path_len, long length)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_TRUNCATE, a0_, (long)path_len, (long)length, 0, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_TRUNCATE, (long)path, (long)path_len, (long)length, 0, 0, 0);
}
static inline long pico_statfs(const char *path, size_t path_len, struct statfs *buf)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		long a2_ = pico_area_reserve(&area_, 120);
		ok_ &= a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_STATFS, a0_, (long)path_len, a2_, 0, 0, 0);
			if (r_ >= 0)
				pico_area_get(&area_, a2_, buf, 120);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_STATFS, (long)path, (long)path_len, (long)buf, 0, 0, 0);
}
static inline long pico_note_unsupported(long linux_nr, long arg0)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_NOTE_UNSUPPORTED, (long)linux_nr, (long)arg0, 0, 0, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_NOTE_UNSUPPORTED, (long)linux_nr, (long)arg0, 0, 0, 0, 0);
}
static inline long pico_task_info(int which, unsigned long *buf)
{
	return pico_syscall6(PICO_NR_TASK_INFO, (long)which, (long)buf, 0, 0, 0, 0);
}
static inline long pico_mknod(const char *path, size_t path_len, unsigned int mode)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a0_ = pico_area_put(&area_, path, path_len);
		ok_ &= a0_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_MKNOD, a0_, (long)path_len, (long)mode, 0, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_MKNOD, (long)path, (long)path_len, (long)mode, 0, 0, 0);
}
static inline long pico_xattr(unsigned int op, const char *path, size_t path_len, const char *name, void *value, size_t size)
{
	return pico_syscall6(PICO_NR_XATTR, (long)op, (long)path, (long)path_len, (long)name, (long)value, (long)size);
}
static inline long pico_tty_ioctl(int fd, unsigned int request, unsigned long arg)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_TTY_IOCTL, (long)fd, (long)request, (long)arg, 0, 0, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_TTY_IOCTL, (long)fd, (long)request, (long)arg, 0, 0, 0);
}
static inline long pico_inotify(unsigned int op, int fd_or_flags, const char *path, size_t path_len, unsigned int mask_or_wd)
{
#ifdef PICO_ABI_AREA
	struct pico_area_call area_;
	if (pico_area_begin(&area_)) {
		int ok_ = 1;
		long a2_ = pico_area_put(&area_, path, path_len);
		ok_ &= a2_ != 0;
		if (ok_) {
			long r_ = pico_syscall6(PICO_NR_INOTIFY, (long)op, (long)fd_or_flags, a2_, (long)path_len, (long)mask_or_wd, 0);
			pico_area_end(&area_);
			return r_;
		}
		pico_area_end(&area_);
	}
#endif
	return pico_syscall6(PICO_NR_INOTIFY, (long)op, (long)fd_or_flags, (long)path, (long)path_len, (long)mask_or_wd, 0);
}
#endif /* __x86_64__ && !PICO_ABI_NO_WRAPPERS */

#endif /* PICOPROC_ABI_H */
