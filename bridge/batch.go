package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Atomic batches: where the server syncs every write, the messages of a batch are committed with one sync
// rather than one each. The committers gather the multi-message deliveries that arrive while earlier
// batches commit into shared batches, so under load one sync serves many deliveries.

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

// delivery is the messages of one request (up to maxAtomicBatch of them) waiting to be committed.
type delivery struct {
	msgs []*nats.Msg
	done chan commitResult // buffered: a committer never waits on a request that gave up
}

// commitResult is what became of a delivery's batch.
type commitResult struct {
	acks []Ack
	err  error
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

// commit has a committer store msgs in an atomic batch, alone or with other deliveries' messages, and
// settles what became of it.
func (p *JetStream) commit(ctx context.Context, msgs []*nats.Msg) ([]Ack, error) {
	d := &delivery{msgs: msgs, done: make(chan commitResult, 1)}
	refused := p.refusalAhead()
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
	case <-p.storeStopped():
		return nil, fmt.Errorf("publish a batch of %d: waiting for its commit: %w", len(msgs), p.storeProblem())
	case <-refused.done:
		return nil, fmt.Errorf("publish a batch of %d: waiting for its commit: the stream refused a write meanwhile (%s), and a commit it refused part-way is never answered", len(msgs), refused.cause)
	}
}

// settle returns the acks of a committed batch. A refused batch stored nothing: msgs are then published
// one by one, where each message gets JetStream's own answer, a duplicate included. Not in a batch of
// their own first: a core NATS subscriber sees every message of every attempt, refused or not, so one
// fallback keeps what it sees of an event to the batch and the one-by-one publish, twice at most.
func (p *JetStream) settle(ctx context.Context, msgs []*nats.Msg, res commitResult) ([]Ack, error) {
	var refused *batchRefusedError
	if !errors.As(res.err, &refused) {
		return res.acks, res.err
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

// commitGroup stores the messages of group, n in all, as one atomic batch and tells each delivery. A
// delivery whose request has given up meanwhile is stored all the same: its sender retries, and
// de-duplication keeps one copy.
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
		res := commitResult{err: err}
		if err == nil {
			res.acks = acks[off : off+len(d.msgs) : off+len(d.msgs)]
		}
		off += len(d.msgs)
		d.done <- res
	}
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
