package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// backendPID returns the server process of the connection db's next
// statement runs on: with a pool of one, the pool's only connection.
func backendPID(t *testing.T, db *dbkit.DB) int {
	t.Helper()
	var pid int
	ctx := context.Background()
	if err := dbkit.NewBaseDatabase[User](db).Query(ctx).Raw("SELECT pg_backend_pid()").Scan(ctx, &pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// oneConnDB is a migrated database whose pool holds one connection, so that a
// connection thrown away shows as a new backend PID.
func oneConnDB(t *testing.T) *dbkit.DB {
	t.Helper()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	cfg.MaxOpenConns = 1
	return openDB(t, cfg)
}

// TestInTxCancelledKeepsTheConnection: a transaction whose ctx ends between
// statements, or just before its commit, returns an error matching
// ctx.Err(), commits nothing, and is rolled back on the connection it ran
// on, which the pool keeps: no reconnect per cancelled transaction.
func TestInTxCancelledKeepsTheConnection(t *testing.T) {
	t.Parallel()
	db := oneConnDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	pid := backendPID(t, db)

	const n = 1000
	reconnects := 0
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		err := db.InTx(ctx, func(ctx context.Context) error {
			if err := users.Create(ctx, &User{Email: fmt.Sprintf("first%d@example.com", i)}); err != nil {
				return err
			}
			cancel()
			if i%2 == 0 {
				return nil // ends at the commit
			}
			return users.Create(ctx, &User{Email: fmt.Sprintf("second%d@example.com", i)}) // between statements
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("transaction %d: InTx = %v, want an error matching context.Canceled", i, err)
		}
		if now := backendPID(t, db); now != pid {
			reconnects, pid = reconnects+1, now
		}
	}
	t.Logf("%d reconnects for %d cancelled transactions", reconnects, n)
	if reconnects > 0 {
		t.Errorf("the pool's connection was replaced %d times: cancelled transactions threw it away", reconnects)
	}
	if left, err := users.Count(context.Background()); err != nil || left != 0 {
		t.Errorf("%d users after %d cancelled transactions (%v), want 0", left, n, err)
	}
}

// TestInTxDeadlineDuringAStatement: the statement is cancelled on the
// server, the error matches context.DeadlineExceeded, and nothing is
// committed. The connection is kept when the server answers the cancel
// request within 100 ms, as it does unless the machine is overloaded: the
// reconnects are logged, not asserted.
func TestInTxDeadlineDuringAStatement(t *testing.T) {
	t.Parallel()
	db := oneConnDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	pid := backendPID(t, db)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := db.InTx(ctx, func(ctx context.Context) error {
			if err := users.Create(ctx, &User{Email: fmt.Sprintf("slow%d@example.com", i)}); err != nil {
				return err
			}
			return users.Query(ctx).Exec(ctx, "SELECT pg_sleep(10)")
		})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("InTx = %v, want an error matching context.DeadlineExceeded", err)
		}
	}
	if got := backendPID(t, db); got != pid {
		t.Logf("the pool's connection was replaced (backend %d, then %d): a cancel took over 100 ms", pid, got)
	}
	if n, err := users.Count(context.Background()); err != nil || n != 0 {
		t.Errorf("%d users (%v), want 0", n, err)
	}
}

// TestCancelledWritesAndSavepoints: a write with associations (a
// transaction, or a savepoint inside InTx) and a nested InTx, called with a
// ctx that has ended, fail with an error matching ctx.Err(), write nothing
// and keep the connection.
func TestCancelledWritesAndSavepoints(t *testing.T) {
	t.Parallel()
	cfg := dbtest.Schema{Migrations: atomicSchema, Server: srv}.NewConfig(t)
	cfg.MaxOpenConns = 1
	db := openDB(t, cfg)
	buyers := dbkit.NewBaseDatabase[Buyer](db)
	pid := backendPID(t, db)
	buyer := func() *Buyer { return &Buyer{Name: "late", Purchases: []Purchase{{Amount: 1}, {Amount: 2}}} }

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := buyers.Create(ended, buyer()); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with an ended ctx = %v, want context.Canceled", err)
	}
	for name, inner := range map[string]func(ctx context.Context) error{
		"write":     func(ctx context.Context) error { return buyers.Create(ctx, buyer()) },
		"savepoint": func(ctx context.Context) error { return db.InTx(ctx, func(context.Context) error { return nil }) },
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var innerErr error
		err := db.InTx(ctx, func(ctx context.Context) error {
			cancel()
			innerErr = inner(ctx)
			return innerErr
		})
		if !errors.Is(innerErr, context.Canceled) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s in a transaction whose ctx ended = %v (InTx: %v), want context.Canceled", name, innerErr, err)
		}
	}
	if got := backendPID(t, db); got != pid {
		t.Errorf("the pool's connection was replaced (backend %d, then %d)", pid, got)
	}
	if n := count(t, db, "buyers"); n != 0 {
		t.Errorf("%d buyers written with ended ctxs, want 0", n)
	}
}
