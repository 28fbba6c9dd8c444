// Package redrive brings back what Event Grid gave up on (DESIGN §9): it reads the dead-letter blobs Event
// Grid writes to Azure Blob Storage, in every shape it writes them, and hands each event to the bridge's
// delivery path, as if it had been pushed.
package redrive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// The NATS headers a redriven event carries: what Event Grid wrote of its failure.
const (
	HeaderReason         = "Eventgrid-Deadletter-Reason"
	HeaderAttempts       = "Eventgrid-Delivery-Attempts"
	HeaderLastOutcome    = "Eventgrid-Last-Delivery-Outcome"
	HeaderLastHTTPStatus = "Eventgrid-Last-Http-Status"
)

// Facts are what Event Grid wrote beside a dead-lettered event.
type Facts struct {
	Reason      string
	Attempts    string
	LastOutcome string
	// LastHTTPStatus is the status code of the last attempt, when the blob has one.
	LastHTTPStatus string
}

// Header is the facts as NATS headers; those Event Grid did not write are left out.
func (f Facts) Header() nats.Header {
	h := nats.Header{}
	for name, v := range map[string]string{HeaderReason: f.Reason, HeaderAttempts: f.Attempts, HeaderLastOutcome: f.LastOutcome, HeaderLastHTTPStatus: f.LastHTTPStatus} {
		if v != "" {
			h.Set(name, v)
		}
	}
	return h
}

// Entry is one dead-lettered event: the event as it was published, and the facts of its failure.
type Entry struct {
	// Event is the event's JSON object as published (an Event Grid schema event or a CloudEvent), the
	// dead-letter fields taken out.
	Event json.RawMessage
	Facts Facts
}

// factKeys are the dead-letter fields Event Grid writes at the top level of an event, by the Facts field
// they fill: the Event Grid schema's in camel case, the CloudEvents schema's in lower case (and
// lastHttpStatusCode in either).
var factKeys = map[string]string{
	"deadletterreason": "reason", "deliveryattempts": "attempts", "lastdeliveryoutcome": "outcome",
	"lasthttpstatuscode": "status", "publishtime": "", "lastdeliveryattempttime": "",
}

// wrapperKeys are the objects a namespace subscription writes beside (or around) the event.
var wrapperKeys = map[string]bool{"deadletterproperties": true, "brokerproperties": true, "customdeliveryproperties": true}

// namespaceFactKeys are the fields of a namespace's deadletterProperties (or brokerProperties).
var namespaceFactKeys = map[string]string{
	"deadletterreason": "reason", "deliveryattempts": "attempts", "deliveryresult": "outcome",
	"lasthttpstatuscode": "status", "publishutc": "", "deliveryattemptutc": "",
}

// ErrNotJSON is the error of a blob that is not JSON, or not an event or an array of them.
var ErrNotJSON = errors.New("not a dead-letter blob")

// ReadBlob reads the events of a dead-letter blob, in every shape Event Grid writes:
//   - an Event Grid schema event with deadLetterReason, deliveryAttempts, lastDeliveryOutcome,
//     lastHttpStatusCode, publishTime and lastDeliveryAttemptTime beside its own fields;
//   - a CloudEvent with the same fields in lower case;
//   - a namespace subscription's CloudEvent, flat or under "event", with deadletterProperties (or
//     brokerProperties: Azure's pages name it both ways) holding deadletterreason, deliveryattempts,
//     deliveryresult, publishutc and deliveryattemptutc, and customDeliveryProperties.
//
// A blob holds a JSON array of them or a single one. An element that is not an object is returned as an
// entry whose Event is the element as it is, for the delivery path to dead-letter.
func ReadBlob(b []byte) ([]Entry, error) {
	b = bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))
	var elems []json.RawMessage
	switch {
	case len(b) > 0 && b[0] == '[':
		if err := unmarshalLenient(b, &elems); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotJSON, err)
		}
	case len(b) > 0 && b[0] == '{':
		var one json.RawMessage
		if err := unmarshalLenient(b, &one); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotJSON, err)
		}
		elems = []json.RawMessage{one}
	default:
		return nil, fmt.Errorf("%w: neither a JSON object nor an array", ErrNotJSON)
	}
	entries := make([]Entry, 0, len(elems))
	for _, e := range elems {
		entries = append(entries, readEntry(e))
	}
	return entries, nil
}

// unmarshalLenient is json.Unmarshal, and if that fails, json.Unmarshal of b without commas before a
// closing bracket or brace: Azure's own sample of a CloudEvents dead letter ends its object with one.
func unmarshalLenient(b []byte, v any) error {
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	if fixed, ok := dropTrailingCommas(b); ok && json.Unmarshal(fixed, v) == nil {
		return nil
	}
	return err
}

// dropTrailingCommas removes each comma that only white space separates from a closing ] or }, outside
// strings; ok is false when there was none.
func dropTrailingCommas(b []byte) (out []byte, ok bool) {
	out = make([]byte, 0, len(b))
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ',':
			j := i + 1
			for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n') {
				j++
			}
			if j < len(b) && (b[j] == '}' || b[j] == ']') {
				ok = true
				continue
			}
		}
		out = append(out, c)
	}
	return out, ok
}

// readEntry separates one element into the event and its facts.
func readEntry(raw json.RawMessage) Entry {
	members, ok := objectMembers(raw)
	if !ok {
		return Entry{Event: raw}
	}
	var e Entry
	var event json.RawMessage
	kept := make([]member, 0, len(members))
	for _, m := range members {
		key := strings.ToLower(m.key)
		switch {
		case key == "event" && len(m.value) > 0 && m.value[0] == '{':
			event = m.value
		case key == "deadletterproperties" || key == "brokerproperties":
			if props, ok := objectMembers(m.value); ok {
				for _, p := range props {
					e.Facts.set(namespaceFactKeys[strings.ToLower(p.key)], p.value)
				}
			}
		case wrapperKeys[key]:
		case factKeyOf(key):
			e.Facts.set(factKeys[key], m.value)
		default:
			kept = append(kept, m)
		}
	}
	switch {
	case event != nil:
		e.Event = event
	default:
		e.Event = writeObject(kept)
	}
	return e
}

func factKeyOf(key string) bool {
	_, ok := factKeys[key]
	return ok
}

// set fills the fact named by field with a JSON value: a string as it is, a number as written.
func (f *Facts) set(field string, v json.RawMessage) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		var n json.Number
		if json.Unmarshal(v, &n) != nil {
			return
		}
		s = n.String()
	}
	switch field {
	case "reason":
		f.Reason = s
	case "attempts":
		f.Attempts = s
	case "outcome":
		f.LastOutcome = s
	case "status":
		if _, err := strconv.Atoi(s); err == nil {
			f.LastHTTPStatus = s
		}
	}
}

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers reads a JSON object's members in their order, values as they are.
func objectMembers(raw json.RawMessage) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		out = append(out, member{key, v})
	}
	return out, true
}

// writeObject writes members as a JSON object, in their order.
func writeObject(members []member) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key) // a string always encodes
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}
