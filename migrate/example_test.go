package migrate_test

import (
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/dbkit-go/database/migrate"
)

// New checks the whole set before anything runs and lists every problem.
func ExampleNew() {
	create := func(tx *gorm.DB) error { return tx.Exec(`CREATE TABLE users (id uuid PRIMARY KEY)`).Error }
	_, err := migrate.New(nil, []migrate.Migration{
		{ID: "202611260900_create_users", Migrate: create},
		{ID: "202611260900_create_users", Migrate: create},
		{ID: "202611260901_add_email"},
	})
	var ve *migrate.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Println(p)
		}
	}
	// Output:
	// migration ID "202611260900_create_users" is duplicated
	// migration "202611260901_add_email" has no Migrate func
}

// A service's migration command reads its command line with ParseCommand.
func ExampleParseCommand() {
	cmd, err := migrate.ParseCommand([]string{"-lock-timeout", "5m", "down", "2"})
	fmt.Println(cmd.Name, cmd.N, err)
	_, err = migrate.ParseCommand([]string{"sideways"})
	fmt.Println(err)
	// Output:
	// down 2 <nil>
	// migrate: unknown command "sideways"
}

// SQL makes a migration of SQL text whose Checksum is the SHA-256 of its
// up SQL: editing that SQL once the migration is applied is noticed.
func ExampleSQL() {
	m := migrate.SQL("202611260900_create_users", `CREATE TABLE users (id uuid PRIMARY KEY)`, `DROP TABLE users`)
	fmt.Println(m.ID, m.Checksum, m.Rollback != nil)
	fmt.Println(migrate.SQL("202611260901_drop_legacy", `DROP TABLE legacy`, "").Rollback == nil)
	// Output:
	// 202611260900_create_users fd64552918fed8c0499d085c247466622197e55475ad3551e7fd72a65b30327b true
	// true
}
