package dbkit

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/utils/tests"
)

// stubRepo is a repository on a stub driver: enough to compile queries and
// make and check cursors without a server.
func stubRepo(t testing.TB, key []byte) *BaseDatabase[filterModel] {
	t.Helper()
	db := newDB(Config{Host: "stub", Database: "stub", User: "stub"}.WithDefaults(), options{cursorKey: key})
	db.sql = stubPool(t, 0)
	if err := db.openGorm(db.sql, options{}); err != nil {
		t.Fatal(err)
	}
	repo := NewBaseDatabase[filterModel](db)
	if repo.err != nil {
		t.Fatal(repo.err)
	}
	return repo
}

// forge makes a cursor the way a client who knows the key could.
func forge(t testing.TB, key []byte, c cursor) string {
	t.Helper()
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{cursorKey: key}
	return base64.RawURLEncoding.EncodeToString(append(payload, db.cursorMAC(payload)...))
}

func TestCursorRoundTrip(t *testing.T) {
	repo := stubRepo(t, nil)
	q, err := repo.compilePaged(context.Background(), []QueryOption{SortBy("-age,born,ref")})
	if err != nil {
		t.Fatal(err)
	}
	ref := uuid.New()
	row := filterModel{Model: Model{ID: uuid.New()}, Age: 42, Born: time.Date(2000, 1, 2, 3, 4, 5, 6000, time.UTC), Ref: &ref}
	s, err := repo.encodeCursor(context.Background(), q, &row, true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.decodeCursor(s, q)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Before || c.Keys[0] != 42 || !c.Keys[1].(time.Time).Equal(row.Born) || c.Keys[2] != ref || c.Keys[3] != row.ID {
		t.Errorf("decoded %+v", c.Keys)
	}
	row.Ref = nil
	s, _ = repo.encodeCursor(context.Background(), q, &row, false)
	if c, err := repo.decodeCursor(s, q); err != nil || c.Keys[2] != nil {
		t.Errorf("a NULL key decodes as %v, %v", c.Keys, err)
	}
	other, _ := repo.compilePaged(context.Background(), []QueryOption{SortBy("age")})
	if _, err := repo.decodeCursor(s, other); !errors.Is(err, ErrInvalid) {
		t.Errorf("a cursor of another sort: %v", err)
	}
}

// A client that knows the key (the default one is derived from the
// database name) can forge a cursor; what it forges is still only data:
// keys are converted to their fields' types and bound as parameters.
func TestForgedCursorStaysData(t *testing.T) {
	repo := stubRepo(t, nil)
	q, _ := repo.compilePaged(context.Background(), []QueryOption{SortBy("email")})
	hostile := "x'); DROP TABLE filter_models; --"
	id := uuid.New().String()
	good := forge(t, repo.db.cursorKey, cursor{Sort: sortFingerprint(repo.schema.Table, q), Raw: []*string{&hostile, &id}})
	c, err := repo.decodeCursor(good, q)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := gorm.Open(tests.DummyDialector{}, &gorm.Config{DryRun: true})
	var rows []filterModel
	stmt := db.Model(&filterModel{}).Clauses(clause.Where{Exprs: []clause.Expression{keysetAfter(q.order, []bool{false, true}, c.Keys)}}).Find(&rows).Statement
	if strings.Contains(stmt.SQL.String(), "DROP") || stmt.Vars[0] != hostile {
		t.Errorf("SQL %s with vars %v", stmt.SQL.String(), stmt.Vars)
	}
	notAnID := "not-a-uuid"
	bad := forge(t, repo.db.cursorKey, cursor{Sort: sortFingerprint(repo.schema.Table, q), Raw: []*string{&hostile, &notAnID}})
	if _, err := repo.decodeCursor(bad, q); !errors.Is(err, ErrInvalid) {
		t.Errorf("a key that is not of its field's type: %v", err)
	}
	wrongKey := forge(t, []byte("another key"), cursor{Sort: sortFingerprint(repo.schema.Table, q), Raw: []*string{&hostile, &id}})
	if _, err := repo.decodeCursor(wrongKey, q); !errors.Is(err, ErrInvalid) {
		t.Errorf("a cursor signed with another key: %v", err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	repo := stubRepo(f, []byte("fuzz key"))
	q, err := repo.compilePaged(context.Background(), []QueryOption{SortBy("-age,email")})
	if err != nil {
		f.Fatal(err)
	}
	ref := uuid.New()
	valid, _ := repo.encodeCursor(context.Background(), q, &filterModel{Model: Model{ID: uuid.New()}, Age: 3, Email: "a", Ref: &ref}, false)
	for _, seed := range []string{valid, "", "e30", valid[:len(valid)-3], strings.ToUpper(valid), "////", valid + "A"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := repo.decodeCursor(s, q)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		// Only a cursor carrying a valid MAC decodes.
		raw, _ := base64.RawURLEncoding.DecodeString(s)
		payload := raw[:len(raw)-cursorMACSize]
		if !hmac.Equal(raw[len(raw)-cursorMACSize:], repo.db.cursorMAC(payload)) || len(c.Keys) != len(q.sortFields) {
			t.Fatalf("decoded an unauthenticated or malformed cursor: %q", s)
		}
	})
}
