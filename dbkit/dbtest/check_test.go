//go:build unix && !solaris

package dbtest

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// nicknamed is account with a field no migration created a column for.
type nicknamed struct {
	account
	Nickname string
}

func (nicknamed) TableName() string { return "users" }

// CheckSchema passes a test whose models match its database, and fails one
// whose do not, saying what differs.
func TestCheckSchema(t *testing.T) {
	s := startTestServer(t)
	db := Schema{Migrations: counted(new(atomic.Int32)), Server: s}.New(t)

	matching := &fakeTB{name: "TestSchema"}
	CheckSchema(matching, db, &account{})
	if len(matching.fatals) != 0 {
		t.Errorf("a matching model failed the test: %q", matching.fatals)
	}
	drifted := &fakeTB{name: "TestSchema"}
	CheckSchema(drifted, db, &account{}, &nicknamed{})
	if len(drifted.fatals) != 1 || !strings.Contains(drifted.fatals[0], "nicknamed.Nickname: column users.nickname does not exist") {
		t.Errorf("a model with a column no migration created: fatals %q, want the missing column", drifted.fatals)
	}
	for name, call := range map[string]func(TB){
		"no models": func(t TB) { CheckSchema(t, db) },
		"nil db":    func(t TB) { CheckSchema(t, (*dbkit.DB)(nil), &account{}) },
	} {
		f := &fakeTB{name: "TestSchema"}
		if call(f); len(f.fatals) != 1 {
			t.Errorf("%s: fatals %q, want the test failed", name, f.fatals)
		}
	}
}
