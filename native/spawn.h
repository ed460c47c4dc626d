/* Creating a picoprocess: clone into fresh namespaces, confine, enter the
 * image through the loader fd.
 *
 * Everything between clone and exec happens in C with raw system calls only:
 * after the filter is installed the child could not run the Python
 * interpreter anyway, and before it, a forked copy of a multi-threaded
 * interpreter may only make async-signal-safe calls.
 *
 * Shape of a picoprocess (host view):
 *
 *   monitor ──clone(CLONE_NEWUSER|NEWPID|NEWNS|NEWNET|NEWIPC|NEWUTS)──▶ reaper (pid 1 inside)
 *                                                                          │ clone
 *                                                                          ▼
 *                                                                        guest (pid 2 inside) ──execveat(1023)
 *
 * A second program joins a running picoprocess (join_namespaces): its reaper
 * enters the first one's namespaces with setns on a pidfd, and its guest is
 * created inside them, under the same identity, limits and filter.
 *
 * The reaper brings up the loopback interface of the new network namespace
 * (the guest's own 127.0.0.1 and ::1), forwards signals to the guest, reaps
 * every orphan, writes the guest's raw wait status to the status pipe and
 * exits; the kernel then kills whatever is left in the pid namespace.  With
 * spec->guestnet a thread of the reaper makes sockets in that namespace for
 * the monitor (guestnet.h): a thread, so the guest sees no process of it.  The reaper has PR_SET_PDEATHSIG
 * (SIGKILL) on the monitor, so when the monitor dies the reaper dies and with
 * it the whole namespace. */
#ifndef PICO_SPAWN_H
#define PICO_SPAWN_H
#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
/* Where a spawn failure happened (parent side, reaper or guest before exec). */
#define PICO_STEP_NONE 0
#define PICO_STEP_PDEATHSIG 1
#define PICO_STEP_STDIO 2
#define PICO_STEP_LOADER_FD 3
#define PICO_STEP_CLOSE_FDS 4
#define PICO_STEP_SIGNALS 5
#define PICO_STEP_NO_NEW_PRIVS 6
#define PICO_STEP_SECCOMP 7
#define PICO_STEP_EXEC 8
#define PICO_STEP_CLONE 9        /* creating the reaper in new namespaces */
#define PICO_STEP_ID_MAP 10      /* writing /proc/<reaper>/{setgroups,uid_map,gid_map} */
#define PICO_STEP_CGROUP 11      /* writing the reaper's pid to cgroup.procs */
#define PICO_STEP_IDENTITY 12    /* setgroups/setresgid/setresuid in the reaper */
#define PICO_STEP_HOSTNAME 13    /* sethostname in the new UTS namespace */
#define PICO_STEP_EMPTY_ROOT 14  /* private mounts, read-only empty tmpfs, pivot_root */
#define PICO_STEP_RLIMITS 15     /* setrlimit */
#define PICO_STEP_CAPS 16        /* dropping the bounding, ambient and permitted sets */
#define PICO_STEP_FORK_GUEST 17  /* the reaper creating the guest */
#define PICO_STEP_REAPER_FILTER 18 /* the reaper's own seccomp filter */
#define PICO_STEP_HANDSHAKE 19   /* the report channel broke before exec */
#define PICO_STEP_CGROUP_NS 20   /* unshare(CLONE_NEWCGROUP) after joining the run's cgroup */
#define PICO_STEP_SETUP 21       /* parent-side pipes/sockets or an fd clash */
#define PICO_STEP_LOOPBACK 22    /* bringing up "lo" in the new network namespace */
#define PICO_STEP_GUESTNET 23    /* starting the reaper's socket helper (guestnet.h) */
#define PICO_STEP_UDP_PROXY 24   /* an address or socket of a UDP proxy (spec.udp_proxies) */
#define PICO_STEP_JOIN 25        /* setns into the namespaces of a running picoprocess */
#define PICO_STEP_DEVPTS 30      /* the picoprocess's own devpts (spec.devpts_max); also the
                                  * reaper's message that carries its fd */

#define PICO_MAX_UDP_PROXIES 16
/* Channels of an argument area the guest may be given (PICO_AREA_SLOTS). */
#define PICO_SPAWN_MAX_CHANNELS 4

/* The reaper's end of the report channel and of the status pipe live just
 * below the argument area's fds (PICO_RESERVED_FD_BASE, picoproc_abi.h:
 * those and the loader fd, 1023, up to it), and below them the socket
 * helper's channel (PICO_GUESTNET_FD, guestnet.h); the caller's fds must not
 * use these, nor the area's numbers. */
#define PICO_REPORT_FD 1013
#define PICO_STATUS_FD 1012

/* Who writes the guest's identity (struct pico_spawn_spec.identity_mode). */
#define PICO_IDENTITY_SWITCH 0 /* monitor is root: map guest_uid/gid to themselves,
				* the reaper drops supplementary groups and switches */
#define PICO_IDENTITY_SELF 1   /* monitor unprivileged: map its own uid/gid to
				* themselves (setgroups deny); no switch */

/* A granted UDP destination the guest may send to without connecting. */
struct pico_udp_proxy {
	int family;	      /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* 4 or 16 bytes, network order */
	int port;	      /* 1..65535 */
};

struct pico_rlimit {
	int resource; /* RLIMIT_* */
	uint64_t soft;
	uint64_t hard;
};

struct pico_spawn_spec {
	int image_fd;		   /* the image to enter; becomes the loader fd */
	int keep_image_fd;	   /* 1: the loader fd survives exec (library OS), 0: close-on-exec */
	int stdio[3];		   /* fds that become 0, 1 and 2 in the guest */
	const char *const *argv;   /* NULL-terminated */
	const char *const *envp;   /* NULL-terminated */
	const void *filter;	   /* struct sock_filter[filter_len] */
	size_t filter_len;	   /* number of BPF instructions */
	unsigned int seccomp_flags;/* SECCOMP_FILTER_FLAG_* */

	unsigned long clone_flags; /* CLONE_NEW* for the reaper (0: no namespaces, for probes only) */
	int identity_mode;	   /* PICO_IDENTITY_* */
	int guest_uid;		   /* host uid = uid inside the user namespace */
	int guest_gid;		   /* host gid = gid inside */
	const char *hostname;	   /* NULL: keep (only meaningful with CLONE_NEWUTS) */
	int empty_root;		   /* 1: pivot_root into an empty read-only tmpfs (needs CLONE_NEWNS) */
	int cgroup_ns;		   /* 1: unshare(CLONE_NEWCGROUP) after joining the run's cgroup */
	int cgroup_procs_fds[4];   /* open O_WRONLY cgroup.procs (or v1 "tasks") files to join */
	int n_cgroup_procs_fds;
	int cgroup_join_self;	   /* 0: the parent writes the reaper's pid (cgroup.procs);
				    * 1: the reaper writes "0" itself first thing (v1 "tasks":
				    * moving only the calling thread skips the global
				    * threadgroup lock and its RCU grace period, ~ms) */
	struct pico_rlimit rlimits[16];
	int n_rlimits;
	int guestnet;		   /* 1: the reaper runs the socket helper of the guest's
				    * network namespace (guestnet.h); needs CLONE_NEWNET */
	/* Needs guestnet: for each, the reaper gives the guest's loopback the
	 * address (unless it is a loopback one) and binds a UDP socket to it
	 * there, which the monitor relays to the same endpoint on the host
	 * (net.h, "UDP proxies"); the sockets come back in proxy_fds. */
	struct pico_udp_proxy udp_proxies[16]; /* PICO_MAX_UDP_PROXIES */
	int n_udp_proxies;
	int join_namespaces;	   /* 1: instead of new namespaces (clone_flags must be 0),
				    * join those of the picoprocess whose reaper join_pidfd
				    * names (a pidfd): a second program in the same
				    * picoprocess.  The reaper made here is then not pid 1:
				    * it stays in the caller's pid namespace and its guest
				    * enters the picoprocess's; hostname, empty_root and
				    * cgroup_ns must be off (they were done by the first). */
	int join_pidfd;
	int devpts_max;		   /* > 0: the reaper mounts a devpts instance of the
				    * picoprocess's own (at most this many ptys) and passes
				    * its root to the caller (result.devpts_fd) */
	int share_net;		   /* 1: no network namespace of its own (clone_flags without
				    * CLONE_NEWNET; joining: none entered): the picoprocess is
				    * in the caller's, which is a container's own network (an
				    * OCI runtime's pod), and guestnet serves that one */
	int proc_view;		   /* 1: the reaper makes a procfs of the guest's pid namespace
				    * (detached, subset=pid) and passes it to the caller, for
				    * the monitor's /proc (native/procview.c); best effort */
	/* The guest's argument area (loop.h, pico_area_make): the memfd, or -1
	 * (none), and the guest's ends of its channels; they become
	 * PICO_AREA_FD and PICO_CHANNEL_FD + k in the guest and survive exec. */
	int area_fd;
	int channel_fds[4];	   /* PICO_SPAWN_MAX_CHANNELS */
	int n_channels;
};

struct pico_spawn_result {
	int devpts_fd;	 /* spec->devpts_max: an O_DIRECTORY fd on the root of the
			  * picoprocess's own devpts instance, else -1; the caller owns it */
	int pid;	 /* the reaper's host pid (wait for this one); > 0 on success */
	int guest_pid;	 /* the guest's host pid (as reported by the kernel), or 0 */
	int listener_fd; /* the seccomp user-notification fd when seccomp_flags asked
			  * for SECCOMP_FILTER_FLAG_NEW_LISTENER, else -1; the caller owns it */
	int status_fd;	 /* read end of the status pipe: the reaper writes the guest's
			  * raw wait status (4 bytes) there before exiting; caller owns it */
	int guestnet_fd; /* the monitor's end of the socket helper's channel when
			  * spec->guestnet, else -1; the caller owns it */
	int proxy_fds[16]; /* PICO_MAX_UDP_PROXIES: spec->udp_proxies' sockets,
			    * in order (the caller owns them) */
	int n_proxy_fds;
	int step;	 /* PICO_STEP_* that failed, or PICO_STEP_NONE */
	int err;	 /* errno of that failure */
	int proc_fd;	 /* with proc_view: an O_PATH fd on the guest's procfs (caller
			  * owns it), or -1 when the kernel refused one */
};

/* Returns 0 with result->pid set, or -1 with result->step/err describing the
 * failure (in the parent, the reaper or the guest before exec).  On failure
 * no process is left behind. */
int pico_spawn(const struct pico_spawn_spec *spec, struct pico_spawn_result *result);

/* A size-limited tmpfs as a detached mount (no path, in no visible mount
 * table): *dir_fd_out is an O_DIRECTORY fd on its root.  nr_inodes: the most
 * files, directories and links it may hold (0: the kernel's default, half
 * the machine's RAM pages: in effect unbounded).  in_userns: create
 * it in a short-lived helper with its own user+mount namespace (works
 * unprivileged); otherwise directly (needs CAP_SYS_ADMIN).  uid/gid < 0:
 * owner is the caller.  noexec: MOUNT_ATTR_NOEXEC.  Returns 0 or -errno. */
int pico_make_tmpfs(uint64_t size_bytes, uint64_t nr_inodes, unsigned int mode, int uid, int gid,
		    int in_userns, int noexec, int *dir_fd_out);

/* Mount attributes (<linux/mount.h> MOUNT_ATTR_*) pico_detached_mounts sets. */
#define PICO_MOUNT_ATTR_RDONLY 1
#define PICO_MOUNT_ATTR_NOSUID 2
#define PICO_MOUNT_ATTR_NODEV 4
#define PICO_MOUNT_ATTR_NOEXEC 8
/* Fds one user-namespace helper passes back at most (one SCM_RIGHTS message). */
#define PICO_HELPER_MAX_FDS 64

/* For each i < n: a detached, recursive copy (open_tree OPEN_TREE_CLONE) of
 * the host directory open on dirfds[i] (an O_PATH fd), with the mount
 * attributes attrs[i] (PICO_MOUNT_ATTR_*) set on every mount of it by
 * mount_setattr, so that the kernel itself enforces them on every file
 * opened beneath it: fds_out[i] is an O_PATH fd on its root, which keeps
 * the copy alive (it appears in no mount table).  in_userns: made by a
 * helper in its own user and mount namespace (works unprivileged), which
 * looks up paths[i] (absolute) and checks that it is the directory on
 * dirfds[i] (ESTALE otherwise).  n <= PICO_HELPER_MAX_FDS.  Returns 0 or
 * -errno, with no fd left open on failure. */
int pico_detached_mounts(const int *dirfds, const char *const *paths, const unsigned int *attrs,
			 int n, int in_userns, int *fds_out);
/* cffi:end */

#endif
