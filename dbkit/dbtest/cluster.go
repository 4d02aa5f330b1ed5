package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dbkit-go/database/dbkit"
)

// How long the cluster's waits last at most, whatever the caller's ctx.
const (
	streamTimeout = 30 * time.Second // a standby streaming from the primary
	replayTimeout = 30 * time.Second // a standby replaying the primary's WAL
	pauseTimeout  = 10 * time.Second // a standby's replay pausing
)

// Cluster is a primary and its streaming read replicas, started by
// [StartCluster] and stopped by [Cluster.Stop].
type Cluster struct {
	primary  *Server
	replicas []*Standby

	stopOnce sync.Once
	stopErr  error
}

// Primary returns the primary: a [Server] as [StartLocal] returns, whose
// NewDatabase, New, Exec and Config work as on any other.
func (c *Cluster) Primary() *Server { return c.primary }

// Replicas returns the standbys, in the order of their names (replica1,
// replica2...).
func (c *Cluster) Replicas() []*Standby { return c.replicas }

// NewDatabase creates a database for the calling test on the primary, as
// [Server.NewDatabase] does (dropped when the test passes), waits until every
// running replica whose replay is not paused has replayed its creation
// ([Cluster.WaitForReplay]), and returns its configuration with Replicas set:
// one dbkit.Replica per standby, named as the standby. Failures end the test
// with t.Fatalf.
func (c *Cluster) NewDatabase(t TB) dbkit.Config {
	t.Helper()
	cfg := c.primary.NewDatabase(t)
	if cfg.Database == "" {
		return cfg // t.Fatalf was called
	}
	ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
	defer cancel()
	if err := c.WaitForReplay(ctx); err != nil {
		t.Fatalf("dbtest: database %q created on the primary: %v", cfg.Database, err)
		return dbkit.Config{}
	}
	for _, s := range c.replicas {
		cfg.Replicas = append(cfg.Replicas, dbkit.Replica{Host: s.host, Port: s.port, Name: s.name})
	}
	return cfg
}

// WaitForReplay waits until every running replica whose replay is not
// paused has replayed the primary's WAL up to its current insert location,
// and so every transaction committed on the primary before the call. It
// waits at most 30 s in all, whatever the number of replicas, and less if
// ctx ends sooner.
func (c *Cluster) WaitForReplay(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	var lsn string
	err := c.primary.pool.QueryRowContext(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
	if err != nil {
		return fmt.Errorf("dbtest: the primary's WAL insert location: %w", err)
	}
	for _, s := range c.replicas {
		if err := s.waitForReplay(ctx, lsn); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops the replicas and the primary and removes their directories.
// It is safe to call twice.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		var errs []error
		for _, s := range c.replicas {
			errs = append(errs, s.stop(ctx))
		}
		errs = append(errs, c.primary.Stop(ctx))
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// Standby is a streaming replica of a [Cluster]'s primary: a hot standby
// that answers reads, on 127.0.0.1.
type Standby struct {
	name string // its cluster_name and replication slot
	host string
	port int

	mu      sync.Mutex
	proc    standbyProcess
	srv     *Server // its admin pool; nil while it does not run
	removed bool    // Cluster.Stop stopped it for good
}

// standbyProcess is a standby's postgres as the platform runs it.
type standbyProcess interface {
	// kill sends SIGKILL to the postmaster and returns once it and its
	// children are gone.
	kill() error
	// start runs postgres again on the same port and data directory, and
	// returns an admin connection once it accepts connections.
	start(ctx context.Context) (*Server, error)
	// stop stops postgres and removes its directory.
	stop(ctx context.Context) error
	// logTail is the end of the server's log, for error messages.
	logTail() string
}

// Host is the standby's address, 127.0.0.1.
func (s *Standby) Host() string { return s.host }

// Port is the standby's TCP port; it keeps it across Kill and Start.
func (s *Standby) Port() int { return s.port }

// Name is the standby's name: its cluster_name, the application_name it
// streams under (pg_stat_replication on the primary) and its replication
// slot, "replica1" for the first.
func (s *Standby) Name() string { return s.name }

// PauseReplay pauses the standby's replay of the primary's WAL
// (pg_wal_replay_pause) and waits until it has paused: the standby keeps
// receiving WAL but shows the data as it was, lagging behind the primary
// until [Standby.ResumeReplay].
func (s *Standby) PauseReplay(ctx context.Context) error {
	if err := s.exec(ctx, "pause", "SELECT pg_wal_replay_pause()"); err != nil {
		return err
	}
	return s.waitFor(ctx, pauseTimeout, "pause its replay", func(ctx context.Context, db *sql.DB) (bool, string, error) {
		var state string
		err := db.QueryRowContext(ctx, "SELECT pg_get_wal_replay_pause_state()").Scan(&state)
		return state == "paused", "pause state " + state, err
	})
}

// ResumeReplay resumes the standby's replay (pg_wal_replay_resume), which
// then catches up with the primary: [Cluster.WaitForReplay] waits for it.
func (s *Standby) ResumeReplay(ctx context.Context) error {
	return s.exec(ctx, "resume", "SELECT pg_wal_replay_resume()")
}

// exec runs query on the standby, to do what to its replay.
func (s *Standby) exec(ctx context.Context, what, query string) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, query); err != nil {
		return fmt.Errorf("dbtest: %s the replay of %s: %w", what, s.name, err)
	}
	return nil
}

// ReplayLSN returns the location of the last WAL record the standby
// replayed (pg_last_wal_replay_lsn), such as "0/3000148".
func (s *Standby) ReplayLSN(ctx context.Context) (string, error) {
	db, err := s.db()
	if err != nil {
		return "", err
	}
	var lsn sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("dbtest: replay location of %s: %w", s.name, err)
	}
	if !lsn.Valid {
		return "", fmt.Errorf("dbtest: %s has replayed nothing: is it a standby?", s.name)
	}
	return lsn.String, nil
}

// Kill ends the standby as a crash would: SIGKILL to its postmaster, whose
// children then exit. It returns once they are all gone and the standby
// refuses connections. [Standby.Start] starts it again.
func (s *Standby) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return s.notRunning()
	}
	_ = s.srv.pool.Close()
	s.srv = nil
	if err := s.proc.kill(); err != nil {
		return fmt.Errorf("dbtest: kill %s: %w", s.name, err)
	}
	return nil
}

// Start starts a standby that [Standby.Kill] stopped, on the same port and
// data directory, and returns once it streams from the primary again (it
// then replays what the primary wrote meanwhile).
func (s *Standby) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return fmt.Errorf("dbtest: start %s: the cluster was stopped", s.name)
	}
	if s.srv != nil {
		return fmt.Errorf("dbtest: start %s: it is running", s.name)
	}
	srv, err := s.proc.start(ctx)
	if err != nil {
		return fmt.Errorf("dbtest: start %s: %w", s.name, err)
	}
	s.srv = srv
	return s.waitStreamingLocked(ctx)
}

// stop stops the standby for good and removes its directory.
func (s *Standby) stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return nil
	}
	s.removed = true
	if s.srv != nil {
		_ = s.srv.pool.Close()
		s.srv = nil
	}
	return s.proc.stop(ctx)
}

// db returns the standby's admin pool.
func (s *Standby) db() (*sql.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil, s.notRunning()
	}
	return s.srv.pool, nil
}

func (s *Standby) notRunning() error {
	if s.removed {
		return fmt.Errorf("dbtest: %s is not running: the cluster was stopped", s.name)
	}
	return fmt.Errorf("dbtest: %s is not running (Kill stopped it; Start starts it again)", s.name)
}

// waitStreamingLocked waits until the standby's WAL receiver streams from
// the primary. The caller holds s.mu.
func (s *Standby) waitStreamingLocked(ctx context.Context) error {
	return s.waitOn(ctx, s.srv.pool, streamTimeout, "stream from the primary",
		func(ctx context.Context, db *sql.DB) (bool, string, error) {
			var status sql.NullString
			err := db.QueryRowContext(ctx, "SELECT (SELECT status FROM pg_stat_wal_receiver)").Scan(&status)
			if !status.Valid {
				status.String = "no WAL receiver"
			}
			return status.String == "streaming", "WAL receiver: " + status.String, err
		})
}

// waitForReplay waits until the standby has replayed the WAL up to lsn, or
// returns at once when it does not run or its replay is paused.
func (s *Standby) waitForReplay(ctx context.Context, lsn string) error {
	db, err := s.db()
	if err != nil {
		return nil // killed: nothing to wait for
	}
	return s.waitOn(ctx, db, replayTimeout, "replay the primary's WAL up to "+lsn,
		func(ctx context.Context, db *sql.DB) (bool, string, error) {
			var paused bool
			var replayed sql.NullString
			err := db.QueryRowContext(ctx, "SELECT pg_get_wal_replay_pause_state() <> 'not paused', "+
				"CASE WHEN pg_last_wal_replay_lsn() >= $1::pg_lsn THEN '' ELSE pg_last_wal_replay_lsn()::text END", lsn).
				Scan(&paused, &replayed)
			return paused || (replayed.Valid && replayed.String == ""), "replayed up to " + replayed.String, err
		})
}

// waitFor is waitOn with the standby's admin pool.
func (s *Standby) waitFor(ctx context.Context, timeout time.Duration, what string,
	check func(ctx context.Context, db *sql.DB) (done bool, state string, err error)) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	return s.waitOn(ctx, db, timeout, what, check)
}

// waitOn runs check on db every few milliseconds until it reports done, for
// at most timeout and while ctx lasts. An error of check is taken as "not
// yet". The error says what was awaited, what check saw last and the end of
// the standby's log.
func (s *Standby) waitOn(ctx context.Context, db *sql.DB, timeout time.Duration, what string,
	check func(ctx context.Context, db *sql.DB) (done bool, state string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		done, state, err := check(ctx, db)
		if err == nil && done {
			return nil
		}
		last = state
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dbtest: waiting for %s (%s) to %s: %w; last seen: %s; its log ends:\n%s",
				s.name, fmt.Sprintf("127.0.0.1:%d", s.port), what, ctx.Err(), last, s.proc.logTail())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
