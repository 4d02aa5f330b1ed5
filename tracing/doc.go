// Package tracing holds dbkit's OpenTelemetry conventions: the tracer and span
// names, the attribute keys, and how spans end.
//
// # Tracers
//
// dbkit's tracer ([Tracer]) is named [ScopeName], as its meter is. Session
// spans carry a connection's life: [SpanConnect], [SpanHealth],
// [SpanMigrate] with one [SpanMigration] per migration applied or rolled
// back, [SpanClose], and [SpanTx] for each transaction dbkit's InTx runs.
// SQL statements, BEGIN and COMMIT included, get CLIENT spans named by
// their db.query.summary ("SELECT users"), children of the caller's span
// (or of the transaction's), with every attribute known before the
// statement set at its start, and their text with literals replaced, never
// with values. Repository spans, opt-in, are named "Model.Operation"
// ([SpanName]), for example "User.Get", and are the parents of their
// statements.
//
// # Metrics
//
// dbkit's meter is named [ScopeName]. [MetricOperationDuration] is a
// histogram of statement durations; the db.client.connection.* metrics
// observe the pool, labelled with [PoolName]. The names are the constants
// Metric*.
//
// # Set-up
//
// Package tracing/telemetry builds a TracerProvider and a MeterProvider from
// the standard OTEL_* environment for services that have none; it is a
// package of its own so that the others do not link the exporters.
// docs/observability.md lists every span, attribute, metric and log field.
//
// # Providers
//
// Nothing here reads the global OpenTelemetry providers: a nil provider means
// no-op ([Provider]). Pass otel.GetTracerProvider() to dbkit.WithTracerProvider
// (and otel.GetMeterProvider() to dbkit.WithMeterProvider) to use the global
// ones.
//
// # Secrets
//
// No span carries a password or a query parameter value: statements are
// recorded with their placeholders, constraint errors without PostgreSQL's
// DETAIL, and every server error's message (which may quote a value,
// whatever its SQLSTATE) is replaced by its SQLSTATE, condition name and
// object names before any span records it.
//
// This package imports nothing from dbkit; dbkit imports it.
package tracing
