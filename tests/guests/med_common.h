/* Shared helpers for the mediated-call test guests (med_*.c): Linux
 * constants and structures the freestanding guests need, number parsing
 * and result printing. */
#ifndef PICO_MED_COMMON_H
#define PICO_MED_COMMON_H

#include "guest.h"

#define O_RDONLY 0
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_EXCL 0200
#define O_TRUNC 01000
#define O_APPEND 02000
#define O_NONBLOCK 04000
#define O_DIRECTORY 0200000
#define O_NOFOLLOW 0400000
#define O_CLOEXEC 02000000
#define O_PATH 010000000
#define AT_SYMLINK_NOFOLLOW 0x100
#define AT_REMOVEDIR 0x200
#define AT_SYMLINK_FOLLOW 0x400
#define NR_close 3
#define NR_fcntl 72
#define NR_getdents64 217
#define NR_getpid 39
#define NR_clock_gettime 228
#define F_GETFD 1
#define F_GETFL 3

/* struct statx (256 bytes): the fields the tests look at. */
struct statx {
	unsigned int stx_mask;
	unsigned int stx_blksize;
	unsigned long stx_attributes;
	unsigned int stx_nlink;
	unsigned int stx_uid;
	unsigned int stx_gid;
	unsigned short stx_mode;
	unsigned short pad0;
	unsigned long stx_ino;
	unsigned long stx_size;
	unsigned long rest[26];
};

/* struct statfs (x86-64, 120 bytes). */
struct statfs {
	long f_type;
	long f_bsize;
	unsigned long f_blocks;
	unsigned long f_bfree;
	unsigned long f_bavail;
	unsigned long f_files;
	unsigned long f_ffree;
	long f_fsid;
	long f_namelen;
	long f_frsize;
	long f_flags;
	long f_spare[4];
};

struct timespec {
	long tv_sec;
	long tv_nsec;
};

/* Parses decimal, 0x hex or 0-prefixed octal (like strtol base 0). */
static inline long g_atol(const char *s)
{
	long v = 0;
	int neg = 0, base = 10;
	if (*s == '-') {
		neg = 1;
		s++;
	}
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	} else if (s[0] == '0' && s[1]) {
		base = 8;
		s++;
	}
	for (; *s; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		if (d >= base)
			break;
		v = v * base + d;
	}
	return neg ? -v : v;
}

static inline void g_putoct(unsigned long v)
{
	char buf[24];
	int i = 23;
	buf[i--] = 0;
	do {
		buf[i--] = (char)('0' + (v & 7));
		v >>= 3;
	} while (v);
	g_puts(&buf[i + 1]);
}

/* "name: ok" / "name: err N" (N the positive errno). */
static inline int g_report(const char *name, long ret)
{
	g_puts(name);
	if (ret < 0) {
		g_puts(": err ");
		g_putnum(-ret);
	} else {
		g_puts(": ok");
	}
	return ret < 0;
}

static inline long g_now_ns(void)
{
	struct timespec ts;
	sys2(NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

#endif
