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

/* long libos_clone_vm(struct libos_clone_args *a) (vmchild.c): the clone
 * system call for a child made from a block.  Offsets into *a: 0 flags,
 * 8 stack, 16 ptid, 24 ctid, 32 tls, 40 snap_top, 48 snap_len, 56 snap_buf.
 * With snap_top set, [%rsp, snap_top) -- this function's return address,
 * the handler's frames and the SIGSYS frame -- is copied to snap_buf before
 * the call and back after it: a vfork child runs on this stack.  Nothing is
 * pushed in between, so the bytes put back are the ones the parent left.
 * The child starts on the block's stack in libos_vm_child_start(a). */
	.globl libos_clone_vm
	.type libos_clone_vm, @function
libos_clone_vm:
	mov %rdi, %r9		/* the syscall keeps %r9, in both processes */
	mov 40(%r9), %rcx
	test %rcx, %rcx
	jz 1f
	sub %rsp, %rcx
	mov %rcx, 48(%r9)
	mov %rsp, %rsi
	mov 56(%r9), %rdi
	cld
	rep movsb
1:	mov 0(%r9), %rdi
	mov 8(%r9), %rsi
	mov 16(%r9), %rdx
	mov 24(%r9), %r10
	mov 32(%r9), %r8
	mov $56, %eax		/* __NR_clone */
	syscall
	test %rax, %rax
	jz 3f
	cmpq $0, 40(%r9)
	je 2f
	mov %rax, %r8
	mov 48(%r9), %rcx
	mov %rsp, %rdi
	mov 56(%r9), %rsi
	cld
	rep movsb
	mov %r8, %rax
2:	ret
3:	xor %ebp, %ebp
	mov %r9, %rdi
	call libos_vm_child_start
	hlt

/* noreturn libos_resume_guest(const struct libos_clone_args *a): the child
 * becomes the guest's context as it was at the trapped syscall, with the
 * syscall's result 0.  Offsets: 64 r8, 72 r9, 80 r10, 88 r12, 96 r13,
 * 104 r14, 112 r15, 120 rdi, 128 rsi, 136 rbp, 144 rbx, 152 rdx, 160 rsp,
 * 168 rip, 176 rflags, 184 fpstate, 192 xfeatures (0: an fxsave image),
 * 200 release (an int zeroed once everything is loaded: the block may then
 * be reused).  %rcx and %r11, which the syscall clobbers, end up holding the
 * return address and the block, as after a syscall. */
	.globl libos_resume_guest
	.type libos_resume_guest, @function
libos_resume_guest:
	mov %rdi, %r11
	mov 184(%r11), %rdi
	mov 192(%r11), %rax
	test %rax, %rax
	jz 1f
	mov %rax, %rdx
	shr $32, %rdx
	xrstor64 (%rdi)
	jmp 2f
1:	fxrstor64 (%rdi)
2:	pushq 176(%r11)
	popfq			/* from here on no instruction changes the flags */
	mov 64(%r11), %r8
	mov 72(%r11), %r9
	mov 80(%r11), %r10
	mov 88(%r11), %r12
	mov 96(%r11), %r13
	mov 104(%r11), %r14
	mov 112(%r11), %r15
	mov 120(%r11), %rdi
	mov 128(%r11), %rsi
	mov 136(%r11), %rbp
	mov 144(%r11), %rbx
	mov 152(%r11), %rdx
	mov 168(%r11), %rcx
	mov 200(%r11), %rax
	mov 160(%r11), %rsp
	movl $0, (%rax)
	mov $0, %eax
	jmp *%rcx

	.section .note.GNU-stack,"",@progbits
