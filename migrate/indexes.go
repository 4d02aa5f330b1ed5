package migrate

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"
)

// invalidIndex is an index whose pg_index.indisvalid is false.
type invalidIndex struct {
	OID  int64  `gorm:"column:oid"`
	Name string // pg_class.relname
	Ref  string // regclass text: schema-qualified unless on the search path
}

// invalidIndexes lists the invalid indexes of the database. Partitioned
// indexes (relkind 'I') are left out: one created ON ONLY the parent table
// is invalid until the index of every partition is attached, by design.
func invalidIndexes(ctx context.Context, db *gorm.DB) ([]invalidIndex, error) {
	var out []invalidIndex
	err := db.WithContext(ctx).Raw(`SELECT i.indexrelid::bigint AS oid, c.relname AS name, i.indexrelid::regclass::text AS ref
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE NOT i.indisvalid AND c.relkind = 'i'
		  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
		                  WHERE p.index_relid = i.indexrelid AND p.pid <> pg_backend_pid())
		ORDER BY 3`).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("migrate: list invalid indexes: %w", err)
	}
	return out, nil
}

// refusingInvalidIndexes wraps f, the Migrate func of a NoTransaction
// migration run on conn, so that it fails with a *InvalidIndexError, and
// is therefore not recorded, when it leaves an invalid index behind: one
// that was not invalid before it, or one that was and that a statement of
// the migration names (CREATE INDEX CONCURRENTLY IF NOT EXISTS skips over
// an invalid index of the same name). Other invalid indexes are not the
// migration's doing.
//
// p keeps the statements; without it (nil), only new invalid indexes are
// refused.
func refusingInvalidIndexes(p *pinnedConn, f func(*gorm.DB) error) func(*gorm.DB) error {
	return func(tx *gorm.DB) error {
		ctx := tx.Statement.Context
		before, err := invalidIndexes(ctx, tx)
		if err != nil {
			return err
		}
		stop := func() []string { return nil }
		if p != nil {
			stop = p.startLog()
		}
		err = f(tx) // recovering: it does not panic
		stmts := stop()
		if err != nil {
			return err
		}
		after, err := invalidIndexes(ctx, tx)
		if err != nil {
			return err
		}
		old := make(map[int64]bool, len(before))
		for _, ix := range before {
			old[ix.OID] = true
		}
		var left []string
		for _, ix := range after {
			if !old[ix.OID] || mentionsAny(stmts, ix.Name) {
				left = append(left, ix.Ref)
			}
		}
		if len(left) > 0 {
			return &InvalidIndexError{Indexes: left}
		}
		return nil
	}
}

func mentionsAny(stmts []string, name string) bool {
	for _, s := range stmts {
		if mentions(s, name) {
			return true
		}
	}
	return false
}

// mentions reports whether the SQL text names the relation name, as an
// identifier: unquoted and folded to lower case as PostgreSQL folds it
// (users_Email_KEY names users_email_key), or double-quoted and exact, alone
// or as the last part of a qualified name. It reads identifiers only and
// does not skip literals or comments: a name in one counts, which at worst
// refuses a migration that wrote the name of an invalid index in a string.
func mentions(sql, name string) bool {
	for i := 0; i < len(sql); {
		r, size := utf8.DecodeRuneInString(sql[i:])
		switch {
		case r == '"':
			var b strings.Builder
			j := i + 1
			for j < len(sql) {
				if sql[j] == '"' {
					if j+1 < len(sql) && sql[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(sql[j])
				j++
			}
			if truncIdent(b.String()) == name {
				return true
			}
			i = j + 1
		case isIdentStart(r):
			j := i + size
			for j < len(sql) {
				r2, s2 := utf8.DecodeRuneInString(sql[j:])
				if !isIdentStart(r2) && !unicode.IsDigit(r2) && r2 != '$' {
					break
				}
				j += s2
			}
			if truncIdent(foldIdent(sql[i:j])) == name {
				return true
			}
			i = j
		default:
			i += size
		}
	}
	return false
}

func isIdentStart(r rune) bool { return r == '_' || unicode.IsLetter(r) }

// foldIdent folds an unquoted identifier as PostgreSQL does: ASCII letters
// to lower case, other characters kept.
func foldIdent(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// maxIdentLen is the length PostgreSQL truncates identifiers to
// (NAMEDATALEN - 1), in bytes.
const maxIdentLen = 63

// truncIdent truncates an identifier as PostgreSQL does, at a character
// boundary.
func truncIdent(s string) string {
	if len(s) <= maxIdentLen {
		return s
	}
	n := maxIdentLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
