package dbkit

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/internal/sqlstate"
)

// Sentinel errors. Match them with [errors.Is]; each method documents which
// ones it returns.
var (
	// ErrNotFound reports that no row matched. It also matches
	// gorm.ErrRecordNotFound, so code written against GORM keeps working.
	ErrNotFound error = &proxyError{msg: "record not found", target: gorm.ErrRecordNotFound}

	// ErrDuplicate reports a unique or primary-key violation (SQLSTATE 23505).
	ErrDuplicate = errors.New("duplicate key")
	// ErrForeignKey reports a foreign-key violation (SQLSTATE 23503).
	ErrForeignKey = errors.New("foreign key violation")
	// ErrCheck reports a check-constraint violation (SQLSTATE 23514).
	ErrCheck = errors.New("check constraint violation")
	// ErrNotNull reports a NOT NULL violation (SQLSTATE 23502).
	ErrNotNull = errors.New("not-null violation")
	// ErrExclusion reports an exclusion-constraint violation (SQLSTATE 23P01).
	ErrExclusion = errors.New("exclusion constraint violation")

	// ErrInvalid reports a call the repository refuses before sending any SQL:
	// an unknown field, an unsupported value, a zero ID where one is needed.
	ErrInvalid = errors.New("invalid argument")

	// ErrStale reports an Update of a [Versioned] row that another writer
	// changed since it was read: read it again, reapply the change, retry.
	ErrStale = errors.New("stale: the row changed since it was read")

	// ErrClosed reports a call on a [DB] after [DB.Close].
	ErrClosed = errors.New("database is closed")

	// ErrSchemaChanged reports a statement inside a transaction that met a
	// prepared statement made stale by a schema change (SQLSTATE 0A000,
	// "cached plan must not change result type"): the transaction is aborted,
	// and running it again works. [RetrySerializationFailures] retries it.
	// Outside a transaction dbkit runs such a statement again by itself.
	ErrSchemaChanged = errors.New("schema changed under a prepared statement: run the transaction again")

	// ErrUnavailable reports that the server could not be reached or
	// refused work for now, so that trying again later may succeed: a
	// connection refused, reset or lost, a server starting, shutting down or
	// restarting (SQLSTATE 57P01-57P03), one with too many connections
	// (53300), another connection exception (class 08), or a write refused
	// by a former primary (25006, with [Config.TargetSessionAttrs]
	// read-write or primary). A write outside a transaction that failed so
	// was not applied (one whose connection was lost after it was sent is
	// [ErrCommitUnknown] instead); InTx's
	// RetrySerializationFailures runs again a transaction that failed so
	// before its COMMIT was sent (one whose COMMIT got no answer is
	// [ErrCommitUnknown] instead). It is not returned for a ctx that ended,
	// nor after Close ([ErrClosed]).
	ErrUnavailable = errors.New("database unavailable")

	// ErrCommitUnknown reports a transaction whose COMMIT got no answer:
	// its ctx ended while the COMMIT was on its way (the error also matches
	// ctx.Err()), or the connection was lost then; or a write outside a
	// transaction (which commits by itself) whose connection was lost after
	// it was sent, before the server answered (a failover, docs/ha.md). It
	// may or may not have been committed, and running it again could apply
	// it twice: check, then decide. It never matches ErrUnavailable.
	ErrCommitUnknown = errors.New("COMMIT got no answer: the transaction may or may not be committed")

	// ErrSchemaDrift reports models that differ from the database's schema:
	// [DB.CheckSchema] and Connect with [WithSchemaCheck] return a
	// *[SchemaDriftError] that matches it and lists the differences.
	ErrSchemaDrift = errors.New("schema drift")
)

// SchemaDriftError lists every difference [DB.CheckSchema] found between
// models and the database, one a line in its text. It matches
// [ErrSchemaDrift]. It holds names and type names, never a value.
type SchemaDriftError struct {
	Drifts []Drift
}

func (e *SchemaDriftError) Error() string {
	var b strings.Builder
	places := "places"
	if len(e.Drifts) == 1 {
		places = "place"
	}
	fmt.Fprintf(&b, "dbkit: %s: the database differs from the models in %d %s:", ErrSchemaDrift, len(e.Drifts), places)
	for _, d := range e.Drifts {
		b.WriteString("\n\t")
		b.WriteString(d.String())
	}
	return b.String()
}

// Is reports whether target is ErrSchemaDrift.
func (e *SchemaDriftError) Is(target error) bool { return target == ErrSchemaDrift }

// proxyError is a sentinel that also matches another library's sentinel, the
// way pgx.ErrNoRows matches sql.ErrNoRows.
type proxyError struct {
	msg    string
	target error
}

func (e *proxyError) Error() string { return e.msg }
func (e *proxyError) Unwrap() error { return e.target }

// SQLSTATE codes dbkit maps to sentinels.
const (
	codeNotNull    = "23502"
	codeForeignKey = "23503"
	codeUnique     = "23505"
	codeCheck      = "23514"
	codeExclusion  = "23P01"

	codeQueryCanceled = "57014"
)

// ConstraintError is a constraint violation reported by PostgreSQL. It matches
// its kind with errors.Is (ErrDuplicate, ErrForeignKey, ErrCheck, ErrNotNull
// or ErrExclusion) and unwraps to the driver's *pgconn.PgError.
//
// Its message names the constraint, table and column but never the row's
// values: PostgreSQL puts those in Detail (for example
// "Key (email)=(ada@example.com) already exists."), which stays on the struct
// for code that decides to show it.
type ConstraintError struct {
	Kind       error  // one of ErrDuplicate, ErrForeignKey, ErrCheck, ErrNotNull, ErrExclusion
	Constraint string // constraint name, empty for NOT NULL
	Table      string
	Column     string // set for NOT NULL violations
	SQLState   string
	// Detail is PostgreSQL's DETAIL field. It may contain row values (personal
	// data): it is deliberately left out of Error().
	Detail string
	err    error
}

func (e *ConstraintError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Constraint != "" {
		b.WriteString(": constraint ")
		b.WriteString(strconv.Quote(e.Constraint))
	}
	if e.Table != "" {
		b.WriteString(" on table ")
		b.WriteString(strconv.Quote(e.Table))
	}
	if e.Column != "" {
		b.WriteString(" column ")
		b.WriteString(strconv.Quote(e.Column))
	}
	b.WriteString(" (SQLSTATE ")
	b.WriteString(e.SQLState)
	b.WriteString(")")
	return b.String()
}

// Is reports whether target is the kind of this violation.
func (e *ConstraintError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the driver error (it contains a *pgconn.PgError).
func (e *ConstraintError) Unwrap() error { return e.err }

// TranslateError maps an error from GORM or the driver onto dbkit's errors,
// as every [BaseDatabase] method does: not-found becomes [ErrNotFound], a
// constraint violation a *[ConstraintError], any other server error one
// whose text withholds the server's message (which may quote a value) and
// keeps its SQLSTATE, condition name, position and object names, and a
// statement cancelled because ctx ended matches ctx.Err(). Anything else is
// returned unchanged. The driver's error stays reachable with errors.As
// (a *pgconn.PgError, which holds the values). ctx may be nil.
//
// Errors from queries built with [Repository.Query] are translated already
// when GORM returns them from its callbacks; TranslateError is for the rest
// (rows read after the query ran, code that bypasses dbkit's connection).
func TranslateError(ctx context.Context, err error) error { return (*DB)(nil).translate(ctx, err) }

// translate maps driver and GORM errors onto dbkit's errors. It inspects
// SQLSTATE codes of *pgconn.PgError, never error text. Errors it does not
// know are returned unchanged.
func (db *DB) translate(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	err = translateDriver(ctx, err)
	var ce *ConstraintError
	if errors.As(err, &ce) {
		return err // a constraint violation is not Close's doing
	}
	return db.closedError(err)
}

// fromDriver translates an error dbkit got from the driver or the pool
// itself (not one a caller's func returned): as translate does, and
// marked ErrUnavailable when the server was out of reach. An EOF of the
// caller's own (a request body, another service) is no sign of that.
func (db *DB) fromDriver(ctx context.Context, err error) error {
	// A write refused by a server that is no longer the primary is
	// unavailable too: the pool has left it, and the same write finds the
	// new one.
	demoted := db.failover.demoted(err)
	err = db.translate(ctx, err)
	return markUnavailableIf(ctx, err, demoted || unavailable(err))
}

// closedError makes err match ErrClosed when Close caused it: a statement
// Close cut, a call that waited for a connection of a pool Close closed.
// Errors of work Close waits for are left alone, and so are those of a
// statement whose own ctx ended.
func (db *DB) closedError(err error) error {
	if db != nil && db.ended.Load() && !errors.Is(err, ErrClosed) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// translateDriver maps what the server said: constraint violations to a
// *ConstraintError, every other server error to a *withheldError (its
// message may quote a value), and a statement cancelled because ctx (which
// may be nil) ended to an error that also matches ctx.Err(). It is what
// dbkit's GORM callback applies, before the error is recorded on the
// statement's span, metric and log. Translating twice changes nothing.
func translateDriver(ctx context.Context, err error) error {
	var (
		pgErr    *pgconn.PgError
		ce       *ConstraintError
		withheld *withheldError
	)
	if !errors.As(err, &pgErr) {
		if isEncodeError(err) {
			var ae *argumentError
			if !errors.As(err, &ae) {
				err = &argumentError{err: err}
			}
		}
		return err
	}
	switch {
	case errors.As(err, &ce) || errors.As(err, &withheld):
		// translated already
	case stalePlan(err):
		err = fmt.Errorf("%w: %w", ErrSchemaChanged, &withheldError{pg: pgErr, err: err})
	case constraintKind(pgErr.Code) != nil:
		err = &ConstraintError{
			Kind:       constraintKind(pgErr.Code),
			Constraint: pgErr.ConstraintName,
			Table:      pgErr.TableName,
			Column:     pgErr.ColumnName,
			SQLState:   pgErr.Code,
			Detail:     pgErr.Detail,
			err:        err,
		}
	default:
		err = &withheldError{pg: pgErr, err: err}
	}
	if ctx != nil && ctx.Err() != nil && pgErr.Code == codeQueryCanceled && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// isEncodeError reports pgx's refusal to encode a query argument for its
// parameter's type, whose message quotes the value ("failed to encode
// args[0]: unable to encode 123456789 into binary format for uuid"). pgx
// gives these errors no type of their own: its message is all there is.
func isEncodeError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "failed to encode args[") || strings.Contains(msg, "unable to encode ")
}

// argumentError stands for a query argument pgx could not encode: its text
// withholds the value; the original error is reachable with errors.As. It
// matches [ErrInvalid]: the argument does not fit its parameter.
type argumentError struct{ err error }

func (e *argumentError) Error() string {
	return "invalid argument: a query argument could not be encoded for its parameter's type (value withheld)"
}

func (e *argumentError) Unwrap() []error { return []error{ErrInvalid, e.err} }

// scanError stands for the errors of a scan that could not store a value
// read in its field (the row holds what the model's field cannot: a text
// in an int column's field, an int out of range): their text quotes the
// value, so its own withholds it. The original errors are reachable with
// errors.Unwrap or errors.As; a driver error among them still matches.
type scanError struct{ err error }

func (e *scanError) Error() string {
	return "a value read could not be stored in its field (value withheld)"
}

func (e *scanError) Unwrap() error { return e.err }

// withheldError stands for a server error, whose message, detail, hint
// and context may quote a value of the query (a bound argument, what a
// trigger's RAISE formatted): its text keeps only what carries no value,
// the SQLSTATE, its condition name, the position and the names of the
// objects concerned (see sqlstate.Describe), so that logging or tracing it
// cannot leak the value. The *pgconn.PgError, message and all, is
// reachable with errors.As.
type withheldError struct {
	pg  *pgconn.PgError
	err error
}

func (e *withheldError) Error() string { return sqlstate.Describe(e.pg) }

func (e *withheldError) Unwrap() error { return e.err }

func constraintKind(code string) error {
	switch code {
	case codeUnique:
		return ErrDuplicate
	case codeForeignKey:
		return ErrForeignKey
	case codeCheck:
		return ErrCheck
	case codeNotNull:
		return ErrNotNull
	case codeExclusion:
		return ErrExclusion
	}
	return nil
}

// ConnectError reports that [Connect] could not reach a usable server. It
// names the server and database and wraps the last cause (a *pgconn.PgError
// when the server answered, for example SQLSTATE 28P01 for a wrong password
// or 3D000 for a missing database). It never contains the password.
type ConnectError struct {
	Addr     string // host:port
	Database string
	User     string
	Attempts int // connection attempts made
	Err      error
}

func (e *ConnectError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dbkit: connect to %s database %q as user %q", e.Addr, e.Database, e.User)
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (gave up after %d attempts)", e.Attempts)
	}
	b.WriteString(": ")
	b.WriteString(connectCause(e.Err))
	return b.String()
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Is makes a failure to reach the server (refused, unreachable, starting,
// full: what Connect retries) match [ErrUnavailable], unless the caller
// cancelled Connect.
func (e *ConnectError) Is(target error) bool {
	return target == ErrUnavailable && !errors.Is(e.Err, context.Canceled) && retryableConnectError(e.Err)
}

// connectCause describes why a connection failed. For a server's answer it
// uses the server's message and code alone; pgconn's own wrapper repeats
// host, user and database, which ConnectError already names.
func connectCause(err error) string {
	var re *retryError
	if errors.As(err, &re) {
		return re.Error()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000", "3D000", "53300", "57P03":
			// Messages that name only the user and database the config gave
			// (password authentication failed for user "app"...).
			return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
		}
		return sqlstate.Describe(pgErr)
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) && connErr.Unwrap() != nil {
		return connErr.Unwrap().Error()
	}
	return err.Error()
}

// markUnavailable makes err match ErrUnavailable when it says the server
// was out of reach or refusing work for now (see [ErrUnavailable]), unless
// ctx (which may be nil) ended, which explains it better.
//
// It applies after closedError: an error Close caused is ErrClosed, not
// transient; and a COMMIT that got no answer is ErrCommitUnknown, whose
// outcome a retry could double.
func markUnavailable(ctx context.Context, err error) error {
	return markUnavailableIf(ctx, err, unavailable(err))
}

// markUnavailableIf marks err ErrUnavailable when out says the server was
// out of reach, unless Close or the caller's ctx ended the work, or its
// outcome is unknown.
func markUnavailableIf(ctx context.Context, err error, out bool) error {
	if !out || err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) || errors.Is(err, ErrCommitUnknown) ||
		(ctx != nil && ctx.Err() != nil) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// transientCode reports the SQLSTATEs of a server refusing work for now,
// for Connect's retries and ErrUnavailable alike: shutting down, crashed,
// starting (57P01-57P03), too many connections or out of memory (53300,
// 53200), and connection exceptions (class 08) but for a protocol violation
// or a rejected connection (08P01, 08004), which a retry meets again
// (PgBouncer answers 08P01 to a startup parameter it does not know).
func transientCode(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "53300", "53200":
		return true
	case "08P01", "08004":
		return false
	}
	return strings.HasPrefix(code, "08")
}

// unavailable reports the errors of a server out of reach or refusing work
// for now.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	var (
		opErr   *net.OpError
		connErr *pgconn.ConnectError
	)
	if errors.As(err, &connErr) {
		// A new connection failed: transient as Connect judges it (a TLS
		// or authentication failure is not).
		return retryableConnectError(err)
	}
	// (A timeout here is pgx's own, dialing or reading: the caller's ctx,
	// had it ended, was excluded by markUnavailable.)
	return errors.As(err, &opErr) || errors.Is(err, driver.ErrBadConn) || connectionLost(err) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, syscall.ECONNREFUSED) ||
		pgconn.Timeout(err)
}

// connectionLost reports the errors of a connection the other end closed
// or reset: what unavailable, failover.lost and lostInFlight all start
// from.
func connectionLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
