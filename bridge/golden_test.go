package bridge_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// published is how a golden file records one NATS message: what a subscriber sees.
type published struct {
	Subject string            `json:"subject"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

func record(msgs []*jetstream.RawStreamMsg) []published {
	out := make([]published, 0, len(msgs))
	for _, m := range msgs {
		h := map[string]string{}
		for k := range m.Header {
			h[k] = m.Header.Get(k)
		}
		if _, ok := h["Nats-Batch-Id"]; ok {
			// A delivery of several events is stored as a JetStream atomic batch, whose id is new each time.
			h["Nats-Batch-Id"] = "(the delivery's atomic batch)"
		}
		out = append(out, published{Subject: m.Subject, Headers: h, Body: m.Data})
	}
	return out
}

// goldenCases posts every sample payload of Azure's reference pages (testdata/in) the way Azure sends it.
var goldenCases = []struct {
	file, path string
	headers    []string
}{
	{"webhook-push", "/webhooks/acr", []string{"Content-Type", "application/json"}},
	{"webhook-delete", "/webhooks/acr", []string{"Content-Type", "application/json"}},
	{"webhook-quarantine", "/webhooks/acr", []string{"Content-Type", "application/json"}},
	// Chart events carry no request.host: the registry comes from the path.
	{"webhook-chart-push", "/webhooks/acr/MyRegistry", []string{"Content-Type", "application/json"}},
	{"webhook-chart-delete", "/webhooks/acr/myregistry", []string{"Content-Type", "application/json"}},
	{"webhook-ping", "/webhooks/acr/myregistry", []string{"Content-Type", "application/json"}},
	// The seed sends CloudEvents arrays as plain application/json.
	{"cloudevents-image-pushed", "/eventgrid", []string{"Content-Type", "application/json"}},
	{"cloudevents-image-deleted", "/eventgrid", []string{"Content-Type", "application/cloudevents-batch+json; charset=utf-8"}},
	{"cloudevents-chart-pushed", "/eventgrid", []string{"Content-Type", "application/cloudevents-batch+json"}},
	{"cloudevents-chart-deleted", "/eventgrid", []string{"Content-Type", "application/json; charset=utf-8"}},
	{"eventgrid-image-pushed", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
	{"eventgrid-image-deleted", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
	{"eventgrid-chart-pushed", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
	{"eventgrid-chart-deleted", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
	// Trace context: a CloudEvent's own distributed-tracing attributes; else the delivery's W3C headers.
	{"cloudevents-image-pushed-traced", "/eventgrid", []string{"Content-Type", "application/cloudevents-batch+json",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
	{"eventgrid-image-pushed-traced", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate", "rojo=00f067aa0ba902b7"}},
	{"webhook-push-traced", "/webhooks/acr", []string{"Content-Type", "application/json",
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}},
	// Artifact kinds, a rule each (docs/consuming.md): what today's clients push, in the order they push it.
	{"eventgrid-multiarch-push", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
	{"cloudevents-cosign-push", "/eventgrid", []string{"Content-Type", "application/cloudevents-batch+json"}},
	{"webhook-oci-artifact-push", "/webhooks/acr", []string{"Content-Type", "application/json"}},
	{"webhook-helm-chart-push", "/webhooks/acr", []string{"Content-Type", "application/json"}},
	{"webhook-manifest-list-push", "/webhooks/acr", []string{"Content-Type", "application/json"}},
	{"eventgrid-index-deleted", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
	// One delivery of what a consumer meets besides envelopes: a dead letter and a passed-through event.
	{"eventgrid-mixed-batch", "/eventgrid", []string{"Content-Type", "application/json", "aeg-event-type", "Notification"}},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.file, func(t *testing.T) {
			e := newEnv(t)
			body, err := os.ReadFile(filepath.Join("testdata", "in", tc.file+".json"))
			require.NoError(t, err)

			code, _, resp := e.post(tc.path, body, tc.headers...)
			require.Equal(t, 200, code, resp)

			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			require.NoError(t, enc.Encode(record(e.stored())))
			got := buf.Bytes()
			golden := filepath.Join("testdata", "golden", tc.file+".json")
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./bridge -run TestGolden -update to create it")
			assert.JSONEq(t, string(want), string(got))
		})
	}
}

// The Event Grid schema and CloudEvents copies of the same events give the same envelope, origin aside.
func TestEventGridSchemaMatchesCloudEvents(t *testing.T) {
	for _, name := range []string{"image-pushed", "image-deleted", "chart-pushed", "chart-deleted"} {
		t.Run(name, func(t *testing.T) {
			ce := goldenEnvelopes(t, "cloudevents-"+name)
			eg := goldenEnvelopes(t, "eventgrid-"+name)
			require.Len(t, eg, len(ce))
			for i := range ce {
				assert.Equal(t, "cloudevents", ce[i].env.Data.Origin)
				assert.Equal(t, "eventgrid", eg[i].env.Data.Origin)
				eg[i].env.Data.Origin = ce[i].env.Data.Origin
				assert.Equal(t, ce[i], eg[i])
			}
		})
	}
}

type subjectEnvelope struct {
	subject string
	env     acrevent.Envelope
}

func goldenEnvelopes(t *testing.T, name string) []subjectEnvelope {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
	require.NoError(t, err)
	var msgs []published
	require.NoError(t, json.Unmarshal(b, &msgs))
	var out []subjectEnvelope
	for _, m := range msgs {
		var env acrevent.Envelope
		require.NoError(t, json.Unmarshal(m.Body, &env))
		out = append(out, subjectEnvelope{m.Subject, env})
	}
	return out
}

// The same registry event, arriving as a native webhook, an Event Grid schema event and a CloudEvent,
// becomes the same type, subject and data; only data.origin (and the envelope's id and source, which
// belong to the delivery) differ.
func TestSameEventEveryOrigin(t *testing.T) {
	for _, file := range []string{"webhook-push", "webhook-delete", "webhook-chart-push", "webhook-chart-delete"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "in", file+".json"))
			require.NoError(t, err)
			var action struct{ Action string }
			require.NoError(t, json.Unmarshal(data, &action))
			typ := map[string]string{
				"push": acrevent.TypeImagePushed, "delete": acrevent.TypeImageDeleted,
				"chart_push": acrevent.TypeChartPushed, "chart_delete": acrevent.TypeChartDeleted,
			}[action.Action]
			topic := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/MyRegistry"
			eg := `[{"id":"eg-1","topic":"` + topic + `","subject":"x","eventType":"` + typ +
				`","eventTime":"2019-03-05T23:45:31.2614267Z","data":` + string(data) + `,"dataVersion":"1.0","metadataVersion":"1"}]`
			ce := `{"specversion":"1.0","id":"ce-1","source":"` + topic + `","type":"` + typ +
				`","time":"2019-03-05T23:45:31.2614267Z","data":` + string(data) + `}`

			var envs []acrevent.Envelope
			var subjects []string
			for _, p := range []struct{ path, body, ct string }{
				{"/webhooks/acr/myregistry", string(data), "application/json"},
				{"/eventgrid", eg, "application/json"},
				{"/eventgrid", ce, "application/cloudevents+json"},
			} {
				e := newEnv(t)
				code, _, resp := e.post(p.path, []byte(p.body), "Content-Type", p.ct)
				require.Equal(t, 200, code, resp)
				msgs := e.stored()
				require.Len(t, msgs, 1)
				var env acrevent.Envelope
				require.NoError(t, json.Unmarshal(msgs[0].Data, &env))
				envs = append(envs, env)
				subjects = append(subjects, msgs[0].Subject)
			}
			assert.Equal(t, []string{"webhook", "eventgrid", "cloudevents"}, []string{envs[0].Data.Origin, envs[1].Data.Origin, envs[2].Data.Origin})
			assert.True(t, strings.HasPrefix(subjects[0], "acr."), subjects[0])
			for i := 1; i < 3; i++ {
				assert.Equal(t, subjects[0], subjects[i])
				assert.Equal(t, envs[0].Type, envs[i].Type)
				assert.Equal(t, envs[0].Subject, envs[i].Subject)
				d := envs[i].Data
				d.Origin = envs[0].Data.Origin
				assert.Equal(t, envs[0].Data, d)
			}
		})
	}
}
