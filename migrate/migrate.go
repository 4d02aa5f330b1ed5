package migrate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
)

// DefaultTableName is the table that records applied migrations.
const DefaultTableName = "dbkit_migrations"

// Migration is one versioned change of the schema, written in Go.
//
// IDs sort in the order migrations must run; name them
// YYYYMMDDHHMM_description, for example "202611260900_create_users".
type Migration struct {
	ID string
	// Migrate applies the change. It runs in a transaction of its own, the
	// same one that records the migration as applied.
	Migrate func(tx *gorm.DB) error
	// Rollback undoes Migrate. It may be nil when the change cannot be undone.
	Rollback func(tx *gorm.DB) error
}

// Error reports the migration that failed. Migrations before it stay applied
// and recorded; it and those after it did not run.
type Error struct {
	ID  string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("migrate: migration %q: %v", e.ID, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// ValidationError lists every problem found in a set of migrations before any
// of them ran.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "migrate: invalid migrations: " + strings.Join(e.Problems, "; ")
}

// Option configures a [Migrator].
type Option func(*Migrator)

// WithTableName records applied migrations in table name instead of
// [DefaultTableName].
func WithTableName(name string) Option { return func(m *Migrator) { m.table = name } }

// WithLogger logs each applied migration, with its duration, at INFO.
func WithLogger(l *slog.Logger) Option { return func(m *Migrator) { m.logger = l } }

// Migrator applies a set of migrations to one database.
type Migrator struct {
	db         *gorm.DB
	migrations []Migration // sorted by ID
	table      string
	logger     *slog.Logger
}

// New validates migrations and returns a Migrator for db. It returns a
// *[ValidationError] listing every empty or duplicate ID and every nil
// Migrate func.
func New(db *gorm.DB, migrations []Migration, opts ...Option) (*Migrator, error) {
	m := &Migrator{db: db, table: DefaultTableName}
	for _, opt := range opts {
		opt(m)
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if err := validate(migrations); err != nil {
		return nil, err
	}
	m.migrations = slices.SortedFunc(slices.Values(migrations), func(a, b Migration) int { return cmp.Compare(a.ID, b.ID) })
	return m, nil
}

func validate(migrations []Migration) error {
	var problems []string
	seen := make(map[string]bool, len(migrations))
	for i, mig := range migrations {
		name := fmt.Sprintf("%q", mig.ID)
		if mig.ID == "" {
			name = fmt.Sprintf("#%d", i)
			problems = append(problems, fmt.Sprintf("migration #%d has an empty ID", i))
		} else if seen[mig.ID] {
			problems = append(problems, fmt.Sprintf("migration ID %q is duplicated", mig.ID))
		}
		seen[mig.ID] = true
		if mig.Migrate == nil {
			problems = append(problems, fmt.Sprintf("migration %s has no Migrate func", name))
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

// Up applies, in ID order, every migration not yet recorded, each in its own
// transaction together with its record. It returns the IDs it applied. When
// one fails it stops and returns a *[Error] naming it.
func (m *Migrator) Up(ctx context.Context) ([]string, error) {
	db := m.db.WithContext(ctx)
	if err := m.ensureTable(db); err != nil {
		return nil, err
	}
	var applied []string
	for _, mig := range m.migrations {
		start := time.Now()
		ran := false
		run := func(tx *gorm.DB) error { ran = true; return mig.Migrate(tx) }
		err := db.Transaction(func(tx *gorm.DB) error {
			// gormigrate skips the migration when its record exists, else runs
			// it and inserts the record, all on tx.
			g := gormigrate.New(tx, &gormigrate.Options{
				TableName:    m.table,
				IDColumnName: "id",
				IDColumnSize: 255,
			}, []*gormigrate.Migration{{ID: mig.ID, Migrate: run, Rollback: mig.Rollback}})
			return g.Migrate()
		})
		if err != nil {
			return applied, &Error{ID: mig.ID, Err: err}
		}
		if ran {
			applied = append(applied, mig.ID)
			m.logger.InfoContext(ctx, "migration applied", slog.String("id", mig.ID), slog.Duration("duration", time.Since(start)))
		}
	}
	return applied, nil
}

func (m *Migrator) ensureTable(db *gorm.DB) error {
	table := quoteIdent(m.table)
	err := db.Exec(`CREATE TABLE IF NOT EXISTS ` + table + ` (
	id varchar(255) PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`).Error
	if err != nil {
		return fmt.Errorf("migrate: create table %s: %w", table, err)
	}
	return nil
}

// quoteIdent quotes a possibly schema-qualified identifier.
func quoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// Up validates migrations and applies those not yet applied to db; see
// [Migrator.Up].
func Up(ctx context.Context, db *gorm.DB, migrations []Migration, opts ...Option) ([]string, error) {
	m, err := New(db, migrations, opts...)
	if err != nil {
		return nil, err
	}
	return m.Up(ctx)
}
