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
struct libos_identity {
	unsigned uid, gid;
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

/* Every handler has this shape: a0..a5 are the raw argument registers. */
#define LIBOS_SYSCALL(name) \
	long libos_sys_##name(long a0, long a1, long a2, long a3, long a4, long a5, struct ucontext *uc)

/* Handlers (sys_*.c), declared for the dispatch table. */
#define LIBOS_HANDLERS(X)                                                                  \
	X(uname) X(getuid) X(geteuid) X(getgid) X(getegid) X(getgroups) X(getresuid)       \
	X(getresgid) X(setuid) X(setgid) X(getcwd) X(chdir) X(fchdir) X(umask) X(getrlimit) \
	X(setrlimit) X(prlimit64) X(sysinfo) X(nanosleep) X(poll) X(select) X(pselect6)    \
	X(dup) X(dup2) X(pipe) X(epoll_wait) X(epoll_create) X(sched_yield) X(getpgrp)     \
	X(getpgid) X(setpgid) X(getsid) X(setsid) X(rseq) X(rt_sigaction) X(rt_sigprocmask)                  \
	X(rt_sigsuspend) X(pause) X(access) X(faccessat) X(faccessat2) X(stat)    \
	X(lstat) X(newfstatat) X(statx) X(open) X(openat) X(creat) X(readlink)             \
	X(readlinkat) X(execve) X(execveat) X(fork) X(vfork) X(time) X(gettimeofday)       \
	X(sethostname) X(close_range) X(mkdir) X(mkdirat) X(unlink) X(unlinkat) X(rmdir)
#define LIBOS_DECLARE(name) LIBOS_SYSCALL(name);
LIBOS_HANDLERS(LIBOS_DECLARE)

/* ---- signal state (sys_signal.c) ---- */
/* Runs the guest's virtual SIGSYS disposition for a SIGSYS that did not come
 * from the filter (e.g. kill(getpid(), SIGSYS)). */
void libos_deliver_guest_sigsys(int sig, siginfo_t *si, void *uc);

/* ---- loader.c ---- */
/* Validates an image header (first bytes of the file, `len` of them) for the
 * purpose of execve: 0 when the loader can run it (ELF x86-64 executable or #!
 * script), else -ENOEXEC. */
long libos_image_precheck(int fd);
/* Builds the loader options that carry library-OS state across exec. */
size_t libos_state_options(char *buf, size_t cap, const char **opts, size_t max_opts);

#endif
