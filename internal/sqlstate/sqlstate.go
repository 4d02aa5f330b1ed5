// Package sqlstate names PostgreSQL's SQLSTATE codes and describes a server
// error by the parts of it that carry no value from the query.
//
// A server message may quote anything the statement was given: a bound
// value (`invalid input syntax for type uuid: "..."`, `relation "..." does
// not exist` for $1::regclass), or whatever a trigger's RAISE formats into
// it. So do DETAIL, HINT, WHERE and the internal query. What is left is
// known to carry none: the severity, the SQLSTATE and its condition name,
// the cursor position, and the names of the schema, table, column, data
// type and constraint concerned.
package sqlstate

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Name returns the condition name of code, as PL/pgSQL spells it
// ("unique_violation" for 23505), or "" for a code PostgreSQL 15 does not
// define.
func Name(code string) string { return names[code] }

// Describe returns what of e may be logged, traced or shown: for example
// `ERROR: syntax_error (SQLSTATE 42601) at position 12` or
// `ERROR: undefined_column (SQLSTATE 42703) on table "users" column "x"`.
// It never contains e.Message, e.Detail, e.Hint, e.Where or
// e.InternalQuery.
func Describe(e *pgconn.PgError) string {
	var b strings.Builder
	severity := e.SeverityUnlocalized
	if severity == "" {
		severity = e.Severity
	}
	if severity == "" {
		severity = "ERROR"
	}
	b.WriteString(severity)
	b.WriteString(": ")
	if name := Name(e.Code); name != "" {
		b.WriteString(name)
		b.WriteByte(' ')
	}
	b.WriteString("(SQLSTATE ")
	b.WriteString(e.Code)
	b.WriteByte(')')
	if e.Position > 0 {
		b.WriteString(" at position ")
		b.WriteString(strconv.Itoa(int(e.Position)))
	}
	name(&b, " constraint ", e.ConstraintName)
	switch {
	case e.TableName != "" && e.SchemaName != "":
		name(&b, " on table ", e.SchemaName)
		name(&b, ".", e.TableName)
	case e.TableName != "":
		name(&b, " on table ", e.TableName)
	default:
		name(&b, " in schema ", e.SchemaName)
	}
	name(&b, " column ", e.ColumnName)
	name(&b, " data type ", e.DataTypeName)
	return b.String()
}

// name writes label and the quoted name to b, or nothing for no name.
func name(b *strings.Builder, label, name string) {
	if name != "" {
		b.WriteString(label)
		b.WriteString(strconv.Quote(name))
	}
}
