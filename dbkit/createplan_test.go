package dbkit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// status is an application type stored through its driver.Valuer.
type status int

func (s status) Value() (driver.Value, error) { return int64(s), nil }

// kinds has a field of every kind a Create writes.
type kinds struct {
	Model
	Name      string
	Nick      *string
	Note      sql.NullString
	Data      []byte
	Tags      []string `gorm:"serializer:json"`
	Status    status
	Ref       uuid.UUID `gorm:"type:uuid"`
	Score     float64
	Active    bool
	Seen      time.Time
	SeenAt    *time.Time
	Plan      string `gorm:"default:free"`
	Stamp     int64  `gorm:"autoCreateTime"`
	TouchedMs int64  `gorm:"autoUpdateTime:milli"`
	Computed  string `gorm:"<-:false"`
}

// byteKinds holds bytes of a named type, which GORM binds as one
// parameter when not empty.
type byteKinds struct {
	Model
	Raw json.RawMessage `gorm:"type:jsonb"`
}

// Audit is embedded by pointer: a nil *Audit reads nil until GORM sets
// its default, which allocates it.
type Audit struct {
	Status string `gorm:"default:active"`
	Level  int
}

type audited struct {
	Model
	*Audit
}

// rawTags writes its tags as GORM writes a slice: a list of parameters.
type rawTags struct {
	Model
	Tags []string `gorm:"type:text[]"`
}

// upper builds SQL of its own for its value.
type upper string

func (u upper) GormValue(context.Context, *gorm.DB) clause.Expr {
	return clause.Expr{SQL: "upper(?)", Vars: []any{string(u)}}
}

type shouting struct {
	Model
	Word upper
}

// Not built once: a database default, an identity key, a table in a schema.

type defaulted struct {
	Model
	Token string `gorm:"default:gen_random_uuid()"`
}

var createNow = time.Date(2026, 11, 30, 9, 0, 0, 123456000, time.UTC)

// newCreateProbe is a probe of gorm:create whose DB's clock always says
// createNow, and counts how often it is asked.
func newCreateProbe(t *testing.T) *stmtProbe {
	t.Helper()
	p := newStmtProbe(t, "gorm:create")
	p.nows = new(atomic.Int64)
	p.db.gorm.NowFunc = func() time.Time {
		p.nows.Add(1)
		return createNow
	}
	return p
}

// checkCreate checks that r's Create of row sends the SQL and vars GORM
// builds for it, and leaves the row as GORM leaves it, and reports
// whether the INSERT built once was used.
func checkCreate[T any, K comparable](t *testing.T, p *stmtProbe, r *Repository[T, K], row T) bool {
	t.Helper()
	if mb, ok := any(&row).(modelBase); ok {
		// The ID dbkit would assign, given to both rows.
		if _, err := prepareNew(mb); err != nil {
			t.Fatal(err)
		}
	}
	gormsRow := row
	before := p.nows.Load()
	if err := p.db.gorm.Session(&gorm.Session{DryRun: true, NewDB: true}).Create(&gormsRow).Error; err != nil {
		t.Fatal(err)
	}
	want, wantVars := p.last(t)
	wantNows := p.nows.Load() - before
	if r.create == nil {
		t.Fatalf("%T: Create's INSERT is not built once", row)
	}
	const mark = "/* built once */ "
	plan := r.create
	marked := *plan
	marked.sql = mark + plan.sql
	r.create = &marked
	defer func() { r.create = plan }()
	before = p.nows.Load()
	if err := r.Create(context.Background(), &row); err != nil {
		t.Fatal(err)
	}
	got, gotVars := p.last(t)
	if n := p.nows.Load() - before; n != wantNows {
		t.Errorf("Create took the time %d times, GORM %d", n, wantNows)
	}
	used := strings.HasPrefix(got, mark)
	if got = strings.TrimPrefix(got, mark); got != want || !reflect.DeepEqual(gotVars, wantVars) {
		t.Errorf("Create sent\n\t%s %#v\nGORM builds\n\t%s %#v", got, gotVars, want, wantVars)
	}
	if !reflect.DeepEqual(row, gormsRow) {
		t.Errorf("Create left the row\n\t%+v\nGORM leaves it\n\t%+v", row, gormsRow)
	}
	return used
}

func someKinds() kinds {
	nick := "ada"
	seen := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	row := kinds{
		Name: "Ada", Nick: &nick, Note: sql.NullString{String: "n", Valid: true}, Data: []byte{1, 2},
		Tags: []string{"a", "b"}, Status: 3, Ref: uuid.New(), Score: 1.5, Active: true, Seen: seen, SeenAt: &seen,
	}
	row.ID = uuid.New()
	return row
}

// A Create sends the SQL and values GORM builds, built once, and leaves
// the row as GORM does (defaults and automatic times set), whatever its
// fields hold.
func TestCreatePlanIsGORMsInsert(t *testing.T) {
	p := newCreateProbe(t)
	all := NewBaseDatabase[kinds](p.db)
	given := someKinds()
	given.CreatedAt, given.UpdatedAt = createNow.Add(-time.Hour), createNow.Add(-time.Minute)
	given.Plan, given.Stamp, given.TouchedMs, given.Computed = "pro", 7, 8, "ignored"
	withID := overheadUser{Email: "a@x", Name: "A"}
	withID.ID = uuid.New()
	checks := map[string]func() bool{
		"every kind":       func() bool { return checkCreate(t, p, all, someKinds()) },
		"every kind, set":  func() bool { return checkCreate(t, p, all, given) },
		"every kind, zero": func() bool { return checkCreate(t, p, all, kinds{}) },
		"no ID":            func() bool { return checkCreate(t, p, NewBaseDatabase[overheadUser](p.db), overheadUser{Email: "a@x"}) },
		"given ID":         func() bool { return checkCreate(t, p, NewBaseDatabase[overheadUser](p.db), withID) },
		"text key":         func() bool { return checkCreate(t, p, NewRepository[textKeyed, string](p.db), textKeyed{Code: "A-1"}) },
		"soft delete":      func() bool { return checkCreate(t, p, NewBaseDatabase[softUser](p.db), softUser{Name: "s"}) },
		"bytes": func() bool {
			return checkCreate(t, p, NewBaseDatabase[byteKinds](p.db), byteKinds{Raw: json.RawMessage(`{}`)})
		},
		"table name": func() bool { return checkCreate(t, p, NewBaseDatabase[person](p.db), person{Name: "p"}) },
	}
	for name, check := range checks {
		t.Run(name, func(t *testing.T) {
			if !check() {
				t.Error("GORM built the statement again")
			}
		})
	}
}

// A row whose values GORM writes as SQL of their own or as lists, and
// models whose INSERT is not built once: GORM builds their statement.
func TestCreatePlanYieldsToGORM(t *testing.T) {
	p := newCreateProbe(t)
	id := Model{ID: uuid.New()}
	for name, check := range map[string]func() bool{
		"a slice": func() bool {
			return checkCreate(t, p, NewBaseDatabase[rawTags](p.db), rawTags{Model: id, Tags: []string{"a", "b"}})
		},
		"empty bytes": func() bool {
			return checkCreate(t, p, NewBaseDatabase[byteKinds](p.db), byteKinds{Model: id, Raw: json.RawMessage{}})
		},
		"an empty slice": func() bool { return checkCreate(t, p, NewBaseDatabase[rawTags](p.db), rawTags{Model: id}) },
		"SQL of its own": func() bool {
			return checkCreate(t, p, NewBaseDatabase[shouting](p.db), shouting{Model: id, Word: "hey"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			if check() {
				t.Error("the INSERT built once was sent")
			}
		})
	}
	for name, plan := range map[string]*createPlan{
		"database default":  NewBaseDatabase[defaulted](p.db).create,
		"identity key":      NewRepository[intKeyed, int64](p.db).create,
		"table in a schema": NewBaseDatabase[auditEvent](p.db).create,
		"embedded pointer":  NewBaseDatabase[audited](p.db).create,
	} {
		if plan != nil {
			t.Errorf("%s: built once", name)
		}
	}
}

// Whatever changes a Create's statement before gorm:create makes GORM
// build it.
func TestCreatePlanYieldsToChangedStatements(t *testing.T) {
	p := newCreateProbe(t)
	all := NewBaseDatabase[kinds](p.db)
	mutations := map[string]func(tx *gorm.DB){
		"on conflict":      func(tx *gorm.DB) { tx.Statement.AddClause(clause.OnConflict{DoNothing: true}) },
		"returning":        func(tx *gorm.DB) { tx.Statement.AddClause(clause.Returning{}) },
		"omitted":          func(tx *gorm.DB) { tx.Statement.Omits = []string{"name"} },
		"selected":         func(tx *gorm.DB) { tx.Statement.Selects = []string{"name", "id"} },
		"another table":    func(tx *gorm.DB) { tx.Statement.Table = "kinds_archive" },
		"a table expr":     func(tx *gorm.DB) { tx.Statement.TableExpr = &clause.Expr{SQL: `"archive"."kinds"`} },
		"SQL written":      func(tx *gorm.DB) { tx.Statement.SQL.WriteString(`INSERT INTO "kinds" DEFAULT VALUES`) },
		"a var added":      func(tx *gorm.DB) { tx.Statement.Vars = append(tx.Statement.Vars, 1) },
		"fewer clauses":    func(tx *gorm.DB) { tx.Statement.BuildClauses = []string{"INSERT", "VALUES"} },
		"track the time":   func(tx *gorm.DB) { tx.Statement.Settings.Store("gorm:update_track_time", true) },
		"a clause builder": withClauseBuilder("VALUES", "DEFAULT VALUES"),
		"a map": func(tx *gorm.DB) {
			tx.Statement.Dest = map[string]any{"name": "m", "id": uuid.Nil}
			tx.Statement.ReflectValue = reflect.ValueOf(tx.Statement.Dest)
		},
		"a map, the row kept": func(tx *gorm.DB) { tx.Statement.Dest = map[string]any{"name": "m", "id": uuid.Nil} },
		"another schema": func(tx *gorm.DB) {
			st := &gorm.Statement{DB: tx}
			if err := st.Parse(&person{}); err != nil {
				panic(err)
			}
			tx.Statement.Schema = st.Schema
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			p.mutate = mutate
			defer func() { p.mutate = nil }()
			if checkCreate(t, p, all, someKinds()) {
				t.Error("the INSERT built once was sent")
			}
		})
	}
}

// Concurrent Creates share the INSERT built once: each sends its own row.
func TestCreatePlanConcurrentCreates(t *testing.T) {
	db := stubDB(t, 0)
	users := NewBaseDatabase[overheadUser](db)
	if users.create == nil {
		t.Fatal("Create's INSERT is not built once")
	}
	marked := *users.create
	marked.sql = "/* built once */ " + marked.sql
	users.create = &marked
	var wrong atomic.Int64
	if err := db.gorm.Callback().Create().After("gorm:create").Register("test:check", func(tx *gorm.DB) {
		u := tx.Statement.Dest.(*overheadUser)
		if tx.Statement.SQL.String() != marked.sql || !slices.Contains(tx.Statement.Vars, any(u.Email)) ||
			!slices.Contains(tx.Statement.Vars, any(u.ID)) {
			wrong.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				u := overheadUser{Email: strings.Repeat("x", g) + "@" + string(rune('a'+i%26))}
				if err := users.Create(context.Background(), &u); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of 1,600 Creates did not send their own row through the INSERT built once", n)
	}
}
