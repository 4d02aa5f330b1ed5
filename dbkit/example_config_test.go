package dbkit_test

import (
	"errors"
	"fmt"

	"github.com/dbkit-go/database/dbkit"
)

func ExampleConfig_Validate() {
	cfg := dbkit.Config{
		Host:         "", // required
		Port:         70000,
		Database:     "orders",
		User:         "app",
		Password:     "s3cr3t",
		SSLMode:      "bogus",
		MaxOpenConns: 2,
		MaxIdleConns: 5,
	}
	err := cfg.Validate()

	var cerr *dbkit.ConfigError
	if errors.As(err, &cerr) {
		for _, f := range cerr.Fields {
			fmt.Printf("%s: %s\n", f.Field, f.Message)
		}
		fmt.Println(cerr.Has("SSLMode"), cerr.Has("User"))
	}
	// Output:
	// Host: is required
	// Port: must be at most 65535
	// SSLMode: must be one of: disable, allow, prefer, require, verify-ca, verify-full
	// MaxIdleConns: must not exceed MaxOpenConns
	// true false
}

func ExampleConfig_String() {
	cfg := dbkit.Config{
		Host:     "db.internal",
		Database: "orders",
		User:     "app",
		Password: "s3cr3t",
		SSLMode:  "require",
	}
	fmt.Println(cfg)
	fmt.Printf("%#v\n", cfg)
	// Output:
	// postgres://app:[REDACTED]@db.internal:5432/orders?sslmode=require
	// dbkit.Config{Host:"db.internal", Database:"orders", User:"app", Password:"[REDACTED]", SSLMode:"require"}
}

func ExampleParseURL() {
	// Reserved characters in the password are percent-encoded: "p@ss:word".
	// PgBouncer in transaction pooling mode keeps no named prepared
	// statements, hence pgx's default_query_exec_mode=exec.
	cfg, err := dbkit.ParseURL("postgres://app:p%40ss%3Aword@db.internal:6432/orders" +
		"?sslmode=verify-full&connect_timeout=5&pool_max_conns=20&pool_max_conn_lifetime=1h" +
		"&default_query_exec_mode=exec")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password == "p@ss:word")
	fmt.Println(cfg.SSLMode, cfg.ConnectTimeout, cfg.MaxOpenConns, cfg.ConnMaxLifetime, cfg.QueryExecMode)

	// Errors name what is wrong but never repeat the password.
	_, err = dbkit.ParseURL("postgres://app:50%off@db.internal/orders")
	fmt.Println(err)
	_, err = dbkit.ParseURL("postgres://app@db.internal/orders?sslmod=require")
	fmt.Println(err)
	// Output:
	// db.internal 6432 orders app true
	// verify-full 5s 20 1h0m0s exec
	// dbkit: invalid config: URL has a malformed user or password: percent-encode reserved characters (@ : / ? # % and spaces) in them
	// dbkit: invalid config: URL has 1 unknown parameter (not named: it may be part of a password; percent-encode '&' and '=' in values)
}

// A cluster whose primary moves (Patroni): every node as a host, the one
// that takes writes chosen by TargetSessionAttrs, and every node as a read
// replica (the primary is left out of the read rotation by itself).
// docs/ha.md and docs/scaling.md say more.
func ExampleConfig_cluster() {
	cfg := dbkit.Config{
		Host: "pg1.internal", Database: "app", User: "app", Password: "s3cr3t",
		Fallbacks:          []dbkit.Endpoint{{Host: "pg2.internal"}, {Host: "pg3.internal"}},
		TargetSessionAttrs: "read-write",
		Replicas:           []dbkit.Replica{{Host: "pg1.internal"}, {Host: "pg2.internal"}, {Host: "pg3.internal"}},
	}
	fmt.Println(cfg.Validate())
	fmt.Println(cfg)
	// Output:
	// <nil>
	// postgres://app:[REDACTED]@pg1.internal:5432,pg2.internal:5432,pg3.internal:5432/app?sslmode=prefer&target_session_attrs=read-write
}
