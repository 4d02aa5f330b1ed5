package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// TestHostileInput: oversized, malformed and out-of-range input is a 400
// with a short message that does not repeat it, never a 500.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(routes(newUsers(dbtest.New(t, migrations.All...))))
	defer api.Close()
	mb := strings.Repeat("x", 1<<20)
	for name, query := range map[string]string{
		"huge value":            url.Values{"name": {mb}}.Encode(),
		"huge ilike pattern":    url.Values{"name[ilike]": {mb}}.Encode(),
		"huge field name":       url.Values{mb: {"a"}}.Encode(),
		"huge operator":         url.Values{"name[" + mb + "]": {"a"}}.Encode(),
		"huge sort":             url.Values{"sort": {mb}}.Encode(),
		"huge list of sorts":    url.Values{"sort": {strings.Repeat("name,", 100_000)}}.Encode(),
		"thousands of filters":  manyFilters(5000),
		"invalid UTF-8":         "name=%FF",
		"NUL":                   "name=a%00b",
		"NUL in a pattern":      "email[ilike]=a%00b",
		"invalid UTF-8 in list": "email[in]=a,%FF",
		"huge page":             "page=9223372036854775807&size=10",
		"deep page":             "page=10001&size=100",
		"page past int":         "page=9223372036854775808",
	} {
		resp, err := http.Get(api.URL + "/users?" + query)
		if err != nil {
			t.Fatal(err)
		}
		body := readBounded(t, resp)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %.300s", name, resp.StatusCode, body)
		}
		checkBody(t, name, body, mb)
	}
}

// manyFilters is a query string of n filters.
func manyFilters(n int) string {
	q := url.Values{}
	for i := range n {
		q.Set(fmt.Sprintf("f%d", i), "a")
	}
	return q.Encode()
}

// readBounded reads at most 64 KiB of resp's body and closes it.
func readBounded(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkBody fails t if an error body is long or repeats a long hostile
// input (64 bytes from its middle, inside the hostile run).
func checkBody(t *testing.T, name, body, hostile string) {
	t.Helper()
	if len(body) > 512 {
		t.Errorf("%s: a body of %d bytes, want a short message: %.300s…", name, len(body), body)
	}
	if mid := len(hostile) / 2; len(hostile) >= 128 && strings.Contains(body, hostile[mid:mid+64]) {
		t.Errorf("%s: the body repeats the input: %.300s", name, body)
	}
}

// TestHostileBodies: text a column cannot hold, in a JSON body, is a 400
// naming the field, and nothing is written.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(routes(newUsers(dbtest.New(t, migrations.All...))))
	defer api.Close()
	send := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, api.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBounded(t, resp)
	}
	status, body := send(http.MethodPost, "/users", `{"email": "ada@example.com", "name": "Ada"}`)
	var ada User
	if err := json.Unmarshal([]byte(body), &ada); status != http.StatusCreated || err != nil {
		t.Fatalf("POST /users = %d %s", status, body)
	}
	long := strings.Repeat("y", 10_000)
	for _, c := range []struct{ name, method, path, body, want string }{
		{"NUL in a created field", http.MethodPost, "/users", `{"email": "a\u0000b@example.com"}`, "User.Email: the value holds a NUL byte"},
		{"NUL in a patched field", http.MethodPatch, "/users/" + ada.ID.String(), `{"name": "a\u0000b"}`, "User.Name: the value holds a NUL byte"},
		{"long field name in a patch", http.MethodPatch, "/users/" + ada.ID.String(), `{"` + long + `": "x"}`, "cannot be patched"},
		{"field nobody listed", http.MethodPatch, "/users/" + ada.ID.String(), `{"email": "x@example.com"}`, "cannot be patched"},
		{"body too large", http.MethodPost, "/users", `{"name": "` + strings.Repeat("z", 1<<20) + `"}`, "at most 65536 bytes"},
	} {
		status, body := send(c.method, c.path, c.body)
		if status != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %.300s, want 400 saying %s", c.name, status, body, c.want)
		}
		checkBody(t, c.name, body, c.body) // whatever the case's own hostile input is
	}
	// encoding/json reads invalid UTF-8 as U+FFFD: that much arrives valid.
	if status, body := send(http.MethodPatch, "/users/"+ada.ID.String(), "{\"name\": \"\xff\"}"); status != http.StatusOK ||
		!strings.Contains(body, "\"name\":\"\ufffd\"") {
		t.Errorf("PATCH with a raw 0xff byte: %d %s, want 200 with U+FFFD", status, body)
	}
	status, body = send(http.MethodGet, "/users?email=ada@example.com", "")
	if status != http.StatusOK || strings.Count(body, `"email"`) != 1 {
		t.Errorf("GET /users = %d %s, want Ada alone", status, body)
	}
}
