package dbkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
	"gorm.io/gorm/utils/tests"

	"github.com/dbkit-go/database/internal/redact/redacttest"
)

func TestErrNotFoundMatchesGORM(t *testing.T) {
	if !errors.Is(ErrNotFound, gorm.ErrRecordNotFound) {
		t.Error("errors.Is(ErrNotFound, gorm.ErrRecordNotFound) = false")
	}
	if !errors.Is(fmt.Errorf("get user: %w", ErrNotFound), gorm.ErrRecordNotFound) {
		t.Error("wrapped ErrNotFound does not match gorm.ErrRecordNotFound")
	}
	if errors.Is(gorm.ErrRecordNotFound, ErrNotFound) { //nolint:staticcheck // reversed on purpose: GORM's error must not match ours
		t.Error("gorm.ErrRecordNotFound matches ErrNotFound without translation")
	}
	if ErrNotFound.Error() != "record not found" {
		t.Errorf("ErrNotFound.Error() = %q", ErrNotFound.Error())
	}
}

func TestTranslateConstraintViolations(t *testing.T) {
	const value = "secret@x"
	kinds := []error{ErrDuplicate, ErrForeignKey, ErrCheck, ErrNotNull, ErrExclusion}
	tests := []struct {
		name string
		pg   *pgconn.PgError
		kind error
	}{
		{
			name: "unique",
			pg: &pgconn.PgError{Code: "23505", ConstraintName: "users_email_key", TableName: "users",
				Message: `duplicate key value violates unique constraint "users_email_key"`,
				Detail:  "Key (email)=(" + value + ") already exists."},
			kind: ErrDuplicate,
		},
		{
			name: "foreign key",
			pg: &pgconn.PgError{Code: "23503", ConstraintName: "orders_user_id_fkey", TableName: "orders",
				Detail: "Key (user_id)=(" + value + ") is not present in table \"users\"."},
			kind: ErrForeignKey,
		},
		{
			name: "check",
			pg: &pgconn.PgError{Code: "23514", ConstraintName: "price_positive", TableName: "items",
				Detail: "Failing row contains (" + value + ", -1)."},
			kind: ErrCheck,
		},
		{
			name: "not null",
			pg: &pgconn.PgError{Code: "23502", TableName: "users", ColumnName: "email",
				Detail: "Failing row contains (" + value + ", null)."},
			kind: ErrNotNull,
		},
		{
			name: "exclusion",
			pg: &pgconn.PgError{Code: "23P01", ConstraintName: "no_overlap", TableName: "bookings",
				Detail: "Key (room, during)=(" + value + ") conflicts with existing key."},
			kind: ErrExclusion,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, db := range []*DB{nil, {}} {
				in := fmt.Errorf("create: %w", tt.pg)
				err := db.translate(context.Background(), in)

				var ce *ConstraintError
				if !errors.As(err, &ce) {
					t.Fatalf("translate = %T %v, want *ConstraintError", err, err)
				}
				for _, k := range kinds {
					if got, want := errors.Is(err, k), k == tt.kind; got != want {
						t.Errorf("errors.Is(err, %v) = %v, want %v", k, got, want)
					}
				}
				var pg *pgconn.PgError
				if !errors.As(err, &pg) || pg != tt.pg {
					t.Errorf("errors.As(*pgconn.PgError) = %v, want the original", pg)
				}
				if !errors.Is(err, in) {
					t.Error("translated error does not unwrap to the driver error")
				}
				if ce.Kind != tt.kind || ce.Constraint != tt.pg.ConstraintName || ce.Table != tt.pg.TableName ||
					ce.Column != tt.pg.ColumnName || ce.SQLState != tt.pg.Code || ce.Detail != tt.pg.Detail {
					t.Errorf("ConstraintError = %+v, does not mirror %+v", ce, tt.pg)
				}

				msg := err.Error()
				want := []string{tt.kind.Error(), tt.pg.TableName, "SQLSTATE " + tt.pg.Code}
				if tt.pg.ConstraintName != "" {
					want = append(want, tt.pg.ConstraintName)
				}
				if tt.pg.ColumnName != "" {
					want = append(want, tt.pg.ColumnName)
				}
				for _, w := range want {
					if !strings.Contains(msg, w) {
						t.Errorf("Error() = %q does not contain %q", msg, w)
					}
				}
				if strings.Contains(msg, value) || strings.Contains(msg, "Key (") || strings.Contains(msg, "Failing row") {
					t.Errorf("Error() = %q contains the row's values", msg)
				}
			}
		})
	}
}

func TestTranslatePassesOtherErrorsThrough(t *testing.T) {
	plain := errors.New("network is down")
	for _, in := range []error{plain, context.Canceled} {
		for _, db := range []*DB{nil, {}} {
			if got := db.translate(context.Background(), in); got != in {
				t.Errorf("translate(%v) = %v, want it unchanged", in, got)
			}
		}
	}
	if got := (*DB)(nil).translate(context.Background(), nil); got != nil {
		t.Errorf("translate(nil) = %v", got)
	}
}

// Every server error but a constraint violation is withheld, whatever its
// class: its message keeps what carries no value, and the *pgconn.PgError
// stays reachable.
func TestTranslateWithholdsServerMessages(t *testing.T) {
	const value = "value-marker-5a0b"
	tests := []struct {
		pg   *pgconn.PgError
		want string
	}{
		{&pgconn.PgError{Severity: "ERROR", Code: "42P01", Message: `relation "` + value + `" does not exist`},
			"ERROR: undefined_table (SQLSTATE 42P01)"},
		{&pgconn.PgError{Severity: "ERROR", Code: "42601", Message: `syntax error in tsquery: "` + value + `"`, Position: 8},
			"ERROR: syntax_error (SQLSTATE 42601) at position 8"},
		{&pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access", Detail: value},
			"ERROR: serialization_failure (SQLSTATE 40001)"},
		{&pgconn.PgError{Severity: "ERROR", Code: "22P02", Message: `invalid input syntax for type uuid: "` + value + `"`},
			"ERROR: invalid_text_representation (SQLSTATE 22P02)"},
		{&pgconn.PgError{Severity: "ERROR", Code: "P0001", Message: value, Hint: value, Where: value},
			"ERROR: raise_exception (SQLSTATE P0001)"},
		{&pgconn.PgError{Severity: "ERROR", Code: "42703", Message: `column "` + value + `" does not exist`, TableName: "users", ColumnName: "nope"},
			`ERROR: undefined_column (SQLSTATE 42703) on table "users" column "nope"`},
	}
	for _, tt := range tests {
		in := fmt.Errorf("query: %w", tt.pg)
		got := (*DB)(nil).translate(context.Background(), in)
		if got.Error() != tt.want {
			t.Errorf("translate(%s) = %q, want %q", tt.pg.Code, got, tt.want)
		}
		for _, form := range []string{"%v", "%+v", "%#v", "%s"} {
			if out := fmt.Sprintf(form, got); strings.Contains(out, value) {
				t.Errorf("%s of translate(%s) quotes the value: %s", form, tt.pg.Code, out)
			}
		}
		var pgErr *pgconn.PgError
		if !errors.As(got, &pgErr) || pgErr != tt.pg || !errors.Is(got, in) {
			t.Errorf("translate(%s): the driver's error is not reachable", tt.pg.Code)
		}
		if again := TranslateError(context.Background(), got); again != got {
			t.Errorf("translating twice changed %v into %v", got, again)
		}
	}
}

func TestTranslateNotFound(t *testing.T) {
	for _, in := range []error{gorm.ErrRecordNotFound, fmt.Errorf("first: %w", gorm.ErrRecordNotFound)} {
		got := (*DB)(nil).translate(context.Background(), in)
		if got != ErrNotFound {
			t.Errorf("translate(%v) = %v, want ErrNotFound", in, got)
		}
		if !errors.Is(got, gorm.ErrRecordNotFound) {
			t.Errorf("translated %v no longer matches gorm.ErrRecordNotFound", in)
		}
	}
}

func TestTranslateAfterClose(t *testing.T) {
	db := &DB{}
	db.closed.Store(true)
	driverErr := errors.New("sql: database is closed")

	// While Close waits, the work it waits for fails for reasons of its own.
	if got := db.translate(context.Background(), driverErr); got != driverErr {
		t.Errorf("translate while Close waits = %v, want it unchanged", got)
	}
	db.ended.Store(true) // Close cut what ran, or closed the pool
	got := db.translate(context.Background(), driverErr)
	if !errors.Is(got, ErrClosed) || !errors.Is(got, driverErr) {
		t.Errorf("translate after Close = %v, want ErrClosed wrapping the driver error", got)
	}
	for _, in := range []error{context.Canceled, context.DeadlineExceeded, fmt.Errorf("q: %w", context.Canceled)} {
		if got := db.translate(context.Background(), in); got != in {
			t.Errorf("translate(%v) after Close = %v, want it unchanged", in, got)
		}
	}
	// A constraint violation is still a constraint violation.
	if got := db.translate(context.Background(), &pgconn.PgError{Code: "23505"}); !errors.Is(got, ErrDuplicate) || errors.Is(got, ErrClosed) {
		t.Errorf("translate(23505) after Close = %v", got)
	}
	if got := db.translate(context.Background(), gorm.ErrRecordNotFound); got != ErrNotFound {
		t.Errorf("translate(not found) after Close = %v", got)
	}
	// A nil DB is not closed.
	if got := (*DB)(nil).translate(context.Background(), driverErr); got != driverErr {
		t.Errorf("nil DB translate = %v, want unchanged", got)
	}
}

func TestConnectError(t *testing.T) {
	const pw = "Sup3rS3cret"
	authFailed := &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "app"`}
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	tests := []struct {
		name   string
		err    *ConnectError
		want   []string
		wantPG bool
	}{
		{
			name:   "server answered",
			err:    &ConnectError{Addr: "db.internal:5432", Database: "orders", User: "app", Attempts: 1, Err: fmt.Errorf("connect: %w", authFailed)},
			want:   []string{"db.internal:5432", `"orders"`, `"app"`, "password authentication failed", "28P01"},
			wantPG: true,
		},
		{
			name: "gave up retrying",
			err:  &ConnectError{Addr: "[::1]:6432", Database: "orders", User: "app", Attempts: 5, Err: netErr},
			want: []string{"[::1]:6432", `"orders"`, "5 attempts", "connection refused"},
		},
		{
			name: "retry stopped by the deadline",
			err: &ConnectError{Addr: "db:5432", Database: "orders", User: "app", Attempts: 3,
				Err: &retryError{stop: context.DeadlineExceeded, last: authFailed}},
			want:   []string{"db:5432", "deadline exceeded", "28P01"},
			wantPG: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.err.Error()
			if !strings.HasPrefix(msg, "dbkit: connect to ") {
				t.Errorf("Error() = %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Error() = %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, pw) {
				t.Errorf("Error() = %q contains the password", msg)
			}
			if tt.err.Attempts <= 1 && strings.Contains(msg, "attempts") {
				t.Errorf("Error() = %q mentions attempts for a single try", msg)
			}
			if !errors.Is(tt.err, tt.err.Err) {
				t.Error("ConnectError does not unwrap to its cause")
			}
			var pg *pgconn.PgError
			if got := errors.As(tt.err, &pg); got != tt.wantPG {
				t.Errorf("errors.As(*pgconn.PgError) = %v, want %v", got, tt.wantPG)
			} else if got && pg != authFailed {
				t.Errorf("errors.As found %v, want the cause", pg)
			}
		})
	}
}

// testModel is a model for compiling queries against its schema.
type testModel struct {
	Model
	Email   string
	Name    string
	Ignored string `gorm:"-"`
}

func testSchema(t *testing.T) *schema.Schema {
	t.Helper()
	s, err := schema.Parse(&testModel{}, &sync.Map{}, schema.NamingStrategy{})
	if err != nil {
		t.Fatalf("schema.Parse: %v", err)
	}
	return s
}

func TestCompileResolvesFields(t *testing.T) {
	s := testSchema(t)
	id := uuid.New()
	tests := []struct {
		name      string
		conds     []Filter
		opts      []QueryOption
		wantCols  []string
		wantOrder []clause.OrderByColumn
		wantLimit int
	}{
		{name: "Go field name", conds: []Filter{Eq("Email", "a@x")}, wantCols: []string{"email"}},
		{name: "column name", conds: []Filter{Eq("email", "a@x")}, wantCols: []string{"email"}},
		{name: "embedded Model field", conds: []Filter{Eq("ID", id), Eq("created_at", nil)}, wantCols: []string{"id", "created_at"}},
		{name: "Eq as an option", opts: []QueryOption{Eq("Name", "ada")}, wantCols: []string{"name"}},
		{name: "[]byte value", conds: []Filter{Eq("Name", []byte("ada"))}, wantCols: []string{"name"}},
		{name: "uuid.UUID value", conds: []Filter{Eq("ID", id)}, wantCols: []string{"id"}},
		{name: "pointer to uuid", conds: []Filter{Eq("ID", &id)}, wantCols: []string{"id"}},
		{name: "nil value", conds: []Filter{Eq("Name", nil)}, wantCols: []string{"name"}},
		{
			name: "order and limit",
			opts: []QueryOption{OrderBy("Name"), OrderByDesc("created_at"), nil, Limit(10)},
			wantOrder: []clause.OrderByColumn{
				{Column: clause.Column{Table: clause.CurrentTable, Name: "name"}},
				{Column: clause.Column{Table: clause.CurrentTable, Name: "created_at"}, Desc: true},
				{Column: clause.Column{Table: clause.CurrentTable, Name: "id"}}, // the tie-breaker
			},
			wantLimit: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compile(s, "testModel", tt.conds, tt.opts)
			if err != nil {
				t.Fatalf("compile = %v", err)
			}
			all := append(append([]Filter(nil), tt.conds...), conditionsIn(tt.opts)...)
			if len(c.where.Exprs) != len(tt.wantCols) || c.hasWhere() != (len(tt.wantCols) > 0) {
				t.Fatalf("where = %#v, want %d conditions", c.where.Exprs, len(tt.wantCols))
			}
			for i, e := range c.where.Exprs {
				eq, ok := e.(clause.Eq)
				if !ok {
					t.Fatalf("where[%d] = %T, want clause.Eq", i, e)
				}
				want := clause.Column{Table: clause.CurrentTable, Name: tt.wantCols[i]}
				if eq.Column != want {
					t.Errorf("where[%d] column = %#v, want %#v", i, eq.Column, want)
				}
				if fmt.Sprint(eq.Value) != fmt.Sprint(all[i].Value) {
					t.Errorf("where[%d] value = %v, want %v", i, eq.Value, all[i].Value)
				}
			}
			if fmt.Sprint(c.order) != fmt.Sprint(tt.wantOrder) {
				t.Errorf("order = %#v, want %#v", c.order, tt.wantOrder)
			}
			if c.limit != tt.wantLimit {
				t.Errorf("limit = %d, want %d", c.limit, tt.wantLimit)
			}
		})
	}
}

func conditionsIn(opts []QueryOption) []Filter {
	var out []Filter
	for _, o := range opts {
		if c, ok := o.(Filter); ok {
			out = append(out, c)
		}
	}
	return out
}

func TestCompileRejects(t *testing.T) {
	s := testSchema(t)
	tests := []struct {
		name  string
		conds []Filter
		opts  []QueryOption
		want  []string // the message names these
	}{
		{name: "unknown field", conds: []Filter{Eq("Emial", "a@x")}, want: []string{`"Emial"`, "testModel"}},
		{name: "SQL as a field", conds: []Filter{Eq("email = email OR 1=1 --", "x")}, want: []string{"no field"}},
		{name: "ignored field", conds: []Filter{Eq("Ignored", "x")}, want: []string{`"Ignored"`}},
		{name: "empty field", conds: []Filter{Eq("", "x")}, want: []string{`""`}},
		{name: "unknown field after a good one", conds: []Filter{Eq("Email", "a"), Eq("nope", 1)}, want: []string{`"nope"`}},
		{name: "[]int value", conds: []Filter{Eq("Name", []int{1, 2})}, want: []string{"Name", "[]int"}},
		{name: "[]string value", conds: []Filter{Eq("Email", []string{"a", "b"})}, want: []string{"[]string"}},
		{name: "map value", conds: []Filter{Eq("Name", map[string]int{"a": 1})}, want: []string{"map"}},
		{name: "func value", conds: []Filter{Eq("Name", func() {})}, want: []string{"func"}},
		{name: "chan value", conds: []Filter{Eq("Name", make(chan int))}, want: []string{"chan"}},
		{name: "Limit(0)", opts: []QueryOption{Limit(0)}, want: []string{"limit", "0"}},
		{name: "Limit(-1)", opts: []QueryOption{Limit(-1)}, want: []string{"limit", "-1"}},
		{name: "OrderBy unknown field", opts: []QueryOption{OrderBy("nope")}, want: []string{`"nope"`}},
		{name: "OrderByDesc SQL", opts: []QueryOption{OrderByDesc("name; DROP TABLE users")}, want: []string{"no field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(s, "testModel", tt.conds, tt.opts)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("compile = %v, want an error matching ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// renderWhere builds the SQL GORM writes for c's WHERE clause, without a
// database, and returns it with its bound values.
func renderWhere(t *testing.T, c compiled) (string, []any) {
	t.Helper()
	db, err := gorm.Open(tests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatalf("gorm.Open(dummy): %v", err)
	}
	var rows []testModel
	stmt := db.Model(&testModel{}).Clauses(c.where).Find(&rows).Statement
	sql := stmt.SQL.String()
	_, where, ok := strings.Cut(sql, " WHERE ")
	if !ok {
		t.Fatalf("no WHERE in %q", sql)
	}
	return where, stmt.Vars
}

func TestCompileBindsValues(t *testing.T) {
	s := testSchema(t)
	id := uuid.New()
	tests := []struct {
		name      string
		value     any
		wantWhere string
		wantVars  int
	}{
		{"string", "a' OR '1'='1", "`test_models`.`name` = ?", 1},
		{"int", 42, "`test_models`.`name` = ?", 1},
		{"[]byte", []byte("ada"), "`test_models`.`name` = ?", 1},
		{"uuid.UUID", id, "`test_models`.`name` = ?", 1},
		{"nil", nil, "`test_models`.`name` IS NULL", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compile(s, "testModel", []Filter{Eq("Name", tt.value)}, nil)
			if err != nil {
				t.Fatalf("compile = %v", err)
			}
			where, vars := renderWhere(t, c)
			if where != tt.wantWhere || len(vars) != tt.wantVars {
				t.Errorf("WHERE %s %v, want %s with %d bound values", where, vars, tt.wantWhere, tt.wantVars)
			}
		})
	}
}

// Eq promises one value "always sent as a bound parameter", but checkScalar
// lets through arrays, which GORM expands into a row "(?,?)", and SQL
// expressions, which GORM writes into the statement raw.
func TestCompileRejectsNonScalarValues(t *testing.T) {
	s := testSchema(t)
	db, err := gorm.Open(tests.DummyDialector{}, &gorm.Config{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"[2]int":      [2]int{1, 2},
		"gorm.Expr":   gorm.Expr("1 OR 1=1"),
		"clause.Expr": clause.Expr{SQL: "lower(name)"},
		"subquery":    db.Model(&testModel{}).Select("name"),
	} {
		c, err := compile(s, "testModel", []Filter{Eq("Name", v)}, nil)
		if !errors.Is(err, ErrInvalid) {
			where, vars := renderWhere(t, c)
			t.Errorf("%s: compile = %v, rendering WHERE %s %v; want ErrInvalid", name, err, where, vars)
		}
	}
}

// pgx quotes an argument it cannot encode; dbkit withholds it and calls it
// invalid input.
func TestEncodeErrorsWithholdTheValue(t *testing.T) {
	pgxErr := errors.New("failed to encode args[0]: unable to encode 7193846251 into binary format for uuid (OID 2950): cannot find encode plan")
	err := translateDriver(context.Background(), fmt.Errorf("wrapped: %w", pgxErr))
	if strings.Contains(err.Error(), "7193846251") {
		t.Errorf("message %q quotes the value", err)
	}
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, pgxErr) {
		t.Errorf("%v: want it to match ErrInvalid and keep pgx's error", err)
	}
	if again := translateDriver(context.Background(), err); again != err {
		t.Errorf("translating twice changed %v into %v", err, again)
	}
	other := errors.New("conn closed")
	if got := translateDriver(context.Background(), other); got != other {
		t.Errorf("an unrelated error became %v", got)
	}
}

// compile resolves conds and opts against s, as a repository of the model
// does: the tests' way into compileQuery.
func compile(s *schema.Schema, model string, conds []Filter, opts []QueryOption) (compiled, error) {
	all := make([]QueryOption, 0, len(conds)+len(opts))
	for _, c := range conds {
		all = append(all, c)
	}
	r, err := newFieldResolver(model, s, nil, DefaultInputLimits())
	if err != nil {
		return compiled{}, err
	}
	return compileQuery(r, append(all, opts...), false)
}

// A ConstraintError keeps the row's values in Detail for code that asks for
// them, but no printed form shows it: %#v and %d would walk the fields.
func TestConstraintErrorPrintsNoDetail(t *testing.T) {
	const marker = "detail-marker-2c8a"
	pgErr := &pgconn.PgError{Severity: "ERROR", Code: codeUnique, Message: "duplicate key value violates unique constraint",
		Detail: "Key (email)=(" + marker + "@example.com) already exists.", ConstraintName: "users_email_key", TableName: "users"}
	ce := translateDriver(context.Background(), pgErr)
	if _, ok := ce.(*ConstraintError); !ok {
		t.Fatalf("translateDriver = %T, want *ConstraintError", ce)
	}
	redacttest.Check(t, ce, []string{marker}, []string{"duplicate key", "users_email_key"})
	if got := fmt.Sprintf("%#v", ce); !strings.HasPrefix(got, "&dbkit.ConstraintError{Kind:dbkit.ErrDuplicate,") {
		t.Errorf("%%#v = %s, want Go syntax naming the kind", got)
	}
	if !strings.Contains(ce.(*ConstraintError).Detail, marker) {
		t.Error("Detail lost the row's values")
	}
}
