package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// docURL is a postgres:// URL in prose, code or a shell line.
var docURL = regexp.MustCompile("postgres(?:ql)?://[^\\s`\"'<>)]+")

// Every connection URL the docs and the examples' comments show parses with
// dbkit.ParseURL on any machine (a URL naming certificate files parses only
// where they exist), but for printed forms, whose password is [REDACTED].
func TestDocURLsParse(t *testing.T) {
	t.Parallel()
	files := []string{"../README.md"}
	for _, pattern := range []string{"../docs/*.md", "../examples/*/*.go"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			if !strings.HasSuffix(m, "_test.go") {
				files = append(files, m)
			}
		}
	}
	n := 0
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(text), "\n") {
			for _, u := range docURL.FindAllString(line, -1) {
				if strings.Contains(u, "[REDACTED]") {
					continue
				}
				n++
				if _, err := dbkit.ParseURL(u); err != nil {
					t.Errorf("%s:%d: %s: %v", file, i+1, u, err)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d URLs in the docs, fewer than they hold: is the pattern right?", n)
	}
}
