package bridge

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// BenchmarkJSONReaders weighs the library that is to become encoding/json/v2 (go-json-experiment/json,
// its jsontext) against the bridge's own one-pass reader (internal/jsonscan), on what the delivery path
// reads of an Event Grid delivery: the events' attributes and their ACR data.
//
//   - jsonscan: the decoder and the data reader as they are (the duplicate-key and depth rule checked
//     by jsonscan on the way);
//   - jsonscan+jsontext: the same, and jsontext checking each event (UTF-8, syntax, repeated names): what
//     making the library the one checker costs at least, jsonscan still reading;
//   - json/v2: the library alone, checking and reading (the batch, then each event's attributes and data),
//     no depth limit: what replacing jsonscan costs at least.
//
// go test ./bridge -run '^$' -bench JSONReaders
func BenchmarkJSONReaders(b *testing.B) {
	header := http.Header{"Content-Type": {"application/json"}}
	dec := cloudevents.Decoder{MaxDepth: 64, MaxEvents: 5000}
	for _, n := range []int{1, 50} {
		events := make([]string, n)
		for i := range n {
			events[i] = fmt.Sprintf(`{"id":"ev-%d","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/myregistry","subject":"team/app:v1","eventType":"Microsoft.ContainerRegistry.ImagePushed",
		"eventTime":"2024-05-01T10:00:00.1234567Z","dataVersion":"1.0","metadataVersion":"1",
		"data":{"id":"d-%d","timestamp":"2024-05-01T10:00:00.123456789Z","action":"push",
		"target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":"sha256:abc","length":10,"repository":"team/app","tag":"v1"},
		"request":{"id":"r","host":"myregistry.azurecr.io","method":"PUT","useragent":"test"}}}`, i, i)
		}
		body := []byte("[" + strings.Join(events, ",") + "]")
		perEvent := func(b *testing.B) {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		}
		b.Run(fmt.Sprintf("events=%d/jsonscan", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				readWithJSONScan(b, dec, header, body, n, false)
			}
			perEvent(b)
		})
		b.Run(fmt.Sprintf("events=%d/jsonscan+jsontext", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				readWithJSONScan(b, dec, header, body, n, true)
			}
			perEvent(b)
		})
		b.Run(fmt.Sprintf("events=%d/json-v2", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				readWithJSONv2(b, body, n)
			}
			perEvent(b)
		})
	}
}

func readWithJSONScan(b *testing.B, dec cloudevents.Decoder, header http.Header, body []byte, n int, check bool) {
	d, err := dec.Decode(header, body)
	if err != nil || len(d.Events) != n {
		b.Fatalf("decode: %v", err)
	}
	for _, ev := range d.Events {
		if check && !jsontext.Value(ev.Raw).IsValid() {
			b.Fatal("jsontext refused an event")
		}
		var data acrevent.EventData
		if err := decodeData(ev.Data, ev.Parsed, &data); err != nil || data.Target == nil {
			b.Fatalf("data: %v", err)
		}
	}
}

// wireV2 is what the decoder reads of an event, as json/v2 reads it.
type wireV2 struct {
	SpecVersion     *string        `json:"specversion"`
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	Type            string         `json:"type"`
	Subject         string         `json:"subject"`
	Time            string         `json:"time"`
	DataContentType string         `json:"datacontenttype"`
	Data            jsontext.Value `json:"data"`
	DataBase64      string         `json:"data_base64"`
	Topic           string         `json:"topic"`
	EventType       string         `json:"eventType"`
	EventTime       string         `json:"eventTime"`
	DataVersion     string         `json:"dataVersion"`
	TraceParent     string         `json:"traceparent"`
	TraceState      string         `json:"tracestate"`
}

func readWithJSONv2(b *testing.B, body []byte, n int) {
	var elems []jsontext.Value
	if err := jsonv2.Unmarshal(body, &elems); err != nil || len(elems) != n {
		b.Fatalf("batch: %v", err)
	}
	for _, raw := range elems {
		var w wireV2
		if err := jsonv2.Unmarshal(raw, &w, jsonv2.MatchCaseInsensitiveNames(true)); err != nil {
			b.Fatalf("event: %v", err)
		}
		var data acrevent.EventData
		if err := jsonv2.Unmarshal(w.Data, &data, jsonv2.MatchCaseInsensitiveNames(true)); err != nil || data.Target == nil {
			b.Fatalf("data: %v", err)
		}
	}
}
