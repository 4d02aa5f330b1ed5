package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/tracing"
)

// The read-replica tests share one primary with two streaming replicas,
// started at the first need and stopped by TestMain. They do not run in
// parallel: they pause, kill and restart its replicas, and put every
// replica back as it was when they end.
var (
	clusterOnce sync.Once
	cluster     *dbtest.Cluster
	clusterErr  error
)

// replicaCluster returns the shared cluster, starting it at the first call.
func replicaCluster(t testing.TB) *dbtest.Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, clusterErr = dbtest.StartCluster(ctx, 2)
	})
	if clusterErr != nil {
		t.Fatalf("start a primary with two replicas: %v", clusterErr)
	}
	return cluster
}

// stopCluster stops the shared cluster if a test started it.
func stopCluster() {
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cluster.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "stop the replica cluster:", err)
		}
	}
}

// replicaCount is the number of reads or pairs of the figure tests:
// DBKIT_TEST_REPLICA_N, else the 10,000.
func replicaCount(t *testing.T) int {
	if v := os.Getenv("DBKIT_TEST_REPLICA_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DBKIT_TEST_REPLICA_N=%q: want a positive integer", v)
		}
		return n
	}
	return 10000
}

// Tally is the replica tests' model.
type Tally struct {
	dbkit.Model
	Name string `gorm:"not null"`
	N    int    `gorm:"not null"`
}

var tallySchema = dbkit.Migration{ID: "001_tallies", Migrate: func(tx *gorm.DB) error {
	return tx.AutoMigrate(&Tally{})
}}

// portCount counts the SELECT statement spans that end, by server.port.
type portCount struct {
	mu sync.Mutex
	n  map[int64]int
}

func (p *portCount) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *portCount) Shutdown(context.Context) error                  { return nil }
func (p *portCount) ForceFlush(context.Context) error                { return nil }
func (p *portCount) OnEnd(s sdktrace.ReadOnlySpan) {
	if !strings.HasPrefix(s.Name(), "SELECT") {
		return
	}
	for _, a := range s.Attributes() {
		if a.Key == tracing.ServerPort {
			p.mu.Lock()
			p.n[a.Value.AsInt64()]++
			p.mu.Unlock()
		}
	}
}

// take returns the counts so far and starts again from zero.
func (p *portCount) take() map[int64]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.n
	p.n = map[int64]int{}
	return n
}

// replicaEnv is a database on the shared cluster, its DB and repository.
type replicaEnv struct {
	cl    *dbtest.Cluster
	cfg   dbkit.Config
	db    *dbkit.DB
	repo  *dbkit.BaseDatabase[Tally]
	ports *portCount
	log   *logBuffer
}

// newReplicaEnv makes a database for the test on the shared cluster and
// connects to it with its replicas, a short check interval and the
// changes of adjust.
func newReplicaEnv(t *testing.T, adjust func(*dbkit.Config), opts ...dbkit.Option) *replicaEnv {
	t.Helper()
	return newReplicaEnvWith(t, []dbkit.Migration{tallySchema}, adjust, opts...)
}

// newReplicaEnvWith is newReplicaEnv with the database's migrations.
func newReplicaEnvWith(t *testing.T, migrations []dbkit.Migration, adjust func(*dbkit.Config), opts ...dbkit.Option) *replicaEnv {
	t.Helper()
	cl := replicaCluster(t)
	cfg := cl.NewDatabase(t)
	migrateDB(t, cfg, migrations...)
	if err := cl.WaitForReplay(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.ReplicaCheckInterval = 100 * time.Millisecond
	if adjust != nil {
		adjust(&cfg)
	}
	e := &replicaEnv{cl: cl, cfg: cfg, ports: &portCount{n: map[int64]int{}}, log: &logBuffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.ports))
	logger := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.db = openDB(t, cfg, append([]dbkit.Option{dbkit.WithTracerProvider(tp), dbkit.WithLogger(logger)}, opts...)...)
	e.repo = dbkit.NewBaseDatabase[Tally](e.db)
	e.ports.take() // Connect's own
	return e
}

// seed creates n counters and waits until the replicas have them.
func (e *replicaEnv) seed(t *testing.T, n int) []Tally {
	t.Helper()
	rows := make([]Tally, n)
	for i := range rows {
		rows[i] = Tally{Name: "c" + strconv.Itoa(i)}
	}
	if err := e.repo.CreateMany(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	if err := e.cl.WaitForReplay(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rows
}

// pauseAll pauses replay on every replica until the test ends.
func (e *replicaEnv) pauseAll(t *testing.T) {
	t.Helper()
	for _, r := range e.cl.Replicas() {
		e.pause(t, r)
	}
}

func (e *replicaEnv) pause(t *testing.T, r *dbtest.Standby) {
	t.Helper()
	if err := r.PauseReplay(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.ResumeReplay(context.Background()); err != nil {
			t.Errorf("resume replay on %s: %v", r.Name(), err)
		}
	})
}

// waitFor polls cond every 10 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestReplicaReadsSpread: with both replicas healthy and no write before
// them, reads go to the replicas, each at least 30 % of them, and none to
// the primary.
func TestReplicaReadsSpread(t *testing.T) {
	e := newReplicaEnv(t, nil)
	rows := e.seed(t, 50)
	n := replicaCount(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := e.repo.Get(ctx, rows[i%len(rows)].ID); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d reads failed", failed.Load(), n)
	}
	got := e.ports.take()
	t.Logf("%d reads by server port: %v (primary %d)", n, got, e.cfg.Port)
	if got[int64(e.cfg.Port)] != 0 {
		t.Errorf("%d reads went to the primary, want 0", got[int64(e.cfg.Port)])
	}
	for _, r := range e.cl.Replicas() {
		if share := float64(got[int64(r.Port())]) / float64(n); share < 0.30 {
			t.Errorf("replica %s served %.1f %% of the reads, want at least 30 %%", r.Name(), 100*share)
		}
	}
}

// TestReadYourWrites: with replay paused on both replicas, every read that
// follows a write of its Session returns the written value, in the same ctx
// and through the token in another DB (the user's next request on another
// instance); a read that follows no write still goes to a replica.
func TestReadYourWrites(t *testing.T) {
	e := newReplicaEnv(t, nil)
	other := openDB(t, e.cfg) // another instance of the service
	otherRepo := dbkit.NewBaseDatabase[Tally](other)
	rows := e.seed(t, 16)
	e.pauseAll(t)
	n := replicaCount(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var stale, failed atomic.Int64
	var firstErr atomic.Value
	for w := range len(rows) {
		wg.Go(func() {
			row := rows[w]
			sess, _ := dbkit.NewSession("")
			for i := w; i < n; i += len(rows) {
				row.N = i + 1
				sctx := dbkit.WithSession(ctx, sess)
				if err := e.repo.Update(sctx, &row); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				var got Tally
				var err error
				if i%2 == 0 {
					got, err = e.repo.Get(sctx, row.ID)
				} else {
					// The next request, on the other instance, with the token.
					token, terr := sess.Token(sctx)
					next, perr := dbkit.NewSession(token)
					if err = errors.Join(terr, perr); err == nil {
						got, err = otherRepo.Get(dbkit.WithSession(ctx, next), row.ID)
					}
				}
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				case got.N != row.N:
					stale.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatalf("%d of %d pairs failed, the first: %v", failed.Load(), n, err)
	}
	if stale.Load() > 0 {
		t.Fatalf("%d of %d reads after a write returned the value before it", stale.Load(), n)
	}
	// Reads of no Session, and of a Session that wrote nothing, still go
	// to the replicas, which have not replayed the writes.
	e.ports.take()
	fresh, _ := dbkit.NewSession("")
	for _, c := range []context.Context{ctx, dbkit.WithSession(ctx, fresh)} {
		got, err := e.repo.Get(c, rows[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.N != 0 {
			t.Errorf("a read with no write before it saw N=%d: it did not go to a paused replica", got.N)
		}
	}
	if got := e.ports.take(); got[int64(e.cfg.Port)] != 0 {
		t.Errorf("reads with no write before them went to the primary: %v", got)
	}
}

// TestSessionToken: a token names a WAL location; one that does not parse
// is refused with an empty Session that works; one beyond the primary's
// location (forged) is replaced by the primary's.
func TestSessionToken(t *testing.T) {
	e := newReplicaEnv(t, nil)
	rows := e.seed(t, 1)
	ctx := context.Background()
	sess, err := dbkit.NewSession("")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := sess.Token(ctx); err != nil || tok != "" {
		t.Fatalf("a Session that wrote nothing: token %q, %v; want none", tok, err)
	}
	rows[0].N = 7
	if err := e.repo.Update(dbkit.WithSession(ctx, sess), &rows[0]); err != nil {
		t.Fatal(err)
	}
	tok, err := sess.Token(ctx)
	if err != nil || !strings.HasPrefix(tok, "wal1:") {
		t.Fatalf("token after a write: %q, %v", tok, err)
	}
	for _, bad := range []string{"x", "wal1:", "wal1:1/2/3", "wal2:0/1", strings.Repeat("wal1:0/1", 20)} {
		s, err := dbkit.NewSession(bad)
		if !errors.Is(err, dbkit.ErrInvalid) || s == nil {
			t.Errorf("NewSession(%q) = %v, %v; want an empty Session and ErrInvalid", bad, s, err)
		}
	}
	e.pauseAll(t)
	forged, err := dbkit.NewSession("wal1:FFFFFFFF/FFFFFFFF")
	if err != nil {
		t.Fatal(err)
	}
	// The first read after it goes to the primary (the replicas have not
	// reached the primary's location, which replaced the forged one)...
	e.ports.take()
	if _, err := e.repo.Get(dbkit.WithSession(ctx, forged), rows[0].ID); err != nil {
		t.Fatal(err)
	}
	if tok, err := forged.Token(ctx); err != nil || tok == "wal1:FFFFFFFF/FFFFFFFF" {
		t.Errorf("a forged token was kept: %q, %v", tok, err)
	}
	// ...and once they replay, reads go back to them.
	for _, r := range e.cl.Replicas() {
		if err := r.ResumeReplay(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.cl.WaitForReplay(ctx); err != nil {
		t.Fatal(err)
	}
	e.ports.take()
	if _, err := e.repo.Get(dbkit.WithSession(ctx, forged), rows[0].ID); err != nil {
		t.Fatal(err)
	}
	if got := e.ports.take(); got[int64(e.cfg.Port)] != 0 {
		t.Errorf("after the replicas caught up, a forged token's reads still go to the primary: %v", got)
	}
}

// TestReplicaRouting: reads in a transaction, under OnPrimary, and writes
// go to the primary; the repository span says where a read went and why.
func TestReplicaRouting(t *testing.T) {
	e := newReplicaEnv(t, nil)
	rows := e.seed(t, 1)
	ctx := context.Background()
	primary := int64(e.cfg.Port)
	check := func(what string, wantPrimary bool, f func() error) {
		t.Helper()
		e.ports.take()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := e.ports.take()
		total := 0
		for _, n := range got {
			total += n
		}
		if total == 0 {
			t.Fatalf("%s: no SELECT span", what)
		}
		if onPrimary := got[primary] == total; onPrimary != wantPrimary {
			t.Errorf("%s: reads by port %v (primary %d), want on the primary: %v", what, got, primary, wantPrimary)
		}
	}
	check("Get", false, func() error { _, err := e.repo.Get(ctx, rows[0].ID); return err })
	check("Find", false, func() error { _, err := e.repo.Find(ctx); return err })
	check("FindOne", false, func() error { _, err := e.repo.FindOne(ctx, dbkit.Eq("name", "c0")); return err })
	check("FindPage", false, func() error {
		_, err := e.repo.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 10, WithTotal: true})
		return err
	})
	check("FindCursor", false, func() error { _, err := e.repo.FindCursor(ctx, dbkit.CursorRequest{Size: 10}); return err })
	check("Count", false, func() error { _, err := e.repo.Count(ctx); return err })
	check("Exists", false, func() error { _, err := e.repo.Exists(ctx); return err })
	check("OnPrimary", true, func() error { _, err := e.repo.Get(dbkit.OnPrimary(ctx), rows[0].ID); return err })
	check("in a transaction", true, func() error {
		return e.db.InTx(ctx, func(ctx context.Context) error {
			_, err := e.repo.Get(ctx, rows[0].ID, dbkit.ForUpdate())
			return err
		})
	})
	check("the escape hatch", true, func() error {
		var n int64
		return e.db.Gorm(ctx).Model(&Tally{}).Count(&n).Error
	})
}

// TestReplicaSpans: statement spans name the server a read ran on, the
// repository span (WithRepositorySpans) the pool and the reason, and each
// pool has its metrics.
func TestReplicaSpans(t *testing.T) {
	cl := replicaCluster(t)
	cfg := cl.NewDatabase(t)
	migrateDB(t, cfg, tallySchema)
	cfg.ReplicaCheckInterval = 100 * time.Millisecond
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	db := openDB(t, cfg, dbkit.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))),
		dbkit.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))), dbkit.WithRepositorySpans())
	repo := dbkit.NewBaseDatabase[Tally](db)
	ctx := context.Background()
	row := Tally{Name: "a"}
	if err := repo.Create(ctx, &row); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitForReplay(ctx); err != nil {
		t.Fatal(err)
	}
	replicaPorts := map[string]bool{}
	for _, r := range cl.Replicas() {
		replicaPorts[strconv.Itoa(r.Port())] = true
	}
	// lastRead returns the last read's repository span and its statement's.
	lastRead := func() (repoSpan, stmt sdktrace.ReadOnlySpan) {
		t.Helper()
		ended := spans.Ended()
		for i := len(ended) - 1; i >= 0 && (repoSpan == nil || stmt == nil); i-- {
			s := ended[i]
			switch {
			case repoSpan == nil && spanAttr(s.Attributes(), tracing.ReadReason) != "":
				repoSpan = s
			case stmt == nil && s.Name() == "SELECT tallies":
				stmt = s
			}
		}
		if repoSpan == nil || stmt == nil || stmt.Parent().SpanID() != repoSpan.SpanContext().SpanID() {
			t.Fatalf("no read with its statement among %v", names(ended))
		}
		return repoSpan, stmt
	}
	if _, err := repo.Get(ctx, row.ID); err != nil {
		t.Fatal(err)
	}
	rs, st := lastRead()
	if port := spanAttr(st.Attributes(), tracing.ServerPort); !replicaPorts[port] {
		t.Errorf("a read's statement span has server.port %s, want a replica's %v", port, replicaPorts)
	}
	if node, reason := spanAttr(rs.Attributes(), tracing.ReadNode), spanAttr(rs.Attributes(), tracing.ReadReason); !strings.HasPrefix(node, "replica") || reason != "replica" {
		t.Errorf("repository span: dbkit.read.node %q, dbkit.read.reason %q; want a replica, \"replica\"", node, reason)
	}
	for _, r := range cl.Replicas() {
		if err := r.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.ResumeReplay(context.Background()) })
	}
	sess, _ := dbkit.NewSession("")
	sctx := dbkit.WithSession(ctx, sess)
	row.N = 1
	if err := repo.Update(sctx, &row); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Get(sctx, row.ID); err != nil {
		t.Fatal(err)
	}
	rs, st = lastRead()
	if port := spanAttr(st.Attributes(), tracing.ServerPort); port != strconv.Itoa(cfg.Port) {
		t.Errorf("a read after a write not replayed ran on port %s, want the primary's %d", port, cfg.Port)
	}
	if reason := spanAttr(rs.Attributes(), tracing.ReadReason); reason != "read_your_writes" {
		t.Errorf("dbkit.read.reason = %q, want read_your_writes", reason)
	}
	// Pool metrics for each server, and the replicas' health.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	pools := map[string]bool{}
	inRotation := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case tracing.MetricConnectionMax:
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					name, _ := dp.Attributes.Value(tracing.PoolName)
					pools[name.AsString()] = true
				}
			case tracing.MetricReplicaInRotation:
				for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					name, _ := dp.Attributes.Value(tracing.PoolName)
					inRotation[name.AsString()] = dp.Value
				}
			}
		}
	}
	if len(pools) != 3 {
		t.Errorf("pools with metrics: %v, want the primary's and two replicas'", pools)
	}
	for _, r := range cl.Replicas() {
		if inRotation[r.Name()] != 1 {
			t.Errorf("%s = %v, want %s at 1", tracing.MetricReplicaInRotation, inRotation, r.Name())
		}
	}
}

// TestReplicaKilled: a replica killed under 32 readers fails at most the
// reads in flight at that instant (a read that fails on it runs again on
// another server), leaves the rotation at once (no read goes to it after
// the kill's failures, within one check interval at most), and comes back
// within one interval of its restart.
func TestReplicaKilled(t *testing.T) {
	const interval = 200 * time.Millisecond
	e := newReplicaEnv(t, func(c *dbkit.Config) { c.ReplicaCheckInterval = interval })
	rows := e.seed(t, 50)
	victim := e.cl.Replicas()[0]
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var inFlight, failed, done atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				inFlight.Add(1)
				_, err := e.repo.Get(ctx, rows[i%len(rows)].ID)
				inFlight.Add(-1)
				if err != nil && ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				done.Add(1)
			}
		})
	}
	waitFor(t, 10*time.Second, "reads under way", func() bool { return done.Load() > 500 })
	atKill := inFlight.Load()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	port := int64(victim.Port())
	// Out of the rotation: a while later, no read goes to it.
	time.Sleep(interval + 100*time.Millisecond)
	e.ports.take()
	time.Sleep(interval)
	if got := e.ports.take(); got[port] != 0 {
		t.Errorf("%d reads went to the killed replica more than %v after the kill", got[port], 2*interval+100*time.Millisecond)
	}
	if !strings.Contains(e.log.String(), "out of the rotation") {
		t.Errorf("no log record of the replica leaving the rotation; log:\n%s", e.log.String())
	}
	t.Logf("killed %s with %d reads in flight; %d failed; %v", victim.Name(), atKill, failed.Load(), time.Since(killed))
	if err := victim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.ports.take()
	back := waitFor(t, 10*time.Second, "reads on the restarted replica", func() bool {
		e.ports.mu.Lock()
		defer e.ports.mu.Unlock()
		return e.ports.n[port] > 0
	})
	stop()
	wg.Wait()
	t.Logf("back in the rotation %v after its restart (interval %v)", back, interval)
	// One interval, plus a round's timeout for the check under way when it
	// restarted, plus the reads' own latency: the promise with a margin.
	if back > interval+checkMargin {
		t.Errorf("the restarted replica served reads %v after its restart, want within %v + %v", back, interval, checkMargin)
	}
	if f := failed.Load(); f > atKill {
		t.Errorf("%d reads failed, more than the %d in flight at the kill; the first: %v", f, atKill, firstErr.Load())
	}
}

// logLine reports whether a line of log holds every one of parts.
func logLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// checkMargin is the slack of the timed promises: a loaded 2-core machine
// delays a goroutine's tick and a query by this much.
const checkMargin = 500 * time.Millisecond

// TestReplicaLag: a replica whose replay falls behind by more than
// MaxReplicaLagBytes leaves the rotation, and comes back once it catches
// up.
func TestReplicaLag(t *testing.T) {
	e := newReplicaEnv(t, func(c *dbkit.Config) { c.MaxReplicaLagBytes = 256 << 10 })
	rows := e.seed(t, 1)
	lagging := e.cl.Replicas()[1]
	e.pause(t, lagging)
	ctx := context.Background()
	// About 1 MiB of WAL, four times the threshold.
	if _, err := e.db.Exec(ctx, "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the lagging replica out of the rotation", func() bool {
		// The lagging one: the other may pass the threshold for a moment
		// while it replays the filler.
		return logLine(e.log.String(), "out of the rotation", "replica="+lagging.Name()+" ", "reason=lag_bytes")
	})
	// The other has the filler, and serves reads.
	if err := e.cl.WaitForReplay(ctx); err != nil {
		t.Fatal(err)
	}
	other := int64(e.cl.Replicas()[0].Port())
	waitFor(t, 5*time.Second, "the other replica in the rotation", func() bool {
		e.ports.take()
		if _, err := e.repo.Get(ctx, rows[0].ID); err != nil {
			t.Fatal(err)
		}
		return e.ports.take()[other] == 1
	})
	for range 20 {
		if _, err := e.repo.Get(ctx, rows[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.ports.take(); got[int64(lagging.Port())] != 0 || got[int64(e.cl.Replicas()[0].Port())] != 20 {
		t.Errorf("reads by port with %s lagging: %v; want all on the other replica", lagging.Name(), got)
	}
	if err := lagging.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the replica back once caught up", func() bool {
		for range 4 {
			if _, err := e.repo.Get(ctx, rows[0].ID); err != nil {
				t.Fatal(err)
			}
		}
		e.ports.mu.Lock()
		defer e.ports.mu.Unlock()
		return e.ports.n[int64(lagging.Port())] > 0
	})
}

// TestReplicaFallback: with every replica out of the rotation, reads go to
// the primary, or fail with ErrUnavailable under ReplicaFallback "refuse".
func TestReplicaFallback(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			e := newReplicaEnv(t, func(c *dbkit.Config) {
				c.MaxReplicaLagBytes = 64 << 10
				if refuse {
					c.ReplicaFallback = "refuse"
				}
			})
			rows := e.seed(t, 1)
			e.pauseAll(t)
			ctx := context.Background()
			if _, err := e.db.Exec(ctx, "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 2000) g"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "both replicas out of the rotation", func() bool {
				return strings.Count(e.log.String(), "reason=lag_bytes") >= 2
			})
			e.ports.take()
			_, err := e.repo.Get(ctx, rows[0].ID)
			switch {
			case refuse && !errors.Is(err, dbkit.ErrUnavailable):
				t.Errorf("Get with no replica in the rotation and fallback refuse: %v, want ErrUnavailable", err)
			case !refuse && err != nil:
				t.Errorf("Get with no replica in the rotation: %v", err)
			case !refuse && e.ports.take()[int64(e.cfg.Port)] != 1:
				t.Errorf("the read did not go to the primary")
			}
		})
	}
}

// Watched writes a Sighting each time it is read: an AfterFind hook that
// writes.
type Watched struct {
	dbkit.Model
	Name string
}

type Sighting struct {
	dbkit.Model
	WatchedID string
	Seen      time.Time `gorm:"not null;default:now()"` // the server's: an INSERT ... RETURNING, a query
}

func (w *Watched) AfterFind(tx *gorm.DB) error {
	return tx.Session(&gorm.Session{NewDB: true}).Create(&Sighting{WatchedID: w.ID.String()}).Error
}

// TestReplicaReadHookWrites: what a read's AfterFind hook writes goes to
// the primary, not to the replica the read ran on (where it would fail,
// read-only), and counts as a write of the ctx's Session.
func TestReplicaReadHookWrites(t *testing.T) {
	e := newReplicaEnv(t, nil)
	ctx := context.Background()
	if err := e.db.Gorm(ctx).AutoMigrate(&Watched{}, &Sighting{}); err != nil {
		t.Fatal(err)
	}
	watched := dbkit.NewBaseDatabase[Watched](e.db)
	w := Watched{Name: "w"}
	if err := watched.Create(ctx, &w); err != nil {
		t.Fatal(err)
	}
	if err := e.cl.WaitForReplay(ctx); err != nil {
		t.Fatal(err)
	}
	e.ports.take()
	sess, _ := dbkit.NewSession("")
	if _, err := watched.Get(dbkit.WithSession(ctx, sess), w.ID); err != nil {
		t.Fatalf("Get with an AfterFind hook that writes: %v", err)
	}
	if tok, err := sess.Token(ctx); err != nil || tok == "" {
		t.Errorf("the hook's write did not mark the read's Session: token %q, %v", tok, err)
	}
	if got := e.ports.take(); got[int64(e.cfg.Port)] != 0 {
		t.Errorf("the read itself went to the primary: %v", got)
	}
	sightings := dbkit.NewBaseDatabase[Sighting](e.db)
	if n, err := sightings.Count(dbkit.OnPrimary(ctx)); err != nil || n != 1 {
		t.Errorf("sightings on the primary: %d, %v; want 1", n, err)
	}
}

// spanAttr returns the value of key among attrs, "" when absent.
func spanAttr(attrs []attribute.KeyValue, key attribute.Key) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value.String()
		}
	}
	return ""
}
