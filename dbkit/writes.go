package dbkit

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// DefaultBatchSize is the number of rows per INSERT when CreateMany cannot
// use COPY.
const DefaultBatchSize = 1000

// copyPlan says how to COPY rows of a model, or why it cannot be done.
type copyPlan struct {
	columns []string
	fields  []*schema.Field
	sources []copySource // where each column's value comes from
	reason  string       // why not: associations, hooks, defaults, serializers
}

// copySource says where a COPY column's value comes from: the embedded
// Model, read directly, or any other field, read by reflection.
type copySource uint8

const (
	fromField copySource = iota
	fromID
	fromCreatedAt
	fromUpdatedAt
)

func newCopyPlan(s *schema.Schema) copyPlan {
	switch {
	case len(s.Relationships.Relations) > 0:
		return copyPlan{reason: "it has associations"}
	case s.BeforeCreate || s.AfterCreate || s.BeforeSave || s.AfterSave:
		return copyPlan{reason: "it has create or save hooks"}
	}
	var p copyPlan
	for _, f := range s.Fields {
		if f.DBName == "" || !f.Creatable {
			continue
		}
		if f.HasDefaultValue && !f.PrimaryKey || f.AutoIncrement {
			return copyPlan{reason: fmt.Sprintf("field %s has a database default, which COPY would not apply", f.Name)}
		}
		if f.Serializer != nil {
			return copyPlan{reason: fmt.Sprintf("field %s has a GORM serializer", f.Name)}
		}
		if (f.AutoCreateTime > 0 || f.AutoUpdateTime > 0) && f.Name != "CreatedAt" && f.Name != "UpdatedAt" {
			return copyPlan{reason: fmt.Sprintf("field %s is a GORM auto timestamp", f.Name)}
		}
		src := fromField
		switch f.Name {
		case "ID":
			src = fromID
		case "CreatedAt":
			src = fromCreatedAt
		case "UpdatedAt":
			src = fromUpdatedAt
		}
		p.columns = append(p.columns, f.DBName)
		p.fields = append(p.fields, f)
		p.sources = append(p.sources, src)
	}
	return p
}

// CreateMany inserts items and sets their IDs (UUIDv7, when zero) and
// timestamps (when zero) in place.
//
// When the model has no associations, no create or save hooks, no fields
// with database defaults and no GORM serializers, it uses PostgreSQL's COPY
// protocol (pgx CopyFrom), several times faster than INSERT for large
// batches; otherwise it inserts in batches of [DefaultBatchSize] rows through
// GORM, hooks and associations included. Either way it is one statement per
// batch: in a transaction (see [DB.InTx]) all rows or none are written; out
// of one, a failure may leave the earlier batches of an INSERT fallback.
//
// A constraint violation is a *[ConstraintError] (COPY reports the first one
// and writes nothing).
func (b *Repository[T, K]) CreateMany(ctx context.Context, items []T) error {
	if b.err != nil {
		return b.err
	}
	if len(items) == 0 {
		return nil
	}
	if err := b.checkRows(items); err != nil {
		return fmt.Errorf("dbkit: %s.CreateMany: %w", b.model, err)
	}
	ctx, span := b.start(ctx, b.names.createMany)
	var err error
	if b.copy.reason == "" {
		copyCtx, obs := b.db.startCopy(ctx, b.schema.Table, len(items))
		if err = b.copyFrom(copyCtx, items); err != nil {
			err = b.db.fromRaw(ctx, err)
		}
		obs.endCopy(len(items), err)
	} else {
		err = b.conn(ctx).CreateInBatches(&items, DefaultBatchSize).Error
	}
	return b.finish(ctx, span, "CreateMany", err)
}

// copyFrom writes items with COPY on the connection ctx's transaction runs
// on, or on a connection of the pool.
func (b *Repository[T, K]) copyFrom(ctx context.Context, items []T) error {
	now := now()
	for i := range items {
		m, err := prepareNew(any(&items[i]).(modelBase))
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("%w: item %d: its embedded *dbkit.Model is nil", ErrInvalid, i)
		}
		if m.CreatedAt.IsZero() {
			m.CreatedAt = now
		}
		if m.UpdatedAt.IsZero() {
			m.UpdatedAt = now
		}
	}
	// Rows are made as pgx encodes them, into one buffer it copies from.
	row := make([]any, len(b.copy.fields))
	source := pgx.CopyFromSlice(len(items), func(i int) ([]any, error) {
		m := any(&items[i]).(modelBase).base()
		var rv reflect.Value
		for j, src := range b.copy.sources {
			switch src {
			case fromID:
				row[j] = [16]byte(m.ID) // bytes: pgx would encode a uuid.UUID through text
			case fromCreatedAt:
				row[j] = m.CreatedAt
			case fromUpdatedAt:
				row[j] = m.UpdatedAt
			default:
				if !rv.IsValid() {
					rv = reflect.ValueOf(&items[i]).Elem()
				}
				v, _ := b.copy.fields[j].ValueOf(ctx, rv)
				if id, ok := v.(uuid.UUID); ok {
					v = [16]byte(id)
				}
				row[j] = v
			}
		}
		return row, nil
	})
	copyRows := func(driverConn any) error {
		conn, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("dbkit: COPY needs a pgx connection, got %T", driverConn)
		}
		_, err := conn.Conn().CopyFrom(ctx, pgx.Identifier(strings.Split(b.schema.Table, ".")), b.copy.columns, source)
		return err
	}
	return b.db.rawConn(ctx, copyRows)
}

// Conflict says what Upsert does when a row with the same key exists.
type Conflict struct {
	// Columns are the conflict target: the columns of a unique constraint or
	// index (Go field, column or JSON names).
	Columns []string
	// Update are the columns overwritten with the new row's values (UpdatedAt
	// is always among them). Empty: the existing row is kept as it is, and
	// returned.
	Update []string
}

// Upsert inserts *v, or, when a row with the same Conflict.Columns exists,
// updates that row's Conflict.Update columns. Either way *v is then set to
// the row as the database has it, real ID and CreatedAt included (an
// existing row keeps its own).
//
// For a [SoftDelete] model the conflict target is limited to live rows
// (ON CONFLICT (...) WHERE deleted_at IS NULL), which the partial unique
// index soft delete calls for answers. For a [Versioned] model an update
// increments the version. Of the model's hooks only AfterFind runs, on the
// rows returned, and associations are not saved: Upsert writes the row's own
// columns.
func (b *Repository[T, K]) Upsert(ctx context.Context, v *T, on Conflict) error {
	if b.err != nil {
		return b.err
	}
	if v == nil {
		return b.invalid("Upsert", "nil %s", b.model)
	}
	items := []T{*v}
	if err := b.upsert(ctx, "Upsert", b.names.upsert, items, on); err != nil {
		return err
	}
	*v = items[0]
	return nil
}

// UpsertMany is Upsert for many rows in one statement. Each item is set to
// its row as the database has it, matched by the conflict columns' values
// (not by the order PostgreSQL returns rows in). Two items with the same
// conflict key are an error (PostgreSQL's 21000): it cannot update a row
// twice in one statement.
func (b *Repository[T, K]) UpsertMany(ctx context.Context, items []T, on Conflict) error {
	if b.err != nil {
		return b.err
	}
	if len(items) == 0 {
		return nil
	}
	return b.upsert(ctx, "UpsertMany", b.names.upsertMany, items, on)
}

func (b *Repository[T, K]) upsert(ctx context.Context, op, spanName string, items []T, on Conflict) error {
	keys, updates, err := b.conflictColumns(on)
	if err == nil {
		err = b.checkRows(items)
	}
	if err != nil {
		return fmt.Errorf("dbkit: %s.%s: %w", b.model, op, err)
	}
	ctx, span := b.start(ctx, spanName)
	// INSERT ... ON CONFLICT (keys) DO UPDATE SET ... RETURNING *, built by
	// GORM (its callbacks assign IDs and timestamps; hooks are skipped, this
	// is a dry run) but run by us, so that the returned rows can be matched
	// to the items.
	onConflict := clause.OnConflict{Columns: keys, DoUpdates: clause.AssignmentColumns(updates)}
	if f := b.fields.deletedAt; f != nil {
		onConflict.TargetWhere = clause.Where{Exprs: []clause.Expression{
			clause.Expr{SQL: "? IS NULL", Vars: []any{clause.Column{Name: f.DBName}}}}}
	}
	if b.versionCol != "" {
		onConflict.DoUpdates = append(onConflict.DoUpdates, clause.Assignment{
			Column: clause.Column{Name: b.versionCol},
			Value:  clause.Expr{SQL: "? + 1", Vars: []any{clause.Column{Table: b.schema.Table, Name: b.versionCol}}},
		})
	}
	stmt := b.conn(ctx).Session(&gorm.Session{DryRun: true, SkipHooks: true}).Omit(clause.Associations).
		Clauses(onConflict, clause.Returning{}).Create(&items).Statement
	if stmt.Error != nil {
		return b.finish(ctx, span, op, stmt.Error)
	}
	var returned []T
	// Find, not Scan: the rows returned get the AfterFind hooks Get's get.
	if err := ownSQL(b.conn(ctx).Raw(stmt.SQL.String(), stmt.Vars...), "INSERT").Find(&returned).Error; err != nil {
		return b.finish(ctx, span, op, err)
	}
	// An inserted row comes back with the ID the item was given; a row that
	// existed comes back with its own, and is found by its key.
	byID := make(map[K]*T, len(returned))
	for i := range returned {
		if id, set := b.idOf(ctx, &returned[i]); set {
			byID[id] = &returned[i]
		}
	}
	var byKey map[string]*T // built the first time an item is not found by ID
	for i := range items {
		var row *T
		id, ok := b.idOf(ctx, &items[i]) // a key the database assigns is not known yet
		if ok {
			row, ok = byID[id]
		}
		if !ok {
			if byKey == nil {
				byKey = make(map[string]*T, len(returned))
				for j := range returned {
					byKey[b.keyOf(ctx, &returned[j], keys)] = &returned[j]
				}
			}
			row, ok = byKey[b.keyOf(ctx, &items[i], keys)]
		}
		if !ok {
			// The write happened: say so, and what to check.
			return b.finish(ctx, span, op, fmt.Errorf("dbkit: %s.%s: the rows were written, but item %d matches none that came back: "+
				"the database stores its conflict key differently (citext, numeric scale, time precision?)", b.model, op, i))
		}
		items[i] = *row
	}
	return b.finish(ctx, span, op, nil)
}

// conflictColumns resolves Conflict's names to columns. UpdatedAt is added
// to the updated columns; the key columns, the primary key, CreatedAt and
// Version cannot be updated. With nothing to update, the first key column
// is set to its own value (a write PostgreSQL still makes, firing triggers)
// so that it returns the existing row.
func (b *Repository[T, K]) conflictColumns(on Conflict) (keys []clause.Column, updates []string, err error) {
	if len(on.Columns) == 0 {
		return nil, nil, fmt.Errorf("%w: Conflict.Columns is empty", ErrInvalid)
	}
	isKey := map[string]bool{}
	for _, name := range on.Columns {
		f, err := lookupField(b.schema, b.model, name)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, clause.Column{Name: f.DBName})
		isKey[f.DBName] = true
	}
	seen := map[string]bool{}
	for _, name := range on.Update {
		f, err := lookupField(b.schema, b.model, name)
		if err != nil {
			return nil, nil, err
		}
		if f.PrimaryKey || isKey[f.DBName] || f.Name == "CreatedAt" || f.DBName == b.versionCol && b.versionCol != "" {
			return nil, nil, fmt.Errorf("%w: %s.%s cannot be updated by an upsert", ErrInvalid, b.model, f.Name)
		}
		if !seen[f.DBName] {
			updates = append(updates, f.DBName)
			seen[f.DBName] = true
		}
	}
	if len(updates) == 0 {
		updates = []string{keys[0].Name}
	} else if f := b.schema.LookUpField("UpdatedAt"); f != nil && !seen[f.DBName] {
		updates = append(updates, f.DBName)
	}
	return keys, updates, nil
}

// keyOf renders the values of the key columns of row, to match rows.
func (b *Repository[T, K]) keyOf(ctx context.Context, row *T, keys []clause.Column) string {
	rv := reflect.ValueOf(row).Elem()
	var sb strings.Builder
	for _, k := range keys {
		f := b.schema.LookUpField(k.Name)
		text, null, err := fieldKeyText(ctx, f, rv)
		switch {
		case null:
			sb.WriteString("\x01NULL\x00")
			continue
		case err != nil: // a type keyText does not know: its Go syntax still tells rows apart
			v, _ := f.ValueOf(ctx, rv)
			text = fmt.Sprintf("%#v", reflect.Indirect(reflect.ValueOf(v)).Interface())
		}
		sb.WriteString(text)
		sb.WriteByte(0)
	}
	return sb.String()
}
