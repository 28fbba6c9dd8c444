package bridge

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// record is what one request did; the handlers fill it and logRequests writes it as one log record.
type record struct {
	// Report is what the delivery path did with the request's events.
	Report
	auth string
	err  error
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

// statusClientClosed is the status logged and counted for a request whose sender closed the connection
// before the answer was written (nginx's 499): the answer was lost.
const statusClientClosed = 499

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
		// The sender closed its connection before the answer: it never gets it, whatever the handler
		// wrote. Logged and counted as nginx does, 499, not as what it would have been.
		var lost int
		if r.Context().Err() != nil && r.Method == http.MethodPost {
			lost, code = code, statusClientClosed
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
			return // before the attributes are built
		}
		// Room for every attribute a record can have, so that the list is allocated once.
		attrs := make([]slog.Attr, 0, 16)
		attrs = append(attrs,
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", code),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		)
		if lost != 0 {
			attrs = append(attrs, slog.String("answer", "not delivered: the sender closed the connection first; it would have been "+strconv.Itoa(lost)))
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
		LogDelivery(r.Context(), h, level, "request", &rec.Report, rec.err, attrs)
	})
}

// LogDelivery writes the one log record of a delivery, whatever its source: the source's own attributes
// (an HTTP request's method, path and status; a pulled batch's settlements), then what the path did (the
// first event ids, the messages, the first subject, the stream and its sequence, duplicates, dead letters
// and passed-through events), then the error, when there is one. The record is made here rather than by
// Logger.LogAttrs, which would look up the caller for a source position that the handler does not print,
// on every delivery.
func LogDelivery(ctx context.Context, h slog.Handler, level slog.Level, msg string, rep *Report, err error, attrs []slog.Attr) {
	if !h.Enabled(ctx, level) {
		return
	}
	if rep.nids > 0 {
		attrs = append(attrs, slog.String("event_ids", strings.Join(rep.ids[:rep.nids], ",")), slog.Int("messages", rep.Messages))
	}
	if rep.Subject != "" {
		attrs = append(attrs, slog.String("subject", rep.Subject))
	}
	if rep.Stream != "" {
		attrs = append(attrs, slog.String("stream", rep.Stream), slog.Uint64("seq", rep.Seq), slog.Int("duplicates", rep.Duplicates))
	}
	if rep.DeadLettered > 0 {
		attrs = append(attrs, slog.Int("dead_lettered", rep.DeadLettered))
	}
	if rep.PassedThrough > 0 {
		attrs = append(attrs, slog.Int("passed_through", rep.PassedThrough))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", shortReason(err.Error())))
	}
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
}
