package dbkit

import (
	"context"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// FindOne returns the first row matching every [Filter] among opts, in the
// order they give ([SortBy], [OrderBy]; by primary key when they give
// none), or an error matching [ErrNotFound] when no row matches (with an
// error, the zero T). opts take what [Repository.Find]'s do, but a Limit.
//
//	u, err := users.FindOne(ctx, dbkit.Eq("email", email))
func (b *Repository[T, K]) FindOne(ctx context.Context, opts ...QueryOption) (T, error) {
	var v T
	if b.err != nil {
		return v, b.err
	}
	q, err := b.compileFor(ctx, "FindOne", opts)
	if err != nil {
		return v, err
	}
	if q.limit > 0 {
		return v, b.invalid("FindOne", "takes no Limit: it returns one row")
	}
	if len(q.order) == 0 {
		q.order = []clause.OrderByColumn{{Column: b.pk}}
	}
	q.limit = 1
	ctx, span := b.start(ctx, b.names.findOne)
	err = b.db.read(ctx, span, func(ctx context.Context) error {
		v = *new(T)
		return b.rowsOf(ctx, q).Take(&v).Error
	})
	if err = b.finish(ctx, span, "FindOne", err); err != nil {
		return *new(T), err // not a row half read
	}
	return v, nil
}

// UpdateWhere sets the columns of set (Go field or column names of the
// model, each to a value of its type; nil for NULL) on every row matching
// every [Filter] among opts, and returns how many rows it updated. It sets
// UpdatedAt to the time of the update, and increments the version of a
// [Versioned] model; soft-deleted rows are left alone unless opts hold
// [WithDeleted] or [OnlyDeleted]. It is one UPDATE statement: the model's
// hooks do not run (no row is loaded to give them).
//
// With no condition it would update every row: it refuses, with an error
// matching [ErrInvalid], unless opts hold [AllRows]. The primary key,
// CreatedAt, DeletedAt and the version cannot be set; Find-only options
// (order, limit, lock, preload, select) are refused.
//
//	n, err := users.UpdateWhere(ctx, map[string]any{"active": false}, dbkit.Lt("last_seen", cutoff))
func (b *Repository[T, K]) UpdateWhere(ctx context.Context, set map[string]any, opts ...QueryOption) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	q, err := b.compileConds("UpdateWhere", opts)
	if err != nil {
		return 0, err
	}
	if len(q.joins) > 0 {
		return 0, b.invalid("UpdateWhere", "conditions on an association's fields need a join, which UPDATE cannot take")
	}
	if !q.hasWhere() && !q.all {
		return 0, b.invalid("UpdateWhere", "no condition: it would update every row; pass AllRows() to mean it")
	}
	assign, err := b.codeAssignments(set)
	if err != nil {
		return 0, fmt.Errorf("dbkit: %s.UpdateWhere: %w", b.model, err)
	}
	ctx, span := b.start(ctx, b.names.updateWhere)
	res := b.whereStatement(ctx, q).Model(new(T)).Updates(assign)
	return res.RowsAffected, b.finish(ctx, span, "UpdateWhere", res.Error)
}

// DeleteWhere deletes every row matching every [Filter] among opts (marks
// them deleted for a [SoftDelete] model), and returns how many it deleted.
// It is one DELETE (or UPDATE) statement: the model's hooks do not run.
//
// With no condition it would delete every row: it refuses, with an error
// matching [ErrInvalid], unless opts hold [AllRows]. Find-only options
// (order, limit, lock, preload, select) are refused, and so are
// [WithDeleted] and [OnlyDeleted] for a SoftDelete model (GORM would delete
// those rows for good).
//
//	n, err := sessions.DeleteWhere(ctx, dbkit.Lt("expires_at", time.Now()))
func (b *Repository[T, K]) DeleteWhere(ctx context.Context, opts ...QueryOption) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	q, err := b.compileConds("DeleteWhere", opts)
	if err != nil {
		return 0, err
	}
	if len(q.joins) > 0 {
		return 0, b.invalid("DeleteWhere", "conditions on an association's fields need a join, which DELETE cannot take")
	}
	if q.unscoped && b.fields.deletedAt != nil {
		// GORM deletes for good what it deletes unscoped: a soft-deleted
		// row, and a live one too.
		return 0, b.invalid("DeleteWhere", "WithDeleted and OnlyDeleted would delete rows for good; DeleteWhere of a SoftDelete model marks live rows only")
	}
	if !q.hasWhere() && !q.all {
		return 0, b.invalid("DeleteWhere", "no condition: it would delete every row; pass AllRows() to mean it")
	}
	ctx, span := b.start(ctx, b.names.deleteWhere)
	res := b.whereStatement(ctx, q).Delete(new(T))
	return res.RowsAffected, b.finish(ctx, span, "DeleteWhere", res.Error)
}

// whereStatement is the statement of a write by condition: q's conditions
// and soft-delete scope, no hooks, and GORM's refusal of a statement
// without a WHERE lifted when AllRows said so.
func (b *Repository[T, K]) whereStatement(ctx context.Context, q compiled) *gorm.DB {
	tx := b.conn(ctx).Session(&gorm.Session{SkipHooks: true, AllowGlobalUpdate: q.all})
	if q.unscoped {
		tx = tx.Unscoped()
	}
	if q.hasWhere() {
		tx = tx.Clauses(q.where)
	}
	return tx
}

// codeAssignments checks the columns UpdateWhere sets: fields of the model
// but the key, CreatedAt, DeletedAt and the version, each to one value of
// its type (nil only where the field can hold it).
func (b *Repository[T, K]) codeAssignments(set map[string]any) (map[string]any, error) {
	if len(set) == 0 {
		return nil, fmt.Errorf("%w: no columns to set", ErrInvalid)
	}
	out := make(map[string]any, len(set)+2)
	for name, value := range set {
		f, err := lookupField(b.schema, b.model, name)
		if err != nil {
			return nil, err
		}
		if f.PrimaryKey || f.Name == "CreatedAt" || f.DBName == b.versionCol || (b.fields.deletedAt != nil && f == b.fields.deletedAt) ||
			!f.Updatable {
			return nil, fmt.Errorf("%w: %s.%s cannot be set by UpdateWhere", ErrInvalid, b.model, f.Name)
		}
		if _, twice := out[f.DBName]; twice {
			return nil, fmt.Errorf("%w: %s.%s is set twice", ErrInvalid, b.model, f.Name)
		}
		if err := checkScalar(b.model, f, value); err != nil {
			return nil, err
		}
		if err := checkTextValue(b.model, f, value); err != nil {
			return nil, err
		}
		if value == nil && !holdsNull(f) {
			return nil, fmt.Errorf("%w: %s.%s cannot be null", ErrInvalid, b.model, f.Name)
		}
		out[f.DBName] = value
	}
	if b.versionCol != "" {
		out[b.versionCol] = gorm.Expr("? + 1", clause.Column{Table: clause.CurrentTable, Name: b.versionCol})
	}
	if f := b.schema.LookUpField("UpdatedAt"); f != nil {
		if _, given := out[f.DBName]; !given {
			out[f.DBName] = now()
		}
	}
	return out, nil
}

// holdsNull reports whether f's Go type can hold a NULL read back: a
// pointer, or a sql.Scanner (sql.NullString, gorm.DeletedAt...).
func holdsNull(f *schema.Field) bool {
	return f.FieldType.Kind() == reflect.Pointer || reflect.PointerTo(f.FieldType).Implements(scannerType)
}
