/* File mediation: the policy -- the mounts (guest path -> host directory,
 * read-only, writable or data only, exec or not), the hidden paths, objects
 * and names, and what the guest's /proc shows of them.  See mediate_fs.h. */
#define _GNU_SOURCE
#include "fs_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* ---------------------------------------------------------------------- */
/* The policy                                                              */

struct pico_fs_policy *pico_fs_policy_new(void)
{
	return calloc(1, sizeof(struct pico_fs_policy));
}

void pico_fs_policy_free(struct pico_fs_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nmounts; i++) {
		close(p->mounts[i].dirfd);
		free(p->mounts[i].guest);
		free(p->mounts[i].leaf);
		if (p->mounts[i].host != p->mounts[i].kname)
			free(p->mounts[i].host);
		free(p->mounts[i].kname);
	}
	for (size_t i = 0; i < p->nhidden; i++)
		free(p->hidden[i]);
	for (size_t i = 0; i < p->nhidden_names; i++)
		free(p->hidden_names[i]);
	free(p->hidden_names);
	free(p->mounts);
	free(p->hidden);
	free(p->hidden_len);
	free(p->hidden_inodes);
	free(p);
}

size_t pico_fs_policy_mount_count(const struct pico_fs_policy *p)
{
	return p->nmounts;
}

/* Is `path` equal to `prefix` or below it? (both normalised) */
int path_within(const char *path, size_t len, const char *prefix, size_t plen)
{
	if (plen == 1)
		return 1; /* "/" */
	return len >= plen && memcmp(path, prefix, plen) == 0 && (len == plen || path[plen] == '/');
}

const struct fs_mount *find_mount(const struct pico_fs_policy *p, const char *canon,
					 size_t len)
{
	const struct fs_mount *best = NULL;

	for (size_t i = 0; i < p->nmounts; i++) {
		const struct fs_mount *m = &p->mounts[i];
		if ((!best || m->guest_len > best->guest_len) &&
		    path_within(canon, len, m->guest, m->guest_len))
			best = m;
	}
	return best;
}

/* Does some mount point lie strictly below `canon`? (then `canon` exists in
 * the guest's view as a directory that only leads to mounts) */
int is_mount_ancestor(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct fs_mount *m = &p->mounts[i];
		if (m->guest_len > len && path_within(m->guest, m->guest_len, canon, len))
			return 1;
	}
	return 0;
}

int is_hidden_path(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	for (size_t i = 0; i < p->nhidden; i++)
		if (path_within(canon, len, p->hidden[i], p->hidden_len[i]))
			return 1;
	return 0;
}

/* Does a hidden path lie strictly below `canon`?  Renaming such a directory
 * would carry the hidden object to a name that is not hidden. */
int holds_hidden_path(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	for (size_t i = 0; i < p->nhidden; i++)
		if (p->hidden_len[i] > len && path_within(p->hidden[i], p->hidden_len[i], canon, len))
			return 1;
	return 0;
}

int is_hidden_object(const struct pico_fs_policy *p, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < p->nhidden_inodes; i++)
		if (p->hidden_inodes[i].dev == dev && p->hidden_inodes[i].ino == ino)
			return 1;
	return 0;
}

int is_hidden_inode(const struct pico_fs_policy *p, const struct stat *st)
{
	return is_hidden_object(p, st->st_dev, st->st_ino);
}


/* Is the single component name[0..len) hidden by a name? */
int is_hidden_name(const struct pico_fs_policy *p, const char *name, size_t len)
{
	for (size_t i = 0; i < p->nhidden_names; i++)
		if (name_pattern_matches(p->hidden_names[i], name, len))
			return 1;
	return 0;
}

/* Does a component of the normalised path match a hidden name? */
int has_hidden_name(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	if (!p->nhidden_names)
		return 0;
	for (size_t i = 0; i < len;) {
		while (i < len && canon[i] == '/')
			i++;
		size_t start = i;
		while (i < len && canon[i] != '/')
			i++;
		if (i > start && is_hidden_name(p, canon + start, i - start))
			return 1;
	}
	return 0;
}

int pico_fs_policy_add_hidden_name(struct pico_fs_policy *p, const char *pattern, size_t len)
{
	int err;
	struct name_pattern *h = name_pattern_compile(pattern, len, &err);
	if (!h)
		return err;
	if (p->nhidden_names >= PICO_FS_MAX_HIDDEN_NAMES)
		err = -E2BIG;
	if (err == 0) {
		struct name_pattern **grown =
			realloc(p->hidden_names, (p->nhidden_names + 1) * sizeof(*grown));
		if (!grown)
			err = -ENOMEM;
		else
			p->hidden_names = grown;
	}
	if (err < 0) {
		free(h);
		return err;
	}
	p->hidden_names[p->nhidden_names++] = h;
	return 0;
}

/* The host path of a directory fd as the kernel names it for us (plus the
 * leaf of a file mount), or NULL. */
static char *host_path_of(int dirfd, const char *leaf)
{
	char link[64], path[PICO_MAX_PATH + NAME_MAX + 2];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	ssize_t n = readlink(link, path, PICO_MAX_PATH);
	if (n <= 0 || path[0] != '/')
		return NULL;
	path[n] = 0;
	if (strstr(path, " (deleted)"))
		return NULL;
	if (leaf)
		snprintf(path + n, sizeof(path) - (size_t)n, "%s%s", n == 1 ? "" : "/", leaf);
	return strdup(path);
}

int pico_fs_policy_add_mount(struct pico_fs_policy *p, const char *guest, size_t guest_len,
			     int host_dirfd, const char *leaf, int writable, int exec)
{
	char norm[PICO_MAX_PATH + 1];
	size_t norm_len;
	int trailing;
	struct stat st;

	if (normalise(guest, guest_len, norm, &norm_len, &trailing) != 0)
		return -EINVAL;
	if (writable != PICO_MOUNT_RO && writable != PICO_MOUNT_RW && writable != PICO_MOUNT_DATA)
		return -EINVAL;
	if (leaf && (!*leaf || strchr(leaf, '/') || !strcmp(leaf, ".") || !strcmp(leaf, "..")))
		return -EINVAL;
	if (fstat(host_dirfd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	/* procfs is never shown: its magic links and per-process files are
	 * views of the host (the monitor's own /proc/self among them). */
	struct statfs sfs;
	if (fstatfs(host_dirfd, &sfs) < 0)
		return -errno;
	if (sfs.f_type == PROC_SUPER_MAGIC)
		return -EPERM;
	for (size_t i = 0; i < p->nmounts; i++)
		if (p->mounts[i].guest_len == norm_len && !memcmp(p->mounts[i].guest, norm, norm_len))
			return -EEXIST;
	struct fs_mount *grown = realloc(p->mounts, (p->nmounts + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	p->mounts = grown;
	struct fs_mount *m = &p->mounts[p->nmounts];
	memset(m, 0, sizeof(*m));
	m->guest = strndup(norm, norm_len);
	m->leaf = leaf ? strdup(leaf) : NULL;
	m->dirfd = fcntl(host_dirfd, F_DUPFD_CLOEXEC, 3);
	if (!m->guest || (leaf && !m->leaf) || m->dirfd < 0) {
		int err = m->dirfd < 0 ? errno : ENOMEM;
		if (m->dirfd >= 0)
			close(m->dirfd);
		free(m->guest);
		free(m->leaf);
		return -err;
	}
	m->guest_len = norm_len;
	m->writable = writable;
	m->exec = !!exec;
	m->fstype = (long)sfs.f_type;
	m->dev = st.st_dev;
	m->kname = host_path_of(m->dirfd, leaf);
	m->kname_len = m->kname ? strlen(m->kname) : 0;
	m->host = m->kname;
	m->host_len = m->kname_len;
	if (leaf) {
		struct stat lst;
		if (fstatat(m->dirfd, leaf, &lst, AT_SYMLINK_NOFOLLOW) == 0)
			m->dev = lst.st_dev;
	}
	p->nmounts++;
	return 0;
}

size_t pico_fs_policy_mount(const struct pico_fs_policy *p, size_t i, const char **guest, dev_t *dev,
			    long *fstype, int *writable, int *exec)
{
	if (i >= p->nmounts)
		return 0;
	const struct fs_mount *m = &p->mounts[i];
	*guest = m->guest;
	*dev = m->dev;
	*fstype = m->fstype;
	*writable = m->writable;
	*exec = m->exec;
	return m->guest_len;
}

int pico_fs_policy_set_host_path(struct pico_fs_policy *p, const char *host, size_t host_len)
{
	if (!p->nmounts || !host_len || host[0] != '/' || host_len > PICO_MAX_PATH || memchr(host, 0, host_len))
		return -EINVAL;
	struct fs_mount *m = &p->mounts[p->nmounts - 1];
	size_t leaf_len = m->leaf ? strlen(m->leaf) : 0;
	char *copy = malloc(host_len + leaf_len + 2);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, host, host_len);
	size_t n = host_len;
	if (m->leaf) {
		if (n > 1)
			copy[n++] = '/';
		memcpy(copy + n, m->leaf, leaf_len);
		n += leaf_len;
	}
	copy[n] = 0;
	if (m->host != m->kname)
		free(m->host);
	m->host = copy;
	m->host_len = n;
	return 0;
}

/* Whether `name` (length len) lies under the mount's name `prefix`: the whole
 * name for a file mount, a directory's up to a slash. */
static int name_under(const struct fs_mount *m, const char *prefix, size_t prefix_len, const char *name, size_t len)
{
	if (!prefix || prefix_len > len || memcmp(prefix, name, prefix_len))
		return 0;
	return m->leaf ? prefix_len == len : prefix_len == len || name[prefix_len] == '/' || prefix_len == 1;
}

/* The host path of what the kernel names `kname` (st_dev dev, st_ino ino):
 * through the mount whose kernel name holds it and where that name reaches
 * that very inode (copies of one file system all name their roots "/").
 * Returns its length in out, or 0 when no mount is sure (kname is then
 * taken as the host path, as for a mount shown without a copy). */
static size_t host_path_of_kname(const struct pico_fs_policy *p, dev_t dev, ino_t ino, const char *kname,
				 size_t len, char *out, size_t cap)
{
	const struct fs_mount *best = NULL;
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct fs_mount *m = &p->mounts[i];
		if (m->host == m->kname || m->dev != dev || !name_under(m, m->kname, m->kname_len, kname, len))
			continue;
		if (best && best->kname_len >= m->kname_len)
			continue;
		const char *rest = kname + (m->kname_len == 1 ? 0 : m->kname_len);
		struct stat st;
		int r = m->leaf ? fstatat(m->dirfd, m->leaf, &st, AT_SYMLINK_NOFOLLOW)
			: rest[0] && rest[1] ? fstatat(m->dirfd, rest + 1, &st, AT_SYMLINK_NOFOLLOW)
					     : fstat(m->dirfd, &st);
		if (r == 0 && st.st_dev == dev && st.st_ino == ino)
			best = m;
	}
	if (!best)
		return 0;
	size_t rest_len = len - (best->kname_len == 1 ? 0 : best->kname_len);
	const char *rest = kname + (len - rest_len);
	size_t base = best->host_len == 1 && rest_len ? 0 : best->host_len;
	if (base + rest_len + 1 > cap)
		return 0;
	memcpy(out, best->host, base);
	memcpy(out + base, rest, rest_len);
	out[base + rest_len] = 0;
	return base + rest_len;
}

long pico_fs_guest_path_of(const struct pico_fs_policy *p, dev_t dev, ino_t ino, const char *kname, size_t kname_len,
			   char *out, size_t cap)
{
	char buf[2 * PICO_MAX_PATH + NAME_MAX + 2];
	const char *host = kname;
	size_t host_len = host_path_of_kname(p, dev, ino, kname, kname_len, buf, sizeof(buf));
	if (host_len)
		host = buf;
	else
		host_len = kname_len;
	const struct fs_mount *best = NULL;
	int best_same = 0;
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct fs_mount *m = &p->mounts[i];
		if (m->dev != dev || !name_under(m, m->host, m->host_len, host, host_len))
			continue;
		/* A mount shown where the host has it names the file as Linux
		 * would (/usr/bin/x, not /bin/x through a /bin mount of the
		 * host's /usr/bin); otherwise the closest mount. */
		int same = m->guest_len == m->host_len && !memcmp(m->guest, m->host, m->host_len);
		if (!best || same > best_same || (same == best_same && m->host_len > best->host_len)) {
			best = m;
			best_same = same;
		}
	}
	if (!best)
		return -ENOENT;
	const char *rest = host + best->host_len;
	size_t rest_len = host_len - best->host_len;
	if (best->host_len == 1 && host[0] == '/') { /* "/" itself: keep the slash */
		rest = host;
		rest_len = host_len;
	}
	size_t base = best->guest_len == 1 && rest_len ? 0 : best->guest_len;
	if (base + rest_len + 1 > cap || base + rest_len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	memcpy(out, best->guest, base);
	memcpy(out + base, rest, rest_len);
	out[base + rest_len] = 0;
	size_t len = base + rest_len;
	if (len == 0) {
		out[0] = '/';
		out[1] = 0;
		len = 1;
	}
	/* A name the guest may not see is not shown either. */
	if (is_hidden_path(p, out, len) || has_hidden_name(p, out, len))
		return -EACCES;
	return (long)len;
}


int pico_fs_policy_add_hidden(struct pico_fs_policy *p, const char *guest, size_t guest_len)
{
	char norm[PICO_MAX_PATH + 1];
	size_t norm_len;
	int trailing;

	if (normalise(guest, guest_len, norm, &norm_len, &trailing) != 0)
		return -EINVAL;
	char *copy = strndup(norm, norm_len);
	char **hidden = realloc(p->hidden, (p->nhidden + 1) * sizeof(*hidden));
	if (hidden)
		p->hidden = hidden;
	size_t *lens = realloc(p->hidden_len, (p->nhidden + 1) * sizeof(*lens));
	if (lens)
		p->hidden_len = lens;
	if (!copy || !hidden || !lens) {
		free(copy);
		return -ENOMEM;
	}

	/* Resolve it now, before it is hidden, to learn which object it is. */
	struct resolved *r = malloc(sizeof(*r));
	if (!r) {
		free(copy);
		return -ENOMEM;
	}
	if (resolve(p, norm, norm_len, 1, r) == 0 && r->mount) {
		long fd = sys_openat2(r->mount->dirfd, r->rel, O_PATH | O_CLOEXEC, 0);
		struct stat st;
		if (fd >= 0 && fstat((int)fd, &st) == 0) {
			struct hidden_inode *inodes = realloc(
				p->hidden_inodes, (p->nhidden_inodes + 1) * sizeof(*inodes));
			if (!inodes) {
				close((int)fd);
				free(r);
				free(copy);
				return -ENOMEM;
			}
			p->hidden_inodes = inodes;
			inodes[p->nhidden_inodes].dev = st.st_dev;
			inodes[p->nhidden_inodes].ino = st.st_ino;
			p->nhidden_inodes++;
		}
		if (fd >= 0)
			close((int)fd);
	}
	free(r);
	p->hidden[p->nhidden] = copy;
	p->hidden_len[p->nhidden] = norm_len;
	p->nhidden++;
	return 0;
}

int pico_fs_mount_dev(const struct pico_fs_policy *p, const char *guest, unsigned long *out)
{
	size_t len = strlen(guest);
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct fs_mount *m = &p->mounts[i];
		struct stat st;
		if (m->guest_len == len && !memcmp(m->guest, guest, len) && !m->leaf && fstat(m->dirfd, &st) == 0) {
			*out = st.st_dev;
			return 0;
		}
	}
	return -ENOENT;
}

