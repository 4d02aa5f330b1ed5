// Package integration tests dbkit end to end against a real PostgreSQL that
// the test harness starts (see dbkit/dbtest): nothing here is mocked.
package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// srv is the PostgreSQL server shared by the tests of this package.
var srv *dbtest.Server

func TestMain(m *testing.M) {
	if dsn := os.Getenv(envMigratorHelper); dsn != "" {
		os.Exit(runMigratorHelper(dsn)) // a helper process of TestConcurrentMigratorsProcesses
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := dbtest.Shared(ctx) // the server of the whole "go test ./..." run
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv = s
	if os.Getenv(envPgBouncer) == "1" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		pgb, err := dbtest.StartPgBouncer(ctx, s)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = pgb.Stop(context.Background()) }()
		srv = pgb.Server() // NewDatabase and New: through PgBouncer, DirectHost the server
	}
	code := m.Run()
	stopCluster()
	return code
}

// envPgBouncer=1 runs the tests through PgBouncer in transaction mode
// (make test-pgbouncer): the configurations srv gives them name PgBouncer,
// with QueryExecMode exec and the server itself as DirectHost.
const envPgBouncer = "DBKIT_TEST_PGBOUNCER"

// openDB connects to cfg with opts, ending the test on failure; the
// connection is closed when the test ends.
func openDB(t *testing.T, cfg dbkit.Config, opts ...dbkit.Option) *dbkit.DB {
	t.Helper()
	db, err := dbkit.Connect(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return db
}

// migrateDB applies migrations to cfg's database on a connection of its
// own, closed at once, ending the test on failure.
func migrateDB(t testing.TB, cfg dbkit.Config, migrations ...dbkit.Migration) {
	t.Helper()
	db, err := dbkit.Connect(context.Background(), cfg, dbkit.WithMigrations(migrations...))
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close(context.Background())
}

// databaseURL is the postgres:// URL of cfg's database, password included,
// for a process the test starts.
func databaseURL(cfg dbkit.Config) string {
	return (&url.URL{Scheme: "postgres", User: url.UserPassword(cfg.User, cfg.Password), Host: cfg.Addr(),
		Path: "/" + cfg.Database, RawQuery: "sslmode=disable"}).String()
}
