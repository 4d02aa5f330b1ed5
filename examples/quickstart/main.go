// Command quickstart shows dbkit end to end: it connects to PostgreSQL,
// applies two migrations (package examples/migrations), writes and reads a few rows, handles a duplicate
// key with errors.Is, and prints what it did, then the trace of it as a tree.
//
// With DATABASE_URL set it uses that database (and deletes the rows it
// wrote). Without it, it gets a server from dbkit/dbtest: with
// DBKIT_TEST_DATABASE_URL set, a database of its own on that server, dropped
// at the end (the server is left running); else an ephemeral PostgreSQL
// (Docker or the local binaries), stopped and removed at the end:
//
//	make demo                # or: go run ./examples/quickstart
//	DATABASE_URL=postgres://app:secret@localhost:5432/app make demo
//	DBKIT_TEST_DATABASE_URL=postgres://postgres:postgres@localhost:5432/postgres make demo
//
// It says what it connects to before it waits for the server, and prints
// each retry while the server does not answer (Connect waits up to
// Config.ConnectTimeout, 30 s by default; connect_timeout=N in the URL
// changes it).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/examples/migrations"
	"github.com/dbkit-go/database/tracing"
)

// User is the model: dbkit.Model gives it a UUIDv7 ID and timestamps.
type User struct {
	dbkit.Model
	Email string `gorm:"uniqueIndex;not null"`
	Name  string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	say := func(step, format string, args ...any) {
		fmt.Fprintf(w, "  %-10s %s\n", step, fmt.Sprintf(format, args...))
	}
	fmt.Fprintln(w, "dbkit quickstart")

	cfg, cleanup, err := server(ctx, say)
	if err != nil {
		return err
	}
	defer cleanup()

	// Every span is kept in memory and printed at the end; a service would
	// export them instead (see package tracing/telemetry).
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	ctx, root := tp.Tracer("quickstart").Start(ctx, "quickstart")

	// Connect: validate, wait for the server, SELECT 1, migrate. Its log
	// records are shown while it runs (each retry while the server does not
	// answer, the migration lock, each migration applied), then no more: the
	// duplicate key below is on purpose.
	timeout := cfg.WithDefaults().ConnectTimeout
	say("connect", "to %s, database %q as %s: retrying for up to %v while the server does not answer",
		cfg.Addr(), cfg.Database, cfg.User, timeout)
	connecting := new(atomic.Bool)
	connecting.Store(true)
	start := time.Now()
	db, err := dbkit.Connect(ctx, cfg,
		dbkit.WithMigrations(migrations.All...),
		dbkit.WithLogger(slog.New(&progress{say: say, on: connecting})),
		dbkit.WithTracerProvider(tp),
		dbkit.WithRepositorySpans()) // each call's span above its statements, for the tree below
	connecting.Store(false)
	if errors.Is(err, dbkit.ErrUnavailable) {
		return fmt.Errorf("no PostgreSQL answered at %s within %v: start it, or check DATABASE_URL "+
			"(unset, the quickstart starts a server of its own): %w", cfg.Addr(), timeout, err)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "quickstart: close:", err)
		}
	}()
	applied := appliedMigrations(spans.Ended())
	say("connect", "database %q on %s as %s in %v; migrations applied: %d %v",
		cfg.Database, cfg.Addr(), cfg.User, since(start), len(applied), applied)

	users := dbkit.NewBaseDatabase[User](db)
	tag := time.Now().Format("150405.000000") // unique emails, so reruns on DATABASE_URL work
	people := []User{
		{Email: "ada+" + tag + "@example.com", Name: "Ada Lovelace"},
		{Email: "grace+" + tag + "@example.com", Name: "Grace Hopper"},
		{Email: "linus+" + tag + "@example.com", Name: "Linus Torvalds"},
	}
	for i := range people {
		if err := users.Create(ctx, &people[i]); err != nil {
			return err
		}
	}
	defer func() {
		for _, p := range people {
			_ = users.Delete(context.Background(), p.ID) // leave DATABASE_URL as we found it
		}
	}()
	say("create", "%d users; Ada's ID %s is a UUIDv%d", len(people), people[0].PrimaryKey(), people[0].ID.Version())

	ada, err := users.Get(ctx, people[0].ID)
	if err != nil {
		return err
	}
	say("get", "%s <%s>, created %s", ada.Name, ada.Email, ada.CreatedAt.Format(time.RFC3339Nano))

	ada.Name = "Ada King"
	before := ada.UpdatedAt
	if err := users.Update(ctx, &ada); err != nil {
		return err
	}
	say("update", "renamed to %q; updated_at moved by %v", ada.Name, ada.UpdatedAt.Sub(before))

	found, err := users.Find(ctx, dbkit.Eq("name", "Grace Hopper"))
	if err != nil {
		return err
	}
	n, err := users.Count(ctx)
	if err != nil {
		return err
	}
	say("find", "%d user named Grace Hopper; %d users in the table", len(found), n)

	err = users.Create(ctx, &User{Email: ada.Email, Name: "Impostor"})
	var ce *dbkit.ConstraintError
	if !errors.Is(err, dbkit.ErrDuplicate) || !errors.As(err, &ce) {
		return fmt.Errorf("want a duplicate-key error, got %v", err)
	}
	say("duplicate", "errors.Is(err, dbkit.ErrDuplicate) = true; constraint %q, SQLSTATE %s", ce.Constraint, ce.SQLState)

	if err := users.Delete(ctx, people[2].ID); err != nil {
		return err
	}
	_, err = users.Get(ctx, people[2].ID)
	say("delete", "deleted Linus; Get now: errors.Is(err, dbkit.ErrNotFound) = %v", errors.Is(err, dbkit.ErrNotFound))
	if !errors.Is(err, dbkit.ErrNotFound) {
		return fmt.Errorf("want ErrNotFound after delete, got %v", err)
	}

	root.End()
	fmt.Fprintln(w, "trace:")
	printTree(w, spans.Ended(), root.SpanContext().SpanID(), "  ")
	return nil
}

// printTree prints the spans under parent, oldest first, one per line with
// its duration, and the error type of those that failed.
func printTree(w io.Writer, spans []sdktrace.ReadOnlySpan, parent trace.SpanID, indent string) {
	var children []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().SpanID() == parent {
			children = append(children, s)
		}
	}
	slices.SortFunc(children, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	for _, s := range children {
		line := fmt.Sprintf("%s%-*s %9v", indent, 44-len(indent), s.Name(), s.EndTime().Sub(s.StartTime()).Round(time.Microsecond))
		for _, a := range s.Attributes() {
			if a.Key == tracing.ErrorType {
				line += "  error.type=" + a.Value.String()
			}
		}
		for _, e := range s.Events() {
			if e.Name == tracing.EventNotFound {
				line += "  (not found)"
			}
		}
		fmt.Fprintln(w, line)
		printTree(w, spans, s.SpanContext().SpanID(), indent+"  ")
	}
}

// server returns the configuration of DATABASE_URL, or of a new database on
// the server dbtest gives (DBKIT_TEST_DATABASE_URL's, or an ephemeral one it
// starts); cleanup drops that database, or stops the ephemeral server.
func server(ctx context.Context, say func(step, format string, args ...any)) (dbkit.Config, func(), error) {
	if os.Getenv("DATABASE_URL") != "" {
		cfg, err := dbkit.ConfigFromEnv()
		if err != nil {
			return dbkit.Config{}, nil, err
		}
		say("server", "DATABASE_URL: %s", cfg)
		return cfg, func() {}, nil
	}
	if os.Getenv(dbtest.EnvDatabaseURL) != "" {
		say("server", "%s is set: a database of the quickstart's own on that server", dbtest.EnvDatabaseURL)
	} else {
		say("server", "DATABASE_URL is not set: starting an ephemeral PostgreSQL (Docker, else the local binaries)")
	}
	start := time.Now()
	srv, err := dbtest.Start(ctx)
	if err != nil {
		return dbkit.Config{}, nil, err
	}
	// A name of its own each run: on a server that outlives the run, a
	// second run (or one running alongside) finds no database in its way.
	name := "quickstart_" + randomHex(4)
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if srv.Source() == dbtest.SourceExternal {
			if err := srv.DropDatabase(ctx, name); err != nil {
				fmt.Fprintln(os.Stderr, "quickstart:", err)
			} else {
				say("cleanup", "database %q dropped; the server of %s is left running", name, dbtest.EnvDatabaseURL)
			}
		}
		if err := srv.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "quickstart: stop server:", err)
		} else if srv.Source() != dbtest.SourceExternal {
			say("stop", "ephemeral server stopped and removed")
		}
	}
	cfg, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		cleanup()
		return dbkit.Config{}, nil, err
	}
	if srv.Source() == dbtest.SourceExternal {
		say("server", "database %q created on %s in %v", name, cfg.Addr(), since(start))
	} else {
		say("server", "ephemeral PostgreSQL (%s) on %s, ready in %v", srv.Source(), cfg.Addr(), since(start))
	}
	return cfg, cleanup, nil
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return fmt.Sprintf("%x", b)
}

// progress is a slog.Handler that prints dbkit's records at INFO and above
// as the quickstart's lines, one each, while on is set: Connect's retries,
// the migration lock, the migrations applied.
type progress struct {
	say   func(step, format string, args ...any)
	on    *atomic.Bool
	attrs []slog.Attr
}

func (p *progress) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo && p.on.Load()
}

func (p *progress) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(r.Message, "dbkit: "))
	write := func(a slog.Attr) bool {
		if a.Key == "addr" || a.Key == "database" {
			return true // the connect line named them
		}
		v := a.Value.String()
		if a.Value.Kind() == slog.KindDuration {
			v = a.Value.Duration().Round(time.Millisecond).String()
		}
		v, _, _ = strings.Cut(v, "\n") // pgx repeats a refusal once per TLS mode tried
		fmt.Fprintf(&b, "; %s: %s", a.Key, v)
		return true
	}
	for _, a := range p.attrs {
		write(a)
	}
	r.Attrs(write)
	p.say("connect", "%s", b.String())
	return nil
}

func (p *progress) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &progress{say: p.say, on: p.on, attrs: append(slices.Clip(p.attrs), attrs...)}
}

func (p *progress) WithGroup(string) slog.Handler { return p }

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// appliedMigrations are the IDs of the migrations Connect applied, from
// their spans (one per migration, ended in the order they ran).
func appliedMigrations(spans []sdktrace.ReadOnlySpan) []string {
	var ids []string
	for _, s := range spans {
		if s.Name() != tracing.SpanMigration {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == tracing.MigrationID {
				ids = append(ids, a.Value.AsString())
			}
		}
	}
	return ids
}
