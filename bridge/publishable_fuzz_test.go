package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// fuzzPaths are delivery paths in both output modes; prepare publishes nothing, so they need no NATS.
func fuzzPaths() map[bool]*Path {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := PathOptions{Subjects: Subjects{Prefix: "acr", Passthrough: "eventgrid"}, Passthrough: true}
	structured, binary := opts, opts
	structured.Mode, binary.Mode = ModeStructured, ModeBinary
	return map[bool]*Path{false: NewPath(structured, nil, log), true: NewPath(binary, nil, log)}
}

// fuzzDecoder reads bodies as the bridge's HTTP server does.
var fuzzDecoder = cloudevents.Decoder{MaxDepth: 64}

func addPayloadSeeds(f *testing.F, add func([]byte)) {
	files, err := filepath.Glob(filepath.Join("testdata", "in", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no sample payloads: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

// FuzzPublishable: any body the bridge accepts, on either endpoint and in either output mode, becomes
// messages NATS takes as they are: a literal subject under one of the bridge's prefixes, valid header
// names, a Nats-Msg-Id that survives the trip unchanged; and every ACR envelope reads back with
// DecodeMessage under the same id.
func FuzzPublishable(f *testing.F) {
	addPayloadSeeds(f, func(b []byte) { f.Add(b, false); f.Add(b, true) })
	paths := fuzzPaths()
	f.Fuzz(func(t *testing.T, body []byte, binaryOut bool) {
		p := paths[binaryOut]
		r := httptest.NewRequest(http.MethodPost, "/eventgrid", nil)
		if d, err := fuzzDecoder.Decode(r.Header, body); err == nil {
			checkBatch(t, p, &Delivery{Events: d.Events, Invalid: d.Invalid})
		}
		if ev, err := fuzzDecoder.DecodeWebhook(body); err == nil {
			checkBatch(t, p, &Delivery{Events: []cloudevents.Event{ev}, Registry: "reg"})
		}
	})
}

// FuzzPublishableBinary is FuzzPublishable for binary-mode CloudEvents, whose attributes arrive in headers.
func FuzzPublishableBinary(f *testing.F) {
	f.Add([]byte(`{"action":"push","target":{"repository":"a","tag":"1"}}`), "id-1", "/subscriptions/s/providers/Microsoft.ContainerRegistry/registries/r", acrevent.TypeImagePushed, "2024-05-01T12:00:00Z", "application/json", false)
	f.Add([]byte(`{"api":"PutBlob"}`), "id-2", "/storage", "Microsoft.Storage.BlobCreated", "", "application/json", true)
	f.Add([]byte(`"text"`), "id-3", "s", acrevent.TypeChartDeleted, "bad time", "text/plain", true)
	paths := fuzzPaths()
	f.Fuzz(func(t *testing.T, body []byte, id, source, typ, tm, ct string, binaryOut bool) {
		p := paths[binaryOut]
		r := httptest.NewRequest(http.MethodPost, "/eventgrid", nil)
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": id, "ce-source": source, "ce-type": typ, "ce-time": tm, "Content-Type": ct} {
			r.Header.Set(k, v)
		}
		if d, err := fuzzDecoder.Decode(r.Header, body); err == nil {
			checkBatch(t, p, &Delivery{Events: d.Events, Invalid: d.Invalid})
		}
	})
}

func checkBatch(t *testing.T, p *Path, d *Delivery) {
	t.Helper()
	b, err := p.prepare(context.Background(), d, &Report{Results: make([]Result, len(d.Events))})
	if err != nil {
		if errors.Is(err, cloudevents.ErrMalformed) {
			return // a validation event without a code: the whole request is 400
		}
		t.Fatalf("accepted body cannot be prepared: %v", err)
	}
	if len(b.msgs) == 0 && !onlyManagement(d) {
		t.Fatalf("accepted %d events but built no message", len(d.Events)+len(d.Invalid))
	}
	for _, m := range b.msgs {
		requirePublishable(t, m)
	}
}

// onlyManagement reports whether a delivery holds only Event Grid subscription events, which publish nothing.
func onlyManagement(d *Delivery) bool {
	for _, ev := range d.Events {
		if ev.Type != cloudevents.TypeSubscriptionValidation && ev.Type != cloudevents.TypeSubscriptionDeleted {
			return false
		}
	}
	return len(d.Invalid) == 0
}

func requirePublishable(t *testing.T, m *nats.Msg) {
	t.Helper()
	if !strings.HasPrefix(m.Subject, "acr.") && !strings.HasPrefix(m.Subject, "eventgrid.") {
		t.Fatalf("subject %q is outside the bridge's prefixes", m.Subject)
	}
	if len(m.Subject) > MaxSubjectLen {
		t.Fatalf("subject of %d bytes", len(m.Subject))
	}
	for _, tok := range strings.Split(m.Subject, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("subject %q has the token %q", m.Subject, tok)
		}
	}
	for k := range m.Header {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ':' }) {
			t.Fatalf("header name %q", k)
		}
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	if id == "" || id != textproto.TrimString(id) || strings.ContainsAny(id, "\r\n") {
		t.Fatalf("Nats-Msg-Id %q would not survive the trip", id)
	}
	if m.Subject == "acr.deadletter" || !strings.HasPrefix(m.Subject, "acr.") {
		return
	}
	env, err := acrevent.DecodeMessage(m)
	if err != nil {
		t.Fatalf("a consumer cannot read %s: %v", m.Subject, err)
	}
	if msgID(env.ID) != id {
		t.Fatalf("envelope id %q, Nats-Msg-Id %q", env.ID, id)
	}
}
