package dbkit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/dbkit-go/database/tracing"
)

// DefaultMaxPageSize caps the page size of FindPage and FindCursor unless
// the repository is made with [MaxPageSize].
const DefaultMaxPageSize = 100

// RepositoryOption configures a [BaseDatabase].
type RepositoryOption func(*repoOptions)

type repoOptions struct {
	maxPageSize int
	limits      InputLimits
	inputFields []string
	patchable   []string
}

// MaxPageSize caps the page size a caller may ask for; larger sizes are
// reduced to it (the returned page says the size used).
func MaxPageSize(n int) RepositoryOption { return func(o *repoOptions) { o.maxPageSize = n } }

// InputFields restricts the fields that input ([Filter], [SortBy],
// [Select]) may name to these (Go, column or JSON names). Without it every
// column may be named except those tagged json:"-" or dbkit:"nofilter" (or
// embedded in a struct so tagged): an allow list is the safer choice for a
// model with columns a client must not probe.
func InputFields(fields ...string) RepositoryOption {
	return func(o *repoOptions) { o.inputFields = append(o.inputFields, fields...) }
}

// Patchable names the fields [Repository.Patch] may set (Go, column or
// JSON names), in addition to fields tagged dbkit:"patch". Patch sets no
// other field: a request body cannot reach a column nobody listed.
func Patchable(fields ...string) RepositoryOption {
	return func(o *repoOptions) { o.patchable = append(o.patchable, fields...) }
}

// PageRequest asks for one page of an offset pagination.
type PageRequest struct {
	Page      int  // 1-based
	Size      int  // rows per page, at most the repository's maximum
	WithTotal bool // also count the matching rows (one more query)
}

// Page is one page of rows, with the total count when it was asked for.
type Page[T any] struct {
	Items []T    `json:"items"`
	Page  int    `json:"page"`
	Size  int    `json:"size"`
	Total *int64 `json:"total,omitempty"`
}

// FindPage returns page req.Page of the rows matching opts (filters and
// sort, as for Find; not Limit), LIMIT size OFFSET (page-1)*size. Without a
// sort the rows are ordered by primary key, so pages never overlap. The
// total costs a COUNT: it is computed only when req.WithTotal is set.
//
// OFFSET makes PostgreSQL read and discard every row before the page: the
// cost grows with the page number. Prefer [Repository.FindCursor] for deep
// pages or infinite scroll. A page or size below 1, a page that would skip
// more than [InputLimits].MaxOffset rows, or a Limit among opts, is an error
// matching [ErrInvalid].
func (b *Repository[T, K]) FindPage(ctx context.Context, req PageRequest, opts ...QueryOption) (Page[T], error) {
	if b.err != nil {
		return Page[T]{}, b.err
	}
	size, err := b.pageSize(req.Size)
	offset := 0
	if err == nil {
		offset, err = b.pageOffset(req.Page, size)
	}
	var q compiled
	if err == nil {
		q, err = b.compilePaged(ctx, opts)
	}
	if err != nil {
		return Page[T]{}, fmt.Errorf("dbkit: %s.FindPage: %w", b.model, err)
	}
	ctx, span := b.start(ctx, b.names.findPage)
	if span.IsRecording() {
		span.SetAttributes(tracing.PageSize.Int(size))
	}
	var page Page[T]
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		page = Page[T]{Page: req.Page, Size: size, Items: []T{}}
		if err := b.rowsOf(ctx, q).Limit(size).Offset(offset).Find(&page.Items).Error; err != nil || !req.WithTotal {
			return err
		}
		var total int64
		err := b.scoped(ctx, q.forCount()).Model(new(T)).Count(&total).Error
		page.Total = &total
		return err
	})
	if err != nil {
		return Page[T]{}, b.finish(ctx, span, "FindPage", err)
	}
	if b.db.returnedRows && span.IsRecording() {
		span.SetAttributes(tracing.DBReturnedRows.Int(len(page.Items)))
	}
	return page, b.finish(ctx, span, "FindPage", nil)
}

// pageSize checks a requested size and caps it.
func (b *Repository[T, K]) pageSize(size int) (int, error) {
	if size < 1 {
		return 0, fmt.Errorf("%w: page size must be 1 or more, got %d", ErrInvalid, size)
	}
	return min(size, b.opts.maxPageSize), nil
}

// pageOffset checks a page number and returns the rows before it,
// (page-1)*size, refusing an offset past MaxOffset before it can overflow.
func (b *Repository[T, K]) pageOffset(page, size int) (int, error) {
	if page < 1 {
		return 0, fmt.Errorf("%w: page must be 1 or more, got %d", ErrInvalid, page)
	}
	limit := b.fields.limits.MaxOffset
	if page-1 > limit/size {
		return 0, fmt.Errorf("%w: page %d of %d rows is past the deepest offset allowed, %d rows: use FindCursor for deep pages", ErrInvalid, page, size, limit)
	}
	return (page - 1) * size, nil
}

// compilePaged compiles opts for a paginated query: no Limit of its own, and
// the primary key as the order when none is given.
func (b *Repository[T, K]) compilePaged(ctx context.Context, opts []QueryOption) (compiled, error) {
	q, err := b.compileIn(ctx, opts)
	if err != nil {
		return q, err
	}
	if q.limit != 0 {
		return q, fmt.Errorf("%w: Limit does not go with pages: set the page size", ErrInvalid)
	}
	if len(q.order) == 0 {
		q.order = []clause.OrderByColumn{{Column: b.pk}}
		q.sortFields = []*schema.Field{b.schema.PrioritizedPrimaryField}
	}
	return q, nil
}

// CursorRequest asks for one page of a keyset ("cursor") pagination.
type CursorRequest struct {
	Cursor string // "" for the first page, else a Next or Prev of a previous page
	Size   int
}

// CursorPage is one page of a keyset pagination. Next and Prev are opaque
// cursors for the pages after and before, empty when there is none.
type CursorPage[T any] struct {
	Items []T    `json:"items"`
	Size  int    `json:"size"`
	Next  string `json:"next,omitempty"`
	Prev  string `json:"prev,omitempty"`
}

// FindCursor returns a page of the rows matching opts (filters and sort, as
// for Find; not Limit), starting after (or ending before) the position a
// cursor from a previous page encodes. Without a sort the rows are ordered by
// primary key.
//
// Keyset pagination asks PostgreSQL for "rows after this key", which an index
// on the sort columns answers directly: a page deep in a table costs about
// what the first page costs, unlike OFFSET. Rows inserted or deleted between
// two requests neither shift nor repeat rows. Any multi-column sort works,
// ascending or descending, with NULLs where PostgreSQL puts them (last
// ascending, first descending).
//
// A cursor carries the sort keys of its boundary row and a MAC (see
// [WithCursorKey]); one that was altered, or that belongs to another sort, is
// an error matching [ErrInvalid], never SQL.
//
// A sort field must be a pointer, or NOT NULL: a key, tagged gorm:"not null",
// or on a column the database declares NOT NULL. The repository reads those
// from PostgreSQL's catalog at the first FindCursor that needs them and keeps
// them; a read that fails is returned, and the next call reads again. Other
// sorts are errors matching [ErrInvalid].
func (b *Repository[T, K]) FindCursor(ctx context.Context, req CursorRequest, opts ...QueryOption) (CursorPage[T], error) {
	if b.err != nil {
		return CursorPage[T]{}, b.err
	}
	size, err := b.pageSize(req.Size)
	var q compiled
	if err == nil {
		q, err = b.compilePaged(ctx, opts)
	}
	if err == nil && len(q.joins) > 0 {
		err = fmt.Errorf("%w: conditions or sorts on an association's fields: its keyset cursor cannot hold them (use FindPage)", ErrInvalid)
	}
	var notNull []bool
	if err == nil {
		notNull, err = b.checkCursorSort(ctx, q)
	}
	var cur cursor
	if err == nil && req.Cursor != "" {
		cur, err = b.decodeCursor(req.Cursor, q)
	}
	if err != nil {
		return CursorPage[T]{}, fmt.Errorf("dbkit: %s.FindCursor: %w", b.model, err)
	}
	backward := req.Cursor != "" && cur.Before
	order := q.order
	if backward { // read towards the start, then put the rows back in order
		order = slices.Clone(order)
		for i := range order {
			order[i].Desc = !order[i].Desc
		}
	}
	read := q
	read.order, read.limit = order, size+1
	if req.Cursor != "" {
		read.where.Exprs = append(slices.Clone(q.where.Exprs), keysetAfter(order, notNull, cur.Keys))
	}

	ctx, span := b.start(ctx, b.names.findCursor)
	if span.IsRecording() {
		span.SetAttributes(tracing.PageSize.Int(size))
	}
	var rows []T
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		rows = nil
		return b.rowsOf(ctx, read).Find(&rows).Error
	})
	if err != nil {
		return CursorPage[T]{}, b.finish(ctx, span, "FindCursor", err)
	}
	more := len(rows) > size
	if more {
		rows = rows[:size]
	}
	if backward {
		slices.Reverse(rows)
	}
	page := CursorPage[T]{Items: rows, Size: size}
	if page.Items == nil {
		page.Items = []T{}
	}
	if len(rows) > 0 {
		first, last := &rows[0], &rows[len(rows)-1]
		hasNext, hasPrev := more, req.Cursor != ""
		if backward {
			hasNext, hasPrev = true, more
		}
		if hasNext {
			page.Next, err = b.encodeCursor(ctx, q, last, false)
		}
		if hasPrev && err == nil {
			page.Prev, err = b.encodeCursor(ctx, q, first, true)
		}
	}
	if err != nil {
		return CursorPage[T]{}, b.finish(ctx, span, "FindCursor", err)
	}
	if b.db.returnedRows && span.IsRecording() {
		span.SetAttributes(tracing.DBReturnedRows.Int(len(page.Items)))
	}
	return page, b.finish(ctx, span, "FindCursor", nil)
}

// checkCursorSort refuses sorts a cursor cannot carry: fields input may not
// name (their values would travel to the client in the cursor), key types a
// cursor cannot encode (both before any SQL), and fields that can hold NULL
// but read it as a zero value (the cursor would place a NULL row at "" or 0
// and pages would repeat). It returns which sort fields are NOT NULL, which
// it learns from the database's catalog when their tags do not say (see
// sortNotNull).
func (b *Repository[T, K]) checkCursorSort(ctx context.Context, q compiled) ([]bool, error) {
	for _, f := range q.sortFields {
		if f.PrimaryKey {
			continue
		}
		if visible, ok := b.fields.byName[f.DBName]; !ok || visible != f {
			return nil, fmt.Errorf("%w: %s.%s cannot sort cursor pages: the cursor would carry its values to the client", ErrInvalid, b.model, f.Name)
		}
		switch k := indirect(f.FieldType); {
		case k == timeType, k == uuidType:
		case isNumber(k.Kind()), k.Kind() == reflect.String, k.Kind() == reflect.Bool:
		default:
			return nil, fmt.Errorf("%w: %s.%s cannot sort cursor pages: a %s cannot be a cursor key", ErrInvalid, b.model, f.Name, k)
		}
	}
	notNull, err := b.sortNotNull(ctx, q.sortFields)
	if err != nil {
		return nil, err
	}
	for i, f := range q.sortFields {
		if !notNull[i] && f.FieldType.Kind() != reflect.Pointer {
			return nil, fmt.Errorf("%w: %s.%s cannot sort cursor pages: its column %s may hold NULL, which the field would read as a zero value, and pages would repeat: make the field a pointer, or the column NOT NULL (a view's: tag the field gorm:\"not null\")", ErrInvalid, b.model, f.Name, f.DBName)
		}
	}
	return notNull, nil
}

// keysetAfter is the condition "strictly after keys in order": the
// lexicographic comparison, spelled out so that it respects each column's
// direction and PostgreSQL's NULL placement (last ascending, first
// descending). When every column is NOT NULL and all go the same way it is a
// row comparison, (a, b) > ($1, $2), which an index on (a, b) serves.
func keysetAfter(order []clause.OrderByColumn, notNull []bool, keys []any) clause.Expression {
	sameWay, noNulls := true, true
	for i, o := range order {
		sameWay = sameWay && o.Desc == order[0].Desc
		noNulls = noNulls && notNull[i] && keys[i] != nil
	}
	if sameWay && noNulls {
		cols := make([]string, len(order))
		vars := make([]any, 0, 2*len(order))
		for i, o := range order {
			cols[i] = "?"
			vars = append(vars, o.Column)
		}
		vars = append(vars, keys...)
		op := ">"
		if order[0].Desc {
			op = "<"
		}
		list := strings.Join(cols, ", ")
		return clause.Expr{SQL: "(" + list + ") " + op + " (" + list + ")", Vars: vars}
	}
	var alternatives []clause.Expression
	for i, o := range order {
		var after clause.Expression
		switch {
		case !o.Desc && keys[i] != nil: // ascending, NULLs last
			after = anyOf(clause.Gt{Column: o.Column, Value: keys[i]}, clause.Expr{SQL: "? IS NULL", Vars: []any{o.Column}})
		case !o.Desc: // after NULL, ascending: nothing at this key
			after = nil
		case keys[i] != nil: // descending, NULLs first
			after = clause.Lt{Column: o.Column, Value: keys[i]}
		default: // after NULL, descending: every value
			after = clause.Expr{SQL: "? IS NOT NULL", Vars: []any{o.Column}}
		}
		if after != nil {
			conds := make([]clause.Expression, 0, i+1)
			for j := range i {
				conds = append(conds, clause.Eq{Column: order[j].Column, Value: keys[j]}) // nil: IS NULL
			}
			alternatives = append(alternatives, clause.And(append(conds, after)...))
		}
	}
	if len(alternatives) == 0 {
		return clause.Expr{SQL: "FALSE"}
	}
	return anyOf(alternatives...)
}

// cursor is the decoded content of a cursor string.
type cursor struct {
	Sort   string    `json:"s"`           // fingerprint of the sort it belongs to
	Before bool      `json:"b,omitempty"` // a Prev cursor: the page ends before Keys
	Raw    []*string `json:"k"`           // the keys as text, nil for NULL
	Keys   []any     `json:"-"`           // the keys converted to their fields' types
}

// sortFingerprint names the table and sort of q, so that a cursor is
// refused by a query of another repository or sorted otherwise.
func sortFingerprint(table string, q compiled) string {
	var b strings.Builder
	b.WriteString(table)
	b.WriteByte(':')
	for i, o := range q.order {
		if i > 0 {
			b.WriteByte(',')
		}
		if o.Desc {
			b.WriteByte('-')
		}
		b.WriteString(q.sortFields[i].DBName)
	}
	return b.String()
}

// fieldKeyText renders the value of f in the struct rv as keyText does;
// null reports a nil pointer or a nil value (SQL NULL).
func fieldKeyText(ctx context.Context, f *schema.Field, rv reflect.Value) (text string, null bool, err error) {
	v, _ := f.ValueOf(ctx, rv)
	if pv := reflect.ValueOf(v); pv.Kind() == reflect.Pointer {
		if pv.IsNil() {
			return "", true, nil
		}
		v = pv.Elem().Interface()
	}
	if v == nil {
		return "", true, nil
	}
	text, err = keyText(v)
	return text, false, err
}

// encodeCursor makes the cursor of row's position in q's sort.
func (b *Repository[T, K]) encodeCursor(ctx context.Context, q compiled, row *T, before bool) (string, error) {
	rv := reflect.ValueOf(row).Elem()
	c := cursor{Sort: sortFingerprint(b.schema.Table, q), Before: before, Raw: make([]*string, len(q.sortFields))}
	for i, f := range q.sortFields {
		s, null, err := fieldKeyText(ctx, f, rv)
		if err != nil {
			return "", fmt.Errorf("%w: cursor key %s: %w", ErrInvalid, f.Name, err)
		}
		if !null {
			c.Raw[i] = &s
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	if b.db.defaultCursorKey {
		b.db.warnCursorKey.Do(func() {
			b.db.logger.WarnContext(ctx, "dbkit: cursors are signed with a key derived from the database name: "+
				"clients could forge them; give every replica the same secret with dbkit.WithCursorKey")
		})
	}
	mac := b.db.cursorMAC(payload)
	return base64.RawURLEncoding.EncodeToString(append(payload, mac...)), nil
}

// decodeCursor checks s's MAC and sort, and converts its keys to the types
// of q's sort fields.
func (b *Repository[T, K]) decodeCursor(s string, q compiled) (cursor, error) {
	invalid := fmt.Errorf("%w: the cursor is not one this query gave out", ErrInvalid)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) <= cursorMACSize || len(raw) > 16<<10 {
		return cursor{}, invalid
	}
	payload, mac := raw[:len(raw)-cursorMACSize], raw[len(raw)-cursorMACSize:]
	if !hmac.Equal(mac, b.db.cursorMAC(payload)) {
		return cursor{}, invalid
	}
	var c cursor
	if err := json.Unmarshal(payload, &c); err != nil || c.Sort != sortFingerprint(b.schema.Table, q) || len(c.Raw) != len(q.sortFields) {
		return cursor{}, fmt.Errorf("%w: the cursor belongs to another sort or table", ErrInvalid)
	}
	c.Keys = make([]any, len(c.Raw))
	for i, f := range q.sortFields {
		if c.Raw[i] == nil {
			continue
		}
		v, err := b.fields.convert(f, *c.Raw[i])
		if err != nil {
			return cursor{}, invalid
		}
		c.Keys[i] = v
	}
	return c, nil
}

// keyText writes a sort key so that convert reads it back exactly.
func keyText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case uuid.UUID:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool()), nil
	}
	if st, ok := v.(fmt.Stringer); ok { // types that scan their text form back, such as decimals
		return st.String(), nil
	}
	return "", fmt.Errorf("a %T cannot be a cursor key", v)
}

const (
	cursorMACSize = 16
	minCursorKey  = 32 // bytes of a key given to WithCursorKey
)

// cursorMAC authenticates a cursor's payload with the DB's cursor key.
func (db *DB) cursorMAC(payload []byte) []byte {
	m := hmac.New(sha256.New, db.cursorKey)
	m.Write(payload)
	return m.Sum(nil)[:cursorMACSize]
}
