package integration

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
)

func TestInTxCommitsAcrossRepositories(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	orders := dbkit.NewBaseDatabase[Order](db)

	var u User
	err := db.InTx(ctx, func(ctx context.Context) error {
		u = User{Email: "tx@example.com"}
		if err := users.Create(ctx, &u); err != nil {
			return err
		}
		// Inside: the row is visible to the transaction, through any repository.
		if ok, err := users.Exists(ctx, dbkit.Eq("email", "tx@example.com")); err != nil || !ok {
			t.Errorf("inside the transaction: Exists = %v, %v", ok, err)
		}
		// Outside: not yet.
		if ok, err := users.Exists(context.Background(), dbkit.Eq("email", "tx@example.com")); err != nil || ok {
			t.Errorf("outside the transaction: Exists = %v, %v; want false: an uncommitted row is not visible", ok, err)
		}
		var n int64
		if err := users.Query(ctx).Raw("SELECT count(*) FROM users").Scan(ctx, &n); err != nil || n != 1 {
			t.Errorf("Query inside the transaction counts %d, %v", n, err)
		}
		return orders.Create(ctx, &Order{UserID: u.ID, Amount: 5})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := orders.Count(ctx, dbkit.Eq("user_id", u.ID)); n != 1 {
		t.Errorf("after commit: %d orders, want 1", n)
	}
}

func TestInTxRollsBackOnErrorAndPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	boom := errors.New("boom")

	err := db.InTx(ctx, func(ctx context.Context) error {
		if err := users.Create(ctx, &User{Email: "rolled@example.com"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want fn's error", err)
	}

	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Errorf("recovered %v, want the panic to go on after the rollback", r)
			}
		}()
		_ = db.InTx(ctx, func(ctx context.Context) error {
			if err := users.Create(ctx, &User{Email: "panicked@example.com"}); err != nil {
				return err
			}
			panic("kaboom")
		})
	}()

	if n, err := users.Count(ctx); err != nil || n != 0 {
		t.Errorf("after error and panic: %d rows, %v; want none", n, err)
	}
	// The pool is intact: no connection is left inside a transaction.
	if err := db.InTx(ctx, func(ctx context.Context) error { return users.Create(ctx, &User{Email: "ok@example.com"}) }); err != nil {
		t.Fatal(err)
	}
}

func TestInTxNestedUsesSavepoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	inner := errors.New("inner")

	err := db.InTx(ctx, func(ctx context.Context) error {
		if err := users.Create(ctx, &User{Email: "outer@example.com"}); err != nil {
			return err
		}
		err := db.InTx(ctx, func(ctx context.Context) error {
			if err := users.Create(ctx, &User{Email: "inner@example.com"}); err != nil {
				return err
			}
			return inner
		})
		if !errors.Is(err, inner) {
			t.Errorf("nested InTx = %v, want inner", err)
		}
		// A failed statement inside a savepoint does not doom the outer transaction.
		_ = db.InTx(ctx, func(ctx context.Context) error {
			return users.Create(ctx, &User{Email: "outer@example.com"}) // duplicate
		})
		return users.Create(ctx, &User{Email: "after@example.com"})
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := users.Find(ctx, dbkit.OrderBy("email"))
	if err != nil {
		t.Fatal(err)
	}
	var emails []string
	for _, u := range got {
		emails = append(emails, u.Email)
	}
	if len(emails) != 2 || emails[0] != "after@example.com" || emails[1] != "outer@example.com" {
		t.Errorf("rows = %v, want after@ and outer@ (inner rolled back to its savepoint)", emails)
	}
}

func TestInTxReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	err := db.InTx(ctx, func(ctx context.Context) error {
		return users.Create(ctx, &User{Email: "ro@example.com"})
	}, dbkit.ReadOnly())
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("write in a read-only transaction = %v, want SQLSTATE 25006", err)
	}
}

// Two SERIALIZABLE transactions that each read what the other writes (write
// skew): PostgreSQL aborts one with 40001; with retries both end committed.
func TestInTxRetriesSerializationFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)

	var (
		attempts atomic.Int32
		bothRead sync.WaitGroup
	)
	bothRead.Add(2)
	run := func(email string) error {
		first := true
		return db.InTx(ctx, func(ctx context.Context) error {
			attempts.Add(1)
			n, err := users.Count(ctx)
			if err != nil {
				return err
			}
			if first { // the first time, wait until both have read
				first = false
				bothRead.Done()
				bothRead.Wait()
			}
			return users.Create(ctx, &User{Email: email, Age: int(n)})
		}, dbkit.Isolation(sql.LevelSerializable), dbkit.RetrySerializationFailures(5))
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, email := range []string{"a@example.com", "b@example.com"} {
		wg.Go(func() { errs[i] = run(email) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("a transaction failed despite retries: %v", err)
		}
	}
	if n, _ := users.Count(ctx); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
	if attempts.Load() < 3 {
		t.Errorf("%d attempts in all: no transaction was retried, so the test proved nothing", attempts.Load())
	}

	// Without retries the conflict surfaces as 40001.
	bothRead = sync.WaitGroup{}
	bothRead.Add(2)
	noRetry := func(email string) error {
		return db.InTx(ctx, func(ctx context.Context) error {
			if _, err := users.Count(ctx); err != nil {
				return err
			}
			bothRead.Done()
			bothRead.Wait()
			return users.Create(ctx, &User{Email: email})
		}, dbkit.Isolation(sql.LevelSerializable))
	}
	for i, email := range []string{"c@example.com", "d@example.com"} {
		wg.Go(func() { errs[i] = noRetry(email) })
	}
	wg.Wait()
	failures := 0
	for _, err := range errs {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "40001" {
			failures++
		}
	}
	if failures != 1 {
		t.Errorf("without retries: errors %v, want exactly one 40001", errs)
	}
}

func TestRepositoryIgnoresTransactionOfAnotherDB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db1, db2 := newDB(t), newDB(t)
	users2 := dbkit.NewBaseDatabase[User](db2)
	err := db1.InTx(ctx, func(ctx context.Context) error {
		return users2.Create(ctx, &User{Email: "other@example.com"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := users2.Count(ctx); n != 1 {
		t.Errorf("db2 has %d rows, want 1 (written on its own pool)", n)
	}
}
