/* GENERATED from libos/linux_calls.toml by `python -m picoproc.libos.generate`: do not edit. */
/* The Linux calls the library OS handles: one handler each, with the shape of
 * LIBOS_SYSCALL (libos.h, which includes this header), and the flags of every call. */
#ifndef PICO_LIBOS_LINUX_CALLS_H
#define PICO_LIBOS_LINUX_CALLS_H

/* libos_call_flags[nr] */
#define LIBOS_CALL_REWRITABLE 1 /* its call sites may be rewritten (rewrite.c) */
#define LIBOS_CALL_QUIET 2 /* an ENOSYS answer leaves no audit record */
extern const unsigned char libos_call_flags[LIBOS_NR_MAX];

LIBOS_SYSCALL(open);
LIBOS_SYSCALL(close);
LIBOS_SYSCALL(stat);
LIBOS_SYSCALL(lstat);
LIBOS_SYSCALL(poll);
LIBOS_SYSCALL(rt_sigaction);
LIBOS_SYSCALL(rt_sigprocmask);
LIBOS_SYSCALL(access);
LIBOS_SYSCALL(pipe);
LIBOS_SYSCALL(select);
LIBOS_SYSCALL(sched_yield);
LIBOS_SYSCALL(dup);
LIBOS_SYSCALL(dup2);
LIBOS_SYSCALL(pause);
LIBOS_SYSCALL(nanosleep);
LIBOS_SYSCALL(getitimer);
LIBOS_SYSCALL(alarm);
LIBOS_SYSCALL(setitimer);
LIBOS_SYSCALL(sendfile);
LIBOS_SYSCALL(socket);
LIBOS_SYSCALL(connect);
LIBOS_SYSCALL(accept);
LIBOS_SYSCALL(bind);
LIBOS_SYSCALL(listen);
LIBOS_SYSCALL(getsockname);
LIBOS_SYSCALL(getpeername);
LIBOS_SYSCALL(setsockopt);
LIBOS_SYSCALL(getsockopt);
LIBOS_SYSCALL(fork);
LIBOS_SYSCALL(vfork);
LIBOS_SYSCALL(execve);
LIBOS_SYSCALL(uname);
LIBOS_SYSCALL(flock);
LIBOS_SYSCALL(fdatasync);
LIBOS_SYSCALL(truncate);
LIBOS_SYSCALL(getcwd);
LIBOS_SYSCALL(chdir);
LIBOS_SYSCALL(fchdir);
LIBOS_SYSCALL(rename);
LIBOS_SYSCALL(mkdir);
LIBOS_SYSCALL(rmdir);
LIBOS_SYSCALL(creat);
LIBOS_SYSCALL(link);
LIBOS_SYSCALL(unlink);
LIBOS_SYSCALL(symlink);
LIBOS_SYSCALL(readlink);
LIBOS_SYSCALL(chmod);
LIBOS_SYSCALL(fchmod);
LIBOS_SYSCALL(chown);
LIBOS_SYSCALL(fchown);
LIBOS_SYSCALL(lchown);
LIBOS_SYSCALL(umask);
LIBOS_SYSCALL(gettimeofday);
LIBOS_SYSCALL(getrlimit);
LIBOS_SYSCALL(getrusage);
LIBOS_SYSCALL(sysinfo);
LIBOS_SYSCALL(times);
LIBOS_SYSCALL(getuid);
LIBOS_SYSCALL(getgid);
LIBOS_SYSCALL(setuid);
LIBOS_SYSCALL(setgid);
LIBOS_SYSCALL(geteuid);
LIBOS_SYSCALL(getegid);
LIBOS_SYSCALL(setpgid);
LIBOS_SYSCALL(getpgrp);
LIBOS_SYSCALL(setsid);
LIBOS_SYSCALL(getgroups);
LIBOS_SYSCALL(getresuid);
LIBOS_SYSCALL(getresgid);
LIBOS_SYSCALL(getpgid);
LIBOS_SYSCALL(getsid);
LIBOS_SYSCALL(rt_sigsuspend);
LIBOS_SYSCALL(utime);
LIBOS_SYSCALL(statfs);
LIBOS_SYSCALL(fstatfs);
LIBOS_SYSCALL(prctl);
LIBOS_SYSCALL(setrlimit);
LIBOS_SYSCALL(sync);
LIBOS_SYSCALL(time);
LIBOS_SYSCALL(sched_setaffinity);
LIBOS_SYSCALL(sched_getaffinity);
LIBOS_SYSCALL(epoll_create);
LIBOS_SYSCALL(fadvise64);
LIBOS_SYSCALL(epoll_wait);
LIBOS_SYSCALL(utimes);
LIBOS_SYSCALL(openat);
LIBOS_SYSCALL(mkdirat);
LIBOS_SYSCALL(fchownat);
LIBOS_SYSCALL(futimesat);
LIBOS_SYSCALL(newfstatat);
LIBOS_SYSCALL(unlinkat);
LIBOS_SYSCALL(renameat);
LIBOS_SYSCALL(linkat);
LIBOS_SYSCALL(symlinkat);
LIBOS_SYSCALL(readlinkat);
LIBOS_SYSCALL(fchmodat);
LIBOS_SYSCALL(faccessat);
LIBOS_SYSCALL(pselect6);
LIBOS_SYSCALL(ppoll);
LIBOS_SYSCALL(utimensat);
LIBOS_SYSCALL(epoll_pwait);
LIBOS_SYSCALL(dup3);
LIBOS_SYSCALL(pipe2);
LIBOS_SYSCALL(prlimit64);
LIBOS_SYSCALL(syncfs);
LIBOS_SYSCALL(getcpu);
LIBOS_SYSCALL(renameat2);
LIBOS_SYSCALL(memfd_create);
LIBOS_SYSCALL(execveat);
LIBOS_SYSCALL(copy_file_range);
LIBOS_SYSCALL(statx);
LIBOS_SYSCALL(close_range);
LIBOS_SYSCALL(faccessat2);
LIBOS_SYSCALL(fchmodat2);

#endif
