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
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// Options are the HTTP server's settings; cmd/bridge fills them from the configuration.
type Options struct {
	AllowedOrigins cloudevents.Origins
	MaxBodyBytes   int64
	MaxEvents      int
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
	// MetricsHandler, when set, is served at GET /metrics.
	MetricsHandler http.Handler
}

// Server is the bridge's HTTP API: a source of deliveries for the path, and the probes.
type Server struct {
	opts     Options
	path     *Path
	dec      cloudevents.Decoder
	log      *slog.Logger
	inflight chan struct{}
	// inflightBytes is the body bytes the deliveries under way may hold.
	inflightBytes atomic.Int64
	tokens        [][sha256.Size]byte
	metrics       *Metrics
	mux           *http.ServeMux
	// handler is the mux wrapped in logRequests, built once.
	handler http.Handler
	// readyChecks are what /readyz asks besides the path, and pullCheck what /readyz/pull asks; set
	// before serving.
	readyChecks []func(context.Context) error
	pullCheck   func(context.Context) error
}

// AddReadyCheck makes /readyz answer 503 with check's error while it has one. Call it before serving.
func (s *Server) AddReadyCheck(check func(context.Context) error) {
	s.readyChecks = append(s.readyChecks, check)
}

// SetPullCheck is what GET /readyz/pull reports: the pull from an Event Grid namespace, apart from
// /readyz, which answers for the pushed deliveries a Service routes and must not fail them because the
// namespace does. Without it /readyz/pull is 404. Call it before serving.
func (s *Server) SetPullCheck(check func(context.Context) error) {
	s.pullCheck = check
}

// NewServer returns the HTTP handler of the bridge, handing deliveries to path and counting in its metrics.
func NewServer(opts Options, path *Path, log *slog.Logger) *Server {
	s := &Server{
		opts:     opts,
		path:     path,
		dec:      cloudevents.Decoder{MaxDepth: opts.MaxJSONDepth, MaxEvents: opts.MaxEvents},
		log:      log,
		inflight: make(chan struct{}, max(opts.MaxInflight, 1)),
		tokens:   tokenDigests(opts.Auth.Tokens),
		metrics:  path.metrics,
		mux:      http.NewServeMux(),
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
			s.fail(w, r, err)
			return
		}
		d, err := s.dec.Decode(r.Header, body)
		if errors.Is(err, cloudevents.ErrTooManyEvents) {
			err = fmt.Errorf("%w: more than %d events in one request (BRIDGE_MAX_EVENTS)", ErrTooLarge, s.opts.MaxEvents)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if n := len(d.Events) + len(d.Invalid); n > s.opts.MaxEvents {
			s.fail(w, r, fmt.Errorf("%w: %d events in one request, limit %d (BRIDGE_MAX_EVENTS)", ErrTooLarge, n, s.opts.MaxEvents))
			return
		}
		// An event without a trace context of its own (any Event Grid schema event) takes the request's.
		s.deliver(w, r, &Delivery{Events: d.Events, Invalid: d.Invalid, Trace: cloudevents.TraceOfHeader(r.Header)})
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
			s.fail(w, r, err)
			return
		}
		ev, err := s.dec.DecodeWebhook(body)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.deliver(w, r, &Delivery{Events: []cloudevents.Event{ev}, Registry: r.PathValue("registry"),
			Trace: cloudevents.TraceOfHeader(r.Header)})
	})
}

// deliver hands a request's events to the path and answers 200 only when every one is stored.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, d *Delivery) {
	// The mux's pattern is the method and the route: "POST /eventgrid", a span name of few values.
	d.Span = r.Pattern
	if s.path.Tracing() {
		d.SpanAttrs = []attribute.KeyValue{attribute.String("http.request.method", r.Method),
			attribute.String("http.route", strings.TrimPrefix(r.Pattern, r.Method+" "))}
	}
	rec := recordOf(w)
	rec.Report = s.path.Deliver(r.Context(), d)
	rep := &rec.Report
	if rep.Err != nil {
		s.fail(w, r, rep.Err)
		return
	}
	if rep.Validation != nil {
		writeBody(w, http.StatusOK, jsonType, cloudevents.ValidationResponse(*rep.Validation))
		return
	}
	// {"events":N,"duplicates":N,"deadLettered":N}
	summary := make([]byte, 0, 64)
	summary = strconv.AppendInt(append(summary, `{"events":`...), int64(rep.Messages), 10)
	summary = strconv.AppendInt(append(summary, `,"duplicates":`...), int64(rep.Duplicates), 10)
	summary = strconv.AppendInt(append(summary, `,"deadLettered":`...), int64(rep.DeadLettered), 10)
	writeBody(w, http.StatusOK, jsonType, append(summary, '}'))
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

// readyBudget is how long /readyz asks NATS before answering 503: inside the 2 s a probe allows, whatever
// NATS does (a stalled server holds the connection's lock, which a check may wait on).
const readyBudget = 1500 * time.Millisecond

func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyBudget)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			err := s.path.CanStore(ctx)
			for _, check := range s.readyChecks {
				if err != nil {
					break
				}
				err = check(ctx)
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			err = fmt.Errorf("%w: NATS did not answer within %s", ErrUnavailable, readyBudget)
		}
		if err != nil {
			w.Header().Set("Retry-After", s.retryAfter())
			writeBody(w, http.StatusServiceUnavailable, textType, []byte("not ready: "+err.Error()+"\n"))
			return
		}
		writeBody(w, http.StatusOK, textType, []byte("ready\n"))
	})
}

func (s *Server) handleReadyzPull() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.pullCheck == nil {
			writeBody(w, http.StatusNotFound, textType, []byte("no pull configured (BRIDGE_NAMESPACE_*)\n"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.pullCheck(ctx); err != nil {
			w.Header().Set("Retry-After", s.retryAfter())
			writeBody(w, http.StatusServiceUnavailable, textType, []byte("not ready: "+err.Error()+"\n"))
			return
		}
		writeBody(w, http.StatusOK, textType, []byte("pulling\n"))
	})
}

// errBodyRead is wrapped by the error of a body the sender did not finish sending (too slow for
// BRIDGE_READ_TIMEOUT, or the connection dropped): the sender's fault, not NATS's, and counted apart.
var errBodyRead = errors.New("reading the body")

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
		return nil, fmt.Errorf("%w: %w: %w", ErrUnavailable, errBodyRead, err)
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
			s.fail(w, r, fmt.Errorf("%w: %d deliveries in flight (BRIDGE_MAX_INFLIGHT)", errOverloaded, cap(s.inflight)))
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
				s.fail(w, r, fmt.Errorf("%w: %d body bytes in flight (BRIDGE_MAX_INFLIGHT_BYTES)", errOverloaded, budget))
				return
			}
			defer s.inflightBytes.Add(-n)
		}
		next.ServeHTTP(w, r)
	})
}

// HoldBytes takes n bytes of BRIDGE_MAX_INFLIGHT_BYTES for work other than a pushed delivery (a pulled
// batch), so that pushed and pulled events share one memory budget. It reports false, taking nothing,
// when the budget is spent by others; alone, n may exceed it, so that no batch waits forever. release
// gives the bytes back.
func (s *Server) HoldBytes(n int64) (release func(), ok bool) {
	budget := s.opts.MaxInflightBytes
	if budget <= 0 {
		return func() {}, true
	}
	if total := s.inflightBytes.Add(n); total > budget && total > n {
		s.inflightBytes.Add(-n)
		return nil, false
	}
	return func() { s.inflightBytes.Add(-n) }, true
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
