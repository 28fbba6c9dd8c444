package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkHandler measures one delivery through the handler (decode, normalise, publish to an
// in-process JetStream, wait for the ack), without the network: go test ./bridge -run '^$' -bench Handler
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			e := newEnv(b)
			b.ReportAllocs()
			events := make([]string, n)
			for i := range n {
				events[i] = egPush(fmt.Sprintf("ev-%d", i), "team/app", "v1")
			}
			tmpl := "[" + strings.Join(events, ",") + "]"
			srv := e.handler
			b.ResetTimer()
			for i := range b.N {
				body := strings.ReplaceAll(tmpl, `"id":"ev-`, fmt.Sprintf(`"id":"b%d-`, i))
				req := httptest.NewRequest(http.MethodPost, "/eventgrid", bytes.NewReader([]byte(body)))
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkTracing is what tracing costs a delivery of 5000 events (Event Grid's largest batch): off,
// on with every trace sampled (5001 spans a delivery, exported by the SDK's batch processor to an exporter
// that discards them), and on with none sampled. go test ./bridge -run '^$' -bench Tracing -benchtime 20x
func BenchmarkTracing(b *testing.B) {
	const n = 5000
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"sampled", sdktrace.AlwaysSample()},
		{"not-sampled", sdktrace.NeverSample()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, func(s *setup) {
				s.opts.MaxBodyBytes = 16 << 20
				s.publishTimeout = 30 * time.Second
				if tc.sampler != nil {
					tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tc.sampler), sdktrace.WithBatcher(discard{}))
					b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
					s.path.Tracer = tp.Tracer("bench")
				}
			})
			events := make([]string, n)
			for i := range n {
				events[i] = egPush(fmt.Sprintf("ev-%d", i), "team/app", "v1")
			}
			tmpl := "[" + strings.Join(events, ",") + "]"
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				body := strings.ReplaceAll(tmpl, `"id":"ev-`, fmt.Sprintf(`"id":"b%d-`, i))
				req := httptest.NewRequest(http.MethodPost, "/eventgrid", bytes.NewReader([]byte(body)))
				req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
				w := httptest.NewRecorder()
				e.handler.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
