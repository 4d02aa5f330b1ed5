package integration

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
)

const (
	depthRows = 200_000 // rows in the pagination table
	depth     = 100_000 // the deep page starts after this many rows
	pageSize  = 20
)

type pagesEnv struct {
	users            *dbkit.BaseDatabase[User]
	deepCursor       string // the position after depth rows, in id order
	deepCursorSorted string // the same in (created_at, id) order
}

// byCreated is the two-column sort of the benchmark: the rows were written
// 20,000 at a time, so created_at ties and the id breaks them.
var byCreated = dbkit.SortBy("created_at")

var pagesSetup = once(newPagesEnv)

func newPagesEnv() (*pagesEnv, error) {
	ctx := context.Background()
	_, db, err := benchDatabase("bench_pages")
	if err != nil {
		return nil, err
	}
	env := &pagesEnv{users: dbkit.NewBaseDatabase[User](db)}
	for start := 0; start < depthRows; start += 20_000 {
		batch := make([]User, 20_000)
		for i := range batch {
			batch[i] = User{Email: "u" + strconv.Itoa(start+i) + "@example.com", Name: "Bench", Age: i % 90}
		}
		if err := env.users.CreateMany(ctx, batch); err != nil {
			return nil, err
		}
	}
	if err := env.users.Query(ctx).Exec(ctx, "CREATE INDEX users_created_id ON users (created_at, id); ANALYZE users"); err != nil {
		return nil, err
	}
	// Walk to the deep positions with the largest pages.
	walk := func(opts ...dbkit.QueryOption) (string, error) {
		req := dbkit.CursorRequest{Size: dbkit.DefaultMaxPageSize}
		for read := 0; read < depth; read += req.Size {
			page, err := env.users.FindCursor(ctx, req, opts...)
			if err != nil {
				return "", err
			}
			req.Cursor = page.Next
		}
		return req.Cursor, nil
	}
	if env.deepCursor, err = walk(); err != nil {
		return nil, err
	}
	if env.deepCursorSorted, err = walk(byCreated); err != nil {
		return nil, err
	}
	return env, nil
}

// BenchmarkPageDepth reads a page of 20 rows at the start of a table of
// 200,000 and after 100,000 rows, by keyset and by offset, in primary-key
// order and (keyset) in (created_at, id) order.
func BenchmarkPageDepth(b *testing.B) {
	env := pagesSetup(b)
	ctx := context.Background()
	cases := []struct {
		name string
		read func() (int, error)
	}{
		{"keyset_first", func() (int, error) {
			p, err := env.users.FindCursor(ctx, dbkit.CursorRequest{Size: pageSize})
			return len(p.Items), err
		}},
		{"keyset_deep", func() (int, error) {
			p, err := env.users.FindCursor(ctx, dbkit.CursorRequest{Cursor: env.deepCursor, Size: pageSize})
			return len(p.Items), err
		}},
		{"keyset_deep_by_created_at", func() (int, error) {
			p, err := env.users.FindCursor(ctx, dbkit.CursorRequest{Cursor: env.deepCursorSorted, Size: pageSize}, byCreated)
			return len(p.Items), err
		}},
		{"offset_first", func() (int, error) {
			p, err := env.users.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: pageSize})
			return len(p.Items), err
		}},
		{"offset_deep", func() (int, error) {
			p, err := env.users.FindPage(ctx, dbkit.PageRequest{Page: depth/pageSize + 1, Size: pageSize})
			return len(p.Items), err
		}},
	}
	for _, c := range cases {
		b.Run("impl="+c.name, func(b *testing.B) {
			for b.Loop() {
				n, err := c.read()
				if err != nil || n != pageSize {
					b.Fatalf("%d rows, %v", n, err)
				}
			}
		})
	}
}

// bulkEnv is a database of its own for BenchmarkCreateMany10k, which
// empties its table before every insert.
func bulkEnv(b *testing.B) (*dbkit.BaseDatabase[User], *gorm.DB, *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	cfg, db, err := benchDatabase("bench_bulk")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close(ctx) })
	bare, err := gorm.Open(postgres.New(postgres.Config{DSN: cfg.DSN()}), &gorm.Config{
		SkipDefaultTransaction: true, Logger: logger.Discard,
	})
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, cfg.DSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return dbkit.NewBaseDatabase[User](db), bare, pool
}

// BenchmarkCreateMany10k inserts 10,000 rows into an emptied table: dbkit's
// CreateMany (COPY), raw pgx CopyFrom, and bare GORM's CreateInBatches
// (1,000 rows per INSERT). rows/s is the figure to compare.
func BenchmarkCreateMany10k(b *testing.B) {
	users, bare, pool := bulkEnv(b)
	ctx := context.Background()
	const rows = 10_000
	prepare := func(b *testing.B, impl string) []User {
		b.StopTimer()
		defer b.StartTimer()
		if _, err := pool.Exec(ctx, "TRUNCATE users CASCADE"); err != nil {
			b.Fatal(err)
		}
		items := make([]User, rows)
		for i := range items {
			items[i] = User{Email: impl + strconv.Itoa(i) + "@example.com", Name: "Bulk", Age: i % 90}
		}
		return items
	}
	impls := []struct {
		name string
		run  func(items []User) error
	}{
		{"gorm", func(items []User) error {
			for i := range items {
				items[i].ID = uuid.Must(uuid.NewV7()) // bare GORM does not assign dbkit's IDs
			}
			return gorm.G[User](bare).CreateInBatches(ctx, &items, 1000)
		}},
		{"dbkit", func(items []User) error { return users.CreateMany(ctx, items) }},
		{"pgx", func(items []User) error {
			now := time.Now().UTC().Truncate(time.Microsecond)
			src := make([][]any, len(items))
			for i, u := range items {
				// [16]byte: the fastest way to hand pgx a UUID (uuid.UUID goes through text)
				src[i] = []any{[16]byte(uuid.Must(uuid.NewV7())), now, now, u.Email, u.Name, u.Age}
			}
			_, err := pool.CopyFrom(ctx, pgx.Identifier{"users"},
				[]string{"id", "created_at", "updated_at", "email", "name", "age"}, pgx.CopyFromRows(src))
			return err
		}},
	}
	for _, impl := range shuffled(impls) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := impl.run(prepare(b, impl.name)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
