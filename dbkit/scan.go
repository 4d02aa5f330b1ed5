package dbkit

import (
	"errors"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"

	"github.com/dbkit-go/database/internal/rowscan"
)

// queryRows is GORM's query callback (gorm.io/gorm/callbacks.Query, which
// it replaces under the same name, "gorm:query") with two changes: the
// rows of a statement that carries a scan plan (the repository's reads,
// see Repository.rowsOf and Get) are scanned by the plan, which falls back to
// gorm.Scan for what it does not cover; and a Get whose statement GORM
// built once (keyRead) takes that SQL instead of building it again. The
// SQL is GORM's either way, and every other callback (hooks, preloads,
// telemetry) runs as before.
func queryRows(tx *gorm.DB) {
	if tx.Error != nil {
		return
	}
	if tx.Statement.SQL.Len() > 0 {
		// The caller's SQL (Raw) or dbkit's own (ownSQL), not GORM's:
		// dbkit cannot tell whether it writes.
		defer markRaw(tx)
	}
	st := tx.Statement
	s, _ := st.Settings.Load(rowscan.Setting)
	if k, ok := s.(*keyRead); !ok || !k.write(tx) {
		callbacks.BuildQuerySQL(tx)
	}
	if tx.DryRun || tx.Error != nil {
		return
	}
	rows, err := st.ConnPool.QueryContext(st.Context, st.SQL.String(), st.Vars...)
	if err != nil {
		_ = tx.AddError(err)
		return
	}
	defer func() { _ = tx.AddError(rows.Close()) }()
	if !scanned(s, tx, rows) {
		gorm.Scan(rows, tx, 0)
	}
	withholdScanValues(tx, rows.Err())
	if st.Result != nil {
		st.Result.RowsAffected = tx.RowsAffected
	}
}

// scanned scans rows with s when it is a plan that covers them.
func scanned(s any, tx *gorm.DB, rows gorm.Rows) bool {
	plan, ok := s.(rowscan.Scanner)
	return ok && plan.Scan(tx, rows)
}

// withholdScanValues replaces the errors of a scan that could not store a
// value in its field, whose text quotes the value (database/sql's
// "converting driver.Value type string (\"alice@example.com\") to a
// int64", GORM's "failed to set value ..."), with a *scanError. It runs
// right after the scan, when tx.Error holds only what the scan added:
// those errors, rows.Err() (the driver's, left as it is when it is all
// there is), or gorm.ErrRecordNotFound.
func withholdScanValues(tx *gorm.DB, rowsErr error) {
	err := tx.Error
	if err == nil || err == rowsErr || errors.Is(err, gorm.ErrRecordNotFound) { //nolint:errorlint // rows.Err() itself, alone
		return
	}
	tx.Error = &scanError{err: err}
}
