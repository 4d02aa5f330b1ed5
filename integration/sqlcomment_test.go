package integration

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// traceComment is WithTraceComments' comment at the end of a statement.
var traceComment = regexp.MustCompile(` /\*traceparent='00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]'\*/;?$`)

// session watches, from a connection of its own, the one session of a DB
// opened with MaxOpenConns 1: what pg_stat_activity shows it runs, or ran
// last.
type session struct {
	watcher *dbkit.BaseDatabase[User]
	pid     int
}

func watchSession(t *testing.T, db *dbkit.DB, cfg dbkit.Config) *session {
	t.Helper()
	var pid int
	if err := dbkit.NewBaseDatabase[User](db).Query(context.Background()).Raw("SELECT pg_backend_pid()").Scan(context.Background(), &pid); err != nil {
		t.Fatal(err)
	}
	return &session{watcher: dbkit.NewBaseDatabase[User](openDB(t, cfg)), pid: pid}
}

type activity struct {
	State string
	Query string
}

// now is the session's row of pg_stat_activity.
func (s *session) now(t *testing.T) activity {
	t.Helper()
	var a activity
	if err := s.watcher.Query(context.Background()).Raw("SELECT state, query FROM pg_stat_activity WHERE pid = ?", s.pid).
		Scan(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// clientSpan is the last CLIENT span ended whose db.query.text holds text.
func (o *observed) clientSpan(t *testing.T, text string) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := o.spans.Ended()
	for i := len(spans) - 1; i >= 0; i-- {
		if s := spans[i]; s.SpanKind() == trace.SpanKindClient && strings.Contains(attrs(s)["db.query.text"], text) {
			return s
		}
	}
	t.Fatalf("no CLIENT span with %q in db.query.text among %v", text, names(spans))
	return nil
}

// wantTraceComment checks that query, as the server saw it, holds sql and
// ends with the traceparent of span.
func wantTraceComment(t *testing.T, query, sql string, span sdktrace.ReadOnlySpan) {
	t.Helper()
	m := traceComment.FindStringSubmatch(query)
	if m == nil || !strings.Contains(query, sql) {
		t.Fatalf("the server saw %q: want %q ending with a traceparent comment", query, sql)
	}
	sc := span.SpanContext()
	if m[1] != sc.TraceID().String() || m[2] != sc.SpanID().String() {
		t.Errorf("the server saw trace %s span %s; the statement's span %q is trace %s span %s",
			m[1], m[2], span.Name(), sc.TraceID(), sc.SpanID())
	}
}

// watchedUser calls the function its ctx carries after each insert, inside
// the write's transaction.
type watchedUser struct{ User }

func (watchedUser) TableName() string { return "users" }

type afterCreateKey struct{}

func (u *watchedUser) AfterCreate(tx *gorm.DB) error {
	if f, ok := tx.Statement.Context.Value(afterCreateKey{}).(func(*gorm.DB) error); ok {
		return f(tx)
	}
	return nil
}

// With WithTraceComments, every path a statement takes to the server
// carries its span's trace context there: a repository call, a call inside
// InTx, a write made atomic by its hooks, raw SQL through Query; and the
// server shows it, in pg_stat_activity, with the trace and span IDs of the
// statement's exported CLIENT span.
func TestTraceCommentsReachTheServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := oneSession(t)
	o := newObserved(t, cfg, dbkit.WithTraceComments())
	users := dbkit.NewBaseDatabase[User](o.db)
	s := watchSession(t, o.db, cfg)
	u := User{Email: "ada@example.com", Name: "Ada"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}

	t.Run("repository", func(t *testing.T) {
		if _, err := users.Get(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		wantTraceComment(t, s.now(t).Query, `FROM "users" WHERE "users"."id" = $1`, o.clientSpan(t, `FROM "users" WHERE "users"."id" = $1`))
	})

	t.Run("InTx", func(t *testing.T) {
		var seen activity
		err := o.db.InTx(ctx, func(ctx context.Context) error {
			u.Name = "Ada L."
			err := users.Update(ctx, &u)
			seen = s.now(t) // COMMIT, whose text pgx writes, comes after
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if seen.State != "idle in transaction" {
			t.Errorf("state %q: not the transaction's session", seen.State)
		}
		wantTraceComment(t, seen.Query, `UPDATE "users" SET`, o.clientSpan(t, `UPDATE "users" SET`))
	})

	t.Run("atomic write", func(t *testing.T) {
		var seen activity
		watched := dbkit.NewBaseDatabase[watchedUser](o.db)
		hook := func(tx *gorm.DB) error {
			if _, err := tx.DB(); err != nil { // as on GORM's *sql.Tx
				return fmt.Errorf("DB() in a hook: %w", err)
			}
			seen = s.now(t)
			return nil
		}
		err := watched.Create(context.WithValue(ctx, afterCreateKey{}, hook), &watchedUser{User{Email: "grace@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		if seen.State != "idle in transaction" {
			t.Errorf("state %q: the hook did not run inside the write's transaction", seen.State)
		}
		wantTraceComment(t, seen.Query, `INSERT INTO "users"`, o.clientSpan(t, `INSERT INTO "users"`))
	})

	t.Run("raw SQL in flight", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			var one int
			done <- users.Query(ctx).Raw("SELECT 1 FROM pg_sleep(1)").Scan(ctx, &one)
		}()
		var seen activity
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if a := s.now(t); a.State == "active" && strings.Contains(a.Query, "pg_sleep") {
				seen = a
				break
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if seen.Query == "" {
			t.Fatal("pg_stat_activity never showed the statement running")
		}
		wantTraceComment(t, seen.Query, "SELECT 1 FROM pg_sleep(1)", o.clientSpan(t, "pg_sleep"))
	})
}

// oneSession returns a new database's configuration for a DB of one
// connection, whose statements pg_stat_activity shows.
func oneSession(t *testing.T) dbkit.Config {
	t.Helper()
	cfg := srv.NewDatabase(t)
	cfg.MaxOpenConns = 1
	return cfg
}

// getSeen creates a user, gets it with ctx, and returns what the server
// saw of the Get.
func getSeen(ctx context.Context, t *testing.T, users *dbkit.BaseDatabase[User], s *session) (User, string) {
	t.Helper()
	u := User{Email: "ada-" + uuid.NewString() + "@example.com"}
	if err := users.Create(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	q := s.now(t).Query
	if !strings.Contains(q, `FROM "users"`) {
		t.Fatalf("the server saw %q, not the Get", q)
	}
	return u, q
}

// The option is off by default: the server sees the statement as GORM
// wrote it.
func TestTraceCommentsOffByDefault(t *testing.T) {
	t.Parallel()
	cfg := oneSession(t)
	o := newObserved(t, cfg)
	if _, q := getSeen(context.Background(), t, dbkit.NewBaseDatabase[User](o.db), watchSession(t, o.db, cfg)); strings.Contains(q, "/*") {
		t.Errorf("the server saw %q: want the Get without a comment", q)
	}
}

// A statement with no span in ctx gets no comment: without a tracer
// provider, only the caller's span, when there is one, is there to give.
func TestTraceCommentsNeedASpan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := oneSession(t)
	db := openDB(t, cfg, dbkit.WithMigrations(schema...), dbkit.WithTraceComments())
	users := dbkit.NewBaseDatabase[User](db)
	s := watchSession(t, db, cfg)
	u, q := getSeen(ctx, t, users, s)
	if strings.Contains(q, "/*") {
		t.Errorf("no span: the server saw %q, want the Get without a comment", q)
	}

	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	callerCtx, caller := tp.Tracer("caller").Start(ctx, "handler")
	if _, err := users.Get(callerCtx, u.ID); err != nil {
		t.Fatal(err)
	}
	caller.End()
	m := traceComment.FindStringSubmatch(s.now(t).Query)
	if sc := caller.SpanContext(); m == nil || m[1] != sc.TraceID().String() || m[2] != sc.SpanID().String() {
		t.Errorf("the server saw %q: want the caller's trace %s and span %s", s.now(t).Query, sc.TraceID(), sc.SpanID())
	}
}

// A comment makes every statement's text unique: with pgx's default
// cache_statement mode, commented statements run uncached, so that the
// session prepares none of them (it would prepare one per call).
func TestTraceCommentsPrepareNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := oneSession(t) // the statements below share a session and its prepared statements
	o := newObserved(t, cfg, dbkit.WithTraceComments())
	users := dbkit.NewBaseDatabase[User](o.db)
	u := User{Email: "ada@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	prepared := func() (n int64) {
		t.Helper()
		if err := users.Query(ctx).Raw("SELECT count(*) FROM pg_prepared_statements").Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := prepared()
	for range 20 {
		if _, err := users.Get(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if err := o.db.InTx(ctx, func(ctx context.Context) error { return users.Update(ctx, &u) }); err != nil {
			t.Fatal(err)
		}
	}
	var commented int64
	if err := users.Query(ctx).Raw("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%traceparent%'").Scan(ctx, &commented); err != nil {
		t.Fatal(err)
	}
	if after := prepared(); after != before || commented != 0 {
		t.Errorf("prepared statements: %d before 40 commented statements, %d after, %d of them commented; want none added", before, after, commented)
	}
}

// jsonDoc is stored as jsonb, through a driver.Valuer that returns bytes,
// as many JSON types are.
type jsonDoc map[string]any

func (d jsonDoc) Value() (driver.Value, error) {
	if d == nil {
		return nil, nil
	}
	return json.Marshal(d)
}

func (d *jsonDoc) Scan(src any) error {
	switch src := src.(type) {
	case nil:
		*d = nil
		return nil
	case string:
		return json.Unmarshal([]byte(src), d)
	case []byte:
		return json.Unmarshal(src, d)
	}
	return fmt.Errorf("jsonDoc: cannot scan %T", src)
}

// pgArray is a PostgreSQL array, through a driver.Valuer (GORM would
// expand a plain slice into a list of parameters).
type pgArray[T any] []T

func (a pgArray[T]) Value() (driver.Value, error) {
	if a == nil {
		return nil, nil
	}
	m := pgtype.NewMap()
	dt, ok := m.TypeForValue([]T(a))
	if !ok {
		return nil, fmt.Errorf("pgArray: no PostgreSQL type for %T", []T(a))
	}
	buf, err := m.Encode(dt.OID, pgtype.TextFormatCode, []T(a), nil)
	return string(buf), err
}

func (a *pgArray[T]) Scan(src any) error {
	return pgtype.NewMap().SQLScanner((*[]T)(a)).Scan(src)
}

// Kinds has a column of each type a parameter is commonly bound to.
type Kinds struct {
	dbkit.Model
	At        time.Time
	N         int32
	Big       int64
	Text      string
	Doc       json.RawMessage `gorm:"type:jsonb"`
	DocBytes  []byte          `gorm:"type:jsonb"`
	DocValuer jsonDoc         `gorm:"type:jsonb"`
	Blob      []byte
	Tags      pgArray[string] `gorm:"type:text[]"`
	Nums      pgArray[int64]  `gorm:"type:bigint[]"`
	Wait      time.Duration
	Ratio     float64
	Note      *string
	Ref       *uuid.UUID `gorm:"type:uuid"`
}

var kindsTable = migrate.Migration{ID: "202611300900_create_kinds", Migrate: func(tx *gorm.DB) error {
	return tx.Exec(`CREATE TABLE kinds (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
		at timestamptz, n integer, big bigint, text text, doc jsonb, doc_bytes jsonb, doc_valuer jsonb, blob bytea,
		tags text[], nums bigint[], wait bigint, ratio double precision, note text, ref uuid)`).Error
}}

// With trace comments on, statements run in pgx's exec or describe_exec
// mode instead of cache_statement: parameters of every common kind, NULL
// included, still go in and come out as they were, in the repository's
// writes, reads and filters, in raw SQL and in a transaction.
func TestTraceCommentsParameters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := oneSession(t)
	o := newObserved(t, cfg, dbkit.WithTraceComments(), dbkit.WithMigrations(kindsTable))
	kinds := dbkit.NewBaseDatabase[Kinds](o.db)
	s := watchSession(t, o.db, cfg)
	note, ref := "it's \\ ünïcode", uuid.New()
	full := Kinds{
		At: time.Date(2026, 11, 30, 23, 30, 0, 123456000, time.FixedZone("", 2*3600)), N: -7, Big: 1 << 40, Text: "héllo, 'world' \\x00",
		Doc: json.RawMessage(`{"a": [1, "x"]}`), DocBytes: []byte(`{"b": true}`), DocValuer: jsonDoc{"c": "d"},
		Blob: []byte{0, 1, '\\', 'x', 0xff}, Tags: pgArray[string]{"a", "b,c", `"q"`, ""}, Nums: pgArray[int64]{-1, 1 << 50},
		Wait: 1500 * time.Millisecond, Ratio: 0.1, Note: &note, Ref: &ref,
	}
	if err := kinds.Create(ctx, &full); err != nil {
		t.Fatal(err)
	}
	var empty Kinds
	if err := o.db.InTx(ctx, func(ctx context.Context) error { return kinds.Create(ctx, &empty) }); err != nil {
		t.Fatal(err)
	}

	for _, want := range []Kinds{full, empty} {
		got, err := kinds.Get(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantSameKinds(t, got, want)
	}
	wantTraceComment(t, s.now(t).Query, `FROM "kinds"`, o.clientSpan(t, `FROM "kinds"`))

	// Each column as a filter, with the row's own value: exec mode for
	// plain values, describe_exec for the others, IS NULL for nil.
	for _, c := range []struct {
		row   Kinds
		field string
		value any
	}{
		{full, "At", full.At}, {full, "N", full.N}, {full, "Big", full.Big}, {full, "Text", full.Text},
		{full, "Doc", full.Doc}, {full, "DocBytes", full.DocBytes}, {full, "DocValuer", full.DocValuer},
		{full, "Blob", full.Blob}, {full, "Tags", full.Tags}, {full, "Nums", full.Nums}, {full, "Wait", full.Wait},
		{full, "Ratio", full.Ratio}, {full, "Note", full.Note}, {full, "Ref", full.Ref},
		{empty, "Note", nil}, {empty, "Ref", nil}, {empty, "Doc", nil},
	} {
		found, err := kinds.Find(ctx, dbkit.Eq("ID", c.row.ID), dbkit.Eq(c.field, c.value))
		if err != nil || len(found) != 1 {
			t.Errorf("Find %s = %v: %d rows, %v; want the row", c.field, c.value, len(found), err)
		}
	}

	// Raw SQL, in a transaction: plain values (exec mode), then values
	// that are not (describe_exec).
	err := o.db.InTx(ctx, func(ctx context.Context) error {
		var n int
		err := kinds.Query(ctx).Raw(`SELECT count(*) FROM kinds WHERE id = ? AND at = ? AND n = ? AND big = ? AND text = ?
			AND note = ? AND ref = ? AND created_at IS NOT DISTINCT FROM ?`,
			full.ID, full.At, full.N, full.Big, full.Text, full.Note, full.Ref, full.CreatedAt).Scan(ctx, &n)
		if err != nil || n != 1 {
			return fmt.Errorf("plain parameters: %d rows, %w", n, err)
		}
		err = kinds.Query(ctx).Raw(`SELECT count(*) FROM kinds WHERE id = ? AND note IS NOT DISTINCT FROM ? AND ref IS NOT DISTINCT FROM ?`,
			empty.ID, nil, (*uuid.UUID)(nil)).Scan(ctx, &n)
		if err != nil || n != 1 {
			return fmt.Errorf("NULL parameters: %d rows, %w", n, err)
		}
		err = kinds.Query(ctx).Raw(`SELECT count(*) FROM kinds WHERE id = ? AND doc = ? AND doc_bytes = ? AND doc_valuer = ?
			AND blob = ? AND tags = ? AND nums = ? AND wait = ? AND ratio = ?`,
			full.ID, full.Doc, full.DocBytes, full.DocValuer, full.Blob, full.Tags, full.Nums, full.Wait, full.Ratio).Scan(ctx, &n)
		if err != nil || n != 1 {
			return fmt.Errorf("other parameters: %d rows, %w", n, err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func wantSameKinds(t *testing.T, got, want Kinds) {
	t.Helper()
	sameJSON := func(a, b []byte) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		var x, y any
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
	}
	switch {
	case !got.At.Equal(want.At), got.N != want.N, got.Big != want.Big, got.Text != want.Text,
		!sameJSON(got.Doc, want.Doc), !sameJSON(got.DocBytes, want.DocBytes), !reflect.DeepEqual(got.DocValuer, want.DocValuer),
		!bytes.Equal(got.Blob, want.Blob), !slices.Equal(got.Tags, want.Tags), !slices.Equal(got.Nums, want.Nums),
		got.Wait != want.Wait, got.Ratio != want.Ratio,
		(got.Note == nil) != (want.Note == nil), got.Note != nil && *got.Note != *want.Note,
		(got.Ref == nil) != (want.Ref == nil), got.Ref != nil && *got.Ref != *want.Ref:
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
}

// Dated has columns without a time zone, which read a time as written in
// its own zone in pgx's cached modes.
type Dated struct {
	dbkit.Model
	Day   time.Time `gorm:"type:date"`
	Local time.Time `gorm:"type:timestamp"`
	Clock string    `gorm:"-"`
}

var datedTable = migrate.Migration{ID: "202611300901_create_dated", Migrate: func(tx *gorm.DB) error {
	return tx.Exec(`CREATE TABLE dateds (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
		day date NOT NULL, local timestamp NOT NULL)`).Error
}}

// TestTraceCommentsKeepLocalTimes: a time not in UTC, written to date and
// timestamp columns and compared with them, gives what it gives without
// comments. In pgx's exec mode it would be sent as UTC, a day or hours
// away.
func TestTraceCommentsKeepLocalTimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	when := time.Date(2026, 5, 1, 0, 30, 0, 0, time.FixedZone("CEST", 2*3600))
	for _, comments := range []bool{false, true} {
		opts := []dbkit.Option{dbkit.WithMigrations(datedTable)}
		if comments {
			opts = append(opts, dbkit.WithTraceComments())
		}
		o := newObserved(t, srv.NewDatabase(t), opts...)
		dated := dbkit.NewBaseDatabase[Dated](o.db)
		tctx, span := sdktrace.NewTracerProvider().Tracer("test").Start(ctx, "caller")
		if err := dated.Create(tctx, &Dated{Day: when, Local: when}); err != nil {
			t.Fatal(err)
		}
		var day, local string
		if err := o.db.Gorm(ctx).Raw("SELECT day::text, local::text FROM dateds").Row().Scan(&day, &local); err != nil {
			t.Fatal(err)
		}
		n, err := dated.Count(tctx, dbkit.Eq("Day", when), dbkit.Eq("Local", when))
		span.End()
		if day != "2026-05-01" || local != "2026-05-01 00:30:00" || err != nil || n != 1 {
			t.Errorf("comments %v: stored %s and %s, %d found by the same time (%v); want 2026-05-01, 2026-05-01 00:30:00, 1",
				comments, day, local, n, err)
		}
	}
}
