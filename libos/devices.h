/* The host devices a picoprocess sees under /dev: the one list.
 *
 * The library OS opens /dev/NAME through the monitor (pico_open
 * "file:/dev/NAME", special.c) and shows the character device 1:MINOR;
 * the monitor mounts the same host files, data only (picoproc.libos
 * reads this list from this very file for sandbox/monitor.py), so the two
 * sides cannot disagree about which devices exist.  They are the stateless
 * ones that hold no host data.  Keep each row on one line, in the form
 * LIBOS_DEVICE(name, minor): Python reads the rows with a pattern. */
#ifndef LIBOS_DEVICES_H
#define LIBOS_DEVICES_H

#define LIBOS_DEVICES(LIBOS_DEVICE) \
	LIBOS_DEVICE(null, 3)       \
	LIBOS_DEVICE(zero, 5)       \
	LIBOS_DEVICE(full, 7)       \
	LIBOS_DEVICE(random, 8)     \
	LIBOS_DEVICE(urandom, 9)

#endif
