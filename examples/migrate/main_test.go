package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/examples/migrations"
)

var srv *dbtest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = dbtest.Shared(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// databaseURL is the URL of a new database for t.
func databaseURL(t *testing.T) (string, dbkit.Config) {
	cfg := srv.NewDatabase(t)
	return (&url.URL{
		Scheme: "postgres", User: url.UserPassword(cfg.User, cfg.Password),
		Host: cfg.Addr(), Path: "/" + cfg.Database, RawQuery: "sslmode=disable",
	}).String(), cfg
}

// TestBinary builds the example command and runs it as an operator would:
// os.Args, exit status, stdout and stderr.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "migrate")
	goBin, err := exec.LookPath("go") // go test puts the go command that runs it first on PATH
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbURL, _ := databaseURL(t)
	run := func(want int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Fatalf("migrate %v: exit %d, want %d\n%s", args, code, want, out)
		}
		return string(out)
	}
	if out := run(0, "up"); !strings.Contains(out, "applied 202611260901_index_users_name") {
		t.Errorf("up printed:\n%s", out)
	}
	if out := run(0, "status"); !strings.Contains(out, "2 applied, 0 pending, 0 unknown") {
		t.Errorf("status printed:\n%s", out)
	}
	if out := run(2, "sideways"); !strings.Contains(out, "usage: migrate") {
		t.Errorf("a bad command printed:\n%s", out)
	}
	run(2, "-lock-timeout", "0", "up")
}

// TestCommand runs the example's migration command against a real server,
// as an operator would, and checks what it prints.
func TestCommand(t *testing.T) {
	ctx := context.Background()
	dbURL, cfg := databaseURL(t)
	t.Setenv("DATABASE_URL", dbURL)

	run := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := dbkit.RunMigrateCommand(ctx, args, &out, &errOut, migrations.All)
		if code != want {
			t.Fatalf("migrate %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out.String(), errOut.String())
		}
		// (A server that trusts its clients, as DBKIT_TEST_DATABASE_URL's may, has no password to print.)
		if cfg.Password != "" && (strings.Contains(errOut.String(), cfg.Password) || strings.Contains(out.String(), cfg.Password)) {
			t.Fatalf("migrate %v printed the password", args)
		}
		return out.String() + errOut.String()
	}
	const (
		users = "202611260900_create_users"
		index = "202611260901_index_users_name"
	)
	expect := func(got string, patterns ...string) {
		t.Helper()
		for _, p := range patterns {
			if !regexp.MustCompile(p).MatchString(got) {
				t.Errorf("output lacks %q:\n%s", p, got)
			}
		}
	}

	expect(run(0, "status"),
		`ID\s+STATE\s+APPLIED AT`, users+`\s+pending`, index+`\s+pending`, `0 applied, 2 pending, 0 unknown`)
	expect(run(0, "plan"), `up would apply 2 migration\(s\)`, `(?s)`+users+`.*`+index)
	expect(run(0, "up"), "applied "+users, "applied "+index, `msg="migration applied" id=`+index)
	today := time.Now().UTC().Format(time.DateOnly)
	expect(run(0, "status"), users+`\s+applied\s+`+today, index+`\s+applied\s+`+today, `2 applied, 0 pending, 0 unknown`)
	expect(run(0, "plan"), `nothing to apply`)
	expect(run(0, "up"), `applied nothing`)
	expect(run(0, "down"), "rolled back "+index)
	expect(run(0, "to", index), "applied "+index)
	expect(run(0, "to", users), "rolled back "+index)
	expect(run(0, "down", "5"), "rolled back "+users)
	expect(run(0, "status"), `0 applied, 2 pending, 0 unknown`)

	expect(run(2, "down", "x"), `N must be a positive integer`, `usage: migrate`)
	expect(run(2, "frobnicate"), `unknown command "frobnicate"`)
	expect(run(2), `no command given`)
	expect(run(0, "help"), `usage: migrate`)
	expect(run(1, "to", "nope"), `unknown migration ID "nope"`)

	// A server that is not there: exit 1, an error naming it, quickly.
	t.Setenv("DATABASE_URL", "postgres://x@127.0.0.1:1/x?connect_timeout=1")
	start := time.Now()
	expect(run(1, "status"), `127.0.0.1:1`)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v", took)
	}
}
