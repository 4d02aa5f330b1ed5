package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// twoDBs returns a migrated database's DB with a pool of conns connections,
// and a second DB on the same database to act on it or watch it from.
func twoDBs(t *testing.T, conns int) (db, other *dbkit.DB) {
	t.Helper()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	cfg.MaxOpenConns = conns
	db = openDB(t, cfg)
	cfg.MaxOpenConns = 2
	cfg.ApplicationName = "dbkit-test-other"
	return db, openDB(t, cfg)
}

// othersRunning counts the server processes of the database other than the
// watcher's own (it has two: its pool's and its Health's).
func othersRunning(t *testing.T, watcher *dbkit.DB) int {
	t.Helper()
	var n int
	ctx := context.Background()
	err := dbkit.NewBaseDatabase[User](watcher).Query(ctx).Raw(`SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name <> 'dbkit-test-other' AND backend_type = 'client backend'`).Scan(ctx, &n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitInUse waits until n of db's connections are in use.
func waitInUse(t *testing.T, db *dbkit.DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); db.Stats().InUse < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections in use after 30 s, want %d", db.Stats().InUse, n)
		}
	}
}

// assertClosedForNewWork checks that every way into db fails with ErrClosed.
func assertClosedForNewWork(t *testing.T, db *dbkit.DB) {
	t.Helper()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](db)
	var one int
	for name, err := range map[string]error{
		"Count":       func() error { _, err := users.Count(ctx); return err }(),
		"Create":      users.Create(ctx, &User{Email: "late@example.com"}),
		"CreateMany":  users.CreateMany(ctx, []User{{Email: "late2@example.com"}}),
		"InTx":        db.InTx(ctx, func(context.Context) error { return nil }),
		"Health":      db.Health(ctx),
		"Query.Exec":  users.Query(ctx).Exec(ctx, "SELECT 1"),
		"Query.Raw":   users.Query(ctx).Raw("SELECT 1").Scan(ctx, &one),
		"Query.Row":   users.Query(ctx).Raw("SELECT 1").Row(ctx).Scan(&one),
		"Query.Rows":  func() error { _, err := users.Query(ctx).Raw("SELECT 1").Rows(ctx); return err }(),
		"Query.Count": func() error { _, err := users.Query(ctx).Count(ctx, "*"); return err }(),
	} {
		if !errors.Is(err, dbkit.ErrClosed) || strings.Contains(fmt.Sprint(err), "sql: database is closed") {
			t.Errorf("%s after Close began = %v, want ErrClosed", name, err)
		}
	}
}

// holdLockUntil takes the advisory lock key on a connection of db and holds
// it until release is closed; statements that take it shared wait till then.
func holdLockUntil(t *testing.T, db *dbkit.DB, key int, release <-chan struct{}) {
	t.Helper()
	held := make(chan error, 1)
	go func() {
		err := db.InTx(context.Background(), func(ctx context.Context) error {
			if err := dbkit.NewBaseDatabase[User](db).Query(ctx).Exec(ctx, "SELECT pg_advisory_xact_lock(?)", key); err != nil {
				return err
			}
			held <- nil
			<-release
			return nil
		})
		if err != nil {
			held <- err
		}
	}()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// waitClosed waits until Close has begun: db refuses new work.
func waitClosed(t *testing.T, db *dbkit.DB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := db.Health(ctx) // waits for a connection until Close begins
		cancel()
		if errors.Is(err, dbkit.ErrClosed) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Close has not begun after 10 s: Health = %v", err)
		}
	}
}

// TestCloseWaitsForRunningWork: 50 statements and a transaction are running
// when Close is called; Close refuses new work at once, the transaction can
// still run its next statement and commit, and Close returns only once they
// have all finished, none of them failed.
func TestCloseWaitsForRunningWork(t *testing.T) {
	t.Parallel()
	const n, lock = 50, 4242
	db, watcher := twoDBs(t, n+1)
	users := dbkit.NewBaseDatabase[User](db)
	ctx := context.Background()
	release, txGo := make(chan struct{}), make(chan struct{})
	holdLockUntil(t, watcher, lock, release)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lastDone time.Time
		failed   []error
	)
	finish := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		lastDone = time.Now()
		if err != nil {
			failed = append(failed, err)
		}
	}
	for range n {
		wg.Go(func() {
			var one int
			finish(users.Query(ctx).Raw("SELECT 1 FROM pg_advisory_xact_lock_shared(?)", lock).Scan(ctx, &one))
		})
	}
	wg.Go(func() {
		finish(db.InTx(ctx, func(ctx context.Context) error {
			if err := users.Create(ctx, &User{Email: "during-close@example.com"}); err != nil {
				return err
			}
			<-txGo // Close has begun
			return users.Query(ctx).Exec(ctx, "SELECT pg_advisory_xact_lock_shared(?)", lock)
		}))
	})
	waitInUse(t, db, n+1)

	closed := make(chan error, 1)
	go func() { closed <- db.Close(ctx) }()
	waitClosed(t, db)
	assertClosedForNewWork(t, db)
	close(txGo)
	close(release)
	err := <-closed
	returned := time.Now()
	wg.Wait()
	if err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of the running statements failed during Close: %v", len(failed), failed[0])
	}
	if returned.Before(lastDone) {
		t.Errorf("Close returned %v before the last statement finished", lastDone.Sub(returned))
	}
	if db.Stats().OpenConnections != 0 {
		t.Errorf("%d connections open after Close", db.Stats().OpenConnections)
	}
	if ok, err := dbkit.NewBaseDatabase[User](watcher).Exists(ctx, dbkit.Eq("email", "during-close@example.com")); err != nil || !ok {
		t.Errorf("the transaction running at Close: committed = %v, %v; want committed", ok, err)
	}
}

// TestCloseCutsWhatOutlivesItsCtx: statements that would run 30 s and a
// transaction idle between statements are still running when Close's ctx
// ends: Close cancels them on the server, says how many it cut, and their
// callers get ErrClosed; nothing of the transaction is committed.
func TestCloseCutsWhatOutlivesItsCtx(t *testing.T) {
	t.Parallel()
	const n = 10
	db, watcher := twoDBs(t, n+1)
	users := dbkit.NewBaseDatabase[User](db)
	ctx := context.Background()

	errs := make(chan error, n+1)
	for range n {
		go func() {
			var one int
			errs <- users.Query(ctx).Raw("SELECT 1 FROM pg_sleep(30)").Scan(ctx, &one)
		}()
	}
	resume := make(chan struct{})
	go func() {
		errs <- db.InTx(ctx, func(ctx context.Context) error {
			if err := users.Create(ctx, &User{Email: "cut@example.com"}); err != nil {
				return err
			}
			<-resume // idle in transaction while Close's ctx runs out
			return users.Create(ctx, &User{Email: "cut2@example.com"})
		})
	}()
	waitInUse(t, db, n+1)

	closeCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := db.Close(closeCtx)
	took := time.Since(start)
	close(resume)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cut 11 ") {
		t.Fatalf("Close = %v, want DeadlineExceeded saying it cut 11", err)
	}
	if took > 3*time.Second {
		t.Errorf("Close took %v after its ctx ended at 300ms", took)
	}
	for range n + 1 {
		if err := <-errs; !errors.Is(err, dbkit.ErrClosed) {
			t.Errorf("a call Close cut returned %v, want ErrClosed", err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); othersRunning(t, watcher) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d server processes of the closed DB still there 5 s after Close", othersRunning(t, watcher))
		}
	}
	if ok, err := dbkit.NewBaseDatabase[User](watcher).Exists(ctx, dbkit.Eq("email", "cut@example.com")); err != nil || ok {
		t.Errorf("the cut transaction's row: exists = %v, %v; want not committed", ok, err)
	}
}
