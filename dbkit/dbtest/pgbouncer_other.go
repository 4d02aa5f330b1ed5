//go:build !unix || solaris

package dbtest

import (
	"context"
	"errors"

	"github.com/dbkit-go/database/dbkit"
)

// PgBouncer is supported on Unix only, as the local server is.
type PgBouncer struct{}

// PgBouncerOption configures [StartPgBouncer].
type PgBouncerOption func(*PgBouncer)

// PoolMode sets PgBouncer's pool_mode.
func PoolMode(string) PgBouncerOption { return func(*PgBouncer) {} }

// StartPgBouncer is not supported on this platform.
func StartPgBouncer(context.Context, *Server, ...PgBouncerOption) (*PgBouncer, error) {
	return nil, errors.New("dbtest: PgBouncer is supported on Unix only")
}

// NewPgBouncer is not supported on this platform: it fails the test.
func NewPgBouncer(t TB, _ *Server, _ ...PgBouncerOption) *PgBouncer {
	t.Helper()
	t.Fatalf("dbtest: PgBouncer is supported on Unix only")
	return nil
}

func (*PgBouncer) Addr() string               { return "" }
func (*PgBouncer) Config(string) dbkit.Config { return dbkit.Config{} }
func (*PgBouncer) Server() *Server            { return nil }
func (*PgBouncer) Log() string                { return "" }
func (*PgBouncer) Stop(context.Context) error { return nil }
