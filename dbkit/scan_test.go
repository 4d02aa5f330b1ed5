package dbkit

import (
	"os"
	"strings"
	"testing"
)

// queryRows is GORM's callbacks.Query of the version below with one step
// changed (scan.go). A GORM upgrade may change that function: this test
// fails until someone has compared the two again and updated the version.
func TestQueryRowsFollowsGORMsQuery(t *testing.T) {
	const compared = "v1.31.2"
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mod)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "gorm.io/gorm" {
			if f[1] != compared {
				t.Errorf("go.mod requires gorm.io/gorm %s: compare gorm.io/gorm/callbacks.Query with queryRows (scan.go), then set compared to it", f[1])
			}
			return
		}
	}
	t.Fatal("go.mod does not require gorm.io/gorm")
}
