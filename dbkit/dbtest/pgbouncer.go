//go:build unix && !solaris

package dbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
)

// PgBouncer is a PgBouncer process in front of a [Server], for tests of what
// a connection pooler changes. Start it with [StartPgBouncer], stop it with
// [PgBouncer.Stop].
type PgBouncer struct {
	server   *Server
	dir      string   // the ini, the auth file, pgbouncer.log
	owner    *os.File // holds dir's owner.lock (see ownedDir) until Stop
	port     int
	mode     string
	child    // the pgbouncer process
	stopOnce sync.Once
	stopErr  error
}

// PgBouncerOption configures [StartPgBouncer].
type PgBouncerOption func(*PgBouncer)

// PoolMode sets PgBouncer's pool_mode: "transaction" (the default),
// "session" or "statement".
func PoolMode(mode string) PgBouncerOption { return func(p *PgBouncer) { p.mode = mode } }

// pgBouncerDirs are where pgbouncer is looked for when it is not on PATH
// (Debian installs it in /usr/sbin, which is not on every user's PATH).
var pgBouncerDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin"}

// StartPgBouncer runs the local pgbouncer binary (PgBouncer 1.18 or later)
// in front of s, in transaction pooling mode unless [PoolMode] says
// otherwise, and returns once it lets s's superuser in. It listens on
// 127.0.0.1 only, on a free port, and serves every database of s (a "* ="
// entry), so that databases made for each test are reachable through it.
// Clients authenticate with SCRAM against the superuser's verifier, copied
// from pg_authid into PgBouncer's auth_file (its password when pg_authid is
// not readable, on an external server), and PgBouncer logs in to s with it.
// When the process runs as root, pgbouncer runs as the "postgres" user. On
// Linux the kernel kills it if the test process dies without stopping it.
// Its log is kept for failure messages ([PgBouncer.Log]); Stop removes its
// directory, which is beside [StartLocal]'s servers' and, like theirs,
// removed by a later start once its test process is gone.
//
// It fails, rather than letting tests skip, when pgbouncer is not installed
// (apt-get install pgbouncer).
func StartPgBouncer(ctx context.Context, s *Server, opts ...PgBouncerOption) (*PgBouncer, error) {
	p := &PgBouncer{server: s, mode: "transaction"}
	for _, opt := range opts {
		opt(p)
	}
	switch p.mode {
	case "transaction", "session", "statement":
	default:
		return nil, fmt.Errorf("dbtest: PgBouncer pool mode %q: want transaction, session or statement", p.mode)
	}
	bin, err := findPgBouncer()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	secret, err := s.authSecret(ctx)
	if err != nil {
		return nil, err
	}
	// Beside the local servers' directories, swept as theirs are: the auth
	// file holds the superuser's SCRAM verifier, which must not outlive a
	// test process killed before it could stop PgBouncer.
	removeStaleDirs()
	p.dir, p.owner, err = ownedDir(ctx, "bouncer-")
	if err != nil {
		return nil, err
	}
	cleanup := func() {
		_ = os.RemoveAll(p.dir)
		_ = p.owner.Close()
	}
	if cred != nil {
		if err := os.Chown(p.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			cleanup()
			return nil, fmt.Errorf("dbtest: %w", err)
		}
	}
	userlist := filepath.Join(p.dir, "userlist.txt")
	if err := p.writeFile(userlist, quoteAuth(s.admin.User)+" "+quoteAuth(secret)+"\n", cred); err != nil {
		cleanup()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		p.port, err = freePort()
		if err == nil {
			err = p.start(ctx, bin, cred, userlist)
		}
		if err == nil {
			return p, nil
		}
		if attempt == 3 || ctx.Err() != nil {
			cleanup()
			return nil, err
		}
	}
}

// NewPgBouncer starts PgBouncer in front of s for the calling test, as
// [StartPgBouncer] does, and ends the test if it cannot. It is stopped when
// the test ends; if the test failed, its log is logged first.
func NewPgBouncer(t TB, s *Server, opts ...PgBouncerOption) *PgBouncer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartPgBouncer(ctx, s, opts...)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dbtest: pgbouncer's log:\n%s", p.Log())
		}
		if err := p.Stop(context.Background()); err != nil {
			t.Logf("%v", err)
		}
	})
	return p
}

// findPgBouncer returns the path of the pgbouncer binary.
func findPgBouncer() (string, error) {
	if path, err := exec.LookPath("pgbouncer"); err == nil {
		return path, nil
	}
	for _, dir := range pgBouncerDirs {
		if path := filepath.Join(dir, "pgbouncer"); isExecutable(path) {
			return path, nil
		}
	}
	return "", fmt.Errorf("dbtest: pgbouncer not found on PATH nor in %s: install it (apt-get install pgbouncer)",
		strings.Join(pgBouncerDirs, ", "))
}

// authSecret returns what PgBouncer's auth_file holds for the superuser:
// its SCRAM verifier from pg_authid, with which PgBouncer both checks the
// client and logs in to the server, or the password when pg_authid cannot
// be read.
func (s *Server) authSecret(ctx context.Context) (string, error) {
	var verifier *string
	err := s.pool.QueryRowContext(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", s.admin.User).Scan(&verifier)
	if err == nil && verifier != nil && strings.HasPrefix(*verifier, "SCRAM-SHA-256$") {
		return *verifier, nil
	}
	if s.admin.Password == "" {
		return "", fmt.Errorf("dbtest: PgBouncer needs the SCRAM verifier of %q (reading pg_authid: %v) or its password", s.admin.User, err)
	}
	return s.admin.Password, nil
}

// quoteAuth quotes a name or secret for PgBouncer's auth_file.
func quoteAuth(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// writeFile writes a file of p's directory, readable by pgbouncer's user only.
func (p *PgBouncer) writeFile(path, content string, cred *syscall.Credential) error {
	if err := writeFileAs(path, []byte(content), 0o600, cred); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	return nil
}

// start runs pgbouncer on p.port and waits until it lets the superuser in.
func (p *PgBouncer) start(ctx context.Context, bin string, cred *syscall.Credential, userlist string) error {
	ini := filepath.Join(p.dir, "pgbouncer.ini")
	admin := p.server.admin
	// No Unix socket: a test reaches it over TCP only. The pools are large
	// enough for parallel tests; a server connection is closed after 60 s
	// idle, and DROP DATABASE ... WITH (FORCE) of a test's database ends
	// the pool's connections to it.
	conf := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = %s
max_client_conn = 2000
default_pool_size = 40
server_idle_timeout = 60
log_connections = 0
log_disconnections = 0
`, admin.Host, admin.Port, p.port, userlist, p.mode)
	if err := p.writeFile(ini, conf, cred); err != nil {
		return err
	}
	logPath := filepath.Join(p.dir, "pgbouncer.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	if err := p.child.start(exec.Command(bin, ini), p.dir, cred, logFile); err != nil {
		return err
	}

	cfg := p.route(p.server.configFor("postgres"))
	cfg.ConnectTimeout = 2 * time.Second
	return p.waitReady(ctx, 15*time.Second, "pgbouncer", p.Log, func() (bool, error) {
		conn, err := pgx.Connect(ctx, cfg.DSN())
		if err == nil {
			_ = conn.Close(ctx)
			return true, nil
		}
		// An answer (authentication, a startup parameter refused) is final:
		// PgBouncer runs, and waiting will not change it.
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr), err
	})
}

// Addr returns PgBouncer's host:port.
func (p *PgBouncer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Config returns the superuser's configuration for database through
// PgBouncer: its address, QueryExecMode "exec" (pgx's default,
// cache_statement, fails behind a transaction pooler: docs/scaling.md), and
// the server's own address as DirectHost and DirectPort, for migrations.
func (p *PgBouncer) Config(database string) dbkit.Config {
	return p.route(p.server.configFor(database))
}

// route turns a configuration of the server's into the same through p.
func (p *PgBouncer) route(cfg dbkit.Config) dbkit.Config {
	cfg.DirectHost, cfg.DirectPort = cfg.Host, cfg.Port
	cfg.Host, cfg.Port = "127.0.0.1", p.port
	cfg.QueryExecMode = "exec"
	return cfg
}

// Server returns a view of p's Server whose [Server.NewDatabase],
// [Server.New] and [Server.CreateDatabase] give configurations through p
// ([PgBouncer.Config]); everything else (Config, Exec, templates) is the
// server's. Stopping the view stops neither the server nor p.
func (p *PgBouncer) Server() *Server {
	s := p.server
	return &Server{
		source: s.source, admin: s.admin, pool: s.pool, hint: s.hint, containerID: s.containerID,
		version: s.version, via: p.route, stop: func(context.Context) error { return nil },
	}
}

// Log returns the end of PgBouncer's log, for a failure message.
func (p *PgBouncer) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "pgbouncer.log"))
	return tail(b, 30)
}

// Stop stops PgBouncer (at once: its clients are disconnected) and removes
// its directory. It is safe to call twice.
func (p *PgBouncer) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.stopErr = p.terminate(ctx)
		if err := os.RemoveAll(p.dir); err != nil && p.stopErr == nil {
			p.stopErr = fmt.Errorf("dbtest: %w", err)
		}
		_ = p.owner.Close()
	})
	return p.stopErr
}

// terminate sends SIGTERM (PgBouncer's immediate shutdown) and kills it if
// it has not exited after 5 s or when ctx ends.
func (p *PgBouncer) terminate(ctx context.Context) error {
	return p.child.terminate(ctx, syscall.SIGTERM, 5*time.Second, "pgbouncer")
}
