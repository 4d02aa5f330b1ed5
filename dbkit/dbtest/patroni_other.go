//go:build !unix || solaris

package dbtest

import (
	"context"
	"errors"

	"github.com/dbkit-go/database/dbkit"
)

// PatroniOptions configures [StartPatroni].
type PatroniOptions struct {
	Nodes       int
	Synchronous bool
}

// Patroni is supported on Unix only, as the local server is.
type Patroni struct{}

// PatroniNode is supported on Unix only.
type PatroniNode struct{}

// PatroniMember is a node as Patroni's REST API describes it.
type PatroniMember struct {
	Name, Role, State, Host string
	Port                    int
}

var errPatroniUnsupported = errors.New("dbtest: StartPatroni runs local PostgreSQL, Patroni and etcd binaries, supported on Unix only")

// StartPatroni is not supported on this platform.
func StartPatroni(context.Context, PatroniOptions) (*Patroni, error) {
	return nil, errPatroniUnsupported
}

func (*Patroni) Nodes() []*PatroniNode                        { return nil }
func (*Patroni) Config(string) dbkit.Config                   { return dbkit.Config{} }
func (*Patroni) NodeConfig(*PatroniNode, string) dbkit.Config { return dbkit.Config{} }
func (*Patroni) CreateDatabase(context.Context, string) (dbkit.Config, error) {
	return dbkit.Config{}, errPatroniUnsupported
}
func (*Patroni) Members(context.Context) ([]PatroniMember, error) { return nil, errPatroniUnsupported }
func (*Patroni) Leader(context.Context) (*PatroniNode, error)     { return nil, errPatroniUnsupported }
func (*Patroni) Switchover(context.Context) (from, to *PatroniNode, err error) {
	return nil, nil, errPatroniUnsupported
}
func (*Patroni) WaitHealthy(context.Context) error { return errPatroniUnsupported }
func (*Patroni) Logs() string                      { return "" }
func (*Patroni) Stop(context.Context) error        { return nil }
func (*PatroniNode) Name() string                  { return "" }
func (*PatroniNode) Host() string                  { return "" }
func (*PatroniNode) Port() int                     { return 0 }
func (*PatroniNode) APIURL() string                { return "" }
func (*PatroniNode) KillPostmaster() error         { return errPatroniUnsupported }
func (*PatroniNode) KillNode() error               { return errPatroniUnsupported }
func (*PatroniNode) Restart(context.Context) error { return errPatroniUnsupported }
