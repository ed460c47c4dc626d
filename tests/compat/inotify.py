"""inotify on a scratch directory: events of create, modify, close, rename, delete; errors."""
import os, struct, select, errno, tempfile, ctypes
libc = ctypes.CDLL(None, use_errno=True)
d = tempfile.mkdtemp()
fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
print("init", fd >= 0)
IN_CREATE, IN_DELETE, IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_DONT_FOLLOW, IN_ONLYDIR = 0x100, 0x200, 0x2, 0x8, 0x80, 0x2000000, 0x1000000
wd = libc.inotify_add_watch(fd, d.encode(), IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO)
print("watch", wd)
with open(os.path.join(d, "a.txt"), "w") as f: f.write("x")
os.rename(os.path.join(d, "a.txt"), os.path.join(d, "b.txt"))
os.unlink(os.path.join(d, "b.txt"))
select.select([fd], [], [], 5)
buf = os.read(fd, 4096)
events = []
while buf:
    w, mask, cookie, ln = struct.unpack_from("iIII", buf)
    name = buf[16:16 + ln].rstrip(b"\0").decode()
    events.append((w == wd, hex(mask), name)); buf = buf[16 + ln:]
print(events)
try: os.read(fd, 4096)
except OSError as e: print("empty", errno.errorcode[e.errno])
print("rm", libc.inotify_rm_watch(fd, wd), libc.inotify_rm_watch(fd, wd), errno.errorcode[ctypes.get_errno()])
r = libc.inotify_add_watch(fd, b"/nonexistent/x", IN_CREATE); print("missing", r, errno.errorcode[ctypes.get_errno()])
open(os.path.join(d, "f"), "w").close()
r = libc.inotify_add_watch(fd, os.path.join(d, "f").encode(), IN_ONLYDIR | IN_CREATE); print("onlydir", r, errno.errorcode[ctypes.get_errno()])
r = libc.inotify_add_watch(0, d.encode(), IN_CREATE); print("not inotify", r, errno.errorcode[ctypes.get_errno()])
