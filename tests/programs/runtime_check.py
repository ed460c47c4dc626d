"""What a Python program does every day, printed in a fixed order so that
its output inside a picoprocess can be compared with its output natively:
multiprocessing (Pool, Queue, Manager, every start method), asyncio
subprocesses and servers, concurrent.futures with threads and processes."""

import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import subprocess
import sys


def square(x):
    return x * x


def producer(q, n):
    for i in range(n):
        q.put(i * i)
    q.put(None)


def with_method(method):
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(3) as pool:
        squares = pool.map(square, range(10))
    q = ctx.Queue()
    p = ctx.Process(target=producer, args=(q, 5))
    p.start()
    got = []
    while (item := q.get(timeout=60)) is not None:
        got.append(item)
    p.join(60)
    print("multiprocessing", method, sum(squares), got, p.exitcode)


def manager():
    with multiprocessing.Manager() as m:
        d = m.dict()
        lock = m.Lock()
        with lock:
            d["a"] = 1
        with concurrent.futures.ProcessPoolExecutor(2) as ex:
            list(ex.map(square, range(3)))
        print("manager", dict(d))


async def handle(reader, writer):
    line = await reader.readline()
    writer.write(b"hello " + line)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def asyncio_part():
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "read x; echo got $x; exit 6",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(b"line\n")
    print("asyncio subprocess", out.decode().strip(), proc.returncode)
    shell = await asyncio.create_subprocess_shell("echo $((6 * 7))", stdout=asyncio.subprocess.PIPE)
    print("asyncio shell", (await shell.stdout.read()).decode().strip(), await shell.wait())

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    replies = []
    for name in ("a", "b", "c"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(name.encode() + b"\n")
        await writer.drain()
        replies.append((await reader.read()).decode().strip())
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()
    print("asyncio server", replies)

    unix = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pycheck-{os.getpid()}.sock")
    userver = await asyncio.start_unix_server(handle, unix)
    reader, writer = await asyncio.open_unix_connection(unix)
    writer.write(b"unix\n")
    print("asyncio unix", (await reader.read()).decode().strip())
    writer.close()
    userver.close()
    await userver.wait_closed()
    os.unlink(unix)

    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "usr1")
    os.kill(os.getpid(), signal.SIGUSR1)
    print("asyncio signal", await asyncio.wait_for(got, 30))
    await asyncio.sleep(0.01)


def main(parts):
    for method in ("fork", "forkserver", "spawn"):
        if method in parts:
            with_method(method)
    if "futures" in parts:
        manager()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            print("threads", sum(ex.map(square, range(100))))
        with concurrent.futures.ProcessPoolExecutor(2) as ex:
            futures = [ex.submit(square, i) for i in range(20)]
            print("processes", sum(f.result() for f in concurrent.futures.as_completed(futures)))
    if "asyncio" in parts:
        asyncio.run(asyncio_part())
        out = subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True, text=True, check=True)
        print("subprocess", out.stdout.strip())


if __name__ == "__main__":
    # The parts to run (default all): fork forkserver spawn futures asyncio.
    main(sys.argv[1:] or ["fork", "forkserver", "spawn", "futures", "asyncio"])
