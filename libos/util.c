/* Freestanding string and memory helpers (the library OS has no libc). */
#include "libos.h"

/* rep movsb / rep stosb: fast on every x86-64 with ERMS, and the handler's
 * copies (struct utsname, paths, stat buffers) were a measurable part of an
 * emulated call with byte loops. */
void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else if (d > s) {
		while (n--)
			d[n] = s[n];
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t libos_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

size_t libos_strnlen(const char *s, size_t max)
{
	size_t n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

int libos_streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

int libos_startswith(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return 0;
	return 1;
}

int libos_parse_ulong(const char *s, unsigned base, unsigned long *out)
{
	unsigned long v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d >= base)
			return -1;
		if (v > (~0UL - d) / base)
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

size_t libos_format_ulong(char *buf, unsigned long v)
{
	char tmp[21];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = 0;
	return n;
}

void sb_init(struct strbuf *sb, char *buf, size_t cap)
{
	sb->buf = buf;
	sb->cap = cap;
	sb->len = 0;
	sb->overflow = 0;
	if (cap)
		buf[0] = 0;
}

void sb_addn(struct strbuf *sb, const char *s, size_t n)
{
	size_t room = sb->len + 1 < sb->cap ? sb->cap - 1 - sb->len : 0;
	if (n > room) {
		sb->overflow = 1;
		n = room;
	}
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	if (sb->len < sb->cap)
		sb->buf[sb->len] = 0;
}

void sb_end_string(struct strbuf *sb)
{
	if (sb->len < sb->cap)
		sb->buf[sb->len++] = 0;
	else
		sb->overflow = 1;
}

void sb_add(struct strbuf *sb, const char *s)
{
	sb_addn(sb, s, libos_strlen(s));
}

void sb_addnum(struct strbuf *sb, unsigned long v)
{
	char tmp[24];
	size_t n = libos_format_ulong(tmp, v);
	sb_addn(sb, tmp, n);
}

void libos_write_stderr(const char *msg, size_t len)
{
	while (len) {
		long n = sys3(__NR_write, STDERR_FD, msg, len);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			return;
		msg += n;
		len -= (size_t)n;
	}
}
