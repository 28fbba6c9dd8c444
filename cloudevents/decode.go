// Package cloudevents reads what Azure sends to a webhook: Event Grid schema events, CloudEvents 1.0 in
// structured, batch and binary mode, and Azure Container Registry native webhooks. It also answers the two
// Event Grid validation handshakes. It knows nothing of NATS: it turns bytes into Events and says why
// when it cannot.
package cloudevents

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/natsbridge/acr-nats-bridge/internal/jsonscan"
)

// syntaxError is an element that is not JSON at all, as opposed to JSON that is not an event.
type syntaxError struct{ reason string }

func (e syntaxError) Error() string { return ErrMalformed.Error() + ": " + e.reason }
func (e syntaxError) Unwrap() error { return ErrMalformed }

// ErrTooManyEvents is wrapped by the error for an array of more events than Decoder.MaxEvents. It is not
// an ErrMalformed: the body may be valid, only too large for this receiver.
var ErrTooManyEvents = errors.New("too many events")

// ErrMalformed is wrapped by every error that means the request can never be processed: not JSON, not an
// event, an unknown schema. Event Grid does not retry a 400, so only input that no retry can fix gets it.
var ErrMalformed = errors.New("malformed request")

// Schema names the wire format an event arrived in.
type Schema string

// The wire formats the bridge reads. The values are the `origin` of the published envelope.
const (
	SchemaEventGrid   Schema = "eventgrid"
	SchemaCloudEvents Schema = "cloudevents"
	SchemaWebhook     Schema = "webhook"
)

// Event types Event Grid uses to manage a subscription rather than to deliver an event.
const (
	TypeSubscriptionValidation = "Microsoft.EventGrid.SubscriptionValidationEvent"
	TypeSubscriptionDeleted    = "Microsoft.EventGrid.SubscriptionDeletedEvent"
)

// Event is one event as it arrived, before normalisation. Attributes are those of CloudEvents; an Event
// Grid schema event maps topic to Source, eventType to Type and eventTime to Time.
type Event struct {
	Schema  Schema
	ID      string
	Source  string
	Type    string
	Subject string
	// Time is the event time exactly as sent; it may be empty or unparseable.
	Time string
	// Data is the event's data as JSON, or nil when the event has none or it is not JSON.
	Data json.RawMessage
	// Parsed is Data as the decoder's one pass over the body read it, when it did (see jsonscan.Parse);
	// otherwise its zero value, of Kind jsonscan.Invalid. A reader of Data uses it rather than parse
	// Data a second time.
	Parsed jsonscan.Value
	// Raw is the event as received: the JSON object of a structured event, the body of a webhook, or the
	// body of a binary-mode CloudEvent (whose attributes are in CE).
	Raw json.RawMessage
	// CE is the event decoded by the CloudEvents SDK. It is set for binary-mode CloudEvents and, for
	// events of other schemas, only by CloudEvent().
	CE *event.Event
	// DataVersion is the Event Grid schema's dataVersion.
	DataVersion string
	// Headers are the ce-* and Content-Type headers of a binary-mode CloudEvent, as received.
	Headers map[string][]string
	// Trace is the event's W3C trace context: a CloudEvent's distributed-tracing extension attributes,
	// when well formed; else empty, for the request's headers to fill (see Trace.Or).
	Trace Trace
}

// Invalid is an element of a batch that is not an event; it is kept, as received, so it can be
// dead-lettered rather than lost.
type Invalid struct {
	Raw    json.RawMessage
	Reason string
	// ID, when set, is the dead letter's Nats-Msg-Id (a redriven blob that is not JSON: its name and
	// ETag); otherwise a hash of Raw is.
	ID string
}

// Delivery is what one POST carried.
type Delivery struct {
	Events  []Event
	Invalid []Invalid
	// Binary is true for a binary-mode CloudEvent (attributes in ce-* headers).
	Binary bool
}

// wireEvent holds the attributes of both envelope schemas, so that one pass decides which one an object is.
type wireEvent struct {
	SpecVersion     *string         `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
	Topic           string          `json:"topic"`
	EventType       string          `json:"eventType"`
	EventTime       string          `json:"eventTime"`
	DataVersion     string          `json:"dataVersion"`
	TraceParent     string          `json:"traceparent"`
	TraceState      string          `json:"tracestate"`

	// data is Data as the one-pass reader parsed it; encoding/json leaves it unset.
	data jsonscan.Value
}

// Decoder reads request bodies. Its zero value limits nesting to DefaultMaxDepth.
type Decoder struct {
	// MaxDepth is the deepest JSON nesting accepted in one event (an element of a batch counts from
	// its own braces).
	MaxDepth int
	// MaxEvents is the most elements an array may have; a longer one is refused with ErrTooManyEvents as
	// soon as the element past it is reached, before any is decoded. Zero means no limit.
	MaxEvents int

	// slowOnly turns the one-pass readers off, so that tests can hold them to encoding/json.
	slowOnly bool
}

func (d Decoder) maxEvents() int {
	if d.MaxEvents <= 0 {
		return math.MaxInt
	}
	return d.MaxEvents
}

func (d Decoder) maxDepth() int {
	if d.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return d.MaxDepth
}

// Decode reads an Event Grid delivery: the Event Grid schema or CloudEvents 1.0, one object or a JSON
// array, whatever the Content-Type says (Event Grid and its clients disagree on it, and seed samples send
// CloudEvents arrays as application/json). A ce-specversion header selects CloudEvents binary mode.
//
// An array whose elements are partly not events yields those elements in Delivery.Invalid; a body with no
// event at all is an ErrMalformed error.
//
// The events share body's memory (their Raw and Data are parts of it, and so are strings read from it
// without escapes): body must not change while they are in use.
func (d Decoder) Decode(header http.Header, body []byte) (*Delivery, error) {
	if header.Get("Ce-Specversion") != "" {
		return d.decodeBinary(header, body)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	switch trimmed[0] {
	case '{':
		ev, err := d.decodeObject(trimmed)
		if err != nil {
			return nil, err
		}
		return &Delivery{Events: []Event{ev}}, nil
	case '[':
		var elems []json.RawMessage
		var wires []wireEvent
		ok := false
		if !d.slowOnly {
			elems, wires, ok = d.readBatch(trimmed)
		}
		if !ok {
			elems, ok = splitArray(trimmed, d.maxEvents())
		}
		switch {
		case len(elems) > d.maxEvents():
			return nil, fmt.Errorf("%w: more than %d in one array", ErrTooManyEvents, d.maxEvents())
		case !ok:
			// The reason comes from encoding/json, on this error path only.
			var v []json.RawMessage
			return nil, fmt.Errorf("%w: body is not a JSON array of events: %s", ErrMalformed, jsonReason(json.Unmarshal(trimmed, &v)))
		case len(elems) == 0:
			return nil, fmt.Errorf("%w: empty array", ErrMalformed)
		}
		dl := &Delivery{Events: make([]Event, 0, len(elems))}
		var firstErr error
		for i, raw := range elems {
			var ev Event
			var err error
			if wires != nil {
				ev, err = eventOf(wires[i], raw)
			} else {
				ev, err = d.decodeObject(raw)
			}
			if errors.As(err, new(syntaxError)) || (err != nil && !json.Valid(raw)) {
				// An element that is not JSON at all makes the body no JSON array: nothing of it is read.
				return nil, fmt.Errorf("%w: body is not a JSON array of events: event %d: %s", ErrMalformed, i, strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": "))
			}
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("event %d: %w", i, err)
				}
				dl.Invalid = append(dl.Invalid, Invalid{Raw: raw, Reason: strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": ")})
				continue
			}
			dl.Events = append(dl.Events, ev)
		}
		if len(dl.Events) == 0 {
			return nil, firstErr
		}
		return dl, nil
	default:
		if !json.Valid(trimmed) {
			return nil, fmt.Errorf("%w: body is not JSON", ErrMalformed)
		}
		return nil, fmt.Errorf("%w: body is neither a JSON object nor an array of events", ErrMalformed)
	}
}

// DecodeEvent reads one event in structured JSON, as an Event Grid namespace hands out each one it
// delivers by pull: a CloudEvent (or an Event Grid schema event) object. Its memory rules are Decode's.
func (d Decoder) DecodeEvent(raw []byte) (Event, error) {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return Event{}, fmt.Errorf("%w: empty event", ErrMalformed)
	case !utf8.Valid(trimmed):
		return Event{}, fmt.Errorf("%w: event is not valid UTF-8", ErrMalformed)
	case trimmed[0] != '{':
		return Event{}, fmt.Errorf("%w: event is not a JSON object", ErrMalformed)
	}
	return d.decodeObject(trimmed)
}

// The fields of wireEvent, by their index in wireFields.
const (
	wSpecVersion = iota
	wID
	wSource
	wType
	wSubject
	wTime
	wDataContentType
	wData
	wDataBase64
	wTopic
	wEventType
	wEventTime
	wDataVersion
	wTraceParent
	wTraceState
)

var wireFields = jsonscan.NewFields("specversion", "id", "source", "type", "subject", "time",
	"datacontenttype", "data", "data_base64", "topic", "eventType", "eventTime", "dataVersion", "traceparent", "tracestate")

// readWire reads an event object in one pass, as json.Unmarshal into a wireEvent would. It reports false
// for anything it is not sure of (see jsonscan.Parse) and for any error, which encoding/json then
// explains.
func readWire(raw []byte, maxDepth int) (wireEvent, bool) {
	v, ok := jsonscan.Parse(raw, maxDepth)
	if !ok {
		return wireEvent{}, false
	}
	return wireOf(v)
}

// readBatch reads a JSON array of event objects in one pass: each element's bytes and attributes. It
// reports false unless every element takes the fast path.
func (d Decoder) readBatch(body []byte) ([]json.RawMessage, []wireEvent, bool) {
	// Nesting counts from each element's own braces, one level inside the array.
	v, ok := jsonscan.ParseArray(body, d.maxDepth()+1, d.maxEvents())
	if !ok {
		return nil, nil, false
	}
	var elems []json.RawMessage
	var wires []wireEvent
	for e := range v.Elements() {
		w, ok := wireOf(e)
		if !ok {
			return nil, nil, false
		}
		elems, wires = append(elems, e.Bytes()), append(wires, w)
	}
	return elems, wires, true
}

// wireOf reads the attributes of an event object that jsonscan.Parse accepted.
func wireOf(v jsonscan.Value) (wireEvent, bool) {
	var w wireEvent
	if v.Kind() != jsonscan.Object {
		return w, false
	}
	var seen uint32
	for key, val := range v.Members() {
		f := wireFields.Index(key)
		if f < 0 {
			continue
		}
		if seen&(1<<f) != 0 {
			// One field under two spellings: encoding/json's rules for that are its own.
			return wireEvent{}, false
		}
		seen |= 1 << f
		var ok bool
		switch f {
		case wSpecVersion:
			ok = true
			if val.Kind() != jsonscan.Null {
				var s string
				s, ok = val.Str()
				w.SpecVersion = &s
			}
		case wData:
			w.Data, w.data, ok = json.RawMessage(val.Bytes()), val, true
		case wID:
			w.ID, ok = val.StrOrNull()
		case wSource:
			w.Source, ok = val.StrOrNull()
		case wType:
			w.Type, ok = val.StrOrNull()
		case wSubject:
			w.Subject, ok = val.StrOrNull()
		case wTime:
			w.Time, ok = val.StrOrNull()
		case wDataContentType:
			w.DataContentType, ok = val.StrOrNull()
		case wDataBase64:
			w.DataBase64, ok = val.StrOrNull()
		case wTopic:
			w.Topic, ok = val.StrOrNull()
		case wEventType:
			w.EventType, ok = val.StrOrNull()
		case wEventTime:
			w.EventTime, ok = val.StrOrNull()
		case wDataVersion:
			w.DataVersion, ok = val.StrOrNull()
		case wTraceParent:
			w.TraceParent, ok = val.StrOrNull()
		case wTraceState:
			w.TraceState, ok = val.StrOrNull()
		}
		if !ok {
			return wireEvent{}, false
		}
	}
	return w, true
}

// decodeObject reads one element: a CloudEvent if it has specversion, an Event Grid event if it has
// eventType, and an error otherwise.
func (d Decoder) decodeObject(raw json.RawMessage) (Event, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var w wireEvent
	ok := false
	if !d.slowOnly {
		w, ok = readWire(raw, d.maxDepth())
	}
	if !ok {
		// Off the fast path, encoding/json decides and explains.
		w = wireEvent{}
		if err := json.Unmarshal(raw, &w); err != nil {
			var syn *json.SyntaxError
			if errors.As(err, &syn) {
				return Event{}, syntaxError{jsonReason(err)}
			}
			return Event{}, fmt.Errorf("%w: %s", ErrMalformed, jsonReason(err))
		}
		if err := checkJSON(raw, d.maxDepth()); err != nil {
			return Event{}, err
		}
	}
	return eventOf(w, raw)
}

// eventOf makes the Event of an element's attributes: a CloudEvent if it has specversion, an Event Grid
// event if it has eventType, and an error otherwise.
func eventOf(w wireEvent, raw json.RawMessage) (Event, error) {
	switch {
	case w.SpecVersion != nil:
		return cloudEvent(w, raw)
	case w.EventType != "":
		return eventGridEvent(w, raw)
	default:
		return Event{}, fmt.Errorf("%w: unknown schema: neither a CloudEvent (specversion) nor an Event Grid event (eventType)", ErrMalformed)
	}
}

func cloudEvent(w wireEvent, raw json.RawMessage) (Event, error) {
	if *w.SpecVersion != "1.0" {
		return Event{}, fmt.Errorf("%w: unsupported CloudEvents specversion %q (want 1.0)", ErrMalformed, *w.SpecVersion)
	}
	var missing []string
	for _, a := range []struct{ name, v string }{{"id", w.ID}, {"source", w.Source}, {"type", w.Type}} {
		if a.v == "" {
			missing = append(missing, a.name)
		}
	}
	if len(missing) > 0 {
		return Event{}, fmt.Errorf("%w: CloudEvent without required attribute %s", ErrMalformed, strings.Join(missing, ", "))
	}
	ev := Event{Schema: SchemaCloudEvents, ID: w.ID, Source: w.Source, Type: w.Type, Subject: w.Subject, Time: w.Time, Raw: raw}
	ev.Trace = TraceOf(w.TraceParent, w.TraceState)
	switch {
	case len(w.Data) > 0 && !isNull(w.Data):
		ev.Data, ev.Parsed = w.Data, w.data
	case w.DataBase64 != "":
		if b, err := base64.StdEncoding.DecodeString(w.DataBase64); err == nil && json.Valid(b) {
			ev.Data = b
		}
	}
	return ev, nil
}

func eventGridEvent(w wireEvent, raw json.RawMessage) (Event, error) {
	if w.ID == "" {
		return Event{}, fmt.Errorf("%w: Event Grid event without id", ErrMalformed)
	}
	ev := Event{Schema: SchemaEventGrid, ID: w.ID, Source: w.Topic, Type: w.EventType, Subject: w.Subject, Time: w.EventTime, Raw: raw, DataVersion: w.DataVersion}
	if len(w.Data) > 0 && !isNull(w.Data) {
		ev.Data, ev.Parsed = w.Data, w.data
	}
	return ev, nil
}

// decodeBinary reads a binary-mode CloudEvent (attributes in ce-* headers, data in the body) with the
// CloudEvents SDK's HTTP binding.
func (d Decoder) decodeBinary(header http.Header, body []byte) (*Delivery, error) {
	msg := cehttp.NewMessage(header, io.NopCloser(bytes.NewReader(body)))
	ce, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return nil, fmt.Errorf("%w: binary-mode CloudEvent: %w", ErrMalformed, err)
	}
	if err := ce.Validate(); err != nil {
		return nil, fmt.Errorf("%w: binary-mode CloudEvent: %s", ErrMalformed, oneLine(err.Error()))
	}
	if v := ce.SpecVersion(); v != event.CloudEventsVersionV1 {
		// The SDK reads 0.3 too; the bridge takes 1.0 only, in binary mode as in structured mode.
		return nil, fmt.Errorf("%w: unsupported CloudEvents specversion %q (want 1.0)", ErrMalformed, v)
	}
	ev := Event{
		Schema:  SchemaCloudEvents,
		ID:      ce.ID(),
		Source:  ce.Source(),
		Type:    ce.Type(),
		Subject: ce.Subject(),
		Time:    header.Get("Ce-Time"),
		Raw:     body,
		CE:      ce,
		Headers: map[string][]string{},
		Trace:   TraceOf(header.Get("Ce-Traceparent"), header.Get("Ce-Tracestate")),
	}
	for k, v := range header {
		if strings.HasPrefix(strings.ToLower(k), "ce-") || strings.EqualFold(k, "Content-Type") {
			// CloudEvents attributes are Unicode strings, and a header may carry any byte. An id that is
			// not UTF-8 would read as U+FFFD in the envelope and as itself in Nats-Msg-Id.
			for _, value := range v {
				if !utf8.ValidString(value) {
					return nil, fmt.Errorf("%w: binary-mode CloudEvent header %s is not valid UTF-8", ErrMalformed, k)
				}
			}
			ev.Headers[k] = v
		}
	}
	if json.Valid(body) && !isNull(bytes.TrimSpace(body)) {
		if !utf8.Valid(body) {
			return nil, fmt.Errorf("%w: binary-mode CloudEvent data is JSON but not valid UTF-8", ErrMalformed)
		}
		if err := checkJSON(body, d.maxDepth()); err != nil {
			return nil, fmt.Errorf("binary-mode CloudEvent data: %w", err)
		}
		ev.Data = body
	}
	return &Delivery{Events: []Event{ev}, Binary: true}, nil
}

// DecodeWebhook reads an ACR native webhook: one JSON object, the registry event itself. Like Decode's,
// its event shares body's memory.
func (d Decoder) DecodeWebhook(body []byte) (Event, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return Event{}, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if !utf8.Valid(trimmed) {
		return Event{}, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	if trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return Event{}, fmt.Errorf("%w: body is not JSON", ErrMalformed)
		}
		return Event{}, fmt.Errorf("%w: an ACR webhook body is one JSON object", ErrMalformed)
	}
	if !d.slowOnly {
		// One pass does what json.Valid and checkJSON do below, and keeps the parse for the reader of Data.
		if v, ok := jsonscan.Parse(trimmed, d.maxDepth()); ok {
			return Event{Schema: SchemaWebhook, Data: trimmed, Parsed: v, Raw: trimmed}, nil
		}
	}
	if !json.Valid(trimmed) {
		var v any
		return Event{}, fmt.Errorf("%w: body is not JSON: %s", ErrMalformed, jsonReason(json.Unmarshal(trimmed, &v)))
	}
	if err := checkJSON(trimmed, d.maxDepth()); err != nil {
		return Event{}, err
	}
	return Event{Schema: SchemaWebhook, Data: trimmed, Raw: trimmed}, nil
}

// CloudEvent returns the event as a CloudEvent, for events passed through unchanged: a binary-mode event
// as decoded, a structured one as sent, and an Event Grid schema event converted the way Event Grid
// converts between its schemas (topic -> source, eventType -> type, eventTime -> time; dataVersion is kept
// as the extension attribute dataversion).
func (e Event) CloudEvent(t time.Time) (*event.Event, error) {
	if e.CE != nil {
		return e.CE, nil
	}
	ce := event.New()
	if e.Schema == SchemaCloudEvents {
		if err := json.Unmarshal(e.Raw, &ce); err != nil {
			return nil, fmt.Errorf("%w: CloudEvent: %s", ErrMalformed, oneLine(err.Error()))
		}
		return &ce, nil
	}
	ce.SetID(e.ID)
	ce.SetSource(e.Source)
	ce.SetType(e.Type)
	if e.Subject != "" {
		ce.SetSubject(e.Subject)
	}
	if e.DataVersion != "" {
		ce.SetExtension("dataversion", e.DataVersion)
	}
	ce.SetTime(t)
	if e.Data != nil {
		// Event Grid data is JSON: it stays JSON ("data"), not base64 ("data_base64").
		ce.SetDataContentType(event.ApplicationJSON)
		ce.DataEncoded, ce.DataBase64 = e.Data, false
	}
	if err := ce.Validate(); err != nil {
		return nil, fmt.Errorf("%w: event %q: %s", ErrMalformed, e.ID, oneLine(err.Error()))
	}
	return &ce, nil
}

func isNull(b []byte) bool { return string(b) == "null" }

// jsonReason turns an encoding/json error into a short reason that names the offending field or offset.
func jsonReason(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q is a JSON %s, want %s", typ.Field, typ.Value, jsonKind(typ.Type.Kind().String()))
		}
		return fmt.Sprintf("a JSON %s where %s was expected", typ.Value, jsonKind(typ.Type.Kind().String()))
	case err != nil && strings.Contains(err.Error(), "unexpected end of JSON input"):
		return "truncated JSON"
	case err != nil:
		return oneLine(err.Error())
	}
	return ""
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	case "int", "int64", "int32", "uint64", "float64":
		return "a number"
	}
	return goKind
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
