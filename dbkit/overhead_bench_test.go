package dbkit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/tracing"
)

// These benchmarks measure what dbkit adds to GORM on the client, with the
// database replaced by a stub driver that answers every query at once from
// memory. On a real server a Get costs ~50 µs of round trip that varies by
// ±15 % on a shared machine, which hides a few hundred nanoseconds; here the
// wrapper's cost stands alone. The integration benchmarks give the end-to-end
// figures. Both are in docs/performance.md.
//
//	go test -run '^$' -bench Overhead -benchmem -count 10 ./dbkit/

type overheadUser struct {
	Model
	Email string
	Name  string
}

// stubDriver answers queries with rows copies of one user row, and execs
// with one affected row.
type stubDriver struct{ rows int }

func (d stubDriver) Open(string) (driver.Conn, error) { return stubConn(d), nil }

type stubConn stubDriver

func (c stubConn) Prepare(string) (driver.Stmt, error) { return nil, driver.ErrSkip }
func (c stubConn) Close() error                        { return nil }
func (c stubConn) Begin() (driver.Tx, error)           { return stubTx{}, nil }

type stubTx struct{}

func (stubTx) Commit() error   { return nil }
func (stubTx) Rollback() error { return nil }

func (c stubConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return &stubRows{left: c.rows}, nil
}

func (c stubConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return driver.RowsAffected(1), nil
}

var stubRow = []driver.Value{
	"01a216d3-06d7-7746-8bb8-60fe2b04d63b",
	time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC),
	time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC),
	"ada@example.com",
	"Ada",
}

type stubRows struct{ left int }

func (r *stubRows) Columns() []string {
	return []string{"id", "created_at", "updated_at", "email", "name"}
}
func (r *stubRows) Close() error { return nil }
func (r *stubRows) Next(dest []driver.Value) error {
	if r.left == 0 {
		return io.EOF
	}
	r.left--
	copy(dest, stubRow)
	return nil
}

func stubPool(b testing.TB, rows int) *sql.DB {
	b.Helper()
	pool := sql.OpenDB(stubConnector{stubDriver{rows: rows}})
	b.Cleanup(func() { pool.Close() })
	return pool
}

type stubConnector struct{ d stubDriver }

func (c stubConnector) Connect(context.Context) (driver.Conn, error) { return stubConn(c.d), nil }
func (c stubConnector) Driver() driver.Driver                        { return c.d }

// overheadEnv returns a dbkit repository and a bare GORM handle, each on a
// stub pool answering rows rows per query.
func overheadEnv(b *testing.B, rows int) (*BaseDatabase[overheadUser], *gorm.DB) {
	b.Helper()
	bare, err := gorm.Open(postgres.New(postgres.Config{Conn: stubPool(b, rows)}), &gorm.Config{
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
		DisableAutomaticPing:   true,
	})
	if err != nil {
		b.Fatal(err)
	}
	return stubRepository(b, rows), bare
}

// stubRepository is a dbkit repository on a stub pool, with opts.
func stubRepository(b *testing.B, rows int, opts ...Option) *BaseDatabase[overheadUser] {
	b.Helper()
	return NewBaseDatabase[overheadUser](stubDB(b, rows, opts...))
}

// stubDB is a DB on a stub pool answering rows rows per query, with opts.
func stubDB(tb testing.TB, rows int, opts ...Option) *DB {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	db := newDB(Config{Host: "stub", Database: "stub", User: "stub"}.WithDefaults(), o)
	db.sql = stubPool(tb, rows)
	if err := db.openGorm(db.sql, o); err != nil {
		tb.Fatal(err)
	}
	return db
}

// impl is one way of doing the benchmarked operation.
type impl struct {
	name string
	op   func() error
}

// runImpls runs each impl as a sub-benchmark "impl=name", in a random
// order, so that neither always runs first.
func runImpls(b *testing.B, impls []impl) {
	rand.Shuffle(len(impls), func(i, j int) { impls[i], impls[j] = impls[j], impls[i] })
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := im.op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOverheadGet(b *testing.B) {
	users, bare := overheadEnv(b, 1)
	ctx := context.Background()
	id := uuid.MustParse(stubRow[0].(string))
	runImpls(b, []impl{
		{"gorm", func() error {
			_, err := gorm.G[overheadUser](bare).Where("id = ?", id).Take(ctx)
			return err
		}},
		{"dbkit", func() error {
			_, err := users.Get(ctx, id)
			return err
		}},
	})
}

func BenchmarkOverheadCreate(b *testing.B) {
	users, bare := overheadEnv(b, 0)
	ctx := context.Background()
	runImpls(b, []impl{
		{"gorm", func() error {
			u := overheadUser{Model: Model{ID: uuid.Must(uuid.NewV7())}, Email: "ada@example.com"}
			return gorm.G[overheadUser](bare).Create(ctx, &u)
		}},
		{"dbkit", func() error {
			u := overheadUser{Email: "ada@example.com"}
			return users.Create(ctx, &u)
		}},
	})
}

func BenchmarkOverheadList100(b *testing.B) {
	users, bare := overheadEnv(b, 100)
	ctx := context.Background()
	check := func(rows []overheadUser, err error) error {
		if err == nil && len(rows) != 100 {
			err = fmt.Errorf("%d rows, want 100", len(rows))
		}
		return err
	}
	runImpls(b, []impl{
		{"gorm", func() error { return check(gorm.G[overheadUser](bare).Limit(100).Find(ctx)) }},
		{"dbkit", func() error { return check(users.Find(ctx, Limit(100))) }},
	})
}

// BenchmarkOverheadTelemetryGet is Get with dbkit's telemetry off, on
// (telemetryOn), and on with repository spans, on the stub driver: what
// telemetry costs the client, without the network's noise. Two more tell
// that cost apart:
//
//	sdk_span  telemetry off, the Get inside one span with the attributes
//	          of its statement's span, started, ended and batched by the
//	          same SDK set-up: what the OpenTelemetry SDK alone costs for
//	          the one span a traced Get records, the floor of "on"
//	on_sync   on, with the spans handed to the exporter at once
//	          (sdktrace.WithSyncer) instead of batched: what the batch
//	          processor's hand-off to its goroutine costs
func BenchmarkOverheadTelemetryGet(b *testing.B) {
	off := stubRepository(b, 1)
	tracer := telemetryOn(b)[0]
	var o options
	tracer(&o)
	tp := o.tracerProvider
	ctx := context.Background()
	id := uuid.MustParse(stubRow[0].(string))
	attrs := off.db.opAttrsOn(nil, off.db.primaryAttrs.Load(), "SELECT", "users", "SELECT users")
	stmtSpan := func() error {
		ctx, span := tp.Tracer("bench").Start(ctx, "SELECT users", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
		_, err := off.Get(ctx, id)
		span.SetAttributes(tracing.DBQueryText.String(`SELECT * FROM "overhead_users" WHERE "overhead_users"."id" = $1 LIMIT $2`))
		span.End()
		return err
	}
	syncTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(discardExporter{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = syncTP.Shutdown(context.Background()) })
	impls := getImpls(map[string]*BaseDatabase[overheadUser]{
		"off":     off,
		"on":      stubRepository(b, 1, telemetryOn(b)...),
		"on_repo": stubRepository(b, 1, append(telemetryOn(b), WithRepositorySpans())...),
		"on_sync": stubRepository(b, 1, append(telemetryOn(b), WithTracerProvider(syncTP))...),
	})
	runImpls(b, append(impls, impl{"sdk_span", stmtSpan}))
}

// BenchmarkOverheadTelemetryCreate is Create with telemetry off and on, as
// BenchmarkOverheadTelemetryGet.
func BenchmarkOverheadTelemetryCreate(b *testing.B) {
	ctx := context.Background()
	var impls []impl
	for name, users := range map[string]*BaseDatabase[overheadUser]{
		"off": stubRepository(b, 0),
		"on":  stubRepository(b, 0, telemetryOn(b)...),
	} {
		impls = append(impls, impl{name, func() error { return users.Create(ctx, &overheadUser{Email: "ada@example.com"}) }})
	}
	runImpls(b, impls)
}

// BenchmarkOverheadTraceComments is Get with telemetry on as in
// BenchmarkOverheadTelemetryGet, without and with WithTraceComments, on the
// stub driver: what building the comment and the arguments costs the
// client (the exec mode's cost is the server's, and in the integration
// benchmark).
func BenchmarkOverheadTraceComments(b *testing.B) {
	runGets(b, map[string]*BaseDatabase[overheadUser]{
		"on":       stubRepository(b, 1, telemetryOn(b)...),
		"comments": stubRepository(b, 1, append(telemetryOn(b), WithTraceComments())...),
	})
}

// telemetryOn are the options of telemetry on: every span sampled, batched
// and dropped by the exporter, metrics recorded, statements logged to a
// handler at INFO.
func telemetryOn(b testing.TB) []Option {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return []Option{WithTracerProvider(tp), WithMeterProvider(mp), WithLogger(log)}
}

// runGets runs, as impl=name, a Get of the stub row on each repository.
func runGets(b *testing.B, repos map[string]*BaseDatabase[overheadUser]) {
	runImpls(b, getImpls(repos))
}

// getImpls are, as impl=name, a Get of the stub row on each repository.
func getImpls(repos map[string]*BaseDatabase[overheadUser]) []impl {
	ctx := context.Background()
	id := uuid.MustParse(stubRow[0].(string))
	var impls []impl
	for name, repo := range repos {
		impls = append(impls, impl{name, func() error {
			_, err := repo.Get(ctx, id)
			return err
		}})
	}
	return impls
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
