package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
)

func testMsgs(ids ...string) []*nats.Msg {
	msgs := make([]*nats.Msg, len(ids))
	for i, id := range ids {
		msgs[i] = &nats.Msg{Subject: "acr.test", Header: nats.Header{"Nats-Msg-Id": {id}}, Data: []byte(id)}
	}
	return msgs
}

// TestSharedBatchRefused: two deliveries share an atomic batch, and one of them holds an event already
// stored. JetStream refuses the whole batch and stores nothing; both are then published one message at a
// time, the duplicate counted, and a core NATS subscriber sees each event twice at most: in the refused
// batch and once more.
func TestSharedBatchRefused(t *testing.T) {
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	p, err := NewJetStream(nc, StreamConfig{Name: "S", Subjects: []string{"acr.>"}, Create: true, Duplicates: time.Minute,
		Replicas: 1, Storage: jetstream.FileStorage, AtomicBatches: BatchesAlways}, 5*time.Second, 100, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	ctx := context.Background()
	require.NoError(t, p.EnsureStream(ctx))
	_, err = p.Publish(ctx, testMsgs("old-1", "old-2"))
	require.NoError(t, err)

	live, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(live.Close)
	var mu sync.Mutex
	seen := map[string]int{}
	sub, err := live.Subscribe("acr.>", func(m *nats.Msg) {
		mu.Lock()
		seen[string(m.Data)]++
		mu.Unlock()
	})
	require.NoError(t, err)
	require.NoError(t, live.Flush())

	fresh, redelivered := testMsgs("new-1", "new-2"), testMsgs("new-3", "old-2")
	a := &delivery{msgs: fresh, done: make(chan commitResult, 1)}
	b := &delivery{msgs: redelivered, done: make(chan commitResult, 1)}
	p.commitGroup([]*delivery{a, b}, 4)
	resA, resB := <-a.done, <-b.done
	var refused *batchRefusedError
	require.ErrorAs(t, resA.err, &refused)
	require.ErrorAs(t, resB.err, &refused)

	acks, err := p.settle(ctx, fresh, resA)
	require.NoError(t, err)
	assert.Equal(t, []Ack{{Stream: "S", Sequence: 3}, {Stream: "S", Sequence: 4}}, acks, "after the two stored first")
	acks, err = p.settle(ctx, redelivered, resB)
	require.NoError(t, err)
	require.Len(t, acks, 2)
	assert.Equal(t, Ack{Stream: "S", Sequence: 5}, acks[0])
	assert.Equal(t, Ack{Stream: "S", Sequence: 2, Duplicate: true}, acks[1])

	str, err := p.js.Stream(ctx, "S")
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(5), info.State.Msgs, "each event stored once")
	require.NoError(t, live.Flush())
	require.NoError(t, sub.Unsubscribe())
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{"new-1", "new-2", "new-3", "old-2"} {
		assert.LessOrEqual(t, seen[id], 2, "%s: a core subscriber sees the refused batch and the fallback, no more", id)
		assert.GreaterOrEqual(t, seen[id], 1, id)
	}
}

// TestBatchPolicy: which streams each policy batches into.
func TestBatchPolicy(t *testing.T) {
	r1, r3 := jetstream.StreamConfig{Replicas: 1}, jetstream.StreamConfig{Replicas: 3}
	assert.True(t, BatchesAlways.wants(r1))
	assert.True(t, BatchesAlways.wants(r3))
	assert.False(t, BatchesNever.wants(r1))
	assert.False(t, BatchesNever.wants(r3))
	assert.False(t, BatchesReplicated.wants(r1), "a single server may sync on an interval, where batches cost more")
	assert.True(t, BatchesReplicated.wants(r3), "a batch is one proposal to the stream's group")
}

// TestErrorsKeepTheirCause: a publishing error is a 503 by its sentinel and still says what went wrong
// underneath, for errors.Is as for the log.
func TestErrorsKeepTheirCause(t *testing.T) {
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	p, err := NewJetStream(nc, StreamConfig{Name: "S", Subjects: []string{"acr.>"}, Create: true, Replicas: 1,
		Storage: jetstream.FileStorage}, time.Second, 100, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = p.EnsureStream(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 503, StatusOf(err))
	assert.Equal(t, Retry, OutcomeOf(err))
}

// A store that refuses writes, on a server the bridge knows only through NATS: a stream full under its
// own limits (discard new), and a server past its max_file_store. Ready says so with JetStream's word;
// a write that succeeds clears it, and without traffic it clears by itself after refusalHeld.
func TestReadyWhileTheStoreRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server func(*server.Options)
		stream jetstream.StreamConfig
		free   func(t *testing.T, s jetstream.Stream)
		says   string
	}{
		{
			name:   "stream limits",
			stream: jetstream.StreamConfig{Name: "S", Subjects: []string{"acr.>"}, MaxMsgs: 3, Discard: jetstream.DiscardNew},
			free:   func(t *testing.T, s jetstream.Stream) { require.NoError(t, s.Purge(context.Background())) },
			says:   "maximum messages exceeded",
		},
		{
			name:   "server store",
			server: func(o *server.Options) { o.JetStreamMaxStore = 4 << 10 },
			stream: jetstream.StreamConfig{Name: "S", Subjects: []string{"acr.>"}},
			free:   func(t *testing.T, s jetstream.Stream) { require.NoError(t, s.Purge(context.Background())) },
			says:   "insufficient resources",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*server.Options)
			if tc.server != nil {
				mods = append(mods, tc.server)
			}
			ns := natstest.Start(t, mods...)
			nc, err := nats.Connect(ns.ClientURL())
			require.NoError(t, err)
			t.Cleanup(nc.Close)
			ctx := context.Background()
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			s, err := js.CreateStream(ctx, tc.stream)
			require.NoError(t, err)
			p, err := NewJetStream(nc, StreamConfig{Name: "S", Subjects: []string{"acr.>"}}, 5*time.Second, 100, nil, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			t.Cleanup(p.Close)
			require.NoError(t, p.EnsureStream(ctx))
			require.NoError(t, p.Ready(ctx))

			var refused error
			for i := 0; refused == nil && i < 100; i++ {
				_, refused = p.Publish(ctx, []*nats.Msg{{Subject: "acr.test", Header: nats.Header{"Nats-Msg-Id": {fmt.Sprint(i)}}, Data: make([]byte, 1000)}})
			}
			require.ErrorContains(t, refused, tc.says)
			err = p.Ready(ctx)
			require.ErrorIs(t, err, ErrUnavailable)
			assert.Contains(t, err.Error(), "the stream refused a write")
			assert.Contains(t, err.Error(), tc.says)

			tc.free(t, s)
			_, err = p.Publish(ctx, testMsgs("after"))
			require.NoError(t, err)
			require.NoError(t, p.Ready(ctx), "a write that succeeds clears it")

			p.refused.Store(&refusal{at: time.Now().Add(-refusalHeld), cause: tc.says})
			require.NoError(t, p.Ready(ctx), "cleared by itself after %s", refusalHeld)
		})
	}
}

// An atomic batch whose commit crosses the store's limit is stored in part and never answered by
// nats-server (TestNATSServerLeavesACommitOverTheLimitUnanswered). The delivery waiting for it gives up as
// soon as another publish is refused, instead of after its publish timeout.
func TestCommitsGiveUpWhenTheStoreRefuses(t *testing.T) {
	ns := natstest.Start(t, func(o *server.Options) { o.JetStreamMaxStore = 64 << 10; o.SyncAlways = true })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	const timeout = 3 * time.Second
	p, err := NewJetStream(nc, StreamConfig{Name: "S", Subjects: []string{"acr.>"}, Create: true, Duplicates: time.Minute,
		Replicas: 1, Storage: jetstream.FileStorage, AtomicBatches: BatchesAlways}, timeout, 100, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(p.Close)
	ctx := context.Background()
	require.NoError(t, p.EnsureStream(ctx))
	msg := func(id string) *nats.Msg {
		return &nats.Msg{Subject: "acr.test", Header: nats.Header{"Nats-Msg-Id": {id}}, Data: make([]byte, 1000)}
	}
	for i := range 50 {
		_, err := p.Publish(ctx, []*nats.Msg{msg(fmt.Sprint("single-", i))})
		require.NoError(t, err)
	}
	batch := make([]*nats.Msg, 20)
	for i := range batch {
		batch[i] = msg(fmt.Sprint("batch-", i))
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.Publish(ctx, batch)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the commit over the limit was answered (%v): nats-server answers such commits now", err)
	case <-time.After(500 * time.Millisecond):
	}
	_, err = p.Publish(ctx, []*nats.Msg{msg("refused")})
	require.ErrorContains(t, err, "insufficient resources")
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Contains(t, err.Error(), "a commit it refused part-way is never answered")
		t.Logf("the batch gave up %s after it was sent: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(time.Second):
		t.Fatalf("the batch still waits %s after the refusal", time.Since(start))
	}
}
