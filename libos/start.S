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

	.section .note.GNU-stack,"",@progbits
