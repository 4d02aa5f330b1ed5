package dbkit

import (
	"database/sql/driver"
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/dbkit-go/database/internal/rowscan"
)

// keyRead is the statement of Repository.Get, built once. GORM builds it
// (callbacks.BuildQuerySQL, what its query callback builds with) when the
// repository is made; queryRows then writes that SQL into a Get's
// statement instead of building it again, when the statement arriving
// there has the shape it was built from: the key condition and LIMIT 1
// alone, on the model's table, with nothing selected, omitted, joined,
// unscoped or added by a callback before gorm:query. (A Limit option
// leaves it so: Take's LIMIT 1 wins.) Any other statement (a Get with a
// Filter, Select, order or row lock, a plugin's clause, a scope that
// changes the table) is built by GORM as usual. The SQL a Get sends is
// therefore the SQL GORM builds for it, with the DB's own dialector and
// naming strategy; only its building is skipped.
//
// What the shortcut leaves out is the clauses GORM adds to the statement
// while building (SELECT, FROM, the soft-delete condition): a callback
// after gorm:query sees them in the SQL, not in Statement.Clauses.
type keyRead struct {
	rowscan.Scanner // the model's scan plan

	shape
	col       clause.Column // the key's
	keyType   reflect.Type  // of the key's value in the condition
	where     string        // the names the WHERE and LIMIT clauses get
	limit     string
	fields    bool // the DB's QueryFields
	sql       string
	vars      []any // the statement's vars, the key's at keyAt
	keyAt     int
	primaries []*schema.Field
}

// newKeyRead builds the statement of a Get by key on db for model (a
// *T), whose key condition is probe's (Repository.byKey of K's zero
// value). It returns nil when the statement cannot be built once: a key
// type whose binding GORM decides per value, query clauses of the schema
// other than soft delete's (a field type's clauses may depend on the
// statement), a table in another schema, or GORM failing to build it.
func newKeyRead(db *gorm.DB, model any, probe clause.Eq, plan rowscan.Scanner) *keyRead {
	keyType := reflect.TypeOf(probe.Value)
	col, ok := probe.Column.(clause.Column)
	if !ok || keyType == nil || !boundAsIs(keyType) {
		return nil
	}
	tx := db.Clauses(clause.Where{Exprs: []clause.Expression{probe}}).Limit(1)
	st := tx.Statement
	s, ok := parseFor(tx, model, db.Callback().Query().Clauses)
	if !ok {
		return nil
	}
	for _, c := range st.Schema.QueryClauses {
		if _, ok := c.(gorm.SoftDeleteQueryClause); !ok {
			return nil
		}
	}
	k := &keyRead{
		Scanner:   plan,
		shape:     s,
		col:       col,
		keyType:   keyType,
		where:     st.Clauses["WHERE"].Name,
		limit:     st.Clauses["LIMIT"].Name,
		fields:    tx.QueryFields,
		primaries: st.Schema.PrimaryFields,
	}
	if _, ok := k.key(tx); !ok {
		return nil
	}
	callbacks.BuildQuerySQL(tx)
	if tx.Error != nil {
		return nil
	}
	k.sql, k.vars, k.keyAt = st.SQL.String(), slices.Clone(st.Vars), -1
	for i, v := range k.vars {
		if reflect.TypeOf(v) != keyType || v != probe.Value {
			continue
		}
		if k.keyAt >= 0 {
			return nil // bound twice: which one is the key?
		}
		k.keyAt = i
	}
	if k.keyAt < 0 {
		return nil
	}
	return k
}

// boundAsIs reports whether GORM binds every value of type t as one
// parameter, itself (Statement.AddVar, clause.Eq): text, integers, and
// the valid pgtype.UUID a uuid key is passed as (see keyRead.key). Not a
// type that builds SQL of its own, nor one whose driver.Valuer may say
// NULL, which clause.Eq writes as IS NULL.
func boundAsIs(t reflect.Type) bool {
	if t == reflect.TypeFor[pgtype.UUID]() {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	default:
		return false
	}
	for _, own := range []reflect.Type{reflect.TypeFor[gorm.Valuer](), reflect.TypeFor[clause.Expression](), reflect.TypeFor[driver.Valuer]()} {
		if t.Implements(own) {
			return false
		}
	}
	return true
}

// write writes the SQL built once into tx's statement, with its key,
// and reports whether it did: tx must be a Get's statement arriving at
// gorm:query in the shape the SQL was built from.
func (k *keyRead) write(tx *gorm.DB) bool {
	key, ok := k.key(tx)
	if !ok {
		return false
	}
	st := tx.Statement
	st.SQL.WriteString(k.sql)
	st.Vars = append(st.Vars, k.vars...)
	st.Vars[k.keyAt] = key
	return true
}

// key returns the key of tx's statement, and whether the statement is
// the one k was built from (see keyRead): everything
// callbacks.BuildQuerySQL reads to build it that a call, a scope or a
// callback can change is as it was then. (The rest is the DB's: its
// dialector and naming strategy.)
func (k *keyRead) key(tx *gorm.DB) (any, bool) {
	st := tx.Statement
	if !k.same(tx) || st.Unscoped || st.Distinct || len(st.Joins) != 0 || tx.QueryFields != k.fields ||
		len(st.Clauses) != 2 || !st.ReflectValue.IsValid() || st.ReflectValue.Type() != k.schema.ModelType {
		return nil, false
	}
	where, limit := st.Clauses["WHERE"], st.Clauses["LIMIT"]
	if !bare(where, k.where) || !bare(limit, k.limit) {
		return nil, false
	}
	w, ok := where.Expression.(clause.Where)
	if !ok || len(w.Exprs) != 1 {
		return nil, false
	}
	eq, ok := w.Exprs[0].(clause.Eq)
	if !ok || reflect.TypeOf(eq.Value) != k.keyType {
		return nil, false
	}
	if u, ok := eq.Value.(pgtype.UUID); ok && !u.Valid {
		return nil, false // IS NULL
	}
	if col, ok := eq.Column.(clause.Column); !ok || col != k.col {
		return nil, false
	}
	if l, ok := limit.Expression.(clause.Limit); !ok || l.Limit == nil || *l.Limit != 1 || l.Offset != 0 {
		return nil, false
	}
	for _, f := range k.primaries {
		// GORM adds a condition for a key already in the destination.
		if _, zero := f.ValueOf(st.Context, st.ReflectValue); !zero {
			return nil, false
		}
	}
	return eq.Value, true
}

// bare reports whether c is a clause named name holding an expression
// and nothing around it.
func bare(c clause.Clause, name string) bool {
	return c.Name == name && c.BeforeExpression == nil && c.AfterNameExpression == nil &&
		c.AfterExpression == nil && c.Builder == nil
}
