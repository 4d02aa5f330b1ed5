package dbkit

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

type softUser struct {
	Model
	SoftDelete
	Name string
}

type textKeyed struct {
	Code string `gorm:"primaryKey"`
	Name string
}

type intKeyed struct {
	ID   int64 `gorm:"primaryKey"`
	Name string
}

type orderID string

type namedKeyed struct {
	ID   orderID `gorm:"primaryKey"`
	Name string
}

type person struct {
	Model
	Name string
}

func (person) TableName() string { return "people" }

// Not built once: a table in another schema, a key type that builds its
// own SQL, a field type with query clauses of its own.

type auditEvent struct {
	Model
	Name string
}

func (auditEvent) TableName() string { return "audit.events" }

type exprKey string

func (k exprKey) GormValue(context.Context, *gorm.DB) clause.Expr {
	return clause.Expr{SQL: "lower(?)", Vars: []any{string(k)}}
}

type exprKeyed struct {
	ID   exprKey `gorm:"primaryKey"`
	Name string
}

// optID's Value says NULL for "none": GORM then writes IS NULL.
type optID string

func (o optID) Value() (driver.Value, error) {
	if o == "none" {
		return nil, nil
	}
	return string(o), nil
}

type optKeyed struct {
	ID   optID `gorm:"primaryKey"`
	Name string
}

// tenant is a field type whose query clause keeps reads to tenant 7.
type tenant int

func (tenant) QueryClauses(f *schema.Field) []clause.Interface {
	return []clause.Interface{tenantClause{f}}
}

type tenantClause struct{ f *schema.Field }

func (tenantClause) Name() string               { return "" }
func (tenantClause) Build(clause.Builder)       {}
func (tenantClause) MergeClause(*clause.Clause) {}
func (c tenantClause) ModifyStatement(st *gorm.Statement) {
	st.AddClause(clause.Where{Exprs: []clause.Expression{clause.Eq{Column: c.f.DBName, Value: 7}}})
}

type tenanted struct {
	Model
	Tenant tenant
}

// team has members, which a Get may preload.
type team struct {
	Model
	Members []member
}

type member struct {
	Model
	TeamID uuid.UUID `gorm:"type:uuid"`
}

// gormsGet returns the SQL and vars GORM builds for r's Get of id, as it
// builds them without dbkit: Where on the key condition, then Take.
func gormsGet[T any, K comparable](t *testing.T, p *stmtProbe, r *Repository[T, K], id K) (string, []any) {
	t.Helper()
	tx := p.db.gorm.Session(&gorm.Session{DryRun: true, NewDB: true}).Where(r.byKey(id)).Take(new(T))
	if tx.Error != nil {
		t.Fatal(tx.Error)
	}
	return p.last(t)
}

// checkGet checks that r's Get of id sends the SQL and vars GORM builds,
// and reports whether the statement built once was used to send them.
func checkGet[T any, K comparable](t *testing.T, p *stmtProbe, r *Repository[T, K], id K, opts ...QueryOption) bool {
	t.Helper()
	return checkGetIn(context.Background(), t, p, r, id, opts...)
}

// checkGetIn is checkGet with the Get run in ctx.
func checkGetIn[T any, K comparable](ctx context.Context, t *testing.T, p *stmtProbe, r *Repository[T, K], id K, opts ...QueryOption) bool {
	t.Helper()
	want, wantVars := gormsGet(t, p, r, id)
	if len(opts) > 0 {
		// GORM's build of the same options.
		q, err := r.compileFor(context.Background(), "Get", opts)
		if err != nil {
			t.Fatal(err)
		}
		tx := r.scoped(context.Background(), q).Session(&gorm.Session{DryRun: true}).Where(r.byKey(id)).Take(new(T))
		if tx.Error != nil {
			t.Fatal(tx.Error)
		}
		want, wantVars = p.last(t)
	}
	// Mark the statement built once, to see whether it was used.
	k, ok := r.get.(*keyRead)
	if !ok {
		t.Fatalf("%T: Get's statement is not built once", *new(T))
	}
	const mark = "/* built once */ "
	marked := *k
	marked.sql = mark + k.sql
	r.get = &marked
	defer func() { r.get = k }()
	if _, err := r.Get(ctx, id, opts...); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v, want ErrNotFound from the stub", err)
	}
	got, gotVars := p.last(t)
	used := strings.HasPrefix(got, mark)
	if got = strings.TrimPrefix(got, mark); got != want || !reflect.DeepEqual(gotVars, wantVars) {
		t.Errorf("Get sent\n\t%s %v\nGORM builds\n\t%s %v", got, gotVars, want, wantVars)
	}
	return used
}

// A Get by key sends the SQL GORM builds, built once, for every model
// and key type whose statement can be.
func TestKeyReadIsGORMsSQL(t *testing.T) {
	p := newStmtProbe(t, "gorm:query")
	checks := map[string]func() bool{
		"uuid key":    func() bool { return checkGet(t, p, NewBaseDatabase[overheadUser](p.db), uuid.New()) },
		"soft delete": func() bool { return checkGet(t, p, NewBaseDatabase[softUser](p.db), uuid.New()) },
		"table name":  func() bool { return checkGet(t, p, NewBaseDatabase[person](p.db), uuid.New()) },
		"text key":    func() bool { return checkGet(t, p, NewRepository[textKeyed, string](p.db), "A-1") },
		"int key":     func() bool { return checkGet(t, p, NewRepository[intKeyed, int64](p.db), 42) },
		"named key":   func() bool { return checkGet(t, p, NewRepository[namedKeyed, orderID](p.db), "o-1") },
	}
	for name, check := range checks {
		t.Run(name, func(t *testing.T) {
			if !check() {
				t.Error("GORM built the statement again")
			}
		})
	}
}

// Telemetry (statement spans, metrics, logs, repository spans, trace
// comments) leaves Get's statement as it was built.
func TestKeyReadWithTelemetry(t *testing.T) {
	p := newStmtProbe(t, "gorm:query", append(telemetryOn(t), WithRepositorySpans(), WithTraceComments())...)
	if !checkGet(t, p, NewBaseDatabase[softUser](p.db), uuid.New()) {
		t.Error("GORM built the statement again")
	}
}

// Models whose Get statement is not built once: GORM builds it per call.
func TestKeyReadDeclines(t *testing.T) {
	p := newStmtProbe(t, "gorm:query")
	for name, get := range map[string]any{
		"table in a schema":   NewBaseDatabase[auditEvent](p.db).get,
		"key building SQL":    NewRepository[exprKeyed, exprKey](p.db).get,
		"key with a Valuer":   NewRepository[optKeyed, optID](p.db).get,
		"field query clauses": NewBaseDatabase[tenanted](p.db).get,
	} {
		if _, ok := get.(*keyRead); ok {
			t.Errorf("%s: built once", name)
		}
	}
	r := NewBaseDatabase[tenanted](p.db)
	if _, err := r.Get(context.Background(), uuid.New()); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if got, _ := p.last(t); !strings.Contains(got, `"tenant" = $`) {
		t.Errorf("Get lost the field's query clause: %s", got)
	}
}

// Whatever changes a Get's statement before gorm:query (a plugin's
// callback, an option) makes GORM build it: the SQL sent is GORM's for
// the changed statement, never the one built once.
func TestKeyReadYieldsToChangedStatements(t *testing.T) {
	p := newStmtProbe(t, "gorm:query")
	users := NewBaseDatabase[softUser](p.db)
	mutations := map[string]func(tx *gorm.DB){
		"a condition added": func(tx *gorm.DB) {
			tx.Statement.AddClause(clause.Where{Exprs: []clause.Expression{clause.Eq{Column: "name", Value: "t"}}})
		},
		"a clause added": func(tx *gorm.DB) { tx.Statement.AddClause(clause.Locking{Strength: "SHARE"}) },
		"another table":  func(tx *gorm.DB) { tx.Statement.Table = "users_archive" },
		"unscoped":       func(tx *gorm.DB) { tx.Statement.Unscoped = true },
		"selected":       func(tx *gorm.DB) { tx.Statement.Selects = []string{"id"} },
		"omitted":        func(tx *gorm.DB) { tx.Statement.Omits = []string{"name"} },
		"distinct":       func(tx *gorm.DB) { tx.Statement.Distinct = true },
		"an offset":      func(tx *gorm.DB) { tx.Statement.AddClause(clause.Limit{Offset: 5}) },
		"the key's column": func(tx *gorm.DB) {
			tx.Statement.Clauses["WHERE"] = clause.Clause{Name: "WHERE", Expression: clause.Where{Exprs: []clause.Expression{
				clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: "name"}, Value: tx.Statement.Clauses["WHERE"].Expression.(clause.Where).Exprs[0].(clause.Eq).Value},
			}}}
		},
		"another schema": func(tx *gorm.DB) {
			st := &gorm.Statement{DB: tx}
			if err := st.Parse(&person{}); err != nil {
				panic(err)
			}
			tx.Statement.Schema = st.Schema
		},
		"a wrapped limit": func(tx *gorm.DB) {
			c := tx.Statement.Clauses["LIMIT"]
			c.AfterExpression = clause.Expr{SQL: "/* capped */"}
			tx.Statement.Clauses["LIMIT"] = c
		},
		"wrapped": func(tx *gorm.DB) {
			c := tx.Statement.Clauses["WHERE"]
			c.AfterExpression = clause.Expr{SQL: "/* audited */"}
			tx.Statement.Clauses["WHERE"] = c
		},
		"fewer clauses built": func(tx *gorm.DB) { tx.Statement.BuildClauses = []string{"SELECT", "FROM", "WHERE"} },
		"a table expression":  func(tx *gorm.DB) { tx.Statement.TableExpr = &clause.Expr{SQL: `"archive"."soft_users"`} },
		"SQL written":         func(tx *gorm.DB) { tx.Statement.SQL.WriteString("SELECT * FROM soft_users WHERE id = 1 LIMIT 1") },
		"a var added":         func(tx *gorm.DB) { tx.Statement.Vars = append(tx.Statement.Vars, pgx.QueryExecModeExec) },
		"a join":              func(tx *gorm.DB) { tx.Joins("JOIN teams ON true") },
		"another limit": func(tx *gorm.DB) {
			two := 2
			tx.Statement.Clauses["LIMIT"] = clause.Clause{Expression: clause.Limit{Limit: &two}}
		},
		"a key of another type": func(tx *gorm.DB) {
			c := tx.Statement.Clauses["WHERE"]
			eq := c.Expression.(clause.Where).Exprs[0].(clause.Eq)
			eq.Value = eq.Value.(pgtype.UUID).String()
			c.Expression = clause.Where{Exprs: []clause.Expression{eq}}
			tx.Statement.Clauses["WHERE"] = c
		},
		"a NULL key": func(tx *gorm.DB) {
			c := tx.Statement.Clauses["WHERE"]
			eq := c.Expression.(clause.Where).Exprs[0].(clause.Eq)
			eq.Value = pgtype.UUID{}
			c.Expression = clause.Where{Exprs: []clause.Expression{eq}}
			tx.Statement.Clauses["WHERE"] = c
		},
		"another destination": func(tx *gorm.DB) {
			tx.Statement.Dest = &overheadUser{}
			tx.Statement.ReflectValue = reflect.ValueOf(tx.Statement.Dest).Elem()
		},
		"QueryFields": func(tx *gorm.DB) {
			c := *tx.Config
			c.QueryFields = true
			tx.Config = &c
		},
		"a clause builder": withClauseBuilder("LIMIT", "FETCH FIRST ROW ONLY"),
		"a key in the destination": func(tx *gorm.DB) {
			tx.Statement.ReflectValue.FieldByName("ID").Set(reflect.ValueOf(uuid.MustParse("01a216d3-06d7-7746-8bb8-60fe2b04d63b")))
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			p.mutate = mutate
			defer func() { p.mutate = nil }()
			if checkGet(t, p, users, uuid.New()) {
				t.Error("the statement built once was sent")
			}
		})
	}
	for name, opts := range map[string][]QueryOption{
		"WithDeleted": {WithDeleted()},
		"Filter":      {Eq("name", "ada")},
		"Select":      {Select("name")},
		"OrderBy":     {OrderBy("name")},
	} {
		t.Run(name, func(t *testing.T) {
			if checkGet(t, p, users, uuid.New(), opts...) {
				t.Error("the statement built once was sent")
			}
		})
	}
	// What leaves the statement as it was: Get takes one row whatever
	// the Limit, and a transaction is only another connection.
	t.Run("unchanged", func(t *testing.T) {
		if !checkGet(t, p, users, uuid.New()) {
			t.Error("GORM built the statement again")
		}
	})
	t.Run("Limit", func(t *testing.T) {
		if !checkGet(t, p, users, uuid.New(), Limit(5)) {
			t.Error("GORM built the statement again")
		}
	})
	t.Run("Preload", func(t *testing.T) {
		if !checkGet(t, p, NewBaseDatabase[team](p.db), uuid.New(), Preload("Members")) {
			t.Error("GORM built the statement again")
		}
	})
	t.Run("InTx", func(t *testing.T) {
		err := p.db.InTx(context.Background(), func(ctx context.Context) error {
			if !checkGetIn(ctx, t, p, users, uuid.New()) {
				t.Error("GORM built the statement again")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// Concurrent Gets share the statement built once: each sends its own key.
func TestKeyReadConcurrentGets(t *testing.T) {
	db := stubDB(t, 0)
	users := NewBaseDatabase[overheadUser](db)
	if _, ok := users.get.(*keyRead); !ok {
		t.Fatal("Get's statement is not built once")
	}
	k := users.get.(*keyRead)
	marked := *k
	marked.sql = "/* built once */ " + k.sql
	users.get = &marked
	var wrong, rebuilt atomic.Int64
	if err := db.gorm.Callback().Query().After("gorm:query").Register("test:check", func(tx *gorm.DB) {
		key := tx.Statement.Clauses["WHERE"].Expression.(clause.Where).Exprs[0].(clause.Eq).Value
		if !slices.Contains(tx.Statement.Vars, key) {
			wrong.Add(1)
		}
		if tx.Statement.SQL.String() != marked.sql {
			rebuilt.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if _, err := users.Get(context.Background(), uuid.New()); !errors.Is(err, ErrNotFound) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of 1,600 Gets sent another Get's key", n)
	}
	if n := rebuilt.Load(); n > 0 {
		t.Errorf("%d of 1,600 Gets did not send the statement built once", n)
	}
}
