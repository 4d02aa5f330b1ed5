package dbkit

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The sqlcommenter specification's example span context.
var specSpan = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID:    trace.TraceID{0x5b, 0xd6, 0x6e, 0xf5, 0x09, 0x53, 0x69, 0xc7, 0xb0, 0xd1, 0xf8, 0xf4, 0xbd, 0x33, 0x71, 0x6a},
	SpanID:     trace.SpanID{0xc5, 0x32, 0xcb, 0x40, 0x98, 0xac, 0x3d, 0xd2},
	TraceFlags: trace.FlagsSampled,
})

const specComment = "/*traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01'*/"

func TestWithTraceparent(t *testing.T) {
	unsampled := specSpan.WithTraceFlags(0)
	for _, tc := range []struct {
		name, query, want string
		sc                trace.SpanContext
	}{
		{"at the end", `SELECT * FROM "users" WHERE "users"."id" = $1`, `SELECT * FROM "users" WHERE "users"."id" = $1 ` + specComment, specSpan},
		{"before a final semicolon", "SELECT 1;", "SELECT 1 " + specComment + ";", specSpan},
		{"white space dropped", "SELECT 1 ;\n\t", "SELECT 1 " + specComment + ";", specSpan},
		{"only the last semicolon", "SELECT 1; SELECT 2;", "SELECT 1; SELECT 2 " + specComment + ";", specSpan},
		{"unsampled", "SELECT 1", "SELECT 1 /*traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-00'*/", unsampled},
		{"a block comment already", "SELECT /*+ SeqScan(users) */ * FROM users", "", specSpan},
		{"a comment already at the end", "SELECT 1 /*action='x'*/", "", specSpan},
		{"a line comment", "SELECT 1 -- why", "", specSpan},
		{"what looks like one counts", "SELECT '--'", "", specSpan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := withTraceparent(tc.query, tc.sc)
			want, wantOK := tc.want, tc.want != ""
			if !wantOK {
				want = tc.query
			}
			if got != want || ok != wantOK {
				t.Errorf("withTraceparent(%q) = %q, %v; want %q, %v", tc.query, got, ok, want, wantOK)
			}
		})
	}
}

// The comment is one the sqlcommenter specification's parser reads back:
// comma-separated key='value' pairs, sorted by key, values URL-encoded with
// ' escaped; and its traceparent is the one OpenTelemetry's W3C propagator
// sends for the span.
func TestTraceCommentFormat(t *testing.T) {
	for _, sc := range []trace.SpanContext{
		specSpan,
		specSpan.WithTraceFlags(0),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID(uuid.New()), SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 0xff},
			TraceFlags: trace.FlagsSampled | trace.FlagsRandom | 0x80, TraceState: mustTraceState(t, "congo=t61rcWkgMzE")}),
	} {
		got, ok := withTraceparent("SELECT 1", sc)
		if !ok {
			t.Fatalf("no comment for %v", sc)
		}
		body, found := strings.CutPrefix(got, "SELECT 1 /*")
		body, closed := strings.CutSuffix(body, "*/")
		if !found || !closed {
			t.Fatalf("%q: not a comment at the end of the statement", got)
		}
		pairs := parseSQLComment(t, body)
		if keys := mapKeys(pairs); !slices.IsSorted(keys) || !slices.Equal(keys, []string{"traceparent"}) {
			t.Errorf("%q: keys %v, want [traceparent] (no tracestate, nothing else)", got, keys)
		}
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
		if pairs["traceparent"] != carrier.Get("traceparent") {
			t.Errorf("traceparent %q, the W3C propagator's %q", pairs["traceparent"], carrier.Get("traceparent"))
		}
	}
}

func mustTraceState(t *testing.T, s string) trace.TraceState {
	ts, err := trace.ParseTraceState(s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// parseSQLComment reads a sqlcommenter comment's body as the specification
// says a parser does.
func parseSQLComment(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pair := range strings.Split(body, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			t.Fatalf("%q: not key='value'", pair)
		}
		key, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(strings.ReplaceAll(v[1:len(v)-1], `\'`, `'`))
		if err1 != nil || err2 != nil {
			t.Fatalf("%q: %v %v", pair, err1, err2)
		}
		out[key] = value
	}
	return out
}

func mapKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

type jsonValuer map[string]any

func (j jsonValuer) Value() (driver.Value, error) { return json.Marshal(j) }

// What is sent for a statement: the comment only with a valid span in ctx,
// and, when the pool's mode caches statements, the statement run in a mode
// that does not: exec when every argument's text is unambiguous, else
// describe_exec.
func TestTraceCommentsStatement(t *testing.T) {
	const query = `SELECT * FROM "users" WHERE "users"."id" = $1`
	commented := query + " " + specComment
	traced := trace.ContextWithSpanContext(context.Background(), specSpan)
	id := uuid.New()
	name := "ada"
	when := time.Date(2026, 5, 1, 0, 30, 0, 0, time.FixedZone("CEST", 2*3600)) // UTC in the exec mode: another day
	key := pgtype.UUID{Bytes: id, Valid: true}                                 // as the repository passes its keys
	plain := []any{id, key, &key, 2, int64(3), "x", &name, (*string)(nil), nil, true, uint8(1)}
	for _, tc := range []struct {
		name      string
		c         traceComments
		ctx       context.Context
		args      []any
		rows      bool
		wantQuery string
		wantArgs  []any
	}{
		{"off", traceCommentsOff, traced, []any{id}, true, query, []any{id}},
		{"no span", traceCommentsUncached, context.Background(), []any{id}, true, query, []any{id}},
		{"an invalid span", traceCommentsUncached, trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}), []any{id}, true, query, []any{id}},
		{"mode that caches nothing", traceCommentsOn, traced, []any{id}, true, commented, []any{id}},
		{"plain arguments: exec", traceCommentsUncached, traced, plain, true, commented, append([]any{pgx.QueryExecModeExec}, plain...)},
		{"rows without arguments: exec", traceCommentsUncached, traced, nil, true, commented, []any{pgx.QueryExecModeExec}},
		{"exec without arguments: the simple protocol as it is", traceCommentsUncached, traced, nil, false, commented, nil},
		{"bytes: describe_exec", traceCommentsUncached, traced, []any{id, []byte(`{}`)}, false, commented, []any{pgx.QueryExecModeDescribeExec, id, []byte(`{}`)}},
		{"a valuer: describe_exec", traceCommentsUncached, traced, []any{jsonValuer{}}, true, commented, []any{pgx.QueryExecModeDescribeExec, jsonValuer{}}},
		{"a duration: describe_exec", traceCommentsUncached, traced, []any{time.Second}, true, commented, []any{pgx.QueryExecModeDescribeExec, time.Second}},
		{"a float: describe_exec", traceCommentsUncached, traced, []any{0.1}, true, commented, []any{pgx.QueryExecModeDescribeExec, 0.1}},
		{"a time: describe_exec", traceCommentsUncached, traced, []any{id, when}, true, commented, []any{pgx.QueryExecModeDescribeExec, id, when}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotQuery, gotArgs := tc.c.statement(tc.ctx, query, tc.args, tc.rows)
			if gotQuery != tc.wantQuery {
				t.Errorf("query %q, want %q", gotQuery, tc.wantQuery)
			}
			if !reflect.DeepEqual(gotArgs, tc.wantArgs) {
				t.Errorf("args %v, want %v", gotArgs, tc.wantArgs)
			}
		})
	}
}

func TestNewTraceComments(t *testing.T) {
	want := map[string]traceComments{
		"": traceCommentsUncached, "cache_statement": traceCommentsUncached, "cache_describe": traceCommentsUncached,
		"describe_exec": traceCommentsOn, "exec": traceCommentsOn, "simple_protocol": traceCommentsOn,
	}
	if len(want) != len(QueryExecModes)+1 {
		t.Fatalf("QueryExecModes = %v; the test covers %d modes", QueryExecModes, len(want)-1)
	}
	for mode, w := range want {
		if got := newTraceComments(true, mode); got != w {
			t.Errorf("newTraceComments(true, %q) = %v, want %v", mode, got, w)
		}
		if got := newTraceComments(false, mode); got != traceCommentsOff {
			t.Errorf("newTraceComments(false, %q) = %v, want off", mode, got)
		}
	}
}

// Whatever the statement, the comment is added at its end or not at all:
// the text before it is the statement's, and the statement then holds one
// comment, the trace's.
func FuzzWithTraceparent(f *testing.F) {
	for _, q := range []string{"SELECT 1", "SELECT 1;", "SELECT '*/'", "SELECT 1 -- x", "SELECT 2/", "  ;  ", ""} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		got, ok := withTraceparent(query, specSpan)
		if !ok {
			if got != query || !strings.Contains(query, "--") && !strings.Contains(query, "/*") {
				t.Fatalf("withTraceparent(%q) = %q, false", query, got)
			}
			return
		}
		before, after, found := strings.Cut(got, " "+specComment)
		if !found || (after != "" && after != ";") || !strings.HasPrefix(query, before) {
			t.Fatalf("withTraceparent(%q) = %q", query, got)
		}
		if strings.Count(got, "/*") != 1 || strings.Count(got, "*/") != strings.Count(query, "*/")+1 {
			t.Fatalf("withTraceparent(%q) = %q: more than its comment", query, got)
		}
	})
}
