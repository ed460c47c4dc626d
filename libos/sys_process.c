/* Process creation and program execution inside the picoprocess. */
#include "libos.h"

/* <linux/sched.h> */
#define CSIGNAL_K 0x000000ffULL
#define CLONE_VM_K 0x00000100ULL
#define CLONE_SIGHAND_K 0x00000800ULL
#define CLONE_PIDFD_K 0x00001000ULL
#define CLONE_VFORK_K 0x00004000ULL
#define CLONE_PARENT_K 0x00008000ULL
#define CLONE_THREAD_K 0x00010000ULL
#define CLONE_PARENT_SETTID_K 0x00100000ULL
#define CLONE_DETACHED_K 0x00400000ULL
#define CLONE_CLEAR_SIGHAND_K 0x100000000ULL
#define CLONE_INTO_CGROUP_K 0x200000000ULL
/* What a picoprocess never gets (abi_v1.toml's CLONE_FORBIDDEN: namespaces,
 * CLONE_PARENT, CLONE_PTRACE), plus clone3's CLONE_NEWTIME and cgroups. */
#define CLONE_FORBIDDEN_K (0x7E02A000ULL | CLONE_INTO_CGROUP_K)
#define CLONE3_NEWTIME_K 0x00000080ULL

/* Implements Linux syscall fork(2) on clone (the child inherits the filter
 * and a copy of the library OS with its state). */
LIBOS_SYSCALL(fork) { return sys5(__NR_clone, SIGCHLD, 0, 0, 0, 0); }

/* Implements Linux syscall vfork(2): CLONE_VM | CLONE_VFORK, the child on
 * the parent's stack, the parent suspended until the child execs or exits. */
LIBOS_SYSCALL(vfork) { return libos_clone_with_block(uc, CLONE_VM_K | CLONE_VFORK_K | SIGCHLD, 0, 0, 0, 0, 0); }

/* Implements Linux syscall clone(2) for the forms the filter traps: a child
 * that shares memory without being a thread (posix_spawn, system), which
 * the library OS makes itself (vmchild.c), and forms the picoprocess never
 * gets (namespaces, CLONE_PARENT, CLONE_PTRACE: ENOSYS, audited).  The
 * other forms are direct. */
LIBOS_SYSCALL(clone)
{
	uint64_t flags = (uint32_t)a0; /* the kernel takes an int */
	if (flags & CLONE_FORBIDDEN_K)
		return -ENOSYS;
	if ((flags & (CLONE_VM_K | CLONE_THREAD_K)) != CLONE_VM_K)
		return -EINVAL; /* not a form the filter traps: a forged call */
	if ((flags & CLONE_PIDFD_K) && (flags & (CLONE_DETACHED_K | CLONE_THREAD_K)))
		return -EINVAL;
	/* x86-64 clone(flags, stack, parent_tid, child_tid, tls) */
	return libos_clone_with_block(uc, flags, (uint64_t)a1, (uint64_t)a2, (uint64_t)a3, (uint64_t)a4, 0);
}

/* struct clone_args (<linux/sched.h>): 64 bytes in its first version, 88
 * with set_tid, 96 with cgroup. */
struct clone_args_k {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size, cgroup;
};
#define CLONE_ARGS_SIZE_VER0 64

/* Implements Linux syscall clone3(2) for the flags clone(2) allows, plus
 * CLONE_CLEAR_SIGHAND, on clone: the arguments are checked as the kernel's
 * clone3_args_valid checks them, then the child is made from a block of its
 * own (vmchild.c) so that it starts on the stack it asked for.  set_tid
 * needs privilege (EPERM); CLONE_PIDFD together with CLONE_PARENT_SETTID has
 * no clone(2) form (EINVAL). */
LIBOS_SYSCALL(clone3)
{
	struct clone_args_k ca;
	size_t size = (size_t)a1;
	if (size < CLONE_ARGS_SIZE_VER0)
		return -EINVAL;
	if (size > PAGE_SIZE_K)
		return -E2BIG;
	memset(&ca, 0, sizeof(ca));
	long r = libos_copy_from_guest(&ca, (const void *)a0, size < sizeof(ca) ? size : sizeof(ca));
	if (r < 0)
		return r;
	/* A larger struct from a newer libc: what we do not know must be 0. */
	for (size_t off = sizeof(ca); off < size; off += 8) {
		uint64_t w = 0;
		size_t n = size - off < 8 ? size - off : 8;
		r = libos_copy_from_guest(&w, (const char *)a0 + off, n);
		if (r < 0)
			return r;
		if (w)
			return -E2BIG;
	}
	uint64_t flags = ca.flags;
	if (flags & ~(0xffffffffULL | CLONE_CLEAR_SIGHAND_K | CLONE_INTO_CGROUP_K))
		return -EINVAL;
	if ((flags & CSIGNAL_K) || (ca.exit_signal & ~CSIGNAL_K) || ca.exit_signal > 64)
		return -EINVAL;
	if ((flags & (CLONE_THREAD_K | CLONE_PARENT_K)) && ca.exit_signal)
		return -EINVAL;
	if ((ca.stack == 0) != (ca.stack_size == 0))
		return -EINVAL;
	if (ca.set_tid_size > 32 || (!ca.set_tid && ca.set_tid_size) || (ca.set_tid && !ca.set_tid_size))
		return -EINVAL;
	if ((flags & CLONE_CLEAR_SIGHAND_K) && (flags & CLONE_SIGHAND_K))
		return -EINVAL;
	if ((flags & CLONE_THREAD_K) && !(flags & CLONE_SIGHAND_K))
		return -EINVAL;
	if ((flags & CLONE_SIGHAND_K) && !(flags & CLONE_VM_K))
		return -EINVAL;
	if ((flags & CLONE_PIDFD_K) && (flags & (CLONE_DETACHED_K | CLONE_THREAD_K)))
		return -EINVAL;
	if (flags & (CLONE_FORBIDDEN_K | CLONE3_NEWTIME_K))
		return -ENOSYS;
	if (ca.set_tid_size)
		return -EPERM;
	uint64_t ptid = ca.parent_tid;
	if (flags & CLONE_PIDFD_K) {
		if (flags & CLONE_PARENT_SETTID_K)
			return -EINVAL;
		ptid = ca.pidfd; /* clone(2) returns the pidfd through parent_tid */
	}
	uint64_t legacy = (flags & 0xffffffffULL) | ca.exit_signal;
	int clear = (flags & CLONE_CLEAR_SIGHAND_K) != 0;
	if (!(flags & CLONE_VM_K) && !ca.stack && !clear) {
		/* A fork: the child returns through this handler on its own copy
		 * of the stack, as fork(2) does. */
		return sys5(__NR_clone, legacy, 0, ptid, ca.child_tid, ca.tls);
	}
	uint64_t top = ca.stack ? ca.stack + ca.stack_size : 0;
	return libos_clone_with_block(uc, legacy, top, ptid, ca.child_tid, ca.tls, clear);
}

#define LOADER_ARGV0 "picoproc-loader"
#define MAX_STATE_OPTS 32
/* fds whose paths follow the program across exec (--fd-path=N:PATH). */
#define MAX_FD_OPTS 32

/* Scratch for one execve, mmap'd or, in a vm child, in its block (the
 * handler may run on a small stack). */
struct exec_scratch {
	char room[8];
	char abs[PICO_MAX_PATH];
	char opt_text[PICO_MAX_PATH + 2048];
	char fd_opt[32];
	char rel[PICO_MAX_PATH];
	const char *opts[MAX_STATE_OPTS];
	char fd_path_text[4 * PICO_MAX_PATH];
	const char *fd_path_opts[MAX_FD_OPTS];
};

/* Counts the guest's argv (validating the pointer array page by page); the
 * strings themselves are checked by the kernel when it copies them. */
static long count_argv(const char *const *argv)
{
	long n = 0;
	if (!argv)
		return 0;
	for (;;) {
		const char *p;
		long r = libos_copy_from_guest(&p, argv + n, sizeof(p));
		if (r < 0)
			return r;
		if (!p)
			return n;
		if (++n > 0x7fffffff / 8)
			return -E2BIG;
	}
}

/* Implements Linux syscall execveat(2), and execve(2) through it: the new
 * program is entered by re-entering the loader through its fixed fd (the one
 * exec the filter allows), with the library OS's state and an fd on the
 * already-opened image in its options.  Everything that can fail the way
 * execve fails (ENOENT, EACCES, ENOEXEC, E2BIG, EFAULT) fails here, in the
 * old image, so the caller sees the error as it would on Linux. */
LIBOS_SYSCALL(execveat)
{
	int dirfd = (int)a0, flags = (int)a4;
	const char *const *argv = (const char *const *)a2;
	long envp = a3;
	if (flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		return -EINVAL;
	long argc = count_argv(argv);
	if (argc < 0)
		return argc;
	size_t scratch_len = sizeof(struct exec_scratch) + ((size_t)argc + MAX_STATE_OPTS + MAX_FD_OPTS + 8) * sizeof(char *);
	scratch_len = (scratch_len + PAGE_SIZE_K - 1) & ~(PAGE_SIZE_K - 1);
	void *in_block = libos_vm_exec_scratch(scratch_len);
	long m = in_block ? (long)in_block
			  : sys6(__NR_mmap, 0, scratch_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m < 0)
		return m;
	struct exec_scratch *s = (struct exec_scratch *)m;
	const char **new_argv = (const char **)(s + 1);
	long image_fd = -1;
	long r;
	int self_exe = 0;

	char first = 0;
	r = libos_copy_from_guest(&first, (const void *)a1, 1);
	if (r < 0)
		goto out;
	if (first == 0) {
		/* fexecve: the image is the one dirfd names (its remembered path,
		 * opened again with the execute check). */
		if (!(flags & AT_EMPTY_PATH)) {
			r = -ENOENT;
			goto out;
		}
		struct stat st;
		r = libos_fd_path(dirfd, s->abs, sizeof(s->abs), &st);
		if (r < 0)
			goto out;
		a1 = (long)s->abs; /* becomes AT_EXECFN */
	} else {
		r = libos_copy_string_from_guest(s->abs, (const char *)a1, sizeof(s->abs));
		if (r < 0)
			goto out;
		if (first != '/') {
			memcpy(s->rel, s->abs, (size_t)r + 1);
			r = libos_resolve_path(dirfd, s->rel, s->abs, sizeof(s->abs));
			if (r < 0)
				goto out;
		}
	}
	self_exe = libos_streq(s->abs, "/proc/self/exe");
	if (self_exe) {
		/* Re-executing oneself (busybox applets, CPython's multiprocessing):
		 * the program's image, not the loader the host sees there. */
		size_t n = libos_strlen(libos_public.exe);
		memcpy(s->abs, libos_public.exe, n + 1);
	}
	{
		size_t n = libos_strlen(s->abs);
		memcpy(s->abs - 5, "file:", 5);
		/* Not O_CLOEXEC: the fd is how the next loader instance gets the
		 * image the monitor approved. */
		image_fd = pico_open(s->abs - 5, n + 5,
				     O_RDONLY | PICO_OPEN_EXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0), 0);
	}
	if (image_fd < 0) {
		r = image_fd;
		goto out;
	}
	r = libos_image_precheck((int)image_fd);
	if (r < 0)
		goto out;

	size_t nopts = libos_state_options(s->opt_text, sizeof(s->opt_text), s->opts, MAX_STATE_OPTS);
	if (nopts == 0) {
		r = -E2BIG;
		goto out;
	}
	{
		struct strbuf sb;
		sb_init(&sb, s->fd_opt, sizeof(s->fd_opt));
		sb_add(&sb, "--image-fd=");
		sb_addnum(&sb, (unsigned long)image_fd);
	}
	long k = 0;
	new_argv[k++] = LOADER_ARGV0;
	for (size_t i = 0; i < nopts; i++)
		new_argv[k++] = s->opts[i];
	new_argv[k++] = s->fd_opt;
	{
		size_t nfd = libos_fd_exec_options(s->fd_path_text, sizeof(s->fd_path_text), s->fd_path_opts,
						   MAX_FD_OPTS);
		for (size_t i = 0; i < nfd; i++)
			new_argv[k++] = s->fd_path_opts[i];
	}
	new_argv[k++] = "--";
	/* The path as the program gave it: it becomes AT_EXECFN (but the next
	 * instance must learn the real path behind /proc/self/exe). */
	new_argv[k++] = self_exe ? s->abs : (const char *)a1;
	for (long i = 0; i < argc; i++)
		new_argv[k++] = argv[i];
	new_argv[k] = NULL;
	{
		/* In a vm child a mapped scratch lives in its parent's memory
		 * after a successful exec: the parent unmaps it (vmchild.c). */
		int kept = in_block ? -1 : libos_vm_keep_mapping((uint64_t)m, scratch_len);
		r = sys5(__NR_execveat, PICO_LOADER_FD, "", new_argv, envp, AT_EMPTY_PATH);
		libos_vm_forget_mapping(kept);
	}
	/* Still here: the kernel refused (E2BIG, EFAULT, ENOMEM...). */
out:
	if (image_fd >= 0)
		sys1(__NR_close, image_fd);
	if (in_block)
		libos_vm_exec_scratch_done(in_block);
	else
		sys2(__NR_munmap, m, scratch_len);
	return r;
}

/* Implements Linux syscall execve(2). */
LIBOS_SYSCALL(execve) { return libos_sys_execveat(AT_FDCWD, a0, a1, a2, 0, 0, uc); }

/* <linux/wait.h> */
#define WNOHANG_K 0x00000001
#define WSTOPPED_K 0x00000002
#define WEXITED_K 0x00000004
#define WCONTINUED_K 0x00000008
#define WNOWAIT_K 0x01000000
#define WNOTHREAD_K 0x20000000
#define WALL_K 0x40000000
#define WCLONE_K 0x80000000
#define P_ALL_K 0
#define P_PID_K 1
#define P_PGID_K 2
#define P_PIDFD_K 3

/* Implements Linux syscall waitid(2) on wait4, which the filter lets
 * through: the same children, the status turned into the siginfo Linux
 * fills.  WNOWAIT (leave the child waitable) has no wait4 form: ENOSYS,
 * the answer with which callers such as Go's os/exec fall back to a plain
 * wait4 (EINVAL would be taken as a real failure of the wait). */
LIBOS_SYSCALL(waitid)
{
	int idtype = (int)a0;
	long id = (long)(int)a1;
	unsigned options = (unsigned)a3;
	if (options & ~(unsigned)(WNOHANG_K | WSTOPPED_K | WEXITED_K | WCONTINUED_K | WNOWAIT_K |
				  WNOTHREAD_K | WALL_K | WCLONE_K))
		return -EINVAL;
	if (!(options & (WEXITED_K | WSTOPPED_K | WCONTINUED_K)))
		return -EINVAL;
	long target;
	switch (idtype) {
	case P_ALL_K:
		target = -1;
		break;
	case P_PID_K:
		if (id <= 0)
			return -EINVAL;
		target = id;
		break;
	case P_PGID_K:
		if (id < 0)
			return -EINVAL;
		target = id ? -id : 0;
		break;
	case P_PIDFD_K:
		target = libos_pidfd_pid(id);
		if (target < 0)
			return target;
		break;
	default:
		return -EINVAL;
	}
	if (options & WNOWAIT_K)
		return -ENOSYS; /* not offered: see above */
	if (!(options & WEXITED_K))
		return -EINVAL; /* wait4 always reaps an exited child */
	int status = 0;
	unsigned w4 = options & (WNOHANG_K | WNOTHREAD_K | WALL_K | WCLONE_K | WCONTINUED_K);
	if (options & WSTOPPED_K)
		w4 |= WSTOPPED_K; /* WUNTRACED */
	long pid = sys4(__NR_wait4, target, &status, w4, a4);
	if (pid < 0)
		return pid;
	struct {
		int signo, err, code, pad;
		int pid;
		unsigned uid;
		int status;
	} info;
	memset(&info, 0, sizeof(info));
	if (pid > 0) {
		info.signo = SIGCHLD;
		info.pid = (int)pid;
		info.uid = libos_current()->ident.uid;
		if ((status & 0x7f) == 0) {
			info.code = CLD_EXITED;
			info.status = (status >> 8) & 0xff;
		} else if ((status & 0xff) == 0x7f) {
			info.code = CLD_STOPPED;
			info.status = (status >> 8) & 0xff;
		} else if (status == 0xffff) {
			info.code = CLD_CONTINUED;
			info.status = SIGCONT;
		} else {
			info.code = (status & 0x80) ? CLD_DUMPED : CLD_KILLED;
			info.status = status & 0x7f;
		}
	}
	/* Linux writes the siginfo's fields even when WNOHANG found nothing
	 * (all zero then). */
	if (a2) {
		long r = libos_copy_to_guest((void *)a2, &info, sizeof(info));
		if (r < 0)
			return r;
	}
	return 0;
}
