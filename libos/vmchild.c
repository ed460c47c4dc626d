/* Children that share the caller's memory: vfork, posix_spawn, clone3.
 *
 * A child made with CLONE_VM but not CLONE_THREAD (glibc's posix_spawn and
 * system(), vfork, Go's os/exec) is another process running in this very
 * address space until it execs or exits.  Run naively, its library OS would
 * be its parent's: its chdir, setsid, umask or sigaction(SIGSYS) would change
 * the parent's state, its traps would push SIGSYS frames onto a stack the
 * parent's own handler is using, and its execve would leave its scratch
 * mapping in the parent.  So the filter traps that form of clone (abi/bpf.py)
 * and the library OS makes the child itself, from a block of memory it
 * allocates for the child (struct libos_vm_block):
 *
 *   - the child starts on the block's own stack, copies nothing from its
 *     parent's handler frame, claims the block's process state (a copy of
 *     its parent's) by writing its pid there, and then loads the guest's
 *     registers, flags and FPU state from the block and jumps to the
 *     instruction after the guest's syscall with the stack the guest asked
 *     for (libos_resume_guest, start.S).  Every later call in the child finds
 *     that state through libos_current(), which while any vm child exists
 *     looks its caller up by pid;
 *   - a vfork child that inherits an enabled sigaltstack gets one of its own
 *     in the block: the parent's handler frame may be on the shared one;
 *   - when the child runs on its parent's stack (vfork, or clone with no
 *     stack), it overwrites the parent's SIGSYS frame and the handler's
 *     frames below the guest's stack pointer: the parent copies that region
 *     into the block before the clone and back after it (the parent is
 *     suspended until the child execs or exits, CLONE_VFORK);
 *   - the child's execve builds the next loader's arguments in the block
 *     (exec_scratch): blocks are reused, so its pages are already there,
 *     and nothing is left for the parent to unmap, which would cost it a
 *     TLB shootdown on the CPU the child ran on;
 *   - other mappings the child makes for its execve (a scratch too large
 *     for the block) are recorded in the block and unmapped by the parent
 *     once the child has gone.
 * The block lives until the child execs or exits: for vfork that is when
 * clone returns in the parent; otherwise the kernel clears the block's
 * `alive` word then (CLONE_CHILD_CLEARTID) and the block is reclaimed on a
 * later clone or state lookup.
 *
 * clone3 uses the same path for every form that needs it: threads (the new
 * thread starts on the block's stack and frees the block as it loads the
 * guest's registers) and copies (no CLONE_VM) on a stack of their own.
 *
 * A hostile child can still scribble over its parent's memory, library-OS
 * state included, exactly as on Linux: that is the program hurting itself;
 * the boundary is the filter and the monitor, not this code. */
#include "libos.h"

#include <stddef.h>

#define CLONE_VM_K 0x00000100ULL
#define CLONE_VFORK_K 0x00004000ULL
#define CLONE_THREAD_K 0x00010000ULL
#define CLONE_SIGHAND_K 0x00000800ULL
#define CLONE_CHILD_CLEARTID_K 0x00200000ULL
#define SS_DISABLE_K 2

#define VM_STACK (32 * 1024)
#define VM_ALTSTACK (64 * 1024)
#define VM_SNAPSHOT (48 * 1024)
#define VM_FPSTATE (16 * 1024)
#define VM_MAPS 8
/* Enough for an execve's scratch (sys_process.c) with a few thousand
 * arguments; larger ones map their own. */
#define VM_EXEC_SCRATCH (64 * 1024)

/* What start.S reads: the clone arguments, the parent's stack snapshot and
 * the guest's registers for the child.  The offsets are written out there. */
struct libos_clone_args {
	uint64_t flags, stack, ptid, ctid, tls;
	uint64_t snap_top, snap_len, snap_buf;
	uint64_t r8, r9, r10, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rsp, rip, rflags;
	uint64_t fpstate, xfeatures; /* xfeatures 0: an fxsave image */
	uint64_t release;	     /* zeroed once the child has loaded the registers */
};
_Static_assert(offsetof(struct libos_clone_args, snap_top) == 40, "start.S");
_Static_assert(offsetof(struct libos_clone_args, r8) == 64, "start.S");
_Static_assert(offsetof(struct libos_clone_args, rsp) == 160, "start.S");
_Static_assert(offsetof(struct libos_clone_args, rflags) == 176, "start.S");
_Static_assert(offsetof(struct libos_clone_args, release) == 200, "start.S");

enum vm_state { VM_FREE, VM_RESERVED, VM_THREAD, VM_PROCESS, VM_COPY };

struct libos_vm_block {
	struct libos_clone_args args; /* first: start.S */
	int state;		      /* enum vm_state */
	int owner;		      /* the process that made the block */
	int vfork;
	int alive; /* CLONE_CHILD_CLEARTID target: 0 once the child execs or exits */
	int clear_sighand, own_altstack;
	int release_sink;
	int exec_busy; /* exec_scratch is in use (a thread of the child execs) */
	unsigned nmaps;
	struct {
		uint64_t addr, len;
	} maps[VM_MAPS];
	struct libos_process proc;
	struct libos_fd_overlay overlay[LIBOS_FD_OVERLAY];
	unsigned char fpstate[VM_FPSTATE] __attribute__((aligned(64)));
	unsigned char snapshot[VM_SNAPSHOT];
	unsigned char altstack[VM_ALTSTACK];
	unsigned char stack[VM_STACK] __attribute__((aligned(16)));
	unsigned char exec_scratch[VM_EXEC_SCRATCH] __attribute__((aligned(4096)));
};

#define BLOCK_BYTES ((sizeof(struct libos_vm_block) + PAGE_SIZE_K - 1) & ~(PAGE_SIZE_K - 1))

unsigned libos_vm_children;
static struct libos_vm_block *vm_slots[LIBOS_VM_SLOTS];

long libos_clone_vm(struct libos_clone_args *a);
void libos_resume_guest(const struct libos_clone_args *a) __attribute__((noreturn));
void libos_vm_child_start(struct libos_vm_block *b) __attribute__((noreturn, used));

static struct libos_vm_block *block_of(struct libos_process *proc)
{
	return (struct libos_vm_block *)((char *)proc - offsetof(struct libos_vm_block, proc));
}

/* The slot of b in libos_public (the monitor's /proc finds a vm child's
 * record there). */
static void publish(struct libos_vm_block *b, int on)
{
	for (int i = 0; i < LIBOS_VM_SLOTS; i++)
		if (vm_slots[i] == b) {
			__atomic_store_n(&libos_public.slot[i], on ? (uint64_t)(uintptr_t)&b->proc.pub : 0,
					 __ATOMIC_RELEASE);
			return;
		}
}

static void block_free(struct libos_vm_block *b)
{
	for (unsigned i = 0; i < b->nmaps && i < VM_MAPS; i++)
		if (b->maps[i].len) {
			sys2(__NR_munmap, b->maps[i].addr, b->maps[i].len);
			/* A block is used again: a record left here would unmap,
			 * for the next child, whatever the program has mapped
			 * at that address since. */
			b->maps[i].len = 0;
		}
	b->nmaps = 0;
	if (b->state == VM_PROCESS) {
		publish(b, 0);
		__atomic_fetch_sub(&libos_vm_children, 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&b->state, VM_FREE, __ATOMIC_RELEASE);
}

/* Blocks of children that shared memory without CLONE_VFORK: free once the
 * kernel has cleared `alive` (the child exec'd or exited). */
static void reclaim_finished(void)
{
	for (int i = 0; i < LIBOS_VM_SLOTS; i++) {
		struct libos_vm_block *b = __atomic_load_n(&vm_slots[i], __ATOMIC_ACQUIRE);
		if (b && __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == VM_PROCESS && !b->vfork &&
		    __atomic_load_n(&b->alive, __ATOMIC_ACQUIRE) == 0)
			block_free(b);
	}
}

/* A free block, reserved for the caller; NULL when none can be had. */
static struct libos_vm_block *block_take(void)
{
	reclaim_finished();
	for (int i = 0; i < LIBOS_VM_SLOTS; i++) {
		struct libos_vm_block *b = __atomic_load_n(&vm_slots[i], __ATOMIC_ACQUIRE);
		int expected = VM_FREE;
		if (b && __atomic_compare_exchange_n(&b->state, &expected, VM_RESERVED, 0, __ATOMIC_ACQUIRE,
						     __ATOMIC_RELAXED))
			return b;
	}
	for (int i = 0; i < LIBOS_VM_SLOTS; i++) {
		if (__atomic_load_n(&vm_slots[i], __ATOMIC_ACQUIRE))
			continue;
		long m = sys6(__NR_mmap, 0, BLOCK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m < 0)
			return NULL;
		struct libos_vm_block *b = (struct libos_vm_block *)m;
		b->state = VM_RESERVED;
		struct libos_vm_block *none = NULL;
		if (__atomic_compare_exchange_n(&vm_slots[i], &none, b, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return b;
		sys2(__NR_munmap, m, BLOCK_BYTES); /* another thread took the slot */
	}
	return NULL;
}

/* The state of the calling process when vm children exist (see libos.h). */
struct libos_process *libos_current_slow(void)
{
	int pid = (int)sys0(__NR_getpid);
	for (int i = 0; i < LIBOS_VM_SLOTS; i++) {
		struct libos_vm_block *b = __atomic_load_n(&vm_slots[i], __ATOMIC_ACQUIRE);
		if (b && __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == VM_PROCESS &&
		    __atomic_load_n(&b->proc.pub.pid, __ATOMIC_ACQUIRE) == pid)
			return &b->proc;
	}
	if (libos_main_process.pub.pid != pid) {
		/* The first lookup in a copy of this memory made by fork while
		 * vm children existed: the blocks it sees are copies, and
		 * those other processes made are not its own.  If its parent
		 * was a vm child, the parent's state is the one it inherited. */
		int ppid = (int)sys0(__NR_getppid);
		for (int i = 0; i < LIBOS_VM_SLOTS; i++) {
			struct libos_vm_block *b = vm_slots[i];
			if (b && b->state == VM_PROCESS && b->proc.pub.pid == ppid) {
				struct libos_fd_overlay *ov = b->proc.fd_overlay;
				libos_process_copy(&libos_main_process, &b->proc);
				libos_main_process.fd_overlay = NULL;
				for (int k = 0; ov && k < LIBOS_FD_OVERLAY; k++)
					if (ov[k].fd >= 0)
						libos_fd_remember(ov[k].fd, ov[k].path);
			}
		}
		unsigned mine = 0;
		for (int i = 0; i < LIBOS_VM_SLOTS; i++) {
			struct libos_vm_block *b = vm_slots[i];
			int state = b ? __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) : VM_FREE;
			/* A block being reserved right now may still name its
			 * previous owner: leave it (a copy would only leak it). */
			if (state == VM_FREE || state == VM_RESERVED)
				continue;
			if (b->owner != pid) {
				if (state == VM_PROCESS)
					libos_public.slot[i] = 0;
				__atomic_compare_exchange_n(&b->state, &state, VM_FREE, 0, __ATOMIC_RELEASE,
							    __ATOMIC_RELAXED);
			}
			else if (state == VM_PROCESS)
				mine++;
		}
		libos_main_process.pub.pid = pid;
		__atomic_store_n(&libos_vm_children, mine, __ATOMIC_RELEASE);
	}
	return &libos_main_process;
}

/* Mappings a vm child makes that must outlive it until its parent can
 * unmap them (the scratch of its execve): a slot number, or -1 when the
 * caller is not a vm child (or the block is full: the mapping then leaks
 * into the parent, as it always did). */
int libos_vm_keep_mapping(uint64_t addr, uint64_t len)
{
	struct libos_process *proc = libos_current();
	if (proc == &libos_main_process)
		return -1;
	struct libos_vm_block *b = block_of(proc);
	for (unsigned i = 0; i < VM_MAPS; i++)
		if (!b->maps[i].len) {
			b->maps[i].addr = addr;
			b->maps[i].len = len;
			if (b->nmaps <= i)
				b->nmaps = i + 1;
			return (int)i;
		}
	return -1;
}

void *libos_vm_exec_scratch(size_t len)
{
	struct libos_process *proc = libos_current();
	if (proc == &libos_main_process)
		return NULL;
	struct libos_vm_block *b = block_of(proc);
	int expected = 0;
	if (len > sizeof(b->exec_scratch) ||
	    !__atomic_compare_exchange_n(&b->exec_busy, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return NULL;
	return b->exec_scratch;
}

void libos_vm_exec_scratch_done(void *scratch)
{
	struct libos_process *proc = libos_current();
	if (proc == &libos_main_process)
		return;
	struct libos_vm_block *b = block_of(proc);
	if (scratch == b->exec_scratch)
		__atomic_store_n(&b->exec_busy, 0, __ATOMIC_RELEASE);
}

void libos_vm_forget_mapping(int slot)
{
	if (slot < 0 || slot >= VM_MAPS)
		return;
	struct libos_process *proc = libos_current();
	if (proc != &libos_main_process)
		block_of(proc)->maps[slot].len = 0;
}

void libos_vm_forget_mapping_at(uint64_t addr)
{
	struct libos_process *proc = libos_current();
	if (proc == &libos_main_process)
		return;
	struct libos_vm_block *b = block_of(proc);
	for (unsigned i = 0; i < VM_MAPS; i++)
		if (b->maps[i].len && b->maps[i].addr == addr)
			b->maps[i].len = 0;
}

/* ---- making the child ---- */

static void clear_handlers(struct libos_process *proc)
{
	/* CLONE_CLEAR_SIGHAND: every handled signal goes back to its default
	 * (ignored ones stay ignored), as the kernel's flush_signal_handlers. */
	for (int sig = 1; sig <= 64; sig++) {
		struct kernel_sigaction old;
		if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSYS)
			continue;
		if (sys4(__NR_rt_sigaction, sig, 0, &old, sizeof(uint64_t)) < 0)
			continue;
		if (old.handler == (void *)SIG_IGN || old.handler == (void *)SIG_DFL)
			continue;
		struct kernel_sigaction dfl = {0};
		sys4(__NR_rt_sigaction, sig, &dfl, 0, sizeof(uint64_t));
	}
	if (proc->guest_sigsys.handler != (void *)SIG_IGN)
		memset(&proc->guest_sigsys, 0, sizeof(proc->guest_sigsys));
}

void libos_vm_child_start(struct libos_vm_block *b)
{
	if (b->state == VM_PROCESS) {
		__atomic_store_n(&b->proc.pub.pid, (int)sys0(__NR_getpid), __ATOMIC_RELEASE);
		if (b->own_altstack) {
			struct {
				void *sp;
				int flags;
				size_t size;
			} ss = {b->altstack, 0, sizeof(b->altstack)};
			sys2(__NR_sigaltstack, &ss, 0);
		}
	}
	/* The catcher that holds signals for its parent's waiters and
	 * signalfds is no use to a child that has none: the program's
	 * dispositions go back in force, unless it shares its parent's. */
	if (b->state == VM_PROCESS && !(b->args.flags & CLONE_SIGHAND_K))
		libos_sigwait_release_held(&b->proc.sigwait);
	if (b->clear_sighand)
		clear_handlers(b->state == VM_PROCESS ? &b->proc : &libos_main_process);
	libos_resume_guest(&b->args);
}

/* The FPU image of the trapped context, for the child: the signal frame's
 * xsave area (its software bytes say what it holds), else its fxsave part. */
static void copy_fpstate(struct libos_vm_block *b, const struct ucontext *uc)
{
	const unsigned char *fp = (const unsigned char *)uc->uc_mcontext.fpstate;
	b->args.fpstate = (uint64_t)(uintptr_t)b->fpstate;
	b->args.xfeatures = 0;
	if (!fp) {
		/* No FPU state saved: an initial fxsave image (MXCSR's default). */
		memset(b->fpstate, 0, 512);
		b->fpstate[24] = 0x80;
		b->fpstate[25] = 0x1f;
		b->fpstate[0] = 0x7f; /* x87 control word 0x37f */
		b->fpstate[1] = 0x03;
		return;
	}
	uint32_t magic1, xstate_size;
	uint64_t xfeatures;
	memcpy(&magic1, fp + 464, 4);
	memcpy(&xfeatures, fp + 472, 8);
	memcpy(&xstate_size, fp + 480, 4);
	if (magic1 == 0x46505853U /* FP_XSTATE_MAGIC1 */ && xstate_size >= 576 && xstate_size <= VM_FPSTATE) {
		memcpy(b->fpstate, fp, xstate_size);
		b->args.xfeatures = xfeatures;
	} else {
		memcpy(b->fpstate, fp, 512);
	}
}

static int on_sigaltstack(const struct ucontext *uc)
{
	uintptr_t here = (uintptr_t)uc;
	uintptr_t sp = (uintptr_t)uc->uc_stack.ss_sp;
	return !(uc->uc_stack.ss_flags & SS_DISABLE_K) && here >= sp && here - sp < uc->uc_stack.ss_size;
}

long libos_clone_with_block(struct ucontext *uc, uint64_t flags, uint64_t child_sp, uint64_t ptid, uint64_t ctid,
			    uint64_t tls, int clear_sighand)
{
	const struct sigcontext *r = &uc->uc_mcontext;
	int vm = (flags & CLONE_VM_K) != 0, thread = (flags & CLONE_THREAD_K) != 0;
	int vfork = (flags & CLONE_VFORK_K) != 0;
	struct libos_vm_block *b = block_take();
	if (!b)
		return -EAGAIN;
	int self = (int)sys0(__NR_getpid);
	b->owner = self;
	b->vfork = vfork;
	b->nmaps = 0;
	memset(b->maps, 0, sizeof(b->maps));
	b->exec_busy = 0;
	b->clear_sighand = clear_sighand;
	b->own_altstack = 0;
	if (!child_sp)
		child_sp = r->rsp; /* vfork: the child goes on on our stack */

	struct libos_clone_args *a = &b->args;
	a->flags = flags;
	a->stack = (uint64_t)(uintptr_t)(b->stack + sizeof(b->stack));
	a->ptid = ptid;
	a->ctid = ctid;
	a->tls = tls;
	a->snap_top = a->snap_len = 0;
	a->snap_buf = (uint64_t)(uintptr_t)b->snapshot;
	a->r8 = r->r8;
	a->r9 = r->r9;
	a->r10 = r->r10;
	a->r12 = r->r12;
	a->r13 = r->r13;
	a->r14 = r->r14;
	a->r15 = r->r15;
	a->rdi = r->rdi;
	a->rsi = r->rsi;
	a->rbp = r->rbp;
	a->rbx = r->rbx;
	a->rdx = r->rdx;
	a->rsp = child_sp;
	a->rip = r->rip;
	a->rflags = r->eflags;
	a->release = (uint64_t)(uintptr_t)&b->release_sink;
	copy_fpstate(b, uc);

	int kind = !vm ? VM_COPY : thread ? VM_THREAD : VM_PROCESS;
	if (kind == VM_THREAD) {
		/* The block is free again as soon as the new thread has loaded
		 * its registers from it. */
		a->release = (uint64_t)(uintptr_t)&b->state;
	} else if (kind == VM_PROCESS) {
		for (int i = 0; i < LIBOS_FD_OVERLAY; i++)
			b->overlay[i].fd = -1;
		b->proc.fd_overlay = b->overlay;
		libos_process_copy(&b->proc, libos_current());
		if (!vfork && !(flags & CLONE_CHILD_CLEARTID_K)) {
			/* Told by the kernel when the child is done with this memory. */
			b->alive = 1;
			a->flags |= CLONE_CHILD_CLEARTID_K;
			a->ctid = (uint64_t)(uintptr_t)&b->alive;
		} else {
			b->alive = 1;
		}
		/* A vfork child keeps its parent's sigaltstack, where the parent's
		 * own handler frame may be: it gets one of its own. */
		if (vfork && !(uc->uc_stack.ss_flags & SS_DISABLE_K) && uc->uc_stack.ss_size)
			b->own_altstack = 1;
		/* A vfork child running on our stack overwrites what lies below
		 * the guest's stack pointer: our SIGSYS frame and handler
		 * frames.  They are copied aside and put back (start.S). */
		uintptr_t here = (uintptr_t)__builtin_frame_address(0);
		uintptr_t top = child_sp < r->rsp - 128 ? child_sp : r->rsp - 128;
		if (vfork && !on_sigaltstack(uc) && child_sp > here && top > here &&
		    top - here + 4096 <= sizeof(b->snapshot))
			a->snap_top = top;
		__atomic_fetch_add(&libos_vm_children, 1, __ATOMIC_ACQ_REL);
		publish(b, 1);
	}
	__atomic_store_n(&b->state, kind, __ATOMIC_RELEASE);

	long ret = libos_clone_vm(a);

	if (ret < 0) {
		block_free(b);
		return ret;
	}
	if (kind == VM_COPY || (kind == VM_PROCESS && vfork))
		block_free(b); /* the copy has its own; the vfork child is gone */
	return ret;
}
