/* The signalfd through which a run reads the signals sent to picoproc
 * (sandbox/signals.py, SignalRelay): created here so that the command line
 * needs no ctypes to make one. */
#ifndef PICO_SIGRELAY_H
#define PICO_SIGRELAY_H

/* cffi:begin */
/* A new non-blocking, close-on-exec signalfd for the n signals in signos
 * (which the caller has blocked).  Returns the fd, or -errno (EINVAL for a
 * signal number out of range). */
int pico_signalfd(const int *signos, int n);
/* cffi:end */

#endif
