// Package pgcatalog reads what dbkit compares its models with from
// PostgreSQL's catalog: the relations of given names, their columns (type,
// nullability) and their indexes; and it compares type names however they
// are spelled ("int8" and "bigint", "timestamptz(6)" and "timestamp(6) with
// time zone").
//
// It knows nothing of GORM nor of dbkit's connection: it is given table
// names, as a model would write them (qualified or not), and a function that
// runs a query. A name is resolved the way the server resolves it in a
// statement, through search_path when it is not qualified.
package pgcatalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Rows is what a query returns: *sql.Rows satisfies it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Querier runs query, whose one parameter is written "?", on ctx's
// connection.
type Querier func(ctx context.Context, query string, args ...any) (Rows, error)

// Kind is a relation's kind, pg_class.relkind.
type Kind string

// The kinds of relation a model can map.
const (
	KindTable       Kind = "r"
	KindPartitioned Kind = "p"
	KindView        Kind = "v"
	KindMatView     Kind = "m"
	KindForeign     Kind = "f"
)

// KnowsNullability reports whether the catalog's NOT NULL marks of the
// relation's columns mean anything: a view's and a materialized view's
// columns are all marked nullable, whatever they hold.
func (k Kind) KnowsNullability() bool {
	return k == KindTable || k == KindPartitioned || k == KindForeign
}

// HasIndexes reports whether the relation can have indexes.
func (k Kind) HasIndexes() bool { return k == KindTable || k == KindPartitioned || k == KindMatView }

// HasPrimaryKey reports whether the relation can have a primary key.
func (k Kind) HasPrimaryKey() bool { return k == KindTable || k == KindPartitioned }

// Table is a relation (table, view...) found for a name.
type Table struct {
	Name    string // as asked for
	Kind    Kind
	Columns map[string]Column // by name
	Indexes []Index           // valid ones; read by Read only
}

// Column is one column of a relation.
type Column struct {
	Name string
	// Type is the column's type as format_type writes it: "character
	// varying(40)", "timestamp with time zone", "text[]", "mood".
	Type string
	// BaseType is the type under a domain, as Type (with the domain's
	// modifier); Type itself for a column whose type is no domain.
	BaseType string
	Enum     bool // BaseType is an enum
	NotNull  bool
}

// Index is a valid index of a relation (constraints' indexes included: a
// primary key or unique constraint has one).
type Index struct {
	Name string
	// Columns are the key columns, in order; "" stands for an expression.
	Columns []string
	Unique  bool
	Primary bool
	Partial bool // it has a WHERE predicate
}

// Expression reports whether one of the index's keys is an expression.
func (ix Index) Expression() bool {
	for _, c := range ix.Columns {
		if c == "" {
			return true
		}
	}
	return false
}

// relations resolves every name the way the server does in a statement:
// qualified names in their schema, others through search_path.
const relations = `WITH rel AS (
	SELECT r.name, to_regclass(r.name) AS oid FROM json_array_elements_text(?::json) AS r(name))`

const columnsQuery = relations + `
SELECT rel.name, c.relkind::text, COALESCE(a.attname, ''), COALESCE(format_type(a.atttypid, a.atttypmod), ''),
	COALESCE(CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, format_type(a.atttypid, a.atttypmod), ''),
	COALESCE(b.typtype = 'e', false), COALESCE(a.attnotnull, false)
FROM rel
JOIN pg_class c ON c.oid = rel.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END`

const indexesQuery = relations + `
SELECT rel.name, ic.relname, i.indisunique, i.indisprimary, i.indpred IS NOT NULL,
	(SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
		LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
		WHERE k.o <= i.indnkeyatts)::text
FROM rel
JOIN pg_index i ON i.indrelid = rel.oid
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indisvalid
ORDER BY rel.name, ic.relname`

// QuoteName quotes a table name as a model writes it, "users" or
// "billing.invoices", for the server to resolve as it would in a
// statement.
func QuoteName(table string) string {
	return pgx.Identifier(strings.Split(table, ".")).Sanitize() // split as GORM quotes it
}

// ReadColumns returns the relations of the given names with their columns,
// in one query. A name that resolves to no relation is not in the map.
func ReadColumns(ctx context.Context, q Querier, names []string) (map[string]*Table, error) {
	quoted, byQuoted, err := namesParam(names)
	if err != nil || len(byQuoted) == 0 {
		return map[string]*Table{}, err
	}
	rows, err := q(ctx, columnsQuery, quoted)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	defer func() { _ = rows.Close() }()
	tables := map[string]*Table{}
	for rows.Next() {
		var (
			rel, kind string
			col       Column
		)
		if err := rows.Scan(&rel, &kind, &col.Name, &col.Type, &col.BaseType, &col.Enum, &col.NotNull); err != nil {
			return nil, fmt.Errorf("read columns: %w", err)
		}
		for _, name := range byQuoted[rel] {
			t := tables[name]
			if t == nil {
				t = &Table{Name: name, Kind: Kind(kind), Columns: map[string]Column{}}
				tables[name] = t
			}
			if col.Name != "" {
				t.Columns[col.Name] = col
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	return tables, nil
}

// Read returns the relations of the given names with their columns and
// their valid indexes, in two queries. A name that resolves to no relation
// is not in the map.
func Read(ctx context.Context, q Querier, names []string) (map[string]*Table, error) {
	tables, err := ReadColumns(ctx, q, names)
	if err != nil || len(tables) == 0 {
		return tables, err
	}
	quoted, byQuoted, err := namesParam(names)
	if err != nil {
		return nil, err
	}
	rows, err := q(ctx, indexesQuery, quoted)
	if err != nil {
		return nil, fmt.Errorf("read indexes: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			rel, cols string
			ix        Index
		)
		if err := rows.Scan(&rel, &ix.Name, &ix.Unique, &ix.Primary, &ix.Partial, &cols); err != nil {
			return nil, fmt.Errorf("read indexes: %w", err)
		}
		if err := json.Unmarshal([]byte(cols), &ix.Columns); err != nil {
			return nil, fmt.Errorf("read indexes: the columns of index %s: %w", ix.Name, err)
		}
		for _, name := range byQuoted[rel] {
			if t := tables[name]; t != nil {
				t.Indexes = append(t.Indexes, ix)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read indexes: %w", err)
	}
	return tables, nil
}

// namesParam is the query's parameter, a JSON array of the quoted names,
// and the names each quoted name stands for.
func namesParam(names []string) (string, map[string][]string, error) {
	byQuoted := map[string][]string{}
	var quoted []string
	for _, n := range names {
		qn := QuoteName(n)
		if _, ok := byQuoted[qn]; !ok {
			quoted = append(quoted, qn)
		}
		if !slices.Contains(byQuoted[qn], n) {
			byQuoted[qn] = append(byQuoted[qn], n)
		}
	}
	param, err := json.Marshal(quoted)
	return string(param), byQuoted, err
}
