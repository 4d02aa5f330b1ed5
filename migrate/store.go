package migrate

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// applied is a migration recorded in the table.
type applied struct {
	ID        string
	AppliedAt time.Time
}

// readApplied returns the recorded migrations in ID order, or none when the
// table does not exist yet.
func (m *Migrator) readApplied(ctx context.Context, db *gorm.DB) ([]applied, error) {
	var exists bool
	if err := db.WithContext(ctx).Raw("SELECT to_regclass(?) IS NOT NULL", quoteIdent(m.table)).Scan(&exists).Error; err != nil {
		return nil, fmt.Errorf("migrate: look for table %s: %w", m.table, err)
	}
	if !exists {
		return nil, nil
	}
	var hasAppliedAt bool
	if err := db.WithContext(ctx).Raw(`SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass(?) AND attname = 'applied_at' AND NOT attisdropped)`, quoteIdent(m.table)).
		Scan(&hasAppliedAt).Error; err != nil {
		return nil, fmt.Errorf("migrate: read table %s: %w", m.table, err)
	}
	cols := "id, NULL::timestamptz AS applied_at" // a gormigrate table not yet adopted
	if hasAppliedAt {
		cols = "id, applied_at"
	}
	var rows []struct {
		ID        string
		AppliedAt *time.Time
	}
	if err := db.WithContext(ctx).Raw("SELECT " + cols + " FROM " + quoteIdent(m.table) + " ORDER BY id").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("migrate: read table %s: %w", m.table, err)
	}
	out := make([]applied, len(rows))
	for i, r := range rows {
		out[i].ID = r.ID
		if r.AppliedAt != nil {
			out[i].AppliedAt = r.AppliedAt.UTC()
		}
	}
	return out, nil
}

// ensureTable creates the table, or adds applied_at to a table gormigrate
// created. It runs under the lock (concurrent CREATE TABLE IF NOT EXISTS can
// fail in PostgreSQL), and only changes what is missing: an ALTER TABLE
// waits behind any open reader of the table, and every reader behind it.
func (m *Migrator) ensureTable(ctx context.Context, db *gorm.DB) error {
	table := quoteIdent(m.table)
	var exists, hasAppliedAt bool
	err := db.WithContext(ctx).Raw(`SELECT to_regclass(?) IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass(?) AND attname = 'applied_at' AND NOT attisdropped)`, table, table).
		Row().Scan(&exists, &hasAppliedAt)
	switch {
	case err != nil:
	case !exists:
		err = db.WithContext(ctx).Exec(`CREATE TABLE IF NOT EXISTS ` + table + ` (
	id varchar(255) PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`).Error
	case !hasAppliedAt:
		err = db.WithContext(ctx).Exec(`ALTER TABLE ` + table + ` ADD COLUMN IF NOT EXISTS applied_at timestamptz NOT NULL DEFAULT now()`).Error
	}
	if err != nil {
		return fmt.Errorf("migrate: create table %s: %w", table, err)
	}
	return nil
}
