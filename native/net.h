/* Network mediation: the non-file schemes of the mediated `open` call.
 *
 * The monitor's event loop (loop.c) calls pico_net_start() for a URI whose
 * scheme is tcp:, udp:, tcp.srv: or unix: and hands the resulting fd to the
 * guest with SECCOMP_IOCTL_NOTIF_ADDFD.  The monitor creates every socket
 * itself, in the host network namespace, and only for what the manifest
 * grants; the guest (in its own, empty network namespace) has no other way
 * to reach a network.
 *
 * URIs (exactly uri_len bytes, no NUL needed, an embedded NUL is -EINVAL):
 *   tcp:A.B.C.D:PORT  tcp:[V6]:PORT   connected TCP socket (PORT 1..65535)
 *   udp:A.B.C.D:PORT  udp:[V6]:PORT   connected datagram socket (see below)
 *   tcp.srv:ADDR:PORT                 listening TCP socket bound to ADDR
 *                                     (PORT 0 = an ephemeral port)
 *   unix:/ABS/PATH                    connected AF_UNIX stream socket
 *
 * Addresses are literals only (inet_pton: no host names, no "127.1", no
 * leading zeros, no IPv6 zone ids); a name is malformed: -EINVAL.  Grants
 * and requests are compared as binary addresses, and an IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is the IPv4 address a.b.c.d in both, so no
 * spelling reaches an address that is not granted.  IPv6 listeners are
 * IPV6_V6ONLY: a grant for "::" does not also open 0.0.0.0.
 *
 * unix: paths must be canonical (no ".", "..", "//" or trailing "/": the
 * grant check is a byte comparison) and name the socket by its resolved
 * path: a symlink anywhere on the way is refused (-ELOOP), so nothing
 * planted or swapped in later can redirect the connect.  Abstract sockets
 * ("@name" or a leading NUL) are never granted: -EINVAL.
 *
 * Errors: -EINVAL malformed URI, unknown scheme or flag bits; -ENAMETOOLONG
 * uri_len above PICO_NET_MAX_URI, a unix path of PATH_MAX bytes or more or
 * a component above NAME_MAX; -EACCES no grant (checked before any socket
 * exists: nothing reaches the network); -ELOOP a symlink on a unix: path;
 * -ENOENT no such unix: path; -ECONNREFUSED nothing listening, or a unix:
 * path that is not a socket; -EAGAIN a unix listener's backlog is full (the
 * monitor never waits); -EADDRINUSE / -EADDRNOTAVAIL from bind(2); -ENFILE
 * too many udp: relays; otherwise the errno of socket(2)/connect(2).
 *
 * udp: the guest does not get the UDP socket.  On a connected UDP socket
 * sendto/sendmsg with an explicit address still send to that address, and
 * the filter cannot see sendmsg's msg_name, so a real UDP socket would let
 * the guest send to any host.  Instead the guest gets one end of an AF_UNIX
 * SOCK_SEQPACKET pair (which ignores any address given on send) and a
 * monitor thread relays whole datagrams between the other end and the
 * connected UDP socket, dropping what does not fit (UDP semantics; a
 * datagram above PICO_NET_UDP_MAX_DATAGRAM is dropped whole).  The relay
 * ends when the guest closes its end or shuts it down for writing, after
 * passing on the datagrams the guest sent before.  What the guest sees
 * differs from a UDP socket: getsockname/getpeername give AF_UNIX
 * addresses, and errors of the UDP socket (ECONNREFUSED after an ICMP port
 * unreachable) are not reported.
 *
 * unix: runs as the calling thread's fsuid/fsgid (the event loop's thread
 * takes the guest's identity): the path is resolved and the socket's write
 * permission checked as the guest, and the connect uses that identity as
 * the effective one too, so the server's SO_PEERCRED shows the guest's
 * uid/gid, never a root monitor's.
 *
 * TCP: a socket is handed over only in the kernel's SS_CONNECTED state
 * (pico_net_finish re-issues connect to get there); a socket that is merely
 * "connecting" could, after a reset, be re-connected anywhere by
 * sendto(MSG_FASTOPEN).  A tcp.srv: listener can be turned back into an
 * unconnected socket by shutdown(SHUT_RD); the ABI must refuse MSG_FASTOPEN
 * on sendto/sendmsg for that reason (see the report in issue 3).
 */
#ifndef PICO_NET_H
#define PICO_NET_H
#include <stddef.h>

/* cffi:begin */
#define PICO_NET_TCP_CONNECT 1
#define PICO_NET_UDP_CONNECT 2
#define PICO_NET_TCP_LISTEN 3
#define PICO_NET_UNIX 4

#define PICO_NET_MAX_URI 4200		/* the ABI's max_uri */
#define PICO_NET_LISTEN_BACKLOG 128
#define PICO_NET_MAX_UDP_RELAYS 256	/* beyond this, udp: gives -ENFILE */
#define PICO_NET_UDP_MAX_DATAGRAM 65536

struct pico_net_policy;

struct pico_net_policy *pico_net_policy_new(void);
void pico_net_policy_free(struct pico_net_policy *p);

/* Grants one endpoint.  kind: PICO_NET_*.  For the inet kinds addr is a
 * literal IPv4 or IPv6 address without brackets and port is 0 (any port)
 * or 1..65535.  For PICO_NET_UNIX addr is an absolute, canonical host path
 * without symlinks (the Python side resolves it): the exact socket path,
 * or, ending with '/', a directory under which any socket is granted; port
 * must be 0.  Returns 0, -EINVAL (bad kind, address, port or path) or
 * -ENOMEM.  Not thread-safe against concurrent pico_net_start on the same
 * policy: build the policy, then use it. */
int pico_net_policy_add(struct pico_net_policy *p, int kind, const char *addr, int port);

/* Starts opening a network URI.  flags: O_RDONLY/O_WRONLY/O_RDWR (ignored:
 * sockets are bidirectional), O_NONBLOCK (the guest's fd is non-blocking),
 * O_CLOEXEC (accepted; the caller applies it as ADDFD's newfd_flags: the
 * monitor's own copy is always close-on-exec); any other bit is -EINVAL.
 * Returns a new fd >= 0 that is ready to hand over (also stored in
 * *fd_out), or -EINPROGRESS with *fd_out a socket whose TCP connect is in
 * progress (wait for EPOLLOUT, then call pico_net_finish; close it if the
 * guest goes away), or -errno with *fd_out = -1.  Never blocks. */
int pico_net_start(const struct pico_net_policy *p, const char *uri, size_t uri_len, int flags,
		   int *fd_out);

/* Completes an in-progress connect from pico_net_start: 0 when connected
 * (the fd now has the guest's requested O_NONBLOCK setting and is ready to
 * hand over), -EINPROGRESS when still connecting (wait for EPOLLOUT again),
 * or -errno (e.g. -ECONNREFUSED); on an error the caller closes the fd. */
int pico_net_finish(int fd);

/* A one-line description of the decision of the last pico_net_start or
 * pico_net_finish on the calling thread, for the audit log and error
 * messages, e.g. "tcp connect 127.0.0.1:80: not granted". */
const char *pico_net_last_decision(void);

/* 1 when the URI's scheme is one of the network schemes handled here. */
int pico_net_is_network_uri(const char *uri, size_t uri_len);

/* Number of udp: relay threads alive (tests use it to check clean-up). */
int pico_net_udp_relay_count(void);
/* cffi:end */

#endif
