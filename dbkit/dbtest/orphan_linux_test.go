package dbtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

const envOrphanHelper = "DBKIT_TEST_ORPHAN_HELPER"

// A test binary killed outright (a test timeout, kill -9) cannot run Stop:
// its server must die with it rather than linger.
func TestServerDiesWithTestProcess(t *testing.T) {
	if os.Getenv(envOrphanHelper) == "1" {
		s, err := StartLocal(context.Background())
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("READY", strings.Fields(s.hint("x"))[2]) // psql -h <dir> ...
		select {}                                            // wait to be killed
	}

	cmd, line, err := startHelper(t, "TestServerDiesWithTestProcess", envOrphanHelper)
	dir, ready := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if err != nil || !ready || !strings.HasPrefix(dir, serverParentDir()) {
		cmd.Process.Kill()
		t.Fatalf("helper said %q, %v", line, err)
	}
	// The helper cannot remove its directory; the next StartLocal would, a
	// minute later. Do not leave it for that.
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The helper's server: its postmaster, from postmaster.pid, and the
	// processes the postmaster started (other tests' servers are left out).
	postmaster := postmasterPID(t, dir)
	started := append([]int{postmaster}, childrenOf(t, postmaster)...)
	if len(started) < 2 {
		cmd.Process.Kill()
		t.Fatalf("postmaster %d has no children: not a running server", postmaster)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	if !staleServerDir(dir) {
		t.Errorf("the killed process's server directory is not seen as stale")
	}
	waitGone(t, "after the test process was killed", started)
}

// startHelper runs this test binary again, for the test named test only,
// with the variable env set to 1 and the variables extraEnv ("K=V") set,
// and returns it with the first line it printed (and the error reading it).
// It is killed when the test ends.
func startHelper(t *testing.T, test, env string, extraEnv ...string) (*exec.Cmd, string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(append(os.Environ(), env+"=1"), extraEnv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // on an early failure
	line, err := bufio.NewReader(out).ReadString('\n')
	return cmd, line, err
}

// waitGone waits up to 20 s for the processes procs to end and the files
// paths to go, and fails the test with what is left.
func waitGone(t *testing.T, what string, procs []int, paths ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var left []string
		for _, pid := range procs {
			if processAlive(pid) && !isZombie(pid) {
				left = append(left, fmt.Sprint("process ", pid))
			}
		}
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still there after 20s: %v", what, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childrenOf returns the pids of the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		var child int
		if _, err := fmt.Sscan(e.Name(), &child); err != nil {
			continue
		}
		if parent, _ := statOf(child); parent == pid {
			out = append(out, child)
		}
	}
	return out
}

// statOf returns the parent pid and state of a process from /proc/<pid>/stat.
func statOf(pid int) (ppid int, state string) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	// "pid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fmt.Sscan(rest, &state, &ppid)
	return ppid, state
}

func isZombie(pid int) bool {
	_, state := statOf(pid)
	return state == "" || state == "Z"
}

// The death signal follows the thread that started postgres: a server
// started from a goroutine that locked its thread and returned (Go then ends
// the thread) must keep running.
func TestServerOutlivesTheThreadThatStartedIt(t *testing.T) {
	started := make(chan *Server, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		s, err := StartLocal(context.Background())
		if err != nil {
			t.Error(err)
		}
		started <- s
	}()
	s := <-started
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	time.Sleep(500 * time.Millisecond)
	for i := range 3 {
		if err := s.Exec(context.Background(), "SELECT 1"); err != nil {
			t.Fatalf("query %d after the starting thread ended: %v", i, err)
		}
	}
}

// postgres and initdb do not get the test process's environment: its
// secrets would be readable by any process of the postgres user.
func TestServerDoesNotInheritTheEnvironment(t *testing.T) {
	const marker = "dbkit-env-marker-5518"
	t.Setenv("DBKIT_TEST_SECRET", marker)
	t.Setenv("PGOPTIONS", "-c search_path="+marker)
	s := startTestServer(t)
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", postmasterPID(t, serverDir(s))))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), marker) {
		t.Errorf("postgres's environment holds the test process's: %q", env)
	}
	if !strings.Contains(string(env), "PATH=") {
		t.Errorf("postgres's environment %q has no PATH: not the server's", env)
	}
}
