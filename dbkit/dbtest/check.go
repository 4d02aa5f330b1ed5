package dbtest

import (
	"context"
	"time"

	"github.com/dbkit-go/database/dbkit"
)

// CheckSchema fails the calling test, listing every difference, unless each
// model matches db's schema as [dbkit.DB.CheckSchema] compares them: a
// column no migration created, a type or nullability that differs, a
// uniqueIndex tag with no unique index. One line keeps hand-written
// migrations and the models from drifting apart unseen:
//
//	func TestSchema(t *testing.T) {
//		dbtest.CheckSchema(t, dbtest.New(t, migrations.All...), &User{}, &Order{})
//	}
func CheckSchema(t TB, db *dbkit.DB, models ...any) {
	t.Helper()
	switch {
	case db == nil:
		t.Fatalf("dbtest: CheckSchema: db is nil")
		return
	case len(models) == 0:
		t.Fatalf("dbtest: CheckSchema: no models to check")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := db.CheckSchema(ctx, models...); err != nil {
		t.Fatalf("%v", err)
	}
}
