// Package telemetry builds OpenTelemetry tracer and meter providers from the
// standard OTEL_* environment, for services that have none of their own.
// It is a package of its own so that services which bring their providers
// do not link the exporters.
package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Telemetry is the tracer and meter providers Setup builds for a service
// that has none. Pass them to dbkit (dbkit.WithTracerProvider,
// dbkit.WithMeterProvider), and to the rest of the service; call Shutdown
// when the service stops, to flush what is buffered.
type Telemetry struct {
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	// Resource describes the service in every span and metric: service.name
	// and the attributes of OTEL_RESOURCE_ATTRIBUTES, with the SDK's own.
	Resource *resource.Resource
}

// Setup builds a TracerProvider and a MeterProvider from the standard
// OpenTelemetry environment, so that a service configures its telemetry the
// way every OpenTelemetry SDK does:
//
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES   the resource
//	OTEL_TRACES_EXPORTER=otlp|console|none        otlp by default
//	OTEL_METRICS_EXPORTER=otlp|console|none       otlp by default
//	OTEL_EXPORTER_OTLP_PROTOCOL=grpc|http/protobuf, OTEL_EXPORTER_OTLP_ENDPOINT, ...
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
//
// The exporters come from go.opentelemetry.io/contrib/exporters/autoexport.
// Setup does not install the providers globally: pass them where they are
// needed, or call otel.SetTracerProvider yourself.
func Setup(ctx context.Context) (*Telemetry, error) {
	// Later detectors win: the environment's service name over the default.
	res, err := resource.New(ctx, resource.WithService(), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	spans, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: span exporter: %w", err)
	}
	reader, err := autoexport.NewMetricReader(ctx)
	if err != nil {
		_ = spans.Shutdown(ctx)
		return nil, fmt.Errorf("telemetry: metric reader: %w", err)
	}
	return &Telemetry{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(spans), sdktrace.WithResource(res)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res)),
		Resource:       res,
	}, nil
}

// Shutdown flushes and stops both providers. It is bounded by ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TracerProvider.Shutdown(ctx), t.MeterProvider.Shutdown(ctx))
}
