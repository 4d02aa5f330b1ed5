package integration

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A docSample is a ```go block of a doc, and the line its code starts on.
type docSample struct {
	doc  string // path from the repository's root: docs/queries.md
	line int
	code string
}

// docSamples returns the ```go blocks of doc (a path from the repository's
// root) that start a line: indented blocks (inside list items) are fragments
// and are not among them.
func docSamples(t *testing.T, doc string) []docSample {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", doc))
	if err != nil {
		t.Fatal(err)
	}
	var samples []docSample
	var cur *docSample
	var code strings.Builder
	for i, line := range strings.Split(string(text), "\n") {
		switch {
		case cur == nil && line == "```go":
			cur = &docSample{doc: doc, line: i + 2}
			code.Reset()
		case cur != nil && line == "```":
			cur.code = code.String()
			samples = append(samples, *cur)
			cur = nil
		case cur != nil:
			code.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated ```go block", doc, cur.line-1)
	}
	if len(samples) == 0 {
		t.Fatalf("%s has no ```go block", doc)
	}
	return samples
}

// sampleImports are the packages doc samples may use, by name. A file of a
// sample package imports those it names and does not declare itself.
var sampleImports = map[string]string{
	"context":    "context",
	"errors":     "errors",
	"fmt":        "fmt",
	"http":       "net/http",
	"httptest":   "net/http/httptest",
	"json":       "encoding/json",
	"log":        "log",
	"os":         "os",
	"slog":       "log/slog",
	"sql":        "database/sql",
	"strconv":    "strconv",
	"strings":    "strings",
	"testing":    "testing",
	"time":       "time",
	"uuid":       "github.com/google/uuid",
	"gorm":       "gorm.io/gorm",
	"dbkit":      "github.com/dbkit-go/database/dbkit",
	"dbtest":     "github.com/dbkit-go/database/dbkit/dbtest",
	"migrate":    "github.com/dbkit-go/database/migrate",
	"migrations": "github.com/dbkit-go/database/examples/migrations",
	"pgx":        "github.com/jackc/pgx/v5",
	"telemetry":  "github.com/dbkit-go/database/tracing/telemetry",
	"tracing":    "github.com/dbkit-go/database/tracing",
}

// samplePackage turns samples into the files of Go package pkg, with the
// files of preamble (by name: Go declarations, without package clause or
// imports) declaring what the samples take as given: a ctx, a db, a model.
//
//   - A sample of declarations is a file as it is (a _test.go file when it
//     uses package testing).
//   - A sample of statements is the body of a func of its own returning
//     error (so that it may return err), followed by `return nil`. Each
//     variable it declares at its top level is then used (`_ = v`), and so
//     is a value standing alone as a statement (a Filter literal, say): a
//     sample may show a result without doing anything with it.
//
// Each file imports the packages of sampleImports it names, and carries
// //line directives: compile errors name the doc's lines.
func samplePackage(t *testing.T, pkg string, preamble map[string]string, samples []docSample) map[string]string {
	t.Helper()
	bodies := map[string]string{}
	maps.Copy(bodies, preamble)
	for _, s := range samples {
		name := strings.NewReplacer("/", "_", ".", "_").Replace(s.doc) + "_" + strconv.Itoa(s.line)
		path, err := filepath.Abs(filepath.Join("..", s.doc))
		if err != nil {
			t.Fatal(err)
		}
		directive := fmt.Sprintf("//line %s:%d\n", path, s.line)
		if _, err := parser.ParseFile(token.NewFileSet(), "", "package p\n"+s.code, parser.SkipObjectResolution); err == nil {
			file := name + ".go"
			if strings.Contains(s.code, "*testing.") {
				file = name + "_test.go"
			}
			bodies[file] = directive + s.code
			continue
		}
		body, err := statementSample(s.code)
		if err != nil {
			t.Fatalf("%s:%d: neither declarations nor statements: %v\n%s", s.doc, s.line, err, s.code)
		}
		bodies[name+".go"] = fmt.Sprintf("func sample%d() error {\n%s%s\treturn nil\n}\n", s.line, directive, body)
	}
	declared := map[string]bool{}
	for file, body := range bodies {
		f, err := parser.ParseFile(token.NewFileSet(), file, "package p\n"+body, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					declared[d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch spec := spec.(type) {
					case *ast.TypeSpec:
						declared[spec.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range spec.Names {
							declared[n.Name] = true
						}
					}
				}
			}
		}
	}
	files := make(map[string]string, len(bodies))
	for file, body := range bodies {
		f, err := parser.ParseFile(token.NewFileSet(), file, "package p\n"+body, 0)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var imports []string
		for _, id := range f.Unresolved {
			if path, ok := sampleImports[id.Name]; ok && !declared[id.Name] && !slices.Contains(imports, path) {
				imports = append(imports, path)
			}
		}
		sort.Strings(imports)
		var b strings.Builder
		fmt.Fprintf(&b, "package %s\n\n", pkg)
		for _, path := range imports {
			fmt.Fprintf(&b, "import %q\n", path)
		}
		b.WriteString("\n" + body)
		files[file] = b.String()
	}
	return files
}

// statementSample returns code, statements, with `_ = v` after each
// statement declaring v at the top level and `_ = ` before each value
// standing alone, on the same lines.
func statementSample(code string) (string, error) {
	const head = "package p\nfunc _() error {\n"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", head+code+"}\n", parser.SkipObjectResolution)
	if err != nil {
		return "", err
	}
	type insertion struct {
		at   int
		text string
	}
	var ins []insertion
	offset := func(p token.Pos) int { return fset.Position(p).Offset - len(head) }
	use := func(after token.Pos, names []*ast.Ident) {
		for _, n := range names {
			if n.Name != "_" {
				ins = append(ins, insertion{offset(after), "; _ = " + n.Name})
			}
		}
	}
	for _, stmt := range f.Decls[0].(*ast.FuncDecl).Body.List {
		switch stmt := stmt.(type) {
		case *ast.AssignStmt:
			if stmt.Tok == token.DEFINE {
				var names []*ast.Ident
				for _, e := range stmt.Lhs {
					names = append(names, e.(*ast.Ident))
				}
				use(stmt.End(), names)
			}
		case *ast.DeclStmt:
			for _, spec := range stmt.Decl.(*ast.GenDecl).Specs {
				if vs, ok := spec.(*ast.ValueSpec); ok {
					use(stmt.End(), vs.Names)
				}
			}
		case *ast.ExprStmt:
			if _, call := stmt.X.(*ast.CallExpr); !call {
				ins = append(ins, insertion{offset(stmt.Pos()), "_ = "})
			}
		}
	}
	sort.SliceStable(ins, func(i, j int) bool { return ins[i].at < ins[j].at })
	var b strings.Builder
	last := 0
	for _, in := range ins {
		b.WriteString(code[last:in.at])
		b.WriteString(in.text)
		last = in.at
	}
	b.WriteString(code[last:])
	return b.String(), nil
}

// testSamplePackages writes each package of pkgs (by directory name) in a
// directory of the module, then compiles them and runs their tests (those
// the preambles and the samples hold) with go test -v, and returns its
// output.
func testSamplePackages(t *testing.T, pkgs map[string]map[string]string) string {
	t.Helper()
	root, err := os.MkdirTemp("..", "_docsamples_") // inside the module, ignored by ./...
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	args := []string{"test", "-count=1", "-v"}
	for dir, files := range pkgs {
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, code := range files {
			if err := os.WriteFile(filepath.Join(root, dir, name), []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		args = append(args, "./"+filepath.Join(filepath.Base(root), dir))
	}
	out, err := runGo(t, "..", nil, args...)
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// The Go samples of the docs compile, and those that are tests pass: each
// doc is a package of its own, with a preamble declaring what its samples
// take as given. (README.md and getting-started.md are built in a module of
// their own by the install tests; migrations.md's migrations run in
// TestMigrationsDocSamples.)
func TestDocSamples(t *testing.T) {
	t.Parallel()
	pkgs := map[string]map[string]string{
		"queries": samplePackage(t, "queries", map[string]string{
			"preamble.go": `
type User struct {
	dbkit.Model
	Email string ` + "`gorm:\"not null\" json:\"email\"`" + `
	Name  string ` + "`gorm:\"not null\" json:\"name\"`" + `
}

type Job struct {
	dbkit.Model
	Done bool
}

var (
	ctx          = context.Background()
	db           *dbkit.DB
	users        *dbkit.BaseDatabase[User]
	jobRepo      *dbkit.BaseDatabase[Job]
	accounts     *dbkit.BaseDatabase[Account]
	from, to     Account
	since, until time.Time
)

func writeError(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadRequest) }
`,
			"preamble_test.go": `
var createUsers = dbkit.Migration{ID: "1", Migrate: func(tx *gorm.DB) error {
	return tx.Exec("CREATE TABLE users (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, " +
		"updated_at timestamptz NOT NULL, email text NOT NULL, name text NOT NULL)").Error
}}

// The handler answers the doc's request, and one with no size.
func TestListUsers(t *testing.T) {
	users := dbkit.NewBaseDatabase[User](dbtest.New(t, createUsers))
	if err := users.Create(context.Background(), &User{Email: "ada@example.com", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/users?name=Ada&email[ilike]=@example.com&sort=-email&size=5", "/users", "/users?sort=-email"} {
		rec := httptest.NewRecorder()
		listUsers(users)(rec, httptest.NewRequest("GET", target, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "ada@example.com") {
			t.Errorf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
	}
}
`,
		}, docSamples(t, "docs/queries.md")),
		"testing": samplePackage(t, "testing", map[string]string{
			"preamble.go": `
type User struct {
	dbkit.Model
	Email string ` + "`gorm:\"uniqueIndex;not null\"`" + `
	Name  string
}
`,
		}, docSamples(t, "docs/testing.md")),
		"configuration": samplePackage(t, "configuration", nil, docSamples(t, "docs/configuration.md")),
		// ha.md's test helpers compile; they start a Patroni cluster, which
		// make test-failover's tests do, so none of them is a Test here.
		"ha": samplePackage(t, "ha", nil, docSamples(t, "docs/ha.md")),
		"repository": samplePackage(t, "repository", map[string]string{
			"preamble.go": `
var (
	ctx    = context.Background()
	db     *dbkit.DB
	users  *dbkit.BaseDatabase[User]
	u      User
	cutoff time.Time
	points [][]any
)
`,
		}, docSamples(t, "docs/repository.md")),
		"scaling": samplePackage(t, "scaling", map[string]string{
			"preamble.go": `
type User struct {
	dbkit.Model
	Name string
}

type Item struct {
	dbkit.Model
	Stock int
}
`,
		}, docSamples(t, "docs/scaling.md")),
	}
	out := testSamplePackages(t, pkgs)
	for _, test := range []string{"TestListUsers", "TestUsers", "TestReadsFromReplicas"} { // the preamble's, testing.md's
		if !strings.Contains(out, "--- PASS: "+test+" ") {
			t.Errorf("%s did not pass:\n%s", test, out)
		}
	}
}
