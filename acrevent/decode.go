package acrevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"

	"github.com/nats-io/nats.go"
)

// ErrNotEnvelope is returned by DecodeMessage for a message that is not an ACR envelope: a passed-through
// event, a dead letter, or something another publisher put on the subject.
var ErrNotEnvelope = errors.New("not an ACR event envelope")

// DecodeMessage turns a NATS message published by the bridge, in structured or binary mode, back into
// its Envelope. A JetStream consumer calls DecodeEnvelope(msg.Headers(), msg.Data()).
func DecodeMessage(msg *nats.Msg) (*Envelope, error) {
	return DecodeEnvelope(msg.Header, msg.Data)
}

// DecodeEnvelope is DecodeMessage for a message's headers and body.
func DecodeEnvelope(header nats.Header, data []byte) (*Envelope, error) {
	get := func(key string) string {
		// NATS header names are case-sensitive; accept the canonical HTTP spelling as well, which a
		// message relayed through HTTP may carry.
		if v := header.Get(key); v != "" {
			return v
		}
		return header.Get(textproto.CanonicalMIMEHeaderKey(key))
	}
	if reason := get(HeaderError); reason != "" {
		return nil, fmt.Errorf("%w: dead letter: %s", ErrNotEnvelope, reason)
	}
	var env Envelope
	if sv := get("ce-specversion"); sv != "" {
		env = Envelope{
			SpecVersion:     sv,
			ID:              get("ce-id"),
			Source:          get("ce-source"),
			Type:            get("ce-type"),
			Subject:         get("ce-subject"),
			Time:            get("ce-time"),
			DataContentType: get("Content-Type"),
			TraceParent:     get("ce-traceparent"),
			TraceState:      get("ce-tracestate"),
		}
		if !IsEnvelopeType(env.Type) {
			return nil, fmt.Errorf("%w: type %q", ErrNotEnvelope, env.Type)
		}
		if err := json.Unmarshal(data, &env.Data); err != nil {
			return nil, fmt.Errorf("decode data of %s: %w", env.ID, err)
		}
		return &env, nil
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotEnvelope, err)
	}
	if env.SpecVersion == "" || env.ID == "" {
		return nil, fmt.Errorf("%w: no CloudEvent attributes", ErrNotEnvelope)
	}
	if !IsEnvelopeType(env.Type) {
		return nil, fmt.Errorf("%w: type %q", ErrNotEnvelope, env.Type)
	}
	return &env, nil
}

// Header names the bridge sets beyond the CloudEvents ones, on dead letters.
const (
	// HeaderError carries the reason a dead-lettered event could not be normalised.
	HeaderError = "Bridge-Error"
	// HeaderOrigin carries the wire format a dead-lettered event arrived in.
	HeaderOrigin = "Bridge-Origin"
)
