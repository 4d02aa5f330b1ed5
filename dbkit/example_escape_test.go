package dbkit_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// DB.Gorm is GORM on dbkit's connection: SQL that belongs to no model and
// read models keep ctx's transaction, error translation and telemetry.
func ExampleDB_Gorm() {
	ctx := context.Background()
	db, err := dbkit.Connect(ctx, exampleConfig("example_gorm"), dbkit.WithMigrations(migrations...))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	if err := dbkit.NewBaseDatabase[User](db).Create(ctx, &User{Email: "ada@example.com", Name: "Ada"}); err != nil {
		log.Fatal(err)
	}

	// A table no model maps.
	if _, err := db.Exec(ctx, "CREATE TABLE sessions (token text PRIMARY KEY, expires_at timestamptz NOT NULL)"); err != nil {
		log.Fatal(err)
	}
	n, err := db.Exec(ctx, "DELETE FROM sessions WHERE expires_at < now()")
	fmt.Println("expired sessions:", n, err)

	// A read model over a query of its own.
	var rows []struct {
		Email string
		Name  string
	}
	err = db.Gorm(ctx).Raw("SELECT email, name FROM users ORDER BY email").Find(&rows).Error
	fmt.Println("read model:", rows, err)

	// Migrations' status on the service's own connection.
	m, err := migrate.New(db.Gorm(ctx), migrations)
	if err != nil {
		log.Fatal(err)
	}
	plan, err := m.Plan(ctx)
	fmt.Println("pending migrations:", len(plan), err)
	// Output:
	// expired sessions: 0 <nil>
	// read model: [{ada@example.com Ada}] <nil>
	// pending migrations: 0 <nil>
}

// DB.WithPgxConn gives pgx itself, on the connection of ctx's transaction
// or one of the pool: COPY into any table, LISTEN/NOTIFY.
func ExampleDB_WithPgxConn() {
	ctx := context.Background()
	db, err := dbkit.Connect(ctx, exampleConfig("example_pgx"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE points (x int PRIMARY KEY, y int NOT NULL)"); err != nil {
		log.Fatal(err)
	}
	points := [][]any{{1, 1}, {2, 4}, {3, 9}}
	err = db.WithPgxConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.CopyFrom(ctx, pgx.Identifier{"points"}, []string{"x", "y"}, pgx.CopyFromRows(points))
		return err
	})
	var sum int
	if err == nil {
		err = db.Gorm(ctx).Raw("SELECT sum(y) FROM points").Scan(&sum).Error
	}
	fmt.Println("sum of y:", sum, err)
	// Output: sum of y: 14 <nil>
}
