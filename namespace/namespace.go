// Package namespace pulls events from an Azure Event Grid namespace queue subscription, for a bridge with
// no public endpoint: receive calls go out over HTTPS with the Azure SDK's own client (aznamespaces),
// each received CloudEvent takes the path of a pushed one, and its lock is settled by what became of it:
// acknowledged once stored, released when NATS cannot store it now, rejected when it never can be.
package namespace

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/aznamespaces"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// Deliverer is the bridge's delivery path (*bridge.Path), which pulled events take as pushed ones do.
type Deliverer interface {
	// Deliver publishes a delivery's events and reports what became of each.
	Deliver(ctx context.Context, d *bridge.Delivery) bridge.Report
	// CanStore reports whether NATS can store events now.
	CanStore(ctx context.Context) error
}

// Options say where to pull from and how.
type Options struct {
	// Endpoint is the namespace's https URL; Topic and Subscription name the namespace topic and its
	// queue subscription.
	Endpoint, Topic, Subscription string
	// Key is the namespace's shared access key; without one, Credential (Microsoft Entra ID) is used.
	Key        string
	Credential azcore.TokenCredential
	// Receivers is how many receive calls are under way at once.
	Receivers int
	// MaxEvents (1-100) and MaxWait (10s-120s) bound one receive call.
	MaxEvents int
	MaxWait   time.Duration
	// ReleaseDelay is how long a released event waits before it is delivered again: 0s, 10s, 60s, 10m or 1h.
	ReleaseDelay time.Duration
	// SettleTimeout bounds the delivery and settlement of one received batch; it outlasts a shutdown's
	// cancellation, so that what was received is settled.
	SettleTimeout time.Duration
	// ClientOptions are the SDK client's (a transport that trusts a private CA, in tests).
	ClientOptions azcore.ClientOptions
	// MaxJSONDepth is the deepest JSON nesting accepted in one event, as for pushed ones.
	MaxJSONDepth int
	// Budget, when set, is the bridge's budget of bytes in flight (BRIDGE_MAX_INFLIGHT_BYTES), which a
	// received batch holds while it is delivered, as a pushed body does; the batch waits (its locks
	// renewed) until it fits.
	Budget interface {
		HoldBytes(n int64) (release func(), ok bool)
	}
	// RenewEvery is how often the locks of a batch still being published are renewed, so that a NATS
	// slower than the lock does not make the namespace deliver the batch again; 0 is 20 s, a third of the
	// shortest lock a subscription can have (60 s).
	RenewEvery time.Duration
}

// Puller receives from the namespace and settles what it receives.
type Puller struct {
	opts    Options
	client  *aznamespaces.ReceiverClient
	deliver Deliverer
	dec     cloudevents.Decoder
	log     *slog.Logger
	metrics *metrics
	release aznamespaces.ReleaseDelay

	// problem is why the namespace cannot be used now ("" while it can), for /readyz; problemMu orders its
	// changes so that each is logged once.
	problemMu sync.Mutex
	problem   atomic.Pointer[string]
	natsDown  atomic.Bool
}

// releaseDelays are the delays a release may ask for.
var releaseDelays = map[time.Duration]aznamespaces.ReleaseDelay{
	0:                aznamespaces.ReleaseDelayNoDelay,
	10 * time.Second: aznamespaces.ReleaseDelayTenSeconds,
	time.Minute:      aznamespaces.ReleaseDelayOneMinute,
	10 * time.Minute: aznamespaces.ReleaseDelayTenMinutes,
	time.Hour:        aznamespaces.ReleaseDelayOneHour,
}

// New returns a puller that hands what it receives to d. Its metrics are registered with reg.
func New(opts Options, d Deliverer, reg prometheus.Registerer, log *slog.Logger) (*Puller, error) {
	release, ok := releaseDelays[opts.ReleaseDelay]
	if !ok {
		return nil, fmt.Errorf("release delay %s is not one of 0s, 10s, 1m, 10m, 1h", opts.ReleaseDelay)
	}
	if opts.SettleTimeout == 0 {
		opts.SettleTimeout = 30 * time.Second
	}
	co := opts.ClientOptions
	// The bridge reads the received events itself, as sent, with the decoder pushed deliveries go through.
	co.PerCallPolicies = append(co.PerCallPolicies, keepReceiveBody{})
	var client *aznamespaces.ReceiverClient
	var err error
	if opts.Key != "" {
		client, err = aznamespaces.NewReceiverClientWithSharedKeyCredential(opts.Endpoint, opts.Topic, opts.Subscription,
			azcore.NewKeyCredential(opts.Key), &aznamespaces.ReceiverClientOptions{ClientOptions: co})
	} else {
		client, err = aznamespaces.NewReceiverClient(opts.Endpoint, opts.Topic, opts.Subscription, opts.Credential,
			&aznamespaces.ReceiverClientOptions{ClientOptions: co})
	}
	if err != nil {
		return nil, fmt.Errorf("namespace client: %w", err)
	}
	p := &Puller{opts: opts, client: client, deliver: d, dec: cloudevents.Decoder{MaxDepth: opts.MaxJSONDepth}, log: log, metrics: newMetrics(reg), release: release}
	first := notYet
	p.problem.Store(&first)
	return p, nil
}

// notYet is the problem until the first receive call succeeds: the pull is not known to work.
const notYet = "no receive call has succeeded yet"

// Ready reports why the namespace cannot be used now: no receive call has succeeded yet, it refuses the
// bridge, the topic or subscription is missing, or it cannot be reached. Nil while receiving works.
func (p *Puller) Ready(context.Context) error {
	if pr := *p.problem.Load(); pr != "" {
		return fmt.Errorf("event grid namespace: %s", pr)
	}
	return nil
}

// Run receives with Options.Receivers calls at a time until ctx ends, then settles what it has received
// and returns.
func (p *Puller) Run(ctx context.Context) {
	p.log.Info("pulling from an Event Grid namespace", "endpoint", p.opts.Endpoint, "topic", p.opts.Topic,
		"subscription", p.opts.Subscription, "receivers", p.opts.Receivers, "max_events", p.opts.MaxEvents,
		"max_wait", p.opts.MaxWait.String(), "auth", p.authName())
	var wg sync.WaitGroup
	for range p.opts.Receivers {
		wg.Go(func() { p.receiveLoop(ctx) })
	}
	wg.Wait()
	p.log.Info("stopped pulling; every received event settled")
}

func (p *Puller) authName() string {
	if p.opts.Key != "" {
		return "shared access key"
	}
	return "Microsoft Entra ID"
}

// receiveLoop receives, delivers and settles, one batch after another. It receives only while NATS can
// store: every receive raises the delivery counts of what it takes, and past the subscription's maximum
// the namespace dead-letters an event, so events received only to be released would be lost to an
// outage. A failed receive, and a batch that could not be stored, back off, doubling from 1 s to 30 s.
func (p *Puller) receiveLoop(ctx context.Context) {
	failures := 0
	pause := func() bool {
		failures++
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff(failures)):
			return true
		}
	}
	for ctx.Err() == nil {
		if err := p.deliver.CanStore(ctx); err != nil {
			p.setNATSProblem(err)
			if !pause() {
				return
			}
			continue
		}
		p.setNATSProblem(nil)
		events, tokens, err := p.receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.metrics.receiveErrors.WithLabelValues(reasonOf(err)).Inc()
			p.setProblem(describe(err))
			if !pause() {
				return
			}
			continue
		}
		p.setProblem("")
		if len(events) == 0 {
			failures = 0
			continue
		}
		p.metrics.received.Add(float64(len(events)))
		// What was received is delivered and settled even when a shutdown has begun.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.SettleTimeout)
		retried := p.settle(sctx, events, tokens)
		cancel()
		if retried == 0 {
			failures = 0
		} else if !pause() {
			return
		}
	}
}

// setNATSProblem logs when receiving stops because NATS cannot store, and when it resumes.
func (p *Puller) setNATSProblem(err error) {
	down := err != nil
	if p.natsDown.Swap(down) == down {
		return
	}
	if down {
		p.log.Warn("not receiving from the Event Grid namespace while NATS cannot store", "error", err.Error())
		return
	}
	p.log.Info("NATS can store again; receiving from the Event Grid namespace")
}

// backoff waits 1 s, doubling to 30 s, with jitter so that receivers do not retry in step.
func backoff(failures int) time.Duration {
	d := min(time.Second<<min(failures-1, 5), 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

// setProblem records why the namespace cannot be used, and logs each change once.
func (p *Puller) setProblem(pr string) {
	p.problemMu.Lock()
	defer p.problemMu.Unlock()
	prev := *p.problem.Load()
	if prev == pr {
		return
	}
	p.problem.Store(&pr)
	switch {
	case pr == "" && prev == notYet:
		p.log.Info("Event Grid namespace receiving", "topic", p.opts.Topic, "subscription", p.opts.Subscription)
		return
	case pr == "":
		p.log.Info("Event Grid namespace receiving again", "topic", p.opts.Topic, "subscription", p.opts.Subscription)
		return
	}
	p.log.Error("Event Grid namespace receive failing; retrying with backoff", "topic", p.opts.Topic,
		"subscription", p.opts.Subscription, "reason", pr)
}

// bodyKey keys the holder of a receive call's response body in its request's context.
type bodyKey struct{}

// keepReceiveBody keeps the body of a successful receive response for the bridge to read as sent. The
// SDK's own model of a CloudEvent turns JSON data into bytes and drops nothing only by luck; the bridge's
// decoder reads the events exactly as the namespace sent them, as it reads pushed ones.
type keepReceiveBody struct{}

func (keepReceiveBody) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	holder, ok := req.Raw().Context().Value(bodyKey{}).(*[]byte)
	if err != nil || !ok || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	*holder = body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// receiveBody is the wire form of a receive response.
type receiveBody struct {
	Value []struct {
		BrokerProperties struct {
			LockToken     string `json:"lockToken"`
			DeliveryCount int    `json:"deliveryCount"`
		} `json:"brokerProperties"`
		Event json.RawMessage `json:"event"`
	} `json:"value"`
}

// receive makes one receive call and returns the events as sent, with their lock tokens.
func (p *Puller) receive(ctx context.Context) ([]json.RawMessage, []string, error) {
	var body []byte
	_, err := p.client.ReceiveEvents(context.WithValue(ctx, bodyKey{}, &body), &aznamespaces.ReceiveEventsOptions{
		MaxEvents:   to.Ptr(int32(p.opts.MaxEvents)),
		MaxWaitTime: to.Ptr(int32(p.opts.MaxWait / time.Second)),
	})
	var re *azcore.ResponseError
	if err != nil && (body == nil || errors.As(err, &re)) {
		return nil, nil, err
	}
	// A body the SDK could not model (an event time it does not parse, say) is still read here.
	var rb receiveBody
	if err := json.Unmarshal(body, &rb); err != nil {
		return nil, nil, fmt.Errorf("receive: the response is not a receive result: %w", err)
	}
	events := make([]json.RawMessage, 0, len(rb.Value))
	tokens := make([]string, 0, len(rb.Value))
	for _, d := range rb.Value {
		if d.BrokerProperties.LockToken == "" {
			continue // nothing could settle it; its lock expires and it is delivered again
		}
		events = append(events, d.Event)
		tokens = append(tokens, d.BrokerProperties.LockToken)
		if d.BrokerProperties.DeliveryCount > 1 {
			p.metrics.redelivered.Inc()
		}
	}
	return events, tokens, nil
}

// settle delivers events and settles each lock by its outcome: stored ones are acknowledged only now,
// after their PubAck; the rest are released or rejected. It returns how many were released.
func (p *Puller) settle(ctx context.Context, events []json.RawMessage, tokens []string) int {
	start := time.Now()
	stopRenewing := p.renewWhile(ctx, tokens)
	giveBack := p.holdBytes(ctx, events)
	results, rep := DeliverEach(ctx, p.deliver, p.dec, events)
	giveBack()
	stopRenewing()
	var ack, release, reject []string
	for i, r := range results {
		switch r.Outcome {
		case bridge.Stored:
			ack = append(ack, tokens[i])
		case bridge.Retry:
			release = append(release, tokens[i])
		case bridge.Refused:
			reject = append(reject, tokens[i])
		}
	}
	p.settleEach(ctx, "acknowledge", ack)
	p.settleEach(ctx, "release", release)
	p.settleEach(ctx, "reject", reject)

	level := slog.LevelInfo
	if rep.Err != nil {
		level = slog.LevelWarn
	}
	bridge.LogDelivery(ctx, p.log.Handler(), level, "pulled", &rep, rep.Err, []slog.Attr{
		slog.Int("received", len(events)), slog.Int("acknowledged", len(ack)), slog.Int("released", len(release)),
		slog.Int("rejected", len(reject)), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	})
	return len(release)
}

// holdBytes waits until the batch's bytes fit in the budget shared with pushed deliveries, and returns
// what gives them back. A shutdown stops the wait; the batch is then delivered all the same.
func (p *Puller) holdBytes(ctx context.Context, events []json.RawMessage) (release func()) {
	if p.opts.Budget == nil {
		return func() {}
	}
	var n int64
	for _, e := range events {
		n += int64(len(e))
	}
	for {
		if release, ok := p.opts.Budget.HoldBytes(n); ok {
			return release
		}
		select {
		case <-ctx.Done():
			return func() {}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// renewWhile renews the locks of tokens every RenewEvery until the returned function is called, which
// waits for a renewal under way: a batch that NATS takes longer to store than its lock lasts is not
// delivered again meanwhile.
func (p *Puller) renewWhile(ctx context.Context, tokens []string) (stop func()) {
	every := cmp.Or(p.opts.RenewEvery, 20*time.Second)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			r, err := p.client.RenewEventLocks(ctx, tokens, nil)
			switch {
			case err != nil:
				p.metrics.settlements.WithLabelValues("renew", "failed").Add(float64(len(tokens)))
				p.log.Warn("lock renewal failed; the events may come again, and are stored once", "events", len(tokens), "error", err.Error())
			default:
				p.metrics.settlements.WithLabelValues("renew", "succeeded").Add(float64(len(r.SucceededLockTokens)))
				if len(r.FailedLockTokens) > 0 {
					p.metrics.settlements.WithLabelValues("renew", "failed").Add(float64(len(r.FailedLockTokens)))
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// DeliverEach decodes each received event on its own with dec, as the namespace hands it out (one
// CloudEvent in structured JSON), and hands those that decode to the delivery path d in one delivery in
// which each gets its own outcome. An event that does not decode gets the outcome of its error. It
// returns a result per event received, in order, and the delivery's report.
func DeliverEach(ctx context.Context, d Deliverer, dec cloudevents.Decoder, events []json.RawMessage) ([]bridge.Result, bridge.Report) {
	results := make([]bridge.Result, len(events))
	delivery := &bridge.Delivery{Span: "receive namespace events", Each: true, Events: make([]cloudevents.Event, 0, len(events))}
	owner := make([]int, 0, len(events)) // owner[k] is the received event of delivery.Events[k]
	var decodeErr error
	for i, raw := range events {
		ev, err := dec.DecodeEvent(raw)
		if err != nil {
			results[i] = bridge.Result{Outcome: bridge.OutcomeOf(err), Err: err}
			decodeErr = cmp.Or(decodeErr, err)
			continue
		}
		delivery.Events = append(delivery.Events, ev)
		owner = append(owner, i)
	}
	rep := d.Deliver(ctx, delivery)
	for k, i := range owner {
		results[i] = rep.Results[k]
	}
	rep.Err = cmp.Or(decodeErr, rep.Err)
	return results, rep
}

// settleEach makes one settlement call for tokens and counts each token's result. A token that fails
// (its lock expired meanwhile, say) is logged: its event comes again, and de-duplication stores it once.
func (p *Puller) settleEach(ctx context.Context, op string, tokens []string) {
	if len(tokens) == 0 {
		return
	}
	var succeeded int
	var failed []aznamespaces.FailedLockToken
	var err error
	switch op {
	case "acknowledge":
		var r aznamespaces.AcknowledgeEventsResponse
		r, err = p.client.AcknowledgeEvents(ctx, tokens, nil)
		succeeded, failed = len(r.SucceededLockTokens), r.FailedLockTokens
	case "release":
		var r aznamespaces.ReleaseEventsResponse
		r, err = p.client.ReleaseEvents(ctx, tokens, &aznamespaces.ReleaseEventsOptions{ReleaseDelayInSeconds: to.Ptr(p.release)})
		succeeded, failed = len(r.SucceededLockTokens), r.FailedLockTokens
	case "reject":
		var r aznamespaces.RejectEventsResponse
		r, err = p.client.RejectEvents(ctx, tokens, nil)
		succeeded, failed = len(r.SucceededLockTokens), r.FailedLockTokens
	}
	if err != nil {
		p.metrics.settlements.WithLabelValues(op, "failed").Add(float64(len(tokens)))
		p.log.Warn("settlement failed; the locks expire and the events come again", "operation", op, "events", len(tokens), "error", err.Error())
		return
	}
	p.metrics.settlements.WithLabelValues(op, "succeeded").Add(float64(succeeded))
	if len(failed) > 0 {
		p.metrics.settlements.WithLabelValues(op, "failed").Add(float64(len(failed)))
		code := ""
		if e := failed[0].Error; e != nil && e.Code != nil {
			code = *e.Code
		}
		p.log.Warn("settlement refused for some lock tokens; those events come again", "operation", op, "failed", len(failed), "code", code)
	}
}

// reasonOf names a receive error for the metrics: unauthorized, not_found, unreachable or other.
func reasonOf(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return "unauthorized"
		case http.StatusNotFound:
			return "not_found"
		}
		return "other"
	}
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) {
		return "unauthorized"
	}
	return "unreachable"
}

// describe is the reason a receive failed, as /readyz and the log say it.
func describe(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Sprintf("the namespace refuses the bridge (%d %s): check BRIDGE_NAMESPACE_KEY or the identity's EventGrid Data Receiver role", re.StatusCode, re.ErrorCode)
		case http.StatusNotFound:
			return fmt.Sprintf("topic or subscription not found (404 %s): check BRIDGE_NAMESPACE_TOPIC and BRIDGE_NAMESPACE_SUBSCRIPTION", re.ErrorCode)
		}
		return fmt.Sprintf("receive answered %d %s", re.StatusCode, re.ErrorCode)
	}
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) {
		return "Microsoft Entra ID gave the bridge no token: " + firstLine(authErr.Error())
	}
	return "cannot reach the namespace: " + firstLine(err.Error())
}

// firstLine cuts the Azure SDK's multi-line errors (troubleshooting links follow) to their first line.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// metrics are the puller's Prometheus metrics.
type metrics struct {
	received      prometheus.Counter
	redelivered   prometheus.Counter
	settlements   *prometheus.CounterVec
	receiveErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_pull_events_received_total",
			Help: "Events received from the Event Grid namespace subscription.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_pull_events_redelivered_total",
			Help: "Events received with a delivery count above 1 (a lock expired or an event was released).",
		}),
		settlements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_pull_settlements_total",
			Help: "Lock tokens settled, by operation (acknowledge, release, reject; renew: a batch's locks kept while NATS stores it) and result (succeeded, failed).",
		}, []string{"operation", "result"}),
		receiveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_pull_receive_errors_total",
			Help: "Failed receive calls, by reason: unauthorized, not_found, unreachable, other.",
		}, []string{"reason"}),
	}
	for _, op := range []string{"acknowledge", "release", "reject", "renew"} {
		for _, r := range []string{"succeeded", "failed"} {
			m.settlements.WithLabelValues(op, r)
		}
	}
	for _, r := range []string{"unauthorized", "not_found", "unreachable", "other"} {
		m.receiveErrors.WithLabelValues(r)
	}
	reg.MustRegister(m.received, m.redelivered, m.settlements, m.receiveErrors)
	return m
}
