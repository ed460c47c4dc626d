/* The Linux x86-64 user ABI the library OS emulates, from the kernel's own UAPI
 * headers (these need no libc), plus the few kernel-internal layouts the UAPI
 * does not export. */
#ifndef PICO_LIBOS_LINUX_ABI_H
#define PICO_LIBOS_LINUX_ABI_H

#include <asm/unistd.h>
#include <asm/stat.h>
#include <linux/stat.h>
#include <linux/fcntl.h>
#include <linux/errno.h>
#include <linux/utsname.h>
#include <linux/resource.h>
#include <linux/sysinfo.h>
#include <linux/poll.h>
#include <asm/signal.h>
#include <asm/siginfo.h>
#include <asm/sigcontext.h>
#include <asm/ucontext.h>
#include <linux/time_types.h>
#include <linux/time.h>
#include <linux/sched.h>
#include <linux/elf.h>
#include <linux/auxvec.h>
#include <linux/mman.h>
#include <linux/futex.h>
#include <linux/random.h>

#define RLIMIT_NLIMITS_K RLIM_NLIMITS

/* Calls newer than the 6.1 UAPI headers. */
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
/* <linux/fs.h> renameat2 flags */
#define RENAME_NOREPLACE_K (1 << 0)
#define RENAME_EXCHANGE_K (1 << 1)
#define RENAME_WHITEOUT_K (1 << 2)
/* <linux/watch_queue.h> */
#define O_NOTIFICATION_PIPE_K O_EXCL
/* <asm/ioctls.h> */
#define TCGETS_K 0x5401

/* <linux/seccomp.h> si_code of a seccomp SIGSYS */
#define SYS_SECCOMP_K 1
#define AUDIT_ARCH_X86_64_K 0xC000003EU

/* The kernel's struct for rt_sigaction (the UAPI's struct sigaction is the
 * old-ABI one on x86-64). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

/* auxv entries newer than some UAPI headers */
#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif
#ifndef AT_EXECFN
#define AT_EXECFN 31
#endif

/* fd_set for select(2): FD_SETSIZE bits */
#define LIBOS_FD_SETSIZE 1024

#define STDERR_FD 2
#define PAGE_SIZE_K 4096UL
/* The top of user space on x86-64 with 4-level paging (TASK_SIZE_MAX). */
#define USER_SPACE_END 0x7ffffffff000UL

#endif
