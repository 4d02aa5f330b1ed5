package migrate

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// On a plain *gorm.DB a migration's error is the driver's, whose message
// may quote a value: Error withholds it, wherever wrappers put it, and
// keeps the *pgconn.PgError reachable.
func TestErrorWithholdsServerMessage(t *testing.T) {
	const marker = "migrate-marker-9e2d"
	pgErr := &pgconn.PgError{Severity: "ERROR", Code: "42P01", Message: `relation "` + marker + `" does not exist`,
		Detail: "detail " + marker, Hint: "hint " + marker, Where: "where " + marker}
	for name, cause := range map[string]error{
		"bare":            pgErr,
		"wrapped":         fmt.Errorf("create index: %w", pgErr),
		"detail repeated": fmt.Errorf("create index: %w (%s)", pgErr, pgErr.Detail),
		"joined":          errors.Join(errors.New("first"), pgErr),
	} {
		err := &Error{ID: "0001_x", Op: OpUp, Err: cause}
		msg := err.Error()
		if strings.Contains(msg, marker) {
			t.Errorf("%s: %q quotes the value", name, msg)
		}
		if !strings.Contains(msg, "undefined_table (SQLSTATE 42P01)") || !strings.Contains(msg, `"0001_x"`) {
			t.Errorf("%s: %q does not name the migration and the SQLSTATE", name, msg)
		}
		var got *pgconn.PgError
		if !errors.As(err, &got) || got != pgErr {
			t.Errorf("%s: the *pgconn.PgError is not reachable", name)
		}
	}
	// Two server errors joined: neither's text shows.
	second := &pgconn.PgError{Severity: "ERROR", Code: "42704", Message: `role "` + marker + `2" does not exist`}
	if msg := (&Error{ID: "0003_z", Op: OpUp, Err: errors.Join(pgErr, second)}).Error(); strings.Contains(msg, marker) {
		t.Errorf("two joined server errors: %q quotes a value", msg)
	}
	plain := &Error{ID: "0002_y", Op: OpDown, Err: errors.New("bug in a migration")}
	if want := `migrate: rollback of migration "0002_y": bug in a migration`; plain.Error() != want {
		t.Errorf("Error() = %q, want %q", plain.Error(), want)
	}
}
