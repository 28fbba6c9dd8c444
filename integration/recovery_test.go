package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func post(t *testing.T, url string, body []byte) (int, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

func pushEvent(id string) []byte {
	return []byte(fmt.Sprintf(`[{"id":%q,"topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",
		"subject":"app:%s","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T10:00:00.1234567Z",
		"data":{"id":"d","action":"push","target":{"repository":"app","tag":%q}},"dataVersion":"1.0","metadataVersion":"1"}]`, id, id, id))
}

// The bridge answers 503 while NATS is down and recovers by itself when NATS returns, with no restart.
func TestNATSOutageAndRecovery(t *testing.T) {
	port := freePort(t)
	store := t.TempDir()
	ns := natsServer(t, port, store)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	_, url := bridgeProcess(t, "BRIDGE_NATS_URL="+natsURL, "BRIDGE_LOG_LEVEL=debug")

	seed, err := os.ReadFile(filepath.Join("..", "bridge", "testdata", "in", "cloudevents-image-pushed.json"))
	require.NoError(t, err)
	code, _ := post(t, url+"/eventgrid", seed)
	require.Equal(t, 200, code)

	ns.stop(syscall.SIGKILL)
	require.Eventually(t, func() bool {
		code, h := post(t, url+"/eventgrid", pushEvent("during-outage"))
		return code == 503 && h.Get("Retry-After") != ""
	}, 10*time.Second, 50*time.Millisecond, "503 while NATS is down")
	resp, err := http.Get(url + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)

	natsServer(t, port, store)
	require.Eventually(t, func() bool {
		code, _ := post(t, url+"/eventgrid", pushEvent("after-outage"))
		return code == 200
	}, 20*time.Second, 100*time.Millisecond, "200 again once NATS is back")
	// Event Grid retries the event that got a 503.
	code, _ = post(t, url+"/eventgrid", pushEvent("during-outage"))
	require.Equal(t, 200, code)

	ids := storedIDs(t, natsURL)
	// The seed event survived the outage (file storage); each retried event is stored exactly once.
	assert.Equal(t, map[string]int{"831e1650-001e-001b-66ab-eeb76e069631": 1, "after-outage": 1, "during-outage": 1}, ids)
}

// SIGTERM stops the bridge cleanly: exit status 0.
func TestSIGTERMExitsCleanly(t *testing.T) {
	p, url := bridgeProcess(t,
		"BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0",
		"BRIDGE_EMBEDDED_NATS_DIR="+t.TempDir())
	code, _ := post(t, url+"/eventgrid", pushEvent("before-stop"))
	require.Equal(t, 200, code)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait(), p.out.String())
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	assert.Contains(t, p.out.String(), "shutting down")
}
