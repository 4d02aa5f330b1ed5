package dbkit

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
	"gorm.io/gorm/utils/tests"
)

// credentials is embedded but kept out of the API as a whole.
type credentials struct {
	PasswordHash string
}

type filterModel struct {
	Model
	Creds    credentials `gorm:"embedded" json:"-"`
	Hidden   string      `gorm:"->:false;<-:create"` // write-only
	Email    string      `json:"email"`
	Name     string      `json:"display_name"`
	Age      int         `json:"age"`
	Score    float64
	Active   bool
	Born     time.Time
	Ref      *uuid.UUID
	Secret   string `json:"-"`
	Internal string `dbkit:"nofilter"`
}

var filterSchemaOnce = sync.OnceValues(func() (*schema.Schema, error) {
	return schema.Parse(&filterModel{}, &sync.Map{}, schema.NamingStrategy{})
})

func filterResolver(t testing.TB) *fieldResolver {
	t.Helper()
	s, err := filterSchemaOnce()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newFieldResolver("filterModel", s, nil, DefaultInputLimits())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// render compiles opts and renders the statement GORM would send, with
// placeholders, and its bound values.
func render(t testing.TB, opts ...QueryOption) (string, []any, error) {
	t.Helper()
	c, err := compileQuery(filterResolver(t), opts, false)
	if err != nil {
		return "", nil, err
	}
	db, err := gorm.Open(tests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	tx := db.Model(&filterModel{})
	if len(c.where.Exprs) > 0 {
		tx = tx.Clauses(c.where)
	}
	if len(c.order) > 0 {
		tx = tx.Clauses(clause.OrderBy{Columns: c.order})
	}
	var rows []filterModel
	stmt := tx.Find(&rows).Statement
	return stmt.SQL.String(), stmt.Vars, nil
}

func TestFilterFromQuery(t *testing.T) {
	q, _ := url.ParseQuery("name=Ada&age[gte]=18&id[in]=a,b&deleted[isnull]=true&sort=-age&page=2")
	got, err := FilterFromQuery(q, "sort", "page")
	if err != nil {
		t.Fatal(err)
	}
	want := Filter{And: []Filter{
		{Field: "age", Op: OpGte, Value: "18"},
		{Field: "deleted", Op: OpIsNull, Value: "true"},
		{Field: "id", Op: OpIn, Value: []any{"a", "b"}},
		{Field: "name", Op: OpEq, Value: "Ada"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v,\nwant %#v", got, want)
	}
	one, err := FilterFromQuery(url.Values{"name": {"Ada"}, "sort": {"x"}}, "sort")
	if err != nil || !reflect.DeepEqual(one, Filter{Field: "name", Op: OpEq, Value: "Ada"}) {
		t.Errorf("one parameter: %#v, %v; want the filter alone", one, err)
	}
	none, err := FilterFromQuery(url.Values{"sort": {"x"}}, "sort")
	if err != nil || !none.isEmpty() {
		t.Errorf("no parameter: %#v, %v; want the zero Filter", none, err)
	}
	for _, bad := range []string{"age[between]=1", "age[gte=1", "[eq]=1"} {
		q, _ := url.ParseQuery(bad)
		if _, err := FilterFromQuery(q); !errors.Is(err, ErrInvalid) {
			t.Errorf("FilterFromQuery(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestFilterSQL(t *testing.T) {
	id := uuid.New()
	cases := []struct {
		name string
		f    Filter
		sql  string
		vars []any
	}{
		{"eq by json name, converted", Filter{Field: "age", Op: OpGte, Value: "18"}, "`filter_models`.`age` >= ?", []any{18}},
		{"eq by column", Filter{Field: "name", Value: "Ada"}, "`filter_models`.`name` = ?", []any{"Ada"}},
		{"json name", Filter{Field: "display_name", Op: OpNe, Value: "Ada"}, "`filter_models`.`name` <> ?", []any{"Ada"}},
		{"json float to int", Filter{Field: "age", Op: OpLt, Value: 30.0}, "`filter_models`.`age` < ?", []any{30}},
		{"eq null", Filter{Field: "ref", Op: OpEq}, "`filter_models`.`ref` IS NULL", nil},
		{"uuid", Filter{Field: "ref", Value: id.String()}, "`filter_models`.`ref` = ?", []any{id}},
		{"bool", Filter{Field: "active", Value: "true"}, "`filter_models`.`active` = ?", []any{true}},
		{"date", Filter{Field: "born", Op: OpGt, Value: "2000-01-02"}, "`filter_models`.`born` > ?", []any{time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{"in", Filter{Field: "age", Op: OpIn, Value: []any{"1", "2"}}, "`filter_models`.`age` IN (?,?)", []any{1, 2}},
		{"nin", Filter{Field: "age", Op: OpNin, Value: []int{1, 2}}, "`filter_models`.`age` NOT IN (?,?)", []any{1, 2}},
		{"like escapes", Filter{Field: "email", Op: OpLike, Value: `50%_off\`}, "`filter_models`.`email` LIKE ?", []any{`%50\%\_off\\%`}},
		{"ilike raw", Filter{Field: "email", Op: OpIlike, Value: "a%b", RawPattern: true}, "`filter_models`.`email` ILIKE ?", []any{"a%b"}},
		{"isnull false", Filter{Field: "ref", Op: OpIsNull, Value: "false"}, "`filter_models`.`ref` IS NOT NULL", nil},
		{"or group", Filter{Or: []Filter{{Field: "name", Value: "a"}, {Field: "email", Value: "b"}}},
			"(`filter_models`.`name` = ? OR `filter_models`.`email` = ?)", []any{"a", "b"}},
		{"one-element or group stays ANDed", Filter{And: []Filter{{Field: "age", Value: 1}, {Or: []Filter{{Field: "name", Value: "a"}}}}},
			"`filter_models`.`age` = ? AND `filter_models`.`name` = ?", []any{1, "a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantWhere(t, c.f, c.sql, c.vars) })
	}
}

func equalValue(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb)
	}
	return a == b
}

func TestFilterRefusals(t *testing.T) {
	const secretValue = "s3cret-value"
	many := make([]Filter, MaxFilterLeaves+1)
	for i := range many {
		many[i] = Filter{Field: "name", Value: "x"}
	}
	deep := Filter{Field: "name", Value: "x"}
	for range MaxFilterDepth + 1 {
		deep = Filter{Or: []Filter{deep}}
	}
	cases := map[string][]QueryOption{
		"unknown field":      {Filter{Field: "nope", Value: 1}},
		"json-hidden field":  {Filter{Field: "Secret", Value: secretValue}},
		"hidden embedded":    {Filter{Field: "password_hash", Op: OpLike, Value: "$2a"}},
		"hidden embedded Go": {Filter{Field: "PasswordHash", Value: secretValue}},
		"write-only field":   {Filter{Field: "hidden", Value: secretValue}},
		"sort hidden embed":  {SortBy("password_hash")},
		"hidden by column":   {Filter{Field: "secret", Value: secretValue}},
		"nofilter field":     {Filter{Field: "internal", Value: secretValue}},
		"unknown operator":   {Filter{Field: "name", Op: "regex", Value: secretValue}},
		"bad integer":        {Filter{Field: "age", Value: secretValue}},
		"fraction for int":   {Filter{Field: "age", Value: 1.5}},
		"bad uuid":           {Filter{Field: "id", Value: secretValue}},
		"bad time":           {Filter{Field: "born", Op: OpGt, Value: secretValue}},
		"like on a number":   {Filter{Field: "age", Op: OpLike, Value: "1"}},
		"null with lt":       {Filter{Field: "age", Op: OpLt}},
		"in without list":    {Filter{Field: "age", Op: OpIn, Value: "1"}},
		"in too long":        {Filter{Field: "age", Op: OpIn, Value: make([]any, MaxInValues+1)}},
		"in with null":       {Filter{Field: "age", Op: OpIn, Value: []any{nil}}},
		"isnull not bool":    {Filter{Field: "ref", Op: OpIsNull, Value: secretValue}},
		"field and group":    {Filter{Field: "name", Or: []Filter{{Field: "name"}}}},
		"or and and":         {Filter{Or: []Filter{{Field: "name"}}, And: []Filter{{Field: "name"}}}},
		"expression value":   {Filter{Field: "name", Value: gorm.Expr("1=1")}},
		"too deep":           {deep},
		"too many":           {Filter{And: many}},
		"sort unknown":       {SortBy("-nope")},
		"sort hidden":        {SortBy("secret")},
		"sort junk":          {SortBy("name;drop table x")},
		"sort too many keys": {SortBy("a,b,c,d,e,f,g,h,i")},
	}
	for name, opts := range cases {
		_, _, err := render(t, opts...)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			continue
		}
		if strings.Contains(err.Error(), secretValue) {
			t.Errorf("%s: error repeats the value: %v", name, err)
		}
	}
}

func TestSortBy(t *testing.T) {
	sql, _, err := render(t, SortBy("-age, display_name"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sql, "ORDER BY `filter_models`.`age` DESC,`filter_models`.`name`,`filter_models`.`id`") {
		t.Errorf("SQL = %s, want age DESC, name, then the id tie-breaker", sql)
	}
	sql, _, _ = render(t, SortBy("id,-age"))
	if strings.Count(sql, "`id`") != 1 {
		t.Errorf("SQL = %s: the primary key is already a key, it must not be added again", sql)
	}
	if f, err := ParseSort(" +a , -b "); err != nil || !slices.Equal(f, []SortField{{"a", false}, {"b", true}}) {
		t.Errorf("ParseSort = %v, %v", f, err)
	}
}

// identifiers are the names GORM may quote in a statement about filterModel.
var quoted = regexp.MustCompile("`[^`]*`")

// allowedIdentifiers are the table and the columns input may name.
func allowedIdentifiers(t testing.TB) map[string]bool {
	ok := map[string]bool{"`filter_models`": true}
	for _, f := range filterResolver(t).byName {
		ok["`"+f.DBName+"`"] = true
	}
	return ok
}

// checkSQL fails when sql names a column input may not name, or holds
// anything but placeholders for values: no quoted literal, one bound value
// per placeholder.
func checkSQL(t *testing.T, sql string, vars []any) {
	t.Helper()
	allowed := allowedIdentifiers(t)
	for _, id := range quoted.FindAllString(sql, -1) {
		if !allowed[id] {
			t.Fatalf("identifier %s reached SQL: %s", id, sql)
		}
	}
	rest := quoted.ReplaceAllString(sql, "")
	if strings.ContainsAny(rest, "'\"$;") || strings.Count(rest, "?") != len(vars) {
		t.Fatalf("SQL %s with %d values: a value is not a placeholder", sql, len(vars))
	}
}

func FuzzFilterFromQuery(f *testing.F) {
	for _, seed := range []string{
		"name=Ada&age[gte]=18", "email[ilike]=%25_", "id[in]=a,b,c", "ref[isnull]=true",
		"age[in]=1,2,3&name[ne]=x", "born[lt]=2020-01-01", "`name`=1", "name[eq]=' OR 1=1 --",
		"x[y]=z", "active=yes", "score[gt]=1e308",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		filter, err := FilterFromQuery(q)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		sql, vars, err := render(t, filter)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		checkSQL(t, sql, vars)
	})
}

// FuzzFilterJSON decodes arbitrary JSON into a Filter, as a handler taking
// filters in a request body would.
func FuzzFilterJSON(f *testing.F) {
	for _, seed := range []string{
		`{"field":"age","op":"gte","value":18}`,
		`{"or":[{"field":"name","value":"a"},{"field":"email","op":"ilike","value":"b"}]}`,
		`{"and":[{"field":"age","op":"in","value":[1,2,"3"]},{"or":[{"field":"ref","op":"isnull","value":true}]}]}`,
		`{"field":"PasswordHash","value":"x"}`, `{"field":"creds","value":"x"}`, `{"field":"born","op":"lt","value":"2020-01-01"}`,
		`{"field":"name","op":"like","value":"%' OR 1=1 --"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var fl Filter
		if json.Unmarshal([]byte(raw), &fl) != nil {
			return
		}
		sql, vars, err := render(t, fl)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		checkSQL(t, sql, vars)
	})
}

func FuzzSortBy(f *testing.F) {
	for _, seed := range []string{"-created_at,name", "age", "+id,-age", "", ",", "name;drop", "-", "display_name,-email"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		sql, vars, err := render(t, SortBy(spec))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		checkSQL(t, sql, vars)
	})
}

func TestInputFieldsAllowList(t *testing.T) {
	s, _ := filterSchemaOnce()
	r, err := newFieldResolver("filterModel", s, []string{"Email", "age"}, DefaultInputLimits())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"email", "Email", "age", "Age"} {
		if _, err := r.field(name); err != nil {
			t.Errorf("allowed %s: %v", name, err)
		}
	}
	for _, name := range []string{"name", "display_name", "id", "password_hash"} {
		if _, err := r.field(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s outside the allow list: %v", name, err)
		}
	}
	if _, err := newFieldResolver("filterModel", s, []string{"nope"}, DefaultInputLimits()); !errors.Is(err, ErrInvalid) {
		t.Errorf("an allow list naming an unknown field: %v", err)
	}
}

func TestConvertNumbers(t *testing.T) {
	r := filterResolver(t)
	age := r.schema.LookUpField("Age") // int
	for v, want := range map[any]any{int64(5): 5, int8(-3): -3, uint16(7): 7, 30.0: 30} {
		got, err := r.convert(age, v)
		if err != nil || got != want {
			t.Errorf("convert(%T %v) = %v, %v; want %v", v, v, got, err, want)
		}
	}
	for _, v := range []any{uint64(1 << 63), 1.5, "x"} {
		if _, err := r.convert(age, v); !errors.Is(err, ErrInvalid) {
			t.Errorf("convert(%T %v) = %v, want ErrInvalid", v, v, err)
		}
	}
}

// TestCodeFilterSQL: the constructors code uses make the SQL their names
// say, with their values bound as given.
func TestCodeFilterSQL(t *testing.T) {
	born := time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		f    Filter
		sql  string
		vars []any
	}{
		{"Eq", Eq("Age", 18), "`filter_models`.`age` = ?", []any{18}},
		{"Eq nil", Eq("Ref", nil), "`filter_models`.`ref` IS NULL", nil},
		{"Ne", Ne("name", "Ada"), "`filter_models`.`name` <> ?", []any{"Ada"}},
		{"Gt", Gt("Score", 1.5), "`filter_models`.`score` > ?", []any{1.5}},
		{"Gte", Gte("Born", born), "`filter_models`.`born` >= ?", []any{born}},
		{"Lt", Lt("Age", 3), "`filter_models`.`age` < ?", []any{3}},
		{"Lte", Lte("Age", 4), "`filter_models`.`age` <= ?", []any{4}},
		{"In", In("Age", 1, 2, 3), "`filter_models`.`age` IN (?,?,?)", []any{1, 2, 3}},
		{"In nothing", In("Age"), "false", nil},
		{"Like keeps wildcards", Like("Email", "ada%"), "`filter_models`.`email` LIKE ?", []any{"ada%"}},
		{"IsNull", IsNull("Ref"), "`filter_models`.`ref` IS NULL", nil},
		{"Not IsNull", Not(IsNull("Ref")), "NOT `filter_models`.`ref` IS NULL", nil},
		{"Between", Between("Age", 18, 65), "`filter_models`.`age` >= ? AND `filter_models`.`age` <= ?", []any{18, 65}},
		{"Or of Between", Or(Between("Age", 1, 2), Eq("Name", "a")), "((`filter_models`.`age` >= ? AND `filter_models`.`age` <= ?) OR `filter_models`.`name` = ?)", []any{1, 2, "a"}},
		{"Or", Or(Eq("Name", "a"), Eq("Email", "b")), "(`filter_models`.`name` = ? OR `filter_models`.`email` = ?)", []any{"a", "b"}},
		{"Not Or", Not(Or(Eq("Name", "a"), Eq("Email", "b"))), "NOT (`filter_models`.`name` = ? OR `filter_models`.`email` = ?)", []any{"a", "b"}},
		// Code may name a field input may not: the code is trusted.
		{"hidden field in code", Eq("Secret", "s"), "`filter_models`.`secret` = ?", []any{"s"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantWhere(t, c.f, c.sql, c.vars) })
	}
	// No condition: the zero Filter, an empty And, at the top.
	for _, f := range []Filter{{}, And()} {
		if sql, _, err := render(t, f); err != nil || strings.Contains(sql, "WHERE") {
			t.Errorf("%#v: %s, %v; want no WHERE", f, sql, err)
		}
	}
	for name, f := range map[string]Filter{
		"empty Or":              Or(),
		"hidden field as input": {Field: "Secret", Value: "s"},
		"input json:- by JSON":  decodeFilter(t, `{"field": "secret", "value": "s"}`),
		"Eq of an expression":   Eq("Age", clause.Expr{SQL: "1"}),
		"Eq of a slice":         Eq("Age", []int{1}),
		"Gt nil":                Gt("Age", nil),
		"Like of a number":      Like("Age", "1%"),
		"not and field":         {Field: "name", Not: &Filter{Field: "name"}},
		"not of nothing":        Not(Filter{}),
		"or with nothing":       Or(Eq("Name", "a"), Filter{}),
		"and with nothing":      Or(Eq("Name", "a"), And()),
		"input or with nothing": decodeFilter(t, `{"or": [{"field": "name", "value": "a"}, {}]}`),
		"a gorm.Valuer":         Eq("Age", gormValuer{}),
		"In of a slice":         In("Age", []int{1, 2}),
		// JSON decoded over a filter made in code is input, at every level.
		"JSON over code":         decodeInto(t, Eq("Name", "a"), `{"field": "secret", "value": "s"}`),
		"JSON over code, in not": decodeInto(t, Not(Eq("Name", "a")), `{"not": {"field": "secret", "value": "s"}}`),
		"JSON over code, in or":  decodeInto(t, Or(Eq("Name", "a")), `{"or": [{"field": "secret", "value": "s"}]}`),
	} {
		if _, _, err := render(t, f); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// gormValuer is an expression GORM would write into the SQL as is.
type gormValuer struct{}

func (gormValuer) GormValue(context.Context, *gorm.DB) clause.Expr {
	return clause.Expr{SQL: "0 OR true"}
}

// decodeInto decodes s over f, as a handler decoding a request into
// defaults would.
func decodeInto(t *testing.T, f Filter, s string) Filter {
	t.Helper()
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func decodeFilter(t *testing.T, s string) Filter {
	t.Helper()
	var f Filter
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCondsOnly: Count, Exists and the writes by condition take conditions
// and the soft-delete scope, and refuse the shape of a result.
func TestCondsOnly(t *testing.T) {
	r := filterResolver(t)
	if _, err := compileQuery(r, []QueryOption{Eq("Age", 1), WithDeleted(), AllRows()}, true); err != nil {
		t.Errorf("conditions: %v", err)
	}
	for name, opt := range map[string]QueryOption{
		"Limit": Limit(1), "SortBy": SortBy("age"), "OrderBy": OrderBy("Age"), "ForUpdate": ForUpdate(),
		"Preload": Preload("X"), "Select": Select("age"),
	} {
		if _, err := compileQuery(r, []QueryOption{Eq("Age", 1), opt}, true); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// TestAllowListNamesAssociations: an allow list entry "assoc.field" must
// name an association the model has.
func TestAllowListNamesAssociations(t *testing.T) {
	s, err := filterSchemaOnce()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newFieldResolver("filterModel", s, []string{"email", "owner.email"}, DefaultInputLimits()); !errors.Is(err, ErrInvalid) {
		t.Errorf("an allow list naming a missing association: %v, want ErrInvalid", err)
	}
	if _, _, err := render(t, Eq("owner.email", "x")); !errors.Is(err, ErrInvalid) {
		t.Errorf("a condition on a missing association: %v, want ErrInvalid", err)
	}
}

// wantWhere checks that f renders the WHERE condition sql with vars bound.
func wantWhere(t *testing.T, f Filter, sql string, vars []any) {
	t.Helper()
	got, gotVars, err := render(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "WHERE "+sql) {
		t.Errorf("SQL = %s\nwant WHERE %s", got, sql)
	}
	if len(gotVars) != len(vars) {
		t.Fatalf("vars = %#v, want %#v", gotVars, vars)
	}
	for i := range gotVars {
		if !equalValue(gotVars[i], vars[i]) {
			t.Errorf("var %d = %#v (%T), want %#v (%T)", i, gotVars[i], gotVars[i], vars[i], vars[i])
		}
	}
}
