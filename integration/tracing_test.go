package integration

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpSpan is a span as an OTLP receiver got it, with its resource's service name.
type otlpSpan struct {
	service string
	span    *tracepb.Span
}

func (s otlpSpan) traceID() string  { return hex.EncodeToString(s.span.TraceId) }
func (s otlpSpan) spanID() string   { return hex.EncodeToString(s.span.SpanId) }
func (s otlpSpan) parentID() string { return hex.EncodeToString(s.span.ParentSpanId) }

func (s otlpSpan) attr(key string) string {
	for _, kv := range s.span.Attributes {
		if kv.Key == key {
			if v := kv.Value.GetStringValue(); v != "" {
				return v
			}
			return fmt.Sprint(kv.Value.GetIntValue())
		}
	}
	return ""
}

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes the protobuf export requests the OpenTelemetry
// SDK's exporter sends to /v1/traces.
type otlpReceiver struct {
	url   string
	mu    sync.Mutex
	spans []otlpSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf export to /v1/traces", http.StatusUnsupportedMediaType)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var export coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			service := ""
			for _, kv := range rs.Resource.GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					r.spans = append(r.spans, otlpSpan{service, sp})
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// find returns the spans that match.
func (r *otlpReceiver) find(match func(otlpSpan) bool) []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpSpan
	for _, s := range r.spans {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

// One trace from an HTTP delivery to a consumer: the built bridge, tracing through the standard OTEL_*
// variables to an OTLP/HTTP receiver, makes the delivery's SERVER span the child of the request's
// traceparent and a PRODUCER span per message; each message's traceparent header names its producer span;
// `bridge tail` continues the trace with a CONSUMER span whose parent is that producer span.
func TestTracingEndToEnd(t *testing.T) {
	recv := newOTLPReceiver(t)
	otel := []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.url,
		"OTEL_BSP_SCHEDULE_DELAY=100"}
	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, append([]string{"BRIDGE_LISTEN_ADDR=" + listen, fmt.Sprintf("BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:%d", natsPort),
		"BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir()}, otel...), bridgeBin)
	require.Eventually(t, func() bool { code, _ := readyz(listen); return code == 200 }, 20*time.Second, 20*time.Millisecond)
	tail := start(t, append([]string{"BRIDGE_NATS_URL=" + natsURL}, otel...), bridgeBin, "tail")
	require.Eventually(t, func() bool { return strings.Contains(tail.out.String(), "listening on acr.>") }, 10*time.Second, 20*time.Millisecond)

	const traceID, requestSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := http.NewRequest(http.MethodPost, "http://"+listen+"/eventgrid", strings.NewReader(batchBody("traced", 0, 2)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+requestSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	var server otlpSpan
	require.Eventually(t, func() bool {
		s := recv.find(func(s otlpSpan) bool { return s.span.Kind == tracepb.Span_SPAN_KIND_SERVER })
		if len(s) == 1 {
			server = s[0]
		}
		return len(s) == 1 && len(recv.find(func(s otlpSpan) bool { return s.span.Kind == tracepb.Span_SPAN_KIND_CONSUMER })) == 2
	}, 20*time.Second, 50*time.Millisecond, "spans: %d; tail: %s", len(recv.find(func(otlpSpan) bool { return true })), tail.out)

	assert.Equal(t, "acr-nats-bridge", server.service)
	assert.Equal(t, "POST /eventgrid", server.span.Name)
	assert.Equal(t, traceID, server.traceID())
	assert.Equal(t, requestSpan, server.parentID(), "the child of the request's traceparent")

	producers := recv.find(func(s otlpSpan) bool { return s.span.Kind == tracepb.Span_SPAN_KIND_PRODUCER })
	require.Len(t, producers, 2)
	producerIDs := map[string]bool{}
	for _, p := range producers {
		assert.Equal(t, "publish acr.image.pushed.{registry}.{repository}", p.span.Name)
		assert.Equal(t, traceID, p.traceID())
		assert.Equal(t, server.spanID(), p.parentID())
		assert.Equal(t, "nats", p.attr("messaging.system"))
		assert.Equal(t, "publish", p.attr("messaging.operation.name"))
		assert.Equal(t, "send", p.attr("messaging.operation.type"))
		assert.Equal(t, "acr.image.pushed.myregistry.team.app", p.attr("messaging.destination.name"))
		assert.Equal(t, "acr.image.pushed.{registry}.{repository}", p.attr("messaging.destination.template"))
		assert.Contains(t, []string{"traced-0", "traced-1"}, p.attr("messaging.message.id"))
		producerIDs[p.spanID()] = true
	}

	// The stored messages name their producer spans in the traceparent header, spelled in lower case;
	// the envelope keeps the creator's context (here the request's).
	for seq := uint64(1); seq <= 2; seq++ {
		m := storedMsg(t, natsURL, seq)
		tp := m.Header["traceparent"]
		require.Len(t, tp, 1, "header keys: %v", m.Header)
		parts := strings.Split(tp[0], "-")
		require.Len(t, parts, 4)
		assert.Equal(t, traceID, parts[1])
		assert.True(t, producerIDs[parts[2]], "the header names a producer span")
		assert.Contains(t, string(m.Data), `"traceparent":"00-`+traceID+`-`+requestSpan+`-01"`)
	}

	for _, c := range recv.find(func(s otlpSpan) bool { return s.span.Kind == tracepb.Span_SPAN_KIND_CONSUMER }) {
		assert.Equal(t, "acr-nats-bridge-tail", c.service)
		assert.Equal(t, traceID, c.traceID(), "one trace from the delivery to the consumer")
		assert.True(t, producerIDs[c.parentID()], "the consumer span is the child of a producer span")
	}
}

// Tracing is off unless OTEL_TRACES_EXPORTER asks for it, whatever else is set: nothing dials out unasked,
// and the incoming context passes through unchanged in the message's header.
func TestTracingOffByDefault(t *testing.T) {
	recv := newOTLPReceiver(t)
	natsPort := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, []string{"BRIDGE_LISTEN_ADDR=" + listen, fmt.Sprintf("BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:%d", natsPort),
		"BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.url, "OTEL_BSP_SCHEDULE_DELAY=100"}, bridgeBin)
	require.Eventually(t, func() bool { code, _ := readyz(listen); return code == 200 }, 20*time.Second, 20*time.Millisecond)
	const incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req, err := http.NewRequest(http.MethodPost, "http://"+listen+"/eventgrid", strings.NewReader(batchBody("untraced", 0, 1)))
	require.NoError(t, err)
	req.Header.Set("traceparent", incoming)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	time.Sleep(500 * time.Millisecond)
	assert.Empty(t, recv.find(func(otlpSpan) bool { return true }), "no span exported")
	assert.NotContains(t, p.out.String(), "tracing with OpenTelemetry")

	m := storedMsg(t, fmt.Sprintf("nats://127.0.0.1:%d", natsPort), 1)
	assert.Equal(t, []string{incoming}, m.Header["traceparent"])
}

// storedMsg is the message of the stream ACR_EVENTS at seq, read from the NATS server at natsURL.
func storedMsg(t *testing.T, natsURL string, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	msgs := natstest.StoredAt(t, natsURL, "ACR_EVENTS")
	require.Greater(t, len(msgs), int(seq-1), "the stream holds no message %d", seq)
	return msgs[seq-1]
}
