package dbkit_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// srv serves the examples: each gets a database of its own on it.
var srv *dbtest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = dbtest.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	for _, name := range exampleDatabases { // a server that outlives the run (DBKIT_TEST_DATABASE_URL) keeps them
		if err := srv.DropDatabase(context.Background(), name); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	_ = srv.Stop(context.Background())
	os.Exit(code)
}

// exampleDatabases are the databases the examples created.
var exampleDatabases []string

// exampleConfig stands for the service's configuration, usually
// dbkit.ConfigFromEnv(): a new database named after name, unique to the run.
func exampleConfig(name string) dbkit.Config {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails
	name = fmt.Sprintf("%s_%x", name, b)
	cfg, err := srv.CreateDatabase(context.Background(), name)
	if err != nil {
		log.Fatal(err)
	}
	exampleDatabases = append(exampleDatabases, name)
	return cfg
}

type User struct {
	dbkit.Model
	Email string `gorm:"uniqueIndex;not null"`
	Name  string
}

var migrations = []dbkit.Migration{{
	ID: "202611260900_create_users",
	Migrate: func(tx *gorm.DB) error {
		return tx.Exec(`CREATE TABLE users (
			id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
			email text NOT NULL CONSTRAINT users_email_key UNIQUE, name text NOT NULL DEFAULT '')`).Error
	},
}}

func ExampleConnect() {
	ctx := context.Background()
	cfg := exampleConfig("example_connect")

	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(migrations...))
	if err != nil {
		log.Fatal(err) // *dbkit.ConfigError, *dbkit.ConnectError, or one of package migrate's errors
	}
	defer db.Close(ctx)

	fmt.Println("health:", db.Health(ctx))
	// Output: health: <nil>
}

func ExampleBaseDatabase() {
	ctx := context.Background()
	db, err := dbkit.Connect(ctx, exampleConfig("example_repository"), dbkit.WithMigrations(migrations...))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	users := dbkit.NewBaseDatabase[User](db)

	ada := User{Email: "ada@example.com", Name: "Ada"}
	if err := users.Create(ctx, &ada); err != nil {
		log.Fatal(err)
	}
	fmt.Println("UUID version:", ada.ID.Version())

	got, err := users.Get(ctx, ada.ID)
	fmt.Println("get:", got.Name, err)

	found, err := users.Find(ctx, dbkit.Eq("email", "ada@example.com"))
	fmt.Println("find:", len(found), err)

	err = users.Create(ctx, &User{Email: "ada@example.com"})
	var ce *dbkit.ConstraintError
	if errors.Is(err, dbkit.ErrDuplicate) && errors.As(err, &ce) {
		fmt.Println("duplicate:", ce.Constraint)
	}

	_ = users.Delete(ctx, ada.ID)
	_, err = users.Get(ctx, ada.ID)
	fmt.Println("after delete:", errors.Is(err, dbkit.ErrNotFound))
	// Output:
	// UUID version: VERSION_7
	// get: Ada <nil>
	// find: 1 <nil>
	// duplicate: users_email_key
	// after delete: true
}

// A Session carries a user's read position from request to request: the
// token its Token method returns (in a cookie, say) gives NewSession the
// same position on the next request, on any instance of the service.
func ExampleNewSession() {
	sess, err := dbkit.NewSession("wal1:16/B374D848") // from the request's cookie
	fmt.Println(err)
	tok, _ := sess.Token(context.Background())
	fmt.Println(tok)

	_, err = dbkit.NewSession("forged!")
	fmt.Println(errors.Is(err, dbkit.ErrInvalid))
	// Output:
	// <nil>
	// wal1:16/B374D848
	// true
}

// OnPrimary sends a read to the primary, never to a read replica.
func ExampleOnPrimary() {
	var users *dbkit.BaseDatabase[User] // dbkit.NewBaseDatabase[User](db), db with Config.Replicas
	check := func(ctx context.Context, id uuid.UUID) (User, error) {
		return users.Get(dbkit.OnPrimary(ctx), id) // sees every committed write
	}
	_ = check
}
