package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// gormFor opens a bare GORM handle on a new database, for driving a
// migrate.Migrator directly.
func gormFor(t *testing.T) (*gorm.DB, dbkit.Config) {
	t.Helper()
	cfg := srv.NewDatabase(t)
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: cfg.DSN()}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { sqlDB.Close() })
	return db, cfg
}

// reversible returns migrations that create table t_<id> and drop it again.
func reversible(ids ...string) []migrate.Migration {
	var migs []migrate.Migration
	for _, id := range ids {
		migs = append(migs, migrate.Migration{
			ID:       id,
			Migrate:  func(tx *gorm.DB) error { return tx.Exec(`CREATE TABLE t_` + id + ` (x int)`).Error },
			Rollback: func(tx *gorm.DB) error { return tx.Exec(`DROP TABLE t_` + id).Error },
		})
	}
	return migs
}

func tables(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var names []string
	if err := db.Raw(`SELECT tablename FROM pg_tables WHERE tablename LIKE 't\_%' ORDER BY tablename`).Scan(&names).Error; err != nil {
		t.Fatal(err)
	}
	return names
}

func newMigrator(t *testing.T, db *gorm.DB, migs []migrate.Migration, opts ...migrate.Option) *migrate.Migrator {
	t.Helper()
	m, err := migrate.New(db, migs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStatusPlanAndRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	m := newMigrator(t, db, reversible("a1", "b2", "c3", "d4"))

	// Nothing applied: all pending, and Plan changes nothing.
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(st); got != "a1:pending b2:pending c3:pending d4:pending" {
		t.Errorf("status = %s", got)
	}
	plan, err := m.Plan(ctx)
	if err != nil || !slices.Equal(plan, []string{"a1", "b2", "c3", "d4"}) {
		t.Fatalf("plan = %v, %v", plan, err)
	}
	if got := tables(t, db); len(got) != 0 {
		t.Fatalf("Plan created tables: %v", got)
	}

	// Up to b2, then all.
	applied, rolledBack, err := m.To(ctx, "b2")
	if err != nil || !slices.Equal(applied, []string{"a1", "b2"}) || len(rolledBack) != 0 {
		t.Fatalf("To(b2) = %v, %v, %v", applied, rolledBack, err)
	}
	before := time.Now()
	if applied, err := m.Up(ctx); err != nil || !slices.Equal(applied, []string{"c3", "d4"}) {
		t.Fatalf("Up = %v, %v", applied, err)
	}
	st, _ = m.Status(ctx)
	if got := states(st); got != "a1:applied b2:applied c3:applied d4:applied" {
		t.Errorf("status = %s", got)
	}
	if at := st[3].AppliedAt; at.Before(before.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
		t.Errorf("AppliedAt = %v, want about now", at)
	}

	// Down 1, DownTo b2 (b2 stays), To a1.
	if ids, err := m.Down(ctx, 1); err != nil || !slices.Equal(ids, []string{"d4"}) {
		t.Fatalf("Down(1) = %v, %v", ids, err)
	}
	if ids, err := m.DownTo(ctx, "b2"); err != nil || !slices.Equal(ids, []string{"c3"}) {
		t.Fatalf("DownTo(b2) = %v, %v", ids, err)
	}
	if _, ids, err := m.To(ctx, "a1"); err != nil || !slices.Equal(ids, []string{"b2"}) {
		t.Fatalf("To(a1) rolled back %v, %v", ids, err)
	}
	if got := tables(t, db); !slices.Equal(got, []string{"t_a1"}) {
		t.Errorf("tables = %v, want t_a1 only", got)
	}
	if ids, err := m.DownTo(ctx, ""); err != nil || !slices.Equal(ids, []string{"a1"}) {
		t.Fatalf("DownTo(\"\") = %v, %v", ids, err)
	}
	if _, err := m.Down(ctx, 0); err == nil {
		t.Error("Down(0) succeeded")
	}
	if _, err := m.DownTo(ctx, "zz"); !errors.Is(err, migrate.ErrUnknownID) {
		t.Errorf("DownTo(unknown) = %v, want ErrUnknownID", err)
	}
}

func states(st []migrate.MigrationStatus) string {
	var parts []string
	for _, s := range st {
		parts = append(parts, s.ID+":"+string(s.State))
	}
	return strings.Join(parts, " ")
}

// Rolling back a migration without a Rollback func changes nothing, even
// when the migrations after it could be rolled back.
func TestRollbackOfIrreversibleChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	migs := reversible("a1", "c3")
	migs = append(migs, migrate.Migration{ID: "b2", Migrate: func(tx *gorm.DB) error {
		return tx.Exec(`CREATE TABLE t_b2 (x int)`).Error
	}})
	m := newMigrator(t, db, migs)
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	ids, err := m.Down(ctx, 2)
	if !errors.Is(err, migrate.ErrIrreversible) || !strings.Contains(err.Error(), `"b2"`) || len(ids) != 0 {
		t.Fatalf("Down(2) = %v, %v; want ErrIrreversible naming b2", ids, err)
	}
	if got := tables(t, db); !slices.Equal(got, []string{"t_a1", "t_b2", "t_c3"}) {
		t.Errorf("tables = %v: something was rolled back", got)
	}
	if st, _ := m.Status(ctx); states(st) != "a1:applied b2:applied c3:applied" {
		t.Errorf("status = %s", states(st))
	}
}

// A failing Rollback leaves its migration applied and recorded.
func TestFailingRollbackKeepsTheRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	boom := errors.New("boom")
	m := newMigrator(t, db, []migrate.Migration{{
		ID:      "a1",
		Migrate: func(tx *gorm.DB) error { return tx.Exec(`CREATE TABLE t_a1 (x int)`).Error },
		Rollback: func(tx *gorm.DB) error {
			if err := tx.Exec(`DROP TABLE t_a1`).Error; err != nil {
				return err
			}
			return boom
		},
	}})
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := m.Down(ctx, 1)
	var me *migrate.Error
	if !errors.As(err, &me) || me.ID != "a1" || me.Op != "down" || !errors.Is(err, boom) {
		t.Fatalf("Down = %v, want a *migrate.Error for the rollback of a1", err)
	}
	if got := tables(t, db); !slices.Equal(got, []string{"t_a1"}) {
		t.Errorf("tables = %v: the failed rollback's DROP was not undone", got)
	}
	if st, _ := m.Status(ctx); states(st) != "a1:applied" {
		t.Errorf("status = %s, want a1 still applied", states(st))
	}
}

func TestUnknownAndOutOfOrderMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	if _, err := newMigrator(t, db, reversible("a1", "c3", "d4")).Up(ctx); err != nil {
		t.Fatal(err)
	}

	// Older code: d4 is unknown to it. Reported; Up goes on unless rejected.
	older := reversible("a1", "c3")
	st, err := newMigrator(t, db, older).Status(ctx)
	if err != nil || states(st) != "a1:applied c3:applied d4:unknown" {
		t.Fatalf("status = %s, %v", states(st), err)
	}
	if _, err := newMigrator(t, db, older).Up(ctx); err != nil {
		t.Errorf("Up with an unknown applied migration: %v", err)
	}
	_, err = newMigrator(t, db, older, migrate.RejectUnknown()).Up(ctx)
	var ve *migrate.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), `"d4"`) {
		t.Errorf("Up with RejectUnknown = %v, want a ValidationError naming d4", err)
	}

	// A branch merged late: b2 sorts before the applied c3 and d4.
	late := reversible("a1", "b2", "c3", "d4")
	_, err = newMigrator(t, db, late).Up(ctx)
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), `"b2"`) {
		t.Fatalf("Up out of order = %v, want a ValidationError naming b2", err)
	}
	if _, err := newMigrator(t, db, late).Plan(ctx); !errors.As(err, &ve) {
		t.Errorf("Plan out of order = %v, want the same ValidationError", err)
	}
	if got := tables(t, db); slices.Contains(got, "t_b2") {
		t.Fatal("b2 ran although refused")
	}
	applied, err := newMigrator(t, db, late, migrate.AllowOutOfOrder()).Up(ctx)
	if err != nil || !slices.Equal(applied, []string{"b2"}) {
		t.Fatalf("Up with AllowOutOfOrder = %v, %v", applied, err)
	}
}

// CREATE INDEX CONCURRENTLY fails inside a transaction; a migration that
// opts out of its transaction can run it.
func TestNonTransactionalMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	base := reversible("a1")
	index := func(noTx bool) migrate.Migration {
		return migrate.Migration{
			ID:            "b2_index",
			NoTransaction: noTx,
			Migrate: func(tx *gorm.DB) error {
				return tx.Exec(`CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a1_x ON t_a1 (x)`).Error
			},
		}
	}
	_, err := newMigrator(t, db, append(base, index(false))).Up(ctx)
	var me *migrate.Error
	if !errors.As(err, &me) || me.ID != "b2_index" {
		t.Fatalf("CONCURRENTLY in a transaction = %v, want PostgreSQL to refuse it", err)
	}
	applied, err := newMigrator(t, db, append(base, index(true))).Up(ctx)
	if err != nil || !slices.Equal(applied, []string{"b2_index"}) {
		t.Fatalf("NoTransaction: %v, %v", applied, err)
	}
	var n int
	if err := db.Raw(`SELECT count(*) FROM pg_indexes WHERE indexname = 't_a1_x'`).Scan(&n).Error; err != nil || n != 1 {
		t.Errorf("index count = %d, %v", n, err)
	}
}

// A service that migrates in a separate job checks at start-up and refuses
// an old schema.
func TestConnectCheckOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	migs := reversible("a1", "b2")
	_, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrationCheck(migs...))
	var pe *migrate.PendingError
	if !errors.Is(err, migrate.ErrPending) || !errors.As(err, &pe) || !slices.Equal(pe.IDs, []string{"a1", "b2"}) {
		t.Fatalf("Connect(check) = %v, want a PendingError for a1, b2", err)
	}
	migrateDB(t, cfg, migs...)
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrationCheck(migs...))
	if err != nil {
		t.Fatalf("Connect(check) after migrating: %v", err)
	}
	db.Close(ctx)
}

// A table that gormigrate created (id only) is adopted: its rows count as
// applied, and applied_at is added.
func TestAdoptsAGormigrateTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	if err := db.Exec(`CREATE TABLE migrations (id varchar(255) PRIMARY KEY); INSERT INTO migrations VALUES ('a1');
		CREATE TABLE t_a1 (x int)`).Error; err != nil {
		t.Fatal(err)
	}
	m := newMigrator(t, db, reversible("a1", "b2"), migrate.WithTableName("migrations"))
	st, err := m.Status(ctx)
	if err != nil || states(st) != "a1:applied b2:pending" {
		t.Fatalf("status = %s, %v", states(st), err)
	}
	if applied, err := m.Up(ctx); err != nil || !slices.Equal(applied, []string{"b2"}) {
		t.Fatalf("Up = %v, %v", applied, err)
	}
	st, _ = m.Status(ctx)
	if st[1].AppliedAt.IsZero() {
		t.Errorf("b2 has no applied_at after adoption")
	}
}
