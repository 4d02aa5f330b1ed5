package dbtest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// tenTables is a schema of ten tables, each with a primary key, a unique
// and a plain index, a check, and a foreign key to the one before: the size
// of a small service.
var tenTables = func() []dbkit.Migration {
	var out []dbkit.Migration
	for i := range 10 {
		ref := ""
		if i > 0 {
			ref = fmt.Sprintf(", parent_id uuid REFERENCES table%d (id)", i-1)
		}
		ddl := fmt.Sprintf(`CREATE TABLE table%d (
			id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
			name text NOT NULL UNIQUE, amount bigint NOT NULL DEFAULT 0 CHECK (amount >= 0), note text%s);
			CREATE INDEX table%d_created_at ON table%d (created_at)`, i, ref, i, i)
		out = append(out, dbkit.Migration{
			ID:      fmt.Sprintf("2026112609%02d_table%d", i, i),
			Migrate: func(tx *gorm.DB) error { return tx.Exec(ddl).Error },
		})
	}
	return out
}()

type row struct{ dbkit.Model }

func (row) TableName() string { return "table0" }

// iterationTB is the TB of one benchmark iteration: its cleanups run when
// the iteration ends, outside the timer.
type iterationTB struct {
	*testing.B
	cleanups []func()
}

func (t *iterationTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

func (t *iterationTB) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}

// BenchmarkNewDatabase measures what a test waits for before it has a
// migrated database of ten tables and a connection to it, three ways, in
// one run:
//
//	impl=template  dbtest.Schema.New: a clone of the template (built before the timer)
//	impl=migrate   an empty database, connected and migrated (Server.New with WithMigrations)
//	impl=truncate  one database for all tests, emptied with TRUNCATE between them
//
// Besides the mean (ns/op) it reports the median and 95th percentile of the
// iterations, in ms.
func BenchmarkNewDatabase(b *testing.B) {
	ctx := context.Background()
	srv, err := dbtest.Shared(ctx)
	if err != nil {
		b.Fatal(err)
	}
	schema := dbtest.Schema{Migrations: tenTables, Version: "bench", Server: srv}
	if _, err := srv.Template(ctx, schema.Migrations, schema.Version); err != nil {
		b.Fatal(err)
	}
	rows := dbkit.NewBaseDatabase[row](srv.New(b, dbkit.WithMigrations(tenTables...)))
	var tables []string
	for i := range 10 {
		tables = append(tables, fmt.Sprintf("table%d", i))
	}
	truncate := "TRUNCATE " + strings.Join(tables, ", ") + " RESTART IDENTITY CASCADE"

	impls := []struct {
		name string
		run  func(t dbtest.TB) error
	}{
		{"template", func(t dbtest.TB) error {
			if schema.New(t) == nil {
				return fmt.Errorf("no database")
			}
			return nil
		}},
		{"migrate", func(t dbtest.TB) error {
			if srv.New(t, dbkit.WithMigrations(tenTables...)) == nil {
				return fmt.Errorf("no database")
			}
			return nil
		}},
		{"truncate", func(dbtest.TB) error { return rows.Query(ctx).Exec(ctx, truncate) }},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			t := &iterationTB{B: b}
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				err := impl.run(t)
				took = append(took, time.Since(start))
				b.StopTimer()
				t.finish()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			slices.Sort(took)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[len(took)*95/100]), "p95-ms")
		})
	}
}

// BenchmarkStartLocal measures starting a server from the local binaries
// (initdb, postgres, the first connection): run it with -benchtime 5x.
func BenchmarkStartLocal(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		srv, err := dbtest.StartLocal(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := srv.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
