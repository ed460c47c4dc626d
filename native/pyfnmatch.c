/* The rule of hidden names (the manifest's hidden_names): a clone of
 * Python's fnmatch.fnmatchcase, which the manifest's own check
 * (picoproc.manifest.hidden_name_matches) uses, so that the monitor refuses
 * exactly the names the manifest says it hides.
 *
 * Python's semantics, not glibc's fnmatch(3), which differs on `[^...]`
 * (a negation there, a literal `^` in Python), `\` (an escape there, a
 * plain character in Python), `[[:class:]]` and with the locale: `*`, `?`,
 * `[...]` and `[!...]` (ranges; `]` first is a member; an unclosed `[` is a
 * literal), case-sensitive, over the characters of the UTF-8 text, an
 * undecodable byte being a character of its own as os.fsdecode
 * (surrogateescape) makes it.
 *
 * tests/test_mediated.py, test_hidden_name_rule_agrees_with_python_on_a_table
 * and ..._on_generated_pairs, compare this code (pico_fs_hidden_name_matches)
 * with Python's fnmatch on every corner of fnmatch.translate; a change here
 * must keep them passing. */
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

/* A hidden name, compiled: one token per character of the pattern. */
enum name_token_kind { TOKEN_CHAR, TOKEN_ANY, TOKEN_STAR, TOKEN_SET };

struct name_token {
	uint8_t kind;
	uint8_t negated;      /* TOKEN_SET: `[!...]` */
	uint16_t first_range; /* TOKEN_SET: its ranges[first_range .. + nranges) */
	uint16_t nranges;
	uint32_t code;	      /* TOKEN_CHAR: the code point */
};

struct name_pattern {
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
static void compile_set(struct name_pattern *h, const uint32_t *pat, size_t i, size_t j)
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
static int compile_hidden_name(const char *pattern, size_t len, struct name_pattern *h)
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

static int token_matches(const struct name_pattern *h, const struct name_token *t, uint32_t c)
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
static int glob_matches(const struct name_pattern *h, const uint32_t *s, size_t n)
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
int name_pattern_matches(const struct name_pattern *h, const char *name, size_t len)
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

struct name_pattern *name_pattern_compile(const char *pattern, size_t len, int *err)
{
	struct name_pattern *h = malloc(sizeof(*h));
	if (!h) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = compile_hidden_name(pattern, len, h);
	if (*err < 0) {
		free(h);
		return NULL;
	}
	return h;
}

int pico_fs_hidden_name_matches(const char *pattern, size_t pattern_len, const char *name,
				size_t name_len)
{
	struct name_pattern *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	int ret = compile_hidden_name(pattern, pattern_len, h);
	if (ret == 0 && (name_len == 0 || memchr(name, '/', name_len) || memchr(name, '\0', name_len)))
		ret = -EINVAL;
	if (ret == 0 && name_len > NAME_MAX)
		ret = -ENAMETOOLONG;
	if (ret == 0)
		ret = name_pattern_matches(h, name, name_len);
	free(h);
	return ret;
}
