package integration

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/dbkit-go/database/dbkit"
)

// BenchmarkTraceCommentsGet is Get with telemetry on (impl=on, as in
// BenchmarkTelemetryGet), on with WithTraceComments (impl=comments: the
// comment, and the statement run in pgx's exec mode instead of
// cache_statement), and on with the pool in exec mode without comments
// (impl=on_exec: the part of the cost that comes from not caching the
// statement) or in describe_exec mode (impl=on_describe: what a commented
// statement whose arguments are not plain text costs). See
// docs/performance.md.
func BenchmarkTraceCommentsGet(b *testing.B) {
	env := benchSetup(b)
	tel := telemetrySetup(b)
	ctx := context.Background()
	var impls []getImpl
	for name, users := range map[string]*dbkit.BaseDatabase[User]{
		"on": tel.on, "comments": tel.comments, "on_exec": tel.exec, "on_describe": tel.describe,
	} {
		impls = append(impls, getImpl{name, func(id uuid.UUID) (User, error) { return users.Get(ctx, id) }})
	}
	runGets(b, env.ids, impls)
}
