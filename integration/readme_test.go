package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// readmeImports are the imports the README's prose names for its quickstart.
var readmeImports = []string{"context", "fmt", "log", "github.com/dbkit-go/database/dbkit", "gorm.io/gorm"}

// TestREADMEQuickstart follows the README in a module of its own: its go
// get, then its quickstart as main.go, run against a fresh database with the
// command line it gives. The README can drift neither from the API nor from
// what installing takes.
func TestREADMEQuickstart(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	_, after, ok := strings.Cut(text, "<!-- quickstart")
	if !ok {
		t.Fatal("README has no <!-- quickstart --> marker")
	}
	_, after, ok = strings.Cut(after, "```go\n")
	if !ok {
		t.Fatal("no ```go block after the quickstart marker")
	}
	code, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("unterminated quickstart block")
	}
	if n := strings.Count(code, "\n"); n > 30 {
		t.Errorf("quickstart is %d lines, the README promises at most 30", n)
	}
	var header strings.Builder
	header.WriteString("package main\n\nimport (\n")
	for _, imp := range readmeImports {
		if !strings.Contains(text, "`"+imp+"`") {
			t.Errorf("the README does not name the import %q", imp)
		}
		fmt.Fprintf(&header, "\t%q\n", imp)
	}
	header.WriteString(")\n\n")

	// As a new user would: a module of their own, the README's go get,
	// the quickstart as main.go, and its command line.
	m := newUserModule(t)
	for _, cmd := range installCommands(t, "README.md") {
		m.run(cmd[1:]...)
	}
	m.write(map[string]string{"main.go": header.String() + code})
	dbURL := databaseURL(srv.NewDatabase(t))
	if !strings.Contains(text, "Run it with `DATABASE_URL=postgres://user:password@localhost:5432/app go run .`") {
		t.Error("the README no longer says how to run its quickstart as this test does")
	}
	out, err := runGo(t, m.dir, append(offline, "DATABASE_URL="+dbURL), "run", ".")
	if err != nil {
		t.Fatalf("go run README quickstart: %v\n%s", err, out)
	}
	fields := strings.Fields(out)
	if len(fields) != 3 || fields[0] != "ada@example.com" || len(fields[1]) != 36 || fields[2] != "<nil>" {
		t.Errorf("quickstart printed %q, want the email, a UUID and <nil>", out)
	}
}
