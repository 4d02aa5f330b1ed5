package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docMigrations returns the ```go blocks of docs/migrations.md that follow a
// "<!-- docs-test: migration -->" line: each a migrate.Migration literal
// without its type.
func docMigrations(t *testing.T) []string {
	t.Helper()
	return docBlocks(t, "../docs/migrations.md", "migration")
}

// docProgram is a migration command made of the docs' migrations: it
// applies to DATABASE_URL those whose IDs are its arguments.
const docProgram = `package main

import (
	"context"
	"fmt"
	"os"
	"slices"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

var (
	_ *gorm.DB
	_ migrate.Option
)

var docMigrations = []dbkit.Migration{
%s}

func main() {
	var chosen []dbkit.Migration
	for _, m := range docMigrations {
		if slices.Contains(os.Args[1:], m.ID) {
			chosen = append(chosen, m)
		}
	}
	ctx := context.Background()
	cfg, err := dbkit.ParseURL(os.Getenv("DATABASE_URL"))
	if err == nil {
		var db *dbkit.DB
		if db, err = dbkit.Connect(ctx, cfg, dbkit.WithMigrations(chosen...)); err == nil {
			err = db.Close(ctx)
		}
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
`

// buildDocProgram compiles docProgram with the docs' migrations and returns
// a function running it on cfg's database with args, which returns its
// output and exit error.
func buildDocProgram(t *testing.T) func(dbURL string, args ...string) (string, error) {
	t.Helper()
	code := strings.Replace(docProgram, "%s", strings.Join(docMigrations(t), ",\n")+",\n", 1)
	dir := tempPackage(t, "_docs_test_", "main.go", code)
	bin, err := filepath.Abs(filepath.Join(dir, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := goCommand(ctx, t, "build", "-o", bin, "./"+filepath.Base(dir))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the migrations of docs/migrations.md do not compile: %v\n%s\n%s", err, out, code)
	}
	return func(dbURL string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
}

// The migrations of docs/migrations.md compile, and do what the doc says.
func TestMigrationsDocSamples(t *testing.T) {
	t.Parallel()
	run := buildDocProgram(t)

	t.Run("concurrent index recipe", func(t *testing.T) {
		t.Parallel()
		db, cfg := gormFor(t)
		const id = "202611260901_users_email_lower_key"
		if err := db.Exec(`CREATE TABLE users (email text NOT NULL);
			INSERT INTO users VALUES ('ada@example.com'), ('ADA@example.com')`).Error; err != nil {
			t.Fatal(err)
		}
		if out, err := run(databaseURL(cfg), id); err == nil || !strings.Contains(out, "23505") {
			t.Fatalf("on duplicates: %v\n%s\nwant the duplicate key error", err, out)
		}
		if exists, valid := indexValid(t, db, "users_email_lower_key"); !exists || valid {
			t.Fatalf("after the failure the index exists=%v valid=%v, want an invalid one", exists, valid)
		}
		if err := db.Exec(`DELETE FROM users WHERE email = 'ADA@example.com'`).Error; err != nil {
			t.Fatal(err)
		}
		if out, err := run(databaseURL(cfg), id); err != nil {
			t.Fatalf("retry after fixing the data: %v\n%s", err, out)
		}
		if exists, valid := indexValid(t, db, "users_email_lower_key"); !exists || !valid {
			t.Errorf("after the retry the index exists=%v valid=%v, want a valid one", exists, valid)
		}
		if err := db.Exec(`INSERT INTO users VALUES ('ADA@example.com')`).Error; err == nil {
			t.Error("a duplicate was inserted: the unique index is not enforced")
		}
	})

	t.Run("checksums", func(t *testing.T) {
		t.Parallel()
		db, cfg := gormFor(t)
		if out, err := run(databaseURL(cfg), "202611260902_create_orders", "202611260903_orders_by_user"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var rows []struct{ ID, Checksum string }
		if err := db.Raw(`SELECT id, checksum FROM dbkit_migrations ORDER BY id`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || len(rows[0].Checksum) != 64 || rows[1].Checksum != "1" {
			t.Errorf("records = %+v, want the SQL migration with a SHA-256 and the Go one with 1", rows)
		}
	})
}
