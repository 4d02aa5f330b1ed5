package dbkit

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/migrator"
	"gorm.io/gorm/schema"

	"github.com/dbkit-go/database/internal/pgcatalog"
)

// Drift is one difference between a model and the database, found by
// [DB.CheckSchema]. It holds names and type names, never a value.
type Drift struct {
	Kind  DriftKind
	Model string // the Go type: "User"
	// Field is the Go field ("Email"), or the fields of an index joined by
	// ", "; "" for a table or a primary key.
	Field string
	Table string // the model's table, as the model names it
	// Column is the column, or the columns of an index or primary key
	// joined by ", ".
	Column string
	Want   string // what the model says: "bigint", "NOT NULL", "unique index on (email)"
	Got    string // what the database has: "integer", "nullable", "none"
}

// DriftKind says what differs.
type DriftKind string

// The differences [DB.CheckSchema] finds.
const (
	// DriftMissingTable: no table or view of the model's table name.
	DriftMissingTable DriftKind = "missing table"
	// DriftMissingColumn: a field's column does not exist.
	DriftMissingColumn DriftKind = "missing column"
	// DriftType: a column's type is not one the field's type maps to.
	DriftType DriftKind = "type"
	// DriftNullable: the model says NOT NULL (gorm:"not null", or a
	// primary key) and the column allows NULL.
	DriftNullable DriftKind = "nullable"
	// DriftNotNull: the field can hold nil (a pointer, a sql.Null*, a
	// gorm.DeletedAt) and the column is NOT NULL: writing nil would fail.
	DriftNotNull DriftKind = "not null"
	// DriftUnique: a uniqueIndex or unique tag with no unique index (or
	// constraint) on exactly its columns.
	DriftUnique DriftKind = "unique"
	// DriftIndex: an index tag with no index whose first columns are its
	// columns.
	DriftIndex DriftKind = "index"
	// DriftPrimaryKey: the table's primary key is not on the model's
	// primary-key columns.
	DriftPrimaryKey DriftKind = "primary key"
)

// String says what differs in one line: "User.Age: column users.age is
// integer; the model says bigint".
func (d Drift) String() string {
	who := d.Model
	if d.Field != "" {
		who += "." + d.Field
	}
	switch d.Kind {
	case DriftMissingTable:
		return fmt.Sprintf("%s: table %s does not exist", who, d.Table)
	case DriftMissingColumn:
		return fmt.Sprintf("%s: column %s.%s does not exist; the model says %s", who, d.Table, d.Column, d.Want)
	case DriftUnique, DriftIndex:
		return fmt.Sprintf("%s: table %s has no %s", who, d.Table, d.Want)
	case DriftPrimaryKey:
		if d.Got == "none" {
			return fmt.Sprintf("%s: table %s has no primary key; the model says %s", who, d.Table, d.Want)
		}
		return fmt.Sprintf("%s: the primary key of %s is %s; the model says %s", who, d.Table, d.Got, d.Want)
	}
	return fmt.Sprintf("%s: column %s.%s is %s; the model says %s", who, d.Table, d.Column, d.Got, d.Want)
}

// CheckSchema compares each model's GORM schema with the database's and
// returns a *[SchemaDriftError], matching [ErrSchemaDrift], that lists
// every difference; nil when there is none. Run it after the migrations
// (see [WithSchemaCheck] and dbtest.CheckSchema), so that a hand-written
// migration and its model cannot drift apart unseen.
//
// It reads the catalog in two queries, on ctx's transaction if it carries
// one. A table is looked up by the model's table name as a statement would
// find it: through search_path, or in its schema when the name is
// qualified. What counts as a difference:
//
//   - the table does not exist, or a column of a field does not;
//   - a column's type is not the field's: the type its `type:` tag (or
//     GormDBDataType) declares, however spelled ("int8" is "bigint"), with
//     the same modifiers when the tag gives some; else one that holds the
//     Go type: boolean for a bool; an integer column no wider than the one
//     GORM would create (bigint for an int, integer for an int32); real,
//     double precision or numeric for a float (numeric(p,s) with a
//     precision tag); text, varchar, char, citext, uuid or an enum for a
//     string (varchar(n) with a size tag; json or jsonb too with a
//     serializer); timestamptz for a time.Time (timestamp without time zone
//     is a difference); bytea, json or jsonb for a []byte. A domain counts as
//     its base type. Fields of types GORM gives no data type are not
//     type-checked;
//   - the model says NOT NULL (gorm:"not null", or a primary key) and the
//     column allows NULL;
//   - the field can hold nil (a pointer, or a driver.Valuer whose zero value
//     is NULL: sql.Null*, gorm.DeletedAt), is written, and its column is NOT
//     NULL: writing nil would fail. A plain string or int on a nullable
//     column is not a difference (GORM creates those; a NULL reads as the
//     zero value, which is why [Repository.FindCursor] will not sort by
//     it);
//   - a uniqueIndex or unique tag with no valid unique index or constraint
//     on exactly its columns, in any order (a partial one counts: its
//     predicate is not compared); an index tag with no valid index whose
//     first columns are its columns, in order; an index tag on an expression,
//     with no index of its name;
//   - the primary key is on other columns than the model's, or missing.
//
// Views and materialized views are checked for columns and types only (the
// catalog calls every column of a view nullable), and materialized views for
// indexes too. Columns no field maps are no difference: read models and
// columns a newer release added are fine. Fields tagged gorm:"-", and
// read-only fields ignored by migrations (gorm:"->;-:migration", a column of
// a query's own), are skipped. A model GORM cannot parse is an error
// matching [ErrInvalid].
func (db *DB) CheckSchema(ctx context.Context, models ...any) error {
	var schemas []*schema.Schema
	var names []string
	for _, m := range models {
		if m == nil {
			return fmt.Errorf("dbkit: CheckSchema: %w: a nil model", ErrInvalid)
		}
		stmt := &gorm.Statement{DB: db.gorm}
		if err := stmt.Parse(m); err != nil {
			return fmt.Errorf("dbkit: CheckSchema: %w: %T: %w", ErrInvalid, m, err)
		}
		if !slices.Contains(schemas, stmt.Schema) {
			schemas = append(schemas, stmt.Schema)
			names = append(names, stmt.Schema.Table)
		}
	}
	tables, err := pgcatalog.Read(ctx, db.catalog(), names)
	if err != nil {
		return fmt.Errorf("dbkit: CheckSchema: read the catalog: %w", db.fromDriver(ctx, err))
	}
	var drifts []Drift
	for _, s := range schemas {
		drifts = append(drifts, db.compareSchema(s, tables[s.Table])...)
	}
	if len(drifts) > 0 {
		return &SchemaDriftError{Drifts: drifts}
	}
	return nil
}

// compareSchema lists the differences between model s and table t (nil when
// the table does not exist).
func (db *DB) compareSchema(s *schema.Schema, t *pgcatalog.Table) []Drift {
	if t == nil {
		return []Drift{{Kind: DriftMissingTable, Model: s.Name, Table: s.Table}}
	}
	var drifts []Drift
	for _, name := range s.DBNames {
		f := s.FieldsByDBName[name]
		if f == nil || !(f.Readable || f.Creatable || f.Updatable) || f.IgnoreMigration && !f.Creatable && !f.Updatable {
			continue
		}
		drifts = append(drifts, db.compareColumn(s, t, f)...)
	}
	if t.Kind.HasPrimaryKey() {
		drifts = append(drifts, comparePrimaryKey(s, t)...)
	}
	if t.Kind.HasIndexes() {
		drifts = append(drifts, compareIndexes(s, t)...)
	}
	return drifts
}

// compareColumn compares field f with its column of t.
func (db *DB) compareColumn(s *schema.Schema, t *pgcatalog.Table, f *schema.Field) []Drift {
	d := Drift{Model: s.Name, Field: f.Name, Table: s.Table, Column: f.DBName}
	want := db.columnType(f)
	col, ok := t.Columns[f.DBName]
	if !ok {
		d.Kind, d.Want = DriftMissingColumn, want.name
		if d.Want == "" {
			d.Want = "a column"
		}
		return []Drift{d}
	}
	var drifts []Drift
	if want.fits != nil && !want.fits(col) {
		d.Kind, d.Want, d.Got = DriftType, want.name, col.Type
		drifts = append(drifts, d)
	}
	notNull := f.NotNull || f.PrimaryKey
	switch {
	case notNull && !col.NotNull && t.Kind.KnowsNullability():
		d.Kind, d.Want, d.Got = DriftNullable, "NOT NULL", "nullable"
		drifts = append(drifts, d)
	case !notNull && col.NotNull && (f.Creatable || f.Updatable) && canHoldNil(f.FieldType):
		d.Kind, d.Want, d.Got = DriftNotNull, "nullable (a "+f.FieldType.String()+" can be nil)", "NOT NULL"
		drifts = append(drifts, d)
	}
	return drifts
}

// canHoldNil reports whether a field of type t can be written as NULL: a
// pointer, or a driver.Valuer whose zero value is NULL (sql.NullString,
// gorm.DeletedAt).
func canHoldNil(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		return true
	}
	v, ok := reflect.New(t).Interface().(driver.Valuer)
	if !ok {
		return false
	}
	value, err := v.Value()
	return err == nil && value == nil
}

// columnType is what a field's column may be: name is what the model says,
// for messages; fits is nil when the field's type is not checked.
type columnType struct {
	name string
	fits func(pgcatalog.Column) bool
}

// columnType says which column types field f maps to (see CheckSchema).
func (db *DB) columnType(f *schema.Field) columnType {
	if dt, ok := reflect.New(f.IndirectFieldType).Interface().(migrator.GormDataTypeInterface); ok {
		if declared := dt.GormDBDataType(db.gorm, f); declared != "" {
			return declaredType(declared)
		}
	}
	gormType := db.gorm.DataTypeOf(f) // what GORM would create (its dialector's type)
	oneOf := func(names ...string) func(pgcatalog.Column) bool {
		return func(c pgcatalog.Column) bool {
			t := pgcatalog.ParseType(c.BaseType)
			return t.Array == 0 && slices.Contains(names, t.Name)
		}
	}
	switch f.DataType {
	case "":
		return columnType{}
	case schema.Bool:
		return columnType{name: "boolean", fits: oneOf("bool")}
	case schema.Int, schema.Uint:
		// The column's integers must fit in the field: GORM's type or a
		// narrower one.
		ints, names := []string{"int2", "int4", "int8"}, []string{"smallint", "integer", "bigint"}
		widest := slices.Index(ints, pgcatalog.ParseType(gormType).Name)
		if widest < 0 {
			widest = len(ints) - 1
		}
		name := names[widest]
		if widest > 0 {
			name += " or narrower"
		}
		return columnType{name: name, fits: oneOf(ints[:widest+1]...)}
	case schema.Float:
		if f.Precision > 0 {
			return declaredType(gormType)
		}
		return columnType{name: "real, double precision or numeric", fits: oneOf("float4", "float8", "numeric")}
	case schema.String:
		if f.Size > 0 {
			return declaredType(gormType)
		}
		text := oneOf("text", "varchar", "bpchar", "citext", "name", "uuid")
		if f.Serializer != nil {
			text = oneOf("text", "varchar", "bpchar", "citext", "json", "jsonb")
		}
		return columnType{name: "text", fits: func(c pgcatalog.Column) bool { return text(c) || c.Enum }}
	case schema.Bytes:
		return columnType{name: "bytea", fits: oneOf("bytea", "json", "jsonb")}
	case schema.Time:
		return declaredType(gormType)
	}
	return declaredType(gormType) // a type of the model's own: type:uuid, type:text[]
}

// declaredType is a column of the type declared, however spelled.
func declaredType(declared string) columnType {
	return columnType{name: strings.TrimSpace(declared), fits: func(c pgcatalog.Column) bool {
		return pgcatalog.Fits(declared, c.Type) || pgcatalog.Fits(declared, c.BaseType)
	}}
}

// comparePrimaryKey compares the model's primary key with the table's.
func comparePrimaryKey(s *schema.Schema, t *pgcatalog.Table) []Drift {
	if len(s.PrimaryFieldDBNames) == 0 {
		return nil
	}
	want := columnList(s.PrimaryFieldDBNames)
	got := "none"
	for _, ix := range t.Indexes {
		if ix.Primary {
			got = columnList(ix.Columns)
			if sameColumns(ix.Columns, s.PrimaryFieldDBNames) {
				return nil
			}
		}
	}
	return []Drift{{Kind: DriftPrimaryKey, Model: s.Name, Table: s.Table, Column: strings.Join(s.PrimaryFieldDBNames, ", "),
		Want: want, Got: got}}
}

// compareIndexes looks for an index of t for each index the model's tags
// declare.
func compareIndexes(s *schema.Schema, t *pgcatalog.Table) []Drift {
	var drifts []Drift
	missing := func(kind DriftKind, fields, columns []string, want string) {
		drifts = append(drifts, Drift{Kind: kind, Model: s.Name, Field: strings.Join(fields, ", "), Table: s.Table,
			Column: strings.Join(columns, ", "), Want: want, Got: "none"})
	}
	for _, idx := range s.ParseIndexes() {
		unique := idx.Class == "UNIQUE"
		var fields, columns []string
		expression := false
		for _, o := range idx.Fields {
			fields = append(fields, o.Name)
			columns = append(columns, o.DBName)
			expression = expression || o.Expression != ""
		}
		kind, what := DriftIndex, "index"
		if unique {
			kind, what = DriftUnique, "unique index"
		}
		if expression {
			// An expression cannot be compared: the index must have its name.
			if !slices.ContainsFunc(t.Indexes, func(ix pgcatalog.Index) bool { return ix.Name == idx.Name && (ix.Unique || !unique) }) {
				missing(kind, fields, columns, what+" "+idx.Name)
			}
			continue
		}
		if !slices.ContainsFunc(t.Indexes, func(ix pgcatalog.Index) bool { return covers(ix, columns, unique) }) {
			missing(kind, fields, columns, what+" on "+columnList(columns))
		}
	}
	for _, name := range s.DBNames {
		if f := s.FieldsByDBName[name]; f != nil && f.Unique {
			columns := []string{f.DBName}
			if !slices.ContainsFunc(t.Indexes, func(ix pgcatalog.Index) bool { return covers(ix, columns, true) }) {
				missing(DriftUnique, []string{f.Name}, columns, "unique index on "+columnList(columns))
			}
		}
	}
	return drifts
}

// covers reports whether index ix serves an index on columns: for a unique
// one, a unique index on exactly those columns, in any order; else any
// index whose first columns are those, in order.
func covers(ix pgcatalog.Index, columns []string, unique bool) bool {
	if unique {
		return ix.Unique && sameColumns(ix.Columns, columns)
	}
	return len(ix.Columns) >= len(columns) && slices.Equal(ix.Columns[:len(columns)], columns)
}

// sameColumns reports whether a and b hold the same columns, in any order.
func sameColumns(a, b []string) bool {
	return len(a) == len(b) && !slices.Contains(a, "") && slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func columnList(columns []string) string { return "(" + strings.Join(columns, ", ") + ")" }

// checkSchemaAtConnect runs the checks Connect was given: WithSchemaCheck's
// fail, WithSchemaCheckWarn's log each difference at WARN.
func (db *DB) checkSchemaAtConnect(ctx context.Context, o options) error {
	if len(o.schemaCheck) > 0 {
		if err := db.CheckSchema(ctx, o.schemaCheck...); err != nil {
			return err
		}
	}
	if len(o.schemaWarn) == 0 {
		return nil
	}
	err := db.CheckSchema(ctx, o.schemaWarn...)
	var drift *SchemaDriftError
	if !errors.As(err, &drift) {
		return err
	}
	for _, d := range drift.Drifts {
		db.logger.LogAttrs(ctx, slog.LevelWarn, "dbkit: schema drift: "+d.String(),
			slog.String("kind", string(d.Kind)), slog.String("model", d.Model), slog.String("field", d.Field),
			slog.String("table", d.Table), slog.String("column", d.Column),
			slog.String("want", d.Want), slog.String("got", d.Got))
	}
	return nil
}
