// Package namespacetest is a stand-in Azure Event Grid namespace for tests: an HTTPS server speaking the
// namespace data-plane API of version 2024-06-01 as the Azure SDK's aznamespaces clients do. A topic
// takes CloudEvents (publish); a queue subscription hands them out under locks (receive), and takes
// them back by lock token (acknowledge, release with a delay, reject to a dead-letter list, renew).
// A lock that expires makes its event available again, delivered with a higher deliveryCount; past the
// subscription's maximum delivery count an event is dead-lettered.
package namespacetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// APIVersion is the data-plane API version the stand-in speaks.
const APIVersion = "2024-06-01"

// Options shape a stand-in namespace.
type Options struct {
	// Topic and Subscription name the namespace topic and its one queue subscription.
	Topic, Subscription string
	// Key is the shared access key; empty generates one.
	Key string
	// LockDuration is how long a received event stays locked (the service's default is 60 s).
	LockDuration time.Duration
	// MaxDeliveryCount is how often an event is delivered before it is dead-lettered (default 10).
	MaxDeliveryCount int
	// MaxWaitScale divides every receive's maxWaitTime, so that tests need not wait the service's
	// minimum of 10 s for an empty queue. 0 or 1 waits as the service does.
	MaxWaitScale int
	// Tokens, when set, checks Microsoft Entra ID bearer tokens (for the audience
	// https://eventgrid.azure.net) and returns the client they were issued to; that client must be among
	// Receivers, the identities holding the EventGrid Data Receiver role, or it is refused with 403.
	Tokens    func(ctx context.Context, token string) (clientID string, err error)
	Receivers []string
	// BeforeAcknowledge, when set, is called with the ids of the events an acknowledge request is about
	// to acknowledge, before it does: a test can check that the events are stored by then. When it returns
	// false the request fails with 500 and acknowledges nothing, as if it never arrived.
	BeforeAcknowledge func(ids []string) bool
}

// DeadLetter is an event the subscription dead-lettered.
type DeadLetter struct {
	Event  json.RawMessage
	Reason string
}

// Namespace is a running stand-in.
type Namespace struct {
	// URL is the namespace endpoint, https://127.0.0.1:port.
	URL string
	// Key is the shared access key a client must present.
	Key string
	// CertFile is a PEM file of the server's certificate, for SSL_CERT_FILE.
	CertFile string
	// Client is an HTTP client that trusts the server.
	Client *http.Client

	opts   Options
	server *httptest.Server

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced when an event becomes available
	entries     []*entry
	dead        []DeadLetter
	acked       []string // event ids, in acknowledgement order
	redelivered int
	requests    map[string]int
	status      int // answers every request with this status while set
}

type entry struct {
	id            string
	event         json.RawMessage
	deliveryCount int
	lockToken     string
	lockedUntil   time.Time
	availableAt   time.Time
}

// New starts a stand-in namespace that stops with the test.
func New(t testing.TB, opts Options) *Namespace {
	t.Helper()
	n, err := Start(opts, "127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// Start runs a stand-in namespace on addr (port 0 picks a free one) until Close, writing its certificate
// into dir: for `go run ./namespace/namespacetest/standin`, pull without Azure.
func Start(opts Options, addr, dir string) (*Namespace, error) {
	if opts.Topic == "" {
		opts.Topic = "acr-events"
	}
	if opts.Subscription == "" {
		opts.Subscription = "bridge"
	}
	if opts.Key == "" {
		opts.Key = randomToken(32)
	}
	if opts.LockDuration == 0 {
		opts.LockDuration = time.Minute
	}
	if opts.MaxDeliveryCount == 0 {
		opts.MaxDeliveryCount = 10
	}
	if opts.MaxWaitScale < 1 {
		opts.MaxWaitScale = 1
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stand-in namespace: %w", err)
	}
	n := &Namespace{Key: opts.Key, opts: opts, changed: make(chan struct{}), requests: map[string]int{}}
	n.server = httptest.NewUnstartedServer(http.HandlerFunc(n.serve))
	n.server.Listener.Close()
	n.server.Listener = l
	n.server.StartTLS()
	n.URL = n.server.URL
	n.Client = n.server.Client()
	n.CertFile = filepath.Join(dir, "namespace.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.server.Certificate().Raw})
	if err := os.WriteFile(n.CertFile, cert, 0o600); err != nil {
		n.server.Close()
		return nil, err
	}
	return n, nil
}

// Close stops the stand-in.
func (n *Namespace) Close() { n.server.Close() }

// Topic and Subscription are the names the stand-in serves.
func (n *Namespace) Topic() string        { return n.opts.Topic }
func (n *Namespace) Subscription() string { return n.opts.Subscription }

// Publish puts events, each one CloudEvent in structured JSON, on the subscription, as the topic would.
func (n *Namespace) Publish(events ...[]byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ev := range events {
		var attrs struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(ev, &attrs)
		n.entries = append(n.entries, &entry{id: attrs.ID, event: append(json.RawMessage(nil), ev...)})
	}
	n.wake()
}

// Acknowledged returns the ids of the acknowledged events, in order.
func (n *Namespace) Acknowledged() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.acked...)
}

// DeadLettered returns the dead-lettered events.
func (n *Namespace) DeadLettered() []DeadLetter {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]DeadLetter(nil), n.dead...)
}

// Outstanding is how many events are neither acknowledged nor dead-lettered: available, locked or
// released with a delay.
func (n *Namespace) Outstanding() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.entries)
}

// Redelivered counts the deliveries of events delivered before: after a lock expired or a release.
func (n *Namespace) Redelivered() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.redelivered
}

// Requests counts the requests by operation: receive, acknowledge, release, reject, renewLock,
// publish, and unauthorized, forbidden, notfound for refused ones.
func (n *Namespace) Requests(op string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.requests[op]
}

// Fail answers every request with status (a 503, say) until Fail(0).
func (n *Namespace) Fail(status int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status = status
	n.wake()
}

// wake tells waiting receives that something changed. n.mu is held.
func (n *Namespace) wake() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// serve routes the data-plane API: POST /topics/{topic}:publish and
// POST /topics/{topic}/eventsubscriptions/{subscription}:{operation}.
func (n *Namespace) serve(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	status := n.status
	n.mu.Unlock()
	if status != 0 {
		writeError(w, status, "ServiceUnavailable", "the namespace is not available")
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "only POST")
		return
	}
	if v := r.URL.Query().Get("api-version"); v != APIVersion {
		writeError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("api-version %q is not supported; use %s", v, APIVersion))
		return
	}
	switch n.authorize(r) {
	case http.StatusUnauthorized:
		n.count("unauthorized")
		writeError(w, http.StatusUnauthorized, "Unauthorized", "the request is not authorized: the shared access key or token is invalid")
		return
	case http.StatusForbidden:
		n.count("forbidden")
		writeError(w, http.StatusForbidden, "Forbidden", "the identity does not hold the EventGrid Data Receiver role on the subscription")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/topics/")
	topic, rest, _ := strings.Cut(path, "/")
	if op, ok := strings.CutPrefix(topic, n.opts.Topic+":"); ok && rest == "" && op == "publish" {
		n.count("publish")
		n.publish(w, r)
		return
	}
	sub, op, _ := strings.Cut(strings.TrimPrefix(rest, "eventsubscriptions/"), ":")
	if topic != n.opts.Topic || sub != n.opts.Subscription || !strings.HasPrefix(rest, "eventsubscriptions/") {
		n.count("notfound")
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("topic %q or event subscription %q does not exist", topic, sub))
		return
	}
	n.count(op)
	switch op {
	case "receive":
		n.receive(w, r)
	case "acknowledge", "release", "reject", "renewLock":
		n.settle(w, r, op)
	default:
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no operation %q", op))
	}
}

func (n *Namespace) count(op string) {
	n.mu.Lock()
	n.requests[op]++
	n.mu.Unlock()
}

// authorize accepts the shared access key the SDK's key credential sends, and Entra ID bearer tokens of
// the identities with the receiver role. It returns 0, or the status of the refusal.
func (n *Namespace) authorize(r *http.Request) int {
	auth := r.Header.Get("Authorization")
	if key, ok := strings.CutPrefix(auth, "SharedAccessKey "); ok {
		if subtle.ConstantTimeCompare([]byte(key), []byte(n.Key)) == 1 {
			return 0
		}
		return http.StatusUnauthorized
	}
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || n.opts.Tokens == nil {
		return http.StatusUnauthorized
	}
	client, err := n.opts.Tokens(r.Context(), token)
	switch {
	case err != nil:
		return http.StatusUnauthorized
	case !slices.Contains(n.opts.Receivers, client):
		return http.StatusForbidden
	}
	return 0
}

// publish takes one CloudEvent (application/cloudevents+json) or a batch
// (application/cloudevents-batch+json).
func (n *Namespace) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var events []json.RawMessage
	switch ct {
	case "application/cloudevents-batch+json":
		err = json.Unmarshal(body, &events)
	case "application/cloudevents+json":
		events = []json.RawMessage{body}
	default:
		err = fmt.Errorf("content type %q is not a CloudEvent", ct)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	raw := make([][]byte, len(events))
	for i, ev := range events {
		raw[i] = ev
	}
	n.Publish(raw...)
	writeJSON(w, map[string]any{})
}

type receiveDetail struct {
	BrokerProperties struct {
		LockToken     string `json:"lockToken"`
		DeliveryCount int    `json:"deliveryCount"`
	} `json:"brokerProperties"`
	Event json.RawMessage `json:"event"`
}

// receive hands out up to maxEvents available events under locks, waiting up to maxWaitTime seconds
// for the first one.
func (n *Namespace) receive(w http.ResponseWriter, r *http.Request) {
	maxEvents, maxWait := 1, 60
	q := r.URL.Query()
	if v := q.Get("maxEvents"); v != "" {
		maxEvents, _ = strconv.Atoi(v)
	}
	if v := q.Get("maxWaitTime"); v != "" {
		maxWait, _ = strconv.Atoi(v)
	}
	if maxEvents < 1 || maxEvents > 100 {
		writeError(w, http.StatusBadRequest, "BadRequest", "maxEvents must be 1 to 100")
		return
	}
	if maxWait < 10 || maxWait > 120 {
		writeError(w, http.StatusBadRequest, "BadRequest", "maxWaitTime must be 10 to 120 seconds")
		return
	}
	deadline := time.NewTimer(time.Duration(maxWait) * time.Second / time.Duration(n.opts.MaxWaitScale))
	defer deadline.Stop()
	for {
		n.mu.Lock()
		details := n.lockAvailable(maxEvents)
		changed := n.changed
		next := n.nextChange()
		n.mu.Unlock()
		if len(details) > 0 {
			writeJSON(w, map[string]any{"value": details})
			return
		}
		var tick <-chan time.Time
		if next > 0 {
			tick = time.After(next)
		}
		select {
		case <-changed:
		case <-tick:
		case <-deadline.C:
			writeJSON(w, map[string]any{"value": []receiveDetail{}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// lockAvailable locks up to max available events, first expiring the locks that have run out. n.mu is
// held.
func (n *Namespace) lockAvailable(max int) []receiveDetail {
	now := time.Now()
	var out []receiveDetail
	kept := n.entries[:0]
	for _, e := range n.entries {
		if e.lockToken != "" && now.After(e.lockedUntil) {
			e.lockToken = "" // the lock expired: the event is available again
		}
		if len(out) < max && e.lockToken == "" && !now.Before(e.availableAt) {
			if e.deliveryCount >= n.opts.MaxDeliveryCount {
				n.dead = append(n.dead, DeadLetter{Event: e.event, Reason: "MaxDeliveryCountExceeded"})
				continue
			}
			e.deliveryCount++
			if e.deliveryCount > 1 {
				n.redelivered++
			}
			e.lockToken = randomToken(24)
			e.lockedUntil = now.Add(n.opts.LockDuration)
			var d receiveDetail
			d.BrokerProperties.LockToken = e.lockToken
			d.BrokerProperties.DeliveryCount = e.deliveryCount
			d.Event = e.event
			out = append(out, d)
		}
		kept = append(kept, e)
	}
	n.entries = kept
	return out
}

// nextChange is how long until a lock expires or a released event becomes available; 0 if nothing is
// waiting on time. n.mu is held.
func (n *Namespace) nextChange() time.Duration {
	now := time.Now()
	var next time.Duration
	consider := func(t time.Time) {
		if d := t.Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	for _, e := range n.entries {
		if e.lockToken != "" {
			consider(e.lockedUntil)
		} else {
			consider(e.availableAt)
		}
	}
	return next
}

type failedLockToken struct {
	LockToken string `json:"lockToken"`
	Error     struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// settle acknowledges, releases, rejects or renews the events of the given lock tokens. A token that
// is unknown or whose lock has expired fails on its own, as the service reports it.
func (n *Namespace) settle(w http.ResponseWriter, r *http.Request, op string) {
	var req struct {
		LockTokens []string `json:"lockTokens"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.LockTokens) == 0 {
		writeError(w, http.StatusBadRequest, "BadRequest", "the body must hold lockTokens")
		return
	}
	var delay time.Duration
	if op == "release" {
		switch v := r.URL.Query().Get("releaseDelayInSeconds"); v {
		case "", "0", "10", "60", "600", "3600":
			s, _ := strconv.Atoi(v)
			delay = time.Duration(s) * time.Second
		default:
			writeError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("releaseDelayInSeconds %q is not 0, 10, 60, 600 or 3600", v))
			return
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if op == "acknowledge" && n.opts.BeforeAcknowledge != nil {
		var ids []string
		for _, tok := range req.LockTokens {
			if i := n.locked(tok, now); i >= 0 {
				ids = append(ids, n.entries[i].id)
			}
		}
		if !n.opts.BeforeAcknowledge(ids) {
			writeError(w, http.StatusInternalServerError, "InternalServerError", "the acknowledgement was lost")
			return
		}
	}
	succeeded, failed := []string{}, []failedLockToken{}
	for _, tok := range req.LockTokens {
		i := n.locked(tok, now)
		if i < 0 {
			f := failedLockToken{LockToken: tok}
			f.Error.Code, f.Error.Message = "BadToken", "the lock token is unknown or its lock has expired"
			failed = append(failed, f)
			continue
		}
		e := n.entries[i]
		switch op {
		case "acknowledge":
			n.acked = append(n.acked, e.id)
			n.entries = append(n.entries[:i], n.entries[i+1:]...)
		case "reject":
			n.dead = append(n.dead, DeadLetter{Event: e.event, Reason: "Rejected"})
			n.entries = append(n.entries[:i], n.entries[i+1:]...)
		case "release":
			e.lockToken, e.availableAt = "", now.Add(delay)
		case "renewLock":
			e.lockedUntil = now.Add(n.opts.LockDuration)
		}
		succeeded = append(succeeded, tok)
	}
	n.wake()
	writeJSON(w, map[string]any{"succeededLockTokens": succeeded, "failedLockTokens": failed})
}

// locked returns the index of the entry locked under tok, -1 if none holds a live lock. n.mu is held.
func (n *Namespace) locked(tok string, now time.Time) int {
	for i, e := range n.entries {
		if e.lockToken == tok && tok != "" {
			if now.After(e.lockedUntil) {
				return -1
			}
			return i
		}
	}
	return -1
}

func writeJSON(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

// writeError answers as the service does: {"error":{"code":..., "message":...}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
