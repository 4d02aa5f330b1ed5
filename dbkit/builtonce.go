package dbkit

import (
	"reflect"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// shape is what a statement built once (keyRead, createPlan) was built
// from, of what GORM's builders read and a call, a scope or a callback
// can change: the model's schema, its table, the clauses built. The rest
// of what they read is the DB's: its dialector and naming strategy.
type shape struct {
	schema *schema.Schema
	table  string
	build  []string // the clauses built, in order
}

// parseFor readies tx's statement to be built once for model (a *T),
// with the clauses build, and returns its shape. It reports false when a
// statement of model cannot be: its table is in another schema (GORM
// then builds a table expression), or the DB builds one of the clauses
// its own way.
func parseFor(tx *gorm.DB, model any, build []string) (shape, bool) {
	st := tx.Statement
	st.Dest, st.Model = model, model
	st.BuildClauses = build
	if err := st.Parse(model); err != nil || st.TableExpr != nil || ownBuilder(tx, build) {
		return shape{}, false
	}
	st.ReflectValue = reflect.ValueOf(model).Elem()
	return shape{schema: st.Schema, table: st.Table, build: slices.Clone(build)}, true
}

// same reports whether tx's statement still has shape s, and no SQL,
// vars, selected or omitted columns yet.
func (s *shape) same(tx *gorm.DB) bool {
	st := tx.Statement
	return st.SQL.Len() == 0 && len(st.Vars) == 0 && st.Schema == s.schema && st.Table == s.table &&
		st.TableExpr == nil && len(st.Selects) == 0 && len(st.Omits) == 0 && !ownBuilder(tx, s.build) &&
		slices.Equal(st.BuildClauses, s.build)
}

// ownBuilder reports whether the DB builds one of the clauses names its
// own way (Config.ClauseBuilders, which a plugin may set at any time).
func ownBuilder(tx *gorm.DB, names []string) bool {
	if len(tx.ClauseBuilders) == 0 {
		return false
	}
	for _, name := range names {
		if _, ok := tx.ClauseBuilders[name]; ok {
			return true
		}
	}
	return false
}
