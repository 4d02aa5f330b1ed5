package dbkit

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// failover is what the primary's pool knows of the server it connects to,
// so that a failover (docs/ha.md) costs one failed call per connection at
// most, not one per pooled connection:
//
//   - Connections belong to a generation, the one current when they were
//     dialed. The generation ends on the signs of a primary that went away:
//     at once when a read-only server refuses a write (25006, while
//     TargetSessionAttrs asks for a primary); on a second connection lost
//     within lossWindow (a server shutting down, 57P01-57P03, or a
//     connection reset or cut), since one alone may be a single backend's
//     end. Every pooled connection of an ended generation is discarded
//     before its next use (database/sql's ResetSession) instead of failing
//     a call of its own, and the pool connects again through Host and
//     Fallbacks.
//   - A new connection that reaches another server than the last one did is
//     a primary change: logged, counted (dbkit.primary.changes), and its
//     generation ends the previous one.
type failover struct {
	db       *DB
	wantRW   bool          // TargetSessionAttrs read-write or primary: 25006 means a demoted primary
	gen      atomic.Uint64 // the current generation
	mu       sync.Mutex
	server   string // host:port the newest connection reached
	changes  metric.Int64Counter
	hostname map[string]string // configured port -> host, to name a server by its address
	hosts    []Endpoint        // Host and Fallbacks
	resolved sync.Map          // host name -> []string: its addresses, looked up once
	// demotions are the 25006 errors of a read-only server (not of a
	// READ ONLY transaction), which fromDriver marks ErrUnavailable.
	demotions sync.Map // *pgconn.PgError -> struct{}
	nDemoted  atomic.Int64
	lastLoss  atomic.Int64 // Unix ns of the last connection lost
}

func newFailover(db *DB) *failover {
	f := &failover{db: db, wantRW: db.cfg.TargetSessionAttrs == "read-write" || db.cfg.TargetSessionAttrs == "primary",
		hostname: map[string]string{}}
	f.gen.Store(1)
	f.hosts = append([]Endpoint{{Host: db.cfg.Host, Port: db.cfg.Port}}, db.cfg.Fallbacks...)
	for _, e := range f.hosts {
		port := strconv.Itoa(e.Port)
		if _, dup := f.hostname[port]; dup {
			f.hostname[port] = "" // several hosts on one port: name them by address
			continue
		}
		f.hostname[port] = e.Host
	}
	return f
}

// onPgError is pgconn's OnPgError for the primary's connections: false
// closes the connection. pgx's default closes on FATAL; a demoted primary's
// 25006 closes it too, when a primary is what the pool wants, and both end
// the generation.
func (f *failover) onPgError(pc *pgconn.PgConn, pgErr *pgconn.PgError) bool {
	fatal := strings.EqualFold(pgErr.Severity, "FATAL") || strings.EqualFold(pgErr.Severity, "PANIC")
	switch {
	case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03":
		f.loss("server shutting down (SQLSTATE " + pgErr.Code + ")")
	case pgErr.Code == "25006" && f.wantRW && (readOnlyServer(pc) || pc.TxStatus() == 'I'):
		if f.nDemoted.Add(1) > 1024 { // bounded: errors nobody translated
			f.demotions.Clear()
			f.nDemoted.Store(0)
		}
		f.demotions.Store(pgErr, struct{}{})
		f.end("read-only server: no longer the primary (SQLSTATE 25006)")
		return false
	}
	return !fatal
}

// readOnlyServer reports whether the server of pc is read-only as a
// whole: a standby, or default_transaction_read_only on (what a demoted
// primary that still answers looks like). PostgreSQL 14 and later report
// both to the client as they change, at the end of the statement that saw
// the change (which is why onPgError also takes a 25006 outside any
// transaction, TxStatus 'I', for a read-only server: only the server's or
// the session's default makes a single statement read-only). A READ ONLY
// transaction changes neither.
func readOnlyServer(pc *pgconn.PgConn) bool {
	return pc.ParameterStatus("in_hot_standby") == "on" || pc.ParameterStatus("default_transaction_read_only") == "on"
}

// demoted reports, once, whether err is the 25006 of a read-only server
// onPgError saw.
func (f *failover) demoted(err error) bool {
	var pgErr *pgconn.PgError
	if f == nil || !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		return false
	}
	_, ok := f.demotions.LoadAndDelete(pgErr)
	return ok
}

// end ends the current generation: pooled connections made before are
// discarded before their next use.
func (f *failover) end(why string) {
	old := f.gen.Add(1) - 1
	f.db.logger.LogAttrs(context.Background(), slog.LevelDebug, "dbkit: discarding the pool's connections",
		slog.String("reason", why), slog.Uint64("generation", old))
}

// connected records a new connection of the primary's pool: its
// generation, and a primary change when it reached another server.
func (f *failover) connected(ctx context.Context, c *pgx.Conn) {
	tc, _ := c.PgConn().Conn().(*trackedConn)
	addr := c.PgConn().Conn().RemoteAddr().String()
	server, named := f.name(ctx, addr)
	f.mu.Lock()
	prev := f.server
	f.server = server
	if prev != server && named {
		f.db.setPrimaryServer(server)
	}
	f.mu.Unlock()
	if prev == "" || prev == server {
		return
	}
	f.end("the primary changed")
	if tc != nil {
		tc.gen.Store(f.gen.Load())
	}
	f.db.logger.LogAttrs(ctx, slog.LevelWarn, "dbkit: the primary changed",
		slog.String("from", prev), slog.String("to", server))
	if f.changes != nil {
		f.changes.Add(ctx, 1, metric.WithAttributes(tracing.PoolName.String(f.db.poolName), tracing.ServerAddress.String(server)))
	}
}

// setPrimaryServer makes server (host:port) the server.address and
// server.port of the statements on the primary from now on. The shapes
// built with the previous server are dropped.
func (db *DB) setPrimaryServer(server string) {
	host, port, err := net.SplitHostPort(server)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		return
	}
	cur := db.serverAttrs()
	attrs := nodeAttrs(db.cfg.Database, host, n)
	if slices.Equal(cur, attrs) {
		return
	}
	db.primaryAttrs.Store(&attrs)
	db.shapes.Clear()
	db.durationOpts.Clear()
	db.nShapes.Store(0)
}

// name names the server at addr (ip:port) by the configured host it is:
// the only one with its port, else the one that is that IP or resolves to
// it. named is false when none is (addr itself is returned).
func (f *failover) name(ctx context.Context, addr string) (name string, named bool) {
	ip, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, false // a Unix socket: nothing to name
	}
	if host := f.hostname[port]; host != "" {
		return net.JoinHostPort(host, port), true
	}
	for _, e := range f.hosts {
		if strconv.Itoa(e.Port) == port && (e.Host == ip || slices.Contains(f.addresses(ctx, e.Host), ip)) {
			return net.JoinHostPort(e.Host, port), true
		}
	}
	return addr, false
}

// addresses returns host's addresses, looked up once (within half a
// second; none when the lookup fails).
func (f *failover) addresses(ctx context.Context, host string) []string {
	if v, ok := f.resolved.Load(host); ok {
		return v.([]string)
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil
	}
	f.resolved.Store(host, addrs)
	return addrs
}

// rawSQLKey marks, in a statement's settings, SQL given to GORM as text
// (Raw, Exec) rather than built by it: dbkit cannot tell whether it writes.
type rawSQLKey struct{}

// markRaw marks a failed query of SQL given as text (see queryRows), for
// writeInDoubt; one that succeeded needs no mark.
func markRaw(tx *gorm.DB) {
	if tx.Error != nil {
		tx.Statement.Settings.Store(rawSQLKey{}, true)
	}
}

// writeInDoubt reports a statement that may have written, run outside a
// transaction (it commits by itself), whose connection was lost after it
// was sent and before the server answered: it may have been applied.
// Calling it unavailable would invite a retry that could write twice
// (docs/ha.md), so it is ErrCommitUnknown, as a COMMIT without an answer
// is. Inside a transaction nothing commits without the COMMIT, which
// liveTx judges. mayWrite is the chain's: Create, Update, Delete, and SQL
// given as text (Exec, Raw), which dbkit cannot tell from a read, may
// write; a query GORM built is a read.
func writeInDoubt(tx *gorm.DB, mayWrite bool) bool {
	st := tx.Statement
	if _, inTx := st.ConnPool.(gorm.TxCommitter); inTx {
		return false
	}
	if _, ro := st.Settings.Load(readOnlyKey{}); ro {
		return false
	}
	if !mayWrite {
		if _, raw := st.Settings.Load(rawSQLKey{}); !raw {
			return false
		}
	}
	return lostInFlight(st.Context, tx.Error)
}

// lostInFlight reports err, the failure of something sent outside a
// transaction, as a connection lost after it was sent and before the
// server answered (it may have been applied): not a connection that never
// came (a connect error), not one pgx knows it sent nothing on, not an
// answer from the server, not the caller's ctx ending.
func lostInFlight(ctx context.Context, err error) bool {
	if err == nil || pgconn.SafeToRetry(err) || (ctx != nil && ctx.Err() != nil) {
		return false
	}
	var (
		pgErr   *pgconn.PgError
		connErr *pgconn.ConnectError
	)
	if errors.As(err, &pgErr) || errors.As(err, &connErr) {
		return false
	}
	return connectionLost(err) || errors.Is(err, net.ErrClosed) || pgconn.Timeout(err)
}

// fromRaw translates an error of what dbkit ran on a driver connection
// outside GORM (COPY, WithPgxConn), as fromDriver does, and, outside a
// transaction, a connection lost in flight as in doubt (a COPY commits by
// itself); a lost connection also counts for the pool's generation.
func (db *DB) fromRaw(ctx context.Context, err error) error {
	db.failover.lost(ctx, err)
	if db.txStateFrom(ctx) == nil && lostInFlight(ctx, err) {
		err = inDoubt(err)
	}
	return db.fromDriver(ctx, err)
}

// inDoubt wraps err, lost in flight, as ErrCommitUnknown.
func inDoubt(err error) error {
	return fmt.Errorf("%w: the connection was lost after the write was sent, before its answer: it may have been applied (%w)",
		ErrCommitUnknown, err)
}

// resetSession is database/sql's check of a pooled connection before its
// next use: one of an ended generation is discarded.
func (f *failover) resetSession(_ context.Context, c *pgx.Conn) error {
	if tc, ok := c.PgConn().Conn().(*trackedConn); ok && tc.gen.Load() < f.gen.Load() {
		return driver.ErrBadConn
	}
	return nil
}

// lost ends the generation when err says the primary's connection was lost
// (not a statement's own failure, not the caller's ctx): its siblings were
// likely lost with it.
func (f *failover) lost(ctx context.Context, err error) {
	if f == nil || err == nil || (ctx != nil && ctx.Err() != nil) {
		return
	}
	if connectionLost(err) || errors.Is(err, syscall.ECONNREFUSED) {
		f.loss("connection lost")
	}
}

// lossWindow is how close two connection losses must be for the pool to
// take them for a server that went away rather than one connection's end
// (a DBA's pg_terminate_backend sends 57P01 too): one loss alone costs
// only its own connection, and idle connections are pinged before reuse
// anyway; a failover loses many at once.
const lossWindow = 2 * time.Second

// loss records a connection lost; a second within lossWindow ends the
// generation.
func (f *failover) loss(why string) {
	now := time.Now().UnixNano()
	if prev := f.lastLoss.Swap(now); prev != 0 && now-prev < int64(lossWindow) {
		f.end(why)
	}
}

// serverAttrs are the server attributes of spans of work on the primary:
// the server the pool reaches now (db.primaryAttrs). Shared: append to a
// clipped copy.
func (db *DB) serverAttrs() []attribute.KeyValue { return *db.primaryAttrs.Load() }
