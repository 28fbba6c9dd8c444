package redrive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// DeadLetterSummary counts what a redrive of the bridge's own dead letters did.
type DeadLetterSummary struct {
	// Read were read; Redriven now normalise and were published (their dead letters deleted); Stay still
	// do not; Failed could not be stored (the run stopped).
	Read, Redriven, Stay, Failed int
	// ByReason counts the dead letters that stay, by the reason they still cannot be normalised.
	ByReason map[string]int
}

// String is the summary line a run ends with.
func (s DeadLetterSummary) String() string {
	return fmt.Sprintf("dead letters %d, redriven %d, still dead letters %d, failed %d", s.Read, s.Redriven, s.Stay, s.Failed)
}

// redrivenSuffix is added to the Nats-Msg-Id of a redriven event whose id its own dead letter still
// holds in the stream's duplicate window: the dead letter took the event's id, and JetStream would take
// the event for a duplicate of it.
const redrivenSuffix = "~redriven"

// DeadLetters re-reads the bridge's own dead letters on subject in stream with the current decoder: each
// one that now normalises takes the delivery path d (nil in a dry run) like a new delivery, and its dead
// letter is deleted once the event is stored; the rest stay.
func DeadLetters(ctx context.Context, js jetstream.JetStream, stream, subject string, d Deliverer, opts Options, log *slog.Logger) (DeadLetterSummary, error) {
	sum := DeadLetterSummary{ByReason: map[string]int{}}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return sum, fmt.Errorf("stream %s: %w", stream, err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return sum, fmt.Errorf("read %s of stream %s: %w", subject, stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return sum, fmt.Errorf("stream %s: %w", stream, err)
	}
	var pending uint64
	for _, n := range info.State.Subjects {
		pending += n
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 100)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return sum, fmt.Errorf("read %s of stream %s: %w", subject, stream, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return sum, err
			}
			pending = meta.NumPending
			sum.Read++
			if err := redriveDeadLetter(ctx, s, d, msg, meta.Sequence.Stream, opts, &sum, log); err != nil {
				return sum, err
			}
			if opts.Progress != nil {
				opts.Progress(Summary{Events: sum.Read, Stored: sum.Redriven, DeadLettered: sum.Stay})
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return sum, fmt.Errorf("read %s of stream %s: %w", subject, stream, err)
		}
		if n == 0 {
			break
		}
	}
	return sum, nil
}

// redriveDeadLetter decodes one dead letter again and, when it now normalises, publishes it and deletes
// the dead letter.
func redriveDeadLetter(ctx context.Context, s jetstream.Stream, d Deliverer, msg jetstream.Msg, seq uint64, opts Options, sum *DeadLetterSummary, log *slog.Logger) error {
	ev, err := decodeDeadLetter(opts.Decoder, msg)
	if err != nil {
		sum.Stay++
		sum.ByReason[reasonKind(err.Error())]++
		return nil
	}
	if n := opts.Normalizer.Normalize(ev, "", opts.Now()); n.Kind == bridge.KindDeadLetter {
		sum.Stay++
		sum.ByReason[reasonKind(n.Reason)]++
		return nil
	}
	if opts.DryRun {
		sum.Redriven++
		return nil
	}
	dl := &bridge.Delivery{Events: []cloudevents.Event{ev}, Each: true}
	rep := d.Deliver(ctx, dl)
	if rep.Messages > 0 && rep.Duplicates > 0 && rep.Seq == seq {
		// The event's id is its dead letter's: within the duplicate window JetStream took the event for
		// it. Published again under an id of its own.
		dl = &bridge.Delivery{Events: []cloudevents.Event{ev}, Each: true, MsgIDSuffix: redrivenSuffix}
		rep = d.Deliver(ctx, dl)
	}
	if r := rep.Results[0]; r.Outcome != bridge.Stored {
		sum.Failed++
		return fmt.Errorf("%w: dead letter %d: %w", ErrNotStored, seq, r.Err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete dead letter %d after storing its event: %w", seq, err)
	}
	sum.Redriven++
	log.Debug("dead letter redriven", "seq", seq, "event_id", ev.ID, "subject", rep.Subject)
	return nil
}

// decodeDeadLetter reads a dead letter's body as it arrived: a webhook's body, a structured event, or a
// binary-mode CloudEvent whose ce-* headers travel with it.
func decodeDeadLetter(dec cloudevents.Decoder, msg jetstream.Msg) (cloudevents.Event, error) {
	h := msg.Headers()
	switch cloudevents.Schema(h.Get(acrevent.HeaderOrigin)) {
	case cloudevents.SchemaWebhook:
		return dec.DecodeWebhook(msg.Data())
	}
	if h.Get("ce-specversion") != "" {
		hh := http.Header{}
		for k, v := range h {
			if strings.HasPrefix(strings.ToLower(k), "ce-") || strings.EqualFold(k, "Content-Type") {
				hh[http.CanonicalHeaderKey(k)] = v
			}
		}
		dv, err := dec.Decode(hh, msg.Data())
		if err != nil {
			return cloudevents.Event{}, err
		}
		if len(dv.Events) != 1 {
			return cloudevents.Event{}, fmt.Errorf("%w: a binary-mode dead letter that is not one event", cloudevents.ErrMalformed)
		}
		return dv.Events[0], nil
	}
	return dec.DecodeEvent(msg.Data())
}
