/* Process creation and program execution inside the picoprocess. */
#include "libos.h"

/* Implements Linux syscall fork(2) on clone (the child inherits the filter
 * and a copy of the library OS with its state). */
LIBOS_SYSCALL(fork) { return sys5(__NR_clone, SIGCHLD, 0, 0, 0, 0); }

/* Implements Linux syscall vfork(2) as fork, which POSIX allows: a real
 * CLONE_VM|CLONE_VFORK child would return through this handler's frame on
 * the parent's stack and overwrite it before the parent resumes. */
LIBOS_SYSCALL(vfork) { return sys5(__NR_clone, SIGCHLD, 0, 0, 0, 0); }

#define LOADER_ARGV0 "picoproc-loader"
#define MAX_STATE_OPTS 32
/* fds whose paths follow the program across exec (--fd-path=N:PATH). */
#define MAX_FD_OPTS 32

/* Scratch for one execve, mmap'd (the handler may run on a small stack). */
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
	long m = sys6(__NR_mmap, 0, scratch_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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
		size_t n = libos_strlen(libos_exe_path);
		memcpy(s->abs, libos_exe_path, n + 1);
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
	r = sys5(__NR_execveat, PICO_LOADER_FD, "", new_argv, envp, AT_EMPTY_PATH);
	/* Still here: the kernel refused (E2BIG, EFAULT, ENOMEM...). */
out:
	if (image_fd >= 0)
		sys1(__NR_close, image_fd);
	sys2(__NR_munmap, m, scratch_len);
	return r;
}

/* Implements Linux syscall execve(2). */
LIBOS_SYSCALL(execve) { return libos_sys_execveat(AT_FDCWD, a0, a1, a2, 0, 0, uc); }
