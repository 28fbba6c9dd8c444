package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrUnavailable is wrapped by every error that may pass: NATS unreachable, a publish timed out, the stream
// missing, JetStream refusing a message, the bridge over its in-flight limit, a request body cut short or
// too slow. The sender gets a 503 and Event Grid retries; a pulled event is released.
var ErrUnavailable = errors.New("temporarily unavailable")

// ErrTooLarge is wrapped by errors for input over a configured or NATS limit (413: Event Grid does not
// retry it, and retrying could not help).
var ErrTooLarge = errors.New("too large")

// Ack is what JetStream answered for one stored message.
type Ack struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// StreamConfig is the stream the bridge publishes into and, when Create is set, creates.
type StreamConfig struct {
	Name       string
	Subjects   []string
	Create     bool
	Duplicates time.Duration
	MaxAge     time.Duration
	Replicas   int
	Storage    jetstream.StorageType
	// AtomicBatches says when the messages of multi-message requests are published as atomic batches, which
	// the stream must allow too. A stream the bridge creates allows them whatever the policy, so that
	// turning batches on later needs no change to the stream.
	AtomicBatches BatchPolicy
}

// JetStream publishes to a JetStream stream and waits for every PubAck.
type JetStream struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  StreamConfig
	timeout time.Duration
	metrics *Metrics
	log     *slog.Logger
	// storeWatch, when set, says whether the store refuses writes (WatchStore).
	storeWatch StoreWatch
	// refused is the store's last refusal of a write, until a write succeeds or refusalHeld has passed;
	// nextRefusal is the next one's signal (refusalMu guards its replacement).
	refused     atomic.Pointer[refusal]
	refusalMu   sync.Mutex
	nextRefusal *refusalSignal

	createMu sync.Mutex
	// batches is batchesOn while the stream allows atomic batch publishing and StreamConfig.AtomicBatches
	// asks for it; it follows the stream's configuration each time the stream is looked up.
	batches     atomic.Int32
	openBatches chan struct{}

	// queue hands multi-message deliveries to the committers; unbuffered, so that nothing waits in it
	// once they have stopped.
	queue      chan *delivery
	stop       chan struct{}
	committing sync.WaitGroup
}

// NewJetStream returns a publisher on nc. timeout bounds each request's wait for its acks; keep it well
// under Event Grid's 30 s delivery timeout so that the bridge answers 503 before Event Grid gives up.
// metrics, when not nil, counts the atomic batches.
func NewJetStream(nc *nats.Conn, stream StreamConfig, timeout time.Duration, maxPending int, metrics *Metrics, log *slog.Logger) (*JetStream, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncTimeout(timeout),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if metrics == nil {
		metrics = NewMetrics(prometheus.NewRegistry())
	}
	p := &JetStream{nc: nc, js: js, stream: stream, timeout: timeout, metrics: metrics, log: log,
		openBatches: make(chan struct{}, maxOpenBatches),
		nextRefusal: &refusalSignal{done: make(chan struct{})},
		queue:       make(chan *delivery),
		stop:        make(chan struct{}),
	}
	for range committers {
		p.committing.Go(p.commitLoop)
	}
	return p, nil
}

// Close stops the committers once the batches they are committing are done. Call it when no request is
// being handled any more, before NATS is drained.
func (p *JetStream) Close() {
	close(p.stop)
	p.committing.Wait()
}

// EnsureStream checks that the stream exists and, when allowed, creates it. An existing stream is left
// as its operator configured it.
func (p *JetStream) EnsureStream(ctx context.Context) error {
	// Not connected, a lookup would fail with what the client says of its buffers, which is no reason a
	// person can act on.
	if !Connected(p.nc) {
		return fmt.Errorf("%w: NATS is not reachable; the bridge keeps trying (BRIDGE_NATS_URL)", ErrUnavailable)
	}
	p.createMu.Lock()
	defer p.createMu.Unlock()
	s, err := p.js.Stream(ctx, p.stream.Name)
	switch {
	case err == nil:
		p.followStream(s.CachedInfo().Config)
		return nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: look up stream %s: %w", ErrUnavailable, p.stream.Name, err)
	case !p.stream.Create:
		return fmt.Errorf("%w: stream %s does not exist and BRIDGE_STREAM_CREATE is false", ErrUnavailable, p.stream.Name)
	}
	s, err = p.createStream(ctx, jetstream.StreamConfig{
		Name:               p.stream.Name,
		Description:        "Azure Container Registry and Event Grid events",
		Subjects:           p.stream.Subjects,
		Storage:            p.stream.Storage,
		Replicas:           p.stream.Replicas,
		MaxAge:             p.stream.MaxAge,
		Duplicates:         p.stream.Duplicates,
		AllowAtomicPublish: true,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = p.js.Stream(ctx, p.stream.Name)
	}
	if err != nil {
		return fmt.Errorf("%w: create stream %s: %w", ErrUnavailable, p.stream.Name, err)
	}
	// A server older than atomic batches (NATS 2.12) creates the stream without them.
	p.log.Info("stream created", "stream", p.stream.Name, "subjects", p.stream.Subjects,
		"duplicate_window", p.stream.Duplicates.String(), "max_age", p.stream.MaxAge.String(), "replicas", p.stream.Replicas,
		"allow_atomic", s.CachedInfo().Config.AllowAtomicPublish)
	p.followStream(s.CachedInfo().Config)
	return nil
}

// createStream creates the stream, trying again a few times while the server answers with an error of
// its own (code 500): a stream deleted a moment ago may still be removing its store, and the server
// refuses to create one in its place until it has ("error creating store for stream").
func (p *JetStream) createStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	wait := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, err := p.js.CreateStream(ctx, cfg)
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.Code < 500 || attempt == 6 {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// StoreWatch is what the publisher asks of a store the bridge knows more of than NATS says: the embedded
// server's, which answers no publish once a write error has stopped its store.
type StoreWatch interface {
	// Writes is the error that stops the store's writes, nil while it takes them. It is asked before
	// every publish, so it must be cheap.
	Writes() error
	// Stopped is closed once the store stops taking writes, so that the publishes waiting for acks that
	// will not come give up at once.
	Stopped() <-chan struct{}
	// Room says whether the store is full; Ready asks it.
	Room() error
}

// WatchStore makes publishes fail at once, those waiting for their acks included, and Ready fail, while
// w reports a store that refuses writes. Call it before publishing.
func (p *JetStream) WatchStore(w StoreWatch) { p.storeWatch = w }

// storeProblem is the store's word that it takes no writes, if the publisher has a watch on it.
func (p *JetStream) storeProblem() error {
	if p.storeWatch == nil {
		return nil
	}
	return p.storeWatch.Writes()
}

// storeStopped is closed once the watched store stops taking writes; nil (never ready) without a watch.
func (p *JetStream) storeStopped() <-chan struct{} {
	if p.storeWatch == nil {
		return nil
	}
	return p.storeWatch.Stopped()
}

// refusalHeld is how long Ready reports the store's last refusal of a write when no write has succeeded
// since: with no traffic to show that the store takes writes again, readiness comes back by itself and the
// next delivery finds out.
const refusalHeld = 10 * time.Second

// refusal is a write the store refused: when, and what it said.
type refusal struct {
	at    time.Time
	cause string
}

// noteOutcome keeps the store's refusals for Ready: JetStream's own (its resources or the account's
// exhausted, a store error) and a publish that was not acknowledged in time although NATS is connected.
// A publish that succeeded clears them.
func (p *JetStream) noteOutcome(err error) {
	if err == nil {
		if p.refused.Load() != nil {
			p.refused.Store(nil)
		}
		return
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && storeRefusals[apiErr.ErrorCode]:
		p.noteRefusal(apiErr.Error())
	case (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrTimeout)) && Connected(p.nc):
		p.refused.Store(&refusal{at: time.Now(), cause: "a publish was not acknowledged within BRIDGE_PUBLISH_TIMEOUT although NATS is connected: " + err.Error()})
	}
}

// noteRefusal records JetStream's refusal of a write for Ready, and lets the batch commits waiting for
// an answer give up: on a single server, a commit whose messages the store refused part-way is never
// answered (docs/nats-server-write-errors.md), and a refusal of any publish says that it may be so.
func (p *JetStream) noteRefusal(cause string) {
	p.refused.Store(&refusal{at: time.Now(), cause: cause})
	p.refusalMu.Lock()
	next := p.nextRefusal
	p.nextRefusal = &refusalSignal{done: make(chan struct{})}
	p.refusalMu.Unlock()
	next.cause = cause
	close(next.done)
}

// refusalSignal is closed at the store's next refusal of a write, which cause then says.
type refusalSignal struct {
	done  chan struct{}
	cause string
}

// refusalAhead is the signal of the store's next refusal of a write.
func (p *JetStream) refusalAhead() *refusalSignal {
	p.refusalMu.Lock()
	defer p.refusalMu.Unlock()
	return p.nextRefusal
}

// storeRefusals are JetStream's errors for a store that does not take a write: resources exhausted (the
// server's, the account's) and a failed store.
var storeRefusals = map[jetstream.ErrorCode]bool{
	10002: true, // resource limits exceeded for account
	10023: true, // insufficient resources
	10028: true, // insufficient memory resources available
	10047: true, // insufficient storage resources available
	10077: true, // storing the message failed
}

// Ready reports whether NATS is connected, the stream answers and the store takes writes.
func (p *JetStream) Ready(ctx context.Context) error {
	if err := p.storeProblem(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !Connected(p.nc) {
		return fmt.Errorf("%w: NATS is not connected", ErrUnavailable)
	}
	if p.storeWatch != nil {
		if err := p.storeWatch.Room(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if r := p.refused.Load(); r != nil && time.Since(r.at) < refusalHeld {
		return fmt.Errorf("%w: the stream refused a write %s ago: %s", ErrUnavailable, time.Since(r.at).Round(time.Millisecond), r.cause)
	}
	s, err := p.js.Stream(ctx, p.stream.Name)
	if err == nil {
		p.followStream(s.CachedInfo().Config)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) && p.stream.Create {
		err = p.EnsureStream(ctx)
	}
	if err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrUnavailable, p.stream.Name, err)
	}
	return nil
}

// Publish stores every message and returns their acks in order, or an error if any one is not stored:
// the request is all-or-nothing towards the sender, and Nats-Msg-Id de-duplication makes the retry of a
// partly stored batch safe. A stream deleted under a running bridge is re-created, when allowed, and the
// request published again.
func (p *JetStream) Publish(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	if err := p.storeProblem(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := checkPublishable(p.nc, msgs); err != nil {
		return nil, err
	}
	// nats.go fails an ack that has not come p.timeout after its message was published
	// (WithPublishAsyncTimeout), which bounds a lone message without a context of its own, whose
	// registration with the request's context would cost every request. A batch's publishes may stall on
	// the pending limit or wait for a commit, so it gets one deadline over them all.
	if len(msgs) > 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	start := time.Now()
	acks, err := p.store(ctx, msgs)
	if errors.Is(err, jetstream.ErrNoStreamResponse) && p.stream.Create {
		p.log.Warn("no stream answered; ensuring it exists", "stream", p.stream.Name)
		// What is left of the request's time is for re-creating the stream and publishing again.
		ensureCtx, cancel := context.WithDeadline(ctx, start.Add(p.timeout))
		defer cancel()
		if err := p.EnsureStream(ensureCtx); err != nil {
			return nil, err
		}
		acks, err = p.store(ensureCtx, msgs)
	}
	p.noteOutcome(err)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return acks, nil
}

// store publishes msgs as atomic batches where it can, else one by one, and waits for every ack.
func (p *JetStream) store(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	if len(msgs) == 1 || p.batches.Load() != batchesOn {
		return p.publish(ctx, msgs)
	}
	acks := make([]Ack, 0, len(msgs))
	for part := range slices.Chunk(msgs, maxAtomicBatch) {
		a, err := p.commit(ctx, part)
		if err != nil {
			return nil, err
		}
		acks = append(acks, a...)
	}
	return acks, nil
}

// publish sends every message and waits for every ack, until ctx is done.
func (p *JetStream) publish(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		futures[i] = f
	}
	acks := make([]Ack, len(msgs))
	stopped := p.storeStopped()
	for i, f := range futures {
		select {
		case a := <-f.Ok():
			acks[i] = Ack{Stream: a.Stream, Sequence: a.Sequence, Duplicate: a.Duplicate}
		case err := <-f.Err():
			return nil, fmt.Errorf("publish %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: waiting for ack: %w", msgs[i].Subject, ctx.Err())
		case <-stopped:
			return nil, fmt.Errorf("publish %s: waiting for ack: %w", msgs[i].Subject, p.storeProblem())
		}
	}
	return acks, nil
}

// Core publishes with core NATS: no stream, no ack, for users who want live fan-out only. A request is
// answered once the server has received its messages (a flush round trip).
type Core struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewCore returns a core NATS publisher on nc.
func NewCore(nc *nats.Conn, timeout time.Duration) *Core { return &Core{nc: nc, timeout: timeout} }

// Publish sends every message and flushes.
func (c *Core) Publish(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	if err := checkPublishable(c.nc, msgs); err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := c.nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("%w: publish %s: %w", ErrUnavailable, m.Subject, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("%w: flush: %w", ErrUnavailable, err)
	}
	return nil, nil
}

// Ready reports whether NATS is connected.
func (c *Core) Ready(context.Context) error {
	if !Connected(c.nc) {
		return fmt.Errorf("%w: NATS is not connected", ErrUnavailable)
	}
	return nil
}

// checkPublishable fails fast, before anything is sent, when NATS is not connected (so that the sender
// gets its 503 now rather than after the publish timeout) or when a message is over the server's
// max_payload (which no retry can fix).
func checkPublishable(nc *nats.Conn, msgs []*nats.Msg) error {
	if !Connected(nc) {
		return fmt.Errorf("%w: NATS is not connected", ErrUnavailable)
	}
	max := nc.MaxPayload()
	for _, m := range msgs {
		if n := msgSize(m); int64(n) > max {
			return fmt.Errorf("%w: message for %s is %d bytes, over the NATS server's max_payload of %d", ErrTooLarge, m.Subject, n, max)
		}
	}
	return nil
}
