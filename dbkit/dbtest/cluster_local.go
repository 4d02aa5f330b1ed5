//go:build unix && !solaris

package dbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartCluster starts, from the local PostgreSQL binaries (as [StartLocal]
// finds and runs them), a primary and as many streaming replicas of it as
// replicas says, on 127.0.0.1, and returns once every replica streams. Each replica is a hot
// standby made by pg_basebackup -R -X stream -C -S <name> from the primary,
// named replica1, replica2... (its cluster_name and replication slot), on a
// port of its own. The primary commits synchronously to its WAL (fsync
// stays off), so that its commits reach the replicas at once. Stop it with
// [Cluster.Stop]; on Linux its servers die with the test process.
func StartCluster(ctx context.Context, replicas int) (*Cluster, error) {
	if replicas < 0 {
		return nil, fmt.Errorf("dbtest: StartCluster: %d replicas", replicas)
	}
	args := clusterArgs(replicas)
	primary, pls, err := startLocalWith(ctx, localSetup{args: slices.Concat(args, []string{"-c", "synchronous_commit=on"})})
	if err != nil {
		return nil, fmt.Errorf("dbtest: start the primary: %w", err)
	}
	standbys := make([]*Standby, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			standbys[i], errs[i] = startStandby(ctx, pls, fmt.Sprintf("replica%d", i+1), args)
		}()
	}
	wg.Wait()
	c := &Cluster{primary: primary}
	for _, s := range standbys {
		if s != nil {
			c.replicas = append(c.replicas, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = c.Stop(context.Background())
		return nil, err
	}
	return c, nil
}

// clusterArgs are the settings of every server of a cluster of n replicas.
// A hot standby refuses to start with max_wal_senders lower than its
// primary's, so the replicas get the primary's.
func clusterArgs(n int) []string {
	// pg_basebackup -X stream takes two WAL senders while it copies, and
	// each replica one when it streams.
	senders := strconv.Itoa(10 + 2*n)
	return []string{
		"-c", "max_wal_senders=" + senders,
		"-c", "max_replication_slots=" + senders,
		// pg_basebackup -C creates its slot only once the copy has begun:
		// until then, the checkpoint of another replica's pg_basebackup
		// may remove the WAL the copy starts from (it did, with two
		// replicas copied at once). Keep the last 64 MB of WAL.
		"-c", "wal_keep_size=64MB",
		"-c", "hot_standby=on",
	}
}

// startStandby makes a standby of primary named name, starts it and waits
// until it streams.
func startStandby(ctx context.Context, primary *localServer, name string, args []string) (*Standby, error) {
	srv, ls, err := startLocalWith(ctx, localSetup{
		fill: func(ctx context.Context, ls *localServer, postgres string, cred *syscall.Credential) error {
			bin, err := findBasebackup(postgres)
			if err != nil {
				return err
			}
			return ls.basebackup(ctx, bin, cred, primary, name)
		},
		args: slices.Concat(args, []string{"-c", "cluster_name=" + name}),
	})
	if err != nil {
		return nil, fmt.Errorf("dbtest: start %s: %w", name, err)
	}
	s := &Standby{
		name: name, host: "127.0.0.1", port: ls.port,
		proc: &localStandby{ls: ls},
		srv:  srv,
	}
	s.mu.Lock()
	err = s.waitStreamingLocked(ctx)
	s.mu.Unlock()
	if err != nil {
		_ = s.stop(context.Background())
		return nil, err
	}
	return s, nil
}

// basebackup fills ls.dir/data with a copy of primary's, configured as its
// standby: pg_basebackup -R (standby.signal, primary_conninfo) with a
// physical replication slot named slot. The password goes in the
// environment of pg_basebackup, and from there in the standby's
// primary_conninfo (postgresql.auto.conf, readable by the server's user
// only).
func (ls *localServer) basebackup(ctx context.Context, bin string, cred *syscall.Credential, primary *localServer, slot string) error {
	cmd := exec.CommandContext(ctx, bin,
		"-D", filepath.Join(ls.dir, "data"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres", "-w",
		"-R", "-X", "stream", "-C", "-S", slot,
		"--checkpoint=fast", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	setDeathSignal(cmd.SysProcAttr)
	cmd.Dir = ls.dir
	cmd.Env = append(serverEnv(), "PGPASSWORD="+primary.password)
	// The death signal follows this thread: keep it while pg_basebackup runs.
	runtime.LockOSThread()
	out, err := cmd.CombinedOutput()
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("dbtest: pg_basebackup from 127.0.0.1:%d: %w\n%s", primary.port, err, tail(out, 20))
	}
	ls.password = primary.password
	return nil
}

// findBasebackup returns the pg_basebackup of the installation of the
// server binary postgres (which may be a link into it), else the one on PATH.
func findBasebackup(postgres string) (string, error) {
	dirs := []string{filepath.Dir(postgres)}
	if real, err := filepath.EvalSymlinks(postgres); err == nil {
		dirs = append([]string{filepath.Dir(real)}, dirs...)
	}
	for _, d := range dirs {
		if bin := filepath.Join(d, "pg_basebackup"); isExecutable(bin) {
			return bin, nil
		}
	}
	if bin, err := exec.LookPath("pg_basebackup"); err == nil {
		return bin, nil
	}
	return "", fmt.Errorf("dbtest: no pg_basebackup in %s or on PATH: a replica needs it "+
		"(Debian/Ubuntu: apt-get install postgresql-client)", strings.Join(dirs, ", "))
}

// localStandby is a standby's postgres run from the local binaries.
type localStandby struct{ ls *localServer }

var _ standbyProcess = (*localStandby)(nil)

func (p *localStandby) kill() error {
	pid := p.ls.cmd.Process.Pid
	children := childProcesses(pid)
	if err := p.ls.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.ls.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("postmaster %d still runs 10s after SIGKILL", pid)
	}
	if err := reapChildren(pid, children); err != nil {
		return err
	}
	// The killed postmaster's shared memory would outlive the directory if
	// the cluster stopped before Start reclaimed it: remove it now.
	if pm, err := readPostmasterFile(filepath.Join(p.ls.dir, "data")); err == nil && pm.pid == pid && pm.shmKey != 0 {
		removeSharedMemory(pm.shmKey, pm.shmID)
	}
	return nil
}

// reapChildren waits until children, the processes of postmaster pid that
// was killed, are gone. They exit when they notice that the postmaster
// died; one that has not within 5 s is killed too. A new postmaster would
// refuse to start beside them (they hold its shared memory).
func reapChildren(pid int, children []int) error {
	if left := waitProcessesGone(children, 5*time.Second); len(left) > 0 {
		for _, c := range left {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
		if left := waitProcessesGone(left, 5*time.Second); len(left) > 0 {
			return fmt.Errorf("processes %v of postmaster %d still run after SIGKILL", left, pid)
		}
	}
	return nil
}

func (p *localStandby) start(ctx context.Context) (*Server, error) {
	if err := p.ls.start(ctx, p.ls.postgres, p.ls.cred, p.ls.port); err != nil {
		return nil, err
	}
	srv := p.ls.server(p.ls.stop)
	if err := srv.connectAdmin(ctx); err != nil {
		_ = p.ls.terminate(context.Background())
		return nil, err
	}
	return srv, nil
}

func (p *localStandby) stop(ctx context.Context) error { return p.ls.stop(ctx) }

func (p *localStandby) logTail() string {
	log, err := os.ReadFile(filepath.Join(p.ls.dir, "postgres.log"))
	if err != nil {
		return err.Error()
	}
	return tail(log, 20)
}

// waitProcessesGone waits up to timeout for the processes pids to end and
// returns those that have not.
func waitProcessesGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if processRunning(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}
