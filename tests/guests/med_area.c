/* The argument area, from a hostile guest's side (tests/test_area.py): a raw
 * picoprocess that maps its area (PICO_AREA_FD) itself and passes area
 * references the way the library OS does, and the ways a guest can abuse
 * them.
 *
 *   med_area race ALLOWED FORBIDDEN N   a thread keeps rewriting the URI in
 *       the area between two names of the same length while the main
 *       thread opens it (its fd asked for on the slot's channel), N times;
 *       prints "opened=O refused=R forbidden_content=F by_channel=C"
 *   med_area hostile FILE   bad area references and channel requests, one
 *       "name: ok V" or "name: err N" line each
 *   med_area flood FILE N   N opens asking for their fd on channel 0, none
 *       received: prints "answered=A on_channel=C by_addfd=D queued=Q" (Q:
 *       fds waiting on the channel at the end)
 *   med_area unmap FILE   unmaps its view, maps other memory in its place,
 *       makes calls with area references, then makes its view read-only
 *       and asks for results into it; prints what each call answered
 *   med_area noarea FILE   an area reference without an area (EFAULT)
 *
 * Exit status 0 when the guest got as far as printing its results. */
#include "med_common.h"
#include "thread_clone.h"

#define NR_mprotect 10
#define NR_recvmsg 47
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_PRIVATE 2
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MSG_DONTWAIT 0x40

static unsigned char *area;

/* "name: ok V" / "name: err N" (N the positive errno), one line. */
static void show(const char *name, long ret)
{
	g_report(name, ret);
	if (ret >= 0) {
		g_puts(" ");
		g_putnum(ret);
	}
	g_puts("\n");
}

static long ref(unsigned long off)
{
	return (long)(PICO_AREA_REF | off);
}

static unsigned char *slot(unsigned int k)
{
	return area + PICO_AREA_SLOTS_OFFSET + (unsigned long)k * PICO_AREA_SLOT_SIZE;
}

static unsigned long slot_off(unsigned int k)
{
	return PICO_AREA_SLOTS_OFFSET + (unsigned long)k * PICO_AREA_SLOT_SIZE;
}

/* Asks for the fd of the next open with its URI in slot k on channel k. */
static void ask_channel(unsigned int k, unsigned int tag)
{
	unsigned int *head = (unsigned int *)slot(k);
	head[0] = PICO_AREA_FD_VIA_CHANNEL;
	head[1] = tag;
}

static long open_in_slot(unsigned int k, const char *uri, unsigned long len, int flags)
{
	memcpy(slot(k) + 16, uri, len);
	return pico_syscall6(PICO_NR_OPEN, ref(slot_off(k) + 16), (long)len, flags, 0, 0, 0);
}

struct iovec_k {
	void *base;
	unsigned long len;
};
struct msghdr_k {
	void *name;
	int namelen;
	struct iovec_k *iov;
	unsigned long iovlen;
	void *control;
	unsigned long controllen;
	unsigned int flags;
};
struct cmsg_one_fd {
	unsigned long len;
	int level;
	int type;
	int fd;
	int pad;
};

/* One message from channel k: its fd (or -errno), *tag its tag. */
static long receive(unsigned int k, unsigned int *tag)
{
	struct cmsg_one_fd cm;
	struct iovec_k iov = {tag, sizeof(*tag)};
	struct msghdr_k msg = {0, 0, &iov, 1, &cm, sizeof(cm), 0};
	memset(&cm, 0, sizeof(cm));
	long r = sys3(NR_recvmsg, PICO_CHANNEL_FD + k, (long)&msg, MSG_DONTWAIT);
	if (r < 0)
		return r;
	return cm.len == 20 && cm.level == 1 && cm.type == 1 ? cm.fd : -1000;
}

static int map_area(void)
{
	long p = pico_syscall6(NR_mmap, 0, PICO_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, PICO_AREA_FD, 0);
	if (p < 0 && p > -4096)
		return 0;
	area = (unsigned char *)p;
	return 1;
}

/* ---- race ---- */

static const char *names[2];
static unsigned long name_len;
static char thread_stack[65536] __attribute__((aligned(16)));

static int flipper(void *arg)
{
	volatile unsigned char *uri = slot(0) + 16;
	(void)arg;
	for (unsigned long k = 0;; k++) {
		const char *src = names[k & 1];
		for (unsigned long i = 0; i < name_len; i++)
			uri[i] = (unsigned char)src[i];
	}
	return 0;
}

static int cmd_race(const char *allowed, const char *forbidden, long n)
{
	static char buf[64];
	name_len = g_strlen(allowed);
	if (name_len != g_strlen(forbidden))
		return 2;
	names[0] = allowed;
	names[1] = forbidden;
	memcpy(slot(0) + 16, allowed, name_len);
	if (thread_clone(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
			 thread_stack + sizeof(thread_stack), 0, 0, flipper, 0) < 0)
		return 3;
	long opened = 0, refused = 0, forbidden_content = 0, by_channel = 0;
	for (long i = 0; i < n; i++) {
		ask_channel(0, (unsigned int)i);
		long fd = pico_syscall6(PICO_NR_OPEN, ref(slot_off(0) + 16), (long)name_len, O_RDONLY, 0, 0, 0);
		if (fd == (long)PICO_FD_ON_CHANNEL) {
			unsigned int tag = 0;
			fd = receive(0, &tag);
			if (fd < 0 || tag != (unsigned int)i)
				return 4; /* the fd of this call, with its tag */
			by_channel++;
		}
		if (fd < 0) {
			refused++;
			continue;
		}
		opened++;
		long got = sys3(NR_read, fd, buf, sizeof(buf));
		sys1(NR_close, fd);
		if (got >= 6 && buf[0] == 'S' && buf[1] == 'E' && buf[2] == 'C' && buf[3] == 'R' && buf[4] == 'E' &&
		    buf[5] == 'T')
			forbidden_content++;
	}
	g_puts("opened=");
	g_putnum(opened);
	g_puts(" refused=");
	g_putnum(refused);
	g_puts(" forbidden_content=");
	g_putnum(forbidden_content);
	g_puts(" by_channel=");
	g_putnum(by_channel);
	g_puts("\n");
	return 0;
}

/* ---- hostile ---- */

static int cmd_hostile(const char *file)
{
	unsigned long len = g_strlen(file);
	struct statx stx;
	const unsigned int last = PICO_AREA_SLOTS - 1;

	memcpy(slot(0) + 16, file + 5, len - 5); /* the path of "file:/P" */
	long path = ref(slot_off(0) + 16), plen = (long)len - 5;
	/* Past the end, straddling it, and offsets the monitor must not add up. */
	show("open_past_end", pico_syscall6(PICO_NR_OPEN, ref(PICO_AREA_SIZE), 5, O_RDONLY, 0, 0, 0));
	show("open_straddling", pico_syscall6(PICO_NR_OPEN, ref(PICO_AREA_SIZE - 4), 8, O_RDONLY, 0, 0, 0));
	show("open_huge_offset", pico_syscall6(PICO_NR_OPEN, (long)(PICO_AREA_REF | 0x00fffffffffffff0UL), 32,
						O_RDONLY, 0, 0, 0));
	show("open_huge_length", pico_syscall6(PICO_NR_OPEN, path, (long)0x7fffffffffffffffL, O_RDONLY, 0, 0, 0));
	show("stat_result_past_end", pico_syscall6(PICO_NR_STAT, path, plen, 0, ref(PICO_AREA_SIZE - 100), 0, 0));
	show("stat_result_in_area", pico_syscall6(PICO_NR_STAT, path, plen, 0, ref(slot_off(1)), 0, 0));
	memcpy(&stx, slot(1), sizeof(stx));
	show("stat_result_size", (long)stx.stx_size);
	memcpy(slot(0) + 2048, "/pub/link", 9); /* a symbolic link (to x.txt) */
	show("readlink_buffer_past_end",
	     pico_syscall6(PICO_NR_READLINK, ref(slot_off(0) + 2048), 9, ref(PICO_AREA_SIZE - 3), 64, 0, 0));
	show("readlink_into_area",
	     pico_syscall6(PICO_NR_READLINK, ref(slot_off(0) + 2048), 9, ref(slot_off(1) + 4096), 64, 0, 0));
	unsigned char *text = slot(1) + 4096;
	show("readlink_text_right", text[0] == 'x' && text[1] == '.' && text[4] == 't' ? 0 : -1);
	/* The area reference of a pointer the monitor writes through, where
	 * it reads from: the head below the slots. */
	show("stat_result_in_head", pico_syscall6(PICO_NR_STAT, path, plen, 0, ref(0), 0, 0));
	/* The URI in the head, below the slots: no channel for it, the fd by
	 * NOTIF_ADDFD (an fd number). */
	memcpy(area + 64, file, len);
	long fd = pico_syscall6(PICO_NR_OPEN, ref(64), (long)len, O_RDONLY, 0, 0, 0);
	show("open_uri_in_head_is_a_number", fd >= 0 && fd < 1024 ? 0 : -1);
	if (fd >= 0 && fd < 1024)
		sys1(NR_close, fd);
	/* A slot whose head does not ask: NOTIF_ADDFD. */
	((unsigned int *)slot(2))[0] = 0x12345678;
	fd = open_in_slot(2, file, len, O_RDONLY);
	show("open_without_asking_is_a_number", fd >= 0 && fd < 1024 ? 0 : -1);
	if (fd >= 0 && fd < 1024)
		sys1(NR_close, fd);
	/* Asked for on the channel: the call answers PICO_FD_ON_CHANNEL and the
	 * fd waits there with the tag. */
	ask_channel(3, 0xfeedbeef);
	fd = open_in_slot(3, file, len, O_RDONLY);
	show("open_on_channel_answers_the_marker", fd == (long)PICO_FD_ON_CHANNEL ? 0 : -1);
	unsigned int tag = 0;
	long got = receive(3, &tag);
	show("channel_fd", got >= 0 ? 0 : got);
	show("channel_tag", tag == 0xfeedbeef ? 0 : -1);
	if (got >= 0)
		sys1(NR_close, got);
	/* A refused open sends nothing. */
	ask_channel(2, 7);
	show("open_refused_on_channel", open_in_slot(2, "file:/nonexistent/x", 19, O_RDONLY));
	show("nothing_on_channel", receive(2, &tag));
	/* A URI that would run past the last slot, the end of the area. */
	ask_channel(last, 9);
	memcpy(slot(last) + PICO_AREA_SLOT_SIZE - 8, file, 8); /* the rest would lie beyond the area */
	show("open_past_the_last_slot", pico_syscall6(PICO_NR_OPEN, ref(slot_off(last) + PICO_AREA_SLOT_SIZE - 8),
						      (long)len, O_RDONLY, 0, 0, 0));
	return 0;
}

/* ---- flood ---- */

static int cmd_flood(const char *file, long n)
{
	unsigned long len = g_strlen(file);
	long answered = 0, on_channel = 0, by_addfd = 0, queued = 0;
	for (long i = 0; i < n; i++) {
		ask_channel(0, (unsigned int)i);
		long fd = open_in_slot(0, file, len, O_RDONLY);
		if (fd == (long)PICO_FD_ON_CHANNEL) {
			on_channel++;
		} else if (fd >= 0) {
			by_addfd++;
			sys1(NR_close, fd);
		}
		answered += fd >= 0;
	}
	unsigned int tag;
	long fd;
	while ((fd = receive(0, &tag)) >= 0) {
		queued++;
		sys1(NR_close, fd);
	}
	g_puts("answered=");
	g_putnum(answered);
	g_puts(" on_channel=");
	g_putnum(on_channel);
	g_puts(" by_addfd=");
	g_putnum(by_addfd);
	g_puts(" queued=");
	g_putnum(queued);
	g_puts("\n");
	return 0;
}

/* ---- unmap ---- */

static int cmd_unmap(const char *file)
{
	unsigned long len = g_strlen(file);
	/* What the monitor will read is what was written before the unmap. */
	memcpy(slot(0) + 16, file + 5, len - 5);
	long path = ref(slot_off(0) + 16), plen = (long)len - 5;
	show("munmap", sys2(NR_munmap, (long)area, PICO_AREA_SIZE));
	long p = pico_syscall6(NR_mmap, (long)area, PICO_AREA_SIZE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	show("private_memory_in_its_place", p == (long)area ? 0 : p);
	memset(area, 'x', PICO_AREA_SIZE); /* never reaches the monitor's view */
	show("stat_after_unmap", pico_syscall6(PICO_NR_STAT, path, plen, 0, ref(slot_off(1)), 0, 0));
	show("access_after_unmap", pico_syscall6(PICO_NR_ACCESS, path, plen, 0, 0, 0, 0));
	/* The area mapped again, read-only: the monitor writes through its own
	 * mapping, the guest can still read the result. */
	sys2(NR_munmap, (long)area, PICO_AREA_SIZE);
	p = pico_syscall6(NR_mmap, 0, PICO_AREA_SIZE, PROT_READ, MAP_SHARED, PICO_AREA_FD, 0);
	show("read_only_view", p < 0 && p > -4096 ? p : 0);
	area = (unsigned char *)p;
	show("stat_into_a_read_only_view", pico_syscall6(PICO_NR_STAT, path, plen, 0, ref(slot_off(2)), 0, 0));
	struct statx stx;
	memcpy(&stx, slot(2), sizeof(stx));
	show("result_visible", stx.stx_size > 0 ? 0 : -1);
	show("mprotect_none", sys3(NR_mprotect, (long)area, PICO_AREA_SIZE, 0));
	show("stat_into_an_inaccessible_view", pico_syscall6(PICO_NR_STAT, path, plen, 0, ref(slot_off(3)), 0, 0));
	return 0;
}

int guest_main(int argc, char **argv, char **envp)
{
	if (argc < 3)
		return 2;
	const char *cmd = argv[1];
	if (g_streq(cmd, "noarea")) {
		unsigned long len = g_strlen(argv[2]);
		show("open_without_an_area", pico_syscall6(PICO_NR_OPEN, ref(slot_off(0) + 16), (long)len,
								O_RDONLY, 0, 0, 0));
		return 0;
	}
	if (!map_area()) {
		g_puts("no area\n");
		return 5;
	}
	if (g_streq(cmd, "race") && argc >= 5)
		return cmd_race(argv[2], argv[3], g_atol(argv[4]));
	if (g_streq(cmd, "hostile"))
		return cmd_hostile(argv[2]);
	if (g_streq(cmd, "flood") && argc >= 4)
		return cmd_flood(argv[2], g_atol(argv[3]));
	if (g_streq(cmd, "unmap"))
		return cmd_unmap(argv[2]);
	return 2;
}
