package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docSchemaCheckHeader opens the test file made of docs/schema-check.md's
// samples.
const docSchemaCheckHeader = `package doc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

`

// docSchemaCheckDrift runs the doc's model against the migration the doc
// says would drift, and prints what CheckSchema says between markers.
const docSchemaCheckDrift = `
func TestDocDrift(t *testing.T) {
	db := dbtest.New(t, dbkit.Migration{ID: "202612010900_create_users_drifted", Migrate: func(tx *gorm.DB) error {
		return tx.Exec(` + "`" + `CREATE TABLE users (id uuid PRIMARY KEY, created_at timestamptz NOT NULL,
			updated_at timestamptz NOT NULL, email text NOT NULL, name text NOT NULL DEFAULT '',
			age integer NOT NULL DEFAULT 0)` + "`" + `).Error
	}})
	fmt.Printf("<<<%v>>>\n", db.CheckSchema(context.Background(), &User{}))
}
`

// The samples of docs/schema-check.md compile, its test passes, and the
// error it shows is the one CheckSchema gives.
func TestSchemaCheckDocSamples(t *testing.T) {
	t.Parallel()
	var code strings.Builder
	code.WriteString(docSchemaCheckHeader)
	code.WriteString(strings.Join(docBlocks(t, "../docs/schema-check.md", "schema-check"), "\n\n"))
	doc, err := os.ReadFile("../docs/schema-check.md")
	if err != nil {
		t.Fatal(err)
	}
	_, shown, _ := strings.Cut(string(doc), "one a\nline:\n\n```\n")
	shown, _, _ = strings.Cut(shown, "```")
	if shown == "" {
		t.Fatal("docs/schema-check.md shows no error after \"one a line:\"")
	}
	code.WriteString(docSchemaCheckDrift)

	dir := tempPackage(t, "_schemacheck_docs_test_", "doc_test.go", code.String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := goCommand(ctx, t, "test", "-count=1", "-v", "./"+filepath.Base(dir))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the samples of docs/schema-check.md: %v\n%s\n%s", err, out.String(), code.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestSchema") {
		t.Errorf("the doc's TestSchema did not pass:\n%s", out.String())
	}
	_, got, _ := strings.Cut(out.String(), "<<<")
	got, _, _ = strings.Cut(got, ">>>")
	if got != strings.TrimSuffix(shown, "\n") {
		t.Errorf("docs/schema-check.md shows\n%s\nCheckSchema says\n%s", shown, got)
	}
}

// The schema test of docs/testing.md is examples/rest's, which compiles and
// runs there.
func TestTestingDocSchemaSample(t *testing.T) {
	t.Parallel()
	code, err := os.ReadFile("../examples/rest/users_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range docBlocks(t, "../docs/testing.md", "in examples/rest/users_test.go") {
		if !strings.Contains(string(code), block) {
			t.Errorf("examples/rest/users_test.go does not hold the sample of docs/testing.md:\n%s", block)
		}
	}
}
