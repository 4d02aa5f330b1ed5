//go:build unix && !solaris

package dbtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// counted are two migrations that count how often they run.
func counted(runs *atomic.Int32) []dbkit.Migration {
	return []dbkit.Migration{
		{ID: "202611260900_create_users", Migrate: func(tx *gorm.DB) error {
			runs.Add(1)
			return tx.Exec(`CREATE TABLE users (id uuid PRIMARY KEY, created_at timestamptz NOT NULL,
				updated_at timestamptz NOT NULL, email text NOT NULL UNIQUE)`).Error
		}},
		{ID: "202611260901_index_users", Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE INDEX users_created_at ON users (created_at)`).Error
		}},
	}
}

type account struct {
	dbkit.Model
	Email string
}

func (account) TableName() string { return "users" }

// reopen is another Server on s's server, with a pool and a template cache
// of its own: what another test binary would have.
func reopen(t *testing.T, s *Server) *Server {
	t.Helper()
	o := &Server{source: SourceExternal, admin: s.admin, hint: s.hint, stop: func(context.Context) error { return nil }}
	if err := o.connectAdmin(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Stop(context.Background()) })
	return o
}

func templates(t *testing.T, s *Server) []string {
	t.Helper()
	rows, err := s.pool.QueryContext(context.Background(),
		"SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname", templatePrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

func TestSchemaGivesEachTestAMigratedDatabase(t *testing.T) {
	s := startTestServer(t)
	var runs atomic.Int32
	schema := Schema{Migrations: counted(&runs), Server: s}
	ctx := context.Background()

	a, b := &fakeTB{name: "TestA"}, &fakeTB{name: "TestB"}
	dbA, dbB := schema.New(a), schema.New(b)
	if dbA == nil || dbB == nil {
		t.Fatal(a.fatals, b.fatals)
	}
	if dbA.Config().Database == dbB.Config().Database {
		t.Fatal("two tests got the same database")
	}
	usersA, usersB := dbkit.NewBaseDatabase[account](dbA), dbkit.NewBaseDatabase[account](dbB)
	if err := usersA.Create(ctx, &account{Email: "ada@example.com"}); err != nil {
		t.Fatalf("the clone is not migrated: %v", err)
	}
	if n, err := usersB.Count(ctx); err != nil || n != 0 {
		t.Errorf("B sees %d rows (%v): the databases are not separate", n, err)
	}
	if runs.Load() != 1 {
		t.Errorf("the migrations ran %d times for two tests, want once (for the template)", runs.Load())
	}
	if got := templates(t, s); len(got) != 1 || got[0] != templatePrefix+Fingerprint(schema.Migrations, "")[:16] {
		t.Errorf("templates %v, want one named after the fingerprint", got)
	}

	// A passed test's clone is dropped; a failed one's is kept, and logged.
	nameA, nameB := dbA.Config().Database, dbB.Config().Database
	a.finish()
	b.failed = true
	b.finish()
	if databaseExists(t, s, nameA) || !databaseExists(t, s, nameB) {
		t.Errorf("after cleanup: passed test's database exists: %v, failed test's: %v",
			databaseExists(t, s, nameA), databaseExists(t, s, nameB))
	}
	if len(b.logs) == 0 || !strings.Contains(b.logs[0], nameB) {
		t.Errorf("failed test's logs %q do not name its database", b.logs)
	}
}

// Test binaries racing to build one template build it once; all of them get
// it.
func TestTemplateBuiltOnceByRacingServers(t *testing.T) {
	s := startTestServer(t)
	var runs atomic.Int32
	migrations := counted(&runs)
	var wg sync.WaitGroup
	names := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		o := reopen(t, s)
		wg.Go(func() { names[i], errs[i] = o.Template(context.Background(), migrations, "") })
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || names[i] != names[0] {
			t.Fatalf("racer %d: %q, %v (racer 0: %q)", i, names[i], errs[i], names[0])
		}
	}
	if runs.Load() != 1 {
		t.Errorf("migrations ran %d times, want 1", runs.Load())
	}
	if got := templates(t, s); len(got) != 1 {
		t.Errorf("templates %v, want one", got)
	}
}

// A template whose migrations fail is built once per process, its error
// given to every test that asks for it, and not left behind to be cloned;
// once the migration is fixed (a new test process), the template is built.
func TestFailedTemplateIsNeverUsed(t *testing.T) {
	s := startTestServer(t)
	var runs, failures atomic.Int32
	migrations := counted(&runs)
	broken := append(migrations[:1:1], dbkit.Migration{ID: migrations[1].ID, Migrate: func(tx *gorm.DB) error {
		failures.Add(1)
		return tx.Exec(`CREATE INDEX users_created_at ON missing_table (created_at)`).Error
	}})
	var wg sync.WaitGroup
	tbs := make([]*fakeTB, 6)
	for i := range tbs {
		tbs[i] = &fakeTB{name: fmt.Sprintf("TestBroken%d", i)}
		wg.Go(func() { Schema{Migrations: broken, Server: s}.New(tbs[i]) })
	}
	wg.Wait()
	for i, tb := range tbs {
		if len(tb.fatals) != 1 || !strings.Contains(tb.fatals[0], migrations[1].ID) ||
			!strings.Contains(tb.fatals[0], "undefined_table (SQLSTATE 42P01)") || strings.Contains(tb.fatals[0], "migrate: migrate:") {
			t.Errorf("test %d: fatals %q, want one naming the migration and its error once", i, tb.fatals)
		}
	}
	if n := failures.Load(); n != 1 {
		t.Errorf("the failing migration ran %d times for 6 tests in one process, want 1", n)
	}
	if got := templates(t, s); len(got) != 0 {
		t.Fatalf("a failed build left %v", got)
	}
	tb := &fakeTB{name: "TestAfterFix"}
	db := Schema{Migrations: migrations, Server: reopen(t, s)}.New(tb)
	if db == nil {
		t.Fatal(tb.fatals)
	}
	if _, err := dbkit.NewBaseDatabase[account](db).Count(context.Background()); err != nil {
		t.Errorf("the database built after the fix is not migrated: %v", err)
	}
	tb.finish()
}

// What a builder that died left (a database being built, a renamed one not
// yet marked a template) is dropped and the template built again.
func TestTemplateBuildRecoversFromADeadBuilder(t *testing.T) {
	s := startTestServer(t)
	var runs atomic.Int32
	migrations := counted(&runs)
	name := templatePrefix + Fingerprint(migrations, "")[:16]
	for _, db := range []string{name, name + "_build_deadbeef"} {
		if err := s.Exec(context.Background(), "CREATE DATABASE "+quote(db)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Template(context.Background(), migrations, "")
	if err != nil || got != name {
		t.Fatalf("Template = %q, %v", got, err)
	}
	if runs.Load() != 1 {
		t.Errorf("the half-built template was used: migrations ran %d times", runs.Load())
	}
	if left := templates(t, s); len(left) != 1 || left[0] != name {
		t.Errorf("databases %v, want only the template", left)
	}
}

// A build abandoned because its caller's ctx ended is not the answer for
// the callers waiting on it: they build the template themselves.
func TestTemplateWaiterOutlivesAnImpatientBuilder(t *testing.T) {
	s := startTestServer(t)
	var runs atomic.Int32
	slow := append(counted(&runs), dbkit.Migration{ID: "202611260902_slow", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("SELECT pg_sleep(1)").Error
	}})
	impatient, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := s.Template(impatient, slow, "")
		first <- err
	}()
	time.Sleep(100 * time.Millisecond) // the impatient one builds; this one waits on it
	name, err := s.Template(context.Background(), slow, "")
	if err != nil {
		t.Fatalf("patient caller: %v", err)
	}
	if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: %v, want context.DeadlineExceeded", err)
	}
	if got := templates(t, s); len(got) != 1 || got[0] != name {
		t.Errorf("templates %v, want [%s]", got, name)
	}
}

// The template is built with the Schema's options: a migrations table of
// another name is where the clones find their migrations recorded.
func TestTemplateBuiltWithSchemaOptions(t *testing.T) {
	s := startTestServer(t)
	var runs atomic.Int32
	sc := Schema{Migrations: counted(&runs), Version: "own-table", Server: s,
		Options: []dbkit.Option{dbkit.WithMigrateOptions(migrate.WithTableName("schema_history"))}}
	tb := &fakeTB{name: "TestOwnTable"}
	db := sc.New(tb)
	if db == nil {
		t.Fatal(tb.fatals)
	}
	defer tb.finish()
	ctx := context.Background()
	var n int
	err := dbkit.NewBaseDatabase[account](db).Query(ctx).Raw("SELECT count(*) FROM schema_history").Scan(ctx, &n)
	if err != nil || n != 2 {
		t.Errorf("schema_history holds %d rows (%v), want the 2 migrations", n, err)
	}
}

func TestFingerprint(t *testing.T) {
	var runs atomic.Int32
	m := counted(&runs)
	reversed := []dbkit.Migration{m[1], m[0]}
	switch base := Fingerprint(m, ""); {
	case Fingerprint(reversed, "") != base:
		t.Error("the order of the slice changed the fingerprint; migrations are applied by ID")
	case Fingerprint(m, "2") == base:
		t.Error("the version did not change the fingerprint")
	case Fingerprint(m[:1], "") == base:
		t.Error("dropping a migration did not change the fingerprint")
	case Fingerprint([]dbkit.Migration{{ID: "a\x00b"}}, "") == Fingerprint([]dbkit.Migration{{ID: "a"}, {ID: "b"}}, ""):
		t.Error("IDs are not separated in the fingerprint")
	}
	// A migration edited under the same ID is noticed when it carries a
	// checksum (migrate.SQL gives it one).
	edited := slices.Clone(m)
	edited[0].Checksum = "2"
	if Fingerprint(edited, "") == Fingerprint(m, "") {
		t.Error("a changed checksum did not change the fingerprint")
	}
	if Fingerprint([]dbkit.Migration{{ID: "a", Checksum: "b"}}, "") == Fingerprint([]dbkit.Migration{{ID: "a"}, {ID: "b"}}, "") {
		t.Error("checksums are not separated from IDs in the fingerprint")
	}
}

// A Schema whose server cannot be had fails the test with the reason.
func TestSchemaFailsTheTestWithoutAServer(t *testing.T) {
	s := startTestServer(t)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tb := &fakeTB{name: "TestNoServer"}
	if db := (Schema{Server: s}).New(tb); db != nil || len(tb.fatals) == 0 {
		t.Fatalf("New on a stopped server: %v, fatals %q", db, tb.fatals)
	}
}
