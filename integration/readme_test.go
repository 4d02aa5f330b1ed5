package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeImports are the imports the README's prose names for its quickstart.
var readmeImports = []string{"context", "fmt", "log", "github.com/dbkit-go/database/dbkit", "gorm.io/gorm"}

// TestREADMEQuickstart compiles the README's quickstart and runs it against a
// fresh database, so the README cannot drift from the API.
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

	dir, err := os.MkdirTemp("..", "_readme_test_") // inside the module, ignored by ./...
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(header.String()+code), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := srv.NewDatabase(t)
	dbURL := databaseURL(cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goBin, err := exec.LookPath("go") // go test puts the go command that runs it first on PATH
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, goBin, "run", "./"+filepath.Base(dir))
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run README quickstart: %v\n%s", err, out.String())
	}
	fields := strings.Fields(out.String())
	if len(fields) != 3 || fields[0] != "ada@example.com" || len(fields[1]) != 36 || fields[2] != "<nil>" {
		t.Errorf("quickstart printed %q, want the email, a UUID and <nil>", out.String())
	}
}
