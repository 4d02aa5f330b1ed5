//go:build failover && linux

package dbtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
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
	t.Cleanup(func() { os.RemoveAll(dir) }) // if the watchdog did not
	var procs []int
	for _, f := range fields[1:] {
		pid, _ := strconv.Atoi(f)
		procs = append(procs, pid)
	}
	for _, node := range []string{"node1", "node2", "node3"} {
		postmaster := postmasterPID(t, dir+"/"+node)
		procs = append(append(procs, postmaster), childrenOf(t, postmaster)...)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, "after the test process was killed", procs, dir)
}
