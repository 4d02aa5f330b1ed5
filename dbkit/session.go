package dbkit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/internal/wal"
)

// Session gives one user (a browser session, an API client) read-your-writes
// over read replicas ([Config.Replicas]): a read in a ctx carrying the
// Session ([WithSession]) goes to a replica only once that replica has
// replayed every write the Session made, and to the primary until then. No
// read waits and nothing sticks to the primary for a fixed time: the first
// replica that has caught up serves the reads again.
//
// A write is anything run on the primary in such a ctx: the repository's
// writes, [DB.InTx] (at its commit), [DB.Exec], SQL run through [DB.Gorm] and
// [DB.WithPgxConn]. The Session keeps the primary's WAL location after the
// last write; it asks the primary for it at the first read (or
// [Session.Token]) after a write, once: one round trip per write, none for
// reads that follow no write.
//
// [Session.Token] carries the position to the user's next request, in a
// cookie or a header, where [NewSession] reads it back: read-your-writes
// holds across requests and across the service's instances. A token is the
// WAL location and nothing else; one that names a location the primary has
// not reached (forged, or from another cluster) is replaced by the
// primary's current location, which only sends that user's reads to the
// primary until the replicas catch up.
//
// A Session is safe for concurrent use. A read that runs concurrently with
// a write of the same Session may or may not see it, as on one server.
type Session struct {
	// writes counts the writes made; covered is the count the position
	// covers. Both only grow.
	writes atomic.Uint64
	writer atomic.Pointer[router] // the router of the last write's DB

	mu      sync.Mutex
	lsn     wal.LSN
	covered uint64
}

// tokenPrefix starts every session token: its format's version.
const tokenPrefix = "wal1:"

// NewSession returns a Session that starts at the position of token, as
// [Session.Token] returned it ("" for none: a new user). A token that does
// not parse is an error matching [ErrInvalid], returned with an empty
// Session that works as well: a service may log the error and go on.
func NewSession(token string) (*Session, error) {
	s := &Session{}
	if token == "" {
		return s, nil
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	lsn, err := wal.Parse(rest)
	if !ok || err != nil || len(token) > 64 {
		return s, fmt.Errorf("dbkit: session token: %w: not a token Session.Token made", ErrInvalid)
	}
	s.lsn = lsn
	return s, nil
}

// Token returns the Session's position for the user's next request (see
// [NewSession]), "" when it has none. After a write it asks the primary of
// the write's DB for its WAL location, once.
func (s *Session) Token(ctx context.Context) (string, error) {
	r := s.writer.Load()
	lsn := s.current()
	if r != nil {
		var err error
		if lsn, err = s.position(ctx, r); err != nil {
			return "", err
		}
	}
	if lsn == 0 {
		return "", nil
	}
	return tokenPrefix + lsn.String(), nil
}

func (s *Session) current() wal.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lsn
}

type sessionKey struct{}

// WithSession returns a ctx carrying s: reads in it see the writes made in
// it, and in any ctx carrying s.
func WithSession(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

func sessionFrom(ctx context.Context) *Session {
	s, _ := ctx.Value(sessionKey{}).(*Session)
	return s
}

// readOnlyKey marks, in a statement's settings, SQL dbkit runs on the
// primary that only reads (the catalog's queries): not a write of the
// Session in its ctx.
type readOnlyKey struct{}

// markWrite records a statement GORM ran as a write of the Session in its
// ctx, unless it was a repository read (routed), a dry run (nothing was
// sent: Patch and Upsert build their SQL so, and send it after), or
// dbkit's own read.
func (db *DB) markWrite(tx *gorm.DB) {
	st := tx.Statement
	if tx.DryRun || db.routeFrom(st.Context) != nil {
		return
	}
	if _, ro := st.Settings.Load(readOnlyKey{}); ro {
		return
	}
	db.wrote(st.Context)
}

// wrote records, when ctx carries a Session and db has replicas, that a
// write in ctx has ended: the next read in it asks where the primary is.
func (db *DB) wrote(ctx context.Context) {
	if db == nil || db.router == nil {
		return
	}
	if s := sessionFrom(ctx); s != nil {
		s.writer.Store(db.router)
		s.writes.Add(1)
	}
}

// position returns the WAL location a replica must have replayed to serve
// s's reads: after writes it has not covered yet, the primary's current one
// (asked after they ended, so past their commits). A location beyond the
// primary's is not one of its writes (a forged or foreign token): the
// primary's current location replaces it.
func (s *Session) position(ctx context.Context, r *router) (wal.LSN, error) {
	n := s.writes.Load()
	s.mu.Lock()
	lsn, covered := s.lsn, s.covered
	s.mu.Unlock()
	if n > covered || (lsn != 0 && lsn > wal.LSN(r.primaryLSN.Load())) {
		cur, err := r.currentLSN(ctx)
		if err != nil {
			return 0, err
		}
		s.mu.Lock()
		if s.lsn > wal.LSN(r.primaryLSN.Load()) { // (the highest location the primary reported)
			s.lsn = cur
		}
		if n > s.covered {
			s.lsn, s.covered = max(s.lsn, cur), n
		}
		lsn = s.lsn
		s.mu.Unlock()
	}
	return lsn, nil
}
