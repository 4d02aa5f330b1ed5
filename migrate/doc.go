// Package migrate applies versioned schema migrations written in Go, on top of
// gormigrate.
//
// # Migrations
//
// A [Migration] has an ID, a Migrate func and an optional Rollback func, both
// given a *gorm.DB that is a transaction. IDs sort in the order migrations
// run: name them YYYYMMDDHHMM_description.
//
//	migs := []migrate.Migration{{
//		ID: "202611260900_create_users",
//		Migrate: func(tx *gorm.DB) error {
//			return tx.Exec(`CREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL UNIQUE)`).Error
//		},
//		Rollback: func(tx *gorm.DB) error { return tx.Exec(`DROP TABLE users`).Error },
//	}}
//
// # Applying them
//
// [Up] (or [New] then [Migrator.Up]) validates the set, then applies each
// migration not yet recorded in the dbkit_migrations table, in ID order, each
// in its own transaction together with its record. A failing migration is
// rolled back, nothing is recorded for it, later ones do not run, and the
// error is a *[Error] naming it. dbkit.Connect does this when given
// dbkit.WithMigrations.
//
// This package imports nothing from dbkit.
package migrate
