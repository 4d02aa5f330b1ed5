package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/migrate"
)

// indexValid reports whether index name exists and is valid.
func indexValid(t *testing.T, db *gorm.DB, name string) (exists, valid bool) {
	t.Helper()
	var rows []bool
	if err := db.Raw(`SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE c.relname = ?`, name).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return len(rows) == 1, len(rows) == 1 && rows[0]
}

// recorded lists the IDs in the table of records.
func recorded(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var ids []string
	if err := db.Raw(`SELECT id FROM dbkit_migrations ORDER BY id`).Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

// emails creates a table with a duplicated email, as a migration.
var emails = migrate.Migration{ID: "a1_emails", Migrate: func(tx *gorm.DB) error {
	return tx.Exec(`CREATE TABLE emails (email text NOT NULL);
		INSERT INTO emails VALUES ('ada@example.com'), ('ADA@example.com'), ('bob@example.com')`).Error
}}

// noTx is a NoTransaction migration running statements in turn.
func noTx(id string, stmts ...string) migrate.Migration {
	return migrate.Migration{ID: id, NoTransaction: true, Migrate: func(tx *gorm.DB) error {
		for _, s := range stmts {
			if err := tx.Exec(s).Error; err != nil {
				return err
			}
		}
		return nil
	}}
}

// checkInvalidIndexError checks that err is the *migrate.Error of migration
// id, refusing it for leaving exactly the invalid indexes given.
func checkInvalidIndexError(t *testing.T, err error, id string, indexes ...string) {
	t.Helper()
	var me *migrate.Error
	var iie *migrate.InvalidIndexError
	if !errors.As(err, &me) || me.ID != id || !errors.Is(err, migrate.ErrInvalidIndex) || !errors.As(err, &iie) {
		t.Fatalf("err = %v, want the *migrate.Error of %s wrapping an InvalidIndexError", err, id)
	}
	if !slices.Equal(iie.Indexes, indexes) {
		t.Errorf("invalid indexes = %v, want %v", iie.Indexes, indexes)
	}
	for _, ix := range indexes {
		if !strings.Contains(err.Error(), ix) {
			t.Errorf("message %q does not name %s", err, ix)
		}
	}
}

// The docs' old recipe: a CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS
// that failed on duplicates leaves an invalid index; once the data is
// fixed, the retry skips it (IF NOT EXISTS) and must not be recorded as
// applied, since uniqueness is not enforced.
func TestRetryOverAnInvalidIndexIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	unique := noTx("b2_unique", `CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS emails_lower_key ON emails (lower(email))`)
	migs := []migrate.Migration{emails, unique}
	if _, err := newMigrator(t, db, migs).Up(ctx); err == nil || !strings.Contains(err.Error(), "23505") {
		t.Fatalf("first Up = %v, want the duplicate key error", err)
	}
	if exists, valid := indexValid(t, db, "emails_lower_key"); !exists || valid {
		t.Fatalf("after the failure the index exists=%v valid=%v, want an invalid index (what PostgreSQL does)", exists, valid)
	}
	if err := db.Exec(`DELETE FROM emails WHERE email = 'ADA@example.com'`).Error; err != nil {
		t.Fatal(err)
	}
	_, err := newMigrator(t, db, migs).Up(ctx)
	checkInvalidIndexError(t, err, "b2_unique", "emails_lower_key")
	if got := recorded(t, db); slices.Contains(got, "b2_unique") {
		t.Errorf("recorded = %v: the retry was recorded although the index is invalid", got)
	}
}

// A NoTransaction migration that succeeds but leaves a new invalid index
// behind (its failing CREATE INDEX CONCURRENTLY swallowed) is refused; an
// invalid index that was there before and that the migration does not
// name is not its fault.
func TestNewInvalidIndexIsRefusedOldOneIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	if _, err := newMigrator(t, db, []migrate.Migration{emails}).Up(ctx); err != nil {
		t.Fatal(err)
	}
	// An old invalid index nobody touches.
	_ = db.Exec(`CREATE UNIQUE INDEX CONCURRENTLY old_broken ON emails (lower(email))`).Error
	if exists, valid := indexValid(t, db, "old_broken"); !exists || valid {
		t.Fatalf("old_broken exists=%v valid=%v, want an invalid index", exists, valid)
	}

	swallowing := migrate.Migration{ID: "b2_swallows", NoTransaction: true, Migrate: func(tx *gorm.DB) error {
		_ = tx.Exec(`CREATE UNIQUE INDEX CONCURRENTLY new_broken ON emails (lower(email))`).Error // "best effort"
		return nil
	}}
	_, err := newMigrator(t, db, []migrate.Migration{emails, swallowing}).Up(ctx)
	checkInvalidIndexError(t, err, "b2_swallows", "new_broken")
	if got := recorded(t, db); slices.Contains(got, "b2_swallows") {
		t.Errorf("recorded = %v: b2_swallows was recorded", got)
	}

	unrelated := noTx("c3_unrelated", `CREATE INDEX CONCURRENTLY emails_email_idx ON emails (email)`)
	if err := db.Exec(`DROP INDEX new_broken`).Error; err != nil {
		t.Fatal(err)
	}
	applied, err := newMigrator(t, db, []migrate.Migration{emails, unrelated}).Up(ctx)
	if err != nil || !slices.Equal(applied, []string{"c3_unrelated"}) {
		t.Errorf("Up with an unrelated old invalid index = %v, %v; want c3_unrelated applied", applied, err)
	}
}
