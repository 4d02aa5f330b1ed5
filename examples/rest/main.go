// Command rest serves a list of users over HTTP, with filters, sorting and
// cursor pagination taken straight from the query string:
//
//	GET /users?name[ilike]=ada&created_at[gte]=2026-01-01T00:00:00Z&sort=-created_at&size=20
//	GET /users?...&cursor=<next from the previous page>
//
// Everything in the query string is checked by dbkit before any SQL is
// sent; a bad field, operator, value, sort or cursor is a 400 whose message
// names the problem, never the value.
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
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/examples/migrations"
)

// User is the example service's model; its JSON names are the names
// clients filter and sort by.
type User struct {
	dbkit.Model
	Email string `gorm:"not null" json:"email"` // NOT NULL, so cursor pages can sort by it
	Name  string `gorm:"not null" json:"name"`
}

// listUsers is GET /users.
func listUsers(users *dbkit.BaseDatabase[User]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		filters, err := dbkit.FiltersFromQuery(q, "sort", "size", "cursor")
		if err != nil {
			writeError(w, err)
			return
		}
		size := 20
		if s := q.Get("size"); s != "" {
			if size, err = strconv.Atoi(s); err != nil {
				writeError(w, dbkit.ErrInvalid)
				return
			}
		}
		opts := []dbkit.QueryOption{dbkit.SortBy(q.Get("sort"))}
		for _, f := range filters {
			opts = append(opts, f)
		}
		page, err := users.FindCursor(r.Context(), dbkit.CursorRequest{Cursor: q.Get("cursor"), Size: size}, opts...)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}
}

// writeError maps dbkit's errors to HTTP statuses. ErrInvalid messages name
// fields and rules, never values, so they can go back to the client.
func writeError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, dbkit.ErrInvalid):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, dbkit.ErrNotFound):
		status, msg = http.StatusNotFound, "not found"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusServiceUnavailable, "request cancelled"
	default:
		log.Printf("GET /users: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg, err := dbkit.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
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
		if err := db.Close(context.Background()); err != nil {
			log.Print(err)
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("GET /users", listUsers(dbkit.NewBaseDatabase[User](db)))
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	log.Printf("listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
