/* Creating a picoprocess: fork, confine, enter the image through the loader fd.
 *
 * Everything between fork and exec happens in C with raw system calls only:
 * after the filter is installed the child could not run the Python
 * interpreter anyway, and before it, a forked copy of a multi-threaded
 * interpreter may only make async-signal-safe calls. */
#ifndef PICO_SPAWN_H
#define PICO_SPAWN_H
#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
/* Where a child-side failure happened (reported through the error pipe). */
#define PICO_STEP_NONE 0
#define PICO_STEP_PDEATHSIG 1
#define PICO_STEP_STDIO 2
#define PICO_STEP_LOADER_FD 3
#define PICO_STEP_CLOSE_FDS 4
#define PICO_STEP_SIGNALS 5
#define PICO_STEP_NO_NEW_PRIVS 6
#define PICO_STEP_SECCOMP 7
#define PICO_STEP_EXEC 8

struct pico_spawn_spec {
	int image_fd;		   /* the image to enter; becomes the loader fd */
	int keep_image_fd;	   /* 1: the loader fd survives exec (library OS), 0: close-on-exec */
	int stdio[3];		   /* fds that become 0, 1 and 2 in the child */
	const char *const *argv;   /* NULL-terminated */
	const char *const *envp;   /* NULL-terminated */
	const void *filter;	   /* struct sock_filter[filter_len] */
	size_t filter_len;	   /* number of BPF instructions */
	unsigned int seccomp_flags;/* SECCOMP_FILTER_FLAG_* */
};

struct pico_spawn_result {
	int pid;       /* > 0 on success */
	int listener_fd; /* the seccomp user-notification fd when seccomp_flags asked
			  * for SECCOMP_FILTER_FLAG_NEW_LISTENER, else -1; the caller owns it */
	int step;      /* PICO_STEP_* that failed, or PICO_STEP_NONE */
	int err;       /* errno of that failure */
};

/* Returns 0 with result->pid set, or -1 with result->step/err describing the
 * failure (in the parent or in the child before exec). */
int pico_spawn(const struct pico_spawn_spec *spec, struct pico_spawn_result *result);
/* cffi:end */

#endif
