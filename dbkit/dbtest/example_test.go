package dbtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// Start a server, give a test a database of its own, connect to it.
func Example() {
	ctx := context.Background()
	srv, err := dbtest.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	cfg, err := srv.CreateDatabase(ctx, "example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := dbkit.Connect(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	fmt.Println("healthy:", db.Health(ctx) == nil)
	// Output: healthy: true
}
