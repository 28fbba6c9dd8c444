package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/entra"
	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"github.com/natsbridge/acr-nats-bridge/namespace/namespacetest"
)

// ceEvent is an ImagePushed CloudEvent as a registry's system topic routes it to a namespace topic.
func ceEvent(id string) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",`+
		`"subject":"web:v1","type":"Microsoft.ContainerRegistry.ImagePushed","time":"2024-05-01T10:00:00.1234567Z","datacontenttype":"application/json",`+
		`"data":{"id":"d-%s","timestamp":"2024-05-01T10:00:00.123Z","action":"push","target":{"repository":"web","tag":"v1","digest":"sha256:abc"}}}`, id, id)
}

// certBundle writes the PEM files into one, as SSL_CERT_FILE takes a private CA's roots, and returns its path.
func certBundle(t *testing.T, files ...string) string {
	t.Helper()
	var certs []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		certs = append(certs, b...)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	require.NoError(t, os.WriteFile(bundle, certs, 0o600))
	return bundle
}

// pullingBridge starts the built bridge pulling from ns, storing in the nats-server at natsURL, trusting
// the stand-in's certificate through SSL_CERT_FILE as it would a private CA.
func pullingBridge(t *testing.T, ns *namespacetest.Namespace, natsURL, listen, key string) *proc {
	t.Helper()
	return start(t, []string{"BRIDGE_LISTEN_ADDR=" + listen, "BRIDGE_NATS_URL=" + natsURL, "SSL_CERT_FILE=" + ns.CertFile,
		"BRIDGE_NAMESPACE_ENDPOINT=" + ns.URL, "BRIDGE_NAMESPACE_TOPIC=acr-events", "BRIDGE_NAMESPACE_SUBSCRIPTION=bridge",
		"BRIDGE_NAMESPACE_KEY=" + key, "BRIDGE_NAMESPACE_MAX_WAIT=10s"}, bridgeBin)
}

// readyz is what GET /readyz answers: readiness for pushed deliveries.
func readyz(listen string) (int, string) { return get(listen, "/readyz") }

// readyzPull is what GET /readyz/pull answers: the pull's health.
func readyzPull(listen string) (int, string) { return get(listen, "/readyz/pull") }

func get(listen, path string) (int, string) {
	resp, err := http.Get("http://" + listen + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The built bridge pulls from a stand-in namespace: every event stored once and acknowledged once;
// SIGKILLed mid-pull, its locks expire, the events come again, and each is still stored once.
func TestPullBinary(t *testing.T) {
	// The bridge is killed at its first acknowledgement of the second wave: its events are stored, their
	// locks held, and the acknowledgement never arrives.
	var first *proc
	var killAt atomic.Bool
	ns := namespacetest.New(t, namespacetest.Options{LockDuration: 2 * time.Second, MaxWaitScale: 50,
		BeforeAcknowledge: func([]string) bool {
			if killAt.CompareAndSwap(true, false) {
				_ = first.cmd.Process.Kill()
				return false
			}
			return true
		}})
	port := freePort(t)
	natsServerSyncAlways(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	first = pullingBridge(t, ns, natsURL, listen, ns.Key)

	const n = 3000
	for i := range n / 2 {
		ns.Publish(ceEvent(fmt.Sprintf("first-%d", i)))
	}
	require.Eventually(t, func() bool { return len(ns.Acknowledged()) == n/2 }, 30*time.Second, 20*time.Millisecond, "%s", first.out)
	code, body := readyzPull(listen)
	assert.Equal(t, 200, code, body)

	// Killed with events under way: what it had received and not acknowledged comes again once its
	// locks expire, to the bridge started after it.
	killAt.Store(true)
	for i := range n / 2 {
		ns.Publish(ceEvent(fmt.Sprintf("second-%d", i)))
	}
	require.Eventually(t, func() bool { return !killAt.Load() }, 10*time.Second, time.Millisecond)
	first.stop(syscall.SIGKILL)
	pullingBridge(t, ns, natsURL, listen, ns.Key)
	require.Eventually(t, func() bool { return ns.Outstanding() == 0 }, 60*time.Second, 50*time.Millisecond)

	stored := storedIDs(t, natsURL)
	assert.Len(t, stored, n)
	for id, c := range stored {
		assert.Equal(t, 1, c, "%s stored once", id)
	}
	acked := map[string]int{}
	for _, id := range ns.Acknowledged() {
		acked[id]++
	}
	assert.Len(t, acked, n, "every event acknowledged")
	assert.Empty(t, ns.DeadLettered())
	assert.Positive(t, ns.Redelivered(), "the kill left locks to expire, and their events came again")
	t.Logf("%d events stored once; %d redelivered after the kill, %d acknowledgements", len(stored), ns.Redelivered(), len(ns.Acknowledged()))
}

// A wrong key: the bridge starts, serves, and says in /readyz/pull why the pull does not work; it never
// crashes, and /readyz stays ready, so that pushed deliveries keep flowing to it behind a Service.
func TestPullBinaryWrongKey(t *testing.T) {
	ns := namespacetest.New(t, namespacetest.Options{MaxWaitScale: 50})
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := pullingBridge(t, ns, fmt.Sprintf("nats://127.0.0.1:%d", port), listen, "a-key-that-is-wrong")
	require.Eventually(t, func() bool {
		code, body := readyzPull(listen)
		return code == 503 && strings.Contains(body, "refuses the bridge (401 Unauthorized)")
	}, 20*time.Second, 50*time.Millisecond, "%s", p.out)
	code, body := readyz(listen)
	assert.Equal(t, 200, code, "pushes are not failed for the pull's sake: %s", body)
	assert.NotContains(t, p.out.String(), "a-key-that-is-wrong", "the key never reaches the log")
	assert.Nil(t, p.cmd.ProcessState, "still running")
}

// SIGTERM while pulling: the bridge stops receiving, settles what it received, then exits 0. Every event
// it stored is acknowledged; none is left stored but locked, to come again after its lock expires.
func TestPullBinarySIGTERM(t *testing.T) {
	ns := namespacetest.New(t, namespacetest.Options{MaxWaitScale: 50})
	port := freePort(t)
	natsServerSyncAlways(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := pullingBridge(t, ns, natsURL, listen, ns.Key)
	for i := range 5000 {
		ns.Publish(ceEvent(fmt.Sprintf("term-%d", i)))
	}
	require.Eventually(t, func() bool { return len(ns.Acknowledged()) > 500 }, 20*time.Second, time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait(), p.out.String())
	assert.Contains(t, p.out.String(), "stopped pulling; every received event settled")

	stored := storedIDs(t, natsURL)
	acked := map[string]int{}
	for _, id := range ns.Acknowledged() {
		acked[id]++
	}
	assert.Equal(t, len(stored), len(acked), "every stored event acknowledged, every acknowledged one stored")
	for id := range stored {
		assert.Equal(t, 1, acked[id], "%s stored and acknowledged once", id)
	}
	t.Logf("stopped with %d of 5000 events stored and acknowledged", len(stored))
}

// The built bridge with no key authenticates to the namespace with Microsoft Entra ID through the Azure
// SDK's default credential chain (here its environment credential, against a stand-in tenant's token
// service): an identity holding the receiver role pulls; one without it is refused, and /readyz says so.
func TestPullBinaryEntra(t *testing.T) {
	tenant := entratest.New(t)
	authority := tenant.Authority(t, "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f", "a-client-secret-for-tests")
	verifier, err := entra.New(context.Background(), entra.Config{TenantID: entratest.TenantID, Audiences: []string{"https://eventgrid.azure.net"},
		KeysURL: tenant.KeysURL, Refresh: time.Hour, MinRefresh: time.Second}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tokens := func(ctx context.Context, tok string) (string, error) {
		c, err := verifier.Verify(ctx, tok)
		return c.AppID, err
	}
	// One bundle trusts both stand-ins, as SSL_CERT_FILE would a private CA.

	for _, tc := range []struct {
		name      string
		receivers []string
	}{
		{"with the receiver role", []string{authority.ClientID}},
		{"without it", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespacetest.New(t, namespacetest.Options{MaxWaitScale: 50, Tokens: tokens, Receivers: tc.receivers})
			bundle := certBundle(t, ns.CertFile, authority.CertFile)
			port := freePort(t)
			natsServer(t, port, t.TempDir())
			natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
			listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			p := start(t, []string{"BRIDGE_LISTEN_ADDR=" + listen, "BRIDGE_NATS_URL=" + natsURL, "SSL_CERT_FILE=" + bundle,
				"BRIDGE_NAMESPACE_ENDPOINT=" + ns.URL, "BRIDGE_NAMESPACE_TOPIC=acr-events", "BRIDGE_NAMESPACE_SUBSCRIPTION=bridge",
				"BRIDGE_NAMESPACE_MAX_WAIT=10s", "AZURE_AUTHORITY_HOST=" + authority.URL, "AZURE_TENANT_ID=" + entratest.TenantID,
				"AZURE_CLIENT_ID=" + authority.ClientID, "AZURE_CLIENT_SECRET=" + authority.ClientSecret}, bridgeBin)
			ns.Publish(ceEvent("entra-1"), ceEvent("entra-2"))
			if tc.receivers == nil {
				require.Eventually(t, func() bool {
					code, body := readyzPull(listen)
					return code == 503 && strings.Contains(body, "refuses the bridge (403 Forbidden)")
				}, 30*time.Second, 50*time.Millisecond, "%s", p.out)
				assert.Empty(t, ns.Acknowledged())
				return
			}
			require.Eventually(t, func() bool { return len(ns.Acknowledged()) == 2 }, 30*time.Second, 50*time.Millisecond, "%s", p.out)
			assert.Equal(t, map[string]int{"entra-1": 1, "entra-2": 1}, storedIDs(t, natsURL))
			assert.Positive(t, authority.Issued.Load(), "a token came from the tenant's token service")
			assert.Contains(t, p.out.String(), `"auth":"Microsoft Entra ID"`)
			assert.NotContains(t, p.out.String(), authority.ClientSecret)
		})
	}
}

// Pull without Azure, as docs/azure.md shows it: the stand-in command serves a namespace with sample
// events and writes the settings; the built bridge, given them, pulls the events into its embedded NATS.
func TestPullStandinCommand(t *testing.T) {
	standin := filepath.Join(t.TempDir(), "standin")
	out, err := exec.Command("go", "build", "-o", standin, "github.com/natsbridge/acr-nats-bridge/namespace/namespacetest/standin").CombinedOutput()
	require.NoError(t, err, "%s", out)
	envFile := filepath.Join(t.TempDir(), "standin.env")
	start(t, nil, standin, "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--env", envFile, "--dir", t.TempDir())
	require.Eventually(t, func() bool { _, err := os.Stat(envFile); return err == nil }, 20*time.Second, 20*time.Millisecond)
	b, err := os.ReadFile(envFile)
	require.NoError(t, err)
	env := strings.Fields(string(b))
	require.Len(t, env, 5, "%s", b)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p, url := bridgeProcess(t, append(env, "BRIDGE_EMBEDDED_NATS_ADDR="+natsAddr, "BRIDGE_EMBEDDED_NATS_DIR="+t.TempDir(), "BRIDGE_NAMESPACE_MAX_WAIT=10s")...)
	require.Eventually(t, func() bool {
		return len(natstest.StoredAt(t, "nats://"+natsAddr, "ACR_EVENTS")) == 3
	}, 30*time.Second, 100*time.Millisecond, "%s", p.out)
	code, body := readyzPull(strings.TrimPrefix(url, "http://"))
	assert.Equal(t, 200, code, body)
	for _, m := range natstest.StoredAt(t, "nats://"+natsAddr, "ACR_EVENTS") {
		assert.Equal(t, "acr.image.pushed.myregistry.hello-world", m.Subject)
	}
}
