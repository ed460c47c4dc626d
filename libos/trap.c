/* The trap layer: every Linux syscall outside the ABI's direct set reaches
 * the library OS as a SIGSYS (SECCOMP_RET_TRAP).  The handler reads the call
 * from the signal frame, dispatches through one table indexed by syscall
 * number, and writes the result into the saved %rax; returning from the
 * handler (rt_sigreturn, a direct call) resumes the guest right after its
 * syscall instruction with every other register as it was.
 *
 * The handler keeps no state outside its own frame, so it is reentrant: guest
 * threads trap concurrently, and a signal arriving inside the handler may run
 * a guest handler that traps again (SA_NODEFER: a nested trap while SIGSYS is
 * blocked would make the kernel kill the process instead). */
#include "libos.h"

void libos_sigreturn(void);

unsigned long libos_trap_count;
int libos_trace;

/* Calls already reported in this image: one bit per syscall number. */
static unsigned long emulated_seen[(LIBOS_NR_MAX + 63) / 64];

void libos_note_emulated(unsigned nr)
{
	if (nr >= LIBOS_NR_MAX)
		return;
	unsigned long bit = 1UL << (nr % 64);
	if (__atomic_fetch_or(&emulated_seen[nr / 64], bit, __ATOMIC_RELAXED) & bit)
		return;
	pico_note_unsupported((long)nr | PICO_NOTE_EMULATED, 0);
}

/* Offsets of the argument registers in the saved context (struct sigcontext
 * inside struct ucontext). */
static void sigsys_handler(int sig, siginfo_t *si, void *ctx)
{
	struct ucontext *uc = ctx;
	struct sigcontext *r = &uc->uc_mcontext;
	if (si->si_code != SYS_SECCOMP_K || si->si_arch != AUDIT_ARCH_X86_64_K) {
		/* A SIGSYS the guest sent itself (kill/tgkill): it belongs to the
		 * guest's virtual SIGSYS disposition -- unless it is the library
		 * OS's own poke of a timer's helper thread (sys_timer.c). */
		if (si->si_code == SI_TKILL &&
		    (libos_timer_is_helper(sys0(__NR_gettid)) || libos_signalfd_is_helper(sys0(__NR_gettid))))
			return;
		libos_deliver_guest_sigsys(sig, si, ctx);
		return;
	}
	__atomic_fetch_add(&libos_trap_count, 1, __ATOMIC_RELAXED);
	unsigned nr = (unsigned)si->si_syscall;
	long ret;
	libos_syscall_fn fn = nr < LIBOS_NR_MAX ? libos_syscall_table[nr] : NULL;
	ret = fn ? fn((long)r->rdi, (long)r->rsi, (long)r->rdx, (long)r->r10, (long)r->r8, (long)r->r9, uc)
		 : -ENOSYS;
	/* An empty slot, or a form of the call not implemented yet (a handler
	 * answering ENOSYS): leave an audit record naming the call, unless the
	 * table says the refusal is expected (rseq: it would only add noise). */
	if (ret == -ENOSYS) {
		if (!(nr < LIBOS_NR_MAX && (libos_call_flags[nr] & LIBOS_CALL_QUIET)))
			pico_note_unsupported((long)nr, (long)r->rdi);
	} else if (libos_trace) {
		libos_note_emulated(nr);
	}
	r->rax = (uint64_t)ret;
	/* Next time, let this site call the library OS without a trap. */
	libos_rewrite_site((uintptr_t)r->rip, nr);
}

long libos_install_sigsys_handler(void)
{
	struct kernel_sigaction act = {
		.handler = (void *)sigsys_handler,
		/* SA_ONSTACK: runtimes that run on small stacks (Go's goroutines)
		 * set a sigaltstack per thread precisely so that handlers never run
		 * on them; a guest without one keeps using its own stack. */
		.flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTORER,
		.restorer = libos_sigreturn,
		.mask = 0,
	};
	return sys4(__NR_rt_sigaction, SIGSYS, &act, 0, sizeof(uint64_t));
}
