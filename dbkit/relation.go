package dbkit

import (
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// relation is an association whose fields conditions and sorts may name as
// "assoc.field": a belongs-to or a has-one whose join finds at most one
// related row for each of the model's, so that it never repeats one: the
// related row's key columns must be unique (its primary key, or a unique
// index or constraint the model's tags declare).
type relation struct {
	name  string // the association's Go field name: the join's alias
	rel   *schema.Relationship
	input *fieldResolver // the related fields input may name; nil for none
}

// relationsOf indexes the associations of s that "assoc.field" may name,
// by Go name and JSON name. Input reaches an association only when its
// struct field is not hidden (json:"-", dbkit:"nofilter") and, with an allow
// list, when the list names some of its fields ("user.email"); its fields
// are held to the related model's own hidden-field rules.
func relationsOf(model string, s *schema.Schema, allow []string, limits InputLimits) (map[string]*relation, error) {
	rels := map[string]*relation{}
	for name, rel := range s.Relationships.Relations {
		if rel.Type != schema.BelongsTo && rel.Type != schema.HasOne || rel.Polymorphic != nil ||
			rel.FieldSchema == nil || len(rel.References) == 0 || rel.Field == nil || !joinsOneRow(rel) {
			continue
		}
		rl := &relation{name: name, rel: rel}
		var sub []string
		for _, a := range allow {
			if prefix, rest, ok := strings.Cut(a, "."); ok && (prefix == name || prefix == jsonName(rel.Field.StructField)) {
				sub = append(sub, rest)
			}
		}
		if !hiddenField(s.ModelType, rel.Field) && (len(allow) == 0 || len(sub) > 0) {
			r, err := newFieldResolverOf(model+"."+name, rel.FieldSchema, sub, limits)
			if err != nil {
				return nil, err
			}
			rl.input = r
		}
		rels[name] = rl
		if n := jsonName(rel.Field.StructField); n != "" && n != "-" {
			rels[n] = rl
		}
	}
	for _, a := range allow { // an allow list naming what is not there is a mistake
		if prefix, _, ok := strings.Cut(a, "."); ok && rels[prefix] == nil {
			return nil, fmt.Errorf("%w: InputFields: %s has no belongs-to or has-one association %s", ErrInvalid, model, quote(prefix))
		}
	}
	return rels, nil
}

// joinsOneRow reports whether rel's join finds at most one related row:
// the related columns it matches on are unique in the related table.
func joinsOneRow(rel *schema.Relationship) bool {
	var cols []*schema.Field
	for _, ref := range rel.References {
		if ref.PrimaryKey == nil || ref.ForeignKey == nil {
			return false
		}
		if ref.OwnPrimaryKey {
			cols = append(cols, ref.ForeignKey) // has-one: the related row holds the key
		} else {
			cols = append(cols, ref.PrimaryKey)
		}
	}
	return uniqueColumns(rel.FieldSchema, cols)
}

// uniqueColumns reports whether s declares cols unique: as its primary key,
// a unique field, or a unique index on exactly these columns (compared as
// the schema check compares them, sameColumns).
func uniqueColumns(s *schema.Schema, cols []*schema.Field) bool {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.DBName
	}
	if sameColumns(names, s.PrimaryFieldDBNames) || len(cols) == 1 && cols[0].Unique {
		return true
	}
	for _, idx := range s.ParseIndexes() {
		if idx.Class != "UNIQUE" || idx.Where != "" {
			continue
		}
		columns := make([]string, len(idx.Fields))
		for i, f := range idx.Fields {
			columns[i] = f.DBName
		}
		if sameColumns(names, columns) {
			return true
		}
	}
	return false
}

// column resolves a field name of a condition or a sort, from input or
// from code, to its field and column: the model's own, or an association's
// ("user.email"), whose join it adds to c.
func (r *fieldResolver) column(name string, input bool, c *compiled) (*schema.Field, clause.Column, error) {
	assoc, rest, dotted := strings.Cut(name, ".")
	if !dotted {
		var (
			f   *schema.Field
			err error
		)
		if input {
			f, err = r.field(name)
		} else {
			f, err = lookupField(r.schema, r.model, name)
		}
		if err != nil {
			return nil, clause.Column{}, err
		}
		return f, clause.Column{Table: clause.CurrentTable, Name: f.DBName}, nil
	}
	if input && len(name) > r.maxName {
		return nil, clause.Column{}, fmt.Errorf("%w: %s: the field name %s is longer than the limit of %d bytes", ErrInvalid, r.model, quote(name), r.limits.MaxNameBytes)
	}
	rl := r.rels[assoc]
	if rl == nil || input && rl.input == nil {
		return nil, clause.Column{}, fmt.Errorf("%w: %s has no association %s whose fields can be filtered or sorted on", ErrInvalid, r.model, quote(assoc))
	}
	var (
		f   *schema.Field
		err error
	)
	if input {
		f, err = rl.input.field(rest)
	} else {
		f, err = lookupField(rl.rel.FieldSchema, r.model+"."+rl.name, rest)
	}
	if err != nil {
		return nil, clause.Column{}, err
	}
	if !slices.Contains(c.joins, rl) {
		c.joins = append(c.joins, rl)
	}
	return f, clause.Column{Table: rl.name, Name: f.DBName}, nil
}

// join is the LEFT JOIN of rl, aliased by its name, on its keys; a related
// model with soft delete joins its live rows only.
func (rl *relation) join() clause.Join {
	var on []clause.Expression
	for _, ref := range rl.rel.References {
		if ref.PrimaryKey == nil || ref.ForeignKey == nil {
			continue
		}
		related, own := ref.ForeignKey, ref.PrimaryKey // has-one: the related row holds the key
		if !ref.OwnPrimaryKey {
			related, own = ref.PrimaryKey, ref.ForeignKey // belongs-to: the model holds it
		}
		on = append(on, clause.Eq{
			Column: clause.Column{Table: rl.name, Name: related.DBName},
			Value:  clause.Column{Table: clause.CurrentTable, Name: own.DBName},
		})
	}
	if d := softDeleteField(rl.rel.FieldSchema); d != nil {
		on = append(on, clause.Expr{SQL: "? IS NULL", Vars: []any{clause.Column{Table: rl.name, Name: d.DBName}}})
	}
	return clause.Join{
		Type:  clause.LeftJoin,
		Table: clause.Table{Name: rl.rel.FieldSchema.Table, Alias: rl.name},
		ON:    clause.Where{Exprs: on},
	}
}

// fromClause is the FROM clause of a statement that joins rels: the
// model's table, then each join.
func fromClause(rels []*relation) clause.From {
	from := clause.From{}
	for _, rl := range rels {
		from.Joins = append(from.Joins, rl.join())
	}
	return from
}
