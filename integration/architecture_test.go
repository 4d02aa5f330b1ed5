package integration

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The table of docs/architecture.md lists, for each package of the module
// but examples and tests, exactly the module's packages it imports.
func TestArchitectureImports(t *testing.T) {
	t.Parallel()
	const module = "github.com/dbkit-go/database/"
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string][]string{} // package → its imports, sorted
	row := regexp.MustCompile("^\\| (`[^|]+`) \\| ([^|]+) \\|$")
	quoted := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(doc), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var imports []string
		for _, q := range quoted.FindAllStringSubmatch(m[2], -1) {
			imports = append(imports, q[1])
		}
		slices.Sort(imports)
		for _, pkg := range quoted.FindAllStringSubmatch(m[1], -1) {
			documented[pkg[1]] = imports
		}
	}
	if len(documented) == 0 {
		t.Fatal("docs/architecture.md has no table of imports")
	}

	out, err := runGo(t, "..", nil, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if strings.HasPrefix(pkg, "examples/") || slices.Contains([]string{"integration", "internal/benchratio", "internal/redact/redacttest"}, pkg) {
			continue // programs, tests and their helpers
		}
		var imports []string
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, module) {
				imports = append(imports, strings.TrimPrefix(imp, module))
			}
		}
		slices.Sort(imports)
		want, ok := documented[pkg]
		switch {
		case !ok:
			t.Errorf("docs/architecture.md does not list package %s (it imports %v)", pkg, imports)
		case !slices.Equal(imports, want):
			t.Errorf("docs/architecture.md: %s imports %v, the doc says %v", pkg, imports, want)
		}
		delete(documented, pkg)
	}
	for pkg := range documented {
		t.Errorf("docs/architecture.md lists %s, which is not a package of the module", pkg)
	}
}
