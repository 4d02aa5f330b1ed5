package migrate

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"
)

// LockKey returns the key of the PostgreSQL advisory lock that migrators of
// a table take: a 64-bit FNV-1a hash of "dbkit/migrate:" and the table's
// schema-qualified name, such as "public.dbkit_migrations". A Migrator given
// an unqualified name qualifies it with the connection's current schema
// first, so that "dbkit_migrations" and "public.dbkit_migrations" take the
// same lock.
func LockKey(qualifiedTable string) int64 {
	h := fnv.New64a()
	h.Write([]byte("dbkit/migrate:" + qualifiedTable))
	return int64(h.Sum64())
}

// lockKey returns the lock key of m's table as conn sees it.
func (m *Migrator) lockKey(ctx context.Context, conn *gorm.DB) (int64, error) {
	table := m.table
	if !strings.Contains(table, ".") {
		var schema string
		if err := conn.WithContext(ctx).Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
			return 0, fmt.Errorf("migrate: find the current schema: %w", err)
		}
		table = schema + "." + table
	}
	return LockKey(table), nil
}

// How soon the server notices that the migrator holding the lock is gone.
// A backend running a statement does not read from its client, so by
// default it finds out that the client died (and releases the lock) only
// when the statement ends. client_connection_check_interval (PostgreSQL 14
// and later, on servers whose platform can report a closed socket, as
// Linux can) makes it check the socket this often while it runs a
// statement: a killed process's socket is closed by its kernel at once. TCP
// keepalives cover a host or network that vanished without closing
// anything: the server gives up on a silent client after about idle +
// interval × count seconds.
const (
	clientCheckInterval = "1s"
	keepalivesIdle      = "5"
	keepalivesInterval  = "2"
	keepalivesCount     = "3"
)

// watchClient sets up the pinned session so that the server notices within
// seconds that this migrator died, and ends its session, its transaction
// and its lock. These are session settings any user may change; the pinned
// connection is closed after the run, so they do not reach the pool. A
// server that refuses them (an older or another platform) is only logged:
// the migrator works without them, as it did before.
func (m *Migrator) watchClient(ctx context.Context, conn *gorm.DB) error {
	// One statement without arguments: pgx sends it in one round trip.
	err := conn.WithContext(ctx).Exec(`SELECT set_config('tcp_keepalives_idle', '` + keepalivesIdle + `', false),
		set_config('tcp_keepalives_interval', '` + keepalivesInterval + `', false),
		set_config('tcp_keepalives_count', '` + keepalivesCount + `', false),
		CASE WHEN current_setting('server_version_num')::int >= 140000
			THEN set_config('client_connection_check_interval', '` + clientCheckInterval + `', false) END`).Error
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("migrate: set up the migration connection: %w", ctx.Err())
		}
		m.logger.WarnContext(ctx, "the server may not notice soon that this migrator died: setting up the connection failed",
			slog.String("error", err.Error()))
	}
	return nil
}

// lock takes the session-level advisory lock on conn, the pinned connection
// the whole run uses, polling pg_try_advisory_lock so that the wait is
// bounded by m.lockTimeout and by ctx. On timeout it reports who holds it.
func (m *Migrator) lock(ctx context.Context, conn *gorm.DB, key int64) error {
	start := time.Now()
	deadline := start.Add(m.lockTimeout)
	backoff := 20 * time.Millisecond
	logged := false
	for {
		var ok bool
		if err := conn.WithContext(ctx).Raw("SELECT pg_try_advisory_lock(?)", key).Scan(&ok).Error; err != nil {
			return fmt.Errorf("migrate: take the migration lock: %w", err)
		}
		if ok {
			if logged {
				m.logger.InfoContext(ctx, "migration lock acquired", "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if !logged {
			holders, _ := m.lockHolders(ctx, conn, key)
			m.logger.InfoContext(ctx, "waiting for the migration lock", "holders", fmt.Sprint(holders), "timeout", m.lockTimeout)
			logged = true
		}
		if time.Now().After(deadline) {
			holders, err := m.lockHolders(ctx, conn, key)
			if err != nil {
				return fmt.Errorf("%w (and listing its holders failed: %w)", &LockTimeoutError{Waited: time.Since(start)}, err)
			}
			return &LockTimeoutError{Waited: time.Since(start), Holders: holders}
		}
		wait := min(backoff, time.Until(deadline))
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate: waiting for the migration lock: %w", ctx.Err())
		case <-time.After(max(wait, time.Millisecond)):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// unlock releases the lock at once, even when ctx has ended (its values,
// the trace among them, are kept). The pinned connection is closed
// afterwards, which would release it too.
func (m *Migrator) unlock(ctx context.Context, conn *gorm.DB, key int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var ok bool
	if err := conn.WithContext(ctx).Raw("SELECT pg_advisory_unlock(?)", key).Scan(&ok).Error; err != nil {
		return fmt.Errorf("migrate: release the migration lock: %w", err)
	}
	return nil
}

// lockHolders lists the sessions holding the advisory lock key. A bigint
// advisory lock appears in pg_locks with its high half in classid and its
// low half in objid, and objsubid 1.
func (m *Migrator) lockHolders(ctx context.Context, conn *gorm.DB, key int64) ([]LockHolder, error) {
	u := uint64(key)
	var rows []struct {
		PID             int `gorm:"column:pid"`
		ApplicationName string
		ClientAddr      string
		BackendStart    time.Time
		State           string
	}
	err := conn.WithContext(ctx).Raw(`
		SELECT a.pid, coalesce(a.application_name, '') AS application_name,
		       coalesce(host(a.client_addr), '') AS client_addr,
		       a.backend_start, coalesce(a.state, '') AS state
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted
		  AND l.classid::bigint = ? AND l.objid::bigint = ? AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY a.pid`, int64(u>>32), int64(u&0xffffffff)).Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	holders := make([]LockHolder, len(rows))
	for i, r := range rows {
		holders[i] = LockHolder(r)
	}
	return holders, nil
}
