// What a Java program does every day, printed in a fixed order so that its
// output inside a picoprocess can be compared with its output natively:
// threads and executors, NIO files and a socket channel on loopback,
// ProcessBuilder.  Run as a single-file program: java RuntimeCheck.java.
import java.io.*;
import java.net.*;
import java.nio.*;
import java.nio.channels.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import java.util.stream.*;

public class RuntimeCheck {
    public static void main(String[] args) throws Exception {
        // threads: an executor's futures and plain threads with a shared counter
        ExecutorService pool = Executors.newFixedThreadPool(4);
        List<Future<Long>> parts = new ArrayList<>();
        for (int p = 0; p < 8; p++) {
            final int part = p;
            parts.add(pool.submit(() -> {
                long s = 0;
                for (int i = 0; i < 1_000_000; i++) s += (i * (long) part) % 11;
                return s;
            }));
        }
        long total = 0;
        for (Future<Long> f : parts) total += f.get();
        pool.shutdown();
        System.out.println("executor " + total + " " + pool.awaitTermination(30, TimeUnit.SECONDS));
        AtomicLong counter = new AtomicLong();
        Thread[] threads = new Thread[6];
        for (int t = 0; t < threads.length; t++) {
            threads[t] = new Thread(() -> { for (int i = 0; i < 100_000; i++) counter.incrementAndGet(); });
            threads[t].start();
        }
        for (Thread t : threads) t.join();
        System.out.println("threads " + counter.get());

        // NIO files: write, list, read, walk, delete in the scratch directory
        Path dir = Files.createTempDirectory("javacheck");
        Files.write(dir.resolve("b.txt"), List.of("bee", "line two"), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("a.txt"), "ay");
        Files.createDirectories(dir.resolve("sub/deeper"));
        Files.move(dir.resolve("b.txt"), dir.resolve("sub/b.txt"));
        try (Stream<Path> walk = Files.walk(dir)) {
            System.out.println("nio walk " + walk.map(p -> dir.relativize(p).toString()).sorted()
                    .collect(Collectors.joining(",")));
        }
        System.out.println("nio read " + Files.readAllLines(dir.resolve("sub/b.txt")) + " "
                + Files.size(dir.resolve("a.txt")));
        try (FileChannel ch = FileChannel.open(dir.resolve("a.txt"), StandardOpenOption.READ)) {
            MappedByteBuffer map = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
            System.out.println("nio map " + StandardCharsets.UTF_8.decode(map));
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
        System.out.println("nio deleted " + !Files.exists(dir));

        // NIO sockets on the loopback: a selector-driven echo server
        try (ServerSocketChannel server = ServerSocketChannel.open();
             Selector selector = Selector.open()) {
            server.bind(new InetSocketAddress("127.0.0.1", 0));
            server.configureBlocking(false);
            server.register(selector, SelectionKey.OP_ACCEPT);
            int port = ((InetSocketAddress) server.getLocalAddress()).getPort();
            Thread client = new Thread(() -> {
                try (Socket s = new Socket("127.0.0.1", port)) {
                    s.getOutputStream().write("ping".getBytes(StandardCharsets.UTF_8));
                    byte[] buf = new byte[4];
                    new DataInputStream(s.getInputStream()).readFully(buf);
                    System.out.println("nio echo " + new String(buf, StandardCharsets.UTF_8));
                } catch (IOException e) {
                    System.out.println("FAIL client " + e);
                }
            });
            client.start();
            boolean done = false;
            while (!done) {
                selector.select(10_000);
                Iterator<SelectionKey> it = selector.selectedKeys().iterator();
                while (it.hasNext()) {
                    SelectionKey key = it.next();
                    it.remove();
                    if (key.isAcceptable()) {
                        SocketChannel c = server.accept();
                        c.configureBlocking(false);
                        c.register(selector, SelectionKey.OP_READ, ByteBuffer.allocate(4));
                    } else if (key.isReadable()) {
                        SocketChannel c = (SocketChannel) key.channel();
                        ByteBuffer buf = (ByteBuffer) key.attachment();
                        c.read(buf);
                        if (!buf.hasRemaining()) {
                            buf.flip();
                            c.write(ByteBuffer.wrap("pong".getBytes(StandardCharsets.UTF_8)));
                            c.close();
                            done = true;
                        }
                    }
                }
            }
            client.join();
        }

        // ProcessBuilder: arguments, stdin, output, exit status
        Process p = new ProcessBuilder("/bin/sh", "-c", "read x; echo got $x $0; exit 5", "arg")
                .redirectErrorStream(true).start();
        try (Writer w = new OutputStreamWriter(p.getOutputStream(), StandardCharsets.UTF_8)) {
            w.write("line\n");
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        System.out.println("process " + out + " " + p.waitFor());
        System.out.println("processhandle " + (ProcessHandle.current().pid() > 0));
    }
}
