package dbkit

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"time"

	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// QueryOption shapes [BaseDatabase.Find]: conditions, order and limit.
type QueryOption interface {
	apply(q *query)
}

// Condition is a filter on one field, made by [Eq]. Conditions combine with AND.
type Condition struct {
	field string
	value any
}

// Eq matches rows whose field equals value; a nil value matches NULL. The
// field is a Go field name ("Email") or a column name ("email") of the model;
// an unknown one is an error matching [ErrInvalid], returned before any SQL
// is sent. The value is always sent as a bound parameter.
func Eq(field string, value any) Condition { return Condition{field: field, value: value} }

func (c Condition) apply(q *query) { q.conds = append(q.conds, c) }

type limitOption int

func (l limitOption) apply(q *query) { q.limit, q.limitSet = int(l), true }

// Limit returns at most n rows; n must be positive.
func Limit(n int) QueryOption { return limitOption(n) }

type orderOption struct {
	field string
	desc  bool
}

func (o orderOption) apply(q *query) { q.order = append(q.order, o) }

// OrderBy sorts by field, ascending, then by any later OrderBy/OrderByDesc.
func OrderBy(field string) QueryOption { return orderOption{field: field} }

// OrderByDesc sorts by field, descending.
func OrderByDesc(field string) QueryOption { return orderOption{field: field, desc: true} }

type query struct {
	conds    []Condition
	order    []orderOption
	limit    int
	limitSet bool
}

// compiled is a query resolved against a model's schema: every identifier
// known, every value a parameter.
type compiled struct {
	where clause.Where
	order []clause.OrderByColumn
	limit int
}

func (c *compiled) hasWhere() bool { return len(c.where.Exprs) > 0 }

// compile resolves field names against s. It reports the first problem as
// an error wrapping ErrInvalid.
func compile(s *schema.Schema, model string, conds []Condition, opts []QueryOption) (compiled, error) {
	var q query
	q.conds = conds
	for _, o := range opts {
		if o == nil {
			continue
		}
		o.apply(&q)
	}
	var c compiled
	if len(q.conds) > 0 {
		c.where.Exprs = make([]clause.Expression, 0, len(q.conds))
	}
	for _, cond := range q.conds {
		f, err := lookupField(s, model, cond.field)
		if err != nil {
			return c, err
		}
		if err := checkScalar(model, f, cond.value); err != nil {
			return c, err
		}
		c.where.Exprs = append(c.where.Exprs, clause.Eq{
			Column: clause.Column{Table: clause.CurrentTable, Name: f.DBName},
			Value:  cond.value,
		})
	}
	for _, o := range q.order {
		f, err := lookupField(s, model, o.field)
		if err != nil {
			return c, err
		}
		c.order = append(c.order, clause.OrderByColumn{
			Column: clause.Column{Table: clause.CurrentTable, Name: f.DBName},
			Desc:   o.desc,
		})
	}
	if q.limitSet && q.limit <= 0 {
		return c, fmt.Errorf("%w: %s: limit must be positive, got %d", ErrInvalid, model, q.limit)
	}
	c.limit = q.limit
	return c, nil
}

func lookupField(s *schema.Schema, model, name string) (*schema.Field, error) {
	f := s.LookUpField(name)
	if f == nil || f.DBName == "" {
		return nil, fmt.Errorf("%w: %s has no field %q", ErrInvalid, model, name)
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
	if t.Implements(expressionType) || reflect.PointerTo(t).Implements(expressionType) {
		return fmt.Errorf("%w: %s.%s: Eq takes a value, not an SQL expression (%s)", ErrInvalid, model, f.Name, t)
	}
	if t.Implements(valuerType) {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if t.Implements(expressionType) {
			return fmt.Errorf("%w: %s.%s: Eq takes a value, not an SQL expression (%s)", ErrInvalid, model, f.Name, t)
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
	return fmt.Errorf("%w: %s.%s: Eq takes a single value, not a %s", ErrInvalid, model, f.Name, t)
}
