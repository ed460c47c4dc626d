/* Syscall-site rewriting: the fast path for emulated calls.
 *
 * A trapped call costs a SIGSYS round trip, most of it the kernel saving and
 * restoring the FPU state in the signal frame, while the library OS's own
 * answer to uname or getcwd is a few loads and copies (the numbers are in
 * docs/PERFORMANCE.md; docs/ARCHITECTURE.md, "Rewritten call sites").  So,
 * like gVisor's systrap platform, the third trap from a call site of the form
 * compilers and glibc emit (see rewrite_due: most sites are reached once or
 * twice),
 *
 *     b8 NN NN NN NN      mov $nr, %eax
 *     0f 05               syscall
 *
 * rewrites its first five bytes into `jmp stub`.  glibc's own open (and the
 * dynamic loader's, in every exec) puts a few register moves between the
 * two,
 *
 *     b8 01 01 00 00      mov $257, %eax
 *     48 89 fe            mov %rsi, %rdi ... (up to FILLER_MAX bytes)
 *     0f 05               syscall
 *
 * which the stub then makes itself: only moves between registers and of a
 * 32-bit constant into one, never into %rax or %rsp (filler_insn), so their
 * bytes run the same anywhere.  The stub, in a page the library OS maps
 * within +-2 GiB of the site, sets %eax = nr, runs the moves, steps over
 * the red zone, calls libos_fast_entry (start.S), and jumps back to the
 * instruction after the syscall.  Later calls from that site cost a few
 * function calls instead of a signal.
 *
 * Why this is sound:
 *  - Security: it changes nothing the filter decides.  The stub runs the
 *    handler the SIGSYS path would run, inside the same untrusted process,
 *    and every host call the handler makes still passes the filter (the guest
 *    could always have called the library OS's code itself).
 *  - The `0f 05` (and any moves before it) is left in place: a thread that
 *    had already executed the old `mov`, or code that jumps straight to a
 *    later instruction, still traps and is served the slow way.
 *  - The five bytes are replaced by one aligned atomic compare-and-exchange
 *    (8 bytes, or cmpxchg16b when they straddle an 8-byte boundary inside a
 *    16-byte one), so another thread fetches the old `mov` or the new `jmp`,
 *    never a mix.  Sites that straddle a 16-byte boundary are left trapping.
 *  - Registers: a syscall preserves everything but %rax, %rcx and %r11.  The
 *    entry saves the argument registers and the flags, and the library OS is
 *    compiled with -mgeneral-regs-only (libos/build.py), so no vector or x87
 *    register is ever touched.  The stub moves %rsp below the 128-byte red
 *    zone before its call, so a leaf function's red-zone data survives.
 *  - Only calls the table marks rewritable (libos/linux_calls.toml) are
 *    rewritten: their handlers never use the signal context, they are never
 *    allowed directly by the filter (patching those would make a cheap direct
 *    call go through the library OS), and they do not exec, fork or touch
 *    signal state.
 *  - Page protection: the site's page is made writable only around the store,
 *    with PROT_READ|PROT_WRITE|PROT_EXEC so that other threads keep executing
 *    it, and then set back to read+execute -- unless it was writable already,
 *    which MADV_POPULATE_WRITE tells without changing anything (EINVAL on a
 *    mapping that is not writable; on a writable private file mapping it
 *    copies the page, which the store would do anyway).  On a kernel without
 *    it (before 5.14) nothing is rewritten.  A page whose
 *    protection cannot be changed (mseal) is remembered and not tried again.
 *  - Patching is serialised by a try-lock: a thread, or a guest signal handler
 *    nested in a trap, that finds it taken is served the slow way and the
 *    site is patched on a later trap.
 *
 * What a program can notice: its text pages differ from the file after the
 * first calls (a program that checksums its own code sees it), and each
 * rewritten page becomes a private copy. */
#include "libos.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void libos_fast_entry(void);
unsigned long libos_fast_count;
unsigned long libos_rewritten_sites;


/* ---- stubs ---- */

#define STUB_SIZE 64
#define STUBS_PER_PAGE (PAGE_SIZE_K / STUB_SIZE)
#define STUB_PAGES_MAX 64
#define FAILED_MAX 32

static struct {
	uintptr_t base;
	unsigned used;
} stub_pages[STUB_PAGES_MAX];
static int nstub_pages;
static uintptr_t failed_pages[FAILED_MAX];
static unsigned nfailed;
static int rewrite_lock;
static int rewrite_disabled;
static int populate_write_known;

/* How many times each site trapped.  A site is rewritten on its third trap,
 * not its first: rewriting costs several calls that change page protections
 * (and a private copy of the page), a few traps' worth, and most sites of a
 * short-lived program -- its dynamic loader's above all, in every exec --
 * are reached once or twice.  Waiting for the third trap bounds what a site
 * can cost at about twice the best choice made knowing the future.
 *
 * Two slots per hash of the site (one page in all), each holding a site and
 * its count in the bits a user-space address leaves clear.  A site finding
 * both taken replaces the one with fewer traps; so only three sites sharing
 * a hash and trapping in turn can keep one another from ever counting to
 * three (they are then left trapping, as a site that is not rewritable is).
 * Races between threads at most lose a count: a site traps once more. */
#define REWRITE_ON_TRAP 3
#define TRAP_SETS 256
#define COUNT_SHIFT 48
#define SITE_BITS ((1UL << COUNT_SHIFT) - 1)
static uintptr_t trap_counts[TRAP_SETS][2];

static int rewrite_due(uintptr_t site)
{
	if (site & ~SITE_BITS)
		return 1; /* no room for a count: rewritten at once, as before counting */
	uintptr_t *set = trap_counts[((site * 0x9e3779b97f4a7c15UL) >> 32) % TRAP_SETS];
	for (int tries = 0; tries < 4; tries++) {
		uintptr_t v0 = __atomic_load_n(&set[0], __ATOMIC_RELAXED);
		uintptr_t v1 = __atomic_load_n(&set[1], __ATOMIC_RELAXED);
		int way;
		uintptr_t n;
		if ((v0 & SITE_BITS) == site || (v1 & SITE_BITS) == site) {
			way = (v0 & SITE_BITS) == site ? 0 : 1;
			n = ((way ? v1 : v0) >> COUNT_SHIFT) + 1;
		} else {
			way = (v1 >> COUNT_SHIFT) < (v0 >> COUNT_SHIFT) ? 1 : 0; /* an empty slot counts 0 */
			n = 1;
		}
		if (n >= REWRITE_ON_TRAP)
			return 1; /* the count stays: a rewrite that cannot happen now is tried next time */
		uintptr_t old = way ? v1 : v0;
		if (__atomic_compare_exchange_n(&set[way], &old, site | n << COUNT_SHIFT, 0, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			return 0;
	}
	return 0; /* other threads keep changing this set: count this trap next time */
}

/* Whether a jmp rel32 whose next instruction is at `next` reaches `to`. */
static int reaches(uintptr_t next, uintptr_t to)
{
	long d = (long)(to - next);
	/* A page's worth of margin: callers test a stub's start or end. */
	return d >= -0x7fff0000L && d <= 0x7fff0000L;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The stub for one site (with the site's filler moves, f bytes): every
 * byte position is fixed, see the comments.  %eax is set first, as at the
 * site, so a move that reads it sees nr; the moves run on the guest's own
 * stack pointer, before the stub moves it. */
static void write_stub(unsigned char *s, unsigned nr, const unsigned char *filler, unsigned f, uintptr_t back)
{
	unsigned char *p = s;
	static const unsigned char below_red_zone[] = {0x48, 0x8d, 0x64, 0x24, 0x80}; /* lea -128(%rsp),%rsp */
	static const unsigned char call_r11[] = {0x41, 0xff, 0xd3};                   /* call *%r11 */
	static const unsigned char above_red_zone[] = {0x48, 0x8d, 0xa4, 0x24};       /* lea 128(%rsp),%rsp */
	*p++ = 0xb8; /* mov $nr,%eax */
	put32(p, nr);
	p += 4;
	memcpy(p, filler, f);
	p += f;
	memcpy(p, below_red_zone, sizeof(below_red_zone));
	p += sizeof(below_red_zone);
	*p++ = 0x49; /* movabs $libos_fast_entry,%r11 (the syscall clobbers %r11 anyway) */
	*p++ = 0xbb;
	put64(p, (uint64_t)(uintptr_t)libos_fast_entry);
	p += 8;
	memcpy(p, call_r11, sizeof(call_r11));
	p += sizeof(call_r11);
	memcpy(p, above_red_zone, sizeof(above_red_zone));
	p += sizeof(above_red_zone);
	put32(p, 128);
	p += 4;
	*p++ = 0xe9; /* jmp back (rel32 from the end of this instruction) */
	put32(p, (uint32_t)(back - (uintptr_t)(p + 4)));
	p += 4;
	while (p < s + STUB_SIZE)
		*p++ = 0xcc; /* int3: never reached */
}

/* A new stub page near `site`: below it first (above an executable lies its
 * heap's growth), then wherever the kernel likes if that is within reach. */
static uintptr_t map_stub_page(uintptr_t site)
{
	uintptr_t page = site & ~(PAGE_SIZE_K - 1);
	for (uintptr_t k = 1; k <= 64; k++) {
		uintptr_t off = k << 20; /* 1 MiB steps */
		if (page <= off + (1UL << 20))
			break;
		long r = sys6(__NR_mmap, page - off, PAGE_SIZE_K, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (r >= 0 && (uintptr_t)r == page - off)
			return (uintptr_t)r;
		if (r >= 0)
			sys2(__NR_munmap, r, PAGE_SIZE_K); /* an old kernel ignoring the flag */
	}
	long r = sys6(__NR_mmap, 0, PAGE_SIZE_K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r < 0)
		return 0;
	if (reaches(site + 5, (uintptr_t)r) && reaches((uintptr_t)r + STUB_SIZE, site + 7))
		return (uintptr_t)r;
	sys2(__NR_munmap, r, PAGE_SIZE_K);
	return 0;
}

/* Writes a stub for (nr, back) into a page within reach of `site`; returns
 * its address, or 0. */
static uintptr_t make_stub(uintptr_t site, unsigned nr, const unsigned char *filler, unsigned f, uintptr_t back)
{
	for (int i = 0; i < nstub_pages; i++) {
		uintptr_t slot = stub_pages[i].base + stub_pages[i].used * STUB_SIZE;
		if (stub_pages[i].used >= STUBS_PER_PAGE || !reaches(site + 5, slot) ||
		    !reaches(slot + STUB_SIZE, back))
			continue;
		/* Other threads may be running the page's other stubs: keep it
		 * executable while it is writable. */
		if (sys3(__NR_mprotect, stub_pages[i].base, PAGE_SIZE_K, PROT_READ | PROT_WRITE | PROT_EXEC) < 0)
			return 0;
		write_stub((unsigned char *)slot, nr, filler, f, back);
		sys3(__NR_mprotect, stub_pages[i].base, PAGE_SIZE_K, PROT_READ | PROT_EXEC);
		stub_pages[i].used++;
		return slot;
	}
	if (nstub_pages == STUB_PAGES_MAX)
		return 0;
	uintptr_t base = map_stub_page(site);
	if (!base)
		return 0;
	write_stub((unsigned char *)base, nr, filler, f, back);
	if (sys3(__NR_mprotect, base, PAGE_SIZE_K, PROT_READ | PROT_EXEC) < 0) {
		sys2(__NR_munmap, base, PAGE_SIZE_K);
		return 0;
	}
	stub_pages[nstub_pages].base = base;
	stub_pages[nstub_pages].used = 1;
	nstub_pages++;
	return base;
}

/* ---- the store ---- */

static int cas8(uint64_t *p, uint64_t old, uint64_t new)
{
	return __atomic_compare_exchange_n(p, &old, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static int cas16(void *p, const unsigned char old[16], const unsigned char new[16])
{
	uint64_t lo = 0, hi = 0, nlo = 0, nhi = 0;
	for (int i = 7; i >= 0; i--) {
		lo = lo << 8 | old[i];
		hi = hi << 8 | old[8 + i];
		nlo = nlo << 8 | new[i];
		nhi = nhi << 8 | new[8 + i];
	}
	unsigned char ok;
	__asm__ volatile("lock cmpxchg16b %1\n\tsete %0"
			 : "=q"(ok), "+m"(*(volatile unsigned char(*)[16])p), "+a"(lo), "+d"(hi)
			 : "b"(nlo), "c"(nhi)
			 : "memory", "cc");
	return ok;
}

/* Replaces the 5 bytes at `site` (known to be `mov $nr,%eax`) with
 * `jmp stub` in one atomic store; 0 or -1. */
static int store_jump(uintptr_t site, uintptr_t stub)
{
	unsigned char jmp[5] = {0xe9};
	put32(jmp + 1, (uint32_t)(stub - (site + 5)));
	uintptr_t q = site & ~7UL;
	if (site + 5 <= q + 8) {
		unsigned char b[8];
		memcpy(b, (void *)q, 8);
		uint64_t old = 0, new = 0;
		for (int i = 7; i >= 0; i--)
			old = old << 8 | b[i];
		memcpy(b + (site - q), jmp, 5);
		for (int i = 7; i >= 0; i--)
			new = new << 8 | b[i];
		return cas8((uint64_t *)q, old, new) ? 0 : -1;
	}
	uintptr_t o = site & ~15UL;
	unsigned char old[16], new[16];
	memcpy(old, (void *)o, 16);
	memcpy(new, old, 16);
	memcpy(new + (site - o), jmp, 5);
	return cas16((void *)o, old, new) ? 0 : -1;
}

static int page_failed(uintptr_t page)
{
	for (unsigned i = 0; i < nfailed && i < FAILED_MAX; i++)
		if (failed_pages[i] == page)
			return 1;
	return 0;
}

static void remember_failed(uintptr_t page)
{
	failed_pages[nfailed % FAILED_MAX] = page;
	nfailed++;
}

/* Whether the kernel knows MADV_POPULATE_WRITE: tried on the library OS's
 * own writable data, where it can only succeed if it exists. */
static int populate_write_works(void)
{
	uintptr_t own = (uintptr_t)&rewrite_lock & ~(PAGE_SIZE_K - 1);
	return sys3(__NR_madvise, own, PAGE_SIZE_K, MADV_POPULATE_WRITE) == 0;
}

/* The length of one filler instruction at b (before end), or 0: a move
 * between general registers (89 /r with mod 11, REX.W/R/B allowed) or of a
 * 32-bit constant into one (b8+r), whose destination is neither %rax (the
 * call number) nor %rsp (the stub's frame).  Anything else -- memory
 * operands, %rip-relative addressing, branches -- is not copied. */
static unsigned filler_insn(const unsigned char *b, const unsigned char *end)
{
	unsigned rex = 0, n = 0;
	if ((b[0] & 0xf0) == 0x40) {
		rex = b[0];
		n = 1;
	}
	if ((rex & 0x02) || end - b < (long)n + 2) /* REX.X: no index register in these forms */
		return 0;
	unsigned char op = b[n];
	if (op == 0x89) {
		unsigned char modrm = b[n + 1];
		unsigned dst = (modrm & 7) | ((rex & 1) << 3);
		return (modrm >> 6) == 3 && dst != 0 && dst != 4 ? n + 2 : 0;
	}
	if (op >= 0xb8 && op <= 0xbf && !(rex & 0x0c) && end - b >= (long)n + 5) { /* not movabs */
		unsigned dst = (op & 7u) | ((rex & 1) << 3);
		return dst != 0 && dst != 4 ? n + 5 : 0;
	}
	return 0;
}

#define FILLER_MAX 16
/* mov $nr,%eax + filler + the stub's own 31 bytes (write_stub). */
_Static_assert(5 + FILLER_MAX + 31 <= STUB_SIZE, "a stub with the longest filler fits its slot");

/* The start of the site whose syscall instruction ends at ip (mov $nr,%eax,
 * filler moves, syscall) and the filler's length, or 0.  The site starts on
 * the page of the syscall's first byte, which was just executed, so every
 * byte read here is mapped (the syscall itself may end on the next page:
 * glibc's open does). */
static uintptr_t find_site(uintptr_t ip, unsigned nr, unsigned *filler)
{
	const unsigned char *sys = (const unsigned char *)(ip - 2);
	uintptr_t page = (ip - 2) & ~(PAGE_SIZE_K - 1);
	if (sys[0] != 0x0f || sys[1] != 0x05)
		return 0;
	for (unsigned f = 0; f <= FILLER_MAX && ip - 7 - f >= page; f++) {
		const unsigned char *b = (const unsigned char *)(ip - 7 - f);
		if (b[0] != 0xb8 || get32(b + 1) != nr)
			continue;
		const unsigned char *q = b + 5;
		unsigned len;
		while (q < sys && (len = filler_insn(q, sys)) != 0)
			q += len;
		if (q == sys) {
			*filler = f;
			return (uintptr_t)b;
		}
	}
	return 0;
}

void libos_rewrite_site(uintptr_t ip, unsigned nr)
{
	if (nr >= LIBOS_NR_MAX || !(libos_call_flags[nr] & LIBOS_CALL_REWRITABLE) || ip < PAGE_SIZE_K)
		return;
	/* Every byte of the site on the page the syscall instruction was just
	 * executed from (so they are mapped and readable: find_site), and the
	 * 5 to replace inside one aligned 16-byte block (one atomic store). */
	unsigned f = 0, f_again = 0;
	uintptr_t site = find_site(ip, nr, &f), page = site & ~(PAGE_SIZE_K - 1);
	if (!site || (site & 15) > 11)
		return;
	if (site >= PICO_LOADER_TEXT_START && site < PICO_LOADER_TEXT_START + PICO_LOADER_TEXT_SIZE)
		return;
	if (!rewrite_due(site))
		return;
	if (__atomic_exchange_n(&rewrite_lock, 1, __ATOMIC_ACQUIRE))
		return;
	/* Under the lock: the site may have been rewritten meanwhile. */
	if (rewrite_disabled || find_site(ip, nr, &f_again) != site || f_again != f || page_failed(page))
		goto out;
	if (!populate_write_known) {
		if (!populate_write_works()) {
			/* A kernel before 5.14: no way to tell a writable page from a
			 * read-only one, so never change a page's protection. */
			rewrite_disabled = 1;
			goto out;
		}
		populate_write_known = 1;
	}
	/* EINVAL ("incompatible permissions") on a page that is not writable. */
	int writable = sys3(__NR_madvise, page, PAGE_SIZE_K, MADV_POPULATE_WRITE) == 0;
	if (!writable && sys3(__NR_mprotect, page, PAGE_SIZE_K, PROT_READ | PROT_WRITE | PROT_EXEC) < 0) {
		remember_failed(page);
		goto out;
	}
	unsigned char filler[FILLER_MAX];
	memcpy(filler, (const void *)(site + 5), f);
	uintptr_t stub = make_stub(site, nr, filler, f, ip);
	if (!stub)
		remember_failed(page);
	else if (store_jump(site, stub) == 0)
		libos_rewritten_sites++;
	if (!writable)
		sys3(__NR_mprotect, page, PAGE_SIZE_K, PROT_READ | PROT_EXEC);
out:
	__atomic_store_n(&rewrite_lock, 0, __ATOMIC_RELEASE);
}

/* Called by libos_fast_entry with the call number and the saved argument
 * registers (lowest address first: r9, r8, r10, rdx, rsi, rdi). */
long libos_fast_dispatch(unsigned nr, const long *saved)
{
	__atomic_fetch_add(&libos_fast_count, 1, __ATOMIC_RELAXED);
	libos_syscall_fn fn = nr < LIBOS_NR_MAX && (libos_call_flags[nr] & LIBOS_CALL_REWRITABLE)
				     ? libos_syscall_table[nr]
				     : NULL;
	long ret = fn ? fn(saved[5], saved[4], saved[3], saved[2], saved[1], saved[0], NULL) : -ENOSYS;
	if (ret == -ENOSYS && !(nr < LIBOS_NR_MAX && (libos_call_flags[nr] & LIBOS_CALL_QUIET)))
		pico_note_unsupported((long)nr, saved[5]);
	else if (libos_trace)
		libos_note_emulated(nr);
	return ret;
}
