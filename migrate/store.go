package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"
)

// applied is a migration recorded in the table.
type applied struct {
	ID        string
	AppliedAt time.Time
	Checksum  string // "" when none is recorded
}

// tableState is what the table of records has: a table gormigrate created
// has id only, one from before checksums no checksum.
type tableState struct {
	Exists, HasAppliedAt, HasChecksum bool
}

// readApplied returns the recorded migrations in ID order, or none when the
// table does not exist yet.
func (m *Migrator) readApplied(ctx context.Context, db *gorm.DB) ([]applied, error) {
	ts, err := m.tableState(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("migrate: look for table %s: %w", m.table, err)
	}
	if !ts.Exists {
		return nil, nil
	}
	cols := []string{"id", "NULL::timestamptz AS applied_at", "NULL::text AS checksum"} // columns not yet adopted
	if ts.HasAppliedAt {
		cols[1] = "applied_at"
	}
	if ts.HasChecksum {
		cols[2] = "checksum"
	}
	var rows []struct {
		ID        string
		AppliedAt *time.Time
		Checksum  *string
	}
	if err := db.WithContext(ctx).Raw("SELECT " + strings.Join(cols, ", ") + " FROM " + quoteIdent(m.table) + " ORDER BY id").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("migrate: read table %s: %w", m.table, err)
	}
	out := make([]applied, len(rows))
	for i, r := range rows {
		out[i].ID = r.ID
		if r.AppliedAt != nil {
			out[i].AppliedAt = r.AppliedAt.UTC()
		}
		if r.Checksum != nil {
			out[i].Checksum = *r.Checksum
		}
	}
	return out, nil
}

// tableState reports, in one round trip, whether the table exists and
// which of the columns added after gormigrate's id it has.
func (m *Migrator) tableState(ctx context.Context, db *gorm.DB) (ts tableState, err error) {
	table := quoteIdent(m.table)
	err = db.WithContext(ctx).Raw(`SELECT to_regclass(?) IS NOT NULL,
		EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(?) AND attname = 'applied_at' AND NOT attisdropped),
		EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(?) AND attname = 'checksum' AND NOT attisdropped)`,
		table, table, table).Row().Scan(&ts.Exists, &ts.HasAppliedAt, &ts.HasChecksum)
	return ts, err
}

// ensureTable creates the table, or adds the columns an older one lacks
// (applied_at to a table gormigrate created, checksum to one from before
// checksums). It runs under the lock (concurrent CREATE TABLE IF NOT EXISTS
// can fail in PostgreSQL), and only changes what is missing: an ALTER TABLE
// waits behind any open reader of the table, and every reader behind it.
func (m *Migrator) ensureTable(ctx context.Context, db *gorm.DB) error {
	table := quoteIdent(m.table)
	ts, err := m.tableState(ctx, db)
	var add []string
	if !ts.HasAppliedAt {
		add = append(add, `ADD COLUMN IF NOT EXISTS applied_at timestamptz NOT NULL DEFAULT now()`)
	}
	if !ts.HasChecksum {
		add = append(add, `ADD COLUMN IF NOT EXISTS checksum text`)
	}
	switch {
	case err != nil:
	case !ts.Exists:
		err = db.WithContext(ctx).Exec(`CREATE TABLE IF NOT EXISTS ` + table + ` (
	id varchar(255) PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now(),
	checksum text
)`).Error
	case len(add) > 0:
		err = db.WithContext(ctx).Exec(`ALTER TABLE ` + table + ` ` + strings.Join(add, ", ")).Error
	}
	if err != nil {
		return fmt.Errorf("migrate: create table %s: %w", table, err)
	}
	return nil
}

// recordChecksum records mig's checksum, if it has one, in its record,
// which tx has just inserted. Outside a transaction (NoTransaction) the
// migration is applied and recorded already when this fails: the failure is
// logged, and the next Up that applies something records the checksum, as
// it does for records without one.
func (m *Migrator) recordChecksum(tx *gorm.DB, mig Migration) error {
	if mig.Checksum == "" {
		return nil
	}
	if err := tx.Exec(`UPDATE `+quoteIdent(m.table)+` SET checksum = ? WHERE id = ?`, mig.Checksum, mig.ID).Error; err != nil {
		if mig.NoTransaction {
			m.logger.WarnContext(tx.Statement.Context, "migration applied, but recording its checksum failed: the next run records it",
				slog.String("id", mig.ID), slog.String("error", err.Error()))
			return nil
		}
		return fmt.Errorf("migrate: record the checksum: %w", err)
	}
	return nil
}

// adoptChecksums records, for applied migrations recorded without a
// checksum (applied before checksums, or before their code had one), the
// checksum of their code: from then on they are compared. It runs under
// the lock.
func (m *Migrator) adoptChecksums(ctx context.Context, db *gorm.DB, done []applied) error {
	n := 0
	for _, a := range done {
		k, known := m.byID[a.ID]
		if !known || a.Checksum != "" || m.migrations[k].Checksum == "" {
			continue
		}
		err := db.WithContext(ctx).Exec(`UPDATE `+quoteIdent(m.table)+` SET checksum = ? WHERE id = ? AND checksum IS NULL`,
			m.migrations[k].Checksum, a.ID).Error
		if err != nil {
			return fmt.Errorf("migrate: record the checksum of %q: %w", a.ID, err)
		}
		n++
	}
	if n > 0 {
		m.logger.InfoContext(ctx, "recorded the checksums of migrations applied without one", slog.Int("count", n))
	}
	return nil
}

// checksumChanged reports a migration edited since it was applied: both
// checksums known, and different.
func checksumChanged(recorded, code string) bool {
	return recorded != "" && code != "" && recorded != code
}

// checksumMismatches lists the applied migrations whose code has a
// checksum different from the recorded one, in ID order.
func (m *Migrator) checksumMismatches(done []applied) []ChecksumMismatch {
	var out []ChecksumMismatch
	for _, a := range done {
		k, known := m.byID[a.ID]
		if !known || !checksumChanged(a.Checksum, m.migrations[k].Checksum) {
			continue
		}
		out = append(out, ChecksumMismatch{ID: a.ID, Recorded: a.Checksum, Code: m.migrations[k].Checksum})
	}
	return out
}

// verifyChecksums returns a *ChecksumError for applied migrations whose
// code changed, or, with WarnOnChecksumMismatch, logs each at WARN (when
// warn is set) and returns nil.
func (m *Migrator) verifyChecksums(ctx context.Context, done []applied, warn bool) error {
	mismatches := m.checksumMismatches(done)
	if len(mismatches) == 0 {
		return nil
	}
	if !m.warnOnChecksum {
		return &ChecksumError{Mismatches: mismatches}
	}
	if warn {
		for _, c := range mismatches {
			m.logger.WarnContext(ctx, "an applied migration changed since it was applied",
				slog.String("id", c.ID), slog.String("recorded_checksum", c.Recorded), slog.String("code_checksum", c.Code))
		}
	}
	return nil
}
