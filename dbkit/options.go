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
	checkOnly      bool // check that migrations are applied, do not apply them
	migrateOptions []migrate.Option
	logger         *slog.Logger
	gormLogger     logger.Interface
	tracerProvider trace.TracerProvider
	cursorKey      []byte
}

// WithMigrations makes Connect apply the pending migrations, in ID order,
// after the health check, under a lock that makes it safe for many replicas
// to start at once; see package migrate. Connect fails with a
// *migrate.Error naming the first migration that fails, a
// *migrate.LockTimeoutError naming who held the lock too long, or a
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

// WithCursorKey sets the secret that authenticates the cursors of
// [BaseDatabase.FindCursor]: with it a client cannot make a cursor of its
// own. Give every replica of a service the same key, at least 32 random
// bytes (Connect refuses a shorter one), or a cursor from one replica fails
// on another. Without it cursors are checked against a key derived from the
// database name: altered or truncated cursors are still refused, but one
// could be forged (its keys are still only data, converted and bound), and
// dbkit logs a warning at the first cursor it makes.
func WithCursorKey(key []byte) Option {
	return func(o *options) { o.cursorKey = append([]byte(nil), key...) }
}
