/* The probes of the CVE-prerequisite corpus: each checks whether one
 * mechanism a published exploit needs can be reached from where the probe
 * runs (benchmarks/security/cve.py lists the exploits and which probes
 * each needs).
 *
 *   pp-cve TOKEN READ_ONLY_FILE PROBE...
 *
 * One line per probe, from a child process of its own (a probe that
 * crashes or hangs costs only itself):
 *   probe NAME ok DETAIL        the mechanism answered as the kernel does
 *   probe NAME err ERRNO DETAIL refused, with the errno and the step
 *   probe NAME signal N         the child died by signal N (SIGSYS: a filter)
 *   probe NAME hang             no answer within 5 s
 *
 * Every probe is harmless on any kernel: it creates the object it needs
 * (a namespace, a socket, a ring, a table in a private network namespace,
 * a mount in a private mount namespace), checks the answer, and lets the
 * child's exit release it.  READ_ONLY_FILE is a file the guest may read
 * and not write: the Dirty COW and Dirty Pipe probes write only into
 * their private copies of it (the harness checks the file is unchanged). */
#define _GNU_SOURCE
/* glibc's before the kernel's: <netinet/in.h> tells <linux/in.h> what it
 * already defines. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <pthread.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef O_NOTIFICATION_PIPE
#define O_NOTIFICATION_PIPE O_EXCL
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#define PROC_SUPER_MAGIC 0x9fa0
#define IPT_SO_SET_REPLACE 64
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 1
#endif
#define FSCONFIG_SET_STRING_CMD 1

static const char *token;
static const char *ro_file;
/* Directory fds inherited at start (before the probe opened anything). */
static int leaked_dir_fd = -1;

/* A probe's answer: 0 with a detail, or -errno with the step that failed. */
struct answer {
	int err;
	char detail[120];
};

static int ok(struct answer *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ok(struct answer *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->detail, sizeof(a->detail), fmt, ap);
	va_end(ap);
	a->err = 0;
	return 0;
}

static int fail(struct answer *a, const char *step)
{
	a->err = errno ? errno : EIO;
	snprintf(a->detail, sizeof(a->detail), "%s", step);
	return -1;
}

static int fail_with(struct answer *a, int err, const char *step)
{
	errno = err;
	return fail(a, step);
}

/* --------------------------------------------------------------------- */
/* Namespaces and capabilities                                            */

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {
			/* best effort: without a mapping the probe still has the
			 * namespace's capabilities, only not its own files */
		}
		close(fd);
	}
}

/* Enters new namespaces; with a user namespace, maps uid and gid 0 there
 * to the caller's own (as `unshare -r` does) when /proc allows it. */
static int enter(struct answer *a, int flags)
{
	char map[64];
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(flags) < 0)
		return fail(a, "unshare");
	if (flags & CLONE_NEWUSER) {
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %u 1", uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "0 %u 1", gid);
		write_file("/proc/self/gid_map", map);
	}
	return 0;
}

static int p_userns(struct answer *a)
{
	return enter(a, CLONE_NEWUSER) ?: ok(a, "unshare(CLONE_NEWUSER)");
}

static int p_userns_net(struct answer *a)
{
	return enter(a, CLONE_NEWUSER | CLONE_NEWNET) ?: ok(a, "unshare(CLONE_NEWUSER|CLONE_NEWNET)");
}

static int p_userns_mnt(struct answer *a)
{
	return enter(a, CLONE_NEWUSER | CLONE_NEWNS) ?: ok(a, "unshare(CLONE_NEWUSER|CLONE_NEWNS)");
}

static int p_fsconfig(struct answer *a)
{
	char src[64];
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNS))
		return -1;
	int fd = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
	if (fd < 0)
		return fail(a, "fsopen(tmpfs)");
	snprintf(src, sizeof(src), "pp-%s", token);
	if (syscall(SYS_fsconfig, fd, FSCONFIG_SET_STRING_CMD, "source", src, 0) < 0)
		return fail(a, "fsconfig(FSCONFIG_SET_STRING)");
	return ok(a, "fsopen + fsconfig(FSCONFIG_SET_STRING)");
}

static int p_fsopen_cgroup(struct answer *a)
{
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNS))
		return -1;
	int fd = (int)syscall(SYS_fsopen, "cgroup", FSOPEN_CLOEXEC);
	if (fd < 0)
		return fail(a, "fsopen(cgroup)");
	return ok(a, "fsopen(\"cgroup\") (cgroup v1 context)");
}

static int p_cgroup_v1_mount(struct answer *a)
{
	char opts[64];
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP))
		return -1;
	snprintf(opts, sizeof(opts), "none,name=pp%d", getpid());
	if (mount("cgroup", ".", "cgroup", 0, opts) < 0)
		return fail(a, "mount cgroup v1");
	return ok(a, "cgroup v1 hierarchy mounted (%s)", opts);
}

static int p_overlay_mount(struct answer *a)
{
	char dir[64], opts[256], merged[80];
	snprintf(dir, sizeof(dir), "pp-ovl-%d", getpid());
	/* Made before entering the namespace: its ids are not mapped there. */
	if (mkdir(dir, 0755) < 0 || chdir(dir) < 0 || mkdir("l", 0755) < 0 || mkdir("u", 0755) < 0 ||
	    mkdir("w", 0755) < 0 || mkdir("m", 0755) < 0)
		return fail(a, "mkdir");
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNS))
		return -1;
	snprintf(opts, sizeof(opts), "lowerdir=l,upperdir=u,workdir=w");
	snprintf(merged, sizeof(merged), "m");
	if (mount("overlay", merged, "overlay", 0, opts) < 0)
		return fail(a, "mount overlay");
	return ok(a, "overlayfs mounted in a user namespace");
}

/* --------------------------------------------------------------------- */
/* Networking                                                             */

static int nl_put(char *buf, size_t *off, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
		  uint16_t res_id, const char *name)
{
	struct nlmsghdr *h = (struct nlmsghdr *)(buf + *off);
	struct nfgenmsg *g = NLMSG_DATA(h);
	memset(h, 0, NLMSG_SPACE(sizeof(*g)) + 16);
	h->nlmsg_type = type;
	h->nlmsg_flags = flags;
	h->nlmsg_seq = seq;
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	g->res_id = htons(res_id);
	size_t len = NLMSG_SPACE(sizeof(*g));
	if (name) {
		struct nlattr *at = (struct nlattr *)((char *)h + len);
		size_t n = strlen(name) + 1;
		at->nla_type = NFTA_TABLE_NAME;
		at->nla_len = (uint16_t)(NLA_HDRLEN + n);
		memcpy((char *)at + NLA_HDRLEN, name, n);
		len += NLA_ALIGN(at->nla_len);
	}
	h->nlmsg_len = (uint32_t)len;
	*off += NLMSG_ALIGN(len);
	return 0;
}

static int p_nf_tables(struct answer *a)
{
	char buf[512], reply[4096];
	size_t off = 0;
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNET))
		return -1;
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (s < 0)
		return fail(a, "socket(NETLINK_NETFILTER)");
	nl_put(buf, &off, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, NULL);
	nl_put(buf, &off, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE,
	       NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, 2, NFPROTO_INET, 0, "pp");
	nl_put(buf, &off, NFNL_MSG_BATCH_END, NLM_F_REQUEST, 3, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, NULL);
	struct sockaddr_nl to = {.nl_family = AF_NETLINK};
	if (sendto(s, buf, off, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		return fail(a, "send nf_tables batch");
	ssize_t n = recv(s, reply, sizeof(reply), 0);
	if (n < 0)
		return fail(a, "recv");
	for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == 2) {
			int e = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
			if (e)
				return fail_with(a, e, "NFT_MSG_NEWTABLE");
			return ok(a, "nf_tables table created in a private network namespace");
		}
	}
	return fail_with(a, EPROTO, "no answer to NFT_MSG_NEWTABLE");
}

/* struct ipt_replace's head, as far as the kernel's first checks read. */
struct ipt_replace_head {
	char name[32];
	unsigned int valid_hooks, num_entries, size;
	unsigned int hook_entry[5], underflow[5];
	unsigned int num_counters;
	void *counters;
};

static int p_x_tables(struct answer *a)
{
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNET))
		return -1;
	int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (s < 0)
		return fail(a, "socket(AF_INET, SOCK_RAW)");
	/* A replacement too large to allocate: the kernel's do_replace
	 * answers ENOMEM after the CAP_NET_ADMIN check and before reading
	 * any rule, so the answer proves the path without changing a table. */
	struct ipt_replace_head r;
	memset(&r, 0, sizeof(r));
	strcpy(r.name, "filter");
	r.num_counters = 0x7fffffffu;
	if (setsockopt(s, SOL_IP, IPT_SO_SET_REPLACE, &r, sizeof(r)) == 0)
		return fail_with(a, EPROTO, "IPT_SO_SET_REPLACE accepted an impossible table");
	if (errno == ENOMEM)
		return ok(a, "setsockopt(IPT_SO_SET_REPLACE) reached x_tables (ENOMEM for the oversized table)");
	return fail(a, "setsockopt(IPT_SO_SET_REPLACE)");
}

static int p_af_packet(struct answer *a)
{
	if (enter(a, CLONE_NEWUSER | CLONE_NEWNET))
		return -1;
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (s < 0)
		return fail(a, "socket(AF_PACKET)");
	int v = TPACKET_V3;
	if (setsockopt(s, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0)
		return fail(a, "PACKET_VERSION TPACKET_V3");
	return ok(a, "AF_PACKET socket with TPACKET_V3");
}

static int p_af_vsock(struct answer *a)
{
	int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fail(a, "socket(AF_VSOCK)");
	return ok(a, "AF_VSOCK socket");
}

/* --------------------------------------------------------------------- */
/* Kernel objects                                                         */

static int p_io_uring(struct answer *a)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
	if (fd < 0)
		return fail(a, "io_uring_setup");
	return ok(a, "io_uring_setup");
}

static int p_io_uring_buffers(struct answer *a)
{
	static char page[4096] __attribute__((aligned(4096)));
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
	if (fd < 0)
		return fail(a, "io_uring_setup");
	struct iovec iov = {page, sizeof(page)};
	if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
		return fail(a, "IORING_REGISTER_BUFFERS");
	return ok(a, "io_uring_register(IORING_REGISTER_BUFFERS)");
}

static int p_bpf_prog(struct answer *a)
{
	struct bpf_insn insns[2] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insn_cnt = 2;
	attr.insns = (uint64_t)(uintptr_t)insns;
	attr.license = (uint64_t)(uintptr_t)"GPL";
	int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd < 0)
		return fail(a, "bpf(BPF_PROG_LOAD)");
	return ok(a, "eBPF socket filter loaded through the verifier");
}

static int p_msg_msg(struct answer *a)
{
	struct {
		long type;
		char text[8];
	} m = {1, "pp"};
	int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (id < 0)
		return fail(a, "msgget");
	int r = msgsnd(id, &m, 2, IPC_NOWAIT);
	int e = errno;
	msgctl(id, IPC_RMID, NULL);
	if (r < 0)
		return fail_with(a, e, "msgsnd");
	return ok(a, "System V message queue (msg_msg allocation)");
}

static int p_keyctl(struct answer *a)
{
	char name[64];
	snprintf(name, sizeof(name), "pp-%s", token);
	long serial = syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name);
	if (serial < 0)
		return fail(a, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)");
	syscall(SYS_keyctl, 21 /* KEYCTL_INVALIDATE */, serial);
	return ok(a, "joined a new session keyring");
}

static int p_watch_queue(struct answer *a)
{
	int p[2];
	if (pipe2(p, O_NOTIFICATION_PIPE) < 0)
		return fail(a, "pipe2(O_NOTIFICATION_PIPE)");
	return ok(a, "notification pipe (watch_queue)");
}

/* --------------------------------------------------------------------- */
/* Memory and files                                                       */

static int p_splice_ro(struct answer *a)
{
	int fd = open(ro_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(a, "open read-only file");
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return fail(a, "pipe2");
	loff_t off = 0;
	if (splice(fd, &off, p[1], NULL, 1, 0) != 1)
		return fail(a, "splice(file -> pipe)");
	if (write(p[1], "x", 1) != 1)
		return fail(a, "write after splice");
	return ok(a, "splice of a read-only file into a pipe, then write");
}

static int p_proc_mem_write(struct answer *a)
{
	int fd = open(ro_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(a, "open read-only file");
	char *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return fail(a, "mmap read-only private");
	int mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	if (mem < 0)
		return fail(a, "open /proc/self/mem");
	char old = map[0], new = old == 'X' ? 'Y' : 'X';
	if (pwrite(mem, &new, 1, (off_t)(uintptr_t)map) != 1)
		return fail(a, "write /proc/self/mem into the read-only mapping");
	if (map[0] != new)
		return fail_with(a, EPROTO, "the write did not land");
	return ok(a, "FOLL_FORCE write into a private read-only file mapping");
}

static int p_madvise(struct answer *a)
{
	int fd = open(ro_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(a, "open read-only file");
	char *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return fail(a, "mmap read-only private");
	volatile char c = map[0];
	(void)c;
	if (madvise(map, 4096, MADV_DONTNEED) < 0)
		return fail(a, "madvise(MADV_DONTNEED)");
	return ok(a, "madvise(MADV_DONTNEED) on a private file mapping");
}

static void *mm_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 64; i++) {
		char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return (void *)1;
		m[0] = 1;
		char *r = mremap(m, 8192, 16384, MREMAP_MAYMOVE);
		if (r == MAP_FAILED)
			return (void *)1;
		munmap(r, 16384);
	}
	return NULL;
}

static int p_threads_mm(struct answer *a)
{
	pthread_t t;
	void *res = (void *)1;
	int e = pthread_create(&t, NULL, mm_thread, NULL);
	if (e)
		return fail_with(a, e, "pthread_create");
	pthread_join(t, &res);
	if (res)
		return fail_with(a, ENOMEM, "mmap/mremap/munmap in a thread");
	return ok(a, "threads sharing an mm with mmap/mremap/munmap");
}

/* --------------------------------------------------------------------- */
/* Processes, procfs and identity                                         */

static int p_host_procfs(struct answer *a)
{
	struct statfs sf;
	if (statfs("/proc", &sf) < 0)
		return fail(a, "statfs /proc");
	if (sf.f_type != PROC_SUPER_MAGIC)
		return fail_with(a, ENOENT, "/proc is not procfs");
	int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	if (fd < 0)
		return fail(a, "open /proc/self/exe");
	return ok(a, "procfs with /proc/self/exe");
}

static int p_host_root(struct answer *a)
{
	if (getuid() != 0)
		return fail_with(a, EPERM, "not uid 0");
	FILE *f = fopen("/proc/self/uid_map", "re");
	if (!f)
		return fail(a, "open /proc/self/uid_map");
	unsigned long inside, outside, count;
	int n = fscanf(f, "%lu %lu %lu", &inside, &outside, &count);
	fclose(f);
	if (n != 3 || inside != 0 || outside != 0)
		return fail_with(a, EPERM, "uid 0 is not the host's uid 0");
	return ok(a, "uid 0 of the initial user namespace");
}

static int p_ptrace_traceme(struct answer *a)
{
	if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
		return fail(a, "ptrace(PTRACE_TRACEME)");
	return ok(a, "ptrace(PTRACE_TRACEME)");
}

static int p_setuid_exec(struct answer *a)
{
	static const char *bins[] = {"/usr/bin/su", "/usr/bin/passwd", "/usr/bin/pkexec", "/usr/bin/mount",
				     "/usr/bin/newgrp", "/usr/bin/chsh", "/bin/su"};
	int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	if (nnp < 0)
		return fail(a, "prctl(PR_GET_NO_NEW_PRIVS)");
	if (nnp == 1)
		return fail_with(a, EPERM, "no_new_privs is set");
	for (size_t i = 0; i < sizeof(bins) / sizeof(bins[0]); i++) {
		struct stat st;
		struct statvfs sv;
		if (stat(bins[i], &st) == 0 && (st.st_mode & S_ISUID) && st.st_uid == 0 &&
		    access(bins[i], X_OK) == 0 && statvfs(bins[i], &sv) == 0 && !(sv.f_flag & ST_NOSUID))
			return ok(a, "set-user-ID root program %s executable without no_new_privs", bins[i]);
	}
	return fail_with(a, ENOENT, "no executable set-user-ID root program on a suid mount");
}

static int p_waitid(struct answer *a)
{
	siginfo_t info;
	if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) < 0 && errno != ECHILD)
		return fail(a, "waitid");
	return ok(a, "waitid answered by the kernel");
}

static int p_leaked_dir_fd(struct answer *a)
{
	if (leaked_dir_fd < 0)
		return fail_with(a, ENOENT, "no directory fd inherited");
	return ok(a, "inherited directory fd %d", leaked_dir_fd);
}

static int p_fuse_dev(struct answer *a)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail(a, "open /dev/fuse");
	return ok(a, "/dev/fuse opened");
}

/* --------------------------------------------------------------------- */

struct probe {
	const char *name;
	int (*fn)(struct answer *);
};

static const struct probe probes[] = {
	{"userns", p_userns},
	{"userns_net", p_userns_net},
	{"userns_mnt", p_userns_mnt},
	{"fsconfig", p_fsconfig},
	{"fsopen_cgroup", p_fsopen_cgroup},
	{"cgroup_v1_mount", p_cgroup_v1_mount},
	{"overlay_mount", p_overlay_mount},
	{"nf_tables", p_nf_tables},
	{"x_tables", p_x_tables},
	{"af_packet", p_af_packet},
	{"af_vsock", p_af_vsock},
	{"io_uring", p_io_uring},
	{"io_uring_buffers", p_io_uring_buffers},
	{"bpf_prog", p_bpf_prog},
	{"msg_msg", p_msg_msg},
	{"keyctl", p_keyctl},
	{"watch_queue", p_watch_queue},
	{"splice_ro", p_splice_ro},
	{"proc_mem_write", p_proc_mem_write},
	{"madvise_dontneed", p_madvise},
	{"threads_mm", p_threads_mm},
	{"host_procfs", p_host_procfs},
	{"host_root", p_host_root},
	{"ptrace_traceme", p_ptrace_traceme},
	{"setuid_exec", p_setuid_exec},
	{"waitid", p_waitid},
	{"leaked_dir_fd", p_leaked_dir_fd},
	{"fuse_dev", p_fuse_dev},
};

static void run_probe(const struct probe *p)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		printf("probe %s err %s pipe2\n", p->name, strerrorname_np(errno));
		return;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		printf("probe %s err %s fork\n", p->name, strerrorname_np(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return;
	}
	if (pid == 0) {
		struct answer ans = {0};
		close(pipefd[0]);
		alarm(5);
		errno = 0;
		p->fn(&ans);
		if (write(pipefd[1], &ans, sizeof(ans)) != (ssize_t)sizeof(ans))
			_exit(3);
		_exit(0);
	}
	close(pipefd[1]);
	struct answer ans;
	ssize_t got = read(pipefd[0], &ans, sizeof(ans));
	close(pipefd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	ans.detail[sizeof(ans.detail) - 1] = 0;
	if (got == (ssize_t)sizeof(ans)) {
		if (ans.err == 0)
			printf("probe %s ok %s\n", p->name, ans.detail);
		else
			printf("probe %s err %s %s\n", p->name,
			       strerrorname_np(ans.err) ? strerrorname_np(ans.err) : "?", ans.detail);
	} else if (WIFSIGNALED(status)) {
		if (WTERMSIG(status) == SIGALRM)
			printf("probe %s hang\n", p->name);
		else
			printf("probe %s signal %d\n", p->name, WTERMSIG(status));
	} else {
		printf("probe %s err EIO exit %d\n", p->name, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	/* Before anything is opened: a directory fd the runtime left open. */
	for (int fd = 3; fd < 1024 && leaked_dir_fd < 0; fd++) {
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
			leaked_dir_fd = fd;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: pp-cve TOKEN READ_ONLY_FILE PROBE...\n");
		return 2;
	}
	token = argv[1];
	ro_file = argv[2];
	printf("start cve\n");
	fflush(stdout);
	for (int i = 3; i < argc; i++) {
		const struct probe *p = NULL;
		for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++)
			if (!strcmp(probes[k].name, argv[i]))
				p = &probes[k];
		if (!p) {
			printf("probe %s unknown\n", argv[i]);
			continue;
		}
		run_probe(p);
	}
	return 0;
}
