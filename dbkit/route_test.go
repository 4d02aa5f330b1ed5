package dbkit

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/dbkit-go/database/internal/wal"
)

// testRouter is a router over a primary and n replicas that have no pool:
// enough for the choices that ask no server.
func testRouter(n int) *router {
	db := &DB{}
	r := &router{db: db, primary: &node{name: "primary"}}
	r.checker = &checker{r: r, log: slog.New(slog.DiscardHandler)}
	for i := range n {
		m := &node{name: "replica" + string(rune('1'+i))}
		m.replica = &replica{node: m}
		m.replica.route = &route{db: db, node: m, reason: reasonReplica}
		r.replicas = append(r.replicas, m)
	}
	rotation := append([]*node(nil), r.replicas...)
	r.rotation.Store(&rotation)
	r.primaryLSN.Store(1 << 40)
	r.primaryRoutes()
	db.router = r
	return r
}

func TestRouteRoundRobin(t *testing.T) {
	r := testRouter(2)
	count := map[string]int{}
	for range 100 {
		rt, err := r.route(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rt.reason != reasonReplica {
			t.Fatalf("reason %q", rt.reason)
		}
		count[rt.node.name]++
	}
	if count["replica1"] != 50 || count["replica2"] != 50 {
		t.Errorf("100 reads over two replicas: %v", count)
	}
	for range 10 {
		rt, _ := r.route(context.Background(), r.replicas[0])
		if rt.node != r.replicas[1] {
			t.Fatalf("a retry went to %s, want the other replica", rt.node.name)
		}
	}
}

func TestRouteOnPrimary(t *testing.T) {
	r := testRouter(2)
	rt, err := r.route(OnPrimary(context.Background()), nil)
	if err != nil || rt.node != r.primary || rt.reason != reasonForced {
		t.Errorf("OnPrimary: %+v, %v", rt, err)
	}
}

func TestRouteNoReplica(t *testing.T) {
	r := testRouter(2)
	r.rotation.Store(&[]*node{})
	r.replicas[0].replica.state.set(replicaState{why: outUnreachable})
	r.replicas[1].replica.state.set(replicaState{why: outUnreachable})
	rt, err := r.route(context.Background(), nil)
	if err != nil || rt.node != r.primary || rt.reason != reasonNoReplica {
		t.Errorf("every replica unreachable: %+v, %v", rt, err)
	}
	r.replicas[1].replica.state.set(replicaState{why: outLagBytes})
	if rt, _ := r.route(context.Background(), nil); rt.reason != reasonReplicaLag {
		t.Errorf("a replica out for lag: reason %q", rt.reason)
	}
	r.refuse = true
	if _, err := r.route(context.Background(), nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("fallback refuse: %v, want ErrUnavailable", err)
	}
	// The only replica left failed a read: the retry goes to the primary.
	r = testRouter(1)
	if rt, err := r.route(context.Background(), r.replicas[0]); err != nil || rt.node != r.primary {
		t.Errorf("retry with no other replica: %+v, %v", rt, err)
	}
}

func TestRouteSessionKnownReplay(t *testing.T) {
	r := testRouter(2)
	s := &Session{lsn: 1000}
	ctx := WithSession(context.Background(), s)
	r.replicas[1].replica.replay.Store(1000)
	for range 4 {
		rt, err := r.route(ctx, nil)
		if err != nil || rt.node != r.replicas[1] || rt.reason != reasonReplica {
			t.Fatalf("a session at 1000 with replica2 at 1000: %+v, %v", rt, err)
		}
	}
}

func TestNewSession(t *testing.T) {
	s, err := NewSession("wal1:16/B374D848")
	if err != nil || s.current() != wal.LSN(0x16_B374D848) {
		t.Fatalf("NewSession: %v, %v", s, err)
	}
	for _, bad := range []string{"16/B374D848", "wal1:", "wal1:x/y", "wal0:1/1", "wal1:1/1/1"} {
		s, err := NewSession(bad)
		if !errors.Is(err, ErrInvalid) || s == nil || s.current() != 0 {
			t.Errorf("NewSession(%q) = %v, %v; want an empty Session and ErrInvalid", bad, s, err)
		}
	}
	s, _ = NewSession("")
	if tok, err := s.Token(context.Background()); tok != "" || err != nil {
		t.Errorf("an empty Session's token: %q, %v", tok, err)
	}
	s, _ = NewSession("wal1:0/10")
	if tok, err := s.Token(context.Background()); tok != "wal1:0/10" || err != nil {
		t.Errorf("token: %q, %v", tok, err)
	}
}

func FuzzNewSession(f *testing.F) {
	for _, s := range []string{"", "wal1:0/10", "wal1:FFFFFFFF/FFFFFFFF", "wal1:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		s, err := NewSession(token)
		if s == nil {
			t.Fatal("nil Session")
		}
		if err != nil {
			return
		}
		back, err := s.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s2, err := NewSession(back); err != nil || s2.current() != s.current() {
			t.Fatalf("%q reads back as %q: %v", token, back, err)
		}
	})
}

// BenchmarkOverheadRoute is what routing adds to one read: db.read around
// a read that does nothing, on a DB without replicas (impl=single) and on
// one with two replicas in the rotation (impl=replicas), without and with a
// Session that wrote nothing (impl=replicas_session).
func BenchmarkOverheadRoute(b *testing.B) {
	noop := func(context.Context) error { return nil }
	span := noSpan
	single := &DB{}
	routed := testRouter(2).db
	sess, _ := NewSession("")
	for _, c := range []struct {
		name string
		db   *DB
		ctx  context.Context
	}{
		{"single", single, context.Background()},
		{"replicas", routed, context.Background()},
		{"replicas_session", routed, WithSession(context.Background(), sess)},
	} {
		b.Run("impl="+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.db.read(c.ctx, span, noop); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A round of checks measures every replica, then records what it found: a
// read that failed on a replica in between (out, unreachable) is not undone
// by the measure taken before it.
func TestStaleCheckDoesNotUndoFailedRead(t *testing.T) {
	r := testRouter(2)
	ctx := context.Background()
	healthy := replicaState{in: true}
	for _, n := range r.replicas {
		r.checker.set(ctx, n, healthy, n.replica.state.getEpoch(), false)
	}
	epoch := r.replicas[0].replica.state.getEpoch() // the round starts measuring
	r.readFailed(ctx, r.replicas[0], errors.New("connection reset"))
	if rot := *r.rotation.Load(); len(rot) != 1 || rot[0] != r.replicas[1] {
		t.Fatalf("after a failed read: rotation %d, want replica2 alone", len(rot))
	}
	r.checker.set(ctx, r.replicas[0], healthy, epoch, false) // the round records what it measured before
	if rot := *r.rotation.Load(); len(rot) != 1 {
		t.Errorf("a measure older than the failed read put the replica back (rotation %d)", len(rot))
	}
	r.checker.set(ctx, r.replicas[0], healthy, r.replicas[0].replica.state.getEpoch(), false) // the next round
	if rot := *r.rotation.Load(); len(rot) != 2 {
		t.Errorf("a check after the failure did not bring it back (rotation %d)", len(rot))
	}
}
