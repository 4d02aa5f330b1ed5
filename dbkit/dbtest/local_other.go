//go:build !unix || solaris

package dbtest

import (
	"context"
	"errors"
)

// StartLocal is not supported on this platform: use Docker or
// DBKIT_TEST_DATABASE_URL.
func StartLocal(context.Context) (*Server, error) {
	return nil, errors.New("dbtest: local PostgreSQL binaries are supported on Unix only: use Docker or " + EnvDatabaseURL)
}
