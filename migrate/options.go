package migrate

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/dbkit-go/database/tracing"
)

// Option configures a [Migrator].
type Option func(*Migrator)

// WithTableName records applied migrations in table name (it may be
// schema-qualified) instead of [DefaultTableName].
func WithTableName(name string) Option { return func(m *Migrator) { m.table = name } }

// WithLogger logs each migration applied or rolled back, with its duration,
// and waits for the lock, at INFO.
func WithLogger(l *slog.Logger) Option { return func(m *Migrator) { m.logger = l } }

// WithLockTimeout bounds the wait for another migrator's lock
// ([DefaultLockTimeout]); past it Up fails with a *[LockTimeoutError].
func WithLockTimeout(d time.Duration) Option { return func(m *Migrator) { m.lockTimeout = d } }

// AllowOutOfOrder lets Up apply a pending migration whose ID sorts before
// the last applied one (a branch merged late). By default that is a
// validation error, since the migration was likely written against an older
// schema.
func AllowOutOfOrder() Option { return func(m *Migrator) { m.allowOutOfOrder = true } }

// RejectUnknown makes Up refuse to run when the database records migrations
// this code does not have (for example after deploying an older version).
// By default Status reports them, Up logs them at WARN and goes on.
func RejectUnknown() Option { return func(m *Migrator) { m.rejectUnknown = true } }

// WarnOnChecksumMismatch makes Up, Check and Plan log applied migrations
// whose code changed (see Migration.Checksum) at WARN and go on, instead of
// failing with a *[ChecksumError].
func WarnOnChecksumMismatch() Option { return func(m *Migrator) { m.warnOnChecksum = true } }

// WithTracerProvider records a span per migration applied or rolled back
// (DatabaseSession.Migration, with its ID), as a child of ctx's span.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(m *Migrator) { m.tracer = tracing.Tracer(tp) }
}
