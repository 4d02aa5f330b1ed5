package migrate

import (
	"crypto/sha256"
	"encoding/hex"

	"gorm.io/gorm"
)

// SQL returns a migration that runs the SQL up, and down to roll it back
// ("" for a migration that cannot be rolled back), each as one Exec: several
// statements in it run as one implicit transaction. Its Checksum is the
// SHA-256 of up, in hex, so that editing up after the migration was applied
// is noticed (see Migration.Checksum); down is not part of it, since fixing
// a rollback changes no database already migrated. The SQL goes to the
// server as written: GORM replaces no ? or @name in it. Set NoTransaction on
// the result for statements such as CREATE INDEX CONCURRENTLY, one per
// migration.
func SQL(id, up, down string) Migration {
	sum := sha256.Sum256([]byte(up))
	mig := Migration{
		ID:       id,
		Checksum: hex.EncodeToString(sum[:]),
		Migrate:  func(tx *gorm.DB) error { return tx.Exec(up).Error },
	}
	if down != "" {
		mig.Rollback = func(tx *gorm.DB) error { return tx.Exec(down).Error }
	}
	return mig
}
