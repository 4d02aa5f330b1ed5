package main

import (
	"context"
	"errors"
	"testing"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/examples/migrations"
)

// TestUsers is a repository test as a service writes one: a migrated
// database of its own (a clone of a template built once), in parallel with
// the other tests, dropped when the test passes and kept when it fails.
func TestUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](dbtest.New(t, migrations.All...))
	ada := User{Email: "ada@example.com", Name: "Ada"}
	if err := users.Create(ctx, &ada); err != nil {
		t.Fatal(err)
	}
	if got, err := users.Get(ctx, ada.ID); err != nil || got.Email != ada.Email {
		t.Fatalf("Get = %+v, %v; want %s", got, err, ada.Email)
	}
	if err := users.Create(ctx, &User{Email: ada.Email}); !errors.Is(err, dbkit.ErrDuplicate) {
		t.Fatalf("second user with Ada's email: %v, want ErrDuplicate", err)
	}
}

// TestSchema keeps the migrations and the model in step: a field whose
// column no migration created, or a type or NOT NULL that differs, fails it.
func TestSchema(t *testing.T) {
	t.Parallel()
	dbtest.CheckSchema(t, dbtest.New(t, migrations.All...), &User{})
}
