/* Entry points of the library-OS image; assembled into the loader's text. */
	.section .bss
	.balign 64
loader_stack:
	.skip 65536
loader_stack_top:

	.text
/* The kernel enters with %rsp at argc.  The loader runs its C code on a
 * private stack in its own .bss, so that the guest's initial stack can be
 * built just below the kernel's one without clobbering a live frame. */
	.globl _start
	.type _start, @function
_start:
	mov %rsp, %rdi
	lea loader_stack_top(%rip), %rsp
	xor %ebp, %ebp
	call loader_main
	hlt

/* libos_enter_guest(entry, stack): the ELF ABI's process entry state: %rsp
 * at argc, %rdx = 0 (no function for atexit), the other registers zero. */
	.globl libos_enter_guest
	.type libos_enter_guest, @function
libos_enter_guest:
	mov %rsi, %rsp
	mov %rdi, %r11
	xor %eax, %eax
	xor %ebx, %ebx
	xor %ecx, %ecx
	xor %edx, %edx
	xor %esi, %esi
	xor %edi, %edi
	xor %ebp, %ebp
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	xor %r15d, %r15d
	jmp *%r11

/* SA_RESTORER target of the library OS's SIGSYS handler. */
	.globl libos_sigreturn
	.type libos_sigreturn, @function
libos_sigreturn:
	mov $15, %eax	/* __NR_rt_sigreturn */
	syscall
	hlt

/* libos_fast_entry: called from a rewritten call site's stub (rewrite.c)
 * with %eax = the Linux call number, the arguments in the syscall registers
 * and %rsp already below the caller's red zone.  Like the syscall it
 * replaces, it preserves every register except %rax (the result), %rcx and
 * %r11, and the flags; the C code is built with -mgeneral-regs-only, so the
 * vector and x87 state need no saving. */
	.globl libos_fast_entry
	.type libos_fast_entry, @function
libos_fast_entry:
	pushfq
	push %rbp
	mov %rsp, %rbp
	push %rdi
	push %rsi
	push %rdx
	push %r10
	push %r8
	push %r9
	mov %rsp, %rsi		/* saved: r9, r8, r10, rdx, rsi, rdi */
	and $-16, %rsp		/* the C ABI's alignment at a call */
	cld			/* and its direction flag (popfq restores it) */
	mov %eax, %edi
	call libos_fast_dispatch
	lea -48(%rbp), %rsp
	pop %r9
	pop %r8
	pop %r10
	pop %rdx
	pop %rsi
	pop %rdi
	pop %rbp
	popfq
	ret

	.section .note.GNU-stack,"",@progbits
