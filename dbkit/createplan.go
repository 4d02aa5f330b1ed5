package dbkit

import (
	"database/sql"
	"database/sql/driver"
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// createSetting is the statement setting (gorm.Statement.Settings) that
// carries the *createPlan of a Repository.Create.
type createSetting struct{}

// createPlan is the INSERT of Repository.Create, built once. GORM builds
// it (ConvertToCreateValues and Statement.Build, what its create
// callback builds with) when the repository is made. At gorm:create,
// writeInsert writes that SQL into a Create's statement, with the values
// GORM's ConvertToCreateValues would take from the row (defaults and
// automatic times set in the row as GORM sets them), and GORM's create
// callback then runs it as it runs SQL it built. Only when the statement
// is the one the SQL was built from and each value binds as one
// parameter; otherwise GORM builds the statement as usual. The SQL and
// the values are therefore GORM's, with the DB's own dialector and naming
// strategy; only the building is skipped. A callback after gorm:create
// finds that SQL, but not the INSERT and VALUES clauses GORM adds to
// Statement.Clauses while building.
type createPlan struct {
	shape
	fields []*schema.Field // the columns' fields, in order
	sql    string
	dest   reflect.Type // *T
}

// newCreatePlan builds the INSERT of a row of model (a *T) on db. It
// returns nil when the SQL may differ from row to row, or depends on more
// than the row: columns with a database default (GORM adds them when set,
// and RETURNING), create clauses of the schema, a table in another
// schema, a clause builder of the DB's, a default value that does not
// bind as one parameter, or no column at all.
func newCreatePlan(db *gorm.DB, model any) *createPlan {
	tx := db.Clauses()
	st := tx.Statement
	s, ok := parseFor(tx, model, db.Callback().Create().Clauses)
	if !ok || len(st.Schema.CreateClauses) != 0 || len(st.Schema.FieldsWithDefaultDBValue) != 0 {
		return nil
	}
	// GORM's own choice of columns: for such a schema it does not depend
	// on the row.
	values := callbacks.ConvertToCreateValues(st)
	if tx.Error != nil || len(values.Columns) == 0 {
		return nil
	}
	p := &createPlan{shape: s, dest: reflect.TypeOf(model)}
	probes := make([]any, len(values.Columns))
	for i, c := range values.Columns {
		f := st.Schema.FieldsByDBName[c.Name]
		if f == nil || f.DefaultValueInterface != nil && !boundAlone(f.DefaultValueInterface) ||
			(f.AutoCreateTime > 0 || f.AutoUpdateTime > 0) && !boundAlone(reflect.Zero(f.FieldType).Interface()) {
			return nil // what the row would take if zero does not bind as one parameter
		}
		if slices.ContainsFunc(f.StructField.Index, func(i int) bool { return i < 0 }) {
			// Inside an embedded pointer: while it is nil, GORM reads
			// nil, and setting a field of it allocates it, after which
			// GORM reads the next columns as zero values; the row decides.
			return nil
		}
		p.fields = append(p.fields, f)
		probes[i] = i
	}
	values.Values = [][]any{probes}
	st.AddClauseIfNotExists(clause.Insert{})
	st.AddClause(values)
	st.Build(st.BuildClauses...)
	if tx.Error != nil || len(st.Vars) != len(probes) {
		return nil
	}
	p.sql = st.SQL.String()
	return p
}

// createRow is GORM's create callback, gormCreate, with the SQL of a
// Repository.Create written in advance when it was built once (see
// writeInsert): GORM's callback then runs that SQL instead of building
// it.
func createRow(gormCreate func(*gorm.DB)) func(*gorm.DB) {
	return func(tx *gorm.DB) {
		writeInsert(tx)
		gormCreate(tx)
	}
}

// writeInsert writes the INSERT p built once into tx's statement, with
// the row's values, when tx is a Repository.Create whose statement is the
// one p was built from and whose values each bind as one parameter. It
// runs where GORM's create callback would build the statement, which
// then runs the SQL written.
func writeInsert(tx *gorm.DB) {
	st := tx.Statement
	s, ok := st.Settings.Load(createSetting{})
	if !ok || tx.Error != nil {
		return
	}
	p := s.(*createPlan)
	if !p.fits(tx) {
		return
	}
	// The values first, the row changed only once they all bind as
	// GORM would bind them. (No field is reached through an embedded
	// pointer, which setting another field could allocate: see
	// newCreatePlan.)
	vars := st.Vars[:0]
	var zeroBuf [16]int
	zeros := zeroBuf[:0] // the columns zero in the row, whose values are set below
	for i, f := range p.fields {
		v, zero := f.ValueOf(st.Context, st.ReflectValue)
		switch {
		case zero && f.DefaultValueInterface != nil:
			v = f.DefaultValueInterface
		case zero && (f.AutoCreateTime > 0 || f.AutoUpdateTime > 0):
			v = nil // the time set below
		case !boundAlone(v):
			return
		}
		if zero {
			zeros = append(zeros, i)
		}
		vars = append(vars, v)
	}
	// As ConvertToCreateValues does: the time taken once, and a zero
	// column takes its default, or the time if it is automatic, in the
	// row too.
	now := tx.NowFunc()
	for _, i := range zeros {
		f := p.fields[i]
		if f.DefaultValueInterface != nil {
			_ = tx.AddError(f.Set(st.Context, st.ReflectValue, f.DefaultValueInterface))
		} else if f.AutoCreateTime > 0 || f.AutoUpdateTime > 0 {
			_ = tx.AddError(f.Set(st.Context, st.ReflectValue, now))
			vars[i], _ = f.ValueOf(st.Context, st.ReflectValue)
		}
	}
	st.Vars = vars
	st.SQL.WriteString(p.sql)
}

// fits reports whether tx's statement is the one p was built from:
// everything ConvertToCreateValues and Statement.Build read for it that a
// call, a scope or a callback can change is as it was then.
func (p *createPlan) fits(tx *gorm.DB) bool {
	st := tx.Statement
	if !p.same(tx) || len(st.Clauses) != 0 || reflect.TypeOf(st.Dest) != p.dest {
		return false
	}
	_, tracked := st.Settings.Load("gorm:update_track_time")
	return !tracked
}

// boundAlone reports whether GORM binds v as one parameter, itself
// (Statement.AddVar): not a value that writes SQL of its own (a column, a
// GORM value or expression, a subquery), nor a slice or array other than
// of bytes, which it writes as a list, nor an empty one, which it writes
// as (NULL), nor an exec mode, which pgx's dialector counts out of the
// parameters' numbers.
func boundAlone(v any) bool {
	switch v.(type) {
	case nil, []byte:
		return true
	case sql.NamedArg, clause.Column, clause.Table, gorm.Valuer, clause.Expression, []any, pgx.QueryExecMode,
		interface{ Session(*gorm.Session) *gorm.DB }:
		return false
	case driver.Valuer:
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Slice, reflect.Array:
		return rv.Len() > 0 && rv.Type().Elem() == reflect.TypeFor[uint8]()
	}
	return true
}
