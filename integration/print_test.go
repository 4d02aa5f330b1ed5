package integration

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/internal/redact/redacttest"
	"github.com/dbkit-go/database/migrate"
)

// Every value of dbkit's that holds a Config, a cursor key or a connection
// prints as a short description of what it is, in every form fmt, log and
// slog give it: never the password nor the cursor key.
func TestPrintingHidesSecrets(t *testing.T) {
	t.Parallel()
	const passwordMarker = "print-password-marker-5d1e"
	key := []byte("cursor-key-marker-0123456789abcdef")
	cfg := createRole(t, specialPassword+passwordMarker)
	db := openDB(t, cfg, dbkit.WithCursorKey(key), dbkit.WithMigrations(schema...))
	users := dbkit.NewBaseDatabase[User](db)

	plain, err := gorm.Open(postgres.New(postgres.Config{DSN: cfg.DSN()}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := plain.DB()
	t.Cleanup(func() { sqlDB.Close() })
	migrator := newMigrator(t, plain, reversible("p1", "p2"))
	cmd, err := migrate.ParseCommand([]string{"-table", "print_migrations", "up"})
	if err != nil {
		t.Fatal(err)
	}

	secrets := []string{passwordMarker, string(key), hex.EncodeToString(key),
		strings.Trim(fmt.Sprintf("%d", key), "[]")[:40], // as %v and %d print a []byte
	}
	values := []struct {
		name  string
		v     any
		wants []string // what the short description names
	}{
		{"*dbkit.DB", db, []string{"dbkit.DB", cfg.Addr(), cfg.Database, cfg.User}},
		{"*dbkit.BaseDatabase", users, []string{"dbkit.BaseDatabase", "users", cfg.Database}},
		{"dbkit.Config", db.Config(), []string{cfg.Database}},
		{"*migrate.Migrator", migrator, []string{"migrate.Migrator"}},
		{"migrate.Command", cmd, []string{"up"}},
	}
	for _, tt := range values {
		t.Run(tt.name, func(t *testing.T) { redacttest.Check(t, tt.v, secrets, tt.wants) })
	}
}
