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
