package telemetry_test

import (
	"context"
	"log"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/tracing/telemetry"
)

// A service with no OpenTelemetry set-up of its own builds its providers
// from OTEL_* and hands them to dbkit.
func ExampleSetup() {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx) // OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...
	if err != nil {
		log.Fatal(err)
	}
	defer tel.Shutdown(ctx) // flushes the last spans

	cfg, err := dbkit.ConfigFromEnv()
	if err != nil {
		log.Print(err)
		return
	}
	db, err := dbkit.Connect(ctx, cfg,
		dbkit.WithTracerProvider(tel.TracerProvider),
		dbkit.WithMeterProvider(tel.MeterProvider))
	if err != nil {
		log.Print(err)
		return
	}
	defer db.Close(ctx)
}
