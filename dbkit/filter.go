package dbkit

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// Op is a filter operator.
type Op string

// Filter operators.
const (
	OpEq     Op = "eq"     // field = value; value nil: IS NULL
	OpNe     Op = "ne"     // field <> value; value nil: IS NOT NULL
	OpLt     Op = "lt"     // field < value
	OpLte    Op = "lte"    // field <= value
	OpGt     Op = "gt"     // field > value
	OpGte    Op = "gte"    // field >= value
	OpIn     Op = "in"     // field IN (values)
	OpNin    Op = "nin"    // field NOT IN (values)
	OpLike   Op = "like"   // field contains value, case-sensitive (% and _ in value match themselves)
	OpIlike  Op = "ilike"  // field contains value, case-insensitive
	OpIsNull Op = "isnull" // value true: field IS NULL; false: IS NOT NULL
)

var ops = []Op{OpEq, OpNe, OpLt, OpLte, OpGt, OpGte, OpIn, OpNin, OpLike, OpIlike, OpIsNull}

// Default limits on a filter built from input, so a request cannot make
// the database do unbounded work; see [InputLimits] to change them.
const (
	MaxFilterDepth  = 5    // nesting of groups
	MaxFilterLeaves = 50   // conditions in all
	MaxInValues     = 1000 // values of one in/nin
)

// Filter is a condition on rows, the one every read and write by condition
// takes (it is a [QueryOption]): a field, an operator and a value, a group
// of filters combined with OR or AND, or the negation of a filter. Several
// filters given to one call combine with AND; the zero Filter is no
// condition.
//
// In code, make filters with [Eq], [Ne], [Gt], [Gte], [Lt], [Lte], [In],
// [Like], [IsNull], [Between], [Or], [And] and [Not]:
//
//	users.Find(ctx, dbkit.Gte("age", 18), dbkit.Or(dbkit.Eq("role", "admin"), dbkit.IsNull("team_id")))
//
// From request input, [FilterFromQuery] reads a query string, and a Filter
// decodes from JSON:
//
//	{"or": [{"field": "name", "op": "ilike", "value": "ada"},
//	        {"field": "email", "op": "ilike", "value": "ada"}]}
//
// Field is a column name, a JSON name or a Go field name of the model. The
// value is always a bound parameter. Filters from input are checked as
// input: fields tagged json:"-" or dbkit:"nofilter" cannot be filtered on,
// so a request cannot probe a secret column; strings are converted to the
// field's type (numbers, booleans, time.Time in RFC 3339, uuid.UUID,
// sql.Scanner types), values from encoding/json (float64, []any) are
// accepted too; sizes are bounded by the repository's [InputLimits].
// Filters made by the constructors are code's: they may name any field,
// and take values of the field's type as they are. Either way everything is
// checked before any SQL is sent: an unknown field or operator, or a value
// that does not fit, is an error matching [ErrInvalid] that names the field,
// never the value.
type Filter struct {
	Field string   `json:"field,omitempty"`
	Op    Op       `json:"op,omitempty"`
	Value any      `json:"value,omitempty"`
	Or    []Filter `json:"or,omitempty"`
	And   []Filter `json:"and,omitempty"`
	Not   *Filter  `json:"not,omitempty"`
	// RawPattern makes like and ilike use Value as a LIKE pattern as given,
	// with its % and _ wildcards, instead of matching it as a substring.
	RawPattern bool `json:"-"`
	// code marks a filter made by the constructors, in code: it may name
	// fields input may not, and its value is taken as it is. JSON and
	// struct literals cannot set it.
	code bool
}

func (f Filter) apply(q *query) { q.filters = append(q.filters, f) }

// UnmarshalJSON decodes a Filter from request input: whatever f held
// before, the result is input's, at every level. (encoding/json decodes into
// the values already there and leaves unexported fields alone: decoding
// over a filter made in code would otherwise keep its trust.)
func (f *Filter) UnmarshalJSON(b []byte) error {
	type plain Filter // the same fields, without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = Filter(p)
	return nil
}
func (f Filter) isGroup() bool { return len(f.Or) > 0 || len(f.And) > 0 }

// isEmpty reports the zero condition: no field, no group, no negation.
func (f Filter) isEmpty() bool { return f.Field == "" && f.Op == "" && !f.isGroup() && f.Not == nil }

func (f Filter) leafCount() (n int) {
	switch {
	case f.Not != nil:
		return f.Not.leafCount()
	case !f.isGroup():
		return 1
	}
	for _, g := range append(slices.Clone(f.Or), f.And...) {
		n += g.leafCount()
	}
	return n
}

func codeFilter(field string, op Op, value any) Filter {
	return Filter{Field: field, Op: op, Value: value, code: true}
}

// Eq matches rows whose field equals value; a nil value matches NULL.
func Eq(field string, value any) Filter { return codeFilter(field, OpEq, value) }

// Ne matches rows whose field differs from value (NULL excluded, as SQL
// has it); a nil value matches NOT NULL.
func Ne(field string, value any) Filter { return codeFilter(field, OpNe, value) }

// Gt matches rows whose field is greater than value.
func Gt(field string, value any) Filter { return codeFilter(field, OpGt, value) }

// Gte matches rows whose field is greater than or equal to value.
func Gte(field string, value any) Filter { return codeFilter(field, OpGte, value) }

// Lt matches rows whose field is less than value.
func Lt(field string, value any) Filter { return codeFilter(field, OpLt, value) }

// Lte matches rows whose field is less than or equal to value.
func Lte(field string, value any) Filter { return codeFilter(field, OpLte, value) }

// In matches rows whose field is one of values; no value matches no row.
func In(field string, values ...any) Filter { return codeFilter(field, OpIn, values) }

// Like matches rows whose text field matches the LIKE pattern, with its %
// and _ wildcards ("ada%": starts with ada).
func Like(field, pattern string) Filter {
	f := codeFilter(field, OpLike, pattern)
	f.RawPattern = true
	return f
}

// IsNull matches rows whose field is NULL; [Not](IsNull(field)) those
// whose field is not.
func IsNull(field string) Filter { return codeFilter(field, OpIsNull, true) }

// Between matches rows whose field lies between lo and hi, both included.
func Between(field string, lo, hi any) Filter { return And(Gte(field, lo), Lte(field, hi)) }

// Or matches rows that match any of filters; it needs at least one.
func Or(filters ...Filter) Filter {
	if filters == nil {
		filters = []Filter{} // an empty Or, which matches nothing, is refused
	}
	return Filter{Or: filters, code: true}
}

// And matches rows that match all of filters (none: every row).
func And(filters ...Filter) Filter { return Filter{And: filters, code: true} }

// Not matches rows that do not match f. As in SQL, a row whose field is
// NULL matches neither a comparison nor its negation.
func Not(f Filter) Filter { return Filter{Not: &f, code: true} }

// FilterFromQuery reads a filter from a query string, one condition per
// parameter, all combined with AND (none: the zero Filter, no condition):
//
//	name=Ada                 name eq Ada
//	age[gte]=18              age gte 18
//	email[ilike]=example     email contains "example", any case
//	id[in]=a,b,c             id in (a, b, c)
//	deleted_at[isnull]=true  deleted_at IS NULL
//
// Parameters named in skip (such as "sort", "page", "size", "cursor") are
// not filters. An unknown operator is an error matching [ErrInvalid]; fields
// are checked against the model when the filter is used, as input. An in or
// nin list of more than [MaxInValues] values is refused here, before it is
// split, whatever a repository's [InputLimits] allow.
//
//	f, err := dbkit.FilterFromQuery(r.URL.Query(), "sort")
//	...
//	rows, err := users.Find(ctx, f, dbkit.SortBy(r.URL.Query().Get("sort")))
func FilterFromQuery(q url.Values, skip ...string) (Filter, error) {
	keys := make([]string, 0, len(q))
	for k := range q {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // a deterministic order, hence deterministic SQL
	filters := make([]Filter, 0, len(keys))
	for _, key := range keys {
		field, op := key, OpEq
		if i := strings.IndexByte(key, '['); i >= 0 {
			if !strings.HasSuffix(key, "]") || i == 0 {
				return Filter{}, fmt.Errorf("%w: filter parameter %s: want field or field[op]", ErrInvalid, quote(key))
			}
			field, op = key[:i], Op(key[i+1:len(key)-1])
		}
		if !slices.Contains(ops, op) {
			return Filter{}, fmt.Errorf("%w: filter %s: unknown operator %s", ErrInvalid, quote(field), quote(string(op)))
		}
		for _, raw := range q[key] {
			var v any = raw
			if op == OpIn || op == OpNin {
				// Counted before splitting: a megabyte of commas would
				// otherwise make a million strings first.
				if n := strings.Count(raw, ",") + 1; n > MaxInValues {
					return Filter{}, fmt.Errorf("%w: filter %s: in and nin take at most %d values, got %d", ErrInvalid, quote(field), MaxInValues, n)
				}
				parts := strings.Split(raw, ",")
				vs := make([]any, len(parts))
				for i, p := range parts {
					vs[i] = p
				}
				v = vs
			}
			filters = append(filters, Filter{Field: field, Op: op, Value: v})
		}
	}
	switch len(filters) {
	case 0:
		return Filter{}, nil
	case 1:
		return filters[0], nil
	}
	return Filter{And: filters}, nil
}

// fieldResolver finds the fields input may name.
type fieldResolver struct {
	model     string
	schema    *schema.Schema
	byName    map[string]*schema.Field // column, JSON and Go names of the fields input may name
	deletedAt *schema.Field            // the SoftDelete column, nil without one
	limits    InputLimits              // defaults filled in
	maxName   int                      // the longest name accepted: MaxNameBytes, or longer names of the model
	rels      map[string]*relation     // the associations "assoc.field" may name, by Go and JSON name
}

// newFieldResolver indexes the fields of s that input may name: every
// readable column, unless the field, or a struct it is embedded in, is
// tagged json:"-" or dbkit:"nofilter". A non-empty allow list (see
// InputFields) narrows that to the fields it names. Input is held to
// limits, defaults filled in.
func newFieldResolver(model string, s *schema.Schema, allow []string, limits InputLimits) (*fieldResolver, error) {
	r, err := newFieldResolverOf(model, s, allow, limits)
	if err != nil {
		return nil, err
	}
	r.rels, err = relationsOf(model, s, allow, limits)
	return r, err
}

// newFieldResolverOf is newFieldResolver without the associations: the
// resolver of a related model, one level deep.
func newFieldResolverOf(model string, s *schema.Schema, allow []string, limits InputLimits) (*fieldResolver, error) {
	r := &fieldResolver{model: model, schema: s, byName: map[string]*schema.Field{}, deletedAt: softDeleteField(s)}
	var allowed map[*schema.Field]bool
	if len(allow) > 0 {
		allowed = map[*schema.Field]bool{}
		for _, name := range allow {
			if strings.Contains(name, ".") {
				continue // an association's field: its resolver's
			}
			f := s.LookUpField(name)
			if f == nil || f.DBName == "" {
				return nil, fmt.Errorf("%w: InputFields: %s has no field %s", ErrInvalid, model, quote(name))
			}
			allowed[f] = true
		}
	}
	for _, f := range s.Fields {
		if f.DBName == "" || !f.Readable || hiddenField(s.ModelType, f) || allowed != nil && !allowed[f] {
			continue
		}
		indexField(r.byName, f)
	}
	// A name the model itself has is accepted whatever MaxNameBytes says.
	r.limits, r.maxName = limits, limits.MaxNameBytes
	for name := range r.byName {
		r.maxName = max(r.maxName, len(name))
	}
	return r, nil
}

// indexField files f in m under its column, Go and JSON names: the names
// input may give it.
func indexField(m map[string]*schema.Field, f *schema.Field) {
	m[f.DBName], m[f.Name] = f, f
	if n := jsonName(f.StructField); n != "" && n != "-" {
		m[n] = f
	}
}

// hiddenField reports whether f, or any struct on its embedding path, is
// tagged json:"-" or dbkit:"nofilter": a column kept out of the API must
// not be reachable by name from a request either.
func hiddenField(model reflect.Type, f *schema.Field) bool {
	t := indirect(model)
	for _, name := range f.BindNames {
		if t.Kind() != reflect.Struct {
			break
		}
		sf, ok := t.FieldByName(name)
		if !ok {
			break
		}
		if jsonName(sf) == "-" || sf.Tag.Get("dbkit") == "nofilter" {
			return true
		}
		t = indirect(sf.Type)
	}
	return false
}

func jsonName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	return name
}

func (r *fieldResolver) field(name string) (*schema.Field, error) {
	if len(name) > r.maxName {
		return nil, fmt.Errorf("%w: %s: the field name %s is longer than the limit of %d bytes", ErrInvalid, r.model, quote(name), r.limits.MaxNameBytes)
	}
	if f, ok := r.byName[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("%w: %s has no field %s that can be filtered or sorted on", ErrInvalid, r.model, quote(name))
}

// checkLen refuses a string value longer than limit bytes, naming the field
// and the limit, never the value.
func (r *fieldResolver) checkLen(field *schema.Field, v any, limit int, what string) error {
	n := 0
	switch x := v.(type) {
	case string:
		n = len(x)
	case *string:
		if x != nil {
			n = len(*x)
		}
	default:
		if rv := reflect.Indirect(reflect.ValueOf(v)); rv.Kind() == reflect.String {
			n = rv.Len()
		}
	}
	if n > limit {
		return fmt.Errorf("%w: %s.%s: a %s of %d bytes, longer than the limit of %d", ErrInvalid, r.model, field.Name, what, n, limit)
	}
	return nil
}

// compileFilter turns f into a clause expression with every identifier
// resolved and every value converted to its field's type.
func (r *fieldResolver) compileFilter(f Filter, depth int, c *compiled) (clause.Expression, error) {
	if depth > r.limits.MaxFilterDepth {
		return nil, fmt.Errorf("%w: filter groups nested deeper than %d", ErrInvalid, r.limits.MaxFilterDepth)
	}
	if f.Not != nil {
		if f.Field != "" || f.Op != "" || f.isGroup() {
			return nil, fmt.Errorf("%w: a filter is a field condition, one group (or/and) or a negation (not), not several", ErrInvalid)
		}
		if f.Not.isEmpty() {
			return nil, fmt.Errorf("%w: not of an empty filter", ErrInvalid)
		}
		e, err := r.compileFilter(*f.Not, depth+1, c)
		if err != nil {
			return nil, err
		}
		return clause.Not(e), nil
	}
	if f.isEmpty() {
		if f.Or != nil && f.code {
			return nil, fmt.Errorf("%w: Or needs at least one filter", ErrInvalid)
		}
		return nil, nil
	}
	if f.isGroup() {
		if f.Field != "" || len(f.Or) > 0 && len(f.And) > 0 {
			return nil, fmt.Errorf("%w: a filter is a field condition, one group (or/and) or a negation (not), not several", ErrInvalid)
		}
		group, combine := f.Or, anyOf
		if len(f.And) > 0 {
			group, combine = f.And, clause.And
		}
		exprs := make([]clause.Expression, 0, len(group))
		for _, g := range group {
			// An empty filter is no condition at the top, where it is
			// harmless; inside a group or a not its meaning (all rows? none?)
			// would turn on the group around it: it is refused.
			if g.isEmpty() {
				return nil, fmt.Errorf("%w: an empty filter inside an or/and group", ErrInvalid)
			}
			e, err := r.compileFilter(g, depth+1, c)
			if err != nil {
				return nil, err
			}
			exprs = append(exprs, e)
		}
		return combine(exprs...), nil
	}
	if f.code {
		return r.compileCodeFilter(f, c)
	}
	field, col, err := r.column(f.Field, true, c)
	if err != nil {
		return nil, err
	}
	op := f.Op
	if op == "" {
		op = OpEq
	}
	switch op {
	case OpEq, OpNe, OpLt, OpLte, OpGt, OpGte:
		if err := r.checkLen(field, f.Value, r.limits.MaxValueBytes, "value"); err != nil {
			return nil, err
		}
		v, err := r.convert(field, f.Value)
		if err != nil {
			return nil, err
		}
		if v == nil && op != OpEq && op != OpNe {
			return nil, fmt.Errorf("%w: %s.%s %s: a null value only goes with eq, ne or isnull", ErrInvalid, r.model, field.Name, op)
		}
		return comparison(op, col, v), nil
	case OpIn, OpNin:
		values, err := r.convertList(field, f.Value)
		if err != nil {
			return nil, err
		}
		if op == OpIn {
			return clause.IN{Column: col, Values: values}, nil
		}
		return clause.Not(clause.IN{Column: col, Values: values}), nil
	case OpLike, OpIlike:
		if indirect(field.FieldType).Kind() != reflect.String {
			return nil, fmt.Errorf("%w: %s.%s: %s needs a text field", ErrInvalid, r.model, field.Name, op)
		}
		s, ok := f.Value.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s.%s %s: the value must be a string", ErrInvalid, r.model, field.Name, op)
		}
		if err := r.checkLen(field, s, r.limits.MaxPatternBytes, string(op)+" pattern"); err != nil {
			return nil, err
		}
		if why := badText(s); why != "" {
			return nil, textError(r.model, field, why)
		}
		pattern := s
		if !f.RawPattern {
			pattern = "%" + escapeLike(s) + "%"
		}
		sql := "? LIKE ?"
		if op == OpIlike {
			sql = "? ILIKE ?"
		}
		return clause.Expr{SQL: sql, Vars: []any{col, pattern}}, nil
	case OpIsNull:
		isNull, err := asBool(f.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.%s isnull: the value must be true or false", ErrInvalid, r.model, field.Name)
		}
		if isNull {
			return clause.Expr{SQL: "? IS NULL", Vars: []any{col}}, nil
		}
		return clause.Expr{SQL: "? IS NOT NULL", Vars: []any{col}}, nil
	}
	return nil, fmt.Errorf("%w: %s.%s: unknown operator %s", ErrInvalid, r.model, field.Name, quote(string(op)))
}

// compileCodeFilter compiles a field condition made in code: any field of
// the model, its value taken as it is (one value, not an SQL expression).
func (r *fieldResolver) compileCodeFilter(f Filter, c *compiled) (clause.Expression, error) {
	field, col, err := r.column(f.Field, false, c)
	if err != nil {
		return nil, err
	}
	check := func(v any) error {
		if err := checkScalar(r.model, field, v); err != nil {
			return err
		}
		return checkTextValue(r.model, field, v)
	}
	switch f.Op {
	case OpEq, OpNe, OpLt, OpLte, OpGt, OpGte:
		if err := check(f.Value); err != nil {
			return nil, err
		}
		if f.Value == nil && f.Op != OpEq && f.Op != OpNe {
			return nil, fmt.Errorf("%w: %s.%s %s: a null value only goes with Eq, Ne or IsNull", ErrInvalid, r.model, field.Name, f.Op)
		}
		return comparison(f.Op, col, f.Value), nil
	case OpIn:
		values, _ := f.Value.([]any)
		for _, v := range values {
			if err := check(v); err != nil {
				return nil, err
			}
		}
		if len(values) == 0 {
			return clause.Expr{SQL: "false"}, nil
		}
		return clause.IN{Column: col, Values: values}, nil
	case OpLike:
		if indirect(field.FieldType).Kind() != reflect.String {
			return nil, fmt.Errorf("%w: %s.%s: Like needs a text field", ErrInvalid, r.model, field.Name)
		}
		if err := check(f.Value); err != nil {
			return nil, err
		}
		return clause.Expr{SQL: "? LIKE ?", Vars: []any{col, f.Value}}, nil
	case OpIsNull:
		return clause.Expr{SQL: "? IS NULL", Vars: []any{col}}, nil
	}
	return nil, fmt.Errorf("%w: %s.%s: unknown operator %s", ErrInvalid, r.model, field.Name, quote(string(f.Op)))
}

// comparison is col op v for op one of eq, ne, lt, lte, gt, gte; a nil v
// with eq or ne is IS (NOT) NULL, as GORM writes it.
func comparison(op Op, col clause.Column, v any) clause.Expression {
	switch op {
	case OpEq:
		return clause.Eq{Column: col, Value: v}
	case OpNe:
		return clause.Neq{Column: col, Value: v}
	case OpLt:
		return clause.Lt{Column: col, Value: v}
	case OpLte:
		return clause.Lte{Column: col, Value: v}
	case OpGt:
		return clause.Gt{Column: col, Value: v}
	}
	return clause.Gte{Column: col, Value: v}
}

// anyOf is clause.Or without its trap: GORM joins a one-element
// OrConditions to its neighbours with OR, so "a AND Or(b)" would read
// "a OR b".
func anyOf(exprs ...clause.Expression) clause.Expression {
	if len(exprs) == 1 {
		return exprs[0]
	}
	return clause.Or(exprs...)
}

// escapeLike makes s match itself in a LIKE pattern (backslash is
// PostgreSQL's default escape character).
func escapeLike(s string) string { return likeEscaper.Replace(s) }

// likeEscaper escapes LIKE's wildcards and its escape character.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func (r *fieldResolver) convertList(field *schema.Field, v any) ([]any, error) {
	var items []any
	switch vs := v.(type) {
	case []any:
		items = vs
	case []string:
		for _, s := range vs {
			items = append(items, s)
		}
	default:
		rv := reflect.ValueOf(v)
		if v == nil || rv.Kind() != reflect.Slice {
			return nil, fmt.Errorf("%w: %s.%s: in and nin take a list", ErrInvalid, r.model, field.Name)
		}
		for i := range rv.Len() {
			items = append(items, rv.Index(i).Interface())
		}
	}
	if len(items) == 0 || len(items) > r.limits.MaxInValues {
		return nil, fmt.Errorf("%w: %s.%s: in and nin take 1 to %d values, got %d", ErrInvalid, r.model, field.Name, r.limits.MaxInValues, len(items))
	}
	for _, item := range items { // all, before converting any
		if err := r.checkLen(field, item, r.limits.MaxValueBytes, "value"); err != nil {
			return nil, err
		}
	}
	out := make([]any, len(items))
	for i, item := range items {
		c, err := r.convert(field, item)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("%w: %s.%s: in and nin take no null value: use isnull", ErrInvalid, r.model, field.Name)
		}
		out[i] = c
	}
	return out, nil
}

var (
	scannerType = reflect.TypeFor[sql.Scanner]()
	uuidType    = reflect.TypeFor[uuid.UUID]()
)

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// convert turns v into a value of field's type: strings from a query string
// and float64s from JSON are parsed; values of the field's type pass. The
// error names the field and the expected type, never the value.
func (r *fieldResolver) convert(field *schema.Field, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	target := indirect(field.FieldType)
	bad := func(want string) error {
		return fmt.Errorf("%w: %s.%s: the value is not %s", ErrInvalid, r.model, field.Name, want)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil, nil
		}
		rv = rv.Elem()
		v = rv.Interface()
	}
	if rv.Kind() == reflect.String { // no type PostgreSQL reads from text takes these
		if why := badText(rv.String()); why != "" {
			return nil, textError(r.model, field, why)
		}
	}
	if rv.Type() == target || rv.Type().ConvertibleTo(target) && rv.Kind() == target.Kind() {
		if err := checkScalar(r.model, field, v); err != nil {
			return nil, err
		}
		return v, nil
	}
	if n, ok := convertNumber(rv, target); ok {
		return n, nil
	} else if (rv.CanInt() || rv.CanUint()) && isNumber(target.Kind()) {
		return nil, bad("in the range of " + target.String())
	}
	switch x := v.(type) {
	case string:
		return parseAs(target, x, bad)
	case float64: // encoding/json's number
		switch target.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if x != float64(int64(x)) {
				return nil, bad("an integer")
			}
			return parseAs(target, strconv.FormatInt(int64(x), 10), bad)
		case reflect.Float32, reflect.Float64:
			return x, nil
		}
	case bool:
		if target.Kind() == reflect.Bool {
			return x, nil
		}
	}
	return nil, bad("of type " + target.String())
}

func isNumber(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64 && k != reflect.Uintptr
}

// convertNumber converts between integer and float kinds when the value
// fits the target exactly (an int64 5 for an int field, say).
func convertNumber(v reflect.Value, target reflect.Type) (any, bool) {
	out := reflect.New(target).Elem()
	switch {
	case v.CanInt() && out.CanInt():
		if out.OverflowInt(v.Int()) {
			return nil, false
		}
		out.SetInt(v.Int())
	case v.CanUint() && out.CanUint():
		if out.OverflowUint(v.Uint()) {
			return nil, false
		}
		out.SetUint(v.Uint())
	case v.CanInt() && out.CanUint():
		if v.Int() < 0 || out.OverflowUint(uint64(v.Int())) {
			return nil, false
		}
		out.SetUint(uint64(v.Int()))
	case v.CanUint() && out.CanInt():
		if v.Uint() > 1<<63-1 || out.OverflowInt(int64(v.Uint())) {
			return nil, false
		}
		out.SetInt(int64(v.Uint()))
	case v.CanFloat() && out.CanFloat():
		if out.OverflowFloat(v.Float()) {
			return nil, false
		}
		out.SetFloat(v.Float())
	default:
		return nil, false
	}
	return out.Interface(), true
}

// parseAs parses s as a value of type t.
func parseAs(t reflect.Type, s string, bad func(string) error) (any, error) {
	switch {
	case t == uuidType:
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, bad("a UUID")
		}
		return id, nil
	case t == timeType:
		for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
			if tm, err := time.Parse(layout, s); err == nil {
				return tm, nil
			}
		}
		return nil, bad("an RFC 3339 time or a date")
	case reflect.PointerTo(t).Implements(scannerType):
		p := reflect.New(t)
		if err := p.Interface().(sql.Scanner).Scan(s); err != nil {
			return nil, bad("valid for " + t.String())
		}
		return p.Elem().Interface(), nil
	}
	out := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.String:
		out.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, bad("a boolean")
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return nil, bad("an integer of " + strconv.Itoa(t.Bits()) + " bits")
		}
		out.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return nil, bad("an unsigned integer of " + strconv.Itoa(t.Bits()) + " bits")
		}
		out.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, t.Bits())
		if err != nil {
			return nil, bad("a number")
		}
		out.SetFloat(f)
	default:
		return nil, bad("of type " + t.String())
	}
	return out.Interface(), nil
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		return strconv.ParseBool(x)
	}
	return false, fmt.Errorf("not a boolean")
}
