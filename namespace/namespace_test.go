package namespace_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"github.com/natsbridge/acr-nats-bridge/namespace"
	"github.com/natsbridge/acr-nats-bridge/namespace/namespacetest"
)

const acrTopic = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry"

// cePush is an ImagePushed CloudEvent, as the registry's system topic routes it to a namespace topic.
func cePush(id string) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":%q,"subject":"web:v1","type":"Microsoft.ContainerRegistry.ImagePushed",`+
		`"time":"2024-05-01T10:00:00.1234567Z","datacontenttype":"application/json",`+
		`"data":{"id":"d-%s","timestamp":"2024-05-01T10:00:00.123Z","action":"push","target":{"repository":"web","tag":"v1","digest":"sha256:abc"}}}`,
		id, acrTopic, id)
}

// rig is a puller between a stand-in namespace and a real nats-server, through the bridge's delivery path.
type rig struct {
	t      testing.TB
	ns     *namespacetest.Namespace
	nats   *server.Server
	natsOp *server.Options
	js     jetstream.JetStream
	puller *namespace.Puller
	reg    *prometheus.Registry
	logs   *natstest.LogBuffer
	stop   func()
	// server is the bridge server whose in-flight budget the puller shares, when rigOptions asks for one.
	server *bridge.Server
}

// gate holds each delivery until it is told to go, so a test can act while one is under way.
type gate struct {
	entered chan struct{} // a delivery arrived
	open    chan struct{} // closed: deliveries go on
}

type gatedDeliverer struct {
	namespace.Deliverer
	g *gate
}

func (d gatedDeliverer) Deliver(ctx context.Context, delivery *bridge.Delivery) bridge.Report {
	select {
	case d.g.entered <- struct{}{}:
	default:
	}
	<-d.g.open
	return d.Deliverer.Deliver(ctx, delivery)
}

func deliverer(path *bridge.Path, g *gate) namespace.Deliverer {
	if g == nil {
		return path
	}
	return gatedDeliverer{path, g}
}

type rigOptions struct {
	gate         *gate
	receivers    int  // 0 is 2
	syncAlways   bool // the nats-server syncs every write
	namespace    namespacetest.Options
	key          string // "" uses the namespace's
	passthrough  bool
	subscription string
	renewEvery   time.Duration
	// maxInflightBytes, when set, is the budget of a bridge server the puller shares.
	maxInflightBytes int64
}

func newRig(t testing.TB, ro rigOptions) *rig {
	t.Helper()
	if ro.namespace.MaxWaitScale == 0 {
		ro.namespace.MaxWaitScale = 50 // an empty receive waits 0.2 s, not 10 s
	}
	r := &rig{t: t, ns: namespacetest.New(t, ro.namespace), reg: prometheus.NewRegistry(), logs: &natstest.LogBuffer{}}
	r.natsOp = &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		SyncAlways: ro.syncAlways}
	r.startNATS()
	nc, err := nats.Connect(r.nats.ClientURL(), nats.ReconnectBufSize(-1), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	r.js, err = jetstream.New(nc)
	require.NoError(t, err)
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pub, err := bridge.NewJetStream(nc, bridge.StreamConfig{Name: "ACR_EVENTS", Subjects: []string{"acr.>", "eventgrid.>"}, Create: true,
		Duplicates: 10 * time.Minute, Replicas: 1, Storage: jetstream.FileStorage, AtomicBatches: bridge.BatchesAlways}, 2*time.Second, 1000, nil, log)
	require.NoError(t, err)
	t.Cleanup(pub.Close)
	require.NoError(t, pub.EnsureStream(context.Background()))
	path := bridge.NewPath(bridge.PathOptions{
		Subjects: bridge.Subjects{Prefix: "acr", Passthrough: "eventgrid"}, Mode: bridge.ModeStructured,
		Passthrough: ro.passthrough,
	}, pub, log)
	key := ro.key
	if key == "" {
		key = r.ns.Key
	}
	receivers := ro.receivers
	if receivers == 0 {
		receivers = 2
	}
	sub := ro.subscription
	if sub == "" {
		sub = "bridge"
	}
	if ro.maxInflightBytes > 0 {
		r.server = bridge.NewServer(bridge.Options{MaxBodyBytes: ro.maxInflightBytes, MaxInflightBytes: ro.maxInflightBytes, MaxEvents: 100}, path, log)
	}
	var budget interface {
		HoldBytes(int64) (func(), bool)
	}
	if r.server != nil {
		budget = r.server
	}
	r.puller, err = namespace.New(namespace.Options{
		Endpoint: r.ns.URL, Topic: "acr-events", Subscription: sub, Key: key,
		Receivers: receivers, MaxEvents: 100, MaxWait: 10 * time.Second, ReleaseDelay: 0, RenewEvery: ro.renewEvery, Budget: budget,
		ClientOptions: azcore.ClientOptions{Transport: r.ns.Client, Retry: policy.RetryOptions{MaxRetries: -1}},
	}, deliverer(path, ro.gate), r.reg, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.puller.Run(ctx); close(done) }()
	r.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the puller did not stop")
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *rig) startNATS() {
	ns := natstest.Run(r.t, r.natsOp)
	r.nats = ns
	r.natsOp.Port = ns.Addr().(*net.TCPAddr).Port
}

// stored returns the Nats-Msg-Id of every message in the stream, counted.
func (r *rig) stored() map[string]int {
	r.t.Helper()
	return natstest.IDs(natstest.Stored(r.t, r.js, "ACR_EVENTS"))
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func (r *rig) publish(idList ...string) {
	for _, id := range idList {
		r.ns.Publish(cePush(id))
	}
}

// Every event is stored once and acknowledged once, each acknowledgement after its event is in the stream:
// whenever the namespace is asked to acknowledge, the stream already holds at least as many events as
// will then have been acknowledged.
func TestPullStoresAndAcknowledges(t *testing.T) {
	var r *rig
	var ackedSoFar int
	var early []string
	ready := make(chan struct{})
	opts := rigOptions{}
	opts.namespace.BeforeAcknowledge = func(acking []string) bool {
		<-ready
		ackedSoFar += len(acking)
		if stored := len(r.stored()); stored < ackedSoFar {
			early = append(early, fmt.Sprintf("%d acknowledged with %d stored", ackedSoFar, stored))
		}
		return true
	}
	r = newRig(t, opts)
	close(ready)
	want := ids("e", 250)
	r.publish(want...)
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == len(want) }, 20*time.Second, 20*time.Millisecond)
	stored := r.stored()
	assert.Len(t, stored, len(want))
	for _, id := range want {
		assert.Equal(t, 1, stored[id], id)
	}
	assert.ElementsMatch(t, want, r.ns.Acknowledged(), "each acknowledged once")
	assert.Zero(t, r.ns.Outstanding())
	assert.Empty(t, r.ns.DeadLettered())
	assert.NoError(t, r.puller.Ready(context.Background()))
	// One record a pulled batch, in the format of a pushed request's: the settlements, then what the path did.
	assert.Regexp(t, `"msg":"pulled","received":\d+,"acknowledged":\d+,"released":0,"rejected":0,"duration_ms":[\d.]+,`+
		`"event_ids":"[^"]+","messages":\d+,"subject":"acr\.image\.pushed\.[^"]+","stream":"ACR_EVENTS","seq":\d+,"duplicates":0`, r.logs.String())
	assert.Empty(t, early, "an acknowledgement before its event was stored")
	assert.Equal(t, 250, ackedSoFar)
}

// The same event redelivered under a new lock token (its acknowledgement lost) is stored once and
// acknowledged again.
func TestPullRedeliveryStoredOnce(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.publish("dup")
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 1 }, 10*time.Second, 20*time.Millisecond)
	r.publish("dup")
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 2 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, map[string]int{"dup": 1}, r.stored())
	assert.Contains(t, r.logs.String(), `"duplicates":1`)
}

// Pulled events get their artifact kind as pushed ones do: the platform manifest of a multi-platform push
// (untagged) and a cosign signature tag are not images to deploy; the tagged index is.
func TestPullArtifactKinds(t *testing.T) {
	r := newRig(t, rigOptions{})
	digest := strings.Repeat("ab", 32)
	push := func(id, tag, mediaType string) []byte {
		return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":%q,"type":"Microsoft.ContainerRegistry.ImagePushed",`+
			`"time":"2026-12-01T10:00:00Z","data":{"action":"push","target":{"repository":"web","tag":%q,"mediaType":%q,"digest":"sha256:%s"}}}`,
			id, acrTopic, tag, mediaType, digest)
	}
	r.ns.Publish(push("platform", "", "application/vnd.oci.image.manifest.v1+json"),
		push("index", "v1", "application/vnd.oci.image.index.v1+json"),
		push("sig", "sha256-"+digest+".sig", "application/vnd.oci.image.manifest.v1+json"))
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 3 }, 10*time.Second, 20*time.Millisecond)
	subjects := map[string]string{}
	for _, m := range natstest.Stored(t, r.js, "ACR_EVENTS") {
		subjects[m.Header.Get("Nats-Msg-Id")] = m.Subject
	}
	assert.Equal(t, map[string]string{
		"platform": "acr.manifest.pushed.myregistry.web",
		"index":    "acr.image.pushed.myregistry.web",
		"sig":      "acr.signature.pushed.myregistry.web",
	}, subjects)
}

// NATS stopped mid-pull: nothing is acknowledged while it is down, every event is released (never
// rejected), and once NATS is back each is stored once and acknowledged.
func TestPullNATSDown(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.publish(ids("before", 20)...)
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 20 }, 10*time.Second, 20*time.Millisecond)

	r.nats.Shutdown()
	r.nats.WaitForShutdown()
	r.publish(ids("during", 30)...)
	require.Eventually(t, func() bool { return r.ns.Requests("release") > 0 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, r.ns.Acknowledged(), 20, "nothing acknowledged while NATS is down")
	assert.Zero(t, r.ns.Requests("reject"))
	// Receiving stops until NATS can store: each receive would raise the delivery counts towards the
	// namespace's dead-lettering.
	require.Eventually(t, func() bool {
		return strings.Contains(r.logs.String(), "not receiving from the Event Grid namespace while NATS cannot store")
	},
		5*time.Second, 20*time.Millisecond)
	receives := r.ns.Requests("receive")
	time.Sleep(time.Second)
	assert.LessOrEqual(t, r.ns.Requests("receive"), receives+2, "no receiving while NATS is down")

	r.startNATS()
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 50 }, 20*time.Second, 50*time.Millisecond, "%d acknowledged; log:\n%s", len(r.ns.Acknowledged()), r.logs.String())
	stored := r.stored()
	assert.Len(t, stored, 50)
	for id, n := range stored {
		assert.Equal(t, 1, n, id)
	}
	assert.Empty(t, r.ns.DeadLettered())
}

// With passthrough off, an event that is not an ACR event is rejected, and the namespace dead-letters it;
// the ACR events beside it are stored.
func TestPullPassthroughOffRejects(t *testing.T) {
	r := newRig(t, rigOptions{passthrough: false})
	r.ns.Publish([]byte(`{"specversion":"1.0","id":"blob-1","source":"/s","type":"Microsoft.Storage.BlobCreated","data":{}}`))
	r.publish("acr-1")
	require.Eventually(t, func() bool { return len(r.ns.DeadLettered()) == 1 && len(r.ns.Acknowledged()) == 1 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "Rejected", r.ns.DeadLettered()[0].Reason)
	assert.Contains(t, string(r.ns.DeadLettered()[0].Event), `"blob-1"`)
	assert.Equal(t, map[string]int{"acr-1": 1}, r.stored())
}

// A wrong key: /readyz/pull says why, the log says it once, and the receivers back off rather than spin.
func TestPullWrongKey(t *testing.T) {
	r := newRig(t, rigOptions{key: "not-the-key"})
	require.Eventually(t, func() bool {
		err := r.puller.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "refuses the bridge (401 Unauthorized)")
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(2 * time.Second)
	assert.LessOrEqual(t, r.ns.Requests("unauthorized"), 8, "two receivers backing off from 1 s")
	assert.Equal(t, 1, strings.Count(r.logs.String(), "Event Grid namespace receive failing"), "logged when it changed, once")
	assert.NotContains(t, r.logs.String(), "not-the-key", "the key never reaches the log")
}

// A subscription that does not exist is a clear not-ready reason.
func TestPullMissingSubscription(t *testing.T) {
	r := newRig(t, rigOptions{subscription: "nobody"})
	require.Eventually(t, func() bool {
		err := r.puller.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "topic or subscription not found")
	}, 10*time.Second, 20*time.Millisecond)
}

// Until a receive call succeeds, the pull is not known to work: not ready, saying so.
func TestPullNotReadyBeforeTheFirstReceive(t *testing.T) {
	r := newRig(t, rigOptions{})
	require.Eventually(t, func() bool { return r.puller.Ready(context.Background()) == nil }, 10*time.Second, 20*time.Millisecond, "ready once receiving")
	idle, err := namespace.New(namespace.Options{Endpoint: r.ns.URL, Topic: "acr-events", Subscription: "bridge", Key: r.ns.Key,
		Receivers: 1, MaxEvents: 1, MaxWait: 10 * time.Second}, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.ErrorContains(t, idle.Ready(context.Background()), "no receive call has succeeded yet", "a puller that has not received")
}

// A shutdown that begins while a received batch is being delivered lets it finish and settles it: every
// event acknowledged, none left locked to come again.
func TestPullShutdownSettles(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), open: make(chan struct{})}
	r := newRig(t, rigOptions{receivers: 1, gate: g})
	r.publish(ids("inflight", 10)...)
	<-g.entered
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	time.Sleep(100 * time.Millisecond) // the shutdown has begun: the receive loop's context is cancelled
	select {
	case <-stopped:
		t.Fatal("the puller stopped with a batch under way")
	default:
	}
	close(g.open)
	<-stopped
	assert.Len(t, r.ns.Acknowledged(), 10, "the batch under way was settled")
	assert.Zero(t, r.ns.Outstanding())
	assert.Len(t, r.stored(), 10)
}

// A batch NATS takes longer to store than its lock lasts (2 s here, held 5 s): its locks are renewed
// meanwhile, so the namespace does not deliver it again; every event is stored once and acknowledged.
func TestPullRenewsLocksWhileNATSIsSlow(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), open: make(chan struct{})}
	r := newRig(t, rigOptions{gate: g, receivers: 1, renewEvery: 500 * time.Millisecond,
		namespace: namespacetest.Options{LockDuration: 2 * time.Second, MaxWaitScale: 50}})
	r.ns.Publish(cePush("slow-1"), cePush("slow-2"))
	<-g.entered
	time.Sleep(5 * time.Second) // past the lock, twice over
	close(g.open)
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 2 }, 10*time.Second, 20*time.Millisecond)
	assert.Zero(t, r.ns.Redelivered(), "the locks were kept: nothing delivered again")
	assert.Equal(t, map[string]int{"slow-1": 1, "slow-2": 1}, r.stored())
	assert.GreaterOrEqual(t, r.ns.Requests("renewLock"), 8, "renewed every 0.5 s while held")
}

// Pulled batches count against BRIDGE_MAX_INFLIGHT_BYTES as pushed bodies do: while pushed deliveries
// hold the whole budget, a received batch waits (its locks renewed), and is stored once they are done.
func TestPullSharesTheInflightBudget(t *testing.T) {
	r := newRig(t, rigOptions{receivers: 1, renewEvery: 500 * time.Millisecond, maxInflightBytes: 64 << 10,
		namespace: namespacetest.Options{LockDuration: 2 * time.Second, MaxWaitScale: 50}})
	release, ok := r.server.HoldBytes(64 << 10) // pushed deliveries in flight, the budget spent
	require.True(t, ok)
	r.ns.Publish(cePush("budget-1"), cePush("budget-2"))
	time.Sleep(3 * time.Second)
	assert.Empty(t, r.stored(), "waiting for room in the budget")
	assert.Empty(t, r.ns.Acknowledged())
	release()
	require.Eventually(t, func() bool { return len(r.ns.Acknowledged()) == 2 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, map[string]int{"budget-1": 1, "budget-2": 1}, r.stored())
	assert.Zero(t, r.ns.Redelivered(), "its locks were renewed while it waited")
	_, ok = r.server.HoldBytes(1)
	assert.True(t, ok, "the batch gave its bytes back")
}
