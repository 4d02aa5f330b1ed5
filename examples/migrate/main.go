// Command migrate is the example service's migration command: the
// migrations are Go code, so the service compiles its own.
//
//	DATABASE_URL=postgres://app:secret@localhost:5432/app go run ./examples/migrate status
//	go run ./examples/migrate up
//	go run ./examples/migrate down 1
//	go run ./examples/migrate help
package main

import (
	"os"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/examples/migrations"
)

func main() { os.Exit(dbkit.MigrateMain(migrations.All)) }
