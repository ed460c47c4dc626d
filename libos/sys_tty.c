/* Terminal ioctls outside the direct set's read-only list.  The filter
 * cannot tell a pseudo-terminal of the picoprocess's own devpts from a host
 * terminal the guest inherited (picoproc's stdin), and the host's must
 * never change: so the calls that change a terminal go to the monitor,
 * which makes them only on the run's own ptys (tty_ioctl).  What acts on the
 * caller rather than on the terminal cannot be made there:
 *  - TIOCSCTTY: a pty never becomes the controlling terminal of a guest
 *    process; the call succeeds (login_tty and forkpty require it), and
 *    /dev/tty, job-control signals from the terminal and
 *    tcsetpgrp then behave as without a controlling terminal;
 *  - TIOCSPGRP, TIOCNOTTY, TIOCGSID: ENOTTY, as Linux answers for a
 *    terminal that is not the caller's controlling one;
 *  - TIOCSTI: EPERM, as Linux answers an unprivileged caller for a
 *    terminal that is not its own. */
#include "libos.h"

#define TIOCSCTTY_K 0x540E
#define TIOCSPGRP_K 0x5410
#define TIOCSTI_K 0x5412
#define TIOCNOTTY_K 0x5422
#define TIOCGSID_K 0x5429
#define TCGETS_REQ 0x5401

/* 0 when fd is a terminal (TCGETS, a direct call, succeeds), else -errno
 * (ENOTTY, EBADF). */
static long is_tty(long fd)
{
	unsigned char t[64];
	long r = sys3(__NR_ioctl, fd, TCGETS_REQ, t);
	return r < 0 ? r : 0;
}

/* Implements Linux syscall ioctl(2) for the requests the filter traps. */
LIBOS_SYSCALL(ioctl)
{
	unsigned req = (unsigned)a1;
	long r;
	switch (req) {
	case TIOCSCTTY_K:
		return is_tty(a0);
	case TIOCSPGRP_K:
	case TIOCNOTTY_K:
	case TIOCGSID_K:
		r = is_tty(a0);
		return r < 0 ? r : -ENOTTY;
	case TIOCSTI_K:
		r = is_tty(a0);
		return r < 0 ? r : -EPERM;
	}
	/* The terminal requests (ioctl type 'T'): the monitor knows which it
	 * makes, and answers ENOTTY for the rest and for any fd that is not
	 * one of the run's ptys (a host terminal is never changed). */
	if (((req >> 8) & 0xff) == 'T')
		return pico_tty_ioctl((int)a0, req, (unsigned long)a2);
	return -ENOSYS;
}
