package migrate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/internal/sqlstate"
)

// Sentinels, matched with errors.Is.
var (
	// ErrLockTimeout: another migrator held the lock for longer than the
	// lock timeout. The error is a *LockTimeoutError naming the holders.
	ErrLockTimeout = errors.New("migrate: timed out waiting for the migration lock")
	// ErrIrreversible: a migration to roll back has no Rollback func.
	ErrIrreversible = errors.New("migrate: migration has no Rollback func")
	// ErrPending: migrations are not applied (see [Migrator.Check]).
	ErrPending = errors.New("migrate: migrations pending")
	// ErrUnknownID: an ID given to a command, or one to roll back, is not
	// among the migrations of this code.
	ErrUnknownID = errors.New("migrate: unknown migration ID")
	// ErrInvalidIndex: a NoTransaction migration left an invalid index
	// behind, and was not recorded. The error is a *InvalidIndexError,
	// inside the *Error of the migration.
	ErrInvalidIndex = errors.New("migrate: migration left an invalid index")
	// ErrChecksumMismatch: applied migrations were edited since: their
	// code's Checksum differs from the recorded one. The error is a
	// *ChecksumError listing them.
	ErrChecksumMismatch = errors.New("migrate: applied migration changed")
	// ErrTransactionPooler: the migrator's connection goes through a
	// pooler in transaction mode (PgBouncer's pool_mode = transaction),
	// which hands a server process to another client after each
	// transaction: the session advisory lock the migrator takes would not
	// hold. Up, Down, DownTo and To return it before taking the lock, so
	// nothing was changed. Migrate on a direct connection to the server.
	ErrTransactionPooler = errors.New("migrate: session advisory locks do not hold through a transaction pooler: " +
		"give the server's own address for migrations (dbkit Config.DirectHost / DATABASE_DIRECT_URL)")
)

// Error reports the migration that failed, applying it (OpUp) or rolling it
// back (OpDown). Migrations before it stay as they were made; those after it
// did not run. The failed one is not recorded (or, for a rollback, stays
// recorded), and its transaction was rolled back, so it left nothing behind,
// unless it is a NoTransaction migration: then what it did before failing
// stays done.
//
// Its message withholds what the server said, which may quote a value the
// migration bound or a row it read: of a *pgconn.PgError it keeps the
// SQLSTATE, its condition name, the position and the names of the objects
// concerned, as dbkit does (`ERROR: undefined_table (SQLSTATE 42P01)`).
// Err, reachable with errors.As, holds the server's message, detail and
// hint.
type Error struct {
	ID  string
	Op  Op
	Err error
}

func (e *Error) Error() string {
	op := "migration"
	if e.Op == OpDown {
		op = "rollback of migration"
	}
	return fmt.Sprintf("migrate: %s %q: %s", op, e.ID, withheld(e.Err))
}

// withheld is err's text with what the *pgconn.PgError it wraps, if any,
// may quote replaced: its own text by sqlstate.Describe, and its message,
// detail, hint and context, wherever a wrapper repeated them, by
// "[withheld]". An error that dbkit translated carries none of them
// already, and is left as it is.
func withheld(err error) string {
	if err == nil {
		return "<nil>"
	}
	text := err.Error()
	for _, pgErr := range pgErrors(err, nil) {
		text = strings.ReplaceAll(text, pgErr.Error(), sqlstate.Describe(pgErr))
		for _, s := range []string{pgErr.Message, pgErr.Detail, pgErr.Hint, pgErr.Where, pgErr.InternalQuery} {
			if s != "" {
				text = strings.ReplaceAll(text, s, "[withheld]")
			}
		}
	}
	return text
}

// pgErrors appends every *pgconn.PgError in err's tree to out: a joined
// error can hold several.
func pgErrors(err error, out []*pgconn.PgError) []*pgconn.PgError {
	if pgErr, ok := err.(*pgconn.PgError); ok {
		return append(out, pgErr)
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			out = pgErrors(inner, out)
		}
	case interface{ Unwrap() []error }:
		for _, inner := range u.Unwrap() {
			if inner != nil {
				out = pgErrors(inner, out)
			}
		}
	}
	return out
}

func (e *Error) Unwrap() error { return e.Err }

// ValidationError lists every problem found in a set of migrations, alone or
// against what the database has applied, before any of them ran.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "migrate: invalid migrations: " + strings.Join(e.Problems, "; ")
}

// LockHolder is a session holding the migration lock, from pg_stat_activity.
type LockHolder struct {
	PID             int
	ApplicationName string
	ClientAddr      string
	BackendStart    time.Time
	State           string // pg_stat_activity.state: active, idle, idle in transaction...
}

func (h LockHolder) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d", h.PID)
	if h.ApplicationName != "" {
		fmt.Fprintf(&b, " (application_name %q)", h.ApplicationName)
	}
	if h.ClientAddr != "" {
		fmt.Fprintf(&b, " from %s", h.ClientAddr)
	}
	if h.State != "" {
		fmt.Fprintf(&b, ", %s", h.State)
	}
	if !h.BackendStart.IsZero() {
		fmt.Fprintf(&b, ", connected since %s", h.BackendStart.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// LockTimeoutError reports that the lock stayed held for Waited; it matches
// ErrLockTimeout. Holders is empty when the holder released the lock just as
// the wait ended.
type LockTimeoutError struct {
	Waited  time.Duration
	Holders []LockHolder
}

func (e *LockTimeoutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrate: the migration lock is still held after %v", e.Waited.Round(time.Millisecond))
	if len(e.Holders) == 0 {
		b.WriteString(" (its holder has just released it)")
	}
	for i, h := range e.Holders {
		if i == 0 {
			b.WriteString(" by ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(h.String())
	}
	b.WriteString(": another migrator is running, or a session died holding it (pg_terminate_backend ends it)")
	return b.String()
}

func (e *LockTimeoutError) Is(target error) bool { return target == ErrLockTimeout }

// PendingError lists migrations that are not applied; it matches ErrPending.
type PendingError struct {
	IDs []string
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("migrate: %d migration(s) not applied: %s", len(e.IDs), strings.Join(e.IDs, ", "))
}

func (e *PendingError) Is(target error) bool { return target == ErrPending }

// InvalidIndexError reports the invalid indexes (pg_index.indisvalid false)
// a NoTransaction migration left behind: indexes invalid after it that were
// not before, and indexes invalid before and after it that it named in a
// statement (an IF NOT EXISTS that skipped over one, say). The migration is
// not recorded. A failed CREATE INDEX CONCURRENTLY leaves such an index;
// it enforces nothing, and must be dropped (DROP INDEX CONCURRENTLY) before
// it is built again. It matches ErrInvalidIndex.
type InvalidIndexError struct {
	Indexes []string // as PostgreSQL names them: schema-qualified unless on the search path
}

func (e *InvalidIndexError) Error() string {
	return fmt.Sprintf("migrate: the migration left %d invalid index(es) behind: %s "+
		"(a failed CREATE INDEX CONCURRENTLY leaves one, which IF NOT EXISTS then skips; "+
		"drop it with DROP INDEX CONCURRENTLY before building it again)", len(e.Indexes), strings.Join(e.Indexes, ", "))
}

func (e *InvalidIndexError) Is(target error) bool { return target == ErrInvalidIndex }

// ChecksumMismatch is an applied migration whose code has changed: the
// checksum recorded when it was applied, and the one of the code now.
type ChecksumMismatch struct {
	ID       string
	Recorded string
	Code     string
}

// ChecksumError lists every applied migration whose code's Checksum differs
// from the recorded one; nothing was applied. It matches
// ErrChecksumMismatch.
type ChecksumError struct {
	Mismatches []ChecksumMismatch
}

func (e *ChecksumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrate: %d applied migration(s) changed since they were applied:", len(e.Mismatches))
	for i, c := range e.Mismatches {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %q (checksum recorded %q, in the code %q)", c.ID, c.Recorded, c.Code)
	}
	b.WriteString(": restore them and put the change in a new migration, or, if the change is harmless, record the new checksum")
	return b.String()
}

func (e *ChecksumError) Is(target error) bool { return target == ErrChecksumMismatch }
