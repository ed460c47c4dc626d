/* The library-OS loader: the first code that runs in a picoprocess.
 *
 * The monitor has installed the seccomp filter before exec (so the filter is
 * in force from the first instruction) and enters this image through
 * execveat(PICO_LOADER_FD, "", AT_EMPTY_PATH).  The loader:
 *   1. installs the library OS's SIGSYS handler, before any guest code exists;
 *   2. reads its options (library-OS state handed over across execve) and the
 *      program's path from its argv:
 *          loader [--name=value ...] -- PATH ARGV0 ARGS...
 *   3. opens PATH with the mediated pico_open(PICO_OPEN_EXEC) (or takes the
 *      fd the previous image opened, --image-fd=N), follows #! lines, maps
 *      the ELF and its PT_INTERP interpreter, validating every header;
 *   4. builds the initial stack (argc, argv, envp, auxv) below the kernel's
 *      and jumps to the interpreter's (or the static program's) entry.
 * Anything wrong with the image ends the process with one line on stderr and
 * exit status 127 (the shell's "cannot execute").
 */
#include "libos.h"

#define LOADER_NAME "picoproc-loader"
#define EXIT_CANNOT_RUN 127
/* Like the kernel's BINPRM_BUF_SIZE: how much of a #! line is read. */
#define SHEBANG_MAX 256
/* The kernel allows 4 levels of interpreters; so do we. */
#define SHEBANG_DEPTH 4
#define MAX_PHDR_BYTES 65536
/* A segment or image span beyond this is refused as absurd. */
#define MAX_IMAGE_SPAN (1UL << 40)
/* Base-address alignment honoured for ET_DYN images (larger p_align values
 * are valid ELF but gain nothing here). */
#define MAX_BASE_ALIGN (1UL << 21)

void libos_enter_guest(uint64_t entry, uint64_t *sp) __attribute__((noreturn));
void loader_main(uint64_t *orig_sp) __attribute__((noreturn, used));

struct image {
	const char *path;	/* as given, for messages */
	const char *abs;	/* absolute guest path (for /proc/self/maps) */
	int fd;
	uint64_t file_size;
	Elf64_Ehdr eh;
	Elf64_Phdr *ph;	/* e_phnum entries */
	/* after mapping */
	uint64_t bias, entry, phdr_addr;
	char interp[PICO_MAX_PATH];
};

/* Page-aligned, so that reading a program's headers (a few hundred bytes)
 * touches one page, not two: each page is a fault in every new image. */
static Elf64_Phdr phdr_bufs[2][MAX_PHDR_BYTES / sizeof(Elf64_Phdr)] __attribute__((aligned(4096)));
static struct image main_image, interp_image;
static char shebang_strings[SHEBANG_DEPTH][SHEBANG_MAX];
static char resolved_paths[SHEBANG_DEPTH + 2][PICO_MAX_PATH] __attribute__((aligned(4096)));
static char empty_string[1];

static void __attribute__((noreturn)) die(const char *path, const char *why, long err)
{
	char msg[PICO_MAX_PATH + 256];
	struct strbuf sb;
	sb_init(&sb, msg, sizeof(msg) - 1);
	sb_add(&sb, LOADER_NAME ": ");
	if (path) {
		sb_add(&sb, path);
		sb_add(&sb, ": ");
	}
	sb_add(&sb, why);
	if (err) {
		sb_add(&sb, " (errno ");
		sb_addnum(&sb, (unsigned long)-err);
		sb_add(&sb, ")");
	}
	sb_addn(&sb, "\n", 1);
	libos_write_stderr(msg, sb.len);
	for (;;)
		sys1(__NR_exit_group, EXIT_CANNOT_RUN);
}

static const char *errno_text(long err)
{
	switch (-err) {
	case ENOENT: return "no such file or directory";
	case EACCES: return "permission denied";
	case ENOTDIR: return "a path component is not a directory";
	case ELOOP: return "too many levels of symbolic links";
	case ENAMETOOLONG: return "file name too long";
	case EISDIR: return "is a directory";
	case ENOSYS: return "cannot open: no monitor serves pico_open";
	case EMFILE: return "too many open files";
	case ENOMEM: return "out of memory";
	default: return "cannot open";
	}
}

static long read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		long n = sys4(__NR_pread64, fd, (char *)buf + done, len - done, off + done);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return n;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (long)done;
}

/* Opens a program image through the monitor: the URI names the guest path and
 * PICO_OPEN_EXEC asks it to check execute permission and an exec-allowed
 * mount.  Relative paths are taken against the library OS's cwd, like the
 * kernel takes them against the process's. */
static long open_image(const char *path, char *abs, size_t abs_cap)
{
	char uri[PICO_MAX_URI];
	long n = libos_resolve_path(AT_FDCWD, path, abs, abs_cap);
	if (n < 0)
		return n;
	struct strbuf sb;
	sb_init(&sb, uri, sizeof(uri));
	sb_add(&sb, "file:");
	sb_add(&sb, abs);
	if (sb.overflow)
		return -ENAMETOOLONG;
	return pico_open(uri, sb.len, O_RDONLY | O_CLOEXEC | PICO_OPEN_EXEC, 0);
}

/* Checks the fixed-size ELF header against the file's size. */
static const char *check_ehdr(const Elf64_Ehdr *eh, uint64_t file_size)
{
	if (file_size < sizeof(*eh))
		return "truncated ELF header";
	if (eh->e_ident[EI_CLASS] != ELFCLASS64)
		return "not a 64-bit ELF file (wrong architecture)";
	if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return "not a little-endian ELF file (wrong architecture)";
	if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
		return "unknown ELF version";
	if (eh->e_machine != EM_X86_64)
		return "ELF file for another machine, not x86-64 (wrong architecture)";
	if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
		return "ELF file is not an executable or shared object";
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return "bad program header entry size";
	if (eh->e_phnum == 0 || (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > MAX_PHDR_BYTES)
		return "absurd number of program headers";
	uint64_t ph_bytes = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (eh->e_phoff > file_size || ph_bytes > file_size - eh->e_phoff)
		return "truncated: program headers extend past the end of the file";
	return NULL;
}

/* Checks the ELF header and program headers of an image whose header (eh) and
 * file size are known.  Returns NULL when the loader can map it, else why not.
 * Reads the program headers into img->ph. */
static const char *check_elf(struct image *img)
{
	const Elf64_Ehdr *eh = &img->eh;
	const char *why = check_ehdr(eh, img->file_size);
	if (why)
		return why;
	uint64_t ph_bytes = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	long n = read_exact(img->fd, img->ph, ph_bytes, eh->e_phoff);
	if (n < 0 || (uint64_t)n != ph_bytes)
		return "cannot read the program headers";

	int loads = 0, interps = 0;
	uint64_t prev_end = 0;
	int entry_inside = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *p = &img->ph[i];
		if (p->p_type == PT_INTERP) {
			if (++interps > 1)
				return "more than one PT_INTERP";
			if (p->p_filesz < 2 || p->p_filesz > PICO_MAX_PATH)
				return "absurd PT_INTERP size";
			if (p->p_offset > img->file_size || p->p_filesz > img->file_size - p->p_offset)
				return "truncated: PT_INTERP extends past the end of the file";
			continue;
		}
		if (p->p_type != PT_LOAD)
			continue;
		loads++;
		if (p->p_filesz > p->p_memsz)
			return "segment has more file bytes than memory bytes";
		if (p->p_memsz > MAX_IMAGE_SPAN || p->p_vaddr > USER_SPACE_END ||
		    p->p_memsz > USER_SPACE_END - p->p_vaddr)
			return "absurd segment size or address";
		if (p->p_offset > img->file_size || p->p_filesz > img->file_size - p->p_offset)
			return "truncated: a segment extends past the end of the file";
		if (p->p_align > 1 && (p->p_align & (p->p_align - 1)))
			return "segment alignment is not a power of two";
		if ((p->p_vaddr & (PAGE_SIZE_K - 1)) != (p->p_offset & (PAGE_SIZE_K - 1)))
			return "segment address and file offset disagree modulo the page size";
		if (loads > 1 && p->p_vaddr < prev_end)
			return "overlapping or unsorted PT_LOAD segments";
		prev_end = p->p_vaddr + p->p_memsz;
		if (eh->e_entry >= p->p_vaddr && eh->e_entry < p->p_vaddr + p->p_memsz &&
		    (p->p_flags & PF_X))
			entry_inside = 1;
	}
	if (loads == 0)
		return "no loadable segments";
	if (!entry_inside)
		return "entry point is not inside an executable segment";
	return NULL;
}

static int prot_of(uint32_t flags)
{
	return ((flags & PF_R) ? PROT_READ : 0) | ((flags & PF_W) ? PROT_WRITE : 0) |
	       ((flags & PF_X) ? PROT_EXEC : 0);
}

static uint64_t page_down(uint64_t v) { return v & ~(PAGE_SIZE_K - 1); }
static uint64_t page_up(uint64_t v) { return (v + PAGE_SIZE_K - 1) & ~(PAGE_SIZE_K - 1); }

static uint64_t random_u64(void)
{
	uint64_t v = 0;
	if (sys3(__NR_getrandom, &v, sizeof(v), 0) != sizeof(v))
		v = 0;
	return v;
}

/* For /proc/self/maps: the library OS lists what its loader mapped. */
static void remember_mapping(uint64_t start, uint64_t end, int prot, uint64_t offset, uint64_t dev, uint64_t ino,
			     const char *path)
{
	int n = libos_proc.nmaps;
	if (n >= (int)(sizeof(libos_proc.maps) / sizeof(libos_proc.maps[0])))
		return;
	libos_proc.maps[n].start = start;
	libos_proc.maps[n].end = end;
	libos_proc.maps[n].prot = prot;
	libos_proc.maps[n].offset = offset;
	libos_proc.maps[n].dev = dev;
	libos_proc.maps[n].ino = ino;
	libos_proc.maps[n].path = path;
	libos_proc.nmaps = n + 1;
}

/* The extent of the vDSO image at ehdr (its PT_LOAD span). */
static uint64_t vdso_size(uint64_t ehdr)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)ehdr;
	uint64_t hi = 0;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum > 16)
		return PAGE_SIZE_K;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(ehdr + eh->e_phoff);
	for (unsigned i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr + ph[i].p_memsz > hi)
			hi = ph[i].p_vaddr + ph[i].p_memsz;
	return hi ? page_up(hi) : PAGE_SIZE_K;
}

uint64_t libos_vdso;

void *libos_vdso_symbol(const char *name)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)libos_vdso;
	if (!eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phnum > 16)
		return 0;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(libos_vdso + eh->e_phoff);
	uint64_t bias = 0, dyn = 0;
	int have_load = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !have_load) {
			bias = libos_vdso - (ph[i].p_vaddr - ph[i].p_offset);
			have_load = 1;
		} else if (ph[i].p_type == PT_DYNAMIC) {
			dyn = ph[i].p_vaddr;
		}
	}
	if (!have_load || !dyn)
		return 0;
	const Elf64_Sym *symtab = 0;
	const char *strtab = 0;
	const uint32_t *hash = 0;
	for (const Elf64_Dyn *d = (const Elf64_Dyn *)(bias + dyn); d->d_tag != DT_NULL; d++) {
		if (d->d_tag == DT_SYMTAB)
			symtab = (const Elf64_Sym *)(bias + d->d_un.d_ptr);
		else if (d->d_tag == DT_STRTAB)
			strtab = (const char *)(bias + d->d_un.d_ptr);
		else if (d->d_tag == DT_HASH)
			hash = (const uint32_t *)(bias + d->d_un.d_ptr);
	}
	if (!symtab || !strtab || !hash)
		return 0;
	for (uint32_t i = 0; i < hash[1] /* nchain: the symbol count */; i++)
		if (symtab[i].st_shndx != SHN_UNDEF && ELF64_ST_TYPE(symtab[i].st_info) == STT_FUNC &&
		    libos_streq(strtab + symtab[i].st_name, name))
			return (void *)(bias + symtab[i].st_value);
	return 0;
}

/* The top of the kernel's stack mapping: the first unreadable page above sp
 * (the argument and environment strings sit just below it). */
static uint64_t stack_top_above(uint64_t sp)
{
	struct __kernel_timespec zero = {0, 0};
	uint64_t page = page_down(sp) + PAGE_SIZE_K;
	for (int i = 0; i < 4096 && page < USER_SPACE_END; i++, page += PAGE_SIZE_K)
		if (sys6(__NR_futex, page, FUTEX_WAIT_PRIVATE, 0x5a5a5a5a, (long)&zero, 0, 0) == -EFAULT)
			break;
	return page;
}

/* Maps the PT_LOAD segments: one PROT_NONE reservation of the whole span (so
 * that the image lands in one piece and nothing else sits in its holes), then
 * each segment over it with MAP_FIXED, then the bss. */
static void map_image(struct image *img, int is_main)
{
	const Elf64_Ehdr *eh = &img->eh;
	uint64_t lo = ~0UL, hi = 0, align = PAGE_SIZE_K;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *p = &img->ph[i];
		if (p->p_type != PT_LOAD)
			continue;
		if (p->p_vaddr < lo)
			lo = p->p_vaddr;
		if (p->p_vaddr + p->p_memsz > hi)
			hi = p->p_vaddr + p->p_memsz;
		if (p->p_align > align)
			align = p->p_align;
	}
	lo = page_down(lo);
	hi = page_up(hi);
	if (hi - lo > MAX_IMAGE_SPAN)
		die(img->path, "absurd image size", 0);
	if (align > MAX_BASE_ALIGN)
		align = MAX_BASE_ALIGN;

	uint64_t bias;
	if (eh->e_type == ET_EXEC) {
		long r = sys6(__NR_mmap, lo, hi - lo, PROT_NONE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (r == -EEXIST)
			die(img->path, "its fixed load address collides with memory already in use", r);
		if (r < 0 || (uint64_t)r != lo)
			die(img->path, "cannot reserve memory at its fixed load address", r < 0 ? r : 0);
		bias = 0;
	} else {
		/* Like the kernel: a PIE program near 2/3 of the address space at a
		 * random offset, an interpreter wherever mmap puts it. */
		uint64_t hint = 0;
		if (is_main)
			hint = 0x555555554000UL + ((random_u64() & ((1UL << 28) - 1)) << 12);
		uint64_t span = hi - lo + align - PAGE_SIZE_K;
		long r = sys6(__NR_mmap, hint, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (r < 0)
			die(img->path, "cannot reserve memory for the image", r);
		uint64_t base = ((uint64_t)r + align - 1) & ~(align - 1);
		/* Give back the alignment slack at both ends. */
		if (base > (uint64_t)r)
			sys2(__NR_munmap, r, base - (uint64_t)r);
		if ((uint64_t)r + span > base + (hi - lo))
			sys2(__NR_munmap, base + (hi - lo), (uint64_t)r + span - (base + (hi - lo)));
		bias = base - lo;
	}

	struct stat img_st;
	if (sys2(__NR_fstat, img->fd, &img_st) < 0)
		memset(&img_st, 0, sizeof(img_st));
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *p = &img->ph[i];
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		int prot = prot_of(p->p_flags);
		remember_mapping(page_down(bias + p->p_vaddr), page_up(bias + p->p_vaddr + p->p_memsz), prot,
				 page_down(p->p_offset), img_st.st_dev, img_st.st_ino, img->abs);
		uint64_t seg_start = bias + p->p_vaddr;
		uint64_t map_start = page_down(seg_start);
		uint64_t file_end = seg_start + p->p_filesz;
		uint64_t mem_end = seg_start + p->p_memsz;
		if (p->p_filesz) {
			uint64_t len = file_end - map_start;
			/* Writable while the partial bss page is zeroed. */
			int need_zero = mem_end > file_end && (file_end & (PAGE_SIZE_K - 1));
			long r = sys6(__NR_mmap, map_start, len, prot | (need_zero ? PROT_WRITE : 0),
				      MAP_PRIVATE | MAP_FIXED, img->fd, page_down(p->p_offset));
			if (r < 0)
				die(img->path, "cannot map a segment", r);
			if (need_zero) {
				memset((void *)file_end, 0, page_up(file_end) - file_end);
				if (!(prot & PROT_WRITE))
					sys3(__NR_mprotect, page_down(file_end), PAGE_SIZE_K, prot);
			}
		}
		uint64_t anon_start = p->p_filesz ? page_up(file_end) : map_start;
		if (mem_end > anon_start) {
			long r = sys6(__NR_mmap, anon_start, page_up(mem_end) - anon_start, prot,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (r < 0)
				die(img->path, "cannot map the zero-filled part of a segment", r);
		}
	}
	img->bias = bias;
	img->entry = bias + eh->e_entry;
	/* Where the program headers are in memory, computed as the kernel does:
	 * PT_PHDR if present, else the first segment's mapping of e_phoff. */
	img->phdr_addr = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++)
		if (img->ph[i].p_type == PT_PHDR)
			img->phdr_addr = bias + img->ph[i].p_vaddr;
	if (!img->phdr_addr) {
		for (unsigned i = 0; i < eh->e_phnum; i++) {
			const Elf64_Phdr *p = &img->ph[i];
			if (p->p_type == PT_LOAD) {
				img->phdr_addr = bias + p->p_vaddr - p->p_offset + eh->e_phoff;
				break;
			}
		}
	}
}

static uint64_t file_size_of(int fd)
{
	struct stat st;
	if (sys2(__NR_fstat, fd, &st) < 0)
		return 0;
	return (uint64_t)st.st_size;
}

/* Reads what the image starts with; returns the byte count. */
static long read_head(int fd, char *buf, size_t cap)
{
	return read_exact(fd, buf, cap, 0);
}

static int is_shebang(const char *head, long n)
{
	return n >= 2 && head[0] == '#' && head[1] == '!';
}

static int is_elf(const char *head, long n)
{
	return n >= 4 && head[0] == 0x7f && head[1] == 'E' && head[2] == 'L' && head[3] == 'F';
}

/* For execve in the guest: would the loader accept this image?  Only the
 * fixed-size header is checked here (the trap path has no room for the
 * program header table); the next loader instance checks everything else.
 * Returns 0 or -ENOEXEC, as the kernel's execve does for a file it cannot
 * run (a shell then runs it as a script itself). */
long libos_image_precheck(int fd)
{
	union {
		char bytes[sizeof(Elf64_Ehdr)];
		Elf64_Ehdr eh;
	} head;
	long n = read_exact(fd, head.bytes, sizeof(head.bytes), 0);
	if (n < 0)
		return n;
	if (is_shebang(head.bytes, n))
		return 0;
	if (!is_elf(head.bytes, n) || (size_t)n < sizeof(head.eh))
		return -ENOEXEC;
	return check_ehdr(&head.eh, file_size_of(fd)) ? -ENOEXEC : 0;
}

/* Splits a #! line as the kernel does (fs/binfmt_script.c): the interpreter
 * is the first word after "#!", the optional argument is the rest of the line
 * with surrounding blanks removed (one argument, spaces included).  Returns
 * NULL or why the line is unusable. */
static const char *parse_shebang(char *line, long n, char **interp, char **arg)
{
	char *end = line + n;
	char *nl = line + 2;
	while (nl < end && *nl != '\n')
		nl++;
	/* A line longer than the buffer is acceptable only if the interpreter
	 * name ends within it (the argument is then cut short, as in Linux). */
	char *p = line + 2;
	while (p < nl && (*p == ' ' || *p == '\t'))
		p++;
	char *name = p;
	while (p < nl && *p != ' ' && *p != '\t' && *p != 0)
		p++;
	if (p == name)
		return "#! line names no interpreter";
	if (p == end)
		return "#! interpreter name too long";
	char *name_end = p;
	while (p < nl && (*p == ' ' || *p == '\t'))
		p++;
	char *a = p;
	char *a_end = nl;
	for (char *q = a; q < nl; q++)
		if (*q == 0) {
			a_end = q;
			break;
		}
	while (a_end > a && (a_end[-1] == ' ' || a_end[-1] == '\t' || a_end[-1] == '\r'))
		a_end--;
	*name_end = 0;
	*interp = name;
	if (a_end > a) {
		*a_end = 0;
		*arg = a;
	} else {
		*arg = NULL;
	}
	return NULL;
}

/* ---- options: library-OS state from the previous image or the monitor ---- */
static int image_fd_option = -1;
static int nofile_option_given;

/* "--rlimit=RES:SOFT:HARD" (decimal; 18446744073709551615 is infinity). */
static void apply_rlimit_option(const char *val)
{
	char part[3][24];
	int k = 0;
	size_t n = 0;
	for (const char *q = val;; q++) {
		if (*q == ':' || *q == 0) {
			if (k >= 3 || n == 0)
				die(NULL, "bad --rlimit option (RES:SOFT:HARD)", 0);
			part[k++][n] = 0;
			n = 0;
			if (*q == 0)
				break;
			continue;
		}
		if (n >= sizeof(part[0]) - 1)
			die(NULL, "bad --rlimit option (RES:SOFT:HARD)", 0);
		part[k < 3 ? k : 2][n++] = *q;
	}
	unsigned long res, soft, hard;
	if (k != 3 || libos_parse_ulong(part[0], 10, &res) || res >= RLIMIT_NLIMITS_K ||
	    libos_parse_ulong(part[1], 10, &soft) || libos_parse_ulong(part[2], 10, &hard) || soft > hard)
		die(NULL, "bad --rlimit option (RES:SOFT:HARD)", 0);
	if (res == RLIMIT_NOFILE) {
		/* Never above picoproc's own fds: "close every fd below the
		 * limit" loops must spare them. */
		if (hard > PICO_RESERVED_FD_BASE)
			hard = PICO_RESERVED_FD_BASE;
		if (soft > hard)
			soft = hard;
		nofile_option_given = 1;
	}
	libos_main_process.rlimits[res].rlim_cur = soft;
	libos_main_process.rlimits[res].rlim_max = hard;
}

static void apply_option(const char *opt)
{
	unsigned long v;
	const char *val;
#define VALUE_OF(name) (libos_startswith(opt, name "=") ? (val = opt + sizeof(name)) : NULL)
	if (VALUE_OF("--image-fd")) {
		if (libos_parse_ulong(val, 10, &v) || v >= PICO_RESERVED_FD_BASE)
			die(NULL, "bad --image-fd option", 0);
		image_fd_option = (int)v;
	} else if (VALUE_OF("--cwd")) {
		char tmp[PICO_MAX_PATH];
		size_t n = libos_strnlen(val, sizeof(tmp));
		if (n == 0 || n >= sizeof(tmp) || val[0] != '/')
			die(NULL, "bad --cwd option (an absolute path is needed)", 0);
		memcpy(tmp, val, n + 1);
		libos_normalise_path(tmp);
		libos_cwd_set(tmp);
	} else if (VALUE_OF("--umask")) {
		if (libos_parse_ulong(val, 8, &v) || v > 0777)
			die(NULL, "bad --umask option", 0);
		libos_main_process.pub.umask = (unsigned)v;
	} else if (VALUE_OF("--uid")) {
		if (libos_parse_ulong(val, 10, &v) || v > 0xfffffffeUL)
			die(NULL, "bad --uid option", 0);
		libos_main_process.ident.uid = (unsigned)v;
	} else if (VALUE_OF("--gid")) {
		if (libos_parse_ulong(val, 10, &v) || v > 0xfffffffeUL)
			die(NULL, "bad --gid option", 0);
		libos_main_process.ident.gid = (unsigned)v;
	} else if (VALUE_OF("--groups")) {
		/* Comma-separated gids (empty: none). */
		char num[16];
		libos_main_process.ident.ngroups = 0;
		while (*val) {
			size_t n = 0;
			while (val[n] && val[n] != ',' && n < sizeof(num) - 1)
				num[n] = val[n], n++;
			num[n] = 0;
			if (libos_main_process.ident.ngroups >= LIBOS_MAX_GROUPS || libos_parse_ulong(num, 10, &v) ||
			    v > 0xfffffffeUL || (val[n] && val[n] != ','))
				die(NULL, "bad --groups option", 0);
			libos_main_process.ident.groups[libos_main_process.ident.ngroups++] = (unsigned)v;
			val += n + (val[n] == ',');
		}
	} else if (VALUE_OF("--hostname")) {
		size_t n = libos_strnlen(val, sizeof(libos_hostname));
		if (n >= sizeof(libos_hostname))
			die(NULL, "--hostname longer than 64 bytes", 0);
		memcpy(libos_hostname, val, n + 1);
	} else if (VALUE_OF("--release")) {
		size_t n = libos_strnlen(val, sizeof(libos_release));
		if (n >= sizeof(libos_release))
			die(NULL, "--release longer than 64 bytes", 0);
		memcpy(libos_release, val, n + 1);
	} else if (VALUE_OF("--rlimit")) {
		apply_rlimit_option(val);
	} else if (VALUE_OF("--cpus")) {
		if (libos_parse_ulong(val, 10, &v) || v == 0 || v > 1024)
			die(NULL, "bad --cpus option (1..1024)", 0);
		libos_proc.cpus = (unsigned)v;
	} else if (VALUE_OF("--fd-path")) {
		/* N:PATH -- an fd the previous image had open, and what it names
		 * (fdtable.c validates it against the fd before trusting it). */
		char num[12];
		size_t i = 0;
		while (val[i] && val[i] != ':' && i < sizeof(num) - 1) {
			num[i] = val[i];
			i++;
		}
		num[i] = 0;
		if (val[i] != ':' || libos_parse_ulong(num, 10, &v) || v >= PICO_RESERVED_FD_BASE || val[i + 1] != '/')
			die(NULL, "bad --fd-path option (N:/path)", 0);
		libos_fd_remember((long)v, val + i + 1);
	} else if (VALUE_OF("--pgid")) {
		if (libos_parse_ulong(val, 10, &v) || v > 0x7fffffffUL)
			die(NULL, "bad --pgid option", 0);
		libos_main_process.pub.pgid = (long)v;
	} else if (VALUE_OF("--nice")) {
		if (libos_parse_ulong(val, 10, &v) || v > 19)
			die(NULL, "bad --nice option (0..19)", 0);
		libos_main_process.nice = (int)v;
	} else if (libos_streq(opt, "--trace")) {
		libos_trace = 1;
	} else if (VALUE_OF("--sid")) {
		if (libos_parse_ulong(val, 10, &v) || v > 0x7fffffffUL)
			die(NULL, "bad --sid option", 0);
		libos_main_process.pub.sid = (long)v;
	} else {
		char msg[160];
		struct strbuf sb;
		sb_init(&sb, msg, sizeof(msg));
		sb_add(&sb, "unknown option ");
		sb_add(&sb, opt);
		die(NULL, msg, 0);
	}
#undef VALUE_OF
}

/* ---- loading ---- */
static void open_and_read(struct image *img, const char *path, char *abs, char *head, long *head_len,
			  int use_fd)
{
	img->path = path;
	img->abs = abs;
	if (use_fd >= 0) {
		img->fd = use_fd;
		long n = libos_resolve_path(AT_FDCWD, path, abs, PICO_MAX_PATH);
		if (n < 0)
			die(path, "bad program path", n);
	} else {
		long fd = open_image(path, abs, PICO_MAX_PATH);
		if (fd < 0)
			die(path, errno_text(fd), fd);
		img->fd = (int)fd;
	}
	img->file_size = file_size_of(img->fd);
	*head_len = read_head(img->fd, head, SHEBANG_MAX);
	if (*head_len < 0)
		die(path, "cannot read the file", *head_len);
}

static void load_elf(struct image *img, const char *head, long head_len, int is_main, Elf64_Phdr *ph_buf)
{
	if (!is_elf(head, head_len))
		die(img->path, "not an ELF executable or #! script (exec format error)", 0);
	if ((size_t)head_len < sizeof(Elf64_Ehdr))
		die(img->path, "truncated ELF header", 0);
	memcpy(&img->eh, head, sizeof(Elf64_Ehdr));
	img->ph = ph_buf;
	const char *why = check_elf(img);
	if (why)
		die(img->path, why, 0);
	img->interp[0] = 0;
	for (unsigned i = 0; i < img->eh.e_phnum; i++) {
		const Elf64_Phdr *p = &img->ph[i];
		if (p->p_type != PT_INTERP)
			continue;
		if (!is_main)
			die(img->path, "the interpreter itself asks for an interpreter", 0);
		long n = read_exact(img->fd, img->interp, p->p_filesz, p->p_offset);
		if (n != (long)p->p_filesz || img->interp[p->p_filesz - 1] != 0 ||
		    libos_strlen(img->interp) + 1 != p->p_filesz)
			die(img->path, "malformed PT_INTERP (not one NUL-terminated path)", 0);
	}
	map_image(img, is_main);
}

/* ---- the initial stack ---- */
struct auxv_in {
	uint64_t sysinfo_ehdr, minsigstksz, hwcap, hwcap2, clktck, platform, pagesz;
	int have_sysinfo, have_minsig, have_hwcap2, have_platform;
};

static void read_own_auxv(const uint64_t *auxv, struct auxv_in *in)
{
	memset(in, 0, sizeof(*in));
	in->pagesz = PAGE_SIZE_K;
	in->clktck = 100;
	for (; auxv[0] != AT_NULL; auxv += 2) {
		switch (auxv[0]) {
		case AT_SYSINFO_EHDR: in->sysinfo_ehdr = auxv[1]; in->have_sysinfo = 1; break;
		case AT_MINSIGSTKSZ: in->minsigstksz = auxv[1]; in->have_minsig = 1; break;
		case AT_HWCAP: in->hwcap = auxv[1]; break;
		case AT_HWCAP2: in->hwcap2 = auxv[1]; in->have_hwcap2 = 1; break;
		case AT_CLKTCK: in->clktck = auxv[1]; break;
		case AT_PLATFORM: in->platform = auxv[1]; in->have_platform = 1; break;
		case AT_PAGESZ: in->pagesz = auxv[1]; break;
		}
	}
}

#define MAX_AUXV 32

/* Builds argc/argv/envp/auxv just below the kernel's stack (the loader itself
 * runs on a private stack, so nothing live is there) and returns the new
 * stack pointer: 16-byte aligned, pointing at argc. */
static uint64_t *build_stack(uint64_t *orig_sp, char **argv_pre, long npre, char **argv_rest, long nrest,
			     char **envp, const struct auxv_in *in, const struct image *prog,
			     const struct image *interp, const char *execfn)
{
	long envc = 0;
	while (envp[envc])
		envc++;
	uint8_t *top = (uint8_t *)orig_sp;
	/* AT_RANDOM: 16 fresh bytes for the program's stack protector and
	 * pointer guard. */
	top -= 16;
	uint8_t *random = top;
	if (sys3(__NR_getrandom, random, 16, 0) != 16)
		die(NULL, "getrandom failed", 0);

	uint64_t aux[MAX_AUXV * 2];
	int na = 0;
#define AUX(k, v) (aux[na++] = (uint64_t)(k), aux[na++] = (uint64_t)(v))
	if (in->have_sysinfo)
		AUX(AT_SYSINFO_EHDR, in->sysinfo_ehdr);
	if (in->have_minsig)
		AUX(AT_MINSIGSTKSZ, in->minsigstksz);
	AUX(AT_HWCAP, in->hwcap);
	AUX(AT_PAGESZ, in->pagesz);
	AUX(AT_CLKTCK, in->clktck);
	AUX(AT_PHDR, prog->phdr_addr);
	AUX(AT_PHENT, sizeof(Elf64_Phdr));
	AUX(AT_PHNUM, prog->eh.e_phnum);
	AUX(AT_BASE, interp ? interp->bias : 0);
	AUX(AT_FLAGS, 0);
	AUX(AT_ENTRY, prog->entry);
	AUX(AT_UID, libos_main_process.ident.uid);
	AUX(AT_EUID, libos_main_process.ident.uid);
	AUX(AT_GID, libos_main_process.ident.gid);
	AUX(AT_EGID, libos_main_process.ident.gid);
	AUX(AT_SECURE, 0);
	AUX(AT_RANDOM, random);
	if (in->have_hwcap2)
		AUX(AT_HWCAP2, in->hwcap2);
	AUX(AT_EXECFN, execfn);
	if (in->have_platform)
		AUX(AT_PLATFORM, in->platform);
	AUX(AT_NULL, 0);
#undef AUX

	long argc = npre + nrest;
	uint64_t words = 1 + (uint64_t)argc + 1 + (uint64_t)envc + 1 + (uint64_t)na;
	uint64_t *sp = (uint64_t *)(((uint64_t)top - words * 8) & ~15UL);
	uint64_t *w = sp;
	*w++ = (uint64_t)argc;
	for (long i = 0; i < npre; i++)
		*w++ = (uint64_t)argv_pre[i];
	for (long i = 0; i < nrest; i++)
		*w++ = (uint64_t)argv_rest[i];
	*w++ = 0;
	for (long i = 0; i < envc; i++)
		*w++ = (uint64_t)envp[i];
	*w++ = 0;
	for (int i = 0; i < na; i++)
		*w++ = aux[i];
	return sp;
}

/* /proc/self/exe, as Linux has it: the image file itself, every symbolic
 * link on the way resolved (/usr/bin/java -> /etc/alternatives/java ->
 * /usr/lib/jvm/.../bin/java: glibc's $ORIGIN is taken from it), the final
 * interpreter of a #! chain.  The kernel knows that path for the fd the
 * image is open on; the monitor names it in the guest's view (its /proc,
 * native/procview.c).  Without that view: the path as resolved lexically. */
static void set_exe_path(int image_fd, const char *lexical)
{
	char link[48];
	struct strbuf sb;
	sb_init(&sb, link, sizeof(link));
	sb_add(&sb, "/proc/");
	sb_addnum(&sb, (unsigned long)sys0(__NR_getpid));
	sb_add(&sb, "/fd/");
	sb_addnum(&sb, (unsigned long)image_fd);
	long n = pico_readlink(link, sb.len, libos_public.exe, PICO_MAX_PATH - 1);
	if (n > 0 && libos_public.exe[0] == '/' && libos_public.exe[1] != '[') {
		libos_public.exe[n] = 0;
		return;
	}
	n = (long)libos_strnlen(lexical, PICO_MAX_PATH - 1);
	memcpy(libos_public.exe, lexical, (size_t)n);
	libos_public.exe[n] = 0;
}

void loader_main(uint64_t *orig_sp)
{
	long r = libos_install_sigsys_handler();
	if (r < 0)
		die(NULL, "cannot install the SIGSYS handler (is this image at the loader's fixed address?)", r);
	libos_area_init();
	libos_rlimits_init();

	long argc = (long)orig_sp[0];
	char **argv = (char **)(orig_sp + 1);
	char **envp = argv + argc + 1;
	char **e = envp;
	while (*e)
		e++;
	const uint64_t *auxv = (const uint64_t *)(e + 1);

	long i = 1;
	for (; i < argc; i++) {
		if (libos_streq(argv[i], "--"))
			break;
		apply_option(argv[i]);
	}
	libos_rlimits_probe(nofile_option_given);
	if (i + 1 >= argc)
		die(NULL, "usage: " LOADER_NAME " [--option=value ...] -- PATH [ARGV0 ARGS...]", 0);
	const char *path = argv[i + 1];
	const char *execfn = path;
	char **rest = argv + i + 2;
	long nrest = argc - (i + 2);
	if (nrest == 0) {
		/* Like Linux since 5.18: a program never sees argc == 0. */
		static char *empty_argv[1] = {empty_string};
		rest = empty_argv;
		nrest = 1;
	}
	libos_main_process.pub.pid = (int)sys0(__NR_getpid);
	{
		/* The process is named after the file it was asked to run (a
		 * script's own name, not its interpreter's), as the kernel's
		 * comm; prctl(PR_SET_NAME) renames it. */
		const char *base = path;
		for (const char *q = path; *q; q++)
			if (*q == '/')
				base = q + 1;
		size_t n = libos_strnlen(base, sizeof(libos_main_process.pub.comm) - 1);
		memcpy(libos_main_process.pub.comm, base, n);
		libos_main_process.pub.comm[n] = 0;
	}
	if (libos_main_process.pub.pgid == 0)
		libos_main_process.pub.pgid = libos_main_process.pub.pid;
	if (libos_main_process.pub.sid == 0)
		libos_main_process.pub.sid = libos_main_process.pub.pid;

	/* Follow #! lines: each level puts [interpreter, optional argument,
	 * script path] in front of the script's argv[1..]. */
	char *pre[SHEBANG_DEPTH * 3];
	long npre = 0;
	char head[SHEBANG_MAX];
	long head_len = 0;
	int depth = 0;
	for (;;) {
		char *abs = resolved_paths[depth];
		open_and_read(&main_image, path, abs, head, &head_len, depth == 0 ? image_fd_option : -1);
		if (!is_shebang(head, head_len))
			break;
		if (depth == SHEBANG_DEPTH)
			die(path, "too many levels of #! interpreters", 0);
		char *line = shebang_strings[depth];
		memcpy(line, head, (size_t)head_len);
		char *interp, *arg;
		const char *why = parse_shebang(line, head_len, &interp, &arg);
		if (why)
			die(path, why, 0);
		sys1(__NR_close, main_image.fd);
		/* New argv: interp [arg] path rest[1..]; earlier levels' prefix
		 * entries shift right behind the new ones. */
		char *level[3];
		long nlevel = 0;
		level[nlevel++] = interp;
		if (arg)
			level[nlevel++] = arg;
		level[nlevel++] = (char *)path;
		if (npre == 0) {
			/* The script's own argv[0] is replaced by its path. */
			rest++;
			nrest--;
		} else {
			/* Drop the previous level's interpreter name (argv[0]). */
			memmove(pre, pre + 1, (size_t)(npre - 1) * sizeof(pre[0]));
			npre--;
		}
		memmove(pre + nlevel, pre, (size_t)npre * sizeof(pre[0]));
		for (long k = 0; k < nlevel; k++)
			pre[k] = level[k];
		npre += nlevel;
		path = interp;
		depth++;
	}

	load_elf(&main_image, head, head_len, 1, phdr_bufs[0]);
	set_exe_path(main_image.fd, resolved_paths[depth]);
	struct image *interp = NULL;
	if (main_image.interp[0]) {
		char *abs = resolved_paths[SHEBANG_DEPTH + 1];
		open_and_read(&interp_image, main_image.interp, abs, head, &head_len, -1);
		if (is_shebang(head, head_len))
			die(main_image.interp, "the ELF interpreter is a #! script", 0);
		load_elf(&interp_image, head, head_len, 0, phdr_bufs[1]);
		sys1(__NR_close, interp_image.fd);
		interp = &interp_image;
	}
	sys1(__NR_close, main_image.fd);

	struct auxv_in in;
	read_own_auxv(auxv, &in);
	uint64_t *sp = build_stack(orig_sp, pre, npre, rest, nrest, envp, &in, &main_image, interp, execfn);
	{
		extern char __executable_start[], _end[];
		remember_mapping((uint64_t)__executable_start, page_up((uint64_t)_end), PROT_READ | PROT_EXEC, 0, 0,
				 0, "[picoproc-libos]");
		if (in.have_sysinfo) {
			remember_mapping(in.sysinfo_ehdr, in.sysinfo_ehdr + vdso_size(in.sysinfo_ehdr),
					 PROT_READ | PROT_EXEC, 0, 0, 0, "[vdso]");
			libos_vdso = in.sysinfo_ehdr;
		}
		libos_proc.argc = (long)sp[0];
		libos_proc.argv = (const char *const *)(sp + 1);
		libos_proc.stack_top = stack_top_above((uint64_t)orig_sp);
		/* Like the kernel's initial stack mapping: at least 128 KiB. */
		uint64_t low = page_down((uint64_t)sp);
		if (libos_proc.stack_top - low < (128UL << 10))
			low = libos_proc.stack_top - (128UL << 10);
		libos_proc.stack_low = low;
		/* PT_GNU_STACK: as the kernel, an executable stack when the program
		 * asks for one (PF_X) or says nothing (old toolchains).  The stack
		 * is the kernel's (this image's own is not executable); the change
		 * extends down the whole growsdown mapping. */
		int exec_stack = 1;
		for (unsigned k = 0; k < main_image.eh.e_phnum; k++)
			if (main_image.ph[k].p_type == PT_GNU_STACK)
				exec_stack = (main_image.ph[k].p_flags & PF_X) != 0;
		if (exec_stack) {
			long r = sys3(__NR_mprotect, page_down((uint64_t)sp), PAGE_SIZE_K,
				      PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN);
			if (r < 0)
				die(path, "cannot make the stack executable (PT_GNU_STACK)", r);
			libos_proc.stack_prot = PROT_READ | PROT_WRITE | PROT_EXEC;
		} else {
			libos_proc.stack_prot = PROT_READ | PROT_WRITE;
		}
	}
	libos_enter_guest(interp ? interp->entry : main_image.entry, sp);
}
