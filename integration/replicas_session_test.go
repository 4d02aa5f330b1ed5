package integration

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
)

// Note: a model whose N Patch may set and whose Label has no "not null"
// tag (FindCursor asks the catalog about it), though its column is NOT NULL.
type Note struct {
	dbkit.Model
	Label string
	N     int `gorm:"not null" dbkit:"patch"`
}

var noteSchema = dbkit.Migration{ID: "002_notes", Migrate: func(tx *gorm.DB) error {
	if err := tx.AutoMigrate(&Note{}); err != nil {
		return err
	}
	return tx.Exec("ALTER TABLE notes ALTER COLUMN label SET NOT NULL").Error
}}

// interleave is a GORM plugin that runs a read just before the next SQL
// statement, sent through the Query chain, whose text starts with prefix:
// a read of the same Session that runs concurrently with the write, made
// deterministic.
type interleave struct {
	prefix string
	armed  atomic.Bool
	read   func()
}

func (p *interleave) Name() string { return "interleave" }
func (p *interleave) Initialize(db *gorm.DB) error {
	return db.Callback().Query().Before("gorm:query").Register("test:interleave", func(tx *gorm.DB) {
		if strings.HasPrefix(tx.Statement.SQL.String(), p.prefix) && p.armed.CompareAndSwap(true, false) {
			p.read()
		}
	})
}

func newNoteEnv(t *testing.T, opts ...dbkit.Option) (*replicaEnv, *dbkit.BaseDatabase[Note]) {
	t.Helper()
	e := newReplicaEnvWith(t, []dbkit.Migration{tallySchema, noteSchema}, nil, opts...)
	return e, dbkit.NewBaseDatabase[Note](e.db)
}

// TestSessionWriteThenConcurrentRead: Patch and Upsert build their SQL in a
// dry run, then send it as a query (Raw + Find). A read of the same
// Session between the two (run here just before the statement is sent)
// must not fix the Session's position before the write: the write marks
// the Session when it ran, not when it was built. (Found in review: the
// dry run marked it, the query did not.)
func TestSessionWriteThenConcurrentRead(t *testing.T) {
	for _, op := range []string{"Patch", "Upsert", "Patch-control"} {
		control := strings.HasSuffix(op, "-control")
		op := strings.TrimSuffix(op, "-control")
		t.Run(op+map[bool]string{true: "-control"}[control], func(t *testing.T) {
			var notes *dbkit.BaseDatabase[Note]
			var sess *dbkit.Session
			prefix := "UPDATE"
			if op == "Upsert" {
				prefix = "INSERT"
			}
			p := &interleave{prefix: prefix}
			p.read = func() {
				// The same Session's concurrent read.
				_, _ = notes.Find(dbkit.WithSession(context.Background(), sess))
			}
			var e *replicaEnv
			e, notes = newNoteEnv(t, dbkit.WithGormPlugins(p))
			row := Note{Label: "a"}
			if err := notes.Create(context.Background(), &row); err != nil {
				t.Fatal(err)
			}
			if err := e.cl.WaitForReplay(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // the checks learn the replicas' replay locations
			e.pauseAll(t)
			sess, _ = dbkit.NewSession("")
			ctx := dbkit.WithSession(context.Background(), sess)
			p.armed.Store(!control)
			switch op {
			case "Patch":
				if _, err := notes.Patch(ctx, row.ID, map[string]any{"N": 7}); err != nil {
					t.Fatal(err)
				}
			case "Upsert":
				row.N = 7
				if err := notes.Upsert(ctx, &row, dbkit.Conflict{Columns: []string{"ID"}, Update: []string{"N"}}); err != nil {
					t.Fatal(err)
				}
			}
			if !control && p.armed.Load() {
				t.Fatal("the interleaved read did not run")
			}
			e.ports.take()
			got, err := notes.Get(ctx, row.ID)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("read after %s: ports %v (primary %d)", op, e.ports.take(), e.cfg.Port)
			if got.N != 7 {
				t.Errorf("read after the %s returned (the Session's own write) N=%d, want 7: read-your-writes broken", op, got.N)
			}
		})
	}
}

// TestSessionCatalogReadIsNoWrite: FindCursor's catalog read runs
// through the Row chain, whose "write" callback marks the Session: a Session
// that wrote nothing has its next read sent to the primary.
func TestSessionCatalogReadIsNoWrite(t *testing.T) {
	e, notes := newNoteEnv(t)
	if err := notes.Create(context.Background(), &Note{Label: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := e.cl.WaitForReplay(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.pauseAll(t)
	// Another user's write: the primary moves past the paused replicas.
	if err := notes.Create(context.Background(), &Note{Label: "b"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	sess, _ := dbkit.NewSession("")
	ctx := dbkit.WithSession(context.Background(), sess)
	if _, err := notes.FindCursor(ctx, dbkit.CursorRequest{Size: 10}, dbkit.SortBy("label")); err != nil {
		t.Fatal(err)
	}
	tok, _ := sess.Token(context.Background())
	e.ports.take()
	if _, err := notes.Find(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.ports.take()
	t.Logf("token after a FindCursor only: %q; Find's ports %v (primary %d)", tok, got, e.cfg.Port)
	if got[int64(e.cfg.Port)] != 0 || tok != "" {
		t.Errorf("a Session that only read (FindCursor) was treated as having written: token %q, reads on the primary %d", tok, got[int64(e.cfg.Port)])
	}
}

// TestSessionEscapeHatchWrites: writes through DB.Gorm that docs/scaling.md
// counts as writes of the Session.
func TestSessionEscapeHatchWrites(t *testing.T) {
	// GORM's own Transaction is not here: its COMMIT runs no callback, so
	// only its statements mark the Session (docs/scaling.md says so; InTx
	// marks at its commit).
	for _, how := range []string{"RawFind", "Exec", "WithPgxConn"} {
		t.Run(how, func(t *testing.T) {
			e, notes := newNoteEnv(t)
			row := Note{Label: "a"}
			if err := notes.Create(context.Background(), &row); err != nil {
				t.Fatal(err)
			}
			if err := e.cl.WaitForReplay(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			e.pauseAll(t)
			sess, _ := dbkit.NewSession("")
			ctx := dbkit.WithSession(context.Background(), sess)
			switch how {
			case "RawFind":
				var out []Note
				if err := e.db.Gorm(ctx).Raw("UPDATE notes SET n = 7 WHERE id = ? RETURNING *", row.ID).Find(&out).Error; err != nil {
					t.Fatal(err)
				}
			case "Exec":
				if _, err := e.db.Exec(ctx, "UPDATE notes SET n = 7 WHERE id = ?", row.ID); err != nil {
					t.Fatal(err)
				}
			case "WithPgxConn":
				err := e.db.WithPgxConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
					_, err := conn.Exec(ctx, "UPDATE notes SET n = 7 WHERE id = $1", row.ID)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			got, err := notes.Get(ctx, row.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.N != 7 {
				t.Errorf("%s: the Session's read after its write through the escape hatch returned N=%d, want 7", how, got.N)
			}
		})
	}
}

// TestSessionPositionAtPageBoundary: after a WAL switch (archive_timeout,
// pg_switch_wal) on an idle primary, pg_current_wal_insert_lsn is past the
// next segment's page header while a caught-up replica's replay location is
// the segment boundary: a Session that wrote then waits for a location no
// replica reaches until the primary writes again.
func TestSessionPositionAtPageBoundary(t *testing.T) {
	e, notes := newNoteEnv(t)
	row := Note{Label: "a"}
	sess, _ := dbkit.NewSession("")
	ctx := dbkit.WithSession(context.Background(), sess)
	if err := notes.Create(ctx, &row); err != nil {
		t.Fatal(err)
	}
	if err := e.cl.Primary().Exec(context.Background(), "SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // replicas replay everything there is
	tok, _ := sess.Token(ctx)
	for _, r := range e.cl.Replicas() {
		l, err := r.ReplayLSN(context.Background())
		t.Logf("%s replay %s (%v)", r.Name(), l, err)
	}
	e.ports.take()
	for range 10 {
		if _, err := notes.Get(ctx, row.ID); err != nil {
			t.Fatal(err)
		}
	}
	got := e.ports.take()
	t.Logf("token %s; 10 reads by port %v (primary %d)", tok, got, e.cfg.Port)
	if got[int64(e.cfg.Port)] > 0 {
		t.Errorf("with every replica caught up, %d of 10 reads of the Session went to the primary", got[int64(e.cfg.Port)])
	}
}
