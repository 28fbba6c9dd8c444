package bridge

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/internal/jsonscan"
)

// sampleData returns the ACR event data of every sample payload: the webhook bodies, and the data of
// each Event Grid and CloudEvents event.
func sampleData(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "in", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		if strings.HasPrefix(filepath.Base(file), "webhook-") {
			out = append(out, b)
			continue
		}
		var events []struct {
			Data            json.RawMessage
			EventType, Type string
		}
		require.NoError(t, json.Unmarshal(b, &events), file)
		for _, ev := range events {
			if t := ev.EventType + ev.Type; strings.HasPrefix(t, "Microsoft.ContainerRegistry.") && len(ev.Data) > 0 && ev.Data[0] == '{' {
				out = append(out, ev.Data) // ACR event data; not a dead letter's or another type's
			}
		}
	}
	return out
}

// reference is what the envelope's JSON must be: encoding/json's, without HTML escaping.
func reference(t testing.TB, v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(v))
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// parsed is b as jsonscan.Parse reads it, or the zero Value when it declines.
func parsed(b []byte) jsonscan.Value {
	v, _ := jsonscan.Parse(b, jsonscan.MaxDepth)
	return v
}

// TestSampleDataTakesTheFastPath: the data of Azure's samples is read by the one-pass reader, the same
// as encoding/json reads it, and the envelope built from it is written as encoding/json writes it.
func TestSampleDataTakesTheFastPath(t *testing.T) {
	for _, raw := range sampleData(t) {
		var got, want acrevent.EventData
		require.True(t, readData(parsed(raw), &got), "declined %s", raw)
		require.NoError(t, json.Unmarshal(raw, &want))
		assert.Equal(t, want, got)

		env := acrevent.Envelope{SpecVersion: "1.0", ID: "id", Source: "/s", Type: acrevent.TypeImagePushed, Time: "t", DataContentType: "application/json", Data: got}
		assert.Equal(t, string(reference(t, env)), string(appendEnvelope(nil, &env)))
		assert.Equal(t, string(reference(t, env.Data)), string(appendData(nil, &env.Data)))
	}
	for _, in := range []string{
		`{"target":{"size":"1"}}`,                        // a string where a number goes
		`{"target":{"size":1.5}}`,                        // not an integer
		`{"target":{"size":99999999999999999999}}`,       // past int64
		`{"target":[]}`,                                  // an array where an object goes
		`{"action":"push","Action":"delete"}`,            // one field, two spellings
		`{"request":{"host":"a","HOST":"b"}}`,            // ditto, nested
		`{"actor":{"name":1}}`,                           // a number where a string goes
		`{"registry":true}`,                              // encoding/json refuses this too
		`{"target":{"repository":"a","repository":"b"}}`, // a key twice
	} {
		var d acrevent.EventData
		assert.False(t, readData(parsed([]byte(in)), &d), in)
	}
	var d acrevent.EventData
	require.True(t, readData(parsed([]byte(`{"connectedregistry":{"name":"edge"},"target":null,"request":{"ID":"r"},"x":[{}]}`)), &d))
	assert.Equal(t, acrevent.EventData{ConnectedRegistry: &acrevent.ConnectedRegistry{Name: "edge"}, Request: &acrevent.Request{ID: "r"}}, d)
}

// TestAppendStringEscapes: strings that need escaping are written exactly as encoding/json writes them.
func TestAppendStringEscapes(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnl\n", "\x00\x1f", "é", "<&>",
		"line\u2028sep", "bad\xffutf8", "mixé<>"} {
		assert.Equal(t, string(reference(t, s)), string(appendString(nil, s)), "%q", s)
	}
}

// FuzzReadData: whenever the one-pass reader reads an event's data, encoding/json reads the same data
// from it without error.
func FuzzReadData(f *testing.F) {
	for _, raw := range sampleData(f) {
		f.Add(raw)
	}
	f.Add([]byte(`{"connectedregistry":{"name":"edge"},"target":{"size":-0,"length":null},"request":{"ID":"r"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got acrevent.EventData
		if !readData(parsed(raw), &got) {
			return
		}
		var want inboundData
		require.NoError(t, json.Unmarshal(raw, &want))
		require.Equal(t, want.EventData, got)
	})
}

// FuzzAppendEnvelope: the envelope and its data are written byte for byte as encoding/json writes them,
// whatever the strings hold and whichever optional fields are set.
func FuzzAppendEnvelope(f *testing.F) {
	f.Add("id-1", "team/web", "v1", "docker/20.10 go1.21", int64(524), uint16(0xffff))
	f.Add("", "", "", "", int64(0), uint16(0))
	f.Add("é\u2028\"\\\n", "<a&b>", "\xff", "\x01", int64(-1), uint16(0x5555))
	f.Fuzz(func(t *testing.T, id, repo, tag, text string, size int64, set uint16) {
		on := func(bit int) bool { return set&(1<<bit) != 0 }
		pick := func(bit int, s string) string {
			if on(bit) {
				return s
			}
			return ""
		}
		d := acrevent.EventData{Registry: repo, Origin: text, ID: pick(0, id), Action: pick(1, text), Timestamp: pick(2, tag), Location: pick(3, repo)}
		if on(4) {
			d.Target = &acrevent.Target{MediaType: pick(5, text), Digest: pick(6, id), Repository: pick(7, repo), Tag: pick(8, tag),
				URL: pick(9, text), Name: pick(10, repo), Version: pick(11, tag)}
			if on(12) {
				d.Target.Size = &size
			}
			if on(13) {
				d.Target.Length = &size
			}
		}
		if on(14) {
			d.Request = &acrevent.Request{ID: pick(0, id), Host: pick(1, repo), Method: pick(2, tag), UserAgent: pick(3, text), Addr: pick(5, id)}
			d.Actor = &acrevent.Actor{Name: pick(6, text)}
		}
		if on(15) {
			d.Source = &acrevent.Source{Addr: pick(7, id), InstanceID: pick(8, text)}
			d.ConnectedRegistry = &acrevent.ConnectedRegistry{Name: pick(9, repo)}
		}
		if on(3) {
			d.Artifact = fuzzArtifact(pick, id, repo, tag, text)
		}
		env := acrevent.Envelope{SpecVersion: "1.0", ID: id, Source: text, Type: tag, Subject: pick(4, repo), Time: tag, DataContentType: "application/json", Data: d}
		require.Equal(t, string(reference(t, env)), string(appendEnvelope(nil, &env)))
		require.Equal(t, string(reference(t, d)), string(appendData(nil, &d)))
	})
}

// fuzzArtifact is a data.artifact with the fields pick lets through, the looked-up ones included.
func fuzzArtifact(pick func(int, string) string, id, repo, tag, text string) *acrevent.Artifact {
	a := &acrevent.Artifact{Kind: pick(0, tag), Index: pick(1, "x") != "", ArtifactType: pick(2, text), Lookup: pick(5, id)}
	if pick(6, "x") != "" {
		a.Subject = &acrevent.ArtifactSubject{Digest: pick(7, id), MediaType: pick(8, text)}
	}
	if pick(9, "x") != "" {
		a.Platforms = []acrevent.Platform{{OS: pick(10, repo), Architecture: pick(11, tag), Variant: pick(12, text), Digest: pick(13, id)}, {}}
	}
	if pick(14, "x") != "" {
		a.Annotations = map[string]string{repo: tag, text: id, "org.opencontainers.image.source": repo}
	}
	return a
}

// TestSizeHintCoversTheSamples: the envelope of every sample is written into the room sizeHint gives,
// without growing the buffer.
func TestSizeHintCoversTheSamples(t *testing.T) {
	for _, raw := range sampleData(t) {
		var d acrevent.EventData
		require.True(t, readData(parsed(raw), &d))
		d.Registry, d.Origin = "myregistry", "cloudevents"
		env := acrevent.Envelope{SpecVersion: "1.0", ID: "831e1650-001e-001b-66ab-eeb76e069631", Type: acrevent.TypeImagePushed, Subject: "hello-world:v1",
			Source: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",
			Time:   "2024-05-01T10:00:00.1234567Z", DataContentType: "application/json", Data: d}
		out := appendEnvelope(make([]byte, 0, sizeHint(&env)), &env)
		assert.LessOrEqual(t, len(out), sizeHint(&env), "%s", out)
	}
}

// TestSizeHintCoversLookups: a looked-up artifact, an index with its platforms and annotations, fits the
// room sizeHint gives too.
func TestSizeHintCoversLookups(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	env := acrevent.Envelope{SpecVersion: "1.0", ID: "id", Type: acrevent.TypeImagePushed, Time: "2024-05-01T10:00:00Z",
		DataContentType: "application/json", Data: acrevent.EventData{Registry: "r", Origin: "webhook",
			Artifact: &acrevent.Artifact{Kind: "image", Index: true, ArtifactType: "application/vnd.example+json", Lookup: acrevent.LookupOK,
				Subject: &acrevent.ArtifactSubject{Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json"},
				Annotations: map[string]string{"org.opencontainers.image.source": "https://github.com/example/web",
					"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567"}}}}
	for range 8 {
		env.Data.Artifact.Platforms = append(env.Data.Artifact.Platforms, acrevent.Platform{OS: "linux", Architecture: "arm64", Variant: "v8", Digest: digest})
	}
	out := appendEnvelope(make([]byte, 0, sizeHint(&env)), &env)
	assert.LessOrEqual(t, len(out), sizeHint(&env), "%s", out)
	assert.Equal(t, string(reference(t, env)), string(out))
}
