// Package integration tests dbkit end to end against a real PostgreSQL that
// the test harness starts (see dbkit/dbtest): nothing here is mocked.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

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
	return m.Run()
}
