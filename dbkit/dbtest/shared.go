package dbtest

import (
	"context"
	"sync"
)

// shared is the server of [Shared]: one per test process.
var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared returns the server the tests of this process share, found the
// first time it is asked for as [Start] finds one, with one difference:
// local binaries give one server to the test processes of a user and Go
// module (the packages that "go test ./..." runs at once), started by the
// first and stopped DBKIT_TEST_SERVER_IDLE (default 5s) after the last has
// exited, however it exited. A container is removed by Testcontainers' reaper when
// the process ends; an external server is left running. Do not Stop it:
// the process's tests would lose it. A failure to start is returned to
// every caller, unless it was ctx's end: the next caller tries again.
func Shared(ctx context.Context) (*Server, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		srv, err := start(ctx, startSharedLocal)
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		shared.srv, shared.err = srv, err
	}
	return shared.srv, shared.err
}
