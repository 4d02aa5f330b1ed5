package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/migrate"
)

// racing is a migration set for concurrent migrators: every migration
// after the first inserts its ID into a counter table and sleeps a little,
// to keep the race window wide. Run once each, the table holds each ID once.
// Half of them run without a transaction: were two migrators to run one
// (no lock), the counter would show it, where a transactional one would only
// fail on its record's primary key.
var racing = func() []migrate.Migration {
	migs := []migrate.Migration{{
		ID: "0000_counter",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE counter (id text NOT NULL)`).Error
		},
	}}
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("000%d_count", i)
		migs = append(migs, migrate.Migration{ID: id, NoTransaction: i%2 == 1, Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO counter (id) SELECT ? FROM pg_sleep(0.05)`, id).Error
		}})
	}
	return migs
}()

// envMigratorHelper makes the test binary a one-shot migrator (see TestMain):
// the value is the DSN to migrate. envMigratorSet names the migrations it
// applies: the racing ones unless it says "stuck" (see stuckMigrations).
const (
	envMigratorHelper = "DBKIT_TEST_MIGRATOR_DSN"
	envMigratorSet    = "DBKIT_TEST_MIGRATOR_SET"
)

// runMigratorHelper is the whole life of a helper process: connect with the
// migrations envMigratorSet names, report, exit.
func runMigratorHelper(dsn string) int {
	cfg, err := dbkit.ParseURL(dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	migs := racing
	if os.Getenv(envMigratorSet) == "stuck" {
		migs, cfg.ApplicationName = stuckMigrations(stuckSeconds), stuckAppName
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(migs...))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = db.Close(ctx)
	return 0
}

// checkRacingOutcome checks that each racing migration ran exactly once and
// that the schema is complete.
func checkRacingOutcome(t *testing.T, cfg dbkit.Config) {
	t.Helper()
	ctx := context.Background()
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrationCheck(racing...))
	if err != nil {
		t.Fatalf("after the race the schema is not complete: %v", err)
	}
	defer db.Close(ctx)
	var rows []struct {
		ID string
		N  int
	}
	q := dbkit.NewBaseDatabase[User](db).Query(ctx)
	if err := q.Raw(`SELECT id, count(*) AS n FROM counter GROUP BY id ORDER BY id`).Scan(ctx, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Fatalf("counter = %+v, want the 5 counting migrations", rows)
	}
	for _, r := range rows {
		if r.N != 1 {
			t.Errorf("migration %s ran %d times, want exactly once", r.ID, r.N)
		}
	}
	var recorded int
	if err := q.Raw(`SELECT count(*) FROM dbkit_migrations`).Scan(ctx, &recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != len(racing) {
		t.Errorf("%d migrations recorded, want %d", recorded, len(racing))
	}
}

// raceConnect starts n replicas at once, each connecting with its own pool
// and the racing migrations plus opts(i), and fails t for each that fails.
func raceConnect(t *testing.T, cfg dbkit.Config, n int, opts func(i int) []dbkit.Option) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db, err := dbkit.Connect(ctx, cfg, append([]dbkit.Option{dbkit.WithMigrations(racing...)}, opts(i)...)...)
			if err == nil {
				err = db.Close(ctx)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

// Sixteen replicas start at once on an empty database, each with a pool of
// its own: all succeed, each migration runs once.
func TestConcurrentMigratorsGoroutines(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	cfg.MaxOpenConns = 2
	raceConnect(t, cfg, 16, func(int) []dbkit.Option { return nil })
	checkRacingOutcome(t, cfg)
}

// Eight separate OS processes (this test binary, re-run as a migrator) start
// at once on an empty database.
func TestConcurrentMigratorsProcesses(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	const processes = 8
	cmds := make([]*exec.Cmd, processes)
	outs := make([]*logBuffer, processes)
	for i := range cmds {
		cmds[i], outs[i] = migratorProcess(cfg, "racing")
	}
	for i, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("process %d: %v\n%s", i, err, outs[i].String())
		}
	}
	checkRacingOutcome(t, cfg)
}

// migratorProcess returns a command that runs this test binary as a
// migrator of cfg's database applying the migration set named set (see
// runMigratorHelper), and the buffer its output goes to.
func migratorProcess(cfg dbkit.Config, set string) (*exec.Cmd, *logBuffer) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envMigratorHelper+"="+databaseURL(cfg), envMigratorSet+"="+set)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// With a pool of one connection, the migrator must not wait for a second
// connection while holding the first (the deadlock goose documents).
func TestMigrateWithSingleConnectionPool(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	cfg.MaxOpenConns = 1
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(racing...))
	if err != nil {
		t.Fatalf("Connect with MaxOpenConns=1: %v", err)
	}
	db.Close(ctx)
	checkRacingOutcome(t, cfg)
}

// holdLock takes the migration lock in a session of its own, as a migrator
// in another process would, and returns that session's pid.
func holdLock(t *testing.T, cfg dbkit.Config, appName string) int {
	t.Helper()
	ctx := context.Background()
	cfg.ApplicationName = appName
	conn, err := pgx.Connect(ctx, cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	var pid int
	key := migrate.LockKey("public." + migrate.DefaultTableName)
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1)) l", key).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestLockTimeoutNamesTheHolder(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	pid := holdLock(t, cfg, "lock-holder-test")

	start := time.Now()
	_, err := dbkit.Connect(context.Background(), cfg, dbkit.WithMigrations(racing...),
		dbkit.WithMigrateOptions(migrate.WithLockTimeout(500*time.Millisecond)))
	var lte *migrate.LockTimeoutError
	if !errors.Is(err, migrate.ErrLockTimeout) || !errors.As(err, &lte) {
		t.Fatalf("err = %v, want a LockTimeoutError", err)
	}
	if took := time.Since(start); took < 500*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %v, want about the 500ms lock timeout", took)
	}
	if len(lte.Holders) != 1 || lte.Holders[0].PID != pid || lte.Holders[0].ApplicationName != "lock-holder-test" {
		t.Errorf("holders = %+v, want pid %d of lock-holder-test", lte.Holders, pid)
	}
	for _, want := range []string{fmt.Sprint(pid), "lock-holder-test"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %s", err, want)
		}
	}

	// No migration ran: not even the table of records exists.
	check, err := dbkit.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(context.Background())
	var tables int
	err = dbkit.NewBaseDatabase[User](check).Query(context.Background()).
		Raw(`SELECT count(*) FROM pg_tables WHERE tablename IN ('counter', 'dbkit_migrations')`).Scan(context.Background(), &tables)
	if err != nil || tables != 0 {
		t.Errorf("tables created while the lock was held elsewhere: %d (%v)", tables, err)
	}
}

// A replica whose migrations are all applied starts at once, even while
// another session holds the lock (running a long migration, say).
func TestUpToDateReplicaDoesNotWaitForTheLock(t *testing.T) {
	t.Parallel()
	cfg := srv.NewDatabase(t)
	migrateDB(t, cfg, racing...)

	holdLock(t, cfg, "long-migration")
	start := time.Now()
	db, err := dbkit.Connect(context.Background(), cfg, dbkit.WithMigrations(racing...),
		dbkit.WithMigrateOptions(migrate.WithLockTimeout(10*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	db.Close(context.Background())
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("an up-to-date replica took %v: it waited for the lock", took)
	}
}
