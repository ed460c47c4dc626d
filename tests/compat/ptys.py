"""Pseudo-terminals: openpty, termios, window size, a child on the slave (pty.fork),
/dev/ptmx and the names under /dev/pts."""
import os, pty, struct, sys, termios, tty, fcntl, errno, stat
m, s = os.openpty()
print("isatty", os.isatty(m), os.isatty(s), os.ttyname(s).startswith("/dev/pts/"))
print("slave is a char device", stat.S_ISCHR(os.stat(os.ttyname(s)).st_mode))
os.write(m, b"to the slave\n")
print(os.read(s, 100))
os.write(s, b"to the master\n")
# the echo of what the master sent, then the slave's line (the kernel moves
# each across on its own time: read until both are there, boundedly)
import select
got = b""
while b"to the master" not in got and select.select([m], [], [], 5)[0]:
    got += os.read(m, 100)
print(got)
tty.setraw(s)
attrs = termios.tcgetattr(s)
print("raw", attrs[3] & (termios.ICANON | termios.ECHO), attrs[6][termios.VMIN])
fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
print("winsize", struct.unpack("HHHH", fcntl.ioctl(m, termios.TIOCGWINSZ, b"\0" * 8))[:2])
termios.tcflush(s, termios.TCIOFLUSH)
os.close(s)
try:
    while os.read(m, 100):
        pass
except OSError as e:
    print("master after the slave closed", errno.errorcode[e.errno])
os.close(m)
# a child on the slave, as shells, REPLs and expect-like tools run one
sys.stdout.flush()
pid, fd = pty.fork()
if pid == 0:
    print("child: tty", os.isatty(0), os.isatty(1), flush=True)
    try:
        os.setsid()
    except OSError as e:
        print("child: setsid again", errno.errorcode[e.errno], flush=True)
    os._exit(5)
out = b""
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
print(out.replace(b"\r\n", b"\n").decode(), end="")
print("child status", os.waitstatus_to_exitcode(status))
# /dev/ptmx directly
mfd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
print("ptmx", os.isatty(mfd), os.ptsname(mfd).startswith("/dev/pts/") if hasattr(os, "ptsname") else True)
