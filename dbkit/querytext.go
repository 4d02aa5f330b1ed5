package dbkit

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/DataDog/go-sqllexer"
)

// maxSQLInfos bounds the cache of what is known of statement texts:
// statements take a few shapes, but raw SQL with literals in it could take
// many.
const maxSQLInfos = 4096

// maxSummary is the longest db.query.summary: the conventions ask that it
// not exceed 255 characters.
const maxSummary = 255

// sqlInfo is what telemetry shows of a statement's text.
type sqlInfo struct {
	// text is the text as spans (db.query.text) and statement logs show it:
	// with its literals replaced by "?", so that a value written into the
	// SQL rather than bound ('secret' in raw SQL, a string given to GORM's
	// Where) does not reach them. Placeholders ($1) and identifiers stay.
	// The semantic conventions say db.query.text SHOULD NOT be collected
	// unless literals are sanitized.
	text string
	// summary is the db.query.summary of SQL the caller wrote (see
	// summarize); statements GORM builds have their operation and table.
	summary string
}

// sqlInfos gives the sqlInfo of statement texts, cached by text, so that a
// repeated statement costs a map lookup.
//
// The lexer is DataDog's go-sqllexer: maintained, PostgreSQL-aware (dollar
// quoting, E” strings, casts), no dependencies of its own, and fast.
type sqlInfos struct {
	obf   *sqllexer.Obfuscator
	cache sync.Map // raw text -> *sqlInfo
	n     atomic.Int64
}

func newSQLInfos() *sqlInfos {
	return &sqlInfos{obf: sqllexer.NewObfuscator(
		sqllexer.WithReplacePositionalParameter(false), sqllexer.WithReplaceBindParameter(false))}
}

// of returns the sqlInfo of sql.
func (q *sqlInfos) of(sql string) *sqlInfo {
	if s, ok := q.cache.Load(sql); ok {
		return s.(*sqlInfo)
	}
	info := &sqlInfo{
		text:    q.obf.Obfuscate(sql, sqllexer.WithDBMS(sqllexer.DBMSPostgres)),
		summary: summarize(sql),
	}
	if q.n.Add(1) > maxSQLInfos {
		q.cache.Clear()
		q.n.Store(0)
	}
	q.cache.Store(sql, info)
	return info
}

// summarize generates the db.query.summary of SQL the caller wrote, as the
// semantic conventions describe it: each operation and each table it names,
// in the order they appear, as written — "SELECT users", "INSERT audit
// SELECT orders", "SELECT orders customers" for a join. Tables are the
// names after FROM, JOIN, INTO, UPDATE and TABLE. It is "" when sql names
// no operation the lexer knows (SET, SHOW, LISTEN...), and at most
// maxSummary characters, cut between words.
func summarize(sql string) string {
	lx := sqllexer.New(sql, sqllexer.WithDBMS(sqllexer.DBMSPostgres))
	var b strings.Builder
	ops := 0
	add := func(word string) bool {
		if b.Len()+1+len(word) > maxSummary {
			return false
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(word)
		return true
	}
	table := false // the previous word says a table's name comes next
	for tok := lx.Scan(); tok.Type != sqllexer.EOF && tok.Type != sqllexer.ERROR; tok = lx.Scan() {
		switch tok.Type {
		case sqllexer.SPACE, sqllexer.COMMENT, sqllexer.MULTILINE_COMMENT:
			continue
		case sqllexer.COMMAND:
			word := strings.ToUpper(tok.Value)
			table = word == "JOIN" || word == "UPDATE" || word == "STRAIGHT_JOIN"
			if word == "JOIN" || word == "STRAIGHT_JOIN" {
				continue
			}
			if !add(word) {
				return b.String()
			}
			ops++
		case sqllexer.KEYWORD:
			switch strings.ToUpper(tok.Value) {
			case "FROM", "INTO", "TABLE":
				table = true
			case "ONLY", "EXISTS", "IF", "NOT":
				// FROM ONLY t, DROP TABLE IF EXISTS t: the name is still to come.
			default:
				table = false
			}
		case sqllexer.IDENT, sqllexer.QUOTED_IDENT:
			if table && strings.EqualFold(tok.Value, "IF") {
				continue // DROP TABLE IF EXISTS t
			}
			if table && ops > 0 && !add(tok.Value) {
				return b.String()
			}
			table = false
		default:
			table = false
		}
	}
	if ops == 0 {
		return ""
	}
	return b.String()
}
