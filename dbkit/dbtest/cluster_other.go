//go:build !unix || solaris

package dbtest

import (
	"context"
	"errors"
)

// StartCluster is not supported on this platform: it needs the local
// PostgreSQL binaries, which dbtest runs on Unix only.
func StartCluster(context.Context, int) (*Cluster, error) {
	return nil, errors.New("dbtest: StartCluster runs local PostgreSQL binaries, supported on Unix only")
}
