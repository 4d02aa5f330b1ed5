package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbkit-go/database/dbkit"
)

// Environment variables read by [Start].
const (
	// EnvDatabaseURL names an existing server to use instead of starting one,
	// as a postgres:// URL of a role allowed to create databases.
	EnvDatabaseURL = "DBKIT_TEST_DATABASE_URL"
	// EnvServer forces the source: "external", "docker" or "local".
	EnvServer = "DBKIT_TEST_SERVER"
	// EnvImage overrides the container image ([DefaultImage]).
	EnvImage = "DBKIT_TEST_POSTGRES_IMAGE"
	// EnvPGBin names the directory holding initdb and postgres.
	EnvPGBin = "DBKIT_PG_BIN"
	// EnvPGTmpDir names the directory local servers keep their data in;
	// by default /dev/shm where it is a tmpfs (Linux), else the temporary
	// directory.
	EnvPGTmpDir = "DBKIT_PG_TMPDIR"
	// EnvServerIdle is how long the local server that [Shared] starts for
	// the test processes of a run outlives the last of them, as a Go
	// duration (default 5s).
	EnvServerIdle = "DBKIT_TEST_SERVER_IDLE"
)

// Source says where a [Server] comes from.
type Source string

const (
	SourceExternal Source = "external" // DBKIT_TEST_DATABASE_URL
	SourceDocker   Source = "docker"   // a Testcontainers container
	SourceLocal    Source = "local"    // initdb and postgres in a temporary directory
)

// Server is a PostgreSQL server for tests. Tests get databases of their own
// on it with [Server.NewDatabase] or [Server.New]. Stop it when the tests
// are done (see the package example).
type Server struct {
	source Source
	admin  dbkit.Config // superuser on the maintenance database
	pool   *sql.DB      // admin connections
	hint   func(db string) string
	stop   func(context.Context) error
	// containerID is the Docker source's container, "" for the others.
	containerID string
	// via, when set, turns the configurations given to tests into the same
	// through a pooler: the Server is a view (PgBouncer.Server), whose Stop
	// leaves the admin pool to the Server it shares it with.
	via func(dbkit.Config) dbkit.Config

	stopOnce sync.Once
	stopErr  error
	stopped  atomic.Bool

	version   int      // server_version_num
	templates sync.Map // template name → *templateBuild
}

// Start returns a server for tests, from the first source that works:
//
//  1. DBKIT_TEST_DATABASE_URL, an existing server (never stopped by Stop);
//  2. Testcontainers, when a Docker engine answers;
//  3. the local initdb and postgres binaries, in a temporary directory.
//
// DBKIT_TEST_SERVER=external|docker|local forces one. When none works the
// error says what each source needed.
func Start(ctx context.Context) (*Server, error) { return start(ctx, StartLocal) }

// start is Start, with startLocal for the local binaries.
func start(ctx context.Context, startLocal func(context.Context) (*Server, error)) (*Server, error) {
	switch Source(os.Getenv(EnvServer)) {
	case SourceExternal:
		return Open(ctx, os.Getenv(EnvDatabaseURL))
	case SourceDocker:
		return StartContainer(ctx)
	case SourceLocal:
		return startLocal(ctx)
	case "":
	default:
		return nil, fmt.Errorf("dbtest: %s=%q: want external, docker or local", EnvServer, os.Getenv(EnvServer))
	}
	if url := os.Getenv(EnvDatabaseURL); url != "" {
		return Open(ctx, url)
	}
	dockerErr := DockerAvailable(ctx)
	if dockerErr == nil {
		return StartContainer(ctx)
	}
	s, localErr := startLocal(ctx)
	if localErr != nil {
		return nil, fmt.Errorf("dbtest: no PostgreSQL server for tests:\n"+
			"  - %s is not set (it may name an existing server);\n"+
			"  - Testcontainers: %v;\n"+
			"  - local binaries: %w", EnvDatabaseURL, dockerErr, localErr)
	}
	return s, nil
}

// Open uses the existing server at url; Stop leaves it running. The role in
// url must be allowed to create databases.
func Open(ctx context.Context, url string) (*Server, error) {
	if url == "" {
		return nil, fmt.Errorf("dbtest: %s is empty", EnvDatabaseURL)
	}
	cfg, err := dbkit.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("dbtest: %s: %w", EnvDatabaseURL, err)
	}
	s := &Server{source: SourceExternal, admin: cfg, stop: func(context.Context) error { return nil }}
	s.hint = func(db string) string { return fmt.Sprintf("psql %q", s.configFor(db).String()) }
	if err := s.connectAdmin(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// connectAdmin opens the admin pool and waits until the server answers.
func (s *Server) connectAdmin(ctx context.Context) error {
	connCfg, err := pgx.ParseConfig(s.admin.DSN())
	if err != nil {
		return fmt.Errorf("dbtest: admin connection settings: %w", err)
	}
	s.pool = stdlib.OpenDB(*connCfg)
	s.pool.SetMaxOpenConns(8) // parallel tests create and drop databases at once
	s.pool.SetMaxIdleConns(8)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := s.pool.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&s.version)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = s.pool.Close()
			return fmt.Errorf("dbtest: server %s did not answer: %w", s.admin.Addr(), err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Source says where the server comes from.
func (s *Server) Source() Source { return s.source }

// Config returns the superuser's connection to the server's maintenance
// database ("postgres"). Tests should use a database of their own instead.
func (s *Server) Config() dbkit.Config { return s.admin }

// Exec runs one statement as the superuser, for set-up that needs it, such
// as creating a role. Arguments are bound parameters.
func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	_, err := s.pool.ExecContext(ctx, query, args...)
	return err
}

// CreateDatabase creates an empty database named name and returns the
// configuration to connect to it as the superuser.
func (s *Server) CreateDatabase(ctx context.Context, name string) (dbkit.Config, error) {
	if err := s.Exec(ctx, "CREATE DATABASE "+quote(name)); err != nil {
		return dbkit.Config{}, fmt.Errorf("dbtest: create database %q: %w", name, err)
	}
	return s.configFor(name), nil
}

// configFor is the superuser's configuration for database name, through
// the view's pooler if s is one (via).
func (s *Server) configFor(name string) dbkit.Config {
	cfg := s.serverConfigFor(name)
	if s.via != nil {
		cfg = s.via(cfg)
	}
	return cfg
}

// serverConfigFor is the superuser's configuration for database name on
// the server itself.
func (s *Server) serverConfigFor(name string) dbkit.Config {
	cfg := s.admin
	cfg.Database = name
	return cfg
}

// DropDatabase drops database name, disconnecting its sessions first.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dbtest: drop database %q: %w", name, err)
	}
	return nil
}

// Stop stops and removes a server Start started (an external one is left
// running) and closes the admin connections. It is safe to call twice.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.stopped.Store(true)
		if s.pool != nil && s.via == nil {
			_ = s.pool.Close()
		}
		s.stopErr = s.stop(ctx)
	})
	return s.stopErr
}

// TB is the part of testing.TB that dbtest uses, so that helpers can be
// tested themselves and used from other harnesses.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// NewDatabase creates an empty database for the calling test and returns its
// configuration. The database is dropped when the test ends if it passed;
// when it failed, it is kept and the way to inspect it is logged.
func (s *Server) NewDatabase(t TB) dbkit.Config {
	t.Helper()
	return s.newTestDatabase(t, s.CreateDatabase)
}

// newTestDatabase creates a database for the calling test with create and
// drops it when the test passes.
func (s *Server) newTestDatabase(t TB, create func(ctx context.Context, name string) (dbkit.Config, error)) dbkit.Config {
	t.Helper()
	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := create(ctx, name)
	if err != nil {
		t.Fatalf("%v", err)
		return dbkit.Config{}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dbtest: test failed: kept database %q: %s", name, s.hint(name))
			return
		}
		if s.stopped.Load() {
			// A server dbtest started took its databases with it; an
			// external one keeps this database.
			if s.source == SourceExternal {
				t.Logf("dbtest: database %q not dropped: the Server was stopped before the test ended "+
					"(stop it in a t.Cleanup registered before NewDatabase)", name)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Logf("%v", err)
		}
	})
	return cfg
}

// New creates a database for the calling test as [Server.NewDatabase] does,
// connects to it with dbkit.Connect and opts (migrations, for example), and
// closes the connection when the test ends.
func (s *Server) New(t TB, opts ...dbkit.Option) *dbkit.DB {
	t.Helper()
	cfg := s.NewDatabase(t)
	if cfg.Database == "" {
		return nil // t.Fatalf was called
	}
	return connect(t, cfg, opts)
}

// connect connects to cfg for the calling test and closes the connection
// when the test ends.
func connect(t TB, cfg dbkit.Config, opts []dbkit.Option) *dbkit.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := dbkit.Connect(ctx, cfg, opts...)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := db.Close(ctx); err != nil {
			t.Logf("dbtest: %v", err)
		}
	})
	return db
}

// databaseName derives a unique, valid database name from a test name.
func databaseName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	b.WriteString(randomHex(4))
	return b.String()
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // never fails on supported platforms
	return hex.EncodeToString(buf)
}

var errNoDocker = errors.New("no Docker engine answered")
