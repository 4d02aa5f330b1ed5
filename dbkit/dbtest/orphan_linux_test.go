package dbtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
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
		select {} // wait to be killed
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTestProcess$")
	cmd.Env = append(os.Environ(), envOrphanHelper+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	before := postgresPIDs(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	dir, ready := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if err != nil || !ready || !strings.HasPrefix(dir, os.TempDir()) {
		cmd.Process.Kill()
		t.Fatalf("helper said %q, %v", line, err)
	}
	// The helper cannot remove its directory; the next StartLocal would, a
	// minute later. Do not leave it for that.
	t.Cleanup(func() { os.RemoveAll(dir) })
	var started []int
	for pid := range postgresPIDs(t) {
		if !before[pid] {
			started = append(started, pid)
		}
	}
	if len(started) == 0 {
		t.Fatal("the helper's postgres processes were not found")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	deadline := time.Now().Add(15 * time.Second)
	for {
		alive := 0
		for _, pid := range started {
			if processAlive(pid) && !isZombie(pid) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d postgres processes outlived the killed test process", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postgresPIDs returns the pids of running processes named postgres.
func postgresPIDs(t *testing.T) map[int]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && string(comm) == "postgres\n" {
			pids[pid] = true
		}
	}
	return pids
}

func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	var p int
	var comm, state string
	fmt.Sscan(string(stat), &p, &comm, &state)
	return state == "Z"
}
