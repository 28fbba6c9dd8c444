package bridge

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// ErrNotEnvelope is returned by DecodeMessage for a message that is not an ACR envelope: a passed-through
// event, a dead letter, or something another publisher put on the subject.
var ErrNotEnvelope = errors.New("not an ACR event envelope")

// DecodeMessage turns a NATS message published by the bridge, in structured or binary mode, back into
// its Envelope.
func DecodeMessage(msg *nats.Msg) (*Envelope, error) {
	if msg.Header.Get(HeaderError) != "" {
		return nil, fmt.Errorf("%w: dead letter: %s", ErrNotEnvelope, msg.Header.Get(HeaderError))
	}
	var env Envelope
	if sv := msg.Header.Get("ce-specversion"); sv != "" {
		env = Envelope{
			SpecVersion:     sv,
			ID:              msg.Header.Get("ce-id"),
			Source:          msg.Header.Get("ce-source"),
			Type:            msg.Header.Get("ce-type"),
			Subject:         msg.Header.Get("ce-subject"),
			Time:            msg.Header.Get("ce-time"),
			DataContentType: msg.Header.Get(contentType),
		}
		if !isEnvelopeType(env.Type) {
			return nil, fmt.Errorf("%w: type %q", ErrNotEnvelope, env.Type)
		}
		if err := json.Unmarshal(msg.Data, &env.Data); err != nil {
			return nil, fmt.Errorf("decode data of %s: %w", env.ID, err)
		}
		return &env, nil
	}
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotEnvelope, err)
	}
	if env.SpecVersion == "" || env.ID == "" {
		return nil, fmt.Errorf("%w: no CloudEvent attributes", ErrNotEnvelope)
	}
	if !isEnvelopeType(env.Type) {
		return nil, fmt.Errorf("%w: type %q", ErrNotEnvelope, env.Type)
	}
	return &env, nil
}

func isEnvelopeType(t string) bool { return IsACRType(t) || t == TypeImageQuarantined || t == TypePing }
