package dbkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// stmtObs is what dbkit knows of a statement before it runs: when it
// started and the attributes its span and its duration carry. It travels in
// the statement's context from dbkit's before-callback to the OpenTelemetry
// plugin's span start and to dbkit's after-callback.
type stmtObs struct {
	start time.Time
	name  string // span name: "SELECT users"
	op    string // db.operation.name
	table string // db.collection.name
	attrs []attribute.KeyValue
	// dryRun: GORM builds the statement and does not run it (dbkit builds
	// some so). It gets no span, metric or log.
	dryRun bool
}

type stmtObsKey struct{}

// registerTelemetry adds, when tracing, metrics or logs are on, the
// callbacks that observe every statement: one before it (start time, start
// attributes), placed before the plugin starts its span, and one after it
// (duration metric, status code and error type on the span, log record),
// placed after the error was translated and before the plugin ends the span.
func (db *DB) registerTelemetry() error {
	if !db.traced && db.opDuration == nil && db.stmtLog == nil {
		return nil
	}
	type registrar interface {
		Register(name string, fn func(*gorm.DB)) error
	}
	cb := db.gorm.Callback()
	plugin := func(gormName, pluginName string) string {
		if db.traced {
			return pluginName
		}
		return gormName
	}
	var errs []error
	for _, p := range []struct {
		op         string
		start, end registrar
	}{
		{"INSERT", cb.Create().Before(plugin("gorm:create", "otel:before:create")),
			cb.Create().After("dbkit:translate").Before(plugin("", "otel:after:create"))},
		{"SELECT", cb.Query().Before(plugin("gorm:query", "otel:before:select")),
			cb.Query().After("dbkit:translate").Before(plugin("", "otel:after:select"))},
		{"UPDATE", cb.Update().Before(plugin("gorm:update", "otel:before:update")),
			cb.Update().After("dbkit:translate").Before(plugin("", "otel:after:update"))},
		{"DELETE", cb.Delete().Before(plugin("gorm:delete", "otel:before:delete")),
			cb.Delete().After("dbkit:translate").Before(plugin("", "otel:after:delete"))},
		{"SELECT", cb.Row().Before(plugin("gorm:row", "otel:before:row")),
			cb.Row().After("dbkit:translate").Before(plugin("", "otel:after:row"))},
		{"", cb.Raw().Before(plugin("gorm:raw", "otel:before:raw")),
			cb.Raw().After("dbkit:translate").Before(plugin("", "otel:after:raw"))},
	} {
		errs = append(errs,
			p.start.Register("dbkit:stmt_start", func(tx *gorm.DB) { db.stmtStart(tx, p.op) }),
			p.end.Register("dbkit:stmt_end", db.stmtEnd))
	}
	return errors.Join(errs...)
}

// stmtStart records when a statement starts and what its span and metric
// will carry, before the plugin starts the span.
func (db *DB) stmtStart(tx *gorm.DB, op string) {
	if tx.DryRun {
		tx.Statement.Context = context.WithValue(tx.Statement.Context, stmtObsKey{}, &stmtObs{dryRun: true})
		return
	}
	if op == "" || tx.Statement.SQL.Len() > 0 {
		op = firstKeyword(tx.Statement.SQL.String(), op)
	}
	table := tx.Statement.Table
	name := op
	if table != "" {
		name = op + " " + table
	}
	attrs := make([]attribute.KeyValue, 0, len(db.attrs)+3)
	attrs = append(attrs, db.attrs...)
	if op != "" {
		attrs = append(attrs, tracing.DBOperationName.String(op))
	}
	if table != "" {
		attrs = append(attrs, tracing.DBCollectionName.String(table), tracing.DBQuerySummary.String(name))
	}
	tx.Statement.Context = context.WithValue(tx.Statement.Context, stmtObsKey{},
		&stmtObs{start: time.Now(), name: name, op: op, table: table, attrs: attrs})
}

// stmtEnd records the statement's duration, logs it, and, on failure, sets
// its SQLSTATE and error type on the span the plugin is about to end. It
// runs after the error was translated, so nothing here can carry a value.
func (db *DB) stmtEnd(tx *gorm.DB) {
	obs, ok := tx.Statement.Context.Value(stmtObsKey{}).(*stmtObs)
	if !ok || obs.dryRun {
		return
	}
	elapsed := time.Since(obs.start)
	errType, code := errorType(tx.Error)
	if db.stmtLog != nil {
		db.logStatement(tx, elapsed, errType != "")
	}
	if span := trace.SpanFromContext(tx.Statement.Context); span.IsRecording() && errType != "" {
		span.SetAttributes(tracing.ErrorType.String(errType))
		if code != "" {
			span.SetAttributes(tracing.DBResponseStatusCode.String(code))
		}
	}
	if db.opDuration != nil {
		attrs := []attribute.KeyValue{tracing.PostgreSQL, tracing.DBNamespace.String(db.cfg.Database)}
		if obs.op != "" {
			attrs = append(attrs, tracing.DBOperationName.String(obs.op))
		}
		if obs.table != "" {
			attrs = append(attrs, tracing.DBCollectionName.String(obs.table))
		}
		if errType != "" {
			attrs = append(attrs, tracing.ErrorType.String(errType))
		}
		db.opDuration.Record(tx.Statement.Context, elapsed.Seconds(), metric.WithAttributes(attrs...))
	}
}

// errorType names a statement's failure for error.type: the SQLSTATE of a
// server error, else a short class; not-found is no failure.
func errorType(err error) (errType, sqlstate string) {
	if err == nil || errors.Is(err, gorm.ErrRecordNotFound) {
		return "", ""
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Code, pgErr.Code
	case errors.Is(err, context.Canceled):
		return "canceled", ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", ""
	}
	return "_OTHER", ""
}

// firstKeyword is the SQL's first word, upper-cased, or fallback.
func firstKeyword(sql, fallback string) string {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	end := strings.IndexFunc(sql, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') })
	if end < 0 {
		end = len(sql)
	}
	if end == 0 {
		return fallback
	}
	return strings.ToUpper(sql[:end])
}

// stmtTracerProvider wraps the provider given to the GORM plugin, so that
// its statement spans start with their attributes (samplers see them) and
// with a name that follows the conventions ("SELECT users").
type stmtTracerProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p stmtTracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return stmtTracer{tracer: p.tp.Tracer(name, opts...)}
}

type stmtTracer struct {
	embedded.Tracer
	tracer trace.Tracer
}

func (t stmtTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	obs, ok := ctx.Value(stmtObsKey{}).(*stmtObs)
	if !ok {
		return t.tracer.Start(ctx, name, opts...)
	}
	if obs.dryRun {
		// A span that records nothing, under the caller's: the plugin ends
		// only recording spans.
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(ctx))
		return ctx, trace.SpanFromContext(ctx)
	}
	opts = append(opts, trace.WithAttributes(obs.attrs...))
	if obs.name != "" {
		name = obs.name
	}
	ctx, span := t.tracer.Start(ctx, name, opts...)
	if !span.IsRecording() {
		return ctx, span
	}
	span = stmtSpan{span}
	return trace.ContextWithSpan(ctx, span), span
}

// stmtSpan is a statement span as the plugin sees it: the plugin renames
// the span at its end ("select users") and sets its own, lower-case,
// operation name; dbkit's, set at the start, stand.
type stmtSpan struct{ trace.Span }

func (stmtSpan) SetName(string) {}

func (s stmtSpan) SetAttributes(kv ...attribute.KeyValue) {
	keep := kv[:0:0]
	for _, a := range kv {
		switch a.Key {
		case tracing.DBOperationName, tracing.DBQuerySummary, tracing.DBCollectionName:
		default:
			keep = append(keep, a)
		}
	}
	s.Span.SetAttributes(keep...)
}

// setupMetrics creates the statement-duration histogram and the pool's
// observable instruments on mp, when given.
func (db *DB) setupMetrics(mp metric.MeterProvider) error {
	if mp == nil {
		return nil
	}
	meter := mp.Meter(tracing.ScopeName, metric.WithInstrumentationVersion(tracing.ScopeVersion))
	var err error
	db.opDuration, err = meter.Float64Histogram(tracing.MetricOperationDuration,
		metric.WithUnit("s"), metric.WithDescription("Duration of database client operations."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	if err != nil {
		return fmt.Errorf("dbkit: metrics: %w", err)
	}
	count, err1 := meter.Int64ObservableUpDownCounter(tracing.MetricConnectionCount, metric.WithUnit("{connection}"),
		metric.WithDescription("Connections of the pool, by state (idle, used)."))
	maxOpen, err2 := meter.Int64ObservableUpDownCounter(tracing.MetricConnectionMax, metric.WithUnit("{connection}"),
		metric.WithDescription("The most connections the pool may open."))
	maxIdle, err3 := meter.Int64ObservableUpDownCounter(tracing.MetricConnectionIdleMax, metric.WithUnit("{connection}"),
		metric.WithDescription("The most idle connections the pool keeps."))
	waits, err4 := meter.Int64ObservableCounter(tracing.MetricConnectionWaits, metric.WithUnit("{wait}"),
		metric.WithDescription("Times a caller waited for a connection, since the pool opened."))
	waitTime, err5 := meter.Float64ObservableCounter(tracing.MetricConnectionWaitTime, metric.WithUnit("s"),
		metric.WithDescription("Time callers spent waiting for a connection, since the pool opened."))
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return fmt.Errorf("dbkit: metrics: %w", err)
	}
	pool := attribute.NewSet(tracing.PoolName.String(db.poolName))
	idle := metric.WithAttributes(tracing.PoolName.String(db.poolName), tracing.ConnectionState.String("idle"))
	used := metric.WithAttributes(tracing.PoolName.String(db.poolName), tracing.ConnectionState.String("used"))
	db.poolReg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := db.sql.Stats()
		o.ObserveInt64(count, int64(st.Idle), idle)
		o.ObserveInt64(count, int64(st.InUse), used)
		o.ObserveInt64(maxOpen, int64(st.MaxOpenConnections), metric.WithAttributeSet(pool))
		o.ObserveInt64(maxIdle, int64(max(db.cfg.MaxIdleConns, 0)), metric.WithAttributeSet(pool))
		o.ObserveInt64(waits, st.WaitCount, metric.WithAttributeSet(pool))
		o.ObserveFloat64(waitTime, st.WaitDuration.Seconds(), metric.WithAttributeSet(pool))
		return nil
	}, count, maxOpen, maxIdle, waits, waitTime)
	if err != nil {
		return fmt.Errorf("dbkit: metrics: %w", err)
	}
	return nil
}
