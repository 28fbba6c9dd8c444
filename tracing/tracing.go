// Package tracing sets up OpenTelemetry tracing from the standard OTEL_* variables, and carries W3C trace
// context in NATS headers.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// DefaultServiceName is the service.name of the bridge's spans unless OTEL_SERVICE_NAME says otherwise.
const DefaultServiceName = "acr-nats-bridge"

// Setup returns the tracer provider the OTEL_* variables ask for, and its shutdown, which flushes the
// spans not yet exported. OTEL_TRACES_EXPORTER unset (or "none") is no tracing, on purpose unlike the
// SDK's own default of otlp: nothing dials out unasked. Everything else is the SDK's: the exporter and
// its endpoint, protocol and headers (OTEL_EXPORTER_OTLP_*), the sampler (OTEL_TRACES_SAMPLER), the
// resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
func Setup(ctx context.Context, serviceName string) (trace.TracerProvider, func(context.Context) error, error) {
	if e := os.Getenv("OTEL_TRACES_EXPORTER"); e == "" || e == "none" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Enabled reports whether a tracer provider records spans (it is not the no-op one).
func Enabled(tp trace.TracerProvider) bool {
	_, off := tp.(noop.TracerProvider)
	return !off
}

// Propagator reads and writes W3C traceparent and tracestate.
var Propagator = propagation.TraceContext{}

// Header is a NATS message header as an OpenTelemetry carrier, with the keys exactly as the propagator
// spells them ("traceparent", "tracestate"): NATS header names are case-sensitive.
type Header nats.Header

// Get returns the first value of key.
func (h Header) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (h Header) Set(key, value string) { h[key] = []string{value} }

// Keys lists the keys.
func (h Header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
