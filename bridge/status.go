package bridge

import (
	"errors"
	"net/http"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/entra"
)

// ErrUnauthorized is wrapped by every authentication failure; it is always 401, never 403.
var ErrUnauthorized = errors.New("unauthorized")

// StatusOf is the one place where an error becomes an HTTP status. Event Grid dead-letters 400, 401, 403
// and 413 without retrying and retries everything else, so a fault that may pass is never a 4xx.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, cloudevents.ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized), errors.Is(err, entra.ErrInvalidToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnavailable), errors.Is(err, entra.ErrKeysUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers a failed request. 4xx bodies say what was wrong in one line; a 503 says to retry and
// carries Retry-After; a 500 says "internal error" and only the log has the details.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := StatusOf(err)
	recordOf(w).err = err
	s.metrics.rejected.WithLabelValues(reasonOf(err)).Inc()
	var body string
	switch {
	case code == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", s.retryAfter())
		body = "temporarily unavailable, retry later"
	case code >= 500:
		body = "internal error"
	case code == http.StatusUnauthorized:
		// RFC 6750 §3: a 401 names the scheme it wants.
		w.Header().Set("WWW-Authenticate", `Bearer realm="acr-nats-bridge"`)
		body = shortReason(err.Error())
	default:
		body = shortReason(err.Error())
	}
	writeBody(w, code, textType, []byte(body+"\n"))
}
