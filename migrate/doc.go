// Package migrate applies versioned schema migrations written in Go, on top of
// gormigrate, safely when many replicas of a service start at once.
//
// # Migrations
//
// A [Migration] has an ID, a Migrate func and an optional Rollback func, both
// given a *gorm.DB that is a transaction (unless the migration sets
// NoTransaction, for CREATE INDEX CONCURRENTLY and its kind). IDs sort in the
// order migrations run: name them YYYYMMDDHHMM_description.
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
// [New] validates the set (every empty or duplicate ID, every nil Migrate, in
// one *[ValidationError]); [Migrator.Up] applies what is pending:
//
//  1. It reads the recorded migrations without a lock and returns at once
//     when nothing is pending.
//  2. Otherwise it pins one connection and takes a PostgreSQL advisory lock
//     on it ([LockKey]), waiting at most the lock timeout; past it, a
//     *[LockTimeoutError] names the sessions holding the lock. Through a
//     pooler in transaction mode (PgBouncer), where a session lock does not
//     hold, it fails with [ErrTransactionPooler] before taking it.
//  3. Under the lock it reads again, then applies each pending migration in
//     its own transaction together with its record. A failing one is rolled
//     back, later ones do not run, and the error is a *[Error] naming it.
//     A NoTransaction migration that leaves an invalid index behind is not
//     recorded either (*[InvalidIndexError]).
//
// Everything under the lock runs on the pinned connection, so a pool of one
// connection does not deadlock. dbkit.Connect does this when given
// dbkit.WithMigrations.
//
// # Checksums
//
// A migration may carry a Checksum, recorded when it is applied: a version
// its author bumps, or, for migrations made by [SQL], the SHA-256 of their
// SQL. [Migrator.Up], [Migrator.Check] and [Migrator.Plan] refuse to run
// when an applied migration's code no longer has the recorded checksum
// (*[ChecksumError], or a warning with [WarnOnChecksumMismatch]).
//
// # Status, plan, rollback
//
// [Migrator.Status] lists applied (with when, and whether changed since),
// pending and unknown migrations; [Migrator.Plan] lists what Up would apply; [Migrator.Check]
// fails with a *[PendingError] when something is not applied.
// [Migrator.Down], [Migrator.DownTo] and [Migrator.To] roll back, each
// migration in its own transaction with the removal of its record, and
// change nothing when any of them has no Rollback func ([ErrIrreversible]).
//
// # Command line
//
// [ParseCommand] and [Command.Run] implement up, down [N], to ID, status and
// plan; dbkit.MigrateMain wraps them into the one-line main of a service's
// migration binary.
//
// This package imports nothing from dbkit.
package migrate
