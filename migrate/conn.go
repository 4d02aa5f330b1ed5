package migrate

import (
	"context"
	"database/sql"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// pinnedConn is the GORM connection pool of the migrator's pinned
// connection: every statement of a run, the migrations' own included, goes
// through it.
//
// pgx caches a prepared statement per SQL text and connection by default,
// and a migration changes the tables those statements read: after
// ALTER TABLE items ADD COLUMN, a cached SELECT * FROM items fails with
// SQLSTATE 0A000 ("cached plan must not change result type"), in the
// migration that altered the table or in any later one of the run. So, when
// the driver is pgx's and its default mode caches, every statement is sent
// in QueryExecModeDescribeExec instead: described on each execution, in an
// unnamed statement, at the cost of one more round trip for every query,
// and for every Exec with arguments (pgx sends an Exec without arguments by
// the simple protocol either way).
// pgx reads the mode from the first argument, which database/sql passes
// through since pgx's driver accepts any argument. Other drivers get the
// statements as they are.
//
// It also keeps, while asked to, the text of the statements sent: the
// statements of a NoTransaction migration, for invalidIndexes.
type pinnedConn struct {
	db   *sql.DB // the pool conn is from, for GORM's DB()
	conn *sql.Conn
	mode []any // prepended to every statement's arguments: nothing, or the pgx exec mode

	mu      sync.Mutex
	logging bool
	log     []string
}

// pin wraps conn, from db, choosing the exec mode its driver connection
// needs.
func pin(db *sql.DB, conn *sql.Conn) *pinnedConn {
	p := &pinnedConn{db: db, conn: conn}
	_ = conn.Raw(func(dc any) error {
		if c, ok := dc.(*stdlib.Conn); ok {
			switch c.Conn().Config().DefaultQueryExecMode {
			case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe:
				p.mode = []any{pgx.QueryExecModeDescribeExec}
			}
		}
		return nil
	})
	return p
}

var (
	_ gorm.ConnPool         = (*pinnedConn)(nil)
	_ gorm.ConnPoolBeginner = (*pinnedConn)(nil)
	_ gorm.GetDBConnector   = (*pinnedConn)(nil)
	_ gorm.ConnPool         = (*pinnedTx)(nil)
	_ gorm.TxCommitter      = (*pinnedTx)(nil)
	_ gorm.GetDBConnector   = (*pinnedTx)(nil)
)

// GetDBConn gives a migration's tx.DB() the pool, as GORM does for a
// *sql.Conn or *sql.Tx.
func (p *pinnedConn) GetDBConn() (*sql.DB, error) { return p.db, nil }

// GetDBConn gives a migration's tx.DB() the pool.
func (t *pinnedTx) GetDBConn() (*sql.DB, error) { return t.p.db, nil }

// startLog starts keeping the text of the statements sent; stop stops it
// and returns them.
func (p *pinnedConn) startLog() (stop func() []string) {
	p.mu.Lock()
	p.logging, p.log = true, nil
	p.mu.Unlock()
	return func() []string {
		p.mu.Lock()
		defer p.mu.Unlock()
		log := p.log
		p.logging, p.log = false, nil
		return log
	}
}

// sent notes query if statements are being kept.
func (p *pinnedConn) sent(query string) {
	p.mu.Lock()
	if p.logging {
		p.log = append(p.log, query)
	}
	p.mu.Unlock()
}

// args returns the arguments of query as they go to the driver, noting
// query on the way.
func (p *pinnedConn) args(query string, args []any) []any {
	p.sent(query)
	if p.mode == nil {
		return args
	}
	return append(append(make([]any, 0, len(args)+1), p.mode...), args...)
}

func (p *pinnedConn) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	p.sent(query)
	return p.conn.PrepareContext(ctx, query)
}

func (p *pinnedConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.conn.ExecContext(ctx, query, p.args(query, args)...)
}

func (p *pinnedConn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return p.conn.QueryContext(ctx, query, p.args(query, args)...)
}

func (p *pinnedConn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.conn.QueryRowContext(ctx, query, p.args(query, args)...)
}

// BeginTx gives GORM's Transaction a transaction whose statements go out as
// the connection's do.
func (p *pinnedConn) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &pinnedTx{tx: tx, p: p}, nil
}

// pinnedTx is a transaction on a pinnedConn.
type pinnedTx struct {
	tx *sql.Tx
	p  *pinnedConn
}

func (t *pinnedTx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	t.p.sent(query)
	return t.tx.PrepareContext(ctx, query)
}

func (t *pinnedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, query, t.p.args(query, args)...)
}

func (t *pinnedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, query, t.p.args(query, args)...)
}

func (t *pinnedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, query, t.p.args(query, args)...)
}

func (t *pinnedTx) Commit() error   { return t.tx.Commit() }
func (t *pinnedTx) Rollback() error { return t.tx.Rollback() }
