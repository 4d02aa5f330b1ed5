package dbtest

import (
	"context"
	"sync"
)

// shared is the server of [Shared]: one per test process.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the server the tests of this process share, found the
// first time it is asked for as [Start] finds one, with one difference:
// local binaries give one server to the test processes of a user and Go
// module (the packages that "go test ./..." runs at once), started by the
// first and stopped DBKIT_TEST_SERVER_IDLE (default 5s) after the last has
// exited, however it exited. A container is removed by Testcontainers' reaper when
// the process ends; an external server is left running. Do not Stop it:
// the process's tests would lose it. A failure to start is returned to
// every caller.
func Shared(ctx context.Context) (*Server, error) {
	shared.once.Do(func() { shared.srv, shared.err = start(ctx, startSharedLocal) })
	return shared.srv, shared.err
}
