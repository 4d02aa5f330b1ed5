package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
)

func TestSoftDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	accounts := dbkit.NewBaseDatabase[Account](newDB(t))
	a := Account{Email: "gone@example.com"}
	if err := accounts.Create(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if err := accounts.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Get(ctx, a.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrNotFound", err)
	}
	if err := accounts.Delete(ctx, a.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	got, err := accounts.Get(ctx, a.ID, dbkit.WithDeleted())
	if err != nil || !got.DeletedAt.Valid {
		t.Fatalf("Get(WithDeleted) = %+v, %v; want the row with DeletedAt set", got, err)
	}
	if n, err := accounts.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count() = %d, %v; want 0 live accounts", n, err)
	}
	if n, _ := accounts.Count(ctx, dbkit.OnlyDeleted()); n != 1 {
		t.Errorf("Count(OnlyDeleted) = %d, want 1", n)
	}
	got.Email = "changed@example.com"
	if err := accounts.Update(ctx, &got); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Update(deleted) = %v, want ErrNotFound", err)
	}

	// The partial unique index lets the email be registered again.
	again := Account{Email: "gone@example.com"}
	if err := accounts.Create(ctx, &again); err != nil {
		t.Fatalf("registering a deleted account's email again: %v", err)
	}
	// ... which makes restoring the old one a duplicate.
	if err := accounts.Restore(ctx, a.ID); !errors.Is(err, dbkit.ErrDuplicate) {
		t.Errorf("Restore over a live duplicate = %v, want ErrDuplicate", err)
	}
	if err := accounts.HardDelete(ctx, again.ID); err != nil {
		t.Fatal(err)
	}
	if err := accounts.Restore(ctx, a.ID); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, err := accounts.Get(ctx, a.ID); err != nil || got.DeletedAt.Valid {
		t.Errorf("after Restore: %+v, %v", got, err)
	}
	if err := accounts.Restore(ctx, a.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Restore(live row) = %v, want ErrNotFound", err)
	}
	if err := accounts.HardDelete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := accounts.Count(ctx, dbkit.WithDeleted()); err != nil || n != 0 {
		t.Errorf("after HardDelete: %d rows, %v; want none", n, err)
	}

	users := dbkit.NewBaseDatabase[User](newDB(t))
	if _, err := users.Count(ctx, dbkit.OnlyDeleted()); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("OnlyDeleted on a model without soft delete = %v, want ErrInvalid", err)
	}
	if err := users.Restore(ctx, a.ID); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Restore on a model without soft delete = %v, want ErrInvalid", err)
	}
}

// 64 goroutines each increment one counter 100 times, re-reading and
// retrying on ErrStale: no increment is lost.
func TestOptimisticLockingLosesNoUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	counters := dbkit.NewBaseDatabase[Counter](newDB(t))
	c := Counter{Label: "hits"}
	if err := counters.Create(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 {
		t.Fatalf("Version after Create = %d, want 1", c.Version)
	}
	const workers, increments = 64, 100
	var stale atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				for {
					cur, err := counters.Get(ctx, c.ID)
					if err != nil {
						errs <- err
						return
					}
					cur.Value++
					err = counters.Update(ctx, &cur)
					if err == nil {
						break
					}
					if !errors.Is(err, dbkit.ErrStale) {
						errs <- err
						return
					}
					stale.Add(1)
					time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	final, err := counters.Get(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.Value != workers*increments || final.Version != workers*increments+1 {
		t.Errorf("Value %d, Version %d; want %d and %d", final.Value, final.Version, workers*increments, workers*increments+1)
	}
	if stale.Load() == 0 {
		t.Error("no update was ever stale: the test did not exercise the conflict")
	}
	t.Logf("%d stale updates retried", stale.Load())

	// A stale struct is refused and keeps its version; a missing row is ErrNotFound.
	old := c
	if err := counters.Update(ctx, &old); !errors.Is(err, dbkit.ErrStale) || old.Version != c.Version {
		t.Errorf("Update(stale) = %v, version %d", err, old.Version)
	}
	if err := counters.HardDelete(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := counters.Update(ctx, &final); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Update(deleted) = %v, want ErrNotFound", err)
	}
}

func TestPatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db, dbkit.Patchable("name", "Age"))
	u := User{Email: "patch@example.com", Name: "Before", Age: 30}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	// Values as a JSON body gives them: float64 for numbers.
	got, err := users.Patch(ctx, u.ID, map[string]any{"name": "After", "age": 31.0})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "After" || got.Age != 31 || got.Email != u.Email || !got.UpdatedAt.After(u.UpdatedAt) || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("Patch returned %+v", got)
	}
	if stored, _ := users.Get(ctx, u.ID); stored != got {
		t.Errorf("stored %+v, returned %+v", stored, got)
	}
	for name, fields := range map[string]map[string]any{
		"nothing":        {},
		"unknown":        {"nope": 1},
		"not patchable":  {"email": "mallory@example.com"},
		"the id":         {"id": "x"},
		"created_at":     {"created_at": "2020-01-01"},
		"bad value":      {"age": "thirty"},
		"null in a text": {"name": nil},
	} {
		if _, err := users.Patch(ctx, u.ID, fields); !errors.Is(err, dbkit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := users.Patch(ctx, [16]byte{1}, map[string]any{"name": "x"}); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Patch(missing) = %v, want ErrNotFound", err)
	}

	// On a versioned model Patch bumps the version: a reader's Update is then stale.
	if _, err := dbkit.NewBaseDatabase[User](db).Patch(ctx, u.ID, map[string]any{"name": "x"}); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Patch without patchable fields = %v, want ErrInvalid", err)
	}
	if _, err := dbkit.NewBaseDatabase[User](db, dbkit.Patchable("id")).Count(ctx); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Patchable(id) = %v, want ErrInvalid", err)
	}
	counters := dbkit.NewBaseDatabase[Counter](db, dbkit.Patchable("label"))
	c := Counter{Label: "a"}
	if err := counters.Create(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if p, err := counters.Patch(ctx, c.ID, map[string]any{"label": "b"}); err != nil || p.Version != 2 {
		t.Fatalf("Patch(versioned) = %+v, %v; want version 2", p, err)
	}
	if _, err := dbkit.NewBaseDatabase[Counter](db, dbkit.Patchable("version")).Patch(ctx, c.ID, map[string]any{"version": 9}); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("patching the version = %v, want ErrInvalid", err)
	}
	c.Value = 5
	if err := counters.Update(ctx, &c); !errors.Is(err, dbkit.ErrStale) {
		t.Errorf("Update after a Patch = %v, want ErrStale", err)
	}
}

// A job queue: workers claim rows FOR UPDATE SKIP LOCKED in transactions;
// every job is processed exactly once and no worker waits for another.
func TestJobQueueWithSkipLocked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	jobs := dbkit.NewBaseDatabase[Job](db)
	const n = 200
	seed := make([]Job, n)
	for i := range seed {
		seed[i] = Job{Payload: i}
	}
	if err := jobs.CreateMany(ctx, seed); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Find(ctx, dbkit.ForUpdate()); !errors.Is(err, dbkit.ErrNoTx) || !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("ForUpdate outside a transaction = %v, want ErrNoTx", err)
	}
	if _, err := jobs.Find(ctx, dbkit.SkipLocked()); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("SkipLocked alone = %v, want ErrInvalid", err)
	}

	var processed sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				claimed := false
				err := db.InTx(ctx, func(ctx context.Context) error {
					batch, err := jobs.Find(ctx, dbkit.Eq("done", false), dbkit.OrderBy("payload"), dbkit.Limit(5),
						dbkit.ForUpdate(), dbkit.SkipLocked())
					if err != nil || len(batch) == 0 {
						return err
					}
					claimed = true
					for _, j := range batch {
						if _, dup := processed.LoadOrStore(j.Payload, true); dup {
							return fmt.Errorf("job %d processed twice", j.Payload)
						}
						j.Done, j.Attempts = true, j.Attempts+1
						if err := jobs.Update(ctx, &j); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				if !claimed {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	done, _ := jobs.Count(ctx, dbkit.Eq("done", true), dbkit.Eq("attempts", 1))
	if done != n {
		t.Errorf("%d jobs done exactly once, want %d", done, n)
	}

	// NOWAIT fails at once on a locked row.
	locked := make(chan struct{})
	release := make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		holder <- db.InTx(ctx, func(ctx context.Context) error {
			_, err := jobs.Get(ctx, seed[0].ID, dbkit.ForUpdate())
			close(locked)
			<-release
			return err
		})
	}()
	<-locked
	err := db.InTx(ctx, func(ctx context.Context) error {
		_, err := jobs.Get(ctx, seed[0].ID, dbkit.ForUpdate(), dbkit.NoWait())
		return err
	})
	close(release)
	if herr := <-holder; herr != nil {
		t.Errorf("the transaction holding the lock: %v", herr)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Errorf("NoWait on a locked row = %v, want SQLSTATE 55P03", err)
	}
}

func TestPreloadAndSelect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	seedOrders(t, db, 3)
	customers := dbkit.NewBaseDatabase[Customer](db)
	got, err := customers.Find(ctx, dbkit.Preload("Orders"))
	if err != nil || len(got) != 1 || len(got[0].Orders) != 3 {
		t.Fatalf("Find(Preload Orders) = %+v, %v", got, err)
	}
	if _, err := customers.Find(ctx, dbkit.Preload("Invoices")); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Preload(unknown) = %v, want ErrInvalid", err)
	}
	users := dbkit.NewBaseDatabase[User](db)
	sparse, err := users.Find(ctx, dbkit.Select("email"))
	if err != nil || len(sparse) != 1 || sparse[0].Email == "" || sparse[0].ID == uuid.Nil || !sparse[0].CreatedAt.IsZero() {
		t.Errorf("Find(Select email) = %+v, %v; want ID and Email only", sparse, err)
	}
	if _, err := users.Find(ctx, dbkit.Select("password")); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Select(unknown) = %v, want ErrInvalid", err)
	}
}

// Page methods honour every query option: soft-delete scopes, row locks and
// selected fields, not only filters and sorts.
func TestPagesHonourScopes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	accounts := dbkit.NewBaseDatabase[Account](db)
	for i := range 3 {
		a := Account{Email: fmt.Sprintf("p%d@example.com", i)}
		if err := accounts.Create(ctx, &a); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := accounts.Delete(ctx, a.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, c := range map[string]struct {
		opt  dbkit.QueryOption
		want int
	}{"live": {nil, 2}, "with deleted": {dbkit.WithDeleted(), 3}, "only deleted": {dbkit.OnlyDeleted(), 1}} {
		page, err := accounts.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 10, WithTotal: true}, c.opt)
		if err != nil || len(page.Items) != c.want || *page.Total != int64(c.want) {
			t.Errorf("FindPage(%s) = %d items, total %v, %v; want %d", name, len(page.Items), page.Total, err, c.want)
		}
		cur, err := accounts.FindCursor(ctx, dbkit.CursorRequest{Size: 10}, c.opt)
		if err != nil || len(cur.Items) != c.want {
			t.Errorf("FindCursor(%s) = %d items, %v; want %d", name, len(cur.Items), err, c.want)
		}
	}
	if _, err := accounts.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 10}, dbkit.ForUpdate()); !errors.Is(err, dbkit.ErrNoTx) {
		t.Errorf("FindPage(ForUpdate) outside a transaction = %v, want ErrNoTx", err)
	}
	if _, err := accounts.FindCursor(ctx, dbkit.CursorRequest{Size: 10}, dbkit.ForUpdate()); !errors.Is(err, dbkit.ErrNoTx) {
		t.Errorf("FindCursor(ForUpdate) outside a transaction = %v, want ErrNoTx", err)
	}
	sparse, err := accounts.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 10}, dbkit.Select("email"))
	if err != nil || sparse.Items[0].Email == "" || !sparse.Items[0].CreatedAt.IsZero() {
		t.Errorf("FindPage(Select) = %+v, %v", sparse.Items, err)
	}
}

// Cursor pages refuse sorts a cursor cannot carry.
func TestCursorRefusesUnsafeSorts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	// seen_id is nullable in the table and Hooked.SeenID no pointer: a NULL
	// would read as the zero UUID, so the cursor cannot trust it.
	hooked := dbkit.NewBaseDatabase[Hooked](db)
	if _, err := hooked.FindCursor(ctx, dbkit.CursorRequest{Size: 5}, dbkit.SortBy("seen_id")); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("a cursor sorted by a field that may read NULL as a zero UUID: %v, want ErrInvalid", err)
	}
	accounts := dbkit.NewBaseDatabase[Account](db)
	if _, err := accounts.FindCursor(ctx, dbkit.CursorRequest{Size: 5}, dbkit.OrderBy("deleted_at")); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("a cursor sorted by a gorm.DeletedAt: %v, want ErrInvalid", err)
	}
	// A cursor of one table is refused by another with the same sort.
	orders := seedOrders(t, db, 6)
	page, err := orders.FindCursor(ctx, dbkit.CursorRequest{Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.FindCursor(ctx, dbkit.CursorRequest{Cursor: page.Next, Size: 2}); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("a cursor of orders given to users: %v, want ErrInvalid", err)
	}
}
