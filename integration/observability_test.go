package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
)

// startSampler records the attributes every span has when it starts: what
// a sampler can decide on.
type startSampler struct {
	mu   sync.Mutex
	seen map[string][]attribute.KeyValue // by span name, the last seen
}

func (s *startSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string][]attribute.KeyValue{}
	}
	s.seen[p.Name] = p.Attributes
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
}

func (s *startSampler) Description() string { return "records start attributes" }

func (s *startSampler) at(name string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, kv := range s.seen[name] {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

// observed is a DB wired to in-memory telemetry.
type observed struct {
	db      *dbkit.DB
	cfg     dbkit.Config
	spans   *tracetest.SpanRecorder
	sampler *startSampler
	metrics *sdkmetric.ManualReader
	logs    *logBuffer
	// telemetry are the options that send to the above, for another Connect.
	telemetry []dbkit.Option
}

func newObserved(t *testing.T, cfg dbkit.Config, opts ...dbkit.Option) *observed {
	t.Helper()
	o := &observed{cfg: cfg, spans: tracetest.NewSpanRecorder(), sampler: &startSampler{}, metrics: sdkmetric.NewManualReader(), logs: &logBuffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans), sdktrace.WithSampler(o.sampler))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.metrics))
	logger := slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.telemetry = []dbkit.Option{dbkit.WithTracerProvider(tp), dbkit.WithMeterProvider(mp), dbkit.WithLogger(logger)}
	db, err := dbkit.Connect(context.Background(), cfg, append(append([]dbkit.Option{dbkit.WithMigrations(schema...)}, o.telemetry...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	o.db = db
	return o
}

func (o *observed) span(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Name() == name {
			found = s
		}
	}
	if found == nil {
		t.Fatalf("no span %q among %v", name, names(o.spans.Ended()))
	}
	return found
}

func (o *observed) children(parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

func wantAttrs(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

// auditedUser runs a statement of its own after each insert.
type auditedUser struct{ User }

func (auditedUser) TableName() string { return "users" }

func (u *auditedUser) AfterCreate(tx *gorm.DB) error { return tx.Exec("SELECT 1").Error }

// refusedUser's hook refuses every row before it is written.
type refusedUser struct{ User }

func (refusedUser) TableName() string { return "users" }

func (u *refusedUser) BeforeCreate(*gorm.DB) error { return errors.New("refused") }

func TestSpans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	o := newObserved(t, cfg, dbkit.WithRepositorySpans())
	users := dbkit.NewBaseDatabase[User](o.db)

	u := User{Email: "spans@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}

	// Session: connect, under it migrate, under that one span per migration
	// applied.
	connect := o.span(t, "DatabaseSession.Connect")
	migrate := o.span(t, "DatabaseSession.Migrate")
	if migrate.Parent().SpanID() != connect.SpanContext().SpanID() {
		t.Error("DatabaseSession.Migrate is not a child of DatabaseSession.Connect")
	}
	var migrations []string
	for _, s := range o.children(migrate) {
		if s.Name() == "DatabaseSession.Migration" {
			migrations = append(migrations, attrs(s)["dbkit.migration.id"])
		}
	}
	if len(migrations) != len(schema) || migrations[0] != schema[0].ID {
		t.Errorf("migration spans under Migrate for %v, want one per migration", migrations)
	}

	// Repository span: internal, attributes at start, the SQL span its child.
	get := o.span(t, "User.Get")
	if get.SpanKind() != trace.SpanKindInternal {
		t.Errorf("User.Get kind %v", get.SpanKind())
	}
	wantAttrs(t, "User.Get at start", o.sampler.at("User.Get"), map[string]string{
		"dbkit.operation": "Get", "db.collection.name": "users", "dbkit.model": "User",
	})
	for _, k := range []string{"db.system.name", "db.operation.name"} {
		if _, ok := attrs(get)[k]; ok {
			t.Errorf("User.Get has %s, which would make a backend count it as a database call: %v", k, attrs(get))
		}
	}
	kids := o.children(get)
	if len(kids) != 1 || kids[0].SpanKind() != trace.SpanKindClient {
		t.Fatalf("User.Get children: %v", names(kids))
	}
	stmt := kids[0]
	startAttrs := map[string]string{
		"db.system.name": "postgresql", "db.namespace": cfg.Database, "server.address": cfg.Host,
		"server.port": fmt.Sprint(cfg.Port), "db.collection.name": "users", "db.operation.name": "SELECT",
		"db.query.summary": "SELECT users",
	}
	wantAttrs(t, "SQL span at start", o.sampler.at("SELECT users"), startAttrs)
	// The GORM plugin renames its span and sets a lower-case operation at the
	// end; the names and attributes a sampler saw must stand.
	if stmt.Name() != "SELECT users" {
		t.Errorf("SQL span ended as %q, want %q", stmt.Name(), "SELECT users")
	}
	wantAttrs(t, "SQL span at end", attrs(stmt), startAttrs)
	if q := attrs(stmt)["db.query.text"]; !strings.Contains(q, "$1") || strings.Contains(q, u.ID.String()) {
		t.Errorf("db.query.text = %q, want it parameterised", q)
	}

	// Failures: the SQL span carries the SQLSTATE; not-found is an event.
	if err := users.Create(ctx, &User{Email: u.Email}); !errors.Is(err, dbkit.ErrDuplicate) {
		t.Fatal(err)
	}
	create := o.span(t, "User.Create")
	if create.Status().Code != codes.Error {
		t.Errorf("failed User.Create status %v", create.Status())
	}
	insert := o.children(create)[0]
	wantAttrs(t, "failed INSERT", attrs(insert), map[string]string{"db.response.status_code": "23505", "error.type": "23505"})
	if insert.Status().Code != codes.Error {
		t.Errorf("failed INSERT status %v", insert.Status())
	}
	u2 := User{Email: "spans2@example.com"}
	if err := users.Create(ctx, &u2); err != nil {
		t.Fatal(err)
	}
	if err := users.Delete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Fatal(err)
	}
	missing := o.span(t, "User.Get")
	if missing.Status().Code != codes.Unset || len(missing.Events()) != 1 || missing.Events()[0].Name != "dbkit.not_found" {
		t.Errorf("User.Get of a missing row: status %v, events %v", missing.Status(), missing.Events())
	}
	if s := o.children(missing)[0]; s.Status().Code != codes.Unset {
		t.Errorf("the SQL span of a not-found is %v, want unset", s.Status())
	}

	// Patch builds its UPDATE in a dry run first: only the statement that ran
	// has a span.
	if _, err := dbkit.NewBaseDatabase[User](o.db, dbkit.Patchable("name")).Patch(ctx, u2.ID, map[string]any{"name": "p"}); err != nil {
		t.Fatal(err)
	}
	if kids := o.children(o.span(t, "User.Patch")); len(kids) != 1 || kids[0].Name() != "UPDATE users" {
		t.Errorf("User.Patch children %v, want the one UPDATE that ran", names(kids))
	}

	// Pages report their size and the rows they returned.
	if _, err := users.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 7}); err != nil {
		t.Fatal(err)
	}
	wantAttrs(t, "User.FindPage", attrs(o.span(t, "User.FindPage")), map[string]string{"dbkit.page.size": "7"})

	// A transaction: its span, retries as events, repository spans inside it.
	attempts := 0
	err := o.db.InTx(ctx, func(ctx context.Context) error {
		attempts++
		if _, err := users.Count(ctx); err != nil {
			return err
		}
		if attempts == 1 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return nil
	}, dbkit.RetrySerializationFailures(3), dbkit.Isolation(sql.LevelSerializable))
	if err != nil {
		t.Fatal(err)
	}
	tx := o.span(t, "DatabaseSession.Transaction")
	if len(tx.Events()) != 1 || tx.Events()[0].Name != "dbkit.tx.retry" {
		t.Errorf("transaction events %v, want one retry", tx.Events())
	} else {
		retry := map[string]string{}
		for _, kv := range tx.Events()[0].Attributes {
			retry[string(kv.Key)] = kv.Value.String()
		}
		wantAttrs(t, "retry event", retry, map[string]string{"dbkit.tx.attempt": "2", "error.type": "40001"})
	}
	wantAttrs(t, "transaction at start", o.sampler.at("DatabaseSession.Transaction"),
		map[string]string{"dbkit.tx.isolation": "Serializable", "db.system.name": "postgresql"})
	if count := o.span(t, "User.Count"); count.Parent().SpanID() != tx.SpanContext().SpanID() {
		t.Error("User.Count in the transaction is not a child of its span")
	}

	// A statement's span is the statement's alone: what a hook runs after
	// it is a sibling, not a child, and starts after it ended. The hook
	// makes the write a transaction, whose BEGIN and COMMIT have spans.
	audited := dbkit.NewBaseDatabase[auditedUser](o.db)
	if err := audited.Create(ctx, &auditedUser{User{Email: "audited@example.com"}}); err != nil {
		t.Fatal(err)
	}
	kids = o.children(o.span(t, "auditedUser.Create"))
	if got := strings.Join(names(kids), ", "); got != "BEGIN, INSERT users, SELECT, COMMIT" ||
		kids[2].StartTime().Before(kids[1].EndTime()) {
		t.Errorf("auditedUser.Create children %v: want BEGIN, INSERT users, then the hook's SELECT after it, COMMIT", got)
	}
	for _, k := range kids {
		if k.SpanKind() != trace.SpanKindClient || attrs(k)["db.system.name"] != "postgresql" {
			t.Errorf("%s: kind %v, attributes %v; want a CLIENT statement span", k.Name(), k.SpanKind(), attrs(k))
		}
	}
	wantAttrs(t, "BEGIN", attrs(kids[0]), map[string]string{"db.operation.name": "BEGIN", "db.query.summary": "BEGIN"})
	// A hook that refuses the row: no statement of the write reached the
	// server; its transaction was begun and rolled back.
	if err := dbkit.NewBaseDatabase[refusedUser](o.db).Create(ctx, &refusedUser{User{Email: "refused@example.com"}}); err == nil {
		t.Fatal("the hook did not refuse")
	}
	if kids := names(o.children(o.span(t, "refusedUser.Create"))); strings.Join(kids, ", ") != "BEGIN, ROLLBACK" {
		t.Errorf("a create its hook refused has statement spans %v, want BEGIN and ROLLBACK only", kids)
	}
	// A soft delete is an UPDATE, and its span says so.
	accounts := dbkit.NewBaseDatabase[Account](o.db)
	acc := Account{Email: "soft@example.com"}
	if err := accounts.Create(ctx, &acc); err != nil {
		t.Fatal(err)
	}
	if err := accounts.Delete(ctx, acc.ID); err != nil {
		t.Fatal(err)
	}
	if kids := o.children(o.span(t, "Account.Delete")); len(kids) != 1 || kids[0].Name() != "UPDATE accounts" ||
		attrs(kids[0])["db.operation.name"] != "UPDATE" {
		t.Errorf("soft delete statements %v, want UPDATE accounts", names(kids))
	}
	// SQL the caller writes names no table, whatever model it ran through.
	var one int
	if err := users.Query(ctx).Raw("SELECT 1").Scan(ctx, &one); err != nil {
		t.Fatal(err)
	}
	raw := o.span(t, "SELECT")
	if _, ok := attrs(raw)["db.collection.name"]; ok || attrs(raw)["db.query.text"] != "SELECT ?" {
		t.Errorf("raw SELECT 1 span attributes %v: want no collection, the text with its literal replaced", attrs(raw))
	}

	// Every span of Connect, migrations and their statements included, is
	// in Connect's trace.
	for _, s := range o.spans.Ended() {
		if !s.StartTime().After(connect.EndTime()) && s.SpanContext().TraceID() != connect.SpanContext().TraceID() {
			t.Errorf("span %s, during Connect, is in another trace", s.Name())
		}
	}

	// Health and close, with the connection's attributes.
	if err := o.db.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"DatabaseSession.Health", "DatabaseSession.Close"} {
		wantAttrs(t, name, attrs(o.span(t, name)), map[string]string{
			"db.system.name": "postgresql", "db.namespace": cfg.Database, "server.port": fmt.Sprint(cfg.Port),
		})
	}
}

// point is one metric data point, flattened.
type point struct {
	metric, unit string
	attrs        attribute.Set
	value        float64 // a sum's value, a histogram's sum
	count        uint64  // a histogram's count
}

func collect(t *testing.T, r *sdkmetric.ManualReader) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, m.Unit, p.Attributes, p.Sum, p.Count})
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, m.Unit, p.Attributes, float64(p.Value), 0})
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, m.Unit, p.Attributes, p.Value, 0})
				}
			}
		}
	}
	return out
}

// find returns the points of metric whose attributes include want.
func find(points []point, metric string, want map[string]string) []point {
	var out []point
	for _, p := range points {
		if p.metric != metric {
			continue
		}
		ok := true
		for k, v := range want {
			if got, found := p.attrs.Value(attribute.Key(k)); !found || got.String() != v {
				ok = false
			}
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}

// Two pools on one MeterProvider, as in a service with a primary and a
// replica: each reports under its own name, with its own values, until it
// is closed; a Connect that fails leaves nothing registered.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	open := func(cfg dbkit.Config, opts ...dbkit.Option) *dbkit.DB {
		t.Helper()
		db, err := dbkit.Connect(ctx, cfg, append([]dbkit.Option{dbkit.WithMeterProvider(mp), dbkit.WithMigrations(schema...)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close(context.Background()) })
		return db
	}
	cfgA, cfgB := srv.NewDatabase(t), srv.NewDatabase(t)
	cfgA.MaxOpenConns, cfgB.MaxOpenConns = 7, 3
	a, b := open(cfgA), open(cfgB, dbkit.WithPoolName("replica"))
	poolA := cfgA.Addr() + "/" + cfgA.Database

	users := dbkit.NewBaseDatabase[User](a)
	u := User{Email: "metrics@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	_ = users.Create(ctx, &User{Email: u.Email}) // a duplicate
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := dbkit.NewBaseDatabase[User](b).Count(ctx); err != nil {
		t.Fatal(err)
	}

	points := collect(t, reader)
	for _, c := range []struct {
		metric string
		want   map[string]string
	}{
		{"db.client.operation.duration", map[string]string{"db.system.name": "postgresql", "db.namespace": cfgA.Database,
			"db.collection.name": "users", "db.operation.name": "INSERT", "db.query.summary": "INSERT users",
			"server.address": cfgA.Host, "server.port": strconv.Itoa(cfgA.Port)}},
		{"db.client.operation.duration", map[string]string{"db.operation.name": "INSERT", "error.type": "23505", "db.response.status_code": "23505"}},
		{"db.client.operation.duration", map[string]string{"db.operation.name": "SELECT", "db.namespace": cfgB.Database}},
		{"db.client.connection.count", map[string]string{"db.client.connection.state": "idle", "db.client.connection.pool.name": poolA}},
		{"db.client.connection.count", map[string]string{"db.client.connection.state": "used", "db.client.connection.pool.name": "replica"}},
		{"db.client.connection.idle.max", map[string]string{"db.client.connection.pool.name": poolA}},
		{"dbkit.pool.waits", map[string]string{"db.client.connection.pool.name": poolA}},
		{"dbkit.pool.wait_time", map[string]string{"db.client.connection.pool.name": "replica"}},
	} {
		if len(find(points, c.metric, c.want)) == 0 {
			t.Errorf("no %s point with %v", c.metric, c.want)
		}
	}
	// Inside db.client.*, only the conventions' metrics, as the conventions
	// define them.
	for _, p := range points {
		if strings.HasPrefix(p.metric, "db.client.") && !slices.Contains([]string{"db.client.operation.duration",
			"db.client.connection.count", "db.client.connection.max", "db.client.connection.idle.max"}, p.metric) {
			t.Errorf("metric %s: in the conventions' namespace, not one of theirs", p.metric)
		}
	}
	// Values and units: durations in seconds, the pools' own limits.
	selects := find(points, "db.client.operation.duration", map[string]string{"db.operation.name": "SELECT", "db.namespace": cfgA.Database, "db.collection.name": "users"})
	if len(selects) != 1 || selects[0].unit != "s" || selects[0].count != 1 || selects[0].value <= 0 || selects[0].value > 10 {
		t.Errorf("SELECT durations %+v: want one sample of a few milliseconds, in s", selects)
	}
	for pool, want := range map[string]float64{poolA: 7, "replica": 3} {
		if max := find(points, "db.client.connection.max", map[string]string{"db.client.connection.pool.name": pool}); len(max) != 1 || max[0].value != want {
			t.Errorf("db.client.connection.max of %s: %+v, want one point of %v", pool, max, want)
		}
	}
	var inPool float64
	for _, p := range find(points, "db.client.connection.count", map[string]string{"db.client.connection.pool.name": poolA}) {
		inPool += p.value
	}
	if inPool < 1 || inPool > 7 {
		t.Errorf("pool A holds %v connections (idle + used), want 1 to 7", inPool)
	}

	// Closed, a pool stops reporting; a failed Connect never starts.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	failing := srv.NewDatabase(t)
	if _, err := dbkit.Connect(ctx, failing, dbkit.WithMeterProvider(mp), dbkit.WithPoolName("doomed"),
		dbkit.WithMigrations(dbkit.Migration{ID: "1", Migrate: func(tx *gorm.DB) error { return errors.New("no") }})); err == nil {
		t.Fatal("Connect with a failing migration succeeded")
	}
	points = collect(t, reader)
	for _, pool := range []string{"replica", "doomed"} {
		if left := find(points, "db.client.connection.max", map[string]string{"db.client.connection.pool.name": pool}); len(left) > 0 {
			t.Errorf("pool %s still reports after it closed: %+v", pool, left)
		}
	}
	if len(find(points, "db.client.connection.max", map[string]string{"db.client.connection.pool.name": poolA})) != 1 {
		t.Error("pool A stopped reporting when another closed")
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t), dbkit.WithRepositorySpans())
	users := dbkit.NewBaseDatabase[User](o.db)
	u := User{Email: "logs@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	_ = users.Create(ctx, &User{Email: u.Email})
	if _, err := users.Get(ctx, [16]byte{1}); !errors.Is(err, dbkit.ErrNotFound) {
		t.Fatal(err)
	}
	var records []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(o.logs.String())), []byte("\n")) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		records = append(records, r)
	}
	var missingTrace string
	for _, sp := range o.spans.Ended() {
		if sp.Name() == "User.Get" && len(sp.Events()) > 0 {
			missingTrace = sp.SpanContext().TraceID().String()
		}
	}
	var stmt, failed, notFound map[string]any
	lockLogged := false
	for _, r := range records {
		sql, _ := r["sql"].(string)
		// GORM inlines the values of what DB.Scan runs (migrate's lock calls
		// among them) into the SQL it gives its logger; dbkit's is not fooled.
		if strings.Contains(sql, "pg_try_advisory_lock(") {
			lockLogged = true
			if !strings.Contains(sql, "($1)") {
				t.Errorf("statement logged with its values: %s", sql)
			}
		}
		switch {
		case r["trace_id"] == missingTrace:
			notFound = r
		case r["level"] == "ERROR":
			failed = r
		case strings.HasPrefix(sql, "SELECT") && strings.Contains(sql, "LIMIT") && stmt == nil:
			stmt = r
		}
	}
	if !lockLogged {
		t.Error("migrate's lock statement was not logged")
	}
	if stmt == nil || stmt["level"] != "DEBUG" || !regexp.MustCompile(`= \$1 `).MatchString(stmt["sql"].(string)) || stmt["trace_id"] == nil {
		t.Errorf("statement log %v: want DEBUG, parameterised SQL, a trace_id", stmt)
	}
	matched := false
	for _, s := range o.spans.Ended() {
		if s.Name() == "User.Get" && s.SpanContext().TraceID().String() == stmt["trace_id"] {
			matched = true
		}
	}
	if !matched {
		t.Errorf("the statement's trace_id %v is not the trace of a User.Get span", stmt["trace_id"])
	}
	if failed == nil || !strings.Contains(fmt.Sprint(failed["error"]), "23505") || strings.Contains(fmt.Sprint(failed), u.Email) {
		t.Errorf("failed statement log %v: want ERROR with the SQLSTATE and no value", failed)
	}
	if missingTrace == "" || notFound == nil || notFound["level"] != "DEBUG" {
		t.Errorf("the statement of a Get that found nothing was logged as %v, want at DEBUG", notFound)
	}

	// Slow statements are WARN.
	slow := newObserved(t, srv.NewDatabase(t), dbkit.WithSlowQueryThreshold(time.Nanosecond))
	if _, err := dbkit.NewBaseDatabase[User](slow.db).Count(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(slow.logs.String(), `"level":"WARN","msg":"dbkit: slow statement"`) {
		t.Errorf("no slow-statement warning in:\n%s", slow.logs.String())
	}
}

// observedUsers is an observed database of its own, with repository spans,
// and its users, with opt among the options when with is true.
func observedUsers(t *testing.T, with bool, opt dbkit.Option) (*observed, *dbkit.BaseDatabase[User]) {
	t.Helper()
	opts := []dbkit.Option{dbkit.WithRepositorySpans()}
	if with {
		opts = append(opts, opt)
	}
	o := newObserved(t, srv.NewDatabase(t), opts...)
	return o, dbkit.NewBaseDatabase[User](o.db)
}

// TestReturnedRowsIsOptIn: db.response.returned_rows, opt-in in the
// conventions, is on no span by default, and on the statement's and the
// repository's spans of a read with WithReturnedRows.
func TestReturnedRowsIsOptIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, on := range []bool{false, true} {
		o, users := observedUsers(t, on, dbkit.WithReturnedRows())
		if err := users.Create(ctx, &User{Email: "rows@example.com"}); err != nil {
			t.Fatal(err)
		}
		if _, err := users.Find(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := users.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 5}); err != nil {
			t.Fatal(err)
		}
		with := map[string]string{}
		for _, s := range o.spans.Ended() {
			if v, ok := attrs(s)["db.response.returned_rows"]; ok {
				with[s.Name()] = v
			}
		}
		switch {
		case !on && len(with) > 0:
			t.Errorf("by default, spans with db.response.returned_rows: %v; want none", with)
		case on && (with["User.Find"] != "1" || with["User.FindPage"] != "1" || with["SELECT users"] == ""):
			t.Errorf("WithReturnedRows: spans with db.response.returned_rows %v; want User.Find, User.FindPage and their SELECTs", with)
		}
	}
}

// TestFailureRecordedOnce: a failed statement is recorded in full once,
// where it happened (its span's status and error.type, one ERROR log
// record); the repository span above it gets the Error status and
// error.type, and no exception event of its own.
func TestFailureRecordedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t), dbkit.WithRepositorySpans())
	users := dbkit.NewBaseDatabase[User](o.db)
	if err := users.Create(ctx, &User{Email: "once@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := users.Create(ctx, &User{Email: "once@example.com"}); !errors.Is(err, dbkit.ErrDuplicate) {
		t.Fatalf("Create of a duplicate = %v", err)
	}
	var failed sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Name() == "User.Create" && s.Status().Code == codes.Error {
			failed = s
		}
	}
	if failed == nil {
		t.Fatal("no failed User.Create span")
	}
	for _, s := range append([]sdktrace.ReadOnlySpan{failed}, o.children(failed)...) {
		if s.Status().Code != codes.Error || attrs(s)["error.type"] != "23505" || len(s.Events()) != 0 {
			t.Errorf("span %s: status %v, error.type %q, events %v; want Error, 23505, no event", s.Name(), s.Status(), attrs(s)["error.type"], s.Events())
		}
	}
	if n := strings.Count(o.logs.String(), `"level":"ERROR"`); n != 1 {
		t.Errorf("%d ERROR log records for one failure, want 1:\n%s", n, o.logs.String())
	}
}

// TestQueryTextHasNoLiterals: a value written into the SQL rather than
// bound reaches neither the span's db.query.text nor the log record: its
// literals are replaced by "?"; with WithoutQueryText there is no text.
func TestQueryTextHasNoLiterals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const marker = "literal-marker-5f1c"
	for _, drop := range []bool{false, true} {
		o, users := observedUsers(t, drop, dbkit.WithoutQueryText())
		var n int
		if err := users.Query(ctx).Raw("SELECT count(*) FROM users WHERE email = '"+marker+"' AND age > 41").Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		var text string
		for _, s := range o.spans.Ended() {
			if v, ok := attrs(s)["db.query.text"]; ok && strings.Contains(v, "count(*)") {
				text = v
			}
		}
		switch {
		case strings.Contains(text, marker) || strings.Contains(o.logs.String(), marker):
			t.Errorf("the literal reached the telemetry: db.query.text %q, logs:\n%s", text, o.logs.String())
		case !drop && text != "SELECT count(*) FROM users WHERE email = ? AND age > ?":
			t.Errorf("db.query.text = %q, want the literals replaced by ?", text)
		case drop && (text != "" || strings.Contains(o.logs.String(), "count(*)")):
			t.Errorf("WithoutQueryText: db.query.text %q, logs:\n%s; want no text", text, o.logs.String())
		}
	}
}

// TestCopyIsAStatement: CreateMany's COPY is recorded as any statement is: a
// CLIENT span with its batch size under the repository's, a duration sample,
// a log record; a failed one with its error.type, once.
func TestCopyIsAStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t), dbkit.WithRepositorySpans())
	users := dbkit.NewBaseDatabase[User](o.db)
	if err := users.CreateMany(ctx, []User{{Email: "c1@example.com"}, {Email: "c2@example.com"}, {Email: "c3@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if err := users.CreateMany(ctx, []User{{Email: "c4@example.com"}, {Email: "c1@example.com"}}); !errors.Is(err, dbkit.ErrDuplicate) {
		t.Fatalf("CreateMany of a duplicate = %v", err)
	}
	var copies []sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Name() == "User.CreateMany" {
			kids := o.children(s)
			if len(kids) != 1 || kids[0].Name() != "COPY users" || kids[0].SpanKind() != trace.SpanKindClient {
				t.Fatalf("User.CreateMany children %v, want one CLIENT span COPY users", names(kids))
			}
			copies = append(copies, kids[0])
		}
	}
	if len(copies) != 2 {
		t.Fatalf("%d COPY spans, want 2", len(copies))
	}
	wantAttrs(t, "COPY", attrs(copies[0]), map[string]string{"db.operation.name": "COPY", "db.collection.name": "users", "db.operation.batch.size": "3"})
	wantAttrs(t, "failed COPY", attrs(copies[1]), map[string]string{"db.operation.batch.size": "2", "error.type": "23505", "db.response.status_code": "23505"})
	if copies[1].Status().Code != codes.Error {
		t.Errorf("failed COPY status %v, want Error", copies[1].Status())
	}
	points := collect(t, o.metrics)
	if len(find(points, "db.client.operation.duration", map[string]string{"db.operation.name": "COPY", "db.collection.name": "users"})) == 0 {
		t.Error("no duration sample of COPY")
	}
	logs := o.logs.String()
	if !strings.Contains(logs, "COPY users FROM STDIN") || strings.Count(logs, `"level":"ERROR"`) != 1 {
		t.Errorf("COPY logs: want its statement and one ERROR record:\n%s", logs)
	}
}

// TestStatementSpanStartsWithTheStatement: a statement's span exists while
// the statement runs, with its attributes from the start, and the duration
// is recorded in its context.
func TestStatementSpanStartsWithTheStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t))
	users := dbkit.NewBaseDatabase[User](o.db)
	done := make(chan error, 1)
	go func() { done <- users.Query(ctx).Exec(ctx, "SELECT pg_sleep(0.5)") }()
	var inFlight sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); inFlight == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, s := range o.spans.Started() {
			if s.Name() == "SELECT" && s.EndTime().IsZero() {
				inFlight = s
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if inFlight == nil {
		t.Fatal("no SELECT span while the statement ran: spans start only when statements end")
	}
	if a := attrs(inFlight); a["db.query.summary"] != "SELECT" || a["db.system.name"] != "postgresql" {
		t.Errorf("the span of a running statement has attributes %v, want the summary and system from its start", a)
	}
}

// TestRepositorySpansAreOptIn: by default a repository call has no span of
// its own: its statement's CLIENT span is the child of the caller's span.
// WithRepositorySpans adds "User.Get" between them.
func TestRepositorySpansAreOptIn(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		o, users := observedUsers(t, false, nil)
		if !on {
			o = newObserved(t, srv.NewDatabase(t))
			users = dbkit.NewBaseDatabase[User](o.db)
		}
		u := User{Email: "optin@example.com"}
		if err := users.Create(context.Background(), &u); err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
		ctx, caller := tp.Tracer("test").Start(context.Background(), "handler")
		if _, err := users.Get(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		caller.End()
		kids := names(o.children(o.span(t, "handler")))
		switch {
		case !on && strings.Join(kids, ",") != "SELECT users":
			t.Errorf("by default, the caller's span has children %v, want the statement's span alone", kids)
		case on && strings.Join(kids, ",") != "User.Get":
			t.Errorf("WithRepositorySpans: the caller's span has children %v, want User.Get", kids)
		case on && strings.Join(names(o.children(o.span(t, "User.Get"))), ",") != "SELECT users":
			t.Errorf("WithRepositorySpans: User.Get has children %v, want SELECT users", names(o.children(o.span(t, "User.Get"))))
		}
	}
}

// TestTransactionStatementsHaveSpans: BEGIN, COMMIT, ROLLBACK and the
// savepoint statements are statements like any other: a CLIENT span each,
// under the transaction's span, a duration sample and a log record.
func TestTransactionStatementsHaveSpans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t))
	users := dbkit.NewBaseDatabase[User](o.db)
	refused := errors.New("refused")
	err := o.db.InTx(ctx, func(ctx context.Context) error {
		if _, err := users.Count(ctx); err != nil {
			return err
		}
		if err := o.db.InTx(ctx, func(ctx context.Context) error { return nil }); err != nil {
			return err
		}
		if err := o.db.InTx(ctx, func(ctx context.Context) error { return refused }); !errors.Is(err, refused) {
			return fmt.Errorf("nested InTx = %v, want refused", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tx := o.span(t, "DatabaseSession.Transaction")
	kids := o.children(tx)
	want := "BEGIN, SELECT users, SAVEPOINT, RELEASE SAVEPOINT, SAVEPOINT, ROLLBACK TO SAVEPOINT, COMMIT"
	if got := strings.Join(names(kids), ", "); got != want {
		t.Fatalf("transaction's children: %s; want %s", got, want)
	}
	for _, k := range kids {
		a := attrs(k)
		if k.SpanKind() != trace.SpanKindClient || a["db.system.name"] != "postgresql" || a["db.query.summary"] != k.Name() {
			t.Errorf("%s: kind %v, attributes %v; want a CLIENT span named by its summary", k.Name(), k.SpanKind(), a)
		}
		if k.Name() != "SELECT users" && a["db.operation.name"] != k.Name() {
			t.Errorf("%s: db.operation.name %q", k.Name(), a["db.operation.name"])
		}
	}
	wantAttrs(t, "SAVEPOINT", attrs(kids[2]), map[string]string{"db.query.text": "SAVEPOINT dbkit_sp_1"})
	if _, ok := attrs(kids[0])["db.query.text"]; ok {
		t.Errorf("BEGIN has a db.query.text, but the driver writes it: %v", attrs(kids[0]))
	}
	if err := o.db.InTx(ctx, func(context.Context) error { return refused }); !errors.Is(err, refused) {
		t.Fatal(err)
	}
	if got := names(o.children(o.span(t, "DatabaseSession.Transaction"))); strings.Join(got, ", ") != "BEGIN, ROLLBACK" {
		t.Errorf("a transaction rolled back has statement spans %v, want BEGIN, ROLLBACK", got)
	}
	points := collect(t, o.metrics)
	for _, op := range []string{"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"} {
		if len(find(points, "db.client.operation.duration", map[string]string{"db.operation.name": op})) == 0 {
			t.Errorf("no duration sample of %s", op)
		}
		if !strings.Contains(o.logs.String(), `"sql":"`+op) {
			t.Errorf("no log record of %s", op)
		}
	}
}

// TestCallerSQLIsSummarized: SQL the caller wrote has no db.operation.name
// (the conventions advise against parsing it out of the text, which may
// hold several statements) but a db.query.summary generated as they
// describe: each operation and table in order; its span is named by it.
func TestCallerSQLIsSummarized(t *testing.T) {
	t.Parallel()
	o := newObserved(t, srv.NewDatabase(t))
	users := dbkit.NewBaseDatabase[User](o.db)
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans)).Tracer("test")
	for sql, summary := range map[string]string{
		"SELECT count(*) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.email = 'x'": "SELECT users orders",
		"WITH recent AS (SELECT id FROM users) SELECT count(*) FROM recent":                  "SELECT users SELECT recent",
		"SELECT 1":                        "SELECT",
		"SHOW server_version_num":         "",
		"select count(*) from only users": "SELECT users",
	} {
		ctx, caller := tracer.Start(context.Background(), "caller "+sql)
		var rows []map[string]any
		if err := users.Query(ctx).Raw(sql).Scan(ctx, &rows); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		caller.End()
		kids := o.children(o.span(t, "caller "+sql))
		if len(kids) != 1 {
			t.Fatalf("%s: spans %v, want one", sql, names(kids))
		}
		a, name := attrs(kids[0]), summary
		if name == "" {
			name = "postgresql" // db.system.name, the conventions' last resort
		}
		if _, ok := a["db.operation.name"]; ok || a["db.query.summary"] != summary || kids[0].Name() != name {
			t.Errorf("%s: span %q, attributes %v; want no operation, summary %q", sql, kids[0].Name(), a, summary)
		}
	}
}

// peekingUser runs SQL of its own after each row it is read into.
type peekingUser struct{ User }

func (peekingUser) TableName() string { return "users" }

func (u *peekingUser) AfterFind(tx *gorm.DB) error {
	var n int64
	return tx.Raw("SELECT count(*) FROM pg_class").Scan(&n).Error
}

// TestHookSQLIsTheCallers: SQL a hook runs while dbkit runs its own (the
// UPDATE ... RETURNING of Patch) is the hook's: summarized from its text,
// not taken for dbkit's UPDATE. And WithoutQueryText leaves COPY's text out.
func TestHookSQLIsTheCallers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t), dbkit.WithoutQueryText())
	users := dbkit.NewBaseDatabase[peekingUser](o.db, dbkit.Patchable("name"))
	u := peekingUser{User{Email: "peek@example.com"}}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Patch(ctx, u.ID, map[string]any{"name": "p"}); err != nil {
		t.Fatal(err)
	}
	var hook, update int
	for _, s := range o.spans.Ended() {
		switch a := attrs(s); s.Name() {
		case "SELECT pg_class":
			hook++
			if _, ok := a["db.operation.name"]; ok {
				t.Errorf("the hook's SQL has db.operation.name %q", a["db.operation.name"])
			}
		case "UPDATE users":
			update++
		}
	}
	if hook != 1 || update != 1 {
		t.Errorf("spans %v: want one UPDATE users (Patch) and one SELECT pg_class (its hook)", names(o.spans.Ended()))
	}
	if err := dbkit.NewBaseDatabase[User](o.db).CreateMany(ctx, []User{{Email: "copy-no-text@example.com"}}); err != nil {
		t.Fatal(err)
	}
	copySpan := o.span(t, "COPY users")
	if text, ok := attrs(copySpan)["db.query.text"]; ok || strings.Contains(o.logs.String(), "FROM STDIN") {
		t.Errorf("WithoutQueryText: COPY's text %q on its span or in the logs", text)
	}
}
