package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A userModule is a Go module outside the repository, as a new user's
// service is, whose github.com/dbkit-go/database is this checkout (a replace
// directive, standing in for the module proxy).
type userModule struct {
	t   *testing.T
	dir string
}

// offline makes the go command use the module cache alone: no proxy, no
// checksum database. What a user module needs beyond this checkout, dbkit's
// dependencies, is there once this repository was built.
var offline = []string{"GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOFLAGS="}

// newUserModule makes a module example.com/svc in a temporary directory.
func newUserModule(t *testing.T) *userModule {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	m := &userModule{t: t, dir: t.TempDir()}
	m.run("mod", "init", "example.com/svc")
	m.run("mod", "edit", "-replace", "github.com/dbkit-go/database="+root)
	return m
}

// run runs the go command in the module, offline, and returns its output,
// ending the test if it fails.
func (m *userModule) run(args ...string) string {
	m.t.Helper()
	out, err := runGo(m.t, m.dir, offline, args...)
	if err != nil {
		m.t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runGo runs the go command that runs the tests (go test puts it first on
// PATH) in dir, with env added to the environment, and returns its output.
func runGo(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// write writes the files (by name) into the module.
func (m *userModule) write(files map[string]string) {
	m.t.Helper()
	for name, code := range files {
		if err := os.WriteFile(filepath.Join(m.dir, name), []byte(code), 0o644); err != nil {
			m.t.Fatal(err)
		}
	}
}

// installCommands returns the `go get` commands of doc (a path from the
// repository's root), in order: the lines of its plain ``` blocks that
// start with "go get", without their # comments, split into words.
func installCommands(t *testing.T, doc string) [][]string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", doc))
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	inBlock, plain := false, false
	for _, line := range strings.Split(string(text), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
			plain = inBlock && line == "```"
		case plain && strings.HasPrefix(line, "go get "):
			line, _, _ = strings.Cut(line, "#")
			cmds = append(cmds, strings.Fields(line))
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("%s has no go get command", doc)
	}
	return cmds
}

// getting-started.md, followed to the letter in a module of its own: its go
// get commands, then its samples as the files of package main (with a main
// that does nothing): they build, and its test (step 6) passes against a
// real server, with no step the guide does not list.
func TestGettingStarted(t *testing.T) {
	t.Parallel()
	const doc = "docs/getting-started.md"
	m := newUserModule(t)
	for _, cmd := range installCommands(t, doc) {
		m.run(cmd[1:]...)
	}
	m.write(samplePackage(t, "main", map[string]string{"main.go": `
var (
	ctx = context.Background()
	db  *dbkit.DB
	cfg dbkit.Config
)

func main() {}
`}, docSamples(t, doc)))
	m.run("build", "./...")
	m.run("vet", "./...")
	if out := m.run("test", "-count=1", "-v", "./..."); !strings.Contains(out, "--- PASS: TestCreateUser ") {
		t.Errorf("step 6's test did not run:\n%s", out)
	}
}
