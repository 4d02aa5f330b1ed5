//go:build !linux

package dbkit

import (
	"syscall"
	"time"
)

// userTimeout does nothing here: TCP_USER_TIMEOUT is Linux's; keepalives
// alone bound a silent server.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
