package integration

import (
	"context"
	"testing"

	"github.com/dbkit-go/database/dbkit"
	"gorm.io/gorm"
)

type User struct {
	dbkit.Model
	Email string `gorm:"uniqueIndex;not null"`
	Name  string
}

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	db := srv.New(t, dbkit.WithMigrations(dbkit.Migration{ID: "1", Migrate: func(tx *gorm.DB) error { return tx.AutoMigrate(&User{}) }}))
	users := dbkit.NewBaseDatabase[User](db)
	u := User{Email: "a@b", Name: "A"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", u)
	got, err := users.Get(ctx, u.ID)
	t.Logf("%+v %v", got, err)
	err = users.Create(ctx, &User{Email: "a@b"})
	t.Logf("%v", err)
	n, err := users.Count(ctx, dbkit.Eq("email", "a@b"))
	t.Log(n, err)
	ok, err := users.Exists(ctx, dbkit.Eq("Email", "a@b"))
	t.Log(ok, err)
	ok, err = users.Exists(ctx, dbkit.Eq("Email", "zz"))
	t.Log(ok, err)
	u.Name = "B"
	prev := u.UpdatedAt
	t.Log(users.Update(ctx, &u), prev, u.UpdatedAt)
	l, err := users.Find(ctx, dbkit.Eq("name", "B"), dbkit.Limit(10), dbkit.OrderByDesc("created_at"))
	t.Log(l, err)
	t.Log(users.Delete(ctx, u.ID))
	t.Log(users.Delete(ctx, u.ID))
	_, err = users.Find(ctx, dbkit.Eq("nope", 1))
	t.Log(err)
}
