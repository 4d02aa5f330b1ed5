package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// counting returns migrations that append their ID to a log table, so a test
// sees which ran, how often and in which order.
func counting(ids ...string) []migrate.Migration {
	migs := []migrate.Migration{{
		ID: "0000_log",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE migration_log (seq serial PRIMARY KEY, id text NOT NULL)`).Error
		},
	}}
	for _, id := range ids {
		migs = append(migs, migrate.Migration{
			ID: id,
			Migrate: func(tx *gorm.DB) error {
				return tx.Exec(`INSERT INTO migration_log (id) VALUES (?)`, id).Error
			},
		})
	}
	return migs
}

func migrationLog(t *testing.T, db *dbkit.DB) []string {
	t.Helper()
	var ids []string
	q := dbkit.NewBaseDatabase[User](db).Query(context.Background())
	if err := q.Raw(`SELECT id FROM migration_log ORDER BY seq`).Scan(context.Background(), &ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestMigrationsAppliedOnceInIDOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	// Given out of order: applied in ID order.
	migs := counting("0003_c", "0001_a", "0002_b")
	for range 3 {
		db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(migs...))
		if err != nil {
			t.Fatal(err)
		}
		got := migrationLog(t, db)
		db.Close(ctx)
		if want := []string{"0001_a", "0002_b", "0003_c"}; !slices.Equal(got, want) {
			t.Fatalf("migration log = %v, want %v (each once, in ID order)", got, want)
		}
	}

	// A new migration added later runs alone.
	db := openDB(t, cfg, dbkit.WithMigrations(counting("0001_a", "0002_b", "0003_c", "0004_d")...))
	if got := migrationLog(t, db); !slices.Equal(got, []string{"0001_a", "0002_b", "0003_c", "0004_d"}) {
		t.Fatalf("after adding 0004_d: %v", got)
	}
}

func TestFailingMigrationNamesItsIDAndLeavesNothingHalfDone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	boom := errors.New("boom")
	broken := append(counting("0001_a"),
		migrate.Migration{
			ID: "0002_half",
			Migrate: func(tx *gorm.DB) error {
				if err := tx.Exec(`CREATE TABLE half_done (id int)`).Error; err != nil {
					return err
				}
				return boom
			},
		},
		counting("0003_after")[1])

	_, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(broken...))
	var me *migrate.Error
	if !errors.As(err, &me) || me.ID != "0002_half" || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want a *migrate.Error for 0002_half wrapping boom", err)
	}
	if !strings.Contains(err.Error(), "0002_half") {
		t.Errorf("message %q does not name the migration", err)
	}

	// Inspect with a connection that applies nothing.
	db := openDB(t, cfg)
	q := dbkit.NewBaseDatabase[User](db).Query(ctx)
	var tables []string
	if err := q.Raw(`SELECT tablename FROM pg_tables WHERE tablename = 'half_done'`).Scan(ctx, &tables); err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Error("the failed migration's table exists: it was not rolled back")
	}
	var recorded []string
	if err := q.Raw(`SELECT id FROM dbkit_migrations ORDER BY id`).Scan(ctx, &recorded); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recorded, []string{"0000_log", "0001_a"}) {
		t.Errorf("recorded = %v, want the migrations before the failure only", recorded)
	}
	if got := migrationLog(t, db); !slices.Equal(got, []string{"0001_a"}) {
		t.Errorf("ran = %v: the migration after the failure must not run", got)
	}

	// Fixed code: the next start applies the rest.
	fixed := counting("0001_a", "0002_half", "0003_after")
	db2 := openDB(t, cfg, dbkit.WithMigrations(fixed...))
	if got := migrationLog(t, db2); !slices.Equal(got, []string{"0001_a", "0002_half", "0003_after"}) {
		t.Errorf("after the fix: %v", got)
	}
}

func TestInvalidMigrationsRefusedBeforeAnyRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	ran := false
	migs := []migrate.Migration{
		{ID: "0001", Migrate: func(*gorm.DB) error { ran = true; return nil }},
		{ID: "0001", Migrate: func(*gorm.DB) error { return nil }},
		{ID: "", Migrate: func(*gorm.DB) error { return nil }},
		{ID: "0002"},
	}
	_, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(migs...))
	var ve *migrate.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("err = %v, want a ValidationError with 3 problems (duplicate, empty ID, nil Migrate)", err)
	}
	if ran {
		t.Error("a migration ran although the set was invalid")
	}
}
