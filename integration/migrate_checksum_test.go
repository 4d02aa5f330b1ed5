package integration

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// versioned is a migration creating t_<id>, with an author-set checksum.
func versioned(id, checksum string) migrate.Migration {
	m := reversible(id)[0]
	m.Checksum = checksum
	return m
}

// checkChecksumError checks that err is a *migrate.ChecksumError listing
// exactly want.
func checkChecksumError(t *testing.T, what string, err error, want ...migrate.ChecksumMismatch) {
	t.Helper()
	var ce *migrate.ChecksumError
	if !errors.Is(err, migrate.ErrChecksumMismatch) || !errors.As(err, &ce) {
		t.Fatalf("%s = %v, want a *migrate.ChecksumError", what, err)
	}
	if !slices.Equal(ce.Mismatches, want) {
		t.Errorf("%s: mismatches = %+v, want %+v", what, ce.Mismatches, want)
	}
	for _, c := range want {
		if !strings.Contains(err.Error(), c.ID) {
			t.Errorf("%s: message %q does not name %s", what, err, c.ID)
		}
	}
}

// A migration edited after it was applied is noticed before anything is
// applied: by Up, Plan and Check, and so by Connect; Status and the
// command's status show it; WarnOnChecksumMismatch turns it into a warning.
func TestEditedMigrationIsNoticed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, cfg := gormFor(t)
	sqlV1 := migrate.SQL("a1", `CREATE TABLE t_a1 (x text DEFAULT 'a?b @c')`, `DROP TABLE t_a1`)
	if _, err := newMigrator(t, db, []migrate.Migration{sqlV1, versioned("b2", "1"), versioned("c3", "")}).Up(ctx); err != nil {
		t.Fatal(err)
	}
	var def string
	if err := db.Raw(`SELECT column_default FROM information_schema.columns WHERE table_name = 't_a1'`).Scan(&def).Error; err != nil || def != `'a?b @c'::text` {
		t.Fatalf("the SQL migration's default = %q, %v: its SQL did not reach the server as written", def, err)
	}

	sqlV2 := migrate.SQL("a1", `CREATE TABLE t_a1 (x text DEFAULT 'changed')`, `DROP TABLE t_a1`)
	edited := []migrate.Migration{sqlV2, versioned("b2", "2"), versioned("c3", "3"), versioned("d4", "1")}
	want := []migrate.ChecksumMismatch{
		{ID: "a1", Recorded: sqlV1.Checksum, Code: sqlV2.Checksum},
		{ID: "b2", Recorded: "1", Code: "2"},
	} // c3 had no checksum when applied: nothing to compare
	m := newMigrator(t, db, edited)
	_, err := m.Up(ctx)
	checkChecksumError(t, "Up", err, want...)
	if got := tables(t, db); slices.Contains(got, "t_d4") {
		t.Error("Up applied d4 although applied migrations changed")
	}
	_, err = m.Plan(ctx)
	checkChecksumError(t, "Plan", err, want...)
	checkChecksumError(t, "Check", m.Check(ctx), want...)
	_, err = dbkit.Connect(ctx, cfg, dbkit.WithMigrations(edited...))
	checkChecksumError(t, "Connect", err, want...)
	_, err = dbkit.Connect(ctx, cfg, dbkit.WithMigrationCheck(edited[:3]...))
	checkChecksumError(t, "Connect(check)", err, want...)

	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, s := range st {
		if s.ChecksumMismatch {
			changed = append(changed, s.ID)
		}
	}
	if !slices.Equal(changed, []string{"a1", "b2"}) || st[1].Checksum != "1" {
		t.Errorf("Status: changed = %v, b2's checksum %q; want a1, b2 changed, b2 recorded with 1", changed, st[1].Checksum)
	}
	cmd, err := migrate.ParseCommand([]string{"status"})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := cmd.Run(ctx, db, edited, &out); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Count(s, "changed") != 3 || !strings.Contains(s, "2 changed") {
		t.Errorf("the command's status does not show a1 and b2 changed:\n%s", s)
	}

	var logs logBuffer
	warned := newMigrator(t, db, edited, migrate.WarnOnChecksumMismatch(), migrate.WithLogger(logs.logger()))
	if applied, err := warned.Up(ctx); err != nil || !slices.Equal(applied, []string{"d4"}) {
		t.Fatalf("Up with WarnOnChecksumMismatch = %v, %v; want d4 applied", applied, err)
	}
	if err := warned.Check(ctx); err != nil {
		t.Errorf("Check with WarnOnChecksumMismatch = %v", err)
	}
	for _, id := range []string{`id=a1`, `id=b2`} {
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), id) {
			t.Errorf("no warning for %s:\n%s", id, logs.String())
		}
	}
}

// A table of records from before checksums is adopted: the column is
// added, old rows are not compared until an Up that applies something
// records the code's checksum for them, and from then on they are.
func TestChecksumsAdoptedOnOldRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := gormFor(t)
	if err := db.Exec(`CREATE TABLE dbkit_migrations (id varchar(255) PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO dbkit_migrations (id) VALUES ('a1'); CREATE TABLE t_a1 (x int)`).Error; err != nil {
		t.Fatal(err)
	}
	migs := []migrate.Migration{versioned("a1", "1"), versioned("b2", "1")}
	m := newMigrator(t, db, migs)
	if st, err := m.Status(ctx); err != nil || states(st) != "a1:applied b2:pending" || st[0].ChecksumMismatch {
		t.Fatalf("status of an old table = %+v, %v", st, err)
	}
	if applied, err := m.Up(ctx); err != nil || !slices.Equal(applied, []string{"b2"}) {
		t.Fatalf("Up on an old table = %v, %v", applied, err)
	}
	var rows []struct{ ID, Checksum string }
	if err := db.Raw(`SELECT id, checksum FROM dbkit_migrations ORDER BY id`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Checksum != "1" || rows[1].Checksum != "1" {
		t.Errorf("records = %+v, want a1 adopted with checksum 1 and b2 recorded with 1", rows)
	}
	_, err := newMigrator(t, db, []migrate.Migration{versioned("a1", "2"), versioned("b2", "1")}).Up(ctx)
	checkChecksumError(t, "Up after adoption", err, migrate.ChecksumMismatch{ID: "a1", Recorded: "1", Code: "2"})
	// A migration without a checksum is never compared.
	if _, err := newMigrator(t, db, []migrate.Migration{versioned("a1", ""), versioned("b2", "")}).Up(ctx); err != nil {
		t.Errorf("Up of migrations without checksums = %v", err)
	}
}
