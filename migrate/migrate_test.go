package migrate

import (
	"errors"
	"strings"
	"testing"

	"gorm.io/gorm"
)

func noop(*gorm.DB) error { return nil }

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(nil, []Migration{
		{ID: "0002", Migrate: noop},
		{ID: "0001", Migrate: noop},
		{ID: "0002", Migrate: noop},
		{ID: "", Migrate: noop},
		{ID: "0003"},
	})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	want := []string{`migration ID "0002" is duplicated`, "migration #3 has an empty ID", `migration "0003" has no Migrate func`}
	if len(ve.Problems) != len(want) {
		t.Fatalf("problems = %q, want %q", ve.Problems, want)
	}
	for i := range want {
		if ve.Problems[i] != want[i] {
			t.Errorf("problem %d = %q, want %q", i, ve.Problems[i], want[i])
		}
	}
}

func TestNewSortsByID(t *testing.T) {
	m, err := New(nil, []Migration{{ID: "b", Migrate: noop}, {ID: "c", Migrate: noop}, {ID: "a", Migrate: noop}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, mig := range m.migrations {
		ids = append(ids, mig.ID)
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Errorf("order = %v, want a,b,c", ids)
	}
}

func TestErrorNamesMigrationAndUnwraps(t *testing.T) {
	cause := errors.New("boom")
	err := error(&Error{ID: "202611260900_create_users", Err: cause})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "202611260900_create_users") {
		t.Errorf("err = %v", err)
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"dbkit_migrations": `"dbkit_migrations"`,
		"ops.migrations":   `"ops"."migrations"`,
		`we"ird`:           `"we""ird"`,
	} {
		if got := quoteIdent(in); got != want {
			t.Errorf("quoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
}
