package integration

import (
	"context"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// BenchmarkReplicaReads measures reads per second of Get by key, 8 ×
// GOMAXPROCS goroutines at once (16 on two cores), on the primary alone (impl=primary) and spread over
// two streaming replicas of it (impl=replicas), all on this machine: with
// every server on the same cores, replicas add no CPU, so this measures
// what routing costs and what spreading gains when the client, not the
// server, is the limit (docs/scaling.md).
func BenchmarkReplicaReads(b *testing.B) {
	cl := replicaCluster(b)
	cfg := cl.NewDatabase(b)
	migrateDB(b, cfg, tallySchema)
	ctx := context.Background()
	single := cfg
	single.Replicas = nil
	var ids []dbkit.Model
	for _, c := range []struct {
		name string
		cfg  dbkit.Config
	}{{"primary", single}, {"replicas", cfg}} {
		db, err := dbkit.Connect(ctx, c.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = db.Close(context.Background()) })
		repo := dbkit.NewBaseDatabase[Tally](db)
		if ids == nil {
			rows := make([]Tally, 1000)
			for i := range rows {
				rows[i].Name = "t"
			}
			if err := repo.CreateMany(ctx, rows); err != nil {
				b.Fatal(err)
			}
			for _, r := range rows {
				ids = append(ids, r.Model)
			}
			if err := cl.WaitForReplay(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("impl="+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := repo.Get(ctx, ids[i%len(ids)].ID); err != nil {
						b.Error(err)
						return
					}
					i += 7
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
