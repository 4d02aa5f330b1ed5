package integration

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
)

// The models of the atomic-write tests: GORM's own TestCallbacksWithErrors,
// TestFailedToSaveAssociationShouldRollback and TestMany2ManyOmitAssociations
// in our words.

// Buyer has many purchases and many tags.
type Buyer struct {
	dbkit.Model
	Name      string
	Purchases []Purchase `gorm:"foreignKey:BuyerID"`
	Tags      []Tag      `gorm:"many2many:buyer_tags"`
}

// Purchase refuses an amount of 13 in its BeforeCreate hook; the table
// refuses amounts below 1.
type Purchase struct {
	dbkit.Model
	BuyerID uuid.UUID `gorm:"type:uuid"`
	Amount  int
}

var errUnlucky = errors.New("13 is unlucky")

func (p *Purchase) BeforeCreate(*gorm.DB) error {
	if p.Amount == 13 {
		return errUnlucky
	}
	return nil
}

// Tag is the other side of Buyer.Tags.
type Tag struct {
	dbkit.Model
	Name string
}

// Audited fails its After hooks, after their statement ran, when ctx asks
// for it (failAfter).
type Audited struct {
	dbkit.Model
	Name string
}

var errAfterHook = errors.New("after hook failed")

type failAfterKey struct{}

// failAfter makes Audited's After hook of op ("create", "update" or
// "delete") fail.
func failAfter(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, failAfterKey{}, op)
}

func (*Audited) AfterCreate(tx *gorm.DB) error { return hookFails(tx, "create") }
func (*Audited) AfterUpdate(tx *gorm.DB) error { return hookFails(tx, "update") }
func (*Audited) AfterDelete(tx *gorm.DB) error { return hookFails(tx, "delete") }

func hookFails(tx *gorm.DB, op string) error {
	if tx.Statement.Context.Value(failAfterKey{}) == op {
		return errAfterHook
	}
	return nil
}

var atomicSchema = []dbkit.Migration{{
	ID: "001_atomic",
	Migrate: func(tx *gorm.DB) error {
		return tx.Exec(`
			CREATE TABLE buyers (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
				name text NOT NULL);
			CREATE TABLE purchases (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
				buyer_id uuid NOT NULL REFERENCES buyers, amount int NOT NULL CONSTRAINT purchases_amount_check CHECK (amount > 0));
			CREATE TABLE tags (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, name text NOT NULL);
			CREATE TABLE buyer_tags (buyer_id uuid REFERENCES buyers, tag_id uuid REFERENCES tags,
				PRIMARY KEY (buyer_id, tag_id));
			CREATE TABLE auditeds (id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
				name text NOT NULL)`).Error
	},
}}

func newAtomicDB(t *testing.T) *dbkit.DB {
	t.Helper()
	return dbtest.Schema{Migrations: atomicSchema, Server: srv}.New(t)
}

// count returns how many rows table has.
func count(t *testing.T, db *dbkit.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := dbkit.NewBaseDatabase[Tag](db).Query(context.Background()).Raw("SELECT count(*) FROM "+table).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFailedAssociationRollsBackTheWrite: the second purchase fails (its
// hook, or the table's CHECK) after the customer and the first purchase
// were inserted; none of them stays.
func TestFailedAssociationRollsBackTheWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newAtomicDB(t)
	buyers := dbkit.NewBaseDatabase[Buyer](db)
	for _, tc := range []struct {
		amount int
		want   error
	}{{13, errUnlucky}, {-1, dbkit.ErrCheck}} {
		c := Buyer{Name: "ann", Purchases: []Purchase{{Amount: 10}, {Amount: tc.amount}}}
		if err := buyers.Create(ctx, &c); !errors.Is(err, tc.want) {
			t.Fatalf("Create(second purchase %d) = %v, want %v", tc.amount, err, tc.want)
		}
		if n, m := count(t, db, "buyers"), count(t, db, "purchases"); n != 0 || m != 0 {
			t.Fatalf("after the failed Create (second purchase %d): %d buyers, %d purchases; want none", tc.amount, n, m)
		}
	}
	// The same write that succeeds is one transaction, committed.
	c := Buyer{Name: "ann", Purchases: []Purchase{{Amount: 10}, {Amount: 11}}}
	if err := buyers.Create(ctx, &c); err != nil {
		t.Fatal(err)
	}
	got, err := buyers.Get(ctx, c.ID, dbkit.Preload("Purchases"))
	if err != nil || len(got.Purchases) != 2 {
		t.Fatalf("Get = %d purchases, %v; want 2", len(got.Purchases), err)
	}
}

// TestFailedHookRollsBackTheWrite: an After hook that fails undoes the
// statement before it, through the repository and through GORM.
func TestFailedHookRollsBackTheWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newAtomicDB(t)
	audited := dbkit.NewBaseDatabase[Audited](db)
	fail := func(op string) context.Context { return failAfter(ctx, op) }

	if err := audited.Create(fail("create"), &Audited{Name: "a"}); !errors.Is(err, errAfterHook) {
		t.Fatalf("Create = %v, want the AfterCreate error", err)
	}
	if err := audited.Query(fail("create")).Create(fail("create"), &Audited{Name: "b"}); !errors.Is(err, errAfterHook) {
		t.Fatalf("GORM Create = %v, want the AfterCreate error", err)
	}
	if n := count(t, db, "auditeds"); n != 0 {
		t.Fatalf("%d rows after AfterCreate failed, want 0", n)
	}

	a := Audited{Name: "kept"}
	if err := audited.Create(ctx, &a); err != nil {
		t.Fatal(err)
	}
	changed := a
	changed.Name = "changed"
	if err := audited.Update(fail("update"), &changed); !errors.Is(err, errAfterHook) {
		t.Fatalf("Update = %v, want the AfterUpdate error", err)
	}
	if err := audited.Delete(fail("delete"), a.ID); !errors.Is(err, errAfterHook) {
		t.Fatalf("Delete = %v, want the AfterDelete error", err)
	}
	if got, err := audited.Get(ctx, a.ID); err != nil || got.Name != "kept" {
		t.Fatalf("after the failed Update and Delete: %q, %v; want the row unchanged", got.Name, err)
	}
}

// TestMany2ManyWithMissingTagsRollsBack: with the tags themselves omitted,
// the join rows refer to tags that do not exist; the customer inserted
// before them must go too, so that the same customer can be created again.
func TestMany2ManyWithMissingTagsRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newAtomicDB(t)
	buyers := dbkit.NewBaseDatabase[Buyer](db)
	id := uuid.Must(uuid.NewV7())
	c := Buyer{Model: dbkit.Model{ID: id}, Name: "bob", Tags: []Tag{{Name: "x"}, {Name: "y"}}}
	c.Tags[0].ID, c.Tags[1].ID = uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	if err := buyers.Query(ctx).Omit("Tags.*").Create(ctx, &c); !errors.Is(err, dbkit.ErrForeignKey) {
		t.Fatalf("Create(Omit tags) = %v, want ErrForeignKey", err)
	}
	if n := count(t, db, "buyers"); n != 0 {
		t.Fatalf("%d buyers after the failed Create, want 0", n)
	}
	c = Buyer{Model: dbkit.Model{ID: id}, Name: "bob", Tags: []Tag{{Name: "x"}, {Name: "y"}}}
	if err := buyers.Create(ctx, &c); err != nil {
		t.Fatalf("Create again = %v", err)
	}
	if n := count(t, db, "buyer_tags"); n != 2 {
		t.Fatalf("%d join rows, want 2", n)
	}
}

// TestWriteInTxRollsBackToItsSavepoint: inside InTx a failed write with
// associations leaves nothing, and the transaction goes on and commits.
func TestWriteInTxRollsBackToItsSavepoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newAtomicDB(t)
	buyers := dbkit.NewBaseDatabase[Buyer](db)
	err := db.InTx(ctx, func(ctx context.Context) error {
		bad := Buyer{Name: "bad", Purchases: []Purchase{{Amount: 1}, {Amount: -1}}}
		if err := buyers.Create(ctx, &bad); !errors.Is(err, dbkit.ErrCheck) {
			t.Errorf("Create(bad) = %v, want ErrCheck", err)
		}
		return buyers.Create(ctx, &Buyer{Name: "good", Purchases: []Purchase{{Amount: 1}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, m := count(t, db, "buyers"), count(t, db, "purchases"); n != 1 || m != 1 {
		t.Fatalf("%d buyers, %d purchases; want the good one and its purchase", n, m)
	}
}

// TestSingleStatementWritesBeginNoTransaction: a write that is one statement
// and runs no hook pays no BEGIN and COMMIT; one with associations to save
// pays one of each. BEGINs are counted on the wire.
func TestSingleStatementWritesBeginNoTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := dbtest.Schema{Migrations: atomicSchema, Server: srv}.NewConfig(t)
	var begins atomic.Int64
	cfg.Host, cfg.Port = countingProxy(t, cfg.Addr(), []byte("begin"), &begins)
	db := openDB(t, cfg)
	buyers := dbkit.NewBaseDatabase[Buyer](db)
	begins.Store(0) // Connect's own statements are not the point

	c := Buyer{Name: "solo"}
	if err := buyers.Create(ctx, &c); err != nil {
		t.Fatal(err)
	}
	c.Name = "renamed"
	if err := buyers.Update(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := buyers.Delete(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if n := begins.Load(); n != 0 {
		t.Fatalf("single-statement Create, Update and Delete sent %d BEGINs, want 0", n)
	}
	if err := buyers.Create(ctx, &Buyer{Name: "with", Purchases: []Purchase{{Amount: 1}}}); err != nil {
		t.Fatal(err)
	}
	if n := begins.Load(); n != 1 {
		t.Fatalf("a Create with an association sent %d BEGINs, want 1", n)
	}
}

// countingProxy forwards TCP connections to target until the test ends, and
// counts in n how often what clients send contains word (in lower case). It
// returns the host and port to connect to.
func countingProxy(t *testing.T, target string, word []byte, n *atomic.Int64) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := faultProxyOn(t, l, target, func(b []byte) {
		// A statement is one small message, written whole by pgx: on
		// loopback it arrives in one read.
		n.Add(int64(bytes.Count(bytes.ToLower(b), word)))
	}).config(dbkit.Config{})
	return cfg.Host, cfg.Port
}

// TestWriteInNoTransactionMigrationIsAtomic: a write with hooks inside a
// NoTransaction migration (on the migrator's pinned connection) is still
// all-or-nothing.
func TestWriteInNoTransactionMigrationIsAtomic(t *testing.T) {
	t.Parallel()
	cfg := dbtest.Schema{Migrations: atomicSchema, Server: srv}.NewConfig(t)
	seed := dbkit.Migration{ID: "002_seed", NoTransaction: true, Migrate: func(tx *gorm.DB) error {
		return tx.Create(&Audited{Name: "seeded"}).Error
	}}
	_, err := dbkit.Connect(failAfter(context.Background(), "create"), cfg, dbkit.WithMigrations(append(atomicSchema, seed)...))
	if !errors.Is(err, errAfterHook) {
		t.Fatalf("Connect = %v, want the migration's AfterCreate error", err)
	}
	if n := count(t, openDB(t, cfg), "auditeds"); n != 0 {
		t.Fatalf("%d rows after the migration's write failed, want 0", n)
	}
}

// TestCreateInBatchesIsAtomic: GORM's CreateInBatches of three batches,
// the last of which breaks a CHECK, writes nothing.
func TestCreateInBatchesIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newAtomicDB(t)
	b := Buyer{Name: "batches"}
	if err := dbkit.NewBaseDatabase[Buyer](db).Create(ctx, &b); err != nil {
		t.Fatal(err)
	}
	items := []Purchase{{BuyerID: b.ID, Amount: 1}, {BuyerID: b.ID, Amount: 2}, {BuyerID: b.ID, Amount: 3}, {BuyerID: b.ID, Amount: 4}, {BuyerID: b.ID, Amount: -5}}
	if err := dbkit.NewBaseDatabase[Purchase](db).Query(ctx).CreateInBatches(ctx, &items, 2); !errors.Is(err, dbkit.ErrCheck) {
		t.Fatalf("CreateInBatches = %v, want ErrCheck", err)
	}
	if n := count(t, db, "purchases"); n != 0 {
		t.Fatalf("%d purchases after the failed CreateInBatches, want 0", n)
	}
}
