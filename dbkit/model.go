package dbkit

import (
	"reflect"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Model is the base of every model stored through dbkit. Embed it by value:
//
//	type User struct {
//		dbkit.Model
//		Email string `gorm:"uniqueIndex;not null"`
//	}
//
// dbkit assigns ID (a UUIDv7: time-ordered, so inserts stay at the right edge
// of the primary-key index) and the timestamps when a row is created through
// a [DB], whichever API creates it: [Repository.Create], or GORM through
// [Repository.Query]. It does so in a GORM callback, not in a model hook, so
// a BeforeCreate hook on your model neither shadows it nor runs without an
// ID. An ID or CreatedAt you set yourself is kept.
//
// Timestamps are UTC with microsecond precision, PostgreSQL's, so a row read
// back equals the one written.
type Model struct {
	ID        uuid.UUID `gorm:"type:uuid;primaryKey" json:"id"`
	CreatedAt time.Time `gorm:"not null" json:"created_at"`
	UpdatedAt time.Time `gorm:"not null" json:"updated_at"`
}

// PrimaryKey returns the primary key as a string, or "" when no ID has been
// assigned yet.
func (m Model) PrimaryKey() string {
	if m.ID == uuid.Nil {
		return ""
	}
	return m.ID.String()
}

// isDBKitModel is unexported so that only types embedding Model satisfy
// [Entity]: the compiler enforces the embedding.
func (Model) isDBKitModel() {}

// base gives the repository typed access to the embedded Model of *T.
func (m *Model) base() *Model { return m }

// SoftDelete makes Delete mark rows deleted instead of removing them: embed
// it next to Model. Reads then leave deleted rows out unless given
// [WithDeleted] or [OnlyDeleted]; [Repository.Restore] brings a row back
// and [Repository.HardDelete] removes it for good.
//
// Its field is tagged gorm:"index", as gorm.Model's is: the migration
// should create an index on deleted_at ([DB.CheckSchema] expects one).
//
// A unique constraint still sees deleted rows. To let a deleted row's value
// (an email, say) be used again, make the unique index partial:
//
//	CREATE UNIQUE INDEX accounts_email_key ON accounts (email) WHERE deleted_at IS NULL
type SoftDelete struct {
	DeletedAt gorm.DeletedAt `gorm:"index" json:"deleted_at,omitempty"`
}

// Versioned adds optimistic locking: embed it next to Model. Create sets
// Version to 1; Update writes only if the row still has the Version read
// (UPDATE ... WHERE id = ? AND version = ?) and increments it, and fails
// with [ErrStale] when another writer got there first, instead of
// overwriting their change.
type Versioned struct {
	Version int64 `gorm:"not null" json:"version"`
}

// versioned gives the repository access to the embedded Versioned of *T.
func (v *Versioned) versioned() *Versioned { return v }

type versionedBase interface{ versioned() *Versioned }

// Entity is the constraint of [BaseDatabase]: it is satisfied exactly by the
// types that embed [Model].
type Entity interface {
	PrimaryKey() string
	isDBKitModel()
}

type modelBase interface{ base() *Model }

// now is the clock of every timestamp dbkit writes: UTC, truncated to
// PostgreSQL's microsecond precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// newID returns a UUIDv7.
func newID() (uuid.UUID, error) { return uuid.NewV7() }

// assignIDs is a GORM create callback: it gives every dbkit model being
// inserted a UUIDv7 when its ID is zero, and a Versioned one Version 1. It runs before GORM's before_create
// hooks, so they see the ID.
func assignIDs(tx *gorm.DB) {
	if tx.Error != nil {
		return
	}
	rv := tx.Statement.ReflectValue
	switch rv.Kind() {
	case reflect.Struct:
		assignID(tx, rv)
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			assignID(tx, reflect.Indirect(rv.Index(i)))
		}
	}
}

func assignID(tx *gorm.DB, v reflect.Value) {
	if v.Kind() != reflect.Struct || !v.CanAddr() {
		return
	}
	switch row := v.Addr().Interface().(type) {
	case modelBase:
		if _, err := prepareNew(row); err != nil {
			_ = tx.AddError(err)
		}
	case versionedBase: // a Versioned model with a key of its own (NewRepository)
		firstVersion(row)
	}
}

// firstVersion gives a Versioned row about to be inserted Version 1.
func firstVersion(vb versionedBase) {
	if v := vb.versioned(); v != nil && v.Version == 0 {
		v.Version = 1
	}
}

// prepareNew gives a row about to be inserted what dbkit assigns: Version 1
// to a Versioned model, a UUIDv7 to a zero ID. It returns the row's Model:
// nil when *Model is embedded by pointer and unset.
func prepareNew(mb modelBase) (*Model, error) {
	if vb, ok := mb.(versionedBase); ok {
		firstVersion(vb)
	}
	m := mb.base()
	if m == nil || m.ID != uuid.Nil {
		return m, nil
	}
	id, err := newID()
	if err != nil {
		return m, err
	}
	m.ID = id
	return m, nil
}
