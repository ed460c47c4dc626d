"""FIFOs: mkfifo, mknod, and the blocking opens of readers and writers."""
import os, stat, errno, tempfile, threading
d = tempfile.mkdtemp()
p = os.path.join(d, "fifo")
os.mkfifo(p, 0o640)
st = os.stat(p); print(stat.S_ISFIFO(st.st_mode), oct(st.st_mode & 0o777))
os.mknod(os.path.join(d, "node"), 0o600 | stat.S_IFIFO); print(stat.S_ISFIFO(os.stat(os.path.join(d, "node")).st_mode))
os.mknod(os.path.join(d, "reg"), 0o600); print(stat.S_ISREG(os.stat(os.path.join(d, "reg")).st_mode))
try: os.mknod(os.path.join(d, "dev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
except OSError as e: print("chr", errno.errorcode[e.errno])
try: os.mkfifo(p)
except OSError as e: print("again", errno.errorcode[e.errno])
try: os.open(p, os.O_WRONLY | os.O_NONBLOCK)
except OSError as e: print("nonblock writer", errno.errorcode[e.errno])
# a writer and a reader meet
def writer():
    with open(p, "w") as f: f.write("through the fifo\n")
t = threading.Thread(target=writer); t.start()
with open(p) as f: print(f.read(), end="")
t.join()
# reader first, writer later
def reader(out):
    with open(p) as f: out.append(f.read())
out = []; t = threading.Thread(target=reader, args=(out,)); t.start()
import time; time.sleep(0.1)
with open(p, "w") as f: f.write("second\n")
t.join(); print(out)
# a shell pipeline through it
import subprocess
print(subprocess.run(["sh", "-c", f"(echo via shell > {p} &); cat {p}"], capture_output=True, text=True).stdout, end="")
