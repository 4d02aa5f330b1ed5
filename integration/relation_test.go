package integration

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/google/uuid"

	"github.com/dbkit-go/database/dbkit"
)

// buyerOrder is an order with its buyer, a belongs-to association.
type buyerOrder struct {
	dbkit.Model
	UserID uuid.UUID `gorm:"type:uuid;not null"`
	User   User      `json:"user"`
	Amount int       `gorm:"not null"`
}

func (buyerOrder) TableName() string { return "orders" }

// sealedOrder hides its buyer from the API.
type sealedOrder struct {
	dbkit.Model
	UserID uuid.UUID `gorm:"type:uuid;not null"`
	User   User      `json:"-"`
	Amount int       `gorm:"not null"`
}

func (sealedOrder) TableName() string { return "orders" }

// TestAssociationFields: conditions and sorts name a belongs-to's fields
// as "user.email", from code and from input, joined; input is held to the
// same hidden-field and allow-list rules; what a join cannot serve is
// refused.
func TestAssociationFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	users := dbkit.NewBaseDatabase[User](db)
	orders := dbkit.NewBaseDatabase[buyerOrder](db)
	buyers := map[string]*User{}
	for i, email := range []string{"ada@example.com", "bob@example.com"} {
		u := &User{Email: email, Name: email[:3], Age: 30 + i}
		if err := users.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		buyers[email] = u
		for amount := range 2 {
			if err := db.Gorm(ctx).Create(&Order{UserID: u.ID, Amount: 10*(i+1) + amount}).Error; err != nil {
				t.Fatal(err)
			}
		}
	}
	byCode, err := orders.Find(ctx, dbkit.Eq("user.email", "ada@example.com"), dbkit.SortBy("amount"))
	if err != nil || len(byCode) != 2 || byCode[0].Amount != 10 || byCode[0].UserID != buyers["ada@example.com"].ID {
		t.Fatalf("Find by the buyer's email: %+v, %v", byCode, err)
	}
	input, err := dbkit.FilterFromQuery(url.Values{"user.email[ilike]": {"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := orders.Count(ctx, input); err != nil || n != 2 {
		t.Errorf("Count by input on the buyer: %d, %v; want 2", n, err)
	}
	sorted, err := orders.Find(ctx, dbkit.SortBy("-user.email,amount"))
	if err != nil || len(sorted) != 4 || sorted[0].UserID != buyers["bob@example.com"].ID || sorted[0].Amount != 20 {
		t.Errorf("sorted by the buyer's email: %+v, %v", sorted, err)
	}
	page, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 1, WithTotal: true}, dbkit.Gt("user.age", 30))
	if err != nil || len(page.Items) != 1 || page.Total == nil || *page.Total != 2 {
		t.Errorf("FindPage on the buyer's age: %+v, %v", page, err)
	}
	if one, err := orders.FindOne(ctx, input, dbkit.SortBy("-amount")); err != nil || one.Amount != 21 {
		t.Errorf("FindOne: %+v, %v", one, err)
	}

	for name, call := range map[string]func() error{
		"an association the model lacks": func() error { _, err := orders.Find(ctx, dbkit.Eq("buyer.email", "x")); return err },
		"a field the buyer lacks":        func() error { _, err := orders.Find(ctx, dbkit.Eq("user.nope", "x")); return err },
		"a hidden association, as input": func() error {
			_, err := dbkit.NewBaseDatabase[sealedOrder](db).Find(ctx, dbkit.Filter{Field: "user.email", Value: "x"})
			return err
		},
		"a buyer's field off the allow list": func() error {
			_, err := dbkit.NewBaseDatabase[buyerOrder](db, dbkit.InputFields("amount", "user.name")).Find(ctx, dbkit.Filter{Field: "user.email", Value: "x"})
			return err
		},
		"FindCursor": func() error {
			_, err := orders.FindCursor(ctx, dbkit.CursorRequest{Size: 5}, input)
			return err
		},
		"UpdateWhere": func() error { _, err := orders.UpdateWhere(ctx, map[string]any{"amount": 1}, input); return err },
		"DeleteWhere": func() error { _, err := orders.DeleteWhere(ctx, input); return err },
	} {
		if err := call(); !errors.Is(err, dbkit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// A row lock with a join locks the model's rows (FOR UPDATE OF).
	err = db.InTx(ctx, func(ctx context.Context) error {
		// Sorted on the buyer, no condition on it: the join stays outer.
		locked, err := orders.Find(ctx, dbkit.SortBy("user.email"), dbkit.ForUpdate())
		if err == nil && len(locked) != 4 {
			err = errors.New("not the four orders")
		}
		return err
	})
	if err != nil {
		t.Errorf("ForUpdate sorted on the buyer: %v", err)
	}
	// Code may name a hidden association; the allow list admits its fields.
	if rows, err := dbkit.NewBaseDatabase[sealedOrder](db).Find(ctx, dbkit.Eq("User.Email", "ada@example.com")); err != nil || len(rows) != 2 {
		t.Errorf("a hidden association, from code: %d rows, %v", len(rows), err)
	}
	allowed := dbkit.NewBaseDatabase[buyerOrder](db, dbkit.InputFields("amount", "user.name"))
	if rows, err := allowed.Find(ctx, dbkit.Filter{Field: "user.name", Value: "ada"}); err != nil || len(rows) != 2 {
		t.Errorf("an allowed buyer's field: %d rows, %v", len(rows), err)
	}
}

// userProfile is a user's, one at most: its user_id is unique.
type userProfile struct {
	dbkit.Model
	UserID uuid.UUID `gorm:"type:uuid;not null;uniqueIndex"`
	Bio    string
}

func (userProfile) TableName() string { return "profiles" }

// profiledUser has one profile (a unique key: joinable) and orders through
// a has-one on a key that is not unique (not joinable: it would repeat
// users).
type profiledUser struct {
	User
	Profile userProfile `gorm:"foreignKey:UserID" json:"profile"`
	Order   Order       `gorm:"foreignKey:UserID" json:"order"`
}

func (profiledUser) TableName() string { return "users" }

// TestHasOneJoinsOnlyUniqueKeys: a has-one is joined when its key is
// unique, and not offered when it is not, since each user would appear
// once per order.
func TestHasOneJoinsOnlyUniqueKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	if _, err := db.Exec(ctx, `CREATE TABLE profiles (id uuid PRIMARY KEY, created_at timestamptz NOT NULL,
		updated_at timestamptz NOT NULL, user_id uuid NOT NULL UNIQUE REFERENCES users, bio text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	users := dbkit.NewBaseDatabase[profiledUser](db)
	for i, bio := range []string{"painter", "poet"} {
		u := User{Email: bio + "@example.com", Age: 20 + i}
		if err := dbkit.NewBaseDatabase[User](db).Create(ctx, &u); err != nil {
			t.Fatal(err)
		}
		if err := db.Gorm(ctx).Create(&userProfile{UserID: u.ID, Bio: bio}).Error; err != nil {
			t.Fatal(err)
		}
		for amount := range 3 {
			if err := db.Gorm(ctx).Create(&Order{UserID: u.ID, Amount: amount + 1}).Error; err != nil {
				t.Fatal(err)
			}
		}
	}
	rows, err := users.Find(ctx, dbkit.Like("profile.bio", "p%"), dbkit.SortBy("-profile.bio"))
	if err != nil || len(rows) != 2 || rows[0].Email != "poet@example.com" {
		t.Errorf("Find through the profile: %d rows, %v; want the two users once each, poet first", len(rows), err)
	}
	if n, err := users.Count(ctx, dbkit.Like("profile.bio", "p%")); err != nil || n != 2 {
		t.Errorf("Count through the profile: %d, %v; want 2", n, err)
	}
	if _, err := users.Find(ctx, dbkit.Gt("order.amount", 0)); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("a has-one on a key that is not unique: %v, want ErrInvalid (each user would repeat)", err)
	}
}
