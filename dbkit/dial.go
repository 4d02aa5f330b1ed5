package dbkit

import (
	"context"
	"net"
	"time"
)

// dialer returns the dial func of the pool's connections: TCP keepalives
// that give up on a silent server within deadPeer, and, where the platform
// has it, a TCP user timeout of deadPeer for data the server never
// acknowledges. Without them a call with no deadline on a connection whose
// server vanished blocks until the kernel's defaults give up: hours.
func dialer(deadPeer time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	interval := max(deadPeer/6, time.Second)
	d := &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     max(deadPeer/2, time.Second),
			Interval: interval,
			Count:    3,
		},
		Control: userTimeout(deadPeer),
	}
	return d.DialContext
}
