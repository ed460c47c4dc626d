/* Access to guest memory from the trap path.
 *
 * A Linux syscall given a bad pointer fails with EFAULT; the library OS must do
 * the same rather than fault inside its SIGSYS handler (which would kill the
 * program or run its SIGSEGV handler on a libos frame).  It has no fault
 * fixup tables like the kernel's, so before touching a page it asks the kernel
 * with a direct syscall that reports EFAULT and has no other effect:
 *   readable: futex(FUTEX_WAIT_PRIVATE) on a word of the page with a zero
 *             timeout: EFAULT if unreadable, else EAGAIN/ETIMEDOUT at once;
 *   writable: getrandom() of one byte into the page.
 * This is a probe, not a lock: another guest thread may unmap the page after
 * the probe; then the guest faults itself, which it could do anyway.
 *
 * Fast path: memory just above the handler's own frame is the trapping
 * thread's live stack (the kernel pushed the signal frame right below the
 * guest's stack pointer, and the guest's frames are above it), so a buffer
 * there -- the usual `struct utsname u;` in the caller -- needs no probe.
 * A hostile pointer past the top of a nearly empty stack could fault the
 * guest instead of getting EFAULT; it can only hurt itself. */
#include "libos.h"

#define LIVE_STACK_WINDOW (64 * 1024)

static inline int on_live_stack(uintptr_t a, size_t n)
{
	volatile char marker = 0;
	uintptr_t sp = (uintptr_t)&marker;
	return a >= sp && a + n >= a && a + n <= sp + LIVE_STACK_WINDOW;
}

static int page_readable(const void *p)
{
	uintptr_t word = (uintptr_t)p & ~(uintptr_t)3;
	struct __kernel_timespec zero = {0, 0};
	/* Expected value unlikely to match; if it does, the zero timeout returns. */
	long r = sys6(__NR_futex, word, FUTEX_WAIT_PRIVATE, 0x5a5a5a5a, (long)&zero, 0, 0);
	return r != -EFAULT;
}

static int page_writable(void *p)
{
	long r;
	do
		r = sys3(__NR_getrandom, p, 1, GRND_NONBLOCK);
	while (r == -EINTR);
	return r != -EFAULT;
}

static int range_ok(uintptr_t a, size_t n)
{
	return a + n >= a && a + n <= USER_SPACE_END;
}

long libos_check_readable(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	if (n == 0 || on_live_stack(a, n))
		return 0;
	if (!range_ok(a, n))
		return -EFAULT;
	for (uintptr_t page = a & ~(PAGE_SIZE_K - 1); page < a + n; page += PAGE_SIZE_K)
		if (!page_readable((const void *)(page < a ? a : page)))
			return -EFAULT;
	return 0;
}

long libos_check_writable(void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	if (n == 0 || on_live_stack(a, n))
		return 0;
	if (!range_ok(a, n))
		return -EFAULT;
	for (uintptr_t page = a & ~(PAGE_SIZE_K - 1); page < a + n; page += PAGE_SIZE_K)
		if (!page_writable((void *)(page < a ? a : page)))
			return -EFAULT;
	return 0;
}

long libos_copy_to_guest(void *dst, const void *src, size_t n)
{
	long r = libos_check_writable(dst, n);
	if (r < 0)
		return r;
	memcpy(dst, src, n);
	return 0;
}

long libos_copy_from_guest(void *dst, const void *src, size_t n)
{
	long r = libos_check_readable(src, n);
	if (r < 0)
		return r;
	memcpy(dst, src, n);
	return 0;
}

/* first_page_known: the caller has probed the page of src already. */
static long copy_string(char *dst, const char *src, size_t cap, int first_page_known)
{
	uintptr_t a = (uintptr_t)src;
	uintptr_t checked_until = a; /* bytes below this are known readable */
	if (a == 0 || a >= USER_SPACE_END)
		return -EFAULT;
	if (first_page_known)
		checked_until = (a & ~(PAGE_SIZE_K - 1)) + PAGE_SIZE_K;
	if (on_live_stack(a, cap))
		checked_until = a + cap;
	for (size_t i = 0; i < cap; i++) {
		if (a + i >= checked_until) {
			if (a + i >= USER_SPACE_END || !page_readable(src + i))
				return -EFAULT;
			checked_until = ((a + i) & ~(PAGE_SIZE_K - 1)) + PAGE_SIZE_K;
		}
		dst[i] = src[i];
		if (!dst[i])
			return (long)i;
	}
	return -ENAMETOOLONG;
}

long libos_copy_string_from_guest(char *dst, const char *src, size_t cap)
{
	return copy_string(dst, src, cap, 0);
}

long libos_copy_string_after_probe(char *dst, const char *src, size_t cap)
{
	return copy_string(dst, src, cap, 1);
}
