package cloudevents_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

const (
	egEvent = `{"id":"1","topic":"/t","subject":"s","eventType":"X.Y","eventTime":"2024-01-01T00:00:00Z","data":{"a":1},"dataVersion":"2","metadataVersion":"1"}`
	ceEvent = `{"specversion":"1.0","id":"2","source":"/s","type":"X.Z","time":"2024-01-01T00:00:00Z","data":{"b":2}}`
)

func TestDecodeFormats(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		schemas                 []cloudevents.Schema
	}{
		{"Event Grid object", "application/json", egEvent, []cloudevents.Schema{cloudevents.SchemaEventGrid}},
		{"Event Grid array", "application/json; charset=utf-8", "[" + egEvent + "," + egEvent + "]", []cloudevents.Schema{cloudevents.SchemaEventGrid, cloudevents.SchemaEventGrid}},
		{"CloudEvent structured", "application/cloudevents+json; charset=utf-8", ceEvent, []cloudevents.Schema{cloudevents.SchemaCloudEvents}},
		{"CloudEvents batch", "application/cloudevents-batch+json", "[" + ceEvent + "]", []cloudevents.Schema{cloudevents.SchemaCloudEvents}},
		{"CloudEvents array as application/json", "application/json", "[" + ceEvent + "]", []cloudevents.Schema{cloudevents.SchemaCloudEvents}},
		{"batch content type, single object", "application/cloudevents-batch+json", ceEvent, []cloudevents.Schema{cloudevents.SchemaCloudEvents}},
		{"no content type, leading white space", "", "\n\t [" + egEvent + "]", []cloudevents.Schema{cloudevents.SchemaEventGrid}},
		{"text/plain", "text/plain", ceEvent, []cloudevents.Schema{cloudevents.SchemaCloudEvents}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.contentType != "" {
				h.Set("Content-Type", tc.contentType)
			}
			d, err := cloudevents.Decoder{}.Decode(h, []byte(tc.body))
			require.NoError(t, err)
			require.Len(t, d.Events, len(tc.schemas))
			for i, ev := range d.Events {
				assert.Equal(t, tc.schemas[i], ev.Schema)
				assert.NotEmpty(t, ev.ID)
				assert.NotEmpty(t, ev.Type)
				assert.NotEmpty(t, ev.Data)
			}
		})
	}
}

func TestDecodeMapsEventGridAttributes(t *testing.T) {
	d, err := cloudevents.Decoder{}.Decode(http.Header{}, []byte(egEvent))
	require.NoError(t, err)
	ev := d.Events[0]
	assert.Equal(t, "1", ev.ID)
	assert.Equal(t, "/t", ev.Source)
	assert.Equal(t, "X.Y", ev.Type)
	assert.Equal(t, "s", ev.Subject)
	assert.Equal(t, "2024-01-01T00:00:00Z", ev.Time)
	assert.JSONEq(t, `{"a":1}`, string(ev.Data))
	assert.JSONEq(t, egEvent, string(ev.Raw))

	ce, err := ev.CloudEvent(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Equal(t, "/t", ce.Source())
	assert.Equal(t, "X.Y", ce.Type())
	assert.Equal(t, "2", ce.Extensions()["dataversion"])
	assert.JSONEq(t, `{"a":1}`, string(ce.Data()))
}

func TestDecodeBatchKeepsInvalidElements(t *testing.T) {
	d, err := cloudevents.Decoder{}.Decode(http.Header{}, []byte(`[`+egEvent+`,{"x":1},"str",`+ceEvent+`]`))
	require.NoError(t, err)
	assert.Len(t, d.Events, 2)
	require.Len(t, d.Invalid, 2)
	assert.JSONEq(t, `{"x":1}`, string(d.Invalid[0].Raw))
	assert.Contains(t, d.Invalid[0].Reason, "unknown schema")
	assert.Contains(t, d.Invalid[1].Reason, "not a JSON object")
}

func TestDecodeBinaryMode(t *testing.T) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", "b1")
	h.Set("ce-source", "/src")
	h.Set("ce-type", "T")
	h.Set("ce-time", "2024-01-01T00:00:00.1234567Z")
	h.Set("ce-traceparent", "00-abc-def-01")
	d, err := cloudevents.Decoder{}.Decode(h, []byte(`{"k":"v"}`))
	require.NoError(t, err)
	require.True(t, d.Binary)
	ev := d.Events[0]
	assert.Equal(t, "b1", ev.ID)
	assert.Equal(t, "/src", ev.Source)
	assert.Equal(t, "2024-01-01T00:00:00.1234567Z", ev.Time, "the time as sent, precision kept")
	assert.JSONEq(t, `{"k":"v"}`, string(ev.Data))
	assert.Equal(t, "00-abc-def-01", ev.CE.Extensions()["traceparent"])
}

func TestDecodeErrors(t *testing.T) {
	for name, body := range map[string]string{
		"empty": "", "null": "null", "number": "5", "garbage": "<xml/>", "empty array": "[]",
		"all invalid": `[1,{"a":2}]`, "bad specversion": `{"specversion":"2.0","id":"1","source":"s","type":"t"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cloudevents.Decoder{}.Decode(http.Header{}, []byte(body))
			assert.ErrorIs(t, err, cloudevents.ErrMalformed)
		})
	}
}

func TestValidation(t *testing.T) {
	d, err := cloudevents.Decoder{}.Decode(http.Header{}, []byte(`[{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent",
		"data":{"validationCode":"C0DE","validationUrl":"https://x"}}]`))
	require.NoError(t, err)
	v, ok, err := cloudevents.ValidationOf(d.Events[0])
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "C0DE", v.Code)
	assert.JSONEq(t, `{"validationResponse":"C0DE"}`, string(cloudevents.ValidationResponse(v)))

	_, ok, err = cloudevents.ValidationOf(cloudevents.Event{Type: "Other"})
	assert.False(t, ok)
	assert.NoError(t, err)
}

func TestOrigins(t *testing.T) {
	o := cloudevents.Origins{"eventgrid.azure.net"}
	assert.True(t, o.Allows("eventgrid.azure.net"))
	assert.True(t, o.Allows("EVENTGRID.azure.net"))
	assert.False(t, o.Allows("eventgrid.azure.net.evil.com"))
	assert.False(t, o.Allows(""))
	assert.True(t, cloudevents.Origins{"*"}.Allows("anything"))
}

func TestDecodeWebhook(t *testing.T) {
	ev, err := cloudevents.Decoder{}.DecodeWebhook([]byte(` {"action":"push"} `))
	require.NoError(t, err)
	assert.Equal(t, cloudevents.SchemaWebhook, ev.Schema)
	assert.JSONEq(t, `{"action":"push"}`, string(ev.Data))
	for _, bad := range []string{"", "[]", "{", `"x"`, "\xff"} {
		_, err := cloudevents.Decoder{}.DecodeWebhook([]byte(bad))
		assert.ErrorIs(t, err, cloudevents.ErrMalformed, "%q", bad)
	}
}
