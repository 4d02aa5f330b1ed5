package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/tracing/telemetry"
)

// Markers that must reach no exported byte: the connection's password, a
// literal written into raw SQL (a string and a number), and values bound
// to statements.
const (
	otlpPasswordMarker = "otlp-password-marker-91ae"
	otlpLiteralMarker  = "otlp-literal-marker-6d0c"
	otlpLiteralNumber  = "918273"
	otlpBoundMarker    = "otlp-bound-marker-3b5f"
)

// rawOTLPQuery is the raw SQL run through the escape hatch, and the
// db.query.text it must be exported with: its literals replaced, its
// placeholder kept.
const (
	rawOTLPQuery     = "SELECT count(*) FROM users WHERE email = '" + otlpLiteralMarker + "' AND age <> " + otlpLiteralNumber + " AND name <> ?"
	rawOTLPQueryText = "SELECT count(*) FROM users WHERE email = ? AND age <> ? AND name <> $1"
)

// txControl are the operations of the statements that open and close a
// transaction or a savepoint: their spans have no table and no text when
// the driver writes the statement.
var txControl = []string{"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"}

// rawOTLPSummary is the db.query.summary of rawOTLPQuery.
const rawOTLPSummary = "SELECT users"

// otlpOp is one thing the test does with dbkit, under a root span of the
// test's own, so that everything dbkit exports for it is in one trace.
type otlpOp struct {
	name string
	run  func(ctx context.Context) error
	// stmts are the db.query.summary of the statements dbkit has GORM
	// build for it or sends itself (BEGIN, COMMIT), in order; raw SQL's
	// statement is checked apart.
	stmts []string
	raw   bool
	fails bool
}

// TestTelemetryOverOTLP is issue 12's "done when": telemetry built by
// tracing/telemetry.Setup from the OTEL_* environment is sent over
// OTLP/HTTP to a receiver in the test, which decodes it with the
// Collector's pdata; what it decoded is checked against the OpenTelemetry
// database semantic conventions v1.43.0.
func TestTelemetryOverOTLP(t *testing.T) {
	ctx := context.Background()
	recv := newOTLPReceiver(t)
	setOTLPEnv(t, recv.srv.URL)
	tel, err := telemetry.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	tracer := tel.TracerProvider.Tracer("dbkit/integration/otlp")

	password := specialPassword + "-" + otlpPasswordMarker
	cfg := createRole(t, password)
	cfg.MaxOpenConns, cfg.MaxIdleConns = 6, 4
	migrateDB(t, cfg, schema...) // on a connection without telemetry: only the operations below are exported

	traces := map[string]string{} // op name -> trace ID
	errs := map[string]error{}
	do := func(name string, fn func(ctx context.Context) error) {
		ctx, root := tracer.Start(ctx, name)
		errs[name] = fn(ctx)
		root.End()
		traces[name] = root.SpanContext().TraceID().String()
	}
	var db *dbkit.DB
	do("Connect", func(ctx context.Context) (err error) {
		db, err = dbkit.Connect(ctx, cfg, dbkit.WithTracerProvider(tel.TracerProvider), dbkit.WithMeterProvider(tel.MeterProvider))
		return err
	})
	if errs["Connect"] != nil {
		t.Fatal(errs["Connect"])
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	users := dbkit.NewBaseDatabase[User](db, dbkit.Patchable("name"))
	accounts := dbkit.NewBaseDatabase[Account](db)
	u := User{Email: otlpBoundMarker + "@example.com", Name: otlpBoundMarker}
	acc := Account{Email: otlpBoundMarker + "@example.com"}
	ops := []otlpOp{
		{name: "Create", stmts: []string{"INSERT users"}, run: func(ctx context.Context) error { return users.Create(ctx, &u) }},
		{name: "Get", stmts: []string{"SELECT users"}, run: func(ctx context.Context) error {
			_, err := users.Get(ctx, u.ID)
			return err
		}},
		{name: "Find", stmts: []string{"SELECT users"}, run: func(ctx context.Context) error {
			_, err := users.Find(ctx, dbkit.Eq("name", otlpBoundMarker))
			return err
		}},
		{name: "Update", stmts: []string{"UPDATE users"}, run: func(ctx context.Context) error {
			u.Age = 7
			return users.Update(ctx, &u)
		}},
		{name: "Patch", stmts: []string{"UPDATE users"}, run: func(ctx context.Context) error {
			_, err := users.Patch(ctx, u.ID, map[string]any{"name": otlpBoundMarker + "-patched"})
			return err
		}},
		{name: "Create account", stmts: []string{"INSERT accounts"}, run: func(ctx context.Context) error { return accounts.Create(ctx, &acc) }},
		{name: "Delete (soft)", stmts: []string{"UPDATE accounts"}, run: func(ctx context.Context) error { return accounts.Delete(ctx, acc.ID) }},
		{name: "Create duplicate", stmts: []string{"INSERT users"}, fails: true, run: func(ctx context.Context) error {
			err := users.Create(ctx, &User{Email: u.Email, Name: otlpBoundMarker})
			if !errors.Is(err, dbkit.ErrDuplicate) {
				t.Errorf("Create of a duplicate: %v, want ErrDuplicate", err)
			}
			return err
		}},
		{name: "CreateMany", stmts: []string{"COPY users"}, run: func(ctx context.Context) error {
			return users.CreateMany(ctx, []User{{Email: otlpBoundMarker + "-1"}, {Email: otlpBoundMarker + "-2"}, {Email: otlpBoundMarker + "-3"}})
		}},
		{name: "InTx", stmts: []string{"BEGIN", "SELECT users", "COMMIT"}, run: func(ctx context.Context) error {
			return db.InTx(ctx, func(ctx context.Context) error {
				_, err := users.Get(ctx, u.ID)
				return err
			})
		}},
		{name: "Raw", raw: true, run: func(ctx context.Context) error {
			var n int
			return users.Query(ctx).Raw(rawOTLPQuery, otlpBoundMarker).Scan(ctx, &n)
		}},
	}
	for _, op := range ops {
		do(op.name, op.run)
		if (errs[op.name] != nil) != op.fails {
			t.Fatalf("%s: error %v, want failure %v", op.name, errs[op.name], op.fails)
		}
	}
	// Shutdown flushes the spans and makes the metrics' last export, while
	// the pool still reports.
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	bodies, encodings, refused := recv.received()
	if len(refused) > 0 {
		t.Fatalf("the receiver refused requests: %v", refused)
	}
	for _, enc := range encodings {
		if enc != "gzip" {
			t.Errorf("a request with Content-Encoding %q, want gzip (OTEL_EXPORTER_OTLP_COMPRESSION)", enc)
		}
	}
	spans := recv.spans()
	if len(spans) == 0 {
		t.Fatal("no span received")
	}
	checkOTLPSpans(t, cfg, spans, ops, traces)
	checkOTLPMetrics(t, cfg, recv.lastMetrics(), spans, ops)
	for _, secret := range []string{password, otlpPasswordMarker, otlpLiteralMarker, otlpLiteralNumber, otlpBoundMarker} {
		for _, body := range bodies {
			if around, ok := contains(body, secret); ok {
				t.Errorf("an exported body holds %q: %s", secret, around)
			}
		}
	}
}

// setOTLPEnv sets the OTEL_* environment Setup reads, and only that: the
// test's own, whatever the machine has.
func setOTLPEnv(t *testing.T, endpoint string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "") // restored when the test ends
			_ = os.Unsetenv(k)
		}
	}
	for k, v := range map[string]string{
		"OTEL_SERVICE_NAME":              "dbkit-otlp-test",
		"OTEL_TRACES_EXPORTER":           "otlp",
		"OTEL_METRICS_EXPORTER":          "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT":    endpoint,
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		// Cumulative, the default, said: the last export holds every series.
		"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "cumulative",
		// One export, Shutdown's: no periodic one in the middle.
		"OTEL_METRIC_EXPORT_INTERVAL": "3600000",
	} {
		t.Setenv(k, v)
	}
}

// checkScope checks an instrumentation scope of dbkit's.
func checkScope(t *testing.T, what string, s otlpScope) {
	t.Helper()
	// A test binary has build information: the version is the module's,
	// "(devel)", not a made-up one nor "unknown".
	if s.Version == "" || s.Version == "0.1.0" || s.Version == "unknown" {
		t.Errorf("%s: scope %q has version %q", what, s.Name, s.Version)
	}
	if s.SchemaURL != semconv.SchemaURL {
		t.Errorf("%s: scope %q has schema URL %q, want %q", what, s.Name, s.SchemaURL, semconv.SchemaURL)
	}
}

// connAttrs are the attributes of every span and duration sample of a
// statement: the connection's.
func connAttrs(cfg dbkit.Config) map[string]any {
	return map[string]any{
		string(semconv.DBSystemNameKey):  semconv.DBSystemNamePostgreSQL.Value.AsString(),
		string(semconv.DBNamespaceKey):   cfg.Database,
		string(semconv.ServerAddressKey): cfg.Host,
		string(semconv.ServerPortKey):    int64(cfg.Port), // an int, as the convention types it
	}
}

// wantValues reports the attributes of want that got lacks or holds with
// another value or type.
func wantValues(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %s = %#v, want %#v (all: %v)", what, k, g, v, got)
		}
	}
}

func checkOTLPSpans(t *testing.T, cfg dbkit.Config, spans []otlpSpan, ops []otlpOp, traces map[string]string) {
	byID := map[string]otlpSpan{}
	inTrace := map[string][]otlpSpan{}
	for _, s := range spans {
		byID[s.SpanID] = s
		inTrace[s.TraceID] = append(inTrace[s.TraceID], s)
	}
	isRoot := func(s otlpSpan) bool { return s.ParentID == "" && s.Scope.Name == "dbkit/integration/otlp" }

	// Every span: the service's resource; dbkit's scopes declare their
	// version and the conventions' schema; no span reports returned rows
	// unless asked (the convention's opt-in).
	clients := 0
	for _, s := range spans {
		if s.Resource[string(semconv.ServiceNameKey)] != "dbkit-otlp-test" {
			t.Errorf("span %s: resource %v, want service.name from OTEL_SERVICE_NAME", s.Name, s.Resource)
		}
		if isRoot(s) {
			continue
		}
		checkScope(t, "span "+s.Name, s.Scope)
		if s.Scope.Name != "github.com/dbkit-go/database" {
			t.Errorf("span %s from scope %q, want dbkit's, github.com/dbkit-go/database", s.Name, s.Scope.Name)
		}
		if _, ok := s.Attrs[string(semconv.DBResponseReturnedRowsKey)]; ok {
			t.Errorf("span %s has db.response.returned_rows, opt-in in the conventions: %v", s.Name, s.Attrs)
		}
		if s.Kind != ptrace.SpanKindClient {
			continue
		}
		clients++
		// A statement span: the connection's attributes, from the statement
		// tracer, started when its statement did, so within its parent.
		wantValues(t, "CLIENT span "+s.Name, s.Attrs, connAttrs(cfg))
		if !s.Start.Before(s.End) {
			t.Errorf("CLIENT span %s: start %v not before end %v", s.Name, s.Start, s.End)
		}
		if p, ok := byID[s.ParentID]; !ok {
			t.Errorf("CLIENT span %s: parent %q not exported; every statement runs under a span of the test", s.Name, s.ParentID)
		} else if s.Start.Before(p.Start) || s.End.After(p.End) {
			t.Errorf("CLIENT span %s [%v, %v] is not within its parent %s [%v, %v]", s.Name, s.Start, s.End, p.Name, p.Start, p.End)
		}
	}

	baseKeys := []string{ // a successful statement GORM built: these, exactly
		string(semconv.DBSystemNameKey), string(semconv.DBNamespaceKey), string(semconv.ServerAddressKey),
		string(semconv.ServerPortKey), string(semconv.DBOperationNameKey), string(semconv.DBCollectionNameKey),
		string(semconv.DBQuerySummaryKey), string(semconv.DBQueryTextKey),
	}
	errorKeys := []string{string(semconv.ErrorTypeKey), string(semconv.DBResponseStatusCodeKey)}
	counted := 0
	for _, id := range traces {
		for _, s := range inTrace[id] {
			if s.Kind == ptrace.SpanKindClient {
				counted++
			}
		}
	}
	if counted != clients {
		t.Errorf("%d CLIENT spans, %d of them in the traces of the test's operations: a statement span left its caller's trace", clients, counted)
	}
	for _, op := range ops {
		trace := inTrace[traces[op.name]]
		var stmts []otlpSpan
		for _, s := range trace {
			switch {
			case s.Kind == ptrace.SpanKindClient:
				stmts = append(stmts, s)
			case !isRoot(s) && s.Name != "DatabaseSession.Transaction" && s.Name != "DatabaseSession.Connect" &&
				s.Name != "DatabaseSession.Health":
				// Repository spans are opt-in (WithRepositorySpans).
				t.Errorf("%s: span %s (%v) between the caller's span and the statements'", op.name, s.Name, s.Kind)
			}
		}
		slices.SortFunc(stmts, func(a, b otlpSpan) int { return a.Start.Compare(b.Start) })
		if op.raw {
			checkRawSpans(t, op.name, stmts)
			continue
		}
		var names []string
		for _, s := range stmts {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, op.stmts) {
			t.Errorf("%s: statement spans %q, want %q", op.name, names, op.stmts)
			continue
		}
		for _, s := range stmts {
			what := op.name + ": span " + s.Name
			opName, _ := s.Attrs[string(semconv.DBOperationNameKey)].(string)
			table, _ := s.Attrs[string(semconv.DBCollectionNameKey)].(string)
			if s.Name != strings.TrimSpace(opName+" "+table) || s.Attrs[string(semconv.DBQuerySummaryKey)] != s.Name {
				t.Errorf("%s: name, db.query.summary %v, db.operation.name %q and db.collection.name %q disagree", what, s.Attrs[string(semconv.DBQuerySummaryKey)], opName, table)
			}
			switch {
			case opName == "COPY":
				checkCopySpan(t, what, s)
				continue
			case slices.Contains(txControl, opName):
				checkTxControlSpan(t, what, s)
				continue
			}
			want := slices.Clone(baseKeys)
			if text, _ := s.Attrs[string(semconv.DBQueryTextKey)].(string); !strings.Contains(text, "$1") {
				t.Errorf("%s: db.query.text %q, want the statement with its placeholders", what, text)
			}
			if op.fails {
				want = append(want, errorKeys...)
				checkFailedSpan(t, what, s, trace, byID)
			} else if s.Status != ptrace.StatusCodeUnset || len(s.Events) > 0 {
				t.Errorf("%s: status %v, events %v; want unset, none", what, s.Status, s.Events)
			}
			slices.Sort(want)
			if got := slices.Sorted(maps.Keys(s.Attrs)); !slices.Equal(got, want) {
				t.Errorf("%s: attributes %q, want exactly %q", what, got, want)
			}
		}
	}
}

// checkFailedSpan checks the span of a statement that failed with a
// duplicate key, and that its failure is recorded once: where it happened.
// The spans above it that were exported get the Error status and
// error.type, and no exception event.
func checkFailedSpan(t *testing.T, what string, s otlpSpan, trace []otlpSpan, byID map[string]otlpSpan) {
	wantValues(t, what, s.Attrs, map[string]any{
		string(semconv.ErrorTypeKey): "23505", string(semconv.DBResponseStatusCodeKey): "23505",
	})
	if s.Status != ptrace.StatusCodeError || !strings.Contains(s.StatusMessage, "23505") {
		t.Errorf("%s: status %v %q, want Error naming the SQLSTATE", what, s.Status, s.StatusMessage)
	}
	withException := 0
	for _, sp := range trace {
		for _, e := range sp.Events {
			if e.Name == semconv.ExceptionEventName {
				withException++
				if sp.SpanID != s.SpanID {
					t.Errorf("%s: span %s above the failed statement has an exception event", what, sp.Name)
				}
				break
			}
		}
	}
	if withException > 1 {
		t.Errorf("%s: %d spans with an exception event, want at most the statement's", what, withException)
	}
	for p, ok := byID[s.ParentID]; ok && p.ParentID != ""; p, ok = byID[p.ParentID] {
		if p.Status != ptrace.StatusCodeError || p.Attrs[string(semconv.ErrorTypeKey)] != "23505" {
			t.Errorf("%s: parent %s has status %v, error.type %v; want Error, 23505", what, p.Name, p.Status, p.Attrs[string(semconv.ErrorTypeKey)])
		}
	}
}

// checkCopySpan checks CreateMany's COPY of three rows.
func checkCopySpan(t *testing.T, what string, s otlpSpan) {
	// db.operation.batch.size is the rows copied: dbkit's choice; the
	// convention (v1.43.0) says a call is not a batch because it takes many
	// rows, and the attribute SHOULD NOT be set for one that is not.
	wantValues(t, what, s.Attrs, map[string]any{
		string(semconv.DBOperationNameKey): "COPY", string(semconv.DBCollectionNameKey): "users",
		string(semconv.DBOperationBatchSizeKey): int64(3),
	})
	want := []string{
		string(semconv.DBSystemNameKey), string(semconv.DBNamespaceKey), string(semconv.ServerAddressKey),
		string(semconv.ServerPortKey), string(semconv.DBOperationNameKey), string(semconv.DBCollectionNameKey),
		string(semconv.DBQuerySummaryKey), string(semconv.DBOperationBatchSizeKey), string(semconv.DBQueryTextKey),
	}
	if text := s.Attrs[string(semconv.DBQueryTextKey)]; text != "COPY users FROM STDIN" {
		t.Errorf("%s: db.query.text %q, want COPY users FROM STDIN", what, text)
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(s.Attrs)); !slices.Equal(got, want) {
		t.Errorf("%s: attributes %q, want exactly %q", what, got, want)
	}
	if s.Status != ptrace.StatusCodeUnset {
		t.Errorf("%s: status %v", what, s.Status)
	}
}

// checkTxControlSpan checks the span of a BEGIN or COMMIT: the connection's
// attributes, its operation and summary, and no text (the driver writes the
// statement, not dbkit).
func checkTxControlSpan(t *testing.T, what string, s otlpSpan) {
	want := []string{
		string(semconv.DBSystemNameKey), string(semconv.DBNamespaceKey), string(semconv.ServerAddressKey),
		string(semconv.ServerPortKey), string(semconv.DBOperationNameKey), string(semconv.DBQuerySummaryKey),
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(s.Attrs)); !slices.Equal(got, want) {
		t.Errorf("%s: attributes %q, want exactly %q", what, got, want)
	}
	if s.Status != ptrace.StatusCodeUnset {
		t.Errorf("%s: status %v", what, s.Status)
	}
}

// checkRawSpans checks the span of the SQL the caller wrote: its literals
// sanitized; no table and no operation taken from its text (the convention:
// db.collection.name and db.operation.name SHOULD NOT be extracted from
// db.query.text), but a summary generated from it, which names the span.
func checkRawSpans(t *testing.T, what string, stmts []otlpSpan) {
	if len(stmts) != 1 {
		t.Errorf("%s: %d statement spans, want 1", what, len(stmts))
		return
	}
	s := stmts[0]
	if text := s.Attrs[string(semconv.DBQueryTextKey)]; text != rawOTLPQueryText {
		t.Errorf("%s: db.query.text %q, want %q", what, text, rawOTLPQueryText)
	}
	if summary := s.Attrs[string(semconv.DBQuerySummaryKey)]; summary != rawOTLPSummary || s.Name != rawOTLPSummary {
		t.Errorf("%s: span %q, db.query.summary %q; want both %q", what, s.Name, summary, rawOTLPSummary)
	}
	want := []string{
		string(semconv.DBSystemNameKey), string(semconv.DBNamespaceKey), string(semconv.ServerAddressKey),
		string(semconv.ServerPortKey), string(semconv.DBQuerySummaryKey), string(semconv.DBQueryTextKey),
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(s.Attrs)); !slices.Equal(got, want) {
		t.Errorf("%s: attributes %q, want exactly %q", what, got, want)
	}
	if s.Status != ptrace.StatusCodeUnset {
		t.Errorf("%s: status %v", what, s.Status)
	}
}

// durationBounds are the explicit bucket boundaries the convention gives
// db.client.operation.duration.
var durationBounds = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

func checkOTLPMetrics(t *testing.T, cfg dbkit.Config, metrics map[string]otlpMetric, spans []otlpSpan, ops []otlpOp) {
	duration := dbconv.ClientOperationDuration{}
	count, maxConns, idleMax := dbconv.ClientConnectionCount{}, dbconv.ClientConnectionMax{}, dbconv.ClientConnectionIdleMax{}
	// The metrics the convention defines in db.client.*.
	conventions := []string{
		duration.Name(), count.Name(), maxConns.Name(), idleMax.Name(),
		dbconv.ClientConnectionIdleMin{}.Name(), dbconv.ClientConnectionPendingRequests{}.Name(),
		dbconv.ClientConnectionTimeouts{}.Name(), dbconv.ClientConnectionCreateTime{}.Name(),
		dbconv.ClientConnectionWaitTime{}.Name(), dbconv.ClientConnectionUseTime{}.Name(),
		dbconv.ClientResponseReturnedRows{}.Name(),
	}
	want := []string{duration.Name(), count.Name(), maxConns.Name(), idleMax.Name(), "dbkit.pool.waits", "dbkit.pool.wait_time"}
	if got := slices.Sorted(maps.Keys(metrics)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("metrics %q, want %q", got, slices.Sorted(slices.Values(want)))
	}
	for name, m := range metrics {
		checkScope(t, "metric "+name, m.Scope)
		if m.Scope.Name != "github.com/dbkit-go/database" {
			t.Errorf("metric %s from scope %q, want github.com/dbkit-go/database", name, m.Scope.Name)
		}
		if m.Resource[string(semconv.ServiceNameKey)] != "dbkit-otlp-test" {
			t.Errorf("metric %s: resource %v", name, m.Resource)
		}
		if strings.HasPrefix(name, "db.client.") && !slices.Contains(conventions, name) {
			t.Errorf("metric %s is in the conventions' namespace and not one of theirs %q", name, conventions)
		}
		if len(m.Points) == 0 {
			t.Errorf("metric %s has no point", name)
		}
	}

	checkDurationMetric(t, cfg, metrics[duration.Name()], spans, ops)

	pool := map[string]any{string(semconv.DBClientConnectionPoolNameKey): cfg.Addr() + "/" + cfg.Database}
	for _, c := range []struct {
		name, unit string
		monotonic  bool
		value      float64 // -1: any value ≥ 0
	}{
		{count.Name(), count.Unit(), false, -1},
		{maxConns.Name(), maxConns.Unit(), false, 6},
		{idleMax.Name(), idleMax.Unit(), false, 4},
		{"dbkit.pool.waits", "{wait}", true, -1},
		{"dbkit.pool.wait_time", "s", true, -1},
	} {
		m, ok := metrics[c.name]
		if !ok {
			continue // reported above
		}
		if m.Type != pmetric.MetricTypeSum || m.Monotonic != c.monotonic || m.Temporality != pmetric.AggregationTemporalityCumulative || m.Unit != c.unit {
			t.Errorf("%s: %v, monotonic %v, %v, unit %q; want a cumulative Sum, monotonic %v, unit %q",
				c.name, m.Type, m.Monotonic, m.Temporality, m.Unit, c.monotonic, c.unit)
		}
		states := map[string]float64{}
		for _, p := range m.Points {
			wantValues(t, c.name, p.Attrs, pool)
			if c.value >= 0 && p.Value != c.value || p.Value < 0 {
				t.Errorf("%s = %v, want %v", c.name, p.Value, c.value)
			}
			if c.name != count.Name() {
				if len(p.Attrs) != 1 || len(m.Points) != 1 {
					t.Errorf("%s: points %+v, want one, with the pool's name alone", c.name, m.Points)
				}
				continue
			}
			state, _ := p.Attrs[string(semconv.DBClientConnectionStateKey)].(string)
			states[state] = p.Value
			if len(p.Attrs) != 2 {
				t.Errorf("%s: attributes %v, want the pool's name and the state", c.name, p.Attrs)
			}
		}
		if c.name == count.Name() {
			_, idle := states[semconv.DBClientConnectionStateIdle.Value.AsString()]
			_, used := states[semconv.DBClientConnectionStateUsed.Value.AsString()]
			if len(states) != 2 || !idle || !used || states["idle"]+states["used"] < 1 || states["idle"]+states["used"] > 6 {
				t.Errorf("%s by state: %v; want idle and used, 1 to 6 in all", c.name, states)
			}
		}
	}
}

// checkDurationMetric checks db.client.operation.duration: a histogram in
// seconds with the convention's buckets and attributes, a series per
// statement kind with the samples the operations made, and exemplars that
// lead to exported spans.
func checkDurationMetric(t *testing.T, cfg dbkit.Config, m otlpMetric, spans []otlpSpan, ops []otlpOp) {
	d := dbconv.ClientOperationDuration{}
	if m.Type != pmetric.MetricTypeHistogram || m.Unit != d.Unit() || m.Temporality != pmetric.AggregationTemporalityCumulative {
		t.Fatalf("%s: %v in %q, %v; want a cumulative Histogram in %q", d.Name(), m.Type, m.Unit, m.Temporality, d.Unit())
	}
	if m.Description != d.Description() {
		t.Errorf("%s: description %q, want the convention's %q", d.Name(), m.Description, d.Description())
	}
	allowed := []string{ // the convention's attributes of the metric
		string(semconv.DBSystemNameKey), string(d.AttrCollectionName("").Key), string(d.AttrNamespace("").Key),
		string(d.AttrOperationName("").Key), string(d.AttrResponseStatusCode("").Key), string(d.AttrErrorType("").Key),
		string(d.AttrServerPort(0).Key), string(d.AttrQuerySummary("").Key), string(d.AttrStoredProcedureName("").Key),
		string(d.AttrNetworkPeerAddress("").Key), string(d.AttrNetworkPeerPort(0).Key), string(d.AttrServerAddress("").Key),
		string(d.AttrQueryText("").Key),
	}
	// A series per kind of statement: its samples are the statements the
	// operations ran, and their sum in seconds is the sum of the statement
	// spans' durations (span and sample are timed by the same clock reads).
	wantCounts, spanSeconds := map[string]uint64{}, map[string]float64{}
	for _, op := range ops {
		for _, summary := range op.stmts {
			opName, _, _ := strings.Cut(summary, " ")
			if slices.Contains(txControl, summary) {
				opName = summary
			}
			errType := ""
			if op.fails {
				errType = "23505"
			}
			wantCounts[durationSeries(opName, summary, errType)]++
		}
		if op.raw {
			wantCounts[durationSeries("", rawOTLPSummary, "")]++
		}
	}
	byID := map[string]otlpSpan{}
	for _, s := range spans {
		byID[s.SpanID] = s
		if s.Kind == ptrace.SpanKindClient {
			op, _ := s.Attrs[string(semconv.DBOperationNameKey)].(string)
			errType, _ := s.Attrs[string(semconv.ErrorTypeKey)].(string)
			spanSeconds[durationSeries(op, s.Name, errType)] += s.End.Sub(s.Start).Seconds()
		}
	}
	gotCounts := map[string]uint64{}
	for _, p := range m.Points {
		what := fmt.Sprintf("%s %v", d.Name(), p.Attrs)
		for k := range p.Attrs {
			if !slices.Contains(allowed, k) {
				t.Errorf("%s: attribute %s, not the convention's", what, k)
			}
		}
		wantValues(t, what, p.Attrs, connAttrs(cfg))
		summary, _ := p.Attrs[string(semconv.DBQuerySummaryKey)].(string)
		op, _ := p.Attrs[string(semconv.DBOperationNameKey)].(string)
		errType, failed := p.Attrs[string(semconv.ErrorTypeKey)].(string)
		table, _ := p.Attrs[string(semconv.DBCollectionNameKey)].(string) // the table, when known
		switch {
		case op == "": // raw SQL: a summary, no operation, no table
			if summary != rawOTLPSummary || table != "" {
				t.Errorf("%s: raw SQL's sample, want summary %q alone", what, rawOTLPSummary)
			}
		case summary != strings.TrimSpace(op+" "+table):
			t.Errorf("%s: db.operation.name %q, db.query.summary %q", what, op, summary)
		}
		if failed {
			wantValues(t, what, p.Attrs, map[string]any{string(semconv.DBResponseStatusCodeKey): errType})
		}
		series := durationSeries(op, summary, errType)
		gotCounts[series] += p.Count
		if diff := math.Abs(p.Value - spanSeconds[series]); diff > 1e-6*float64(p.Count)+1e-3*p.Value {
			t.Errorf("%s: %v s in all, the statements' spans took %v s", what, p.Value, spanSeconds[series])
		}
		if !slices.Equal(p.Bounds, durationBounds) {
			t.Errorf("%s: bucket bounds %v, want the convention's %v", what, p.Bounds, durationBounds)
		}
		var inBuckets uint64
		for _, n := range p.BucketCounts {
			inBuckets += n
		}
		if len(p.BucketCounts) != len(durationBounds)+1 || inBuckets != p.Count {
			t.Errorf("%s: %d samples, buckets %v; want them counted in %d buckets", what, p.Count, p.BucketCounts, len(durationBounds)+1)
		}
		// An exemplar leads to the span of its statement: every series has
		// one (the default filter keeps those of sampled spans).
		if len(p.Exemplars) == 0 {
			t.Errorf("%s: no exemplar", what)
		}
		for _, id := range p.Exemplars {
			s, ok := byID[id]
			switch {
			case !ok:
				t.Errorf("%s: exemplar of span %s, which was not exported", what, id)
			case s.Kind != ptrace.SpanKindClient || s.Name != summary:
				t.Errorf("%s: exemplar of span %s (%v), want the statement's", what, s.Name, s.Kind)
			}
		}
	}
	for series, n := range wantCounts {
		if gotCounts[series] != n {
			t.Errorf("%s: series %q has %d samples, want %d (all: %v)", d.Name(), series, gotCounts[series], n, gotCounts)
		}
	}
	if len(gotCounts) != len(wantCounts) {
		t.Errorf("%s: series %v, want %v", d.Name(), gotCounts, wantCounts)
	}
}

// durationSeries names a series of db.client.operation.duration by its
// db.operation.name ("" for raw SQL), db.query.summary and, on failure,
// error.type.
func durationSeries(op, summary, errType string) string {
	return op + "|" + summary + "|" + errType
}
