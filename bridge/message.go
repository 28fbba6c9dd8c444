package bridge

import (
	"encoding/json"
	"fmt"
	"net/textproto"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// Mode is how a CloudEvent is laid out in a NATS message (CloudEvents NATS protocol binding, section 3).
type Mode string

// The two content modes.
const (
	// ModeStructured puts the whole event, as JSON, in the body (Content-Type application/cloudevents+json).
	ModeStructured Mode = "structured"
	// ModeBinary puts the attributes in ce-* headers and the data in the body.
	ModeBinary Mode = "binary"
)

const (
	contentType = "Content-Type"
	ceJSON      = "application/cloudevents+json"
)

// envelopeMsg builds the NATS message of an envelope. Nats-Msg-Id is the event id, so that JetStream
// stores an Event Grid redelivery once.
func envelopeMsg(subject string, env *acrevent.Envelope, mode Mode) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Header.Set(jetstream.MsgIDHeader, msgID(env.ID))
	if mode == ModeBinary {
		msg.Data = appendData(make([]byte, 0, sizeHint(env)), &env.Data)
		h := msg.Header
		h.Set("ce-specversion", env.SpecVersion)
		h.Set("ce-id", env.ID)
		h.Set("ce-source", env.Source)
		h.Set("ce-type", env.Type)
		if env.Subject != "" {
			h.Set("ce-subject", env.Subject)
		}
		h.Set("ce-time", env.Time)
		h.Set(contentType, env.DataContentType)
		if env.TraceParent != "" {
			h.Set("ce-traceparent", env.TraceParent)
		}
		if env.TraceState != "" {
			h.Set("ce-tracestate", env.TraceState)
		}
	} else {
		msg.Data = appendEnvelope(make([]byte, 0, sizeHint(env)), env)
		msg.Header.Set(contentType, ceJSON)
	}
	setTraceHeaders(msg.Header, cloudevents.Trace{Parent: env.TraceParent, State: env.TraceState})
	return msg
}

// Trace headers of a message: W3C trace context as NATS users expect it, spelled in lower case, since
// NATS header names are case-sensitive and OpenTelemetry's propagators read these spellings.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// setTraceHeaders puts a trace context on a message's headers.
func setTraceHeaders(h nats.Header, t cloudevents.Trace) {
	if t.Parent == "" {
		return
	}
	h[HeaderTraceParent] = []string{t.Parent}
	if t.State != "" {
		h[HeaderTraceState] = []string{t.State}
	}
}

// passthroughMsg builds the NATS message of an event passed through unchanged. A structured CloudEvent
// that is to stay structured keeps its bytes as received.
func passthroughMsg(subject string, ce *event.Event, id string, raw []byte, mode Mode) (*nats.Msg, error) {
	msg := nats.NewMsg(subject)
	msg.Header.Set(jetstream.MsgIDHeader, msgID(id))
	if mode == ModeBinary {
		h := msg.Header
		h.Set("ce-specversion", ce.SpecVersion())
		h.Set("ce-id", ce.ID())
		h.Set("ce-source", ce.Source())
		h.Set("ce-type", ce.Type())
		for name, v := range map[string]string{"subject": ce.Subject(), "dataschema": ce.DataSchema()} {
			if v != "" {
				h.Set("ce-"+name, v)
			}
		}
		if !ce.Time().IsZero() {
			h.Set("ce-time", types.FormatTime(ce.Time()))
		}
		for name, v := range ce.Extensions() {
			s, err := types.Format(v)
			if err != nil {
				return nil, fmt.Errorf("encode extension %s of %s: %w", name, ce.ID(), err)
			}
			h.Set("ce-"+name, s)
		}
		if ct := ce.DataContentType(); ct != "" {
			h.Set(contentType, ct)
		}
		msg.Data = ce.Data()
		return msg, nil
	}
	msg.Header.Set(contentType, ceJSON)
	if raw != nil {
		msg.Data = raw
		return msg, nil
	}
	if d := ce.Data(); d != nil && !ce.DataBase64 {
		// The SDK writes JSON-typed data (or untyped, which CloudEvents takes as JSON) verbatim and
		// other data as a string. Binary-mode data that is neither valid JSON nor valid text for that
		// goes as data_base64, so it arrives byte for byte instead of failing or being mangled.
		if jsonTyped(ce.DataContentType()) {
			ce.DataBase64 = !json.Valid(d)
		} else {
			ce.DataBase64 = !utf8.Valid(d)
		}
	}
	var err error
	if msg.Data, err = json.Marshal(ce); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ce.ID(), err)
	}
	return msg, nil
}

// jsonTyped reports whether the CloudEvents SDK writes data of this content type as a JSON value.
func jsonTyped(contentType string) bool {
	mediaType, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mediaType)) {
	case "", event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
		return true
	}
	return false
}

// deadLetterMsg builds the message of an event that could not be normalised: its bytes as received, the
// reason in Bridge-Error, and its own id (or a hash of its bytes) as Nats-Msg-Id. The headers of a
// binary-mode CloudEvent, which hold its attributes, go along.
func deadLetterMsg(subject, id string, raw []byte, reason string, origin string, ceHeaders map[string][]string) *nats.Msg {
	msg := nats.NewMsg(subject)
	if id == "" {
		id = HashID(raw)
	}
	msg.Header.Set(jetstream.MsgIDHeader, msgID(id))
	msg.Header.Set(acrevent.HeaderError, shortReason(reason))
	if origin != "" {
		msg.Header.Set(acrevent.HeaderOrigin, origin)
	}
	msg.Header.Set(contentType, "application/json")
	for k, v := range ceHeaders {
		msg.Header[k] = v
	}
	msg.Data = raw
	return msg
}

// maxReason bounds a reason in a header or a log line. Reasons quote what they object to, such as a
// repeated key, and a hostile key can be megabytes long.
const maxReason = 512

// shortReason is a reason on one line, cut to maxReason bytes on a character boundary.
func shortReason(reason string) string {
	r := strings.Join(strings.Fields(reason), " ")
	if len(r) <= maxReason {
		return r
	}
	cut := maxReason
	for cut > 0 && !utf8.RuneStart(r[cut]) {
		cut--
	}
	return r[:cut] + "…"
}

// msgID is the Nats-Msg-Id of an event id. NATS trims header values and turns CR and LF into spaces,
// so "a" and "a\n" would arrive as one id and the second event be dropped as a duplicate of the first;
// an id that would change on the way is replaced by its hash.
func msgID(id string) string {
	if id != "" && id == textproto.TrimString(id) && !strings.ContainsAny(id, "\r\n") {
		return id
	}
	return HashID([]byte(id))
}

// msgSize is the number of bytes a message takes against the server's max_payload: headers and body.
func msgSize(m *nats.Msg) int {
	n := len(m.Data)
	if len(m.Header) > 0 {
		n += len("NATS/1.0\r\n\r\n")
		for k, vs := range m.Header {
			for _, v := range vs {
				n += len(k) + len(": ") + len(v) + len("\r\n")
			}
		}
	}
	return n
}
