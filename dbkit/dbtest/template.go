package dbtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbkit-go/database/dbkit"
)

// Schema describes the databases a group of tests gets: each a database of
// its own, already migrated, cloned from a template database that is built
// once per distinct Schema and server.
//
//	var schema = dbtest.Schema{Migrations: migrations.All}
//
//	func TestUsers(t *testing.T) {
//		t.Parallel()
//		users := dbkit.NewBaseDatabase[User](schema.New(t))
//		...
//	}
//
// The template is found again by a fingerprint of the migration IDs, their
// checksums and Version. dbtest cannot see inside a migration, because Go
// functions cannot be hashed: when you change what a migration does without
// changing its ID (you should not, once it has run anywhere but on your
// machine), change its Checksum (migrate.SQL does it for SQL text) or bump
// Version, or tests keep getting databases built by the old code.
type Schema struct {
	// Migrations build the template, in the order dbkit.Connect applies
	// them (by ID).
	Migrations []dbkit.Migration
	// Version is part of the fingerprint: bump it when migrations change
	// without a change of ID or checksum.
	Version string
	// Server is where the databases are created; nil means the shared server
	// of [Shared].
	Server *Server
	// Options are given to dbkit.Connect by [Schema.New] (a logger, a
	// tracer provider...) and when the template is built (where
	// WithMigrateOptions matters). The database is migrated already:
	// WithMigrations is not needed. Options are not part of the
	// fingerprint: see [Server.Template].
	Options []dbkit.Option
}

// New gives the calling test a database of its own on the shared server,
// migrated by migrations (cloned from their template), and a connection to
// it, closed when the test ends. The database is dropped when the test
// passes and kept, with a hint to open it, when it fails. It is
// Schema{Migrations: migrations}.New(t).
func New(t TB, migrations ...dbkit.Migration) *dbkit.DB {
	t.Helper()
	return Schema{Migrations: migrations}.New(t)
}

// NewConfig is [New] without the connection: the configuration of a
// migrated database of the calling test's own.
func NewConfig(t TB, migrations ...dbkit.Migration) dbkit.Config {
	t.Helper()
	return Schema{Migrations: migrations}.NewConfig(t)
}

// New gives the calling test a migrated database of its own and a
// connection to it (dbkit.Connect with sc.Options), closed when the test
// ends. Failures end the test with t.Fatalf.
func (sc Schema) New(t TB) *dbkit.DB {
	t.Helper()
	cfg := sc.NewConfig(t)
	if cfg.Database == "" {
		return nil // t.Fatalf was called
	}
	return connect(t, cfg, sc.Options)
}

// NewConfig gives the calling test a migrated database of its own and
// returns its configuration.
func (sc Schema) NewConfig(t TB) dbkit.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := sc.Server
	if s == nil {
		var err error
		if s, err = Shared(ctx); err != nil {
			t.Fatalf("%v", err)
			return dbkit.Config{}
		}
	}
	template, err := s.Template(ctx, sc.Migrations, sc.Version, sc.Options...)
	if err != nil {
		t.Fatalf("%v", err)
		return dbkit.Config{}
	}
	return s.newTestDatabase(t, func(ctx context.Context, name string) (dbkit.Config, error) {
		return s.CreateDatabaseFrom(ctx, name, template)
	})
}

// Fingerprint identifies the template of migrations and version: the hex
// SHA-256 of the version, then the ID and Checksum of each migration in the
// order they are applied, each prefixed with its length.
func Fingerprint(migrations []dbkit.Migration, version string) string {
	h := sha256.New()
	field := func(s string) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	field(version)
	// dbkit applies migrations by ID; sorting here makes the order the
	// slice was written in irrelevant to the fingerprint.
	sorted := slices.SortedFunc(slices.Values(migrations), func(a, b dbkit.Migration) int { return strings.Compare(a.ID, b.ID) })
	for _, m := range sorted {
		field(m.ID)
		field(m.Checksum)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// templatePrefix starts the name of every template dbtest builds.
const templatePrefix = "dbtest_tpl_"

// Template returns the name of the template database that migrations and
// version build, building it if this server has none yet, with
// dbkit.Connect, WithMigrations(migrations...) and opts (migrate options,
// for example). Building is serialised by an advisory lock, so that test
// binaries racing to build the same template build it once; a template is
// marked as one only once its migrations succeeded, so a half-built one is
// never cloned. A build that failed is not tried again by this process: the
// tests asking for it get its error. Templates stay on the server (a server
// dbtest started goes away with them).
//
// opts are not part of the template's fingerprint: schemas with the same
// migrations but options that change what migrating does (another
// migrations table) need different versions.
func (s *Server) Template(ctx context.Context, migrations []dbkit.Migration, version string, opts ...dbkit.Option) (string, error) {
	fp := Fingerprint(migrations, version)
	name := templatePrefix + fp[:16]
	for {
		b := &templateBuild{done: make(chan struct{})}
		prev, loaded := s.templates.LoadOrStore(name, b)
		if !loaded {
			if err := s.build(ctx, b, name, fp, migrations, opts); err != nil {
				return "", err
			}
			return name, nil
		}
		b = prev.(*templateBuild)
		select {
		case <-b.done:
		case <-ctx.Done():
			return "", fmt.Errorf("dbtest: template %s: %w", name, ctx.Err())
		}
		if b.retry {
			continue // the builder gave up (its ctx ended, or its goroutine exited): try again
		}
		if b.err != nil {
			return "", b.err
		}
		return name, nil
	}
}

// templateBuild is a build of a template by this process: done is closed
// when it ends; err is its outcome, retry is set when it ended without one.
type templateBuild struct {
	done  chan struct{}
	err   error
	retry bool
}

// build runs the build b of template name.
func (s *Server) build(ctx context.Context, b *templateBuild, name, fp string, migrations []dbkit.Migration, opts []dbkit.Option) error {
	ended := false
	defer func() {
		// A build that did not end (a migration called runtime.Goexit, as
		// t.FailNow does) or ended with its ctx must not stay cached.
		if !ended || (b.err != nil && ctx.Err() != nil) {
			b.retry = true
			s.templates.Delete(name)
		}
		close(b.done)
	}()
	b.err = s.template(ctx, name, fp, migrations, opts)
	ended = true
	return b.err
}

// template makes template name ready on the server, building it if no
// process did.
func (s *Server) template(ctx context.Context, name, fp string, migrations []dbkit.Migration, opts []dbkit.Option) error {
	conn, err := s.pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("dbtest: template %s: %w", name, err)
	}
	defer func() { _ = conn.Close() }()
	raw, _ := hex.DecodeString(fp[:16]) // the fingerprint is hex
	key := int64(binary.BigEndian.Uint64(raw))
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("dbtest: template %s: lock: %w", name, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key)
	}()
	ready, err := s.prepareTemplate(ctx, conn, name)
	if err == nil && !ready {
		err = s.buildTemplate(ctx, conn, name, migrations, opts)
	}
	if err != nil {
		return fmt.Errorf("dbtest: template %s: %w", name, err)
	}
	return nil
}

// prepareTemplate reports whether template name is ready and, if it is not,
// drops what a builder that died left behind. The caller holds the lock.
func (s *Server) prepareTemplate(ctx context.Context, conn *sql.Conn, name string) (bool, error) {
	var ready bool
	err := conn.QueryRowContext(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&ready)
	if err == nil && ready {
		return true, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	rows, err := conn.QueryContext(ctx, `SELECT datname FROM pg_database WHERE datname = $1 OR starts_with(datname, $2)`,
		name, name+"_build_")
	if err != nil {
		return false, err
	}
	var leftovers []string
	for rows.Next() {
		var db string
		if err := rows.Scan(&db); err != nil {
			_ = rows.Close()
			return false, err
		}
		leftovers = append(leftovers, db)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	for _, db := range leftovers {
		if err := dropDatabase(ctx, conn, db); err != nil {
			return false, err
		}
	}
	return false, nil
}

// buildTemplate migrates a database of a temporary name, then renames it
// name and marks it a template that accepts no connections.
func (s *Server) buildTemplate(ctx context.Context, conn *sql.Conn, name string, migrations []dbkit.Migration, opts []dbkit.Option) error {
	build := name + "_build_" + randomHex(4)
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+quote(build)); err != nil {
		return err
	}
	err := func() error {
		// On the server itself, even on a view through a pooler: the
		// pooler would keep connections to build open, and a database
		// with connections cannot be renamed nor copied.
		db, err := dbkit.Connect(ctx, s.serverConfigFor(build), append(slices.Clip(opts), dbkit.WithMigrations(migrations...))...)
		if err != nil {
			return err // it says "migrate" and which migration failed
		}
		return db.Close(ctx)
	}()
	if err == nil {
		_, err = conn.ExecContext(ctx, "ALTER DATABASE "+quote(build)+" RENAME TO "+quote(name))
	}
	if err == nil {
		_, err = conn.ExecContext(ctx, "ALTER DATABASE "+quote(name)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
	}
	if err != nil {
		_ = dropDatabase(context.Background(), conn, build)
		return err
	}
	return nil
}

// CreateDatabaseFrom creates database name as a copy of template and
// returns the configuration to connect to it as the superuser.
func (s *Server) CreateDatabaseFrom(ctx context.Context, name, template string) (dbkit.Config, error) {
	stmt := "CREATE DATABASE " + quote(name) + " TEMPLATE " + quote(template)
	if s.version >= 150000 {
		// Copying the files is faster than WAL-logging every block for the
		// small databases of tests (PostgreSQL 15 made WAL_LOG the default).
		stmt += " STRATEGY FILE_COPY"
	}
	if err := s.Exec(ctx, stmt); err != nil {
		return dbkit.Config{}, fmt.Errorf("dbtest: create database %q from %q: %w", name, template, err)
	}
	return s.configFor(name), nil
}

// dropDatabase drops db, ending its sessions; a template is unmarked first,
// as PostgreSQL refuses to drop one.
func dropDatabase(ctx context.Context, conn *sql.Conn, db string) error {
	_, _ = conn.ExecContext(ctx, "ALTER DATABASE "+quote(db)+" WITH IS_TEMPLATE false")
	_, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quote(db)+" WITH (FORCE)")
	return err
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }
