package migrate

import (
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/tracing"
)

// Defaults.
const (
	DefaultTableName   = "dbkit_migrations"
	DefaultLockTimeout = time.Minute
)

// Migration is one versioned change of the schema, written in Go.
//
// IDs sort in the order migrations must run; name them
// YYYYMMDDHHMM_description, for example "202611260900_create_users".
type Migration struct {
	ID string
	// Migrate applies the change. Unless NoTransaction is set it runs in a
	// transaction of its own, the one that also records it as applied.
	Migrate func(tx *gorm.DB) error
	// Rollback undoes Migrate, in a transaction of its own that also removes
	// the record. Nil when the change cannot be undone: such a migration
	// cannot be rolled back.
	Rollback func(tx *gorm.DB) error
	// NoTransaction runs Migrate and Rollback outside a transaction, for
	// statements PostgreSQL refuses inside one, such as CREATE INDEX
	// CONCURRENTLY. If such a migration fails halfway, what it did stays:
	// write it to be re-run, one statement per Exec (a failed CREATE INDEX
	// CONCURRENTLY leaves an invalid index: DROP INDEX CONCURRENTLY IF
	// EXISTS before building it again). A NoTransaction migration that
	// leaves an invalid index behind is not recorded: Up fails with a
	// *[InvalidIndexError].
	NoTransaction bool
	// Checksum identifies what Migrate does, so that a migration edited
	// after it was applied is noticed: a version the author bumps whenever
	// Migrate changes ("2"), or, for migrations made by [SQL], the SHA-256
	// of their SQL. It is recorded when the migration is applied; when the
	// recorded checksum and the code's differ, Up, Check and Plan fail with
	// a *[ChecksumError] (or log it, with [WarnOnChecksumMismatch]). An empty
	// Checksum is never compared.
	Checksum string
}

// Migrator applies, lists and rolls back a set of migrations on one
// database. Every change it makes runs under a PostgreSQL advisory lock held
// on one connection, so that any number of replicas can run it at once.
type Migrator struct {
	db              *gorm.DB
	migrations      []Migration // sorted by ID
	byID            map[string]int
	table           string
	logger          *slog.Logger
	lockTimeout     time.Duration
	allowOutOfOrder bool
	rejectUnknown   bool
	warnOnChecksum  bool
	tracer          trace.Tracer // nil: no spans
}

// Op says whether an [Error] happened applying or rolling back.
type Op string

const (
	OpUp   Op = "up"
	OpDown Op = "down"
)

// New validates migrations and returns a Migrator for db. It returns a
// *[ValidationError] listing every empty or duplicate ID and every nil
// Migrate func. Nothing touches the database until a method is called.
func New(db *gorm.DB, migrations []Migration, opts ...Option) (*Migrator, error) {
	m := &Migrator{db: db, table: DefaultTableName, lockTimeout: DefaultLockTimeout}
	for _, opt := range opts {
		if opt != nil {
			opt(m)
		}
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	var problems []string
	if !validTableName(m.table) {
		problems = append(problems, fmt.Sprintf("the table name %q is not a plain or schema-qualified identifier (letters, digits, _)", m.table))
	}
	if m.lockTimeout <= 0 {
		problems = append(problems, "the lock timeout must be positive")
	}
	problems = append(problems, validate(migrations)...)
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	m.migrations = slices.SortedFunc(slices.Values(migrations), func(a, b Migration) int { return cmp.Compare(a.ID, b.ID) })
	m.byID = make(map[string]int, len(m.migrations))
	for i, mig := range m.migrations {
		m.byID[mig.ID] = i
	}
	return m, nil
}

// reservedID is the ID gormigrate keeps for its InitSchema.
const reservedID = "SCHEMA_INIT"

// validTableName accepts name or schema.name made of letters, digits and
// underscores: GORM writes other names into the SQL as given.
func validTableName(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 {
			return false
		}
		for _, r := range p {
			if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

func validate(migrations []Migration) []string {
	var problems []string
	seen := make(map[string]bool, len(migrations))
	for i, mig := range migrations {
		name := fmt.Sprintf("%q", mig.ID)
		switch {
		case mig.ID == "":
			name = fmt.Sprintf("#%d", i)
			problems = append(problems, fmt.Sprintf("migration #%d has an empty ID", i))
		case seen[mig.ID]:
			problems = append(problems, fmt.Sprintf("migration ID %q is duplicated", mig.ID))
		case len(mig.ID) > 255:
			problems = append(problems, fmt.Sprintf("migration ID %.40q... is longer than 255 bytes", mig.ID))
		case mig.ID == reservedID:
			problems = append(problems, fmt.Sprintf("migration ID %q is reserved by gormigrate", mig.ID))
		}
		seen[mig.ID] = true
		if mig.Migrate == nil {
			problems = append(problems, fmt.Sprintf("migration %s has no Migrate func", name))
		}
	}
	return problems
}

// State says where a migration stands.
type State string

const (
	Applied State = "applied" // recorded in the table
	Pending State = "pending" // known to the code, not applied
	Unknown State = "unknown" // recorded in the table, not known to the code
)

// MigrationStatus is one line of [Migrator.Status].
type MigrationStatus struct {
	ID        string
	State     State
	AppliedAt time.Time // zero unless recorded (and zero for rows of an unadopted gormigrate table)
	// Checksum is the one recorded when the migration was applied ("" if
	// none was). ChecksumMismatch is set when the code's Migration has a
	// different, non-empty one: the migration was edited after it was
	// applied.
	Checksum         string
	ChecksumMismatch bool
}

// Status lists every migration, known or recorded, in ID order, with its
// state. It takes no lock and changes nothing.
func (m *Migrator) Status(ctx context.Context) ([]MigrationStatus, error) {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
		return nil, err
	}
	return m.status(done), nil
}

func (m *Migrator) status(done []applied) []MigrationStatus {
	out := make([]MigrationStatus, 0, len(m.migrations)+len(done))
	recorded := make(map[string]applied, len(done))
	for _, a := range done {
		recorded[a.ID] = a
		if _, known := m.byID[a.ID]; !known {
			out = append(out, MigrationStatus{ID: a.ID, State: Unknown, AppliedAt: a.AppliedAt, Checksum: a.Checksum})
		}
	}
	for _, mig := range m.migrations {
		if a, ok := recorded[mig.ID]; ok {
			out = append(out, MigrationStatus{ID: mig.ID, State: Applied, AppliedAt: a.AppliedAt, Checksum: a.Checksum,
				ChecksumMismatch: checksumChanged(a.Checksum, mig.Checksum)})
		} else {
			out = append(out, MigrationStatus{ID: mig.ID, State: Pending})
		}
	}
	slices.SortFunc(out, func(a, b MigrationStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// plan returns the migrations Up would apply given what is recorded, or a
// *ValidationError for pending migrations out of order (unless allowed) and
// unknown recorded ones (when rejected).
func (m *Migrator) plan(done []applied) ([]Migration, error) {
	recorded := make(map[string]bool, len(done))
	last := ""
	var problems []string
	for _, a := range done {
		recorded[a.ID] = true
		last = max(last, a.ID)
		if _, known := m.byID[a.ID]; !known && m.rejectUnknown {
			problems = append(problems, fmt.Sprintf("the database records migration %q, which this code does not have", a.ID))
		}
	}
	var pending []Migration
	for _, mig := range m.migrations {
		if recorded[mig.ID] {
			continue
		}
		if mig.ID < last && !m.allowOutOfOrder {
			problems = append(problems, fmt.Sprintf("migration %q is pending but sorts before %q, already applied (out of order: rename it, or allow out-of-order migrations)", mig.ID, last))
		}
		pending = append(pending, mig)
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return pending, nil
}

// Plan returns the IDs Up would apply now, in order, without applying them
// and without taking the lock. It fails as Up would on applied migrations
// that changed (a *[ChecksumError]), and on out-of-order or (with
// RejectUnknown) unknown migrations.
func (m *Migrator) Plan(ctx context.Context) ([]string, error) {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
		return nil, err
	}
	if err := m.verifyChecksums(ctx, done, true); err != nil {
		return nil, err
	}
	pending, err := m.plan(done)
	return ids(pending), err
}

// Check returns a *[PendingError] when migrations are not applied, without
// applying them: for services that migrate in a separate job and must not
// start on an old schema. It returns a *[ChecksumError] first when applied
// migrations changed since.
func (m *Migrator) Check(ctx context.Context) error {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
		return err
	}
	if err := m.verifyChecksums(ctx, done, true); err != nil {
		return err
	}
	if pending, err := m.plan(done); err != nil {
		return err
	} else if len(pending) > 0 {
		return &PendingError{IDs: ids(pending)}
	}
	return nil
}

// Up applies, in ID order, every migration not yet recorded, each in its own
// transaction together with its record, and returns the IDs it applied.
//
// It first reads what is applied without any lock, and returns at once when
// nothing is pending, so that up-to-date replicas start instantly while
// another runs a long migration. Otherwise it takes the migration lock
// (waiting at most the lock timeout), reads again, since another replica may
// have done the work meanwhile, and applies what is still pending.
//
// When a migration fails, its transaction is rolled back, nothing is recorded
// for it, later ones do not run, and the error is a *[Error] naming it.
//
// Before applying anything, it compares the checksums of the applied
// migrations with their code's (see Migration.Checksum) and fails with a
// *[ChecksumError] listing every one that changed, also when nothing is
// pending.
func (m *Migrator) Up(ctx context.Context) ([]string, error) {
	return m.upTo(ctx, "")
}

// upTo applies pending migrations up to and including target ("" for all).
func (m *Migrator) upTo(ctx context.Context, target string) ([]string, error) {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
		return nil, err
	}
	m.logUnknown(ctx, done)
	if err := m.verifyChecksums(ctx, done, true); err != nil {
		return nil, err
	}
	pending, err := m.plan(done)
	if err != nil || len(cut(pending, target)) == 0 {
		return nil, err
	}
	var applied []string
	err = m.locked(ctx, func(conn *gorm.DB) (err error) {
		applied, err = m.upToLocked(ctx, conn, target, false)
		return err
	})
	return applied, err
}

// upToLocked applies, under the lock, what is pending up to target, after
// checking the applied migrations' checksums again (logging mismatches if
// warn) and recording those missing.
func (m *Migrator) upToLocked(ctx context.Context, conn *gorm.DB, target string, warn bool) ([]string, error) {
	if err := m.ensureTable(ctx, conn); err != nil {
		return nil, err
	}
	done, err := m.readApplied(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := m.verifyChecksums(ctx, done, warn); err != nil {
		return nil, err
	}
	pending, err := m.plan(done)
	if err != nil {
		return nil, err
	}
	if err := m.adoptChecksums(ctx, conn, done); err != nil {
		return nil, err
	}
	var applied []string
	for _, mig := range cut(pending, target) {
		if err := m.apply(ctx, conn, mig); err != nil {
			return applied, err
		}
		applied = append(applied, mig.ID)
	}
	return applied, nil
}

// logUnknown warns of recorded migrations this code does not have.
func (m *Migrator) logUnknown(ctx context.Context, done []applied) {
	for _, a := range done {
		if _, known := m.byID[a.ID]; !known {
			m.logger.WarnContext(ctx, "the database records a migration this code does not have", slog.String("id", a.ID))
		}
	}
}

// cut returns the migrations up to and including target ("" for all).
func cut(migs []Migration, target string) []Migration {
	if target == "" {
		return migs
	}
	i := slices.IndexFunc(migs, func(m Migration) bool { return m.ID > target })
	if i < 0 {
		return migs
	}
	return migs[:i]
}

// locked runs fn on one pinned connection holding the migration lock, set
// up so that the server notices soon when this process dies (see
// watchClient). The connection is closed afterwards rather than returned to
// the pool: whatever happened (a lock granted just as ctx ended, an unlock
// that failed, a migration that changed a session setting, the settings of
// watchClient), nothing of the run can outlive it in a connection the
// application will use.
func (m *Migrator) locked(ctx context.Context, fn func(conn *gorm.DB) error) (err error) {
	sqlDB, err := m.db.DB()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sqlConn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: pin a connection: %w", err)
	}
	defer func() {
		_ = sqlConn.Raw(func(any) error { return driver.ErrBadConn }) // discard it
		_ = sqlConn.Close()
	}()
	// Before anything is sent that a transaction pooler would leave on a
	// pooled server process (watchClient's settings, the lock).
	if err := m.checkPooler(ctx, sqlConn); err != nil {
		return err
	}
	conn := m.db.Session(&gorm.Session{NewDB: true, Context: ctx})
	conn.Statement.ConnPool = pin(sqlDB, sqlConn)
	if err := m.watchClient(ctx, conn); err != nil {
		return err
	}
	key, err := m.lockKey(ctx, conn)
	if err != nil {
		return err
	}
	if err := m.lock(ctx, conn, key); err != nil {
		return err
	}
	defer func() {
		if uerr := m.unlock(ctx, conn, key); uerr != nil && err == nil {
			err = uerr
		}
	}()
	return fn(conn)
}

// apply runs one migration and records it, in a transaction unless the
// migration opts out. gormigrate does the running and the recording. A panic
// in the migration rolls it back and becomes its error.
//
// A NoTransaction migration that leaves an invalid index behind fails with a
// *InvalidIndexError and is not recorded (see refusingInvalidIndexes).
func (m *Migrator) apply(ctx context.Context, conn *gorm.DB, mig Migration) error {
	up := recovering(mig.Migrate)
	if mig.NoTransaction {
		p, _ := conn.Statement.ConnPool.(*pinnedConn) // always, under the lock
		up = refusingInvalidIndexes(p, up)
	}
	return m.step(ctx, conn, mig, OpUp, func(tx *gorm.DB) error {
		g := gormigrate.New(tx, m.gormigrateOptions(), []*gormigrate.Migration{{ID: mig.ID, Migrate: up, Rollback: mig.Rollback}})
		if err := g.Migrate(); err != nil {
			return err
		}
		return m.recordChecksum(tx, mig)
	})
}

// step runs one migration step (gormigrate on tx), in a transaction unless
// the migration opts out, and logs it with its duration.
func (m *Migrator) step(ctx context.Context, conn *gorm.DB, mig Migration, op Op, run func(tx *gorm.DB) error) (err error) {
	start := time.Now()
	if m.tracer != nil {
		var span trace.Span
		ctx, span = m.tracer.Start(ctx, tracing.SpanMigration, trace.WithAttributes(
			tracing.MigrationID.String(mig.ID), tracing.MigrationOp.String(string(op))))
		defer func() { tracing.End(span, err, nil) }()
	}
	if mig.NoTransaction {
		err = run(conn.WithContext(ctx))
	} else {
		err = conn.WithContext(ctx).Transaction(run)
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// ctx ended as the step did: database/sql rolled the transaction
		// back, and COMMIT found it done (sql.ErrTxDone). The cause is ctx.
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if err != nil {
		return &Error{ID: mig.ID, Op: op, Err: err}
	}
	msg := "migration applied"
	if op == OpDown {
		msg = "migration rolled back"
	}
	m.logger.InfoContext(ctx, msg, slog.String("id", mig.ID), slog.Duration("duration", time.Since(start)))
	return nil
}

func (m *Migrator) gormigrateOptions() *gormigrate.Options {
	return &gormigrate.Options{TableName: m.table, IDColumnName: "id", IDColumnSize: 255}
}

// Down rolls back the last n migrations applied (by when they were applied,
// which is ID order unless some were applied out of order), newest first,
// each in its own transaction together with the removal of its record
// (NoTransaction migrations: without one), and returns the IDs it rolled
// back. If any of them has no Rollback func ([ErrIrreversible]) or is not
// known to this code ([ErrUnknownID]), nothing is changed. A failing
// rollback stops there: its migration stays recorded, and the error is a
// *[Error].
func (m *Migrator) Down(ctx context.Context, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("migrate: down: n must be at least 1, got %d", n)
	}
	return m.down(ctx, func(done []applied) []applied {
		byTime := slices.Clone(done)
		slices.SortStableFunc(byTime, func(a, b applied) int { return a.AppliedAt.Compare(b.AppliedAt) })
		return byTime[max(len(byTime)-n, 0):]
	})
}

// DownTo rolls back every applied migration whose ID sorts after id, newest
// first, as Down does; id itself stays applied. DownTo("") rolls back all.
func (m *Migrator) DownTo(ctx context.Context, id string) ([]string, error) {
	if _, known := m.byID[id]; id != "" && !known {
		return nil, fmt.Errorf("%w %q", ErrUnknownID, id)
	}
	return m.down(ctx, after(id))
}

// after chooses the recorded migrations whose ID sorts after id.
func after(id string) func(done []applied) []applied {
	return func(done []applied) []applied {
		i := slices.IndexFunc(done, func(a applied) bool { return a.ID > id })
		if i < 0 {
			return nil
		}
		return done[i:]
	}
}

// To brings the database to migration id, under one hold of the lock: it
// applies the pending migrations up to and including id, then rolls back
// those applied after it.
func (m *Migrator) To(ctx context.Context, id string) (applied, rolledBack []string, err error) {
	if _, known := m.byID[id]; !known {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownID, id)
	}
	err = m.locked(ctx, func(conn *gorm.DB) error {
		var err error
		if applied, err = m.upToLocked(ctx, conn, id, true); err != nil {
			return err
		}
		rolledBack, err = m.downLocked(ctx, conn, after(id))
		return err
	})
	return applied, rolledBack, err
}

func (m *Migrator) down(ctx context.Context, choose func(done []applied) []applied) ([]string, error) {
	var rolledBack []string
	err := m.locked(ctx, func(conn *gorm.DB) (err error) {
		rolledBack, err = m.downLocked(ctx, conn, choose)
		return err
	})
	return rolledBack, err
}

// downLocked rolls back, under the lock, the recorded migrations choose
// picks (oldest first in its result), newest first.
func (m *Migrator) downLocked(ctx context.Context, conn *gorm.DB, choose func(done []applied) []applied) ([]string, error) {
	done, err := m.readApplied(ctx, conn)
	if err != nil {
		return nil, err
	}
	targets := choose(done)
	var problems []error
	migs := make([]Migration, 0, len(targets))
	for i := len(targets) - 1; i >= 0; i-- {
		k, known := m.byID[targets[i].ID]
		switch {
		case !known:
			problems = append(problems, fmt.Errorf("%w %q: it is applied but this code does not have it", ErrUnknownID, targets[i].ID))
		case m.migrations[k].Rollback == nil:
			problems = append(problems, fmt.Errorf("%w: %q", ErrIrreversible, targets[i].ID))
		default:
			migs = append(migs, m.migrations[k])
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("migrate: nothing was rolled back: %w", errors.Join(problems...))
	}
	var rolledBack []string
	for _, mig := range migs {
		if err := m.rollback(ctx, conn, mig); err != nil {
			return rolledBack, err
		}
		rolledBack = append(rolledBack, mig.ID)
	}
	return rolledBack, nil
}

// rollback runs one Rollback and removes its record, in a transaction unless
// the migration opts out.
func (m *Migrator) rollback(ctx context.Context, conn *gorm.DB, mig Migration) error {
	return m.step(ctx, conn, mig, OpDown, func(tx *gorm.DB) error {
		gm := &gormigrate.Migration{ID: mig.ID, Migrate: mig.Migrate, Rollback: recovering(mig.Rollback)}
		return gormigrate.New(tx, m.gormigrateOptions(), []*gormigrate.Migration{gm}).RollbackMigration(gm)
	})
}

// recovering turns a panic in f into an error, so that a migration that
// panics is rolled back and reported like one that fails.
func recovering(f func(*gorm.DB) error) func(*gorm.DB) error {
	if f == nil {
		return nil
	}
	return func(tx *gorm.DB) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return f(tx)
	}
}

func ids(migs []Migration) []string {
	out := make([]string, len(migs))
	for i, m := range migs {
		out[i] = m.ID
	}
	return out
}

// quoteIdent quotes a possibly schema-qualified identifier.
func quoteIdent(name string) string { return pgx.Identifier(strings.Split(name, ".")).Sanitize() }

// Up validates migrations and applies those not yet applied to db; see
// [Migrator.Up].
func Up(ctx context.Context, db *gorm.DB, migrations []Migration, opts ...Option) ([]string, error) {
	m, err := New(db, migrations, opts...)
	if err != nil {
		return nil, err
	}
	return m.Up(ctx)
}
