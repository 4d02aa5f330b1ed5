package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dbkit-go/database/dbkit"
)

// A marker in a row's values and another in the password: neither may
// appear in any span attribute, event or status, metric label, or log line,
// whatever the repository did, failures included.
func TestNothingSecretInTelemetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const marker = "row-value-marker-7f3a"
	const numMarker = 7193846251
	password := specialPassword + "-telemetry-marker-91c2"
	o := newObserved(t, createRole(t, password))
	users := dbkit.NewBaseDatabase[User](o.db, dbkit.Patchable("name"))
	orders := dbkit.NewBaseDatabase[Order](o.db)

	u := User{Email: marker + "@example.com", Name: marker}
	calls := map[string]error{}
	calls["create"] = users.Create(ctx, &u)
	calls["duplicate"] = users.Create(ctx, &User{Email: u.Email})
	calls["check"] = users.Create(ctx, &User{Email: marker + "2@example.com", Age: -1})
	calls["foreign key"] = orders.Create(ctx, &Order{UserID: [16]byte{9}, Amount: 1})
	_, calls["get"] = users.Get(ctx, u.ID)
	_, calls["find"] = users.Find(ctx, dbkit.Eq("email", u.Email), dbkit.Filter{Field: "name", Op: dbkit.OpIlike, Value: marker})
	_, calls["bad uuid"] = users.Find(ctx, dbkit.Eq("ID", marker))
	_, calls["count"] = users.Count(ctx, dbkit.Filter{Field: "email", Op: dbkit.OpIn, Value: []any{u.Email, marker}})
	_, calls["page"] = users.FindPage(ctx, dbkit.PageRequest{Page: 1, Size: 5, WithTotal: true}, dbkit.Filter{Field: "name", Value: marker})
	_, calls["cursor"] = users.FindCursor(ctx, dbkit.CursorRequest{Size: 1}, dbkit.SortBy("-created_at"), dbkit.Filter{Field: "name", Value: marker})
	_, calls["patch"] = users.Patch(ctx, u.ID, map[string]any{"name": marker + "-patched"})
	calls["upsert"] = users.Upsert(ctx, &User{Email: u.Email, Name: marker}, dbkit.Conflict{Columns: []string{"email"}, Update: []string{"name"}})
	calls["create many"] = users.CreateMany(ctx, []User{{Email: marker + "3@example.com"}, {Email: u.Email}})
	calls["tx"] = o.db.InTx(ctx, func(ctx context.Context) error {
		u.Name = marker + "-tx"
		return users.Update(ctx, &u)
	})
	calls["delete"] = users.Delete(ctx, u.ID)
	_, calls["not found"] = users.Get(ctx, u.ID)
	// Through the escape hatch: an argument pgx cannot encode (its message
	// quotes it), a server error that quotes it (22P02).
	_, calls["encode"] = users.Query(ctx).Where("id = ?", numMarker).Find(ctx)
	calls["cast"] = users.Query(ctx).Exec(ctx, "SELECT ?::int", marker)
	// A Connect that fails, with the password.
	wrong := o.cfg
	wrong.Database = "no_such_database"
	_, calls["connect"] = dbkit.Connect(ctx, wrong, o.telemetry...)
	for name, want := range map[string]bool{"create": true, "get": true, "find": true, "count": true, "page": true,
		"cursor": true, "patch": true, "upsert": true, "tx": true, "delete": true} {
		if want && calls[name] != nil {
			t.Errorf("%s: %v", name, calls[name])
		}
	}
	for _, name := range []string{"duplicate", "check", "foreign key", "bad uuid", "create many", "not found", "encode", "cast", "connect"} {
		if calls[name] == nil {
			t.Errorf("%s succeeded; the test wants it to fail", name)
		}
	}
	if err := o.db.Health(ctx); err != nil {
		t.Fatal(err)
	}

	secrets := []string{marker, password, "telemetry-marker-91c2", fmt.Sprint(numMarker)}
	check := func(where, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains %q: %s", where, s, text)
			}
		}
	}
	for name, err := range calls {
		if err != nil {
			check("the error of "+name, err.Error())
		}
	}
	for _, s := range o.spans.Ended() {
		check("span "+s.Name(), fmt.Sprintf("%s %v %v %v", s.Name(), s.Attributes(), s.Events(), s.Status()))
	}
	var rm metricdata.ResourceMetrics
	if err := o.metrics.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	check("metrics", fmt.Sprintf("%+v", rm))
	for _, line := range strings.Split(o.logs.String(), "\n") {
		check("log line", line)
	}
	if len(o.spans.Ended()) < 30 || !strings.Contains(o.logs.String(), "statement failed") {
		t.Errorf("%d spans, logs without a failed statement: the test observed too little", len(o.spans.Ended()))
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
