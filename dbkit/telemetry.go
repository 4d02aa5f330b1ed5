package dbkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// stmtObs is what dbkit knows of a statement while it runs. It travels in
// the statement's context from the callback before the statement to the
// one after it.
type stmtObs struct {
	start  time.Time
	table  string          // db.collection.name, "" for SQL the caller wrote
	op     string          // db.operation.name
	parent context.Context // the statement's context, without the stmtObs
	ctx    context.Context // the statement's context, with its span when traced
	span   trace.Span      // nil when not traced
}

type stmtObsKey struct{}

// ownSQLKey marks a context in which dbkit runs SQL it had GORM build for
// the repository's model, so that its statements keep the model's table.
type ownSQLKey struct{}

func withOwnSQL(ctx context.Context) context.Context {
	return context.WithValue(ctx, ownSQLKey{}, true)
}

// registerTelemetry adds, when tracing, metrics or logs are on, the two
// callbacks that observe every statement GORM runs: one right before it,
// which notes when it starts, and one right after it (after dbkit translated
// its error, so nothing here carries a value, and before GORM's after-hooks,
// association saves and preloads, which are statements of their own), which
// records its span, its duration and its log record.
//
// The span is recorded whole once the statement is done, started at the
// time noted: every attribute, the outcome's included, is then there at its
// start, where samplers see them, and no attribute is added to a live span.
// A statement has no child span to wait for.
//
// The statement spans are dbkit's own rather than the GORM OpenTelemetry
// plugin's: the plugin sets its attributes at the end, where samplers do not
// see them, renames the span then, and parses the operation out of the SQL
// text with regular expressions on every statement, which was 30 % of the
// CPU time of a traced Get (see docs/performance.md).
func (db *DB) registerTelemetry() error {
	if !db.traced && db.opDuration == nil && db.stmtLog == nil {
		return nil
	}
	cb := db.gorm.Callback()
	var errs []error
	for _, p := range []struct {
		op         string
		start, end registrar
	}{
		{"INSERT", cb.Create().After("gorm:save_before_associations").Before("gorm:create"),
			cb.Create().After("dbkit:translate").Before("gorm:save_after_associations")},
		{"SELECT", cb.Query().Before("gorm:query"), cb.Query().After("dbkit:translate").Before("gorm:preload")},
		{"UPDATE", cb.Update().After("gorm:save_before_associations").Before("gorm:update"),
			cb.Update().After("dbkit:translate").Before("gorm:save_after_associations")},
		{"DELETE", cb.Delete().After("gorm:delete_before_associations").Before("gorm:delete"),
			cb.Delete().After("dbkit:translate").Before("gorm:after_delete")},
		{"SELECT", cb.Row().Before("gorm:row"), cb.Row().After("dbkit:translate")},
		{"", cb.Raw().Before("gorm:raw"), cb.Raw().After("dbkit:translate")},
	} {
		errs = append(errs,
			p.start.Register("dbkit:stmt_start", func(tx *gorm.DB) { db.stmtStart(tx, p.op) }),
			p.end.Register("dbkit:stmt_end", db.stmtEnd))
	}
	return errors.Join(errs...)
}

// registrar is a GORM callback chain position a callback is registered at.
type registrar interface {
	Register(name string, fn func(*gorm.DB)) error
}

// stmtStart notes when a statement starts and on which table. A dry run
// (GORM builds the statement and does not run it; dbkit builds some so)
// gets no span, metric or log.
func (db *DB) stmtStart(tx *gorm.DB, op string) {
	if tx.DryRun || tx.Error != nil { // a dry run, or a statement that will not run (a hook refused it)
		return
	}
	ctx := tx.Statement.Context
	obs := &stmtObs{op: op, table: tx.Statement.Table, parent: ctx}
	// SQL given before the statement runs is the caller's (Raw, Exec): the
	// model it was run through does not say which table it reads.
	if tx.Statement.SQL.Len() > 0 && ctx.Value(ownSQLKey{}) == nil {
		obs.table = ""
	}
	obs.op = stmtOperation(tx, op)
	obs.start = time.Now()
	obs.ctx = context.WithValue(ctx, stmtObsKey{}, obs)
	if db.traced {
		// The span starts with the statement: one in flight is visible, and
		// the statement runs with its span in ctx.
		obs.ctx, obs.span = db.stmtTracer.Start(obs.ctx, summary(obs.op, obs.table), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(obs.start), trace.WithAttributes(db.opAttrs(obs.op, obs.table, 0)...))
	}
	tx.Statement.Context = obs.ctx
}

// stmtOperation is a statement's db.operation.name, as GORM knows it: the
// callback chain's, an UPDATE for a soft delete, the first word of SQL the
// caller wrote.
func stmtOperation(tx *gorm.DB, op string) string {
	st := tx.Statement
	switch {
	case st.SQL.Len() > 0:
		return firstKeyword(st.SQL.String(), op)
	case op == "DELETE" && !st.Unscoped && st.Schema != nil && len(st.Schema.DeleteClauses) > 0:
		return "UPDATE" // GORM's soft delete
	}
	return op
}

// opAttrs are the attributes of a statement known before it runs, for its
// span and its duration: the connection's, the operation, and the table and
// summary when known; extra is room for more.
func (db *DB) opAttrs(op, table string, extra int) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, len(db.attrs)+3+extra)
	attrs = append(attrs, db.attrs...)
	if op != "" {
		attrs = append(attrs, tracing.DBOperationName.String(op))
	}
	if table != "" {
		attrs = append(attrs, tracing.DBCollectionName.String(table), tracing.DBQuerySummary.String(summary(op, table)))
	}
	return attrs
}

// errorAttrs appends a failure's error.type and, when the server gave one,
// db.response.status_code (the SQLSTATE).
func errorAttrs(attrs []attribute.KeyValue, errType, code string) []attribute.KeyValue {
	if errType != "" {
		attrs = append(attrs, tracing.ErrorType.String(errType))
		if code != "" {
			attrs = append(attrs, tracing.DBResponseStatusCode.String(code))
		}
	}
	return attrs
}

// stmtEnd records the statement's span, its duration and its log record.
// A statement for which GORM built no SQL (nothing to write) ends its span
// there and records nothing else.
func (db *DB) stmtEnd(tx *gorm.DB) {
	obs, ok := tx.Statement.Context.Value(stmtObsKey{}).(*stmtObs)
	if !ok {
		return
	}
	tx.Statement.Context = obs.parent
	if tx.Statement.SQL.Len() == 0 {
		if obs.span != nil {
			obs.span.End() // nothing ran: a span of no duration, with no text
		}
		return
	}
	end := time.Now()
	elapsed := end.Sub(obs.start)
	errType, code := errorType(tx.Error)
	if db.opDuration != nil {
		// Recorded in the statement's context: an exemplar points at its span.
		db.opDuration.Record(obs.ctx, elapsed.Seconds(), db.durationAttrs(obs.op, obs.table, errType, code))
	}
	text := ""
	if db.queryTexts != nil && (db.traced || db.stmtLog != nil) {
		text = db.queryTexts.text(tx.Statement.SQL.String())
	}
	if obs.span != nil {
		endStmtSpan(obs.span, tx, obs, db.returnedRows, end, errType, code, text)
	}
	if db.stmtLog != nil {
		var failed error
		if errType != "" {
			failed = tx.Error
		}
		db.logStatement(obs.ctx, text, tx.Statement.RowsAffected, elapsed, failed)
	}
}

// summary is a statement's db.query.summary and span name: "SELECT users",
// or the operation alone when there is no table.
func summary(op, table string) string {
	switch {
	case table == "" && op == "":
		return "postgresql"
	case table == "":
		return op
	}
	return op + " " + table
}

// endStmtSpan ends a statement's span at end, with what is known once it
// ran: its text (literals replaced), the rows a SELECT returned (opt-in),
// and on failure the status, the SQLSTATE and the error type.
func endStmtSpan(span trace.Span, tx *gorm.DB, obs *stmtObs, returnedRows bool, end time.Time, errType, code, text string) {
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		if text != "" {
			attrs = append(attrs, tracing.DBQueryText.String(text))
		}
		if returnedRows && obs.op == "SELECT" && errType == "" && tx.Statement.RowsAffected >= 0 {
			attrs = append(attrs, tracing.DBReturnedRows.Int64(tx.Statement.RowsAffected))
		}
		if errType != "" {
			span.SetStatus(codes.Error, tx.Error.Error())
		}
		span.SetAttributes(errorAttrs(attrs, errType, code)...)
	}
	span.End(trace.WithTimestamp(end))
}

// recordCopy records a COPY of rows into table that ran from start and
// ended with err (translated: it carries no value), as any statement is
// recorded: a CLIENT span "COPY table" with db.operation.batch.size, a
// duration sample, a statement log record.
func (db *DB) recordCopy(ctx context.Context, table string, rows int, start time.Time, err error) {
	if !db.traced && db.opDuration == nil && db.stmtLog == nil {
		return
	}
	end := time.Now()
	errType, code := errorType(err)
	if db.opDuration != nil {
		db.opDuration.Record(ctx, end.Sub(start).Seconds(), db.durationAttrs("COPY", table, errType, code))
	}
	if db.traced {
		attrs := errorAttrs(append(db.opAttrs("COPY", table, 3), tracing.DBBatchSize.Int(rows)), errType, code)
		var span trace.Span
		ctx, span = db.stmtTracer.Start(ctx, summary("COPY", table), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(start), trace.WithAttributes(attrs...))
		if errType != "" {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End(trace.WithTimestamp(end))
	}
	if db.stmtLog != nil {
		db.logStatement(ctx, "COPY "+table+" FROM STDIN", int64(rows), end.Sub(start), err)
	}
}

// durationKey identifies one series of db.client.operation.duration.
type durationKey struct{ op, table, errType, code string }

// durationAttrs returns the attributes of a duration sample, built once per
// series: a statement records one sample, and building its attribute set
// every time would cost more than the sample.
//
// The attributes are the convention's for the metric: the system, the
// namespace, server.address and server.port (db.attrs), the operation, the
// collection and the query summary when known, and on failure error.type
// and db.response.status_code (the SQLSTATE).
func (db *DB) durationAttrs(op, table, errType, code string) metric.RecordOption {
	key := durationKey{op, table, errType, code}
	if opt, ok := db.durationOpts.Load(key); ok {
		return opt.(metric.RecordOption)
	}
	attrs := errorAttrs(db.opAttrs(op, table, 2), errType, code)
	opt, _ := db.durationOpts.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	return opt.(metric.RecordOption)
}

// errorType names a statement's failure for error.type: the SQLSTATE of a
// server error, else a short class; not-found is no failure.
func errorType(err error) (errType, sqlstate string) {
	if err == nil || errors.Is(err, gorm.ErrRecordNotFound) {
		return "", ""
	}
	return tracing.ErrorTypeOf(err)
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

// setupMetrics creates the statement-duration histogram and the pool's
// observable instruments on mp, when given.
func (db *DB) setupMetrics(mp metric.MeterProvider) error {
	if mp == nil {
		return nil
	}
	meter := mp.Meter(tracing.ScopeName, metric.WithInstrumentationVersion(tracing.ScopeVersion), metric.WithSchemaURL(tracing.SchemaURL))
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
	idle := metric.WithAttributes(tracing.PoolName.String(db.poolName), semconv.DBClientConnectionStateIdle)
	used := metric.WithAttributes(tracing.PoolName.String(db.poolName), semconv.DBClientConnectionStateUsed)
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
