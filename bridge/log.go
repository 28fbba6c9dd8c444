package bridge

import (
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// record is what one request did; the handlers fill it and logRequests writes it as one log record.
type record struct {
	// ids are the first event ids of the request, in an array so that keeping them allocates nothing.
	ids           [5]string
	nids          int
	events        int
	duplicates    int
	deadLettered  int
	passedThrough int
	subject       string
	stream        string
	seq           uint64
	auth          string
	err           error
	// deliveryCount and subscription are Event Grid's aeg-delivery-count and aeg-subscription-name.
	deliveryCount string
	subscription  string
}

// recordOf returns the request's record, which logRequests keeps in its ResponseWriter (a record in the
// request's context would cost a copy of the request on every delivery); a request that did not pass
// through logRequests gets a throwaway one, so handlers never check.
func recordOf(w http.ResponseWriter) *record {
	if sw, ok := w.(*statusWriter); ok {
		return &sw.rec
	}
	return &record{}
}

// addID keeps the first few event ids of a request for its log record.
func (r *record) addID(id string) {
	if r.nids < len(r.ids) {
		r.ids[r.nids] = id
		r.nids++
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
	rec  record
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logRequests counts every request in the metrics and writes one record per request: status, ids, subject, stream sequence, duplicates,
// duration. Probes are logged at debug so that they do not drown the deliveries.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		rec := &sw.rec
		next.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		// The mux sets the matched pattern on the request it routes: a fixed set of routes.
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.metrics.observeRequest(route, code, time.Since(start))
		level := slog.LevelInfo
		switch {
		case code >= 500 && code != http.StatusServiceUnavailable:
			level = slog.LevelError
		case code >= 400:
			level = slog.LevelWarn
		case r.Method == http.MethodGet:
			level = slog.LevelDebug
		}
		h := s.log.Handler()
		if !h.Enabled(r.Context(), level) {
			return
		}
		// Room for every attribute a record can have, so that the list is allocated once.
		attrs := make([]slog.Attr, 0, 16)
		attrs = append(attrs,
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", code),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		)
		if rec.nids > 0 {
			attrs = append(attrs, slog.String("event_ids", strings.Join(rec.ids[:rec.nids], ",")), slog.Int("messages", rec.events))
		}
		if rec.subject != "" {
			attrs = append(attrs, slog.String("subject", rec.subject))
		}
		if rec.stream != "" {
			attrs = append(attrs, slog.String("stream", rec.stream), slog.Uint64("seq", rec.seq), slog.Int("duplicates", rec.duplicates))
		}
		if rec.deadLettered > 0 {
			attrs = append(attrs, slog.Int("dead_lettered", rec.deadLettered))
		}
		if rec.passedThrough > 0 {
			attrs = append(attrs, slog.Int("passed_through", rec.passedThrough))
		}
		if rec.auth != "" {
			attrs = append(attrs, slog.String("auth", rec.auth))
		}
		if rec.subscription != "" {
			attrs = append(attrs, slog.String("aeg_subscription", rec.subscription))
		}
		if rec.deliveryCount != "" {
			attrs = append(attrs, slog.String("aeg_delivery_count", rec.deliveryCount))
		}
		if rec.err != nil {
			attrs = append(attrs, slog.String("error", shortReason(rec.err.Error())))
		}
		// The record is made here rather than by LogAttrs, which would look up the caller for a source
		// position that the handler does not print, on every delivery.
		record := slog.NewRecord(time.Now(), level, "request", 0)
		record.AddAttrs(attrs...)
		_ = h.Handle(r.Context(), record)
	})
}
