package integration

import (
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/migrate"
)

// User is the model most tests use.
type User struct {
	dbkit.Model
	Email string `gorm:"uniqueIndex;not null"`
	Name  string
	Age   int
}

// Order has a foreign key, a check and a NOT NULL column.
type Order struct {
	dbkit.Model
	UserID uuid.UUID `gorm:"type:uuid;not null"`
	Amount int       `gorm:"not null"`
	Note   *string
}

// Hooked records what its BeforeCreate hook saw, and whether AfterFind ran.
type Hooked struct {
	dbkit.Model
	SeenID uuid.UUID `gorm:"type:uuid"`
	Found  bool      `gorm:"-"`
}

func (h *Hooked) BeforeCreate(*gorm.DB) error {
	h.SeenID = h.ID
	return nil
}

func (h *Hooked) AfterFind(*gorm.DB) error {
	h.Found = true
	return nil
}

// SlowUser reads users through a view that sleeps 30 s: a query that runs
// long enough to be cancelled.
type SlowUser struct{ User }

func (SlowUser) TableName() string { return "slow_users" }

// Account is soft-deleted: its email is unique among live accounts only.
type Account struct {
	dbkit.Model
	dbkit.SoftDelete
	Email string
}

// Counter is versioned: concurrent increments must not be lost.
type Counter struct {
	dbkit.Model
	dbkit.Versioned
	Value int
	Label string
}

// Job is a queue row that workers claim with SKIP LOCKED.
type Job struct {
	dbkit.Model
	Payload  int
	Done     bool
	Attempts int
}

// Booking has an exclusion constraint: no two bookings overlap.
type Booking struct {
	dbkit.Model
	During string `gorm:"type:tstzrange"`
}

// Customer is a user with its orders, for Preload.
type Customer struct {
	User
	Orders []Order `gorm:"foreignKey:UserID"`
}

func (Customer) TableName() string { return "users" }

// schema is the migration set of the tests: explicit DDL, as a real service
// writes it, so that every constraint has a known name.
var schema = []migrate.Migration{
	{
		ID: "202611260900_create_users",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE users (
				id uuid PRIMARY KEY,
				created_at timestamptz NOT NULL,
				updated_at timestamptz NOT NULL,
				email text NOT NULL CONSTRAINT users_email_key UNIQUE,
				name text NOT NULL DEFAULT '',
				age bigint NOT NULL DEFAULT 0 CONSTRAINT users_age_check CHECK (age >= 0)
			)`).Error
		},
		Rollback: func(tx *gorm.DB) error { return tx.Exec(`DROP TABLE users`).Error },
	},
	{
		ID: "202611260901_create_orders",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE orders (
				id uuid PRIMARY KEY,
				created_at timestamptz NOT NULL,
				updated_at timestamptz NOT NULL,
				user_id uuid NOT NULL CONSTRAINT orders_user_id_fkey REFERENCES users (id),
				amount bigint NOT NULL,
				note text
			)`).Error
		},
	},
	{
		ID: "202611260902_create_hookeds",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE hookeds (
				id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, seen_id uuid)`).Error
		},
	},
	{
		ID: "202611260903_create_slow_users",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE VIEW slow_users AS
				SELECT * FROM users WHERE (SELECT 1 FROM pg_sleep(30)) = 1`).Error
		},
	},
	{
		ID: "202611260904_create_accounts_counters_jobs",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`
				CREATE TABLE accounts (
					id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
					deleted_at timestamptz, email text NOT NULL);
				CREATE UNIQUE INDEX accounts_email_key ON accounts (email) WHERE deleted_at IS NULL;
				CREATE INDEX accounts_deleted_at ON accounts (deleted_at); -- SoftDelete's index tag
				CREATE TABLE counters (
					id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
					version bigint NOT NULL, value bigint NOT NULL DEFAULT 0, label text NOT NULL DEFAULT '');
				CREATE TABLE jobs (
					id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
					payload bigint NOT NULL, done boolean NOT NULL DEFAULT false, attempts bigint NOT NULL DEFAULT 0)`).Error
		},
	},
	{
		ID: "202611260905_create_bookings",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`CREATE TABLE bookings (
				id uuid PRIMARY KEY, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
				during tstzrange NOT NULL,
				CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&))`).Error
		},
	},
}

// newDB returns a connected, migrated database of the test's own: a clone
// of the template that schema builds once.
func newDB(t *testing.T) *dbkit.DB {
	t.Helper()
	return dbtest.Schema{Migrations: schema, Server: srv}.New(t)
}
