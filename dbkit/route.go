package dbkit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/dbkit-go/database/internal/wal"
	"github.com/dbkit-go/database/tracing"
)

// Why a read went where it went: the dbkit.read.reason of its repository
// span (docs/scaling.md).
const (
	// A replica in the rotation: the usual case.
	reasonReplica = "replica"
	// The caller's Session wrote something no replica has replayed yet.
	reasonReadYourWrites = "read_your_writes"
	// Every replica is out of the rotation, at least one for lag.
	reasonReplicaLag = "replica_lag"
	// Every replica is out of the rotation: unreachable, or not a standby.
	reasonNoReplica = "no_healthy_replica"
	// The caller asked for the primary (OnPrimary).
	reasonForced = "on_primary"
)

// node is a server the DB sends statements to: the primary or a read
// replica, with its pool.
type node struct {
	name    string // its pool's name, for metrics and logs
	addr    string // host:port; a replica's only (the primary's follows failovers: DB.primaryAttrs)
	sql     *sql.DB
	attrs   []attribute.KeyValue // db.system.name, db.namespace, server.address, server.port; a replica's only
	replica *replica             // nil for the primary
}

// nodeAttrs are the attributes every statement on a server at addr of
// database carries.
func nodeAttrs(database, host string, port int) []attribute.KeyValue {
	return []attribute.KeyValue{
		tracing.PostgreSQL,
		tracing.DBNamespace.String(database),
		tracing.ServerAddress.String(host),
		tracing.ServerPort.Int(port),
	}
}

// route is where a repository read runs and why: what the read's ctx
// carries to the pool (under routeKey) and to the statement's telemetry.
type route struct {
	db     *DB
	node   *node
	reason string
}

type routeKey struct{}

// routeFrom returns the route db's read in ctx takes, or nil.
func (db *DB) routeFrom(ctx context.Context) *route {
	if r, ok := ctx.Value(routeKey{}).(*route); ok && r != nil && r.db == db {
		return r
	}
	return nil
}

// onPrimaryKey marks a ctx whose reads must go to the primary.
type onPrimaryKey struct{}

// OnPrimary returns a ctx whose repository reads go to the primary, never
// to a read replica ([Config.Replicas]): for a read that must see
// everything committed anywhere, such as a check before a write that is
// not in a transaction. Reads in a transaction go to the primary anyway.
// Without replicas it changes nothing.
func OnPrimary(ctx context.Context) context.Context {
	return context.WithValue(ctx, onPrimaryKey{}, true)
}

func onPrimary(ctx context.Context) bool {
	v, _ := ctx.Value(onPrimaryKey{}).(bool)
	return v
}

// read runs fn, the statements of one repository read, on the server the
// router picks for ctx (see [Config.Replicas]): fn gets a ctx that takes its
// queries there. When the replica it ran on fails under it (died,
// restarted, or cancelled the query for a conflict with recovery), fn runs
// once more, on another replica or the primary. span, the read's repository
// span, records where the read ran and why.
func (db *DB) read(ctx context.Context, span trace.Span, fn func(ctx context.Context) error) error {
	r := db.router
	if db.txStateFrom(ctx) != nil {
		return fn(ctx) // the transaction's connection
	}
	if r == nil {
		err := fn(ctx)
		if retryOnce(ctx, err) {
			err = fn(ctx) // on another connection: the one that failed is gone
		}
		return err
	}
	rt, err := r.route(ctx, nil)
	if err != nil {
		return err
	}
	err = fn(context.WithValue(ctx, routeKey{}, rt))
	if err != nil && rt.node.replica != nil && ctx.Err() == nil && retryElsewhere(err) {
		failed := rt.node
		r.readFailed(ctx, failed, err)
		// Run again, elsewhere. (A read's AfterFind hooks that ran before
		// the failure run again too: docs/scaling.md says so.)
		if next, rerr := r.route(ctx, failed); rerr != nil {
			err = fmt.Errorf("%w (and after it, on retrying elsewhere: %w)", err, rerr)
		} else {
			rt, err = next, fn(context.WithValue(ctx, routeKey{}, next))
		}
	} else if rt.node.replica == nil && retryOnce(ctx, err) {
		err = fn(context.WithValue(ctx, routeKey{}, rt))
	}
	if span.IsRecording() {
		span.SetAttributes(tracing.ReadNode.String(rt.node.name), tracing.ReadReason.String(rt.reason))
	}
	return err
}

// retryOnce reports whether a read that failed with err on the primary,
// outside a transaction, runs once more: the server was out of reach or
// refusing work (ErrUnavailable: a connection the server closed, a
// failover under way), and ctx has not ended. Reads are idempotent; a
// connection lost takes its pool's siblings with it (failover.go), so the
// second run gets a fresh one.
func retryOnce(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && errors.Is(err, ErrUnavailable)
}

// retryElsewhere reports the errors of a read that another server may
// serve: the replica was out of reach (ErrUnavailable: fromDriver marks
// what unavailable reports, but not what Close cut, which is ErrClosed),
// or cancelled the query because replay needed what it read (SQLSTATE
// 40001 on a standby, "conflict with recovery"). A read is idempotent:
// running it again is safe.
func retryElsewhere(err error) bool {
	return errors.Is(err, ErrUnavailable) || sqlState(err) == "40001"
}

// router picks the server of each repository read: a replica in the
// rotation, round robin, unless read-your-writes, the caller or the lack of
// a healthy replica says the primary.
type router struct {
	db       *DB
	primary  *node
	replicas []*node
	// rotation is the replicas in the rotation now, in Config order.
	rotation atomic.Pointer[[]*node]
	next     atomic.Uint64 // round robin
	// primaryLSN is the primary's latest WAL insert location known.
	primaryLSN atomic.Uint64
	refuse     bool // ReplicaFallback "refuse"
	checker    *checker
	// toPrimary are the routes to the primary, by reason.
	toPrimary map[string]*route
	// primaryCheck is the checks' connection to the primary: neither the
	// application's pool, which may be saturated, nor Health's.
	primaryCheck *sql.DB
	// The primary's wal_block_size and wal_segment_size, read at Connect:
	// a WAL location is moved back off a page header with them.
	blockSize, segmentSize uint64
}

// route picks the server of a read in ctx, never skip (a replica that just
// failed it). The routes it returns are made once and shared.
func (r *router) route(ctx context.Context, skip *node) (*route, error) {
	if onPrimary(ctx) {
		return r.toPrimary[reasonForced], nil
	}
	rotation := *r.rotation.Load()
	if skip != nil {
		rotation = without(rotation, skip)
	}
	if len(rotation) == 0 {
		reason := r.checker.outReason()
		if r.refuse {
			return nil, fmt.Errorf("dbkit: no read replica is in the rotation (%s) and ReplicaFallback is \"refuse\": %w", reason, ErrUnavailable)
		}
		return r.toPrimary[reason], nil
	}
	start := int(r.next.Add(1) % uint64(len(rotation)))
	var need wal.LSN
	if s := sessionFrom(ctx); s != nil {
		var err error
		if need, err = s.position(ctx, r); err != nil {
			return nil, err
		}
	}
	if need == 0 {
		return rotation[start].replica.route, nil
	}
	// A replica known to have replayed the caller's writes, else the next
	// one asked: reading its replay location costs a round trip, the same
	// as reading on the primary, so only one is asked.
	for i := range rotation {
		if n := rotation[(start+i)%len(rotation)]; wal.LSN(n.replica.replay.Load()) >= need {
			return n.replica.route, nil
		}
	}
	if n := rotation[start]; n.replica.askReplay(ctx) >= need {
		return n.replica.route, nil
	}
	return r.toPrimary[reasonReadYourWrites], nil
}

// primaryRoutes makes the routes to the primary, one per reason.
func (r *router) primaryRoutes() {
	r.toPrimary = map[string]*route{}
	for _, reason := range []string{reasonForced, reasonReadYourWrites, reasonReplicaLag, reasonNoReplica} {
		r.toPrimary[reason] = &route{db: r.db, node: r.primary, reason: reason}
	}
}

// without returns nodes without n.
func without(nodes []*node, n *node) []*node {
	out := make([]*node, 0, len(nodes))
	for _, m := range nodes {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

// currentLSN asks the primary for its WAL insert location: past the commit
// record of every transaction committed before it is asked (pg_current_wal_lsn,
// the location written out, can be short of it under synchronous_commit
// off). It must be asked after the commit, in a statement of its own.
func (r *router) currentLSN(ctx context.Context) (wal.LSN, error) {
	// On dbkit's pool (not the *sql.DB under it): ErrClosed once Close
	// began, and Close waits for it.
	lsn, err := r.insertLSN(ctx, r.db.pool)
	if err != nil {
		return 0, fmt.Errorf("dbkit: read the primary's WAL location: %w", r.db.fromDriver(ctx, err))
	}
	// At a page's start, the insert location is past the page's header,
	// which no standby reports having replayed.
	lsn = wal.AtBoundary(lsn, r.blockSize, r.segmentSize)
	return lsn, nil
}

// insertLSN asks the primary, through q, for its WAL insert location, and
// keeps the highest seen in r.primaryLSN.
func (r *router) insertLSN(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (wal.LSN, error) {
	var lsn wal.LSN
	if err := q.QueryRowContext(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		return 0, err
	}
	storeMax(&r.primaryLSN, lsn)
	return lsn, nil
}

// storeMax raises v to l when l is higher.
func storeMax(v *atomic.Uint64, l wal.LSN) {
	for {
		old := v.Load()
		if uint64(l) <= old || v.CompareAndSwap(old, uint64(l)) {
			return
		}
	}
}

// newNode returns the node of the server at host:port of cfg's database,
// on pool sqlDB.
func newNode(cfg Config, name, host string, port int, sqlDB *sql.DB) *node {
	if name == "" {
		name = net.JoinHostPort(host, strconv.Itoa(port)) + "/" + cfg.Database
	}
	return &node{name: name, addr: net.JoinHostPort(host, strconv.Itoa(port)), sql: sqlDB,
		attrs: nodeAttrs(cfg.Database, host, port)}
}
