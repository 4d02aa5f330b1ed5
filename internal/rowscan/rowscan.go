// Package rowscan scans query results into a model's structs with a plan
// compiled once per model and column list, instead of GORM's per-row,
// per-field reflection, with results identical to GORM's own scan
// (gorm.Scan) by construction:
//
//   - A field of a type the plan knows (the basic types, time.Time, []byte,
//     uuid.UUID, gorm.DeletedAt, the sql.Null types, and pointers to most of
//     them) is scanned through a holder reused from row to row, with the
//     conversion database/sql gives GORM's own scan (sql.Null[T].Scan calls
//     the convertAssign GORM's **T reaches), and written into the field by
//     its offset, as GORM's setter for that type writes it: a NULL leaves a
//     value field as it was, and a pointer field nil or as it was, as GORM
//     does for that type.
//   - Any other field (a serializer, a type of the application's, a field
//     inside an embedded pointer) is scanned by GORM's own machinery: the
//     field's value pool and its Set, as gorm.Scan does.
//   - A row the plan fails to scan (a value that does not convert) is
//     scanned again GORM's way, so its error is GORM's, and so are its
//     values up to the bad one (after it, GORM leaves whatever its pooled
//     holders held: dbkit's Get and FindOne return no such row).
//   - A result the plan does not cover at all (a column list with a
//     repeated name or a joined relation's column, a lone column no field
//     reads, GORM Joins, a column mapping, a destination other than *T or
//     *[]T) is left to gorm.Scan before any row is read.
//
// The destination must be fresh (the zero T, or a slice the scan fills from
// empty): that is how dbkit's repository calls it, and where GORM's setters
// agree with the plan on every NULL.
package rowscan

import (
	"database/sql"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// Setting is the statement setting (gorm.DB.Set, gorm.Statement.Settings)
// that carries the [Scanner] of a statement whose rows a plan may scan.
const Setting = "dbkit:rowscan"

// Scanner scans a statement's rows. Scan reports false, having read
// nothing, when the plan does not cover them: the caller then runs
// gorm.Scan.
type Scanner interface {
	Scan(tx *gorm.DB, rows gorm.Rows) bool
}

// Plan scans rows of model T (described by its GORM schema) into a *T or a
// *[]T. It is safe for concurrent use.
type Plan[T any] struct {
	schema *schema.Schema
	// fields: how each readable field with a column is scanned.
	fields map[*schema.Field]*fieldPlan
	// lists are the column plans of the last column lists seen, at most
	// maxLists (a model's reads return few: all columns, a Select or two),
	// replaced whole when one is added.
	lists atomic.Pointer[[]*columnPlan]
}

var _ Scanner = (*Plan[struct{}])(nil)

// fieldPlan is how one field is scanned: through a holder of its type
// written at its offset, or (newHolder nil) through GORM's pool and Set.
type fieldPlan struct {
	field     *schema.Field
	offset    uintptr
	newHolder func() holder
}

// New compiles the plan of model T, whose schema s GORM parsed.
func New[T any](s *schema.Schema) *Plan[T] {
	p := &Plan[T]{schema: s, fields: map[*schema.Field]*fieldPlan{}}
	typ := reflect.TypeFor[T]()
	for _, f := range s.Fields {
		if f.DBName == "" || !f.Readable {
			continue
		}
		fp := &fieldPlan{field: f}
		if off, ok := offsetOf(typ, f); ok && f.Serializer == nil {
			fp.offset, fp.newHolder = off, holderFor(f.FieldType)
		}
		p.fields[f] = fp
	}
	return p
}

// offsetOf returns the offset of f in a T, when f lies in T itself or in
// structs embedded by value (not behind a pointer, which GORM allocates).
func offsetOf(typ reflect.Type, f *schema.Field) (uintptr, bool) {
	var off uintptr
	t := typ
	for _, i := range f.StructField.Index {
		if t.Kind() != reflect.Struct || i < 0 || i >= t.NumField() { // GORM marks a step through a pointer negative
			return 0, false
		}
		sf := t.Field(i)
		off += sf.Offset
		t = sf.Type
	}
	return off, t == f.FieldType && f.StructField.Type == f.FieldType
}

// columnPlan is the plan for one column list.
type columnPlan struct {
	columns []string
	cols    []*fieldPlan // by column; nil: a column no field reads
	toGORM  bool         // the plan does not cover the list: gorm.Scan reads it
	sets    sync.Pool    // of *holderSet
}

// holderSet is what one scan of a column list uses: the holders and the
// destinations given to rows.Scan.
type holderSet struct {
	holders []holder
	values  []any
	discard any
}

// maxLists bounds a plan's column plans: a model read with ever new
// column lists (Select from request input) keeps the last ones.
const maxLists = 8

func (p *Plan[T]) columnsFor(columns []string) *columnPlan {
	var lists []*columnPlan
	if l := p.lists.Load(); l != nil {
		lists = *l
	}
	for _, cp := range lists {
		if slices.Equal(cp.columns, columns) {
			return cp
		}
	}
	cp := &columnPlan{columns: slices.Clone(columns), cols: make([]*fieldPlan, len(columns))}
	cp.toGORM = !p.mapColumns(cp)
	cp.sets.New = func() any {
		hs := &holderSet{holders: make([]holder, len(cp.cols)), values: make([]any, len(cp.cols))}
		for i, c := range cp.cols {
			switch {
			case c == nil:
				hs.values[i] = &hs.discard
			case c.newHolder != nil:
				hs.holders[i] = c.newHolder()
				hs.values[i] = hs.holders[i]
			}
		}
		return hs
	}
	// A list left to GORM too, not to be looked at again. Concurrent
	// first reads of two lists may keep one: it is built again next time.
	lists = append([]*columnPlan{cp}, lists[:min(len(lists), maxLists-1)]...)
	p.lists.Store(&lists)
	return cp
}

// mapColumns fills cp.cols, the field each column is read into, and
// reports whether the plan covers the list.
func (p *Plan[T]) mapColumns(cp *columnPlan) bool {
	seen := make(map[*schema.Field]bool, len(cp.columns))
	for i, name := range cp.columns {
		f := p.schema.LookUpField(name)
		if f == nil || !f.Readable {
			if strings.Contains(name, "__") {
				return false // perhaps a joined relation's column: GORM's
			}
			continue // GORM reads it into an interface and drops it
		}
		if seen[f] {
			return false // GORM pairs repeated names with fields its own way
		}
		seen[f] = true
		if cp.cols[i] = p.fields[f]; cp.cols[i] == nil {
			return false // a field New did not plan: GORM's
		}
	}
	// GORM scans a lone column no field reads into the struct itself.
	return len(cp.columns) != 1 || cp.cols[0] != nil
}

// Scan scans rows into tx.Statement.Dest, a *T or a *[]T, as gorm.Scan
// with mode 0 would: it counts tx.RowsAffected, adds every error to tx,
// and adds gorm.ErrRecordNotFound when no row came and the statement
// raises it (Take, First).
func (p *Plan[T]) Scan(tx *gorm.DB, rows gorm.Rows) bool {
	st := tx.Statement
	if st.Schema != p.schema || len(st.ColumnMapping) > 0 || len(st.Joins) > 0 {
		return false
	}
	one, _ := st.Dest.(*T)
	many, _ := st.Dest.(*[]T)
	if one == nil && many == nil {
		return false
	}
	columns, err := rows.Columns()
	if err != nil {
		return false
	}
	cp := p.columnsFor(columns)
	if cp.toGORM {
		return false
	}
	hs := cp.sets.Get().(*holderSet)
	defer cp.sets.Put(hs)
	tx.RowsAffected = 0
	if one != nil {
		if rows.Next() {
			tx.RowsAffected++
			p.row(tx, rows, cp, hs, one)
		}
	} else {
		if cap(*many) == 0 {
			*many = make([]T, 0, 20)
		} else {
			*many = (*many)[:0]
		}
		for rows.Next() {
			tx.RowsAffected++
			*many = append(*many, *new(T))
			p.row(tx, rows, cp, hs, &(*many)[len(*many)-1])
		}
	}
	if err := rows.Err(); err != nil && err != tx.Error { //nolint:errorlint // gorm.Scan's own test: not the error already added
		_ = tx.AddError(err)
	}
	if tx.RowsAffected == 0 && st.RaiseErrorOnNotFound && tx.Error == nil {
		_ = tx.AddError(gorm.ErrRecordNotFound)
	}
	return true
}

// row scans the current row into *v.
func (p *Plan[T]) row(tx *gorm.DB, rows gorm.Rows, cp *columnPlan, hs *holderSet, v *T) {
	ctx := tx.Statement.Context
	for i, c := range cp.cols {
		if c != nil && c.newHolder == nil {
			hs.values[i] = c.field.NewValuePool.Get()
		}
	}
	if err := rows.Scan(hs.values...); err != nil {
		for i, c := range cp.cols {
			if c != nil && c.newHolder == nil {
				c.field.NewValuePool.Put(hs.values[i])
			}
		}
		p.gormRow(tx, rows, cp, v)
		return
	}
	base := unsafe.Pointer(v)
	var rv reflect.Value
	for i, c := range cp.cols {
		switch {
		case c == nil:
		case c.newHolder != nil:
			hs.holders[i].set(unsafe.Add(base, c.offset))
		default:
			if !rv.IsValid() {
				rv = reflect.ValueOf(v).Elem()
			}
			_ = tx.AddError(c.field.Set(ctx, rv, hs.values[i]))
			c.field.NewValuePool.Put(hs.values[i])
		}
	}
}

// gormRow scans the current row again as gorm.Scan does, every field
// through its value pool and Set: a row the plan could not scan gets
// GORM's error and GORM's values.
func (p *Plan[T]) gormRow(tx *gorm.DB, rows gorm.Rows, cp *columnPlan, v *T) {
	values := make([]any, len(cp.cols))
	for i, c := range cp.cols {
		if c == nil {
			values[i] = new(any)
		} else {
			values[i] = c.field.NewValuePool.Get()
		}
	}
	_ = tx.AddError(rows.Scan(values...))
	rv := reflect.ValueOf(v).Elem()
	for i, c := range cp.cols {
		if c != nil {
			_ = tx.AddError(c.field.Set(tx.Statement.Context, rv, values[i]))
			c.field.NewValuePool.Put(values[i])
		}
	}
}

// holder is a field's scan destination reused from row to row: Scan
// converts as database/sql converts for GORM's own destination of the
// field, set writes the value into the field at p as GORM's setter would.
type holder interface {
	sql.Scanner
	set(p unsafe.Pointer)
}

// value holds a field of type T. Before each Scan it is reset to the zero
// T, as GORM scans into a new T for each row.
type value[T any] struct {
	n sql.Null[T]
	// clear: a NULL sets the field to its zero value, as GORM's setter for
	// this type does (for others a NULL leaves the field as it was).
	clear bool
	// asIs: a value of type T is taken as it is, which is what
	// database/sql's conversion does with it (an assignment), without its
	// reflection. Not for []byte, which the conversion copies: the
	// driver may reuse its buffer.
	asIs bool
}

func (h *value[T]) Scan(src any) error {
	if v, ok := src.(T); ok && h.asIs {
		h.n = sql.Null[T]{V: v, Valid: true}
		return nil
	}
	h.n = sql.Null[T]{}
	return h.n.Scan(src)
}

func (h *value[T]) set(p unsafe.Pointer) {
	if h.n.Valid {
		*(*T)(p) = h.n.V
	} else if h.clear {
		*(*T)(p) = *new(T)
	}
}

// pointer holds a field of type *T: a new T for each row that is not
// NULL, as GORM allocates.
type pointer[T any] struct{ value[T] }

func (h *pointer[T]) set(p unsafe.Pointer) {
	if h.n.Valid {
		v := h.n.V
		*(**T)(p) = &v
	} else if h.clear {
		*(**T)(p) = nil
	}
}

// holderFor returns the holder maker for fields of type t, or nil for a
// type the plan leaves to GORM. Whether a NULL clears the field follows
// GORM's setter for the type (gorm.io/gorm/schema field.go): the basic
// types' and time.Time's setters leave the field alone on NULL, and so do
// the sql.Scanner types', directly or through a pointer; []byte and
// pointers to basic types go through GORM's fallback setter, which clears.
func holderFor(t reflect.Type) func() holder { return holders[t] }

// holders are the makers of holderFor by field type: a read-only table.
var holders = map[reflect.Type]func() holder{
	reflect.TypeFor[string]():          valueOf[string](false),
	reflect.TypeFor[bool]():            valueOf[bool](false),
	reflect.TypeFor[int]():             integer[int],
	reflect.TypeFor[int8]():            integer[int8],
	reflect.TypeFor[int16]():           integer[int16],
	reflect.TypeFor[int32]():           integer[int32],
	reflect.TypeFor[int64]():           valueOf[int64](false),
	reflect.TypeFor[uint]():            valueOf[uint](false),
	reflect.TypeFor[uint8]():           valueOf[uint8](false),
	reflect.TypeFor[uint16]():          valueOf[uint16](false),
	reflect.TypeFor[uint32]():          valueOf[uint32](false),
	reflect.TypeFor[uint64]():          valueOf[uint64](false),
	reflect.TypeFor[float32]():         valueOf[float32](false),
	reflect.TypeFor[float64]():         valueOf[float64](false),
	reflect.TypeFor[time.Time]():       valueOf[time.Time](false),
	reflect.TypeFor[[]byte]():          valueOf[[]byte](true),
	reflect.TypeFor[uuid.UUID]():       valueOf[uuid.UUID](false),
	reflect.TypeFor[gorm.DeletedAt]():  valueOf[gorm.DeletedAt](false),
	reflect.TypeFor[sql.NullString]():  valueOf[sql.NullString](false),
	reflect.TypeFor[sql.NullInt64]():   valueOf[sql.NullInt64](false),
	reflect.TypeFor[sql.NullInt32]():   valueOf[sql.NullInt32](false),
	reflect.TypeFor[sql.NullFloat64](): valueOf[sql.NullFloat64](false),
	reflect.TypeFor[sql.NullBool]():    valueOf[sql.NullBool](false),
	reflect.TypeFor[sql.NullTime]():    valueOf[sql.NullTime](false),
	reflect.TypeFor[*string]():         pointerTo[string](true),
	reflect.TypeFor[*bool]():           pointerTo[bool](true),
	reflect.TypeFor[*int]():            pointerTo[int](true),
	reflect.TypeFor[*int32]():          pointerTo[int32](true),
	reflect.TypeFor[*int64]():          pointerTo[int64](true),
	reflect.TypeFor[*uint]():           pointerTo[uint](true),
	reflect.TypeFor[*uint64]():         pointerTo[uint64](true),
	reflect.TypeFor[*float64]():        pointerTo[float64](true),
	reflect.TypeFor[*time.Time]():      pointerTo[time.Time](false),
	reflect.TypeFor[*uuid.UUID]():      pointerTo[uuid.UUID](false),
}

// signed holds a field of a signed integer type T narrower than, or as
// wide as, int64. database/sql converts an int64 into any other integer
// type through its decimal text (strconv), which costs an allocation for
// most values; the holder takes the int64 as it is and narrows it. Where
// narrowing would not give what database/sql's conversion to T gives (a
// value out of T's range, which it refuses), Scan fails, and the row is
// scanned GORM's way, with GORM's error. For the values that fit, both
// parse the same text or take the same int64.
type signed[T int | int8 | int16 | int32] struct{ value[int64] }

func (h *signed[T]) Scan(src any) error {
	if err := h.value.Scan(src); err != nil {
		return err
	}
	if h.n.Valid && int64(T(h.n.V)) != h.n.V {
		return errOutOfRange
	}
	return nil
}

func (h *signed[T]) set(p unsafe.Pointer) {
	if h.n.Valid {
		*(*T)(p) = T(h.n.V)
	}
}

func integer[T int | int8 | int16 | int32]() holder { return &signed[T]{newValue[int64](false)} }

// errOutOfRange makes a row go GORM's way, which reports database/sql's
// own error for the value.
var errOutOfRange = errors.New("rowscan: out of range")

func valueOf[T any](clear bool) func() holder {
	return func() holder { h := newValue[T](clear); return &h }
}

// newValue is a value[T] whose NULL clears the field if clear.
func newValue[T any](clear bool) value[T] {
	_, bytes := any(*new(T)).([]byte)
	return value[T]{clear: clear, asIs: !bytes}
}

func pointerTo[T any](clear bool) func() holder {
	return func() holder { return &pointer[T]{newValue[T](clear)} }
}
