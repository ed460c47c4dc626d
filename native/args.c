/* A call's arguments in and its results out: the copy of each argument
 * from the guest's argument area (a sealed memfd both map; abi/abi_v1.toml,
 * "The argument area") or from the calling process, the values written back,
 * and the fds handed back on the guest's channels (or, failing that,
 * installed with NOTIF_ADDFD).  See serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "seccomp_compat.h"

/* Is the notification still pending?  After every read of the caller's
 * memory: the pid the read used could otherwise have been recycled. */
int still_valid(struct call *c)
{
	uint64_t id = c->n->id;
	if (ioctl(c->guest->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0)
		return 1;
	c->gone = 1;
	return 0;
}

/* Where len bytes at area reference addr lie in the monitor's mapping of the
 * guest's area, or NULL (no area, or not wholly inside it). */
static unsigned char *area_at(struct call *c, uint64_t addr, size_t len)
{
	uint64_t off = addr & ~PICO_AREA_REF_MASK;
	if (!c->guest->area || off > PICO_AREA_SIZE || len > PICO_AREA_SIZE - off)
		return NULL;
	return c->guest->area + off;
}

/* Copies len bytes from the guest: 0, -EFAULT, or -ECANCELED (gone).  From
 * its argument area, a plain copy into the monitor's own buffer: the area
 * cannot shrink (sealed), so the copy never faults, and what the guest
 * writes there later cannot change what was copied.  From the caller's
 * memory, process_vm_readv and a check that the call (so its pid) is still
 * the same. */
int guest_read(struct call *c, uint64_t addr, void *buf, size_t len)
{
	if (is_area_ref(addr)) {
		const unsigned char *src = area_at(c, addr, len);
		if (!src)
			return -EFAULT;
		memcpy(buf, src, len);
		return 0;
	}
	struct iovec local = {buf, len};
	struct iovec remote = {(void *)(uintptr_t)addr, len};

	if (addr + len < addr)
		return -EFAULT;
	if (c->n->pid <= 0)
		return -EPERM; /* the caller is not visible in the monitor's pid namespace */
	ssize_t got = process_vm_readv(c->n->pid, &local, 1, &remote, 1, 0);
	int err = got == (ssize_t)len ? 0 : -EFAULT;
	if (got < 0 && errno == ESRCH)
		err = -ECANCELED;
	if (!still_valid(c))
		return -ECANCELED;
	return err;
}

/* Copies len bytes into the guest: 0, -EFAULT, or -ECANCELED (gone).  Into
 * its argument area: a plain copy (whoever reads it is the guest's own
 * business).  Into the caller's memory the check comes first: a read from a
 * recycled pid is harmless once discarded, a write into one is not.  The
 * caller is blocked in its call until answered or killed
 * (WAIT_KILLABLE_RECV), so a valid notification means its pid is still its
 * own; what remains is the microsecond between this check and
 * process_vm_writev, in which the caller would have to die and another
 * process be given its number (pids are handed out in order: the counter
 * would have to be right there).  The library OS passes area references, so
 * this path serves only callers without an area. */
int guest_write(struct call *c, uint64_t addr, const void *buf, size_t len)
{
	if (is_area_ref(addr)) {
		unsigned char *dst = area_at(c, addr, len);
		if (!dst)
			return -EFAULT;
		memcpy(dst, buf, len);
		return 0;
	}
	struct iovec local = {(void *)buf, len};
	struct iovec remote = {(void *)(uintptr_t)addr, len};

	if (addr + len < addr)
		return -EFAULT;
	if (c->n->pid <= 0)
		return -EPERM;
	if (!still_valid(c))
		return -ECANCELED;
	ssize_t put = process_vm_writev(c->n->pid, &local, 1, &remote, 1, 0);
	if (put < 0 && errno == ESRCH) {
		c->gone = 1;
		return -ECANCELED;
	}
	return put == (ssize_t)len ? 0 : -EFAULT;
}

static void keep_text(char *dst, uint32_t *kept, uint32_t *full, const char *src, size_t len)
{
	size_t n = len < PICO_AUDIT_TEXT ? len : PICO_AUDIT_TEXT;
	memcpy(dst, src, n);
	*kept = (uint32_t)n;
	*full = (uint32_t)len;
}

/* Copies a (pointer, length) string argument: 1..max bytes (0: EINVAL, above
 * max: ENAMETOOLONG), no NUL inside (EINVAL).  The audit record keeps the
 * very bytes the call then uses. */
int fetch_string(struct call *c, uint64_t addr, uint64_t len, size_t max, char *buf,
			int second)
{
	if (len == 0)
		return -EINVAL;
	if (len > max)
		return -ENAMETOOLONG;
	int err = guest_read(c, addr, buf, len);
	if (err < 0)
		return err;
	buf[len] = '\0';
	if (second)
		keep_text(c->rec.text2, &c->rec.text2_len, &c->rec.text2_full, buf, len);
	else
		keep_text(c->rec.text, &c->rec.text_len, &c->rec.text_full, buf, len);
	if (memchr(buf, '\0', len))
		return -EINVAL;
	return 0;
}

/* An int / unsigned int argument: the upper half of the register must be 0
 * area").  The head is copied once, like every argument; a wrong one only
 * means the fd is installed with NOTIF_ADDFD. */
void channel_requested(struct call *c, uint64_t uri)
{
	uint32_t head[2];
	struct guest *g = c->guest;

	c->to.channel = -1;
	if (!is_area_ref(uri) || !g->nchannels)
		return;
	uint64_t off = uri & ~PICO_AREA_REF_MASK;
	if (off < PICO_AREA_SLOTS_OFFSET)
		return;
	uint64_t slot = (off - PICO_AREA_SLOTS_OFFSET) / PICO_AREA_SLOT_SIZE;
	if (slot >= (uint64_t)g->nchannels)
		return;
	memcpy(head, g->area + PICO_AREA_SLOTS_OFFSET + slot * PICO_AREA_SLOT_SIZE, sizeof(head));
	if (head[0] != PICO_AREA_FD_VIA_CHANNEL)
		return;
	c->to.channel = (int)slot;
	c->to.tag = head[1];
}

/* ---------------------------------------------------------------------- */
/* Handing fds back                                                        */
/*
 * NOTIF_ADDFD + SECCOMP_ADDFD_FLAG_SEND installs the fd and answers in one
 * step, but the kernel wakes the guest for it with a plain wake-up, not the
 * synchronous one NOTIF_SEND gives: with the server running, the scheduler
 * puts the guest on an idle CPU, and the server sleeps until the guest has
 * taken the fd and is woken back the same way.  Where idle CPUs halt (a VM)
 * each of those wake-ups is slow (benchmarks/perf/analysis.md has the
 * measurements).  A guest with a library OS therefore asks for its fds on
 * a channel (abi_v1.toml, "The argument area"): the server sends the fd on
 * it, which wakes nobody (the caller is blocked in its call, not in
 * recvmsg), then answers with NOTIF_SEND, and the caller receives it: no
 * wake-up but the synchronous one.
 *
 * Race-free for a guest with many threads and processes: each call has its
 * own slot and so its own channel, and its fd carries the call's tag, so
 * another call's fd is never taken for it (what an abandoned call left
 * behind is closed by the next call of that slot).  The monitor keeps no
 * copy: the fd is the guest's as soon as it is sent (if the guest never
 * takes it, it is closed with the guest's end of the channel).  The
 * monitor's end has a minimal send buffer and refuses to read, so a guest
 * can neither make the monitor hold many fds in flight for it nor send
 * anything to the monitor; when the channel is full (a guest that does not
 * take its fds), or the guest did not ask, the fd goes by NOTIF_ADDFD. */

/* Sends fd with the tag on the guest's channel: 0 or -errno. */
static int send_on_channel(struct guest *g, int channel, uint32_t tag, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&tag, sizeof(tag)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);

	memset(cbuf, 0, sizeof(cbuf));
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(fd));
	return sendmsg(g->channels[channel], &m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(tag) ? 0 : -errno;
}

/* Installs fd in the guest (as its call, notification id, asked) and
 * answers.  Returns what was answered (the guest's fd number, or
 * PICO_FD_ON_CHANNEL), -ECANCELED (gone), or -errno after having answered
 * the guest with it (EMFILE: the guest's fd table is full). */
long deliver_fd(struct guest *g, uint64_t id, const struct delivery *to, int fd)
{
	if (to->channel >= 0 && to->channel < g->nchannels && send_on_channel(g, to->channel, to->tag, fd) == 0) {
		BUMP(g->loop->fds_on_channel);
		/* Gone meanwhile: the fd waits on the channel, and the next
		 * call of that slot closes it. */
		return send_answer(g, id, (long)PICO_FD_ON_CHANNEL) < 0 ? -ECANCELED : (long)PICO_FD_ON_CHANNEL;
	}
	struct seccomp_notif_addfd addfd = {
		.id = id,
		.flags = SECCOMP_ADDFD_FLAG_SEND,
		.srcfd = (uint32_t)fd,
		.newfd = 0,
		.newfd_flags = to->cloexec ? O_CLOEXEC : 0,
	};
	BUMP(g->loop->fds_by_addfd);
	long ret = ioctl(g->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
	if (ret >= 0)
		return ret;
	int err = errno;
	if (err == ENOENT)
		return -ECANCELED;
	/* Not installed: the call is still pending; answer it. */
	if (send_answer(g, id, -err) < 0)
		return -ECANCELED;
	return -err;
}
/* The monitor's mapping of a guest's area, after checking that the fd is
 * an area (a memfd of the right size that can neither shrink nor grow: a
 * mapping of it never faults).  NULL with errno set otherwise. */
unsigned char *map_area(int fd)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	if (seals < 0 || (seals & need) != need || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size != PICO_AREA_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	void *p = mmap(NULL, PICO_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---------------------------------------------------------------------- */
/* Argument areas                                                          */

int pico_area_make(int n, int *area_fd, int *guest_ends, int *monitor_ends)
{
	int made = 0, memfd;

	if (n < 0 || n > PICO_AREA_SLOTS)
		return -EINVAL;
	memfd = memfd_create("picoproc-area", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0)
		return -errno;
	if (ftruncate(memfd, PICO_AREA_SIZE) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	for (; made < n; made++) {
		int sv[2];
		/* The minimal send buffer: a guest that never takes its fds
		 * makes the monitor fall back to NOTIF_ADDFD after one or two,
		 * instead of holding many in flight for it.  SOCK_SEQPACKET,
		 * not SOCK_DGRAM: the pair lives in the monitor's network
		 * namespace, and a datagram socket's sendto(2) to an address
		 * (a direct call for the guest) would reach the host's
		 * abstract AF_UNIX names; a seqpacket socket's send ignores
		 * any address and goes only to its peer. */
		int one = 1;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			goto fail;
		if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) < 0 || shutdown(sv[1], SHUT_RD) < 0) {
			close(sv[0]);
			close(sv[1]);
			goto fail;
		}
		guest_ends[made] = sv[0];
		monitor_ends[made] = sv[1];
	}
	*area_fd = memfd;
	return 0;
fail:;
	int err = -errno;
	while (made-- > 0) {
		close(guest_ends[made]);
		close(monitor_ends[made]);
	}
	close(memfd);
	return err;
}
