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
// names after FROM, JOIN, INTO, UPDATE, TABLE and USING, and the names a
// comma adds to a FROM list; a FROM inside a function's parentheses
// (EXTRACT(YEAR FROM t), trim(x FROM s)) names none, and the UPDATE of
// FOR UPDATE, ON CONFLICT DO UPDATE or ON UPDATE CASCADE is no operation.
// It is "" when sql names no operation the lexer knows (SET, SHOW,
// LISTEN...), and at most maxSummary characters, cut between words.
//
// The summary is an attribute of the duration metric: SQL that names a new
// table at each call (a partition per day, temporary tables) makes a new
// series each time.
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
	var (
		table    bool            // the previous word says a table's name comes next
		prev     string          // the previous word, upper-cased
		parens   []bool          // open parentheses: true for a function call's
		inFunc   int             // function calls open
		lists    = []bool{false} // per depth of parentheses: a FROM list is under way there
		function bool            // a function's name was just read: its ( comes next
	)
	for tok := lx.Scan(); tok.Type != sqllexer.EOF && tok.Type != sqllexer.ERROR; tok = lx.Scan() {
		switch tok.Type {
		case sqllexer.SPACE, sqllexer.COMMENT, sqllexer.MULTILINE_COMMENT:
			continue
		}
		word := strings.ToUpper(tok.Value)
		call := function
		function = false
		switch tok.Type {
		case sqllexer.COMMAND:
			join := word == "JOIN" || word == "STRAIGHT_JOIN"
			clause := (word == "UPDATE" || word == "DELETE") && (prev == "FOR" || prev == "DO" || prev == "ON" || prev == "KEY")
			table = !clause && (join || word == "UPDATE" || word == "TRUNCATE")
			lists[len(parens)] = word == "TRUNCATE"
			if join || clause {
				break
			}
			if !add(word) {
				return b.String()
			}
			ops++
		case sqllexer.KEYWORD:
			switch word {
			case "FROM", "INTO", "TABLE", "USING":
				table = inFunc == 0
				if table && (word == "FROM" || word == "USING") {
					lists[len(parens)] = true
				}
			case "ONLY", "IF", "EXISTS", "NOT":
				// FROM ONLY t, DROP TABLE IF EXISTS t: the name is still to come.
			case "AS":
			default:
				table, lists[len(parens)] = false, false
			}
		case sqllexer.IDENT, sqllexer.QUOTED_IDENT:
			if table && ops > 0 && !add(tok.Value) {
				return b.String()
			}
			table = false
		case sqllexer.FUNCTION:
			function = true
			table = false
		case sqllexer.PUNCTUATION:
			switch tok.Value {
			case "(":
				parens = append(parens, call)
				lists = append(lists, false)
				if call {
					inFunc++
				}
			case ")":
				if n := len(parens); n > 0 {
					if parens[n-1] {
						inFunc--
					}
					parens, lists = parens[:n-1], lists[:n]
				}
			case ",":
				table = lists[len(parens)] && inFunc == 0
				prev = word
				continue
			}
			table = false
		default:
			table = false
		}
		prev = word
	}
	if ops == 0 {
		return ""
	}
	return b.String()
}
