/* The argument area shared with the monitor (PICO_AREA_*, abi/abi_v1.toml).
 *
 * The monitor created a sealed memfd for this picoprocess (it cannot shrink
 * or grow, so the monitor's own mapping of it never faults) and handed it in
 * on PICO_AREA_FD; every loader instance maps it again after exec, forked
 * children inherit the mapping.  The generated pico_<call>() wrappers
 * (picoproc_abi.h, PICO_ABI_AREA) take a slot per call, copy the call's
 * in-arguments into it and pass area references, so the monitor reads them
 * from its own mapping instead of from this process (one copy, no
 * process_vm_readv); results come back the same way.  An open asks for its
 * fd on the slot's channel (an AF_UNIX seqpacket socket on PICO_CHANNEL_FD +
 * slot): the monitor sends the fd there with the slot's tag and answers at
 * once, and the fd is received here, which spares the two cross-CPU wake-ups
 * of SECCOMP_IOCTL_NOTIF_ADDFD (docs/ARCHITECTURE.md, "Handing fds back").
 *
 * Slots belong to calls, not threads: a call takes a free slot (its owner
 * word, below the slots, set from 0 to the caller's tid with a
 * compare-and-swap) and gives it back when it returns, so a signal handler
 * that makes a call inside another call simply takes another slot.  All of
 * this is the guest's own business: the monitor never reads the owner words,
 * and it copies what a slot holds once before looking at it, so another
 * thread writing into the slot meanwhile can only spoil its own call.  A
 * slot whose owner died mid-call (its process killed, or its thread gone at
 * exec) is taken over once no slot is free; a slot left with a call that did
 * not receive its fd is drained before its next use.  When no slot can be
 * had the wrappers pass ordinary pointers. */
#include "libos.h"

/* What the library OS keeps below the slots. */
struct area_head {
	volatile int owner[PICO_AREA_SLOTS];	     /* tid of the call holding the slot, 0: free */
	volatile unsigned int pending[PICO_AREA_SLOTS]; /* an fd may wait on the slot's channel */
	volatile unsigned int seq[PICO_AREA_SLOTS];     /* the last tag used in the slot */
};

_Static_assert(sizeof(struct area_head) <= PICO_AREA_SLOTS_OFFSET, "the head fits below the slots");

/* The slot's own head, where an open asks for its fd on the channel. */
struct slot_head {
	unsigned int magic; /* PICO_AREA_FD_VIA_CHANNEL */
	unsigned int tag;
};
#define SLOT_HEAD_SIZE 16

static unsigned char *area; /* NULL: none (no area fd, or it could not be mapped) */

void libos_area_init(void)
{
	long p = sys6(__NR_mmap, 0, PICO_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, PICO_AREA_FD, 0);
	area = (unsigned long)p > -4096UL ? NULL : (unsigned char *)p;
}

static struct area_head *head(void)
{
	return (struct area_head *)area;
}

static unsigned char *slot_base(unsigned int slot)
{
	return area + PICO_AREA_SLOTS_OFFSET + (unsigned long)slot * PICO_AREA_SLOT_SIZE;
}

static int take(unsigned int slot, int expected, int tid)
{
	return __atomic_compare_exchange_n(&head()->owner[slot], &expected, tid, 0, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

/* The kernel's struct msghdr and struct cmsghdr (<linux/socket.h> keeps them
 * to itself). */
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
struct cmsghdr_k {
	unsigned long len;
	int level;
	int type;
	int fd; /* SCM_RIGHTS data: one fd */
	int pad;
};
#define SOL_SOCKET_K 1
#define SCM_RIGHTS_K 1
#define MSG_CTRUNC_K 0x8
#define MSG_DONTWAIT_K 0x40
#define MSG_CMSG_CLOEXEC_K 0x40000000
#define CMSG_LEN_ONE_FD_K 20

/* One message from the slot's channel: its tag and fd (-1 if it carried
 * none); -EAGAIN when there is none, -EMFILE when the fd could not be
 * installed here. */
static long receive(unsigned int slot, int cloexec, unsigned int *tag, int *fd)
{
	struct cmsghdr_k cm;
	struct iovec_k iov = {tag, sizeof(*tag)};
	struct msghdr_k msg = {.iov = &iov, .iovlen = 1, .control = &cm, .controllen = sizeof(cm)};
	long r;

	*fd = -1;
	memset(&cm, 0, sizeof(cm));
	do
		r = sys3(__NR_recvmsg, PICO_CHANNEL_FD + slot, &msg,
			 MSG_DONTWAIT_K | (cloexec ? MSG_CMSG_CLOEXEC_K : 0));
	while (r == -EINTR);
	if (r < 0)
		return r;
	if (msg.controllen >= CMSG_LEN_ONE_FD_K && cm.level == SOL_SOCKET_K && cm.type == SCM_RIGHTS_K &&
	    cm.len == CMSG_LEN_ONE_FD_K)
		*fd = cm.fd;
	else if (msg.flags & MSG_CTRUNC_K)
		return -EMFILE;
	return r == (long)sizeof(*tag) ? 0 : -EPROTO;
}

/* Closes whatever an earlier call of the slot left on its channel. */
static void drain(unsigned int slot)
{
	unsigned int tag;
	int fd;
	for (int i = 0; i < 64; i++) {
		long r = receive(slot, 1, &tag, &fd);
		if (fd >= 0)
			sys1(__NR_close, fd);
		if (r == -EAGAIN || r == -EBADF || r == -ENOTSOCK)
			break;
	}
	head()->pending[slot] = 0;
}

int pico_area_begin(struct pico_area_call *c)
{
	if (!area)
		return 0;
	int tid = (int)sys0(__NR_gettid);
	unsigned int slot = PICO_AREA_SLOTS;
	for (unsigned int s = 0; s < PICO_AREA_SLOTS && slot == PICO_AREA_SLOTS; s++)
		if (head()->owner[s] == 0 && take(s, 0, tid))
			slot = s;
	/* Every slot busy: take over one whose owner is gone. */
	for (unsigned int s = 0; s < PICO_AREA_SLOTS && slot == PICO_AREA_SLOTS; s++) {
		int owner = head()->owner[s];
		if (owner > 0 && owner != tid && sys2(__NR_kill, owner, 0) == -ESRCH && take(s, owner, tid)) {
			head()->pending[s] = 1; /* it may have died with an fd on its way */
			slot = s;
		}
	}
	if (slot == PICO_AREA_SLOTS)
		return 0;
	if (head()->pending[slot])
		drain(slot);
	c->slot = slot;
	c->tag = 0;
	c->used = SLOT_HEAD_SIZE;
	((struct slot_head *)slot_base(slot))->magic = 0;
	return 1;
}

long pico_area_reserve(struct pico_area_call *c, unsigned long n)
{
	if (n > PICO_AREA_SLOT_SIZE - c->used)
		return 0;
	long ref = (long)(PICO_AREA_REF | (PICO_AREA_SLOTS_OFFSET + (unsigned long)c->slot * PICO_AREA_SLOT_SIZE +
					    c->used));
	c->used += (n + 7) & ~7UL;
	if (c->used > PICO_AREA_SLOT_SIZE)
		c->used = PICO_AREA_SLOT_SIZE;
	return ref;
}

static unsigned char *at(long ref)
{
	return area + ((unsigned long)ref & ~PICO_AREA_REF_MASK);
}

long pico_area_put(struct pico_area_call *c, const void *p, unsigned long n)
{
	long ref = pico_area_reserve(c, n);
	if (ref)
		memcpy(at(ref), p, n);
	return ref;
}

void pico_area_get(const struct pico_area_call *c, long ref, void *dst, unsigned long n)
{
	(void)c;
	memcpy(dst, at(ref), n);
}

void pico_area_ask_fd(struct pico_area_call *c)
{
	struct slot_head *h = (struct slot_head *)slot_base(c->slot);
	c->tag = ++head()->seq[c->slot];
	h->tag = c->tag;
	h->magic = PICO_AREA_FD_VIA_CHANNEL;
	head()->pending[c->slot] = 1;
}

long pico_area_take_fd(struct pico_area_call *c, long answer, int flags)
{
	if (answer != (long)PICO_FD_ON_CHANNEL) {
		head()->pending[c->slot] = 0;
		return answer;
	}
	/* Ours is the last message; anything before it was left by an earlier
	 * call of this slot and is closed. */
	for (int i = 0; i < 64; i++) {
		unsigned int tag;
		int fd;
		long r = receive(c->slot, !!(flags & O_CLOEXEC), &tag, &fd);
		if (r < 0 && fd < 0) {
			if (r == -EMFILE)
				head()->pending[c->slot] = 0;
			return r == -EAGAIN ? -EIO : r;
		}
		if (r == 0 && tag == c->tag && fd >= 0) {
			head()->pending[c->slot] = 0;
			return fd;
		}
		if (fd >= 0)
			sys1(__NR_close, fd);
	}
	return -EIO;
}

void pico_area_end(struct pico_area_call *c)
{
	((struct slot_head *)slot_base(c->slot))->magic = 0;
	__atomic_store_n(&head()->owner[c->slot], 0, __ATOMIC_RELEASE);
}
