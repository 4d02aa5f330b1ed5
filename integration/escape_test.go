package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// TestGormKeepsTheGuarantees: DB.Gorm is GORM on dbkit's connection: it
// runs in ctx's transaction, its errors are translated and prefixed, rows
// get their IDs, statements their spans, and nothing runs after Close.
func TestGormKeepsTheGuarantees(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t))
	db := o.db

	// ID assignment and timestamps, as Create gives them.
	u := User{Email: "gorm-hatch@example.com"}
	if err := db.Gorm(ctx).Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	if u.ID.Version() != 7 || u.CreatedAt.IsZero() {
		t.Errorf("created through DB.Gorm: ID %v (version %d), CreatedAt %v; want a UUIDv7 and a time", u.ID, u.ID.Version(), u.CreatedAt)
	}

	// Errors: translated, with the prefix of their origin.
	err := db.Gorm(ctx).Create(&User{Email: u.Email}).Error
	var ce *dbkit.ConstraintError
	if !errors.Is(err, dbkit.ErrDuplicate) || !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "dbkit: DB.Gorm: ") ||
		strings.Contains(err.Error(), u.Email) {
		t.Errorf("duplicate through DB.Gorm: %v; want ErrDuplicate, prefixed dbkit: DB.Gorm:, without the value", err)
	}
	var missing User
	if err := db.Gorm(ctx).Where("email = ?", "nobody@example.com").First(&missing).Error; !errors.Is(err, dbkit.ErrNotFound) ||
		err.Error() != "dbkit: DB.Gorm: not found" && !strings.HasPrefix(err.Error(), "dbkit: DB.Gorm: ") {
		t.Errorf("not found through DB.Gorm: %v; want ErrNotFound, prefixed once", err)
	}
	if err := db.Gorm(ctx).Where("email = ?", "nobody@example.com").First(&missing).Error; strings.Count(err.Error(), "dbkit: DB.Gorm:") != 1 {
		t.Errorf("prefix repeated: %v", err)
	}

	// Each call is a session of its own: a condition does not leak.
	g := db.Gorm(ctx)
	var n1, n2 int64
	if err := g.Model(&User{}).Where("email = ?", "nobody@example.com").Count(&n1).Error; err != nil {
		t.Fatal(err)
	}
	if err := g.Model(&User{}).Count(&n2).Error; err != nil {
		t.Fatal(err)
	}
	if n1 != 0 || n2 != 1 {
		t.Errorf("counts %d then %d on one session: want 0 then 1, the first condition not carried over", n1, n2)
	}

	// The transaction of ctx: rolled back with it.
	refused := errors.New("refused")
	err = db.InTx(ctx, func(ctx context.Context) error {
		if err := db.Gorm(ctx).Create(&User{Email: "in-tx@example.com"}).Error; err != nil {
			return err
		}
		var seen int64
		if err := db.Gorm(ctx).Model(&User{}).Where("email = ?", "in-tx@example.com").Count(&seen).Error; err != nil || seen != 1 {
			return fmt.Errorf("the row written in the transaction is not seen in it: %d, %v", seen, err)
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatal(err)
	}
	var after int64
	if err := db.Gorm(ctx).Model(&User{}).Where("email = ?", "in-tx@example.com").Count(&after).Error; err != nil || after != 0 {
		t.Errorf("after the rollback: %d rows, %v; want the write rolled back with the transaction", after, err)
	}

	// The transaction is InTx's: a session cannot end it under InTx's feet.
	err = db.InTx(ctx, func(ctx context.Context) error {
		if err := db.Gorm(ctx).Commit().Error; !errors.Is(err, dbkit.ErrInvalid) {
			return fmt.Errorf("Commit on a session inside InTx: %v, want ErrInvalid", err)
		}
		return db.Gorm(ctx).Create(&User{Email: "still-in-tx@example.com"}).Error
	})
	if err != nil {
		t.Error(err)
	}

	// Spans: the statements run through it are traced.
	found := false
	for _, s := range o.spans.Ended() {
		if s.Name() == "INSERT users" && attrs(s)["error.type"] == "23505" {
			found = true
		}
	}
	if !found {
		t.Error("no span of the failed INSERT run through DB.Gorm")
	}

	// Exec: SQL that belongs to no model, translated, in ctx's transaction.
	if _, err := db.Exec(ctx, "CREATE TABLE hatch_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL UNIQUE)"); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Exec(ctx, "INSERT INTO hatch_notes (body) VALUES (?), (?)", "a", "b"); err != nil || n != 2 {
		t.Fatalf("Exec insert: %d rows, %v", n, err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO hatch_notes (body) VALUES (?)", "a"); !errors.Is(err, dbkit.ErrDuplicate) || strings.Contains(err.Error(), `"a"`) {
		t.Errorf("Exec duplicate: %v; want ErrDuplicate without the value", err)
	}

	// migrate on the service's own connection.
	m, err := migrate.New(db.Gorm(ctx), schema)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Status(ctx)
	if err != nil || len(st) != len(schema) || st[0].State != migrate.Applied {
		t.Errorf("migrate.Status on DB.Gorm: %v, %v; want every migration applied", st, err)
	}

	// After Close: ErrClosed, for Gorm, Exec and WithPgxConn alike.
	if err := db.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Gorm(ctx).Create(&User{Email: "late@example.com"}).Error; !errors.Is(err, dbkit.ErrClosed) {
		t.Errorf("DB.Gorm after Close: %v, want ErrClosed", err)
	}
	if _, err := db.Exec(ctx, "SELECT 1"); !errors.Is(err, dbkit.ErrClosed) {
		t.Errorf("Exec after Close: %v, want ErrClosed", err)
	}
	called := false
	if err := db.WithPgxConn(ctx, func(context.Context, *pgx.Conn) error { called = true; return nil }); !errors.Is(err, dbkit.ErrClosed) || called {
		t.Errorf("WithPgxConn after Close: %v (fn called: %v), want ErrClosed without a call", err, called)
	}
}

// TestWithPgxConn: pgx itself, on dbkit's connection: COPY into a table no
// model maps, LISTEN/NOTIFY, and the transaction of ctx.
func TestWithPgxConn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	if _, err := db.Exec(ctx, "CREATE TABLE pgx_points (x int PRIMARY KEY, y int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	copyPoints := func(ctx context.Context, xs ...int) error {
		return db.WithPgxConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
			rows := make([][]any, len(xs))
			for i, x := range xs {
				rows[i] = []any{x, x * x}
			}
			_, err := conn.CopyFrom(ctx, pgx.Identifier{"pgx_points"}, []string{"x", "y"}, pgx.CopyFromRows(rows))
			return err
		})
	}
	if err := copyPoints(ctx, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	// A failure is translated: the constraint, no value.
	err := copyPoints(ctx, 9182, 1)
	if !errors.Is(err, dbkit.ErrDuplicate) || strings.Contains(err.Error(), "9182") || !strings.HasPrefix(err.Error(), "dbkit: WithPgxConn: ") {
		t.Errorf("COPY of a duplicate: %v; want ErrDuplicate, prefixed, without the values", err)
	}
	// In a transaction: the same connection, rolled back with it.
	refused := errors.New("refused")
	err = db.InTx(ctx, func(ctx context.Context) error {
		if err := copyPoints(ctx, 10, 11); err != nil {
			return err
		}
		var n int64
		if err := db.Gorm(ctx).Raw("SELECT count(*) FROM pgx_points WHERE x >= 10").Scan(&n).Error; err != nil || n != 2 {
			return fmt.Errorf("the transaction does not see the rows COPY wrote in it: %d, %v", n, err)
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatal(err)
	}
	var n int64
	if err := db.Gorm(ctx).Raw("SELECT count(*) FROM pgx_points").Scan(&n).Error; err != nil || n != 3 {
		t.Errorf("%d rows after the rollback, %v; want 3", n, err)
	}

	// LISTEN on one connection, NOTIFY from another.
	listening := make(chan struct{})
	var payload atomic.Value
	done := make(chan error, 1)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() {
		done <- db.WithPgxConn(lctx, func(ctx context.Context, conn *pgx.Conn) error {
			if _, err := conn.Exec(ctx, "LISTEN dbkit_events"); err != nil {
				return err
			}
			defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN dbkit_events") }()
			close(listening)
			n, err := conn.WaitForNotification(ctx)
			if err == nil {
				payload.Store(n.Payload)
			}
			return err
		})
	}()
	<-listening
	if _, err := db.Exec(ctx, "SELECT pg_notify(?, ?)", "dbkit_events", "hello"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || payload.Load() != "hello" {
		t.Errorf("LISTEN: %v, payload %v; want hello", err, payload.Load())
	}
	if err := db.WithPgxConn(ctx, nil); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("WithPgxConn(nil): %v, want ErrInvalid", err)
	}
}

// TestRowErrorsAreTranslated: GORM's Row() hands the *sql.Row over without
// looking at its error; dbkit's pool translates it, so that the server's
// message, which quotes the value, does not reach the caller.
func TestRowErrorsAreTranslated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	const marker = "row-marker-4f2a"
	check := func(what string, row interface{ Scan(...any) error }) {
		t.Helper()
		var n int
		err := row.Scan(&n)
		if err == nil || strings.Contains(err.Error(), marker) || !strings.Contains(err.Error(), "22P02") {
			t.Errorf("%s: %v; want the SQLSTATE 22P02 without the value", what, err)
		}
	}
	check("Query(ctx).Row", users.Query(ctx).Raw("SELECT ?::int", marker).Row(ctx))
	check("DB.Gorm Row", db.Gorm(ctx).Raw("SELECT ?::int", marker).Row())
	err := db.InTx(ctx, func(ctx context.Context) error {
		check("Row in a transaction", db.Gorm(ctx).Raw("SELECT ?::int", marker).Row())
		return nil
	})
	// The failed statement aborted the transaction: its COMMIT rolls back.
	if err == nil || strings.Contains(err.Error(), marker) {
		t.Errorf("InTx after a failed Row: %v; want the rollback reported, without the value", err)
	}
	// A row that did not fail is the driver's own.
	var one int
	if err := db.Gorm(ctx).Raw("SELECT 1").Row().Scan(&one); err != nil || one != 1 {
		t.Errorf("Row of SELECT 1: %d, %v", one, err)
	}
}

// countingPlugin counts the queries GORM runs, from a callback of its own,
// and its initializations.
type countingPlugin struct{ queries, inits atomic.Int64 }

func (*countingPlugin) Name() string { return "counting" }

func (p *countingPlugin) Initialize(db *gorm.DB) error {
	p.inits.Add(1)
	return db.Callback().Query().After("gorm:query").Register("counting:query", func(*gorm.DB) { p.queries.Add(1) })
}

// TestGormPlugins: WithGormPlugins adds a plugin to dbkit's GORM, which the
// repository's statements then go through; a plugin that fails to
// initialize fails Connect.
func TestGormPlugins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := srv.NewDatabase(t)
	p := &countingPlugin{}
	db := openDB(t, cfg, dbkit.WithMigrations(schema...), dbkit.WithGormPlugins(p))
	before := p.queries.Load()
	if _, err := dbkit.NewBaseDatabase[User](db).Get(ctx, uuid.Must(uuid.NewV7())); !errors.Is(err, dbkit.ErrNotFound) {
		t.Fatal(err)
	}
	if p.queries.Load() != before+1 {
		t.Errorf("the plugin saw %d queries of a Get, want 1", p.queries.Load()-before)
	}
	if _, err := dbkit.Connect(ctx, cfg, dbkit.WithGormPlugins(failingPlugin{})); err == nil || !strings.Contains(err.Error(), "plugin failing") {
		t.Errorf("Connect with a failing plugin: %v", err)
	}
	if _, err := dbkit.Connect(ctx, cfg, dbkit.WithGormPlugins(panickingPlugin{})); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("Connect with a plugin that panics: %v, want an error", err)
	}
}

// tenantKey carries the tenant of tenancyPlugin's reads in a ctx.
type tenantKey struct{}

// tenancyPlugin changes statements before GORM builds them: reads in a
// ctx with a tenant see only users named so, and creates do nothing on a
// conflict.
type tenancyPlugin struct{}

func (tenancyPlugin) Name() string { return "tenancy" }

func (tenancyPlugin) Initialize(db *gorm.DB) error {
	return errors.Join(
		db.Callback().Query().Before("gorm:query").Register("tenancy:query", func(tx *gorm.DB) {
			if name, ok := tx.Statement.Context.Value(tenantKey{}).(string); ok {
				tx.Statement.AddClause(clause.Where{Exprs: []clause.Expression{
					clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: "name"}, Value: name},
				}})
			}
		}),
		db.Callback().Create().Before("gorm:create").Register("tenancy:create", func(tx *gorm.DB) {
			tx.Statement.AddClause(clause.OnConflict{DoNothing: true})
		}),
	)
}

// TestPluginsChangeStatementsBuiltOnce: a plugin's callback that changes a
// Get's or a Create's statement before GORM builds it is honoured on the
// server, though dbkit built both statements in advance: the statement
// GORM builds for the changed one is sent instead.
func TestPluginsChangeStatementsBuiltOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t, srv.NewDatabase(t), dbkit.WithMigrations(schema...), dbkit.WithGormPlugins(tenancyPlugin{}))
	users := dbkit.NewBaseDatabase[User](db)
	u := User{Email: "tenant@example.com", Name: "acme"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	// The same ID again: ON CONFLICT DO NOTHING, no duplicate error.
	again := User{Email: "other@example.com", Name: "other"}
	again.ID = u.ID
	if err := users.Create(ctx, &again); err != nil {
		t.Errorf("Create with the plugin's ON CONFLICT DO NOTHING: %v", err)
	}
	if got, err := users.Get(ctx, u.ID); err != nil || got.Email != u.Email {
		t.Fatalf("Get with no tenant: %+v, %v", got, err)
	}
	if got, err := users.Get(context.WithValue(ctx, tenantKey{}, "acme"), u.ID); err != nil || got.ID != u.ID {
		t.Errorf("Get as the row's tenant: %+v, %v", got, err)
	}
	if got, err := users.Get(context.WithValue(ctx, tenantKey{}, "globex"), u.ID); !errors.Is(err, dbkit.ErrNotFound) {
		t.Errorf("Get as another tenant: %+v, %v; want ErrNotFound", got, err)
	}
}

type panickingPlugin struct{}

func (panickingPlugin) Name() string              { return "panicking" }
func (panickingPlugin) Initialize(*gorm.DB) error { panic("the plugin's own trouble") }

type failingPlugin struct{}

func (failingPlugin) Name() string                 { return "failing" }
func (failingPlugin) Initialize(db *gorm.DB) error { return errors.New("cannot") }
