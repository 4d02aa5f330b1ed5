package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// withheldMarker is a bound value the server quotes back in its message.
// Lower case without punctuation, so that it is a valid name for every
// lookup below (regclass, regrole, a setting...).
const withheldMarker = "quotedmarker7f3a"

// checkWithheld fails t if the marker shows in err's message or in its %+v
// or %#v, or if the *pgconn.PgError is not reachable with the code.
func checkWithheld(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want SQLSTATE %s", code)
	}
	for _, form := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(form, err); strings.Contains(out, withheldMarker) {
			t.Errorf("%s of the error quotes the value: %s", form, out)
		}
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("errors.As(%v, *pgconn.PgError) = %v, want one with code %s", err, pgErr, code)
	}
	if !strings.Contains(err.Error(), "SQLSTATE "+code) {
		t.Errorf("error %q does not name SQLSTATE %s", err, code)
	}
}

// Server messages that quote a bound value, whatever their SQLSTATE class,
// reach neither the error's text, nor the ERROR log record, nor the span;
// the *pgconn.PgError stays reachable with errors.As.
func TestServerMessagesWithheld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := newObserved(t, srv.NewDatabase(t))
	users := dbkit.NewBaseDatabase[User](o.db)
	for _, stmt := range []string{
		`CREATE TABLE guarded (name text)`,
		`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.name LIKE 'perm%' THEN
				RAISE EXCEPTION 'no access for %', NEW.name USING ERRCODE = '42501';
			END IF;
			RAISE EXCEPTION 'object % is in use', NEW.name USING ERRCODE = '55000', HINT = NEW.name;
		END $$`,
		`CREATE TRIGGER guarded_refuse BEFORE INSERT ON guarded FOR EACH ROW EXECUTE FUNCTION refuse()`,
	} {
		if err := users.Query(ctx).Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name, sql, arg, code, condition string
	}{
		{"to_tsquery", `SELECT to_tsquery('simple', ?)`, withheldMarker + " & & |", "42601", "syntax_error"},
		{"regclass", `SELECT ?::regclass`, withheldMarker, "42P01", "undefined_table"},
		{"nextval", `SELECT nextval(?)`, withheldMarker, "42P01", "undefined_table"},
		{"regrole", `SELECT ?::regrole`, withheldMarker, "42704", "undefined_object"},
		{"current_setting", `SELECT current_setting(?)`, withheldMarker, "42704", "undefined_object"},
		{"regnamespace", `SELECT ?::regnamespace`, withheldMarker, "3F000", "invalid_schema_name"},
		{"trigger 42501", `INSERT INTO guarded VALUES (?) RETURNING name`, "perm" + withheldMarker, "42501", "insufficient_privilege"},
		{"trigger 55000", `INSERT INTO guarded VALUES (?) RETURNING name`, withheldMarker, "55000", "object_not_in_prerequisite_state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out []string
			err := users.Query(ctx).Raw(c.sql, c.arg).Scan(ctx, &out)
			checkWithheld(t, err, c.code)
			if !strings.Contains(err.Error(), c.condition) {
				t.Errorf("error %q does not name the condition %s", err, c.condition)
			}
		})
	}
	logs := o.logs.String()
	if !strings.Contains(logs, "statement failed") {
		t.Fatalf("no ERROR record of a failed statement: %s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, withheldMarker) {
			t.Errorf("log record quotes the value: %s", line)
		}
	}
	checkSpans(t, o.spans)
}

// checkSpans fails t if a span's name, attributes, events or status quote
// the marker, or if there is no span with an error status.
func checkSpans(t *testing.T, spans *tracetest.SpanRecorder) {
	t.Helper()
	failed := 0
	for _, s := range spans.Ended() {
		if s.Status().Code == codes.Error {
			failed++
		}
		if text := fmt.Sprintf("%s %v %v %v", s.Name(), s.Attributes(), s.Events(), s.Status()); strings.Contains(text, withheldMarker) {
			t.Errorf("span quotes the value: %s", text)
		}
	}
	if failed == 0 {
		t.Errorf("no span with an error status among %v", names(spans.Ended()))
	}
}

// regclassMigration fails with a message quoting its bound argument.
var regclassMigration = migrate.Migration{ID: "0001_regclass", Migrate: func(tx *gorm.DB) error {
	var oid string
	return tx.Raw(`SELECT $1::regclass`, withheldMarker).Scan(&oid).Error
}}

// A failing migration's *migrate.Error withholds the server's message too,
// run by Connect (on dbkit's connection) or by migrate on a plain *gorm.DB.
func TestFailedMigrationWithheld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("Connect", func(t *testing.T) {
		t.Parallel()
		logs, spans := &logBuffer{}, tracetest.NewSpanRecorder()
		_, err := dbkit.Connect(ctx, srv.NewDatabase(t), dbkit.WithMigrations(regclassMigration),
			dbkit.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
			dbkit.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))))
		checkWithheld(t, err, "42P01")
		var me *migrate.Error
		if !errors.As(err, &me) || me.ID != regclassMigration.ID {
			t.Errorf("err = %v, want a *migrate.Error of %s", err, regclassMigration.ID)
		}
		if strings.Contains(logs.String(), withheldMarker) {
			t.Errorf("the log quotes the value: %s", logs)
		}
		checkSpans(t, spans)
	})
	t.Run("plain gorm", func(t *testing.T) {
		t.Parallel()
		plain, err := gorm.Open(postgres.New(postgres.Config{DSN: srv.NewDatabase(t).DSN()}), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, _ := plain.DB()
		t.Cleanup(func() { sqlDB.Close() })
		_, err = newMigrator(t, plain, []migrate.Migration{regclassMigration}).Up(ctx)
		checkWithheld(t, err, "42P01")
		if !strings.Contains(err.Error(), regclassMigration.ID) {
			t.Errorf("error %q does not name the migration", err)
		}
	})
}
