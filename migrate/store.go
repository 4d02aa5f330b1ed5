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
	exists, hasAppliedAt, err := m.tableState(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("migrate: look for table %s: %w", m.table, err)
	}
	if !exists {
		return nil, nil
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

// tableState reports, in one round trip, whether the table exists and
// whether it has applied_at (a table gormigrate created has not).
func (m *Migrator) tableState(ctx context.Context, db *gorm.DB) (exists, hasAppliedAt bool, err error) {
	table := quoteIdent(m.table)
	err = db.WithContext(ctx).Raw(`SELECT to_regclass(?) IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass(?) AND attname = 'applied_at' AND NOT attisdropped)`, table, table).
		Row().Scan(&exists, &hasAppliedAt)
	return exists, hasAppliedAt, err
}

// ensureTable creates the table, or adds applied_at to a table gormigrate
// created. It runs under the lock (concurrent CREATE TABLE IF NOT EXISTS can
// fail in PostgreSQL), and only changes what is missing: an ALTER TABLE
// waits behind any open reader of the table, and every reader behind it.
func (m *Migrator) ensureTable(ctx context.Context, db *gorm.DB) error {
	table := quoteIdent(m.table)
	exists, hasAppliedAt, err := m.tableState(ctx, db)
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
