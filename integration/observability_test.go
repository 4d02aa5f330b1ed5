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
		out[string(kv.Key)] = kv.Value.Emit()
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
}

func newObserved(t *testing.T, cfg dbkit.Config, opts ...dbkit.Option) *observed {
	t.Helper()
	o := &observed{cfg: cfg, spans: tracetest.NewSpanRecorder(), sampler: &startSampler{}, metrics: sdkmetric.NewManualReader(), logs: &logBuffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans), sdktrace.WithSampler(o.sampler))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.metrics))
	logger := slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := dbkit.Connect(context.Background(), cfg, append([]dbkit.Option{
		dbkit.WithMigrations(schema...), dbkit.WithTracerProvider(tp), dbkit.WithMeterProvider(mp), dbkit.WithLogger(logger),
	}, opts...)...)
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
		out[string(kv.Key)] = kv.Value.Emit()
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

func TestSpans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	o := newObserved(t, cfg)
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
		"db.operation.name": "Get", "db.collection.name": "users", "dbkit.model": "User", "db.system.name": "postgresql",
	})
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
	wantAttrs(t, "User.FindPage", attrs(o.span(t, "User.FindPage")), map[string]string{"dbkit.page.size": "7", "db.response.returned_rows": "1"})

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
			retry[string(kv.Key)] = kv.Value.Emit()
		}
		wantAttrs(t, "retry event", retry, map[string]string{"dbkit.tx.attempt": "2", "error.type": "40001"})
	}
	wantAttrs(t, "transaction at start", o.sampler.at("DatabaseSession.Transaction"),
		map[string]string{"dbkit.tx.isolation": "Serializable", "db.system.name": "postgresql"})
	if count := o.span(t, "User.Count"); count.Parent().SpanID() != tx.SpanContext().SpanID() {
		t.Error("User.Count in the transaction is not a child of its span")
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

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newObserved(t, srv.NewDatabase(t))
	b := newObserved(t, srv.NewDatabase(t), dbkit.WithPoolName("replica"))
	users := dbkit.NewBaseDatabase[User](a.db)
	u := User{Email: "metrics@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	_ = users.Create(ctx, &User{Email: u.Email}) // a duplicate
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := a.metrics.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	points := map[string][]attribute.Set{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points[m.Name] = append(points[m.Name], p.Attributes)
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points[m.Name] = append(points[m.Name], p.Attributes)
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					points[m.Name] = append(points[m.Name], p.Attributes)
				}
			}
		}
	}
	has := func(metric string, want map[string]string) bool {
		for _, set := range points[metric] {
			ok := true
			for k, v := range want {
				if got, found := set.Value(attribute.Key(k)); !found || got.Emit() != v {
					ok = false
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		metric string
		want   map[string]string
	}{
		{"db.client.operation.duration", map[string]string{"db.system.name": "postgresql", "db.collection.name": "users", "db.operation.name": "INSERT"}},
		{"db.client.operation.duration", map[string]string{"db.operation.name": "INSERT", "error.type": "23505"}},
		{"db.client.operation.duration", map[string]string{"db.operation.name": "SELECT", "db.collection.name": "users"}},
		{"db.client.connection.count", map[string]string{"db.client.connection.state": "idle", "db.client.connection.pool.name": a.cfg.Addr() + "/" + a.cfg.Database}},
		{"db.client.connection.count", map[string]string{"db.client.connection.state": "used"}},
		{"db.client.connection.max", map[string]string{"db.client.connection.pool.name": a.cfg.Addr() + "/" + a.cfg.Database}},
		{"db.client.connection.idle.max", nil},
		{"db.client.connection.wait_count", nil},
		{"db.client.connection.wait_time", nil},
	} {
		if !has(c.metric, c.want) {
			t.Errorf("no %s point with %v; points: %v", c.metric, c.want, points[c.metric])
		}
	}

	// The other pool reports on its own provider, under its own name.
	var rmb metricdata.ResourceMetrics
	if err := b.metrics.Collect(ctx, &rmb); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sm := range rmb.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "db.client.connection.max" {
				v, _ := s.DataPoints[0].Attributes.Value("db.client.connection.pool.name")
				found = v.Emit() == "replica"
			}
		}
	}
	if !found {
		t.Error("the second pool's metrics do not carry its name")
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t))
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
		case r["level"] == "ERROR":
			failed = r
		case strings.HasPrefix(sql, "SELECT") && strings.Contains(sql, "LIMIT") && stmt == nil:
			stmt = r
		case strings.HasPrefix(sql, "SELECT") && stmt != nil:
			notFound = r
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
	if notFound != nil && notFound["level"] == "ERROR" {
		t.Errorf("a not-found was logged as an error: %v", notFound)
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
