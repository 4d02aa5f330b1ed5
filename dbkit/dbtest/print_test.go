package dbtest

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/internal/redact/redacttest"
)

// A Server holds the superuser's configuration and a pool: printed in any
// form, it shows neither the password nor the pool's connection settings.
func TestServerPrintsNoPassword(t *testing.T) {
	const marker = "dbtest-password-marker-3b7c"
	admin := dbkit.Config{Host: "db.invalid", Port: 5433, Database: "postgres", User: "admin", Password: "s3cr3t-" + marker}
	connCfg, err := pgx.ParseConfig(admin.DSN())
	if err != nil {
		t.Fatal(err)
	}
	pool := stdlib.OpenDB(*connCfg) // lazy: nothing is dialled
	t.Cleanup(func() { pool.Close() })
	s := &Server{source: SourceExternal, admin: admin, pool: pool}

	t.Run("*Server", func(t *testing.T) {
		redacttest.Check(t, s, []string{marker}, []string{"dbtest.Server", "db.invalid:5433", "admin"})
	})
	t.Run("Schema", func(t *testing.T) { redacttest.Check(t, Schema{Server: s, Version: "1"}, []string{marker}, nil) })
}
