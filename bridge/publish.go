package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// ErrUnavailable is wrapped by every publishing error that may pass: NATS unreachable, a publish timed
// out, the stream missing, JetStream refusing a message, the bridge over its in-flight limit. The sender
// gets a 503 and Event Grid retries.
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

// BatchPolicy says when multi-message requests are published as atomic batches.
type BatchPolicy string

const (
	// BatchesNever publishes every message on its own.
	BatchesNever BatchPolicy = "never"
	// BatchesAlways batches wherever the stream allows it: right where the server syncs every write,
	// which then syncs once per batch rather than once per message.
	BatchesAlways BatchPolicy = "always"
	// BatchesReplicated batches only into a stream with more than one replica, where a batch is one
	// proposal to the stream's group. On a single server a batch is staged in files of its own, which
	// costs more than it saves unless the server syncs every write, and the bridge cannot see whether it
	// does.
	BatchesReplicated BatchPolicy = "replicated"
)

// wants reports whether the policy batches into a stream configured as cfg.
func (b BatchPolicy) wants(cfg jetstream.StreamConfig) bool {
	return b == BatchesAlways || b == BatchesReplicated && cfg.Replicas > 1
}

// maxAtomicBatch is nats-server's default limit on the messages of one atomic batch
// (jetstream.limits.max_batch_size); a request with more is published as several batches.
const maxAtomicBatch = 1000

// The states of JetStream.batches: not known until the stream is first looked up, then on or off.
const (
	batchesUnknown int32 = iota
	batchesOn
	batchesOff
)

// committers is how many atomic batches the bridge commits at once. A stream stores one batch after
// another, so a few are enough to keep it busy, and the deliveries that arrive meanwhile wait to be
// gathered into the next batches: under load each batch carries many deliveries, and so each disk sync
// and each batch's own set-up on the server serve many events.
const committers = 4

// maxOpenBatches bounds the atomic batches one bridge has open at once, under nats-server's default of
// 50 per stream (jetstream.limits.max_batch_inflight_per_stream), so that a burst of batched deliveries
// is not refused and published one message at a time.
const maxOpenBatches = 16

// JetStream publishes to a JetStream stream and waits for every PubAck.
type JetStream struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  StreamConfig
	timeout time.Duration
	metrics *Metrics
	log     *slog.Logger

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

// delivery is the messages of one request (up to maxAtomicBatch of them) waiting to be committed.
type delivery struct {
	msgs []*nats.Msg
	done chan commitResult // buffered: a committer never waits on a request that gave up
}

// commitResult is what became of a delivery's batch.
type commitResult struct {
	acks []Ack
	err  error
	// shared is set when the batch held other deliveries too, whose messages may be why it was refused.
	shared bool
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
	p.createMu.Lock()
	defer p.createMu.Unlock()
	s, err := p.js.Stream(ctx, p.stream.Name)
	switch {
	case err == nil:
		p.followStream(s.CachedInfo().Config)
		return nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: look up stream %s: %v", ErrUnavailable, p.stream.Name, err)
	case !p.stream.Create:
		return fmt.Errorf("%w: stream %s does not exist and BRIDGE_STREAM_CREATE is false", ErrUnavailable, p.stream.Name)
	}
	s, err = p.js.CreateStream(ctx, jetstream.StreamConfig{
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
		return fmt.Errorf("%w: create stream %s: %v", ErrUnavailable, p.stream.Name, err)
	}
	p.log.Info("stream created", "stream", p.stream.Name, "subjects", p.stream.Subjects,
		"duplicate_window", p.stream.Duplicates.String(), "max_age", p.stream.MaxAge.String(), "replicas", p.stream.Replicas,
		"allow_atomic", true)
	p.followStream(s.CachedInfo().Config)
	return nil
}

// followStream turns atomic batch publishing on or off as the stream's configuration allows, and says so
// when that changes.
func (p *JetStream) followStream(cfg jetstream.StreamConfig) {
	wanted := p.stream.AtomicBatches.wants(cfg)
	on := wanted && cfg.AllowAtomicPublish
	state := batchesOff
	if on {
		state = batchesOn
	}
	if p.batches.Swap(state) == state {
		return
	}
	switch {
	case on:
		p.log.Info("publishing multi-event deliveries as atomic batches", "stream", p.stream.Name)
	case !wanted:
		p.log.Info("publishing multi-event deliveries one message at a time (BRIDGE_ATOMIC_BATCHES)", "stream", p.stream.Name,
			"policy", string(p.stream.AtomicBatches), "replicas", cfg.Replicas)
	default:
		p.log.Warn(batchesNotAllowed, "stream", p.stream.Name)
	}
}

// batchesNotAllowed is the warning for a stream that does not allow atomic batches.
const batchesNotAllowed = "the stream does not allow atomic batch publishing, so each event of a batched delivery is stored, and synced, " +
	"on its own; set allow_atomic in the stream's configuration (NATS 2.12+), as deployments/nats/stream-acr-events.json does"

// batchesRefused turns batches off after the stream refused one as not allowed, until the stream is next
// looked up.
func (p *JetStream) batchesRefused() {
	if p.batches.Swap(batchesOff) != batchesOff {
		p.log.Warn(batchesNotAllowed, "stream", p.stream.Name)
	}
}

// Ready reports whether NATS is connected and the stream answers.
func (p *JetStream) Ready(ctx context.Context) error {
	if s := p.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: NATS %s", ErrUnavailable, s)
	}
	s, err := p.js.Stream(ctx, p.stream.Name)
	if err == nil {
		p.followStream(s.CachedInfo().Config)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) && p.stream.Create {
		err = p.EnsureStream(ctx)
	}
	if err != nil {
		return fmt.Errorf("%w: stream %s: %v", ErrUnavailable, p.stream.Name, err)
	}
	return nil
}

// Publish stores every message and returns their acks in order, or an error if any one is not stored:
// the request is all-or-nothing towards the sender, and Nats-Msg-Id de-duplication makes the retry of a
// partly stored batch safe. A stream deleted under a running bridge is re-created, when allowed, and the
// request published again.
func (p *JetStream) Publish(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
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
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
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

// commit has a committer store msgs in an atomic batch, alone or with other deliveries' messages, and
// settles what became of it.
func (p *JetStream) commit(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	d := &delivery{msgs: msgs, done: make(chan commitResult, 1)}
	select {
	case p.queue <- d:
	case <-p.stop:
		return nil, fmt.Errorf("publish a batch of %d: the publisher is stopping", len(msgs))
	case <-ctx.Done():
		return nil, fmt.Errorf("publish a batch of %d: waiting for a committer: %w", len(msgs), ctx.Err())
	}
	select {
	case res := <-d.done:
		return p.settle(ctx, msgs, res)
	case <-ctx.Done():
		return nil, fmt.Errorf("publish a batch of %d: waiting for its commit: %w", len(msgs), ctx.Err())
	}
}

// settle returns the acks of a committed batch. A refused batch stored nothing: msgs are then tried in a
// batch of their own, if they shared one (another delivery's message may have been the reason), and
// last one by one, where each message gets JetStream's own answer, a duplicate included.
func (p *JetStream) settle(ctx context.Context, msgs []*nats.Msg, res commitResult) ([]Ack, error) {
	var refused *batchRefusedError
	if !errors.As(res.err, &refused) {
		return res.acks, res.err
	}
	if res.shared {
		acks, err := p.publishBatch(ctx, msgs)
		if !errors.As(err, &refused) {
			return acks, err
		}
	}
	p.log.Debug("atomic batch refused; publishing its messages one by one", "messages", len(msgs), "reason", refused.err)
	return p.publish(ctx, msgs)
}

// commitLoop gathers the deliveries waiting when it is free, as many as fit in one atomic batch, and
// commits them together, until the publisher stops.
func (p *JetStream) commitLoop() {
	var next *delivery
	for {
		if next == nil {
			select {
			case next = <-p.queue:
			case <-p.stop:
				return
			}
		}
		group, n := []*delivery{next}, len(next.msgs)
		next = nil
	gather:
		for n < maxAtomicBatch {
			select {
			case d := <-p.queue:
				if n+len(d.msgs) > maxAtomicBatch {
					next = d // the first of the next batch
					break gather
				}
				group = append(group, d)
				n += len(d.msgs)
			default:
				break gather
			}
		}
		p.commitGroup(group, n)
	}
}

// commitGroup stores the messages of group, n in all, as one atomic batch and tells each delivery.
func (p *JetStream) commitGroup(group []*delivery, n int) {
	msgs := group[0].msgs
	if len(group) > 1 {
		msgs = make([]*nats.Msg, 0, n)
		for _, d := range group {
			msgs = append(msgs, d.msgs...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	acks, err := p.publishBatch(ctx, msgs)
	cancel()
	off := 0
	for _, d := range group {
		res := commitResult{err: err, shared: len(group) > 1}
		if err == nil {
			res.acks = acks[off : off+len(d.msgs) : off+len(d.msgs)]
		}
		off += len(d.msgs)
		d.done <- res
	}
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
	for i, f := range futures {
		select {
		case a := <-f.Ok():
			acks[i] = Ack{Stream: a.Stream, Sequence: a.Sequence, Duplicate: a.Duplicate}
		case err := <-f.Err():
			return nil, fmt.Errorf("publish %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: waiting for ack: %w", msgs[i].Subject, ctx.Err())
		}
	}
	return acks, nil
}

// batchRefusedError is JetStream's refusal of a whole atomic batch, of which nothing was stored: a
// message of it already stored (a redelivery) or repeated in it, the stream not allowing batches, a
// server limit on batches, a header batches do not take.
type batchRefusedError struct{ err error }

func (e *batchRefusedError) Error() string { return "atomic batch refused: " + e.err.Error() }
func (e *batchRefusedError) Unwrap() error { return e.err }

// publishBatch stores msgs as one JetStream atomic batch: all of them or none, committed with one disk
// sync where the server syncs every write, and so no duplicate among them. The commit's ack carries the
// sequence of the last message, and a batch is stored in one run of sequences.
func (p *JetStream) publishBatch(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	select {
	case p.openBatches <- struct{}{}:
		defer func() { <-p.openBatches }()
	case <-ctx.Done():
		return nil, fmt.Errorf("publish a batch of %d: waiting to open it: %w", len(msgs), ctx.Err())
	}
	// The batch headers go on copies, so that msgs can still be published one by one.
	batch := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		h := make(nats.Header, len(m.Header)+3)
		maps.Copy(h, m.Header)
		batch[i] = &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}
	}
	// No flow control: the first message is not waited for, so a batch costs the server one round trip,
	// and the commit's answer says whether the server took the batch.
	ack, err := jetstreamext.PublishMsgBatch(ctx, p.js, batch, jetstreamext.BatchFlowControl{})
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		p.metrics.batches.WithLabelValues("committed").Inc()
		p.metrics.batchSize.Observe(float64(len(msgs)))
	case errors.Is(err, nats.ErrNoResponders):
		p.metrics.batches.WithLabelValues("failed").Inc()
		return nil, fmt.Errorf("publish a batch of %d to %s: %w", len(msgs), msgs[0].Subject, jetstream.ErrNoStreamResponse)
	case errors.As(err, &apiErr):
		p.metrics.batches.WithLabelValues("refused").Inc()
		if apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishNotEnabled {
			p.batchesRefused()
		}
		return nil, &batchRefusedError{err}
	case errors.Is(err, jetstreamext.ErrInvalidBatchAck), errors.Is(err, jetstream.ErrInvalidJSAck):
		// An answer that is not a batch's ack: published one by one, a batch stored after all is found
		// duplicate message by message.
		p.metrics.batches.WithLabelValues("refused").Inc()
		return nil, &batchRefusedError{err}
	default:
		p.metrics.batches.WithLabelValues("failed").Inc()
		return nil, fmt.Errorf("publish a batch of %d to %s: %w", len(msgs), msgs[0].Subject, err)
	}
	acks := make([]Ack, len(msgs))
	first := ack.Sequence - uint64(len(msgs)-1)
	for i := range acks {
		acks[i] = Ack{Stream: ack.Stream, Sequence: first + uint64(i)}
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
			return nil, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, m.Subject, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("%w: flush: %v", ErrUnavailable, err)
	}
	return nil, nil
}

// Ready reports whether NATS is connected.
func (c *Core) Ready(context.Context) error {
	if s := c.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: NATS %s", ErrUnavailable, s)
	}
	return nil
}

// checkPublishable fails fast, before anything is sent, when NATS is not connected (so that the sender
// gets its 503 now rather than after the publish timeout) or when a message is over the server's
// max_payload (which no retry can fix).
func checkPublishable(nc *nats.Conn, msgs []*nats.Msg) error {
	if s := nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w: NATS %s", ErrUnavailable, s)
	}
	max := nc.MaxPayload()
	for _, m := range msgs {
		if n := msgSize(m); int64(n) > max {
			return fmt.Errorf("%w: message for %s is %d bytes, over the NATS server's max_payload of %d", ErrTooLarge, m.Subject, n, max)
		}
	}
	return nil
}
