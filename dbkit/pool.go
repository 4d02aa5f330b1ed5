package dbkit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// codeCachedPlanChanged is SQLSTATE 0A000 (feature_not_supported), which
// PostgreSQL reports, as "cached plan must not change result type", when a
// prepared statement's result columns changed under it: a column was added
// to a table a cached SELECT * reads.
const codeCachedPlanChanged = "0A000"

// pool is the connection pool dbkit gives GORM: the *sql.DB, with two
// guarantees added to every statement run outside a transaction, the
// repository's and the escape hatch's alike:
//
//   - After [DB.Close] has begun, nothing new starts: every call fails with
//     [ErrClosed], even while the statements already running are waited for.
//   - A statement that meets a prepared statement made stale by a schema
//     change (SQLSTATE 0A000) runs again, once, with pgx's describe_exec
//     mode, which prepares nothing: a rolling deploy's new column does not
//     fail one call per pooled connection of the old replicas. It had not
//     run: PostgreSQL refuses the stale plan before executing it.
//   - With [WithTraceComments], a statement run with a span in ctx carries
//     the span's trace context in a comment (see sqlcomment.go).
//
// Inside a transaction the first statement error aborts the transaction,
// so there the error is [ErrSchemaChanged] instead, which InTx's retry
// understands.
type pool struct {
	db     *DB
	open   *sql.DB
	active atomic.Int64 // calls under way, which Close waits for
}

var (
	_ gorm.ConnPool       = (*pool)(nil)
	_ gorm.TxBeginner     = (*pool)(nil)
	_ gorm.GetDBConnector = (*pool)(nil)
)

func newPool(db *DB, open *sql.DB) *pool { return &pool{db: db, open: open} }

// errPoolClosed is what a call on the pool gets once Close has begun.
var errPoolClosed = fmt.Errorf("dbkit: %w", ErrClosed)

// enter counts a call under way and returns the pool to run it on, or nil
// once Close has begun. The call ends with leave. Close sets closed before it
// waits, and a call is counted before it looks: none can start on the open
// pool unseen once Close waits.
func (p *pool) enter() *sql.DB {
	p.active.Add(1)
	if p.db.closed.Load() {
		return nil
	}
	return p.open
}

// enterRead is enter for a query: a repository read's (see DB.read) goes to
// the server its route names.
func (p *pool) enterRead(ctx context.Context) *sql.DB {
	db := p.enter()
	if db != nil && p.db.router != nil {
		if rt := p.db.routeFrom(ctx); rt != nil {
			return rt.node.sql
		}
	}
	return db
}

func (p *pool) leave() { p.active.Add(-1) }

func (p *pool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	defer p.leave()
	db := p.enter()
	if db == nil {
		return nil, errPoolClosed
	}
	return db.PrepareContext(ctx, query)
}

func (p *pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	defer p.leave()
	db := p.enter()
	if db == nil {
		return nil, errPoolClosed
	}
	sent, sentArgs := p.db.comments.statement(ctx, query, args, false)
	res, err := db.ExecContext(ctx, sent, sentArgs...)
	// Without arguments pgx uses the simple protocol, which prepares
	// nothing: a 0A000 there comes from an EXECUTE of the caller's own, and
	// the statements before it in the string may have run.
	if len(args) > 0 && stalePlan(err) {
		res, err = db.ExecContext(ctx, sent, describeExec(args)...)
	}
	return res, err
}

func (p *pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	defer p.leave()
	db := p.enterRead(ctx)
	if db == nil {
		return nil, errPoolClosed
	}
	sent, sentArgs := p.db.comments.statement(ctx, query, args, true)
	rows, err := db.QueryContext(ctx, sent, sentArgs...)
	if stalePlan(err) {
		rows, err = db.QueryContext(ctx, sent, describeExec(args)...)
	}
	return rows, err
}

func (p *pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	defer p.leave()
	db := p.enterRead(ctx)
	if db == nil {
		return failedRow(ctx, errPoolClosed)
	}
	sent, sentArgs := p.db.comments.statement(ctx, query, args, true)
	row := db.QueryRowContext(ctx, sent, sentArgs...)
	if stalePlan(row.Err()) {
		row = db.QueryRowContext(ctx, sent, describeExec(args)...)
	}
	return p.db.translatedRow(ctx, row)
}

// translatedRow is row, or, when its statement failed, a row with the
// error translated: GORM's Row() hands a *sql.Row over without looking at
// its error, which the server's message (quoting a value) would otherwise
// reach the caller in.
func (db *DB) translatedRow(ctx context.Context, row *sql.Row) *sql.Row {
	if err := row.Err(); err != nil {
		return failedRow(ctx, db.fromDriver(ctx, err))
	}
	return row
}

// BeginTx begins a transaction of GORM's (Begin, Transaction).
func (p *pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	defer p.leave()
	db := p.enter()
	if db == nil {
		return nil, errPoolClosed
	}
	return db.BeginTx(ctx, opts)
}

// conn pins a connection, for InTx and COPY.
func (p *pool) conn(ctx context.Context) (*sql.Conn, error) {
	defer p.leave()
	db := p.enter()
	if db == nil {
		return nil, errPoolClosed
	}
	return db.Conn(ctx)
}

// GetDBConn gives GORM's DB() the pool (migrate pins its connection there).
// Work started on it directly is not counted: Close waits for it only while
// it holds a connection.
func (p *pool) GetDBConn() (*sql.DB, error) {
	defer p.leave()
	db := p.enter()
	if db == nil {
		return nil, errPoolClosed
	}
	return db, nil
}

// stalePlan reports PostgreSQL's refusal to run a prepared statement whose
// result columns a schema change altered: SQLSTATE 0A000, which is
// feature_not_supported in general, raised by RevalidateCachedQuery (the
// message, "cached plan must not change result type", may be translated;
// the routine's name is not).
func stalePlan(err error) bool {
	return err != nil && stalePlanError(err)
}

// stalePlanError is stalePlan's test of an error. It is apart so that the
// PgError errors.As needs, which escapes, is allocated only when there is
// an error.
func stalePlanError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeCachedPlanChanged && pgErr.Routine == "RevalidateCachedQuery"
}

// describeExec returns args for a statement run once in pgx's describe_exec
// mode, which pgx (through database/sql too) takes as a first argument.
func describeExec(args []any) []any {
	return append([]any{pgx.QueryExecModeDescribeExec}, args...)
}

// failedRow returns a *sql.Row whose error is err. A *sql.Row's error can
// only come from a pool: this one is a pool whose every connection fails
// with the error its ctx carries.
func failedRow(ctx context.Context, err error) *sql.Row {
	return failingPool().QueryRowContext(context.WithValue(context.WithoutCancel(ctx), rowErrKey{}, err), "")
}

// rowErrKey is the ctx key of the error failingPool fails with.
type rowErrKey struct{}

// failingPool is the pool of failedRow. It is made at the first need and
// shared by every DB of the process: it holds no state, only database/sql's
// opener goroutine, which one per DB would leak.
var failingPool = sync.OnceValue(func() *sql.DB { return sql.OpenDB(failingConnector{}) })

// failingConnector refuses every connection with the error of its ctx
// (ErrClosed when it has none).
type failingConnector struct{}

func (failingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err, ok := ctx.Value(rowErrKey{}).(error); ok {
		return nil, err
	}
	return nil, errPoolClosed
}

func (failingConnector) Driver() driver.Driver { return failingDriver{} }

type failingDriver struct{}

func (failingDriver) Open(string) (driver.Conn, error) { return nil, errPoolClosed }

// conns tracks the pool's open connections, so that Close can cut what still
// runs when its ctx ends: a cancel request to each connection's server
// process, then the connection's socket closed.
type conns struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
	// gen is the primary pool's generation (failover.go), which a
	// connection belongs to from its dial: one that reached a server
	// before the generation ended is discarded with the others.
	gen *atomic.Uint64
}

// trackedConn is a pool connection's socket, known to conns until closed.
type trackedConn struct {
	net.Conn
	set  *conns
	pg   *pgconn.PgConn // set once the connection is up
	gen  atomic.Uint64  // the primary pool's generation it was made in (failover)
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.m, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

// track is pgconn's AfterNetConnect: it wraps every new connection's socket.
func (s *conns) track(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
	tc := &trackedConn{Conn: c, set: s}
	if s.gen != nil {
		tc.gen.Store(s.gen.Load())
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*trackedConn]struct{})
	}
	s.m[tc] = struct{}{}
	s.mu.Unlock()
	return tc, nil
}

// ready is called once a connection is up: its cancel key is now known.
func (s *conns) ready(pg *pgconn.PgConn) {
	if tc, ok := pg.Conn().(*trackedConn); ok {
		s.mu.Lock()
		tc.pg = pg
		s.mu.Unlock()
	}
}

// cut asks the server to cancel whatever each open connection runs, then
// closes their sockets: statements and transactions still running end at
// once, on the server too. ctx bounds the cancel requests.
func (s *conns) cut(ctx context.Context) {
	s.mu.Lock()
	open := make([]*trackedConn, 0, len(s.m))
	var wg sync.WaitGroup
	for c := range s.m {
		open = append(open, c)
		if pg := c.pg; pg != nil {
			wg.Go(func() { _ = pg.CancelRequest(ctx) })
		}
	}
	s.mu.Unlock()
	wg.Wait()
	for _, c := range open {
		_ = c.Close()
	}
}
