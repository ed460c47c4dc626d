"""Accepting signals: sigwait, sigwaitinfo, sigtimedwait (poll, timeout, queued real-time
signals, another thread), and the program's own disposition around them."""
import os, signal, threading, time
U1, U2 = signal.SIGUSR1, signal.SIGUSR2
signal.pthread_sigmask(signal.SIG_BLOCK, [U1, U2, signal.SIGRTMIN])
os.kill(os.getpid(), U1)
print("sigwait", signal.sigwait([U1, U2]) == U1)
signal.raise_signal(U2)
info = signal.sigwaitinfo([U2])
print("sigwaitinfo", info.si_signo == U2, info.si_pid == os.getpid(), info.si_code)
print("poll empty", signal.sigtimedwait([U1], 0))
os.kill(os.getpid(), U1)
print("poll pending", signal.sigtimedwait([U1], 0).si_signo == U1)
t0 = time.monotonic()
print("timeout", signal.sigtimedwait([U1], 0.05), time.monotonic() - t0 >= 0.04)
# queued real-time signals: each one taken once, in order
for v in range(3):
    signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN)
print("rt", [signal.sigtimedwait([signal.SIGRTMIN], 0) is not None for _ in range(4)])
# another thread sends while we wait
th = threading.Thread(target=lambda: (time.sleep(0.05), os.kill(os.getpid(), U2)))
th.start()
print("from thread", signal.sigwait([U2]) == U2)
th.join()
# a handled signal outside the set interrupts the wait (PEP 475 retries, the handler ran)
got = []
signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
signal.setitimer(signal.ITIMER_REAL, 0.05)
print("other handler", signal.sigtimedwait([U1], 0.3), got)
# the program's handler is back after the wait, and pending signals still go to it
signal.signal(U1, lambda s, f: got.append(s))
os.kill(os.getpid(), U1)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [U1])
print("handler after", got)
print("pending", signal.sigpending())
try:
    signal.sigtimedwait([U1], -1)
except ValueError as e:
    print("negative", e)
