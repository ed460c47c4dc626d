/* File mediation: the monitor's view of the guest's file system.
 *
 * A policy is a mount table (guest path -> host directory fd, read-only or
 * writable, exec allowed or not) plus hidden guest paths.  Every file-system
 * mediated call resolves its guest path here, in the guest's view, and
 * performs the operation itself on host fds (docs/ARCHITECTURE.md, invariant 3):
 *
 *   - each mount is a directory fd opened once (O_PATH | O_DIRECTORY) when the
 *     policy is built; a file mount is its parent directory plus a fixed name;
 *   - the operation always runs as openat2(mount_fd, relative_path) with
 *     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV, so the host
 *     kernel never follows a symbolic link and never leaves the mount;
 *   - when the path holds `..` or a symbolic link, a component walk resolves
 *     it first in the guest's view (a link's text is a guest path, absolute
 *     targets start at the guest's root, at most PICO_FS_MAX_LINKS links),
 *     producing a canonical guest path free of links that the operation then
 *     uses (and which is checked against the hidden paths);
 *   - hidden paths are refused by their canonical guest path and also by the
 *     (st_dev, st_ino) of what was actually reached, so a hard link or an
 *     alias mount of a hidden file is refused too;
 *   - hidden names (file-name patterns, the manifest's hidden_names) are
 *     refused in every directory: a call is refused when any component of
 *     the canonical guest path matches one, whether the component is an
 *     intermediate directory, the name a link's text leads to, or the last
 *     name of a call that creates, renames, links or symlinks (creating an
 *     `id_rsa` is refused too: the guest could never open it again, and a
 *     refusal that depends only on the name is the same for every call).
 *     The rule is Python's fnmatch.fnmatchcase on the UTF-8 text (undecodable
 *     bytes are characters of their own, as with surrogateescape), not
 *     glibc's fnmatch(3), which differs on `[^...]`, `\`, `[[:class:]]` and
 *     with the locale; manifest.hidden_name_matches is the reference.
 *     Unlike hidden paths, names are not also refused by inode: a file the
 *     host linked under an innocent name is reachable by that name (finding
 *     every name-matching file would mean walking every mounted tree).
 *     Directory listings (getdents64 on a dir: fd, a direct call) still show
 *     hidden names; they are listable but not openable, as hidden paths are.
 *
 * Refusals by policy answer EACCES (outside every mount, hidden: the same
 * answer whether or not the host object exists) or EROFS (a modifying call
 * on a read-only mount) and are flagged as denials for the audit log, with
 * the reason code of the rule that refused them (denial.h).
 *
 * The functions below take arguments the loop has already copied out of the
 * guest and validated for length and NULs; they validate flags themselves. */
#ifndef PICO_MEDIATE_FS_H
#define PICO_MEDIATE_FS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PICO_FS_MAX_LINKS 40

struct statx;
struct statfs;
struct timespec;

/* Host lookups (openat2) the calling thread has made so far. */
uint64_t pico_fs_thread_lookups(void);

/* cffi:begin */
/* Bound on a policy's hidden names (each is matched against every
 * component of every path a call resolves). */
#define PICO_FS_MAX_HIDDEN_NAMES 256

struct pico_fs_policy;

/* Mount modes (pico_fs_policy_add_mount's `writable`). */
#define PICO_MOUNT_RO 0
#define PICO_MOUNT_RW 1
/* Data only: files may be opened for writing, but nothing about them or
 * their names may change (mode, owner, times, size, links).  For the host
 * device files the library OS shows (/dev/null ...): writing to them is
 * harmless, changing them is not, whatever the host's permissions say. */
#define PICO_MOUNT_DATA 2

/* An empty policy (no mounts: every path is refused), or NULL on ENOMEM. */
struct pico_fs_policy *pico_fs_policy_new(void);
void pico_fs_policy_free(struct pico_fs_policy *policy);
/* Shows host_dirfd (a directory; the policy keeps its own duplicate) at the
 * absolute guest path `guest`.  With leaf != NULL the mount is the single
 * file `leaf` inside host_dirfd.  `writable` is a PICO_MOUNT_* mode.  Returns
 * 0 or -errno (EINVAL: bad guest path, leaf or mode, EEXIST: that guest path
 * is already mounted, EPERM: a procfs directory, which is never shown). */
int pico_fs_policy_add_mount(struct pico_fs_policy *policy, const char *guest, size_t guest_len,
			     int host_dirfd, const char *leaf, int writable, int exec);
/* The host path of the directory (or of a file mount's directory) the last
 * mount added shows, when its fd is a detached copy of it (open_tree): the
 * kernel names what is under a copy from the copy's own root, and the
 * guest is shown the names Linux would give (/proc/self/maps, fd links).
 * Returns 0 or -errno (EINVAL: no mount yet, not an absolute path). */
int pico_fs_policy_set_host_path(struct pico_fs_policy *policy, const char *host, size_t host_len);
/* Refuses the guest path (and everything under it).  Call after the mounts:
 * the object the path reaches now is also refused by (st_dev, st_ino). */
int pico_fs_policy_add_hidden(struct pico_fs_policy *policy, const char *guest, size_t guest_len);
/* Refuses every guest path with a component matching the file-name pattern
 * (`*`, `?`, `[...]` as in Python's fnmatch.fnmatchcase).  Returns 0 or
 * -errno: EINVAL for an empty pattern, one holding '/' or NUL, "." or "..",
 * or one that is not UTF-8; ENAMETOOLONG past NAME_MAX bytes; E2BIG past
 * PICO_FS_MAX_HIDDEN_NAMES patterns. */
int pico_fs_policy_add_hidden_name(struct pico_fs_policy *policy, const char *pattern, size_t len);
/* Whether the single file name `name` matches `pattern` under the rule
 * above: 1, 0, or -errno for a pattern add_hidden_name would refuse
 * (for tests that compare the C rule with Python's). */
int pico_fs_hidden_name_matches(const char *pattern, size_t pattern_len, const char *name,
				size_t name_len);
size_t pico_fs_policy_mount_count(const struct pico_fs_policy *policy);
/* cffi:end */

/* Serving the calls (used by the loop).  Each returns >= 0 or -errno; a
 * refusal that is a policy decision also sets pico_denial (denial.h) to its
 * reason code.
 *
 * "Directory" is carried one way: O_DIRECTORY in the open flags.  The
 * ABI's dir: scheme (a read-only listing) is file: with O_DIRECTORY once
 * pico_fs_listing_flags has checked the flags; nothing below the URI table
 * (serve.c) knows the scheme. */
long pico_fs_open(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		  unsigned int mode);
/* The flags of a read-only listing (dir:): flags | O_DIRECTORY, or -EINVAL
 * when they would write, create, truncate or execute. */
int pico_fs_listing_flags(int flags);
long pico_fs_stat(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		  struct statx *out);
long pico_fs_readlink(const struct pico_fs_policy *p, const char *path, size_t len, char *out,
		      size_t cap);
long pico_fs_access(const struct pico_fs_policy *p, const char *path, size_t len, int mode,
		    int flags);
long pico_fs_mknod(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode);
long pico_fs_xattr(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int op,
		   const char *name, void *value, size_t size);
/* The device of the file system mounted (as a directory) at `guest`. */
int pico_fs_mount_dev(const struct pico_fs_policy *p, const char *guest, unsigned long *out);
/* inotify_add_watch(ifd, the resolved name, mask) in a writable mount. */
long pico_fs_inotify_watch(const struct pico_fs_policy *p, const char *path, size_t len, int ifd,
			   uint32_t mask);
long pico_fs_mkdir(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode);
long pico_fs_unlink(const struct pico_fs_policy *p, const char *path, size_t len, int flags);
long pico_fs_rename(const struct pico_fs_policy *p, const char *old, size_t old_len,
		    const char *new, size_t new_len, unsigned int flags);
long pico_fs_symlink(const struct pico_fs_policy *p, const char *target, size_t target_len,
		     const char *path, size_t len);
long pico_fs_link(const struct pico_fs_policy *p, const char *old, size_t old_len, const char *new,
		  size_t new_len, int flags);
long pico_fs_chmod(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode,
		   int flags);
long pico_fs_chown(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int uid,
		   unsigned int gid, int flags);
/* times: NULL for "now", else two timespecs already copied from the guest. */
long pico_fs_utimens(const struct pico_fs_policy *p, const char *path, size_t len,
		     const struct timespec *times, int flags);
long pico_fs_truncate(const struct pico_fs_policy *p, const char *path, size_t len, long length);
long pico_fs_statfs(const struct pico_fs_policy *p, const char *path, size_t len,
		    struct statfs *out);
/* AF_UNIX stream sockets named by a guest path (net.h has the socket
 * side).  Only in writable mounts; the name's permission checks and owner
 * are the guest identity's (the calling thread's fs ids).  listen: a
 * socket file is created at the path (bind(2) semantics: an existing name
 * is EADDRINUSE) with the permission bits `mode`, and the listening socket
 * returned; connect: the socket the path names, connected (ECONNREFUSED
 * for a name that is not a socket).  The calling thread must have a cwd of
 * its own (unshare(CLONE_FS)): listen changes it. */
long pico_fs_unix_listen(const struct pico_fs_policy *p, const char *path, size_t len,
			 unsigned int mode, int nonblock);
long pico_fs_unix_connect(const struct pico_fs_policy *p, const char *path, size_t len,
			  int nonblock);
/* The same checks for a datagram socket the guest holds (sock, a copy of
 * its fd): bound in place at the path (mode as for listen), or connected
 * in place to the socket the path names.  0 or -errno. */
long pico_fs_unix_dgram_bind(const struct pico_fs_policy *p, const char *path, size_t len,
			     unsigned int mode, int sock);
long pico_fs_unix_dgram_connect(const struct pico_fs_policy *p, const char *path, size_t len,
				int sock);

/* For the guest's /proc (procview.c).  The i-th mount: its guest path (the
 * length is returned, 0 past the last), host device, file-system type
 * (statfs f_type), PICO_MOUNT_* mode and exec flag. */
size_t pico_fs_policy_mount(const struct pico_fs_policy *p, size_t i, const char **guest, dev_t *dev,
			    long *fstype, int *writable, int *exec);
/* The guest path of what the kernel names `kname` (an open file's or a
 * mapping's name), an object (dev, ino) on host device dev: through the
 * mount whose host directory holds it.  Length, -ENOENT (outside every
 * mount) or -EACCES (hidden: never shown). */
long pico_fs_guest_path_of(const struct pico_fs_policy *p, dev_t dev, ino_t ino, const char *kname, size_t kname_len,
			   char *out, size_t cap);

#endif
