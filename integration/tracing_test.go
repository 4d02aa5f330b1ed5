package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
)

func TestSpansCarryNoSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const marker = "row-value-marker-7f3a"
	cfg := createRole(t, specialPassword+"-tracing")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var logs logBuffer
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(schema...),
		dbkit.WithTracerProvider(tp), dbkit.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	users := dbkit.NewBaseDatabase[User](db)
	u := User{Email: marker + "@example.com", Name: marker}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if err := users.Create(ctx, &User{Email: u.Email}); !errors.Is(err, dbkit.ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Find(ctx, dbkit.Eq("email", u.Email)); err != nil {
		t.Fatal(err)
	}
	// A value PostgreSQL quotes in its message (22P02 invalid input syntax):
	// the error says what went wrong without the value, on the repository's
	// path and through the escape hatch; the driver error keeps it.
	_, err = users.Find(ctx, dbkit.Eq("ID", marker))
	var pgErr *pgconn.PgError
	if err == nil || strings.Contains(err.Error(), marker) || !strings.Contains(err.Error(), "22P02") {
		t.Errorf("Find(bad uuid) = %v, want 22P02 without the value", err)
	}
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, marker) {
		t.Errorf("the *pgconn.PgError is not reachable with its message: %v", err)
	}
	_, err = users.Query(ctx).Where("id = ?", marker).Find(ctx)
	if err == nil || strings.Contains(err.Error(), marker) {
		t.Errorf("Query().Find(bad uuid) = %v, want an error without the value", err)
	}
	if err := users.Delete(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Fatal(err)
	}
	if err := db.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}

	spans := rec.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	for _, name := range []string{"DatabaseSession.Connect", "DatabaseSession.Migrate", "DatabaseSession.Health",
		"DatabaseSession.Close", "User.Create", "User.Get", "User.Find", "User.Delete"} {
		if len(byName[name]) == 0 {
			t.Errorf("no %q span; got %v", name, names(spans))
		}
	}

	// Each repository span has SQL client spans as children.
	for _, get := range byName["User.Get"] {
		if get.SpanKind() != trace.SpanKindInternal {
			t.Errorf("User.Get kind = %v, want internal", get.SpanKind())
		}
		var children int
		for _, s := range spans {
			if s.Parent().SpanID() == get.SpanContext().SpanID() {
				children++
				if s.SpanKind() != trace.SpanKindClient {
					t.Errorf("SQL span %q kind = %v, want client", s.Name(), s.SpanKind())
				}
				if q := attr(s, "db.query.text"); !strings.Contains(q, "$1") {
					t.Errorf("db.query.text = %q, want a parameterised statement", q)
				}
			}
		}
		if children == 0 {
			t.Error("User.Get has no SQL child span")
		}
	}
	// Not found is an event, not an error status.
	gets := byName["User.Get"]
	last := gets[len(gets)-1]
	if last.Status().Code.String() == "Error" || len(last.Events()) == 0 || last.Events()[0].Name != "dbkit.not_found" {
		t.Errorf("User.Get of a deleted row: status %v, events %v; want a not_found event and no error", last.Status(), last.Events())
	}
	// The duplicate is an error on its span.
	creates := byName["User.Create"]
	if creates[1].Status().Code.String() != "Error" {
		t.Errorf("duplicate Create span status = %v, want Error", creates[1].Status())
	}

	for _, s := range spans {
		dump := fmt.Sprintf("%s %v %v %v", s.Name(), s.Attributes(), s.Events(), s.Status())
		for _, secret := range []string{marker, specialPassword, "p@ss:w/o"} {
			if strings.Contains(dump, secret) {
				t.Errorf("span %q contains %q: %s", s.Name(), secret, dump)
			}
		}
	}
	for _, secret := range []string{marker, specialPassword, "p@ss:w/o"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs.String())
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}
