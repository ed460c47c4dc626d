/* The guest's own network: sockets made inside the picoprocess's network
 * namespace, on the monitor's behalf.
 *
 * Every picoprocess has its own network namespace (native/spawn.c) whose
 * only interface is its loopback, which the reaper brings up.  A socket
 * belongs to the namespace of the task that creates it, and the monitor
 * cannot enter the guest's (setns needs CAP_SYS_ADMIN in the monitor's own
 * user namespace, which an unprivileged monitor lacks).  So the reaper runs
 * a small thread, the "guestnet helper", that makes sockets there and hands
 * them back over an AF_UNIX SOCK_SEQPACKET channel (SCM_RIGHTS); the monitor
 * then installs them in the guest as it does host sockets.
 *
 * The helper serves the monitor only: the channel's other end never reaches
 * the guest (it is close-on-exec in the reaper, and the guest's processes
 * exec the loader first thing).  It runs with the guest's identity, no
 * capabilities and no_new_privs, under the reaper's seccomp filter; a
 * socket it makes reaches nothing but the guest's own loopback, so even a
 * helper gone wrong gives the guest nothing its own namespace would not.
 * It makes only AF_INET/AF_INET6 stream and datagram sockets, unbound
 * AF_UNIX datagram sockets and AF_UNIX sockets bound or connected to
 * abstract names (the abstract namespace is
 * per network namespace, so these are the guest's own too; a path name
 * would be looked up in the guest's empty root and fail).
 *
 * One request, one reply, in order.  The reply carries the socket when err
 * is 0 or EINPROGRESS (a TCP connect under way: the monitor finishes it).
 * Sockets are made non-blocking and close-on-exec; the monitor sets the
 * guest's O_NONBLOCK before handing one over. */
#ifndef PICO_GUESTNET_H
#define PICO_GUESTNET_H
#include <stdint.h>

/* cffi:begin */
/* The reaper's end of the channel: just below the status pipe. */
#define PICO_GUESTNET_FD 1011

/* Operations (struct pico_gn_request.op). */
#define PICO_GN_SOCKET 1  /* a new, unbound socket */
#define PICO_GN_BIND 2    /* bound to addr (datagram sockets) */
#define PICO_GN_LISTEN 3  /* bound to addr and listening (backlog) */
#define PICO_GN_CONNECT 4 /* connected (or connecting) to addr */

/* Options, set before bind. */
#define PICO_GN_REUSEADDR 1
#define PICO_GN_REUSEPORT 2
#define PICO_GN_V6ONLY 4 /* AF_INET6 only; without it the socket is dual-stack */

#define PICO_GN_ADDR_MAX 128 /* sizeof(struct sockaddr_storage) */

struct pico_gn_request {
	uint32_t id; /* echoed in the reply */
	int32_t op;  /* PICO_GN_* */
	int32_t domain;
	int32_t type; /* SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET, no flags */
	int32_t options;
	int32_t backlog;
	uint32_t addr_len; /* 0 for PICO_GN_SOCKET */
	uint8_t addr[PICO_GN_ADDR_MAX];
	/* PICO_GN_CONNECT of an inet socket: the address to bind first (the
	 * program bound its socket before connecting), or src_len 0. */
	uint32_t src_len;
	uint8_t src[PICO_GN_ADDR_MAX];
};

struct pico_gn_reply {
	uint32_t id;
	int32_t err; /* 0, EINPROGRESS, or the errno of the step that failed */
};
/* cffi:end */

/* The helper's loop (in the reaper's thread): serves requests on chan until
 * it is closed.  Only raw system calls: it shares the reaper's errno and
 * must not disturb the reaper's own waits. */
void pico_guestnet_serve(int chan);

/* The monitor's side.  Sends one request without waiting: 0, -EAGAIN (the
 * channel is full: the helper is behind), or -errno (EPIPE: no helper). */
int pico_guestnet_send(int chan, const struct pico_gn_request *req);
/* Receives one reply without waiting: 1 with *fd_out the socket (or -1),
 * 0 when the helper is gone (end of file), -EAGAIN when nothing is there,
 * or -errno.  A malformed reply is -EPROTO (its fds are closed). */
int pico_guestnet_recv(int chan, struct pico_gn_reply *rep, int *fd_out);

#endif
