package integration

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// TestOneVocabulary: a filter from request input and conditions made in
// code go, as they are, to every read and write by condition.
func TestOneVocabulary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	for i, name := range []string{"Ada", "Alan", "Grace", "Edsger"} {
		if err := users.Create(ctx, &User{Email: strings.ToLower(name) + "@example.com", Name: name, Age: 30 + 10*i}); err != nil {
			t.Fatal(err)
		}
	}
	input, err := dbkit.FilterFromQuery(url.Values{"age[gte]": {"40"}, "sort": {"name"}}, "sort")
	if err != nil {
		t.Fatal(err)
	}
	code := dbkit.Or(dbkit.Like("name", "A%"), dbkit.Between("Age", 55, 70))
	rows, err := users.Find(ctx, input, code, dbkit.SortBy("name"))
	if err != nil || len(rows) != 2 || rows[0].Name != "Alan" || rows[1].Name != "Edsger" {
		t.Errorf("Find: %v, %v; want Alan and Edsger", rows, err)
	}
	if n, err := users.Count(ctx, input, code); err != nil || n != 2 {
		t.Errorf("Count: %d, %v; want 2", n, err)
	}
	if ok, err := users.Exists(ctx, dbkit.Not(dbkit.In("Name", "Ada", "Alan", "Grace", "Edsger"))); err != nil || ok {
		t.Errorf("Exists of none: %v, %v", ok, err)
	}
	page, err := users.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 10, WithTotal: true}, input, dbkit.SortBy("-age"))
	if err != nil || len(page.Items) != 3 || page.Total == nil || *page.Total != 3 || page.Items[0].Name != "Edsger" {
		t.Errorf("FindPage: %+v, %v", page, err)
	}
	// Count takes conditions only.
	if _, err := users.Count(ctx, input, dbkit.Limit(1)); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Count with a Limit: %v, want ErrInvalid", err)
	}
	// Input is checked as input: a hidden field is refused, in a group too.
	hidden := dbkit.Filter{Or: []dbkit.Filter{{Field: "name", Value: "Ada"}, {Field: "email", Value: "x"}}}
	if _, err := dbkit.NewBaseDatabase[User](newDB(t), dbkit.InputFields("name")).Find(ctx, hidden); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("a field outside the allow list, from input: %v, want ErrInvalid", err)
	}
}

// TestFindOne: the first row in the order asked for (by key without one),
// ErrNotFound when none.
func TestFindOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](newDB(t))
	var first User
	for i, name := range []string{"Bea", "Abe", "Cid"} {
		u := User{Email: strings.ToLower(name) + "@example.com", Name: name, Age: 20 + i}
		if err := users.Create(ctx, &u); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = u
		}
	}
	if u, err := users.FindOne(ctx, dbkit.Gte("Age", 20)); err != nil || u.ID != first.ID {
		t.Errorf("FindOne without an order: %s, %v; want the first created (UUIDv7 order), Bea", u.Name, err)
	}
	if u, err := users.FindOne(ctx, dbkit.Gte("Age", 20), dbkit.SortBy("name")); err != nil || u.Name != "Abe" {
		t.Errorf("FindOne by name: %s, %v; want Abe", u.Name, err)
	}
	if _, err := users.FindOne(ctx, dbkit.Eq("email", "nobody@example.com")); !errors.Is(err, dbkit.ErrNotFound) ||
		!strings.HasPrefix(err.Error(), "dbkit: User.FindOne: ") {
		t.Errorf("FindOne of nothing: %v, want ErrNotFound", err)
	}
	if _, err := users.FindOne(ctx, dbkit.Limit(2)); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("FindOne with a Limit: %v, want ErrInvalid", err)
	}
}

// TestWritesByCondition: UpdateWhere and DeleteWhere write the rows their
// conditions match, and refuse to write every row unless told to.
func TestWritesByCondition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	counters := dbkit.NewBaseDatabase[Counter](db)
	for i := range 4 {
		if err := counters.Create(ctx, &Counter{Value: i, Label: "old"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := counters.UpdateWhere(ctx, map[string]any{"Label": "big"}, dbkit.Gte("value", 2))
	if err != nil || n != 2 {
		t.Fatalf("UpdateWhere: %d rows, %v; want 2", n, err)
	}
	rows, err := counters.Find(ctx, dbkit.Eq("label", "big"), dbkit.SortBy("value"))
	if err != nil || len(rows) != 2 || rows[0].Version != 2 || !rows[0].UpdatedAt.After(rows[0].CreatedAt) {
		t.Errorf("after UpdateWhere: %+v, %v; want two rows, version 2, UpdatedAt moved", rows, err)
	}
	for name, call := range map[string]func() (int64, error){
		"UpdateWhere with no condition": func() (int64, error) { return counters.UpdateWhere(ctx, map[string]any{"label": "x"}) },
		"UpdateWhere with an empty filter": func() (int64, error) {
			return counters.UpdateWhere(ctx, map[string]any{"label": "x"}, dbkit.Filter{})
		},
		"DeleteWhere with no condition": func() (int64, error) { return counters.DeleteWhere(ctx) },
		"UpdateWhere of the key": func() (int64, error) {
			return counters.UpdateWhere(ctx, map[string]any{"id": nil}, dbkit.Eq("value", 1))
		},
		"UpdateWhere of the version": func() (int64, error) {
			return counters.UpdateWhere(ctx, map[string]any{"Version": 9}, dbkit.Eq("value", 1))
		},
		"UpdateWhere of nothing": func() (int64, error) { return counters.UpdateWhere(ctx, nil, dbkit.Eq("value", 1)) },
		"UpdateWhere of an unknown field": func() (int64, error) {
			return counters.UpdateWhere(ctx, map[string]any{"nope": 1}, dbkit.Eq("value", 1))
		},
		"DeleteWhere with a Limit": func() (int64, error) { return counters.DeleteWhere(ctx, dbkit.Eq("value", 1), dbkit.Limit(1)) },
		"UpdateWhere of NULL into NOT NULL": func() (int64, error) {
			return counters.UpdateWhere(ctx, map[string]any{"value": nil}, dbkit.Eq("value", 1))
		},
	} {
		if n, err := call(); !errors.Is(err, dbkit.ErrInvalid) || n != 0 {
			t.Errorf("%s: %d rows, %v; want ErrInvalid and nothing written", name, n, err)
		}
	}
	if n, err := counters.Count(ctx, dbkit.Eq("label", "x")); err != nil || n != 0 {
		t.Errorf("%d rows labelled by a refused write, %v", n, err)
	}
	if n, err := counters.UpdateWhere(ctx, map[string]any{"label": "all"}, dbkit.AllRows()); err != nil || n != 4 {
		t.Errorf("UpdateWhere AllRows: %d, %v; want 4", n, err)
	}
	if n, err := counters.DeleteWhere(ctx, dbkit.Lt("value", 1)); err != nil || n != 1 {
		t.Errorf("DeleteWhere: %d, %v; want 1", n, err)
	}
	if n, err := counters.DeleteWhere(ctx, dbkit.AllRows()); err != nil || n != 3 {
		t.Errorf("DeleteWhere AllRows: %d, %v; want 3", n, err)
	}

	// Soft delete: DeleteWhere marks; UpdateWhere leaves deleted rows alone.
	accounts := dbkit.NewBaseDatabase[Account](db)
	for _, e := range []string{"a@example.com", "b@example.com"} {
		if err := accounts.Create(ctx, &Account{Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := accounts.DeleteWhere(ctx, dbkit.Eq("email", "a@example.com")); err != nil || n != 1 {
		t.Fatalf("soft DeleteWhere: %d, %v", n, err)
	}
	if n, err := accounts.Count(ctx, dbkit.OnlyDeleted()); err != nil || n != 1 {
		t.Errorf("soft-deleted rows: %d, %v; want 1", n, err)
	}
	if n, err := accounts.UpdateWhere(ctx, map[string]any{"email": "z@example.com"}, dbkit.Eq("email", "a@example.com")); err != nil || n != 0 {
		t.Errorf("UpdateWhere of a soft-deleted row: %d, %v; want 0", n, err)
	}
	if n, err := accounts.UpdateWhere(ctx, map[string]any{"email": "z@example.com"}, dbkit.Eq("email", "a@example.com"), dbkit.WithDeleted()); err != nil || n != 1 {
		t.Errorf("UpdateWhere WithDeleted: %d, %v; want 1", n, err)
	}
	// DeleteWhere of a SoftDelete model never deletes for good: GORM would,
	// unscoped, so WithDeleted and OnlyDeleted are refused.
	for _, scope := range []dbkit.QueryOption{dbkit.WithDeleted(), dbkit.OnlyDeleted()} {
		if n, err := accounts.DeleteWhere(ctx, dbkit.Eq("email", "b@example.com"), scope); !errors.Is(err, dbkit.ErrInvalid) || n != 0 {
			t.Errorf("soft DeleteWhere with a scope: %d, %v; want ErrInvalid", n, err)
		}
	}
	if n, err := accounts.Count(ctx, dbkit.WithDeleted()); err != nil || n != 2 {
		t.Errorf("%d accounts in all after the refused deletes, %v; want 2", n, err)
	}
	// A constraint is translated, without the value.
	if _, err := accounts.UpdateWhere(ctx, map[string]any{"email": "b@example.com"}, dbkit.Eq("email", "z@example.com"), dbkit.WithDeleted()); err != nil &&
		strings.Contains(err.Error(), "b@example.com") {
		t.Errorf("UpdateWhere error quotes the value: %v", err)
	}
}
