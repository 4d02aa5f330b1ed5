package dbkit

import (
	"os"
	"strings"
	"testing"
)

// queryRows is GORM's callbacks.Query of the version below with two steps
// changed (scan.go), and keyRead.key checks what that version's
// callbacks.BuildQuerySQL reads (keyread.go). A GORM upgrade may change
// either function: this test fails until someone has compared them again
// and updated the version.
func TestQueryRowsFollowsGORMsQuery(t *testing.T) {
	const compared = "v1.31.2"
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mod)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "gorm.io/gorm" {
			if f[1] != compared {
				t.Errorf("go.mod requires gorm.io/gorm %s: compare gorm.io/gorm/callbacks.Query with queryRows (scan.go) and BuildQuerySQL's inputs with keyRead.key (keyread.go), then set compared to it", f[1])
			}
			return
		}
	}
	t.Fatal("go.mod does not require gorm.io/gorm")
}
