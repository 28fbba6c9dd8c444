package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logSink collects the JSON log lines run writes, so a test can wait for one.
type logSink struct{ natstest.LogBuffer }

// field returns the value of key in the first log record with message msg.
func (s *logSink) field(msg, key string) string {
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			v, _ := rec[key].(string)
			return v
		}
	}
	return ""
}

// runningBridge is the real entry point running in the test's process.
type runningBridge struct {
	addr   string
	logs   *logSink
	cancel context.CancelFunc
	done   chan error
}

// mapEnv is an environment that holds vars and nothing else.
func mapEnv(vars map[string]string) environment {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// startBridge runs the bridge with env on a free port, with an embedded NATS server on a free port
// unless env names one, and waits until it listens. It is stopped when the test ends.
func startBridge(t *testing.T, env map[string]string) *runningBridge {
	t.Helper()
	vars := map[string]string{
		"BRIDGE_LISTEN_ADDR":        "127.0.0.1:0",
		"BRIDGE_EMBEDDED_NATS_ADDR": "127.0.0.1:0",
		"BRIDGE_EMBEDDED_NATS_DIR":  filepath.Join(t.TempDir(), "nats"),
	}
	maps.Copy(vars, env)
	ctx, cancel := context.WithCancel(context.Background())
	b := &runningBridge{logs: &logSink{}, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- run(ctx, nil, mapEnv(vars), b.logs, io.Discard) }()
	t.Cleanup(func() { b.stop(t) })
	require.Eventually(t, func() bool {
		b.addr = b.logs.field("bridge listening", "addr")
		return b.addr != ""
	}, 10*time.Second, 10*time.Millisecond, "bridge did not start: %s", b.logs)
	return b
}

// stop ends run as SIGTERM would and requires a clean exit.
func (b *runningBridge) stop(t *testing.T) {
	t.Helper()
	if b.cancel == nil {
		return
	}
	b.cancel()
	b.cancel = nil
	select {
	case err := <-b.done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

// TestRun starts the real entry point with no NATS settings (so an embedded server), posts a seed
// payload, reads it back from NATS, and shuts down.
func TestRun(t *testing.T) {
	t.Parallel()
	b := startBridge(t, nil)
	addr, logs := b.addr, b.logs
	natsURL := logs.field("embedded NATS server started", "url")
	require.NotEmpty(t, natsURL)
	ctx := context.Background()

	// A second client, as another process would, over TCP.
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.SubscribeSync("acr.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	body, err := os.ReadFile(filepath.Join("..", "..", "bridge", "testdata", "in", "webhook-push.json"))
	require.NoError(t, err)
	resp, err = http.Post("http://"+addr+"/webhooks/acr", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	msg, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "acr.image.pushed.myregistry.hello-world", msg.Subject)
	env, err := acrevent.DecodeMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, "cb8c3971-9adc-488b-xxxx-43cbb4974ff5", env.ID)

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err := js.Stream(ctx, "ACR_EVENTS")
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Msgs)
	assert.Equal(t, 10*time.Minute, info.Config.Duplicates)

	resp, err = http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	for _, line := range []string{
		"bridge_nats_connected 1",
		`bridge_events_published_total{kind="acr"} 1`,
		`bridge_http_requests_total{code="200",route="POST /webhooks/acr"} 1`,
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		assert.Contains(t, string(metrics), line)
	}

	b.stop(t)
	assert.NotEmpty(t, logs.field("shutting down", "timeout"))
	assert.Contains(t, logs.String(), `"msg":"NATS connection drained and closed"`)
	_, err = http.Get("http://" + addr + "/healthz")
	assert.Error(t, err, "the listener is closed")
}

func TestHelpListsSettings(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-h"}, mapEnv(nil), &out, io.Discard))
	for _, v := range []string{"BRIDGE_LISTEN_ADDR", "BRIDGE_NATS_URL", "BRIDGE_STREAM_DUPLICATE_WINDOW", "10m", "ACR_EVENTS", "bridge tail"} {
		assert.Contains(t, out.String(), v)
	}
}

func TestBadConfigurationStopsStartup(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, mapEnv(map[string]string{"BRIDGE_MAX_EVENTS": "lots"}), io.Discard, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BRIDGE_MAX_EVENTS")
}

func TestRedactURL(t *testing.T) {
	got := redactURL("nats://user:s3cret@a:4222, nats://tok3n@b:4222,nats://c:4222")
	assert.NotContains(t, got, "s3cret")
	assert.NotContains(t, got, "tok3n")
	assert.True(t, strings.HasSuffix(got, "nats://c:4222"), got)
}

// BRIDGE_METRICS_ADDR moves /metrics, and BRIDGE_PPROF_ADDR puts Go's profiles, on listeners of their
// own; neither is served on the receiver's listener then.
func TestAsideListeners(t *testing.T) {
	t.Parallel()
	tests := []struct{ variable, logged, path, want string }{
		{"BRIDGE_METRICS_ADDR", "metrics listening", "/metrics", "bridge_nats_connected 1"},
		{"BRIDGE_PPROF_ADDR", "pprof listening", "/debug/pprof/goroutine?debug=1", "goroutine profile"},
	}
	for _, tc := range tests {
		t.Run(tc.variable, func(t *testing.T) {
			t.Parallel()
			b := startBridge(t, map[string]string{tc.variable: "127.0.0.1:0"})
			addr := b.logs.field(tc.logged, "addr")
			require.NotEmpty(t, addr)
			resp, err := http.Get("http://" + addr + tc.path)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode)
			assert.Contains(t, string(body), tc.want)

			resp, err = http.Get("http://" + b.addr + tc.path)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, 404, resp.StatusCode, "not on the receiver's listener")
		})
	}
}

// Without authentication and without BRIDGE_LISTEN_ADDR, the receiver listens on this machine only; set
// explicitly, or with a way to authenticate, where it is told.
func TestListenAddrIsLoopbackWithoutAuthentication(t *testing.T) {
	t.Parallel()
	load := func(env map[string]string) (string, bool) {
		getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		cfg, err := config.Load(getenv)
		require.NoError(t, err)
		return listenAddr(cfg, getenv)
	}
	addr, loopback := load(nil)
	assert.Equal(t, "127.0.0.1:8080", addr)
	assert.True(t, loopback)
	addr, loopback = load(map[string]string{"BRIDGE_LISTEN_ADDR": ":8080"})
	assert.Equal(t, ":8080", addr, "set explicitly, as the image, compose file, manifests and chart do")
	assert.False(t, loopback)
	addr, _ = load(map[string]string{"BRIDGE_AUTH_TOKENS": "0123456789abcdef0123"})
	assert.Equal(t, ":8080", addr, "POSTs must authenticate")
}
