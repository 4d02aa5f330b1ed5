package dbkit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// Trace comments ([WithTraceComments]): a statement run with a span in its
// ctx carries the span's W3C trace context at its end, as a comment in the
// sqlcommenter format (https://google.github.io/sqlcommenter/spec/):
//
//	SELECT * FROM "users" WHERE "users"."id" = $1 LIMIT $2 /*traceparent='00-<trace-id>-<span-id>-01'*/
//
// so that pg_stat_activity, the server log and auto_explain show which trace
// ran it. The comment holds the traceparent and nothing else: no value, no
// text of the caller's.

// traceComments is whether and how a DB's statements carry their trace
// context.
type traceComments uint8

const (
	traceCommentsOff traceComments = iota
	// traceCommentsOn: the pool's exec mode prepares nothing by the
	// statement's text, so that a commented statement runs in it as any other.
	traceCommentsOn
	// traceCommentsUncached: the pool's exec mode caches statements by their
	// text (cache_statement, cache_describe), which the comment makes unique
	// per call: a commented statement runs in a mode that caches nothing.
	traceCommentsUncached
)

// newTraceComments returns the trace comments of a DB whose pool runs in
// pgx's execMode ("" is pgx's default, cache_statement).
func newTraceComments(on bool, execMode string) traceComments {
	switch {
	case !on:
		return traceCommentsOff
	case execMode == "", execMode == "cache_statement", execMode == "cache_describe":
		return traceCommentsUncached
	}
	return traceCommentsOn
}

// statement returns the SQL and arguments to send for a statement run with
// ctx: as given, or, when ctx carries a valid span context, the SQL with the
// trace comment and, when the pool's mode would cache it, the arguments led
// by an exec mode that does not (see uncachedMode). rows is true for a
// statement whose rows are read, which pgx runs on the extended protocol
// even without arguments; an Exec without arguments goes by the simple
// protocol, which caches nothing.
func (c traceComments) statement(ctx context.Context, query string, args []any, rows bool) (string, []any) {
	if c == traceCommentsOff {
		return query, args
	}
	return c.comment(ctx, query, args, rows)
}

func (c traceComments) comment(ctx context.Context, query string, args []any, rows bool) (string, []any) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return query, args
	}
	commented, ok := withTraceparent(query, sc)
	if !ok {
		return query, args
	}
	if c == traceCommentsUncached && (rows || len(args) > 0) {
		args = append([]any{uncachedMode(args)}, args...)
	}
	return commented, args
}

// traceparentLen is the length of a version 00 traceparent:
// 00-<32 hex digits>-<16 hex digits>-<2 hex digits>.
const traceparentLen = 2 + 1 + 32 + 1 + 16 + 1 + 2

// withTraceparent returns query with sc's traceparent appended as a
// sqlcommenter comment, " /*traceparent='00-…-…-01'*/", before a final
// semicolon if there is one (as the sqlcommenter libraries place it), with
// trailing white space dropped. The comment's one key needs no sorting, and
// its value, hex digits and dashes, no URL-encoding or escaping.
//
// A statement that holds a comment already is left as it is (ok false), as
// the specification requires: "--" or "/*" anywhere, even inside a string
// literal, where it is no comment, counts; such statements only go without
// the trace context. It also keeps the comment out of a "--" comment that
// would end the statement.
func withTraceparent(query string, sc trace.SpanContext) (string, bool) {
	if strings.Contains(query, "--") || strings.Contains(query, "/*") {
		return query, false
	}
	body := strings.TrimRight(query, " \t\r\n")
	semicolon := strings.HasSuffix(body, ";")
	if semicolon {
		body = strings.TrimRight(body[:len(body)-1], " \t\r\n")
	}
	var tp [traceparentLen]byte
	appendTraceparent(tp[:0], sc)
	var b strings.Builder
	b.Grow(len(body) + len(" /*traceparent=''*/;") + traceparentLen)
	b.WriteString(body)
	b.WriteString(" /*traceparent='")
	b.Write(tp[:])
	b.WriteString("'*/")
	if semicolon {
		b.WriteByte(';')
	}
	return b.String(), true
}

// appendTraceparent appends sc as a W3C traceparent header value, version
// 00: what OpenTelemetry's TraceContext propagator sends, the flags the
// specification defines (sampled, random) and no other.
func appendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := [1]byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))}
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, flags[:])
}

// uncachedMode is the pgx exec mode a commented statement runs in instead of
// a caching one. Each is uncached: nothing is prepared under a name, and the
// server parses and plans the statement each time.
//
//   - exec: one round trip. The arguments go as text, without types, for the
//     server to read as the types it infers from the statement, the very
//     ones a cached statement would have had.
//   - describe_exec: two round trips, the first for the server to say the
//     types, then the arguments encoded for them, as a cached statement's
//     are. (Outside a transaction, a transaction pooler may send the two to
//     two server connections: WithTraceComments says to use exec there.)
//
// exec is taken when every argument's text form means the same whatever the
// type the server infers (plainText); else describe_exec. A []byte written
// to a jsonb column, or a driver.Valuer returning one (a common way to store
// JSON), would go as bytea's text form, \x7b22…, which jsonb refuses; a
// time.Duration written to a bigint column as an interval, 00:00:01.
func uncachedMode(args []any) pgx.QueryExecMode {
	for _, a := range args {
		if !plainText(a) {
			return pgx.QueryExecModeDescribeExec
		}
	}
	return pgx.QueryExecModeExec
}

// plainText reports an argument pgx sends in the exec mode as the text the
// server would have read had pgx known the parameter's type: NULL, strings
// (sent as text in every mode), integers, booleans, UUIDs (their Value is
// their text; a pgtype.UUID, as the repository passes its keys, is sent as
// the same text) and the nullable forms of these. Times are not: the exec mode
// sends a time as UTC, which a date, timestamp or time column reads in UTC
// (2026-05-01 00:30+02 becomes 2026-04-30), where the cached modes send it
// as written in its own zone. Floats are not: a float32's shortest decimal
// is not its value as a float64 (0.1 and 0.10000000149011612 in a double
// precision column), and a float64 too large for a real column is an error
// as text but Infinity in binary.
func plainText(a any) bool {
	switch a.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uuid.UUID, pgtype.UUID,
		*string, *bool, *int, *int8, *int16, *int32, *int64, *uint, *uint8, *uint16, *uint32, *uint64, *uuid.UUID, *pgtype.UUID,
		sql.NullString, sql.NullBool, sql.NullInt16, sql.NullInt32, sql.NullInt64:
		return true
	}
	return false
}

// txConnPool returns the ConnPool the statements of tx run on: tx, with
// the errors of QueryRow translated and, with trace comments on, its
// statements commented.
func (db *DB) txConnPool(tx *sql.Tx) gorm.ConnPool {
	return &txPool{Tx: tx, db: db}
}

// txConnPoolOf returns the ConnPool the statements of tx, begun on
// beginner, run on: a DB's own when beginner is its pool (migrate's pinned
// connection is not), else tx.
func txConnPoolOf(beginner gorm.TxBeginner, tx *sql.Tx) gorm.ConnPool {
	if p, ok := beginner.(*pool); ok {
		return p.db.txConnPool(tx)
	}
	return tx
}

// txPool is a transaction of a DB's, as GORM runs statements on it.
type txPool struct {
	*sql.Tx
	db *DB
}

var (
	_ gorm.ConnPool       = (*txPool)(nil)
	_ gorm.TxCommitter    = (*txPool)(nil)
	_ gorm.GetDBConnector = (*txPool)(nil)
)

func (t *txPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	query, args = t.db.comments.statement(ctx, query, args, false)
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *txPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query, args = t.db.comments.statement(ctx, query, args, true)
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *txPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	query, args = t.db.comments.statement(ctx, query, args, true)
	return t.db.translatedRow(ctx, t.Tx.QueryRowContext(ctx, query, args...))
}

// GetDBConn gives GORM's DB() the pool, as it finds it behind a *sql.Tx.
func (t *txPool) GetDBConn() (*sql.DB, error) { return t.db.pool.GetDBConn() }

// errTxOwned is what ending the transaction of InTx (or of a write dbkit
// made atomic) from a statement inside it gets: InTx commits when its func
// returns nil, and rolls back when it returns an error.
var errTxOwned = fmt.Errorf("dbkit: %w: this transaction is dbkit's: return from the InTx func to commit it, or return an error to roll it back", ErrInvalid)

// Commit refuses: see errTxOwned. dbkit commits the *sql.Tx itself.
func (t *txPool) Commit() error { return errTxOwned }

// Rollback refuses: see errTxOwned.
func (t *txPool) Rollback() error { return errTxOwned }
