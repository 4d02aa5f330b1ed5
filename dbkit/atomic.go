package dbkit

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// Writes are all-or-nothing. GORM wraps every Create, Update and Delete in a
// transaction unless told not to; dbkit replaces GORM's two transaction
// callbacks with ones that open a transaction only when the write can run
// more than one statement or a hook that can fail: a model with hooks, or
// associations that will be saved (or, for a delete, deleted). A plain
// single-statement write pays no BEGIN and COMMIT, being atomic anyway.
// Inside a transaction (InTx, or a hook's own statements) such a write runs
// in a savepoint instead, so that a failed write leaves nothing behind and
// the transaction can go on.

// writeKind is the GORM processor a write runs in.
type writeKind uint8

const (
	writeCreate writeKind = iota
	writeUpdate
	writeDelete
)

// writeSavepoint is the savepoint of a write inside a transaction. A hook's
// nested write reuses the name: PostgreSQL resolves a name to the newest
// savepoint, and nested writes end before the write around them.
const writeSavepoint = "dbkit_write"

// writeTx is what beginWrite started for one statement, found by endWrite.
type writeTx struct {
	pool  gorm.ConnPool    // the statement's pool before the write
	tx    *liveTx          // begun on a database/sql pool or connection
	other gorm.TxCommitter // begun by another pool (migrate's pinned connection)
	// Neither: a savepoint in the transaction the pool is.
}

// registerAtomicWrites replaces GORM's default-transaction callbacks. It is
// called while GORM's logger still discards, since Replace logs at INFO.
func (db *DB) registerAtomicWrites() error {
	cb := db.gorm.Callback()
	return errors.Join(
		cb.Create().Replace("gorm:begin_transaction", func(tx *gorm.DB) { db.beginWrite(tx, writeCreate) }),
		cb.Create().Replace("gorm:commit_or_rollback_transaction", db.endWrite),
		cb.Update().Replace("gorm:begin_transaction", func(tx *gorm.DB) { db.beginWrite(tx, writeUpdate) }),
		cb.Update().Replace("gorm:commit_or_rollback_transaction", db.endWrite),
		cb.Delete().Replace("gorm:begin_transaction", func(tx *gorm.DB) { db.beginWrite(tx, writeDelete) }),
		cb.Delete().Replace("gorm:commit_or_rollback_transaction", db.endWrite),
	)
}

// beginWrite starts the transaction or savepoint of a write that needs one.
func (db *DB) beginWrite(tx *gorm.DB, kind writeKind) {
	stmt := tx.Statement
	if tx.Error != nil || tx.SkipDefaultTransaction || tx.DryRun || !needsTx(stmt, kind) {
		return
	}
	ctx := stmt.Context
	if _, inTx := stmt.ConnPool.(gorm.TxCommitter); inTx {
		if tx.DisableNestedTransaction {
			return // GORM saving a write's associations, inside the write's own transaction
		}
		if err := db.savepointExec(ctx, stmt.ConnPool, opSavepoint, "SAVEPOINT "+writeSavepoint); err != nil {
			_ = tx.AddError(err)
			return
		}
		stmt.Settings.Store(stmt, &writeTx{pool: stmt.ConnPool})
		return
	}
	switch beginner := stmt.ConnPool.(type) {
	case gorm.TxBeginner:
		ltx, err := db.beginTx(ctx, beginner, nil)
		if err != nil {
			_ = tx.AddError(err)
			return
		}
		stmt.Settings.Store(stmt, &writeTx{pool: stmt.ConnPool, tx: ltx})
		stmt.ConnPool = txConnPoolOf(beginner, ltx.Tx)
	case gorm.ConnPoolBeginner:
		_, done := db.observeTxStmt(ctx, opBegin, "")
		p, err := beginner.BeginTx(ctx, nil)
		if done != nil {
			done(err)
		}
		if err != nil {
			_ = tx.AddError(err)
			return
		}
		committer, ok := p.(gorm.TxCommitter)
		if !ok {
			_ = tx.AddError(fmt.Errorf("dbkit: %T began a transaction that cannot commit", beginner))
			return
		}
		stmt.Settings.Store(stmt, &writeTx{pool: stmt.ConnPool, other: committer})
		stmt.ConnPool = p
	}
	// Any other pool: GORM could not begin on it either.
}

// endWrite commits what beginWrite started, or rolls it back when the write
// failed.
func (db *DB) endWrite(tx *gorm.DB) {
	stmt := tx.Statement
	v, ok := stmt.Settings.LoadAndDelete(stmt)
	if !ok {
		return
	}
	w := v.(*writeTx)
	stmt.ConnPool = w.pool
	ctx := stmt.Context
	var err error
	switch {
	case w.other != nil:
		op, end := opCommit, w.other.Commit
		if tx.Error != nil {
			op, end = opRollback, w.other.Rollback
		}
		_, done := db.observeTxStmt(ctx, op, "")
		endErr := end()
		if done != nil {
			done(endErr)
		}
		if op == opCommit {
			err = endErr
			if err == nil {
				db.wrote(ctx)
			}
		}
	case w.tx == nil:
		op, end := opReleaseSavepoint, "RELEASE SAVEPOINT "+writeSavepoint
		if tx.Error != nil {
			op, end = opRollbackSavepoint, "ROLLBACK TO SAVEPOINT "+writeSavepoint+"; "+end
		}
		if err = db.savepointExec(ctx, w.pool, op, end); err != nil {
			err = fmt.Errorf("dbkit: end the write's savepoint: %w", err)
		}
	case tx.Error != nil:
		_ = w.tx.rollback()
	default:
		err = w.tx.commit(ctx)
	}
	if err != nil {
		// Joined, not AddError: GORM's would keep only the text of the
		// error the write already had.
		err = markUnavailable(ctx, translateDriver(ctx, err))
		if tx.Error != nil {
			err = errors.Join(tx.Error, err)
		}
		tx.Error = err
	}
}

// savepointExec runs a savepoint statement (op) on a transaction. A rollback to
// a savepoint must happen even after ctx ended, so these statements run
// without ctx's cancellation, within rollbackTimeout; when they fail
// because ctx ended (the transaction was rolled back meanwhile), the error
// says so.
func (db *DB) savepointExec(ctx context.Context, pool gorm.ConnPool, op, sql string) (err error) {
	stmtCtx, done := db.observeTxStmt(ctx, op, sql)
	if done != nil {
		defer func() { done(err) }()
	}
	live, cancel := context.WithTimeout(context.WithoutCancel(stmtCtx), rollbackTimeout)
	defer cancel()
	_, err = pool.ExecContext(live, sql)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctxError(ctx), err)
	}
	return err
}

// needsTx reports whether a write can run more than one statement or a hook
// that can fail.
func needsTx(stmt *gorm.Statement, kind writeKind) bool {
	s := stmt.Schema
	if s == nil {
		return false
	}
	if !stmt.SkipHooks {
		switch kind {
		case writeCreate:
			if s.BeforeSave || s.BeforeCreate || s.AfterCreate || s.AfterSave {
				return true
			}
		case writeUpdate:
			if s.BeforeSave || s.BeforeUpdate || s.AfterUpdate || s.AfterSave {
				return true
			}
		case writeDelete:
			if s.BeforeDelete || s.AfterDelete {
				return true
			}
		}
	}
	r := &s.Relationships
	if len(r.BelongsTo)+len(r.HasOne)+len(r.HasMany)+len(r.Many2Many) == 0 {
		// (A join table's schema has Relations but none of these: GORM
		// saves no association of it.)
		return false
	}
	if kind == writeDelete {
		// GORM deletes associations only when they are selected.
		return len(stmt.Selects) > 0
	}
	return savesAssociations(stmt, kind == writeCreate)
}

// savesAssociations reports whether GORM will write an association of the
// statement's value: one neither omitted nor left out by Select, whose field
// is set. It goes through the relationships as GORM's association callbacks
// do.
func savesAssociations(stmt *gorm.Statement, create bool) bool {
	selected, restricted := stmt.SelectAndOmitColumns(create, !create)
	rv := reflect.Indirect(stmt.ReflectValue)
	r := &stmt.Schema.Relationships
	for _, rels := range [...][]*schema.Relationship{r.BelongsTo, r.HasOne, r.HasMany, r.Many2Many} {
		for _, rel := range rels {
			if v, ok := selected[rel.Name]; (ok && !v) || (!ok && restricted) {
				continue
			}
			if relationSet(stmt.Context, rel, rv) {
				return true
			}
		}
	}
	return false
}

// relationSet reports whether the relation's field is set in rv, a struct or
// a slice or array of them; anything else counts as set.
func relationSet(ctx context.Context, rel *schema.Relationship, rv reflect.Value) bool {
	switch rv.Kind() {
	case reflect.Struct:
		_, zero := rel.Field.ValueOf(ctx, rv)
		return !zero
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			if relationSet(ctx, rel, reflect.Indirect(rv.Index(i))) {
				return true
			}
		}
		return false
	default:
		return true
	}
}
