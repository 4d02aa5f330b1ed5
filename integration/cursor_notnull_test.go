package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// TestFindCursorLearnsNotNullFromTheDatabase: User.Name has no
// gorm:"not null" tag, but the migration declares its column NOT NULL:
// cursor pages sort by it, and walk every row once, forward and backward.
// (TestCursorRefusesUnsafeSorts: a field on a nullable column still cannot.)
func TestFindCursorLearnsNotNullFromTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	for i := range 7 {
		u := User{Email: fmt.Sprintf("cursor-%d@example.com", i), Name: fmt.Sprintf("name-%d", i%3)}
		if err := users.Create(ctx, &u); err != nil {
			t.Fatal(err)
		}
	}
	for _, sort := range []string{"name", "-name", "name,-age"} {
		want, err := users.Find(ctx, dbkit.SortBy(sort))
		if err != nil {
			t.Fatal(err)
		}
		forward, backward := walk(t, users, 2, dbkit.SortBy(sort))
		if !slices.Equal(forward, ids(want)) || !slices.Equal(backward, ids(want)) {
			t.Errorf("sort %q: pages give %d rows forward and %d backward, not the %d rows in order", sort, len(forward), len(backward), len(want))
		}
	}
}

// TestFindCursorReadsNotNullOnce: a repository reads the catalog once,
// however many FindCursor calls start at once; a read that failed is
// returned, not kept.
func TestFindCursorReadsNotNullOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, sent := countedDB(t, "pg_attribute")

	// What one read sends.
	if _, err := dbkit.NewBaseDatabase[User](db).FindCursor(ctx, dbkit.CursorRequest{Size: 1}, dbkit.SortBy("name")); err != nil {
		t.Fatal(err)
	}
	oneRead := sent.Swap(0)
	if oneRead == 0 {
		t.Fatal("no statement on pg_attribute: how does FindCursor learn NOT NULL?")
	}

	users := dbkit.NewBaseDatabase[User](db)
	// In a transaction that failed, the read fails, and is not kept.
	err := db.InTx(ctx, func(ctx context.Context) error {
		_, _ = users.Query(ctx).Where("1 / 0 = 1").Find(ctx) // division by zero: aborts the transaction
		_, err := users.FindCursor(ctx, dbkit.CursorRequest{Size: 1}, dbkit.SortBy("name"))
		return err
	})
	if err == nil || errors.Is(err, dbkit.ErrInvalid) {
		t.Fatalf("FindCursor in an aborted transaction = %v, want the server's error", err)
	}
	sent.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := users.FindCursor(ctx, dbkit.CursorRequest{Size: 1}, dbkit.SortBy("name,age"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := users.FindCursor(ctx, dbkit.CursorRequest{Size: 1}, dbkit.SortBy("-age")); err != nil {
		t.Fatal(err)
	}
	if n := sent.Load(); n != oneRead {
		t.Errorf("17 FindCursor calls after a failed read sent %d statements on pg_attribute, want one read's %d", n, oneRead)
	}
}
