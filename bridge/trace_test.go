package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
)

const (
	eventTrace   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	requestTrace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// traceHeaders are a stored message's trace headers, read by their exact lower-case keys.
func traceHeaders(t *testing.T, h map[string][]string) (parent, state string) {
	t.Helper()
	for k := range h {
		if k != "traceparent" && k != "tracestate" {
			assert.NotEqualf(t, "traceparent", lower(k), "trace header spelled %q", k)
			assert.NotEqualf(t, "tracestate", lower(k), "trace header spelled %q", k)
		}
	}
	if v := h["traceparent"]; len(v) > 0 {
		parent = v[0]
	}
	if v := h["tracestate"]; len(v) > 0 {
		state = v[0]
	}
	return parent, state
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Binary mode in and out: ce-traceparent in, ce-traceparent on the message and the traceparent header.
func TestTraceBinaryMode(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.path.Mode = bridge.ModeBinary })
	data := `{"id":"d1","action":"push","target":{"repository":"web","tag":"2","digest":"sha256:9"}}`
	code, _, resp := e.post("/eventgrid", []byte(data), "Content-Type", "application/json",
		"ce-specversion", "1.0", "ce-id", "bin-t", "ce-source", acrTopic, "ce-type", acrevent.TypeImagePushed,
		"ce-traceparent", eventTrace, "ce-tracestate", "congo=t61rcWkgMzE", "traceparent", requestTrace)
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 1)
	parent, state := traceHeaders(t, msgs[0].Header)
	assert.Equal(t, eventTrace, parent, "the event's own context, not the request's")
	assert.Equal(t, "congo=t61rcWkgMzE", state)
	assert.Equal(t, eventTrace, msgs[0].Header.Get("ce-traceparent"))
	assert.Equal(t, "congo=t61rcWkgMzE", msgs[0].Header.Get("ce-tracestate"))
	env, err := acrevent.DecodeEnvelope(msgs[0].Header, msgs[0].Data)
	require.NoError(t, err)
	assert.Equal(t, eventTrace, env.TraceParent)
}

// A malformed traceparent is dropped, never a 400: the request's own context stands in, or none.
func TestTraceMalformedDropped(t *testing.T) {
	e := newEnv(t)
	ev := `{"specversion":"1.0","id":"bad-tp","source":"` + acrTopic + `","type":"Microsoft.ContainerRegistry.ImagePushed",` +
		`"traceparent":"00-not-a-trace-01","tracestate":"x=y","data":{"action":"push","target":{"repository":"web","tag":"1"}}}`
	code, _, resp := e.post("/eventgrid", []byte(ev), "Content-Type", "application/cloudevents+json")
	require.Equal(t, 200, code, resp)
	code, _, resp = e.post("/eventgrid", []byte(`[`+strings.Replace(ev, "bad-tp", "bad-tp-2", 1)+`]`), "Content-Type", "application/json",
		"traceparent", "garbage", "tracestate", "x=y")
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		parent, state := traceHeaders(t, m.Header)
		assert.Empty(t, parent)
		assert.Empty(t, state)
		var raw map[string]any
		require.NoError(t, json.Unmarshal(m.Data, &raw))
		assert.NotContains(t, raw, "traceparent")
		assert.NotContains(t, raw, "tracestate")
	}
}

// Passed-through events keep their context in their JSON and get the headers too; a passed-through Event
// Grid event gets the request's.
func TestTracePassthrough(t *testing.T) {
	e := newEnv(t)
	ce := `{"specversion":"1.0","id":"blob-t","source":"/s","type":"Microsoft.Storage.BlobCreated","traceparent":"` + eventTrace + `","data":{}}`
	code, _, resp := e.post("/eventgrid", []byte(ce), "Content-Type", "application/cloudevents+json")
	require.Equal(t, 200, code, resp)
	eg := `[{"id":"blob-eg","topic":"/s","subject":"x","eventType":"Microsoft.Storage.BlobCreated","eventTime":"2024-05-01T10:00:00Z","data":{},"dataVersion":"1"}]`
	code, _, resp = e.post("/eventgrid", []byte(eg), "Content-Type", "application/json", "traceparent", requestTrace)
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 2)
	parent, _ := traceHeaders(t, msgs[0].Header)
	assert.Equal(t, eventTrace, parent)
	assert.Contains(t, string(msgs[0].Data), `"traceparent":"`+eventTrace+`"`, "the event as received")
	parent, _ = traceHeaders(t, msgs[1].Header)
	assert.Equal(t, requestTrace, parent)
}

// Pulled events carry their own context, as pushed CloudEvents do.
func TestTracePulled(t *testing.T) {
	e := newEnv(t)
	ev := json.RawMessage(`{"specversion":"1.0","id":"pulled-t","source":"` + acrTopic + `","type":"Microsoft.ContainerRegistry.ImagePushed",` +
		`"traceparent":"` + eventTrace + `","data":{"action":"push","target":{"repository":"web","tag":"1"}}}`)
	results, _ := e.pull(context.Background(), []json.RawMessage{ev})
	require.Equal(t, bridge.Stored, results[0].Outcome)
	msgs := e.stored()
	require.Len(t, msgs, 1)
	parent, _ := traceHeaders(t, msgs[0].Header)
	assert.Equal(t, eventTrace, parent)
	assert.Equal(t, eventTrace, envelopeOf(t, msgs[0].Data).TraceParent)
}

// Event Grid's delivery metadata: the subscription and the attempt in the request's log record, retries
// counted apart.
func TestEventGridDeliveryMetadata(t *testing.T) {
	e := newEnv(t, withMetrics)
	for i, count := range []string{"0", "3"} {
		code, _, resp := e.post("/eventgrid", []byte(egPush(fmt.Sprintf("meta-%d", i), "web", "1")), "Content-Type", "application/json",
			"aeg-event-type", "Notification", "aeg-subscription-name", "TO-NATS", "aeg-delivery-count", count)
		require.Equal(t, 200, code, resp)
	}
	assert.Contains(t, e.logs.String(), `"aeg_subscription":"TO-NATS","aeg_delivery_count":"0"`)
	assert.Contains(t, e.logs.String(), `"aeg_subscription":"TO-NATS","aeg_delivery_count":"3"`)
	m := e.scrape()
	assert.Equal(t, 1.0, m[`bridge_eventgrid_deliveries_total{attempt="first"}`])
	assert.Equal(t, 1.0, m[`bridge_eventgrid_deliveries_total{attempt="retry"}`])
}
