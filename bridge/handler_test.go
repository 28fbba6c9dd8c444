package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
)

const acrTopic = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/MyRegistry"

// egPush is an Event Grid schema ImagePushed event with the given id, repository and tag.
func egPush(id, repo, tag string) string {
	return fmt.Sprintf(`{"id":%q,"topic":%q,"subject":"%s:%s","eventType":"Microsoft.ContainerRegistry.ImagePushed",
		"eventTime":"2024-05-01T10:00:00.1234567Z","dataVersion":"1.0","metadataVersion":"1",
		"data":{"id":"d-%s","timestamp":"2024-05-01T10:00:00.123456789Z","action":"push",
		"target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":"sha256:abc","length":10,"repository":%q,"tag":%q},
		"request":{"id":"r","host":"myregistry.azurecr.io","method":"PUT","useragent":"test"}}}`, id, acrTopic, repo, tag, id, repo, tag)
}

func envelopeOf(t *testing.T, data []byte) acrevent.Envelope {
	t.Helper()
	var env acrevent.Envelope
	require.NoError(t, json.Unmarshal(data, &env))
	return env
}

func TestEventGridValidationHandshake(t *testing.T) {
	e := newEnv(t)
	body := `[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/subscriptions/x","subject":"",
		"data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net/x"},
		"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2018-01-25T22:12:19.4556811Z",
		"metadataVersion":"1","dataVersion":"1"}]`
	code, h, resp := e.post("/eventgrid", []byte(body), "Content-Type", "application/json", "aeg-event-type", "SubscriptionValidation")
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}`, resp)
	assert.Equal(t, fmt.Sprint(len(resp)), h.Get("Content-Length"))
	assert.Empty(t, h.Get("Transfer-Encoding"))
	assert.Empty(t, e.stored(), "a handshake publishes nothing")
}

func TestSubscriptionDeletedIsAcknowledged(t *testing.T) {
	e := newEnv(t)
	body := `[{"id":"1","topic":"/subscriptions/x","subject":"/subscriptions/x/eventSubscriptions/s",
		"eventType":"Microsoft.EventGrid.SubscriptionDeletedEvent","eventTime":"2024-01-01T00:00:00Z",
		"data":{"eventSubscriptionId":"/subscriptions/x/eventSubscriptions/s"},"dataVersion":"1","metadataVersion":"1"}]`
	code, _, resp := e.post("/eventgrid", []byte(body), "aeg-event-type", "SubscriptionDeletion")
	require.Equal(t, 200, code, resp)
	assert.Empty(t, e.stored())
	assert.True(t, e.logs.Contains("Event Grid subscription deleted"))
}

func TestCloudEventsOptionsHandshake(t *testing.T) {
	tests := []struct {
		name, origin, allowedOrigin string
		allowed                     []string
	}{
		{"default origin", "eventgrid.azure.net", "eventgrid.azure.net", nil},
		{"case-insensitive", "EventGrid.Azure.NET", "EventGrid.Azure.NET", nil},
		{"not allowed", "evil.example.com", "", nil},
		{"wildcard", "evil.example.com", "evil.example.com", []string{"*"}},
		{"no origin header", "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(s *setup) {
				if tc.allowed != nil {
					s.opts.AllowedOrigins = tc.allowed
				}
			})
			var hdr []string
			if tc.origin != "" {
				hdr = []string{"WebHook-Request-Origin", tc.origin}
			}
			code, h, _ := e.do("OPTIONS", "/eventgrid", nil, hdr...)
			assert.Equal(t, 200, code)
			assert.Equal(t, "POST, OPTIONS", h.Get("Allow"))
			assert.Equal(t, tc.allowedOrigin, h.Get("WebHook-Allowed-Origin"))
			if tc.allowedOrigin != "" {
				assert.Equal(t, "*", h.Get("WebHook-Allowed-Rate"))
			} else {
				_, present := h["Webhook-Allowed-Origin"]
				assert.False(t, present)
			}
			assert.Empty(t, e.stored())
		})
	}
}

func TestBatchOfHundredThenRedelivery(t *testing.T) {
	e := newEnv(t)
	events := make([]string, 100)
	for i := range events {
		events[i] = egPush(fmt.Sprintf("evt-%03d", i), "team/web", fmt.Sprintf("v%d", i))
	}
	body := []byte("[" + strings.Join(events, ",") + "]")

	code, _, resp := e.post("/eventgrid", body, "Content-Type", "application/json")
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":100,"duplicates":0,"deadLettered":0}`, resp)
	msgs := e.stored()
	require.Len(t, msgs, 100)
	for i, m := range msgs {
		assert.Equal(t, "acr.image.pushed.myregistry.team.web", m.Subject)
		assert.Equal(t, fmt.Sprintf("evt-%03d", i), m.Header.Get("Nats-Msg-Id"), "messages keep the batch order")
		assert.Equal(t, fmt.Sprintf("team/web:v%d", i), envelopeOf(t, m.Data).Subject)
	}

	// Event Grid retries a whole batch; JetStream's de-duplication stores none of it again.
	code, _, resp = e.post("/eventgrid", body, "Content-Type", "application/json")
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":100,"duplicates":100,"deadLettered":0}`, resp)
	assert.Len(t, e.stored(), 100)
}

func TestMalformedRequestsPublishNothing(t *testing.T) {
	tests := []struct {
		name, path, body, want string
	}{
		{"empty body", "/eventgrid", "", "empty body"},
		{"whitespace", "/eventgrid", "  \n ", "empty body"},
		{"not JSON", "/eventgrid", "hello", "not JSON"},
		{"truncated", "/eventgrid", `[{"id":"1","eventType":"x"`, "invalid JSON"},
		{"empty array", "/eventgrid", "[]", "empty array"},
		{"array of numbers", "/eventgrid", "[1,2,3]", "not a JSON object"},
		{"JSON string", "/eventgrid", `"event"`, "neither a JSON object nor an array"},
		{"unknown schema", "/eventgrid", `{"hello":"world"}`, "unknown schema"},
		{"CloudEvent without source", "/eventgrid", `{"specversion":"1.0","id":"1","type":"t"}`, "required attribute source"},
		{"CloudEvent 0.3", "/eventgrid", `{"specversion":"0.3","id":"1","source":"s","type":"t"}`, "specversion"},
		{"Event Grid event without id", "/eventgrid", `{"eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{}}`, "without id"},
		{"id of the wrong type", "/eventgrid", `{"id":5,"eventType":"x"}`, `"id"`},
		{"invalid UTF-8", "/eventgrid", "{\"id\":\"\xff\"}", "UTF-8"},
		{"validation without code", "/eventgrid", `[{"id":"1","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{}}]`, "validationCode"},
		{"webhook empty", "/webhooks/acr/r", "", "empty body"},
		{"webhook not JSON", "/webhooks/acr/r", "{nope", "not JSON"},
		{"webhook array", "/webhooks/acr/r", `[{"action":"push"}]`, "one JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, h, resp := e.post(tc.path, []byte(tc.body), "Content-Type", "application/json")
			assert.Equal(t, 400, code)
			assert.Contains(t, resp, tc.want)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(resp), "\n")+1, "one-line reason: %q", resp)
			assert.Equal(t, "text/plain; charset=utf-8", h.Get("Content-Type"))
			assert.Empty(t, e.stored())
		})
	}
}

func TestDeadLetter(t *testing.T) {
	e := newEnv(t)
	body := `[` + egPush("good-1", "app", "v1") + `,
		{"id":"no-target","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-01-01T00:00:00Z","data":{"action":"push"}},
		{"id":"data-string","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImageDeleted","eventTime":"2024-01-01T00:00:00Z","data":"oops"},
		{"id":"size-string","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-01-01T00:00:00Z","data":{"target":{"size":"big"}}},
		42]`
	code, _, resp := e.post("/eventgrid", []byte(body))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":5,"duplicates":0,"deadLettered":4}`, resp)

	msgs := e.stored()
	require.Len(t, msgs, 5)
	assert.Equal(t, "acr.image.pushed.myregistry.app", msgs[0].Subject)
	for _, m := range msgs[1:] {
		assert.Equal(t, "acr.deadletter", m.Subject)
	}
	assert.Equal(t, "no-target", msgs[1].Header.Get("Nats-Msg-Id"))
	assert.Contains(t, msgs[1].Header.Get("Bridge-Error"), "without data.target")
	assert.Contains(t, string(msgs[1].Data), `"id":"no-target"`, "the event as received")
	assert.Equal(t, "data-string", msgs[2].Header.Get("Nats-Msg-Id"))
	assert.Contains(t, msgs[2].Header.Get("Bridge-Error"), "not a JSON object")
	assert.Contains(t, msgs[3].Header.Get("Bridge-Error"), "data.target.size")
	assert.Equal(t, "42", string(msgs[4].Data))
	assert.Equal(t, bridge.HashID([]byte("42")), msgs[4].Header.Get("Nats-Msg-Id"), "no id: a hash of the bytes")

	// A redelivery dead-letters nothing twice.
	code, _, resp = e.post("/eventgrid", []byte(body))
	require.Equal(t, 200, code, resp)
	assert.Len(t, e.stored(), 5)
}

// TestDeadLettersAreBounded: a reason quotes what it objects to, here a repeated key of 200 KB; the
// Bridge-Error header carries the start of it, so that the dead letter stays under max_payload and the
// valid event beside it is stored. Nor does a batch of bad elements get a log line for each.
func TestDeadLettersAreBounded(t *testing.T) {
	e := newEnv(t)
	key := strings.Repeat("k", 200<<10)
	body := `[` + egPush("beside-1", "app", "v1") + `,{"` + key + `":1,"` + key + `":2}]`
	code, _, resp := e.post("/eventgrid", []byte(body))
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 2)
	reason := msgs[1].Header.Get(acrevent.HeaderError)
	assert.True(t, strings.HasPrefix(reason, `JSON object has the key "kkk`), reason[:80])
	assert.LessOrEqual(t, len(reason), 512+len("…"))
	assert.True(t, strings.HasSuffix(reason, "…"))
	assert.Len(t, msgs[1].Data, len(body)-len(egPush("beside-1", "app", "v1"))-3, "the element as received")

	// A batch of many bad elements logs the first few and counts the rest in the request's line.
	bad := make([]string, 40)
	for i := range bad {
		bad[i] = fmt.Sprintf(`{"n":%d}`, i)
	}
	code, _, resp = e.post("/eventgrid", []byte(`[`+egPush("beside-2", "app", "v1")+`,`+strings.Join(bad, ",")+`]`))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":41,"duplicates":0,"deadLettered":40}`, resp)
	assert.Equal(t, 5+1, strings.Count(e.logs.String(), `"msg":"batch element dead-lettered"`), "five for this batch, one for the first")
	assert.Contains(t, e.logs.String(), `"dead_lettered":40`)

	// Alone, the same element is a 400 whose one-line reason is cut the same way.
	code, _, resp = e.post("/eventgrid", []byte(`{"`+key+`":1,"`+key+`":2}`))
	assert.Equal(t, 400, code)
	assert.True(t, strings.HasPrefix(resp, `malformed request: JSON object has the key "kkk`), resp[:80])
	assert.LessOrEqual(t, len(resp), 512+len("…\n"))
}

func TestWebhookDeadLetterAndPing(t *testing.T) {
	e := newEnv(t)
	code, _, resp := e.post("/webhooks/acr/reg", []byte(`{"id":"w1","action":"push","target":null}`))
	require.Equal(t, 200, code, resp)
	code, _, resp = e.post("/webhooks/acr/reg", []byte(`{"id":"w2","action":"somethingnew","timestamp":"2024-01-01T00:00:00Z"}`))
	require.Equal(t, 200, code, resp)

	msgs := e.stored()
	require.Len(t, msgs, 2)
	assert.Equal(t, "acr.deadletter", msgs[0].Subject)
	assert.Equal(t, "webhook", msgs[0].Header.Get("Bridge-Origin"))
	assert.Equal(t, "acr.ping.reg", msgs[1].Subject, "an unknown action is treated as a ping")
	env := envelopeOf(t, msgs[1].Data)
	assert.Equal(t, acrevent.TypePing, env.Type)
	assert.Equal(t, "somethingnew", env.Data.Action)
	assert.True(t, e.logs.Contains("ACR webhook ping"))
}

func TestWebhookWithoutIDIsHashed(t *testing.T) {
	e := newEnv(t)
	body := []byte(`{"action":"push","timestamp":"2024-01-01T00:00:00Z","target":{"repository":"a","tag":"1"}}`)
	for range 2 {
		code, _, resp := e.post("/webhooks/acr/reg", body)
		require.Equal(t, 200, code, resp)
	}
	msgs := e.stored()
	require.Len(t, msgs, 1, "a redelivery of the same bytes is the same event")
	assert.Equal(t, bridge.HashID(body), msgs[0].Header.Get("Nats-Msg-Id"))
	assert.Equal(t, bridge.HashID(body), envelopeOf(t, msgs[0].Data).ID)
}

func TestWebhookRegistry(t *testing.T) {
	tests := []struct {
		name, path, body, defaultRegistry, subject string
	}{
		{"from path", "/webhooks/acr/Prod", `{"id":"1","action":"push","target":{"repository":"a"},"request":{"host":"other.azurecr.io"}}`, "", "acr.manifest.pushed.prod.a"},
		{"from request.host", "/webhooks/acr", `{"id":"1","action":"push","target":{"repository":"a"},"request":{"host":"MyReg.azurecr.io:443"}}`, "", "acr.manifest.pushed.myreg.a"},
		{"default", "/webhooks/acr", `{"id":"1","action":"chart_push","target":{"repository":"a"}}`, "Fallback", "acr.chart.pushed.fallback.a"},
		{"none", "/webhooks/acr", `{"id":"1","action":"chart_delete","target":{"repository":"a"}}`, "", "acr.chart.deleted._.a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(s *setup) { s.path.DefaultRegistry = tc.defaultRegistry })
			code, _, resp := e.post(tc.path, []byte(tc.body))
			require.Equal(t, 200, code, resp)
			msgs := e.stored()
			require.Len(t, msgs, 1)
			assert.Equal(t, tc.subject, msgs[0].Subject)
		})
	}
}

// Data as Azure really sends it: odd times, lower-case keys, null repositories, empty objects.
func TestNormalisationOddities(t *testing.T) {
	tests := []struct {
		name, event string
		check       func(t *testing.T, subject string, env acrevent.Envelope)
	}{
		{
			"offset and 9 digits",
			`{"id":"1","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T12:00:00.123456789+02:00",
			  "data":{"timestamp":"2024-05-01T10:00:00.1234567-00:30","target":{"repository":"a","tag":"1"}}}`,
			func(t *testing.T, _ string, env acrevent.Envelope) {
				assert.Equal(t, "2024-05-01T10:00:00.123456789Z", env.Time)
				assert.Equal(t, "2024-05-01T10:30:00.1234567Z", env.Data.Timestamp)
			},
		},
		{
			"no zone",
			`{"id":"1","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T12:00:00.5",
			  "data":{"timestamp":"yesterday","target":{"repository":"a"}}}`,
			func(t *testing.T, _ string, env acrevent.Envelope) {
				assert.Equal(t, "2024-05-01T12:00:00.5Z", env.Time)
				assert.Equal(t, "yesterday", env.Data.Timestamp, "kept verbatim when it does not parse")
			},
		},
		{
			"nothing parses",
			`{"id":"1","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"019-03-12T22:42:08Z",
			  "data":{"target":{"repository":"a"}}}`,
			func(t *testing.T, _ string, env acrevent.Envelope) {
				ts, err := time.Parse(time.RFC3339Nano, env.Time)
				require.NoError(t, err)
				assert.WithinDuration(t, time.Now(), ts, time.Minute, "receive time")
			},
		},
		{
			"connected registry, lower-case key",
			`{"id":"1","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T12:00:00Z",
			  "data":{"target":{"repository":"a"},"connectedregistry":{"name":"edge1"},"actor":{},"source":{},"request":{}}}`,
			func(t *testing.T, _ string, env acrevent.Envelope) {
				require.NotNil(t, env.Data.ConnectedRegistry)
				assert.Equal(t, "edge1", env.Data.ConnectedRegistry.Name)
				assert.Nil(t, env.Data.Actor, "empty objects are omitted")
				assert.Nil(t, env.Data.Request)
				assert.Nil(t, env.Data.Source)
			},
		},
		{
			"connected registry from the topic",
			`{"id":"1","topic":"` + acrTopic + `/connectedRegistries/Edge2","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T12:00:00Z",
			  "data":{"target":{"repository":"a"}}}`,
			func(t *testing.T, subject string, env acrevent.Envelope) {
				assert.Equal(t, "acr.manifest.pushed.myregistry.a", subject)
				require.NotNil(t, env.Data.ConnectedRegistry)
				assert.Equal(t, "Edge2", env.Data.ConnectedRegistry.Name)
			},
		},
		{
			"null repository",
			`{"id":"1","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ChartPushed","eventTime":"2024-05-01T12:00:00Z",
			  "data":{"target":{"repository":null,"tag":null,"name":"mychart","version":"1.0.0","size":0}}}`,
			func(t *testing.T, subject string, env acrevent.Envelope) {
				assert.Equal(t, "acr.chart.pushed.myregistry._", subject)
				assert.Empty(t, env.Subject)
				require.NotNil(t, env.Data.Target.Size, "a size of 0 is kept")
				assert.Equal(t, int64(0), *env.Data.Target.Size)
			},
		},
		{
			// Ⱥ is two bytes, its lower case three: a lowered copy's offsets are not the topic's.
			"letters whose lower case is longer, before the marker",
			`{"id":"1","topic":"/ȺȺȺȺ/REGISTRIES/Reg1/ConnectedRegistries/ȺȺ","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T12:00:00Z",
			  "data":{"target":{"repository":"a"}}}`,
			func(t *testing.T, subject string, env acrevent.Envelope) {
				assert.Equal(t, "acr.manifest.pushed.reg1.a", subject)
				require.NotNil(t, env.Data.ConnectedRegistry)
				assert.Equal(t, "ȺȺ", env.Data.ConnectedRegistry.Name)
			},
		},
		{
			"registry from request.host when the topic has none",
			`{"id":"1","topic":"/subscriptions/s","eventType":"Microsoft.ContainerRegistry.ImageDeleted","eventTime":"2024-05-01T12:00:00Z",
			  "data":{"target":{"repository":"Team/Web.API","digest":"sha256:1"},"request":{"host":"demo.azurecr.io"}}}`,
			func(t *testing.T, subject string, env acrevent.Envelope) {
				assert.Equal(t, "acr.image.deleted.demo.Team.Web%2EAPI", subject)
				assert.Equal(t, "Team/Web.API@sha256:1", env.Subject)
				assert.Equal(t, "demo", env.Data.Registry)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, _, resp := e.post("/eventgrid", []byte(tc.event))
			require.Equal(t, 200, code, resp)
			msgs := e.stored()
			require.Len(t, msgs, 1)
			env := envelopeOf(t, msgs[0].Data)
			assert.NotContains(t, string(msgs[0].Data), "null")
			assert.NotContains(t, string(msgs[0].Data), `""`)
			tc.check(t, msgs[0].Subject, env)
		})
	}
}

func TestPassthrough(t *testing.T) {
	blob := `{"id":"b1","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
		"subject":"/blobServices/default/containers/c/blobs/x.txt","eventType":"Microsoft.Storage.BlobCreated",
		"eventTime":"2024-05-01T12:00:00.1234567Z","data":{"api":"PutBlob","url":"https://acct.blob.core.windows.net/c/x.txt"},
		"dataVersion":"1.0","metadataVersion":"1"}`
	ce := `{"specversion":"1.0","id":"c1","source":"/x","type":"Microsoft.ContainerRegistry.SomethingNew","time":"2024-05-01T12:00:00Z",
		"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":[1,2,3]}`

	t.Run("Event Grid schema becomes a CloudEvent", func(t *testing.T) {
		e := newEnv(t)
		code, _, resp := e.post("/eventgrid", []byte(blob))
		require.Equal(t, 200, code, resp)
		msgs := e.stored()
		require.Len(t, msgs, 1)
		assert.Equal(t, "eventgrid.Microsoft.Storage.BlobCreated", msgs[0].Subject)
		assert.Equal(t, "b1", msgs[0].Header.Get("Nats-Msg-Id"))
		assert.JSONEq(t, `{"specversion":"1.0","id":"b1","source":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
			"subject":"/blobServices/default/containers/c/blobs/x.txt","type":"Microsoft.Storage.BlobCreated","time":"2024-05-01T12:00:00.1234567Z",
			"datacontenttype":"application/json","dataversion":"1.0","data":{"api":"PutBlob","url":"https://acct.blob.core.windows.net/c/x.txt"}}`, string(msgs[0].Data))
	})
	t.Run("a CloudEvent is kept as sent, unknown ACR types too", func(t *testing.T) {
		e := newEnv(t)
		code, _, resp := e.post("/eventgrid", []byte(ce), "Content-Type", "application/cloudevents+json")
		require.Equal(t, 200, code, resp)
		msgs := e.stored()
		require.Len(t, msgs, 1)
		assert.Equal(t, "eventgrid.Microsoft.ContainerRegistry.SomethingNew", msgs[0].Subject)
		assert.JSONEq(t, ce, string(msgs[0].Data))
	})
	t.Run("binary output mode", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.path.Mode = bridge.ModeBinary })
		code, _, resp := e.post("/eventgrid", []byte(ce))
		require.Equal(t, 200, code, resp)
		msgs := e.stored()
		require.Len(t, msgs, 1)
		h := msgs[0].Header
		assert.Equal(t, "c1", h.Get("ce-id"))
		assert.Equal(t, "Microsoft.ContainerRegistry.SomethingNew", h.Get("ce-type"))
		assert.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", h.Get("ce-traceparent"))
		assert.JSONEq(t, `[1,2,3]`, string(msgs[0].Data))
	})
	t.Run("off: 400 and nothing published", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.path.Passthrough = false })
		code, _, resp := e.post("/eventgrid", []byte("["+egPush("p1", "a", "1")+","+blob+"]"))
		assert.Equal(t, 400, code)
		assert.Contains(t, resp, "Microsoft.Storage.BlobCreated")
		assert.Empty(t, e.stored())
	})
}

func TestBinaryModeCloudEventIn(t *testing.T) {
	e := newEnv(t)
	data := `{"id":"d1","timestamp":"2024-05-01T10:00:00.1234567Z","action":"push","target":{"repository":"web","tag":"2","digest":"sha256:9"}}`
	code, _, resp := e.post("/eventgrid", []byte(data),
		"Content-Type", "application/json",
		"ce-specversion", "1.0",
		"ce-id", "bin-1",
		"ce-source", acrTopic,
		"ce-type", acrevent.TypeImagePushed,
		"ce-time", "2024-05-01T10:00:01.1234567Z",
		"ce-subject", "web:2")
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 1)
	assert.Equal(t, "acr.image.pushed.myregistry.web", msgs[0].Subject)
	env := envelopeOf(t, msgs[0].Data)
	assert.Equal(t, "bin-1", env.ID)
	assert.Equal(t, "2024-05-01T10:00:01.1234567Z", env.Time)
	assert.Equal(t, "cloudevents", env.Data.Origin)

	code, _, resp = e.post("/eventgrid", []byte(data), "ce-specversion", "1.0", "ce-id", "x")
	assert.Equal(t, 400, code, "binary mode without source and type")
	assert.Contains(t, resp, "binary-mode CloudEvent")
}

func TestBinaryModeOut(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.path.Mode = bridge.ModeBinary })
	code, _, resp := e.post("/eventgrid", []byte(egPush("b-1", "web", "3")))
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 1)
	h := msgs[0].Header
	assert.Equal(t, "1.0", h.Get("ce-specversion"))
	assert.Equal(t, "b-1", h.Get("ce-id"))
	assert.Equal(t, "b-1", h.Get("Nats-Msg-Id"))
	assert.Equal(t, acrevent.TypeImagePushed, h.Get("ce-type"))
	assert.Equal(t, "web:3", h.Get("ce-subject"))
	assert.Equal(t, "2024-05-01T10:00:00.1234567Z", h.Get("ce-time"))
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	var data acrevent.EventData
	require.NoError(t, json.Unmarshal(msgs[0].Data, &data))
	assert.Equal(t, "myregistry", data.Registry)

	env, err := acrevent.DecodeMessage(&nats.Msg{Subject: msgs[0].Subject, Header: msgs[0].Header, Data: msgs[0].Data})
	require.NoError(t, err)
	assert.Equal(t, "b-1", env.ID)
	assert.Equal(t, "web", env.Data.Target.Repository)
}

func TestCoreMode(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.core = true; s.noStream = true })
	sub, err := e.nc.SubscribeSync("acr.>")
	require.NoError(t, err)
	require.NoError(t, e.nc.Flush())

	code, _, resp := e.post("/eventgrid", []byte(egPush("core-1", "web", "1")))
	require.Equal(t, 200, code, resp)
	m, err := sub.NextMsg(2 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "acr.image.pushed.myregistry.web", m.Subject)
	assert.Equal(t, "core-1", envelopeOf(t, m.Data).ID)
	assert.Empty(t, e.stored(), "core mode creates no stream")
}

func TestStreamMissing(t *testing.T) {
	t.Run("create off: 503 until it exists", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.stream.Create = false; s.noStream = true })
		code, h, resp := e.post("/eventgrid", []byte(egPush("m-1", "web", "1")))
		assert.Equal(t, 503, code, resp)
		assert.Equal(t, "5", h.Get("Retry-After"))
		code, _, body := e.do("GET", "/readyz", nil)
		assert.Equal(t, 503, code)
		assert.Contains(t, body, "stream ACR_EVENTS: ", "docs/operations.md, Troubleshooting, quotes this")
		assert.Contains(t, body, "stream not found")
	})
	t.Run("deleted while running: re-created", func(t *testing.T) {
		e := newEnv(t)
		code, _, resp := e.post("/eventgrid", []byte(egPush("d-1", "web", "1")))
		require.Equal(t, 200, code, resp)
		require.NoError(t, e.js.DeleteStream(context.Background(), streamName))

		code, _, resp = e.post("/eventgrid", []byte(egPush("d-2", "web", "2")))
		require.Equal(t, 200, code, resp)
		msgs := e.stored()
		require.Len(t, msgs, 1)
		assert.Equal(t, "d-2", msgs[0].Header.Get("Nats-Msg-Id"))

		// A batch finds no stream too: its commit gets no answer, and it is stored once the stream is back.
		require.NoError(t, e.js.DeleteStream(context.Background(), streamName))
		code, _, resp = e.post("/eventgrid", []byte("["+egPush("d-3", "web", "3")+","+egPush("d-4", "web", "4")+"]"))
		require.Equal(t, 200, code, "%s\nlog:\n%s", resp, e.logs.String())
		assert.JSONEq(t, `{"events":2,"duplicates":0,"deadLettered":0}`, resp)
		msgs = e.stored()
		require.Len(t, msgs, 2)
		assert.Equal(t, "d-3", msgs[0].Header.Get("Nats-Msg-Id"))
		assert.NotEmpty(t, msgs[0].Header.Get("Nats-Batch-Id"), "as an atomic batch, on the re-created stream")
		info, err := e.js.Stream(context.Background(), streamName)
		require.NoError(t, err)
		assert.Equal(t, 10*time.Minute, info.CachedInfo().Config.Duplicates)
	})
}

// TestAckTimeoutIs503: a message that something other than a stream receives is never acknowledged;
// the request, whether one event or a batch, gets 503 once BRIDGE_PUBLISH_TIMEOUT has passed, not a hang.
func TestAckTimeoutIs503(t *testing.T) {
	e := newEnv(t, func(s *setup) {
		s.stream.Create, s.noStream = false, true
		s.publishTimeout = 300 * time.Millisecond
	})
	// A subscriber that never answers: the publish finds a responder, so no "no responders" error comes.
	sub, err := e.nc.SubscribeSync("acr.>")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	for _, body := range []string{
		egPush("t-1", "web", "1"),
		"[" + egPush("t-2", "web", "2") + "," + egPush("t-3", "web", "3") + "]",
	} {
		start := time.Now()
		code, h, resp := e.post("/eventgrid", []byte(body))
		took := time.Since(start)
		assert.Equal(t, 503, code, resp)
		assert.Equal(t, "5", h.Get("Retry-After"))
		assert.GreaterOrEqual(t, took, 300*time.Millisecond, "answered before the timeout")
		assert.Less(t, took, 5*time.Second, "waited far past the timeout")
	}
	n, _, err := sub.Pending()
	require.NoError(t, err)
	assert.Equal(t, 3, n, "every message reached the subscriber")
}

func TestNATSDownIs503(t *testing.T) {
	e := newEnv(t)
	code, _, _ := e.do("GET", "/readyz", nil)
	require.Equal(t, 200, code)
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	require.Eventually(t, func() bool { return !e.nc.IsConnected() }, 5*time.Second, 10*time.Millisecond)

	code, h, resp := e.post("/eventgrid", []byte(egPush("down-1", "web", "1")))
	assert.Equal(t, 503, code)
	assert.Equal(t, "5", h.Get("Retry-After"))
	assert.Equal(t, "temporarily unavailable, retry later\n", resp)
	code, _, _ = e.do("GET", "/readyz", nil)
	assert.Equal(t, 503, code)
	code, _, _ = e.do("GET", "/healthz", nil)
	assert.Equal(t, 200, code, "liveness does not depend on NATS")
}

func TestLimits(t *testing.T) {
	t.Run("body too large", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.opts.MaxBodyBytes = 1000 })
		code, _, resp := e.post("/eventgrid", []byte("["+strings.Repeat(egPush("x", "a", "1")+",", 5)+egPush("y", "a", "1")+"]"))
		assert.Equal(t, 413, code)
		assert.Contains(t, resp, "BRIDGE_MAX_BODY_BYTES")
		assert.Empty(t, e.stored())
	})
	t.Run("too many events", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.opts.MaxEvents = 3 })
		events := []string{egPush("1", "a", "1"), egPush("2", "a", "1"), egPush("3", "a", "1"), egPush("4", "a", "1")}
		code, _, resp := e.post("/eventgrid", []byte("["+strings.Join(events, ",")+"]"))
		assert.Equal(t, 413, code)
		assert.Contains(t, resp, "BRIDGE_MAX_EVENTS")
		assert.Empty(t, e.stored())
	})
	t.Run("too many events is refused before they are read", func(t *testing.T) {
		// 4 MiB of empty objects is 1.4 million elements; each one read would cost far more than its
		// three bytes, so the count is checked while the array is read, not after.
		e := newEnv(t, func(s *setup) { s.opts.MaxBodyBytes = 4 << 20 })
		for _, body := range []string{
			"[" + strings.Repeat("{},", 4<<20/3-1) + "{}]",             // the one-pass reader's way
			"[" + strings.Repeat(`{"\u0069d":1},`, 4<<20/14-1) + "{}]", // encoding/json's way (an escaped key)
		} {
			body := []byte(body)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			code, _, resp := e.post("/eventgrid", body)
			runtime.ReadMemStats(&after)
			assert.Equal(t, 413, code)
			assert.Contains(t, resp, "BRIDGE_MAX_EVENTS")
			// Reading the body, not a structure per element.
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d MiB allocated for a body of %d MiB", allocated>>20, len(body)>>20)
			assert.Less(t, allocated, uint64(3*len(body)), "bytes allocated")
		}
		assert.Empty(t, e.stored())
	})
	t.Run("an object of many keys costs a bounded multiple of its size", func(t *testing.T) {
		e := newEnv(t, func(s *setup) { s.opts.MaxBodyBytes = 4 << 20 })
		var b strings.Builder
		b.WriteString(`{"id":"many","eventType":"x"`)
		for i := 0; b.Len() < 4<<20-64; i++ {
			fmt.Fprintf(&b, `,"k%d":0`, i)
		}
		body := []byte(b.String() + "}")
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		code, _, resp := e.post("/eventgrid", body)
		runtime.ReadMemStats(&after)
		// Read whole, then refused as a message over the test server's max_payload.
		require.Equal(t, 413, code, resp)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%d MiB allocated for a body of %d MiB", allocated>>20, len(body)>>20)
		// Keys in the hundreds of thousands are checked for repeats, one slice entry each, and every value
		// is recorded: about ten times the body in all, where it was over twenty.
		assert.Less(t, allocated, uint64(12*len(body)), "bytes allocated")
	})
	t.Run("message over max_payload", func(t *testing.T) {
		e := newEnv(t)
		big := strings.Repeat("a", int(e.nc.MaxPayload()))
		ev := `{"id":"big","topic":"` + acrTopic + `","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T12:00:00Z",
			"data":{"target":{"repository":"a","url":"` + big + `"}}}`
		code, _, resp := e.post("/eventgrid", []byte("["+egPush("small", "a", "1")+","+ev+"]"))
		assert.Equal(t, 413, code)
		assert.Contains(t, resp, "max_payload")
		assert.Empty(t, e.stored(), "nothing of the batch is stored")
	})
	t.Run("wrong method", func(t *testing.T) {
		e := newEnv(t)
		code, h, _ := e.do("GET", "/eventgrid", nil)
		assert.Equal(t, 405, code)
		assert.Contains(t, h.Get("Allow"), "POST")
		code, h, _ = e.do("PUT", "/webhooks/acr/x", nil)
		assert.Equal(t, 405, code)
		assert.Contains(t, h.Get("Allow"), "POST")
	})
}

func TestHostileRepositoryNames(t *testing.T) {
	e := newEnv(t)
	names := []string{"a.b", "*", ">", "x y", "$SYS", "../etc", "ünï/cödé", strings.Repeat("r", 300)}
	for i, n := range names {
		body, err := json.Marshal(map[string]any{"id": fmt.Sprint("h", i), "action": "push", "target": map[string]any{"repository": n, "tag": "1"}})
		require.NoError(t, err)
		code, _, resp := e.post("/webhooks/acr/reg", body)
		require.Equal(t, 200, code, resp)
	}
	msgs := e.stored()
	require.Len(t, msgs, len(names))
	subjects := acrevent.Subjects{Prefix: "acr"}
	for i, m := range msgs {
		assert.NotContains(t, m.Subject, "*")
		assert.NotContains(t, m.Subject, ">")
		assert.NotContains(t, m.Subject, " ")
		assert.NotContains(t, m.Subject, "..")
		parts, err := subjects.ParseSubject(m.Subject)
		require.NoError(t, err)
		assert.Equal(t, names[i], parts.Repository)
		assert.Equal(t, "reg", parts.Registry)
	}

	// A repository name too long for any NATS subject is dead-lettered, not sent to NATS.
	body, err := json.Marshal(map[string]any{"id": "long", "action": "push", "target": map[string]any{"repository": strings.Repeat(".", 1000)}})
	require.NoError(t, err)
	code, _, resp := e.post("/webhooks/acr/reg", body)
	require.Equal(t, 200, code, resp)
	msgs = e.stored()
	require.Len(t, msgs, len(names)+1)
	assert.Equal(t, "acr.deadletter", msgs[len(names)].Subject)
	assert.Contains(t, msgs[len(names)].Header.Get("Bridge-Error"), "subject too long")
	assert.True(t, e.nc.IsConnected())
}

func TestBinaryModePassthroughAndDeadLetter(t *testing.T) {
	e := newEnv(t)
	code, _, resp := e.post("/eventgrid", []byte(`{"api":"PutBlob"}`),
		"Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "blob-1",
		"ce-source", "/storage", "ce-type", "Microsoft.Storage.BlobCreated", "ce-time", "2024-05-01T12:00:00Z")
	require.Equal(t, 200, code, resp)
	code, _, resp = e.post("/eventgrid", []byte(`"not an object"`),
		"Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "bad-1",
		"ce-source", acrTopic, "ce-type", acrevent.TypeImagePushed)
	require.Equal(t, 200, code, resp)

	msgs := e.stored()
	require.Len(t, msgs, 2)
	assert.Equal(t, "eventgrid.Microsoft.Storage.BlobCreated", msgs[0].Subject)
	assert.JSONEq(t, `{"specversion":"1.0","id":"blob-1","source":"/storage","type":"Microsoft.Storage.BlobCreated",
		"time":"2024-05-01T12:00:00Z","datacontenttype":"application/json","data":{"api":"PutBlob"}}`, string(msgs[0].Data))

	assert.Equal(t, "acr.deadletter", msgs[1].Subject)
	assert.Equal(t, "bad-1", msgs[1].Header.Get("Nats-Msg-Id"))
	assert.Equal(t, "bad-1", msgs[1].Header.Get("Ce-Id"), "a binary-mode event keeps its attributes")
	assert.Equal(t, `"not an object"`, string(msgs[1].Data))
	assert.Contains(t, msgs[1].Header.Get("Bridge-Error"), "not a JSON object")
}

// Binary-mode data that the structured output could not carry as it is (untyped but not JSON, or text
// that is not UTF-8) travels as data_base64, byte for byte.
func TestBinaryDataThatIsNotJSONKeepsItsBytes(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ id, contentType, body string }{
		{"raw-1", "", "{\"a\":1}\x89"},
		{"raw-2", "application/json", "not json"},
		{"raw-3", "text/plain", "caf\xe9"},
	}
	for _, tc := range tests {
		headers := []string{"ce-specversion", "1.0", "ce-id", tc.id, "ce-source", "/s", "ce-type", "Custom.Type"}
		if tc.contentType != "" {
			headers = append(headers, "Content-Type", tc.contentType)
		}
		code, _, resp := e.post("/eventgrid", []byte(tc.body), headers...)
		require.Equal(t, 200, code, resp)
	}
	code, _, resp := e.post("/eventgrid", []byte("plain text"), "ce-specversion", "1.0", "ce-id", "raw-4", "ce-source", "/s", "ce-type", "Custom.Type", "Content-Type", "text/plain")
	require.Equal(t, 200, code, resp)

	msgs := e.stored()
	require.Len(t, msgs, 4)
	for i, tc := range tests {
		var ce struct {
			ID         string          `json:"id"`
			Data       json.RawMessage `json:"data"`
			DataBase64 []byte          `json:"data_base64"`
		}
		require.NoError(t, json.Unmarshal(msgs[i].Data, &ce), string(msgs[i].Data))
		assert.Equal(t, tc.id, ce.ID)
		assert.Nil(t, ce.Data)
		assert.Equal(t, []byte(tc.body), ce.DataBase64)
	}
	assert.Contains(t, string(msgs[3].Data), `"data":"plain text"`, "valid text stays a string")
}

// Past BRIDGE_MAX_INFLIGHT deliveries, the bridge answers 503 with Retry-After at once instead of
// queueing; the delivery that holds the slot completes normally.
func TestInflightCap(t *testing.T) {
	e := newEnv(t, withMetrics, func(s *setup) { s.opts.MaxInflight = 1 })

	// The first delivery holds the only slot while its body trickles in.
	finish, first := holdDelivery(t, e, "slot-holder")
	code, h, resp := e.post("/eventgrid", []byte(egPush("turned-away", "app", "v1")))
	assert.Equal(t, http.StatusServiceUnavailable, code, "a second delivery is turned away while the first holds the slot")
	assert.Equal(t, "5", h.Get("Retry-After"))
	assert.Equal(t, "temporarily unavailable, retry later\n", resp)

	finish()
	assert.Equal(t, 200, <-first)

	msgs := e.stored()
	require.Len(t, msgs, 1, "only the admitted delivery is stored")
	assert.Equal(t, "slot-holder", msgs[0].Header.Get("Nats-Msg-Id"))

	code, _, resp = e.post("/eventgrid", []byte(egPush("after", "app", "v1")))
	assert.Equal(t, 200, code, resp)
}

// holdDelivery starts a delivery of the event id whose body is sent in chunks, with no Content-Length,
// and stops after its first bytes; it returns once the bridge has the delivery under way. finish sends
// the rest; status receives the answer's code (0 if none came).
func holdDelivery(t *testing.T, e *testEnv, id string) (finish func(), status <-chan int) {
	t.Helper()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, e.url+"/eventgrid", pr)
		if err != nil {
			code <- 0
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			code <- 0
			return
		}
		resp.Body.Close()
		code <- resp.StatusCode
	}()
	body := egPush(id, "app", "v1")
	_, err := io.WriteString(pw, body[:10])
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.scrape()["bridge_inflight_requests"] == 1 },
		10*time.Second, 5*time.Millisecond, "the delivery is under way")
	return func() {
		_, err := io.WriteString(pw, body[10:])
		require.NoError(t, err)
		require.NoError(t, pw.Close())
	}, code
}

// TestInflightBytesCap: while a delivery of unknown length holds the byte budget (it counts as
// MaxBodyBytes), another is answered 503 however few deliveries are under way; once it is done, the
// budget is free again.
func TestInflightBytesCap(t *testing.T) {
	e := newEnv(t, withMetrics, func(s *setup) {
		s.opts.MaxInflight = 8
		s.opts.MaxBodyBytes = 64 << 10
		s.opts.MaxInflightBytes = 64<<10 + 100
	})

	finish, first := holdDelivery(t, e, "budget-holder")

	small := []byte(egPush("turned-away", "app", "v1"))
	require.Greater(t, len(small), 100, "more than the budget has left")
	code, h, resp := e.post("/eventgrid", small)
	assert.Equal(t, http.StatusServiceUnavailable, code, resp)
	assert.Equal(t, "5", h.Get("Retry-After"))
	assert.Contains(t, e.logs.String(), "BRIDGE_MAX_INFLIGHT_BYTES")

	finish()
	assert.Equal(t, 200, <-first)

	code, _, resp = e.post("/eventgrid", small)
	assert.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 2)
	assert.Equal(t, "budget-holder", msgs[0].Header.Get("Nats-Msg-Id"))
	assert.Equal(t, "turned-away", msgs[1].Header.Get("Nats-Msg-Id"), "admitted once the budget was free")
}
