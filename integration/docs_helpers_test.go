package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// docBlocks returns the ```go blocks of the doc at path that follow a
// "<!-- docs-test: marker -->" line, and fails the test when there is none.
func docBlocks(t *testing.T, path, marker string) []string {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	rest := string(doc)
	for {
		var ok bool
		if _, rest, ok = strings.Cut(rest, "<!-- docs-test: "+marker+" -->\n```go\n"); !ok {
			break
		}
		var block string
		if block, rest, ok = strings.Cut(rest, "```"); !ok {
			t.Fatalf("%s: unterminated ```go block", path)
		}
		blocks = append(blocks, strings.TrimSpace(block))
	}
	if len(blocks) == 0 {
		t.Fatalf(`%s has no "<!-- docs-test: %s -->" block`, path, marker)
	}
	return blocks
}

// tempPackage writes code to file name of a new directory of the module,
// which ./... ignores (its name starts with "_") and which is removed when
// the test ends, and returns the directory.
func tempPackage(t *testing.T, prefix, name, code string) string {
	t.Helper()
	dir, err := os.MkdirTemp("..", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, name), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goCommand runs the go command with args in the module's root: the go
// command that runs the test, which go test puts first on PATH.
func goCommand(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = ".."
	return cmd
}
