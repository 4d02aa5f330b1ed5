package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// faultProxy forwards TCP connections to a PostgreSQL server and can, on
// request, freeze (stop forwarding, in both directions, on every connection,
// new ones included: a server that stopped answering), or go down for a
// while (its connections reset, new ones refused: a restart).
type faultProxy struct {
	t      *testing.T
	target string
	addr   string
	frozen atomic.Bool
	delay  atomic.Int64   // added before forwarding each read, in nanoseconds
	downTo atomic.Int64   // until this time (Unix ns), new connections are reset
	sent   func(p []byte) // given what clients send, as it goes (may be nil)

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	done  chan struct{}
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return faultProxyOn(t, l, target, nil)
}

// faultProxyOn is a fault proxy serving what l accepts, giving sent (if not
// nil) what clients send.
func faultProxyOn(t *testing.T, l net.Listener, target string, sent func(p []byte)) *faultProxy {
	p := &faultProxy{t: t, target: target, sent: sent, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(func() {
		close(p.done)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.l != nil {
			p.l.Close()
		}
		for c := range p.conns {
			c.Close()
		}
	})
	return p
}

// config returns cfg with the proxy as its server.
func (p *faultProxy) config(cfg dbkit.Config) dbkit.Config {
	host, port, _ := net.SplitHostPort(p.addr)
	cfg.Host = host
	fmt.Sscan(port, &cfg.Port)
	return cfg
}

func (p *faultProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) forward(c net.Conn) {
	if time.Now().UnixNano() < p.downTo.Load() {
		reset(c)
		return
	}
	if !p.track(c) {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(s) {
		c.Close()
		return
	}
	go p.copy(s, c, p.sent)
	p.copy(c, s, nil)
}

// copy copies from src to dst until either closes, holding what it read
// while the proxy is frozen, and giving it to seen, when set.
func (p *faultProxy) copy(dst, src net.Conn, seen func([]byte)) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.frozen.Load() {
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		if d := time.Duration(p.delay.Load()); d > 0 && n > 0 {
			time.Sleep(d)
		}
		if n > 0 && seen != nil {
			seen(buf[:n])
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// down resets every connection and, for d, every new one: a server
// restarting. (The proxy keeps listening: a port given up could be taken.)
func (p *faultProxy) down(d time.Duration) {
	p.downTo.Store(time.Now().Add(d).UnixNano())
	p.mu.Lock()
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
	p.mu.Unlock()
	time.Sleep(d)
}

// reset closes c with a TCP reset rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// behindFaultProxy returns a migrated database's users, reached through a
// fault proxy.
func behindFaultProxy(t *testing.T) (*faultProxy, *dbkit.BaseDatabase[User]) {
	t.Helper()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	p := newFaultProxy(t, cfg.Addr())
	return p, dbkit.NewBaseDatabase[User](openDB(t, p.config(cfg)))
}

// TestDeadlineHoldsWhenTheServerFreezes: with the server silent (its cancel
// request unanswered too), a call returns soon after its deadline (the goal:
// 250 ms), with the ctx's error.
func TestDeadlineHoldsWhenTheServerFreezes(t *testing.T) {
	t.Parallel()
	p, users := behindFaultProxy(t)
	ctx := context.Background()
	if _, err := users.Count(ctx); err != nil {
		t.Fatal(err)
	}
	p.frozen.Store(true)
	for _, deadline := range []time.Duration{300 * time.Millisecond, 700 * time.Millisecond} {
		cctx, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		_, err := users.Count(cctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Count on a frozen server = %v, want DeadlineExceeded", err)
		}
		// The goal is 250 ms late at most (about 200 ms is pgx's floor:
		// cancelGrace and its 100 ms pause); the assertion leaves room for a
		// loaded machine under the race detector.
		t.Logf("a %v deadline on a frozen server: returned %v late", deadline, took-deadline)
		if took > deadline+400*time.Millisecond {
			t.Errorf("Count with a %v deadline on a frozen server returned after %v: more than 400 ms late", deadline, took)
		}
	}
}

// TestDeadlineHoldsOnASlowNetwork: with 40 ms added each way, a call with
// room for it succeeds, and one whose deadline is shorter than a round trip
// returns by its deadline plus 250 ms, and leaves the pool usable. It
// returns its result when the result arrived while the server was being
// asked to cancel (a write that happened is not reported as failed), or the
// ctx's error.
func TestDeadlineHoldsOnASlowNetwork(t *testing.T) {
	t.Parallel()
	p, users := behindFaultProxy(t)
	ctx := context.Background()
	p.delay.Store(int64(40 * time.Millisecond))
	if _, err := users.Count(ctx); err != nil {
		t.Fatalf("Count on a slow network: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	start := time.Now()
	_, err := users.Count(cctx)
	took := time.Since(start)
	cancel()
	t.Logf("a 30 ms deadline on an 80 ms round trip: returned after %v (%v)", took, err)
	if (err != nil && !errors.Is(err, context.DeadlineExceeded)) || took > 430*time.Millisecond {
		t.Errorf("Count with a 30 ms deadline on an 80 ms round trip = %v after %v, want its result or DeadlineExceeded within 430 ms", err, took)
	}
	p.delay.Store(0)
	if _, err := users.Count(ctx); err != nil {
		t.Errorf("Count once the network is fast again: %v", err)
	}
}

// TestHealthAnswersUnderPoolSaturation: with every pooled connection held by
// the application, Health still answers for the server.
func TestHealthAnswersUnderPoolSaturation(t *testing.T) {
	t.Parallel()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	cfg.MaxOpenConns = 2
	db := openDB(t, cfg)
	release := make(chan struct{})
	var held sync.WaitGroup
	held.Add(cfg.MaxOpenConns)
	var wg sync.WaitGroup
	for range cfg.MaxOpenConns {
		wg.Go(func() {
			_ = db.InTx(context.Background(), func(context.Context) error {
				held.Done()
				<-release
				return nil
			})
		})
	}
	held.Wait()
	defer wg.Wait()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := db.Health(ctx); err != nil {
		t.Fatalf("Health with the pool saturated = %v, want nil: the server is fine", err)
	}
}

// TestServerSideLimits: the Config's timeouts reach every session, and the
// server enforces them.
func TestServerSideLimits(t *testing.T) {
	t.Parallel()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	cfg.StatementTimeout, cfg.LockTimeout, cfg.IdleInTransactionTimeout = 200*time.Millisecond, 150*time.Millisecond, 30*time.Second
	db := openDB(t, cfg)
	users := dbkit.NewBaseDatabase[User](db)
	ctx := context.Background()
	for setting, want := range map[string]string{
		"statement_timeout": "200ms", "lock_timeout": "150ms", "idle_in_transaction_session_timeout": "30s",
	} {
		var got string
		if err := users.Query(ctx).Raw("SELECT current_setting(?)", setting).Scan(ctx, &got); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", setting, got, err, want)
		}
	}
	start := time.Now()
	err := users.Query(ctx).Exec(ctx, "SELECT pg_sleep(5)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" || time.Since(start) > 3*time.Second {
		t.Errorf("a 5 s statement with a 200 ms statement_timeout = %v after %v, want SQLSTATE 57014 at once", err, time.Since(start))
	}
}

// TestTransientErrorsDuringARestart: 32 writers run while the server's
// sessions are terminated (SQLSTATE 57P01, as in a restart) and its address
// refuses connections for a while. Every error a writer sees matches
// ErrUnavailable; transactions retried by InTx's policy commit; every
// acknowledged row is there.
func TestTransientErrorsDuringARestart(t *testing.T) {
	t.Parallel()
	cfg := dbtest.Schema{Migrations: schema, Server: srv}.NewConfig(t)
	p := newFaultProxy(t, cfg.Addr())
	cfg.MaxOpenConns = 32
	db := openDB(t, p.config(cfg))
	watcher := openDB(t, cfg)
	users := dbkit.NewBaseDatabase[User](db)
	ctx := context.Background()

	var (
		acked   atomic.Int64
		stop    atomic.Bool
		mu      sync.Mutex
		foreign []error // errors that do not say they are transient
		seen    atomic.Int64
		unknown atomic.Int64 // COMMITs that got no answer
	)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := 0; !stop.Load() && i < 10_000; i++ {
				email := fmt.Sprintf("w%d-%d@example.com", w, i)
				var err error
				if i%2 == 0 {
					err = users.Create(ctx, &User{Email: email})
				} else {
					err = db.InTx(ctx, func(ctx context.Context) error {
						return users.Create(ctx, &User{Email: email})
					}, dbkit.RetrySerializationFailures(20))
				}
				switch {
				case err == nil:
					acked.Add(1)
				case errors.Is(err, dbkit.ErrUnavailable):
					seen.Add(1)
					time.Sleep(10 * time.Millisecond)
				case errors.Is(err, dbkit.ErrCommitUnknown):
					if errors.Is(err, dbkit.ErrUnavailable) {
						t.Errorf("an unknown COMMIT also says unavailable (retry me): %v", err)
					}
					unknown.Add(1) // may be there or not: neither acknowledged nor lost
				default:
					mu.Lock()
					foreign = append(foreign, fmt.Errorf("%s: %w", map[bool]string{true: "Create", false: "InTx"}[i%2 == 0], err))
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := dbkit.NewBaseDatabase[User](watcher).Query(ctx).Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
		t.Fatal(err)
	}
	p.down(500 * time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	for i, err := range foreign[:min(len(foreign), 5)] {
		t.Errorf("error %d of %d is not ErrUnavailable: %v", i+1, len(foreign), err)
	}
	if seen.Load() == 0 {
		t.Error("no writer met the restart: the test proves nothing")
	}
	var n int64
	if err := dbkit.NewBaseDatabase[User](watcher).Query(ctx).Raw("SELECT count(*) FROM users").Scan(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if n < acked.Load() {
		t.Errorf("%d rows, but %d writes were acknowledged", n, acked.Load())
	}
	t.Logf("%d writes acknowledged, %d transient errors, %d COMMITs without answer", acked.Load(), seen.Load(), unknown.Load())
	if err := db.Health(ctx); err != nil {
		t.Errorf("Health after the restart: %v", err)
	}
}

// TestConnectRefusedIsUnavailable: a server that refuses connections is
// transient too.
func TestConnectRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	cfg := dbkit.Config{Host: "127.0.0.1", Port: addr.Port, Database: "x", User: "x", ConnectTimeout: time.Second}
	_, err = dbkit.Connect(context.Background(), cfg)
	if !errors.Is(err, dbkit.ErrUnavailable) {
		t.Errorf("Connect to a closed port = %v, want ErrUnavailable", err)
	}
}

// TestEscapeHatchErrorsAreTheRepositorys: errors of Query's statements have
// the repository's prefix and sentinels.
func TestEscapeHatchErrorsAreTheRepositorys(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	ctx := context.Background()
	_, err := users.Query(ctx).Where("email = ?", "nobody@example.com").First(ctx)
	if !errors.Is(err, dbkit.ErrNotFound) || !strings.HasPrefix(err.Error(), "dbkit: User.Query: ") {
		t.Errorf("Query().First of nothing = %v, want ErrNotFound prefixed dbkit: User.Query:", err)
	}
	if err := users.Create(ctx, &User{Email: "dup@example.com"}); err != nil {
		t.Fatal(err)
	}
	err = users.Query(ctx).Create(ctx, &User{Email: "dup@example.com"})
	if !errors.Is(err, dbkit.ErrDuplicate) || !strings.HasPrefix(err.Error(), "dbkit: User.Query: ") {
		t.Errorf("Query().Create of a duplicate = %v, want ErrDuplicate prefixed dbkit: User.Query:", err)
	}
}
