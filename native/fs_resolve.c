/* File mediation: resolving a guest path in the guest's view (its mounts,
 * `..` and symbolic links, walked by the monitor) to a host directory fd and
 * a relative path the host kernel looks up with openat2 and RESOLVE_BENEATH
 * | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV.  See mediate_fs.h. */
#define _GNU_SOURCE
#include "fs_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* Resolution is retried this often when a concurrent change (another guest
 * thread replacing a directory with a link) makes the final host lookup meet
 * a link that the guest-view walk did not see. */
#define RESOLVE_ATTEMPTS 4

/* Host lookups (openat2) this thread has made: what a call's path costs the
 * monitor, which the loop adds up (pico_loop_counters.fs_lookups). */
static __thread uint64_t thread_lookups;

uint64_t pico_fs_thread_lookups(void)
{
	return thread_lookups;
}

long openat2_counted(int dirfd, const char *path, struct open_how *how)
{
	thread_lookups++;
	return syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

/* A change refused by the mount's mode: EROFS on a read-only mount, EPERM
 * on a data-only device file. */
long deny_change(const struct fs_mount *m)
{
	return m->writable == PICO_MOUNT_DATA ? pico_deny(PICO_DENY_DEVICE, -EPERM)
					      : pico_deny(PICO_DENY_READ_ONLY, -EROFS);
}

long sys_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode)
{
	struct open_how how = {.flags = flags, .mode = mode, .resolve = HOST_RESOLVE};
	long fd = openat2_counted(dirfd, path, &how);
	if (fd >= 0)
		return fd;
	/* Relative paths here never hold `..`: EXDEV means the lookup met a
	 * host mount point below the granted directory. */
	return errno == EXDEV ? pico_deny(PICO_DENY_HOST_MOUNT, -EACCES) : -errno;
}

/* Lexical normalisation: collapses `//` and `.`; `..` is left to the walk
 * (it is only lexical where no link precedes it).  Returns 1 when the path
 * holds a `..` component, 0 when `out` is the normalised path, or -errno. */
int normalise(const char *path, size_t len, char *out, size_t *out_len, int *trailing_slash)
{
	size_t o = 0, i = 0;

	if (len == 0 || path[0] != '/')
		return -EINVAL;
	*trailing_slash = path[len - 1] == '/' ||
			  (len >= 2 && path[len - 1] == '.' && path[len - 2] == '/');
	while (i < len) {
		while (i < len && path[i] == '/')
			i++;
		size_t start = i;
		while (i < len && path[i] != '/')
			i++;
		size_t n = i - start;
		if (n == 0 || (n == 1 && path[start] == '.'))
			continue;
		if (n == 2 && path[start] == '.' && path[start + 1] == '.')
			return 1;
		if (n > NAME_MAX)
			return -ENAMETOOLONG;
		if (o + 1 + n > PICO_MAX_PATH)
			return -ENAMETOOLONG;
		out[o++] = '/';
		memcpy(out + o, path + start, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	*out_len = o;
	return 0;
}


/* Sets r->mount and r->rel from r->canon. */
int locate(const struct pico_fs_policy *p, struct resolved *r)
{
	r->mount = find_mount(p, r->canon, r->canon_len);
	if (!r->mount)
		return is_mount_ancestor(p, r->canon, r->canon_len) ? 0 : pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->leaf) {
		if (r->canon_len != r->mount->guest_len)
			return -ENOTDIR; /* a path below a file */
		r->rel = r->mount->leaf;
	} else if (r->canon_len == r->mount->guest_len) {
		r->rel = ".";
	} else {
		size_t skip = r->mount->guest_len == 1 ? 1 : r->mount->guest_len + 1;
		r->rel = r->canon + skip;
	}
	return 0;
}


/* ---------------------------------------------------------------------- */
/* Resolution                                                              */

/* Can the host resolve `canon` (a canonical path in mount m) as a directory
 * reached without a link?  One lookup from the mount's directory. */
static int plain_directory(const struct fs_mount *m, const char *canon, size_t len)
{
	char rel[PICO_MAX_PATH + 1];
	size_t skip = m->guest_len == 1 ? 1 : m->guest_len + 1;
	if (len <= m->guest_len) {
		rel[0] = '.';
		rel[1] = '\0';
	} else {
		memcpy(rel, canon + skip, len - skip);
		rel[len - skip] = '\0';
	}
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = HOST_RESOLVE};
	long fd = openat2_counted(m->dirfd, rel, &how);
	if (fd < 0)
		return 0;
	close((int)fd);
	return 1;
}

/* Part of the walk: appends to r->canon the longest run of the components
 * in pending[pos..end) (plain names, none the last one) that the host
 * resolves as directories reached without a link, all in the mount of the
 * first one: one host lookup when the run has no link (the usual case), a
 * binary search over its length otherwise, instead of a lookup per
 * component from the mount's root (which made a deep path cost the square
 * of its depth).  Stops before a hidden path or name, which the walk then
 * refuses.  Returns the position after what it took (pos: nothing). */
static size_t skip_plain_run(const struct pico_fs_policy *p, const char *pending, size_t pos, size_t end,
			     struct resolved *r)
{
	size_t ends[PICO_MAX_PATH / 2 + 1], lens[PICO_MAX_PATH / 2 + 1];
	size_t k = 0, i = pos, len = r->canon_len, base_len = r->canon_len;
	const struct fs_mount *m = NULL;

	while (i < end) {
		while (i < end && pending[i] == '/')
			i++;
		size_t start = i;
		while (i < end && pending[i] != '/')
			i++;
		size_t n = i - start;
		if (n == 0)
			break;
		if ((n == 1 && pending[start] == '.') || (n == 2 && pending[start] == '.' && pending[start + 1] == '.') ||
		    n > NAME_MAX || len + 1 + n > PICO_MAX_PATH)
			break;
		r->canon[len] = '/';
		memcpy(r->canon + len + 1, pending + start, n);
		len += 1 + n;
		if (is_hidden_path(p, r->canon, len) || is_hidden_name(p, pending + start, n))
			break;
		const struct fs_mount *here = find_mount(p, r->canon, len);
		if (!here || here->leaf || (m && here != m))
			break;
		m = here;
		ends[k] = i;
		lens[k] = len;
		k++;
	}
	size_t take = 0;
	if (k >= 2) {
		/* The largest prefix of the run the host resolves (every shorter
		 * one then resolves too). */
		size_t lo = 0, hi = k;
		while (lo < hi) {
			size_t mid = (lo == 0 && hi == k) ? k : lo + (hi - lo + 1) / 2;
			if (plain_directory(m, r->canon, lens[mid - 1]))
				lo = mid;
			else
				hi = mid - 1;
		}
		take = lo;
	}
	if (take == 0) {
		r->canon_len = base_len;
		r->canon[base_len] = '\0';
		return pos;
	}
	r->canon_len = lens[take - 1];
	r->canon[r->canon_len] = '\0';
	return ends[take - 1];
}

/* The component walk: resolves `path` in the guest's view, one component at
 * a time, reading each symbolic link's text and continuing with it as a
 * guest path.  With follow == 0 the last component is not followed. */
static long walk(const struct pico_fs_policy *p, const char *path, size_t len, int follow,
		 struct resolved *r)
{
	/* pending[pos..plen) is what remains to resolve; a link's target is
	 * spliced in front of the remainder. */
	char pending[2 * PICO_MAX_PATH + 2];
	char target[PICO_MAX_PATH + 1];
	size_t pos = 0, plen = len;
	int links = 0;

	memcpy(pending, path, len);
	r->canon_len = 0;
	for (;;) {
		while (pos < plen && pending[pos] == '/')
			pos++;
		if (pos == plen)
			break;
		/* Plain directories up to the last component, at once. */
		size_t last = plen;
		while (last > pos && pending[last - 1] == '/')
			last--;
		while (last > pos && pending[last - 1] != '/')
			last--;
		if (last > pos) {
			pos = skip_plain_run(p, pending, pos, last, r);
			while (pos < plen && pending[pos] == '/')
				pos++;
			if (pos == plen)
				break;
		}
		size_t start = pos;
		while (pos < plen && pending[pos] != '/')
			pos++;
		size_t n = pos - start;
		size_t next = pos;
		while (next < plen && pending[next] == '/')
			next++;
		int is_last = next == plen;

		if (n == 1 && pending[start] == '.')
			continue;
		if (n == 2 && pending[start] == '.' && pending[start + 1] == '.') {
			/* The canonical path has no links: `..` is its parent,
			 * and the parent of a mount root is its guest parent. */
			while (r->canon_len > 0 && r->canon[r->canon_len - 1] != '/')
				r->canon_len--;
			if (r->canon_len > 0)
				r->canon_len--;
			continue;
		}
		if (n > NAME_MAX)
			return -ENAMETOOLONG;
		if (r->canon_len + 1 + n > PICO_MAX_PATH)
			return -ENAMETOOLONG;
		r->canon[r->canon_len++] = '/';
		memcpy(r->canon + r->canon_len, pending + start, n);
		r->canon_len += n;
		r->canon[r->canon_len] = '\0';
		/* Refuse at once, so that even passing through a hidden
		 * directory (`/root/../etc`) reveals nothing about it.  The
		 * components before this one were checked as they came (a
		 * link's target restarts the canonical path, and its
		 * components come through here again). */
		if (is_hidden_path(p, r->canon, r->canon_len))
			return pico_deny(PICO_DENY_HIDDEN_PATH, -EACCES);
		if (is_hidden_name(p, pending + start, n))
			return pico_deny(PICO_DENY_HIDDEN_NAME, -EACCES);
		if (is_last && !follow)
			break;

		long err = locate(p, r);
		if (err < 0)
			return err;
		if (!r->mount)
			continue; /* an ancestor of mount points: a directory */
		if (!r->mount->leaf && r->canon_len == r->mount->guest_len)
			continue; /* the mount's own directory: its fd, a directory
				   * (checked when the policy was built), no link */
		long fd = sys_openat2(r->mount->dirfd, r->rel, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
		if (fd == -ENOENT && is_last)
			break; /* the call may create it */
		if (fd < 0)
			return fd;
		struct stat st;
		if (fstat((int)fd, &st) < 0) {
			err = -errno;
			close((int)fd);
			return err;
		}
		if (!S_ISLNK(st.st_mode)) {
			close((int)fd);
			if (!is_last && !S_ISDIR(st.st_mode))
				return -ENOTDIR;
			continue;
		}
		if (++links > PICO_FS_MAX_LINKS) {
			close((int)fd);
			return -ELOOP;
		}
		ssize_t tlen = readlinkat((int)fd, "", target, sizeof(target));
		err = tlen < 0 ? -errno : 0;
		close((int)fd);
		if (err < 0)
			return err;
		if (tlen == 0)
			return -ENOENT;
		if ((size_t)tlen >= sizeof(target))
			return -ENAMETOOLONG;
		/* Drop the link's own name; an absolute target restarts at
		 * the guest's root. */
		while (r->canon_len > 0 && r->canon[r->canon_len - 1] != '/')
			r->canon_len--;
		if (r->canon_len > 0)
			r->canon_len--;
		if (target[0] == '/')
			r->canon_len = 0;
		size_t rest = plen - pos;
		if ((size_t)tlen + 1 + rest > sizeof(pending))
			return -ENAMETOOLONG;
		memmove(pending + tlen + 1, pending + pos, rest);
		memcpy(pending, target, (size_t)tlen);
		pending[tlen] = '/';
		plen = (size_t)tlen + 1 + rest;
		pos = 0;
		/* A link as the last component: "name/" must stay a
		 * directory; the appended '/' is harmless otherwise. */
	}
	if (r->canon_len == 0) {
		r->canon[0] = '/';
		r->canon_len = 1;
	}
	r->canon[r->canon_len] = '\0';
	if (is_hidden_path(p, r->canon, r->canon_len))
		return pico_deny(PICO_DENY_HIDDEN_PATH, -EACCES);
	return locate(p, r);
}

/* resolve_dotdot's answer when the one host lookup keeps meeting EAGAIN:
 * the same check without `..` in any host lookup.  Every place a `..`
 * applies, the directory it leaves (relative to the mount's directory) is
 * looked up without links, unless it lies inside the last one so checked:
 * x/.. a thousand times, or a thousand names down and back up, is one
 * lookup.  Returns 0 (checked), 1 (met a link or a mount: walk), -errno. */
static long check_dotdot_parts(const struct fs_mount *m, const char *raw, size_t len, char *checked)
{
	char rel[PICO_MAX_PATH + 1];
	size_t rel_len = 0, checked_len = 0, i = 0;

	checked[0] = '\0';
	while (i < len) {
		while (i < len && raw[i] == '/')
			i++;
		size_t start = i;
		while (i < len && raw[i] != '/')
			i++;
		size_t n = i - start;
		if (n == 0 || (n == 1 && raw[start] == '.'))
			continue;
		if (!(n == 2 && raw[start] == '.' && raw[start + 1] == '.')) {
			if (rel_len + (rel_len > 0) + n > PICO_MAX_PATH)
				return -ENAMETOOLONG;
			if (rel_len > 0)
				rel[rel_len++] = '/';
			memcpy(rel + rel_len, raw + start, n);
			rel_len += n;
			rel[rel_len] = '\0';
			continue;
		}
		if (rel_len == 0)
			return 1; /* cannot happen: resolve_dotdot kept inside the mount */
		int inside = rel_len <= checked_len && memcmp(rel, checked, rel_len) == 0 &&
			     (rel_len == checked_len || checked[rel_len] == '/');
		if (!inside) {
			struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = HOST_RESOLVE};
			long fd = openat2_counted(m->dirfd, rel, &how);
			if (fd < 0)
				return errno == ELOOP || errno == EXDEV || errno == EAGAIN ? 1 : -errno;
			close((int)fd);
			memcpy(checked, rel, rel_len + 1);
			checked_len = rel_len;
		}
		while (rel_len > 0 && rel[rel_len - 1] != '/')
			rel_len--;
		if (rel_len > 0)
			rel_len--;
		rel[rel_len] = '\0';
	}
	return 0;
}

/* A path with `..` that stays inside one mount, without links: resolved
 * with one host lookup (the kernel follows the `..` components, refusing
 * links), instead of a walk that looks up every component on its own (a
 * cost that grew with the number of components).  The canonical
 * path is the lexical one, and it is exactly what the guest's view gives
 * when every component before a `..` is a directory and none is a link:
 * the host lookup of that part, RESOLVE_NO_SYMLINKS, checks both.  Every
 * intermediate canonical path is checked against the hidden paths and
 * names first, as the walk does (passing through a hidden directory reveals
 * nothing).  Returns 0 (resolved), 1 (not this case: walk), or -errno. */
static long resolve_dotdot(const struct pico_fs_policy *p, const char *path, size_t len,
			   struct resolved *r)
{
	size_t i = 0, raw_start = 0, raw_end = 0;
	const struct fs_mount *m = NULL;

	r->canon_len = 0;
	r->trailing_slash = path[len - 1] == '/' || (len >= 2 && path[len - 1] == '.' && path[len - 2] == '/');
	while (i < len) {
		while (i < len && path[i] == '/')
			i++;
		size_t start = i;
		while (i < len && path[i] != '/')
			i++;
		size_t n = i - start;
		if (n == 0 || (n == 1 && path[start] == '.'))
			continue;
		if (n == 2 && path[start] == '.' && path[start + 1] == '.') {
			/* Only inside the mount entered, never up to its root. */
			if (!m || r->canon_len <= m->guest_len)
				return 1;
			while (r->canon_len > 0 && r->canon[r->canon_len - 1] != '/')
				r->canon_len--;
			r->canon_len--;
			r->canon[r->canon_len] = '\0';
			raw_end = i;
			continue;
		}
		if (n > NAME_MAX)
			return -ENAMETOOLONG;
		if (r->canon_len + 1 + n > PICO_MAX_PATH)
			return -ENAMETOOLONG;
		r->canon[r->canon_len++] = '/';
		memcpy(r->canon + r->canon_len, path + start, n);
		r->canon_len += n;
		r->canon[r->canon_len] = '\0';
		if (is_hidden_path(p, r->canon, r->canon_len))
			return pico_deny(PICO_DENY_HIDDEN_PATH, -EACCES);
		if (is_hidden_name(p, path + start, n))
			return pico_deny(PICO_DENY_HIDDEN_NAME, -EACCES);
		const struct fs_mount *here = find_mount(p, r->canon, r->canon_len);
		if (!m) {
			/* Entered at the mount's own root, so the rest of the raw
			 * path is relative to its directory. */
			if (here && here->guest_len == r->canon_len && !here->leaf) {
				m = here;
				raw_start = i;
			}
		} else if (here != m) {
			return 1; /* into a mount nested in it */
		}
	}
	if (!m || raw_end == 0)
		return 1;
	if (r->canon_len == 0) {
		r->canon[0] = '/';
		r->canon_len = 1;
		r->canon[1] = '\0';
	}
	/* The part up to the last `..`: every component a directory, no link. */
	char part[PICO_MAX_PATH + 1];
	size_t plen = raw_end - raw_start;
	while (plen > 0 && path[raw_start] == '/') {
		raw_start++;
		plen--;
	}
	memcpy(part, path + raw_start, plen);
	part[plen] = '\0';
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = HOST_RESOLVE};
	long fd;
	/* EAGAIN: a rename or mount somewhere on the host during a lookup with
	 * `..` (the kernel cannot vouch for RESOLVE_BENEATH then), which a
	 * busy host makes frequent: once more, then the parts without `..`. */
	int tries = 2;
	while ((fd = openat2_counted(m->dirfd, part, &how)) < 0 && errno == EAGAIN && --tries > 0)
		;
	if (fd >= 0) {
		close((int)fd);
	} else if (errno == EAGAIN) {
		char checked[PICO_MAX_PATH + 1];
		long ret = check_dotdot_parts(m, part, plen, checked);
		if (ret != 0)
			return ret;
	} else {
		return errno == ELOOP || errno == EXDEV ? 1 : -errno;
	}
	return locate(p, r);
}

/* The fast path: a path without `..` is looked up as written; if the host
 * lookup then meets a link (ELOOP from RESOLVE_NO_SYMLINKS), the caller
 * falls back to the walk.  A path with `..` inside one mount: the same,
 * after resolve_dotdot. */
static long resolve_lexical(const struct pico_fs_policy *p, const char *path, size_t len,
			    struct resolved *r)
{
	int ret = normalise(path, len, r->canon, &r->canon_len, &r->trailing_slash);
	if (ret == 1)
		return resolve_dotdot(p, path, len, r);
	if (ret != 0)
		return ret;
	if (is_hidden_path(p, r->canon, r->canon_len))
		return pico_deny(PICO_DENY_HIDDEN_PATH, -EACCES);
	if (has_hidden_name(p, r->canon, r->canon_len))
		return pico_deny(PICO_DENY_HIDDEN_NAME, -EACCES);
	return locate(p, r);
}

long resolve(const struct pico_fs_policy *p, const char *path, size_t len, int follow,
		    struct resolved *r)
{
	int trailing = len > 0 && path[len - 1] == '/';
	long ret = walk(p, path, len, follow || trailing, r);
	r->trailing_slash = trailing;
	return ret;
}

/* Runs op on the resolved path: first lexically, then (on `..`, or when the
 * host lookup met a link) through the walk, retrying the walk a few times
 * when the tree changes under it. */
typedef long (*resolved_op)(const struct pico_fs_policy *p, const struct resolved *r, void *arg);

long with_path(const struct pico_fs_policy *p, const char *path, size_t len, int follow,
		      resolved_op op, void *arg)
{
	struct resolved r;
	long ret = resolve_lexical(p, path, len, &r);

	if (ret == 0) {
		ret = op(p, &r, arg);
		/* A read-only or noexec mount refuses by the mount of the path
		 * as written, before the host lookup could meet a link: the
		 * walk decides by the mount the link leads to (a link in a
		 * read-only mount naming a writable one, as Linux would). */
		int by_mount = pico_denial && (ret == -EROFS || ret == -EACCES);
		if (ret != -ELOOP && !by_mount)
			return ret;
		pico_denial = 0;
	} else if (ret < 0) {
		return ret;
	}
	for (int attempt = 0; attempt < RESOLVE_ATTEMPTS; attempt++) {
		ret = resolve(p, path, len, follow, &r);
		if (ret < 0)
			return ret;
		ret = op(p, &r, arg);
		if (ret != -ELOOP)
			return ret;
	}
	return ret;
}

/* Opens the resolved object (never following a link on the host). */
long open_resolved(const struct resolved *r, int flags, unsigned int mode)
{
	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->trailing_slash && !(flags & O_PATH))
		flags |= O_DIRECTORY;
	return sys_openat2(r->mount->dirfd, r->rel, (uint64_t)(flags | O_CLOEXEC), mode);
}

/* Opens the resolved object O_PATH and refuses it when hidden.  The caller
 * that needs the object's attributes passes st (or stx, for statx's): the
 * one call that fetches them also serves the hidden-inode check. */
long open_checked_path(const struct pico_fs_policy *p, const struct resolved *r,
			      int nofollow, struct stat *st, struct statx *stx)
{
	struct stat own;
	long err = 0;
	int hidden = 0;
	long fd = open_resolved(r, O_PATH | (nofollow ? O_NOFOLLOW : 0), 0);

	if (fd < 0)
		return fd;
	if (stx && statx((int)fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, stx) < 0)
		err = -errno;
	else if (stx && (stx->stx_mask & STATX_INO))
		hidden = is_hidden_object(p, makedev(stx->stx_dev_major, stx->stx_dev_minor),
					  (ino_t)stx->stx_ino);
	else if (st || p->nhidden_inodes) {
		/* (also when statx did not report the inode number) */
		st = st ? st : &own;
		if (fstat((int)fd, st) < 0)
			err = -errno;
		else
			hidden = is_hidden_inode(p, st);
	}
	/* With hidden objects about, one that cannot be looked at is refused
	 * as hidden. */
	if (hidden || (err && p->nhidden_inodes)) {
		close((int)fd);
		return pico_deny(PICO_DENY_HIDDEN_OBJECT, -EACCES);
	}
	if (err) {
		close((int)fd);
		return err;
	}
	return fd;
}


long open_parent(const struct resolved *r, struct parent *out, int root_err)
{
	char dir[PICO_MAX_PATH + 1];
	const char *name;

	if (!r->mount)
		return pico_deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->leaf) {
		name = r->mount->leaf;
		strcpy(dir, ".");
	} else {
		if (!strcmp(r->rel, "."))
			return root_err; /* the mount point itself */
		const char *slash = strrchr(r->rel, '/');
		if (slash) {
			memcpy(dir, r->rel, (size_t)(slash - r->rel));
			dir[slash - r->rel] = '\0';
			name = slash + 1;
		} else {
			strcpy(dir, ".");
			name = r->rel;
		}
	}
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	strcpy(out->name, name);
	long fd = sys_openat2(r->mount->dirfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	out->fd = (int)fd;
	return 0;
}

/* Refuses a name whose object is hidden (a hard link of a hidden file). */
long check_name_not_hidden(const struct pico_fs_policy *p, const struct parent *pa)
{
	struct stat st;
	if (p->nhidden_inodes && fstatat(pa->fd, pa->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    is_hidden_inode(p, &st))
		return pico_deny(PICO_DENY_HIDDEN_OBJECT, -EACCES);
	return 0;
}
