package integration

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

func addColumn(t *testing.T, db *dbkit.DB, column string) {
	t.Helper()
	ctx := context.Background()
	if err := dbkit.NewBaseDatabase[User](db).Query(ctx).Exec(ctx, "ALTER TABLE users ADD COLUMN "+column+" text"); err != nil {
		t.Fatal(err)
	}
}

// TestReadsSurviveAConcurrentSchemaChange: as in a rolling deploy, where a
// new replica's migration changes the schema under the old replicas, every
// pooled connection of a service has its statements prepared (pgx's default cache_statement mode);
// a column is added to the table; the reads that follow, on every
// connection, succeed: the first on each connection meets the stale
// statement (SQLSTATE 0A000) and is run again once.
func TestReadsSurviveAConcurrentSchemaChange(t *testing.T) {
	t.Parallel()
	const conns = 4
	service, migrator := twoDBs(t, conns)
	users := dbkit.NewBaseDatabase[User](service)
	ctx := context.Background()
	u := User{Email: "deploy@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	reads := func() []error {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for range 3 * conns {
			wg.Go(func() {
				_, err1 := users.Find(ctx)
				_, err2 := users.Get(ctx, u.ID)
				_, err3 := users.Query(ctx).Where("email = ?", u.Email).First(ctx)
				mu.Lock()
				errs = append(errs, errors.Join(err1, err2, err3))
				mu.Unlock()
			})
		}
		wg.Wait()
		return errs
	}
	// Prepare the statements on every connection: a transaction on each,
	// all held at once (statements prepared in a transaction stay).
	var ready sync.WaitGroup
	ready.Add(conns)
	hold := make(chan struct{})
	warmed := make(chan error, conns)
	for range conns {
		go func() {
			warmed <- service.InTx(ctx, func(ctx context.Context) error {
				_, err1 := users.Find(ctx)
				_, err2 := users.Get(ctx, u.ID)
				_, err3 := users.Query(ctx).Where("email = ?", u.Email).First(ctx)
				ready.Done()
				<-hold
				return errors.Join(err1, err2, err3)
			})
		}()
	}
	ready.Wait()
	close(hold)
	for range conns {
		if err := <-warmed; err != nil {
			t.Fatal(err)
		}
	}
	addColumn(t, migrator, "nickname")
	for i, err := range reads() {
		if err != nil {
			t.Fatalf("read %d after the schema change: %v", i, err)
		}
	}
}

// TestSchemaChangeInsideATransaction: there the stale statement aborts the
// transaction, which cannot be hidden: the error is ErrSchemaChanged, and
// RetrySerializationFailures runs the transaction again, successfully.
func TestSchemaChangeInsideATransaction(t *testing.T) {
	t.Parallel()
	service, migrator := twoDBs(t, 1)
	users := dbkit.NewBaseDatabase[User](service)
	ctx := context.Background()
	read := func(ctx context.Context) error {
		_, err := users.Find(ctx)
		return err
	}
	if err := read(ctx); err != nil {
		t.Fatal(err)
	}
	addColumn(t, migrator, "nickname")
	if err := service.InTx(ctx, read); !errors.Is(err, dbkit.ErrSchemaChanged) {
		t.Fatalf("InTx after a schema change = %v, want ErrSchemaChanged", err)
	}

	if err := service.InTx(ctx, read); err != nil { // prepared again after the failure
		t.Fatal(err)
	}
	addColumn(t, migrator, "nickname2")
	attempts := 0
	err := service.InTx(ctx, func(ctx context.Context) error {
		attempts++
		return read(ctx)
	}, dbkit.RetrySerializationFailures(2))
	if err != nil || attempts != 2 {
		t.Fatalf("InTx with retries = %v after %d attempts, want success on the second", err, attempts)
	}
}
