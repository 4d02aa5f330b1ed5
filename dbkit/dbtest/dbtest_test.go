//go:build unix && !solaris

package dbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
)

// fakeTB records what dbtest does with a test.
type fakeTB struct {
	name     string
	failed   bool
	logs     []string
	fatals   []string
	cleanups []func()
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return f.name }
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Failed() bool      { return f.failed }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// finish runs the cleanups as the testing package does: last in, first out.
func (f *fakeTB) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

var _ TB = (*testing.T)(nil)

func startTestServer(t *testing.T) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := StartLocal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// serverDir is the directory of a local server s (its hint is "psql -h
// <dir> ...").
func serverDir(s *Server) string { return strings.Fields(s.hint("x"))[2] }

// postmasterPID is the pid in the postmaster.pid of the server in dir.
func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("no postmaster.pid in %s: %v", dir, err)
	}
	var pid int
	if _, err := fmt.Sscan(string(raw), &pid); err != nil {
		t.Fatalf("postmaster.pid in %s: %v", dir, err)
	}
	return pid
}

func databaseExists(t *testing.T, s *Server, name string) bool {
	t.Helper()
	var n int
	err := s.pool.QueryRowContext(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestLocalServerLifecycle(t *testing.T) {
	s := startTestServer(t)
	if s.Source() != SourceLocal {
		t.Errorf("Source = %q", s.Source())
	}
	dir := serverDir(s)
	pid := postmasterPID(t, dir)
	if !processAlive(pid) {
		t.Fatalf("postgres pid %d is not running", pid)
	}

	// Passed test: its database is dropped.
	passed := &fakeTB{name: "TestPassed/sub case"}
	cfg := s.NewDatabase(passed)
	if len(passed.fatals) > 0 {
		t.Fatal(passed.fatals)
	}
	if !strings.HasPrefix(cfg.Database, "t_testpassed_sub_case_") {
		t.Errorf("database name %q does not derive from the test name", cfg.Database)
	}
	if !databaseExists(t, s, cfg.Database) {
		t.Fatal("database was not created")
	}
	passed.finish()
	if databaseExists(t, s, cfg.Database) {
		t.Error("database of a passed test was not dropped")
	}

	// Failed test: its database is kept and the way in is logged.
	failed := &fakeTB{name: "TestFailed"}
	db := s.New(failed)
	if db == nil || len(failed.fatals) > 0 {
		t.Fatal(failed.fatals)
	}
	kept := db.Config().Database
	failed.failed = true
	failed.finish()
	if !databaseExists(t, s, kept) {
		t.Error("database of a failed test was dropped")
	}
	if len(failed.logs) == 0 || !strings.Contains(failed.logs[0], kept) || !strings.Contains(failed.logs[0], "psql") {
		t.Errorf("logs = %q, want the kept database and a psql command", failed.logs)
	}
	if err := db.Health(context.Background()); !errors.Is(err, dbkit.ErrClosed) {
		t.Errorf("the test's connection was not closed at cleanup: Health = %v", err)
	}

	// Stop leaves no process and no directory behind; twice is fine.
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("postgres pid %d still running after Stop", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after Stop", dir)
	}
}

func TestNewDatabaseFailsTheTestWhenServerIsGone(t *testing.T) {
	s := startTestServer(t)
	s.Stop(context.Background())
	tb := &fakeTB{name: "TestX"}
	s.NewDatabase(tb)
	if len(tb.fatals) != 1 || !strings.Contains(tb.fatals[0], "create database") {
		t.Errorf("fatals = %q, want one create-database failure", tb.fatals)
	}
}

func TestStartRejectsUnknownSource(t *testing.T) {
	t.Setenv(EnvServer, "cloud")
	_, err := Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "external, docker or local") {
		t.Errorf("err = %v", err)
	}
}

func TestStartUsesExternalURL(t *testing.T) {
	s := startTestServer(t)
	t.Setenv(EnvServer, "") // the caller's choice of source (docker, say) is not this test's
	t.Setenv(EnvDatabaseURL, fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable", s.admin.Password, s.admin.Addr()))
	ext, err := Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ext.Source() != SourceExternal {
		t.Errorf("Source = %q, want external", ext.Source())
	}
	if err := ext.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Stopping an external server leaves it running.
	if err := s.pool.PingContext(context.Background()); err != nil {
		t.Errorf("the external server stopped: %v", err)
	}
}

func TestMissingBinariesErrorSaysWhatToInstall(t *testing.T) {
	t.Setenv(EnvPGBin, t.TempDir())
	_, err := StartLocal(context.Background())
	if err == nil || !strings.Contains(err.Error(), EnvPGBin) {
		t.Errorf("err = %v, want one naming %s", err, EnvPGBin)
	}
	t.Setenv(EnvPGBin, "")
	t.Setenv("PATH", t.TempDir())
	_, _, err = findBinariesIn([]string{filepath.Join(t.TempDir(), "*", "bin")})
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("err = %v, want installation advice", err)
	}
}

// The Testcontainers path runs only where a Docker engine answers. These
// machines have the docker client but no engine, so it skips, saying why.
func TestTestcontainersServer(t *testing.T) {
	if err := DockerAvailable(context.Background()); err != nil {
		t.Skipf("Testcontainers needs a Docker engine and none answers here: %v", err)
	}
	ctx := context.Background()
	s, err := StartContainer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	if s.Source() != SourceDocker {
		t.Errorf("Source = %q", s.Source())
	}
	db := s.New(t)
	if err := db.Health(ctx); err != nil {
		t.Fatal(err)
	}
}

// A server stopped before a test's cleanup took the test's database with
// it: the cleanup has nothing to drop and nothing to say.
func TestDatabaseOfAStoppedServer(t *testing.T) {
	s := startTestServer(t)
	tb := &fakeTB{name: "TestStoppedFirst"}
	s.NewDatabase(tb)
	if len(tb.fatals) > 0 {
		t.Fatal(tb.fatals)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tb.finish()
	if len(tb.logs) > 0 {
		t.Errorf("cleanup after Stop logged %q", tb.logs)
	}
}
