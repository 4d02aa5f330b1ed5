package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/dbkit-go/database/tracing/telemetry"
)

func TestSetupFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_SERVICE_NAME", "orders-api")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[attribute.Key]string{}
	for _, kv := range tel.Resource.Attributes() {
		attrs[kv.Key] = kv.Value.String()
	}
	if attrs["service.name"] != "orders-api" || attrs["deployment.environment.name"] != "staging" {
		t.Errorf("resource %v: want the service name and attributes of the environment", attrs)
	}
	_, span := tel.TracerProvider.Tracer("test").Start(ctx, "op")
	span.End()
	if !span.SpanContext().IsSampled() {
		t.Error("the tracer provider does not record")
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSetupRejectsUnknownExporter(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	if _, err := telemetry.Setup(context.Background()); err == nil {
		t.Fatal("Setup accepted an unknown exporter")
	}
}

func TestSetupNamesAnUnnamedService(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	tel, err := telemetry.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	name, _ := tel.Resource.Set().Value("service.name")
	if !strings.HasPrefix(name.AsString(), "unknown_service:") {
		t.Errorf("service.name = %q, want the SDK's default, unknown_service:<binary>", name.AsString())
	}
}
