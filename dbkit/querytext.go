package dbkit

import (
	"sync"
	"sync/atomic"

	"github.com/DataDog/go-sqllexer"
)

// maxQueryTexts bounds the cache of sanitized statement texts: statements
// take a few shapes, but raw SQL with literals in it could take many.
const maxQueryTexts = 4096

// queryTexts gives the text of a statement as spans (db.query.text) and
// statement logs show it: with its literals replaced by "?", so that a
// value written into the SQL rather than bound ('secret' in raw SQL, a
// string given to GORM's Where) does not reach them. Placeholders ($1) and
// identifiers stay. The semantic conventions say db.query.text SHOULD NOT
// be collected unless literals are sanitized.
//
// The lexer is DataDog's go-sqllexer: maintained, PostgreSQL-aware
// (dollar quoting, E” strings, casts), no dependencies of its own, and
// fast enough that, with sanitized texts cached by statement, a repeated
// statement costs a map lookup.
type queryTexts struct {
	obf   *sqllexer.Obfuscator
	cache sync.Map // raw text -> sanitized text
	n     atomic.Int64
}

func newQueryTexts() *queryTexts {
	return &queryTexts{obf: sqllexer.NewObfuscator(
		sqllexer.WithReplacePositionalParameter(false), sqllexer.WithReplaceBindParameter(false))}
}

// text returns sql with its literals replaced.
func (q *queryTexts) text(sql string) string {
	if s, ok := q.cache.Load(sql); ok {
		return s.(string)
	}
	s := q.obf.Obfuscate(sql, sqllexer.WithDBMS(sqllexer.DBMSPostgres))
	if q.n.Add(1) > maxQueryTexts {
		q.cache.Clear()
		q.n.Store(0)
	}
	q.cache.Store(sql, s)
	return s
}
