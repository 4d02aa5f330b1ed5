package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// "dbkit_migrations" and "public.dbkit_migrations" name one table: their
// migrators must take one lock.
func TestQualifiedAndUnqualifiedTableShareTheLock(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	cfg.MaxOpenConns = 2
	raceConnect(t, cfg, 8, func(i int) []dbkit.Option {
		table := "dbkit_migrations"
		if i%2 == 1 {
			table = "public.dbkit_migrations"
		}
		return []dbkit.Option{dbkit.WithMigrateOptions(migrate.WithTableName(table))}
	})
	checkRacingOutcome(t, cfg)
}

// A session reading the table of records does not hold up a migrator, nor
// an up-to-date replica: nothing queues an ALTER TABLE behind it.
func TestOpenReaderOfRecordsDoesNotBlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	migs := reversible("a1")
	migrateDB(t, cfg, migs...)

	reader, err := pgx.Connect(ctx, cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	tx, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT * FROM dbkit_migrations"); err != nil {
		t.Fatal(err)
	}

	for _, set := range [][]migrate.Migration{migs, reversible("a1", "b2")} {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		db, err := dbkit.Connect(cctx, cfg, dbkit.WithMigrations(set...))
		cancel()
		if err != nil {
			t.Fatalf("%d migrations with a reader open: %v", len(set), err)
		}
		db.Close(ctx)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%d migrations with a reader open took %v", len(set), took)
		}
	}
}

// Nothing of a migration run outlives it in the pool: not a session setting
// a migration changed, not the lock when ctx ends mid-run.
func TestMigrationLeavesNothingInThePool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	cfg.MaxOpenConns = 1 // a connection returned to the pool would be the next one used
	// A session setting that does not get in the migrator's own way (a
	// statement_timeout of 1ms did, on a loaded machine).
	setter := migrate.Migration{ID: "a1_set", NoTransaction: true, Migrate: func(tx *gorm.DB) error {
		return tx.Exec("SET application_name = 'leaked-by-a-migration'").Error
	}}
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(setter))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var name string
	if err := dbkit.NewBaseDatabase[User](db).Query(ctx).Raw("SELECT current_setting('application_name')").Scan(ctx, &name); err != nil || name == "leaked-by-a-migration" {
		t.Fatalf("the pool's connection has application_name %q (%v): it kept the migration's setting", name, err)
	}

	// ctx ends while a migration runs: the lock must not stay held.
	slow := migrate.Migration{ID: "b2_slow", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("SELECT pg_sleep(2)").Error
	}}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := dbkit.Connect(cctx, cfg, dbkit.WithMigrations(setter, slow)); err == nil {
		t.Fatal("Connect succeeded although ctx ended mid-migration")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		var held int
		err := dbkit.NewBaseDatabase[User](db).Query(ctx).Raw(
			`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
			   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(ctx, &held)
		if err != nil {
			t.Fatal(err)
		}
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the migration lock is still held after the run ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// While one replica runs a long migration, another whose code has nothing
// pending (an older version) starts at once.
func TestUpToDateReplicaStartsDuringALongMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	old := reversible("a1")
	migrateDB(t, cfg, old...)

	running := make(chan struct{})
	long := append(reversible("a1"), migrate.Migration{ID: "b2_long", Migrate: func(tx *gorm.DB) error {
		close(running)
		return tx.Exec("SELECT pg_sleep(1.5)").Error
	}})
	done := make(chan error, 1)
	go func() {
		db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(long...))
		if err == nil {
			db.Close(ctx)
		}
		done <- err
	}()
	<-running
	start := time.Now()
	migrateDB(t, cfg, old...)
	if took := time.Since(start); took > time.Second {
		t.Errorf("the up-to-date replica took %v: it waited for the long migration", took)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMigrationPanicIsAnError(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	migs := append(reversible("a1"), migrate.Migration{ID: "b2_panics", Migrate: func(tx *gorm.DB) error {
		if err := tx.Exec("CREATE TABLE t_b2 (x int)").Error; err != nil {
			return err
		}
		panic("bug in a migration")
	}})
	_, err := dbkit.Connect(context.Background(), cfg, dbkit.WithMigrations(migs...))
	var me *migrate.Error
	if !errors.As(err, &me) || me.ID != "b2_panics" || !strings.Contains(err.Error(), "bug in a migration") {
		t.Fatalf("Connect = %v, want a *migrate.Error for b2_panics", err)
	}
}

// Down(n) takes the last applied, by when: with out-of-order migrations that
// is not the highest ID.
func TestDownFollowsApplicationOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	if _, err := newMigrator(t, db, reversible("a1", "c3")).Up(ctx); err != nil {
		t.Fatal(err)
	}
	m := newMigrator(t, db, reversible("a1", "b2", "c3"), migrate.AllowOutOfOrder())
	if applied, err := m.Up(ctx); err != nil || !slices.Equal(applied, []string{"b2"}) {
		t.Fatalf("Up = %v, %v", applied, err)
	}
	if ids, err := m.Down(ctx, 1); err != nil || !slices.Equal(ids, []string{"b2"}) {
		t.Fatalf("Down(1) = %v, %v; want b2, the last applied", ids, err)
	}
}

// The options a service gives the command stay in force unless a flag
// overrides them.
func TestCommandKeepsTheServiceOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	cmd, err := migrate.ParseCommand([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := cmd.Run(ctx, db, reversible("a1"), &out, migrate.WithTableName("schema_changes")); err != nil {
		t.Fatal(err)
	}
	var tables []string
	if err := db.Raw(`SELECT tablename FROM pg_tables WHERE tablename IN ('schema_changes', 'dbkit_migrations')`).Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tables, []string{"schema_changes"}) {
		t.Errorf("tables = %v, want the service's schema_changes only", tables)
	}
	if cmd, err = migrate.ParseCommand([]string{"-table", "other_changes", "status"}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := cmd.Run(ctx, db, reversible("a1"), &out, migrate.WithTableName("schema_changes")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 applied, 1 pending") {
		t.Errorf("-table did not override the service's table:\n%s", out.String())
	}
}
