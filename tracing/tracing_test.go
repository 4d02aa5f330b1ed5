package tracing

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

var errNotFound = errors.New("not found")

func TestEnd(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracer := Tracer(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	for _, err := range []error{nil, errNotFound, errors.New("boom")} {
		_, span := tracer.Start(context.Background(), SpanName("User", "Get"))
		End(span, err, func(err error) bool { return errors.Is(err, errNotFound) })
	}
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans ended, want 3", len(spans))
	}
	if spans[0].Name() != "User.Get" || spans[0].Status().Code != codes.Unset || len(spans[0].Events()) != 0 {
		t.Errorf("success span: %s %v %v", spans[0].Name(), spans[0].Status(), spans[0].Events())
	}
	if spans[1].Status().Code != codes.Unset || len(spans[1].Events()) != 1 || spans[1].Events()[0].Name != EventNotFound {
		t.Errorf("not-found span: status %v events %v, want an event and no error", spans[1].Status(), spans[1].Events())
	}
	if spans[2].Status().Code != codes.Error || spans[2].Status().Description != "boom" {
		t.Errorf("error span: status %v", spans[2].Status())
	}
	if spans[0].InstrumentationScope().Name != "github.com/dbkit-go/database" {
		t.Errorf("scope = %q, want the library's name", spans[0].InstrumentationScope().Name)
	}
}

func TestNilProviderIsNoop(t *testing.T) {
	// A global provider that records: nil must not fall back to it.
	rec := tracetest.NewSpanRecorder()
	global := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(global) })

	_, span := Tracer(nil).Start(context.Background(), SpanConnect)
	if span.IsRecording() {
		t.Error("a nil provider must not record")
	}
	End(span, errors.New("x"), nil)
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("the global provider recorded %d spans for a nil provider", n)
	}
}

// TestScopes: every tracer declares the semantic conventions' schema and
// this module's version from the build information, not a constant.
func TestScopes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := Tracer(tp).Start(context.Background(), "x")
	span.End()
	if ScopeVersion == "" || ScopeVersion == "unknown" || ScopeVersion == "0.1.0" {
		t.Errorf("ScopeVersion = %q, want the module's version from the build information", ScopeVersion)
	}
	for _, s := range rec.Ended() {
		scope := s.InstrumentationScope()
		if scope.SchemaURL != "https://opentelemetry.io/schemas/1.43.0" || scope.Version != ScopeVersion {
			t.Errorf("scope %s: schema %q, version %q; want the 1.43.0 schema and %q", scope.Name, scope.SchemaURL, scope.Version, ScopeVersion)
		}
	}
}
