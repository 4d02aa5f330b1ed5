package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// The models of the tests' own schemas, and others' tables, match them:
// no difference is reported where there is none (dbkit.Model, SoftDelete,
// Versioned, embedded structs, a view, associations, jsonb, arrays,
// pointers, narrower integer columns).
func TestCheckSchemaFindsNoDriftInTheTestsSchemas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, c := range map[string]struct {
		migrations []dbkit.Migration
		models     []any
	}{
		"schema": {schema, []any{&User{}, &Order{}, &Hooked{}, &SlowUser{}, &Account{}, &Counter{}, &Job{}, &Booking{}, &Customer{}}},
		"atomic": {atomicSchema, []any{&Buyer{}, &Purchase{}, &Tag{}, &Audited{}}},
		"kinds":  {[]dbkit.Migration{kindsTable}, []any{&Kinds{}}},
		"values": {schema, []any{User{}, Customer{}}}, // not pointers
		"qualified": {[]dbkit.Migration{{ID: "202612010901_create_billing", Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE SCHEMA billing; CREATE TABLE billing.invoices (id uuid PRIMARY KEY,
				created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, total_cents bigint NOT NULL)`).Error
		}}}, []any{&Invoice{}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := dbtest.Schema{Migrations: c.migrations, Server: srv}.New(t)
			if err := db.CheckSchema(ctx, c.models...); err != nil {
				t.Error(err)
			}
		})
	}
}

// Invoice is in a schema of its own, not on search_path.
type Invoice struct {
	dbkit.Model
	TotalCents int64 `gorm:"not null"`
}

func (Invoice) TableName() string { return "billing.invoices" }

// Drifted is the model of the drift tests; driftTable is its table as a
// migration that matches it creates it.
type Drifted struct {
	dbkit.Model
	Email string `gorm:"uniqueIndex;not null"`
	Name  string `gorm:"size:40;index"`
	Age   int
	Note  *string
	Born  time.Time
	Tags  pgArray[string] `gorm:"type:text[]"`
	Kind  string          `gorm:"index:drifteds_kind_lower,expression:lower(kind)"`
	Code  *string         `gorm:"unique"`
}

const driftTable = `CREATE TABLE drifteds (
	id uuid PRIMARY KEY,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	email text NOT NULL,
	name varchar(40),
	age integer NOT NULL DEFAULT 0,
	note text,
	born timestamptz,
	tags text[],
	kind text NOT NULL DEFAULT '',
	code text CONSTRAINT drifteds_code_key UNIQUE);
CREATE UNIQUE INDEX drifteds_email_key ON drifteds (email);
CREATE INDEX drifteds_name_age ON drifteds (name, age);
CREATE INDEX drifteds_kind_lower ON drifteds (lower(kind))`

// driftDB returns a database migrated by ddl.
func driftDB(t *testing.T, ddl string) *dbkit.DB {
	t.Helper()
	return srv.New(t, dbkit.WithMigrations(driftMigration(ddl)))
}

func driftMigration(ddl string) dbkit.Migration {
	return dbkit.Migration{ID: "202612010900_create_drifteds", Migrate: func(tx *gorm.DB) error { return tx.Exec(ddl).Error }}
}

// edit returns driftTable with old replaced by new, which must be there.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	ddl := driftTable
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(ddl, pairs[i]) {
			t.Fatalf("driftTable has no %q", pairs[i])
		}
		ddl = strings.Replace(ddl, pairs[i], pairs[i+1], 1)
	}
	return ddl
}

// Each kind of drift is found, named and described, and alone; what only
// spells the same thing differently, or adds to the table, is no drift.
func TestCheckSchemaFindsEachDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		ddl   []string // pairs of old, new in driftTable
		want  dbkit.Drift
		alone bool // the only difference
	}{
		{name: "matching"},
		{name: "other spellings", ddl: []string{
			"age integer", "age int4", "name varchar(40)", "name character varying(40)",
			"born timestamptz", "born timestamp(3) with time zone", "tags text[]", "tags text ARRAY"}},
		{name: "narrower integer", ddl: []string{"age integer", "age smallint"}},
		{name: "a bigint for an int", ddl: []string{"age integer", "age bigint"}},
		{name: "a unique constraint for the unique index", ddl: []string{
			"email text NOT NULL,", "email text NOT NULL CONSTRAINT drifteds_email_uniq UNIQUE,",
			"CREATE UNIQUE INDEX drifteds_email_key ON drifteds (email);", ""}},
		{name: "a partial unique index", ddl: []string{"ON drifteds (email)", "ON drifteds (email) WHERE age >= 0"}},
		{name: "an index on more columns", ddl: []string{"(name, age)", "(name, age, email)"}},
		{name: "a column no field maps", ddl: []string{"kind text", "legacy text NOT NULL DEFAULT 'x', kind text"}},
		{name: "a domain", ddl: []string{
			"CREATE TABLE", "CREATE DOMAIN email_address AS text CHECK (VALUE LIKE '%@%'); CREATE TABLE",
			"email text", "email email_address"}},

		{name: "missing table", ddl: []string{"CREATE TABLE drifteds", "CREATE TABLE others", "ON drifteds", "ON others",
			"ON drifteds", "ON others", "ON drifteds", "ON others"},
			want: dbkit.Drift{Kind: dbkit.DriftMissingTable, Model: "Drifted", Table: "drifteds"}, alone: true},
		{name: "missing column", ddl: []string{"note text,", ""},
			want: dbkit.Drift{Kind: dbkit.DriftMissingColumn, Model: "Drifted", Field: "Note", Table: "drifteds", Column: "note", Want: "text"}, alone: true},
		{name: "type", ddl: []string{"age integer", "age text"},
			want: dbkit.Drift{Kind: dbkit.DriftType, Model: "Drifted", Field: "Age", Table: "drifteds", Column: "age", Want: "bigint or narrower", Got: "text"}, alone: true},
		{name: "timestamp without time zone", ddl: []string{"born timestamptz", "born timestamp"},
			want: dbkit.Drift{Kind: dbkit.DriftType, Model: "Drifted", Field: "Born", Table: "drifteds", Column: "born", Want: "timestamptz", Got: "timestamp without time zone"}, alone: true},
		{name: "length", ddl: []string{"name varchar(40)", "name varchar(20)"},
			want: dbkit.Drift{Kind: dbkit.DriftType, Model: "Drifted", Field: "Name", Table: "drifteds", Column: "name", Want: "varchar(40)", Got: "character varying(20)"}, alone: true},
		{name: "array", ddl: []string{"tags text[]", "tags text"},
			want: dbkit.Drift{Kind: dbkit.DriftType, Model: "Drifted", Field: "Tags", Table: "drifteds", Column: "tags", Want: "text[]", Got: "text"}, alone: true},
		{name: "integer wider than the field", ddl: []string{"age integer", "age numeric"},
			want: dbkit.Drift{Kind: dbkit.DriftType, Model: "Drifted", Field: "Age", Table: "drifteds", Column: "age", Want: "bigint or narrower", Got: "numeric"}, alone: true},
		{name: "nullable where the model says NOT NULL", ddl: []string{"email text NOT NULL", "email text"},
			want: dbkit.Drift{Kind: dbkit.DriftNullable, Model: "Drifted", Field: "Email", Table: "drifteds", Column: "email", Want: "NOT NULL", Got: "nullable"}, alone: true},
		{name: "NOT NULL where the field can be nil", ddl: []string{"note text", "note text NOT NULL"},
			want: dbkit.Drift{Kind: dbkit.DriftNotNull, Model: "Drifted", Field: "Note", Table: "drifteds", Column: "note", Want: "nullable (a *string can be nil)", Got: "NOT NULL"}, alone: true},
		{name: "unique index not unique", ddl: []string{"CREATE UNIQUE INDEX drifteds_email_key", "CREATE INDEX drifteds_email_key"},
			want: dbkit.Drift{Kind: dbkit.DriftUnique, Model: "Drifted", Field: "Email", Table: "drifteds", Column: "email", Want: "unique index on (email)", Got: "none"}, alone: true},
		{name: "unique index on more columns", ddl: []string{"ON drifteds (email)", "ON drifteds (email, name)"},
			want: dbkit.Drift{Kind: dbkit.DriftUnique, Model: "Drifted", Field: "Email", Table: "drifteds", Column: "email", Want: "unique index on (email)", Got: "none"}, alone: true},
		{name: "unique tag without a unique constraint", ddl: []string{"code text CONSTRAINT drifteds_code_key UNIQUE", "code text"},
			want: dbkit.Drift{Kind: dbkit.DriftUnique, Model: "Drifted", Field: "Code", Table: "drifteds", Column: "code", Want: "unique index on (code)", Got: "none"}, alone: true},
		{name: "index missing", ddl: []string{"CREATE INDEX drifteds_name_age ON drifteds (name, age);", ""},
			want: dbkit.Drift{Kind: dbkit.DriftIndex, Model: "Drifted", Field: "Name", Table: "drifteds", Column: "name", Want: "index on (name)", Got: "none"}, alone: true},
		{name: "index on other first columns", ddl: []string{"(name, age)", "(age, name)"},
			want: dbkit.Drift{Kind: dbkit.DriftIndex, Model: "Drifted", Field: "Name", Table: "drifteds", Column: "name", Want: "index on (name)", Got: "none"}, alone: true},
		{name: "expression index missing", ddl: []string{"CREATE INDEX drifteds_kind_lower ON drifteds (lower(kind))", "CREATE INDEX drifteds_kind ON drifteds (lower(kind))"},
			want: dbkit.Drift{Kind: dbkit.DriftIndex, Model: "Drifted", Field: "Kind", Table: "drifteds", Column: "kind", Want: "index drifteds_kind_lower", Got: "none"}, alone: true},
		{name: "primary key on another column", ddl: []string{"id uuid PRIMARY KEY", "id uuid NOT NULL", "drifteds_code_key UNIQUE)", "drifteds_code_key UNIQUE, PRIMARY KEY (email))"},
			want: dbkit.Drift{Kind: dbkit.DriftPrimaryKey, Model: "Drifted", Table: "drifteds", Column: "id", Want: "(id)", Got: "(email)"}, alone: true},
		{name: "no primary key", ddl: []string{"id uuid PRIMARY KEY", "id uuid NOT NULL"},
			want: dbkit.Drift{Kind: dbkit.DriftPrimaryKey, Model: "Drifted", Table: "drifteds", Column: "id", Want: "(id)", Got: "none"}, alone: true},
		{name: "nullable primary key column", ddl: []string{"id uuid PRIMARY KEY", "id uuid", "drifteds_code_key UNIQUE);", "drifteds_code_key UNIQUE); CREATE UNIQUE INDEX drifteds_pkey ON drifteds (id);"},
			want: dbkit.Drift{Kind: dbkit.DriftNullable, Model: "Drifted", Field: "ID", Table: "drifteds", Column: "id", Want: "NOT NULL", Got: "nullable"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := driftDB(t, edit(t, c.ddl...))
			err := db.CheckSchema(ctx, &Drifted{})
			if c.want.Kind == "" {
				if err != nil {
					t.Fatalf("CheckSchema = %v, want no drift", err)
				}
				return
			}
			var drift *dbkit.SchemaDriftError
			if !errors.As(err, &drift) || !errors.Is(err, dbkit.ErrSchemaDrift) {
				t.Fatalf("CheckSchema = %v, want a *SchemaDriftError matching ErrSchemaDrift", err)
			}
			found := false
			for _, d := range drift.Drifts {
				found = found || d == c.want
			}
			if !found || c.alone && len(drift.Drifts) != 1 {
				t.Fatalf("CheckSchema = %v\nwant %s%s", err, c.want, map[bool]string{true: ", alone"}[c.alone])
			}
			if !strings.Contains(err.Error(), c.want.String()) {
				t.Errorf("the error %q does not say %q", err, c.want)
			}
		})
	}
}

// The check reads names from the catalog, nothing else: what the rows hold
// never shows in the error.
func TestCheckSchemaErrorHoldsNoValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := driftDB(t, edit(t, "age integer NOT NULL DEFAULT 0", "age text NOT NULL DEFAULT 'secret-default'")+`;
		INSERT INTO drifteds (id, created_at, updated_at, email, age)
		VALUES (gen_random_uuid(), now(), now(), 'secret-row@example.com', 'secret-age')`)
	err := db.CheckSchema(ctx, &Drifted{})
	if !errors.Is(err, dbkit.ErrSchemaDrift) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("CheckSchema = %v, want the drift of age without a value", err)
	}
}

// Connect with WithSchemaCheck checks after migrating, and fails on drift;
// WithSchemaCheckWarn logs every difference at WARN and connects.
func TestConnectChecksTheSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	db, err := dbkit.Connect(ctx, srv.NewDatabase(t), dbkit.WithMigrations(driftMigration(driftTable)), dbkit.WithSchemaCheck(&Drifted{}))
	if err != nil {
		t.Fatalf("Connect migrating a matching table: %v", err)
	}
	_ = db.Close(ctx)

	drifted := srv.NewDatabase(t)
	migrateDB(t, drifted, driftMigration(edit(t, "note text,", "", "born timestamptz", "born timestamp")))
	if _, err := dbkit.Connect(ctx, drifted, dbkit.WithSchemaCheck(&Drifted{})); !errors.Is(err, dbkit.ErrSchemaDrift) ||
		!strings.Contains(err.Error(), "Drifted.Note: column drifteds.note does not exist") ||
		!strings.Contains(err.Error(), "Drifted.Born: column drifteds.born is timestamp without time zone; the model says timestamptz") {
		t.Fatalf("Connect to a drifted schema = %v, want ErrSchemaDrift naming both differences", err)
	}

	var logs logBuffer
	db, err = dbkit.Connect(ctx, drifted, dbkit.WithSchemaCheckWarn(&Drifted{}), dbkit.WithLogger(logs.logger()))
	if err != nil {
		t.Fatalf("Connect with WithSchemaCheckWarn = %v, want it connected", err)
	}
	_ = db.Close(ctx)
	warned := 0
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "schema drift") && strings.Contains(line, "model=Drifted") {
			warned++
		}
	}
	if warned != 2 || !strings.Contains(logs.String(), "kind=\"missing column\"") || !strings.Contains(logs.String(), "column=born") {
		t.Errorf("%d WARN records of drift, want 2, one a difference:\n%s", warned, logs.String())
	}

	if _, err := dbkit.Connect(ctx, drifted, dbkit.WithSchemaCheckWarn(new(int))); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Connect with a model GORM cannot parse = %v, want ErrInvalid", err)
	}
}
