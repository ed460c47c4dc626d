// What a Go program does every day, printed in a fixed order so that its
// output inside a picoprocess can be compared with its output natively:
// goroutines, net/http on loopback, os/exec, signals, tickers, files.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func fail(what string, err error) {
	fmt.Println("FAIL", what+":", err)
	os.Exit(1)
}

func main() {
	// goroutines over every CPU, joined by a WaitGroup and a channel
	var wg sync.WaitGroup
	sums := make(chan int, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := 0
			for i := 0; i < 100000; i++ {
				s += (i * g) % 7
			}
			sums <- s
		}(g)
	}
	wg.Wait()
	close(sums)
	total := 0
	for s := range sums {
		total += s
	}
	fmt.Println("goroutines", total)

	// net/http: a server and a client on the loopback
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Method, r.URL.Path)
	})}
	go srv.Serve(ln)
	for _, path := range []string{"/a", "/b"} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			fail("get", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println("http", resp.StatusCode, string(body))
	}
	srv.Close()

	// os/exec: a child with arguments, its output and its exit status
	out, err := exec.Command("/bin/sh", "-c", "echo child $0 $1; exit 3", "x", "y").Output()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	fmt.Printf("exec %q %d\n", string(out), code)
	path, err := exec.LookPath("true")
	if err != nil {
		fail("lookpath", err)
	}
	fmt.Println("lookpath", filepath.Base(path), exec.Command(path).Run() == nil)

	// signals: one to ourselves, one from a child
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	fmt.Println("signal", <-ch)
	if err := exec.Command("/bin/sh", "-c", fmt.Sprintf("kill -USR2 %d", os.Getpid())).Run(); err != nil {
		fail("kill", err)
	}
	fmt.Println("signal", <-ch)

	// tickers and timers
	tick := time.NewTicker(5 * time.Millisecond)
	n := 0
	for range tick.C {
		n++
		if n == 5 {
			break
		}
	}
	tick.Stop()
	<-time.After(10 * time.Millisecond)
	fmt.Println("ticks", n)

	// files in the scratch directory
	dir, err := os.MkdirTemp("", "gocheck")
	if err != nil {
		fail("mkdirtemp", err)
	}
	for _, name := range []string{"b", "a", "c"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat(name, 3)), 0o644); err != nil {
			fail("write", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		fail("readdir", err)
	}
	names := []string{}
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		names = append(names, e.Name()+"="+string(data))
	}
	sort.Strings(names)
	fmt.Println("files", strings.Join(names, " "))
	fmt.Println("removeall", os.RemoveAll(dir) == nil)
}
