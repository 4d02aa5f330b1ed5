package sqlstate

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestDescribe(t *testing.T) {
	const marker = "value-marker-41ce"
	tests := []struct {
		err  pgconn.PgError
		want string
	}{
		{pgconn.PgError{Severity: "ERROR", Code: "42601", Position: 12}, "ERROR: syntax_error (SQLSTATE 42601) at position 12"},
		{pgconn.PgError{Severity: "FEHLER", SeverityUnlocalized: "ERROR", Code: "42P01"}, "ERROR: undefined_table (SQLSTATE 42P01)"},
		{pgconn.PgError{Code: "23505", ConstraintName: "users_email_key", SchemaName: "app", TableName: "users"},
			`ERROR: unique_violation (SQLSTATE 23505) constraint "users_email_key" on table "app"."users"`},
		{pgconn.PgError{Severity: "ERROR", Code: "23502", TableName: "users", ColumnName: "email", DataTypeName: "text"},
			`ERROR: not_null_violation (SQLSTATE 23502) on table "users" column "email" data type "text"`},
		{pgconn.PgError{Severity: "ERROR", Code: "3F000", SchemaName: "s"}, `ERROR: invalid_schema_name (SQLSTATE 3F000) in schema "s"`},
		{pgconn.PgError{Severity: "ERROR", Code: "XX123"}, "ERROR: (SQLSTATE XX123)"},
		{pgconn.PgError{Severity: "FATAL", Code: "57P01"}, "FATAL: admin_shutdown (SQLSTATE 57P01)"},
	}
	for _, tt := range tests {
		e := tt.err
		e.Message, e.Detail, e.Hint, e.Where, e.InternalQuery = marker, marker, marker, marker, marker
		if got := Describe(&e); got != tt.want {
			t.Errorf("Describe(%s) = %q, want %q", e.Code, got, tt.want)
		}
		if strings.Contains(Describe(&e), marker) {
			t.Errorf("Describe(%s) quotes the message", e.Code)
		}
	}
}

func TestNames(t *testing.T) {
	for code, want := range map[string]string{
		"00000": "successful_completion", "2202E": "array_subscript_error", "22P02": "invalid_text_representation",
		"23505": "unique_violation", "42501": "insufficient_privilege", "55000": "object_not_in_prerequisite_state",
		"P0001": "raise_exception", "XX000": "internal_error", "ZZ999": "",
	} {
		if got := Name(code); got != want {
			t.Errorf("Name(%s) = %q, want %q", code, got, want)
		}
	}
}
