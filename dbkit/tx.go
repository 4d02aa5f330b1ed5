package dbkit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// SQLSTATE codes after which retrying the whole transaction may succeed.
const (
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// ErrNoTx reports an operation that needs a transaction (a row lock, say)
// called with a ctx that carries none; it matches ErrInvalid too.
var ErrNoTx = fmt.Errorf("%w: needs a transaction: call it inside DB.InTx", ErrInvalid)

var errTxPanicked = errors.New("dbkit: the transaction's function panicked; rolled back")

// TxOption configures [DB.InTx].
type TxOption func(*txOptions)

type txOptions struct {
	isolation sql.IsolationLevel
	readOnly  bool
	attempts  int // 1: no retry
}

// Isolation sets the isolation level, sql.LevelRepeatableRead or
// sql.LevelSerializable for example. The default is the server's (READ
// COMMITTED unless configured otherwise).
func Isolation(level sql.IsolationLevel) TxOption {
	return func(o *txOptions) { o.isolation = level }
}

// ReadOnly starts a READ ONLY transaction: PostgreSQL refuses writes in it.
func ReadOnly() TxOption { return func(o *txOptions) { o.readOnly = true } }

// RetrySerializationFailures runs the whole function again, up to attempts
// times in all, when the transaction fails with a serialization failure
// (SQLSTATE 40001), a deadlock (40P01), a statement made stale by a schema
// change ([ErrSchemaChanged]) or a server out of reach ([ErrUnavailable])
// before its COMMIT was sent, after a jittered exponential
// backoff (10 ms doubling, at most 1 s). The function must be safe to run
// again: no side effects outside the transaction.
func RetrySerializationFailures(attempts int) TxOption {
	return func(o *txOptions) { o.attempts = max(attempts, 1) }
}

// txKey is the ctx key of the transaction InTx runs.
type txKey struct{}

// txState is what InTx puts in ctx: the transaction, the connection it runs
// on (for what database/sql cannot do inside a transaction, such as COPY),
// and the DB it belongs to.
type txState struct {
	db    *DB
	tx    *gorm.DB
	conn  *sql.Conn
	depth int // savepoints deep: 0 in the transaction itself
}

// txFrom returns the transaction of db carried by ctx, or nil.
func (db *DB) txFrom(ctx context.Context) *gorm.DB {
	if st := db.txStateFrom(ctx); st != nil {
		return st.tx
	}
	return nil
}

func (db *DB) txStateFrom(ctx context.Context) *txState {
	if st, ok := ctx.Value(txKey{}).(*txState); ok && st.db == db {
		return st
	}
	return nil
}

// InTx runs fn in a transaction and commits it if fn returns nil. Every
// [BaseDatabase] method of this DB called with the ctx fn receives joins the
// transaction, whatever the repository; so does [Repository.Query].
//
//	err := db.InTx(ctx, func(ctx context.Context) error {
//		if err := accounts.Update(ctx, &from); err != nil {
//			return err // rolls back
//		}
//		return accounts.Update(ctx, &to)
//	}, dbkit.Isolation(sql.LevelSerializable), dbkit.RetrySerializationFailures(5))
//
// The transaction is rolled back when fn returns an error or panics (the
// panic goes on after the rollback). InTx called inside fn, with its ctx,
// runs in a savepoint: an error rolls back to the savepoint only, and
// options are ignored there (the outer transaction decides them). A ctx
// carrying a transaction of another DB is ignored.
//
// When ctx ends, the running statement is cancelled on the server, the
// transaction is rolled back on its connection (which the pool keeps) and
// InTx returns an error matching ctx.Err(): nothing is committed, also when
// fn returned nil. If ctx ends while COMMIT is on its way, the error also
// matches [ErrCommitUnknown]: the transaction may have been committed.
//
// With [RetrySerializationFailures], a serialization failure or deadlock
// anywhere in the transaction (commit included) runs fn again from the
// start, in a new transaction; the last error is returned when the attempts
// run out.
func (db *DB) InTx(ctx context.Context, fn func(ctx context.Context) error, opts ...TxOption) (err error) {
	o := txOptions{attempts: 1}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if parent := db.txStateFrom(ctx); parent != nil {
		return db.inSavepoint(ctx, parent, fn)
	}
	ctx, span := db.startTxSpan(ctx, o)
	panicked := true
	defer func() {
		if panicked { // the span still ends; the panic goes on unrecovered
			tracing.End(span, errTxPanicked, nil)
			return
		}
		tracing.End(span, err, nil)
	}()
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = db.runTx(ctx, fn, o)
		if err == nil || attempt >= o.attempts || !retryableTx(err) || ctx.Err() != nil {
			break
		}
		wait := backoff/2 + rand.N(backoff)
		if span.IsRecording() {
			span.AddEvent(tracing.EventTxRetry, trace.WithAttributes(
				tracing.TxAttempt.Int(attempt+1), tracing.ErrorType.String(sqlState(err))))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			panicked = false
			return fmt.Errorf("%w (while retrying after: %w)", ctx.Err(), db.translate(ctx, err))
		case <-timer.C:
		}
		backoff = min(backoff*2, time.Second)
	}
	panicked = false
	if err != nil {
		err = db.translate(ctx, err)
	}
	return err
}

// inSavepoint runs fn inside parent's transaction, in a savepoint that is
// released when fn succeeds and rolled back to (and released) when it fails
// or panics. Errors of the savepoint statements themselves are returned with
// fn's: a transaction in which they fail is aborted and the outer InTx must
// know.
func (db *DB) inSavepoint(ctx context.Context, parent *txState, fn func(ctx context.Context) error) (err error) {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	child := &txState{db: db, tx: parent.tx, conn: parent.conn, depth: parent.depth + 1}
	name := "dbkit_sp_" + strconv.Itoa(child.depth)
	exec := func(op, sql string) error {
		return db.savepointExec(ctx, parent.tx.Statement.ConnPool, op, sql)
	}
	if err := exec(opSavepoint, "SAVEPOINT "+name); err != nil {
		return db.translate(ctx, err)
	}
	panicked := true
	defer func() {
		if panicked || err != nil {
			if rbErr := exec(opRollbackSavepoint, "ROLLBACK TO SAVEPOINT "+name+"; RELEASE SAVEPOINT "+name); rbErr != nil {
				err = errors.Join(err, fmt.Errorf("dbkit: roll back to savepoint: %w", db.translate(ctx, rbErr)))
			}
		}
	}()
	err = fn(context.WithValue(ctx, txKey{}, child))
	panicked = false
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("dbkit: rolled back to the savepoint: %w", ctxError(ctx))
	}
	if err != nil {
		return err
	}
	if err := exec(opReleaseSavepoint, "RELEASE SAVEPOINT "+name); err != nil {
		return db.translate(ctx, err)
	}
	return nil
}

// runTx runs one attempt: a transaction on a connection pinned for it. The
// transaction is a [liveTx]: when ctx ends it is rolled back on its own
// connection, which the pool keeps, and the error matches ctx.Err().
func (db *DB) runTx(ctx context.Context, fn func(ctx context.Context) error, o txOptions) (err error) {
	var txOpts *sql.TxOptions
	if o.isolation != sql.LevelDefault || o.readOnly {
		txOpts = &sql.TxOptions{Isolation: o.isolation, ReadOnly: o.readOnly}
	}
	conn, err := db.pool.conn(ctx)
	if err != nil {
		return db.fromDriver(ctx, err) // marked: retryableTx reads it
	}
	defer func() { _ = conn.Close() }()
	ltx, err := db.beginTx(ctx, conn, txOpts)
	if err != nil {
		return db.fromDriver(ctx, err)
	}
	tx := db.gorm.Session(&gorm.Session{NewDB: true, Context: ctx})
	tx.Statement.ConnPool = db.txConnPool(ltx.Tx)
	panicked := true
	defer func() {
		if panicked {
			_ = ltx.rollback() // the panic goes on
		}
	}()
	err = fn(context.WithValue(ctx, txKey{}, &txState{db: db, tx: tx, conn: conn}))
	panicked = false
	if err != nil {
		_ = ltx.rollback()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("dbkit: rolled back: %w: %w", ctxError(ctx), err)
		}
		return err
	}
	return ltx.commit(ctx)
}

func (db *DB) startTxSpan(ctx context.Context, o txOptions) (context.Context, trace.Span) {
	if !db.traced {
		return ctx, noSpan
	}
	attrs := db.serverAttrs()
	if o.isolation != sql.LevelDefault {
		attrs = append(slices.Clip(attrs), tracing.TxIsolation.String(o.isolation.String()))
	}
	return db.tracer.Start(ctx, tracing.SpanTx, trace.WithAttributes(attrs...))
}

// retryableTx reports a serialization failure, a deadlock, a statement
// made stale by a schema change, or a server out of reach before COMMIT
// was sent.
func retryableTx(err error) bool {
	if errors.Is(err, ErrCommitUnknown) || errors.Is(err, ErrClosed) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == codeSerializationFailure || pgErr.Code == codeDeadlockDetected || stalePlan(err)) {
		return true
	}
	// Only what dbkit marked: an EOF of fn's own (a request body, another
	// service) is no reason to run the transaction again.
	return errors.Is(err, ErrUnavailable)
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
