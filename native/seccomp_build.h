/* libseccomp entry points the ABI generator drives from Python (picoproc.abi.bpf).
 *
 * The filter is compiled by libseccomp (binary-tree optimised) and exported as
 * raw BPF; the monitor loads those bytes itself with seccomp(2) in the child,
 * so the child never calls into libseccomp after fork. */
#ifndef PICO_SECCOMP_BUILD_H
#define PICO_SECCOMP_BUILD_H
#include <seccomp.h>
#include <stdlib.h>

/* Declarations for cffi only: the C side already has them from <seccomp.h>. */
#if 0
/* cffi:begin */
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;
enum scmp_compare {
	SCMP_CMP_NE = 1,
	SCMP_CMP_LT = 2,
	SCMP_CMP_LE = 3,
	SCMP_CMP_EQ = 4,
	SCMP_CMP_GE = 5,
	SCMP_CMP_GT = 6,
	SCMP_CMP_MASKED_EQ = 7,
	...
};
struct scmp_arg_cmp {
	unsigned int arg;
	enum scmp_compare op;
	scmp_datum_t datum_a;
	scmp_datum_t datum_b;
};
enum scmp_filter_attr {
	SCMP_FLTATR_ACT_DEFAULT,
	SCMP_FLTATR_ACT_BADARCH,
	SCMP_FLTATR_CTL_NNP,
	SCMP_FLTATR_CTL_OPTIMIZE,
	...
};
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
int seccomp_rule_add_exact_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
				 unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_syscall_resolve_name(const char *name);
/* For filters that cover several architectures (the container backend's
 * copy of Docker's profile adds x86 and x32, as Docker does). */
uint32_t seccomp_arch_resolve_name(const char *arch_name);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
			   unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
char *seccomp_syscall_resolve_num_arch(uint32_t arch_token, int num);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
struct scmp_version {
	unsigned int major;
	unsigned int minor;
	unsigned int micro;
};
const struct scmp_version *seccomp_version(void);
void free(void *ptr);
/* cffi:end */
#endif

#endif
