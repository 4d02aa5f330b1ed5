package dbkit

import (
	"database/sql/driver"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// stmtProbe records what statements send on a stub DB: the SQL and vars
// of each statement after GORM's callback op ("gorm:query" or
// "gorm:create"), each driver.Valuer replaced by its value; before op, it
// applies mutate.
type stmtProbe struct {
	db     *DB
	mutate func(*gorm.DB)
	sql    []string
	vars   [][]any
	nows   *atomic.Int64 // calls of the DB's NowFunc, when counted
}

func newStmtProbe(t *testing.T, op string, opts ...Option) *stmtProbe {
	t.Helper()
	p := &stmtProbe{db: stubDB(t, 0, opts...)}
	mutate := func(tx *gorm.DB) {
		if p.mutate != nil {
			p.mutate(tx)
		}
	}
	record := func(tx *gorm.DB) {
		p.sql = append(p.sql, tx.Statement.SQL.String())
		p.vars = append(p.vars, valuesOf(t, tx.Statement.Vars))
	}
	cb := p.db.gorm.Callback()
	var err error
	switch op {
	case "gorm:query":
		err = errors.Join(cb.Query().Before(op).Register("test:mutate", mutate), cb.Query().After(op).Register("test:record", record))
	case "gorm:create":
		err = errors.Join(cb.Create().Before(op).Register("test:mutate", mutate), cb.Create().After(op).Register("test:record", record))
	default:
		err = errors.New("no probe for " + op)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// valuesOf returns vars with each driver.Valuer replaced by its value:
// GORM's serializer values point into the row they were made from.
func valuesOf(t *testing.T, vars []any) []any {
	out := slices.Clone(vars)
	for i, v := range out {
		if dv, ok := v.(driver.Valuer); ok {
			var err error
			if out[i], err = dv.Value(); err != nil {
				t.Error(err)
			}
		}
	}
	return out
}

// last returns the SQL and vars of the last statement, and forgets them.
func (p *stmtProbe) last(t *testing.T) (string, []any) {
	t.Helper()
	if len(p.sql) == 0 {
		t.Fatal("no statement ran")
	}
	s, v := p.sql[len(p.sql)-1], p.vars[len(p.vars)-1]
	p.sql, p.vars = nil, nil
	return s, v
}

// withClauseBuilder gives the statement's DB a builder of clause name that
// writes sql, as a plugin may (Config.ClauseBuilders).
func withClauseBuilder(name, sql string) func(*gorm.DB) {
	return func(tx *gorm.DB) {
		c := *tx.Config
		c.ClauseBuilders = map[string]clause.ClauseBuilder{name: func(_ clause.Clause, b clause.Builder) { b.WriteString(sql) }}
		tx.Config = &c
	}
}
