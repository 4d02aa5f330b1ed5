package migrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/migrate"
)

// openGorm opens GORM on cfg through pgx, closed when the test ends.
func openGorm(t *testing.T, cfg dbkit.Config) *gorm.DB {
	t.Helper()
	connCfg, err := pgx.ParseConfig(cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	sqlDB := stdlib.OpenDB(*connCfg)
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// startPgBouncer starts PgBouncer in mode in front of the shared server,
// stopped when the test ends.
func startPgBouncer(t *testing.T, mode string) (*dbtest.Server, *dbtest.PgBouncer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := dbtest.Shared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pgb := dbtest.NewPgBouncer(t, srv, dbtest.PoolMode(mode))
	return srv, pgb
}

// The migrator refuses a transaction pooler before it takes its lock, and
// leaves the database as it was; it runs on a direct connection and through
// a session pooler, where its session lock holds.
func TestMigratorTransactionPooler(t *testing.T) {
	srv, txn := startPgBouncer(t, "transaction")
	_, session := startPgBouncer(t, "session")
	_, statement := startPgBouncer(t, "statement")
	through := func(p *dbtest.PgBouncer) func(dbkit.Config) dbkit.Config {
		return func(cfg dbkit.Config) dbkit.Config {
			c := p.Config(cfg.Database)
			c.DirectHost, c.DirectPort = "", 0
			return c
		}
	}
	direct := func(cfg dbkit.Config) dbkit.Config { return cfg }
	cases := []struct {
		name   string
		via    func(dbkit.Config) dbkit.Config
		refuse bool
	}{
		{"direct", direct, false},
		{"transaction pooler", through(txn), true},
		{"statement pooler", through(statement), true},
		{"session pooler", through(session), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := srv.NewDatabase(t)
			db := openGorm(t, c.via(cfg))
			m, err := migrate.New(db, []migrate.Migration{{
				ID:      "1_items",
				Migrate: func(tx *gorm.DB) error { return tx.Exec("CREATE TABLE items (id int)").Error },
			}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			applied, err := m.Up(ctx)
			if !c.refuse {
				if err != nil || len(applied) != 1 {
					t.Fatalf("Up = %v, %v; want [1_items]", applied, err)
				}
				return
			}
			if !errors.Is(err, migrate.ErrTransactionPooler) {
				t.Fatalf("Up = %v, %v; want an error matching ErrTransactionPooler", applied, err)
			}
			if !strings.Contains(err.Error(), "DirectHost") {
				t.Errorf("the error does not say what to do: %v", err)
			}
			// Nothing was made: no table, no record, no lock left behind.
			check := openGorm(t, cfg)
			var tables []string
			if err := check.Raw(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables).Error; err != nil {
				t.Fatal(err)
			}
			if len(tables) != 0 {
				t.Errorf("tables after the refusal: %v, want none", tables)
			}
			var locks int
			if err := check.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks).Error; err != nil {
				t.Fatal(err)
			}
			if locks != 0 {
				t.Errorf("%d advisory locks held after the refusal, want none", locks)
			}
		})
	}
}
