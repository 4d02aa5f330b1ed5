// Package migrations holds the example service's schema migrations, shared by
// its server (examples/quickstart) and its migration command
// (examples/migrate), as a real service would share them.
package migrations

import (
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
)

// All is every migration of the example service, in any order: they are
// applied in ID order.
var All = []dbkit.Migration{
	{
		ID: "202611260900_create_users",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE users (
				id         uuid PRIMARY KEY,
				created_at timestamptz NOT NULL,
				updated_at timestamptz NOT NULL,
				email      text NOT NULL CONSTRAINT users_email_key UNIQUE,
				name       text NOT NULL DEFAULT ''
			)`).Error
		},
		Rollback: func(tx *gorm.DB) error { return tx.Exec(`DROP TABLE users`).Error },
	},
	{
		// CREATE INDEX CONCURRENTLY does not block writes, and PostgreSQL
		// refuses to run it inside a transaction. A failed attempt leaves
		// an invalid index of this name, which IF NOT EXISTS would skip:
		// drop it first (docs/migrations.md).
		ID:            "202611260901_index_users_name",
		NoTransaction: true,
		Migrate: func(tx *gorm.DB) error {
			if err := tx.Exec(`DROP INDEX CONCURRENTLY IF EXISTS users_name_idx`).Error; err != nil {
				return err
			}
			return tx.Exec(`CREATE INDEX CONCURRENTLY users_name_idx ON users (name)`).Error
		},
		Rollback: func(tx *gorm.DB) error {
			return tx.Exec(`DROP INDEX CONCURRENTLY IF EXISTS users_name_idx`).Error
		},
	},
}
