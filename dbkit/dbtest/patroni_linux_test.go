//go:build failover && linux

package dbtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const envPatroniOrphanHelper = "DBKIT_TEST_PATRONI_ORPHAN_HELPER"

// A test binary killed outright takes its Patroni cluster with it: etcd,
// every patroni, every postmaster and its processes (started detached by
// Patroni, out of reach of a death signal: the watchdog kills them), and
// the cluster's directory.
func TestPatroniDiesWithTestProcess(t *testing.T) {
	if os.Getenv(envPatroniOrphanHelper) == "1" {
		p, err := StartPatroni(context.Background(), PatroniOptions{})
		if err != nil {
			fmt.Println("ERR", strings.ReplaceAll(err.Error(), "\n", " | "))
			os.Exit(1)
		}
		pids := []string{strconv.Itoa(p.etcd.cmd.Process.Pid)}
		for _, n := range p.nodes {
			pids = append(pids, strconv.Itoa(n.proc.cmd.Process.Pid))
		}
		fmt.Println("READY", p.dir, strings.Join(pids, " "))
		select {} // wait to be killed
	}

	cmd, line, err := startHelper(t, "TestPatroniDiesWithTestProcess", envPatroniOrphanHelper)
	rest, ready := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	fields := strings.Fields(rest)
	if err != nil || !ready || len(fields) != 5 {
		t.Fatalf("helper said %q, %v", line, err)
	}
	dir := fields[0]
	// On a failure: the helper killed (startHelper's own cleanup would run
	// only after this one), then its watchdog given the time to kill what
	// runs in dir, and only then dir removed, if the watchdog did not.
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				return
			}
		}
		_ = os.RemoveAll(dir)
	})
	var procs []int
	for _, f := range fields[1:] {
		pid, _ := strconv.Atoi(f)
		procs = append(procs, pid)
	}
	var segments []postmasterFile
	for _, node := range []string{"node1", "node2", "node3"} {
		postmaster := postmasterPID(t, dir+"/"+node)
		procs = append(append(procs, postmaster), childrenOf(t, postmaster)...)
		segments = append(segments, sharedMemoryOf(t, filepath.Join(dir, node, "data")))
	}
	// A pid file naming a process of the servers' user that is not the
	// cluster's (as one that got a dead patroni's pid would be): the
	// watchdog leaves it alone.
	decoy := exec.Command("sleep", "60")
	decoy.SysProcAttr = &syscall.SysProcAttr{Credential: mustServerCredential(t)}
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { decoy.Process.Kill(); decoy.Wait() })
	if err := os.WriteFile(filepath.Join(dir, "decoy.pid"), []byte(strconv.Itoa(decoy.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, "after the test process was killed", procs, dir)
	checkSharedMemoryGone(t, segments)
	if !processRunning(decoy.Process.Pid) { // a zombie once killed: this process reaps it
		t.Errorf("the watchdog killed process %d, not the cluster's", decoy.Process.Pid)
	}
}

// Stop, and KillNode of a node left down, leave no System V shared memory
// behind: a killed postmaster's segment outlives its data directory. With
// the node down, CreateDatabase waits for the others only.
func TestPatroniStopFreesSharedMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := StartPatroni(ctx, PatroniOptions{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	var segments []postmasterFile
	for _, n := range p.nodes {
		segments = append(segments, sharedMemoryOf(t, filepath.Join(n.dir, "data")))
	}
	leader, err := p.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	down := p.nodes[0] // a replica: the leader's loss would be a failover
	if down == leader {
		down = p.nodes[1]
	}
	if err := down.KillNode(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.dir, down.name+".pid")); !os.IsNotExist(err) {
		t.Errorf("KillNode left %s.pid (%v): the watchdog would signal a pid the system may reuse", down.name, err)
	}
	// CreateDatabase does not wait for the node that is down.
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	if _, err := p.CreateDatabase(cctx, "while_down"); err != nil {
		t.Errorf("CreateDatabase with %s down: %v", down.name, err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkSharedMemoryGone(t, segments)
}

// sharedMemoryOf returns the postmaster.pid of a running server's data
// directory, which names its System V shared memory segment.
func sharedMemoryOf(t *testing.T, dataDir string) postmasterFile {
	t.Helper()
	pm, err := readPostmasterFile(dataDir)
	if err != nil || pm.shmKey == 0 {
		t.Fatalf("%s/postmaster.pid: no shared memory segment (%+v, %v)", dataDir, pm, err)
	}
	if !sharedMemoryExists(pm) {
		t.Fatalf("the segment %d of %s is not there while its server runs", pm.shmID, dataDir)
	}
	return pm
}

// checkSharedMemoryGone fails the test for each segment still there.
func checkSharedMemoryGone(t *testing.T, segments []postmasterFile) {
	t.Helper()
	for _, pm := range segments {
		if sharedMemoryExists(pm) {
			t.Errorf("the shared memory segment %d (key %d) of %s is left behind", pm.shmID, pm.shmKey, pm.dataDir)
			removeSharedMemory(pm.shmKey, pm.shmID)
		}
	}
}

func sharedMemoryExists(pm postmasterFile) bool {
	var ds unix.SysvShmDesc
	_, err := unix.SysvShmCtl(pm.shmID, unix.IPC_STAT, &ds)
	return err == nil && uint32(ds.Perm.Key) == uint32(pm.shmKey)
}

// mustServerCredential is the servers' user's credential (nil: this
// process's user).
func mustServerCredential(t *testing.T) *syscall.Credential {
	t.Helper()
	cred, err := serverCredential()
	if err != nil {
		t.Fatal(err)
	}
	return cred
}
