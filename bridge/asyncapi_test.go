package bridge_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
)

const asyncAPIFile = "../docs/asyncapi.yaml"

// asyncAPI is docs/asyncapi.yaml as JSON values, the document the consumers of other languages generate
// code from.
func asyncAPI(t *testing.T) any {
	t.Helper()
	b, err := os.ReadFile(asyncAPIFile)
	require.NoError(t, err)
	var doc any
	require.NoError(t, yaml.Unmarshal(b, &doc))
	j, err := json.Marshal(doc)
	require.NoError(t, err)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	require.NoError(t, err)
	return v
}

// asyncAPISchemas compiles the named schemas of the AsyncAPI document (a pointer under the document,
// such as components/schemas/envelope) with a JSON Schema validator; AsyncAPI's schema format is a
// superset of JSON Schema draft 7.
func asyncAPISchemas(t *testing.T, pointers ...string) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	const url = "https://acr-nats-bridge.invalid/asyncapi.json"
	require.NoError(t, c.AddResource(url, asyncAPI(t)))
	out := map[string]*jsonschema.Schema{}
	for _, p := range pointers {
		s, err := c.Compile(url + "#/" + p)
		require.NoError(t, err, p)
		out[p] = s
	}
	return out
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(t, err, "%s", b)
	return v
}

// headerValues is a message's headers as a JSON object, one string per name, as the schemas describe them.
func headerValues(t *testing.T, m *jetstream.RawStreamMsg) any {
	t.Helper()
	h := map[string]string{}
	for k := range m.Header {
		h[k] = m.Header.Get(k)
	}
	b, err := json.Marshal(h)
	require.NoError(t, err)
	return jsonValue(t, b)
}

// Every golden message, structured mode as published by default, is a valid envelope of the AsyncAPI
// document, headers included; the schema forbids what it does not name, so an envelope that grows a
// field fails here until the document has it.
func TestGoldenEnvelopesMatchAsyncAPI(t *testing.T) {
	s := asyncAPISchemas(t, "components/schemas/envelope", "components/schemas/structuredHeaders",
		"components/messages/passthrough/payload", "components/messages/passthrough/headers", "components/messages/deadLetter/headers")
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, len(goldenCases))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			var msgs []published
			require.NoError(t, json.Unmarshal(b, &msgs))
			require.NotEmpty(t, msgs)
			for _, m := range msgs {
				hb, err := json.Marshal(m.Headers)
				require.NoError(t, err)
				switch {
				case m.Subject == "acr.deadletter":
					assert.NoError(t, s["components/messages/deadLetter/headers"].Validate(jsonValue(t, hb)), m.Subject)
				case strings.HasPrefix(m.Subject, "eventgrid."):
					assert.NoError(t, s["components/messages/passthrough/headers"].Validate(jsonValue(t, hb)), m.Subject)
					assert.NoError(t, s["components/messages/passthrough/payload"].Validate(jsonValue(t, m.Body)), m.Subject)
				default:
					assert.NoError(t, s["components/schemas/structuredHeaders"].Validate(jsonValue(t, hb)), m.Subject)
					assert.NoError(t, s["components/schemas/envelope"].Validate(jsonValue(t, m.Body)), m.Subject)
				}
			}
		})
	}
}

// The same deliveries in binary mode: the ce-* headers and the data body match their schemas.
func TestBinaryModeMatchesAsyncAPI(t *testing.T) {
	s := asyncAPISchemas(t, "components/schemas/data", "components/schemas/binaryHeaders")
	for _, tc := range goldenCases {
		t.Run(tc.file, func(t *testing.T) {
			e := newEnv(t, func(s *setup) { s.path.Mode = bridge.ModeBinary })
			body, err := os.ReadFile(filepath.Join("testdata", "in", tc.file+".json"))
			require.NoError(t, err)
			code, _, resp := e.post(tc.path, body, tc.headers...)
			require.Equal(t, 200, code, resp)
			msgs := e.stored()
			require.NotEmpty(t, msgs)
			for _, m := range msgs {
				if m.Subject == "acr.deadletter" || strings.HasPrefix(m.Subject, "eventgrid.") {
					continue // not envelopes: TestPassthroughAndDeadLetterMatchAsyncAPI
				}
				assert.NoError(t, s["components/schemas/binaryHeaders"].Validate(headerValues(t, m)), m.Subject)
				assert.NoError(t, s["components/schemas/data"].Validate(jsonValue(t, m.Data)), m.Subject)
			}
		})
	}
}

// Passed-through events and dead letters match their messages in the document.
func TestPassthroughAndDeadLetterMatchAsyncAPI(t *testing.T) {
	s := asyncAPISchemas(t,
		"components/messages/passthrough/payload", "components/messages/passthrough/headers",
		"components/messages/deadLetter/headers")
	e := newEnv(t)
	body := `[{"id":"blob-1","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
		"subject":"/blobServices/default/containers/c/blobs/b","eventType":"Microsoft.Storage.BlobCreated",
		"eventTime":"2024-01-02T03:04:05Z","data":{"url":"https://acct.blob.core.windows.net/c/b"},"dataVersion":"1"},
		{"id":"bad-1","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
		"subject":"x","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-01-02T03:04:05Z",
		"data":{"action":"push"},"dataVersion":"1"}]`
	code, _, resp := e.post("/eventgrid", []byte(body), "Content-Type", "application/json", "aeg-event-type", "Notification")
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Len(t, msgs, 2)
	bySubject := map[string]*jetstream.RawStreamMsg{}
	for _, m := range msgs {
		bySubject[m.Subject] = m
	}

	pass := bySubject["eventgrid.Microsoft.Storage.BlobCreated"]
	require.NotNil(t, pass, "subjects: %v", bySubject)
	assert.NoError(t, s["components/messages/passthrough/headers"].Validate(headerValues(t, pass)))
	assert.NoError(t, s["components/messages/passthrough/payload"].Validate(jsonValue(t, pass.Data)))

	dead := bySubject["acr.deadletter"]
	require.NotNil(t, dead, "subjects: %v", bySubject)
	assert.NoError(t, s["components/messages/deadLetter/headers"].Validate(headerValues(t, dead)))
	assert.Contains(t, string(dead.Data), `"bad-1"`, "a dead letter is the event as received")
}

// The schemas are not vacuous: they refuse what a consumer must not see.
func TestAsyncAPISchemaRefuses(t *testing.T) {
	s := asyncAPISchemas(t, "components/schemas/envelope")["components/schemas/envelope"]
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "webhook-push.json"))
	require.NoError(t, err)
	var msgs []published
	require.NoError(t, json.Unmarshal(b, &msgs))
	valid := string(msgs[0].Body)
	require.NoError(t, s.Validate(jsonValue(t, []byte(valid))))

	for name, edit := range map[string][2]string{
		"a field the schema lacks":   {`"specversion"`, `"extra": 1, "specversion"`},
		"a data field it lacks":      {`"registry"`, `"tenant": "x", "registry"`},
		"a target field it lacks":    {`"repository"`, `"layers": 3, "repository"`},
		"another type":               {`Microsoft.ContainerRegistry.ImagePushed`, `Microsoft.Storage.BlobCreated`},
		"a time not in UTC":          {`"time": "2017-11-17T16:52:01.343145347Z"`, `"time": "2017-11-17T16:52:01+01:00"`},
		"another origin":             {`"origin": "webhook"`, `"origin": "smtp"`},
		"a size that is not a count": {`"size": 524`, `"size": "524"`},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(valid, edit[0], edit[1], 1)
			require.NotEqual(t, valid, bad, "the golden no longer contains %s", edit[0])
			assert.Error(t, s.Validate(jsonValue(t, []byte(bad))))
		})
	}
}

// Every field of acrevent.Envelope, at every depth, is a property of the document's schema: a field added
// to the Go type fails here, even before a golden carries it.
func TestAsyncAPINamesEveryEnvelopeField(t *testing.T) {
	doc := asyncAPI(t).(map[string]any)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	var check func(path string, typ reflect.Type, schema map[string]any)
	check = func(path string, typ reflect.Type, schema map[string]any) {
		if ref, ok := schema["$ref"].(string); ok {
			schema = schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
		}
		props, _ := schema["properties"].(map[string]any)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			sub, ok := props[name].(map[string]any)
			if !assert.True(t, ok, "docs/asyncapi.yaml lacks %s%s (acrevent field %s.%s)", path, name, typ.Name(), f.Name) {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				check(path+name+".", ft, sub)
			}
		}
	}
	check("", reflect.TypeFor[acrevent.Envelope](), schemas["envelope"].(map[string]any))
}

// Every golden message's subject is the address of one of the document's channels, and an ACR event's
// {artifact} token is its data.artifact.kind: a subscriber reading the document subscribes to the
// subjects the bridge publishes.
func TestGoldenSubjectsAreAsyncAPIChannels(t *testing.T) {
	doc := asyncAPI(t).(map[string]any)
	var addresses []*regexp.Regexp
	for _, ch := range doc["channels"].(map[string]any) {
		addr := ch.(map[string]any)["address"].(string)
		pattern := regexp.QuoteMeta(addr)
		pattern = strings.ReplaceAll(pattern, `\{registry\}`, `[A-Za-z0-9_%-]+`)
		pattern = strings.ReplaceAll(pattern, `\{repository\}`, `[A-Za-z0-9_%-]+(\.[A-Za-z0-9_%-]+)*`)
		pattern = strings.ReplaceAll(pattern, `\{type\}`, `[A-Za-z0-9_%-]+(\.[A-Za-z0-9_%-]+)*`)
		addresses = append(addresses, regexp.MustCompile("^"+pattern+"$"))
	}
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	require.NoError(t, err)
	kinds := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var msgs []published
		require.NoError(t, json.Unmarshal(b, &msgs))
		for _, m := range msgs {
			assert.True(t, slices.ContainsFunc(addresses, func(re *regexp.Regexp) bool { return re.MatchString(m.Subject) }),
				"%s: %s is no channel of docs/asyncapi.yaml", filepath.Base(f), m.Subject)
			env, err := acrevent.DecodeEnvelope(nil, m.Body)
			if m.Subject == "acr.deadletter" || strings.HasPrefix(m.Subject, "eventgrid.") {
				require.ErrorIs(t, err, acrevent.ErrNotEnvelope, m.Subject)
				continue
			}
			require.NoError(t, err)
			parts, err := acrevent.Subjects{Prefix: "acr"}.ParseSubject(m.Subject)
			require.NoError(t, err)
			if env.Type == acrevent.TypePing {
				assert.Nil(t, env.Data.Artifact, "a ping has no artifact")
				continue
			}
			require.NotNil(t, env.Data.Artifact, m.Subject)
			assert.Equal(t, env.Data.Artifact.Kind, parts.Artifact, m.Subject)
			kinds[parts.Artifact] = true
		}
	}
	assert.Len(t, kinds, 7, "a golden for every kind: %v", kinds)
}
