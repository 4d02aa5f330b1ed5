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
