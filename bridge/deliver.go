package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// The delivery path: every source (the HTTP handlers, the namespace puller) hands its decoded events to
// Path.Deliver, which decides what each one becomes, publishes the messages, waits for every ack and
// reports one outcome per event. A source knows its transport and nothing of normalising; the path knows
// nothing of transports. One event, top to bottom:
//
//	Deliver -> decide (Normalize, then the subject and the message of its kind) -> startSpans ->
//	publisher.Publish (PubAcks) -> an outcome per event, by OutcomeOf

// publisher stores messages; JetStream and Core are the two implementations.
type publisher interface {
	Publish(ctx context.Context, msgs []*nats.Msg) ([]Ack, error)
	Ready(ctx context.Context) error
}

// PathOptions are what the delivery path does with events; cmd/bridge fills them from the configuration.
type PathOptions struct {
	Subjects        Subjects
	DefaultRegistry string
	Mode            Mode
	// Passthrough publishes events that are not ACR events; when false they are refused (400).
	Passthrough bool
	// Metrics counts what the path does; nil keeps them in a registry of the path's own.
	Metrics *Metrics
	// Tracer, when it records (tracing.Enabled), gets a SERVER span per delivery and a PRODUCER span per
	// message; nil traces nothing.
	Tracer trace.Tracer
	// Registry, when set, looks every pushed manifest up to refine its kind (BRIDGE_REGISTRY_LOOKUP);
	// nil makes no lookups.
	Registry Registry
	// LookupRequired holds back an event whose lookup failed in a way that may pass (a timeout, a 429, a
	// 5xx, refused credentials): 503, or released, so that it comes again. Without it the event is
	// published with the kind of its own rule and lookup "failed".
	LookupRequired bool
}

// Path carries decoded events to JetStream: the one place where events are normalised, given a subject,
// made into messages, published and judged.
type Path struct {
	opts    PathOptions
	norm    Normalizer
	pub     publisher
	metrics *Metrics
	log     *slog.Logger
	tracer  trace.Tracer
	tracing bool
}

// NewPath returns the delivery path, publishing with pub (a *JetStream or *Core).
func NewPath(opts PathOptions, pub publisher, log *slog.Logger) *Path {
	p := &Path{opts: opts, norm: Normalizer{DefaultRegistry: opts.DefaultRegistry}, pub: pub, metrics: opts.Metrics, log: log}
	if p.metrics == nil {
		p.metrics = NewMetrics(prometheus.NewRegistry())
	}
	if opts.Tracer != nil {
		p.tracer, p.tracing = opts.Tracer, true
	}
	return p
}

// Tracing reports whether deliveries get spans, so that a source builds span attributes only then.
func (p *Path) Tracing() bool { return p.tracing }

// CanStore reports whether NATS can store events now: connected, and the stream answers.
func (p *Path) CanStore(ctx context.Context) error { return p.pub.Ready(ctx) }

// Delivery is what a source hands the path: decoded events and what the source knows of them.
type Delivery struct {
	Events []cloudevents.Event
	// Invalid are elements of a batch that are not events; each is dead-lettered as received.
	Invalid []cloudevents.Invalid
	// Registry is the registry the source names (a webhook's URL path), first in the registry order.
	Registry string
	// Trace is the delivery's own trace context (a request's traceparent header): events without one of
	// their own take it, and the delivery's span is its child.
	Trace cloudevents.Trace
	// Span names the delivery's SERVER span ("POST /eventgrid", "receive namespace events"), and
	// SpanAttrs are the source's attributes of it; a source sets them only when Path.Tracing.
	Span      string
	SpanAttrs []attribute.KeyValue
	// Each gives every event an outcome of its own (a pulled batch, settled lock by lock). Without it the
	// delivery is all-or-nothing (a pushed request, answered with one status): an event that can never be
	// stored refuses the delivery before anything is published.
	Each bool

	// What a redrive adds: Headers, when set, has an entry per event, headers for the message of that
	// event (the dead-letter facts Event Grid wrote beside it); DeadLetterNote is added to the reason of
	// each dead letter (the blob it was read from); MsgIDSuffix is appended to every Nats-Msg-Id (an event
	// whose id its own dead letter still holds in the duplicate window).
	Headers        []nats.Header
	DeadLetterNote string
	MsgIDSuffix    string
}

// Outcome is what became of one event, and so what its source answers: the same rule decides a pushed
// delivery's status code and a pulled event's settlement.
type Outcome int

const (
	// Stored: in the stream (a duplicate included) or on the dead-letter subject. 200; acknowledge.
	Stored Outcome = iota
	// Retry: not stored now (NATS unreachable, a publish timed out, the stream missing or refusing). 503;
	// release, to be delivered again.
	Retry
	// Refused: never storable (not an event, passthrough off, larger than the NATS max payload). 400 or
	// 413; reject, so that Event Grid dead-letters it.
	Refused
)

// String names the outcome: stored, retry or refused.
func (o Outcome) String() string {
	switch o {
	case Stored:
		return "stored"
	case Retry:
		return "retry"
	}
	return "refused"
}

// OutcomeOf is the outcome of an error, read from its status (StatusOf): what a push would answer with a
// 4xx is refused, anything else (503, or a bug's 500) is retried rather than lost.
func OutcomeOf(err error) Outcome {
	switch code := StatusOf(err); {
	case err == nil:
		return Stored
	case code >= 400 && code < 500:
		return Refused
	}
	return Retry
}

// Result is what became of one event and, unless it was stored, why.
type Result struct {
	Outcome Outcome
	Err     error
	// Duplicate is set for an event JetStream already held (a redelivery).
	Duplicate bool
}

// Report is what one delivery did: an outcome per event, and what its source's log record says.
type Report struct {
	// Results has one entry per event of Delivery.Events, in order.
	Results []Result
	// Err is why an all-or-nothing delivery was not stored, or the first event's error of one that is not.
	Err error
	// Validation is the Event Grid subscription validation the delivery carried, for the source to answer.
	Validation *cloudevents.Validation
	// ids are the first event ids, in an array so that keeping them allocates nothing.
	ids  [5]string
	nids int
	// Messages are the messages published; Duplicates, DeadLettered and PassedThrough count some of them.
	Messages, Duplicates, DeadLettered, PassedThrough int
	// Subject is the first message's subject; Stream and Seq are its ack's.
	Subject, Stream string
	Seq             uint64
}

// addID keeps the first few event ids of a delivery for its log record.
func (r *Report) addID(id string) {
	if r.nids < len(r.ids) {
		r.ids[r.nids] = id
		r.nids++
	}
}

// Deliver takes a delivery along the path: each event is decided once (envelope, ping, passthrough, dead
// letter, handshake or refused), its message built, every message published, and every ack awaited.
func (p *Path) Deliver(ctx context.Context, d *Delivery) Report {
	rep := Report{Results: make([]Result, len(d.Events))}
	out, err := p.prepare(ctx, d, &rep)
	if err != nil {
		rep.Err = err
		return rep
	}
	rep.Messages, rep.DeadLettered, rep.PassedThrough = len(out.msgs), out.dead, out.passed
	if len(out.msgs) == 0 {
		return rep
	}
	rep.Subject = out.msgs[0].Subject
	// Nothing of d is read past here, so that the events, and the body they are parts of, can be collected
	// while the acks are awaited: under load that wait is most of a delivery's time.
	each := d.Each
	finish := p.startSpans(ctx, d, out)
	start := time.Now()
	acks, err := p.pub.Publish(ctx, out.msgs)
	if errors.Is(err, ErrTooLarge) && each {
		// One message or more is over NATS's max payload: each on its own, so that only those are refused.
		acks, err = p.publishEach(ctx, out, &rep)
	}
	p.metrics.publishTime.Observe(time.Since(start).Seconds())
	finish(acks, err)
	if err != nil {
		rep.Err = err
		for _, i := range out.events {
			if i >= 0 && rep.Results[i].Err == nil {
				rep.Results[i] = Result{Outcome: OutcomeOf(err), Err: err}
			}
		}
		return rep
	}
	for k, kind := range out.kinds {
		i := out.events[k]
		if i >= 0 && rep.Results[i].Outcome == Refused {
			continue // over the max payload, published alone and refused
		}
		if k < len(acks) && acks[k].Duplicate {
			rep.Duplicates++
			p.metrics.duplicates.Inc()
			if i >= 0 {
				rep.Results[i].Duplicate = true
			}
			continue
		}
		p.metrics.publishedAs[kind].Inc() // core NATS gives no acks: every message counts as new
		switch kind {
		case KindDeadLetter:
			p.metrics.deadLettered.Inc()
		case KindPassthrough:
			p.metrics.passedThrough.Inc()
		}
	}
	for _, a := range acks {
		if a.Stream != "" {
			rep.Stream, rep.Seq = a.Stream, a.Sequence
			break
		}
	}
	return rep
}

// outbox is the messages one delivery publishes, with what the path knows of each.
type outbox struct {
	msgs []*nats.Msg
	// kinds[k] is what msgs[k] is, and events[k] the index of its event in Delivery.Events (-1 for a
	// batch element that is not an event).
	kinds  []Kind
	events []int
	// templates[k] is msgs[k]'s subject with its registry and repository tokens written as such, and
	// traces[k] the trace context of the event it carries; kept only when traced, for the spans.
	traced       bool
	templates    []string
	traces       []cloudevents.Trace
	dead, passed int
}

func (o *outbox) add(msg *nats.Msg, kind Kind, event int, template string, trace cloudevents.Trace) {
	o.msgs = append(o.msgs, msg)
	o.kinds = append(o.kinds, kind)
	o.events = append(o.events, event)
	if o.traced {
		o.templates = append(o.templates, template)
		o.traces = append(o.traces, trace)
	}
	switch kind {
	case KindDeadLetter:
		o.dead++
	case KindPassthrough:
		o.passed++
	}
}

// loggedDeadLetters is how many dead letters of one delivery get a log line each; the delivery's own line
// counts them all, so that a batch of 5000 bad elements is not 5000 lines.
const loggedDeadLetters = 5

// prepare decides every event of a delivery and builds its message. It publishes nothing, so that a
// delivery refused here has stored nothing; the error is that refusal (all-or-nothing deliveries only).
func (p *Path) prepare(ctx context.Context, d *Delivery, rep *Report) (*outbox, error) {
	now := time.Now()
	size := len(d.Events) + len(d.Invalid)
	out := &outbox{msgs: make([]*nats.Msg, 0, size), kinds: make([]Kind, 0, size), events: make([]int, 0, size), traced: p.tracing}
	if p.tracing {
		out.templates, out.traces = make([]string, 0, size), make([]cloudevents.Trace, 0, size)
	}
	// With registry lookups on, every event is normalised first, so that the lookups of a batch run at
	// once; otherwise each is normalised as it is decided.
	var looked []looked
	if p.opts.Registry != nil {
		looked = p.lookUp(ctx, d, now)
	}
	for i := range d.Events {
		ev := &d.Events[i]
		var dc decision
		if looked != nil {
			dc = p.decide(ev, &looked[i].Normalized, now)
			if looked[i].held {
				dc = decision{kind: KindRefused, id: dc.id, err: looked[i].lookupErr}
			}
		} else {
			ev.Trace = ev.Trace.Or(d.Trace)
			n := p.norm.Normalize(*ev, d.Registry, now)
			dc = p.decide(ev, &n, now)
		}
		if dc.kind != KindValidation && dc.kind != KindSubscriptionDeleted {
			rep.addID(dc.id)
		}
		if dc.kind == KindRefused && !d.Each {
			return nil, dc.err
		}
		switch dc.kind {
		case KindRefused:
			rep.Results[i] = Result{Outcome: OutcomeOf(dc.err), Err: dc.err}
			if rep.Err == nil {
				rep.Err = dc.err
			}
		case KindValidation:
			rep.Validation = dc.validation
			p.log.Info("Event Grid subscription validation", "event_id", ev.ID, "topic", ev.Source)
		case KindSubscriptionDeleted:
			p.log.Warn("Event Grid subscription deleted", "event_id", ev.ID, "topic", ev.Source, "subject", ev.Subject)
		case KindDeadLetter:
			if out.dead < loggedDeadLetters {
				p.log.Warn("event dead-lettered", "event_id", ev.ID, "type", ev.Type, "reason", shortReason(dc.reason))
			}
			d.amend(dc.msg, dc.kind, i)
			out.add(dc.msg, dc.kind, i, dc.msg.Subject, ev.Trace)
		case KindPing:
			p.log.Info("ACR webhook ping", "registry", dc.registry, "action", dc.action, "event_id", dc.id)
			d.amend(dc.msg, dc.kind, i)
			out.add(dc.msg, dc.kind, i, dc.template, ev.Trace)
		default:
			d.amend(dc.msg, dc.kind, i)
			out.add(dc.msg, dc.kind, i, dc.template, ev.Trace)
		}
	}
	for _, inv := range d.Invalid {
		if out.dead < loggedDeadLetters {
			p.log.Warn("batch element dead-lettered", "reason", shortReason(inv.Reason))
		}
		dl := p.opts.Subjects.DeadLetter()
		msg := deadLetterMsg(dl, inv.ID, inv.Raw, inv.Reason, "", nil)
		d.amend(msg, KindDeadLetter, -1)
		out.add(msg, KindDeadLetter, -1, dl, cloudevents.Trace{})
	}
	return out, nil
}

// amend adds to the message of event i (-1: a batch element that is not an event) what a redrive asks
// for: the event's headers, the note on a dead letter's reason, the suffix of its Nats-Msg-Id.
func (d *Delivery) amend(msg *nats.Msg, kind Kind, i int) {
	if i >= 0 && i < len(d.Headers) {
		for k, v := range d.Headers[i] {
			msg.Header[k] = v
		}
	}
	if kind == KindDeadLetter && d.DeadLetterNote != "" {
		msg.Header.Set(acrevent.HeaderError, shortReason(msg.Header.Get(acrevent.HeaderError)+" ("+d.DeadLetterNote+")"))
	}
	if d.MsgIDSuffix != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msg.Header.Get(jetstream.MsgIDHeader)+d.MsgIDSuffix)
	}
}

// decision is what one event becomes, decided once; the rest of the path reads it.
type decision struct {
	kind Kind
	// msg is the message of an envelope, ping, passthrough or dead letter; template names its publish span.
	msg      *nats.Msg
	template string
	// id is the event id the log record keeps; registry and action are a ping's.
	id, registry, action string
	// reason is why a dead letter could not be normalised; err why a refused event can never be stored.
	reason string
	err    error
	// validation is a subscription validation's code.
	validation *cloudevents.Validation
}

// decide counts one normalised event and decides what it becomes: its message and kind, or why it is
// refused. Handshake events become no message.
func (p *Path) decide(ev *cloudevents.Event, n *Normalized, now time.Time) decision {
	switch n.Kind {
	case KindValidation:
		p.metrics.countReceived(*ev, ev.Type)
		v, _, err := cloudevents.ValidationOf(*ev)
		if err != nil {
			return decision{kind: KindRefused, err: err}
		}
		return decision{kind: KindValidation, validation: &v}
	case KindSubscriptionDeleted:
		p.metrics.countReceived(*ev, ev.Type)
		return decision{kind: KindSubscriptionDeleted}
	case KindACR, KindPing:
		p.metrics.countReceived(*ev, n.Envelope.Type)
		if n.TimeFallback != "" {
			p.log.Warn("event time does not parse; using "+n.TimeFallback,
				"event_id", n.Envelope.ID, "time", ev.Time, "used", n.Envelope.Time)
		}
		subj, err := p.opts.Subjects.For(&n.Envelope)
		if err != nil {
			return p.deadLetter(ev, n.Envelope.ID, err.Error())
		}
		dc := decision{kind: n.Kind, msg: envelopeMsg(subj, &n.Envelope, p.opts.Mode), id: n.Envelope.ID}
		if p.tracing {
			dc.template = p.opts.Subjects.Template(&n.Envelope)
		}
		if n.Kind == KindPing {
			dc.registry, dc.action = n.Envelope.Data.Registry, n.Envelope.Data.Action
		}
		return dc
	case KindPassthrough:
		p.metrics.countReceived(*ev, ev.Type)
		if !p.opts.Passthrough {
			return decision{kind: KindRefused, id: ev.ID,
				err: fmt.Errorf("%w: event %q has type %q, which is not an ACR event, and passthrough is off", cloudevents.ErrMalformed, ev.ID, ev.Type)}
		}
		msg, err := p.passthrough(ev, now)
		switch {
		case errors.Is(err, cloudevents.ErrMalformed), errors.Is(err, ErrSubjectTooLong):
			return p.deadLetter(ev, ev.ID, err.Error())
		case err != nil:
			return decision{kind: KindRefused, id: ev.ID, err: err}
		}
		return decision{kind: KindPassthrough, msg: msg, template: msg.Subject, id: ev.ID}
	}
	p.metrics.countReceived(*ev, ev.Type)
	return p.deadLetter(ev, ev.ID, n.Reason)
}

// deadLetter is the decision for an event that cannot be normalised: its dead-letter message, as received.
// A binary-mode CloudEvent's attributes travel in its ce-* headers, so they go along; a webhook's id lives
// inside a body that could not be read, so its hash stands in.
func (p *Path) deadLetter(ev *cloudevents.Event, logID, reason string) decision {
	id := ev.ID
	if ev.Schema == cloudevents.SchemaWebhook {
		id = ""
	}
	msg := deadLetterMsg(p.opts.Subjects.DeadLetter(), id, ev.Raw, reason, string(ev.Schema), ev.Headers)
	return decision{kind: KindDeadLetter, msg: msg, id: logID, reason: reason}
}

// passthrough builds the message of an event that is not an ACR event: a CloudEvent, unchanged but for
// the Event Grid schema -> CloudEvents conversion.
func (p *Path) passthrough(ev *cloudevents.Event, now time.Time) (*nats.Msg, error) {
	subj, err := p.opts.Subjects.ForPassthrough(ev.Type)
	if err != nil {
		return nil, err
	}
	if ev.Schema == cloudevents.SchemaCloudEvents && ev.CE == nil && p.opts.Mode == ModeStructured {
		msg, err := passthroughMsg(subj, nil, ev.ID, ev.Raw, p.opts.Mode)
		if err == nil {
			setTraceHeaders(msg.Header, ev.Trace)
		}
		return msg, err
	}
	tt := now.UTC()
	if t, ok := NormalizeTime(ev.Time); ok {
		tt, _ = time.Parse(time.RFC3339Nano, t)
	}
	ce, err := ev.CloudEvent(tt)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if ev.Schema == cloudevents.SchemaCloudEvents && ev.CE == nil {
		raw = ev.Raw
	}
	msg, err := passthroughMsg(subj, ce, ce.ID(), raw, p.opts.Mode)
	if err == nil {
		setTraceHeaders(msg.Header, ev.Trace)
	}
	return msg, err
}

// publishEach publishes the messages one at a time, after they were refused together as too large: a
// message over the limit is its event's refusal, and the rest are acknowledged as usual. It returns an
// ack per message (a refused one's is zero), or the first error that is not a refusal.
func (p *Path) publishEach(ctx context.Context, out *outbox, rep *Report) ([]Ack, error) {
	acks := make([]Ack, len(out.msgs))
	for k, m := range out.msgs {
		a, err := p.pub.Publish(ctx, []*nats.Msg{m})
		switch {
		case errors.Is(err, ErrTooLarge):
			if i := out.events[k]; i >= 0 {
				rep.Results[i] = Result{Outcome: Refused, Err: err}
			}
			if rep.Err == nil {
				rep.Err = err
			}
		case err != nil:
			return nil, err
		case len(a) == 1:
			acks[k] = a[0]
		}
	}
	return acks, nil
}
