package dbkit

import (
	"fmt"
	"github.com/google/uuid"
	"log/slog"
	"reflect"
	"strings"

	"github.com/dbkit-go/database/internal/redact"
)

// A DB, a BaseDatabase and a Config print as short descriptions, and a
// ConstraintError as its message: whatever the verb (%v, %+v, %#v, %s,
// %d...), log.Printf and slog never walk their fields, which hold the
// password, the cursor key, the connections, or the row's values in
// ConstraintError.Detail.
var (
	_ fmt.Formatter  = (*DB)(nil)
	_ fmt.Stringer   = (*DB)(nil)
	_ fmt.GoStringer = (*DB)(nil)
	_ slog.LogValuer = (*DB)(nil)
	_ fmt.Formatter  = (*BaseDatabase[Model])(nil)
	_ slog.LogValuer = (*BaseDatabase[Model])(nil)
	_ fmt.Formatter  = Config{}
	_ fmt.Formatter  = (*ConstraintError)(nil)
	_ fmt.GoStringer = (*ConstraintError)(nil)
)

// String describes db by server, database, user and pool name, as
// "dbkit.DB{db.internal:5432/app user=api pool=main}": never the password
// nor the cursor key.
func (db *DB) String() string {
	if db == nil {
		return "dbkit.DB(nil)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dbkit.DB{%s/%s user=%s pool=%s", db.cfg.Addr(), db.cfg.Database, db.cfg.User, db.poolName)
	if db.closed.Load() {
		b.WriteString(" closed")
	}
	b.WriteByte('}')
	return b.String()
}

// GoString is String: %#v prints the description, not the fields.
func (db *DB) GoString() string { return db.String() }

// Format implements fmt.Formatter: every verb prints the description.
func (db *DB) Format(f fmt.State, verb rune) { redact.Format(f, verb, db) }

// LogValue implements slog.LogValuer: server, database, user and pool.
func (db *DB) LogValue() slog.Value {
	if db == nil {
		return slog.StringValue(db.String())
	}
	return slog.GroupValue(
		slog.String("type", "dbkit.DB"),
		slog.String("addr", db.cfg.Addr()),
		slog.String("database", db.cfg.Database),
		slog.String("user", db.cfg.User),
		slog.String("pool", db.poolName),
		slog.Bool("closed", db.closed.Load()),
	)
}

// String describes the repository by model, table and database, as
// "dbkit.BaseDatabase[User]{table=users db=db.internal:5432/app}" (or
// "dbkit.Repository[Ticket, int64]{...}" for one of NewRepository).
func (b *Repository[T, K]) String() string {
	if b == nil {
		return b.typeName() + "(nil)"
	}
	s := b.typeName() + "{table=" + b.Table() + " db="
	if b.db == nil {
		s += "nil"
	} else {
		s += b.db.cfg.Addr() + "/" + b.db.cfg.Database
	}
	if b.err != nil {
		s += " unusable"
	}
	return s + "}"
}

// GoString is String: %#v prints the description, not the fields.
func (b *Repository[T, K]) GoString() string { return b.String() }

// Format implements fmt.Formatter: every verb prints the description.
func (b *Repository[T, K]) Format(f fmt.State, verb rune) { redact.Format(f, verb, b) }

// LogValue implements slog.LogValuer: model, table and the DB's.
func (b *Repository[T, K]) LogValue() slog.Value {
	if b == nil {
		return slog.StringValue(b.String())
	}
	attrs := []slog.Attr{
		slog.String("type", strings.SplitN(b.typeName(), "[", 2)[0]),
		slog.String("model", b.model),
		slog.String("table", b.Table()),
	}
	if b.db != nil {
		attrs = append(attrs, slog.Any("db", b.db))
	}
	return slog.GroupValue(attrs...)
}

// Format implements fmt.Formatter, so that no verb prints the password:
// %#v is [Config.GoString], every other verb [Config.String].
func (c Config) Format(f fmt.State, verb rune) { redact.Format(f, verb, c) }

// GoString prints e as Go syntax without Detail, which may hold the row's
// values.
func (e *ConstraintError) GoString() string {
	return fmt.Sprintf("&dbkit.ConstraintError{Kind:%s, Constraint:%q, Table:%q, Column:%q, SQLState:%q}",
		kindName(e.Kind), e.Constraint, e.Table, e.Column, e.SQLState)
}

// Format implements fmt.Formatter: %#v is GoString, every other verb the
// message; neither has Detail.
func (e *ConstraintError) Format(f fmt.State, verb rune) { redact.Format(f, verb, constraintText{e}) }

// constraintText is a ConstraintError's message and Go syntax, for
// redact.Format.
type constraintText struct{ e *ConstraintError }

func (c constraintText) String() string   { return c.e.Error() }
func (c constraintText) GoString() string { return c.e.GoString() }

// kindName is the Go name of a ConstraintError's Kind.
func kindName(kind error) string {
	switch kind {
	case ErrDuplicate:
		return "dbkit.ErrDuplicate"
	case ErrForeignKey:
		return "dbkit.ErrForeignKey"
	case ErrCheck:
		return "dbkit.ErrCheck"
	case ErrNotNull:
		return "dbkit.ErrNotNull"
	case ErrExclusion:
		return "dbkit.ErrExclusion"
	case nil:
		return "nil"
	}
	return fmt.Sprintf("errors.New(%q)", kind.Error())
}

// typeName is the repository's type as its constructor names it:
// dbkit.BaseDatabase[User], or dbkit.Repository[Ticket, int64].
func (b *Repository[T, K]) typeName() string {
	model := reflect.TypeFor[T]().Name()
	if b != nil && b.model != "" {
		model = b.model
	}
	if b != nil && b.viaBase || b == nil && reflect.TypeFor[K]() == reflect.TypeFor[uuid.UUID]() {
		return "dbkit.BaseDatabase[" + model + "]"
	}
	return "dbkit.Repository[" + model + ", " + reflect.TypeFor[K]().String() + "]"
}
