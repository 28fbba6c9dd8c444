// Package bridge is the bridge's server: the delivery path (Path) that every source hands its decoded
// events to, which normalises each one into the acrevent envelope, names its subject, publishes it to
// JetStream (or core NATS) and reports an outcome per event; and the HTTP server (Server), the source of
// pushed deliveries, which answers by Event Grid's retry rules. The namespace package is the other source,
// pulling.
package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/internal/jsonscan"
)

// Kind is what the bridge does with an event, decided once per event.
type Kind int

// The kinds of event. The first four are published; their order is that of publishedKinds.
const (
	KindACR                 Kind = iota // an ACR event, normalised into an Envelope
	KindPing                            // an ACR ping or unknown webhook action, published to the ping subject
	KindPassthrough                     // any other event type, published unchanged
	KindDeadLetter                      // an ACR event that cannot be normalised, published as received
	KindValidation                      // Event Grid's subscription validation: answered, not published
	KindSubscriptionDeleted             // Event Grid's notice of a deleted subscription: logged, not published
	KindRefused                         // an event not stored: never storable (passthrough off: 400, rejected), or not now (a required registry lookup failed: 503, released)
)

// publishedKinds are the kinds that become messages, by their label in bridge_events_published_total.
var publishedKinds = [...]string{KindACR: "acr", KindPing: "ping", KindPassthrough: "passthrough", KindDeadLetter: "deadletter"}

// Normalized is the result of normalising one inbound event.
type Normalized struct {
	Kind     Kind
	Envelope acrevent.Envelope
	// Reason says why a KindDeadLetter event could not be normalised.
	Reason string
	// TimeFallback says which value the envelope time came from when the event time did not parse
	// ("data.timestamp" or "receive time"); empty when it did.
	TimeFallback string
}

// errNotNormalizable marks an ACR event that is valid JSON but cannot become an Envelope.
var errNotNormalizable = errors.New("cannot normalise")

// Normalizer turns inbound events into envelopes. Its zero value is usable; DefaultRegistry is the
// registry of events that name none.
type Normalizer struct {
	DefaultRegistry string
}

var actionTypes = map[string]string{
	"push":         acrevent.TypeImagePushed,
	"delete":       acrevent.TypeImageDeleted,
	"chart_push":   acrevent.TypeChartPushed,
	"chart_delete": acrevent.TypeChartDeleted,
	"quarantine":   acrevent.TypeImageQuarantined,
}

// eventGridACRType reports whether t is one of the four Event Grid ACR event types the bridge normalises.
// Other Microsoft.ContainerRegistry.* types are passed through rather than guessed at.
func eventGridACRType(t string) bool {
	switch t {
	case acrevent.TypeImagePushed, acrevent.TypeImageDeleted, acrevent.TypeChartPushed, acrevent.TypeChartDeleted:
		return true
	}
	return false
}

// Normalize turns one inbound event into its envelope, or says what else it is (a handshake, an event to
// pass through). pathRegistry is the registry named by the webhook
// URL, if any; now is the receive time, the last fallback for the event time. It never fails: an event
// it cannot normalise comes back as KindDeadLetter with the reason.
func (n Normalizer) Normalize(ev cloudevents.Event, pathRegistry string, now time.Time) Normalized {
	switch ev.Type {
	case cloudevents.TypeSubscriptionValidation:
		return Normalized{Kind: KindValidation}
	case cloudevents.TypeSubscriptionDeleted:
		return Normalized{Kind: KindSubscriptionDeleted}
	}
	if ev.Schema != cloudevents.SchemaWebhook && !eventGridACRType(ev.Type) {
		return Normalized{Kind: KindPassthrough}
	}
	var data acrevent.EventData
	if err := decodeData(ev.Data, ev.Parsed, &data); err != nil {
		return Normalized{Kind: KindDeadLetter, Reason: err.Error()}
	}
	kind, typ := KindACR, ev.Type
	if ev.Schema == cloudevents.SchemaWebhook {
		var ok bool
		if typ, ok = actionTypes[data.Action]; !ok {
			kind, typ = KindPing, acrevent.TypePing
		}
	}
	if kind == KindACR && data.Target == nil {
		return Normalized{Kind: KindDeadLetter, Reason: fmt.Sprintf("%s event without data.target", typ)}
	}
	tidy(&data)
	data.Origin = string(ev.Schema)
	if kind == KindACR {
		data.Artifact = artifactOf(typ, data.Target)
	}

	topicRegistry, connected := registryFromSource(ev.Source)
	if data.ConnectedRegistry == nil && connected != "" {
		data.ConnectedRegistry = &acrevent.ConnectedRegistry{Name: connected}
	}
	data.Registry = n.registry(pathRegistry, topicRegistry, data.Request)

	id, source := ev.ID, ev.Source
	if ev.Schema == cloudevents.SchemaWebhook {
		id = data.ID
		if id == "" {
			id = HashID(ev.Raw)
		}
		source = "acr://" + url.PathEscape(data.Registry)
	}

	out := Normalized{Kind: kind}
	var t string
	t, out.TimeFallback = envelopeTime(ev, data.Timestamp, now)
	if ts, ok := NormalizeTime(data.Timestamp); ok {
		data.Timestamp = ts
	}

	out.Envelope = acrevent.Envelope{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          source,
		Type:            typ,
		Subject:         data.Target.Subject(),
		Time:            t,
		DataContentType: "application/json",
		TraceParent:     ev.Trace.Parent,
		TraceState:      ev.Trace.State,
		Data:            data,
	}
	return out
}

// envelopeTime is the event time (a webhook's is its data.timestamp), else data.timestamp, else the
// receive time; Azure's own samples include times that do not parse, and such an event is not lost.
func envelopeTime(ev cloudevents.Event, timestamp string, now time.Time) (t, fallback string) {
	if ev.Schema == cloudevents.SchemaWebhook {
		if t, ok := NormalizeTime(timestamp); ok {
			return t, ""
		}
		return formatTime(now), "receive time"
	}
	if t, ok := NormalizeTime(ev.Time); ok {
		return t, ""
	}
	if t, ok := NormalizeTime(timestamp); ok {
		return t, "data.timestamp"
	}
	return formatTime(now), "receive time"
}

// formatTime writes t as the envelope's times are written: RFC 3339 in UTC, ending in Z.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// decodeData reads the ACR event data. Anything that is not an object of the ACR schema is refused with a
// reason, because the envelope promises consumers one data shape.
func decodeData(raw json.RawMessage, parsed jsonscan.Value, data *acrevent.EventData) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: event has no data", errNotNormalizable)
	}
	if raw[0] != '{' {
		return fmt.Errorf("%w: data is not a JSON object", errNotNormalizable)
	}
	if parsed.Kind() == jsonscan.Invalid {
		// Not read by the decoder's one pass: a binary-mode event's body, or a body that pass declined.
		parsed, _ = jsonscan.Parse(raw, jsonscan.MaxDepth)
	}
	if readData(parsed, data) {
		return nil
	}
	var in inboundData
	err := json.Unmarshal(raw, &in)
	*data = in.EventData
	if err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			// The path of a field of the embedded EventData starts with the embedding's Go name.
			field := strings.TrimPrefix(typ.Field, "EventData.")
			return fmt.Errorf("%w: data.%s is a JSON %s, not a %s", errNotNormalizable, field, typ.Value, typ.Type)
		}
		return fmt.Errorf("%w: data: %w", errNotNormalizable, err)
	}
	// A registry, origin or artifact inside the received data is not Azure's; the bridge sets them.
	data.Registry, data.Origin, data.Artifact = "", "", nil
	return nil
}

// inboundData is the ACR event data as received: EventData but for artifact, which is the bridge's to say,
// so whatever a sender puts there is neither read nor a reason to refuse the event.
type inboundData struct {
	acrevent.EventData
	Artifact json.RawMessage `json:"artifact"`
}

// tidy drops objects that carry no field, so that "actor": {} and a null object read the same.
func tidy(d *acrevent.EventData) {
	if d.Request != nil && *d.Request == (acrevent.Request{}) {
		d.Request = nil
	}
	if d.Actor != nil && *d.Actor == (acrevent.Actor{}) {
		d.Actor = nil
	}
	if d.Source != nil && *d.Source == (acrevent.Source{}) {
		d.Source = nil
	}
	if d.ConnectedRegistry != nil && *d.ConnectedRegistry == (acrevent.ConnectedRegistry{}) {
		d.ConnectedRegistry = nil
	}
}

// registry picks the registry name in the documented order: the webhook path, the Event Grid topic or
// CloudEvents source, the first label of request.host, the configured default, else "_".
func (n Normalizer) registry(path, topic string, req *acrevent.Request) string {
	if path != "" {
		return strings.ToLower(path)
	}
	if topic != "" {
		return strings.ToLower(topic)
	}
	if req != nil && req.Host != "" {
		if r := RegistryFromHost(req.Host); r != "" {
			return r
		}
	}
	if n.DefaultRegistry != "" {
		return strings.ToLower(n.DefaultRegistry)
	}
	return acrevent.EmptyToken
}

// RegistryFromHost returns the registry name of a login server host: myregistry.azurecr.io -> myregistry.
func RegistryFromHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	first, _, _ := strings.Cut(host, ".")
	return strings.ToLower(first)
}

// registryFromSource reads the registry, and a connected registry, from an ARM resource id such as
// /subscriptions/…/providers/Microsoft.ContainerRegistry/registries/<name>[/connectedRegistries/<name>].
// Azure does not guarantee the case of resource ids, so the segments match case-insensitively.
func registryFromSource(source string) (registry, connected string) {
	registry, rest := segmentAfter(source, "/registries/")
	if registry == "" {
		return "", ""
	}
	connected, _ = segmentAfter(rest, "/connectedregistries/")
	return registry, connected
}

// segmentAfter returns the path segment after the first match of marker, which is lower-case ASCII,
// matched ASCII-case-insensitively. (strings.ToLower would also fold other letters, some of which change
// length, so that an index into the lowered string would not be one into s.)
func segmentAfter(s, marker string) (segment, rest string) {
	i := 0
	for ; i+len(marker) <= len(s); i++ {
		if s[i] == marker[0] && asciiEqualFold(s[i:i+len(marker)], marker) {
			break
		}
	}
	if i+len(marker) > len(s) {
		return "", ""
	}
	s = s[i+len(marker):]
	if j := strings.IndexAny(s, "/?#"); j >= 0 {
		return s[:j], s[j:]
	}
	return s, ""
}

// asciiEqualFold reports whether s equals the lower-case ASCII lower, ignoring ASCII case.
func asciiEqualFold(s, lower string) bool {
	for i := range len(lower) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// HashID is the id given to an event that has none: a hash of its bytes, so that a redelivery of the same
// bytes gets the same id and JetStream stores it once.
func HashID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "sha256-" + hex.EncodeToString(sum[:])
}
