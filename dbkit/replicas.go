package dbkit

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/dbkit-go/database/internal/wal"
	"github.com/dbkit-go/database/tracing"
)

// Why a replica is out of the rotation: the reason of its log record and of
// dbkit.replica.removals.
const (
	outUnreachable = "unreachable" // its check or a read on it failed to reach it
	outNotStandby  = "not_standby" // it is not in recovery: promoted, or not a replica
	outLagBytes    = "lag_bytes"   // its replay is more than MaxReplicaLagBytes behind
	outLagTime     = "lag_time"    // or more than MaxReplicaLag
)

// replica is a read replica's health, measured by the checker.
type replica struct {
	node  *node
	route *route  // a read's route to it
	check *sql.DB // one connection of its own for the checks
	// replay is the highest replay location it reported (a wal.LSN).
	replay atomic.Uint64
	state  syncState
}

// replicaState is what the last check (or a failed read) found.
type replicaState struct {
	in       bool   // in the rotation
	why      string // why not: one of the out* reasons
	cause    string // what made it unreachable, without values
	lagBytes int64  // -1 when unknown
	lag      time.Duration
}

// syncState is a replica's state, and its epoch: how many times a failed
// read took it out, so that a check measured before the last of them does
// not put it back.
type syncState struct {
	mu    sync.Mutex
	s     replicaState
	epoch uint64
}

func (s *syncState) get() replicaState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

func (s *syncState) getEpoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// set stores st.
func (s *syncState) set(st replicaState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = st
}

// setAt stores st, measured from epoch on, unless a failed read came
// since (ok false); readFailed (failed) starts a new epoch.
func (s *syncState) setAt(st replicaState, epoch uint64, failed bool) (old replicaState, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed {
		s.epoch++
	} else if s.epoch != epoch {
		return s.s, false
	}
	old, s.s = s.s, st
	return old, true
}

// askReplay asks the replica, on its pool, how far it has replayed, and
// returns the highest location known (0 when it cannot say).
func (rp *replica) askReplay(ctx context.Context) wal.LSN {
	var l wal.LSN
	if err := rp.node.sql.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&l); err == nil {
		storeMax(&rp.replay, l)
	}
	return wal.LSN(rp.replay.Load())
}

// replicaCheckSQL measures a replica: whether it is a standby, how far it has
// replayed, and how old the last transaction it replayed is, counted as
// zero when it has replayed all it received (an idle primary sends nothing,
// and the age of its last commit says nothing of the replica's lag).
const replicaCheckSQL = `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
	CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
	     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 END`

// checker measures every replica each ReplicaCheckInterval and keeps the
// router's rotation: a replica unreachable, not a standby or lagging past a
// threshold leaves it, logged and counted, and comes back once a check finds
// it healthy.
type checker struct {
	r        *router
	interval time.Duration
	timeout  time.Duration // of one round of checks
	maxBytes int64
	maxLag   time.Duration
	log      *slog.Logger
	removals metric.Int64Counter // nil without metrics

	mu     sync.Mutex // serializes rotation updates
	cancel context.CancelFunc
	done   chan struct{}
}

// checkTimeout bounds one round of checks: a replica that does not answer
// within it is unreachable.
func checkTimeout(interval time.Duration) time.Duration {
	return min(max(interval, 500*time.Millisecond), 5*time.Second)
}

// run checks every interval until stop.
func (c *checker) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.checkAll(ctx)
		}
	}
}

// start reads the primary's WAL page and segment sizes, runs the first
// round of checks, then the rest in the background.
func (c *checker) start(ctx context.Context) {
	sizeCtx, cancel := context.WithTimeout(ctx, c.timeout)
	var block, segment uint64
	if err := c.r.primaryCheck.QueryRowContext(sizeCtx,
		"SELECT current_setting('wal_block_size')::int8, pg_size_bytes(current_setting('wal_segment_size'))").Scan(&block, &segment); err == nil {
		c.r.blockSize, c.r.segmentSize = block, segment
	}
	cancel()
	c.checkAll(ctx)
	bg, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go c.run(bg)
}

// stop ends the checks and waits for the round under way.
func (c *checker) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
}

// checkAll checks every replica at once against the primary's location.
func (c *checker) checkAll(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	epochs := make([]uint64, len(c.r.replicas))
	for i, n := range c.r.replicas {
		epochs[i] = n.replica.state.getEpoch()
	}
	primary, _ := c.r.insertLSN(ctx, c.r.primaryCheck) // 0: the lag in bytes is unknown
	states := make([]replicaState, len(c.r.replicas))
	var wg sync.WaitGroup
	for i, n := range c.r.replicas {
		wg.Go(func() { states[i] = c.measure(ctx, n.replica, primary) })
	}
	wg.Wait()
	if parent.Err() != nil {
		return // stopping: what was measured is not the replicas' doing
	}
	for i, n := range c.r.replicas {
		c.set(ctx, n, states[i], epochs[i], false)
	}
}

// measure checks one replica; primary is 0 when the primary did not say
// where it is (lag in bytes unknown).
func (c *checker) measure(ctx context.Context, rp *replica, primary wal.LSN) replicaState {
	var (
		standby bool
		replay  wal.LSN // 0 (NULL): not in recovery
		lagSecs float64
	)
	query := func() error {
		return rp.check.QueryRowContext(ctx, replicaCheckSQL).Scan(&standby, &replay, &lagSecs)
	}
	err := query()
	if err != nil && ctx.Err() == nil && unavailable(err) {
		err = query() // a connection the replica's restart closed: once more, on a new one
	}
	if err != nil {
		return replicaState{why: outUnreachable, cause: connectCause(err), lagBytes: -1}
	}
	if !standby || replay == 0 {
		return replicaState{why: outNotStandby, lagBytes: -1}
	}
	st := replicaState{in: true, lagBytes: -1, lag: time.Duration(lagSecs * float64(time.Second))}
	storeMax(&rp.replay, replay)
	if primary != 0 {
		st.lagBytes = wal.Diff(primary, replay)
	}
	switch {
	case st.lagBytes > c.maxBytes:
		st.in, st.why = false, outLagBytes
	case st.lag > c.maxLag:
		st.in, st.why = false, outLagTime
	}
	return st
}

// set records n's new state, measured from epoch on (or, when failed, a
// read that failed on it), logs and counts its leaving or rejoining the
// rotation, and updates the rotation.
func (c *checker) set(ctx context.Context, n *node, st replicaState, epoch uint64, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := n.replica.state.setAt(st, epoch, failed)
	if !ok || (old.in == st.in && old.why == st.why) {
		return
	}
	attrs := []slog.Attr{slog.String("replica", n.name), slog.String("addr", n.addr)}
	if st.lagBytes >= 0 {
		attrs = append(attrs, slog.Int64("lag_bytes", st.lagBytes))
	}
	if st.in {
		c.log.LogAttrs(ctx, slog.LevelInfo, "dbkit: read replica in the rotation", append(attrs, slog.Duration("lag", st.lag))...)
	} else {
		attrs = append(attrs, slog.String("reason", st.why), slog.Duration("lag", st.lag))
		if st.cause != "" {
			attrs = append(attrs, slog.String("error", st.cause))
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "dbkit: read replica out of the rotation", attrs...)
		if c.removals != nil {
			c.removals.Add(ctx, 1, metric.WithAttributes(tracing.PoolName.String(n.name), tracing.ReplicaReason.String(st.why)))
		}
	}
	rotation := make([]*node, 0, len(c.r.replicas))
	for _, m := range c.r.replicas {
		if m.replica.state.get().in {
			rotation = append(rotation, m)
		}
	}
	c.r.rotation.Store(&rotation)
}

// outReason says why no replica is in the rotation, for a read's span:
// lag when at least one is out for it.
func (c *checker) outReason() string {
	for _, n := range c.r.replicas {
		if why := n.replica.state.get().why; why == outLagBytes || why == outLagTime {
			return reasonReplicaLag
		}
	}
	return reasonNoReplica
}

// readFailed takes n out of the rotation at once when a read failed on it
// for want of reaching it; the next check that reaches it brings it back.
func (r *router) readFailed(ctx context.Context, n *node, err error) {
	if sqlState(err) == "40001" {
		return // a conflict with recovery: the replica is fine
	}
	r.checker.set(ctx, n, replicaState{why: outUnreachable, cause: connectCause(err), lagBytes: -1}, 0, true)
}

// openReplicas opens a pool per replica of the Config, with a connection
// for its checks, and the router over them. A replica need not be up: it
// joins the rotation when a check finds it healthy.
func (db *DB) openReplicas() error {
	if len(db.cfg.Replicas) == 0 {
		return nil
	}
	primaryCfg, err := db.connConfig(db.cfg)
	if err != nil {
		return err
	}
	// The primary's server attributes are db.primaryAttrs, which follow a
	// failover; its node carries only its name and pool.
	r := &router{db: db, primary: &node{name: db.poolName, sql: db.sql},
		refuse: db.cfg.ReplicaFallback == "refuse", primaryCheck: db.openPool(primaryCfg, 1, 1, nil),
		// PostgreSQL's defaults, until the primary says (checker.start).
		blockSize: 8192, segmentSize: 16 << 20}
	r.rotation.Store(&[]*node{})
	for _, rc := range db.cfg.Replicas {
		cfg := db.cfg.at(rc.Host, rc.Port)
		connCfg, err := db.connConfig(cfg)
		if err != nil {
			closeNodes(r.replicas)
			_ = r.primaryCheck.Close()
			return err
		}
		n := newNode(cfg, rc.Name, rc.Host, rc.Port, db.openPool(connCfg, cfg.MaxOpenConns, cfg.MaxIdleConns, nil))
		n.replica = &replica{node: n, check: db.openPool(connCfg, 1, 1, nil)}
		n.replica.route = &route{db: db, node: n, reason: reasonReplica}
		n.replica.state.set(replicaState{why: outUnreachable, lagBytes: -1})
		r.replicas = append(r.replicas, n)
	}
	r.primaryRoutes()
	r.checker = &checker{r: r, interval: db.cfg.ReplicaCheckInterval, timeout: checkTimeout(db.cfg.ReplicaCheckInterval),
		maxBytes: db.cfg.MaxReplicaLagBytes, maxLag: db.cfg.MaxReplicaLag, log: db.logger}
	db.router = r
	return nil
}

// closeReplicas stops the checks and closes the replicas' pools.
func (db *DB) closeReplicas() {
	if db.router != nil {
		db.router.checker.stop()
		closeNodes(db.router.replicas)
		_ = db.router.primaryCheck.Close()
	}
}

func closeNodes(nodes []*node) {
	for _, n := range nodes {
		_ = n.sql.Close()
		_ = n.replica.check.Close()
	}
}

// replicasInUse is how many replica connections are in use.
func (db *DB) replicasInUse() int {
	if db.router == nil {
		return 0
	}
	n := 0
	for _, m := range db.router.replicas {
		n += m.sql.Stats().InUse
	}
	return n
}
