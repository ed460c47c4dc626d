/* Calls answered later: connects in progress (answered when the socket
 * becomes writable) and the queue of calls waiting for the guest's socket
 * helper (guestnet.h), answered in the order they were sent.  Both are
 * served by the guest's server from its epoll wait.  See serve.h. */
#define _GNU_SOURCE
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* ---------------------------------------------------------------------- */
/* Connects in progress                                                    */

int defer_connect(struct guest *g, int fd, uint64_t notif_id, pid_t tid, const struct delivery *to,
			 const struct pico_audit_record *rec)
{
	unsigned int i;

	for (i = 0; i < PICO_LOOP_GUEST_CONNECTS; i++)
		if (!g->connects[i].in_use)
			break;
	if (i == PICO_LOOP_GUEST_CONNECTS)
		return -EAGAIN;
	/* Each connect in progress is a socket the monitor holds for the
	 * guest: PICO_LOOP_GUEST_CONNECTS of them at once (the array). */
	struct pending_connect *pc = &g->connects[i];
	struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = EV_DATA(EV_CONNECT, i)};
	if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	pc->in_use = 1;
	pc->fd = fd;
	pc->notif_id = notif_id;
	pc->tid = tid;
	pc->to = *to;
	pc->rec = *rec;
	if (++g->nconnects > g->stats.connects_peak)
		__atomic_store_n(&g->stats.connects_peak, g->nconnects, __ATOMIC_RELAXED);
	BUMP(g->loop->pending_connects);
	return 0;
}

static void drop_connect(struct guest *g, struct pending_connect *pc)
{
	epoll_ctl(g->epfd, EPOLL_CTL_DEL, pc->fd, NULL);
	close(pc->fd);
	pc->in_use = 0;
	g->nconnects--;
	DROP(g->loop->pending_connects);
}

void finish_connect(struct guest *g, uint32_t idx)
{
	if (idx >= PICO_LOOP_GUEST_CONNECTS || !g->connects[idx].in_use)
		return;
	struct pending_connect *pc = &g->connects[idx];
	long ret;

	if (g->listener < 0) {
		drop_connect(g, pc);
		return;
	}
	ret = pico_net_finish(pc->fd);
	if (ret == -EINPROGRESS)
		return; /* not yet: wait for the next EPOLLOUT */
	if (ret == 0)
		ret = deliver_fd(g, pc->notif_id, &pc->to, pc->fd);
	else if (send_answer(g, pc->notif_id, ret) < 0)
		ret = -ECANCELED;
	finish_record(&pc->rec, ret, 0);
	account(g, &pc->rec);
	drop_connect(g, pc);
}

void drop_connects(struct guest *g)
{
	for (unsigned int i = 0; i < PICO_LOOP_GUEST_CONNECTS; i++)
		if (g->connects[i].in_use)
			drop_connect(g, &g->connects[i]);
}

/* ---------------------------------------------------------------------- */
/* Sockets of the guest's own network (guestnet.h)                         */

/* Sends the call's request to the guest's helper and queues the call: 0,
 * or -errno to answer the guest with now. */
int gn_submit(struct guest *g, struct call *c)
{
	if (g->gn_fd < 0)
		return -ENETDOWN; /* the helper is gone */
	if (g->gn_count == g->gn_cap) {
		unsigned int cap = g->gn_cap ? 2 * g->gn_cap : 8;
		if (g->gn_cap >= GN_MAX_PENDING)
			return -EAGAIN;
		struct gn_pending *q = malloc(cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		for (unsigned int i = 0; i < g->gn_count; i++)
			q[i] = g->gn_q[(g->gn_head + i) % g->gn_cap];
		free(g->gn_q);
		g->gn_q = q;
		g->gn_cap = cap;
		g->gn_head = 0;
	}
	c->own_req.id = ++g->gn_next_id;
	int err = pico_guestnet_send(g->gn_fd, &c->own_req);
	if (err < 0)
		return err == -EPIPE || err == -ECONNRESET ? -ENETDOWN : err;
	struct gn_pending *p = &g->gn_q[(g->gn_head + g->gn_count) % g->gn_cap];
	p->id = c->own_req.id;
	p->notif_id = c->n->id;
	p->tid = (pid_t)c->n->pid;
	p->to = c->to;
	p->nonblock = c->own_nonblock;
	p->req = c->own_req;
	p->rec = c->rec;
	g->gn_count++;
	BUMP(g->loop->guestnet_pending);
	return 0;
}

/* Answers a call the helper has answered: the socket handed to the guest, a
 * connect still under way deferred like a host one, or the errno. */
static void gn_answer(struct guest *g, struct gn_pending *p, int err, int fd)
{
	long ret;

	if (fd >= 0 && err == EINPROGRESS) {
		ret = pico_net_adopt_connecting(fd, &p->req, p->nonblock);
		if (ret == -EINPROGRESS && defer_connect(g, fd, p->notif_id, p->tid, &p->to, &p->rec) == 0)
			return; /* answered when the connect completes */
		close(fd);
		fd = -1;
		err = ret == -EINPROGRESS ? EAGAIN : (int)-ret;
	} else if (fd >= 0) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, p->nonblock ? fl : (fl & ~O_NONBLOCK)) < 0) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0) {
		ret = deliver_fd(g, p->notif_id, &p->to, fd);
		close(fd);
	} else {
		ret = -(err ? err : EPROTO);
		if (send_answer(g, p->notif_id, ret) < 0)
			ret = -ECANCELED;
	}
	finish_record(&p->rec, ret, 0);
	account(g, &p->rec);
}

/* The helper is gone (or broke the protocol): its waiting calls fail. */
void gn_close(struct guest *g)
{
	if (g->gn_fd >= 0) {
		epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->gn_fd, NULL);
		close(g->gn_fd);
		g->gn_fd = -1;
	}
	while (g->gn_count) {
		struct gn_pending *p = &g->gn_q[g->gn_head];
		g->gn_head = (g->gn_head + 1) % g->gn_cap;
		g->gn_count--;
		DROP(g->loop->guestnet_pending);
		long ret = -ENETDOWN;
		if (g->listener < 0 || send_answer(g, p->notif_id, ret) < 0)
			ret = -ECANCELED;
		finish_record(&p->rec, ret, 0);
		account(g, &p->rec);
	}
	free(g->gn_q);
	g->gn_q = NULL;
	g->gn_cap = g->gn_head = 0;
}

/* The helper's channel is readable (or hung up): answers what it replied. */
void gn_ready(struct guest *g, uint32_t events)
{
	if (g->gn_fd < 0)
		return;
	for (;;) {
		struct pico_gn_reply rep;
		int fd;
		int r = pico_guestnet_recv(g->gn_fd, &rep, &fd);
		if (r == -EAGAIN)
			break;
		if (r <= 0 || g->gn_count == 0 || rep.id != g->gn_q[g->gn_head].id) {
			/* Gone, or an answer to nothing: the helper is not trusted
			 * beyond its channel; stop using it. */
			if (fd >= 0)
				close(fd);
			gn_close(g);
			return;
		}
		struct gn_pending p = g->gn_q[g->gn_head];
		g->gn_head = (g->gn_head + 1) % g->gn_cap;
		g->gn_count--;
		DROP(g->loop->guestnet_pending);
		gn_answer(g, &p, rep.err, fd);
	}
	if (events & (EPOLLHUP | EPOLLERR))
		gn_close(g);
}
