"""pidfds of the picoprocess's own processes: open, poll for exit, signal, errors."""
import os, signal, select, errno, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
fd = os.pidfd_open(os.getpid())
signal.pidfd_send_signal(fd, signal.SIGUSR1)
print("self", got)
pid = os.fork()
if pid == 0:
    time.sleep(0.2)
    os._exit(3)
cfd = os.pidfd_open(pid)
p = select.poll(); p.register(cfd, select.POLLIN)
print("running", p.poll(0))
print("exited", p.poll(5000) != [])
try: signal.pidfd_send_signal(cfd, signal.SIGTERM)
except OSError as e: print("after exit", errno.errorcode[e.errno])
print(os.waitpid(pid, 0)[1] >> 8)
try: os.pidfd_open(999999)
except OSError as e: print("no such", errno.errorcode[e.errno])
try: signal.pidfd_send_signal(0, signal.SIGUSR1)
except OSError as e: print("not a pidfd", errno.errorcode[e.errno])
pid = os.fork()
if pid == 0:
    signal.pause() if hasattr(signal, "pause") else None
    os._exit(0)
cfd = os.pidfd_open(pid, os.PIDFD_NONBLOCK if hasattr(os, "PIDFD_NONBLOCK") else 0)
signal.pidfd_send_signal(cfd, signal.SIGKILL)
print("killed", os.waitpid(pid, 0)[1])
