/* Why the monitor refused a call: the reason code of a denial.
 *
 * A refusal by policy (the audit decision "deny") carries one of these in
 * its audit record (struct pico_audit_record.reason), so that whoever reads
 * the record can tell the user which rule of the manifest refused the call
 * and what would grant it, without re-deciding anything.  The code is set
 * where the refusal is decided (pico_deny, below), which costs one store on
 * a path that already refuses; 0 for every call that was not denied. */
#ifndef PICO_DENIAL_H
#define PICO_DENIAL_H

/* cffi:begin */
#define PICO_DENY_NONE 0
/* The path is outside every mount (or is one of the directories that only
 * lead to mount points, where nothing may be created). */
#define PICO_DENY_NOT_MOUNTED 1
/* A component of the resolved path is a hidden path (manifest `hidden`). */
#define PICO_DENY_HIDDEN_PATH 2
/* A component of the resolved path matches a hidden name (`hidden_names`). */
#define PICO_DENY_HIDDEN_NAME 3
/* The object reached is a hidden path's by its inode (a hard link of it, or
 * another mount showing it), or could not be looked at while hidden objects
 * exist. */
#define PICO_DENY_HIDDEN_OBJECT 4
/* A change (write, create, remove, rename, attributes) on a read-only mount. */
#define PICO_DENY_READ_ONLY 5
/* Executing a file from a mount without exec. */
#define PICO_DENY_NOEXEC 6
/* Changing a host device file the library OS shows (/dev/null ...): data only. */
#define PICO_DENY_DEVICE 7
/* The path crosses a host mount point below the granted directory. */
#define PICO_DENY_HOST_MOUNT 8
/* A rename of a directory that holds a hidden path. */
#define PICO_DENY_HOLDS_HIDDEN 9
/* A network endpoint (tcp:, udp:, tcp.srv:, unix:) the manifest does not grant. */
#define PICO_DENY_NET 10
/* Setting or removing an extended attribute outside the user. namespace. */
#define PICO_DENY_XATTR_NAMESPACE 11
/* A terminal request on a terminal that is not the run's own pseudo-terminal
 * (a host terminal the guest inherited never changes). */
#define PICO_DENY_HOST_TERMINAL 12
/* A bound per run (inotify instances and watches) was reached. */
#define PICO_DENY_RUN_BOUND 13
/* cffi:end */

/* How "denied" travels, the one way: pico_denial, the serving thread's
 * reason code for the call it is serving.  The loop clears it before each
 * call and reads it once, when it answers; whatever refuses by policy, in a
 * handler or deep in a path walk, returns through pico_deny(reason, -errno).
 * A thread-local, not an out-parameter or a field of the call: a call is
 * served from notification to answer by one thread, and the refusals are
 * decided many frames below the handler (resolution, the hidden checks),
 * where a parameter would have to pass through every function for the one
 * store a refusal costs.  (Python threads building a policy may set their
 * own copy; nothing reads it.) */
extern __thread int pico_denial;

static inline long pico_deny(int reason, long err)
{
	pico_denial = reason;
	return err;
}

#endif
