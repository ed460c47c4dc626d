/* Network mediation: the non-file schemes of the mediated `open` call.
 *
 * The monitor's event loop (loop.c) calls pico_net_start_guest() for a URI
 * whose scheme is one of those below and hands the resulting fd to the
 * guest with SECCOMP_IOCTL_NOTIF_ADDFD.  Two networks can serve a URI:
 *
 *   - the host's: the monitor creates the socket itself, in the host
 *     network namespace, and only for an endpoint the manifest grants;
 *   - the guest's own: every picoprocess has its own network namespace
 *     whose only interface is its loopback (127.0.0.0/8 and ::1), as a
 *     container has.  What is not granted but names a loopback or wildcard
 *     address is served there: its processes listen and connect to each
 *     other with no grant, and never reach the host's loopback.  Those
 *     sockets are made by the reaper's helper inside that namespace
 *     (guestnet.h): pico_net_start_guest answers PICO_NET_OWN and fills in
 *     the request, which the loop sends to the helper.
 *
 * So a grant of a loopback endpoint (127.0.0.1:5432) means the host's
 * port; every other loopback address and port is the guest's own.  A
 * granted listen endpoint is the host's too: the guest's own processes
 * reach a listener there only if the endpoint is also granted for connect.
 *
 * URIs (exactly uri_len bytes, no NUL needed, an embedded NUL is -EINVAL):
 *   tcp:A.B.C.D:PORT  tcp:[V6]:PORT   connected TCP socket (PORT 1..65535);
 *                                     a last option from=ADDR:PORT binds it
 *                                     there first (own network only: a
 *                                     granted connect ignores it)
 *   udp:A.B.C.D:PORT  udp:[V6]:PORT   connected datagram socket (see below)
 *   tcp.srv:ADDR:PORT                 listening TCP socket bound to ADDR
 *                                     (PORT 0 = an ephemeral port)
 *   udp.srv:ADDR:PORT                 UDP socket bound to ADDR (own network
 *                                     only: there is no host UDP grant)
 *   udp.new:inet  udp.new:inet6       unbound UDP socket (own network)
 *   tcp.new:inet  tcp.new:inet6       unbound TCP socket (own network)
 *   unix:/ABS/PATH                    connected AF_UNIX stream socket
 *   unix:@NAME                        the same, to an abstract name (own
 *                                     network: abstract names are per
 *                                     network namespace)
 *   unix.srv:@NAME  unix.srv:@        listening AF_UNIX stream socket bound
 *                                     to an abstract name (@ alone: one the
 *                                     kernel picks); own network.  A path
 *                                     (unix.srv:/PATH) is a file in the
 *                                     guest's view: the loop serves it with
 *                                     the file policy (mediate_fs.h).
 *   unixdg.new:                       unbound AF_UNIX datagram socket (own
 *                                     network: the abstract names sendto(2)
 *                                     reaches are the guest's)
 *   unixdg.srv:@NAME  unixdg.srv:@    AF_UNIX datagram socket bound to an
 *                                     abstract name (own network)
 *   unixdg.srv:/PATH?fd=N             the caller's own datagram socket N
 *   unixdg:/PATH?fd=N  unixdg:@NAME?fd=N  bound to a path, or connected to a
 *                                     path or abstract name, in place (the
 *                                     loop serves these: serve.c); never a
 *                                     new socket of the host's network, whose
 *                                     sendto(2) would reach the host's
 *                                     abstract names
 * The inet schemes take options after '?', comma-separated: reuseaddr,
 * reuseport (SO_REUSEADDR/SO_REUSEPORT before bind) and dualstack (an IPv6
 * socket that is not IPV6_V6ONLY).  They apply to sockets of the guest's
 * own network; host listeners are always SO_REUSEADDR and IPV6_V6ONLY.
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
 * planted or swapped in later can redirect the connect.  Abstract names
 * of the host ("@name", or a leading NUL) are never reachable: -EINVAL
 * from pico_net_start; pico_net_start_guest serves "@name" in the guest's
 * own network.
 *
 * Errors: -EINVAL malformed URI, unknown scheme or flag bits; -ENAMETOOLONG
 * uri_len above PICO_NET_MAX_URI, a unix path of PATH_MAX bytes or more or
 * a component above NAME_MAX; -EACCES no grant (checked before any socket
 * exists: nothing reaches the network); -ELOOP a symlink on a unix: path;
 * -ENOENT no such unix: path; -ECONNREFUSED nothing listening, or a unix:
 * path that is not a socket; -EAGAIN a unix listener's backlog is full (the
 * monitor never waits); -EADDRINUSE / -EADDRNOTAVAIL from bind(2); -EMFILE
 * the run holds as many udp: relays as its open-file limit, -ENFILE the
 * monitor holds PICO_NET_MAX_UDP_RELAYS; otherwise the errno of
 * socket(2)/connect(2).
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
 * on sendto/sendmsg for that reason: it would connect such a socket to any
 * address, past every grant (tests/test_net.py,
 * test_reset_socket_cannot_be_redirected_by_fastopen and
 * test_abi_refuses_msg_fastopen).
 */
#ifndef PICO_NET_H
#define PICO_NET_H
#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
#define PICO_NET_TCP_CONNECT 1
#define PICO_NET_UDP_CONNECT 2
#define PICO_NET_TCP_LISTEN 3
#define PICO_NET_UNIX 4
#define PICO_NET_UDP_BIND 5	/* udp.srv: (never granted: own network only) */

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

/* Grants TCP and UDP connects to every host address except loopback and
 * the wildcard, which stay the guest's own network: what `picoproc learn
 * --allow-net` runs with, to see which endpoints a program uses.  No
 * manifest expresses it.  Returns 0 or -EINVAL. */
int pico_net_policy_grant_any_host(struct pico_net_policy *p);

/* Bounds the udp: relays (each a monitor thread and two sockets) the run
 * may hold at once; 0: no bound but the monitor's PICO_NET_MAX_UDP_RELAYS.
 * Returns 0 or -EINVAL. */
int pico_net_policy_set_max_sockets(struct pico_net_policy *p, int max_sockets);
/* udp: relays alive for this policy. */
int pico_net_policy_relays(const struct pico_net_policy *p);
/* CPU time this policy's udp: relay and UDP proxy threads have spent (the
 * loop charges it to the guest with its own). */
uint64_t pico_net_policy_cpu_ns(const struct pico_net_policy *p);

/* Relays the run's UDP proxies: fds are UDP sockets the reaper bound in the
 * guest's own network to granted destinations (spawn.h, udp_proxies), each
 * at the destination's own address and port.  A datagram the guest sends
 * to one goes to that destination on the host, from a host socket of its
 * own per guest source address (at most the run's open-file limit of them
 * at once, closed after a minute without traffic), and the answers come
 * back from the proxy: the guest's unconnected sendto/recvfrom to a granted
 * destination work as natively.  Takes the fds (closes them on failure
 * too); one thread, stopped when the policy is freed.  Returns 0 or -errno
 * (EACCES: a socket's address is not a granted destination; EINVAL: bad
 * arguments, or proxies already started). */
int pico_net_policy_start_proxies(struct pico_net_policy *p, const int *fds, int n);

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

struct pico_gn_request;

/* pico_net_start_guest's answer: not an errno, the guest's own network
 * serves the URI. */
#define PICO_NET_OWN -65536

/* pico_net_start, and the guest's own network: with own != NULL a URI that
 * it serves answers PICO_NET_OWN with *own the request for the helper
 * (its id left 0); with own == NULL such URIs are refused as not granted
 * (-EACCES; -EINVAL for abstract names) and udp.new:, tcp.new: are -EACCES. */
int pico_net_start_guest(const struct pico_net_policy *p, const char *uri, size_t uri_len,
			 int flags, int *fd_out, struct pico_gn_request *own);
/* cffi:end */

/* 1 when unix_paths grants the host path (canonical, absolute), else 0. */
int pico_net_unix_granted(const struct pico_net_policy *p, const char *path, size_t len);


/* AF_UNIX sockets named in the guest's view (the file policy resolves the
 * name, mediate_fs.c): a stream socket connected to the socket inode that
 * pathfd (O_PATH) pins, as the thread's fs identity; and a listening
 * stream socket bound to `name` (one component) in the directory dirfd,
 * with the permission bits `mode`.  Return the fd or -errno. */
int pico_net_unix_connect_fd(int pathfd, int nonblock);
int pico_net_unix_listen_at(int dirfd, const char *name, unsigned int mode, int nonblock);
/* The same for a datagram socket the guest already holds (sock, a copy of
 * its fd): connected in place to the inode pathfd pins, or bound in place
 * to `name` in dirfd.  0 or -errno. */
int pico_net_unix_dgram_connect_fd(int sock, int pathfd);
int pico_net_unix_dgram_bind_at(int sock, int dirfd, const char *name, unsigned int mode);
/* Connects sock in place to the host socket a unix grant names (canonical
 * absolute path, resolved without symlinks): 0, -EACCES not granted, or
 * -errno.  Sets the audit line. */
int pico_net_unix_dgram_connect_granted(const struct pico_net_policy *p, const char *path, size_t len,
					int sock);

/* A socket of the guest's own network whose connect (req) the helper left
 * in progress: remembered like a host connect, so that pico_net_finish
 * completes it.  Returns -EINPROGRESS, or -errno (the caller closes fd). */
int pico_net_adopt_connecting(int fd, const struct pico_gn_request *req, int nonblock);

#endif
