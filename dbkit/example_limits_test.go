package dbkit_test

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/dbkit-go/database/dbkit"
)

// The limits a repository holds request input to, and how to change them:
// zero fields keep their defaults, math.MaxInt lifts one.
func ExampleLimits() {
	d := dbkit.DefaultInputLimits()
	fmt.Println(d.MaxValueBytes, d.MaxPatternBytes, d.MaxNameBytes, d.MaxInValues, d.MaxOffset)

	// users := dbkit.NewBaseDatabase[User](db, dbkit.Limits(...)): searches
	// may be longer, pages as deep as the client likes.
	_ = dbkit.Limits(dbkit.InputLimits{MaxPatternBytes: 1024, MaxOffset: math.MaxInt})

	// Input past a limit is refused before any SQL, quoting none of it.
	q := url.Values{"id[in]": {strings.Repeat("x,", 5000)}}
	_, err := dbkit.FilterFromQuery(q)
	fmt.Println(err)
	// Output:
	// 1024 256 64 1000 100000
	// invalid argument: filter "id": in and nin take at most 1000 values, got 5001
}

// Limits the server enforces on every session of the pool.
func ExampleConfig_serverLimits() {
	cfg := dbkit.Config{Host: "db.internal", Database: "orders", User: "app",
		StatementTimeout: 10 * time.Second, LockTimeout: 2 * time.Second, IdleInTransactionTimeout: time.Minute}
	fmt.Println(cfg.Validate())
	dsn := cfg.DSN()
	fmt.Println(dsn[strings.Index(dsn, "options="):])
	// Output:
	// <nil>
	// options='-c statement_timeout=10000 -c lock_timeout=2000 -c idle_in_transaction_session_timeout=60000'
}
