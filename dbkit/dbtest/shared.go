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

// Shared returns the server the tests of this process share, started with
// [Start] the first time it is asked for. The process never stops it: a
// local server dies with the test process, a container is removed by
// Testcontainers' reaper, an external server is left running. A failure to
// start is returned to every caller.
func Shared(ctx context.Context) (*Server, error) {
	shared.once.Do(func() { shared.srv, shared.err = Start(ctx) })
	return shared.srv, shared.err
}
