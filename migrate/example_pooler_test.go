//go:build unix && !solaris

package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/migrate"
)

// Behind a transaction pooler (PgBouncer in transaction mode) the migrator
// refuses to run, before it takes its lock: its session advisory lock
// would not hold there. Config.DirectHost names the server itself, where
// Connect runs the migrations; the DB it returns still uses the pooler.
func ExampleErrTransactionPooler() {
	ctx := context.Background()
	items := dbkit.Migration{ID: "1_items", Migrate: func(tx *gorm.DB) error {
		return tx.Exec("CREATE TABLE items (id int)").Error
	}}
	err := func() error {
		srv, err := dbtest.Shared(ctx)
		if err != nil {
			return err
		}
		pgb, err := dbtest.StartPgBouncer(ctx, srv) // transaction mode
		if err != nil {
			return err
		}
		defer func() { _ = pgb.Stop(ctx) }()
		name := fmt.Sprintf("example_pooler_%d", os.Getpid())
		if _, err := srv.CreateDatabase(ctx, name); err != nil {
			return err
		}
		defer func() { _ = srv.DropDatabase(ctx, name) }()

		cfg := pgb.Config(name) // through PgBouncer, with DirectHost the server
		pooled := cfg
		pooled.DirectHost, pooled.DirectPort = "", 0
		_, err = dbkit.Connect(ctx, pooled, dbkit.WithMigrations(items))
		fmt.Println("through the pooler:", errors.Is(err, migrate.ErrTransactionPooler))

		db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(items))
		fmt.Println("with DirectHost:", err)
		if err == nil {
			_ = db.Close(ctx)
		}
		return nil
	}()
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// through the pooler: true
	// with DirectHost: <nil>
}
