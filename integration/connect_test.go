package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// specialPassword holds every character that breaks naive DSN building.
const specialPassword = `p@ss:w/o?r#d% 'single' "double" \back\slash & spaces ünïcode`

// createRole creates a login role with password that owns a new database,
// and returns the configuration to connect as it.
func createRole(t *testing.T, password string) dbkit.Config {
	t.Helper()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	role := "role_" + strings.ReplaceAll(cfg.Database, "t_", "")
	literal := "'" + strings.ReplaceAll(password, "'", "''") + "'"
	if err := srv.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD "+literal); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.DropDatabase(context.Background(), cfg.Database)
		_ = srv.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	if err := srv.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{cfg.Database}.Sanitize()+" OWNER TO "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, password
	return cfg
}

// logBuffer collects every log record dbkit writes, at every level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestConnectWithSpecialCharacterPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := createRole(t, specialPassword)
	var logs logBuffer
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(schema...), dbkit.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	users := dbkit.NewBaseDatabase[User](db)
	if err := users.Create(ctx, &User{Email: "role@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), specialPassword) {
		t.Errorf("logs contain the password:\n%s", logs.String())
	}

	// The same settings as a URL, percent-encoded, through ParseURL.
	parsed, err := dbkit.ParseURL(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable",
		cfg.User, urlEscape(specialPassword), cfg.Addr(), cfg.Database))
	if err != nil {
		t.Fatal(err)
	}
	db2, err := dbkit.Connect(ctx, parsed)
	if err != nil {
		t.Fatalf("connect with the parsed URL: %v", err)
	}
	_ = db2.Close(ctx)
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestConnectFailuresNameServerNotPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := createRole(t, specialPassword)

	closedPort := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()

	wrongPassword := good
	wrongPassword.Password = specialPassword + "-wrong"
	missingDB := good
	missingDB.Database = "no_such_database"
	unreachable := good
	unreachable.Port = closedPort
	unreachable.ConnectTimeout = 1500 * time.Millisecond

	cases := []struct {
		name     string
		cfg      dbkit.Config
		sqlstate string // "" for a network failure
		retried  bool
		maxTime  time.Duration
	}{
		{"wrong password", wrongPassword, "28P01", false, 5 * time.Second},
		{"missing database", missingDB, "3D000", false, 5 * time.Second},
		{"unreachable", unreachable, "", true, 10 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			start := time.Now()
			db, err := dbkit.Connect(ctx, c.cfg, dbkit.WithLogger(logs.logger()))
			took := time.Since(start)
			if err == nil {
				db.Close(ctx)
				t.Fatal("Connect succeeded")
			}
			var ce *dbkit.ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, want *dbkit.ConnectError", err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.cfg.Addr()) || !strings.Contains(msg, c.cfg.Database) {
				t.Errorf("error %q does not name %s and database %q", msg, c.cfg.Addr(), c.cfg.Database)
			}
			for _, leak := range []string{specialPassword, "p@ss:w/o"} {
				if strings.Contains(msg, leak) || strings.Contains(logs.String(), leak) {
					t.Errorf("password in error or logs: %q\n%s", msg, logs.String())
				}
			}
			var pgErr *pgconn.PgError
			if c.sqlstate != "" {
				if !errors.As(err, &pgErr) || pgErr.Code != c.sqlstate {
					t.Errorf("err = %v, want a PgError with SQLSTATE %s", err, c.sqlstate)
				}
			}
			if c.retried != (ce.Attempts > 1) {
				t.Errorf("attempts = %d, retried should be %v", ce.Attempts, c.retried)
			}
			if c.retried && took < c.cfg.ConnectTimeout-100*time.Millisecond {
				t.Errorf("gave up after %v, before ConnectTimeout %v", took, c.cfg.ConnectTimeout)
			}
			if took > c.maxTime {
				t.Errorf("took %v, want under %v", took, c.maxTime)
			}
		})
	}
}

// A server that only starts listening after Connect began must not fail the
// service: Connect retries until it answers.
func TestConnectWaitsForServerToStart(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	target := cfg.Addr()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close() // nothing listens: connections are refused for now

	go func() {
		time.Sleep(700 * time.Millisecond)
		proxy(t, addr.String(), target)
	}()

	cfg.Host, cfg.Port = "127.0.0.1", addr.Port
	cfg.ConnectTimeout = 20 * time.Second
	var logs logBuffer
	ctx := context.Background()
	start := time.Now()
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithLogger(logs.logger()))
	if err != nil {
		t.Fatalf("Connect: %v\nlogs:\n%s", err, logs.String())
	}
	defer db.Close(ctx)
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("connected after %v, before the server listened", took)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("no retry was logged:\n%s", logs.String())
	}
}

// proxy forwards TCP connections from listen to target until the test ends.
func proxy(t *testing.T, listen, target string) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Errorf("proxy: %v", err)
		return
	}
	faultProxyOn(t, l, target, nil)
}

func TestConnectRejectsInvalidConfigBeforeDialing(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := dbkit.Connect(context.Background(), dbkit.Config{Port: 99999, SSLMode: "sometimes", Password: "hunter2-secret"})
	var ce *dbkit.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ConfigError", err)
	}
	for _, f := range []string{"Host", "Port", "Database", "User", "SSLMode"} {
		if !ce.Has(f) {
			t.Errorf("ConfigError %v does not name %s", err, f)
		}
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("ConfigError contains the password: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v: validation must not dial", took)
	}
}

func TestConnectTimeoutBoundedByContext(t *testing.T) {
	t.Parallel()
	cfg := srv.Config()
	cfg.Port = 1 // nothing listens on port 1
	cfg.ConnectTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := dbkit.Connect(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Connect ignored ctx: took %v", took)
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := dbkit.Connect(ctx, srv.NewDatabase(t), dbkit.WithMigrations(schema...))
	if err != nil {
		t.Fatal(err)
	}
	users := dbkit.NewBaseDatabase[User](db)
	if err := db.Close(ctx); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := db.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.Health(ctx); !errors.Is(err, dbkit.ErrClosed) {
		t.Errorf("Health after Close = %v, want ErrClosed", err)
	}
	if _, err := users.Count(ctx); !errors.Is(err, dbkit.ErrClosed) {
		t.Errorf("Count after Close = %v, want ErrClosed", err)
	}
	if _, err := users.Query(ctx).Find(ctx); !errors.Is(err, dbkit.ErrClosed) {
		t.Errorf("Query().Find after Close = %v, want ErrClosed", err)
	}
}

// Close waits for a running query to finish rather than cutting it off.
func TestCloseIsGraceful(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	done := make(chan error, 1)
	go func() {
		var x int
		done <- users.Query(ctx).Raw("SELECT 1 FROM pg_sleep(0.5)").Scan(ctx, &x)
	}()
	time.Sleep(150 * time.Millisecond) // let the query start
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("running query failed during Close: %v", err)
	}
}

// When ctx ends mid-statement, the call returns at once with an error
// matching ctx.Err(), and the server stops the statement too (dbkit sends a
// cancel request rather than only dropping the socket).
func TestContextCancelsRunningQuery(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	slow := dbkit.NewBaseDatabase[SlowUser](db)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := slow.Count(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Count = %v, want an error matching context.DeadlineExceeded", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Errorf("Count = %v, want the server's query_canceled (57014) inside", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancellation took %v", took)
	}

	// Through the escape hatch, a query GORM runs in its callbacks comes back
	// translated; rows GORM reads afterwards (Raw().Scan) need TranslateError.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	if _, err := slow.Query(ctx2).Find(ctx2); !errors.Is(err, context.Canceled) {
		t.Errorf("Query().Find = %v, want context.Canceled", err)
	}
	ctx3, cancel3 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel3)
	var n int
	err = slow.Query(ctx3).Raw("SELECT 1 FROM pg_sleep(30)").Scan(ctx3, &n)
	if !errors.Is(dbkit.TranslateError(ctx3, err), context.Canceled) {
		t.Errorf("TranslateError(Query().Raw().Scan) = %v, want context.Canceled", dbkit.TranslateError(ctx3, err))
	}

	// The server is not left running either statement.
	users := dbkit.NewBaseDatabase[User](db)
	deadline := time.Now().Add(3 * time.Second)
	for {
		var running int
		err := users.Query(context.Background()).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND (query LIKE '%slow_users%' OR query LIKE '%pg_sleep(30)%') AND pid <> pg_backend_pid()`).
			Scan(context.Background(), &running)
		if err != nil {
			t.Fatal(err)
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d cancelled statements still run on the server", running)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The pool is still usable.
	if err := db.Health(context.Background()); err != nil {
		t.Errorf("Health after cancelled queries: %v", err)
	}
}

func TestHealthAfterServerStops(t *testing.T) {
	t.Parallel()
	if srv.Source() == dbtest.SourceExternal {
		t.Skip("DBKIT_TEST_DATABASE_URL names an external server, which this test must not stop")
	}
	ctx := context.Background()
	start := dbtest.StartLocal
	if srv.Source() == dbtest.SourceDocker {
		start = dbtest.StartContainer
	}
	own, err := start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Stop(ctx)
	cfg, err := own.CreateDatabase(ctx, "health")
	if err != nil {
		t.Fatal(err)
	}
	db, err := dbkit.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if err := db.Health(ctx); err != nil {
		t.Fatalf("Health with the server up: %v", err)
	}
	if err := own.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = db.Health(hctx)
	if err == nil {
		t.Fatal("Health succeeded with the server stopped")
	}
	if !strings.Contains(err.Error(), cfg.Addr()) {
		t.Errorf("Health error %q does not name the server", err)
	}
}
