//go:build unix && !solaris

package dbtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// A primary and two read replicas: a write reaches both, and a replica whose
// replay is paused lags behind until it resumes. (A test would rather take
// Cluster.NewDatabase's Config, Replicas filled in, and give it to
// dbkit.Connect.)
func ExampleStartCluster() {
	ctx := context.Background()
	cluster, err := dbtest.StartCluster(ctx, 2)
	if err != nil {
		log.Fatal(err) // says what was missing: the binaries, pg_basebackup...
	}
	defer cluster.Stop(ctx)

	primary := cluster.Primary()
	exec := func(sql string) {
		if err := primary.Exec(ctx, sql); err != nil {
			log.Fatal(err)
		}
	}
	replay := func() {
		if err := cluster.WaitForReplay(ctx); err != nil {
			log.Fatal(err)
		}
	}
	// events counts the rows of events on a replica, connected to directly.
	events := func(r *dbtest.Standby) int {
		cfg := primary.Config()
		cfg.Host, cfg.Port = r.Host(), r.Port()
		db, err := dbkit.Connect(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer db.Close(ctx)
		var n int
		if err := db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
			log.Fatal(err)
		}
		return n
	}

	exec("CREATE TABLE events (id int)")
	replay()
	lagging := cluster.Replicas()[0]
	if err := lagging.PauseReplay(ctx); err != nil {
		log.Fatal(err)
	}
	exec("INSERT INTO events VALUES (1)")
	replay() // waits for the replicas that replay: not for a paused one
	for _, r := range cluster.Replicas() {
		fmt.Printf("%s: %d event(s)\n", r.Name(), events(r))
	}
	if err := lagging.ResumeReplay(ctx); err != nil {
		log.Fatal(err)
	}
	replay()
	fmt.Printf("%s, resumed: %d event(s)\n", lagging.Name(), events(lagging))
	// Output:
	// replica1: 0 event(s)
	// replica2: 1 event(s)
	// replica1, resumed: 1 event(s)
}
