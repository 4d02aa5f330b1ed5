package dbkit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/migrate"
	"github.com/dbkit-go/database/tracing"
)

// DB is a connected, health-checked and migrated database: a pool of
// connections shared by every [BaseDatabase] made from it. It is safe for
// concurrent use. Close it with [DB.Close] when the service stops.
type DB struct {
	gorm *gorm.DB
	sql  *sql.DB
	pool *pool // what GORM, InTx and COPY run on: sql, until Close begins
	// healthDB is Health's own pool of one connection.
	healthDB *sql.DB
	conns    conns  // the pool's connections, for Close to cut
	cfg      Config // defaults applied
	logger   *slog.Logger
	// stmtLog logs every statement (WithLogger), at WARN past slowQuery.
	stmtLog   *slog.Logger
	slowQuery time.Duration
	tp        trace.TracerProvider
	traced    bool // a TracerProvider was given: record statement spans
	repoSpans bool // and repository spans (WithRepositorySpans)
	// returnedRows records db.response.returned_rows (WithReturnedRows).
	returnedRows bool
	// sqlInfo sanitizes statement texts for spans and logs and summarizes
	// the caller's SQL.
	sqlInfo *sqlInfos
	// noQueryText leaves the texts out (WithoutQueryText).
	noQueryText bool
	// comments puts statements' trace context in their SQL (WithTraceComments).
	comments traceComments
	// Metrics, when a MeterProvider was given (opDuration nil otherwise).
	opDuration metric.Float64Histogram
	poolReg    metric.Registration
	poolName   string
	// shapes caches what operations of one shape share (opShape).
	shapes  sync.Map // shapeKey -> *opShape
	nShapes atomic.Int64
	// durationOpts caches the attribute set of each failure's duration series.
	durationOpts sync.Map // failedKey -> metric.RecordOption
	// cursorKey authenticates pagination cursors (WithCursorKey).
	cursorKey        []byte
	defaultCursorKey bool         // no key was given: cursors can be forged
	warnCursorKey    sync.Once    // says so once, at the first cursor
	tracer           trace.Tracer // dbkit's: every span
	// router sends repository reads to read replicas; nil without them.
	router *router
	// failover drops the primary pool's connections to a server that
	// went away (failover.go).
	failover *failover
	// primaryAttrs are the server attributes of the spans of work on the
	// primary (statements, transactions, migrations, health checks):
	// Host's, until a connection reaches another server of Host and
	// Fallbacks. Read them with serverAttrs, except where the pointer
	// itself is compared (the telemetry shape cache, telemetry.go).
	primaryAttrs atomic.Pointer[[]attribute.KeyValue]

	closed    atomic.Bool // Close has begun: no new work
	ended     atomic.Bool // Close has cut what ran, or closed the pool: errors now are its doing
	closeOnce sync.Once
}

// Connect validates cfg, opens a connection pool to PostgreSQL through GORM
// and pgx, and returns once the database is usable:
//
//  1. cfg.Validate: a *[ConfigError] naming every invalid field.
//  2. The first connection, retried with backoff while the server is
//     unreachable or still starting, until cfg.ConnectTimeout or ctx ends.
//     A definitive answer from the server (wrong password, missing database)
//     stops the retries at once. Failure is a *[ConnectError] naming
//     host:port and database, never the password.
//  3. A health check, SELECT 1.
//  4. The migrations given with [WithMigrations], if any.
//  5. The schema check of [WithSchemaCheck], if any.
//
// GORM is set up with error translation, a transaction (or, inside one, a
// savepoint) around exactly the writes that can run more than one statement
// or a hook (see [Repository.Create]), and no logger of its own. Every statement is observed
// by dbkit, without its parameter values: a span with [WithTracerProvider],
// a duration with [WithMeterProvider], a log record with [WithLogger].
func Connect(ctx context.Context, cfg Config, opts ...Option) (*DB, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.cursorKey != nil && len(o.cursorKey) < minCursorKey {
		return nil, fmt.Errorf("%w: WithCursorKey: the key must have at least %d bytes, got %d", ErrInvalid, minCursorKey, len(o.cursorKey))
	}
	db := newDB(cfg.WithDefaults(), o)
	ctx, span := db.tracer.Start(ctx, tracing.SpanConnect, trace.WithAttributes(db.serverAttrs()...))
	err := db.open(ctx, o)
	if err == nil {
		err = db.health(ctx)
	}
	if err == nil && len(o.migrations) > 0 {
		err = db.migrateAt(ctx, o) // on DirectHost when set (direct.go)
	}
	if err == nil {
		err = db.checkSchemaAtConnect(ctx, o)
	}
	tracing.End(span, err, nil)
	if err != nil {
		db.closeOpened()
		return nil, err
	}
	return db, nil
}

// closeOpened closes what a Connect that failed had opened: the metrics'
// registration, the replicas' checks and pools, the pool and Health's.
func (db *DB) closeOpened() {
	if db.poolReg != nil {
		_ = db.poolReg.Unregister()
	}
	if db.sql != nil {
		db.closeReplicas()
		_ = db.sql.Close()
		_ = db.healthDB.Close()
	}
}

// newDB returns an unconnected DB for cfg (defaults applied).
func newDB(cfg Config, o options) *DB {
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	db := &DB{
		cfg:       cfg,
		logger:    o.logger,
		tp:        tracing.Provider(o.tracerProvider),
		traced:    o.tracerProvider != nil,
		repoSpans: o.tracerProvider != nil && o.repositorySpans,
		poolName:  o.poolName,
		cursorKey: o.cursorKey,
		// returnedRows: db.response.returned_rows is opt-in (WithReturnedRows).
		returnedRows: o.returnedRows,
		noQueryText:  o.noQueryText,
		sqlInfo:      newSQLInfos(),
		comments:     newTraceComments(o.traceComments, cfg.QueryExecMode),
	}
	if db.poolName == "" {
		db.poolName = cfg.Addr() + "/" + cfg.Database
	}
	if db.cursorKey == nil {
		// Not a secret: it makes a cursor that was cut, mangled or made by
		// another database fail the check, not a forged one.
		sum := sha256.Sum256([]byte("dbkit cursor/" + cfg.Database))
		db.cursorKey = sum[:]
		db.defaultCursorKey = true
	}
	db.tracer = tracing.Tracer(db.tp)
	attrs := nodeAttrs(cfg.Database, cfg.Host, cfg.Port)
	db.primaryAttrs.Store(&attrs)
	db.failover = newFailover(db)
	db.conns.gen = &db.failover.gen
	return db
}

func (db *DB) open(ctx context.Context, o options) error {
	connCfg, err := db.connConfig(db.cfg)
	if err != nil {
		return err
	}
	// Health has a connection of its own: a pool saturated by the
	// application says nothing about the server. (pgx's own handling of
	// server errors: what happens to it does not move the pool.)
	db.healthDB = db.openPool(connCfg, 1, 1, nil)
	connCfg.OnPgError = db.failover.onPgError
	db.sql = db.openPool(connCfg, db.cfg.MaxOpenConns, db.cfg.MaxIdleConns, db.failover)

	if err := db.waitForServer(ctx); err != nil {
		return err
	}
	if err := db.openReplicas(); err != nil {
		return err
	}
	if err := db.openGorm(db.sql, o); err != nil {
		return err
	}
	if db.router != nil {
		db.router.checker.start(ctx) // the first round now: reads go to replicas from the start
	}
	return nil
}

// connConfig returns pgx's settings for the server cfg names.
func (db *DB) connConfig(cfg Config) (*pgx.ConnConfig, error) {
	connCfg, err := pgx.ParseConfig(cfg.DSN())
	if err != nil {
		return nil, fmt.Errorf("dbkit: connection settings for %s database %q: %w", cfg.Addr(), cfg.Database, parseCause(err))
	}
	// On a cancelled ctx, ask the server to cancel the statement (the
	// connection stays usable) instead of pgx's default of only closing the
	// socket, which leaves the query running on the server. If the server
	// does not answer within cancelGrace the connection is closed after all.
	connCfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelGrace}
	}
	connCfg.DialFunc = dialer(cfg.DeadPeerTimeout)
	connCfg.AfterNetConnect = db.conns.track
	return connCfg, nil
}

// openPool opens a pool of at most maxOpen connections made with connCfg,
// keeping maxIdle idle, with the Config's lifetimes. f, for the primary's
// pool, follows the server its connections reach (nil for the others).
func (db *DB) openPool(connCfg *pgx.ConnConfig, maxOpen, maxIdle int, f *failover) *sql.DB {
	opts := []stdlib.OptionOpenDB{stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
		db.conns.ready(c.PgConn())
		if f != nil {
			f.connected(ctx, c)
		}
		setUpTypes(c.TypeMap())
		return nil
	})}
	if f != nil {
		opts = append(opts, stdlib.OptionResetSession(f.resetSession))
	}
	p := stdlib.OpenDB(*connCfg, opts...)
	p.SetMaxOpenConns(maxOpen)
	p.SetMaxIdleConns(maxIdle)
	p.SetConnMaxLifetime(db.cfg.ConnMaxLifetime)
	p.SetConnMaxIdleTime(db.cfg.ConnMaxIdleTime)
	return p
}

// openGorm sets GORM up on sqlDB: dbkit's pool around it, settings,
// callbacks and telemetry.
func (db *DB) openGorm(sqlDB *sql.DB, o options) error {
	db.pool = newPool(db, sqlDB)
	gl := o.gormLogger
	if gl == nil {
		gl = logger.Discard
		if o.logger != nil {
			gl = &gormLogger{log: o.logger, level: logger.Info}
			db.stmtLog, db.slowQuery = o.logger, o.slowQuery
			if db.slowQuery <= 0 {
				db.slowQuery = DefaultSlowQueryThreshold
			}
		}
	}
	var err error
	db.gorm, err = gorm.Open(postgres.New(postgres.Config{Conn: db.pool}), &gorm.Config{
		TranslateError:       true,
		Logger:               logger.Discard, // gl once the callbacks are in: GORM logs their replacement
		NowFunc:              now,
		DisableAutomaticPing: true,
	})
	if err != nil {
		return fmt.Errorf("dbkit: open gorm: %w", err)
	}
	if err := errors.Join(db.registerAtomicWrites(), db.registerCallbacks()); err != nil {
		return fmt.Errorf("dbkit: register callbacks: %w", err)
	}
	db.gorm.Logger = gl
	if err := db.setupMetrics(o.meterProvider); err != nil {
		return err
	}
	if err := db.registerTelemetry(); err != nil {
		return fmt.Errorf("dbkit: register telemetry callbacks: %w", err)
	}
	for _, p := range o.gormPlugins {
		if p == nil {
			return fmt.Errorf("dbkit: WithGormPlugins: %w: a nil plugin", ErrInvalid)
		}
		if err := usePlugin(db.gorm, p); err != nil {
			return err
		}
	}
	return nil
}

// usePlugin initializes p on g. A plugin that panics fails Connect, which
// then closes what it opened, rather than leaving the pool open behind a
// panic; the panic's value is not quoted (it is the plugin's, and may hold
// anything).
func usePlugin(g *gorm.DB, p gorm.Plugin) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dbkit: GORM plugin %s panicked while initializing (a %T)", p.Name(), r)
		}
	}()
	if err := g.Use(p); err != nil {
		return fmt.Errorf("dbkit: GORM plugin %s: %w", p.Name(), err)
	}
	return nil
}

// registerCallbacks adds dbkit's GORM callbacks: the ID assignment before
// every insert, and, after every statement and before its telemetry records
// its outcome, the translation of the driver's error (so that neither the
// span, the log nor the caller of Query sees a value the server quoted).
func (db *DB) registerCallbacks() error {
	cb := db.gorm.Callback()
	// Every statement run on the primary outside a repository read may
	// have written (an UPDATE ... RETURNING runs as a query): the Session
	// in its ctx must see it (see Session). Inside a transaction, the
	// commit counts too.
	translateFor := func(mayWrite bool) func(tx *gorm.DB) {
		return func(tx *gorm.DB) {
			db.translateStatement(tx, mayWrite)
			if db.router != nil {
				db.markWrite(tx)
			}
		}
	}
	write, query := translateFor(true), translateFor(false)
	var unroute error
	if db.router != nil {
		// What a read's AfterFind hooks run is not the read: it goes to
		// the primary (a write on a replica would fail), and counts as a
		// write of the ctx's Session. The read's preloads keep its route.
		unroute = cb.Query().After("gorm:preload").Before("gorm:after_query").Register("dbkit:unroute", func(tx *gorm.DB) {
			if ctx := tx.Statement.Context; db.routeFrom(ctx) != nil {
				tx.Statement.Context = context.WithValue(ctx, routeKey{}, (*route)(nil))
			}
		})
	}
	return errors.Join(
		unroute,
		cb.Query().Replace("gorm:query", queryRows),
		cb.Create().Replace("gorm:create", createRow(cb.Create().Get("gorm:create"))),
		cb.Create().Before("gorm:before_create").Register("dbkit:assign_id", assignIDs),
		// Right after the statement: GORM puts a callback that is only
		// "after" another at the end of the chain, after the hooks and the
		// associations' statements.
		cb.Create().After("gorm:create").Before("gorm:save_after_associations").Register("dbkit:translate", write),
		cb.Query().After("gorm:query").Before("gorm:preload").Register("dbkit:translate", query),
		cb.Update().After("gorm:update").Before("gorm:save_after_associations").Register("dbkit:translate", write),
		cb.Delete().After("gorm:delete").Before("gorm:after_delete").Register("dbkit:translate", write),
		cb.Row().After("gorm:row").Register("dbkit:translate", write),
		cb.Raw().After("gorm:raw").Register("dbkit:translate", write),
	)
}

// translateStatement translates the error of a statement GORM ran: in
// doubt when a write's connection was lost in flight (see writeInDoubt),
// the primary's pool told of a lost connection, then dbkit's error, with
// the escape hatch's prefix for a statement built from Repository.Query.
func (db *DB) translateStatement(tx *gorm.DB, mayWrite bool) {
	if tx.Error == nil {
		return
	}
	if writeInDoubt(tx, mayWrite) {
		tx.Error = inDoubt(tx.Error)
	}
	ctx := tx.Statement.Context
	if rt := db.routeFrom(ctx); rt == nil || rt.node.replica == nil {
		db.failover.lost(ctx, tx.Error) // a lost primary connection: its siblings go too
	}
	tx.Error = db.fromDriver(ctx, tx.Error)
	if where, ok := tx.Statement.Settings.Load(escapeHatchKey{}); ok {
		tx.Error = escapeHatchError(where.(string), tx.Error)
	}
}

// waitForServer opens the first connection, retrying with jittered
// exponential backoff (50 ms doubling to 2 s) until it succeeds, the server
// gives a definitive refusal, cfg.ConnectTimeout passes or ctx ends.
func (db *DB) waitForServer(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.ConnectTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	var last error // the most telling failure: not a deadline hit mid-attempt
	for attempt := 1; ; attempt++ {
		err := db.sql.PingContext(ctx)
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil {
			last = err
		}
		fail := func(cause error) error {
			return &ConnectError{Addr: db.cfg.Addr(), Database: db.cfg.Database, User: db.cfg.User, Attempts: attempt, Err: cause}
		}
		if !retryableConnectError(err) {
			return fail(err)
		}
		if ctx.Err() != nil {
			return fail(giveUp(ctx.Err(), last))
		}
		wait := backoff/2 + rand.N(backoff)
		db.logger.LogAttrs(ctx, slog.LevelInfo, "dbkit: database not reachable yet, retrying",
			slog.String("addr", db.cfg.Addr()), slog.String("database", db.cfg.Database),
			slog.Int("attempt", attempt), slog.Duration("retry_in", wait), slog.String("error", connectCause(err)))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fail(giveUp(ctx.Err(), last))
		case <-timer.C:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// parseCause is why pgx refused the connection settings, without the
// connection string pgx's error quotes: its redaction of the password stops
// at the first escaped quote. Only the underlying cause is kept (a CA file
// that does not parse, say), or a plain statement when there is none.
func parseCause(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap()
	}
	return errors.New("pgx rejected them")
}

// giveUp joins the reason retries stopped with the last connection error.
func giveUp(ctxErr, last error) error {
	if errors.Is(last, ctxErr) {
		return last
	}
	return &retryError{stop: ctxErr, last: last}
}

// retryError says why Connect stopped retrying and what the last attempt met.
type retryError struct{ stop, last error }

func (e *retryError) Error() string {
	return e.stop.Error() + " (last error: " + connectCause(e.last) + ")"
}
func (e *retryError) Unwrap() []error { return []error{e.stop, e.last} }

// retryableConnectError reports whether a failed first connection may succeed
// later: network errors (refused, reset, timed out, name not resolved yet)
// and a server that is starting, shutting down or full. A definitive answer
// from the server (authentication, missing database, permissions) or a TLS
// or settings problem is final.
func retryableConnectError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
	)
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func (db *DB) migrate(ctx context.Context, o options) error {
	ctx, span := db.tracer.Start(ctx, tracing.SpanMigrate, trace.WithAttributes(db.serverAttrs()...))
	mopts := []migrate.Option{migrate.WithLogger(db.logger)}
	if db.traced {
		mopts = append(mopts, migrate.WithTracerProvider(db.tp))
	}
	m, err := migrate.New(db.gorm, o.migrations, append(mopts, o.migrateOptions...)...)
	if err == nil && o.checkOnly {
		err = m.Check(ctx)
	} else if err == nil {
		var applied []string
		applied, err = m.Up(ctx)
		span.SetAttributes(tracing.MigrationCount.Int(len(applied)))
	}
	tracing.End(span, err, nil)
	return err
}

// Health checks that the database answers SELECT 1 within ctx's deadline.
// It runs on a connection of its own, not the pool's, so that it answers
// about the server even when the application holds every pooled connection:
// a readiness probe does not flap under load (a DB keeps one connection
// more for it). It is cheap enough for a readiness probe. After Close it
// returns an error matching [ErrClosed].
func (db *DB) Health(ctx context.Context) error {
	ctx, span := db.tracer.Start(ctx, tracing.SpanHealth, trace.WithAttributes(db.serverAttrs()...))
	err := db.health(ctx)
	tracing.End(span, err, nil)
	return err
}

func (db *DB) health(ctx context.Context) error {
	if db.closed.Load() {
		return fmt.Errorf("dbkit: health check of %s database %q: %w", db.cfg.Addr(), db.cfg.Database, errPoolClosed)
	}
	var one int
	if err := db.healthDB.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("dbkit: health check of %s database %q: %w", db.cfg.Addr(), db.cfg.Database, db.fromDriver(ctx, err))
	}
	return nil
}

// Close closes the DB, gracefully:
//
//  1. New work stops at once: every call on the DB, its repositories and
//     GORM through them fails with [ErrClosed], even while Close waits.
//  2. Close waits for the statements and transactions already running,
//     until they end or ctx does.
//  3. If ctx ends first, what still runs is cut: the pool is closed (calls
//     waiting for a connection fail), PostgreSQL is asked to cancel each
//     statement, and the connections are closed, which rolls back the
//     transactions left; their callers get errors matching ErrClosed.
//     Close then returns an error matching ctx.Err() that says how many
//     statements or transactions it cut.
//
// Calling Close again returns nil.
func (db *DB) Close(ctx context.Context) error {
	first := false
	db.closeOnce.Do(func() {
		first = true
		db.closed.Store(true)
		if db.poolReg != nil {
			_ = db.poolReg.Unregister()
		}
	})
	if !first {
		return nil
	}
	_, span := db.tracer.Start(ctx, tracing.SpanClose, trace.WithAttributes(db.serverAttrs()...))
	err := db.drain(ctx)
	db.ended.Store(true)
	db.closeReplicas()
	if db.healthDB != nil {
		_ = db.healthDB.Close()
	}
	if cerr := db.sql.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("dbkit: close %s: %w", db.cfg.Addr(), cerr)
	}
	tracing.End(span, err, nil)
	if err == nil {
		db.logger.LogAttrs(ctx, slog.LevelDebug, "dbkit: database closed", slog.String("addr", db.cfg.Addr()), slog.String("database", db.cfg.Database))
	}
	return err
}

// cancelGrace is how long a statement whose ctx ended may take to stop
// after PostgreSQL was asked to cancel it: past it, the connection is
// closed and the call returns. pgx then waits 100 ms more before the
// connection is used again (a late cancel request must not hit the next
// statement), so that a call returns within about 200 ms of its deadline
// even when the server does not answer.
const cancelGrace = 100 * time.Millisecond

// cutGrace bounds the cancel requests Close sends after its ctx ended.
const cutGrace = 2 * time.Second

// drain waits until nothing runs on the pool: no call under way in it and no
// connection in use (a statement, its rows, a transaction). When ctx ends
// first, it cuts what runs and says how much.
func (db *DB) drain(ctx context.Context) error {
	idle := func() bool { return db.pool.active.Load() == 0 && db.sql.Stats().InUse == 0 && db.replicasInUse() == 0 }
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !idle() {
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
		}
		// Close the pool first: calls still waiting for a connection fail
		// (with ErrClosed) instead of getting one the cut frees. Then cancel
		// what runs and close the connections it runs on.
		running := db.sql.Stats().InUse + db.replicasInUse()
		db.ended.Store(true)
		_ = db.sql.Close()
		if db.router != nil {
			for _, n := range db.router.replicas {
				_ = n.sql.Close()
			}
		}
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), cutGrace)
		db.conns.cut(grace)
		cancel()
		db.logger.LogAttrs(ctx, slog.LevelWarn, "dbkit: close cut the work still running",
			slog.String("addr", db.cfg.Addr()), slog.Int("cut", running))
		return fmt.Errorf("dbkit: close %s: %w: cut %d statement(s) or transaction(s) still running", db.cfg.Addr(), ctx.Err(), running)
	}
	return nil
}

// Stats returns the connection pool's statistics.
func (db *DB) Stats() sql.DBStats { return db.sql.Stats() }

// Config returns the configuration the DB was opened with, defaults applied.
// Its password is there, but String and LogValue redact it.
func (db *DB) Config() Config { return db.cfg }
