package integration

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dbkit-go/database/dbkit"
)

// telemetryEnv holds repositories on the benchmark database, each through a
// dbkit.DB of its own with telemetry on as a service would run it: spans
// batched to an exporter, metrics recorded on an SDK MeterProvider,
// statements logged to a JSON handler at INFO (which drops their DEBUG
// records, as production does). They differ in what is sampled and where
// the spans go:
//
//	on            every span, handed in batches to an exporter that drops
//	              them: what dbkit and the OpenTelemetry SDK cost the caller
//	on_otlp       every span, encoded and sent over OTLP/HTTP to a collector
//	              in this process that drops them: the exporter's work too,
//	              on the same two cores
//	on_otlp_10pc  as on_otlp, with 10 % of traces sampled (ParentBased of
//	              TraceIDRatioBased(0.1)), a common production setting
//	on_repo       as on, with WithRepositorySpans: a span per call too
//
// and, for BenchmarkTraceCommentsGet, with spans as for on:
//
//	comments      WithTraceComments too
//	on_exec       no comments, the pool in pgx's exec mode, which commented
//	              statements take: what not caching the statement costs
//	on_describe   the same in describe_exec mode, which commented statements
//	              with arguments such as []byte take
type telemetryEnv struct {
	on, otlp, otlp10, repo   *dbkit.BaseDatabase[User]
	comments, exec, describe *dbkit.BaseDatabase[User]
}

var telemetrySetup = once(func() (*telemetryEnv, error) {
	env, err := sharedBenchEnv()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	otlp := func() (sdktrace.SpanExporter, error) {
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(collector.URL+"/v1/traces"))
	}
	connect := func(exporter sdktrace.SpanExporter, sampler sdktrace.Sampler, cfg dbkit.Config, opts ...dbkit.Option) (*dbkit.BaseDatabase[User], error) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithSampler(sampler))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
		db, err := dbkit.Connect(ctx, cfg, append([]dbkit.Option{
			dbkit.WithTracerProvider(tp), dbkit.WithMeterProvider(mp), dbkit.WithLogger(log)}, opts...)...)
		if err != nil {
			return nil, err
		}
		return dbkit.NewBaseDatabase[User](db), nil
	}
	var t telemetryEnv
	if t.on, err = connect(discardSpans{}, sdktrace.AlwaysSample(), env.cfg); err != nil {
		return nil, err
	}
	if t.comments, err = connect(discardSpans{}, sdktrace.AlwaysSample(), env.cfg, dbkit.WithTraceComments()); err != nil {
		return nil, err
	}
	for mode, users := range map[string]**dbkit.BaseDatabase[User]{"exec": &t.exec, "describe_exec": &t.describe} {
		cfg := env.cfg
		cfg.QueryExecMode = mode
		if *users, err = connect(discardSpans{}, sdktrace.AlwaysSample(), cfg); err != nil {
			return nil, err
		}
	}
	if t.repo, err = connect(discardSpans{}, sdktrace.AlwaysSample(), env.cfg, dbkit.WithRepositorySpans()); err != nil {
		return nil, err
	}
	exp, err := otlp()
	if err != nil {
		return nil, err
	}
	if t.otlp, err = connect(exp, sdktrace.AlwaysSample(), env.cfg); err != nil {
		return nil, err
	}
	if exp, err = otlp(); err != nil {
		return nil, err
	}
	if t.otlp10, err = connect(exp, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)), env.cfg); err != nil {
		return nil, err
	}
	return &t, nil
})

type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkTelemetryGet is Get with telemetry off (impl=off, the default)
// and on (see telemetryEnv), in one run. Goal: on ≤ 1.10× off.
func BenchmarkTelemetryGet(b *testing.B) {
	env := benchSetup(b)
	tel := telemetrySetup(b)
	ctx := context.Background()
	var impls []getImpl
	for name, users := range map[string]*dbkit.BaseDatabase[User]{
		"off": env.users, "on": tel.on, "on_otlp": tel.otlp, "on_otlp_10pc": tel.otlp10, "on_repo": tel.repo,
	} {
		impls = append(impls, getImpl{name, func(id uuid.UUID) (User, error) { return users.Get(ctx, id) }})
	}
	runGets(b, env.ids, impls)
}

// BenchmarkTelemetryCreate is Create with telemetry off and on (see
// telemetryEnv), in one run.
func BenchmarkTelemetryCreate(b *testing.B) {
	env := benchSetup(b)
	tel := telemetrySetup(b)
	ctx := context.Background()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	seq := 0
	impls := []struct {
		name  string
		users *dbkit.BaseDatabase[User]
	}{{"off", env.users}, {"on", tel.on}, {"on_repo", tel.repo}}
	for _, impl := range shuffled(impls) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			defer clientCPU(b)()
			for b.Loop() {
				seq++
				u := User{Email: "tel-" + impl.name + "-" + run + "-" + strconv.Itoa(seq) + "@example.com", Name: "Bench", Age: 42}
				if err := impl.users.Create(ctx, &u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
