package dbtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbkit-go/database/dbkit"
)

// standbyConfig is the superuser's configuration of database db on s.
func standbyConfig(c *Cluster, s *Standby, db string) dbkit.Config {
	cfg := c.Primary().Config()
	cfg.Host, cfg.Port, cfg.Database = s.Host(), s.Port(), db
	return cfg
}

// rowsOn counts the rows of table on the server and database of cfg, over
// TCP as a user would.
func rowsOn(t *testing.T, cfg dbkit.Config, table string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cfg.DSN())
	if err != nil {
		t.Fatalf("connect to %s: %v", cfg.Addr(), err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s on %s: %v", table, cfg.Addr(), err)
	}
	return n
}

// clusterProcesses returns the postmasters of c's servers and their
// children, and the servers' directories.
func clusterProcesses(t *testing.T, c *Cluster) (pids []int, dirs []string) {
	t.Helper()
	dirs = append(dirs, serverDir(c.Primary()))
	for _, s := range c.Replicas() {
		dirs = append(dirs, s.proc.(*localStandby).ls.dir)
	}
	for _, dir := range dirs {
		pid := postmasterPID(t, dir)
		pids = append(pids, pid)
		pids = append(pids, childProcesses(pid)...)
	}
	return pids, dirs
}

// A primary and two replicas: writes reach both, a paused replica lags
// until resumed, a killed one comes back and catches up, and Stop leaves
// nothing behind.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	c, err := StartCluster(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartCluster(2): %v", time.Since(began))
	t.Cleanup(func() { c.Stop(context.Background()) })
	primary := c.Primary()
	r1, r2 := c.Replicas()[0], c.Replicas()[1]
	if r1.Name() != "replica1" || r2.Name() != "replica2" || r1.Host() != "127.0.0.1" || r1.Port() == r2.Port() {
		t.Fatalf("replicas %s %s:%d, %s %s:%d", r1.Name(), r1.Host(), r1.Port(), r2.Name(), r2.Host(), r2.Port())
	}
	on := func(s *Standby) dbkit.Config { return standbyConfig(c, s, "postgres") }
	insert := func(id int) {
		t.Helper()
		if err := primary.Exec(ctx, "INSERT INTO items VALUES ($1)", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := primary.Exec(ctx, "CREATE TABLE items (id int)"); err != nil {
		t.Fatal(err)
	}

	t.Run("replay", func(t *testing.T) {
		insert(1)
		if err := c.WaitForReplay(ctx); err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Replicas() {
			if n := rowsOn(t, on(s), "items"); n != 1 {
				t.Errorf("%s has %d rows, want 1", s.Name(), n)
			}
		}
		var streaming []string
		rows, err := primary.pool.QueryContext(ctx, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				t.Fatal(err)
			}
			streaming = append(streaming, name)
		}
		if want := []string{"replica1", "replica2"}; !slices.Equal(streaming, want) {
			t.Errorf("the primary streams to %q, want %q", streaming, want)
		}
	})

	t.Run("paused", func(t *testing.T) {
		if err := r1.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		before, err := r1.ReplayLSN(ctx)
		if err != nil {
			t.Fatal(err)
		}
		insert(2)
		if err := c.WaitForReplay(ctx); err != nil { // does not wait for the paused replica
			t.Fatal(err)
		}
		if n := rowsOn(t, on(r1), "items"); n != 1 {
			t.Errorf("paused %s has %d rows, want 1 (the row written before the pause)", r1.Name(), n)
		}
		if n := rowsOn(t, on(r2), "items"); n != 2 {
			t.Errorf("%s has %d rows, want 2", r2.Name(), n)
		}
		if after, err := r1.ReplayLSN(ctx); err != nil || after != before {
			t.Errorf("paused %s's replay location moved from %s to %s (%v)", r1.Name(), before, after, err)
		}
		if err := r1.ResumeReplay(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitForReplay(ctx); err != nil {
			t.Fatal(err)
		}
		if n := rowsOn(t, on(r1), "items"); n != 2 {
			t.Errorf("resumed %s has %d rows, want 2", r1.Name(), n)
		}
	})

	t.Run("kill and start", func(t *testing.T) {
		dir := r2.proc.(*localStandby).ls.dir
		postmaster := postmasterPID(t, dir)
		procs := append([]int{postmaster}, childProcesses(postmaster)...)
		if len(procs) < 3 {
			t.Fatalf("%s's postmaster %d has children %v: not a running standby", r2.Name(), postmaster, procs[1:])
		}
		began := time.Now()
		if err := r2.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("Kill: %v", time.Since(began))
		if left := waitProcessesGone(procs, 0); len(left) > 0 {
			t.Errorf("processes %v of the killed standby still run", left)
		}
		connCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(connCtx, on(r2).DSN()); err == nil {
			conn.Close(ctx)
			t.Fatalf("killed %s accepts connections", r2.Name())
		}
		if _, err := r2.ReplayLSN(ctx); err == nil {
			t.Errorf("ReplayLSN of a killed standby succeeded")
		}
		insert(3)
		if err := c.WaitForReplay(ctx); err != nil { // does not wait for the killed replica
			t.Fatal(err)
		}
		began = time.Now()
		if err := r2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Start: %v", time.Since(began))
		if err := r2.Start(ctx); err == nil {
			t.Errorf("Start of a running standby succeeded")
		}
		if err := c.WaitForReplay(ctx); err != nil {
			t.Fatal(err)
		}
		if n := rowsOn(t, on(r2), "items"); n != 3 {
			t.Errorf("restarted %s has %d rows, want 3 (one written while it was down)", r2.Name(), n)
		}
	})

	t.Run("NewDatabase", func(t *testing.T) {
		cfg := c.NewDatabase(t)
		want := []dbkit.Replica{
			{Host: "127.0.0.1", Port: r1.Port(), Name: "replica1"},
			{Host: "127.0.0.1", Port: r2.Port(), Name: "replica2"},
		}
		if !slices.Equal(cfg.Replicas, want) {
			t.Errorf("Replicas = %+v, want %+v", cfg.Replicas, want)
		}
		if cfg.Host != primary.Config().Host || cfg.Port != primary.Config().Port {
			t.Errorf("the database is on %s, not on the primary %s", cfg.Addr(), primary.Config().Addr())
		}
		for _, s := range c.Replicas() {
			// rowsOn fails the test if the database is not there.
			if n := rowsOn(t, standbyConfig(c, s, cfg.Database), "pg_database WHERE datname = current_database()"); n != 1 {
				t.Errorf("the test's database on %s: %d rows in pg_database", s.Name(), n)
			}
		}
	})

	pids, dirs := clusterProcesses(t, c)
	began = time.Now()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop: %v", time.Since(began))
	if left := waitProcessesGone(pids, 0); len(left) > 0 {
		t.Errorf("processes %v of the cluster still run after Stop", left)
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("directory %s still exists after Stop (%v)", dir, err)
		}
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := r1.Start(ctx); err == nil {
		t.Errorf("Start of a standby of a stopped cluster succeeded")
	}
	if err := r1.PauseReplay(ctx); err == nil {
		t.Errorf("PauseReplay of a standby of a stopped cluster succeeded")
	}
}

const envClusterOrphanHelper = "DBKIT_TEST_CLUSTER_ORPHAN_HELPER"

// A test binary killed outright takes its cluster with it: the primary, the
// replicas and all their processes.
func TestClusterDiesWithTestProcess(t *testing.T) {
	if os.Getenv(envClusterOrphanHelper) == "1" {
		c, err := StartCluster(context.Background(), 1)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		_, dirs := clusterProcesses(t, c)
		fmt.Println("READY", strings.Join(dirs, " "))
		select {} // wait to be killed
	}

	cmd, line, err := startHelper(t, "TestClusterDiesWithTestProcess", envClusterOrphanHelper)
	rest, ready := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	dirs := strings.Fields(rest)
	if err != nil || !ready || len(dirs) != 2 {
		t.Fatalf("helper said %q, %v", line, err)
	}
	t.Cleanup(func() { // the helper cannot remove them
		for _, dir := range dirs {
			os.RemoveAll(dir)
		}
	})
	var procs []int
	for _, dir := range dirs {
		postmaster := postmasterPID(t, dir)
		procs = append(append(procs, postmaster), childrenOf(t, postmaster)...)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, "after the test process was killed", procs)
}

// Without pg_basebackup, StartCluster says where it looked and what to
// install.
func TestMissingBasebackupSaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBasebackup("/nowhere/bin/postgres")
	if err == nil || !strings.Contains(err.Error(), "no pg_basebackup in /nowhere/bin") ||
		!strings.Contains(err.Error(), "apt-get install postgresql-client") {
		t.Errorf("error = %v, want where it looked and what to install", err)
	}
}
