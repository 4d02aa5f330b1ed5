package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// TestDemo runs what `make demo` runs, with no DATABASE_URL: it must get a
// server from dbtest (an ephemeral one it stops, or DBKIT_TEST_DATABASE_URL's
// when the run has one), do every step and clean up.
func TestDemo(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	last := "ephemeral server stopped and removed"
	if os.Getenv(dbtest.EnvDatabaseURL) != "" {
		last = "the server of DBKIT_TEST_DATABASE_URL is left running"
	}
	if !strings.Contains(lastLine(out.String()), last) {
		t.Errorf("the last line is %q, want one saying %q", lastLine(out.String()), last)
	}
	for _, want := range []string{
		"migrations applied: 2 [202611260900_create_users 202611260901_index_users_name]",
		"3 users; Ada's ID",
		"is a UUIDv7",
		`renamed to "Ada King"`,
		"1 user named Grace Hopper; 3 users in the table",
		`errors.Is(err, dbkit.ErrDuplicate) = true; constraint "users_email_key", SQLSTATE 23505`,
		"errors.Is(err, dbkit.ErrNotFound) = true",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The trace, as a tree: session spans, migrations under Migrate, each
	// repository call with its statement under it.
	for _, want := range []string{
		`(?m)^trace:$`,
		`(?m)^  DatabaseSession\.Connect +\d`,
		`(?m)^      DatabaseSession\.Migration +\d`,
		`(?m)^  User\.Get +[\d.]+[µm]?s\n    SELECT users +\d`,
		`(?m)^  User\.Create .*\n    INSERT users .* error\.type=23505$`,
		`(?m)^  User\.Get .*\(not found\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "password") {
		t.Errorf("output mentions a password:\n%s", out.String())
	}
}

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// `make demo` with DBKIT_TEST_DATABASE_URL works every time, and leaves the
// server as it found it: each run creates a database of its own and drops
// it, and does not claim to have removed a server it did not start.
func TestDemoTwiceOnAServerThatOutlivesIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := dbtest.Shared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := srv.Config()
	t.Setenv("DATABASE_URL", "")
	t.Setenv(dbtest.EnvServer, "")
	t.Setenv(dbtest.EnvDatabaseURL, (&url.URL{
		Scheme: "postgres", User: url.UserPassword(admin.User, admin.Password),
		Host: admin.Addr(), Path: "/" + admin.Database, RawQuery: "sslmode=disable",
	}).String())

	created := regexp.MustCompile(`database "(quickstart_[0-9a-f]+)" created`)
	var names []string
	for i := range 2 {
		var out bytes.Buffer
		if err := run(ctx, &out); err != nil {
			t.Fatalf("run %d: %v\noutput:\n%s", i+1, err, out.String())
		}
		m := created.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("run %d does not say which database it created:\n%s", i+1, out.String())
		}
		names = append(names, m[1])
		if want := fmt.Sprintf("database %q dropped; the server of DBKIT_TEST_DATABASE_URL is left running", m[1]); !strings.Contains(lastLine(out.String()), want) {
			t.Errorf("run %d ends with %q, want %q", i+1, lastLine(out.String()), want)
		}
		if strings.Contains(out.String(), "stopped and removed") || strings.Contains(out.String(), "ephemeral") {
			t.Errorf("run %d speaks of an ephemeral server:\n%s", i+1, out.String())
		}
	}
	if names[0] == names[1] {
		t.Errorf("both runs used database %q", names[0])
	}
	conn, err := pgx.Connect(ctx, admin.DSN())
	if err != nil {
		t.Fatalf("the server did not outlive the runs: %v", err)
	}
	defer conn.Close(ctx)
	var left []string
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname = ANY($1)", names)
	if err == nil {
		left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("databases left on the server: %v", left)
	}
}

// With DATABASE_URL naming a server that does not answer, the quickstart says
// at once where it connects, prints each retry as it happens, and ends with
// an error that says no server answered there.
func TestDemoWithoutAServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	t.Setenv("DATABASE_URL", "postgres://app:secret@"+addr+"/app?sslmode=disable&connect_timeout=2")

	out := &timedLines{start: time.Now()}
	err = run(context.Background(), out)
	took := time.Since(out.start)
	if err == nil {
		t.Fatalf("run succeeded with no server:\n%s", out)
	}
	if !errors.Is(err, dbkit.ErrUnavailable) || !strings.Contains(err.Error(), "no PostgreSQL answered at "+addr+" within 2s") {
		t.Errorf("err = %v, want ErrUnavailable saying no PostgreSQL answered at %s within 2s", err, addr)
	}
	if took > 4*time.Second {
		t.Errorf("run took %v with connect_timeout=2", took)
	}
	connect, retries := -1, 0
	for i, l := range out.lines {
		switch {
		case strings.Contains(l.text, "connect    to "+addr):
			connect = i
			if l.at > time.Second {
				t.Errorf("the line saying where it connects came %v after the start", l.at)
			}
		case strings.Contains(l.text, "database not reachable yet, retrying; attempt: "):
			if connect < 0 {
				t.Errorf("a retry was printed before the line saying where it connects:\n%s", out)
			}
			retries++
		}
	}
	if connect < 0 || retries < 2 {
		t.Errorf("want the address first, then a line per retry (got %d):\n%s", retries, out)
	}
}

// timedLines records each line written to it and when, since start.
type timedLines struct {
	start time.Time
	mu    sync.Mutex
	lines []timedLine
}

type timedLine struct {
	at   time.Duration
	text string
}

func (w *timedLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		w.lines = append(w.lines, timedLine{time.Since(w.start), line})
	}
	return len(p), nil
}

func (w *timedLines) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, l := range w.lines {
		fmt.Fprintf(&b, "%8v %s", l.at.Round(time.Millisecond), l.text)
	}
	return b.String()
}
