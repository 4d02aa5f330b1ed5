//go:build unix && !solaris

package dbtest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbkit-go/database/dbkit"
)

// PgBouncer runs in transaction mode in front of the server, lets a test's
// own database through, and leaves nothing behind when stopped.
func TestPgBouncerLifecycle(t *testing.T) {
	s, err := Shared(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartPgBouncer(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	// Its directory (the auth file holds a SCRAM verifier) is one that
	// removeStaleDirs sweeps once its owner is gone, and it is owned.
	if filepath.Dir(p.dir) != serverParentDir() || !strings.HasPrefix(filepath.Base(p.dir), staleDirPrefix) || !ownerAlive(p.dir) {
		t.Errorf("PgBouncer's directory %s: not a %s* directory of %s held by its owner.lock", p.dir, staleDirPrefix, serverParentDir())
	}
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Errorf("Addr = %q, want 127.0.0.1 only", p.Addr())
	}

	// The view gives a database of the test's own, through PgBouncer, with
	// the server as the direct address.
	cfg := p.Server().NewDatabase(t)
	if cfg.Addr() != p.Addr() || cfg.DirectHost != s.admin.Host || cfg.DirectPort != s.admin.Port || cfg.QueryExecMode != "exec" {
		t.Fatalf("config through PgBouncer = %v, direct %s:%d", cfg, cfg.DirectHost, cfg.DirectPort)
	}
	connCfg, err := pgx.ParseConfig(cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*connCfg)
	defer db.Close()
	db.SetMaxOpenConns(2)

	// Transaction pooling: another client's transaction runs on the server
	// process our last statement used, which a session pooler never allows.
	// Two client connections, both held: database/sql would otherwise give
	// the first back.
	var ours, theirs int
	a, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&ours); err != nil {
		t.Fatalf("%v\n%s", err, p.Log())
	}
	b, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&theirs); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	_ = a.Close()
	_ = b.Close()
	if ours != theirs {
		t.Errorf("two clients' transactions ran on server processes %d and %d: not transaction pooling?", ours, theirs)
	}
	var name string
	if err := db.QueryRowContext(ctx, "SELECT current_database()").Scan(&name); err != nil || name != cfg.Database {
		t.Errorf("current_database() = %q, %v; want %q", name, err, cfg.Database)
	}
	_ = db.Close()

	// The view's Stop stops neither the server nor PgBouncer; PgBouncer's
	// Stop ends its process and removes its directory.
	if err := p.Server().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.PingContext(ctx); err != nil {
		t.Fatalf("the view's Stop closed the server's admin pool: %v", err)
	}
	pid := p.cmd.Process.Pid
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("pgbouncer pid %d still running after Stop", pid)
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after Stop", p.dir)
	}
	probe, err := sql.Open("pgx", cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if err := probe.PingContext(ctx); err == nil {
		t.Error("PgBouncer still answers after Stop")
	}
}

func TestMissingPgBouncerSaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := pgBouncerDirs
	pgBouncerDirs = []string{t.TempDir()}
	defer func() { pgBouncerDirs = saved }()
	_, err := StartPgBouncer(context.Background(), &Server{})
	if err == nil || !strings.Contains(err.Error(), "apt-get install pgbouncer") {
		t.Errorf("err = %v, want installation advice", err)
	}
}

// A Schema on the view builds its template on the server itself (PgBouncer
// would keep connections to the build database, which then cannot be
// renamed) and gives each test a migrated database through PgBouncer.
func TestSchemaThroughPgBouncer(t *testing.T) {
	s := startTestServer(t)
	p := NewPgBouncer(t, s)
	var runs atomic.Int32
	schema := Schema{Migrations: counted(&runs), Server: p.Server()}
	tb := &fakeTB{name: "TestThroughPgBouncer"}
	db := schema.New(tb)
	if db == nil {
		t.Fatal(tb.fatals)
	}
	defer tb.finish()
	if got := db.Config().Addr(); got != p.Addr() {
		t.Errorf("the test's DB is at %s, want PgBouncer's %s", got, p.Addr())
	}
	if err := dbkit.NewBaseDatabase[account](db).Create(context.Background(), &account{Email: "ada@example.com"}); err != nil {
		t.Fatalf("the clone is not migrated: %v", err)
	}
}
