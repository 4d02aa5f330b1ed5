package dbkit

import (
	"context"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/dbkit-go/database/internal/pgcatalog"
)

// catalog runs the catalog's queries on ctx's connection: the transaction
// ctx carries (see DB.InTx), or else the pool. They are statements like
// any other: traced, logged, translated.
func (db *DB) catalog() pgcatalog.Querier {
	return func(ctx context.Context, query string, args ...any) (pgcatalog.Rows, error) {
		conn := db.txFrom(ctx)
		if conn == nil {
			conn = db.gorm
		}
		tx := conn.Session(&gorm.Session{NewDB: true, Context: ctx}).Raw(query, args...)
		tx.Statement.Settings.Store(readOnlyKey{}, true) // not a write of ctx's Session
		return tx.Rows()
	}
}

// lazy is a value read once, when first needed, by the first caller that
// needs it; the others wait for that read, or until their own ctx ends. A
// read that fails, or that says its value is not to be kept, is not cached:
// the next caller reads again. Its zero value is ready for use.
type lazy[T any] struct {
	mu      sync.Mutex
	done    bool
	value   T
	reading chan struct{} // closed when the read under way ends; nil when none is
}

// get returns the value, reading it with read if no read succeeded yet.
func (l *lazy[T]) get(ctx context.Context, read func(context.Context) (value T, keep bool, err error)) (T, error) {
	for {
		l.mu.Lock()
		if l.done {
			v := l.value
			l.mu.Unlock()
			return v, nil
		}
		if wait := l.reading; wait != nil {
			l.mu.Unlock()
			select {
			case <-wait: // done, or failed: look again
				continue
			case <-ctx.Done():
				var zero T
				return zero, ctx.Err()
			}
		}
		reading := make(chan struct{})
		l.reading = reading
		l.mu.Unlock()
		return l.read(ctx, reading, read)
	}
}

// read runs read as the one reader, and publishes what it got.
func (l *lazy[T]) read(ctx context.Context, reading chan struct{}, read func(context.Context) (T, bool, error)) (v T, err error) {
	keep := false
	defer func() { // even if read panics: the waiters must not wait forever
		l.mu.Lock()
		if keep && err == nil {
			l.value, l.done = v, true
		}
		l.reading = nil
		l.mu.Unlock()
		close(reading)
	}()
	v, keep, err = read(ctx)
	return v, err
}

// sortNotNull reports which of the sort fields are NOT NULL: primary keys,
// fields tagged gorm:"not null", and fields whose column the database
// declares NOT NULL. The database's NOT NULLs are read from its catalog at
// the first sort that needs them, once per repository (see lazy).
func (b *Repository[T, K]) sortNotNull(ctx context.Context, fields []*schema.Field) ([]bool, error) {
	notNull := make([]bool, len(fields))
	var columns map[string]bool
	for i, f := range fields {
		if f.PrimaryKey || f.NotNull {
			notNull[i] = true
			continue
		}
		if columns == nil {
			var err error
			if columns, err = b.notNull.get(ctx, b.readNotNull); err != nil {
				return nil, err
			}
		}
		notNull[i] = columns[f.DBName]
	}
	return notNull, nil
}

// readNotNull reads which of the table's columns are NOT NULL. It keeps
// nothing while the table does not exist (the query on it will say so).
func (b *Repository[T, K]) readNotNull(ctx context.Context) (map[string]bool, bool, error) {
	tables, err := pgcatalog.ReadColumns(ctx, b.db.catalog(), []string{b.schema.Table})
	if err != nil {
		return nil, false, b.db.fromDriver(ctx, err)
	}
	columns := map[string]bool{}
	t := tables[b.schema.Table]
	if t == nil {
		return columns, false, nil
	}
	for name, c := range t.Columns {
		columns[name] = c.NotNull
	}
	return columns, true, nil
}
