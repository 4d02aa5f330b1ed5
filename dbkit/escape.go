package dbkit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// gormHatch is the prefix of the errors of statements run through
// [DB.Gorm], as "User.Query" is a repository's escape hatch's.
const gormHatch = "DB.Gorm"

// Gorm returns GORM itself on dbkit's connection, bound to ctx, for what
// the repository cannot express: SQL that belongs to no model, a model
// without a repository, migrate.New and its Status and Plan on the
// service's own connection. Every statement run through it keeps dbkit's
// guarantees:
//
//   - it runs in the transaction ctx carries ([DB.InTx]), else on the pool;
//     ctx bounds it (pass another with WithContext and the transaction of
//     the first one is still used);
//   - its error is translated as the repository's are (a *[ConstraintError],
//     values withheld, ctx.Err() on cancellation, [ErrUnavailable],
//     [ErrNotFound] for GORM's record-not-found), prefixed "dbkit: DB.Gorm:";
//   - it gets its statement span, duration and log record;
//   - rows of models embedding [Model] get their IDs and timestamps; writes
//     that hooks or associations make more than one statement are atomic;
//   - after [DB.Close] has begun, new work fails with [ErrClosed] (a
//     transaction already running goes on, until Close's ctx ends).
//
// Each call returns a new session: conditions added to one do not reach
// the next. Errors GORM meets after the statement, while reading rows (of
// Rows(), and Scan's), are database/sql's: read rows with Find, or pass
// those errors through [TranslateError]. For a transaction use [DB.InTx],
// not GORM's Transaction or Begin, whose Row() errors are untranslated; a
// session inside InTx cannot Commit or Rollback its transaction
// ([ErrInvalid]). Strings
// given to Where, Order, Select, Joins or Raw go into the SQL as written:
// bind values with placeholders, never pass request input there.
//
// What it cannot do, [DB.WithPgxConn] does (COPY, LISTEN/NOTIFY), and
// [DB.SQL] gives the pool itself, without these guarantees.
func (db *DB) Gorm(ctx context.Context) *gorm.DB {
	base := db.gorm
	if tx := db.txFrom(ctx); tx != nil {
		base = tx
	}
	// Not NewDB: each call chained on the session starts from a copy of
	// its statement, which carries the mark below.
	s := base.Session(&gorm.Session{Context: ctx})
	s.Statement.Settings.Store(escapeHatchKey{}, gormHatch)
	return s
}

// Exec runs SQL that belongs to no model (DDL, a function, a table without
// a model) with args bound to its "?" placeholders, through [DB.Gorm]: in
// ctx's transaction, translated, traced. It returns the rows the statement
// affected.
//
//	n, err := db.Exec(ctx, "DELETE FROM sessions WHERE expires_at < ?", time.Now())
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	res := db.Gorm(ctx).Exec(sql, args...)
	return res.RowsAffected, res.Error
}

// WithPgxConn runs fn with a pgx connection of dbkit's: the connection of
// the transaction ctx carries ([DB.InTx]), else one taken from the pool for
// fn's time and given back after. It is for what needs pgx itself: COPY
// into any table (conn.CopyFrom), LISTEN and WaitForNotification, pgx's
// batches. fn's error is translated as the repository's are (values
// withheld, ctx.Err() on cancellation, [ErrUnavailable], [ErrClosed]);
// outside a transaction, an error saying a connection was lost (an EOF, a
// reset) is [ErrCommitUnknown], since what fn sent may have been applied.
// dbkit cannot tell the connection's EOF from one of fn's own (a reader
// fn copies from): deal with an EOF of fn's own before returning it.
//
// Inside a transaction, fn must leave it as it found it: no COMMIT or
// ROLLBACK of its own. Out of one, fn must not leave the connection in a
// state the next user would not expect: UNLISTEN what it listened to, RESET
// what it SET. Statements fn runs have no span, metric or log record of
// dbkit's, and ctx bounds only what fn gives it.
//
// After [DB.Close] has begun it returns [ErrClosed] without calling fn,
// unless ctx carries a transaction already running.
func (db *DB) WithPgxConn(ctx context.Context, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	if fn == nil {
		return fmt.Errorf("dbkit: WithPgxConn: %w: nil func", ErrInvalid)
	}
	err := db.rawConn(ctx, func(driverConn any) error {
		conn, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("%w: not a pgx connection: %T", ErrInvalid, driverConn)
		}
		return fn(ctx, conn.Conn())
	})
	if err != nil {
		return fmt.Errorf("dbkit: WithPgxConn: %w", db.fromRaw(ctx, err))
	}
	return nil
}

// rawConn runs fn with the driver connection of ctx's transaction, or of a
// connection pinned from the pool for fn's time.
func (db *DB) rawConn(ctx context.Context, fn func(driverConn any) error) error {
	if st := db.txStateFrom(ctx); st != nil {
		return st.conn.Raw(fn)
	}
	conn, err := db.pool.conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	defer db.wrote(ctx) // fn may have written: a Session in ctx reads it
	return conn.Raw(fn)
}

// SQL returns the connection pool itself, for a library that takes a
// *sql.DB. It gives up every guarantee of [DB.Gorm]: what runs on it ignores
// ctx's transaction, its errors are database/sql's and pgx's untranslated
// (server messages quote values: do not log them as they are; see
// [TranslateError]), it has no span, metric or log record, and nothing stops
// it after [DB.Close]: Close waits only for the work it counts, and closes
// the pool under the rest. Do not close it yourself: [DB.Close] does.
func (db *DB) SQL() *sql.DB { return db.sql }

// escapeHatchError gives an escape hatch statement's error the form of
// the repository's: "dbkit: User.Query: ..." or "dbkit: DB.Gorm: ...", with
// ErrNotFound for GORM's record-not-found. An error that has the prefix
// already (a hook's statement, failing inside the statement) keeps it once.
func escapeHatchError(where string, err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) && !errors.Is(err, ErrNotFound) {
		err = ErrNotFound
	}
	var prefixed *hatchError
	if errors.As(err, &prefixed) && prefixed.where == where {
		return err
	}
	return &hatchError{where: where, err: err}
}

// hatchError is an escape hatch statement's error, prefixed once.
type hatchError struct {
	where string
	err   error
}

func (e *hatchError) Error() string { return "dbkit: " + e.where + ": " + e.err.Error() }
func (e *hatchError) Unwrap() error { return e.err }
