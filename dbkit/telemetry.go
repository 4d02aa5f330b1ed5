package dbkit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// opObs is what dbkit knows of one operation on the server while it runs:
// a statement GORM runs, a COPY, a transaction's BEGIN, COMMIT, ROLLBACK or
// savepoint.
//
// It is also the operation's context: the context before it, with its span
// when traced, and itself under opObsKey, in which a statement travels from
// the callback before it to the one after it (one allocation, not two).
type opObs struct {
	context.Context // the operation's, with its span when traced
	db              *DB
	start           time.Time
	shape           *opShape
	parent          context.Context // the context before the operation's span
	span            trace.Span      // nil when not traced
	text            *sqlInfo        // the caller's SQL, known at the start; nil for SQL GORM builds
	stmt            *gorm.Statement // the GORM statement observed; nil for others
	ended           bool
}

type opObsKey struct{}

// Value is the context's Value, with the opObs itself under opObsKey.
func (o *opObs) Value(key any) any {
	if key == (opObsKey{}) {
		return o
	}
	return o.Context.Value(key)
}

// ownSQLKey marks, in a statement's settings, SQL dbkit had GORM build for
// the repository's model and runs as given (Raw), so that the statement
// keeps the model's table; its value is the statement's operation (an
// UPDATE ... RETURNING runs as a query). The mark is the statement's, not
// its context's: what a hook runs in that context is not dbkit's SQL.
type ownSQLKey struct{}

// ownSQL marks tx's statement as dbkit's own SQL, doing op.
func ownSQL(tx *gorm.DB, op string) *gorm.DB {
	tx.Statement.Settings.Store(ownSQLKey{}, op)
	return tx
}

// Operations of transaction control statements, which have no table. Their
// db.operation.name is the statement's command.
const (
	opBegin             = "BEGIN"
	opCommit            = "COMMIT"
	opRollback          = "ROLLBACK"
	opSavepoint         = "SAVEPOINT"
	opReleaseSavepoint  = "RELEASE SAVEPOINT"
	opRollbackSavepoint = "ROLLBACK TO SAVEPOINT"
	opCopy              = "COPY"
)

// opShape is what every operation of one kind shares (its operation, table
// and summary): its span's start options and its duration's attributes on
// success, built once rather than per statement.
type opShape struct {
	node               *node                 // a replica, nil for the primary
	server             *[]attribute.KeyValue // the primary's server attributes it was built with
	op, table, summary string
	name               string // the span's: the summary, else db.system.name
	spanOpts           []trace.SpanStartOption
	ok                 metric.RecordOption // nil without metrics
}

// shapeKey identifies an opShape.
type shapeKey struct {
	node               *node
	op, table, summary string
}

// maxShapes bounds the caches keyed by an operation's shape: GORM builds a
// few per model, and the caller's SQL names a bounded set of tables, but
// the bound holds whatever it names.
const maxShapes = 4096

// shapeOf returns the shape of op on table; summary is the caller's SQL's,
// "" for a statement GORM built, whose summary is the operation and table.
func (db *DB) shapeOf(op, table, summary string) *opShape {
	return db.shapeOn(nil, op, table, summary)
}

// shapeOn is shapeOf for a statement on n, a replica (nil: the primary).
func (db *DB) shapeOn(n *node, op, table, summary string) *opShape {
	key := shapeKey{n, op, table, summary}
	server := db.primaryAttrs.Load()
	if s, ok := db.shapes.Load(key); ok && (n != nil || s.(*opShape).server == server) {
		return s.(*opShape)
	}
	if summary == "" {
		summary = summaryOf(op, table)
	}
	attrs := db.opAttrsOn(n, server, op, table, summary)
	s := &opShape{node: n, server: server, op: op, table: table, summary: summary, name: summary,
		spanOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...)}}
	if s.name == "" {
		s.name = "postgresql"
	}
	if db.opDuration != nil {
		s.ok = metric.WithAttributeSet(attribute.NewSet(attrs...))
	}
	if db.nShapes.Add(1) > maxShapes {
		db.shapes.Clear()
		db.durationOpts.Clear()
		db.nShapes.Store(0)
	}
	if n == nil {
		db.shapes.Store(key, s) // replacing one built with a former primary's attributes
		return s
	}
	v, _ := db.shapes.LoadOrStore(key, s)
	return v.(*opShape)
}

// registerTelemetry adds, when tracing, metrics or logs are on, the two
// callbacks that observe every statement GORM runs: one right before it,
// which starts its span, and one right after it (after dbkit translated its
// error, so nothing here carries a value, and before GORM's after-hooks,
// association saves and preloads, which are statements of their own), which
// ends the span and records its duration and its log record.
//
// The span starts with the statement, with every attribute known then (the
// operation, the table, the summary), where samplers see them; the text,
// which GORM builds as the statement runs, and the outcome are added at its
// end. The statement runs with its span in ctx.
//
// The statement spans are dbkit's own rather than the GORM OpenTelemetry
// plugin's: the plugin sets its attributes at the end, where samplers do not
// see them, renames the span then, and parses the operation out of the SQL
// text with regular expressions on every statement, which was 30 % of the
// CPU time of a traced Get (see docs/performance.md).
func (db *DB) registerTelemetry() error {
	if !db.observed() {
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

// observed reports whether any of spans, metrics and logs is on.
func (db *DB) observed() bool { return db.traced || db.opDuration != nil || db.stmtLog != nil }

// registrar is a GORM callback chain position a callback is registered at.
type registrar interface {
	Register(name string, fn func(*gorm.DB)) error
}

// stmtStart starts the observation of a statement GORM is about to run. A
// dry run (GORM builds the statement and does not run it; dbkit builds some
// so) gets no span, metric or log.
func (db *DB) stmtStart(tx *gorm.DB, op string) {
	if tx.DryRun || tx.Error != nil { // a dry run, or a statement that will not run (a hook refused it)
		return
	}
	st := tx.Statement
	ctx := st.Context
	var on *node // the replica a repository read runs on
	if db.router != nil {
		if rt := db.routeFrom(ctx); rt != nil && rt.node.replica != nil {
			on = rt.node
		}
	}
	var obs *opObs
	// SQL given before the statement runs is the caller's (Raw, Exec):
	// the model it was run through does not say which table it reads, and
	// its operation is not parsed out of its text (the conventions advise
	// against it: one text can hold several statements); its summary is.
	var own any
	isOwn := false
	if st.SQL.Len() > 0 {
		own, isOwn = st.Settings.Load(ownSQLKey{})
	}
	if st.SQL.Len() > 0 && !isOwn {
		info := db.sqlInfo.of(st.SQL.String())
		obs = db.startOp(ctx, db.shapeOn(on, "", "", info.summary))
		obs.text = info
	} else {
		if isOwn {
			op = own.(string)
		}
		if op == "DELETE" && !st.Unscoped && st.Schema != nil && len(st.Schema.DeleteClauses) > 0 {
			op = "UPDATE" // GORM's soft delete
		}
		obs = db.startOp(ctx, db.shapeOn(on, op, st.Table, ""))
	}
	obs.stmt = st
	st.Context = obs
}

// startOp starts observing an operation of shape s in ctx: its span starts
// now, a child of ctx's.
func (db *DB) startOp(ctx context.Context, s *opShape, extra ...attribute.KeyValue) *opObs {
	obs := &opObs{Context: ctx, db: db, shape: s, parent: ctx, start: time.Now()}
	if db.traced {
		opts := s.spanOpts
		if len(extra) > 0 {
			opts = append(slices.Clip(opts), trace.WithAttributes(extra...))
		}
		obs.Context, obs.span = db.tracer.Start(ctx, s.name, opts...)
		if t, ok := obs.span.(spanTimes); ok {
			obs.start = t.StartTime() // the duration is the span's to the nanosecond
		}
	}
	return obs
}

// spanTimes is what the SDK's recording spans tell of their times.
type spanTimes interface {
	StartTime() time.Time
	EndTime() time.Time
}

// stmtEnd ends the observation of a statement GORM ran. A statement for
// which GORM built no SQL (nothing to write) ends its span there and
// records nothing else.
func (db *DB) stmtEnd(tx *gorm.DB) {
	st := tx.Statement
	obs, ok := st.Context.Value(opObsKey{}).(*opObs)
	if !ok || obs.stmt != st {
		return // not this statement's: a dry run's, or one that did not start, in another's context
	}
	st.Context = obs.parent
	if st.SQL.Len() == 0 {
		if obs.span != nil {
			obs.span.End() // nothing ran: a span of no duration, with no text
		}
		return
	}
	var text string
	switch {
	case db.noQueryText:
	case obs.text != nil:
		text = obs.text.text
	case db.traced || db.stmtLog != nil:
		text = db.sqlInfo.of(st.SQL.String()).text
	}
	returned := int64(-1)
	if db.returnedRows && obs.shape.op == "SELECT" {
		returned = st.RowsAffected
	}
	obs.end(text, st.RowsAffected, returned, tx.Error)
}

// end ends the operation: its span gets its text (literals replaced), the
// rows it returned when returned >= 0 and, when err is not nil, the
// failure's status, error type and SQLSTATE; its duration (the span's,
// when there is one) is recorded in its context (an exemplar points at its
// span), and so is its log record.
// err is translated: it carries no value.
func (o *opObs) end(text string, rows, returned int64, err error) {
	if o.ended {
		return
	}
	o.ended = true
	db := o.db
	elapsed := time.Since(o.start)
	errType, code := errorType(err)
	if o.span != nil {
		endSpan(o.span, text, returned, err, errType, code)
		if t, ok := o.span.(spanTimes); ok && !t.EndTime().IsZero() {
			elapsed = t.EndTime().Sub(o.start)
		}
	}
	if db.opDuration != nil {
		opt := o.shape.ok
		if errType != "" {
			opt = db.failedAttrs(o.shape, errType, code)
		}
		db.opDuration.Record(o, elapsed.Seconds(), opt)
	}
	if db.stmtLog != nil {
		if errType == "" {
			err = nil
		}
		if text == "" && o.text == nil && o.shape.table == "" {
			text = o.shape.op // BEGIN, COMMIT...: the statement is its operation
		}
		db.logStatement(o, text, rows, elapsed, err)
	}
}

// endSpan ends an operation's span with what is known once it ran.
func endSpan(span trace.Span, text string, returned int64, err error, errType, code string) {
	if span.IsRecording() {
		if text != "" {
			span.SetAttributes(tracing.DBQueryText.String(text))
		}
		if returned >= 0 && errType == "" {
			span.SetAttributes(tracing.DBReturnedRows.Int64(returned))
		}
		if errType != "" {
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(errorAttrs(make([]attribute.KeyValue, 0, 2), errType, code)...)
		}
	}
	span.End()
}

// summaryOf is the db.query.summary and span name of a statement GORM
// built or a transaction control statement: "SELECT users", or the
// operation alone when there is no table.
func summaryOf(op, table string) string {
	if table == "" {
		return op
	}
	return op + " " + table
}

// opAttrsOn are the attributes of an operation known before it runs, for its
// span and its duration: the connection's, the operation, the table and the
// summary, each when known.
// primary is the primary's server attributes (db.primaryAttrs), used when
// n, a replica, is nil.
func (db *DB) opAttrsOn(n *node, primary *[]attribute.KeyValue, op, table, summary string) []attribute.KeyValue {
	server := *primary
	if n != nil {
		server = n.attrs
	}
	attrs := make([]attribute.KeyValue, 0, len(server)+3)
	attrs = append(attrs, server...)
	if op != "" {
		attrs = append(attrs, tracing.DBOperationName.String(op))
	}
	if table != "" {
		attrs = append(attrs, tracing.DBCollectionName.String(table))
	}
	if summary != "" {
		attrs = append(attrs, tracing.DBQuerySummary.String(summary))
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

// startCopy starts observing a COPY of rows rows into table: a CLIENT span
// "COPY table" with db.operation.batch.size; end it with endCopy.
func (db *DB) startCopy(ctx context.Context, table string, rows int) (context.Context, *opObs) {
	if !db.observed() {
		return ctx, nil
	}
	obs := db.startOp(ctx, db.shapeOf(opCopy, table, ""), tracing.DBBatchSize.Int(rows))
	return obs, obs
}

// endCopy ends what startCopy started, with err translated.
func (o *opObs) endCopy(rows int, err error) {
	if o != nil {
		text := "COPY " + o.shape.table + " FROM STDIN"
		if o.db.noQueryText {
			text = ""
		}
		o.end(text, int64(rows), -1, err)
	}
}

// observeTxStmt starts observing a transaction control statement (op, one
// of the op* constants) sent in ctx; text is the statement when dbkit
// wrote it, "" when the driver does. It returns the context to send it in
// (with its span, for a trace comment) and the func that ends the
// observation with the statement's error, nil when nothing observes.
func (db *DB) observeTxStmt(ctx context.Context, op, text string) (context.Context, func(error)) {
	if db == nil || !db.observed() {
		return ctx, nil
	}
	obs := db.startOp(ctx, db.shapeOf(op, "", ""))
	return obs, func(err error) {
		if err != nil {
			err = translateDriver(ctx, err)
		}
		if db.noQueryText {
			text = ""
		}
		obs.end(text, 0, -1, err)
	}
}

// failedKey identifies one series of db.client.operation.duration for a
// failure.
type failedKey struct {
	shape         *opShape
	errType, code string
}

// failedAttrs returns the attributes of a failed operation's duration
// sample, built once per series: the shape's and, on failure, error.type
// and db.response.status_code (the SQLSTATE).
func (db *DB) failedAttrs(s *opShape, errType, code string) metric.RecordOption {
	key := failedKey{s, errType, code}
	if opt, ok := db.durationOpts.Load(key); ok {
		return opt.(metric.RecordOption)
	}
	attrs := errorAttrs(db.opAttrsOn(s.node, s.server, s.op, s.table, s.summary), errType, code)
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
	var err6 error
	db.failover.changes, err6 = meter.Int64Counter(tracing.MetricPrimaryChanges, metric.WithUnit("{change}"),
		metric.WithDescription("Times the primary's pool found the primary on another server (a failover)."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return fmt.Errorf("dbkit: metrics: %w", err)
	}
	type pooled struct {
		sql        *sql.DB
		pool       attribute.Set
		idle, used metric.MeasurementOption
		replica    *replica
	}
	pools := []pooled{}
	addPool := func(name string, sqlDB *sql.DB, rp *replica) {
		pools = append(pools, pooled{sql: sqlDB, replica: rp,
			pool: attribute.NewSet(tracing.PoolName.String(name)),
			idle: metric.WithAttributes(tracing.PoolName.String(name), semconv.DBClientConnectionStateIdle),
			used: metric.WithAttributes(tracing.PoolName.String(name), semconv.DBClientConnectionStateUsed)})
	}
	addPool(db.poolName, db.sql, nil)
	instruments := []metric.Observable{count, maxOpen, maxIdle, waits, waitTime}
	var inRotation, lagBytes metric.Int64ObservableGauge
	var lagTime metric.Float64ObservableGauge
	if db.router != nil {
		for _, n := range db.router.replicas {
			addPool(n.name, n.sql, n.replica)
		}
		var err1, err2, err3, err4 error
		db.router.checker.removals, err1 = meter.Int64Counter(tracing.MetricReplicaRemovals, metric.WithUnit("{removal}"),
			metric.WithDescription("Times a read replica left the rotation, by reason."))
		inRotation, err2 = meter.Int64ObservableGauge(tracing.MetricReplicaInRotation, metric.WithUnit("1"),
			metric.WithDescription("1 while the read replica is in the rotation, 0 while it is out."))
		lagBytes, err3 = meter.Int64ObservableGauge(tracing.MetricReplicaLag, metric.WithUnit("By"),
			metric.WithDescription("WAL the read replica has not replayed, at its last check."))
		lagTime, err4 = meter.Float64ObservableGauge(tracing.MetricReplicaLagTime, metric.WithUnit("s"),
			metric.WithDescription("Age of the last transaction the read replica replayed while WAL waits, at its last check."))
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return fmt.Errorf("dbkit: metrics: %w", err)
		}
		instruments = append(instruments, inRotation, lagBytes, lagTime)
	}
	db.poolReg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, p := range pools {
			st := p.sql.Stats()
			o.ObserveInt64(count, int64(st.Idle), p.idle)
			o.ObserveInt64(count, int64(st.InUse), p.used)
			set := metric.WithAttributeSet(p.pool)
			o.ObserveInt64(maxOpen, int64(st.MaxOpenConnections), set)
			o.ObserveInt64(maxIdle, int64(max(db.cfg.MaxIdleConns, 0)), set)
			o.ObserveInt64(waits, st.WaitCount, set)
			o.ObserveFloat64(waitTime, st.WaitDuration.Seconds(), set)
			if p.replica != nil {
				rs := p.replica.state.get()
				in := int64(0)
				if rs.in {
					in = 1
				}
				o.ObserveInt64(inRotation, in, set)
				if rs.lagBytes >= 0 {
					o.ObserveInt64(lagBytes, rs.lagBytes, set)
				}
				o.ObserveFloat64(lagTime, rs.lag.Seconds(), set)
			}
		}
		return nil
	}, instruments...)
	if err != nil {
		return fmt.Errorf("dbkit: metrics: %w", err)
	}
	return nil
}
