package dbkit

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"SELECT * FROM wuser_table WHERE username = $1", "SELECT wuser_table"},
		{"INSERT INTO shipping_details (id, time) SELECT id, time FROM orders", "INSERT shipping_details SELECT orders"},
		{"SELECT * FROM songs s JOIN artists a ON s.artist_id = a.id", "SELECT songs artists"},
		{"select * from public.users u left join orders o on o.user_id = u.id", "SELECT public.users orders"},
		{`UPDATE "Users" SET name = 'x' WHERE id = 1`, `UPDATE "Users"`},
		{"DELETE FROM ONLY sessions WHERE expires_at < now()", "DELETE sessions"},
		{"WITH recent AS (SELECT id FROM users) SELECT count(*) FROM recent", "SELECT users SELECT recent"},
		{"DROP TABLE IF EXISTS tmp_import", "DROP tmp_import"},
		{"CREATE TABLE accounts (id uuid PRIMARY KEY)", "CREATE accounts"},
		{"TRUNCATE TABLE events", "TRUNCATE events"},
		{"/* from the admin page */ SELECT 1", "SELECT"},
		{"SELECT 'FROM secret' FROM users", "SELECT users"}, // a literal is not a table
		{"SHOW server_version", ""},
		{"SET search_path TO app", ""},
		{"", ""},
	} {
		if got := summarize(c.sql); got != c.want {
			t.Errorf("summarize(%q) = %q, want %q", c.sql, got, c.want)
		}
	}
}

// TestSummarizeIsBounded: a summary is at most 255 characters, cut between
// words, whatever the SQL names.
func TestSummarizeIsBounded(t *testing.T) {
	sql := "SELECT * FROM " + strings.Repeat("a_rather_long_table_name_0123456789 JOIN ", 40) + "last"
	got := summarize(sql)
	if len(got) > maxSummary || !strings.HasSuffix(got, "a_rather_long_table_name_0123456789") {
		t.Errorf("summary of %d characters: %q", len(got), got)
	}
}

func TestSQLInfoHidesLiterals(t *testing.T) {
	info := newSQLInfos().of("SELECT * FROM users WHERE email = 'ada@example.com' AND age > 41 AND id = $1")
	if info.text != "SELECT * FROM users WHERE email = ? AND age > ? AND id = $1" || info.summary != "SELECT users" {
		t.Errorf("sqlInfo = %+v", *info)
	}
}

// TestSummarizeClauses: words that look like operations or tables but are
// not, and lists of tables.
func TestSummarizeClauses(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"SELECT * FROM users WHERE id = $1 FOR UPDATE", "SELECT users"},
		{"SELECT * FROM jobs FOR NO KEY UPDATE SKIP LOCKED", "SELECT jobs"},
		{"INSERT INTO users (email) VALUES ($1) ON CONFLICT (email) DO UPDATE SET name = $2", "INSERT users"},
		{"CREATE TABLE orders (user_id uuid REFERENCES users ON DELETE CASCADE ON UPDATE CASCADE)", "CREATE orders"},
		{"SELECT trim(both 'x' FROM password) FROM users", "SELECT users"},
		{"SELECT EXTRACT(YEAR FROM created_at) FROM orders", "SELECT orders"},
		{"SELECT * FROM a, b x, c WHERE a.id = b.id", "SELECT a b c"},
		{"TRUNCATE a, b", "TRUNCATE a b"},
		{"DELETE FROM orders USING users WHERE orders.user_id = users.id", "DELETE orders users"},
		{"SELECT * FROM (SELECT id FROM users) u, orders", "SELECT SELECT users orders"},
		{"SELECT count(*) FROM users WHERE id IN (SELECT user_id FROM orders)", "SELECT users SELECT orders"},
	} {
		if got := summarize(c.sql); got != c.want {
			t.Errorf("summarize(%q) = %q, want %q", c.sql, got, c.want)
		}
	}
}

// FuzzSummarize: any text gives a summary of at most 255 characters, and
// no panic.
func FuzzSummarize(f *testing.F) {
	for _, seed := range []string{"SELECT * FROM a, (b", "))) FROM x(", "UPDATE t SET a = (SELECT 1 FROM", `"q""x" FROM "a""b"`, "$$ FROM $$"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if s := summarize(sql); len(s) > maxSummary {
			t.Fatalf("summary of %d characters", len(s))
		}
	})
}
