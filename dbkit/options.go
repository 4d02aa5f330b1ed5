package dbkit

import (
	"log/slog"

	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/migrate"
)

// Option configures [Connect].
type Option func(*options)

type options struct {
	migrations     []migrate.Migration
	logger         *slog.Logger
	gormLogger     logger.Interface
	tracerProvider trace.TracerProvider
}

// WithMigrations makes Connect apply migrations, in ID order, after the
// health check; see package migrate. Connect fails with a *migrate.Error
// naming the first migration that fails.
func WithMigrations(migrations ...Migration) Option {
	return func(o *options) { o.migrations = append(o.migrations, migrations...) }
}

// Migration is migrate.Migration, so that a service can write its migrations
// without importing a second package.
type Migration = migrate.Migration

// WithLogger gives dbkit a logger for its own events: connection retries,
// applied migrations, close. The default discards them.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithGormLogger replaces GORM's logger, which is silent by default. Beware
// that GORM's own loggers print query parameter values.
func WithGormLogger(l logger.Interface) Option {
	return func(o *options) { o.gormLogger = l }
}

// WithTracerProvider sends dbkit's spans (session, repository and SQL
// statement spans) to tp. By default they go nowhere: dbkit does not use the
// global provider unless given otel.GetTracerProvider(), and without a
// provider neither the repository spans nor the OpenTelemetry GORM plugin
// cost anything per call.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}
