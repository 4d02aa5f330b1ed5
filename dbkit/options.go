package dbkit

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/migrate"
)

// Option configures [Connect].
type Option func(*options)

type options struct {
	migrations      []migrate.Migration
	checkOnly       bool // check that migrations are applied, do not apply them
	migrateOptions  []migrate.Option
	logger          *slog.Logger
	gormLogger      logger.Interface
	tracerProvider  trace.TracerProvider
	meterProvider   metric.MeterProvider
	poolName        string
	slowQuery       time.Duration
	cursorKey       []byte
	returnedRows    bool
	noQueryText     bool
	repositorySpans bool
	traceComments   bool
	gormPlugins     []gorm.Plugin
	schemaCheck     []any // models Connect compares with the database (WithSchemaCheck)
	schemaWarn      []any // and those whose differences it only logs (WithSchemaCheckWarn)
}

// WithMigrations makes Connect apply the pending migrations, in ID order,
// after the health check, under a lock that makes it safe for many replicas
// to start at once; see package migrate. Connect fails with a
// *migrate.Error naming the first migration that fails, a
// *migrate.LockTimeoutError naming who held the lock too long, a
// *migrate.ChecksumError listing applied migrations that changed, or a
// *migrate.ValidationError.
func WithMigrations(migrations ...Migration) Option {
	return func(o *options) { o.migrations = append(o.migrations, migrations...) }
}

// WithMigrationCheck makes Connect check that migrations are all applied,
// without applying any (no lock, no change): for services whose migrations
// run in a separate job. Connect fails with a *migrate.PendingError listing
// what is missing. It applies to every migration given to Connect, with
// WithMigrations too.
func WithMigrationCheck(migrations ...Migration) Option {
	return func(o *options) {
		o.migrations = append(o.migrations, migrations...)
		o.checkOnly = true
	}
}

// WithMigrateOptions passes options to the migrator Connect runs: a lock
// timeout, a table name, out-of-order or unknown-migration policies.
func WithMigrateOptions(opts ...migrate.Option) Option {
	return func(o *options) { o.migrateOptions = append(o.migrateOptions, opts...) }
}

// Migration is migrate.Migration, so that a service can write its migrations
// without importing a second package.
type Migration = migrate.Migration

// WithLogger gives dbkit a logger: its own events (connection retries,
// applied migrations, close) and GORM's statements, through an adapter that
// logs them parameterised, never with their values: every statement at
// DEBUG, slow ones ([WithSlowQueryThreshold]) at WARN, failures other than
// not-found at ERROR, each with trace_id and span_id when ctx has a span.
// The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithGormLogger gives GORM a logger of its own, in place of dbkit's
// statement logs (WithLogger still gets dbkit's own events). Beware that
// GORM's loggers print parameter values, and that GORM inlines the values
// of what DB.Scan runs into the SQL it gives any logger.
func WithGormLogger(l logger.Interface) Option {
	return func(o *options) { o.gormLogger = l }
}

// WithTracerProvider sends dbkit's spans (session, transaction and SQL
// statement spans, repository spans with [WithRepositorySpans]) to tp. By default they go nowhere: dbkit does not use the
// global provider unless given otel.GetTracerProvider(), and without a
// provider no span costs anything per call.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithCursorKey sets the secret that authenticates the cursors of
// [Repository.FindCursor]: with it a client cannot make a cursor of its
// own. Give every replica of a service the same key, at least 32 random
// bytes (Connect refuses a shorter one), or a cursor from one replica fails
// on another. Without it cursors are checked against a key derived from the
// database name: altered or truncated cursors are still refused, but one
// could be forged (its keys are still only data, converted and bound), and
// dbkit logs a warning at the first cursor it makes.
func WithCursorKey(key []byte) Option {
	return func(o *options) { o.cursorKey = append([]byte(nil), key...) }
}

// WithMeterProvider records dbkit's metrics on mp: the duration of every
// statement (db.client.operation.duration) and the connection pool's state
// (db.client.connection.*), labelled with the pool's name. Without it no
// metric is recorded: dbkit does not use the global provider unless given
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithPoolName names the connection pool in metrics
// (db.client.connection.pool.name), so that two databases of one process
// are told apart. The default is "host:port/database".
func WithPoolName(name string) Option { return func(o *options) { o.poolName = name } }

// WithSlowQueryThreshold sets the duration past which a statement is logged
// at WARN (200 ms by default). It applies with WithLogger.
func WithSlowQueryThreshold(d time.Duration) Option { return func(o *options) { o.slowQuery = d } }

// WithReturnedRows records db.response.returned_rows, the rows a query
// returned, on statement spans and, with [WithRepositorySpans], on the
// spans of Find, FindPage and FindCursor. The semantic conventions make it opt-in: it is off by
// default.
func WithReturnedRows() Option { return func(o *options) { o.returnedRows = true } }

// WithoutQueryText leaves the statement's text out of its span
// (db.query.text) and log record. By default the text is there, with its
// literals replaced by "?" (values dbkit binds are placeholders already).
func WithoutQueryText() Option { return func(o *options) { o.noQueryText = true } }

// WithRepositorySpans adds a span per [BaseDatabase] call ("User.Get",
// INTERNAL), the parent of the call's statement spans. By default a call
// has no span of its own: most calls are one statement, whose CLIENT span
// is the span the semantic conventions define for it, and a second span
// per call would double what tracing costs the caller (docs/performance.md).
// Transactions ([DB.InTx]) always have their span. It applies with
// WithTracerProvider.
func WithRepositorySpans() Option { return func(o *options) { o.repositorySpans = true } }

// WithGormPlugins adds GORM plugins (gorm.Plugin: their Initialize
// registers callbacks, clauses or a ConnPool of their own) to dbkit's GORM,
// after dbkit's callbacks and before the migrations run, so that
// migrations and every statement after them see the plugins. Connect fails
// with the error a plugin's Initialize returns, or with an error if it
// panics, closing what it opened. A plugin that replaces
// GORM's ConnPool or callbacks dbkit registers (gorm:begin_transaction,
// gorm:commit_or_rollback_transaction, dbkit:*) takes dbkit's guarantees
// over: read what it does first.
func WithGormPlugins(plugins ...gorm.Plugin) Option {
	return func(o *options) { o.gormPlugins = append(o.gormPlugins, plugins...) }
}

// WithTraceComments appends the trace context of each statement's span to
// its SQL, as a comment in the sqlcommenter format
// (https://google.github.io/sqlcommenter/spec/):
//
//	SELECT ... LIMIT $2 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/
//
// so that what the server shows of a statement, in pg_stat_activity.query,
// in its log (log_min_duration_statement, an error's STATEMENT) and in
// auto_explain's plans, leads to the trace, and to the statement's span,
// that ran it. It is off by default.
//
// The traceparent is the W3C one of the span in the statement's ctx: the
// statement's span with [WithTracerProvider], else the caller's span, if
// any; sampled or not (its flags say which). A statement with no span in ctx gets no comment,
// nor does one that holds a comment already ("--" or "/*" anywhere in it),
// nor COPY, whose text pgx writes. The comment holds nothing else: no
// value, no text of the caller's.
//
// Cost: a comment makes each statement's text unique, and pgx's default
// mode, cache_statement (as cache_describe), would prepare and cache every
// one of them. So a commented statement runs uncached instead: in pgx's
// exec mode, one round trip as before, when its arguments are strings,
// integers, booleans, UUIDs or NULL; else (times included) in
// describe_exec, two.
// Either way the server parses and plans it on every call, which a cached
// statement spares: a Get by primary key on a local server took 1.6 to 1.7
// times as long (docs/performance.md). With [Config.QueryExecMode] exec,
// describe_exec or simple_protocol, only the text changes. Behind a
// transaction pooler (PgBouncer in transaction mode), set QueryExecMode to
// exec first: describe_exec's two round trips may reach two server
// connections.
//
// pg_stat_activity cuts a statement at track_activity_query_size (1 kB by
// default): a longer one loses its comment there, not in the log.
func WithTraceComments() Option { return func(o *options) { o.traceComments = true } }

// WithSchemaCheck makes Connect compare each model with the database once
// the migrations are applied or checked, as [DB.CheckSchema] does, and fail
// with a *[SchemaDriftError] (matching [ErrSchemaDrift]) listing every
// difference: a column no migration created, a type or nullability that
// differs, a uniqueIndex tag with no unique index. It costs Connect two
// catalog queries. models are pointers to (or values of) the models, as for
// GORM: WithSchemaCheck(&User{}, &Order{}).
//
// Failing is the safe choice where a difference means a bug: tests, CI, a
// staging start-up. A service that must start anyway (a schema with known,
// harmless differences, being adopted) uses [WithSchemaCheckWarn].
func WithSchemaCheck(models ...any) Option {
	return func(o *options) { o.schemaCheck = append(o.schemaCheck, models...) }
}

// WithSchemaCheckWarn is [WithSchemaCheck] that lets Connect succeed: each
// difference is logged at WARN through [WithLogger] ("dbkit: schema drift:
// ..." with the attributes kind, model, field, table, column, want and got).
// Give it a logger: without WithLogger dbkit logs nothing, and the
// differences would go unseen. A catalog that cannot be read, or a model
// GORM cannot parse, still fails Connect.
func WithSchemaCheckWarn(models ...any) Option {
	return func(o *options) { o.schemaWarn = append(o.schemaWarn, models...) }
}
