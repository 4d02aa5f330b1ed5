package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
)

func TestCreateAssignsUUIDv7AndTimestamps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))

	before := time.Now().Add(-time.Millisecond)
	u := User{Email: "ada@example.com", Name: "Ada"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if u.ID == uuid.Nil || u.ID.Version() != 7 {
		t.Fatalf("ID = %v (version %d), want a UUIDv7", u.ID, u.ID.Version())
	}
	if u.PrimaryKey() != u.ID.String() {
		t.Errorf("PrimaryKey() = %q, want %q", u.PrimaryKey(), u.ID.String())
	}
	if u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now()) || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Errorf("timestamps = %v / %v, want now and equal", u.CreatedAt, u.UpdatedAt)
	}
	if u.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", u.CreatedAt.Location())
	}

	got, err := users.Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID || got.Email != u.Email || got.Name != u.Name ||
		!got.CreatedAt.Equal(u.CreatedAt) || !got.UpdatedAt.Equal(u.UpdatedAt) {
		t.Errorf("Get = %+v, want %+v (timestamps must survive the round trip exactly)", got, u)
	}

	// IDs are time-ordered.
	v := User{Email: "grace@example.com"}
	if err := users.Create(ctx, &v); err != nil {
		t.Fatal(err)
	}
	if v.ID.String() <= u.ID.String() {
		t.Errorf("second ID %v does not sort after first %v", v.ID, u.ID)
	}
}

func TestCreateKeepsGivenIDAndCreatedAt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	id := uuid.Must(uuid.NewV7())
	created := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	u := User{Model: dbkit.Model{ID: id, CreatedAt: created}, Email: "given@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	got, err := users.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(created) {
		t.Errorf("CreatedAt = %v, want the given %v", got.CreatedAt, created)
	}
}

// Rows read back are in UTC whatever the process's local zone, so that they
// equal what was written. Not parallel: it changes time.Local.
func TestTimestampsReadBackInUTC(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("UTC+5", 5*3600)
	defer func() { time.Local = saved }()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	u := User{Email: "tz@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	got, err := users.Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != u {
		t.Errorf("read back %+v, want == %+v", got, u)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
	}
}

// The rows Patch and Upsert return are read as Get's are: AfterFind runs.
func TestReturnedRowsGetAfterFindHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hooked := dbkit.NewBaseDatabase[Hooked](newDB(t), dbkit.Patchable("seen_id"))
	h := Hooked{}
	if err := hooked.Create(ctx, &h); err != nil {
		t.Fatal(err)
	}
	if got, err := hooked.Get(ctx, h.ID); err != nil || !got.Found {
		t.Fatalf("Get: %+v, %v; want AfterFind to have run", got, err)
	}
	patched, err := hooked.Patch(ctx, h.ID, map[string]any{"seen_id": uuid.New()})
	if err != nil || !patched.Found {
		t.Errorf("Patch: %+v, %v; want AfterFind to have run", patched, err)
	}
	up := Hooked{}
	if err := hooked.Upsert(ctx, &up, dbkit.Conflict{Columns: []string{"id"}}); err != nil || !up.Found {
		t.Errorf("Upsert: %+v, %v; want AfterFind to have run", up, err)
	}
}

func TestIDAssignedBeforeModelHooksAndThroughQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	hooked := dbkit.NewBaseDatabase[Hooked](db)
	h := Hooked{}
	if err := hooked.Create(ctx, &h); err != nil {
		t.Fatal(err)
	}
	if h.SeenID == uuid.Nil || h.SeenID != h.ID {
		t.Errorf("BeforeCreate saw ID %v, want the assigned %v", h.SeenID, h.ID)
	}

	// The escape hatch gets IDs too: the callback is on the connection.
	users := dbkit.NewBaseDatabase[User](db)
	u := User{Email: "query@example.com"}
	if err := users.Query(ctx).Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if u.ID.Version() != 7 || u.CreatedAt.IsZero() {
		t.Errorf("created through Query: ID %v, CreatedAt %v; want a UUIDv7 and a time", u.ID, u.CreatedAt)
	}
	batch := []User{{Email: "b1@example.com"}, {Email: "b2@example.com"}}
	if err := users.Query(ctx).CreateInBatches(ctx, &batch, 10); err != nil {
		t.Fatal(err)
	}
	for _, b := range batch {
		if b.ID.Version() != 7 {
			t.Errorf("batch row %s: ID %v, want a UUIDv7", b.Email, b.ID)
		}
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	_, err := users.Get(context.Background(), uuid.Must(uuid.NewV7()))
	if !errors.Is(err, dbkit.ErrNotFound) || !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound matching gorm.ErrRecordNotFound too", err)
	}
}

func TestFindCountExists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	for i, name := range []string{"Ada", "Grace", "Ada", "Linus"} {
		if err := users.Create(ctx, &User{Email: fmt.Sprintf("u%d@example.com", i), Name: name, Age: 30 + i}); err != nil {
			t.Fatal(err)
		}
	}

	all, err := users.Find(ctx)
	if err != nil || len(all) != 4 {
		t.Fatalf("Find() = %d rows, %v; want 4", len(all), err)
	}
	adas, err := users.Find(ctx, dbkit.Eq("Name", "Ada"), dbkit.OrderByDesc("age"))
	if err != nil {
		t.Fatal(err)
	}
	if len(adas) != 2 || adas[0].Age != 32 || adas[1].Age != 30 {
		t.Fatalf("Find(Name=Ada, -age) = %+v, want ages 32 then 30", adas)
	}
	// Column names work as well as Go field names; conditions AND together.
	one, err := users.Find(ctx, dbkit.Eq("name", "Ada"), dbkit.Eq("age", 30))
	if err != nil || len(one) != 1 || one[0].Email != "u0@example.com" {
		t.Fatalf("Find(name=Ada, age=30) = %+v, %v", one, err)
	}
	top, err := users.Find(ctx, dbkit.OrderBy("email"), dbkit.Limit(2))
	if err != nil || len(top) != 2 || top[0].Email != "u0@example.com" || top[1].Email != "u1@example.com" {
		t.Fatalf("Find(email, limit 2) = %+v, %v", top, err)
	}
	none, err := users.Find(ctx, dbkit.Eq("name", "Nobody"))
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("Find(no match) = %#v, %v; want an empty, non-nil slice", none, err)
	}

	if n, err := users.Count(ctx); err != nil || n != 4 {
		t.Errorf("Count() = %d, %v; want 4", n, err)
	}
	if n, err := users.Count(ctx, dbkit.Eq("Name", "Ada")); err != nil || n != 2 {
		t.Errorf("Count(Ada) = %d, %v; want 2", n, err)
	}
	if ok, err := users.Exists(ctx, dbkit.Eq("Name", "Linus")); err != nil || !ok {
		t.Errorf("Exists(Linus) = %v, %v; want true", ok, err)
	}
	if ok, err := users.Exists(ctx, dbkit.Eq("Name", "Nobody")); err != nil || ok {
		t.Errorf("Exists(Nobody) = %v, %v; want false", ok, err)
	}
}

func TestFindNullCondition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	orders := dbkit.NewBaseDatabase[Order](db)
	u := User{Email: "n@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	note := "gift"
	for _, o := range []Order{{UserID: u.ID, Amount: 1}, {UserID: u.ID, Amount: 2, Note: &note}} {
		if err := orders.Create(ctx, &o); err != nil {
			t.Fatal(err)
		}
	}
	got, err := orders.Find(ctx, dbkit.Eq("note", nil))
	if err != nil || len(got) != 1 || got[0].Amount != 1 {
		t.Fatalf("Find(note IS NULL) = %+v, %v; want the order without a note", got, err)
	}
}

// Bad input is refused before any SQL is sent: the test proves it by
// running it against a closed DB, where any SQL would fail with ErrClosed.
func TestInvalidInputRefusedBeforeSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"unknown field": func() error { _, err := users.Find(ctx, dbkit.Eq("password; DROP TABLE users", 1)); return err },
		"unknown order": func() error { _, err := users.Find(ctx, dbkit.OrderBy("nope")); return err },
		"slice value":   func() error { _, err := users.Count(ctx, dbkit.Eq("name", []string{"a", "b"})); return err },
		"zero limit":    func() error { _, err := users.Find(ctx, dbkit.Limit(0)); return err },
		"exists":        func() error { _, err := users.Exists(ctx, dbkit.Eq("bogus", 1)); return err },
		"nil create":    func() error { return users.Create(ctx, nil) },
		"nil update":    func() error { return users.Update(ctx, nil) },
		"zero id":       func() error { return users.Update(ctx, &User{Email: "x"}) },
	}
	for name, call := range cases {
		err := call()
		if !errors.Is(err, dbkit.ErrInvalid) || errors.Is(err, dbkit.ErrClosed) {
			t.Errorf("%s: err = %v, want ErrInvalid without reaching the database", name, err)
		}
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	u := User{Email: "up@example.com", Name: "Before", Age: 40}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	created, prevUpdated := u.CreatedAt, u.UpdatedAt
	time.Sleep(2 * time.Millisecond)

	u.Name = "After"
	u.Age = 0                 // zero values are written too
	u.CreatedAt = time.Time{} // never written by Update
	if err := users.Update(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if !u.UpdatedAt.After(prevUpdated) {
		t.Errorf("UpdatedAt = %v, want after %v", u.UpdatedAt, prevUpdated)
	}
	got, err := users.Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "After" || got.Age != 0 || !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(u.UpdatedAt) {
		t.Errorf("after Update: %+v; want Name After, Age 0, CreatedAt %v, UpdatedAt %v", got, created, u.UpdatedAt)
	}

	if err := users.Delete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	err = users.Update(ctx, &u)
	if !errors.Is(err, dbkit.ErrNotFound) {
		t.Fatalf("Update(deleted row) = %v, want ErrNotFound", err)
	}
	if n, err := users.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count after Update of a deleted row = %d, %v; want 0 (not inserted again)", n, err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	u := User{Email: "del@example.com"}
	keep := User{Email: "keep@example.com"}
	for _, x := range []*User{&u, &keep} {
		if err := users.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := users.Delete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := users.Delete(ctx, u.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if _, err := users.Get(ctx, keep.ID); err != nil {
		t.Errorf("the other row is gone: %v", err)
	}
}

func TestConstraintErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	orders := dbkit.NewBaseDatabase[Order](db)
	const secret = "private-value@example.com"
	u := User{Email: secret}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name       string
		call       func() error
		kind       error
		constraint string
		table      string
		column     string
		code       string
	}{
		{"duplicate", func() error { return users.Create(ctx, &User{Email: secret}) },
			dbkit.ErrDuplicate, "users_email_key", "users", "", "23505"},
		{"check", func() error { return users.Create(ctx, &User{Email: "neg@example.com", Age: -1}) },
			dbkit.ErrCheck, "users_age_check", "users", "", "23514"},
		{"foreign key", func() error { return orders.Create(ctx, &Order{UserID: uuid.Must(uuid.NewV7()), Amount: 1}) },
			dbkit.ErrForeignKey, "orders_user_id_fkey", "orders", "", "23503"},
		{"not null", func() error {
			return users.Query(ctx).Exec(ctx, `INSERT INTO users (id, created_at, updated_at, email) VALUES (?, now(), now(), NULL)`, uuid.Must(uuid.NewV7()))
		}, dbkit.ErrNotNull, "", "users", "email", "23502"},
		{"duplicate on update", func() error {
			v := User{Email: "other@example.com"}
			if err := users.Create(ctx, &v); err != nil {
				return err
			}
			v.Email = secret
			return users.Update(ctx, &v)
		}, dbkit.ErrDuplicate, "users_email_key", "users", "", "23505"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call() // through Query too: dbkit's callback translated it
			if again := dbkit.TranslateError(context.Background(), err); again != err {
				t.Errorf("translating twice changed %v into %v", err, again)
			}
			var ce *dbkit.ConstraintError
			if !errors.As(err, &ce) || !errors.Is(err, c.kind) {
				t.Fatalf("err = %v, want a ConstraintError matching %v", err, c.kind)
			}
			if ce.Constraint != c.constraint || ce.Table != c.table || ce.Column != c.column || ce.SQLState != c.code {
				t.Errorf("ConstraintError = %+v, want constraint %q table %q column %q code %s", ce, c.constraint, c.table, c.column, c.code)
			}
			for _, other := range []error{dbkit.ErrDuplicate, dbkit.ErrCheck, dbkit.ErrForeignKey, dbkit.ErrNotNull, dbkit.ErrNotFound} {
				if other != c.kind && errors.Is(err, other) {
					t.Errorf("err also matches %v", other)
				}
			}
			if c.name == "duplicate" && (ce.Detail == "" || !strings.Contains(ce.Detail, secret)) {
				t.Errorf("Detail = %q, want PostgreSQL's detail with the value", ce.Detail)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error message leaks the row's value: %v", err)
			}
		})
	}
}

func TestExclusionConstraint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bookings := dbkit.NewBaseDatabase[Booking](newDB(t))
	if err := bookings.Create(ctx, &Booking{During: "[2026-11-26 10:00, 2026-11-26 11:00)"}); err != nil {
		t.Fatal(err)
	}
	const overlapping = "[2026-11-26 10:30, 2026-11-26 12:00)"
	err := bookings.Create(ctx, &Booking{During: overlapping})
	var ce *dbkit.ConstraintError
	if !errors.As(err, &ce) || !errors.Is(err, dbkit.ErrExclusion) || ce.Constraint != "bookings_no_overlap" || ce.SQLState != "23P01" {
		t.Fatalf("overlapping booking = %v, want ErrExclusion on bookings_no_overlap", err)
	}
	if strings.Contains(err.Error(), "10:30") || ce.Detail == "" {
		t.Errorf("message %q leaks the value, or Detail %q is empty", err, ce.Detail)
	}
}

func TestNewBaseDatabaseMisuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)

	type PtrEmbed struct {
		*dbkit.Model
		Name string
	}
	checks := map[string]error{
		"pointer type argument": dbkit.NewBaseDatabase[*User](db).Create(ctx, new(*User)),
		"model embedded by pointer": func() error {
			_, err := dbkit.NewBaseDatabase[PtrEmbed](db).Get(ctx, uuid.Nil)
			return err
		}(),
		"nil db": func() error { _, err := dbkit.NewBaseDatabase[User](nil).Count(ctx); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, dbkit.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := dbkit.NewBaseDatabase[*User](db).Query(ctx).Find(ctx); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Query on a misused repository: err = %v, want ErrInvalid", err)
	}
	if _, err := dbkit.NewBaseDatabase[User](nil).Query(ctx).Find(ctx); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Query on a repository of a nil DB: err = %v, want ErrInvalid", err)
	}
	if err := dbkit.NewBaseDatabase[dbkit.Entity](db).Create(ctx, nil); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("an interface type argument: err = %v, want ErrInvalid", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	const workers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				u := User{Email: fmt.Sprintf("w%d-%d@example.com", w, i)}
				if err := users.Create(ctx, &u); err != nil {
					errs <- err
					return
				}
				if _, err := users.Get(ctx, u.ID); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, err := users.Count(ctx); err != nil || n != workers*each {
		t.Fatalf("Count = %d, %v; want %d", n, err, workers*each)
	}
}

func TestQueryEscapeHatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	for _, name := range []string{"Ada", "Alan", "Grace"} {
		if err := users.Create(ctx, &User{Email: name + "@example.com", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := users.Query(ctx).Where("name LIKE ?", "A%").Order("name").Find(ctx)
	if err != nil || len(got) != 2 || got[0].Name != "Ada" || got[1].Name != "Alan" {
		t.Fatalf("Query().Where(LIKE A%%) = %+v, %v", got, err)
	}
}
