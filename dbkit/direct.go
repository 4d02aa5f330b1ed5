package dbkit

import (
	"context"
	"time"
)

// directConns is the size of the direct connection's pool: the migrator's
// pinned connection and one for its reads of the migration table.
const directConns = 2

// migrateAt runs the migrations of [WithMigrations] or the check of
// [WithMigrationCheck]: on the main pool, or, when [Config.DirectHost] is
// set, on a DB of its own opened to the server itself and closed right
// after, so that the migrator's session advisory lock is taken on a
// session, not through the transaction pooler Host and Port name (which the
// migrator refuses: migrate.ErrTransactionPooler). The main pool never runs
// them then.
func (db *DB) migrateAt(ctx context.Context, o options) error {
	if db.cfg.DirectHost == "" {
		return db.migrate(ctx, o)
	}
	direct, err := db.openDirect(ctx, o)
	if err != nil {
		return err
	}
	err = direct.migrate(ctx, o)
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if cerr := direct.Close(closeCtx); err == nil {
		err = cerr
	}
	return err
}

// openDirect opens a small DB to the server at DirectHost:DirectPort with
// the main DB's options: its logger, tracer and meter providers (its pool
// named apart), but not its GORM plugins. A plugin is initialized once,
// on the DB it serves: one that keeps the *gorm.DB or registers metrics
// (gorm.io/plugin/prometheus) would be left pointing at this short-lived
// DB, closed once the migrations have run.
func (db *DB) openDirect(ctx context.Context, o options) (*DB, error) {
	cfg := db.cfg.directConfig()
	cfg.MaxOpenConns, cfg.MaxIdleConns = directConns, directConns
	if o.poolName != "" {
		o.poolName += " (direct)"
	}
	o.gormPlugins = nil
	direct := newDB(cfg, o)
	if err := direct.open(ctx, o); err != nil {
		direct.closeOpened()
		return nil, err
	}
	return direct, nil
}
