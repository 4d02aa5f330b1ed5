package dbkit

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/metric"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// failover is what the primary's pool knows of the server it connects to,
// so that a failover (docs/ha.md) costs one failed call per connection at
// most, not one per pooled connection:
//
//   - Connections belong to a generation. When one of them meets the signs of
//     a primary that went away (a server shutting down, 57P01-57P03; a
//     demoted primary refusing a write, 25006, when TargetSessionAttrs asks
//     for a primary; a connection lost), the generation ends: every pooled
//     connection of it is discarded before its next use (database/sql's
//     ResetSession) instead of failing a call of its own, and the pool
//     connects again through Host and Fallbacks.
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
	// demotions are the 25006 errors of a read-only server (not of a
	// READ ONLY transaction), which fromDriver marks ErrUnavailable.
	demotions sync.Map // *pgconn.PgError -> struct{}
	nDemoted  atomic.Int64
}

func newFailover(db *DB) *failover {
	f := &failover{db: db, wantRW: db.cfg.TargetSessionAttrs == "read-write" || db.cfg.TargetSessionAttrs == "primary",
		hostname: map[string]string{}}
	f.gen.Store(1)
	for _, e := range append([]Endpoint{{Host: db.cfg.Host, Port: db.cfg.Port}}, db.cfg.Fallbacks...) {
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
		f.end("server shutting down (SQLSTATE " + pgErr.Code + ")")
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
	if tc != nil {
		tc.gen.Store(f.gen.Load())
	}
	addr := c.PgConn().Conn().RemoteAddr().String()
	server := f.name(addr)
	f.mu.Lock()
	prev := f.server
	f.server = server
	f.mu.Unlock()
	if prev == server {
		return
	}
	f.db.setPrimaryServer(server)
	if prev == "" {
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
	cur := *db.primaryAttrs.Load()
	attrs := nodeAttrs(db.cfg.Database, host, n)
	if slices.Equal(cur, attrs) {
		return
	}
	db.primaryAttrs.Store(&attrs)
	db.shapes.Clear()
	db.durationOpts.Clear()
	db.nShapes.Store(0)
}

// name names the server at addr (ip:port) by the configured host of its
// port, when only one host has that port.
func (f *failover) name(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if host := f.hostname[port]; host != "" {
			return net.JoinHostPort(host, port)
		}
	}
	return addr
}

// writeInDoubt reports a statement that may have written, run outside a
// transaction (it commits by itself), whose connection was lost after it
// was sent and before the server answered: it may have been applied.
// Calling it unavailable would invite a retry that could write twice
// (docs/ha.md), so it is ErrCommitUnknown, as a COMMIT without an answer
// is. Inside a transaction nothing commits without the COMMIT, which
// liveTx judges.
func writeInDoubt(tx *gorm.DB) bool {
	st := tx.Statement
	err := tx.Error
	if _, inTx := st.ConnPool.(gorm.TxCommitter); inTx || pgconn.SafeToRetry(err) || (st.Context != nil && st.Context.Err() != nil) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return false // the server answered: it did not apply it
	}
	if _, ro := st.Settings.Load(readOnlyKey{}); ro {
		return false
	}
	if st.SQL.Len() > 0 && strings.HasPrefix(strings.TrimSpace(strings.ToUpper(st.SQL.String())), "SELECT") {
		if op, own := st.Settings.Load(ownSQLKey{}); !own || op == "SELECT" {
			return false // a read
		}
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || pgconn.Timeout(err)
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
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		f.end("connection lost")
	}
}
