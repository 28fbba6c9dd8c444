package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// Outcome is what became of one event received by pull, and so how its lock is settled: the same cases
// that decide a pushed delivery's status code.
type Outcome int

const (
	// Stored: in the stream (a duplicate included) or on the dead-letter subject. Acknowledge it.
	Stored Outcome = iota
	// Retry: not stored now, where a push would be answered 503 (NATS unreachable, a publish timed out,
	// the stream missing or refusing). Release it, to be delivered again.
	Retry
	// Refused: never storable, where a push would be answered 400 or 413 (not a CloudEvent, passthrough
	// off, larger than the NATS max payload). Reject it, so that the namespace dead-letters it.
	Refused
)

func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case Retry:
		return "retry"
	}
	return "refused"
}

// Result is what became of one pulled event and, unless it was stored, why.
type Result struct {
	Outcome Outcome
	Err     error
	// Duplicate is set for an event JetStream already held (a redelivery).
	Duplicate bool
}

// PullSummary is what one pulled batch did, for its log record.
type PullSummary struct {
	IDs                        []string
	Messages, Duplicates, Dead int
	Stream                     string
	Seq                        uint64
}

// pulledEventHeader is how a pulled event is decoded: one CloudEvent in structured JSON, as a namespace
// hands it out.
var pulledEventHeader = http.Header{"Content-Type": {"application/cloudevents+json"}}

// DeliverPulled takes CloudEvents received by pull from an Event Grid namespace, each one in structured
// JSON, along the path of a pushed delivery (decode, normalise, subject, Nats-Msg-Id, publish), and
// returns one result per event, in order. Unlike a push, which is answered as a whole, each event gets
// its own outcome: one that can never be stored does not hold back the others.
func (s *Server) DeliverPulled(ctx context.Context, events []json.RawMessage) ([]Result, PullSummary) {
	results := make([]Result, len(events))
	rec := &record{}
	now := time.Now()
	b := &batch{msgs: make([]*nats.Msg, 0, len(events)), kinds: make([]string, 0, len(events))}
	owner := make([]int, 0, len(events)) // owner[i] is the event of b.msgs[i]
	for i, raw := range events {
		d, err := s.dec.Decode(pulledEventHeader, raw)
		if err == nil {
			before := len(b.msgs)
			err = s.prepareEvent(rec, b, d.Events[0], "", now)
			for range len(b.msgs) - before {
				owner = append(owner, i)
			}
		}
		if err != nil {
			results[i] = Result{Outcome: outcomeOf(err), Err: err}
		}
	}
	summary := PullSummary{IDs: rec.ids[:rec.nids], Messages: len(b.msgs), Dead: b.dead}
	if len(b.msgs) == 0 {
		return results, summary
	}
	finish := s.startSpans(ctx, "receive namespace events", b, nil)
	start := time.Now()
	acks, err := s.pub.Publish(ctx, b.msgs)
	s.metrics.publishTime.Observe(time.Since(start).Seconds())
	if errors.Is(err, ErrTooLarge) {
		// One message or more is over NATS's max payload: each on its own, so that only those are refused.
		acks, err = s.publishEach(ctx, b.msgs, owner, results)
	}
	finish(acks, err)
	if err != nil {
		for _, i := range owner {
			if results[i].Outcome == Stored && results[i].Err == nil {
				results[i] = Result{Outcome: outcomeOf(err), Err: err}
			}
		}
		return results, summary
	}
	kinds, stored := make([]string, 0, len(owner)), make([]Ack, 0, len(owner))
	for k, i := range owner {
		if results[i].Outcome == Refused {
			continue // over the max payload, published alone and refused
		}
		var a Ack // core NATS gives no acks
		if k < len(acks) {
			a = acks[k]
		}
		kinds, stored = append(kinds, b.kinds[k]), append(stored, a)
		results[i].Duplicate = a.Duplicate
	}
	summary.Duplicates = s.countPublished(kinds, stored)
	if len(stored) > 0 && stored[0].Stream != "" {
		summary.Stream, summary.Seq = stored[0].Stream, stored[0].Sequence
	}
	return results, summary
}

// publishEach publishes msgs one at a time, after a batch of them was refused as too large: a message
// over the limit is its event's refusal, and the rest are acknowledged as usual. It returns an ack per
// message (a refused one's is zero), or the first error that is not a refusal.
func (s *Server) publishEach(ctx context.Context, msgs []*nats.Msg, owner []int, results []Result) ([]Ack, error) {
	acks := make([]Ack, len(msgs))
	for k, m := range msgs {
		a, err := s.pub.Publish(ctx, []*nats.Msg{m})
		switch {
		case errors.Is(err, ErrTooLarge):
			results[owner[k]] = Result{Outcome: Refused, Err: err}
		case err != nil:
			return nil, err
		case len(a) == 1:
			acks[k] = a[0]
		}
	}
	return acks, nil
}

// CanStore reports whether NATS can store events now: connected, and the stream answers.
func (s *Server) CanStore(ctx context.Context) error { return s.pub.Ready(ctx) }

// outcomeOf maps an error to the outcome a push would have had: 503 is Retry, 400 and 413 are Refused.
// Anything else (a bug) is retried rather than lost.
func outcomeOf(err error) Outcome {
	switch {
	case errors.Is(err, cloudevents.ErrMalformed), errors.Is(err, ErrTooLarge):
		return Refused
	}
	return Retry
}
