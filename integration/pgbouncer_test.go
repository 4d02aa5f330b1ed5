package integration

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/migrate"
	"github.com/dbkit-go/database/tracing"
)

// behindPgBouncer returns the shared server itself (not srv, which may be
// a view through PgBouncer: DBKIT_TEST_PGBOUNCER) and a PgBouncer in
// transaction mode in front of it, stopped when the test ends.
func behindPgBouncer(t *testing.T) (*dbtest.Server, *dbtest.PgBouncer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base, err := dbtest.Shared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pgb := dbtest.NewPgBouncer(t, base)
	return base, pgb
}

// pooledMigrations create two tables.
func pooledMigrations() []dbkit.Migration {
	return []dbkit.Migration{
		{ID: "001_a", Migrate: func(tx *gorm.DB) error { return tx.Exec("CREATE TABLE pooled_a (id int)").Error }},
		{ID: "002_b", Migrate: func(tx *gorm.DB) error { return tx.Exec("CREATE TABLE pooled_b (id int)").Error }},
	}
}

// publicTables lists the tables of cfg's database, read on the server itself.
func publicTables(t *testing.T, base *dbtest.Server, database string) []string {
	t.Helper()
	cfg := base.Config()
	cfg.Database = database
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: cfg.DSN()}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	var names []string
	if err := db.Raw("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").Scan(&names).Error; err != nil {
		t.Fatal(err)
	}
	return names
}

// Behind a transaction pooler, with DirectHost, Connect migrates on a
// connection of its own to the server, and the DB it returns uses the
// pooler.
func TestConnectThroughPgBouncerMigratesDirect(t *testing.T) {
	base, pgb := behindPgBouncer(t)
	name := base.NewDatabase(t).Database
	cfg := pgb.Config(name)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	plugin := &countingPlugin{}
	db := openDB(t, cfg, dbkit.WithMigrations(pooledMigrations()...), dbkit.WithTracerProvider(tp), dbkit.WithGormPlugins(plugin))
	if n := plugin.inits.Load(); n != 1 {
		t.Errorf("the GORM plugin was initialized %d times, want once: on the DB it serves, not on the direct one", n)
	}
	if got := db.Config().Addr(); got != pgb.Addr() {
		t.Errorf("the DB's address = %s, want PgBouncer's %s", got, pgb.Addr())
	}
	if got := publicTables(t, base, name); len(got) != 3 { // pooled_a, pooled_b, dbkit_migrations
		t.Errorf("tables = %v, want the two migrations' and the migration table", got)
	}
	var migrateSpans int
	for _, s := range spans.Ended() {
		if s.Name() != tracing.SpanMigrate {
			continue
		}
		migrateSpans++
		for _, kv := range s.Attributes() {
			if kv.Key == tracing.ServerPort && int(kv.Value.AsInt64()) != cfg.DirectPort {
				t.Errorf("the migrations ran on port %d, want the server's own, %d", kv.Value.AsInt64(), cfg.DirectPort)
			}
		}
	}
	if migrateSpans != 1 {
		t.Errorf("%d migrate spans, want 1", migrateSpans)
	}
	// The check-only variant goes the same way, and finds nothing pending.
	openDB(t, cfg, dbkit.WithMigrationCheck(pooledMigrations()...))
}

// Without DirectHost, Connect through a transaction pooler fails with
// migrate.ErrTransactionPooler, having changed nothing.
func TestConnectThroughPgBouncerWithoutDirectHost(t *testing.T) {
	base, pgb := behindPgBouncer(t)
	name := base.NewDatabase(t).Database
	cfg := pgb.Config(name)
	cfg.DirectHost, cfg.DirectPort = "", 0
	db, err := dbkit.Connect(context.Background(), cfg, dbkit.WithMigrations(pooledMigrations()...))
	if err == nil {
		_ = db.Close(context.Background())
	}
	if !errors.Is(err, migrate.ErrTransactionPooler) {
		t.Fatalf("Connect = %v, want an error matching migrate.ErrTransactionPooler", err)
	}
	if got := publicTables(t, base, name); len(got) != 0 {
		t.Errorf("tables after the refusal = %v, want none", got)
	}
}

// The migration command of a service reads DATABASE_DIRECT_URL and migrates
// on the server itself.
func TestMigrateCommandUsesDirectURL(t *testing.T) {
	base, pgb := behindPgBouncer(t)
	name := base.NewDatabase(t).Database
	cfg := pgb.Config(name)
	direct := base.Config()
	direct.Database = name
	t.Setenv("DATABASE_URL", databaseURL(cfg)+"&default_query_exec_mode=exec")
	t.Setenv("DATABASE_DIRECT_URL", databaseURL(direct))
	var stdout, stderr bytes.Buffer
	if code := dbkit.RunMigrateCommand(context.Background(), []string{"up"}, &stdout, &stderr, pooledMigrations()); code != 0 {
		t.Fatalf("migrate up exited %d:\n%s", code, stderr.String())
	}
	if got := publicTables(t, base, name); len(got) != 3 {
		t.Errorf("tables = %v, want the two migrations' and the migration table", got)
	}
}
