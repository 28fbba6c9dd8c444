package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// publisher stores messages; JetStream and Core are the two implementations.
type publisher interface {
	Publish(ctx context.Context, msgs []*nats.Msg) ([]Ack, error)
	Ready(ctx context.Context) error
}

// Options are the handler's settings; cmd/bridge fills them from the configuration.
type Options struct {
	Subjects        Subjects
	DefaultRegistry string
	Mode            Mode
	AllowedOrigins  cloudevents.Origins
	// Passthrough publishes events that are not ACR events; when false they are refused with 400.
	Passthrough  bool
	MaxBodyBytes int64
	MaxEvents    int
	// MaxInflight caps concurrent deliveries; past it the bridge answers 503 rather than queue.
	MaxInflight int
	// MaxInflightBytes caps the body bytes of concurrent deliveries, each counted at its Content-Length
	// (MaxBodyBytes when unknown); past it the bridge answers 503. Zero is no cap.
	MaxInflightBytes int64
	// RetryAfter is sent with every 503.
	RetryAfter time.Duration
	// MaxJSONDepth is the deepest JSON nesting accepted in one event.
	MaxJSONDepth int
	// Auth says who may POST; its zero value admits everyone.
	Auth Auth
	// Metrics records what the bridge does; nil keeps them in a registry of the server's own.
	Metrics *Metrics
	// Tracer, when it records (tracing.Enabled), gets a SERVER span per delivery and a PRODUCER span per
	// message; nil traces nothing.
	Tracer trace.Tracer
	// MetricsHandler, when set, is served at GET /metrics.
	MetricsHandler http.Handler
}

// Server is the bridge's HTTP API.
type Server struct {
	opts     Options
	norm     Normalizer
	dec      cloudevents.Decoder
	pub      publisher
	log      *slog.Logger
	inflight chan struct{}
	// inflightBytes is the body bytes the deliveries under way may hold.
	inflightBytes atomic.Int64
	tokens        [][sha256.Size]byte
	metrics       *Metrics
	mux           *http.ServeMux
	// handler is the mux wrapped in logRequests, built once.
	handler http.Handler
	tracer  trace.Tracer
	tracing bool
	// readyChecks are what /readyz asks besides the publisher; set before serving.
	readyChecks []func(context.Context) error
}

// AddReadyCheck makes /readyz answer 503 with check's error while it has one. Call it before serving.
func (s *Server) AddReadyCheck(check func(context.Context) error) {
	s.readyChecks = append(s.readyChecks, check)
}

// NewServer returns the HTTP handler of the bridge, publishing with pub (a *JetStream or *Core).
func NewServer(opts Options, pub publisher, log *slog.Logger) *Server {
	s := &Server{
		opts:     opts,
		norm:     Normalizer{DefaultRegistry: opts.DefaultRegistry},
		dec:      cloudevents.Decoder{MaxDepth: opts.MaxJSONDepth, MaxEvents: opts.MaxEvents},
		pub:      pub,
		log:      log,
		inflight: make(chan struct{}, max(opts.MaxInflight, 1)),
		tokens:   tokenDigests(opts.Auth.Tokens),
		metrics:  opts.Metrics,
		mux:      http.NewServeMux(),
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(prometheus.NewRegistry())
	}
	if opts.Tracer != nil {
		s.tracer, s.tracing = opts.Tracer, true
	}
	s.routes()
	s.handler = s.logRequests(s.mux)
	return s
}

// ServeHTTP logs one record per request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// handleEventGrid receives Event Grid deliveries in either schema, answers the Event Grid schema
// validation handshake, and publishes every event before answering 200.
func (s *Server) handleEventGrid() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.noteDelivery(recordOf(w), r.Header)
		body, err := s.readBody(w, r)
		if err != nil {
			s.error(w, r, err)
			return
		}
		d, err := s.dec.Decode(r.Header, body)
		if errors.Is(err, cloudevents.ErrTooManyEvents) {
			err = fmt.Errorf("%w: more than %d events in one request (BRIDGE_MAX_EVENTS)", ErrTooLarge, s.opts.MaxEvents)
		}
		if err != nil {
			s.error(w, r, err)
			return
		}
		if n := len(d.Events) + len(d.Invalid); n > s.opts.MaxEvents {
			s.error(w, r, fmt.Errorf("%w: %d events in one request, limit %d (BRIDGE_MAX_EVENTS)", ErrTooLarge, n, s.opts.MaxEvents))
			return
		}
		// An event without a trace context of its own (any Event Grid schema event) takes the delivery's.
		if reqTrace := cloudevents.TraceOfHeader(r.Header); reqTrace.Parent != "" {
			for i := range d.Events {
				d.Events[i].Trace = d.Events[i].Trace.Or(reqTrace)
			}
		}
		b, err := s.prepare(recordOf(w), d, "")
		if err != nil {
			s.error(w, r, err)
			return
		}
		s.publishAndAnswer(w, r, b)
	})
}

// noteDelivery records Event Grid's delivery metadata: the subscription and the attempt in the request's
// log record, and in the metrics whether it is a first delivery or a retry (aeg-delivery-count counts the
// attempts before this one).
func (s *Server) noteDelivery(rec *record, h http.Header) {
	rec.subscription = h.Get("Aeg-Subscription-Name")
	count := h.Get("Aeg-Delivery-Count")
	if count == "" {
		return
	}
	rec.deliveryCount = count
	if n, err := strconv.Atoi(count); err == nil && n > 0 {
		s.metrics.deliveries[1].Inc()
	} else {
		s.metrics.deliveries[0].Inc()
	}
}

// handleWebhook receives an ACR native webhook: one registry event per POST. The registry comes from the
// URL path when present, because chart events carry no request.host to take it from.
func (s *Server) handleWebhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := s.readBody(w, r)
		if err != nil {
			s.error(w, r, err)
			return
		}
		ev, err := s.dec.DecodeWebhook(body)
		if err != nil {
			s.error(w, r, err)
			return
		}
		ev.Trace = cloudevents.TraceOfHeader(r.Header)
		b, err := s.prepare(recordOf(w), &cloudevents.Delivery{Events: []cloudevents.Event{ev}}, r.PathValue("registry"))
		if err != nil {
			s.error(w, r, err)
			return
		}
		s.publishAndAnswer(w, r, b)
	})
}

// batch is the NATS messages of one request and what the sender is owed.
type batch struct {
	msgs []*nats.Msg
	// kinds[i] is what msgs[i] is: acr, ping, passthrough or deadletter.
	kinds []string
	// templates[i] is msgs[i]'s subject with its registry and repository tokens written as such, and
	// traces[i] the trace context of the event it carries.
	templates  []string
	traces     []cloudevents.Trace
	validation *cloudevents.Validation
	dead       int
	passed     int
}

// add appends msg, what it is, the subject template its publish span is named by, and the trace context
// of the event it carries.
func (b *batch) add(msg *nats.Msg, kind, template string, trace cloudevents.Trace) {
	b.msgs = append(b.msgs, msg)
	b.kinds = append(b.kinds, kind)
	b.templates = append(b.templates, template)
	b.traces = append(b.traces, trace)
}

// prepare normalises every event of a delivery and builds its message. It publishes nothing, so that a
// request refused here has stored nothing.
func (s *Server) prepare(rec *record, d *cloudevents.Delivery, pathRegistry string) (*batch, error) {
	now := time.Now()
	size := len(d.Events) + len(d.Invalid)
	b := &batch{msgs: make([]*nats.Msg, 0, size), kinds: make([]string, 0, size)}
	for _, ev := range d.Events {
		if err := s.prepareEvent(rec, b, ev, pathRegistry, now); err != nil {
			return nil, err
		}
	}
	for _, inv := range d.Invalid {
		if b.dead < loggedDeadLetters {
			s.log.Warn("batch element dead-lettered", "reason", shortReason(inv.Reason))
		}
		b.add(deadLetterMsg(s.opts.Subjects.DeadLetter(), "", inv.Raw, inv.Reason, "", nil), "deadletter", s.opts.Subjects.DeadLetter(), cloudevents.Trace{})
		b.dead++
	}
	return b, nil
}

// prepareEvent normalises one event and adds its message to b: the envelope, the event passed through,
// or its dead letter. Handshake events add none. An error is the event's alone: one that can never be
// published (passthrough off), or a bug.
func (s *Server) prepareEvent(rec *record, b *batch, ev cloudevents.Event, pathRegistry string, now time.Time) error {
	switch ev.Type {
	case cloudevents.TypeSubscriptionValidation:
		s.metrics.countReceived(ev, ev.Type)
		v, _, err := cloudevents.ValidationOf(ev)
		if err != nil {
			return err
		}
		b.validation = &v
		s.log.Info("Event Grid subscription validation", "event_id", ev.ID, "topic", ev.Source)
		return nil
	case cloudevents.TypeSubscriptionDeleted:
		s.metrics.countReceived(ev, ev.Type)
		s.log.Warn("Event Grid subscription deleted", "event_id", ev.ID, "topic", ev.Source, "subject", ev.Subject)
		return nil
	}
	n := s.norm.Normalize(ev, pathRegistry, now)
	if n.Kind == KindACR || n.Kind == KindPing {
		s.metrics.countReceived(ev, n.Envelope.Type)
	} else {
		s.metrics.countReceived(ev, ev.Type)
	}
	if n.Kind == KindACR || n.Kind == KindPing {
		rec.addID(n.Envelope.ID)
	} else {
		rec.addID(ev.ID)
	}
	if n.TimeFallback != "" && n.Kind != KindDeadLetter {
		s.log.Warn("event time does not parse; using "+n.TimeFallback,
			"event_id", n.Envelope.ID, "time", ev.Time, "used", n.Envelope.Time)
	}
	msg, err := s.message(ev, n, now)
	kind := "acr"
	template := ""
	var dl deadLetterError
	switch {
	case errors.As(err, &dl):
		if b.dead < loggedDeadLetters {
			s.log.Warn("event dead-lettered", "event_id", ev.ID, "type", ev.Type, "reason", shortReason(dl.reason))
		}
		msg, kind = s.deadLetter(ev, dl.reason), "deadletter"
		b.dead++
	case err != nil:
		return err
	case n.Kind == KindPassthrough:
		kind = "passthrough"
		b.passed++
	case n.Kind == KindPing:
		kind = "ping"
		s.log.Info("ACR webhook ping", "registry", n.Envelope.Data.Registry, "action", n.Envelope.Data.Action, "event_id", n.Envelope.ID)
	}
	switch {
	case !s.tracing:
		// Only spans are named by it.
	case kind == "acr" || kind == "ping":
		template = s.opts.Subjects.Template(&n.Envelope)
	default:
		template = msg.Subject // passthrough and dead-letter subjects are their own template
	}
	b.add(msg, kind, template, ev.Trace)
	return nil
}

// loggedDeadLetters is how many dead letters of one request get a log line each; the request's own line
// counts them all, so that a batch of 5000 bad elements is not 5000 lines.
const loggedDeadLetters = 5

// deadLetterError says an event cannot be published as it should be and goes to the dead-letter subject.
type deadLetterError struct{ reason string }

func (e deadLetterError) Error() string { return e.reason }

// message builds the NATS message of one normalised event.
func (s *Server) message(ev cloudevents.Event, n Normalized, now time.Time) (*nats.Msg, error) {
	switch n.Kind {
	case KindDeadLetter:
		return nil, deadLetterError{n.Reason}
	case KindPassthrough:
		if !s.opts.Passthrough {
			return nil, fmt.Errorf("%w: event %q has type %q, which is not an ACR event, and passthrough is off", cloudevents.ErrMalformed, ev.ID, ev.Type)
		}
		msg, err := s.passthrough(ev, now)
		if errors.Is(err, cloudevents.ErrMalformed) || errors.Is(err, ErrSubjectTooLong) {
			return nil, deadLetterError{err.Error()}
		}
		return msg, err
	}
	subj, err := s.opts.Subjects.For(&n.Envelope)
	if err != nil {
		return nil, deadLetterError{err.Error()}
	}
	return envelopeMsg(subj, &n.Envelope, s.opts.Mode), nil
}

// passthrough builds the message of an event that is not an ACR event: a CloudEvent, unchanged but for
// the Event Grid schema -> CloudEvents conversion.
func (s *Server) passthrough(ev cloudevents.Event, now time.Time) (*nats.Msg, error) {
	subj, err := s.opts.Subjects.ForPassthrough(ev.Type)
	if err != nil {
		return nil, err
	}
	if ev.Schema == cloudevents.SchemaCloudEvents && ev.CE == nil && s.opts.Mode == ModeStructured {
		msg, err := passthroughMsg(subj, nil, ev.ID, ev.Raw, s.opts.Mode)
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
	msg, err := passthroughMsg(subj, ce, ce.ID(), raw, s.opts.Mode)
	if err == nil {
		setTraceHeaders(msg.Header, ev.Trace)
	}
	return msg, err
}

// deadLetter builds the dead-letter message of an event as received. A binary-mode CloudEvent's
// attributes travel in its ce-* headers, so they go along.
func (s *Server) deadLetter(ev cloudevents.Event, reason string) *nats.Msg {
	id := ev.ID
	if ev.Schema == cloudevents.SchemaWebhook {
		// A webhook's id lives inside a body that could not be read; its hash stands in.
		id = ""
	}
	return deadLetterMsg(s.opts.Subjects.DeadLetter(), id, ev.Raw, reason, string(ev.Schema), ev.Headers)
}

// publishAndAnswer stores the batch and answers 200 only when every message is acknowledged.
func (s *Server) publishAndAnswer(w http.ResponseWriter, r *http.Request, b *batch) {
	rec := recordOf(w)
	rec.events = len(b.msgs)
	rec.deadLettered, rec.passedThrough = b.dead, b.passed
	if len(b.msgs) > 0 {
		rec.subject = b.msgs[0].Subject
		// The mux's pattern is the method and the route: "POST /eventgrid", a span name of few values.
		finish := s.startSpans(r.Context(), r.Pattern, b, r)
		start := time.Now()
		acks, err := s.pub.Publish(r.Context(), b.msgs)
		s.metrics.publishTime.Observe(time.Since(start).Seconds())
		finish(acks, err)
		if err != nil {
			s.error(w, r, err)
			return
		}
		rec.duplicates = s.countPublished(b.kinds, acks)
		if len(acks) > 0 {
			rec.stream, rec.seq = acks[0].Stream, acks[0].Sequence
		}
	}
	if b.validation != nil {
		writeBody(w, http.StatusOK, jsonType, cloudevents.ValidationResponse(*b.validation))
		return
	}
	// {"events":N,"duplicates":N,"deadLettered":N}
	summary := make([]byte, 0, 64)
	summary = strconv.AppendInt(append(summary, `{"events":`...), int64(len(b.msgs)), 10)
	summary = strconv.AppendInt(append(summary, `,"duplicates":`...), int64(rec.duplicates), 10)
	summary = strconv.AppendInt(append(summary, `,"deadLettered":`...), int64(b.dead), 10)
	writeBody(w, http.StatusOK, jsonType, append(summary, '}'))
}

// countPublished counts the messages of kinds as JetStream acknowledged them in acks, and returns how
// many were duplicates. Core NATS gives no acks: every message counts as new.
func (s *Server) countPublished(kinds []string, acks []Ack) (duplicates int) {
	for i, kind := range kinds {
		if i < len(acks) && acks[i].Duplicate {
			duplicates++
			s.metrics.duplicates.Inc()
			continue
		}
		s.metrics.publishedAs[kind].Inc()
		switch kind {
		case "deadletter":
			s.metrics.deadLettered.Inc()
		case "passthrough":
			s.metrics.passedThrough.Inc()
		}
	}
	return duplicates
}

// handleValidationOptions answers the CloudEvents webhook abuse-protection handshake, which Event Grid
// sends to subscriptions in the CloudEvents schema before the first delivery.
func (s *Server) handleValidationOptions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Allow", "POST, OPTIONS")
		origin := r.Header.Get("WebHook-Request-Origin")
		switch {
		case origin == "":
		case s.opts.AllowedOrigins.Allows(origin):
			h.Set("WebHook-Allowed-Origin", origin)
			h.Set("WebHook-Allowed-Rate", "*")
			s.log.Info("CloudEvents webhook validation", "origin", origin)
		default:
			s.log.Warn("CloudEvents webhook validation from an origin not in BRIDGE_ALLOWED_ORIGINS", "origin", origin)
		}
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})
}

func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeBody(w, http.StatusOK, textType, []byte("ok\n"))
	})
}

func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := s.pub.Ready(ctx)
		for _, check := range s.readyChecks {
			if err != nil {
				break
			}
			err = check(ctx)
		}
		if err != nil {
			w.Header().Set("Retry-After", s.retryAfter())
			writeBody(w, http.StatusServiceUnavailable, textType, []byte("not ready: "+err.Error()+"\n"))
			return
		}
		writeBody(w, http.StatusOK, textType, []byte("ready\n"))
	})
}

// readBody reads the whole body, up to MaxBodyBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: body of %d bytes, limit %d (BRIDGE_MAX_BODY_BYTES)", ErrTooLarge, r.ContentLength, limit)
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fmt.Errorf("%w: body over %d bytes (BRIDGE_MAX_BODY_BYTES)", ErrTooLarge, limit)
	case err != nil:
		// A body cut short or too slow (BRIDGE_READ_TIMEOUT) says nothing about the events in it: the
		// sender may retry, which a 400 would forbid.
		return nil, fmt.Errorf("%w: reading the body: %v", ErrUnavailable, err)
	}
	return body, nil
}

// readAll is io.ReadAll that sizes its buffer by the announced Content-Length: one allocation for a
// small body, and for a large one a buffer that doubles, never past the announced size, rather than
// append's gentler growth and its many copies. A sender that announces a large body and sends it slowly
// reserves no more than twice what it has sent.
func readAll(r io.Reader, contentLength int64) ([]byte, error) {
	var want int64 // unknown (a chunked body)
	size := int64(512)
	if contentLength >= 0 {
		want = contentLength + 1 // +1: EOF is seen without growing
		size = min(want, 64<<10)
	}
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			grown := int64(2 * cap(b))
			if int64(cap(b)) < want {
				grown = min(grown, want)
			}
			b = append(make([]byte, 0, grown), b...)
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// limitInflight answers 503 at once when MaxInflight deliveries are under way, or when this one's body
// would take the bodies in flight past MaxInflightBytes, so that a flood is turned away instead of
// queued until memory runs out; Event Grid retries.
func (s *Server) limitInflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.inflight <- struct{}{}:
			s.metrics.inflight.Inc()
			defer func() {
				<-s.inflight
				s.metrics.inflight.Dec()
			}()
		default:
			s.error(w, r, fmt.Errorf("%w: %d deliveries in flight (BRIDGE_MAX_INFLIGHT)", errOverloaded, cap(s.inflight)))
			return
		}
		// A count alone would let a few hundred large bodies take the memory: the bytes are capped too.
		if budget := s.opts.MaxInflightBytes; budget > 0 {
			n := r.ContentLength
			if n < 0 || n > s.opts.MaxBodyBytes {
				n = s.opts.MaxBodyBytes // unknown, or to be refused at MaxBodyBytes
			}
			if s.inflightBytes.Add(n) > budget {
				s.inflightBytes.Add(-n)
				s.error(w, r, fmt.Errorf("%w: %d body bytes in flight (BRIDGE_MAX_INFLIGHT_BYTES)", errOverloaded, budget))
				return
			}
			defer s.inflightBytes.Add(-n)
		}
		next.ServeHTTP(w, r)
	})
}

// errOverloaded is the in-flight cap's refusal; it may pass, so it is an ErrUnavailable.
var errOverloaded = fmt.Errorf("overloaded: %w", ErrUnavailable)

func (s *Server) retryAfter() string {
	return strconv.Itoa(max(int(s.opts.RetryAfter.Round(time.Second)/time.Second), 1))
}

// smallBody is a size of answer that net/http holds until the handler returns (it holds 2 KiB over
// HTTP/1.1, 4 KiB over HTTP/2) and then sends with a Content-Length of its own making, which costs less
// than a header set here.
const smallBody = 1 << 10

// Content-Type values of the answers, shared by every answer: header values are never changed in place,
// and net/http copies them before it writes, so that setting one costs no allocation.
var (
	jsonType = []string{"application/json"}
	textType = []string{"text/plain; charset=utf-8"}
)

// writeBody answers code with body, of the content type given as a header value.
func writeBody(w http.ResponseWriter, code int, contentType []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentType
	if len(body) > smallBody {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	} // else net/http writes the Content-Length of a body it still holds when the handler returns
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
