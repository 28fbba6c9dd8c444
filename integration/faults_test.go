package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ledger is what the senders of a fault test saw: every event acknowledged with 200, and every status.
type ledger struct {
	mu       sync.Mutex
	acked    map[string]int
	statuses map[string]int
	// slowest is the longest a request waited for its answer (or its error).
	slowest time.Duration
}

func (l *ledger) took(d time.Duration) {
	l.mu.Lock()
	l.slowest = max(l.slowest, d)
	l.mu.Unlock()
}

func newLedger() *ledger { return &ledger{acked: map[string]int{}, statuses: map[string]int{}} }

func (l *ledger) status(s string) {
	l.mu.Lock()
	l.statuses[s]++
	l.mu.Unlock()
}

func (l *ledger) ack(id string) {
	l.mu.Lock()
	l.acked[id]++
	l.mu.Unlock()
}

// load sends Event Grid deliveries of batch events each to url from workers senders until stop is
// closed. Each delivery is retried as Event Grid does (after a 503, a timeout or a refused connection)
// until it is answered 200 or ctx ends; stopping lets the deliveries under way finish first.
func load(ctx context.Context, url string, workers, batch int, stop <-chan struct{}, l *ledger) *sync.WaitGroup {
	client := &http.Client{Timeout: 15 * time.Second}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				prefix := fmt.Sprintf("w%d-e%d", w, i)
				body := []byte(batchBody(prefix, 0, batch))
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/eventgrid", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						l.took(time.Since(t0))
						l.status("transport error")
						time.Sleep(20 * time.Millisecond)
						continue
					}
					answer, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					l.took(time.Since(t0))
					l.status(fmt.Sprint(resp.StatusCode))
					if resp.StatusCode == http.StatusOK {
						if !bytes.Contains(answer, []byte(`"duplicates":0`)) {
							// Stored, whole or in part, by an earlier attempt whose answer was lost: a redelivery.
							l.status("200 duplicate")
						}
						for k := range batch {
							l.ack(fmt.Sprintf("%s-%d", prefix, k))
						}
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

// requireAllStoredOnce compares what the senders were told with what the stream holds: every
// acknowledged event exactly once, and nothing the senders did not send.
func requireAllStoredOnce(t *testing.T, l *ledger, stored map[string]int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Greater(t, len(l.acked), 500, "the load ran")
	var missing, twice []string
	for id := range l.acked {
		switch stored[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "acknowledged but not stored")
	assert.Empty(t, twice, "stored more than once")
	assert.Len(t, stored, len(l.acked), "the stream holds nothing else")
	t.Logf("acknowledged %d events, stream holds %d distinct; statuses seen: %v", len(l.acked), len(stored), l.statuses)
}

// count is how many events have been acknowledged so far.
func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// recovered waits until n more events than now are acknowledged: the bridge serves again.
func recovered(t *testing.T, l *ledger, n int) {
	t.Helper()
	from := l.count()
	require.Eventually(t, func() bool { return l.count() >= from+n }, 60*time.Second, 20*time.Millisecond,
		"no %d events acknowledged after the fault", n)
}

// finish lets the load run a little longer, then stops it.
func finish(t *testing.T, ctx context.Context, stop chan struct{}, wg *sync.WaitGroup) {
	t.Helper()
	time.Sleep(time.Second)
	stopLoad(t, ctx, stop, wg)
}

// stopLoad stops the load and waits for the events under way.
func stopLoad(t *testing.T, ctx context.Context, stop chan struct{}, wg *sync.WaitGroup) {
	t.Helper()
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the senders did not finish in time")
	}
}

// NATS SIGKILLed mid-load and restarted on the same file store: senders get 503 meanwhile and retry;
// every acknowledged event is stored exactly once. Single events to a server with NATS's default sync,
// and batches of 20 as atomic batches to one that syncs every write, killed mid-batch.
func TestNATSKilledMidLoad(t *testing.T) {
	for _, tc := range []struct {
		name       string
		batch      int
		syncAlways bool
		env        []string
	}{
		{"single events", 1, false, nil},
		{"atomic batches, sync always", 20, true, []string{"BRIDGE_ATOMIC_BATCHES=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			store := t.TempDir()
			startNATS := func() *proc {
				if tc.syncAlways {
					return natsServerSyncAlways(t, port, store)
				}
				return natsServer(t, port, store)
			}
			ns := startNATS()
			natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
			p, url := bridgeProcess(t, append([]string{"BRIDGE_NATS_URL=" + natsURL, "BRIDGE_PUBLISH_TIMEOUT=2s"}, tc.env...)...)

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			l := newLedger()
			stop := make(chan struct{})
			wg := load(ctx, url, 8, tc.batch, stop, l)
			time.Sleep(500 * time.Millisecond)
			ns.stop(syscall.SIGKILL)
			time.Sleep(time.Second)
			startNATS()
			recovered(t, l, 500)
			finish(t, ctx, stop, wg)

			requireAllStoredOnce(t, l, storedIDs(t, natsURL))
			assert.Positive(t, l.statuses["503"], "the outage was seen as 503")
			if tc.batch > 1 {
				assert.Contains(t, p.out.String(), "publishing multi-event deliveries as atomic batches")
			}
		})
	}
}

// The bridge SIGKILLed mid-load and restarted: requests cut off are retried, nothing acknowledged is lost,
// and the redelivery of an event stored just before the kill is de-duplicated.
func TestBridgeKilledMidLoad(t *testing.T) {
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BRIDGE_NATS_URL=" + natsURL}
	first := bridgeAt(t, listen, env...)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := newLedger()
	stop := make(chan struct{})
	wg := load(ctx, "http://"+listen, 8, 1, stop, l)
	time.Sleep(500 * time.Millisecond)
	first.stop(syscall.SIGKILL)
	time.Sleep(500 * time.Millisecond)
	bridgeAt(t, listen, env...)
	recovered(t, l, 500)
	finish(t, ctx, stop, wg)

	stored := storedIDs(t, natsURL)
	requireAllStoredOnce(t, l, stored)
	assert.Positive(t, l.statuses["transport error"], "the kill cut requests off")
}

// bridgeAt starts the built bridge listening on addr and waits until it serves.
func bridgeAt(t *testing.T, addr string, env ...string) *proc {
	t.Helper()
	p := start(t, append([]string{"BRIDGE_LISTEN_ADDR=" + addr}, env...), bridgeBin)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "bridge did not become ready")
	return p
}

// The bridge with its embedded server, as `go run ./cmd/bridge` runs it (sync always, atomic batches),
// SIGKILLed mid-load and restarted on the same store: the server dies with it, mid-batch, and every
// acknowledged event is there, once, when it comes back.
func TestEmbeddedBridgeKilledMidBatches(t *testing.T) {
	store := t.TempDir()
	natsPort := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{fmt.Sprintf("BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:%d", natsPort), "BRIDGE_EMBEDDED_NATS_DIR=" + store}
	first := bridgeAt(t, listen, env...)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := newLedger()
	stop := make(chan struct{})
	wg := load(ctx, "http://"+listen, 8, 20, stop, l)
	time.Sleep(700 * time.Millisecond)
	first.stop(syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	second := bridgeAt(t, listen, env...)
	recovered(t, l, 500)
	finish(t, ctx, stop, wg)

	requireAllStoredOnce(t, l, storedIDs(t, fmt.Sprintf("nats://127.0.0.1:%d", natsPort)))
	assert.Positive(t, l.statuses["transport error"], "the kill cut requests off")
	assert.Contains(t, second.out.String(), "publishing multi-event deliveries as atomic batches")
}

// A three-node NATS cluster with an R3 stream: the stream leader is SIGKILLed mid-load. The bridge keeps
// serving, and no acknowledged event is lost.
func TestClusterNodeKilled(t *testing.T) {
	nodes, clusterURL := natsCluster(t, "")
	nc, err := nats.Connect(clusterURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	createR3Stream(t, js)

	_, url := bridgeProcess(t, "BRIDGE_NATS_URL="+clusterURL, "BRIDGE_STREAM_CREATE=false", "BRIDGE_PUBLISH_TIMEOUT=3s")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := newLedger()
	stop := make(chan struct{})
	wg := load(ctx, url, 8, 1, stop, l)
	time.Sleep(700 * time.Millisecond)

	str, err := js.Stream(ctx, "ACR_EVENTS")
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	var killed string
	for _, n := range nodes {
		if n.name == info.Cluster.Leader {
			n.p.stop(syscall.SIGKILL)
			killed = n.name
		}
	}
	require.NotEmpty(t, killed, "stream leader %q is one of the nodes", info.Cluster.Leader)
	before := l.count()
	recovered(t, l, 500)
	finish(t, ctx, stop, wg)

	var survivor string
	for _, n := range nodes {
		if n.name != killed {
			survivor = fmt.Sprintf("nats://127.0.0.1:%d", n.port)
		}
	}
	requireAllStoredOnce(t, l, storedIDs(t, survivor))
	t.Logf("killed the stream leader %s with %d events acknowledged", killed, before)
}

// slowProxy relays TCP between the bridge and NATS on loopback, holding every byte from NATS (PubAcks
// among them) for delay: a slow NATS, as the bridge sees it.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			go func() { _, _ = io.Copy(server, client); server.Close() }()
			go delayed(client, server, delay)
		}
	}()
	return ln.Addr().String()
}

// delayed copies src to dst, each chunk delay after it was read, in order.
func delayed(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	chunks := make(chan chunk, 4096)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer dst.Close()
	for c := range chunks {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}

// rss returns the resident set size of a process in bytes, from /proc.
func rss(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// Slow NATS (every PubAck 300 ms late): 64 senders pile up against a cap of 16 deliveries in flight.
// The cap answers 503 at once instead of queueing, the bridge's memory stays bounded, and every
// acknowledged event is stored once.
func TestSlowNATS(t *testing.T) {
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	proxy := slowProxy(t, fmt.Sprintf("127.0.0.1:%d", port), 300*time.Millisecond)
	p, url := bridgeProcess(t, "BRIDGE_NATS_URL=nats://"+proxy, "BRIDGE_MAX_INFLIGHT=16", "BRIDGE_PUBLISH_TIMEOUT=5s")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := newLedger()
	stop := make(chan struct{})
	wg := load(ctx, url, 64, 1, stop, l)
	var peak int64
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		peak = max(peak, rss(t, p.cmd.Process.Pid))
	}
	stopLoad(t, ctx, stop, wg)

	l.mu.Lock()
	rejected, ok := l.statuses["503"], l.statuses["200"]
	l.mu.Unlock()
	assert.Positive(t, rejected, "over the cap, senders are told to retry")
	assert.Positive(t, ok)
	assert.Less(t, peak, int64(128<<20), "RSS stays bounded under a slow NATS")
	stored := storedIDs(t, natsURL)
	l.mu.Lock()
	for id := range l.acked {
		assert.Equal(t, 1, stored[id], "%s stored once", id)
	}
	assert.Len(t, stored, len(l.acked), "a request turned away stored nothing")
	l.mu.Unlock()
	t.Logf("slow NATS: %d acknowledged, %d answered 503; peak bridge RSS %.1f MB", ok, rejected, float64(peak)/(1<<20))
}

// A nats-server stalled (SIGSTOP) for longer than the publish timeout under 200 senders: every request is
// answered within the publish timeout and a margin (503 while it stalls), /readyz and /metrics answer within
// 2 s throughout, and once it runs again every acknowledged event is stored once.
func TestNATSStalledUnderLoad(t *testing.T) {
	port := freePort(t)
	ns := natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	const publishTimeout = 3 * time.Second
	_, url := bridgeProcess(t, "BRIDGE_NATS_URL="+natsURL, "BRIDGE_PUBLISH_TIMEOUT="+publishTimeout.String(), "BRIDGE_LOG_LEVEL=warn")

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	l := newLedger()
	stop := make(chan struct{})
	wg := load(ctx, url, 200, 1, stop, l)

	// Probes, as a kubelet and Prometheus would make them, timed.
	probeSlowest := map[string]time.Duration{}
	var probes sync.WaitGroup
	probeStop := make(chan struct{})
	probes.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		for {
			select {
			case <-probeStop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, path := range []string{"/readyz", "/metrics"} {
				t0 := time.Now()
				if resp, err := client.Get(url + path); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				probeSlowest[path] = max(probeSlowest[path], time.Since(t0))
			}
		}
	})

	time.Sleep(2 * time.Second)
	require.NoError(t, ns.cmd.Process.Signal(syscall.SIGSTOP))
	time.Sleep(3 * publishTimeout)
	require.NoError(t, ns.cmd.Process.Signal(syscall.SIGCONT))
	time.Sleep(3 * time.Second)
	stopLoad(t, ctx, stop, wg)
	close(probeStop)
	probes.Wait()

	l.mu.Lock()
	slowest, statuses := l.slowest, fmt.Sprint(l.statuses)
	l.mu.Unlock()
	t.Logf("NATS stalled %s under 200 senders: slowest answer %s, slowest probe %s; %s", 3*publishTimeout, slowest, probeSlowest, statuses)
	assert.Less(t, slowest, publishTimeout+2*time.Second, "every request answered within the publish timeout and a margin")
	for path, d := range probeSlowest {
		assert.Less(t, d, 2*time.Second, "%s within 2 s", path)
	}
	requireAllStoredOnce(t, l, storedIDs(t, natsURL))
}

// A sender that gives up before its answer (Event Grid after 30 s; here a client after 0.2 s, against a
// NATS whose acks take 0.6 s): the request is logged and counted as 499, the answer lost, not as the answer
// the sender never got; the event, already sent to NATS, is stored once.
func TestAnswerLostIsNotCountedAs200(t *testing.T) {
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	proxy := slowProxy(t, fmt.Sprintf("127.0.0.1:%d", port), 600*time.Millisecond)
	p, url := bridgeProcess(t, "BRIDGE_NATS_URL=nats://"+proxy, "BRIDGE_PUBLISH_TIMEOUT=8s")
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 200*time.Millisecond, "connected through the slow proxy")
	impatient := &http.Client{Timeout: 200 * time.Millisecond}
	_, err := impatient.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody("lost", 0, 1)))
	require.Error(t, err, "the sender gave up")
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), `"status":499`) }, 15*time.Second, 50*time.Millisecond, "%s", p.out)
	assert.Contains(t, p.out.String(), "not delivered: the sender closed the connection first")
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(metrics), `bridge_http_requests_total{code="499",route="POST /eventgrid"} 1`)
	assert.NotContains(t, string(metrics), `bridge_http_requests_total{code="200",route="POST /eventgrid"}`)
	require.Eventually(t, func() bool { return storedIDs(t, natsURL)["lost-0"] == 1 }, 10*time.Second, 100*time.Millisecond,
		"stored all the same, once: Event Grid's retry is a duplicate")
}

// A full disk under the embedded server, met three ways by one bridge process under a steady load of
// Event Grid batches, and recovered each time without a restart:
//   - another file fills the disk: the write error is logged once with its cause, deliveries get 503 at
//     once (those waiting for their acks included) and /readyz says why; the file removed, the server restarts in place and deliveries
//     are stored again;
//   - another file takes half the room and the load fills the rest: the same, the load's own write failing;
//   - the load fills the store to its limit (BRIDGE_EMBEDDED_NATS_MAX_STORE, 75 % of the disk): the server
//     refuses at once and /readyz says the store is full; the disk grown, the limit rises by itself.
//
// Every event acknowledged is stored once, and the process holds no more files open than before.
func TestEmbeddedStoreFull(t *testing.T) {
	mnt := tmpfs24(t)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const publishTimeout = 3 * time.Second
	p, url := bridgeProcess(t, "BRIDGE_EMBEDDED_NATS_DIR="+filepath.Join(mnt, "nats"), "BRIDGE_EMBEDDED_NATS_ADDR="+natsAddr,
		"BRIDGE_PUBLISH_TIMEOUT="+publishTimeout.String())
	listen := strings.TrimPrefix(url, "http://")
	pid := p.cmd.Process.Pid
	filler := filepath.Join(mnt, "filler")
	// openFiles is how many files the bridge holds open, and how many of them in atomic batches' staging
	// stores.
	openFiles := func() (all, staging int) {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		require.NoError(t, err)
		for _, fd := range fds {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.Contains(target, "/batches/") {
				staging++
			}
		}
		return len(fds), staging
	}
	// notReady waits until /readyz answers 503 saying want, each answer within 2 s.
	notReady := func(want string) {
		t.Helper()
		var body string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			t0 := time.Now()
			code, b := readyz(listen)
			require.Less(t, time.Since(t0), 2*time.Second, "/readyz within 2 s")
			if body = b; code == http.StatusServiceUnavailable && strings.Contains(b, want) {
				return
			}
		}
		t.Fatalf("/readyz never said %q; last: %s", want, body)
	}
	ready := func() {
		t.Helper()
		require.Eventually(t, func() bool { code, _ := readyz(listen); return code == http.StatusOK }, 20*time.Second, 50*time.Millisecond)
	}
	// at once: a delivery gets 503 without waiting for the publish timeout.
	atOnce := func() {
		t.Helper()
		t0 := time.Now()
		resp, err := http.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody("probe", 0, 5)))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Less(t, time.Since(t0), time.Second, "503 at once, not after the %s publish timeout", publishTimeout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	l := newLedger()
	stop := make(chan struct{})
	wg := load(ctx, url, 16, 20, stop, l)
	recovered(t, l, 1000)
	filesBefore, _ := openFiles()

	// Another file fills the disk.
	zeroFile(t, filler, 1<<30)
	notReady("no space left on device")
	atOnce()
	require.NoError(t, os.Remove(filler))
	ready()
	recovered(t, l, 1000)

	// Another file takes half of the room left; the load fills the rest.
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(mnt, &st))
	zeroFile(t, filler, int64(st.Bavail)*st.Bsize/2)
	notReady("no space left on device")
	atOnce()
	require.NoError(t, os.Remove(filler))
	ready()
	recovered(t, l, 1000)

	// The load fills the store to its limit; the disk grows.
	notReady("the embedded NATS store is full")
	atOnce()
	require.NoError(t, exec.Command("mount", "-o", "remount,size=64m", mnt).Run())
	ready()
	recovered(t, l, 1000)

	stopLoad(t, ctx, stop, wg)
	l.mu.Lock()
	slowest := l.slowest
	l.mu.Unlock()
	t.Logf("slowest answer %s", slowest)
	assert.Less(t, slowest, publishTimeout, "no delivery waited for its publish timeout: those in flight when the store stopped are answered at once too")
	out := p.out.String()
	assert.Equal(t, 2, strings.Count(out, `"msg":"the embedded NATS store refuses writes`), "said once a time")
	assert.Equal(t, 2, strings.Count(out, `"msg":"the embedded NATS store takes writes again`))
	assert.Contains(t, out, `"msg":"the embedded NATS store limit was raised`)
	filesAfter, staging := openFiles()
	// nats-server leaks the staging store of a batch opened on a full disk (docs/nats-server-write-errors.md);
	// the bridge opens none once it knows of the write error, so few are ever open then.
	assert.LessOrEqual(t, staging, 16, "at most the batches open at the moment of the write error")
	assert.LessOrEqual(t, filesAfter, filesBefore+16, "what the failed servers held open is closed")
	require.Nil(t, p.cmd.ProcessState, "the bridge ran throughout")
	t.Logf("open files %d before the faults, %d after (%d in staging stores)", filesBefore, filesAfter, staging)
	requireAllStoredOnce(t, l, storedIDs(t, "nats://"+natsAddr))
}

// tmpfs24 mounts a 24 MiB tmpfs for the test, unmounted after everything the test started has stopped,
// or skips the test where mounting is refused (not root).
func tmpfs24(t *testing.T) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs is refused here (%v: %s); this test needs root", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() }) // registered first, so run last
	return mnt
}

// zeroFile writes up to n zero bytes to path, stopping early when the disk is full.
func zeroFile(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	_, _ = io.Copy(f, io.LimitReader(zeroReader{}, n))
	require.NoError(t, f.Close())
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// A nats-server process of one's own whose disk fills: the stream stops answering publishes, so each
// delivery gets 503 after BRIDGE_PUBLISH_TIMEOUT, and /readyz says that the stream does not acknowledge
// although NATS is connected. Once the disk has room and the server is restarted, deliveries and /readyz
// recover by themselves, and everything acknowledged is stored once.
func TestExternalStoreWriteError(t *testing.T) {
	mnt := tmpfs24(t)
	port := freePort(t)
	store := filepath.Join(mnt, "nats")
	ns := natsServerSyncAlways(t, port, store)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	_, url := bridgeProcess(t, "BRIDGE_NATS_URL="+natsURL, "BRIDGE_PUBLISH_TIMEOUT=2s")
	listen := strings.TrimPrefix(url, "http://")
	post := func(prefix string) int {
		t.Helper()
		resp, err := http.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody(prefix, 0, 20)))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	acked := map[string]bool{}
	require.Equal(t, http.StatusOK, post("before"))
	acked["before"] = true

	zeroFile(t, filepath.Join(mnt, "filler"), 1<<30)
	var code int
	for i := 0; i < 20; i++ {
		if code = post(fmt.Sprintf("full%d", i)); code != http.StatusOK {
			break
		}
		acked[fmt.Sprintf("full%d", i)] = true
	}
	require.Equal(t, http.StatusServiceUnavailable, code)
	status, body := readyz(listen)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, body, "not acknowledged within BRIDGE_PUBLISH_TIMEOUT although NATS is connected")

	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	ns.stop(syscall.SIGTERM)
	natsServerSyncAlways(t, port, store)
	require.Eventually(t, func() bool { return post("after") == http.StatusOK }, 30*time.Second, 200*time.Millisecond)
	acked["after"] = true
	status, body = readyz(listen)
	assert.Equal(t, http.StatusOK, status, body)
	stored := storedIDs(t, natsURL)
	for prefix := range acked {
		for i := range 20 {
			assert.Equal(t, 1, stored[fmt.Sprintf("%s-%d", prefix, i)], "%s-%d stored once", prefix, i)
		}
	}
}
