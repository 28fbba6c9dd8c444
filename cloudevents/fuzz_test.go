package cloudevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// addSamples adds the sample payloads of the bridge's golden tests as seeds.
func addSamples(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "bridge", "testdata", "in", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no sample payloads: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecode: Decode accepts a body only if every event it returns is whole (an id, a schema, a type,
// the raw object as valid JSON, data as valid JSON or nil), refuses it only with ErrMalformed, and keeps
// every element it could not read, with a reason.
func FuzzDecode(f *testing.F) {
	addSamples(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Decoder{}.Decode(http.Header{}, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("refused without ErrMalformed: %v", err)
			}
			return
		}
		if len(d.Events) == 0 {
			t.Fatal("accepted a body with no event")
		}
		for _, ev := range d.Events {
			checkEvent(t, ev)
			if ev.Schema == SchemaWebhook {
				t.Fatal("Decode returned a webhook")
			}
		}
		for _, inv := range d.Invalid {
			if inv.Reason == "" || !json.Valid(inv.Raw) {
				t.Fatalf("invalid element %q without reason or not JSON", inv.Raw)
			}
		}
	})
}

// FuzzDecodeBinary: a binary-mode CloudEvent is accepted only with its required attributes, which the
// event then carries, and with its ce-* headers kept.
func FuzzDecodeBinary(f *testing.F) {
	f.Add([]byte(`{"action":"push"}`), "1.0", "id", "/registries/r", "Microsoft.ContainerRegistry.ImagePushed", "2024-05-01T12:00:00Z", "application/json")
	f.Add([]byte(`not json`), "1.0", "id", "s", "t", "", "text/plain")
	f.Add([]byte(``), "0.3", "", "s", "t", "yesterday", "")
	f.Fuzz(func(t *testing.T, body []byte, specversion, id, source, typ, tm, ct string) {
		h := http.Header{}
		for k, v := range map[string]string{"ce-specversion": specversion, "ce-id": id, "ce-source": source, "ce-type": typ, "ce-time": tm, "Content-Type": ct} {
			if v != "" {
				h.Set(k, v)
			}
		}
		if specversion == "" {
			return
		}
		d, err := Decoder{}.Decode(h, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("refused without ErrMalformed: %v", err)
			}
			return
		}
		if !d.Binary || len(d.Events) != 1 {
			t.Fatalf("binary delivery %+v", d)
		}
		ev := d.Events[0]
		if ev.CE == nil || ev.ID == "" || ev.Source == "" || ev.Type == "" || ev.CE.SpecVersion() != "1.0" {
			t.Fatalf("accepted an incomplete CloudEvent %+v", ev)
		}
		if ev.Headers["Ce-Id"] == nil {
			t.Fatalf("ce-id header not kept: %v", ev.Headers)
		}
		if ev.Data != nil && !json.Valid(ev.Data) {
			t.Fatalf("data %q is not JSON", ev.Data)
		}
		if !bytes.Equal(ev.Raw, body) {
			t.Fatal("raw body changed")
		}
	})
}

// FuzzDecodeWebhook: a webhook is accepted only as one JSON object, kept byte for byte (but for
// surrounding space).
func FuzzDecodeWebhook(f *testing.F) {
	addSamples(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Decoder{}.DecodeWebhook(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("refused without ErrMalformed: %v", err)
			}
			return
		}
		if ev.Schema != SchemaWebhook || !bytes.Equal(ev.Raw, bytes.TrimSpace(body)) || !bytes.Equal(ev.Data, ev.Raw) {
			t.Fatalf("webhook event %+v", ev)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(ev.Raw, &obj); err != nil {
			t.Fatalf("accepted a webhook that is not a JSON object: %v", err)
		}
	})
}

func checkEvent(t *testing.T, ev Event) {
	t.Helper()
	if ev.ID == "" || ev.Type == "" {
		t.Fatalf("event without id or type: %+v", ev)
	}
	if ev.Schema != SchemaEventGrid && ev.Schema != SchemaCloudEvents {
		t.Fatalf("schema %q", ev.Schema)
	}
	if !json.Valid(ev.Raw) || bytes.TrimSpace(ev.Raw)[0] != '{' {
		t.Fatalf("raw %q is not a JSON object", ev.Raw)
	}
	if ev.Data != nil && !json.Valid(ev.Data) {
		t.Fatalf("data %q is not JSON", ev.Data)
	}
}

// FuzzCheckJSON: on valid JSON, checkJSON finds too deep nesting and repeated keys exactly when a
// reference walk with encoding/json's tokenizer does.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"a":1},"b":[{"a":1},{"a":2}]}`, `{"\u0061":1,"a":2}`, `[[[[[[1]]]]]]`,
		`{"a\"":1,"a\\":2}`, `"{\"a\":1,\"a\":1}"`, `{"k":"\"","k2":":"}`} {
		f.Add([]byte(s), 4)
	}
	f.Fuzz(func(t *testing.T, b []byte, depth int) {
		if depth < 1 || depth > 100 || !json.Valid(b) {
			return
		}
		err := checkJSON(b, depth)
		wantDeep, wantDup := referenceCheck(t, b, depth)
		switch {
		case err == nil && (wantDeep || wantDup):
			t.Fatalf("checkJSON(%q, %d) passed; reference: deep %v, duplicate %v", b, depth, wantDeep, wantDup)
		case err != nil && !wantDeep && !wantDup:
			t.Fatalf("checkJSON(%q, %d) = %v; reference finds nothing", b, depth, err)
		case err != nil && !errors.Is(err, ErrMalformed):
			t.Fatalf("error without ErrMalformed: %v", err)
		}
	})
}

// referenceCheck walks b with encoding/json's tokenizer.
func referenceCheck(t *testing.T, b []byte, maxDepth int) (deep, dup bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // a number too large for float64 is still valid JSON
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return deep, dup
		}
		if err != nil {
			t.Fatalf("reference tokenizer: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = true
				}
				stack = append(stack, &frame{object: d == '{', keys: map[string]bool{}, wantKey: d == '{'})
				if len(stack) > maxDepth {
					deep = true
				}
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top != nil && top.object {
			if top.wantKey {
				k := tok.(string)
				if top.keys[k] {
					dup = true
				}
				top.keys[k] = true
			}
			top.wantKey = !top.wantKey
		}
	}
}

// FuzzSplitArray: on a valid JSON array, splitArray finds exactly the elements encoding/json does, and
// with a limit stops one past it; and when it accepts an array whose elements are each valid JSON,
// encoding/json accepts the array too.
func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, ` [ 1 , "a]" , {"b":[1,{"c":"}"}]} , null ] `, `[{"a":"\"]"}]`, `[1 2]`, `[1,]`, `[[]]x`, `["\\"]`} {
		f.Add([]byte(s))
	}
	addSamples(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var ref []json.RawMessage
		refErr := json.Unmarshal(b, &ref)
		got, ok := splitArray(b, math.MaxInt)
		if refErr == nil {
			if !ok {
				t.Fatalf("splitArray refused %q, a valid array", b)
			}
			if first, ok := splitArray(b, 2); len(ref) > 2 && (!ok || len(first) != 3 || !bytes.Equal(first[2], got[2])) {
				t.Fatalf("splitArray with a limit of 2 returned %d elements of %q, %v", len(first), b, ok)
			}
			if len(got) != len(ref) {
				t.Fatalf("splitArray found %d elements in %q, encoding/json %d", len(got), b, len(ref))
			}
			for i := range ref {
				if !bytes.Equal(bytes.TrimSpace(got[i]), bytes.TrimSpace(ref[i])) {
					t.Fatalf("element %d: %q, encoding/json %q", i, got[i], ref[i])
				}
			}
			return
		}
		if !ok {
			return
		}
		for _, e := range got {
			if !json.Valid(e) {
				return // the element's decoder refuses it
			}
		}
		t.Fatalf("splitArray accepted %q, whose elements are valid, but encoding/json says %v", b, refErr)
	})
}
