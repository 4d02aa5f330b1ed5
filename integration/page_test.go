package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/dbkit-go/database/dbkit"
)

// seedOrders creates n orders with repeated amounts and every third note
// NULL, so that sorts have ties and NULLs.
func seedOrders(t *testing.T, db *dbkit.DB, n int) *dbkit.BaseDatabase[Order] {
	t.Helper()
	ctx := context.Background()
	users := dbkit.NewBaseDatabase[User](db)
	u := User{Email: fmt.Sprintf("orders-%d@example.com", n)}
	if err := users.Create(ctx, &u); err != nil {
		t.Fatal(err)
	}
	orders := dbkit.NewBaseDatabase[Order](db)
	for i := range n {
		o := Order{UserID: u.ID, Amount: i % 4}
		if i%3 != 0 {
			note := fmt.Sprintf("note-%02d", i%5)
			o.Note = &note
		}
		if err := orders.Create(ctx, &o); err != nil {
			t.Fatal(err)
		}
	}
	return orders
}

func ids[T dbkit.Entity](rows []T) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.PrimaryKey()
	}
	return out
}

func TestFindPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	orders := seedOrders(t, newDB(t), 25)
	all, err := orders.Find(ctx, dbkit.SortBy("id"))
	if err != nil {
		t.Fatal(err)
	}

	p1, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 10, WithTotal: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(p1.Items), ids(all[:10])) || p1.Total == nil || *p1.Total != 25 || p1.Page != 1 || p1.Size != 10 {
		t.Errorf("page 1 = %d items, total %v; want the first 10 by id and total 25", len(p1.Items), p1.Total)
	}
	p3, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 3, Size: 10})
	if err != nil || !slices.Equal(ids(p3.Items), ids(all[20:])) || p3.Total != nil {
		t.Errorf("page 3 = %d items, total %v, %v; want the last 5 and no total", len(p3.Items), p3.Total, err)
	}
	p9, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 9, Size: 10})
	if err != nil || p9.Items == nil || len(p9.Items) != 0 {
		t.Errorf("page past the end = %#v, %v; want an empty page", p9.Items, err)
	}

	filtered, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 100, WithTotal: true},
		dbkit.Filter{Field: "amount", Op: dbkit.OpGte, Value: "2"}, dbkit.SortBy("-amount"))
	if err != nil || *filtered.Total != int64(len(filtered.Items)) || filtered.Items[0].Amount != 3 {
		t.Errorf("filtered page: %d items, total %v, %v", len(filtered.Items), filtered.Total, err)
	}

	big, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 5000})
	if err != nil || big.Size != dbkit.DefaultMaxPageSize {
		t.Errorf("size 5000: used %d, %v; want it capped at %d", big.Size, err, dbkit.DefaultMaxPageSize)
	}
	for name, req := range map[string]dbkit.PageRequest{"page 0": {Page: 0, Size: 10}, "size 0": {Page: 1}, "negative": {Page: -1, Size: -5}} {
		if _, err := orders.FindPage(ctx, req); !errors.Is(err, dbkit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := orders.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 5}, dbkit.Limit(3)); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("Limit with a page: %v, want ErrInvalid", err)
	}
}

// walk reads every page forward, then every page backward from the last,
// and returns both sequences of IDs.
func walk[T dbkit.Entity](t *testing.T, repo *dbkit.BaseDatabase[T], size int, opts ...dbkit.QueryOption) (forward, backward []string) {
	t.Helper()
	ctx := context.Background()
	req := dbkit.CursorRequest{Size: size}
	var last dbkit.CursorPage[T]
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		page, err := repo.FindCursor(ctx, req, opts...)
		if err != nil {
			t.Fatal(err)
		}
		forward = append(forward, ids(page.Items)...)
		last = page
		if page.Next == "" {
			break
		}
		req.Cursor = page.Next
	}
	backward = ids(last.Items)
	req.Cursor = last.Prev
	for pages := 0; req.Cursor != ""; pages++ {
		if pages > 100 {
			t.Fatal("backward pagination does not end")
		}
		page, err := repo.FindCursor(ctx, req, opts...)
		if err != nil {
			t.Fatal(err)
		}
		backward = append(ids(page.Items), backward...)
		if len(page.Items) > size {
			t.Fatalf("page of %d items, size %d", len(page.Items), size)
		}
		req.Cursor = page.Prev
	}
	return forward, backward
}

func TestFindCursorWalksEverySort(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	orders := seedOrders(t, newDB(t), 37)
	for _, sort := range []string{"", "id", "-id", "note", "-note", "amount,-note", "-amount,note", "-created_at", "note,-amount"} {
		for _, filter := range [][]dbkit.QueryOption{nil, {dbkit.Filter{Field: "amount", Op: dbkit.OpNe, Value: "1"}}} {
			opts := append([]dbkit.QueryOption{dbkit.SortBy(sort)}, filter...)
			t.Run(fmt.Sprintf("sort=%q/filtered=%v", sort, filter != nil), func(t *testing.T) {
				want, err := orders.Find(ctx, opts...)
				if err != nil {
					t.Fatal(err)
				}
				forward, backward := walk(t, orders, 5, opts...)
				if !slices.Equal(forward, ids(want)) {
					t.Errorf("forward pages give %d rows, not the sorted %d rows in order", len(forward), len(want))
				}
				if !slices.Equal(backward, ids(want)) {
					t.Errorf("backward pages give %d rows, not the sorted %d rows in order", len(backward), len(want))
				}
			})
		}
	}
}

func TestFindCursorIsStableUnderInserts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	orders := seedOrders(t, db, 10)
	p1, err := orders.FindCursor(ctx, dbkit.CursorRequest{Size: 4}, dbkit.SortBy("-created_at"))
	if err != nil {
		t.Fatal(err)
	}
	// New rows sort first (newest): with OFFSET they would shift page 2.
	seedOrders(t, db, 3)
	p2, err := orders.FindCursor(ctx, dbkit.CursorRequest{Cursor: p1.Next, Size: 4}, dbkit.SortBy("-created_at"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids(p2.Items) {
		if slices.Contains(ids(p1.Items), id) {
			t.Fatal("page 2 repeats a row of page 1")
		}
	}
	if len(p2.Items) != 4 {
		t.Errorf("page 2 has %d rows, want 4", len(p2.Items))
	}
}

func TestFindCursorRefusesForeignCursors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	orders := seedOrders(t, db, 12)
	page, err := orders.FindCursor(ctx, dbkit.CursorRequest{Size: 5}, dbkit.SortBy("amount"))
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(page.Next)
	flip[len(flip)/2] ^= 1
	cases := map[string]struct {
		cursor string
		opts   []dbkit.QueryOption
	}{
		"tampered":     {string(flip), []dbkit.QueryOption{dbkit.SortBy("amount")}},
		"truncated":    {page.Next[:len(page.Next)-4], []dbkit.QueryOption{dbkit.SortBy("amount")}},
		"garbage":      {"'; DROP TABLE orders; --", []dbkit.QueryOption{dbkit.SortBy("amount")}},
		"another sort": {page.Next, []dbkit.QueryOption{dbkit.SortBy("-amount")}},
	}
	for name, c := range cases {
		if _, err := orders.FindCursor(ctx, dbkit.CursorRequest{Cursor: c.cursor, Size: 5}, c.opts...); !errors.Is(err, dbkit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}

	// Replicas sharing a key accept each other's cursors; others do not.
	key := []byte("0123456789abcdef0123456789abcdef")
	cfg := db.Config()
	a, err := dbkit.Connect(ctx, cfg, dbkit.WithCursorKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := dbkit.Connect(ctx, cfg, dbkit.WithCursorKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	fromA, err := dbkit.NewBaseDatabase[Order](a).FindCursor(ctx, dbkit.CursorRequest{Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dbkit.NewBaseDatabase[Order](b).FindCursor(ctx, dbkit.CursorRequest{Cursor: fromA.Next, Size: 5}); err != nil {
		t.Errorf("a cursor from a replica with the same key: %v", err)
	}
	if _, err := orders.FindCursor(ctx, dbkit.CursorRequest{Cursor: fromA.Next, Size: 5}); !errors.Is(err, dbkit.ErrInvalid) {
		t.Errorf("a cursor signed with another key: %v, want ErrInvalid", err)
	}
}
