package migrate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
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
	// keep it to one statement, written to be re-run (IF NOT EXISTS).
	NoTransaction bool
}

// Option configures a [Migrator].
type Option func(*Migrator)

// WithTableName records applied migrations in table name (it may be
// schema-qualified) instead of [DefaultTableName].
func WithTableName(name string) Option { return func(m *Migrator) { m.table = name } }

// WithLogger logs each migration applied or rolled back, with its duration,
// and waits for the lock, at INFO.
func WithLogger(l *slog.Logger) Option { return func(m *Migrator) { m.logger = l } }

// WithLockTimeout bounds the wait for another migrator's lock
// ([DefaultLockTimeout]); past it Up fails with a *[LockTimeoutError].
func WithLockTimeout(d time.Duration) Option { return func(m *Migrator) { m.lockTimeout = d } }

// AllowOutOfOrder lets Up apply a pending migration whose ID sorts before
// the last applied one (a branch merged late). By default that is a
// validation error, since the migration was likely written against an older
// schema.
func AllowOutOfOrder() Option { return func(m *Migrator) { m.allowOutOfOrder = true } }

// RejectUnknown makes Up refuse to run when the database records migrations
// this code does not have (for example after deploying an older version).
// By default they are reported by Status and logged, and Up goes on.
func RejectUnknown() Option { return func(m *Migrator) { m.rejectUnknown = true } }

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
}

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
	if m.table == "" {
		problems = append(problems, "the table name is empty")
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
	recorded := make(map[string]time.Time, len(done))
	for _, a := range done {
		recorded[a.ID] = a.AppliedAt
		if _, known := m.byID[a.ID]; !known {
			out = append(out, MigrationStatus{ID: a.ID, State: Unknown, AppliedAt: a.AppliedAt})
		}
	}
	for _, mig := range m.migrations {
		if at, ok := recorded[mig.ID]; ok {
			out = append(out, MigrationStatus{ID: mig.ID, State: Applied, AppliedAt: at})
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
// and without taking the lock. It fails as Up would on out-of-order or
// (with RejectUnknown) unknown migrations.
func (m *Migrator) Plan(ctx context.Context) ([]string, error) {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
		return nil, err
	}
	pending, err := m.plan(done)
	return ids(pending), err
}

// Check returns a *[PendingError] when migrations are not applied, without
// applying them: for services that migrate in a separate job and must not
// start on an old schema.
func (m *Migrator) Check(ctx context.Context) error {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
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
func (m *Migrator) Up(ctx context.Context) ([]string, error) {
	return m.upTo(ctx, "")
}

// upTo applies pending migrations up to and including target ("" for all).
func (m *Migrator) upTo(ctx context.Context, target string) ([]string, error) {
	done, err := m.readApplied(ctx, m.db)
	if err != nil {
		return nil, err
	}
	pending, err := m.plan(done)
	if err != nil || len(cut(pending, target)) == 0 {
		return nil, err
	}
	var applied []string
	err = m.locked(ctx, func(conn *gorm.DB) error {
		if err := m.ensureTable(ctx, conn); err != nil {
			return err
		}
		done, err := m.readApplied(ctx, conn)
		if err != nil {
			return err
		}
		pending, err := m.plan(done)
		if err != nil {
			return err
		}
		for _, mig := range cut(pending, target) {
			if err := m.apply(ctx, conn, mig); err != nil {
				return err
			}
			applied = append(applied, mig.ID)
		}
		return nil
	})
	return applied, err
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

// locked runs fn on one pinned connection holding the migration lock.
func (m *Migrator) locked(ctx context.Context, fn func(conn *gorm.DB) error) error {
	return m.db.WithContext(ctx).Connection(func(pinned *gorm.DB) (err error) {
		conn := pinned.Session(&gorm.Session{NewDB: true})
		if err := m.lock(ctx, conn); err != nil {
			return err
		}
		defer func() {
			if uerr := m.unlock(conn); uerr != nil && err == nil {
				err = uerr
			}
		}()
		return fn(conn)
	})
}

// apply runs one migration and records it, in a transaction unless the
// migration opts out. gormigrate does the running and the recording.
func (m *Migrator) apply(ctx context.Context, conn *gorm.DB, mig Migration) error {
	start := time.Now()
	run := func(tx *gorm.DB) error {
		g := gormigrate.New(tx, m.gormigrateOptions(), []*gormigrate.Migration{{ID: mig.ID, Migrate: mig.Migrate, Rollback: mig.Rollback}})
		return g.Migrate()
	}
	var err error
	if mig.NoTransaction {
		err = run(conn.WithContext(ctx))
	} else {
		err = conn.WithContext(ctx).Transaction(run)
	}
	if err != nil {
		return &Error{ID: mig.ID, Op: "up", Err: err}
	}
	m.logger.InfoContext(ctx, "migration applied", slog.String("id", mig.ID), slog.Duration("duration", time.Since(start)))
	return nil
}

func (m *Migrator) gormigrateOptions() *gormigrate.Options {
	return &gormigrate.Options{TableName: m.table, IDColumnName: "id", IDColumnSize: 255}
}

// Down rolls back the last n applied migrations, newest first, each in its
// own transaction together with the removal of its record, and returns the
// IDs it rolled back. If any of them has no Rollback func, or is not known to
// this code, nothing is changed. A failing rollback stops there: its
// migration stays applied and recorded, and the error is a *[Error].
func (m *Migrator) Down(ctx context.Context, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("migrate: down: n must be at least 1, got %d", n)
	}
	return m.down(ctx, func(done []applied) []applied {
		return done[max(len(done)-n, 0):]
	})
}

// DownTo rolls back every applied migration whose ID sorts after id, newest
// first, as Down does; id itself stays applied. DownTo("") rolls back all.
func (m *Migrator) DownTo(ctx context.Context, id string) ([]string, error) {
	if _, known := m.byID[id]; id != "" && !known {
		return nil, fmt.Errorf("%w %q", ErrUnknownID, id)
	}
	return m.down(ctx, func(done []applied) []applied {
		i := slices.IndexFunc(done, func(a applied) bool { return a.ID > id })
		if i < 0 {
			return nil
		}
		return done[i:]
	})
}

// To brings the database to migration id: it applies the pending migrations
// up to and including id, or rolls back those applied after it.
func (m *Migrator) To(ctx context.Context, id string) (applied, rolledBack []string, err error) {
	if _, known := m.byID[id]; !known {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownID, id)
	}
	applied, err = m.upTo(ctx, id)
	if err != nil {
		return applied, nil, err
	}
	rolledBack, err = m.DownTo(ctx, id)
	return applied, rolledBack, err
}

func (m *Migrator) down(ctx context.Context, choose func(done []applied) []applied) ([]string, error) {
	var rolledBack []string
	err := m.locked(ctx, func(conn *gorm.DB) error {
		done, err := m.readApplied(ctx, conn)
		if err != nil {
			return err
		}
		targets := choose(done)
		var problems []string
		migs := make([]Migration, 0, len(targets))
		for i := len(targets) - 1; i >= 0; i-- {
			k, known := m.byID[targets[i].ID]
			switch {
			case !known:
				problems = append(problems, fmt.Sprintf("migration %q is applied but unknown to this code: it cannot be rolled back from here", targets[i].ID))
			case m.migrations[k].Rollback == nil:
				problems = append(problems, fmt.Sprintf("migration %q has no Rollback func", targets[i].ID))
			default:
				migs = append(migs, m.migrations[k])
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: nothing was rolled back: %s", ErrIrreversible, strings.Join(problems, "; "))
		}
		for _, mig := range migs {
			if err := m.rollback(ctx, conn, mig); err != nil {
				return err
			}
			rolledBack = append(rolledBack, mig.ID)
		}
		return nil
	})
	return rolledBack, err
}

// rollback runs one Rollback and removes its record, in a transaction unless
// the migration opts out.
func (m *Migrator) rollback(ctx context.Context, conn *gorm.DB, mig Migration) error {
	start := time.Now()
	run := func(tx *gorm.DB) error {
		gm := &gormigrate.Migration{ID: mig.ID, Migrate: mig.Migrate, Rollback: mig.Rollback}
		return gormigrate.New(tx, m.gormigrateOptions(), []*gormigrate.Migration{gm}).RollbackMigration(gm)
	}
	var err error
	if mig.NoTransaction {
		err = run(conn.WithContext(ctx))
	} else {
		err = conn.WithContext(ctx).Transaction(run)
	}
	if err != nil {
		return &Error{ID: mig.ID, Op: "down", Err: err}
	}
	m.logger.InfoContext(ctx, "migration rolled back", slog.String("id", mig.ID), slog.Duration("duration", time.Since(start)))
	return nil
}

func ids(migs []Migration) []string {
	out := make([]string, len(migs))
	for i, m := range migs {
		out[i] = m.ID
	}
	return out
}

// quoteIdent quotes a possibly schema-qualified identifier.
func quoteIdent(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// Up validates migrations and applies those not yet applied to db; see
// [Migrator.Up].
func Up(ctx context.Context, db *gorm.DB, migrations []Migration, opts ...Option) ([]string, error) {
	m, err := New(db, migrations, opts...)
	if err != nil {
		return nil, err
	}
	return m.Up(ctx)
}
