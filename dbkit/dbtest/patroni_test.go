//go:build failover

package dbtest_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit/dbtest"
)

// StartPatroni brings up a cluster whose primary Config finds, a switchover
// moves the leader, and Stop leaves no directory.
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
	if _, err := p.CreateDatabase(ctx, "app"); err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	from, to, err := p.Switchover(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
	t.Logf("switchover %s -> %s", from.Name(), to.Name())
	if err := p.WaitHealthy(ctx); err != nil {
		t.Fatalf("%v\n%s", err, p.Logs())
	}
}
