package bridge_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
)

// egBatch is an Event Grid delivery of one ImagePushed event per id.
func egBatch(ids ...string) []byte {
	events := make([]string, len(ids))
	for i, id := range ids {
		events[i] = egPush(id, "team/web", id)
	}
	return []byte("[" + strings.Join(events, ",") + "]")
}

// msgIDs are the Nats-Msg-Id headers of msgs, in order.
func msgIDs(msgs []*jetstream.RawStreamMsg) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.Header.Get("Nats-Msg-Id")
	}
	return ids
}

// TestAtomicBatches: a batched delivery is stored as one JetStream atomic batch, so that a server that
// syncs every write syncs once for it. De-duplication is what it was: a redelivery, part or whole, and
// an id repeated within a delivery are stored once and counted as duplicates.
func TestAtomicBatches(t *testing.T) {
	e := newEnv(t)

	code, _, resp := e.post("/eventgrid", egBatch("a", "b", "c"))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":3,"duplicates":0,"deadLettered":0}`, resp)
	msgs := e.stored()
	require.Equal(t, []string{"a", "b", "c"}, msgIDs(msgs))
	batchID := msgs[0].Header.Get("Nats-Batch-Id")
	require.NotEmpty(t, batchID, "stored by an atomic batch")
	for i, m := range msgs {
		assert.Equal(t, batchID, m.Header.Get("Nats-Batch-Id"), "one batch")
		assert.Equal(t, fmt.Sprint(i+1), m.Header.Get("Nats-Batch-Sequence"))
	}
	assert.Contains(t, e.logs.String(), `"seq":1,"duplicates":0`, "the request's record names its first message's sequence")

	// The whole delivery again, as Event Grid retries it: JetStream refuses the batch, and the messages
	// published one by one are each found a duplicate.
	code, _, resp = e.post("/eventgrid", egBatch("a", "b", "c"))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":3,"duplicates":3,"deadLettered":0}`, resp)
	assert.Len(t, e.stored(), 3)

	// Part stored, part new.
	code, _, resp = e.post("/eventgrid", egBatch("b", "d", "c", "e"))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":4,"duplicates":2,"deadLettered":0}`, resp)
	assert.Equal(t, []string{"a", "b", "c", "d", "e"}, msgIDs(e.stored()))

	// One id twice in one delivery.
	code, _, resp = e.post("/eventgrid", egBatch("f", "f"))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":2,"duplicates":1,"deadLettered":0}`, resp)
	assert.Equal(t, []string{"a", "b", "c", "d", "e", "f"}, msgIDs(e.stored()))

	// A batch after them: its sequences follow on.
	code, _, resp = e.post("/eventgrid", egBatch("g", "h"))
	require.Equal(t, 200, code, resp)
	msgs = e.stored()
	require.Equal(t, []string{"a", "b", "c", "d", "e", "f", "g", "h"}, msgIDs(msgs))
	assert.NotEmpty(t, msgs[6].Header.Get("Nats-Batch-Id"))
	assert.Contains(t, e.logs.String(), `"seq":7,"duplicates":0`)
}

// TestAtomicBatchesOverTheServerLimit: a delivery of more events than nats-server takes in one atomic
// batch (1000) is stored as several, in order, each once.
func TestAtomicBatchesOverTheServerLimit(t *testing.T) {
	e := newEnv(t)
	ids := make([]string, 2100)
	for i := range ids {
		ids[i] = fmt.Sprintf("big-%04d", i)
	}
	code, _, resp := e.post("/eventgrid", egBatch(ids...))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":2100,"duplicates":0,"deadLettered":0}`, resp)
	msgs := e.stored()
	require.Equal(t, ids, msgIDs(msgs))
	batches := map[string]int{}
	for _, m := range msgs {
		batches[m.Header.Get("Nats-Batch-Id")]++
	}
	assert.Len(t, batches, 3)
	assert.NotContains(t, batches, "", "every message stored by a batch")

	code, _, resp = e.post("/eventgrid", egBatch(ids...))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":2100,"duplicates":2100,"deadLettered":0}`, resp)
	assert.Len(t, e.stored(), 2100)
}

// TestAtomicBatchesFollowTheStream: a stream that does not allow atomic batches (one made before the
// bridge asked for them, or by an operator) is published to one message at a time, with a warning that
// says how to allow them; allowing them on the running stream turns batches on, and disallowing them
// again turns them off at the first refused batch.
func TestAtomicBatchesFollowTheStream(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.noStream = true })
	ctx := context.Background()
	cfg := jetstream.StreamConfig{Name: streamName, Subjects: []string{"acr.>", "eventgrid.>"}, Duplicates: 10 * time.Minute}
	_, err := e.js.CreateStream(ctx, cfg)
	require.NoError(t, err)
	code, _, _ := e.do("GET", "/readyz", nil)
	require.Equal(t, 200, code)
	assert.Contains(t, e.logs.String(), "the stream does not allow atomic batch publishing")

	code, _, resp := e.post("/eventgrid", egBatch("p", "q"))
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Equal(t, []string{"p", "q"}, msgIDs(msgs))
	assert.Empty(t, msgs[0].Header.Get("Nats-Batch-Id"), "published one by one")
	code, _, resp = e.post("/eventgrid", egBatch("p", "r"))
	require.Equal(t, 200, code, resp)
	assert.JSONEq(t, `{"events":2,"duplicates":1,"deadLettered":0}`, resp)

	cfg.AllowAtomicPublish = true
	_, err = e.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	code, _, _ = e.do("GET", "/readyz", nil)
	require.Equal(t, 200, code)
	assert.Contains(t, e.logs.String(), "publishing multi-event deliveries as atomic batches")
	code, _, resp = e.post("/eventgrid", egBatch("s", "t"))
	require.Equal(t, 200, code, resp)
	msgs = e.stored()
	require.Equal(t, []string{"p", "q", "r", "s", "t"}, msgIDs(msgs))
	assert.NotEmpty(t, msgs[3].Header.Get("Nats-Batch-Id"), "stored by an atomic batch")

	// Disallowed behind the bridge's back: the refused batch is published one by one, and so are the
	// deliveries after it.
	cfg.AllowAtomicPublish = false
	_, err = e.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	warnings := strings.Count(e.logs.String(), "the stream does not allow atomic batch publishing")
	for _, ids := range [][]string{{"u", "v"}, {"w", "x"}} {
		code, _, resp = e.post("/eventgrid", egBatch(ids...))
		require.Equal(t, 200, code, resp)
		assert.JSONEq(t, `{"events":2,"duplicates":0,"deadLettered":0}`, resp)
	}
	msgs = e.stored()
	require.Equal(t, []string{"p", "q", "r", "s", "t", "u", "v", "w", "x"}, msgIDs(msgs))
	assert.Empty(t, msgs[5].Header.Get("Nats-Batch-Id"))
	assert.Equal(t, warnings+1, strings.Count(e.logs.String(), "the stream does not allow atomic batch publishing"), "said once, when it changed")
}

// TestAtomicBatchesOff: with BRIDGE_ATOMIC_BATCHES=false a delivery is published one message at a time;
// the stream is created allowing batches all the same, so that turning them on needs no stream change.
func TestAtomicBatchesOff(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.stream.AtomicBatches = bridge.BatchesNever })
	code, _, resp := e.post("/eventgrid", egBatch("o1", "o2"))
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Equal(t, []string{"o1", "o2"}, msgIDs(msgs))
	assert.Empty(t, msgs[0].Header.Get("Nats-Batch-Id"))
	info, err := e.js.Stream(context.Background(), streamName)
	require.NoError(t, err)
	assert.True(t, info.CachedInfo().Config.AllowAtomicPublish)
}

// TestConcurrentBatchedDeliveries: deliveries arriving together are gathered into shared batches; new
// deliveries and redeliveries mixed, every event is stored once, each delivery's events in order, and
// each answer counts its own duplicates.
func TestConcurrentBatchedDeliveries(t *testing.T) {
	e := newEnv(t)
	ids := func(prefix string) []string {
		out := make([]string, 5)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		return out
	}
	for i := range 10 {
		code, _, resp := e.post("/eventgrid", egBatch(ids(fmt.Sprintf("old%d", i))...))
		require.Equal(t, 200, code, resp)
	}

	type answer struct {
		code int
		body string
	}
	answers := make([]answer, 40)
	var wg sync.WaitGroup
	for i := range answers {
		prefix := fmt.Sprintf("new%d", i)
		if i%2 == 1 {
			prefix = fmt.Sprintf("old%d", i%10) // a redelivery, every event already stored
		}
		wg.Go(func() {
			code, _, body := e.post("/eventgrid", egBatch(ids(prefix)...))
			answers[i] = answer{code, body}
		})
	}
	wg.Wait()
	for i, a := range answers {
		require.Equal(t, 200, a.code, a.body)
		if i%2 == 1 {
			assert.JSONEq(t, `{"events":5,"duplicates":5,"deadLettered":0}`, a.body, "delivery %d", i)
		} else {
			assert.JSONEq(t, `{"events":5,"duplicates":0,"deadLettered":0}`, a.body, "delivery %d", i)
		}
	}

	msgs := e.stored()
	require.Len(t, msgs, 50+20*5)
	position := map[string]int{}
	for i, id := range msgIDs(msgs) {
		_, seen := position[id]
		require.False(t, seen, "%s stored twice", id)
		position[id] = i
	}
	for i := 0; i < 40; i += 2 {
		for k := 1; k < 5; k++ {
			assert.Less(t, position[fmt.Sprintf("new%d-%d", i, k-1)], position[fmt.Sprintf("new%d-%d", i, k)], "delivery %d in order", i)
		}
	}
}

// TestAtomicBatchesReplicated: BRIDGE_ATOMIC_BATCHES=auto on a NATS of the operator's with a
// single-replica stream publishes one message at a time, and says so.
func TestAtomicBatchesReplicated(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.stream.AtomicBatches = bridge.BatchesReplicated })
	assert.Contains(t, e.logs.String(), `"msg":"publishing multi-event deliveries one message at a time (BRIDGE_ATOMIC_BATCHES)","stream":"ACR_EVENTS","policy":"replicated","replicas":1`)
	code, _, resp := e.post("/eventgrid", egBatch("r1", "r2"))
	require.Equal(t, 200, code, resp)
	msgs := e.stored()
	require.Equal(t, []string{"r1", "r2"}, msgIDs(msgs))
	assert.Empty(t, msgs[0].Header.Get("Nats-Batch-Id"))
}

// TestAtomicBatchMetrics: committed and refused batches are counted, and the messages of each committed
// batch observed.
func TestAtomicBatchMetrics(t *testing.T) {
	e := newEnv(t, withMetrics)
	for range 2 {
		code, _, resp := e.post("/eventgrid", egBatch("mb1", "mb2", "mb3"))
		require.Equal(t, 200, code, resp)
	}
	m := e.scrape()
	assert.Equal(t, 1.0, m[`bridge_atomic_batches_total{result="committed"}`])
	assert.Equal(t, 1.0, m[`bridge_atomic_batches_total{result="refused"}`], "the redelivery")
	assert.Equal(t, 0.0, m[`bridge_atomic_batches_total{result="failed"}`])
	assert.Equal(t, 1.0, m[`bridge_atomic_batch_messages_count`])
	assert.Equal(t, 3.0, m[`bridge_atomic_batch_messages_sum`])
	assert.Equal(t, 3.0, m[`bridge_events_duplicates_total`])
}

// With NATS unreachable at start, the stream check says so, not what the client says of its buffers.
func TestEnsureStreamSaysNATSIsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	nc, err := nats.Connect("nats://"+addr, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	defer nc.Close()
	pub, err := bridge.NewJetStream(nc, bridge.StreamConfig{Name: "ACR_EVENTS", Subjects: []string{"acr.>"}, Create: true}, time.Second, 100, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer pub.Close()
	err = pub.EnsureStream(context.Background())
	require.ErrorIs(t, err, bridge.ErrUnavailable)
	assert.Contains(t, err.Error(), "NATS is not reachable")
	assert.NotContains(t, err.Error(), "outbound buffer")
}
