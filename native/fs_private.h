/* File mediation, inside: what the policy (fs_policy.c), the fnmatch clone
 * (pyfnmatch.c), path resolution (fs_resolve.c) and the operations
 * (mediate_fs.c) share.  Private to native/; the interface is mediate_fs.h. */
#ifndef PICO_FS_PRIVATE_H
#define PICO_FS_PRIVATE_H
#include <limits.h>
#include <linux/openat2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "denial.h"
#include "mediate_fs.h"
#include "picoproc_abi.h"

#pragma GCC visibility push(hidden)

/* Every host lookup: stay under the mount's directory fd, never follow a
 * symbolic link (the monitor resolves links itself, in the guest's view),
 * never cross into another host mount (a granted directory does not grant
 * what the host mounted below it, e.g. a /proc). */
#define HOST_RESOLVE \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

/* Resolution is retried this often when a concurrent change (another guest
 * thread replacing a directory with a link) makes the final host lookup meet
 * a link that the guest-view walk did not see. */
#define RESOLVE_ATTEMPTS 4

struct fs_mount {
	char *guest;	  /* normalised guest path: "/" or "/a/b" */
	size_t guest_len;
	int dirfd;	  /* O_PATH | O_DIRECTORY host directory (a file mount: its parent) */
	char *leaf;	  /* file mounts: the file's name in dirfd; NULL for directories */
	int writable;
	int exec;
	/* For showing the guest its mounts (/proc/self/mountinfo) and the
	 * paths of what it has open or mapped: the host file system, the
	 * host path of the mount, and the kernel's name for it, which is what
	 * the kernel names the objects under it by.  The two differ for a
	 * detached copy (a read-only or no-exec mount, a scratch tmpfs), whose
	 * root the kernel names "/"; without a host path of its own (a
	 * scratch), host is the kernel's name. */
	dev_t dev;
	long fstype;
	char *kname; /* NULL when unknown: nothing is ever translated through it */
	size_t kname_len;
	char *host; /* kname, or its own copy (pico_fs_policy_set_host_path) */
	size_t host_len;
};

struct hidden_inode {
	dev_t dev;
	ino_t ino;
};

struct pico_fs_policy {
	struct fs_mount *mounts;
	size_t nmounts;
	char **hidden; /* normalised guest paths */
	size_t *hidden_len;
	size_t nhidden;
	struct hidden_inode *hidden_inodes;
	size_t nhidden_inodes;
	struct name_pattern **hidden_names;
	size_t nhidden_names;
};

/* A guest path after resolution: `canon` names it in the guest's view with
 * no `.`, `..` or symbolic link (the last component may be a link when the
 * call does not follow it); `rel` is what to open under mount->dirfd. */
struct resolved {
	const struct fs_mount *mount; /* NULL: an ancestor of mount points only */
	char canon[PICO_MAX_PATH + 1];
	size_t canon_len;
	const char *rel;
	int trailing_slash;
};


/* For calls on a name (mkdir, unlink, rename, symlink, link): the resolved
 * path's parent directory, opened, and its last component. */
struct parent {
	int fd;
	char name[NAME_MAX + 1];
};


/* ---- pyfnmatch.c: a hidden name's pattern ---- */

struct name_pattern;
/* The pattern compiled (free() it), or NULL with *err set: -EINVAL for an
 * empty pattern, one holding '/' or NUL, "." or "..", or one that is not
 * UTF-8; -ENAMETOOLONG past NAME_MAX bytes; -ENOMEM. */
struct name_pattern *name_pattern_compile(const char *pattern, size_t len, int *err);
/* Does the one component name[0..len) (at most NAME_MAX bytes) match? */
int name_pattern_matches(const struct name_pattern *pat, const char *name, size_t len);

/* ---- fs_policy.c: the rules ---- */

/* Is `path` equal to `prefix` or below it? (both normalised) */
int path_within(const char *path, size_t len, const char *prefix, size_t plen);
/* The mount a canonical guest path lies in (the longest prefix), or NULL. */
const struct fs_mount *find_mount(const struct pico_fs_policy *p, const char *canon, size_t len);
int is_mount_ancestor(const struct pico_fs_policy *p, const char *canon, size_t len);
int is_hidden_path(const struct pico_fs_policy *p, const char *canon, size_t len);
int holds_hidden_path(const struct pico_fs_policy *p, const char *canon, size_t len);
int is_hidden_object(const struct pico_fs_policy *p, dev_t dev, ino_t ino);
int is_hidden_inode(const struct pico_fs_policy *p, const struct stat *st);
int is_hidden_name(const struct pico_fs_policy *p, const char *name, size_t len);
int has_hidden_name(const struct pico_fs_policy *p, const char *canon, size_t len);

/* ---- fs_resolve.c: guest paths to host lookups ---- */

long deny_change(const struct fs_mount *m);
long openat2_counted(int dirfd, const char *path, struct open_how *how);
long sys_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode);
int normalise(const char *path, size_t len, char *out, size_t *out_len, int *trailing_slash);
int locate(const struct pico_fs_policy *p, struct resolved *r);
long resolve(const struct pico_fs_policy *p, const char *path, size_t len, int follow, struct resolved *r);
typedef long (*resolved_op)(const struct pico_fs_policy *p, const struct resolved *r, void *arg);
long with_path(const struct pico_fs_policy *p, const char *path, size_t len, int follow, resolved_op op,
	       void *arg);
long open_resolved(const struct resolved *r, int flags, unsigned int mode);
long open_checked_path(const struct pico_fs_policy *p, const struct resolved *r, int nofollow, struct stat *st,
		       struct statx *stx);
long open_parent(const struct resolved *r, struct parent *out, int root_err);
long check_name_not_hidden(const struct pico_fs_policy *p, const struct parent *pa);

#pragma GCC visibility pop

#endif
