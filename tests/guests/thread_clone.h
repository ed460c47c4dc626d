/* thread_clone: clone(flags, stack, ptid, ctid) running fn(arg) on the new
 * stack in the child; returns the child's tid (or -errno) in the parent.
 * fn and arg ride on the new stack because the child starts with no frame
 * of its own; the child exits (this thread only) with fn's return value.
 * For the freestanding guests that start threads (direct_ok, med_affinity). */
#ifndef PICO_GUEST_THREAD_CLONE_H
#define PICO_GUEST_THREAD_CLONE_H

/* The clone flags a thread is made with. */
#define CLONE_VM 0x00000100
#define CLONE_FS 0x00000200
#define CLONE_FILES 0x00000400
#define CLONE_SIGHAND 0x00000800
#define CLONE_THREAD 0x00010000
#define CLONE_SYSVSEM 0x00040000
#define CLONE_PARENT_SETTID 0x00100000
#define CLONE_CHILD_CLEARTID 0x00200000

long thread_clone(unsigned long flags, void *stack_top, int *ptid, int *ctid, int (*fn)(void *),
		  void *arg);
__asm__(".text\n"
	".global thread_clone\n"
	"thread_clone:\n"
	"  and $-16, %rsi\n"
	"  sub $16, %rsi\n"
	"  mov %r8, 0(%rsi)\n"
	"  mov %r9, 8(%rsi)\n"
	"  mov %rcx, %r10\n"
	"  xor %r8d, %r8d\n" /* tls: unused without CLONE_SETTLS */
	"  mov $56, %eax\n"
	"  syscall\n"
	"  test %rax, %rax\n"
	"  jnz 1f\n"
	"  xor %ebp, %ebp\n"
	"  pop %rax\n"
	"  pop %rdi\n"
	"  call *%rax\n"
	"  mov %eax, %edi\n"
	"  mov $60, %eax\n" /* exit: this thread only */
	"  syscall\n"
	"  hlt\n"
	"1:\n"
	"  ret\n");

#endif
