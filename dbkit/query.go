package dbkit

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// QueryOption is what the repository's reads and writes by condition take:
// conditions ([Filter], made in code by [Eq], [Gt], [In], [Or]... or from
// request input), which combine with AND, and the shape of the result
// (order, limit, soft-deleted rows, row locks, preloads, columns). Count,
// Exists, UpdateWhere and DeleteWhere take conditions and [WithDeleted],
// [OnlyDeleted] and [AllRows] only.
type QueryOption interface {
	apply(q *query)
}

type limitOption int

func (l limitOption) apply(q *query) { q.limit, q.limitSet = int(l), true }

// Limit returns at most n rows; n must be positive.
func Limit(n int) QueryOption { return limitOption(n) }

type orderOption struct {
	field string
	desc  bool
	input bool   // from SortBy: only fields input may name
	spec  string // a SortBy specification, parsed when compiled, with the repository's limits
}

func (o orderOption) apply(q *query) { q.order = append(q.order, o) }

type sortSpec string

func (s sortSpec) apply(q *query) {
	q.order = append(q.order, orderOption{spec: string(s), input: true})
}

// SortBy sorts by a specification from input such as "-created_at,name":
// comma-separated fields, each descending when prefixed with "-" (ascending
// with "+" or nothing). Fields are checked like [Filter] fields. Whenever a
// query is sorted, the primary key is appended as the last key (unless
// present), so that rows that tie come in the same order every time.
func SortBy(spec string) QueryOption { return sortSpec(spec) }

// SortField is one key of a sort specification.
type SortField struct {
	Field string
	Desc  bool
}

// ParseSort parses a sort specification such as "-created_at,name". It
// checks the syntax, and the default [InputLimits] (at most [MaxSortFields]
// fields, names of at most [DefaultMaxNameBytes]); fields are checked
// against the model when used.
func ParseSort(spec string) ([]SortField, error) {
	return parseSort(spec, MaxSortFields, DefaultMaxNameBytes)
}

// parseSort parses spec, refusing more than maxFields fields or a name
// longer than maxName bytes before splitting it.
func parseSort(spec string, maxFields, maxName int) ([]SortField, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	if strings.Count(spec, ",") >= maxFields {
		return nil, fmt.Errorf("%w: sort: at most %d fields", ErrInvalid, maxFields)
	}
	parts := strings.Split(spec, ",")
	out := make([]SortField, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		f := SortField{Field: p}
		switch {
		case strings.HasPrefix(p, "-"):
			f = SortField{Field: p[1:], Desc: true}
		case strings.HasPrefix(p, "+"):
			f.Field = p[1:]
		}
		if len(f.Field) > maxName {
			return nil, fmt.Errorf("%w: sort: the field name %s is longer than the limit of %d bytes", ErrInvalid, quote(f.Field), maxName)
		}
		if !validSortName(f.Field) {
			return nil, fmt.Errorf("%w: sort: %s is not a field name", ErrInvalid, quote(f.Field))
		}
		out = append(out, f)
	}
	return out, nil
}

// MaxSortFields is the default bound on the fields of a sort specification
// from input (see [InputLimits]).
const MaxSortFields = 8

// validSortName accepts what a column, JSON or Go field name can be; the
// name is then looked up in the schema, so this only rejects noise early.
func validSortName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// OrderBy sorts by field, ascending, then by any later OrderBy/OrderByDesc.
func OrderBy(field string) QueryOption { return orderOption{field: field} }

// OrderByDesc sorts by field, descending.
func OrderByDesc(field string) QueryOption { return orderOption{field: field, desc: true} }

type query struct {
	filters     []Filter
	all         bool // AllRows: a write by condition may have none
	order       []orderOption
	limit       int
	limitSet    bool
	withDeleted bool
	onlyDeleted bool
	lock        lockOption
	preloads    []string
	selects     []string
	errs        []error // found while applying options
}

type scopeOption struct{ only bool }

func (o scopeOption) apply(q *query) {
	q.withDeleted = true
	q.onlyDeleted = q.onlyDeleted || o.only
}

// WithDeleted includes soft-deleted rows (see [SoftDelete]); without it
// they are left out. It is a no-op for models without soft delete.
func WithDeleted() QueryOption { return scopeOption{} }

// OnlyDeleted matches soft-deleted rows only. It is an error matching
// [ErrInvalid] for a model without [SoftDelete].
func OnlyDeleted() QueryOption { return scopeOption{only: true} }

type allRows struct{}

func (allRows) apply(q *query) { q.all = true }

// AllRows lets [Repository.UpdateWhere] and [Repository.DeleteWhere]
// run with no condition, on every row: without it they refuse to, with an
// error matching [ErrInvalid], so that a filter left empty by mistake (an
// empty request, a condition dropped in a refactor) does not write the
// whole table. Reads ignore it.
func AllRows() QueryOption { return allRows{} }

type lockOption struct{ strength, wait string }

func (o lockOption) apply(q *query) {
	if o.strength != "" {
		q.lock.strength = o.strength
	}
	if o.wait != "" {
		q.lock.wait = o.wait
	}
}

// ForUpdate locks the rows read (SELECT ... FOR UPDATE) until the
// transaction ends: another transaction's FOR UPDATE, UPDATE or DELETE of
// them waits. It needs a transaction ([DB.InTx]): outside one it is an error
// matching [ErrNoTx].
func ForUpdate() QueryOption { return lockOption{strength: clause.LockingStrengthUpdate} }

// ForShare locks the rows read against changes (FOR SHARE) until the
// transaction ends; other readers may share the lock. It needs a transaction.
func ForShare() QueryOption { return lockOption{strength: clause.LockingStrengthShare} }

// SkipLocked makes ForUpdate or ForShare skip the rows another transaction
// has locked instead of waiting for them: the way N workers claim jobs from
// one table without blocking each other.
func SkipLocked() QueryOption { return lockOption{wait: clause.LockingOptionsSkipLocked} }

// NoWait makes ForUpdate or ForShare fail at once (SQLSTATE 55P03) rather
// than wait for a row another transaction has locked.
func NoWait() QueryOption { return lockOption{wait: clause.LockingOptionsNoWait} }

type preloadOption []string

func (o preloadOption) apply(q *query) { q.preloads = append(q.preloads, o...) }

// Preload loads the named associations of the rows read, in one more query
// each: "Orders", or nested, "Orders.Items". Names are checked against the
// model's relationships; an unknown one is an error matching [ErrInvalid].
func Preload(associations ...string) QueryOption { return preloadOption(associations) }

type selectOption []string

func (o selectOption) apply(q *query) { q.selects = append(q.selects, o...) }

// Select reads only the named fields (checked like [Filter] fields; the
// primary key is always read). The other fields of the rows returned are
// left zero.
func Select(fields ...string) QueryOption { return selectOption(fields) }

// compiled is a query resolved against a model's schema: every identifier
// known, every value a parameter.
type compiled struct {
	where      clause.Where
	order      []clause.OrderByColumn
	sortFields []*schema.Field // the fields of order, in order
	limit      int
	unscoped   bool            // soft-deleted rows included
	lock       *clause.Locking // FOR UPDATE/SHARE
	preloads   []string
	selects    []string    // column names
	all        bool        // AllRows
	joins      []*relation // associations the conditions or the order name
	whereJoins int         // how many of joins, first, the conditions name
}

func (c *compiled) hasWhere() bool { return len(c.where.Exprs) > 0 }

// forCount keeps what decides which rows match: conditions and the
// soft-delete scope.
func (c compiled) forCount() compiled {
	return compiled{where: c.where, unscoped: c.unscoped, joins: c.joins[:c.whereJoins]}
}

// compileQuery resolves every field of opts: conditions and orders from code
// against the whole schema, filters and sorts from input against the fields
// input may name. Nothing reaches SQL that was not checked here.
func compileQuery(r *fieldResolver, opts []QueryOption, condsOnly bool) (compiled, error) {
	var q query
	for _, o := range opts {
		if o != nil {
			o.apply(&q)
		}
	}
	var c compiled
	if len(q.errs) > 0 {
		return c, q.errs[0]
	}
	if condsOnly && (len(q.order) > 0 || q.limitSet || q.lock.strength != "" || q.lock.wait != "" ||
		len(q.preloads) > 0 || len(q.selects) > 0) {
		return c, fmt.Errorf("%w: takes conditions only: no order, limit, row lock, preload or select", ErrInvalid)
	}
	if n := len(q.filters); n > 0 {
		c.where.Exprs = make([]clause.Expression, 0, n)
	}
	c.all = q.all
	leaves := 0
	for _, f := range q.filters { // all counted before any is compiled
		if leaves += f.leafCount(); leaves > r.limits.MaxFilters {
			return c, fmt.Errorf("%w: more than %d filter conditions", ErrInvalid, r.limits.MaxFilters)
		}
	}
	for _, f := range q.filters {
		e, err := r.compileFilter(f, 0, &c)
		if err != nil {
			return c, err
		}
		if e != nil { // an empty filter: no condition
			c.where.Exprs = append(c.where.Exprs, e)
		}
	}
	c.whereJoins = len(c.joins)
	order, err := r.expandSorts(q.order)
	if err != nil {
		return c, err
	}
	pk := r.schema.PrioritizedPrimaryField
	hasPK := false
	for _, o := range order {
		f, col, err := r.column(o.field, o.input, &c)
		if err != nil {
			return c, err
		}
		hasPK = hasPK || col.Table == clause.CurrentTable && f == pk
		c.order = append(c.order, clause.OrderByColumn{Column: col, Desc: o.desc})
		c.sortFields = append(c.sortFields, f)
	}
	if len(c.order) > 0 && !hasPK && pk != nil {
		c.order = append(c.order, clause.OrderByColumn{Column: clause.Column{Table: clause.CurrentTable, Name: pk.DBName}})
		c.sortFields = append(c.sortFields, pk)
	}
	if q.limitSet && q.limit <= 0 {
		return c, fmt.Errorf("%w: %s: limit must be positive, got %d", ErrInvalid, r.model, q.limit)
	}
	c.limit = q.limit
	if err := r.compileScope(&c, q); err != nil {
		return c, err
	}
	return c, nil
}

// expandSorts replaces each SortBy specification among order by its
// fields, parsed with the repository's limits, which bound the whole sort.
func (r *fieldResolver) expandSorts(order []orderOption) ([]orderOption, error) {
	if !slices.ContainsFunc(order, func(o orderOption) bool { return o.input }) {
		return order, nil
	}
	out := make([]orderOption, 0, len(order))
	fromInput := 0
	for _, o := range order {
		if !o.input {
			out = append(out, o)
			continue
		}
		fields, err := parseSort(o.spec, r.limits.MaxSortFields, r.maxName)
		if err != nil {
			return nil, err
		}
		if fromInput += len(fields); fromInput > r.limits.MaxSortFields {
			return nil, fmt.Errorf("%w: sort: at most %d fields", ErrInvalid, r.limits.MaxSortFields)
		}
		for _, f := range fields {
			out = append(out, orderOption{field: f.Field, desc: f.Desc, input: true})
		}
	}
	return out, nil
}

// compileScope resolves soft-delete scopes, row locks, preloads and
// selected fields.
func (r *fieldResolver) compileScope(c *compiled, q query) error {
	if q.withDeleted {
		c.unscoped = true
	}
	if q.onlyDeleted {
		f := r.deletedAt
		if f == nil {
			return fmt.Errorf("%w: %s has no soft delete: OnlyDeleted does not apply", ErrInvalid, r.model)
		}
		c.where.Exprs = append(c.where.Exprs, clause.Expr{SQL: "? IS NOT NULL",
			Vars: []any{clause.Column{Table: clause.CurrentTable, Name: f.DBName}}})
	}
	if q.lock.wait != "" && q.lock.strength == "" {
		return fmt.Errorf("%w: SkipLocked and NoWait go with ForUpdate or ForShare", ErrInvalid)
	}
	if q.lock.strength != "" {
		c.lock = &clause.Locking{Strength: q.lock.strength, Options: q.lock.wait}
	}
	for _, p := range q.preloads {
		if err := checkAssociation(r.schema, r.model, p); err != nil {
			return err
		}
		c.preloads = append(c.preloads, p)
	}
	if len(q.selects) > 0 {
		pk := r.schema.PrioritizedPrimaryField
		c.selects = []string{pk.DBName}
		for _, name := range q.selects {
			f, err := r.field(name)
			if err != nil {
				return err
			}
			if f != pk && !slices.Contains(c.selects, f.DBName) {
				c.selects = append(c.selects, f.DBName)
			}
		}
	}
	return nil
}

// checkAssociation checks a dotted association path against the model's
// relationships, level by level.
func checkAssociation(s *schema.Schema, model, path string) error {
	current := s
	for _, name := range strings.Split(path, ".") {
		rel, ok := current.Relationships.Relations[name]
		if !ok {
			return fmt.Errorf("%w: %s has no association %s", ErrInvalid, model, quote(path))
		}
		current = rel.FieldSchema
	}
	return nil
}

var deletedAtType = reflect.TypeFor[gorm.DeletedAt]()

// softDeleteField returns the model's gorm.DeletedAt field, or nil.
func softDeleteField(s *schema.Schema) *schema.Field {
	for _, f := range s.Fields {
		if f.FieldType == deletedAtType && f.DBName != "" {
			return f
		}
	}
	return nil
}

func lookupField(s *schema.Schema, model, name string) (*schema.Field, error) {
	f := s.LookUpField(name)
	if f == nil || f.DBName == "" {
		return nil, fmt.Errorf("%w: %s has no field %s", ErrInvalid, model, quote(name))
	}
	return f, nil
}

var (
	valuerType     = reflect.TypeFor[driver.Valuer]()
	expressionType = reflect.TypeFor[clause.Expression]()
	timeType       = reflect.TypeFor[time.Time]()
)

// checkScalar accepts the values Eq can send as one bound parameter: nil,
// booleans, numbers, strings, []byte, time.Time, types that convert
// themselves (driver.Valuer, such as uuid.UUID), and pointers to those. It
// refuses SQL expressions (gorm.Expr, clause.Expr, a *gorm.DB subquery),
// which GORM would write into the statement, and slices, arrays and maps,
// which GORM would expand into a list.
func checkScalar(model string, f *schema.Field, v any) error {
	if v == nil {
		return nil
	}
	t := reflect.TypeOf(v)
	if _, ok := v.(gorm.Valuer); ok {
		// GormValue returns an expression GORM writes into the SQL as is.
		return fmt.Errorf("%w: %s.%s: a value, not an SQL expression (%s is a gorm.Valuer)", ErrInvalid, model, f.Name, t)
	}
	if t.Implements(expressionType) || reflect.PointerTo(t).Implements(expressionType) {
		return fmt.Errorf("%w: %s.%s: a condition takes a value, not an SQL expression (%s)", ErrInvalid, model, f.Name, t)
	}
	if t.Implements(valuerType) {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if t.Implements(expressionType) {
			return fmt.Errorf("%w: %s.%s: a condition takes a value, not an SQL expression (%s)", ErrInvalid, model, f.Name, t)
		}
		if t.Implements(valuerType) || reflect.PointerTo(t).Implements(valuerType) {
			return nil
		}
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
	case reflect.Struct:
		if t == timeType {
			return nil
		}
	}
	return fmt.Errorf("%w: %s.%s: a condition takes a single value, not a %s (In takes its values one by one: In(field, v1, v2) or In(field, values...))", ErrInvalid, model, f.Name, t)
}
