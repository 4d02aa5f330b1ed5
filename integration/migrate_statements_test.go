package integration

import (
	"context"
	"slices"
	"testing"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// columnsOf reads every row of table with SELECT * (tx.Find) and returns the
// column names of the first row, sorted.
func columnsOf(tx *gorm.DB, table string) ([]string, error) {
	var rows []map[string]any
	if err := tx.Table(table).Find(&rows).Error; err != nil {
		return nil, err
	}
	var cols []string
	for _, r := range rows[:min(len(rows), 1)] {
		for c := range r {
			cols = append(cols, c)
		}
	}
	slices.Sort(cols)
	return cols, nil
}

// readAlterRead are migrations that read a table, add a column to it and
// read it again: in two migrations, and within one.
func readAlterRead(t *testing.T) []migrate.Migration {
	expect := func(tx *gorm.DB, table string, want ...string) error {
		got, err := columnsOf(tx, table)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			t.Errorf("columns of %s = %v, want %v", table, got, want)
		}
		return nil
	}
	return []migrate.Migration{
		{ID: "0001_create_and_read", Migrate: func(tx *gorm.DB) error {
			if err := tx.Exec(`CREATE TABLE items (id int); INSERT INTO items VALUES (1)`).Error; err != nil {
				return err
			}
			return expect(tx, "items", "id")
		}},
		{ID: "0002_alter_and_read", Migrate: func(tx *gorm.DB) error {
			if err := tx.Exec(`ALTER TABLE items ADD COLUMN name text NOT NULL DEFAULT 'x'`).Error; err != nil {
				return err
			}
			return expect(tx, "items", "id", "name")
		}},
		{ID: "0003_read_alter_read", Migrate: func(tx *gorm.DB) error {
			if err := expect(tx, "items", "id", "name"); err != nil {
				return err
			}
			if err := tx.Exec(`ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0`).Error; err != nil {
				return err
			}
			return expect(tx, "items", "id", "name", "price")
		}},
		{ID: "0004_no_transaction", NoTransaction: true, Migrate: func(tx *gorm.DB) error {
			if err := expect(tx, "items", "id", "name", "price"); err != nil {
				return err
			}
			if err := tx.Exec(`ALTER TABLE items DROP COLUMN price`).Error; err != nil {
				return err
			}
			return expect(tx, "items", "id", "name")
		}},
	}
}

// Migrations run on one pinned connection: a statement pgx prepared and
// cached for one migration must not break when a later one (or the same
// one) changes the table it reads (SQLSTATE 0A000, "cached plan must not
// change result type").
func TestMigrationsReadAfterTheyAlter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("Connect", func(t *testing.T) {
		t.Parallel()
		cfg := srv.NewDatabase(t)
		db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(readAlterRead(t)...))
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		_ = db.Close(ctx)
	})
	t.Run("Migrator.Up", func(t *testing.T) {
		t.Parallel()
		db, _ := gormFor(t)
		migs := readAlterRead(t)
		applied, err := newMigrator(t, db, migs).Up(ctx)
		if err != nil || len(applied) != len(migs) {
			t.Fatalf("Up = %v, %v; want all %d applied", applied, err, len(migs))
		}
	})
}

// TestMigrationsReachThePool: tx.DB() works in a migration, in a
// transaction or not, as it did when GORM saw database/sql's own types.
func TestMigrationsReachThePool(t *testing.T) {
	t.Parallel()
	reach := func(tx *gorm.DB) error {
		sqlDB, err := tx.DB()
		if err != nil {
			return err
		}
		return sqlDB.PingContext(tx.Statement.Context)
	}
	migrateDB(t, srv.NewDatabase(t),
		dbkit.Migration{ID: "0001_in_tx", Migrate: reach},
		dbkit.Migration{ID: "0002_no_tx", NoTransaction: true, Migrate: reach})
}
