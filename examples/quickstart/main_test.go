package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs what `make demo` runs, with no server configured: it must
// start its own, do every step and stop it.
func TestDemo(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	for _, want := range []string{
		"ephemeral PostgreSQL",
		"migrations applied: 2 [202611260900_create_users 202611260901_index_users_name]",
		"3 users; Ada's ID",
		"is a UUIDv7",
		`renamed to "Ada King"`,
		"1 user named Grace Hopper; 3 users in the table",
		`errors.Is(err, dbkit.ErrDuplicate) = true; constraint "users_email_key", SQLSTATE 23505`,
		"errors.Is(err, dbkit.ErrNotFound) = true",
		"ephemeral server stopped and removed",
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
