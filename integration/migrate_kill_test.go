package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// A helper process running stuckMigrations (see runMigratorHelper) names
// its sessions stuckAppName and sleeps stuckSeconds in its migration.
const (
	stuckAppName = "dbkit-stuck-migrator"
	stuckSeconds = 20
)

// stuckMigrations create the table of records, then run one statement that
// takes seconds s: a migration stuck in a long statement.
func stuckMigrations(s int) []migrate.Migration {
	return []migrate.Migration{
		{ID: "0001_first", Migrate: func(tx *gorm.DB) error { return tx.Exec(`CREATE TABLE first (x int)`).Error }},
		{ID: "0002_stuck", Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE stuck AS SELECT 1 AS x FROM pg_sleep(?)`, s).Error
		}},
	}
}

// A migrator killed with SIGKILL in the middle of a 20 s statement must not
// keep the lock until the statement ends: the server notices that its
// client is gone, ends the session, its transaction and its lock, and the
// next replica applies the migration. The goal is 5 s from the kill to the
// next replica's success; the test allows 8 s for a loaded machine.
func TestKilledMigratorReleasesTheLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	cmd, out := migratorProcess(cfg, "stuck")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	observer := openDB(t, cfg)
	q := dbkit.NewBaseDatabase[User](observer).Query(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		err := q.Raw(`SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = ?
			  AND a.state = 'active' AND a.query LIKE '%pg_sleep%'`, stuckAppName).Scan(ctx, &n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		select {
		case <-exited:
			t.Fatalf("the helper exited before it was seen holding the lock: %v\n%s", waitErr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper was not seen holding the lock in its pg_sleep within a minute\n%s", out.String())
		}
	}
	time.Sleep(time.Second)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-exited

	next := stuckMigrations(0)
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(next...),
		dbkit.WithMigrateOptions(migrate.WithLockTimeout(8*time.Second)))
	took := time.Since(killed)
	if err != nil {
		t.Fatalf("the next replica, %v after the kill: %v", took.Round(time.Millisecond), err)
	}
	_ = db.Close(ctx)
	t.Logf("from kill -9 to the next replica's migrations applied: %v", took.Round(time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("the next replica applied %v after the kill, want at most 8s (goal 5s)", took.Round(time.Millisecond))
	}
	var recorded []string
	if err := q.Raw(`SELECT id FROM dbkit_migrations ORDER BY id`).Scan(ctx, &recorded); err != nil {
		t.Fatal(err)
	}
	if want := []string{"0001_first", "0002_stuck"}; !slices.Equal(recorded, want) {
		t.Errorf("recorded = %v, want %v", recorded, want)
	}
}
