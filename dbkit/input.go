package dbkit

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"gorm.io/gorm/schema"
)

// InputLimits bounds what input from a request ([Filter], [SortBy],
// [Select], [PageRequest]) can make a repository do, so that a request
// cannot buy unbounded work from the database, or an unbounded error
// message from dbkit. Past a limit a call fails with an error matching
// [ErrInvalid], before any SQL, naming the field and the limit.
//
// A zero field takes its default; a negative one makes the repository
// unusable (every call fails with ErrInvalid). To lift a limit, set it to
// math.MaxInt.
type InputLimits struct {
	// MaxValueBytes bounds a filter value given as a string (eq, ne, lt,
	// lte, gt, gte, and each value of in and nin). Default
	// [DefaultMaxValueBytes].
	MaxValueBytes int
	// MaxPatternBytes bounds the value of like and ilike, whose cost grows
	// with its length times the length of every text scanned. Default
	// [DefaultMaxPatternBytes].
	MaxPatternBytes int
	// MaxNameBytes bounds a field name in a filter, sort or select. Names
	// the model itself has are accepted whatever their length. Default
	// [DefaultMaxNameBytes].
	MaxNameBytes int
	// MaxSortFields bounds the fields of a sort. Default [MaxSortFields].
	MaxSortFields int
	// MaxFilters bounds the conditions of all filters of a call, groups
	// included. Default [MaxFilterLeaves].
	MaxFilters int
	// MaxFilterDepth bounds the nesting of filter groups. Default
	// [MaxFilterDepth].
	MaxFilterDepth int
	// MaxInValues bounds the values of one in or nin. Default [MaxInValues].
	MaxInValues int
	// MaxOffset bounds the rows FindPage skips, (Page-1)*Size: OFFSET reads
	// and discards each of them. Default [DefaultMaxOffset].
	MaxOffset int
}

// Defaults of [InputLimits] (the others are [MaxSortFields],
// [MaxFilterLeaves], [MaxFilterDepth] and [MaxInValues]).
const (
	// DefaultMaxValueBytes is longer than the keys filters compare in
	// practice (an email address is at most 254 bytes, a URL rarely past
	// 1,000) and far below what makes a comparison cost.
	DefaultMaxValueBytes = 1024
	// DefaultMaxPatternBytes fits any search box: a pattern of 1 MB cost
	// 24 ms per row scanned, so 256 bytes bounds it near 6 µs a row.
	DefaultMaxPatternBytes = 256
	// DefaultMaxNameBytes is PostgreSQL's identifier length (63 bytes) and
	// one: a longer name is no column of any table.
	DefaultMaxNameBytes = 64
	// DefaultMaxOffset lets FindPage reach page 5,001 of 20 rows or 1,001
	// of 100, which already costs about 58 times page 1; deeper is
	// FindCursor's work.
	DefaultMaxOffset = 100_000
)

// DefaultInputLimits returns the limits a repository has unless it is made
// with [Limits].
func DefaultInputLimits() InputLimits {
	return InputLimits{
		MaxValueBytes:   DefaultMaxValueBytes,
		MaxPatternBytes: DefaultMaxPatternBytes,
		MaxNameBytes:    DefaultMaxNameBytes,
		MaxSortFields:   MaxSortFields,
		MaxFilters:      MaxFilterLeaves,
		MaxFilterDepth:  MaxFilterDepth,
		MaxInValues:     MaxInValues,
		MaxOffset:       DefaultMaxOffset,
	}
}

// Limits sets the repository's [InputLimits]; zero fields keep their
// defaults.
func Limits(l InputLimits) RepositoryOption { return func(o *repoOptions) { o.limits = l } }

// withDefaults fills l's zero fields with the defaults and checks the rest.
func (l InputLimits) withDefaults() (InputLimits, error) {
	d := DefaultInputLimits()
	for _, f := range []struct {
		name      string
		v         *int
		otherwise int
	}{
		{"MaxValueBytes", &l.MaxValueBytes, d.MaxValueBytes},
		{"MaxPatternBytes", &l.MaxPatternBytes, d.MaxPatternBytes},
		{"MaxNameBytes", &l.MaxNameBytes, d.MaxNameBytes},
		{"MaxSortFields", &l.MaxSortFields, d.MaxSortFields},
		{"MaxFilters", &l.MaxFilters, d.MaxFilters},
		{"MaxFilterDepth", &l.MaxFilterDepth, d.MaxFilterDepth},
		{"MaxInValues", &l.MaxInValues, d.MaxInValues},
		{"MaxOffset", &l.MaxOffset, d.MaxOffset},
	} {
		switch {
		case *f.v < 0:
			return l, fmt.Errorf("%w: InputLimits.%s is negative", ErrInvalid, f.name)
		case *f.v == 0:
			*f.v = f.otherwise
		}
	}
	return l, nil
}

// quoteMax is how much of a piece of input a message quotes.
const quoteMax = 32

// quote renders input for an error message: quoted and escaped as %q does,
// whole when it is short, else its first bytes (cut on a character
// boundary), an ellipsis and its length. Every message that quotes request
// input goes through it, so that no message grows with the input.
func quote(s string) string {
	if len(s) <= quoteMax {
		return strconv.Quote(s)
	}
	cut := 0
	for cut < len(s) {
		_, n := utf8.DecodeRuneInString(s[cut:])
		if cut+n > quoteMax {
			break
		}
		cut += n
	}
	return strconv.Quote(s[:cut]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// badText says what makes s unfit for a text column, "" when nothing
// does: PostgreSQL stores valid UTF-8 without NUL bytes, and refuses the
// rest with SQLSTATE 22021.
func badText(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return "holds a NUL byte"
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	return ""
}

// textError is the error of a value badText refuses, naming the field.
func textError(model string, f *schema.Field, why string) error {
	return fmt.Errorf("%w: %s.%s: the value %s", ErrInvalid, model, f.Name, why)
}

// checkTextValue refuses a string, or a pointer to one, that badText
// refuses.
func checkTextValue(model string, f *schema.Field, v any) error {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case *string:
		if x == nil {
			return nil
		}
		s = *x
	default:
		rv := reflect.ValueOf(v)
		for rv.Kind() == reflect.Pointer && !rv.IsNil() {
			rv = rv.Elem()
		}
		if rv.Kind() != reflect.String {
			return nil
		}
		s = rv.String()
	}
	if why := badText(s); why != "" {
		return textError(model, f, why)
	}
	return nil
}

// textPlan lists the fields of a model that hold text on their way to the
// database: strings, named string types and pointers to them, embedded
// ones included, but not those that convert themselves (driver.Valuer),
// have a GORM serializer or go to a bytea column. It is built once per
// repository; checking a row is a loop over these fields.
type textPlan []textField

type textField struct {
	field *schema.Field
	index []int // GORM's path to the field: negative for a field of an embedded pointer, -i-1
}

func newTextPlan(s *schema.Schema) textPlan {
	var p textPlan
	for _, f := range s.Fields {
		t := f.FieldType
		if f.DBName == "" || f.Serializer != nil || indirect(t).Kind() != reflect.String ||
			t.Implements(valuerType) || reflect.PointerTo(t).Implements(valuerType) ||
			strings.EqualFold(string(f.DataType), "bytea") {
			continue
		}
		p = append(p, textField{field: f, index: f.StructField.Index})
	}
	return p
}

// check refuses a row (a struct value) with a text field badText refuses.
func (p textPlan) check(model string, row reflect.Value) error {
	for _, tf := range p {
		v := row
		for _, i := range tf.index {
			if i < 0 {
				v = v.Field(-i - 1)
				if v.IsNil() {
					break
				}
				v = v.Elem()
				continue
			}
			v = v.Field(i)
		}
		if v.Kind() == reflect.Pointer { // a *string, or a nil embedded pointer on the way
			if v.IsNil() {
				continue
			}
			v = v.Elem()
		}
		if why := badText(v.String()); why != "" {
			return textError(model, tf.field, why)
		}
	}
	return nil
}

// checkRows refuses items when one has a text field badText refuses,
// naming the item when there are several.
func (b *Repository[T, K]) checkRows(items []T) error {
	if len(b.text) == 0 {
		return nil
	}
	for i := range items {
		if err := b.text.check(b.model, reflect.ValueOf(&items[i]).Elem()); err != nil {
			if len(items) > 1 {
				return fmt.Errorf("item %d: %w", i, err)
			}
			return err
		}
	}
	return nil
}
