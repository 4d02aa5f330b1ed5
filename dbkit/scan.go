package dbkit

import (
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"

	"github.com/dbkit-go/database/internal/rowscan"
)

// queryRows is GORM's query callback (gorm.io/gorm/callbacks.Query, which
// it replaces under the same name, "gorm:query") with one change: the rows
// of a statement that carries a scan plan (the repository's reads, see
// Repository.rowsOf) are scanned by the plan, which falls back to
// gorm.Scan for what it does not cover. GORM still builds the SQL, and
// every other callback (hooks, preloads, telemetry) runs as before.
func queryRows(tx *gorm.DB) {
	if tx.Error != nil {
		return
	}
	callbacks.BuildQuerySQL(tx)
	if tx.DryRun || tx.Error != nil {
		return
	}
	st := tx.Statement
	rows, err := st.ConnPool.QueryContext(st.Context, st.SQL.String(), st.Vars...)
	if err != nil {
		_ = tx.AddError(err)
		return
	}
	defer func() { _ = tx.AddError(rows.Close()) }()
	if s, _ := st.Settings.Load(rowscan.Setting); !scanned(s, tx, rows) {
		gorm.Scan(rows, tx, 0)
	}
	if st.Result != nil {
		st.Result.RowsAffected = tx.RowsAffected
	}
}

// scanned scans rows with s when it is a plan that covers them.
func scanned(s any, tx *gorm.DB, rows gorm.Rows) bool {
	plan, ok := s.(rowscan.Scanner)
	return ok && plan.Scan(tx, rows)
}
