package bridge_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
)

// stored is what one message in the stream must be: its subject, its Nats-Msg-Id and, for a dead
// letter, a part of its Bridge-Error.
type storedMsg struct{ subject, id, deadReason string }

func dead(id, reason string) storedMsg { return storedMsg{"acr.deadletter", id, reason} }

// egData is an Event Grid ImagePushed event of registry "reg" with the given data.
func egData(id, data string) string {
	return fmt.Sprintf(`{"id":%q,"topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/reg",
		"subject":"a:1","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T10:00:00Z","dataVersion":"1.0","data":%s}`, id, data)
}

// egField is a valid Event Grid event whose envelope field name is set to the raw JSON value.
func egField(id, name, value string) string {
	fields := map[string]string{
		"id": fmt.Sprintf("%q", id), "topic": `"/registries/reg"`, "subject": `"a:1"`,
		"eventType": `"Microsoft.ContainerRegistry.ImagePushed"`, "eventTime": `"2024-05-01T10:00:00Z"`,
		"dataVersion": `"1.0"`, "data": `{"target":{"repository":"a"}}`,
	}
	fields[name] = value
	parts := make([]string, 0, len(fields))
	for k, v := range fields {
		parts = append(parts, fmt.Sprintf("%q:%s", k, v))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// ceField is a valid CloudEvent whose attribute name is set to the raw JSON value, or removed when
// value is empty.
func ceField(id, name, value string) string {
	fields := map[string]string{
		"specversion": `"1.0"`, "id": fmt.Sprintf("%q", id), "source": `"/registries/reg"`,
		"type": `"Microsoft.ContainerRegistry.ImageDeleted"`, "time": `"2024-05-01T10:00:00Z"`, "subject": `"a@sha256:1"`,
		"datacontenttype": `"application/json"`, "data": `{"target":{"repository":"a","digest":"sha256:1"}}`,
	}
	if value == "" {
		delete(fields, name)
	} else {
		fields[name] = value
	}
	parts := make([]string, 0, len(fields))
	for k, v := range fields {
		parts = append(parts, fmt.Sprintf("%q:%s", k, v))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestBadInputMatrix throws malformed and hostile requests at the real handler and a real nats-server.
// Each row says the status, what the response body says, and exactly which messages reach NATS.
func TestBadInputMatrix(t *testing.T) {
	const target = `"target":{"repository":"a","tag":"1"}`
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	ok := func(n, deadLettered int) string {
		return fmt.Sprintf(`{"events":%d,"duplicates":0,"deadLettered":%d}`, n, deadLettered)
	}
	huge := `[` + strings.Repeat(egData("pad", `{`+target+`}`)+",", 40000) + egData("last", `{`+target+`}`) + `]`
	rows := []struct {
		name    string
		path    string
		headers []string
		body    string
		status  int
		resp    string // exact JSON for 200, a part of the one-line reason otherwise
		want    []storedMsg
	}{
		// Not JSON, or not events.
		{name: "truncated JSON", body: egData("t1", `{`+target+`}`)[:60], status: 400, resp: "invalid JSON"},
		{name: "truncated batch", body: `[` + egData("t2", `{`+target+`}`), status: 400, resp: "not a JSON array of events"},
		{name: "invalid UTF-8", body: egData("u1", `{"target":{"repository":"a`+"\xff"+`"}}`), status: 400, resp: "not valid UTF-8"},
		{name: "empty array", body: `[]`, status: 400, resp: "empty array"},
		{name: "array of non-objects", body: `[1,"two",null,[3]]`, status: 400, resp: "not a JSON object"},
		{name: "JSON null", body: `null`, status: 400, resp: "neither a JSON object nor an array"},
		{name: "unknown schema", body: `{"kind":"push"}`, status: 400, resp: "unknown schema"},

		// Wrong JSON types for the Event Grid envelope fields: the event cannot be read at all.
		{name: "EG id a number", body: egField("x", "id", `5`), status: 400, resp: `field "id" is a JSON number, want a string`},
		{name: "EG eventType an array", body: egField("x1", "eventType", `["a"]`), status: 400, resp: `field "eventType" is a JSON array`},
		{name: "EG topic an object", body: egField("x2", "topic", `{}`), status: 400, resp: `field "topic" is a JSON object`},
		{name: "EG subject a bool", body: egField("x3", "subject", `true`), status: 400, resp: `field "subject" is a JSON bool`},
		{name: "EG eventTime a number", body: egField("x4", "eventTime", `1714557600`), status: 400, resp: `field "eventTime" is a JSON number`},
		{name: "EG dataVersion a number", body: egField("x5", "dataVersion", `1`), status: 400, resp: `field "dataVersion" is a JSON number`},
		// ... and for the CloudEvents attributes.
		{name: "CE specversion a number", body: ceField("c0", "specversion", `1.0`), status: 400, resp: `field "specversion" is a JSON number`},
		{name: "CE id a number", body: ceField("c1", "id", `1`), status: 400, resp: `field "id" is a JSON number`},
		{name: "CE source an object", body: ceField("c2", "source", `{}`), status: 400, resp: `field "source" is a JSON object`},
		{name: "CE type a bool", body: ceField("c3", "type", `false`), status: 400, resp: `field "type" is a JSON bool`},
		{name: "CE time a number", body: ceField("c4", "time", `0`), status: 400, resp: `field "time" is a JSON number`},
		{name: "CE subject an array", body: ceField("c5", "subject", `[]`), status: 400, resp: `field "subject" is a JSON array`},
		{name: "CE datacontenttype a number", body: ceField("c6", "datacontenttype", `7`), status: 400, resp: `field "datacontenttype" is a JSON number`},
		// Wrong types inside ACR data: the envelope is readable, so the event is dead-lettered, not lost.
		{name: "data a string", body: egData("d1", `"push"`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d1", "not a JSON object")}},
		{name: "data an array", body: egData("d2", `[]`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d2", "not a JSON object")}},
		{name: "data.action a number", body: egData("d3", `{"action":1,`+target+`}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d3", "data.action")}},
		{name: "data.timestamp a number", body: egData("d4", `{"timestamp":1,`+target+`}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d4", "data.timestamp")}},
		{name: "data.target a string", body: egData("d5", `{"target":"a"}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d5", "data.target")}},
		{name: "target.repository a number", body: egData("d6", `{"target":{"repository":5}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d6", "data.target.repository")}},
		{name: "target.tag an array", body: egData("d7", `{"target":{"repository":"a","tag":["1"]}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d7", "data.target.tag")}},
		{name: "target.size a string", body: egData("d8", `{"target":{"repository":"a","size":"10"}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d8", "data.target.size")}},
		{name: "target.length a bool", body: egData("d9", `{"target":{"repository":"a","length":true}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d9", "data.target.length")}},
		{name: "request an array", body: egData("d10", `{`+target+`,"request":[]}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d10", "data.request")}},
		{name: "actor a string", body: egData("d11", `{`+target+`,"actor":"me"}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d11", "data.actor")}},
		{name: "source a number", body: egData("d12", `{`+target+`,"source":1}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d12", "data.source")}},
		{name: "connectedRegistry a string", body: egData("d13", `{`+target+`,"connectedRegistry":"x"}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("d13", "data.connectedRegistry")}},
		{name: "webhook target.digest a number", path: "/webhooks/acr/reg", body: `{"id":"w1","action":"push","target":{"repository":"a","digest":7}}`, status: 200, resp: ok(1, 1), want: []storedMsg{dead("", "data.target.digest")}},

		// Numbers.
		{name: "size of 1e400", body: egData("n1", `{"target":{"repository":"a","size":1e400}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("n1", "data.target.size")}},
		{name: "size past int64", body: egData("n2", `{"target":{"repository":"a","size":9223372036854775808}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("n2", "data.target.size")}},
		{name: "size a fraction", body: egData("n3", `{"target":{"repository":"a","size":1.5}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("n3", "data.target.size")}},
		// data.artifact is the bridge's to say: whatever a sender puts there is neither read nor refused.
		{name: "an artifact of the wrong type in the data", body: egData("a1", `{"target":{"repository":"a","tag":"v1"},"artifact":5}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a", "a1", ""}}},
		{name: "an artifact kind in the data", body: egData("a2", `{"target":{"repository":"a","tag":"v1"},"artifact":{"kind":"signature"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a", "a2", ""}}},
		{name: "largest int64 size", body: egData("n4", `{"target":{"repository":"a","size":9223372036854775807}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.manifest.pushed.reg.a", "n4", ""}}},
		{name: "huge number passed through verbatim", body: `{"id":"n5","topic":"/t","eventType":"Custom.Thing","data":{"n":1e999999}}`, status: 200, resp: ok(1, 0), want: []storedMsg{{"eventgrid.Custom.Thing", "n5", ""}}},

		// Duplicate keys and nesting.
		{name: "duplicate id", body: `{"id":"k1","id":"k2","eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{` + target + `}}`, status: 400, resp: `the key "id" twice`},
		{name: "duplicate key, escaped", body: `{"id":"k3","\u0069d":"k4","eventType":"Microsoft.ContainerRegistry.ImagePushed","data":{` + target + `}}`, status: 400, resp: `the key "id" twice`},
		{name: "duplicate key in data", body: egData("k5", `{"target":{"repository":"a","repository":"b"}}`), status: 400, resp: `the key "repository" twice`},
		{name: "same key in sibling objects is fine", body: egData("k6", `{"target":{"repository":"a"},"request":{"id":"1"},"actor":{"name":"x"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.manifest.pushed.reg.a", "k6", ""}}},
		{name: "webhook with a duplicate key", path: "/webhooks/acr/reg", body: `{"id":"w2","action":"push","action":"delete",` + target + `}`, status: 400, resp: `the key "action" twice`},
		{name: "deep nesting", body: egData("z1", `{`+target+`,"x":`+deep(100)+`}`), status: 400, resp: "nested deeper than 64 levels"},
		{name: "nesting at the limit", body: egData("z2", `{`+target+`,"actor":{"name":"n"},"x":`+deep(5)+`}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a", "z2", ""}}},
		{name: "deep webhook", path: "/webhooks/acr/reg", body: `{"id":"w3","action":"push",` + target + `,"x":` + deep(200) + `}`, status: 400, resp: "nested deeper"},
		{name: "deep binary-mode data", headers: binaryHeaders("z3"), body: deep(100), status: 400, resp: "nested deeper"},

		// Size.
		{name: "10 MB body", body: huge, status: 413, resp: "BRIDGE_MAX_BODY_BYTES"},

		// CloudEvents versions and attributes.
		{name: "specversion 0.3", body: ceField("s1", "specversion", `"0.3"`), status: 400, resp: `unsupported CloudEvents specversion "0.3"`},
		{name: "specversion 2.0", body: ceField("s2", "specversion", `"2.0"`), status: 400, resp: `unsupported CloudEvents specversion "2.0"`},
		{name: "binary specversion 0.3", headers: append(binaryHeaders("s3")[:2:2], "ce-specversion", "0.3", "ce-id", "s3", "ce-source", "/registries/reg", "ce-type", acrevent.TypeImagePushed), body: `{` + target + `}`, status: 400, resp: `unsupported CloudEvents specversion "0.3"`},
		{name: "CE without id", body: ceField("", "id", ""), status: 400, resp: "without required attribute id"},
		{name: "CE without source", body: ceField("m2", "source", ""), status: 400, resp: "without required attribute source"},
		{name: "CE without type", body: ceField("m3", "type", ""), status: 400, resp: "without required attribute type"},
		{name: "CE with empty id", body: ceField("", "id", `""`), status: 400, resp: "without required attribute id"},
		{name: "binary ce-id not UTF-8", headers: binaryHeaders("\xd7"), body: `{` + target + `}`, status: 400, resp: "header Ce-Id is not valid UTF-8"},
		{name: "binary ce-id with %, taken as written", headers: binaryHeaders("%D7"), body: `{` + target + `}`, status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a", "%D7", ""}}},
		{name: "binary Content-Type not UTF-8", headers: append(binaryHeaders("u4")[2:], "Content-Type", "application/json; x=\"\xff\""), body: `{` + target + `}`, status: 400, resp: "header Content-Type is not valid UTF-8"},
		{name: "binary extension not UTF-8", headers: append(binaryHeaders("u3"), "ce-ext", "a\xffb"), body: `{` + target + `}`, status: 400, resp: "header Ce-Ext is not valid UTF-8"},
		{name: "binary CE without ce-source", headers: []string{"Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "m4", "ce-type", acrevent.TypeImagePushed}, body: `{` + target + `}`, status: 400, resp: "source"},

		// Mixed batches: the valid events are stored, the rest dead-lettered, nothing lost.
		{
			name: "mixed batch",
			body: "[" + egData("mx1", `{`+target+`}`) + `,42,{"no":"schema"},` + ceField("mx2", "specversion", `"0.3"`) + "," +
				`{"id":"mx3","id":"mx4","eventType":"x"},` + egData("mx5", `"bad data"`) + "," + ceField("mx6", "id", `"mx6"`) + "]",
			status: 200, resp: ok(7, 5),
			want: []storedMsg{
				{"acr.image.pushed.reg.a", "mx1", ""},
				dead("mx5", "not a JSON object"),
				{"acr.image.deleted.reg.a", "mx6", ""},
				dead("", "not a JSON object"),
				dead("", "unknown schema"),
				dead("", "specversion"),
				dead("", "twice"),
			},
		},

		// Hostile repository names never leave their token.
		{name: "repository with dots", body: egData("r1", `{"target":{"repository":"web.api/v1.2","tag":"1"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.web%2Eapi.v1%2E2", "r1", ""}}},
		{name: "repository with wildcards", body: egData("r2", `{"target":{"repository":"*/>","tag":"1"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.%2A.%3E", "r2", ""}}},
		{name: "repository with spaces", body: egData("r3", `{"target":{"repository":"a b/c\td","tag":"1"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a%20b.c%09d", "r3", ""}}},
		{name: "repository with ../", body: egData("r4", `{"target":{"repository":"../../etc","tag":"1"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.%2E%2E.%2E%2E.etc", "r4", ""}}},
		{name: "repository of 300 characters", body: egData("r5", `{"target":{"repository":"`+strings.Repeat("r", 300)+`","tag":"1"}}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg." + strings.Repeat("r", 300), "r5", ""}}},
		{name: "repository too long for a subject", body: egData("r6", `{"target":{"repository":"`+strings.Repeat("r/", 1100)+`","tag":"1"}}`), status: 200, resp: ok(1, 1), want: []storedMsg{dead("r6", "subject too long")}},
		{name: "registry from the path is escaped too", path: "/webhooks/acr/a.b", body: `{"id":"r7","action":"push",` + target + `}`, status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.a%2Eb.a", "r7", ""}}},

		// Ids that NATS headers cannot carry as they are still de-duplicate on their own.
		{name: "id with CR LF", body: egData("i1\r\nNats-Expected-Stream: X", `{`+target+`}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a", bridge.HashID([]byte("i1\r\nNats-Expected-Stream: X")), ""}}},
		{name: "id with surrounding spaces", body: egData(" i2 ", `{`+target+`}`), status: 200, resp: ok(1, 0), want: []storedMsg{{"acr.image.pushed.reg.a", bridge.HashID([]byte(" i2 ")), ""}}},
	}

	e := newEnv(t)
	seen := 0
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			path := row.path
			if path == "" {
				path = "/eventgrid"
			}
			headers := row.headers
			if headers == nil {
				headers = []string{"Content-Type", "application/json"}
			}
			code, _, resp := e.post(path, []byte(row.body), headers...)
			assert.Equal(t, row.status, code, resp)
			if row.status == 200 {
				assert.JSONEq(t, row.resp, resp)
			} else {
				assert.Contains(t, resp, row.resp)
				assert.Equal(t, 1, strings.Count(resp, "\n"), "a one-line reason: %q", resp)
			}

			all := e.stored()
			got := all[seen:]
			seen = len(all)
			require.Len(t, got, len(row.want), "messages stored")
			for i, w := range row.want {
				assert.Equal(t, w.subject, got[i].Subject)
				if w.id != "" {
					assert.Equal(t, w.id, got[i].Header.Get("Nats-Msg-Id"))
				} else {
					assert.True(t, strings.HasPrefix(got[i].Header.Get("Nats-Msg-Id"), "sha256-"), "a hash id: %q", got[i].Header.Get("Nats-Msg-Id"))
				}
				assert.Contains(t, got[i].Header.Get(acrevent.HeaderError), w.deadReason)
				if w.deadReason == "" {
					assert.Empty(t, got[i].Header.Get(acrevent.HeaderError))
				}
			}
		})
	}
	assert.True(t, e.nc.IsConnected(), "no input closes the bridge's NATS connection")
}

func binaryHeaders(id string) []string {
	return []string{"Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", id, "ce-source", "/registries/reg", "ce-type", acrevent.TypeImagePushed}
}
