package dbtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const envSharedHelper = "DBKIT_TEST_SHARED_HELPER"

// sharedHelper is a test process using the shared server: it prints the
// server's port, then answers "ping" with a query's outcome until its stdin
// ends, and exits without stopping anything.
func sharedHelper() {
	srv, err := Shared(context.Background())
	if err != nil {
		fmt.Println("ERR", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	fmt.Println("READY", srv.Config().Port)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := srv.Exec(context.Background(), "SELECT 1"); err != nil {
			fmt.Println("ERR", err)
		} else {
			fmt.Println("OK")
		}
	}
	os.Exit(0)
}

type helperProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	port string
}

// readLine reads a line of the helper's, failing the test after a minute.
func (h *helperProc) readLine(t *testing.T) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		s, _ := h.out.ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(time.Minute):
		h.cmd.Process.Kill()
		t.Fatal("the helper said nothing for a minute")
		return ""
	}
}

func (h *helperProc) ping(t *testing.T) string {
	t.Helper()
	fmt.Fprintln(h.in, "ping")
	return h.readLine(t)
}

// sharedTestDir is a directory for shared servers of the test's own, so that
// it neither meets nor disturbs the one the other tests use.
func sharedTestDir(t *testing.T) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "dbkit-shared-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o755); err != nil { // postgres must reach its directory
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	// Registered after RemoveAll, so run before it: should the test fail
	// with a server up, stop it rather than pull its directory away.
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(parent, "dbkit-*", "shared-*.json"))
		for _, f := range files {
			if st, err := readState(strings.TrimSuffix(f, ".json")); err == nil {
				syscall.Kill(st.Watchdog, syscall.SIGTERM)
				for i := 0; i < 200 && processAlive(st.Watchdog) && !isZombie(st.Watchdog); i++ {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	})
	return parent
}

// sharedStateIn returns the state of the one shared server under parent.
func sharedStateIn(t *testing.T, parent string) sharedState {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(parent, "dbkit-*", "shared-*.json"))
	if len(files) != 1 {
		t.Fatalf("state files: %v", files)
	}
	st, err := readState(strings.TrimSuffix(files[0], ".json"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Test processes share one local server: the first starts it, the others
// lease it, it outlives the process that started it, and it stops, leaving
// no process or file, once the last user has gone, killed or not. A server
// whose watchdog was killed dies with it and the next process starts
// another.
func TestSharedServerAcrossProcesses(t *testing.T) {
	if os.Getenv(envSharedHelper) == "1" {
		sharedHelper()
	}
	parent := sharedTestDir(t)
	env := append(os.Environ(), envSharedHelper+"=1", EnvPGTmpDir+"="+parent,
		EnvServerIdle+"=300ms", EnvServer+"=local")

	start := func() *helperProc {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSharedServerAcrossProcesses$")
		cmd.Env = env
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		h := &helperProc{cmd: cmd, in: in, out: bufio.NewReader(out)}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line := h.readLine(t)
		port, ok := strings.CutPrefix(line, "READY ")
		if !ok {
			t.Fatalf("helper said %q", line)
		}
		h.port = port
		return h
	}
	state := func() (sharedState, []int) {
		t.Helper()
		st := sharedStateIn(t, parent)
		postmaster := postmasterPID(t, st.Dir)
		procs := append([]int{st.Watchdog, postmaster}, childrenOf(t, postmaster)...)
		if len(procs) < 3 {
			t.Fatalf("postmaster %d has no children: not a running server", postmaster)
		}
		return st, procs
	}

	a := start()
	st, procs := state()
	b := start()
	if b.port != a.port {
		t.Fatalf("second process got a server on port %s, want the first's (%s)", b.port, a.port)
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	time.Sleep(time.Second) // over three idle times: the server must stay for b
	if got := b.ping(t); got != "OK" {
		t.Fatalf("the server is gone while a process still uses it: %s", got)
	}
	if st2, _ := state(); st2 != st {
		t.Fatalf("state changed under a user: %+v, was %+v", st2, st)
	}
	b.in.Close() // b exits normally, without Stop
	b.cmd.Wait()
	waitGone(t, "after the last user exited", procs, st.Dir)
	if files, _ := filepath.Glob(filepath.Join(parent, "dbkit-*", "shared-*.json")); len(files) != 0 {
		t.Fatalf("state file left: %v", files)
	}

	// A watchdog killed outright takes its server with it; the state it
	// leaves is not used, and its directory is removed by the next start.
	c := start()
	st, procs = state()
	if err := syscall.Kill(st.Watchdog, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "after the watchdog was killed", procs)
	d := start()
	st2, procs2 := state()
	if st2.Watchdog == st.Watchdog || st2.Dir == st.Dir {
		t.Fatalf("a process attached to the dead server %+v", st)
	}
	if got := d.ping(t); got != "OK" {
		t.Fatalf("new server: %s", got)
	}
	if _, err := os.Stat(st.Dir); err == nil {
		t.Errorf("the dead server's directory %s is still there", st.Dir)
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	d.in.Close()
	d.cmd.Wait()
	waitGone(t, "after the last user of the second server exited", procs2, st2.Dir)
}

func TestIdleTimeFromEnv(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"", defaultIdle, true},
		{"300ms", 300 * time.Millisecond, true},
		{"1h", time.Hour, true},
		{"0s", 0, true},
		{"-1s", 0, false},
		{"5", 0, false},
		{"soon", 0, false},
	} {
		t.Setenv(EnvServerIdle, tc.value)
		got, err := idleTimeFromEnv()
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("%s=%q: %v, %v; want %v (ok=%v)", EnvServerIdle, tc.value, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), EnvServerIdle) {
			t.Errorf("error %q does not name the variable", err)
		}
	}
}

// Attaching races with the watchdog's idle stop: with no idle time, every
// release may stop the server while another caller attaches. Each attach
// must get a working server, sequentially and concurrently, and nothing is
// left at the end.
func TestSharedServerAttachRacesIdleStop(t *testing.T) {
	parent := sharedTestDir(t)
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, parent)
	if err != nil {
		t.Fatal(err)
	}
	// Inherited by the watchdogs started here; relative, as a user may
	// write it (the watchdog runs in another directory).
	t.Setenv(EnvPGTmpDir, rel)
	t.Setenv(EnvServerIdle, "0s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	servers := map[string]bool{}
	attach := func() error {
		s, err := startSharedLocal(ctx)
		if err != nil {
			return err
		}
		defer s.Stop(ctx) // releases the lease only
		mu.Lock()
		servers[s.hint("")] = true
		mu.Unlock()
		return s.Exec(ctx, "SELECT 1")
	}
	for i := range 8 {
		if err := attach(); err != nil {
			t.Fatalf("sequential attach %d: %v", i, err)
		}
		// The watchdog looks every 100 ms: some attaches find the server
		// up, some stopping, some gone.
		time.Sleep(time.Duration(i%3) * 70 * time.Millisecond)
	}
	for round := range 3 {
		errs := make(chan error, 6)
		for range 6 {
			go func() { errs <- attach() }()
		}
		for range 6 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: concurrent attach: %v", round, err)
			}
		}
	}
	if len(servers) < 3 {
		t.Errorf("%d servers for 26 attaches: the idle stop did not race with attaching", len(servers))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(parent, "dbkit-pg-*"))
		states, _ := filepath.Glob(filepath.Join(parent, "dbkit-*", "shared-*.json"))
		if len(left)+len(states) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left after the last release: %v %v", left, states)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A caller whose ctx has ended gets its error and leaves a healthy shared
// server alone: the others keep using it.
func TestSharedServerSurvivesACancelledCaller(t *testing.T) {
	parent := sharedTestDir(t)
	t.Setenv(EnvPGTmpDir, parent)
	t.Setenv(EnvServerIdle, "10s")
	ctx := context.Background()
	s, err := startSharedLocal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	before := sharedStateIn(t, parent)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := startSharedLocal(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("attach with a cancelled ctx: %v, want context.Canceled", err)
	}
	if after := sharedStateIn(t, parent); after != before {
		t.Fatalf("a cancelled caller replaced the server: %+v, was %+v", after, before)
	}
	again, err := startSharedLocal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop(ctx)
	if again.Config().Port != s.Config().Port {
		t.Errorf("next caller got port %d, want the running server's %d", again.Config().Port, s.Config().Port)
	}
}
