package migrate

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

func noop(*gorm.DB) error { return nil }

func TestNewValidation(t *testing.T) {
	cases := []struct {
		name  string
		migs  []Migration
		opts  []Option
		wants []string // the problems, in order
	}{
		{"valid", []Migration{{ID: "b", Migrate: noop}, {ID: "a", Migrate: noop}}, nil, nil},
		{"duplicate", []Migration{{ID: "a", Migrate: noop}, {ID: "a", Migrate: noop}}, nil,
			[]string{`migration ID "a" is duplicated`}},
		{"empty ID", []Migration{{Migrate: noop}}, nil, []string{"migration #0 has an empty ID"}},
		{"nil Migrate", []Migration{{ID: "a"}}, nil, []string{`migration "a" has no Migrate func`}},
		{"reserved ID", []Migration{{ID: "SCHEMA_INIT", Migrate: noop}}, nil, []string{`migration ID "SCHEMA_INIT" is reserved by gormigrate`}},
		{"long ID", []Migration{{ID: strings.Repeat("x", 256), Migrate: noop}}, nil, []string{"longer than 255 bytes"}},
		{"bad table", []Migration{{ID: "a", Migrate: noop}}, []Option{WithTableName("My Migrations")}, []string{`the table name "My Migrations"`}},
		{"three-part table", []Migration{{ID: "a", Migrate: noop}}, []Option{WithTableName("a.b.c")}, []string{`the table name "a.b.c"`}},
		{"zero lock timeout", []Migration{{ID: "a", Migrate: noop}}, []Option{WithLockTimeout(0)}, []string{"lock timeout must be positive"}},
		{"all at once", []Migration{{ID: "a", Migrate: noop}, {ID: "a"}, {}}, []Option{WithTableName("")},
			[]string{"the table name", `migration ID "a" is duplicated`, `migration "a" has no Migrate func`, "migration #2 has an empty ID", "migration #2 has no Migrate func"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(nil, c.migs, c.opts...)
			if c.wants == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(m.migrations); !slices.IsSorted(got) {
					t.Errorf("migrations not in ID order: %v", got)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != len(c.wants) {
				t.Fatalf("New = %v, want %d problems", err, len(c.wants))
			}
			for i, want := range c.wants {
				if !strings.Contains(ve.Problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, ve.Problems[i], want)
				}
			}
		})
	}
}

func TestErrorNamesMigrationAndUnwraps(t *testing.T) {
	cause := errors.New("boom")
	err := error(&Error{ID: "202611260900_create_users", Op: OpUp, Err: cause})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), `migration "202611260900_create_users"`) {
		t.Errorf("err = %v", err)
	}
	down := &Error{ID: "x", Op: OpDown, Err: cause}
	if !strings.Contains(down.Error(), "rollback") {
		t.Errorf("down error = %v", down)
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"dbkit_migrations": `"dbkit_migrations"`,
		"ops.migrations":   `"ops"."migrations"`,
		`we"ird`:           `"we""ird"`,
	} {
		if got := quoteIdent(in); got != want {
			t.Errorf("quoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		args  []string
		name  string
		n     int
		id    string
		opts  int
		usage string
	}{
		{args: []string{"up"}, name: "up"},
		{args: []string{"down"}, name: "down", n: 1},
		{args: []string{"down", "3"}, name: "down", n: 3},
		{args: []string{"to", "a1"}, name: "to", id: "a1"},
		{args: []string{"-lock-timeout", "5m", "-table", "x", "-allow-out-of-order", "-reject-unknown", "status"}, name: "status", opts: 4},
		{args: []string{"-allow-out-of-order=false", "plan"}, name: "plan"},
		{args: []string{"-h"}, name: "help"},
		{args: []string{"help"}, name: "help"},
		{args: nil, usage: "no command"},
		{args: []string{"down", "0"}, usage: "positive integer"},
		{args: []string{"down", "1", "2"}, usage: "at most one"},
		{args: []string{"to"}, usage: "one migration ID"},
		{args: []string{"up", "extra"}, usage: "takes no arguments"},
		{args: []string{"sideways"}, usage: "unknown command"},
		{args: []string{"-lock-timeout", "0", "up"}, usage: "-lock-timeout must be positive"},
		{args: []string{"-nope", "up"}, usage: "not defined"},
	}
	for _, c := range cases {
		cmd, err := ParseCommand(c.args)
		if c.usage != "" {
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.usage) {
				t.Errorf("ParseCommand(%q) = %v, want a UsageError about %q", c.args, err, c.usage)
			}
			continue
		}
		if err != nil || cmd.Name != c.name || cmd.N != c.n || cmd.ID != c.id || len(cmd.opts) != c.opts {
			t.Errorf("ParseCommand(%q) = %+v, %v", c.args, cmd, err)
		}
	}
}

func TestOptionsApplyInOrder(t *testing.T) {
	m, err := New(nil, []Migration{{ID: "a", Migrate: noop}}, WithTableName("x"), WithLockTimeout(time.Second), WithTableName("y"))
	if err != nil || m.table != "y" || m.lockTimeout != time.Second {
		t.Errorf("New = %+v, %v", m, err)
	}
}

// Usage is a constant written by hand: it must name every flag
// ParseCommand reads, with the defaults the package uses.
func TestUsageMatchesTheFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-lock-timeout", "5m", "status"},
		{"-allow-out-of-order", "status"},
		{"-reject-unknown", "status"},
		{"-table", "x", "status"},
	} {
		if _, err := ParseCommand(args); err != nil {
			t.Errorf("ParseCommand(%q) = %v", args, err)
		}
		if !strings.Contains(Usage, "\n  "+args[0]+" ") {
			t.Errorf("Usage does not list %s", args[0])
		}
	}
	if DefaultLockTimeout != time.Minute || !strings.Contains(Usage, "(default 1m)") {
		t.Errorf("Usage's lock timeout default does not say DefaultLockTimeout (%v)", DefaultLockTimeout)
	}
	if !strings.Contains(Usage, "(default "+DefaultTableName+")") {
		t.Errorf("Usage's table default does not say DefaultTableName (%s)", DefaultTableName)
	}
}

func TestChecksumErrorListsEveryMismatch(t *testing.T) {
	err := error(&ChecksumError{Mismatches: []ChecksumMismatch{{ID: "a1", Recorded: "1", Code: "2"}, {ID: "b2", Recorded: "x", Code: "y"}}})
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Error("a ChecksumError does not match ErrChecksumMismatch")
	}
	for _, want := range []string{"2 applied migration(s) changed", `"a1" (checksum recorded "1", in the code "2")`, `"b2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err, want)
		}
	}
}

func TestWriteStatusShowsChangedMigrations(t *testing.T) {
	var b strings.Builder
	err := WriteStatus(&b, []MigrationStatus{
		{ID: "a1", State: Applied, Checksum: "1", ChecksumMismatch: true},
		{ID: "b2", State: Applied, Checksum: "1"},
		{ID: "c3", State: Pending},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 || !strings.Contains(lines[1], "a1  applied, changed") || strings.Contains(lines[2], "changed") ||
		lines[4] != "2 applied, 1 pending, 0 unknown, 1 changed since applied" {
		t.Errorf("status:\n%s", b.String())
	}
	b.Reset()
	if err := WriteStatus(&b, []MigrationStatus{{ID: "a1", State: Applied}}); err != nil || !strings.HasSuffix(b.String(), "1 applied, 0 pending, 0 unknown\n") {
		t.Errorf("without changes the summary is %q, %v", b.String(), err)
	}
}
