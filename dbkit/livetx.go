package dbkit

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
)

// rollbackTimeout bounds a ROLLBACK: a server that does not answer in that
// time loses the connection instead.
const rollbackTimeout = 5 * time.Second

// liveTx is a database/sql transaction that ends cleanly whenever its
// caller's ctx ends.
//
// database/sql ties a transaction to the ctx it was begun with and rolls it
// back when that ctx ends, but pgx then sends the ROLLBACK with the ended
// ctx, which fails and closes the connection: a reconnect, with its TLS and
// SCRAM handshakes, per cancelled transaction, a storm when timeouts come
// from an overloaded server. A liveTx is begun on a ctx of its own, which
// only its commit and the rollback timeout end; a rollback armed for when
// the caller's ctx ends runs on it, so that a transaction abandoned between
// statements (a caller that panicked, say) is still rolled back and its
// connection kept. Statements still run with the caller's ctx: ending it
// cancels the one running on the server.
type liveTx struct {
	*sql.Tx
	db     *DB                // observes COMMIT and ROLLBACK; nil for none
	ctx    context.Context    // the caller's, which their spans are children of
	cancel context.CancelFunc // ends the transaction's own ctx
	disarm func() bool        // stops the rollback armed for when ctx ends
	end    once               // the commit or rollback; the others wait for it
}

// beginTx begins a liveTx for ctx on beginner. Waiting for a connection
// and BEGIN itself end with ctx, as any statement does.
func (db *DB) beginTx(ctx context.Context, beginner gorm.TxBeginner, opts *sql.TxOptions) (tx *liveTx, err error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx)
	}
	// Should ctx end between BEGIN's success and the end of this call,
	// database/sql rolls back on the ended ctx and the connection is lost:
	// a window of one round trip.
	if _, done := db.observeTxStmt(ctx, opBegin, ""); done != nil {
		defer func() { done(err) }()
	}
	own, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopBegin := context.AfterFunc(ctx, cancel)
	sqlTx, err := beginner.BeginTx(own, opts)
	if !stopBegin() { // ctx ended while beginning: database/sql rolls back what began
		cancel()
		if err == nil {
			_ = sqlTx.Rollback()
		}
		return nil, ctxError(ctx)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	t := &liveTx{Tx: sqlTx, db: db, ctx: ctx, cancel: cancel}
	// If ctx has ended already, AfterFunc runs this at once, in a goroutine
	// of its own: it must not read t.disarm, which is not set yet.
	t.disarm = context.AfterFunc(ctx, func() { _ = t.end.Do(t.roll) })
	return t, nil
}

// roll rolls the transaction back within rollbackTimeout, on its own ctx,
// which it then ends. It is the body of t.end.
func (t *liveTx) roll() (err error) {
	if _, done := t.db.observeTxStmt(t.ctx, opRollback, ""); done != nil {
		defer func() { done(err) }()
	}
	timer := time.AfterFunc(rollbackTimeout, t.cancel)
	defer func() {
		timer.Stop()
		t.cancel()
	}()
	return t.Rollback()
}

// rollback rolls the transaction back, unless it has ended already
// (sql.ErrTxDone); a rollback under way is waited for.
func (t *liveTx) rollback() error {
	t.disarm()
	return t.end.Do(t.roll)
}

// commit commits the transaction unless ctx has ended, in which case it
// rolls it back and returns an error matching ctx.Err(). If ctx ends while
// COMMIT is on its way, the statement is cancelled and the error matches
// both ctx.Err() and [ErrCommitUnknown].
func (t *liveTx) commit(ctx context.Context) error {
	if !t.disarm() || ctx.Err() != nil {
		_ = t.rollback()
		return fmt.Errorf("dbkit: rolled back, not committed: %w", ctxError(ctx))
	}
	err := t.end.Do(func() (err error) {
		if _, done := t.db.observeTxStmt(ctx, opCommit, ""); done != nil {
			defer func() { done(err) }()
		}
		stop := context.AfterFunc(ctx, t.cancel)
		defer func() {
			stop()
			t.cancel()
		}()
		return t.Commit()
	})
	switch {
	case err == nil:
		t.db.wrote(t.ctx)
		return nil
	case ctx.Err() != nil:
		t.db.wrote(t.ctx) // it may have committed
		return fmt.Errorf("%w: %w (%w)", ErrCommitUnknown, ctxError(ctx), err)
	case unavailable(err):
		// The connection was lost at COMMIT: whether the server got it
		// and committed is unknown (pgx's "not sent" is about its own
		// buffer, not what reached the server before a reset), so it is
		// never taken for a rollback.
		t.db.wrote(t.ctx)
		return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
	}
	return err
}

// once runs the first func given to Do, and gives every caller its error;
// later callers wait for it to return, and get sql.ErrTxDone.
type once struct {
	o sync.Once
}

// Do runs f if no func ran before.
func (o *once) Do(f func() error) error {
	err := sql.ErrTxDone
	o.o.Do(func() { err = f() })
	return err
}

// ctxError is why ctx ended: ctx.Err(), and the cause given to
// context.WithCancelCause or WithTimeoutCause when there is one, so that
// errors.Is matches both.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}
