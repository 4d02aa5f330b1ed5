package dbkit

import (
	"os"
	"strings"
	"testing"
)

// queryRows is GORM's callbacks.Query of the version below with two steps
// changed (scan.go); keyRead.key checks what that version's
// callbacks.BuildQuerySQL and the PostgreSQL dialector's BindVarTo read
// (keyread.go); writeInsert does what its callbacks.ConvertToCreateValues
// does for one struct, and createPlan.fits checks what that and
// callbacks.Create read (createplan.go). An upgrade of either module may
// change them: this test fails until someone has compared them again and
// updated the versions.
func TestQueryRowsFollowsGORMsQuery(t *testing.T) {
	compared := map[string]string{
		"gorm.io/gorm":            "v1.31.2", // callbacks.Query, BuildQuerySQL, clause.Eq, Statement.AddVar
		"gorm.io/driver/postgres": "v1.6.3",  // Dialector.BindVarTo
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mod)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if want, ok := compared[f[0]]; ok {
			if f[1] != want {
				t.Errorf("go.mod requires %s %s: compare gorm.io/gorm/callbacks.Query with queryRows (scan.go), what BuildQuerySQL reads with keyRead.key (keyread.go), and callbacks.Create and ConvertToCreateValues with writeInsert and createPlan.fits (createplan.go), then set compared to it", f[0], f[1])
			}
			delete(compared, f[0])
		}
	}
	for m := range compared {
		t.Errorf("go.mod does not require %s", m)
	}
}
