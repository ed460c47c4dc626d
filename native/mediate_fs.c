/* File mediation: resolving guest paths in the guest's view and performing
 * the file-system mediated calls on host fds.  See mediate_fs.h. */
#define _GNU_SOURCE
#include "mediate_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h> /* renameat2 */
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "net.h"
#include "denial.h"
#include "picoproc_abi.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
/* fchmodat2(2), Linux 6.6: the only chmod that takes AT_EMPTY_PATH, so an
 * O_PATH fd of the resolved object can be changed without a path the host
 * kernel would resolve again. */
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

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

/* A hidden name, compiled: one token per character of the pattern. */
enum name_token_kind { TOKEN_CHAR, TOKEN_ANY, TOKEN_STAR, TOKEN_SET };

struct name_token {
	uint8_t kind;
	uint8_t negated;      /* TOKEN_SET: `[!...]` */
	uint16_t first_range; /* TOKEN_SET: its ranges[first_range .. + nranges) */
	uint16_t nranges;
	uint32_t code;	      /* TOKEN_CHAR: the code point */
};

struct hidden_name {
	/* Quick rejects before the match, first in the struct because most
	 * names meet nothing else: a matching name has at least min_chars
	 * characters and so at least as many bytes, and it ends with the
	 * UTF-8 bytes of the pattern's trailing plain characters. */
	size_t min_chars;
	size_t tail_len;
	int plain; /* no wildcard: the name must equal `tail` */
	char tail[NAME_MAX + 1];
	struct name_token tokens[NAME_MAX];
	size_t ntokens;
	uint32_t ranges[NAME_MAX][2]; /* inclusive [lo, hi] code points */
	size_t nranges;
};

struct pico_fs_policy {
	struct fs_mount *mounts;
	size_t nmounts;
	char **hidden; /* normalised guest paths */
	size_t *hidden_len;
	size_t nhidden;
	struct hidden_inode *hidden_inodes;
	size_t nhidden_inodes;
	struct hidden_name **hidden_names;
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

/* The reason code (denial.h) when the current call's refusal is a policy
 * decision (for the audit log): a host EACCES (permission bits) is an error, a path outside the
 * manifest is a denial.  Per thread: policies are built in Python threads
 * while the loop thread serves calls. */
static __thread int call_denied;

/* Host lookups (openat2) this thread has made: what a call's path costs the
 * monitor, which the loop adds up (pico_loop_counters.fs_lookups). */
static __thread uint64_t thread_lookups;

uint64_t pico_fs_thread_lookups(void)
{
	return thread_lookups;
}

static long openat2_counted(int dirfd, const char *path, struct open_how *how)
{
	thread_lookups++;
	return syscall(SYS_openat2, dirfd, path, how, sizeof(*how));
}

static long deny(int reason, long err)
{
	call_denied = reason;
	return err;
}

/* A change refused by the mount's mode: EROFS on a read-only mount, EPERM
 * on a data-only device file. */
static long deny_change(const struct fs_mount *m)
{
	return m->writable == PICO_MOUNT_DATA ? deny(PICO_DENY_DEVICE, -EPERM)
					      : deny(PICO_DENY_READ_ONLY, -EROFS);
}

static long sys_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode)
{
	struct open_how how = {.flags = flags, .mode = mode, .resolve = HOST_RESOLVE};
	long fd = openat2_counted(dirfd, path, &how);
	if (fd >= 0)
		return fd;
	/* Relative paths here never hold `..`: EXDEV means the lookup met a
	 * host mount point below the granted directory. */
	return errno == EXDEV ? deny(PICO_DENY_HOST_MOUNT, -EACCES) : -errno;
}

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

/* Lexical normalisation: collapses `//` and `.`; `..` is left to the walk
 * (it is only lexical where no link precedes it).  Returns 1 when the path
 * holds a `..` component, 0 when `out` is the normalised path, or -errno. */
static int normalise(const char *path, size_t len, char *out, size_t *out_len, int *trailing_slash)
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

/* Is `path` equal to `prefix` or below it? (both normalised) */
static int path_within(const char *path, size_t len, const char *prefix, size_t plen)
{
	if (plen == 1)
		return 1; /* "/" */
	return len >= plen && memcmp(path, prefix, plen) == 0 && (len == plen || path[plen] == '/');
}

static const struct fs_mount *find_mount(const struct pico_fs_policy *p, const char *canon,
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
static int is_mount_ancestor(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct fs_mount *m = &p->mounts[i];
		if (m->guest_len > len && path_within(m->guest, m->guest_len, canon, len))
			return 1;
	}
	return 0;
}

static int is_hidden_path(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	for (size_t i = 0; i < p->nhidden; i++)
		if (path_within(canon, len, p->hidden[i], p->hidden_len[i]))
			return 1;
	return 0;
}

/* Does a hidden path lie strictly below `canon`?  Renaming such a directory
 * would carry the hidden object to a name that is not hidden. */
static int holds_hidden_path(const struct pico_fs_policy *p, const char *canon, size_t len)
{
	for (size_t i = 0; i < p->nhidden; i++)
		if (p->hidden_len[i] > len && path_within(p->hidden[i], p->hidden_len[i], canon, len))
			return 1;
	return 0;
}

static int is_hidden_object(const struct pico_fs_policy *p, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < p->nhidden_inodes; i++)
		if (p->hidden_inodes[i].dev == dev && p->hidden_inodes[i].ino == ino)
			return 1;
	return 0;
}

static int is_hidden_inode(const struct pico_fs_policy *p, const struct stat *st)
{
	return is_hidden_object(p, st->st_dev, st->st_ino);
}

/* ---------------------------------------------------------------------- */
/* Hidden names                                                            */

/* One character of UTF-8 text at s[0..n) (n > 0): its code point, and how
 * many bytes it takes.  Strict UTF-8 as Python decodes it (no overlong
 * forms, no surrogates, nothing past U+10FFFF); a byte that does not start
 * a valid sequence is a character of its own, U+DC00 + byte, which is what
 * Python's surrogateescape makes of it, so a name's characters here are the
 * characters of os.fsdecode(name). */
static size_t next_char(const unsigned char *s, size_t n, uint32_t *code)
{
	unsigned char b = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */

	if (b < 0x80) {
		*code = b;
		return 1;
	}
	if (b >= 0xC2 && b <= 0xDF) {
		need = 1;
		*code = b & 0x1F;
	} else if (b >= 0xE0 && b <= 0xEF) {
		need = 2;
		*code = b & 0x0F;
		if (b == 0xE0)
			lo = 0xA0; /* overlong */
		else if (b == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (b >= 0xF0 && b <= 0xF4) {
		need = 3;
		*code = b & 0x07;
		if (b == 0xF0)
			lo = 0x90; /* overlong */
		else if (b == 0xF4)
			hi = 0x8F; /* past U+10FFFF */
	} else {
		goto invalid;
	}
	if (n < need + 1 || s[1] < lo || s[1] > hi)
		goto invalid;
	for (size_t i = 1; i <= need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			goto invalid;
		*code = (*code << 6) | (s[i] & 0x3F);
	}
	return need + 1;
invalid:
	*code = 0xDC00u + b;
	return 1;
}

/* The characters of s[0..n) into out (room for n); returns their count. */
static size_t decode_chars(const char *s, size_t n, uint32_t *out, int *valid)
{
	size_t count = 0;

	*valid = 1;
	for (size_t i = 0; i < n; count++) {
		size_t step = next_char((const unsigned char *)s + i, n - i, &out[count]);
		if (step == 1 && (unsigned char)s[i] >= 0x80)
			*valid = 0; /* an undecodable byte */
		i += step;
	}
	return count;
}

/* A bracket expression's characters as Python's re reads them: plain
 * characters (fnmatch.translate escapes every special one) and the '-'
 * between two chunks, which is a range operator. */
struct set_char {
	uint32_t code;
	int range_dash;
};

/* The set `[stuff]` of pattern characters pat[i..j), exactly as Python
 * 3.11's fnmatch.translate writes it as a regular-expression set and re
 * then reads it: with a '-' in it, the text is cut into chunks at the '-'
 * that can form ranges (searching again 2 characters after each cut, and
 * never at the first character nor right after a '!'), a trailing empty
 * chunk makes the last '-' plain, a range whose ends are reversed is
 * removed with both its ends, and every other '-' is a plain character.
 * Adds the token. */
static void compile_set(struct hidden_name *h, const uint32_t *pat, size_t i, size_t j)
{
	const uint32_t *text = pat + i;
	size_t len = j - i, n = 0;
	/* at most one separator between two characters */
	struct set_char stuff[2 * NAME_MAX + 1];
	int has_dash = 0;

	for (size_t k = 0; k < len; k++)
		has_dash |= text[k] == '-';
	if (!has_dash) {
		for (size_t k = 0; k < len; k++)
			stuff[n++] = (struct set_char){.code = text[k]};
	} else {
		size_t start = 0, k = text[0] == '!' ? 2 : 1;
		for (;;) {
			size_t dash = k;
			while (dash < len && text[dash] != '-')
				dash++;
			if (dash >= len)
				break;
			for (size_t c = start; c < dash; c++)
				stuff[n++] = (struct set_char){.code = text[c]};
			stuff[n++] = (struct set_char){.code = '-', .range_dash = 1};
			start = dash + 1;
			k = dash + 3;
		}
		if (start < len) {
			for (size_t c = start; c < len; c++)
				stuff[n++] = (struct set_char){.code = text[c]};
		} else {
			/* translate: chunks[-1] += '-'.  The cut just made
			 * had a chunk before it (a cut is never at 0). */
			stuff[n - 1].range_dash = 0;
		}
		/* Reversed ranges go with both their ends, right to left, as
		 * translate merges chunks.  Every chunk but the first and the
		 * last has two characters or more, so both sides of a cut are
		 * characters; removing the first range can bring a '!' to the
		 * front ("[z-a!b]" is "[!b]"), hence no shortcut. */
		for (size_t s = n; s-- > 1;) {
			if (!stuff[s].range_dash || s + 1 >= n)
				continue;
			if (stuff[s - 1].code > stuff[s + 1].code) {
				memmove(&stuff[s - 1], &stuff[s + 2], (n - s - 2) * sizeof(*stuff));
				n -= 3;
				s--; /* the next cut is left of s - 1 */
			}
		}
	}

	/* translate: an empty set never matches, "!" alone matches any
	 * character, a leading '!' negates ('^' and '[' are escaped: plain). */
	size_t pos = 0;
	int negated = 0;
	if (n > 0 && stuff[0].code == '!' && !stuff[0].range_dash) {
		negated = 1;
		pos = 1;
	}
	struct name_token *t = &h->tokens[h->ntokens++];
	*t = (struct name_token){.kind = TOKEN_SET, .negated = (uint8_t)negated,
				 .first_range = (uint16_t)h->nranges};
	/* re's set parser: an item, then perhaps a range operator and the
	 * range's other end. */
	while (pos < n) {
		uint32_t lo = stuff[pos++].code, hi = lo;
		if (pos + 1 < n && stuff[pos].range_dash) {
			hi = stuff[pos + 1].code;
			pos += 2;
		}
		if (lo > hi)
			continue; /* never left by the merging above */
		h->ranges[h->nranges][0] = lo;
		h->ranges[h->nranges][1] = hi;
		h->nranges++;
	}
	t->nranges = (uint16_t)(h->nranges - t->first_range);
}

/* Compiles a pattern as Python 3.11's fnmatch.translate reads it: `*` (runs
 * of them are one), `?`, `[...]` (with `!` for negation; an unclosed `[` is
 * a plain character), every other character plain; no escapes. */
static int compile_hidden_name(const char *pattern, size_t len, struct hidden_name *h)
{
	uint32_t pat[NAME_MAX];
	int valid;

	if (len == 0 || memchr(pattern, '/', len) || memchr(pattern, '\0', len))
		return -EINVAL;
	if ((len == 1 && pattern[0] == '.') || (len == 2 && !memcmp(pattern, "..", 2)))
		return -EINVAL;
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	size_t n = decode_chars(pattern, len, pat, &valid);
	if (!valid)
		return -EINVAL;

	memset(h, 0, sizeof(*h));
	for (size_t i = 0; i < n;) {
		uint32_t c = pat[i++];
		if (c == '*') {
			if (h->ntokens == 0 || h->tokens[h->ntokens - 1].kind != TOKEN_STAR)
				h->tokens[h->ntokens++].kind = TOKEN_STAR;
		} else if (c == '?') {
			h->tokens[h->ntokens++].kind = TOKEN_ANY;
		} else if (c == '[') {
			size_t j = i;
			if (j < n && pat[j] == '!')
				j++;
			if (j < n && pat[j] == ']')
				j++;
			while (j < n && pat[j] != ']')
				j++;
			if (j >= n) {
				h->tokens[h->ntokens++] = (struct name_token){.kind = TOKEN_CHAR, .code = '['};
			} else {
				compile_set(h, pat, i, j);
				i = j + 1;
			}
		} else {
			h->tokens[h->ntokens++] = (struct name_token){.kind = TOKEN_CHAR, .code = c};
		}
	}

	/* The quick rejects. */
	size_t first_tail = h->ntokens;
	h->plain = 1;
	for (size_t t = 0; t < h->ntokens; t++) {
		if (h->tokens[t].kind != TOKEN_STAR)
			h->min_chars++;
		if (h->tokens[t].kind != TOKEN_CHAR)
			h->plain = 0;
	}
	while (first_tail > 0 && h->tokens[first_tail - 1].kind == TOKEN_CHAR)
		first_tail--;
	/* The trailing plain characters' bytes are the pattern's last bytes
	 * (each plain pattern character is itself, written in UTF-8). */
	size_t tail_chars = h->ntokens - first_tail, tail_start = len;
	for (size_t k = 0; k < tail_chars; k++) {
		do
			tail_start--;
		while (((unsigned char)pattern[tail_start] & 0xC0) == 0x80);
	}
	h->tail_len = len - tail_start;
	memcpy(h->tail, pattern + tail_start, h->tail_len);
	return 0;
}

static int token_matches(const struct hidden_name *h, const struct name_token *t, uint32_t c)
{
	switch (t->kind) {
	case TOKEN_CHAR:
		return t->code == c;
	case TOKEN_ANY:
		return 1;
	default:
		for (size_t r = t->first_range; r < (size_t)t->first_range + t->nranges; r++)
			if (c >= h->ranges[r][0] && c <= h->ranges[r][1])
				return !t->negated;
		return t->negated;
	}
}

/* Every token but `*` is one character, so the leftmost way to match the
 * piece after a `*` is always as good as any other: one backtrack point
 * (the last `*`) suffices. */
static int glob_matches(const struct hidden_name *h, const uint32_t *s, size_t n)
{
	size_t t = 0, i = 0, star = SIZE_MAX, star_i = 0;

	while (i < n) {
		if (t < h->ntokens && h->tokens[t].kind == TOKEN_STAR) {
			star = t++;
			star_i = i;
		} else if (t < h->ntokens && token_matches(h, &h->tokens[t], s[i])) {
			t++;
			i++;
		} else if (star != SIZE_MAX) {
			t = star + 1;
			i = ++star_i;
		} else {
			return 0;
		}
	}
	while (t < h->ntokens && h->tokens[t].kind == TOKEN_STAR)
		t++;
	return t == h->ntokens;
}

/* name[0..len): one component, at most NAME_MAX bytes (the resolution
 * refuses longer ones before asking). */
static int name_matches(const struct hidden_name *h, const char *name, size_t len)
{
	uint32_t chars[NAME_MAX];
	int valid;

	if (h->plain)
		return len == h->tail_len && !memcmp(name, h->tail, len);
	if (len < h->min_chars || len < h->tail_len ||
	    memcmp(name + len - h->tail_len, h->tail, h->tail_len))
		return 0;
	size_t n = decode_chars(name, len, chars, &valid);
	return glob_matches(h, chars, n);
}

/* Is the single component name[0..len) hidden by a name? */
static int is_hidden_name(const struct pico_fs_policy *p, const char *name, size_t len)
{
	for (size_t i = 0; i < p->nhidden_names; i++)
		if (name_matches(p->hidden_names[i], name, len))
			return 1;
	return 0;
}

/* Does a component of the normalised path match a hidden name? */
static int has_hidden_name(const struct pico_fs_policy *p, const char *canon, size_t len)
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
	struct hidden_name *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	int err = compile_hidden_name(pattern, len, h);
	if (err == 0 && p->nhidden_names >= PICO_FS_MAX_HIDDEN_NAMES)
		err = -E2BIG;
	if (err == 0) {
		struct hidden_name **grown =
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

int pico_fs_hidden_name_matches(const char *pattern, size_t pattern_len, const char *name,
				size_t name_len)
{
	struct hidden_name *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	int ret = compile_hidden_name(pattern, pattern_len, h);
	if (ret == 0 && (name_len == 0 || memchr(name, '/', name_len) || memchr(name, '\0', name_len)))
		ret = -EINVAL;
	if (ret == 0 && name_len > NAME_MAX)
		ret = -ENAMETOOLONG;
	if (ret == 0)
		ret = name_matches(h, name, name_len);
	free(h);
	return ret;
}

/* Sets r->mount and r->rel from r->canon. */
static int locate(const struct pico_fs_policy *p, struct resolved *r)
{
	r->mount = find_mount(p, r->canon, r->canon_len);
	if (!r->mount)
		return is_mount_ancestor(p, r->canon, r->canon_len) ? 0 : deny(PICO_DENY_NOT_MOUNTED, -EACCES);
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

static long resolve(const struct pico_fs_policy *p, const char *path, size_t len, int follow,
		    struct resolved *r);

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
			return deny(PICO_DENY_HIDDEN_PATH, -EACCES);
		if (is_hidden_name(p, pending + start, n))
			return deny(PICO_DENY_HIDDEN_NAME, -EACCES);
		if (is_last && !follow)
			break;

		long err = locate(p, r);
		if (err < 0)
			return err;
		if (!r->mount)
			continue; /* an ancestor of mount points: a directory */
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
		return deny(PICO_DENY_HIDDEN_PATH, -EACCES);
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
			return deny(PICO_DENY_HIDDEN_PATH, -EACCES);
		if (is_hidden_name(p, path + start, n))
			return deny(PICO_DENY_HIDDEN_NAME, -EACCES);
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
		return deny(PICO_DENY_HIDDEN_PATH, -EACCES);
	if (has_hidden_name(p, r->canon, r->canon_len))
		return deny(PICO_DENY_HIDDEN_NAME, -EACCES);
	return locate(p, r);
}

static long resolve(const struct pico_fs_policy *p, const char *path, size_t len, int follow,
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

static long with_path(const struct pico_fs_policy *p, const char *path, size_t len, int follow,
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
		int by_mount = call_denied && (ret == -EROFS || ret == -EACCES);
		if (ret != -ELOOP && !by_mount)
			return ret;
		call_denied = 0;
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
static long open_resolved(const struct resolved *r, int flags, unsigned int mode)
{
	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->trailing_slash && !(flags & O_PATH))
		flags |= O_DIRECTORY;
	return sys_openat2(r->mount->dirfd, r->rel, (uint64_t)(flags | O_CLOEXEC), mode);
}

/* Opens the resolved object O_PATH and refuses it when hidden.  The caller
 * that needs the object's attributes passes st (or stx, for statx's): the
 * one call that fetches them also serves the hidden-inode check. */
static long open_checked_path(const struct pico_fs_policy *p, const struct resolved *r,
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
		return deny(PICO_DENY_HIDDEN_OBJECT, -EACCES);
	}
	if (err) {
		close((int)fd);
		return err;
	}
	return fd;
}

/* For calls on a name (mkdir, unlink, rename, symlink, link): the resolved
 * path's parent directory, opened, and its last component. */
struct parent {
	int fd;
	char name[NAME_MAX + 1];
};

static long open_parent(const struct resolved *r, struct parent *out, int root_err)
{
	char dir[PICO_MAX_PATH + 1];
	const char *name;

	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
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
static long check_name_not_hidden(const struct pico_fs_policy *p, const struct parent *pa)
{
	struct stat st;
	if (p->nhidden_inodes && fstatat(pa->fd, pa->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    is_hidden_inode(p, &st))
		return deny(PICO_DENY_HIDDEN_OBJECT, -EACCES);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The calls                                                               */


/* Each entry point clears the denial flag, serves, and reports it. */
#define SERVE(denied, expr)              \
	({                               \
		call_denied = 0;         \
		long __ret = (expr);     \
		*(denied) = call_denied; \
		__ret;                   \
	})

#define OPEN_KNOWN_FLAGS                                                                          \
	(O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NONBLOCK | O_DIRECTORY | O_NOFOLLOW | \
	 O_CLOEXEC | O_PATH | O_NOCTTY | O_LARGEFILE | O_DSYNC | O_SYNC | O_TMPFILE | PICO_OPEN_EXEC)

/* O_TMPFILE is a bit of its own plus O_DIRECTORY: only both together mean
 * it.  (glibc's __O_TMPFILE includes O_DIRECTORY, so the bit is spelled.) */
#define TMPFILE_BIT 020000000
static int is_tmpfile(int flags)
{
	return (flags & O_TMPFILE) == O_TMPFILE;
}

static int opens_for_writing(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) || is_tmpfile(flags);
}

struct open_arg {
	int flags;
	unsigned int mode;
};

/* open(O_PATH): the kernel will not pass an O_PATH file through NOTIF_ADDFD
 * (it takes only files that can be read or written), so the guest gets a
 * read-only fd of the same inode instead, for a directory or a regular file
 * -- what O_PATH is used for: a handle to stat, fchdir to, or resolve
 * names against.  The inode is pinned O_PATH first and reopened through
 * the monitor's own /proc/self/fd, so no path is looked up twice; an
 * object of another type (a FIFO, a device, a socket: opening those has
 * effects) or a file the guest identity may not read answers as open(2)
 * without O_PATH would (ENXIO, EACCES). */
static long open_path_op(const struct pico_fs_policy *p, const struct resolved *r, int flags)
{
	struct stat st;
	char proc[32];
	long fd = open_checked_path(p, r, !!(flags & O_NOFOLLOW), &st, NULL);
	if (fd < 0)
		return fd;
	long ret;
	if (S_ISLNK(st.st_mode) && (flags & O_NOFOLLOW) && !(flags & O_DIRECTORY))
		/* The link itself, as Linux gives it: an O_PATH fd of a link
		 * only stats and reads the link (every direct call on it is
		 * EBADF or names no path), which the guest may do anyway. */
		return fd;
	if (S_ISLNK(st.st_mode))
		ret = (flags & O_DIRECTORY) ? -ENOTDIR : -ELOOP;
	else if ((flags & O_DIRECTORY) && !S_ISDIR(st.st_mode))
		ret = -ENOTDIR;
	else if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		ret = -ENXIO;
	else {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (int)fd);
		ret = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (ret < 0)
			ret = -errno;
		else if (fcntl((int)ret, F_SETFL, 0) < 0) {
			close((int)ret);
			ret = -errno;
		}
	}
	close((int)fd);
	return ret;
}

static long open_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct open_arg *a = varg;
	int flags = a->flags;
	int exec = flags & PICO_OPEN_EXEC;
	struct stat st;
	long ret;

	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	/* Linux never creates a name written with a trailing '/': EISDIR once
	 * the directory it would be made in is found, before any other check. */
	if ((flags & O_CREAT) && !(flags & O_DIRECTORY) && r->trailing_slash && !is_tmpfile(flags)) {
		struct parent pa;
		long err = open_parent(r, &pa, -EISDIR);
		if (err < 0)
			return err;
		close(pa.fd);
		return -EISDIR;
	}
	if (opens_for_writing(flags) && !r->mount->writable)
		return deny(PICO_DENY_READ_ONLY, -EROFS);
	/* An unnamed file in a directory: only where names may be made. */
	if (is_tmpfile(flags) && r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	if (exec && !r->mount->exec)
		return deny(PICO_DENY_NOEXEC, -EACCES);
	/* Opened non-blocking so that a FIFO or a device never blocks the
	 * loop; O_TRUNC is applied only after the hidden-inode check. */
	int host_flags = (flags & ~(PICO_OPEN_EXEC | O_TRUNC)) | O_NONBLOCK | O_NOCTTY;
	if (flags & O_PATH)
		return open_path_op(p, r, flags);
	unsigned int mode = (flags & O_CREAT) || is_tmpfile(flags) ? a->mode : 0;
	long fd = open_resolved(r, host_flags, mode);
	if (fd < 0)
		return fd;
	/* The common case (no hidden inode anywhere, plain open) needs no
	 * look at what was opened. */
	if (!p->nhidden_inodes && !exec && !(flags & O_TRUNC))
		goto opened;
	if (fstat((int)fd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	if (is_hidden_inode(p, &st)) {
		ret = deny(PICO_DENY_HIDDEN_OBJECT, -EACCES);
		goto fail;
	}
	/* PICO_OPEN_EXEC: a regular file the guest identity may execute. */
	if (exec && (!S_ISREG(st.st_mode) ||
		     faccessat((int)fd, "", X_OK, AT_EMPTY_PATH | AT_EACCESS) < 0)) {
		ret = -EACCES;
		goto fail;
	}
	if ((flags & O_TRUNC) && S_ISREG(st.st_mode) && ftruncate((int)fd, 0) < 0) {
		ret = -errno;
		goto fail;
	}
opened:
	if (!(flags & (O_NONBLOCK | O_PATH)) && fcntl((int)fd, F_SETFL, flags & O_APPEND) < 0) {
		ret = -errno;
		goto fail;
	}
	return fd;
fail:
	close((int)fd);
	return ret;
}

long pico_fs_open(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		  unsigned int mode, int directory_only, int *denied)
{
	*denied = 0;
	if (flags & ~OPEN_KNOWN_FLAGS)
		return -EINVAL;
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL;
	if (mode & ~07777u)
		return -EINVAL;
	if ((flags & O_PATH) && (flags & (O_CREAT | O_TRUNC | PICO_OPEN_EXEC)))
		return -EINVAL;
	/* open(2): O_TMPFILE needs O_WRONLY or O_RDWR and excludes O_CREAT. */
	if (is_tmpfile(flags) && ((flags & O_ACCMODE) == O_RDONLY ||
				  (flags & (O_CREAT | O_PATH | PICO_OPEN_EXEC)) || directory_only))
		return -EINVAL;
	if ((flags & TMPFILE_BIT) && !is_tmpfile(flags))
		return -EINVAL; /* the kernel's __O_TMPFILE bit without O_DIRECTORY */
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) == O_RDONLY)
		return -EINVAL; /* Linux leaves it unspecified; refuse it */
	if (directory_only) {
		/* dir: is a read-only listing. */
		if (opens_for_writing(flags) || (flags & PICO_OPEN_EXEC))
			return -EINVAL;
		flags |= O_DIRECTORY;
	}
	struct open_arg a = {.flags = flags, .mode = mode};
	return SERVE(denied, with_path(p, path, len, !(flags & O_NOFOLLOW), open_op, &a));
}

struct stat_arg {
	int nofollow;
	struct statx *out;
};

static long stat_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct stat_arg *a = varg;
	long fd = open_checked_path(p, r, a->nofollow, NULL, a->out);
	if (fd < 0)
		return fd;
	close((int)fd);
	return 0;
}

long pico_fs_stat(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		  struct statx *out, int *denied)
{
	*denied = 0;
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	struct stat_arg a = {.nofollow = !!(flags & AT_SYMLINK_NOFOLLOW), .out = out};
	return SERVE(denied, with_path(p, path, len, !a.nofollow, stat_op, &a));
}

struct readlink_arg {
	char *out;
	size_t cap;
};

static long readlink_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct readlink_arg *a = varg;
	struct stat st;
	long ret;
	long fd = open_checked_path(p, r, 1, &st, NULL);

	if (fd < 0)
		return fd;
	if (!S_ISLNK(st.st_mode))
		ret = -EINVAL;
	else if ((ret = readlinkat((int)fd, "", a->out, a->cap)) < 0)
		ret = -errno;
	close((int)fd);
	return ret;
}

long pico_fs_readlink(const struct pico_fs_policy *p, const char *path, size_t len, char *out,
		      size_t cap, int *denied)
{
	*denied = 0;
	if (cap == 0 || cap > PICO_MAX_PATH)
		return -EINVAL;
	struct readlink_arg a = {.out = out, .cap = cap};
	return SERVE(denied, with_path(p, path, len, 0, readlink_op, &a));
}

struct access_arg {
	int mode;
	int nofollow;
};

static long access_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct access_arg *a = varg;

	if (r->mount && (a->mode & W_OK) && !r->mount->writable)
		return deny(PICO_DENY_READ_ONLY, -EROFS);
	/* A no-exec mount refuses executing files, not searching directories
	 * (as MS_NOEXEC): cd into /etc must work. */
	int dir_only = r->mount && (a->mode & X_OK) && !r->mount->exec;
	struct stat st;
	long fd = open_checked_path(p, r, a->nofollow, dir_only ? &st : NULL, NULL);
	if (fd < 0)
		return fd;
	if (dir_only) {
		if (!S_ISDIR(st.st_mode)) {
			close((int)fd);
			return deny(PICO_DENY_NOEXEC, -EACCES);
		}
	}
	/* AT_EACCESS: check with the thread's fsuid/fsgid (the guest's
	 * identity); without it the kernel would check the real uid. */
	long ret = faccessat((int)fd, "", a->mode, AT_EMPTY_PATH | AT_EACCESS) < 0 ? -errno : 0;
	close((int)fd);
	return ret;
}

long pico_fs_access(const struct pico_fs_policy *p, const char *path, size_t len, int mode,
		    int flags, int *denied)
{
	*denied = 0;
	if (mode & ~(R_OK | W_OK | X_OK))
		return -EINVAL;
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	struct access_arg a = {.mode = mode, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW)};
	return SERVE(denied, with_path(p, path, len, !a.nofollow, access_op, &a));
}

/* Calls that change a name need a writable mount and the parent directory. */
static long writable_parent(const struct resolved *r, struct parent *pa, int root_err)
{
	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	return open_parent(r, pa, root_err);
}

struct name_arg {
	unsigned int mode;
	int flags;
	const char *target; /* symlink */
};

static long mkdir_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EEXIST);
	if (ret < 0)
		return ret;
	ret = mkdirat(pa.fd, pa.name, a->mode) < 0 ? -errno : 0;
	close(pa.fd);
	return ret;
}

long pico_fs_mkdir(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode,
		   int *denied)
{
	*denied = 0;
	if (mode & ~07777u)
		return -EINVAL;
	struct name_arg a = {.mode = mode};
	return SERVE(denied, with_path(p, path, len, 0, mkdir_op, &a));
}

static long mknod_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EEXIST);
	if (ret < 0)
		return ret;
	ret = mknodat(pa.fd, pa.name, a->mode, 0) < 0 ? -errno : 0;
	close(pa.fd);
	return ret;
}

/* mknod(2) for what an unprivileged user may make: a FIFO (the inode only;
 * its pipe exists while it is open, in the kernel of whoever opens it), an
 * empty regular file, a socket inode.  Charged to the mount like any file. */
long pico_fs_mknod(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode,
		   int *denied)
{
	*denied = 0;
	unsigned int type = mode & S_IFMT;
	if (mode & ~(S_IFMT | 07777u))
		return -EINVAL;
	if (type == S_IFCHR || type == S_IFBLK)
		return -EPERM;
	if (type != S_IFIFO && type != S_IFREG && type != S_IFSOCK)
		return -EINVAL;
	struct name_arg a = {.mode = mode};
	return SERVE(denied, with_path(p, path, len, 0, mknod_op, &a));
}

static long unlink_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EBUSY);
	if (ret < 0)
		return ret;
	ret = check_name_not_hidden(p, &pa);
	if (ret == 0 && unlinkat(pa.fd, pa.name, a->flags) < 0)
		ret = -errno;
	close(pa.fd);
	return ret;
}

long pico_fs_unlink(const struct pico_fs_policy *p, const char *path, size_t len, int flags,
		    int *denied)
{
	*denied = 0;
	if (flags & ~AT_REMOVEDIR)
		return -EINVAL;
	struct name_arg a = {.flags = flags};
	return SERVE(denied, with_path(p, path, len, 0, unlink_op, &a));
}

static long symlink_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct name_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EEXIST);
	if (ret < 0)
		return ret;
	/* Stored verbatim: the monitor resolves it later in the guest's
	 * view; the host kernel never follows it (RESOLVE_NO_SYMLINKS). */
	ret = symlinkat(a->target, pa.fd, pa.name) < 0 ? -errno : 0;
	close(pa.fd);
	return ret;
}

long pico_fs_symlink(const struct pico_fs_policy *p, const char *target, size_t target_len,
		     const char *path, size_t len, int *denied)
{
	char text[PICO_MAX_PATH + 1];

	*denied = 0;
	if (target_len == 0)
		return -EINVAL;
	if (target_len > PICO_MAX_PATH)
		return -ENAMETOOLONG;
	if (memchr(target, '\0', target_len))
		return -EINVAL;
	memcpy(text, target, target_len);
	text[target_len] = '\0';
	struct name_arg a = {.target = text};
	return SERVE(denied, with_path(p, path, len, 0, symlink_op, &a));
}

/* rename and link: two names, both resolved, on one writable mount. */
struct two_names {
	struct resolved old;
	struct resolved new;
};

typedef long (*two_op)(struct parent *o, struct parent *n, unsigned int flags);

static long serve_two_names(const struct pico_fs_policy *p, const char *old, size_t old_len,
			    int follow_old, const char *new, size_t new_len, unsigned int flags,
			    two_op op)
{
	struct two_names *t = malloc(sizeof(*t));
	struct parent po, pn;
	long ret = -ELOOP;

	if (!t)
		return -ENOMEM;
	for (int attempt = 0; attempt < RESOLVE_ATTEMPTS && ret == -ELOOP; attempt++) {
		ret = resolve(p, old, old_len, follow_old, &t->old);
		if (ret == 0)
			ret = resolve(p, new, new_len, 0, &t->new);
		if (ret < 0)
			break;
		if (!t->old.mount || !t->new.mount) {
			ret = deny(PICO_DENY_NOT_MOUNTED, -EACCES);
			break;
		}
		if (t->old.mount != t->new.mount) {
			ret = -EXDEV;
			break;
		}
		if (holds_hidden_path(p, t->old.canon, t->old.canon_len) ||
		    holds_hidden_path(p, t->new.canon, t->new.canon_len)) {
			ret = deny(PICO_DENY_HOLDS_HIDDEN, -EACCES);
			break;
		}
		ret = writable_parent(&t->old, &po, -EBUSY);
		if (ret < 0)
			continue;
		ret = open_parent(&t->new, &pn, -EBUSY);
		if (ret < 0) {
			close(po.fd);
			continue;
		}
		ret = check_name_not_hidden(p, &po);
		if (ret == 0)
			ret = check_name_not_hidden(p, &pn);
		if (ret == 0)
			ret = op(&po, &pn, flags);
		close(po.fd);
		close(pn.fd);
	}
	free(t);
	return ret;
}

static long rename_names(struct parent *o, struct parent *n, unsigned int flags)
{
	return renameat2(o->fd, o->name, n->fd, n->name, flags) < 0 ? -errno : 0;
}

long pico_fs_rename(const struct pico_fs_policy *p, const char *old, size_t old_len,
		    const char *new, size_t new_len, unsigned int flags, int *denied)
{
	*denied = 0;
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	return SERVE(denied, serve_two_names(p, old, old_len, 0, new, new_len, flags, rename_names));
}

static long link_names(struct parent *o, struct parent *n, unsigned int flags)
{
	/* Never AT_SYMLINK_FOLLOW on the host: a followed link was already
	 * resolved in the guest's view. */
	return linkat(o->fd, o->name, n->fd, n->name, 0) < 0 ? -errno : 0;
}

long pico_fs_link(const struct pico_fs_policy *p, const char *old, size_t old_len, const char *new,
		  size_t new_len, int flags, int *denied)
{
	*denied = 0;
	if (flags & ~AT_SYMLINK_FOLLOW)
		return -EINVAL;
	return SERVE(denied, serve_two_names(p, old, old_len, !!(flags & AT_SYMLINK_FOLLOW), new,
					     new_len, 0, link_names));
}

/* Attribute changes on the resolved object, through an O_PATH fd: no host
 * path is resolved again, so a name swapped for a link meanwhile cannot
 * redirect the change. */
enum attr_change { ATTR_CHMOD, ATTR_CHOWN, ATTR_UTIMENS };

struct attr_arg {
	enum attr_change which;
	int nofollow;
	unsigned int mode;
	unsigned int uid, gid;
	const struct timespec *times;
};

static long attr_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct attr_arg *a = varg;
	long ret;

	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	long fd = open_checked_path(p, r, a->nofollow, NULL, NULL);
	if (fd < 0)
		return fd;
	switch (a->which) {
	case ATTR_CHMOD:
		ret = syscall(SYS_fchmodat2, (int)fd, "", a->mode, AT_EMPTY_PATH);
		break;
	case ATTR_CHOWN:
		ret = fchownat((int)fd, "", a->uid, a->gid, AT_EMPTY_PATH);
		break;
	default:
		ret = utimensat((int)fd, "", a->times, AT_EMPTY_PATH);
		break;
	}
	ret = ret < 0 ? -errno : 0;
	close((int)fd);
	return ret;
}

struct xattr_arg {
	unsigned int op; /* PICO_XATTR_* without flags */
	int nofollow, set_flags;
	const char *name;
	void *value;
	size_t size;
};

/* Extended attributes through the object pinned O_PATH, by the monitor's own
 * /proc/self/fd link to it (the *xattr calls take no O_PATH fd before Linux
 * 6.13's *xattrat), so no guest path is looked up twice; as the guest
 * identity, so the host's permissions decide.  Changes only in writable
 * mounts and only in the user. namespace: trusted., security. and the ACLs
 * stay the host's business. */
static long xattr_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct xattr_arg *a = varg;
	char proc[32];
	long ret;

	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (a->op == PICO_XATTR_SET || a->op == PICO_XATTR_REMOVE) {
		if (r->mount->writable != PICO_MOUNT_RW)
			return deny_change(r->mount);
		if (strncmp(a->name, "user.", 5) != 0)
			return deny(PICO_DENY_XATTR_NAMESPACE, -EPERM);
	}
	long fd = open_checked_path(p, r, a->nofollow, NULL, NULL);
	if (fd < 0)
		return fd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (int)fd);
	switch (a->op) {
	case PICO_XATTR_GET: ret = getxattr(proc, a->name, a->value, a->size); break;
	case PICO_XATTR_LIST: ret = listxattr(proc, a->value, a->size); break;
	case PICO_XATTR_SET: ret = setxattr(proc, a->name, a->value, a->size, a->set_flags); break;
	default: ret = removexattr(proc, a->name); break;
	}
	ret = ret < 0 ? -errno : ret;
	close((int)fd);
	return ret;
}

long pico_fs_xattr(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int op,
		   const char *name, void *value, size_t size, int *denied)
{
	*denied = 0;
	struct xattr_arg a = {.op = op & 7, .nofollow = !!(op & PICO_XATTR_NOFOLLOW),
			      .set_flags = (int)((op >> 4) & 3), .name = name, .value = value, .size = size};
	if (a.op > PICO_XATTR_REMOVE || (a.set_flags && a.op != PICO_XATTR_SET) || a.set_flags == 3)
		return -EINVAL;
	return SERVE(denied, with_path(p, path, len, !a.nofollow, xattr_op, &a));
}

long pico_fs_chmod(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int mode,
		   int flags, int *denied)
{
	*denied = 0;
	if ((mode & ~07777u) || (flags & ~AT_SYMLINK_NOFOLLOW))
		return -EINVAL;
	struct attr_arg a = {.which = ATTR_CHMOD, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW),
			     .mode = mode};
	return SERVE(denied, with_path(p, path, len, !a.nofollow, attr_op, &a));
}

long pico_fs_chown(const struct pico_fs_policy *p, const char *path, size_t len, unsigned int uid,
		   unsigned int gid, int flags, int *denied)
{
	*denied = 0;
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	struct attr_arg a = {.which = ATTR_CHOWN, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW),
			     .uid = uid, .gid = gid};
	return SERVE(denied, with_path(p, path, len, !a.nofollow, attr_op, &a));
}

static int valid_nsec(long nsec)
{
	return (nsec >= 0 && nsec <= 999999999) || nsec == UTIME_NOW || nsec == UTIME_OMIT;
}

long pico_fs_utimens(const struct pico_fs_policy *p, const char *path, size_t len,
		     const struct timespec *times, int flags, int *denied)
{
	*denied = 0;
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	if (times && (!valid_nsec(times[0].tv_nsec) || !valid_nsec(times[1].tv_nsec)))
		return -EINVAL;
	struct attr_arg a = {.which = ATTR_UTIMENS, .nofollow = !!(flags & AT_SYMLINK_NOFOLLOW),
			     .times = times};
	return SERVE(denied, with_path(p, path, len, !a.nofollow, attr_op, &a));
}

static long truncate_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	long length = *(long *)varg;
	struct stat before, st;
	long ret = 0;

	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	if (r->mount->writable != PICO_MOUNT_RW)
		return deny_change(r->mount);
	/* Look before opening for writing: truncate(2) refuses anything but a
	 * regular file, and opening a FIFO or a device for writing could have
	 * effects of its own. */
	long fd = open_checked_path(p, r, 0, &before, NULL);
	if (fd < 0)
		return fd;
	close((int)fd);
	if (S_ISDIR(before.st_mode))
		return -EISDIR;
	if (!S_ISREG(before.st_mode))
		return -EINVAL;
	/* Non-blocking in case the name was swapped for a FIFO meanwhile; the
	 * object opened must be the one checked. */
	fd = open_resolved(r, O_WRONLY | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0)
		return fd;
	if (fstat((int)fd, &st) < 0)
		ret = -errno;
	else if (st.st_dev != before.st_dev || st.st_ino != before.st_ino)
		ret = -EAGAIN;
	else if (ftruncate((int)fd, length) < 0)
		ret = -errno;
	close((int)fd);
	return ret;
}

long pico_fs_truncate(const struct pico_fs_policy *p, const char *path, size_t len, long length,
		      int *denied)
{
	*denied = 0;
	if (length < 0)
		return -EINVAL;
	return SERVE(denied, with_path(p, path, len, 1, truncate_op, &length));
}

static long statfs_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	long fd = open_checked_path(p, r, 0, NULL, NULL);
	if (fd < 0)
		return fd;
	long ret = fstatfs((int)fd, (struct statfs *)varg) < 0 ? -errno : 0;
	close((int)fd);
	return ret;
}

long pico_fs_statfs(const struct pico_fs_policy *p, const char *path, size_t len,
		    struct statfs *out, int *denied)
{
	*denied = 0;
	return SERVE(denied, with_path(p, path, len, 1, statfs_op, out));
}

/* ---------------------------------------------------------------------- */
/* AF_UNIX sockets named in the guest's view                               */

/* A socket name is a name like any other (hidden paths and names apply),
 * and only writable mounts hold the guest's sockets: a read-only mount of
 * a host directory does not grant its sockets (the manifest's unix grants
 * do that, by host path: net.h). */
struct unix_arg {
	unsigned int mode;
	int nonblock;
};

static long unix_listen_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct unix_arg *a = varg;
	struct parent pa;
	long ret = writable_parent(r, &pa, -EADDRINUSE);
	if (ret < 0)
		return ret;
	ret = check_name_not_hidden(p, &pa);
	if (ret == 0)
		ret = pico_net_unix_listen_at(pa.fd, pa.name, a->mode, a->nonblock);
	close(pa.fd);
	return ret;
}

long pico_fs_unix_listen(const struct pico_fs_policy *p, const char *path, size_t len,
			 unsigned int mode, int nonblock, int *denied)
{
	*denied = 0;
	if (mode & ~0777u)
		return -EINVAL;
	struct unix_arg a = {.mode = mode, .nonblock = nonblock};
	/* bind(2) never follows a last component that is a link. */
	return SERVE(denied, with_path(p, path, len, 0, unix_listen_op, &a));
}

static long unix_connect_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct unix_arg *a = varg;

	/* A socket the guest did not make: what would grant it is a unix
	 * grant (net.h), not a mount. */
	if (!r->mount || r->mount->writable != PICO_MOUNT_RW)
		return deny(PICO_DENY_NET, -EACCES);
	long fd = open_checked_path(p, r, 0, NULL, NULL);
	if (fd < 0)
		return fd;
	long ret = pico_net_unix_connect_fd((int)fd, a->nonblock);
	close((int)fd);
	return ret;
}

long pico_fs_unix_connect(const struct pico_fs_policy *p, const char *path, size_t len,
			  int nonblock, int *denied)
{
	*denied = 0;
	struct unix_arg a = {.nonblock = nonblock};
	return SERVE(denied, with_path(p, path, len, 1, unix_connect_op, &a));
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

struct inotify_arg {
	int ifd;
	uint32_t mask;
};

/* A watch on the resolved object, through the monitor's own /proc/self/fd
 * link to it pinned O_PATH: no guest path is looked up by the kernel.  Only
 * in writable mounts: what the guest itself may change. */
static long inotify_op(const struct pico_fs_policy *p, const struct resolved *r, void *varg)
{
	struct inotify_arg *a = varg;
	char proc[32];
	if (!r->mount)
		return deny(PICO_DENY_NOT_MOUNTED, -EACCES);
	/* A missing name is ENOENT wherever it is, as on Linux. */
	long fd = open_checked_path(p, r, !!(a->mask & IN_DONT_FOLLOW), NULL, NULL);
	if (fd < 0)
		return fd;
	if (r->mount->writable != PICO_MOUNT_RW) {
		close((int)fd);
		return deny(PICO_DENY_READ_ONLY, -EACCES);
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (int)fd);
	/* IN_DONT_FOLLOW was the resolution's business; on the link to the
	 * pinned object it would watch the link instead. */
	long ret = inotify_add_watch(a->ifd, proc, a->mask & ~(uint32_t)IN_DONT_FOLLOW);
	ret = ret < 0 ? -errno : ret;
	close((int)fd);
	return ret;
}

long pico_fs_inotify_watch(const struct pico_fs_policy *p, const char *path, size_t len, int ifd,
			   uint32_t mask, int *denied)
{
	*denied = 0;
	struct inotify_arg a = {ifd, mask};
	return SERVE(denied, with_path(p, path, len, !(mask & IN_DONT_FOLLOW), inotify_op, &a));
}
