//go:build unix && !solaris

package dbtest_test

import (
	"context"
	"fmt"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// A primary and two read replicas: a write reaches both, and a replica whose
// replay is paused lags behind until it resumes. (A test would rather take
// Cluster.NewDatabase's Config, Replicas filled in, and give it to
// dbkit.Connect.)
func ExampleStartCluster() {
	// The body returns its error rather than calling log.Fatal, whose
	// os.Exit would skip the deferred Stop: printed, it fails the example.
	if err := clusterExample(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// replica1: 0 event(s)
	// replica2: 1 event(s)
	// replica1, resumed: 1 event(s)
}

func clusterExample(ctx context.Context) error {
	cluster, err := dbtest.StartCluster(ctx, 2)
	if err != nil {
		return err // says what was missing: the binaries, pg_basebackup...
	}
	defer cluster.Stop(ctx)

	primary := cluster.Primary()
	// events counts the rows of events on a replica, connected to directly.
	events := func(r *dbtest.Standby) (int, error) {
		cfg := primary.Config()
		cfg.Host, cfg.Port = r.Host(), r.Port()
		db, err := dbkit.Connect(ctx, cfg)
		if err != nil {
			return 0, err
		}
		defer db.Close(ctx)
		var n int
		err = db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n)
		return n, err
	}

	if err := primary.Exec(ctx, "CREATE TABLE events (id int)"); err != nil {
		return err
	}
	if err := cluster.WaitForReplay(ctx); err != nil {
		return err
	}
	lagging := cluster.Replicas()[0]
	if err := lagging.PauseReplay(ctx); err != nil {
		return err
	}
	if err := primary.Exec(ctx, "INSERT INTO events VALUES (1)"); err != nil {
		return err
	}
	// Waits for the replicas that replay: not for a paused one.
	if err := cluster.WaitForReplay(ctx); err != nil {
		return err
	}
	for _, r := range cluster.Replicas() {
		n, err := events(r)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d event(s)\n", r.Name(), n)
	}
	if err := lagging.ResumeReplay(ctx); err != nil {
		return err
	}
	if err := cluster.WaitForReplay(ctx); err != nil {
		return err
	}
	n, err := events(lagging)
	if err != nil {
		return err
	}
	fmt.Printf("%s, resumed: %d event(s)\n", lagging.Name(), n)
	return nil
}
