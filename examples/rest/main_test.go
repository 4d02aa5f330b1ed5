package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/examples/migrations"
)

type pageJSON struct {
	Items []User `json:"items"`
	Size  int    `json:"size"`
	Next  string `json:"next"`
	Prev  string `json:"prev"`
}

// TestListUsers drives GET /users as a client would: filters and a sort in
// the query string, pages followed by their next cursor, bad input refused.
func TestListUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](dbtest.New(t, migrations.All...))
	seed := make([]User, 25)
	for i := range seed {
		name := "Grace"
		if i%2 == 0 {
			name = "Ada"
		}
		seed[i] = User{Email: fmt.Sprintf("user%02d@example.com", i), Name: name}
	}
	if err := users.CreateMany(ctx, seed); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(listUsers(users))
	defer api.Close()
	get := func(query string) (int, pageJSON, string) {
		t.Helper()
		resp, err := http.Get(api.URL + "/users?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&raw)
		var page pageJSON
		_ = json.Unmarshal(raw, &page)
		return resp.StatusCode, page, string(raw)
	}

	// All Adas whose email ends in a given way, newest email first, 5 a page.
	q := url.Values{"name": {"Ada"}, "email[ilike]": {"@EXAMPLE.com"}, "sort": {"-email"}, "size": {"5"}}
	var emails []string
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end: 13 Adas fit in 3 pages of 5")
		}
		status, page, body := get(q.Encode())
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		for _, u := range page.Items {
			if u.Name != "Ada" {
				t.Errorf("got %s, a %s", u.Email, u.Name)
			}
			emails = append(emails, u.Email)
		}
		if page.Next == "" {
			break
		}
		q.Set("cursor", page.Next)
	}
	if len(emails) != 13 || emails[0] != "user24@example.com" || emails[12] != "user00@example.com" {
		t.Errorf("emails = %v, want the 13 Adas from user24 down to user00", emails)
	}

	for query, want := range map[string]string{
		"password=x":          `has no field \"password\"`,
		"name[regex]=x":       `unknown operator \"regex\"`,
		"sort=-password_hash": `has no field \"password_hash\"`,
		"cursor=Zm9v":         "the cursor is not one this query gave out",
		"size=0":              "page size must be 1 or more",
		"created_at[gt]=soon": "is not an RFC 3339 time",
	} {
		status, _, body := get(query)
		if status != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("GET /users?%s = %d %s, want 400 saying %s", query, status, body, want)
		}
		if strings.Contains(body, "soon") {
			t.Errorf("the error repeats the value: %s", body)
		}
	}
}
