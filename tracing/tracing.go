package tracing

import (
	"context"
	"errors"
	"runtime/debug"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeVersion is the instrumentation version of every tracer and meter:
// this module's version as the build recorded it (a tag such as v1.4.0
// when a service depends on it, "(devel)" when built from its own
// checkout, "unknown" when the binary has no build information).
var ScopeVersion = moduleVersion()

// SchemaURL is the semantic conventions' schema every tracer and meter
// declares: the attribute names follow it.
const SchemaURL = semconv.SchemaURL

// modulePath is this module's path, looked up in the build information.
const modulePath = "github.com/dbkit-go/database"

func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == modulePath {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == modulePath {
			if d.Replace != nil && d.Replace.Version != "" {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

// Session span names.
const (
	SpanConnect   = "DatabaseSession.Connect"
	SpanHealth    = "DatabaseSession.Health"
	SpanMigrate   = "DatabaseSession.Migrate"
	SpanClose     = "DatabaseSession.Close"
	SpanTx        = "DatabaseSession.Transaction"
	SpanMigration = "DatabaseSession.Migration" // one per migration applied or rolled back
)

// Attribute keys: those of the stable OpenTelemetry database semantic
// conventions, from the semconv package, and dbkit's own, prefixed "dbkit.".
const (
	DBSystemName         = semconv.DBSystemNameKey
	DBNamespace          = semconv.DBNamespaceKey
	DBCollectionName     = semconv.DBCollectionNameKey
	DBOperationName      = semconv.DBOperationNameKey
	DBQuerySummary       = semconv.DBQuerySummaryKey
	DBQueryText          = semconv.DBQueryTextKey
	DBResponseStatusCode = semconv.DBResponseStatusCodeKey
	DBReturnedRows       = semconv.DBResponseReturnedRowsKey
	DBBatchSize          = semconv.DBOperationBatchSizeKey
	ErrorType            = semconv.ErrorTypeKey
	ServerAddress        = semconv.ServerAddressKey
	ServerPort           = semconv.ServerPortKey
	PoolName             = semconv.DBClientConnectionPoolNameKey
	ConnectionState      = semconv.DBClientConnectionStateKey
	Model                = attribute.Key("dbkit.model")
	Operation            = attribute.Key("dbkit.operation") // a repository span's method: Get, Create...
	PageSize             = attribute.Key("dbkit.page.size")
	MigrationID          = attribute.Key("dbkit.migration.id")
	MigrationOp          = attribute.Key("dbkit.migration.op")
	MigrationCount       = attribute.Key("dbkit.migration.count")
	TxAttempt            = attribute.Key("dbkit.tx.attempt")
	TxIsolation          = attribute.Key("dbkit.tx.isolation")
	// With read replicas: the pool a repository read ran on, and why
	// there (replica, read_your_writes, replica_lag, no_healthy_replica,
	// on_primary; docs/scaling.md).
	ReadNode   = attribute.Key("dbkit.read.node")
	ReadReason = attribute.Key("dbkit.read.reason")
	// Why a read replica left the rotation (unreachable, not_standby,
	// lag_bytes, lag_time).
	ReplicaReason = attribute.Key("dbkit.replica.reason")
)

// Metric names. The connection metrics come from database/sql's pool
// statistics, which keep only totals for waits: those are cumulative
// counters of dbkit's own, named outside the conventions' db.client.*
// namespace, whose db.client.connection.wait_time is a histogram of each
// wait that database/sql does not give.
const (
	MetricOperationDuration  = "db.client.operation.duration"  // histogram, s
	MetricConnectionCount    = "db.client.connection.count"    // by state: idle, used
	MetricConnectionMax      = "db.client.connection.max"      // MaxOpenConns
	MetricConnectionIdleMax  = "db.client.connection.idle.max" // MaxIdleConns
	MetricConnectionWaits    = "dbkit.pool.waits"              // waits for a connection, cumulative
	MetricConnectionWaitTime = "dbkit.pool.wait_time"          // time waited, cumulative, s
	// The server the primary's pool reaches changed (a failover), by pool
	// name and the new server's address.
	MetricPrimaryChanges = "dbkit.primary.changes"
	// Read replicas, by pool name.
	MetricReplicaRemovals   = "dbkit.replica.removals"    // times one left the rotation, by reason
	MetricReplicaInRotation = "dbkit.replica.in_rotation" // 1 in the rotation, 0 out
	MetricReplicaLag        = "dbkit.replica.lag"         // replay behind the primary, By
	MetricReplicaLagTime    = "dbkit.replica.lag_time"    // age of the last replayed transaction while WAL waits, s
)

// ScopeName is the instrumentation scope of dbkit's tracer and meter.
const ScopeName = "github.com/dbkit-go/database"

// PostgreSQL is the db.system.name of every dbkit span.
var PostgreSQL = semconv.DBSystemNamePostgreSQL

// EventNotFound is the event recorded on a span whose operation found no row:
// not finding a row is an answer, not an error, so the span status stays unset.
const EventNotFound = "dbkit.not_found"

// EventTxRetry is the event recorded on a transaction's span each time its
// function is run again after a serialization failure or a deadlock, with
// the attempt about to start ([TxAttempt]) and the SQLSTATE ([ErrorType]).
const EventTxRetry = "dbkit.tx.retry"

// Provider returns tp, or a no-op provider when tp is nil. dbkit never falls
// back to the global provider on its own: pass otel.GetTracerProvider()
// explicitly to use it.
func Provider(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return noop.NewTracerProvider()
	}
	return tp
}

// Tracer returns dbkit's tracer on tp: its instrumentation scope is the
// library, [ScopeName], with [ScopeVersion] and [SchemaURL], for every span
// dbkit records (session, transaction, repository and statement spans), as
// the scope names the instrumentation, not what it observes.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	return Provider(tp).Tracer(ScopeName, trace.WithInstrumentationVersion(ScopeVersion), trace.WithSchemaURL(SchemaURL))
}

// SpanName names a repository span, "User.Get" for operation Get on model User.
func SpanName(model, operation string) string { return model + "." + operation }

// End ends span, recording err as its error status. An error for which
// notFound reports true is recorded as an [EventNotFound] event instead.
//
// A failure is recorded in full once, where it happened (the statement's
// span and log record): End gives the spans above it only the Error status
// and error.type, no exception event.
func End(span trace.Span, err error, notFound func(error) bool) {
	if err != nil && span.IsRecording() {
		if notFound != nil && notFound(err) {
			span.AddEvent(EventNotFound)
		} else {
			errType, _ := ErrorTypeOf(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(ErrorType.String(errType))
		}
	}
	span.End()
}

// ErrorTypeOf returns the error.type of err, and its SQLSTATE when the
// server reported it: the SQLSTATE itself, "canceled" or "timeout" for an
// ended ctx, and the conventions' "_OTHER" for the rest.
func ErrorTypeOf(err error) (errType, sqlstate string) {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Code, pgErr.Code
	case errors.Is(err, context.Canceled):
		return "canceled", ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", ""
	}
	return semconv.ErrorTypeOther.Value.AsString(), ""
}
