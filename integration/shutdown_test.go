package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
)

// batchOf is an Event Grid delivery of n ImagePushed events with ids prefix-0 .. prefix-(n-1).
func batchOf(prefix string, n int) ([]byte, []string) {
	ids := make([]string, n)
	events := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		events[i] = strings.TrimSuffix(strings.TrimPrefix(string(pushEvent(ids[i])), "["), "]")
	}
	return []byte("[" + strings.Join(events, ",") + "]"), ids
}

// storedIDs reads every Nats-Msg-Id in the stream.
func storedIDs(t *testing.T, natsURL string) map[string]int {
	t.Helper()
	return natstest.IDs(natstest.StoredAt(t, natsURL, "ACR_EVENTS"))
}

// SIGTERM under load: the bridge stops accepting, finishes the requests it has (a delivery whose body
// is still arriving included), drains NATS and exits 0. Every request answered 200 is in the stream,
// and every request is stored whole or not at all.
func TestSIGTERMUnderLoad(t *testing.T) {
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	p, url := bridgeProcess(t, "BRIDGE_NATS_URL="+natsURL, "BRIDGE_SHUTDOWN_TIMEOUT=15s")

	type result struct {
		ids  []string
		code int
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 20 * time.Second}
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body, ids := batchOf(fmt.Sprintf("w%d-r%d", w, i), 20)
				code := 0
				resp, err := client.Post(url+"/eventgrid", "application/json", bytes.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				results = append(results, result{ids, code})
				mu.Unlock()
				if err != nil && isRefused(err) {
					return // the listener is closed
				}
			}
		})
	}

	// One delivery is mid-body when SIGTERM arrives; it must still be finished and answered.
	slowBody, slowIDs := batchOf("slow", 5)
	pr, pw := io.Pipe()
	slow := make(chan int, 1)
	go func() {
		resp, err := client.Post(url+"/eventgrid", "application/json", pr)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	_, err := pw.Write(slowBody[:len(slowBody)/2])
	require.NoError(t, err)

	time.Sleep(time.Second) // load running
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(300 * time.Millisecond)
	_, err = pw.Write(slowBody[len(slowBody)/2:])
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	assert.Equal(t, 200, <-slow, "the delivery in flight at SIGTERM is finished")

	require.NoError(t, p.cmd.Wait(), p.out.String())
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	close(stop)
	wg.Wait()

	stored := storedIDs(t, natsURL)
	var ok, refused, whole, none int
	for _, r := range append(results, result{slowIDs, 200}) {
		n := 0
		for _, id := range r.ids {
			assert.LessOrEqual(t, stored[id], 1, "%s stored once", id)
			n += stored[id]
		}
		switch {
		case r.code == 200:
			ok++
			assert.Equal(t, len(r.ids), n, "a request answered 200 is stored whole")
		case n == 0:
			none++
		case n == len(r.ids):
			whole++
		default:
			t.Errorf("request %s… (status %d) is half-done: %d of %d events stored", r.ids[0], r.code, n, len(r.ids))
		}
		if r.code == 0 {
			refused++
		}
	}
	require.Greater(t, ok, 50, "the load ran")
	t.Logf("%d requests answered 200 and stored whole; %d refused after the listener closed (%d stored none, %d stored whole without an answer); %d events in the stream",
		ok, refused, none, whole, len(stored))
	assert.Contains(t, p.out.String(), "shutting down")
	assert.Contains(t, p.out.String(), "NATS connection drained and closed")
}
