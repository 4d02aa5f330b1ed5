package dbtest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"testing"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

type User struct {
	dbkit.Model
	Email string `gorm:"not null;uniqueIndex"`
}

// migrations are the service's, as dbkit.Connect applies them.
var migrations = []dbkit.Migration{{
	ID:      "202611260900_create_users",
	Migrate: func(tx *gorm.DB) error { return tx.AutoMigrate(&User{}) },
}}

// A repository test: New gives it a database of its own, cloned from a
// template migrated once, so tests run in parallel and start from the same
// schema. The database is dropped when the test passes, kept when it fails.
// (This is the body of a test; examples/rest has it as one that runs.)
func ExampleNew() {
	testUsers := func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		users := dbkit.NewBaseDatabase[User](dbtest.New(t, migrations...))
		ada := User{Email: "ada@example.com"}
		if err := users.Create(ctx, &ada); err != nil {
			t.Fatal(err)
		}
		if err := users.Create(ctx, &User{Email: ada.Email}); !errors.Is(err, dbkit.ErrDuplicate) {
			t.Fatalf("second user with Ada's email: %v, want ErrDuplicate", err)
		}
	}
	_ = testUsers // func TestUsers(t *testing.T) in a _test.go file
}

// Start a server, give a test a database of its own, connect to it.
func Example() {
	ctx := context.Background()
	srv, err := dbtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	cfg, err := srv.CreateDatabase(ctx, "example")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.DropDatabase(ctx, "example") // a server that outlives srv (DBKIT_TEST_DATABASE_URL's) would keep it
	db, err := dbkit.Connect(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	fmt.Println("healthy:", db.Health(ctx) == nil)
	// Output: healthy: true
}
