package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
)

func TestCreateManyWithCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	items := make([]User, 500)
	for i := range items {
		items[i] = User{Email: fmt.Sprintf("copy%03d@example.com", i), Name: "Copy", Age: i}
	}
	before := time.Now().Add(-time.Second)
	if err := users.CreateMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	seen := map[uuid.UUID]bool{}
	for _, u := range items {
		if u.ID.Version() != 7 || seen[u.ID] || u.CreatedAt.Before(before) || !u.UpdatedAt.Equal(u.CreatedAt) {
			t.Fatalf("item %s: ID %v (seen %v), timestamps %v/%v", u.Email, u.ID, seen[u.ID], u.CreatedAt, u.UpdatedAt)
		}
		seen[u.ID] = true
	}
	if n, _ := users.Count(ctx); n != 500 {
		t.Fatalf("Count = %d, want 500", n)
	}
	got, err := users.Get(ctx, items[123].ID)
	if err != nil || got != items[123] {
		t.Errorf("Get = %+v, %v; want %+v", got, err, items[123])
	}

	// A duplicate: COPY writes nothing and reports the constraint.
	dup := []User{{Email: "new1@example.com"}, {Email: "copy000@example.com"}}
	err = users.CreateMany(ctx, dup)
	var ce *dbkit.ConstraintError
	if !errors.As(err, &ce) || !errors.Is(err, dbkit.ErrDuplicate) || ce.Constraint != "users_email_key" {
		t.Fatalf("CreateMany(duplicate) = %v, want ErrDuplicate on users_email_key", err)
	}
	if ok, err := users.Exists(ctx, dbkit.Eq("email", "new1@example.com")); err != nil || ok {
		t.Errorf("Exists(a row of the failed COPY) = %v, %v; want false", ok, err)
	}

	// In a transaction that rolls back, nothing stays.
	rollBack := errors.New("roll back")
	err = db.InTx(ctx, func(ctx context.Context) error {
		if err := users.CreateMany(ctx, []User{{Email: "tx1@example.com"}, {Email: "tx2@example.com"}}); err != nil {
			t.Fatal(err)
		}
		if n, err := users.Count(ctx, dbkit.Filter{Field: "email", Op: dbkit.OpLike, Value: "tx"}); err != nil || n != 2 {
			t.Errorf("inside the transaction: %d rows, %v; want 2", n, err)
		}
		return rollBack
	})
	if !errors.Is(err, rollBack) {
		t.Errorf("InTx = %v, want fn's error", err)
	}
	if n, err := users.Count(ctx, dbkit.Filter{Field: "email", Op: dbkit.OpLike, Value: "tx"}); err != nil || n != 0 {
		t.Errorf("after rollback: %d rows of the COPY stayed (%v)", n, err)
	}
}

// A model with hooks goes through GORM's batched INSERT, hooks run.
func TestCreateManyFallsBackToInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hooked := dbkit.NewBaseDatabase[Hooked](newDB(t))
	items := make([]Hooked, 3)
	if err := hooked.CreateMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	for _, h := range items {
		if h.ID.Version() != 7 || h.SeenID != h.ID {
			t.Errorf("item: ID %v, hook saw %v", h.ID, h.SeenID)
		}
	}
	if n, _ := hooked.Count(ctx); n != 3 {
		t.Errorf("Count = %d", n)
	}
}

func TestUpsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	first := User{Email: "up@example.com", Name: "First", Age: 1}
	if err := users.Upsert(ctx, &first, dbkit.Conflict{Columns: []string{"email"}, Update: []string{"name"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	second := User{Email: "up@example.com", Name: "Second", Age: 2}
	if err := users.Upsert(ctx, &second, dbkit.Conflict{Columns: []string{"email"}, Update: []string{"Name"}}); err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || !second.CreatedAt.Equal(first.CreatedAt) || second.Name != "Second" || second.Age != 1 {
		t.Errorf("after the conflicting upsert: %+v; want the first row's ID, CreatedAt and Age with the new Name", second)
	}
	if !second.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("UpdatedAt %v not after %v", second.UpdatedAt, first.UpdatedAt)
	}
	// Nothing to update: the existing row comes back unchanged.
	third := User{Email: "up@example.com", Name: "Third"}
	if err := users.Upsert(ctx, &third, dbkit.Conflict{Columns: []string{"email"}}); err != nil {
		t.Fatal(err)
	}
	if third.ID != first.ID || third.Name != "Second" {
		t.Errorf("DO NOTHING-like upsert returned %+v, want the stored row", third)
	}
	if n, _ := users.Count(ctx); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}

	for name, on := range map[string]dbkit.Conflict{
		"no columns":     {},
		"unknown column": {Columns: []string{"nope"}},
		"update the key": {Columns: []string{"email"}, Update: []string{"email"}},
		"update the id":  {Columns: []string{"email"}, Update: []string{"id"}},
	} {
		if err := users.Upsert(ctx, &User{Email: "x@example.com"}, on); !errors.Is(err, dbkit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// UpsertMany matches the rows PostgreSQL returns to the items by key, so
// every item gets its own row's ID (GORM issue #7029 is about getting this
// wrong).
func TestUpsertManyMatchesRowsByKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	existing := []User{{Email: "b@example.com", Name: "B"}, {Email: "d@example.com", Name: "D"}}
	if err := users.CreateMany(ctx, existing); err != nil {
		t.Fatal(err)
	}
	batch := []User{
		{Email: "d@example.com", Name: "D2"},
		{Email: "a@example.com", Name: "A"},
		{Email: "b@example.com", Name: "B2"},
		{Email: "c@example.com", Name: "C"},
	}
	if err := users.UpsertMany(ctx, batch, dbkit.Conflict{Columns: []string{"email"}, Update: []string{"name"}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uuid.UUID{"d@example.com": existing[1].ID, "b@example.com": existing[0].ID}
	for _, u := range batch {
		stored, err := users.Get(ctx, u.ID)
		if err != nil || stored.Email != u.Email || stored.Name != u.Name {
			t.Errorf("item %s has ID %v, which holds %+v (%v)", u.Email, u.ID, stored, err)
		}
		if id, ok := want[u.Email]; ok && u.ID != id {
			t.Errorf("item %s got ID %v, want the existing %v", u.Email, u.ID, id)
		}
	}
	err := users.UpsertMany(ctx, []User{{Email: "e@example.com"}, {Email: "e@example.com"}}, dbkit.Conflict{Columns: []string{"email"}, Update: []string{"name"}})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "21000" {
		t.Errorf("two items with one key: %v, want SQLSTATE 21000", err)
	}
}

// Rows inserted by UpsertMany are matched by the ID they were given, so
// items with NULL keys (never a conflict) each get their own row.
func TestUpsertManyWithNullKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	u := User{Email: "nk@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	orders := dbkit.NewBaseDatabase[Order](db)
	items := []Order{{UserID: u.ID, Amount: 1}, {UserID: u.ID, Amount: 2}}
	// note is NULL in both: with a unique index on note they never conflict.
	if err := orders.Query(ctx).Exec(ctx, "CREATE UNIQUE INDEX orders_note_key ON orders (note)"); err != nil {
		t.Fatal(err)
	}
	if err := orders.UpsertMany(ctx, items, dbkit.Conflict{Columns: []string{"note"}, Update: []string{"amount"}}); err != nil {
		t.Fatal(err)
	}
	if items[0].ID == items[1].ID || items[0].Amount != 1 || items[1].Amount != 2 {
		t.Errorf("items = %+v: two NULL-keyed rows got one ID", items)
	}
}

// On a soft-delete model the conflict target is the live rows, which the
// partial unique index answers; a deleted row's key is free again.
func TestUpsertSoftDeleteAndVersioned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	accounts := dbkit.NewBaseDatabase[Account](db)
	old := Account{Email: "soft@example.com"}
	if err := accounts.Create(ctx, &old); err != nil {
		t.Fatal(err)
	}
	if err := accounts.Delete(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	fresh := Account{Email: "soft@example.com"}
	if err := accounts.Upsert(ctx, &fresh, dbkit.Conflict{Columns: []string{"email"}}); err != nil {
		t.Fatalf("Upsert over a deleted row's email: %v", err)
	}
	if fresh.ID == old.ID {
		t.Error("Upsert revived the deleted row instead of inserting a live one")
	}
	again := Account{Email: "soft@example.com"}
	if err := accounts.Upsert(ctx, &again, dbkit.Conflict{Columns: []string{"email"}}); err != nil || again.ID != fresh.ID {
		t.Errorf("second Upsert = %v, ID %v; want the live row %v", err, again.ID, fresh.ID)
	}

	// A Versioned row updated by an upsert gets a new version: a reader's
	// older copy is stale.
	counters := dbkit.NewBaseDatabase[Counter](db)
	c := Counter{Label: "v", Value: 1}
	if err := counters.Create(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := counters.Query(ctx).Exec(ctx, "CREATE UNIQUE INDEX counters_label_key ON counters (label)"); err != nil {
		t.Fatal(err)
	}
	up := Counter{Label: "v", Value: 100}
	if err := counters.Upsert(ctx, &up, dbkit.Conflict{Columns: []string{"label"}, Update: []string{"value"}}); err != nil {
		t.Fatal(err)
	}
	if up.Version != 2 || up.Value != 100 || up.ID != c.ID {
		t.Errorf("after the upsert: %+v; want version 2, value 100, the same ID", up)
	}
	c.Value = 2
	if err := counters.Update(ctx, &c); !errors.Is(err, dbkit.ErrStale) {
		t.Errorf("Update of the pre-upsert copy = %v, want ErrStale", err)
	}
	if err := counters.Upsert(ctx, &up, dbkit.Conflict{Columns: []string{"label"}, Update: []string{"version"}}); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("an upsert updating the version = %v, want ErrInvalid", err)
	}
}
