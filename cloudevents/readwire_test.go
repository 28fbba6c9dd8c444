package cloudevents

import (
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/jsonscan"
)

// sampleObjects returns every event object of the bridge's sample payloads: the elements of the arrays
// and the objects themselves.
func sampleObjects(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("..", "bridge", "testdata", "in", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		if elems, ok := splitArray(b, math.MaxInt); ok {
			for _, e := range elems {
				out = append(out, e)
			}
			continue
		}
		out = append(out, b)
	}
	return out
}

// TestSamplesTakeTheFastPath: Azure's own samples are read by the one-pass reader, not handed to
// encoding/json, and read the same as encoding/json reads them.
func TestSamplesTakeTheFastPath(t *testing.T) {
	for _, b := range sampleObjects(t) {
		got, ok := readWire(b, DefaultMaxDepth)
		require.True(t, ok, "declined %s", b)
		if len(got.Data) > 0 && got.Data[0] == '{' { // an object is kept parsed; a dead letter's string is not
			assert.Equal(t, jsonscan.Object, got.data.Kind(), "data not kept parsed: %s", b)
		}
		var want wireEvent
		require.NoError(t, json.Unmarshal(b, &want))
		assert.Equal(t, want, withoutParse(t, got))
	}
	for _, in := range []string{
		`{"id":"a","ID":"b","eventType":"x"}`, // one field, two spellings
		`{"id":5,"eventType":"x"}`,            // a number where a string goes
		`{"specversion":1,"id":"a"}`,          // ditto
		`{"\u0069d":"a","eventType":"x"}`,     // an escaped key
		`{"id":"a","id":"b","eventType":"x"}`, // a key twice
		`["not an object"]`,                   // not an object
	} {
		_, ok := readWire([]byte(in), DefaultMaxDepth)
		assert.False(t, ok, in)
	}
	w, ok := readWire([]byte(`{"specversion":null,"EventType":"x","data":null,"id":"\u00e9"}`), DefaultMaxDepth)
	require.True(t, ok)
	assert.Equal(t, wireEvent{EventType: "x", Data: json.RawMessage("null"), ID: "é"}, withoutParse(t, w))
}

// FuzzReadWire: whenever the one-pass reader reads an event, encoding/json reads the same event from it
// without error, and the nesting and repeated-key checks pass.
func FuzzReadWire(f *testing.F) {
	for _, b := range sampleObjects(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":null,"EventType":"x","data":null,"Id":"\u00e9","connectedregistry":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := readWire(b, DefaultMaxDepth)
		if !ok {
			return
		}
		var want wireEvent
		require.NoError(t, json.Unmarshal(b, &want))
		require.NoError(t, checkJSON(b, DefaultMaxDepth))
		require.Equal(t, want, withoutParse(t, got))
	})
}

// withoutParse checks that the parse of the data that the one-pass reader keeps is of that data, then
// drops it, so that what remains compares with what encoding/json gives, which keeps none.
func withoutParse(t *testing.T, w wireEvent) wireEvent {
	if w.data.Kind() != jsonscan.Invalid {
		require.Equal(t, string(w.Data), string(w.data.Bytes()))
	}
	w.data = jsonscan.Value{}
	return w
}

// withoutParsed is withoutParse for the events of a delivery.
func withoutParsed(t *testing.T, d *Delivery) *Delivery {
	for i, ev := range d.Events {
		if ev.Parsed.Kind() != jsonscan.Invalid {
			require.Equal(t, string(ev.Data), string(ev.Parsed.Bytes()))
		}
		d.Events[i].Parsed = jsonscan.Value{}
	}
	return d
}

// FuzzDecodeFastPath: Decode gives exactly what it gives with the one-pass readers off: the same events,
// the same invalid elements, the same error.
func FuzzDecodeFastPath(f *testing.F) {
	addSamples(f)
	for _, b := range sampleObjects(f) {
		f.Add(b)
	}
	f.Add([]byte(`[{"id":"1","eventType":"x"},{"id":2},{"specversion":"0.3","id":"a","source":"s","type":"t"},[],"s",{"Id":"3","eventType":"y","ID":"4"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gotErr := Decoder{}.Decode(http.Header{}, body)
		want, wantErr := Decoder{slowOnly: true}.Decode(http.Header{}, body)
		if wantErr != nil {
			require.EqualError(t, gotErr, wantErr.Error())
			return
		}
		require.NoError(t, gotErr)
		require.Equal(t, want, withoutParsed(t, got))
	})
}

// FuzzDecodeWebhookFastPath: DecodeWebhook gives exactly what it gives with the one-pass reader off, and
// keeps the parse of every sample.
func FuzzDecodeWebhookFastPath(f *testing.F) {
	for _, b := range sampleObjects(f) {
		got, err := Decoder{}.DecodeWebhook(b)
		require.NoError(f, err)
		require.Equal(f, jsonscan.Object, got.Parsed.Kind(), "not kept parsed: %s", b)
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a","id":"b"}`))
	f.Add([]byte(` {"\u0069d":"a","target":{"repository":"r"}} `))
	f.Add([]byte(`[{"id":"a"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gotErr := Decoder{}.DecodeWebhook(body)
		want, wantErr := Decoder{slowOnly: true}.DecodeWebhook(body)
		if wantErr != nil {
			require.EqualError(t, gotErr, wantErr.Error())
			return
		}
		require.NoError(t, gotErr)
		require.Equal(t, []Event{want}, withoutParsed(t, &Delivery{Events: []Event{got}}).Events)
	})
}
