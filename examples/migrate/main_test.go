package main

import (
	"bytes"
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/examples/migrations"
)

// TestCommand runs the example's migration command against a real server,
// as an operator would, and checks what it prints.
func TestCommand(t *testing.T) {
	ctx := context.Background()
	srv, err := dbtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(ctx)
	cfg := srv.NewDatabase(t)
	t.Setenv("DATABASE_URL", (&url.URL{
		Scheme: "postgres", User: url.UserPassword(cfg.User, cfg.Password),
		Host: cfg.Addr(), Path: "/" + cfg.Database, RawQuery: "sslmode=disable",
	}).String())

	run := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		code := dbkit.RunMigrateCommand(ctx, args, &out, &errOut, migrations.All...)
		if code != want {
			t.Fatalf("migrate %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out.String(), errOut.String())
		}
		if strings.Contains(errOut.String(), cfg.Password) || strings.Contains(out.String(), cfg.Password) {
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
