// Command quickstart shows dbkit end to end: it connects to PostgreSQL,
// applies two migrations (package examples/migrations), writes and reads a few rows, handles a duplicate
// key with errors.Is, and prints what it did, then the trace of it as a tree.
//
// With DATABASE_URL set it uses that server; without it, it starts an
// ephemeral PostgreSQL (dbkit/dbtest) and removes it at the end:
//
//	make demo                # or: go run ./examples/quickstart
//	DATABASE_URL=postgres://app:secret@localhost:5432/app make demo
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
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

	// Connect: validate, wait for the server, SELECT 1, migrate.
	start := time.Now()
	db, err := dbkit.Connect(ctx, cfg,
		dbkit.WithMigrations(migrations.All...),
		dbkit.WithTracerProvider(tp),
		dbkit.WithRepositorySpans()) // each call's span above its statements, for the tree below
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

// server returns the configuration of DATABASE_URL, or of a database on an
// ephemeral server it starts; cleanup stops that server.
func server(ctx context.Context, say func(step, format string, args ...any)) (dbkit.Config, func(), error) {
	if os.Getenv("DATABASE_URL") != "" {
		cfg, err := dbkit.ConfigFromEnv()
		if err != nil {
			return dbkit.Config{}, nil, err
		}
		say("server", "DATABASE_URL: %s", cfg)
		return cfg, func() {}, nil
	}
	start := time.Now()
	srv, err := dbtest.Start(ctx)
	if err != nil {
		return dbkit.Config{}, nil, err
	}
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "quickstart: stop server:", err)
		} else {
			say("stop", "ephemeral server stopped and removed")
		}
	}
	cfg, err := srv.CreateDatabase(ctx, "quickstart")
	if err != nil {
		cleanup()
		return dbkit.Config{}, nil, err
	}
	say("server", "ephemeral PostgreSQL (%s) on %s, ready in %v", srv.Source(), cfg.Addr(), since(start))
	return cfg, cleanup, nil
}

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
