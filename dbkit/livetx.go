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
	cancel context.CancelFunc // ends the transaction's own ctx
	disarm func() bool        // stops the rollback armed for when ctx ends
	end    sync.Once          // the commit or rollback; the others wait for it
}

// beginTx begins a liveTx for ctx on beginner.
func beginTx(ctx context.Context, beginner gorm.TxBeginner, opts *sql.TxOptions) (*liveTx, error) {
	own, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sqlTx, err := beginner.BeginTx(own, opts)
	if err != nil {
		cancel()
		return nil, err
	}
	t := &liveTx{Tx: sqlTx, cancel: cancel}
	t.disarm = context.AfterFunc(ctx, func() { _ = t.rollback() })
	return t, nil
}

// rollback rolls the transaction back, within rollbackTimeout, unless it has
// ended already (sql.ErrTxDone); a rollback under way is waited for.
func (t *liveTx) rollback() error {
	t.disarm()
	err := sql.ErrTxDone
	t.end.Do(func() {
		timer := time.AfterFunc(rollbackTimeout, t.cancel)
		err = t.Tx.Rollback()
		timer.Stop()
		t.cancel()
	})
	return err
}

// commit commits the transaction unless ctx has ended, in which case it
// rolls it back and returns an error matching ctx.Err(). If ctx ends while
// COMMIT is on its way, the statement is cancelled and the error matches
// both ctx.Err() and [ErrCommitUnknown].
func (t *liveTx) commit(ctx context.Context) error {
	if !t.disarm() || ctx.Err() != nil {
		_ = t.rollback()
		return fmt.Errorf("dbkit: rolled back, not committed: %w", context.Cause(ctx))
	}
	err := sql.ErrTxDone
	t.end.Do(func() {
		stop := context.AfterFunc(ctx, t.cancel)
		err = t.Tx.Commit()
		stop()
		t.cancel()
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w (%w)", ErrCommitUnknown, context.Cause(ctx), err)
	}
	return err
}
