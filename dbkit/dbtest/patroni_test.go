//go:build failover

package dbtest_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbkit-go/database/dbkit/dbtest"
)

// StartPatroni brings up a cluster whose primary Config finds, a switchover
// moves the leader (and Config then finds the new one, which takes a
// write), and Stop leaves no directory.
func TestStartPatroni(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	p, err := dbtest.StartPatroni(ctx, dbtest.PatroniOptions{Synchronous: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bring-up: %s", time.Since(start).Round(10*time.Millisecond))
	dir := dbtest.PatroniDir(p)
	defer func() {
		start := time.Now()
		if err := p.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		t.Logf("teardown: %s", time.Since(start).Round(10*time.Millisecond))
		if err := p.Stop(context.Background()); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Stop left %s behind (%v)", dir, err)
		}
	}()
	cfg, err := p.CreateDatabase(ctx, "app")
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	from, to, err := p.Switchover(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	t.Logf("switchover %s -> %s", from.Name(), to.Name())
	if from == to || from.Name() == to.Name() {
		t.Fatalf("switchover: the leader is still %s", to.Name())
	}
	if err := p.WaitHealthy(ctx); err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	// Config (read-write) now lands on the new leader, which takes a write.
	conn, err := pgx.Connect(ctx, cfg.DSN())
	if err != nil {
		t.Fatalf("connect after the switchover: %v\n%s", err, p.Logs())
	}
	defer conn.Close(context.Background())
	var port int
	var recovery bool
	if err := conn.QueryRow(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &recovery); err != nil {
		t.Fatal(err)
	}
	if port != to.Port() || recovery {
		t.Errorf("Config connected to port %d (in recovery: %v), want the new leader %s on %d, not in recovery",
			port, recovery, to.Name(), to.Port())
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE after_switchover (id int); INSERT INTO after_switchover VALUES (1)"); err != nil {
		t.Errorf("write on the new leader %s: %v", to.Name(), err)
	}
}
