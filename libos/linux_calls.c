/* GENERATED from libos/linux_calls.toml by `python -m picoproc.libos.generate`: do not edit. */
/* The dispatch table of the library OS (trap.c, rewrite.c), indexed by x86-64
 * syscall number, and the stubs of the calls it refuses on purpose. */
#include "libos.h"

#define REFUSE(name, err)                                                                  \
	static long libos_refuse_##name(long a0, long a1, long a2, long a3, long a4, long a5, \
					struct ucontext *uc)                                \
	{                                                                                  \
		return -(err);                                                             \
	}

/* ptrace: a tracer could rewrite another guest process's calls after the filter decided */
REFUSE(ptrace, 38) /* ENOSYS */
/* pivot_root: the guest's file system view is the manifest's, served by the monitor */
REFUSE(pivot_root, 38) /* ENOSYS */
/* adjtimex: the host's clock is not the guest's to set */
REFUSE(adjtimex, 38) /* ENOSYS */
/* chroot: the guest's file system view is the manifest's, served by the monitor */
REFUSE(chroot, 38) /* ENOSYS */
/* mount: the guest's file system view is the manifest's, served by the monitor */
REFUSE(mount, 38) /* ENOSYS */
/* umount2: the guest's file system view is the manifest's, served by the monitor */
REFUSE(umount2, 38) /* ENOSYS */
/* swapon: host administration */
REFUSE(swapon, 38) /* ENOSYS */
/* swapoff: host administration */
REFUSE(swapoff, 38) /* ENOSYS */
/* reboot: host administration */
REFUSE(reboot, 38) /* ENOSYS */
/* sethostname: the guest is unprivileged; its host name is the manifest's */
REFUSE(sethostname, 1) /* EPERM */
/* init_module: host administration */
REFUSE(init_module, 38) /* ENOSYS */
/* delete_module: host administration */
REFUSE(delete_module, 38) /* ENOSYS */
/* kexec_load: host administration */
REFUSE(kexec_load, 38) /* ENOSYS */
/* add_key: the host kernel's key store */
REFUSE(add_key, 38) /* ENOSYS */
/* request_key: the host kernel's key store */
REFUSE(request_key, 38) /* ENOSYS */
/* keyctl: the host kernel's key store */
REFUSE(keyctl, 38) /* ENOSYS */
/* unshare: new namespaces would escape the picoprocess's own */
REFUSE(unshare, 38) /* ENOSYS */
/* perf_event_open: host performance counters: a side channel and a history of kernel bugs */
REFUSE(perf_event_open, 38) /* ENOSYS */
/* name_to_handle_at: file handles are only useful to open_by_handle_at */
REFUSE(name_to_handle_at, 38) /* ENOSYS */
/* open_by_handle_at: opens host files by handle, around every path check */
REFUSE(open_by_handle_at, 38) /* ENOSYS */
/* clock_adjtime: the host's clock is not the guest's to set */
REFUSE(clock_adjtime, 38) /* ENOSYS */
/* setns: new namespaces would escape the picoprocess's own */
REFUSE(setns, 38) /* ENOSYS */
/* process_vm_readv: cross-process memory access is not part of the ABI */
REFUSE(process_vm_readv, 38) /* ENOSYS */
/* process_vm_writev: cross-process memory access is not part of the ABI */
REFUSE(process_vm_writev, 38) /* ENOSYS */
/* finit_module: host administration */
REFUSE(finit_module, 38) /* ENOSYS */
/* seccomp: a stacked filter could pre-empt the monitor's notifications */
REFUSE(seccomp, 38) /* ENOSYS */
/* kexec_file_load: host administration */
REFUSE(kexec_file_load, 38) /* ENOSYS */
/* bpf: loads programs into the host kernel */
REFUSE(bpf, 38) /* ENOSYS */
/* userfaultfd: lets a guest stall kernel code at will (a classic exploit aid) */
REFUSE(userfaultfd, 38) /* ENOSYS */
/* rseq: restartable sequences are not offered; glibc then runs without them */
REFUSE(rseq, 38) /* ENOSYS */
/* io_uring_setup: io_uring would let the guest submit host syscalls the filter never sees */
REFUSE(io_uring_setup, 38) /* ENOSYS */
/* io_uring_enter: io_uring would let the guest submit host syscalls the filter never sees */
REFUSE(io_uring_enter, 38) /* ENOSYS */
/* io_uring_register: io_uring would let the guest submit host syscalls the filter never sees */
REFUSE(io_uring_register, 38) /* ENOSYS */
/* open_tree: the guest's file system view is the manifest's, served by the monitor */
REFUSE(open_tree, 38) /* ENOSYS */
/* move_mount: the guest's file system view is the manifest's, served by the monitor */
REFUSE(move_mount, 38) /* ENOSYS */
/* fsopen: the guest's file system view is the manifest's, served by the monitor */
REFUSE(fsopen, 38) /* ENOSYS */
/* fsconfig: the guest's file system view is the manifest's, served by the monitor */
REFUSE(fsconfig, 38) /* ENOSYS */
/* fsmount: the guest's file system view is the manifest's, served by the monitor */
REFUSE(fsmount, 38) /* ENOSYS */
/* fspick: the guest's file system view is the manifest's, served by the monitor */
REFUSE(fspick, 38) /* ENOSYS */
/* mount_setattr: the guest's file system view is the manifest's, served by the monitor */
REFUSE(mount_setattr, 38) /* ENOSYS */
/* open_tree_attr: the guest's file system view is the manifest's, served by the monitor */
REFUSE(open_tree_attr, 38) /* ENOSYS */

const libos_syscall_fn libos_syscall_table[LIBOS_NR_MAX] = {
	[2] = libos_sys_open,
	[3] = libos_sys_close,
	[4] = libos_sys_stat,
	[6] = libos_sys_lstat,
	[7] = libos_sys_poll,
	[13] = libos_sys_rt_sigaction,
	[14] = libos_sys_rt_sigprocmask,
	[16] = libos_sys_ioctl,
	[21] = libos_sys_access,
	[22] = libos_sys_pipe,
	[23] = libos_sys_select,
	[24] = libos_sys_sched_yield,
	[26] = libos_sys_msync,
	[32] = libos_sys_dup,
	[33] = libos_sys_dup2,
	[34] = libos_sys_pause,
	[35] = libos_sys_nanosleep,
	[36] = libos_sys_getitimer,
	[37] = libos_sys_alarm,
	[38] = libos_sys_setitimer,
	[40] = libos_sys_sendfile,
	[41] = libos_sys_socket,
	[42] = libos_sys_connect,
	[43] = libos_sys_accept,
	[49] = libos_sys_bind,
	[50] = libos_sys_listen,
	[51] = libos_sys_getsockname,
	[52] = libos_sys_getpeername,
	[54] = libos_sys_setsockopt,
	[55] = libos_sys_getsockopt,
	[56] = libos_sys_clone,
	[57] = libos_sys_fork,
	[58] = libos_sys_vfork,
	[59] = libos_sys_execve,
	[63] = libos_sys_uname,
	[72] = libos_sys_fcntl,
	[73] = libos_sys_flock,
	[75] = libos_sys_fdatasync,
	[76] = libos_sys_truncate,
	[79] = libos_sys_getcwd,
	[80] = libos_sys_chdir,
	[81] = libos_sys_fchdir,
	[82] = libos_sys_rename,
	[83] = libos_sys_mkdir,
	[84] = libos_sys_rmdir,
	[85] = libos_sys_creat,
	[86] = libos_sys_link,
	[87] = libos_sys_unlink,
	[88] = libos_sys_symlink,
	[89] = libos_sys_readlink,
	[90] = libos_sys_chmod,
	[91] = libos_sys_fchmod,
	[92] = libos_sys_chown,
	[93] = libos_sys_fchown,
	[94] = libos_sys_lchown,
	[95] = libos_sys_umask,
	[96] = libos_sys_gettimeofday,
	[97] = libos_sys_getrlimit,
	[98] = libos_sys_getrusage,
	[99] = libos_sys_sysinfo,
	[100] = libos_sys_times,
	[101] = libos_refuse_ptrace,
	[102] = libos_sys_getuid,
	[104] = libos_sys_getgid,
	[105] = libos_sys_setuid,
	[106] = libos_sys_setgid,
	[107] = libos_sys_geteuid,
	[108] = libos_sys_getegid,
	[109] = libos_sys_setpgid,
	[111] = libos_sys_getpgrp,
	[112] = libos_sys_setsid,
	[113] = libos_sys_setreuid,
	[114] = libos_sys_setregid,
	[115] = libos_sys_getgroups,
	[116] = libos_sys_setgroups,
	[117] = libos_sys_setresuid,
	[118] = libos_sys_getresuid,
	[119] = libos_sys_setresgid,
	[120] = libos_sys_getresgid,
	[121] = libos_sys_getpgid,
	[122] = libos_sys_setfsuid,
	[123] = libos_sys_setfsgid,
	[124] = libos_sys_getsid,
	[127] = libos_sys_rt_sigpending,
	[128] = libos_sys_rt_sigtimedwait,
	[130] = libos_sys_rt_sigsuspend,
	[132] = libos_sys_utime,
	[133] = libos_sys_mknod,
	[137] = libos_sys_statfs,
	[138] = libos_sys_fstatfs,
	[140] = libos_sys_getpriority,
	[141] = libos_sys_setpriority,
	[142] = libos_sys_sched_setparam,
	[143] = libos_sys_sched_getparam,
	[144] = libos_sys_sched_setscheduler,
	[145] = libos_sys_sched_getscheduler,
	[146] = libos_sys_sched_get_priority_max,
	[147] = libos_sys_sched_get_priority_min,
	[148] = libos_sys_sched_rr_get_interval,
	[155] = libos_refuse_pivot_root,
	[157] = libos_sys_prctl,
	[159] = libos_refuse_adjtimex,
	[160] = libos_sys_setrlimit,
	[161] = libos_refuse_chroot,
	[162] = libos_sys_sync,
	[164] = libos_sys_settimeofday,
	[165] = libos_refuse_mount,
	[166] = libos_refuse_umount2,
	[167] = libos_refuse_swapon,
	[168] = libos_refuse_swapoff,
	[169] = libos_refuse_reboot,
	[170] = libos_refuse_sethostname,
	[175] = libos_refuse_init_module,
	[176] = libos_refuse_delete_module,
	[188] = libos_sys_setxattr,
	[189] = libos_sys_lsetxattr,
	[190] = libos_sys_fsetxattr,
	[191] = libos_sys_getxattr,
	[192] = libos_sys_lgetxattr,
	[193] = libos_sys_fgetxattr,
	[194] = libos_sys_listxattr,
	[195] = libos_sys_llistxattr,
	[196] = libos_sys_flistxattr,
	[197] = libos_sys_removexattr,
	[198] = libos_sys_lremovexattr,
	[199] = libos_sys_fremovexattr,
	[201] = libos_sys_time,
	[203] = libos_sys_sched_setaffinity,
	[204] = libos_sys_sched_getaffinity,
	[213] = libos_sys_epoll_create,
	[221] = libos_sys_fadvise64,
	[222] = libos_sys_timer_create,
	[223] = libos_sys_timer_settime,
	[224] = libos_sys_timer_gettime,
	[225] = libos_sys_timer_getoverrun,
	[226] = libos_sys_timer_delete,
	[227] = libos_sys_clock_settime,
	[229] = libos_sys_clock_getres,
	[232] = libos_sys_epoll_wait,
	[235] = libos_sys_utimes,
	[246] = libos_refuse_kexec_load,
	[247] = libos_sys_waitid,
	[248] = libos_refuse_add_key,
	[249] = libos_refuse_request_key,
	[250] = libos_refuse_keyctl,
	[253] = libos_sys_inotify_init,
	[254] = libos_sys_inotify_add_watch,
	[255] = libos_sys_inotify_rm_watch,
	[257] = libos_sys_openat,
	[258] = libos_sys_mkdirat,
	[259] = libos_sys_mknodat,
	[260] = libos_sys_fchownat,
	[261] = libos_sys_futimesat,
	[262] = libos_sys_newfstatat,
	[263] = libos_sys_unlinkat,
	[264] = libos_sys_renameat,
	[265] = libos_sys_linkat,
	[266] = libos_sys_symlinkat,
	[267] = libos_sys_readlinkat,
	[268] = libos_sys_fchmodat,
	[269] = libos_sys_faccessat,
	[270] = libos_sys_pselect6,
	[271] = libos_sys_ppoll,
	[272] = libos_refuse_unshare,
	[275] = libos_sys_splice,
	[276] = libos_sys_tee,
	[280] = libos_sys_utimensat,
	[281] = libos_sys_epoll_pwait,
	[282] = libos_sys_signalfd,
	[283] = libos_sys_timerfd_create,
	[285] = libos_sys_fallocate,
	[286] = libos_sys_timerfd_settime,
	[287] = libos_sys_timerfd_gettime,
	[289] = libos_sys_signalfd4,
	[292] = libos_sys_dup3,
	[293] = libos_sys_pipe2,
	[294] = libos_sys_inotify_init1,
	[295] = libos_sys_preadv,
	[296] = libos_sys_pwritev,
	[298] = libos_refuse_perf_event_open,
	[302] = libos_sys_prlimit64,
	[303] = libos_refuse_name_to_handle_at,
	[304] = libos_refuse_open_by_handle_at,
	[305] = libos_refuse_clock_adjtime,
	[306] = libos_sys_syncfs,
	[308] = libos_refuse_setns,
	[309] = libos_sys_getcpu,
	[310] = libos_refuse_process_vm_readv,
	[311] = libos_refuse_process_vm_writev,
	[313] = libos_refuse_finit_module,
	[316] = libos_sys_renameat2,
	[317] = libos_refuse_seccomp,
	[319] = libos_sys_memfd_create,
	[320] = libos_refuse_kexec_file_load,
	[321] = libos_refuse_bpf,
	[322] = libos_sys_execveat,
	[323] = libos_refuse_userfaultfd,
	[326] = libos_sys_copy_file_range,
	[327] = libos_sys_preadv2,
	[328] = libos_sys_pwritev2,
	[332] = libos_sys_statx,
	[334] = libos_refuse_rseq,
	[424] = libos_sys_pidfd_send_signal,
	[425] = libos_refuse_io_uring_setup,
	[426] = libos_refuse_io_uring_enter,
	[427] = libos_refuse_io_uring_register,
	[428] = libos_refuse_open_tree,
	[429] = libos_refuse_move_mount,
	[430] = libos_refuse_fsopen,
	[431] = libos_refuse_fsconfig,
	[432] = libos_refuse_fsmount,
	[433] = libos_refuse_fspick,
	[434] = libos_sys_pidfd_open,
	[435] = libos_sys_clone3,
	[436] = libos_sys_close_range,
	[439] = libos_sys_faccessat2,
	[442] = libos_refuse_mount_setattr,
	[452] = libos_sys_fchmodat2,
	[467] = libos_refuse_open_tree_attr,
};

const unsigned char libos_call_flags[LIBOS_NR_MAX] = {
	[2] = LIBOS_CALL_REWRITABLE, /* open */
	[4] = LIBOS_CALL_REWRITABLE, /* stat */
	[6] = LIBOS_CALL_REWRITABLE, /* lstat */
	[13] = LIBOS_CALL_REWRITABLE, /* rt_sigaction */
	[21] = LIBOS_CALL_REWRITABLE, /* access */
	[24] = LIBOS_CALL_REWRITABLE, /* sched_yield */
	[63] = LIBOS_CALL_REWRITABLE, /* uname */
	[76] = LIBOS_CALL_REWRITABLE, /* truncate */
	[79] = LIBOS_CALL_REWRITABLE, /* getcwd */
	[80] = LIBOS_CALL_REWRITABLE, /* chdir */
	[81] = LIBOS_CALL_REWRITABLE, /* fchdir */
	[82] = LIBOS_CALL_REWRITABLE, /* rename */
	[83] = LIBOS_CALL_REWRITABLE, /* mkdir */
	[84] = LIBOS_CALL_REWRITABLE, /* rmdir */
	[85] = LIBOS_CALL_REWRITABLE, /* creat */
	[86] = LIBOS_CALL_REWRITABLE, /* link */
	[87] = LIBOS_CALL_REWRITABLE, /* unlink */
	[88] = LIBOS_CALL_REWRITABLE, /* symlink */
	[89] = LIBOS_CALL_REWRITABLE, /* readlink */
	[90] = LIBOS_CALL_REWRITABLE, /* chmod */
	[91] = LIBOS_CALL_REWRITABLE, /* fchmod */
	[92] = LIBOS_CALL_REWRITABLE, /* chown */
	[93] = LIBOS_CALL_REWRITABLE, /* fchown */
	[94] = LIBOS_CALL_REWRITABLE, /* lchown */
	[95] = LIBOS_CALL_REWRITABLE, /* umask */
	[96] = LIBOS_CALL_REWRITABLE, /* gettimeofday */
	[97] = LIBOS_CALL_REWRITABLE, /* getrlimit */
	[98] = LIBOS_CALL_REWRITABLE, /* getrusage */
	[99] = LIBOS_CALL_REWRITABLE, /* sysinfo */
	[100] = LIBOS_CALL_REWRITABLE, /* times */
	[102] = LIBOS_CALL_REWRITABLE, /* getuid */
	[104] = LIBOS_CALL_REWRITABLE, /* getgid */
	[107] = LIBOS_CALL_REWRITABLE, /* geteuid */
	[108] = LIBOS_CALL_REWRITABLE, /* getegid */
	[111] = LIBOS_CALL_REWRITABLE, /* getpgrp */
	[115] = LIBOS_CALL_REWRITABLE, /* getgroups */
	[118] = LIBOS_CALL_REWRITABLE, /* getresuid */
	[120] = LIBOS_CALL_REWRITABLE, /* getresgid */
	[121] = LIBOS_CALL_REWRITABLE, /* getpgid */
	[124] = LIBOS_CALL_REWRITABLE, /* getsid */
	[132] = LIBOS_CALL_REWRITABLE, /* utime */
	[137] = LIBOS_CALL_REWRITABLE, /* statfs */
	[138] = LIBOS_CALL_REWRITABLE, /* fstatfs */
	[191] = LIBOS_CALL_REWRITABLE, /* getxattr */
	[192] = LIBOS_CALL_REWRITABLE, /* lgetxattr */
	[193] = LIBOS_CALL_REWRITABLE, /* fgetxattr */
	[194] = LIBOS_CALL_REWRITABLE, /* listxattr */
	[195] = LIBOS_CALL_REWRITABLE, /* llistxattr */
	[196] = LIBOS_CALL_REWRITABLE, /* flistxattr */
	[201] = LIBOS_CALL_REWRITABLE, /* time */
	[204] = LIBOS_CALL_REWRITABLE, /* sched_getaffinity */
	[235] = LIBOS_CALL_REWRITABLE, /* utimes */
	[257] = LIBOS_CALL_REWRITABLE, /* openat */
	[258] = LIBOS_CALL_REWRITABLE, /* mkdirat */
	[260] = LIBOS_CALL_REWRITABLE, /* fchownat */
	[261] = LIBOS_CALL_REWRITABLE, /* futimesat */
	[262] = LIBOS_CALL_REWRITABLE, /* newfstatat */
	[263] = LIBOS_CALL_REWRITABLE, /* unlinkat */
	[264] = LIBOS_CALL_REWRITABLE, /* renameat */
	[265] = LIBOS_CALL_REWRITABLE, /* linkat */
	[266] = LIBOS_CALL_REWRITABLE, /* symlinkat */
	[267] = LIBOS_CALL_REWRITABLE, /* readlinkat */
	[268] = LIBOS_CALL_REWRITABLE, /* fchmodat */
	[269] = LIBOS_CALL_REWRITABLE, /* faccessat */
	[280] = LIBOS_CALL_REWRITABLE, /* utimensat */
	[302] = LIBOS_CALL_REWRITABLE, /* prlimit64 */
	[309] = LIBOS_CALL_REWRITABLE, /* getcpu */
	[316] = LIBOS_CALL_REWRITABLE, /* renameat2 */
	[332] = LIBOS_CALL_REWRITABLE, /* statx */
	[334] = LIBOS_CALL_QUIET, /* rseq */
	[439] = LIBOS_CALL_REWRITABLE, /* faccessat2 */
	[452] = LIBOS_CALL_REWRITABLE, /* fchmodat2 */
};
