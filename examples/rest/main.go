// Command rest serves users over HTTP, with filters, sorting and cursor
// pagination taken straight from the query string, and writes taken
// straight from JSON bodies:
//
//	GET /users?name[ilike]=ada&created_at[gte]=2026-01-01T00:00:00Z&sort=-created_at&size=20
//	GET /users?...&cursor=<next from the previous page>
//	GET /users?...&page=3 (offset pages, for a page number in a UI)
//	POST /users {"email": "ada@example.com", "name": "Ada"}
//	PATCH /users/{id} {"name": "Ada Lovelace"}
//
// Everything in the query string and the bodies is checked by dbkit before
// any SQL is sent; a bad field, operator, value, sort, cursor or page, input
// past dbkit's limits (dbkit.InputLimits), or text that is not valid UTF-8 or
// holds a NUL is a 400 whose message names the problem and quotes at most a
// short prefix of the input.
//
//	DATABASE_URL=postgres://app:secret@localhost:5432/app CURSOR_KEY=$(openssl rand -hex 32) go run ./examples/rest
//
// CURSOR_KEY authenticates the cursors handed to clients (at least 32
// bytes; the same on every replica). Without it dbkit derives a key from
// the database name and logs a warning: cursors cannot be altered, but one
// could be forged.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/examples/migrations"
)

// User is the example service's model; its JSON names are the names
// clients filter and sort by.
type User struct {
	dbkit.Model
	Email string `gorm:"not null" json:"email"` // NOT NULL, as the migration declares it (TestSchema checks)
	Name  string `gorm:"not null" json:"name"`
}

// newUsers is the repository of users: a request body may set their name.
func newUsers(db *dbkit.DB) *dbkit.BaseDatabase[User] {
	return dbkit.NewBaseDatabase[User](db, dbkit.Patchable("name"))
}

// routes is the service's API.
func routes(users *dbkit.BaseDatabase[User]) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /users", listUsers(users))
	mux.Handle("POST /users", createUser(users))
	mux.Handle("PATCH /users/{id}", patchUser(users))
	return mux
}

// listUsers is GET /users: cursor pages, or offset pages with page=N.
func listUsers(users *dbkit.BaseDatabase[User]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		filter, err := dbkit.FilterFromQuery(q, "sort", "size", "cursor", "page")
		if err != nil {
			writeError(w, err)
			return
		}
		size, err := intParam(q.Get("size"), 20)
		if err != nil {
			writeError(w, err)
			return
		}
		opts := []dbkit.QueryOption{filter, dbkit.SortBy(q.Get("sort"))}
		var page any
		if q.Has("page") {
			var n int
			if n, err = intParam(q.Get("page"), 1); err == nil {
				page, err = users.FindPage(r.Context(), dbkit.PageRequest{Page: n, Size: size}, opts...)
			}
		} else {
			page, err = users.FindCursor(r.Context(), dbkit.CursorRequest{Cursor: q.Get("cursor"), Size: size}, opts...)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, page)
	}
}

// intParam reads an integer parameter, def when it is absent.
func intParam(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: size and page are integers", dbkit.ErrInvalid)
	}
	return n, nil
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// createUser is POST /users.
func createUser(users *dbkit.BaseDatabase[User]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Email string `json:"email"`
			Name  string `json:"name"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in); err != nil {
			writeError(w, fmt.Errorf("%w: the body is not a JSON user of at most %d bytes", dbkit.ErrInvalid, maxBody))
			return
		}
		u := User{Email: in.Email, Name: in.Name}
		if err := users.Create(r.Context(), &u); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, u)
	}
}

// patchUser is PATCH /users/{id}: the body's fields go straight to Patch,
// which sets only the fields made patchable.
func patchUser(users *dbkit.BaseDatabase[User]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(r.PathValue("id"))
		if err != nil {
			writeError(w, fmt.Errorf("%w: the id is not a UUID", dbkit.ErrInvalid))
			return
		}
		var fields map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&fields); err != nil {
			writeError(w, fmt.Errorf("%w: the body is not a JSON object of at most %d bytes", dbkit.ErrInvalid, maxBody))
			return
		}
		u, err := users.Patch(r.Context(), id, fields)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, u)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError maps dbkit's errors to HTTP statuses. ErrInvalid messages name
// fields and rules, never values (they quote at most a short prefix of a
// name from the request), so they can go back to the client.
func writeError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, dbkit.ErrInvalid):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, dbkit.ErrNotFound):
		status, msg = http.StatusNotFound, "not found"
	case errors.Is(err, dbkit.ErrDuplicate):
		status, msg = http.StatusConflict, "a user with this email exists"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusServiceUnavailable, "request cancelled"
	case errors.Is(err, dbkit.ErrCommitUnknown):
		// Not "try again": the write may have happened.
		status, msg = http.StatusInternalServerError, "the outcome is unknown: check before you try again"
		log.Printf("users: %v", err)
	case errors.Is(err, dbkit.ErrUnavailable), errors.Is(err, dbkit.ErrClosed):
		w.Header().Set("Retry-After", "1")
		status, msg = http.StatusServiceUnavailable, "database unavailable, try again"
	default:
		log.Printf("users: %v", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, err := dbkit.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	// Limits the server enforces whatever a handler does: no statement
	// outlives a request by much, none waits long behind a lock, and no
	// transaction a crashed handler left open holds its locks.
	cfg.StatementTimeout, cfg.LockTimeout, cfg.IdleInTransactionTimeout = 10*time.Second, 2*time.Second, 30*time.Second
	opts := []dbkit.Option{dbkit.WithMigrations(migrations.All...)}
	if key := os.Getenv("CURSOR_KEY"); key != "" {
		// The same secret on every replica, so that a cursor made by one is
		// good on the others, and no client can make one of its own.
		opts = append(opts, dbkit.WithCursorKey([]byte(key)))
	}
	db, err := dbkit.Connect(ctx, cfg, opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		// Let running requests' statements finish, within a bound; Close
		// then cuts what is left and says so.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.Close(ctx); err != nil {
			log.Print(err)
		}
	}()

	srv := &http.Server{Addr: ":8080", Handler: routes(newUsers(db)), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	log.Printf("listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
