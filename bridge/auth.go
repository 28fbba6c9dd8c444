package bridge

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/natsbridge/acr-nats-bridge/entra"
)

// Auth says who may POST deliveries. With no tokens and no Entra verifier, every request is admitted.
// With both, either one admits. The OPTIONS handshake and the probes are never authenticated: Event Grid
// sends no credentials with the handshake, and orchestrators none with probes.
type Auth struct {
	// Tokens are shared secrets; several are accepted at once so that one can be rotated.
	Tokens []string
	// QueryParam names a query parameter that may carry a token (Event Grid endpoint URLs), besides
	// the Authorization: Bearer header (ACR webhook headers, Event Grid delivery attributes). Empty
	// accepts the header only.
	QueryParam string
	// Entra verifies Microsoft Entra ID bearer tokens (Event Grid secure webhook delivery); nil accepts none.
	Entra *entra.Verifier
}

// tokenDigests hashes the shared secrets once, so that comparing a candidate costs the same whatever its
// length and however much of it matches.
func tokenDigests(tokens []string) [][sha256.Size]byte {
	d := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		d[i] = sha256.Sum256([]byte(t))
	}
	return d
}

// matchToken compares a candidate with every shared secret in constant time.
func (s *Server) matchToken(candidate string) bool {
	c := sha256.Sum256([]byte(candidate))
	match := 0
	for i := range s.tokens {
		match |= subtle.ConstantTimeCompare(c[:], s.tokens[i][:])
	}
	return match == 1
}

// authenticate admits a request that carries a valid credential and answers 401 to every other, before
// reading its body.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if len(s.tokens) == 0 && s.opts.Auth.Entra == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := s.admit(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		recordOf(w).auth = who
		next.ServeHTTP(w, r)
	})
}

// admit returns how the request authenticated: "token" or "entra:<client app id>".
func (s *Server) admit(r *http.Request) (string, error) {
	bearer, hasBearer := bearerToken(r.Header.Get("Authorization"))
	if hasBearer && s.matchToken(bearer) {
		return "token", nil
	}
	var query string
	if p := s.opts.Auth.QueryParam; p != "" && len(s.tokens) > 0 {
		query = r.URL.Query().Get(p)
		if query != "" && s.matchToken(query) {
			return "token", nil
		}
	}
	if hasBearer && s.opts.Auth.Entra != nil && strings.Count(bearer, ".") == 2 {
		c, err := s.opts.Auth.Entra.Verify(r.Context(), bearer)
		if err != nil {
			return "", err
		}
		return "entra:" + c.AppID, nil
	}
	if !hasBearer && query == "" {
		return "", fmt.Errorf("%w: no credentials: send Authorization: Bearer <token>%s", ErrUnauthorized, s.queryHint())
	}
	return "", fmt.Errorf("%w: credentials not accepted", ErrUnauthorized)
}

func (s *Server) queryHint() string {
	if s.opts.Auth.QueryParam == "" || len(s.tokens) == 0 {
		return ""
	}
	return " or the query parameter " + s.opts.Auth.QueryParam
}

// bearerToken returns the credentials of an "Authorization: Bearer <token>" header; the scheme is
// case-insensitive (RFC 9110 §11.1).
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
