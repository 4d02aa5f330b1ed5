package integration

// Issue 11, findings 4 to 6: hostile input is refused before any SQL, with
// a short message, whatever its size, its bytes or its page number.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// maxMessage bounds an error message about hostile input: it names the
// field and the rule, and quotes at most a short prefix of the input.
const maxMessage = 300

// countedDB is a test database whose statements on table are counted on
// the wire (Connect's own are not).
func countedDB(t *testing.T, table string) (*dbkit.DB, *atomic.Int64) {
	t.Helper()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	// Every statement carries its text: a statement prepared and cached
	// before would go out as a name, without the table's.
	cfg.QueryExecMode = "exec"
	var n atomic.Int64
	cfg.Host, cfg.Port = countingProxy(t, cfg.Addr(), []byte(table), &n)
	db := openDB(t, cfg)
	n.Store(0)
	return db, &n
}

// checkRefused fails t unless err matches ErrInvalid, says want, is short,
// does not repeat a long run of the hostile input, and no statement on the
// table was sent.
func checkRefused(t *testing.T, name string, err error, want string, sent *atomic.Int64, hostile string) {
	t.Helper()
	switch {
	case !errors.Is(err, dbkit.ErrInvalid):
		t.Errorf("%s: err = %.300v, want ErrInvalid", name, err)
	case len(err.Error()) > maxMessage:
		t.Errorf("%s: a message of %d bytes, want at most %d: %.300s…", name, len(err.Error()), maxMessage, err)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: %v, want it to say %q", name, err, want)
	case len(hostile) > 64 && strings.Contains(err.Error(), hostile[:64]):
		t.Errorf("%s: the message repeats the input: %v", name, err)
	}
	if n := sent.Swap(0); n != 0 {
		t.Errorf("%s: %d statements sent, want none", name, n)
	}
}

// TestHostileFilterInputIsBounded: values, patterns, names, sorts and
// filter counts past their limits are ErrInvalid, fast, before any SQL,
// in a message of a few hundred bytes.
func TestHostileFilterInputIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, sent := countedDB(t, "users")
	users := dbkit.NewBaseDatabase[User](db)
	mb := strings.Repeat("x", 1<<20)
	many := url.Values{}
	for i := range 5000 {
		many.Set(fmt.Sprintf("name%d", i), "a")
	}
	manyIn := strings.TrimSuffix(strings.Repeat("a,", 5000), ",")

	for _, c := range []struct {
		name, want string
		opts       func() ([]dbkit.QueryOption, error)
	}{
		{"1 MB value", "longer than", filters(url.Values{"name": {mb}})},
		{"1 MB ilike pattern", "longer than", filters(url.Values{"name[ilike]": {mb}})},
		{"1 MB like pattern", "longer than", filters(url.Values{"email[like]": {mb}})},
		{"1 MB in value", "longer than", filters(url.Values{"name[in]": {"a," + mb}})},
		{"1 MB field name", "longer than", filters(url.Values{mb: {"a"}})},
		{"1 MB field name with an operator", "longer than", filters(url.Values{mb + "[eq]": {"a"}})},
		{"1 MB operator", "unknown operator", filters(url.Values{"name[" + mb + "]": {"a"}})},
		{"1 MB malformed parameter", "want field or field[op]", filters(url.Values{"[" + mb: {"a"}})},
		{"5000 filters", "filter conditions", filters(many)},
		{"5000 in values", "in and nin take", filters(url.Values{"name[in]": {manyIn}})},
		{"1 MB sort spec", "sort", func() ([]dbkit.QueryOption, error) {
			return []dbkit.QueryOption{dbkit.SortBy(mb)}, nil
		}},
		{"1 MB sort of commas", "sort", func() ([]dbkit.QueryOption, error) {
			return []dbkit.QueryOption{dbkit.SortBy(strings.Repeat("name,", 200_000))}, nil
		}},
		{"1 MB sort field", "sort", func() ([]dbkit.QueryOption, error) {
			return []dbkit.QueryOption{dbkit.SortBy("-" + mb)}, nil
		}},
		{"1 MB select", "longer than", func() ([]dbkit.QueryOption, error) {
			return []dbkit.QueryOption{dbkit.Select(mb)}, nil
		}},
	} {
		start := time.Now()
		opts, err := c.opts()
		if err == nil {
			_, err = users.Find(ctx, opts...)
		}
		checkRefused(t, c.name, err, c.want, sent, mb)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refused in %v, want well under a second", c.name, d)
		}
	}

	// The same values within the limits run.
	ok := url.Values{"name[ilike]": {strings.Repeat("x", 256)}, "email": {strings.Repeat("x", 1024)}}
	opts, err := filters(ok)()
	if err == nil {
		_, err = users.Find(ctx, append(opts, dbkit.SortBy("-email,name"))...)
	}
	if err != nil {
		t.Fatalf("values at the limits: %v", err)
	}
}

// filters reads q as examples/rest does.
func filters(q url.Values) func() ([]dbkit.QueryOption, error) {
	return func() ([]dbkit.QueryOption, error) {
		f, err := dbkit.FilterFromQuery(q)
		return []dbkit.QueryOption{f}, err
	}
}

// emailAddr, Contact and Profile put text where a reflection-based check
// could miss it: a pointer to a named string type, a field of a struct
// embedded by pointer.
type emailAddr string

type Contact struct{ Name string }

type Profile struct {
	dbkit.Model
	Email *emailAddr
	*Contact
	Age int
}

func profile(email, name string) Profile {
	e := emailAddr(email)
	return Profile{Email: &e, Contact: &Contact{Name: name}}
}

func (Profile) TableName() string { return "users" }

// HookedProfile is a Profile whose CreateMany goes through INSERT, not COPY.
type HookedProfile struct{ Profile }

func (*HookedProfile) BeforeCreate(*gorm.DB) error { return nil }

// TestInvalidTextIsRefused: a string that is not valid UTF-8 or holds a NUL
// byte, in a filter, a Patch, or a field of a written row, is ErrInvalid
// naming the field, before any SQL; nothing is written.
func TestInvalidTextIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, sent := countedDB(t, "users")
	users := dbkit.NewBaseDatabase[User](db, dbkit.Patchable("name"))
	profiles := dbkit.NewBaseDatabase[Profile](db)
	hooked := dbkit.NewBaseDatabase[HookedProfile](db)
	good := profile("good@example.com", "Good")
	if err := profiles.Create(ctx, &good); err != nil {
		t.Fatal(err)
	}
	sent.Store(0)

	for _, bad := range []string{"\xff", "a\x00b"} {
		name := func(op string) string { return fmt.Sprintf("%s(%q)", op, bad) }
		for op, f := range map[string]dbkit.Filter{
			"eq":    {Field: "name", Value: bad},
			"ilike": {Field: "name", Op: dbkit.OpIlike, Value: bad},
			"like":  {Field: "email", Op: dbkit.OpLike, Value: bad, RawPattern: true},
			"in":    {Field: "email", Op: dbkit.OpIn, Value: []any{"a", bad}},
			"group": {Or: []dbkit.Filter{{Field: "name", Value: "a"}, {Field: "email", Op: dbkit.OpNe, Value: bad}}},
		} {
			_, err := users.Find(ctx, f)
			checkRefused(t, name("Find "+op), err, "User.", sent, "")
		}
		_, err := users.Find(ctx, dbkit.Eq("name", bad))
		checkRefused(t, name("Eq"), err, "User.Name", sent, "")
		_, err = users.Patch(ctx, good.ID, map[string]any{"name": bad})
		checkRefused(t, name("Patch"), err, "User.Name", sent, "")

		for _, c := range []struct {
			op, field string
			row       Profile
		}{
			{"*named string", "Profile.Email", profile(bad, "Bad")},
			{"string of an embedded *struct", "Profile.Name", profile("bad@example.com", bad)},
		} {
			row := c.row
			err := profiles.Create(ctx, &row)
			checkRefused(t, name("Create "+c.op), err, c.field, sent, "")
			err = profiles.CreateMany(ctx, []Profile{profile("ok@example.com", "OK"), c.row})
			checkRefused(t, name("CreateMany (COPY) "+c.op), err, c.field, sent, "")
			err = hooked.CreateMany(ctx, []HookedProfile{{Profile: c.row}})
			checkRefused(t, name("CreateMany (INSERT) "+c.op), err, c.field, sent, "")
			row = c.row
			err = profiles.Upsert(ctx, &row, dbkit.Conflict{Columns: []string{"email"}})
			checkRefused(t, name("Upsert "+c.op), err, c.field, sent, "")
			err = profiles.UpsertMany(ctx, []Profile{c.row}, dbkit.Conflict{Columns: []string{"email"}})
			checkRefused(t, name("UpsertMany "+c.op), err, c.field, sent, "")
			row = c.row
			row.Model = good.Model
			err = profiles.Update(ctx, &row)
			checkRefused(t, name("Update "+c.op), err, c.field, sent, "")
		}
	}
	if n, err := profiles.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v: want the one good row only", n, err)
	}
	if got, err := profiles.Get(ctx, good.ID); err != nil || *got.Email != *good.Email || got.Name != good.Name {
		t.Fatalf("Get = %+v, %v: want the good row untouched", got, err)
	}
}

// TestPageOffsetAndInputLimits: a page whose offset overflows int, or
// passes MaxOffset, is ErrInvalid before any SQL, not page 1 labelled as
// the page asked for; a repository's Limits move every bound, zero fields
// keep their defaults, and a negative one makes the repository refuse every
// call.
func TestPageOffsetAndInputLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, sent := countedDB(t, "users")
	users := dbkit.NewBaseDatabase[User](db)
	for _, req := range []dbkit.PageRequest{
		{Page: math.MaxInt, Size: 10},
		{Page: math.MaxInt, Size: 1},
		{Page: math.MaxInt/10 + 2, Size: 10},
		{Page: math.MaxInt / 100, Size: 100},
	} {
		p, err := users.FindPage(ctx, req)
		checkRefused(t, fmt.Sprintf("page %d of %d", req.Page, req.Size), err, "offset", sent, "")
		if err == nil && p.Page != req.Page {
			t.Errorf("page %d of %d: returned page %d", req.Page, req.Size, p.Page)
		}
	}
	// The deepest page allowed by default runs.
	if _, err := users.FindPage(ctx, dbkit.PageRequest{Page: dbkit.DefaultMaxOffset/10 + 1, Size: 10}); err != nil {
		t.Fatalf("the deepest page allowed: %v", err)
	}
	sent.Store(0)
	_, err := users.FindPage(ctx, dbkit.PageRequest{Page: dbkit.DefaultMaxOffset/10 + 2, Size: 10})
	checkRefused(t, "one page deeper", err, "offset", sent, "")

	tight := dbkit.NewBaseDatabase[User](db, dbkit.Limits(dbkit.InputLimits{
		MaxValueBytes: 4, MaxPatternBytes: 2, MaxNameBytes: 1, MaxSortFields: 1, MaxFilters: 2, MaxFilterDepth: 1, MaxInValues: 2, MaxOffset: 50,
	}))
	for _, c := range []struct {
		name, want string
		opts       []dbkit.QueryOption
	}{
		{"value", "longer than the limit of 4", []dbkit.QueryOption{dbkit.Filter{Field: "name", Value: "abcde"}}},
		{"pattern", "longer than the limit of 2", []dbkit.QueryOption{dbkit.Filter{Field: "name", Op: dbkit.OpIlike, Value: "abc"}}},
		{"in values", "1 to 2 values", []dbkit.QueryOption{dbkit.Filter{Field: "name", Op: dbkit.OpIn, Value: []any{"a", "b", "c"}}}},
		{"filters", "more than 2 filter conditions", []dbkit.QueryOption{
			dbkit.Filter{Field: "name", Value: "a"}, dbkit.Filter{Field: "name", Value: "a"}, dbkit.Filter{Field: "name", Value: "a"}}},
		{"depth", "nested deeper than 1", []dbkit.QueryOption{dbkit.Filter{Or: []dbkit.Filter{{Or: []dbkit.Filter{
			{Field: "name", Value: "a"}, {Or: []dbkit.Filter{{Field: "name", Value: "a"}}}}}}}}},
		{"sort fields", "at most 1 fields", []dbkit.QueryOption{dbkit.SortBy("name,email")}},
		{"sort fields over two specs", "at most 1 fields", []dbkit.QueryOption{dbkit.SortBy("name"), dbkit.SortBy("email")}},
		{"name", "longer than the limit of 1", []dbkit.QueryOption{dbkit.Filter{Field: "not_a_field", Value: "a"}}},
	} {
		_, err := tight.Find(ctx, c.opts...)
		checkRefused(t, c.name, err, c.want, sent, "")
	}
	// Names the model has are accepted past MaxNameBytes; values at the
	// limits run.
	if _, err := tight.Find(ctx, dbkit.Filter{Field: "email", Op: dbkit.OpIlike, Value: "ab"}, dbkit.SortBy("-name"),
		dbkit.Filter{Field: "name", Op: dbkit.OpIn, Value: []any{"abcd", "b"}}); err != nil {
		t.Fatalf("within the limits: %v", err)
	}
	if _, err := tight.FindPage(ctx, dbkit.PageRequest{Page: 6, Size: 10}); err != nil {
		t.Fatalf("offset 50 with MaxOffset 50: %v", err)
	}
	sent.Store(0)
	_, err = tight.FindPage(ctx, dbkit.PageRequest{Page: 7, Size: 10})
	checkRefused(t, "offset 60 with MaxOffset 50", err, "offset", sent, "")

	broken := dbkit.NewBaseDatabase[User](db, dbkit.Limits(dbkit.InputLimits{MaxOffset: -1}))
	_, err = broken.Find(ctx)
	checkRefused(t, "negative limit", err, "InputLimits.MaxOffset", sent, "")
}
