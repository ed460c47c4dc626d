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

/* Mediated calls pass their arguments through the argument area (area.c). */
#define PICO_ABI_AREA
#include "picoproc_abi.h"
#include "libos_public.h"
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

/* ---- area.c: the argument area shared with the monitor ----
 * Maps it (once per loader instance, at its start); without it the
 * pico_<call>() wrappers pass ordinary pointers. */
void libos_area_init(void);

/* picoproc's own fds in the process (the loader fd, the argument area and
 * its channels): close and dup3 onto them trap to the library OS (the
 * filter's PICO_RESERVED_FD_BASE rule), which answers EBADF for these. */
static inline int libos_fd_is_picoprocs(unsigned long fd)
{
	return fd == PICO_LOADER_FD || fd == PICO_AREA_FD ||
	       (fd >= PICO_CHANNEL_FD && fd < PICO_CHANNEL_FD + PICO_AREA_SLOTS);
}

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
/* The same when the caller has just probed src's page (copied a byte from it). */
long libos_copy_string_after_probe(char *dst, const char *src, size_t cap);

/* ---- state.c: per-process library-OS state ----
 * Process-wide like the kernel's: threads share it, fork copies it with the
 * memory, exec passes it to the next loader instance in its argv.  A child
 * that shares our memory without being a thread (vfork, posix_spawn: a
 * "vm child", vmchild.c) gets a copy of its own, so that its chdir, setsid
 * or umask never reach its parent: every handler finds the state of the
 * process it runs in through libos_current(). */
#define LIBOS_MAX_GROUPS 64
struct libos_identity {
	unsigned uid, gid;
	/* Supplementary groups: those the monitor acts with for the guest. */
	unsigned ngroups, groups[LIBOS_MAX_GROUPS];
};

/* The ITIMER_REAL helper (sys_misc.c). */
struct libos_itimer {
	int lock;
	long owner;  /* the process the helper signals */
	long helper; /* its pid, 0 when none */
	uint64_t deadline_ns, interval_ns;
};

/* POSIX timers, the CPU-time itimers and the parent-death check, each served
 * by a helper thread of the process (sys_timer.c).  Slots 0..LIBOS_MAX_TIMERS-1
 * are the program's timer ids and timerfds; the three after them the
 * itimers' and the check's. */
#define LIBOS_MAX_TIMERS 32
#define LIBOS_TIMER_SLOTS (LIBOS_MAX_TIMERS + 3)
struct libos_timer_slot {
	int used;
	int clock;  /* the clock the helper sleeps on and gettime reads */
	int notify; /* SIGEV_SIGNAL, SIGEV_NONE, or SIGEV_THREAD_ID */
	int signo;
	int tid;	/* SIGEV_THREAD_ID: the thread signalled */
	uint64_t value; /* sigev_value */
	/* Arming, under the table lock: deadline 0 is disarmed. */
	uint64_t deadline_ns, interval_ns;
	int overrun;	     /* expirations missed before the last signal */
	int signal_sent;     /* a signal of this timer may be waiting for sigwaitinfo */
	uint32_t gen;	     /* futex word: bumped on every change */
	int helper_tid;	     /* cleared by the kernel when the helper exits */
	int helper_sleeping; /* on a clock only a signal interrupts */
	int stop;
	long watch_parent; /* PDEATHSIG: fire only once getppid() is no longer this */
	int wfd;	   /* timerfd: the library OS's end of the pair */
	uint64_t dev, ino; /* timerfd: the program's end */
	int orphan;	   /* timerfd closed: the slot is free once its helper has gone */
	void *stack;
};
struct libos_timers {
	int lock;
	long owner; /* the process these timers belong to (fork: a child starts empty) */
	struct libos_timer_slot slot[LIBOS_TIMER_SLOTS];
};

/* Signals accepted synchronously (sys_sigwait.c): the threads waiting in
 * sigwaitinfo, the signalfds and their reader thread, and the program's own
 * dispositions of the signals the library OS's catcher holds meanwhile. */
#define LIBOS_MAX_SIGWAITERS 32
#define LIBOS_MAX_SIGNALFDS 16
#define LIBOS_NSIG 64
struct libos_sigwaiter {
	int tid;      /* 0: free */
	uint64_t set; /* the signals it accepts */
	int got;      /* the catcher stored a signal */
	siginfo_t info;
};
struct libos_signalfd {
	int used;
	uint64_t dev, ino; /* the program's end */
	int wfd;	   /* the library OS's end */
	uint64_t mask;
};
struct libos_sigwait {
	int lock;
	struct libos_sigwaiter w[LIBOS_MAX_SIGWAITERS];
	struct libos_signalfd sfd[LIBOS_MAX_SIGNALFDS];
	long sfd_owner;	    /* the process the signalfds belong to (a fork child starts empty) */
	int sfd_reader_tid; /* the helper thread, 0 when none */
	void *sfd_reader_stack;
	int users[LIBOS_NSIG + 1];			/* holders (waiters, signalfds) per signal */
	struct kernel_sigaction program[LIBOS_NSIG + 1]; /* the program's disposition, while users > 0 */
};

/* fd paths a vm child learnt itself (its fd table is its own). */
#define LIBOS_FD_OVERLAY 8
struct libos_fd_overlay {
	long fd; /* -1: free */
	uint64_t dev, ino;
	char path[PICO_MAX_PATH];
};

struct libos_process {
	/* First: what the monitor's /proc reads (abi/libos_public.h): the pid
	 * this state is for (see vmchild.c), the current directory (a seqlock:
	 * a reader copies cwd[cwd_seq & 1] and retries if cwd_seq moved), the
	 * umask, the process group and session, the name (comm). */
	struct pico_libos_proc_public pub;
	int cwd_writer_busy; /* serialises writers of the cwd */
	struct libos_identity ident;
	struct rlimit64 rlimits[RLIMIT_NLIMITS_K];
	/* The guest's SIGSYS disposition, which is virtual (sys_signal.c). */
	struct kernel_sigaction guest_sigsys;
	int guest_sigsys_lock;
	struct libos_itimer itimer;
	/* prctl's recorded settings (the host's are the picoprocess's own);
	 * zero is Linux's default. */
	int not_dumpable, subreaper;
	long timerslack_ns; /* 0: the default */
	/* Scheduling as the program sees it (sys_sched.c, sys_compat.c): its
	 * nice value and the CPUs it chose (all zero: all of them). */
	int nice;
	uint64_t chosen_cpus[16];
	struct libos_timers timers;
	struct libos_sigwait sigwait;
	/* vm children only (NULL otherwise): fd paths they recorded. */
	struct libos_fd_overlay *fd_overlay;
};

/* The state of the process the loader started (and of its fork copies). */
extern struct libos_process libos_main_process;
/* How many vm children share this memory now, and how many blocks (each a
 * vm child, a thread being started or a copy) may exist at once (vmchild.c). */
#define LIBOS_VM_SLOTS PICO_LIBOS_PUBLIC_SLOTS
extern unsigned libos_vm_children;
struct libos_process *libos_current_slow(void);
/* The state of the calling process: a load and a branch, unless a vm child
 * shares our memory, when it costs a getpid. */
static inline struct libos_process *libos_current(void)
{
	if (__builtin_expect(__atomic_load_n(&libos_vm_children, __ATOMIC_ACQUIRE) == 0, 1))
		return &libos_main_process;
	return libos_current_slow();
}

extern char libos_hostname[65];
extern char libos_release[65];
/* The vDSO the kernel mapped (AT_SYSINFO_EHDR), 0 if none, and the address
 * of one of its functions (its dynamic symbol table), or NULL. */
extern uint64_t libos_vdso;
void *libos_vdso_symbol(const char *name);
/* What the monitor's /proc reads, at PICO_LIBOS_PUBLIC_ADDR; its exe is
 * the program's image (set once per image by the loader). */
extern struct pico_libos_public libos_public;

long libos_cwd_get(char *out, size_t cap);
long libos_cwd_set(const char *abs_path);
/* A spin lock of the threads of one process over its own state: the word
 * holds the holder's tid, so that a copy of the memory (fork, or a vm
 * child's state copied by its own fork) in which a thread of the old
 * process held it is taken over, not waited for forever.  Not for state
 * shared with a vm child (another process's threads hold it legitimately). */
void libos_lock(int *word);
void libos_unlock(int *word);
/* Copies the state a new process inherits (not its fd overlay). */
void libos_process_copy(struct libos_process *dst, struct libos_process *src);
/* The directory dirfd names, as a guest path: the cwd for AT_FDCWD, else
 * the remembered path of the fd (fdtable.c).  Its length, or -errno
 * (ENOTDIR with need_dir when the fd is not a directory). */
long libos_dir_path(int dirfd, int need_dir, char *out, size_t cap);
/* The one place a relative path is joined to its directory: writes the
 * directory dirfd names (libos_dir_path, need_dir) into out with the
 * joining '/' ("/a/b/", or "/"), and returns the length at which the
 * relative path goes, or -errno. */
long libos_join_base(int dirfd, char *out, size_t cap);
/* Makes `path` (a guest string already copied into our memory) absolute
 * against dirfd (libos_join_base).  Returns the length or -errno. */
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
/* After serving a trap whose syscall instruction ended at ip: rewrite the
 * site, if it has the pattern and nr is rewritable. */
void libos_rewrite_site(uintptr_t ip, unsigned nr);
extern unsigned long libos_fast_count, libos_rewritten_sites;

/* Every handler has this shape: a0..a5 are the raw argument registers. */
#define LIBOS_SYSCALL(name) \
	long libos_sys_##name(long a0, long a1, long a2, long a3, long a4, long a5, struct ucontext *uc)

/* The handlers and the call flags, generated from libos/linux_calls.toml (the
 * one table of the Linux calls the library OS handles or refuses). */
#include "linux_calls.h"

/* ---- vmchild.c: children that share our memory ---- */
/* Makes a child with the clone flags (exit signal in the low byte) that
 * resumes the trapped guest context uc, with rax = 0 and its stack pointer
 * at child_sp (0: uc's own, as vfork), from a block of its own (see
 * vmchild.c); returns what clone returned in the parent. */
long libos_clone_with_block(struct ucontext *uc, uint64_t flags, uint64_t child_sp, uint64_t ptid, uint64_t ctid,
			    uint64_t tls, int clear_sighand);
/* A mapping a vm child makes for its execve: recorded so that the parent
 * unmaps it once the child has gone (-1: not a vm child, nothing recorded). */
int libos_vm_keep_mapping(uint64_t addr, uint64_t len);
void libos_vm_forget_mapping(int slot);
/* Scratch for a vm child's execve inside its block, already mapped (NULL:
 * not a vm child, too large, or in use; the caller maps its own), and its
 * release when the execve fails. */
void *libos_vm_exec_scratch(size_t len);
void libos_vm_exec_scratch_done(void *scratch);
/* The same, by the mapping's address (a helper thread's stack). */
void libos_vm_forget_mapping_at(uint64_t addr);

/* ---- signal state (sys_signal.c) ---- */
/* Runs the guest's virtual SIGSYS disposition for a SIGSYS that did not come
 * from the filter (e.g. kill(getpid(), SIGSYS)). */
/* The pid a pidfd obtained by pidfd_open names, or -EBADF. */
long libos_pidfd_pid(long fd);
void libos_deliver_guest_sigsys(int sig, siginfo_t *si, void *uc);

/* ---- sys_timer.c: timers served by helper threads ---- */
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
 * *tid_word is cleared by the kernel when it exits, then *stack may go,
 * through libos_free_helper_stack. */
long libos_start_helper_thread(void (*fn)(void *), void *arg, int *tid_word, void **stack);
void libos_free_helper_stack(void *stack);
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
/* What a new process that shares this memory inherits (vmchild.c): the
 * program's kept dispositions, no waiter, no signalfd. */
void libos_sigwait_inherit(struct libos_sigwait *dst, struct libos_sigwait *src);
/* In a process with no waiter and no signalfd of its own (a new vm child):
 * gives every held signal its program's disposition back. */
void libos_sigwait_release_held(struct libos_sigwait *sw);

/* ---- loader.c ---- */
/* Validates an image header (first bytes of the file, `len` of them) for the
 * purpose of execve: 0 when the loader can run it (ELF x86-64 executable or #!
 * script), else -ENOEXEC. */
long libos_image_precheck(int fd);
/* Builds the loader options that carry library-OS state across exec. */
size_t libos_state_options(char *buf, size_t cap, const char **opts, size_t max_opts);

#endif
