package integration

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// The statements of Get and Exists are those docs/repository.md shows: GORM
// binds the limit as a parameter ($2, $n), it does not write LIMIT 1. (The
// statement spans show the text sanitized: the 1 of SELECT 1 is a ?.)
func TestRepositoryStatementsAsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/repository.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`SELECT ... WHERE id = $1 LIMIT $2`", "`SELECT 1 ... LIMIT $n`"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/repository.md does not show %s", want)
		}
	}

	o := newObserved(t, srv.NewDatabase(t))
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](o.db)
	u := User{Email: "ada@example.com"}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	for _, preds := range [][]dbkit.QueryOption{nil, {dbkit.Eq("email", u.Email)}} {
		if ok, err := users.Exists(ctx, preds...); err != nil || !ok {
			t.Fatalf("Exists(%v) = %v, %v", preds, ok, err)
		}
	}
	var texts []string
	for _, s := range o.spans.Ended() {
		if q, ok := attrs(s)["db.query.text"]; ok && strings.HasPrefix(q, "SELECT") && strings.Contains(q, "users") {
			texts = append(texts, q)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`^SELECT \* FROM "users" WHERE "users"\."id" = \$1 .*LIMIT \$2$`),
		regexp.MustCompile(`^SELECT (1|\?) FROM "users" .*LIMIT \$1$`),
		regexp.MustCompile(`^SELECT (1|\?) FROM "users" WHERE "users"\."email" = \$1 .*LIMIT \$2$`),
	} {
		found := false
		for _, q := range texts {
			found = found || want.MatchString(q)
		}
		if !found {
			t.Errorf("no statement matches %s among %q", want, texts)
		}
	}
}
