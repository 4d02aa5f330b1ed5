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
		// refuses to run it inside a transaction.
		ID:            "202611260901_index_users_name",
		NoTransaction: true,
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name_idx ON users (name)`).Error
		},
		Rollback: func(tx *gorm.DB) error {
			return tx.Exec(`DROP INDEX CONCURRENTLY IF EXISTS users_name_idx`).Error
		},
	},
}
