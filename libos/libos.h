/* The picoproc library OS: shared declarations.
 *
 * Freestanding: no libc, no %fs (that is the guest's TLS), no allocation in the
 * trap path.  Every host call is an ABI call: a direct syscall the filter
 * allows, or a mediated pico_<call>() from picoproc_abi.h.  Handlers return a
 * result or -errno, like the kernel.
 */
#ifndef PICO_LIBOS_H
#define PICO_LIBOS_H

#include <stddef.h>
#include <stdint.h>

#include "picoproc_abi.h"
#include "linux_abi.h"

/* Everything is linked into one static image at 1 TiB: hidden visibility
 * makes the compiler address every symbol RIP-relative instead of through
 * a GOT entry that the linker cannot relax to a 32-bit absolute. */
#pragma GCC visibility push(hidden)

/* ---- raw system calls (direct ABI calls only) ---- */
static inline long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	return pico_syscall6(nr, a, b, c, d, e, f);
}
#define sys0(n) sys6((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* ---- util.c: freestanding string and memory helpers ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t libos_strlen(const char *s);
size_t libos_strnlen(const char *s, size_t max);
int libos_streq(const char *a, const char *b);
int libos_startswith(const char *s, const char *prefix);
/* Parses a decimal (base 10) or octal (base 8) number; returns 0 on success. */
int libos_parse_ulong(const char *s, unsigned base, unsigned long *out);
/* Writes the decimal form of v into buf (>= 21 bytes); returns its length. */
size_t libos_format_ulong(char *buf, unsigned long v);
/* Bounded string builder: never overflows, remembers whether it was cut. */
struct strbuf {
	char *buf;
	size_t cap, len;
	int overflow;
};
void sb_init(struct strbuf *sb, char *buf, size_t cap);
void sb_add(struct strbuf *sb, const char *s);
void sb_addn(struct strbuf *sb, const char *s, size_t n);
void sb_addnum(struct strbuf *sb, unsigned long v);
/* Appends a NUL and counts it: the next text starts a new string. */
void sb_end_string(struct strbuf *sb);
/* Lexically normalises an absolute path in place; returns its length. */
size_t libos_normalise_path(char *p);
/* Writes a whole message to stderr (best effort). */
void libos_write_stderr(const char *msg, size_t len);

/* ---- guest memory access (usercopy.c) ----
 * The library OS must answer EFAULT for a bad guest pointer, as the kernel
 * does, instead of faulting inside the SIGSYS handler.  These probe every page
 * with a direct syscall that reports EFAULT before touching it. */
long libos_check_readable(const void *p, size_t n);
long libos_check_writable(void *p, size_t n);
long libos_copy_to_guest(void *dst, const void *src, size_t n);
long libos_copy_from_guest(void *dst, const void *src, size_t n);
/* Copies a NUL-terminated guest string into dst (cap bytes including the
 * NUL); -EFAULT, -ENAMETOOLONG (string longer than cap-1) or its length. */
long libos_copy_string_from_guest(char *dst, const char *src, size_t cap);

/* ---- state.c: per-process library-OS state ----
 * Process-wide like the kernel's (threads share it; fork copies it with the
 * memory; exec passes it to the next loader instance in its argv). */
#define LIBOS_MAX_GROUPS 64
struct libos_identity {
	unsigned uid, gid;
	/* Supplementary groups: those the monitor acts with for the guest. */
	unsigned ngroups, groups[LIBOS_MAX_GROUPS];
};
extern struct libos_identity libos_ident;
extern unsigned libos_umask_value;
extern char libos_hostname[65];
extern char libos_release[65];
extern char libos_exe_path[PICO_MAX_PATH];
extern long libos_pgid, libos_sid;
extern struct rlimit64 libos_rlimits[RLIMIT_NLIMITS_K];

/* The current directory, read by many threads, written by chdir.  A reader
 * copies it and retries if a writer ran meanwhile (seqlock); writers are
 * serialised by a spin flag. */
long libos_cwd_get(char *out, size_t cap);
long libos_cwd_set(const char *abs_path);
/* Makes `path` (a guest string already copied into our memory) absolute
 * against dirfd (AT_FDCWD only for now) and normalises "." and ".." and
 * repeated slashes lexically.  Returns the length or -errno. */
long libos_resolve_path(int dirfd, const char *path, char *out, size_t cap);
void libos_rlimits_init(void);
/* Lowers RLIMIT_NOFILE to the real one (probed) unless an option set it. */
void libos_rlimits_probe(int nofile_given);

/* ---- fdtable.c: which guest path each fd names ----
 * Entries are validated by (st_dev, st_ino) on every lookup: close, dup3 and
 * fcntl(F_DUPFD) are direct calls, so the table may be stale. */
void libos_fd_remember(long fd, const char *abs);
void libos_fd_copy(long from, long to);
/* The path of fd into out (st receives its fstat): the length, -EBADF (not
 * open), or -ENOSYS (open, but the library OS never learnt its path). */
long libos_fd_path(long fd, char *out, size_t cap, struct stat *st);
size_t libos_fd_exec_options(char *buf, size_t cap, const char **opts, size_t max_opts);
/* Collapses "//", "/./" and a trailing slash; keeps "..". Returns the length. */
size_t libos_tidy_path(char *p);

/* ---- guest path arguments (sys_fs.c) ----
 * A guest path copied and made absolute in the handler's frame (the trap
 * path allocates nothing).  `room` lets a URI scheme be written just before
 * the path, so "file:/path" needs no second copy. */
#define LIBOS_SCHEME_ROOM 8
struct guest_path {
	char room[LIBOS_SCHEME_ROOM];
	char abs[PICO_MAX_PATH];
	size_t len;
};
/* The path argument at user_ptr, absolute against dirfd (AT_FDCWD: the cwd;
 * a directory fd: its remembered path). */
long libos_fetch_path(int dirfd, long user_ptr, struct guest_path *out);
/* Same, but with AT_EMPTY_PATH in flags and an empty (or NULL) path: the
 * object dirfd itself (its remembered path; AT_FDCWD: the cwd). */
long libos_fetch_target(int dirfd, long user_ptr, int flags, struct guest_path *out);

/* ---- special.c: the library OS's own /dev and /proc ---- */
/* Each returns 1 when the path is one the library OS answers itself (the
 * answer in *result), 0 when it belongs to the monitor.  p->abs may be
 * normalised in place (p->len updated), only for paths under /dev and /proc;
 * the scheme room in front of it may be used for a URI. */
int libos_special_open(struct guest_path *p, int flags, long *result);
int libos_special_stat(struct guest_path *p, int nofollow, struct statx *out, long *result);
/* struct stat -> struct statx (STATX_BASIC_STATS), shared by every stat path. */
void libos_statx_from_stat(struct statx *x, const struct stat *st);
/* Copies at most size bytes of the link's target to the guest's buf. */
int libos_special_readlink(struct guest_path *p, char *guest_buf, size_t size, long *result);
int libos_special_access(struct guest_path *p, int mode, long *result);
/* What the loader learnt that /proc/self shows (set once per image). */
struct libos_proc_info {
	const char *const *argv; /* the program's argv on its initial stack */
	long argc;
	uint64_t stack_top, stack_low;
	int stack_prot;
	uint64_t vdso;
	struct {
		uint64_t start, end, offset;
		uint64_t dev, ino;
		int prot;
		const char *path;
	} maps[24];
	int nmaps;
	unsigned cpus;
};
extern struct libos_proc_info libos_proc;

/* ---- trap.c ---- */
struct ucontext;
/* a0..a5: the argument registers; uc: the trapped thread's saved context
 * (its signal mask there is what the thread gets back on return). */
typedef long (*libos_syscall_fn)(long, long, long, long, long, long, struct ucontext *);
#define LIBOS_NR_MAX 512
extern const libos_syscall_fn libos_syscall_table[LIBOS_NR_MAX];
/* Installs the SIGSYS handler; must run from the loader's text range (the
 * filter allows rt_sigaction there only). */
long libos_install_sigsys_handler(void);
/* Counters for tests and the audit: emulated calls served in this process. */
extern unsigned long libos_trap_count;
/* A traced run (loader option --trace: picoproc trace, learn): the first
 * call of each emulated Linux syscall in this program image is reported to
 * the monitor (pico_note_unsupported with PICO_NOTE_EMULATED), for the
 * run's profile. */
extern int libos_trace;
void libos_note_emulated(unsigned nr);

/* ---- rewrite.c: syscall-site rewriting (the trap-free fast path) ---- */
/* Calls whose `mov $nr,%eax; syscall` sites may be rewritten. */
extern const unsigned char libos_rewritable[LIBOS_NR_MAX];
/* After serving a trap whose syscall instruction ended at ip: rewrite the
 * site, if it has the pattern and nr is rewritable. */
void libos_rewrite_site(uintptr_t ip, unsigned nr);
extern unsigned long libos_fast_count, libos_rewritten_sites;

/* Every handler has this shape: a0..a5 are the raw argument registers. */
#define LIBOS_SYSCALL(name) \
	long libos_sys_##name(long a0, long a1, long a2, long a3, long a4, long a5, struct ucontext *uc)

/* Handlers (sys_*.c), declared for the dispatch table. */
#define LIBOS_HANDLERS(X)                                                                  \
	X(uname) X(getuid) X(geteuid) X(getgid) X(getegid) X(getgroups) X(getresuid)       \
	X(getresgid) X(setuid) X(setgid) X(getcwd) X(chdir) X(fchdir) X(umask) X(getrlimit) \
	X(setrlimit) X(prlimit64) X(sysinfo) X(nanosleep) X(poll) X(select) X(pselect6)    \
	X(dup) X(dup2) X(pipe) X(pipe2) X(epoll_wait) X(epoll_create) X(sched_yield) X(getpgrp)     \
	X(getpgid) X(setpgid) X(getsid) X(setsid) X(rseq) X(rt_sigaction) X(rt_sigprocmask)                  \
	X(rt_sigsuspend) X(pause) X(ppoll) X(epoll_pwait) X(access) X(faccessat) X(faccessat2) X(stat)    \
	X(lstat) X(newfstatat) X(statx) X(open) X(openat) X(creat) X(readlink)             \
	X(readlinkat) X(execve) X(execveat) X(fork) X(vfork) X(time) X(gettimeofday)       \
	X(sethostname) X(close_range) X(mkdir) X(mkdirat) X(unlink) X(unlinkat) X(rmdir)   \
	X(rename) X(renameat) X(renameat2) X(link) X(linkat) X(symlink) X(symlinkat)       \
	X(chmod) X(fchmod) X(fchmodat) X(fchmodat2) X(chown) X(fchown) X(lchown)           \
	X(fchownat) X(utimensat) X(utimes) X(utime) X(futimesat) X(truncate) X(statfs)     \
	X(fstatfs) X(fdatasync) X(sync) X(syncfs) X(sched_getaffinity) X(sched_setaffinity) \
	X(getcpu) X(sendfile) X(prctl) X(fadvise64) X(copy_file_range) X(getrusage) X(times) \
	X(getxattr) X(lgetxattr) X(fgetxattr) X(listxattr) X(llistxattr) X(flistxattr)      \
	X(setxattr) X(lsetxattr) X(fsetxattr) X(removexattr) X(lremovexattr) X(fremovexattr) \
	X(flock) X(alarm) X(getitimer) X(setitimer) X(close) X(dup3) X(socket) X(connect)     \
	X(bind) X(listen) X(getpeername) X(accept) X(memfd_create) X(getsockname) \
	X(setsockopt) X(getsockopt) X(timer_create) X(timer_settime) X(timer_gettime)    \
	X(timer_getoverrun) X(timer_delete) X(rt_sigtimedwait) X(sched_getscheduler)       \
	X(sched_getparam) X(sched_setparam) X(sched_setscheduler) X(sched_get_priority_max) \
	X(sched_get_priority_min) X(sched_rr_get_interval) X(msync) X(fallocate) X(splice) X(tee) \
	X(fcntl) X(rt_sigpending) X(setgroups) X(clock_getres) X(clock_settime) X(settimeofday) X(preadv) X(pwritev) X(preadv2) \
	X(pwritev2) X(getpriority) X(setpriority) X(pidfd_open) X(pidfd_send_signal) \
	X(inotify_init) X(inotify_init1) X(inotify_add_watch) X(inotify_rm_watch) X(mknod) X(mknodat) X(signalfd) X(signalfd4) X(timerfd_create) X(timerfd_settime) X(timerfd_gettime) X(ioctl)
#define LIBOS_DECLARE(name) LIBOS_SYSCALL(name);
LIBOS_HANDLERS(LIBOS_DECLARE)

/* ---- signal state (sys_signal.c) ---- */
/* Runs the guest's virtual SIGSYS disposition for a SIGSYS that did not come
 * from the filter (e.g. kill(getpid(), SIGSYS)). */
void libos_deliver_guest_sigsys(int sig, siginfo_t *si, void *uc);

/* ---- sys_timer.c: timers served by helper threads ---- */
#define LIBOS_MAX_TIMERS 32
struct itimerval_k {
	struct __kernel_old_timeval interval, value;
};
long libos_cpu_getitimer(int which, struct itimerval_k *out);
long libos_cpu_setitimer(int which, const struct itimerval_k *nv, struct itimerval_k *old);
/* 1 when tid is a helper thread of the library OS (its SIGSYS pokes are
 * ours): a timer's, or the signalfd reader (sys_sigwait.c). */
int libos_timer_is_helper(long tid);
int libos_signalfd_is_helper(long tid);
/* Starts fn(arg) on a helper thread (blocking every signal is fn's job);
 * *tid_word is cleared by the kernel when it exits, then *stack may go. */
long libos_start_helper_thread(void (*fn)(void *), void *arg, int *tid_word, void **stack);
/* Rewrites the siginfo of a signal a timer sent as Linux shows it (SI_TIMER). */
int libos_timer_siginfo(int sig, siginfo_t *si);
long libos_pdeathsig_set(int sig);
int libos_pdeathsig_get(void);

/* ---- sys_fifo.c: the blocking open of a FIFO, around the monitor's ---- */
long libos_fifo_wait_reader(long fd, int flags);
long libos_fifo_retry_writer(const char *uri, size_t uri_len, const char *path, size_t path_len, int flags,
			     unsigned mode);

/* ---- sys_sigwait.c ---- */
/* While a thread waits for signal sig (sigwaitinfo), rt_sigaction reads and
 * writes the program's kept disposition: returns 1 when it did. */
int libos_sigwait_sigaction(int sig, const struct kernel_sigaction *act, struct kernel_sigaction *old);

/* ---- loader.c ---- */
/* Validates an image header (first bytes of the file, `len` of them) for the
 * purpose of execve: 0 when the loader can run it (ELF x86-64 executable or #!
 * script), else -ENOEXEC. */
long libos_image_precheck(int fd);
/* Builds the loader options that carry library-OS state across exec. */
size_t libos_state_options(char *buf, size_t cap, const char **opts, size_t max_opts);

#endif
