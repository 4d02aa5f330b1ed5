package migrate

import (
	"regexp"
	"strings"
	"testing"
)

func TestMentions(t *testing.T) {
	cases := []struct {
		sql, name string
		want      bool
	}{
		{`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email)`, "users_email_key", true},
		{`create index concurrently if not exists Users_Email_KEY on users (email)`, "users_email_key", true},
		{`CREATE INDEX CONCURRENTLY IF NOT EXISTS public.users_email_key ON users (email)`, "users_email_key", true},
		{`CREATE INDEX CONCURRENTLY "Users Email" ON users (email)`, "Users Email", true},
		{`CREATE INDEX CONCURRENTLY "Users Email" ON users (email)`, "users email", false},
		{`CREATE INDEX CONCURRENTLY "say ""hi""" ON t (x)`, `say "hi"`, true},
		{`CREATE INDEX CONCURRENTLY users_email_key_2 ON users (email)`, "users_email_key", false},
		{`CREATE INDEX CONCURRENTLY x_users_email_key ON users (email)`, "users_email_key", false},
		{`CREATE INDEX CONCURRENTLY users_email_idx ON users (email)`, "users_email_key", false},
		{`SELECT "unterminated`, "unterminated", true},
		{`CREATE INDEX ` + strings.Repeat("a", 70) + ` ON t (x)`, strings.Repeat("a", 63), true},
		{`CREATE INDEX índice ON t (x)`, "índice", true},
		{``, "x", false},
	}
	for _, c := range cases {
		if got := mentions(c.sql, c.name); got != c.want {
			t.Errorf("mentions(%q, %q) = %v, want %v", c.sql, c.name, got, c.want)
		}
	}
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// Any name, quoted as the migrator quotes identifiers, is found in a
// statement; a plain lower-case one also unquoted in upper case; and no
// input makes mentions panic.
func FuzzMentions(f *testing.F) {
	f.Add(`CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email)`, "users_email_key")
	f.Add(`"a""b"`, `a"b`)
	f.Add("\xff\"", "\xff")
	f.Fuzz(func(t *testing.T, sql, name string) {
		_ = mentions(sql, name)
		name = strings.ReplaceAll(name, "\x00", "")
		if name == "" || len(name) > maxIdentLen {
			return
		}
		if stmt := "DROP INDEX " + quoteIdent(name) + " -- " + sql; !mentions(stmt, name) && !strings.Contains(name, ".") {
			t.Errorf("mentions(%q, %q) = false", stmt, name)
		}
		if plainIdent.MatchString(name) && !mentions("drop index "+strings.ToUpper(name)+";", name) {
			t.Errorf("the upper-case unquoted %q is not found", name)
		}
	})
}
