package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// Item is the table of the comparison: a uuid key, two timestamptz, a text
// and an int. The same struct serves every implementation.
type Item struct {
	bun.BaseModel `bun:"table:items" gorm:"-"`
	dbkit.Model   `bun:"-"`
	// bun reads the embedded Model's columns through these.
	BunID        uuid.UUID `bun:"id,pk,type:uuid" gorm:"-"`
	BunCreatedAt time.Time `bun:"created_at" gorm:"-"`
	BunUpdatedAt time.Time `bun:"updated_at" gorm:"-"`
	Name         string    `gorm:"not null" bun:"name"`
	Score        int       `gorm:"not null" bun:"score"`
}

const (
	poolSize  = 4
	seedRows  = 1000
	bulkRows  = 10_000
	selectAll = `SELECT id, created_at, updated_at, name, score FROM items`
)

// env is what every benchmark shares: one database, and each
// implementation's connection pool to it.
type env struct {
	dbkitDB *dbkit.DB
	dbkit   *dbkit.BaseDatabase[Item]
	gorm    *gorm.DB
	bun     *bun.DB
	pgx     *pgxpool.Pool
	ids     []uuid.UUID
}

var shared *env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := dbtest.Shared(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := srv.CreateDatabase(ctx, "peers_"+strconv.Itoa(os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = srv.DropDatabase(context.Background(), cfg.Database) }()
	if shared, err = setup(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func setup(ctx context.Context, cfg dbkit.Config) (*env, error) {
	cfg.MaxOpenConns = poolSize
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(dbkit.Migration{ID: "001_items", Migrate: func(tx *gorm.DB) error {
		if err := tx.AutoMigrate(&Item{}); err != nil {
			return err
		}
		return tx.Exec("CREATE TABLE bulk_items (LIKE items INCLUDING ALL)").Error
	}}))
	if err != nil {
		return nil, err
	}
	e := &env{dbkitDB: db, dbkit: dbkit.NewBaseDatabase[Item](db)}
	gcfg := cfg
	e.gorm, err = gorm.Open(postgres.Open(gcfg.DSN()), &gorm.Config{SkipDefaultTransaction: true, Logger: logger.Discard})
	if err != nil {
		return nil, err
	}
	gsql, _ := e.gorm.DB()
	gsql.SetMaxOpenConns(poolSize)
	gsql.SetMaxIdleConns(poolSize)
	pcfg, err := pgxpool.ParseConfig(cfg.DSN())
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = poolSize
	if e.pgx, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, err
	}
	// bun as its documentation shows it over pgx: pgdialect on pgx's
	// database/sql driver.
	connCfg, err := pgx.ParseConfig(cfg.DSN())
	if err != nil {
		return nil, err
	}
	bsql := stdlib.OpenDB(*connCfg)
	bsql.SetMaxOpenConns(poolSize)
	bsql.SetMaxIdleConns(poolSize)
	e.bun = bun.NewDB(bsql, pgdialect.New())
	items := make([]Item, seedRows)
	for i := range items {
		items[i] = Item{Name: "item " + strconv.Itoa(i), Score: i}
	}
	if err := e.dbkit.CreateMany(ctx, items); err != nil {
		return nil, err
	}
	for _, it := range items {
		e.ids = append(e.ids, it.ID)
	}
	return e, nil
}

// impl is one implementation of an operation.
type impl struct {
	name string
	op   func(ctx context.Context, i int) error
}

// runImpls runs each impl as "impl=name", in a random order.
func runImpls(b *testing.B, impls []impl) {
	rand.Shuffle(len(impls), func(i, j int) { impls[i], impls[j] = impls[j], impls[i] })
	ctx := context.Background()
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := im.op(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func scanItem(row pgx.Row) (Item, error) {
	var it Item
	err := row.Scan(&it.ID, &it.CreatedAt, &it.UpdatedAt, &it.Name, &it.Score)
	return it, err
}

// bunItem is what bun reads, turned into the shared struct.
func fromBun(it Item) Item {
	it.ID, it.CreatedAt, it.UpdatedAt = it.BunID, it.BunCreatedAt, it.BunUpdatedAt
	return it
}

func check(id uuid.UUID, it Item, err error) error {
	if err == nil && it.ID != id {
		err = fmt.Errorf("read %v, want %v", it.ID, id)
	}
	return err
}

// BenchmarkPeerGet reads one row by key.
func BenchmarkPeerGet(b *testing.B) {
	e := shared
	id := func(i int) uuid.UUID { return e.ids[i%len(e.ids)] }
	runImpls(b, []impl{
		{"pgx", func(ctx context.Context, i int) error {
			it, err := scanItem(e.pgx.QueryRow(ctx, selectAll+" WHERE id = $1", id(i)))
			return check(id(i), it, err)
		}},
		{"gorm", func(ctx context.Context, i int) error {
			it, err := gorm.G[Item](e.gorm).Where("id = ?", id(i)).Take(ctx)
			return check(id(i), it, err)
		}},
		{"bun", func(ctx context.Context, i int) error {
			var it Item
			err := e.bun.NewSelect().Model(&it).Where("id = ?", id(i)).Scan(ctx)
			return check(id(i), fromBun(it), err)
		}},
		{"dbkit", func(ctx context.Context, i int) error {
			it, err := e.dbkit.Get(ctx, id(i))
			return check(id(i), it, err)
		}},
	})
}

// BenchmarkPeerCreate inserts one row.
func BenchmarkPeerCreate(b *testing.B) {
	e := shared
	runImpls(b, []impl{
		{"pgx", func(ctx context.Context, i int) error {
			now := time.Now()
			id, _ := uuid.NewV7()
			_, err := e.pgx.Exec(ctx, "INSERT INTO items (id, created_at, updated_at, name, score) VALUES ($1, $2, $3, $4, $5)",
				id, now, now, "created", i)
			return err
		}},
		{"gorm", func(ctx context.Context, i int) error {
			id, _ := uuid.NewV7()
			it := Item{Name: "created", Score: i}
			it.ID = id
			return gorm.G[Item](e.gorm).Create(ctx, &it)
		}},
		{"bun", func(ctx context.Context, i int) error {
			now := time.Now()
			id, _ := uuid.NewV7()
			it := Item{BunID: id, BunCreatedAt: now, BunUpdatedAt: now, Name: "created", Score: i}
			_, err := e.bun.NewInsert().Model(&it).Exec(ctx)
			return err
		}},
		{"dbkit", func(ctx context.Context, i int) error {
			return e.dbkit.Create(ctx, &Item{Name: "created", Score: i})
		}},
	})
}

// BenchmarkPeerList100 reads 100 rows.
func BenchmarkPeerList100(b *testing.B) {
	e := shared
	want := func(n int, err error) error {
		if err == nil && n != 100 {
			err = fmt.Errorf("%d rows, want 100", n)
		}
		return err
	}
	runImpls(b, []impl{
		{"pgx", func(ctx context.Context, _ int) error {
			rows, err := e.pgx.Query(ctx, selectAll+" LIMIT 100")
			if err != nil {
				return err
			}
			items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) { return scanItem(r) })
			return want(len(items), err)
		}},
		{"gorm", func(ctx context.Context, _ int) error {
			items, err := gorm.G[Item](e.gorm).Limit(100).Find(ctx)
			return want(len(items), err)
		}},
		{"bun", func(ctx context.Context, _ int) error {
			var items []Item
			err := e.bun.NewSelect().Model(&items).Limit(100).Scan(ctx)
			return want(len(items), err)
		}},
		{"dbkit", func(ctx context.Context, _ int) error {
			items, err := e.dbkit.Find(ctx, dbkit.Limit(100))
			return want(len(items), err)
		}},
	})
}

// BulkItem is the bulk table's row, for dbkit's repository (which takes
// its table from the model).
type BulkItem struct {
	dbkit.Model
	Name  string
	Score int
}

func (BulkItem) TableName() string { return "bulk_items" }

// bulk returns n new items for the bulk table, as the shared struct and as
// dbkit's.
func bulk(n int) ([]Item, []BulkItem) {
	now := time.Now()
	items, rows := make([]Item, n), make([]BulkItem, n)
	for i := range items {
		id, _ := uuid.NewV7()
		items[i] = Item{Name: "bulk", Score: i, BunID: id, BunCreatedAt: now, BunUpdatedAt: now}
		items[i].ID, items[i].CreatedAt, items[i].UpdatedAt = id, now, now
		rows[i] = BulkItem{Model: items[i].Model, Name: "bulk", Score: i}
	}
	return items, rows
}

// BenchmarkPeerInsert10k inserts 10,000 rows each the way its library
// offers for it: pgx CopyFrom, GORM CreateInBatches, bun multi-row INSERTs
// of 1,000, dbkit CreateMany (COPY). The table is emptied between runs,
// untimed, and the rows are made untimed too.
func BenchmarkPeerInsert10k(b *testing.B) {
	e := shared
	ctx := context.Background()
	bulkRepo := dbkit.NewBaseDatabase[BulkItem](e.dbkitDB)
	impls := []struct {
		name   string
		insert func(items []Item, rows []BulkItem) error
	}{
		{"pgx", func(items []Item, _ []BulkItem) error {
			_, err := e.pgx.CopyFrom(ctx, pgx.Identifier{"bulk_items"}, []string{"id", "created_at", "updated_at", "name", "score"},
				pgx.CopyFromSlice(len(items), func(i int) ([]any, error) {
					it := items[i]
					return []any{it.ID, it.CreatedAt, it.UpdatedAt, it.Name, it.Score}, nil
				}))
			return err
		}},
		{"gorm", func(items []Item, _ []BulkItem) error {
			return e.gorm.Table("bulk_items").CreateInBatches(&items, 1000).Error
		}},
		{"bun", func(items []Item, _ []BulkItem) error {
			for i := 0; i < len(items); i += 1000 {
				chunk := items[i:min(i+1000, len(items))]
				if _, err := e.bun.NewInsert().Model(&chunk).ModelTableExpr("bulk_items").Exec(ctx); err != nil {
					return err
				}
			}
			return nil
		}},
		{"dbkit", func(_ []Item, rows []BulkItem) error { return bulkRepo.CreateMany(ctx, rows) }},
	}
	rand.Shuffle(len(impls), func(i, j int) { impls[i], impls[j] = impls[j], impls[i] })
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if _, err := e.pgx.Exec(ctx, "TRUNCATE bulk_items"); err != nil {
					b.Fatal(err)
				}
				items, rows := bulk(bulkRows)
				b.StartTimer()
				if err := im.insert(items, rows); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
